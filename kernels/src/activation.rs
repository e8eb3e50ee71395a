//! Launchers for `wgsl/activation.wgsl`: SwiGLU, silu(gate) * up, fused forward and backward.

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "activation",
    wgsl: include_str!("../wgsl/activation.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const SWIGLU: Kernel = Kernel {
    source: &SOURCE,
    entry: "swiglu",
    bindings: &[1, 2, 3],
};
const SWIGLU_BWD: Kernel = Kernel {
    source: &SOURCE,
    entry: "swiglu_bwd",
    bindings: &[4, 5, 6, 7, 8],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// `out = silu(gate) * up` over `n` elements: buffers gate, up, out.
pub fn swiglu(n: usize) -> Launch {
    Launch {
        kernel: SWIGLU,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: Params::new().size(n).build(),
    }
}

/// Both input gradients from the output gradient g: buffers gate, up, g, d gate, d up.
pub fn swiglu_backward(n: usize) -> Launch {
    Launch {
        kernel: SWIGLU_BWD,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: Params::new().size(n).build(),
    }
}
