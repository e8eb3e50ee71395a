//! The `trainer` library: data, objectives, the SFT loop, diagnose, eval, checkpoints and
//! metrics, under the `trainer` binary.

pub mod batch;
pub mod data;
pub mod diagnose;
pub mod guard;
pub mod plot;
pub mod resolve;
pub mod schedule;
pub mod train;
