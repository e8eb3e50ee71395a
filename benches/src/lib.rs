//! Shared helpers for the benchmarks: the CPU references and inputs of `gpubench`, the f64
//! decoder forward that `trainbench` checks a training step against, and the training step
//! `trainbench` times and `membench` weighs.

pub mod decoder_ref;
pub mod gpu_log;
pub mod profile;
pub mod reference;
pub mod step;
