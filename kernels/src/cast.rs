//! Launchers for f32 <-> f16 casts.

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
