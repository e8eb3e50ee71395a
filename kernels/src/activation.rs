//! Launchers for `wgsl/activation.wgsl`: SwiGLU on a row of [gate | up] (the fused gate and up
//! projections), silu(gate) * up, forward and backward; with an f16 output the forward can keep
//! its input as f16 for the backward (half the memory of a layer's largest activation).

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "activation",
    wgsl: concat!(
        include_str!("../wgsl/activation.wgsl"),
        include_str!("../wgsl/f16_bits.wgsl")
    ),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const SWIGLU: Kernel = Kernel {
    source: &SOURCE,
    entry: "swiglu",
    bindings: &[1, 2],
};
const SWIGLU_F16: Kernel = Kernel {
    source: &SOURCE,
    entry: "swiglu_f16",
    bindings: &[1, 6],
};
const SWIGLU_F16_KEEP: Kernel = Kernel {
    source: &SOURCE,
    entry: "swiglu_f16_keep",
    bindings: &[1, 6, 7],
};
const SWIGLU_BWD: Kernel = Kernel {
    source: &SOURCE,
    entry: "swiglu_bwd",
    bindings: &[3, 4, 5],
};
const SWIGLU_BWD_H: Kernel = Kernel {
    source: &SOURCE,
    entry: "swiglu_bwd_h",
    bindings: &[8, 4, 5],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// `kernel` over `n` outputs of rows `width` wide, `per_invocation` outputs per invocation.
fn launch(kernel: Kernel, n: usize, width: usize, per_invocation: usize) -> Launch {
    Launch {
        kernel,
        constants: vec![],
        workgroups: grid_for(n.div_ceil(per_invocation), 256),
        params: Params::new().size(n).size(width.max(1)).build(),
    }
}

/// `out[r, i] = silu(x[r, i]) * x[r, width + i]` for x (rows, 2 width) and `n` = rows * width
/// outputs: buffers x, out.
pub fn swiglu(n: usize, width: usize) -> Launch {
    launch(SWIGLU, n, width, 1)
}

/// [`swiglu`] written as f16 (round to nearest even, bit for bit as the f32 -> f16 cast of
/// its f32 result): buffers x, out (ceil(n / 2) u32 words, two f16 each).
pub fn swiglu_f16(n: usize, width: usize) -> Launch {
    launch(SWIGLU_F16, n, width, 2)
}

/// [`swiglu_f16`] that also writes x (2n values) as f16, rounded as the cast rounds, for
/// [`swiglu_backward_f16`]: buffers x, out, x16 (n u32 words).
pub fn swiglu_f16_keep(n: usize, width: usize) -> Launch {
    launch(SWIGLU_F16_KEEP, n, width, 2)
}

/// The gradient of x (rows, 2 width), gate and up halves, from the output gradient g (rows,
/// width), `n` = rows * width: buffers x, g, dx.
pub fn swiglu_backward(n: usize, width: usize) -> Launch {
    launch(SWIGLU_BWD, n, width, 1)
}

/// [`swiglu_backward`] from the f16 copy of x [`swiglu_f16_keep`] wrote: buffers x16, g, dx.
pub fn swiglu_backward_f16(n: usize, width: usize) -> Launch {
    launch(SWIGLU_BWD_H, n, width, 1)
}
