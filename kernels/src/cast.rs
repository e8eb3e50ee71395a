//! Launchers for `wgsl/cast.wgsl`: f32 <-> f16 casts, bit-exact (IEEE round-to-nearest-even)
//! on every adapter, with or without SHADER_F16.

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "cast",
    wgsl: concat!(
        include_str!("../wgsl/cast.wgsl"),
        include_str!("../wgsl/f16_bits.wgsl")
    ),
    // Integer arithmetic on the bit patterns only: no `enable f16;` (see the WGSL header).
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const F32_TO_F16: Kernel = Kernel {
    source: &SOURCE,
    entry: "f32_to_f16",
    bindings: &[1, 2],
};
const F16_TO_F32: Kernel = Kernel {
    source: &SOURCE,
    entry: "f16_to_f32",
    bindings: &[3, 4],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// `n` f32 values (bindings: src, dst) to f16, two per invocation.
pub fn f32_to_f16(n: usize) -> Launch {
    Launch {
        kernel: F32_TO_F16,
        constants: vec![],
        workgroups: grid_for(n.div_ceil(2), 256),
        params: Params::new().size(n).build(),
    }
}

/// `n` f16 values (bindings: src, dst) to f32.
pub fn f16_to_f32(n: usize) -> Launch {
    Launch {
        kernel: F16_TO_F32,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: Params::new().size(n).build(),
    }
}
