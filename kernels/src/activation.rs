//! Launchers for SwiGLU: silu(gate) * up, fused.

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
