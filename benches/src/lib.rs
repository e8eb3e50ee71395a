//! Shared helpers for the benchmarks: the CPU references and inputs of `gpubench`.

pub mod reference;
