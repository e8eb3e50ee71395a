//! Shared helpers for the benchmarks: the CPU references and inputs of `gpubench`, and the
//! f64 decoder forward that `trainbench` checks a training step against.

pub mod decoder_ref;
pub mod gpu_log;
pub mod profile;
pub mod reference;
