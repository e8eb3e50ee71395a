//! Launchers for Reductions: sum, mean and max over the last axis and over everything.

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
