//! Launchers for Embedding gather and its scatter-free backward.

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
