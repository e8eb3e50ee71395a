//! The `trainer` library: data, objectives, the SFT loop, diagnose, eval, checkpoints and
//! metrics, under the `trainer` binary.

pub mod answer;
pub mod batch;
pub mod data;
pub mod diagnose;
pub mod eval;
pub mod guard;
pub mod hub;
pub mod plot;
pub mod profile;
pub mod progress;
pub mod resolve;
pub mod scaler;
pub mod schedule;
pub mod train;
