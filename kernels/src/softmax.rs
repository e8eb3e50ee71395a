//! Launchers for Softmax and log-softmax over the last axis.

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
