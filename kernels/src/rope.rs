//! Launchers for Rotary position embedding (HF rotate-half convention).

use crate::Source;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![]
}
