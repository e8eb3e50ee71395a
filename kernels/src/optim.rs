//! Launchers for Fused AdamW step, global L2 norm and clipping by it.

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
