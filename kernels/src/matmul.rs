//! Launchers for Matrix multiply: f32 tiled SIMT, f16 inputs with f32 accumulation, cooperative matrices.

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
