//! Launchers for Causal attention with grouped-query heads, flash-style (no T x T matrix in memory).

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
