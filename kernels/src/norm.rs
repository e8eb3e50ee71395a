//! Launchers for `wgsl/norm.wgsl`: RMSNorm over the last axis (one workgroup per row), its
//! fused input gradient, and the weight gradient as column sums without atomics.

use crate::{grid_1d, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "norm",
    wgsl: concat!(
        include_str!("../wgsl/norm.wgsl"),
        include_str!("../wgsl/f16_bits.wgsl")
    ),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const FORWARD: Kernel = Kernel {
    source: &SOURCE,
    entry: "rms_norm",
    bindings: &[1, 2, 3, 4],
};
const FORWARD_F16: Kernel = Kernel {
    source: &SOURCE,
    entry: "rms_norm_f16",
    bindings: &[1, 2, 14, 4],
};
const BACKWARD: Kernel = Kernel {
    source: &SOURCE,
    entry: "rms_norm_bwd",
    bindings: &[5, 6, 7, 8, 9],
};
const WEIGHT_GRAD: Kernel = Kernel {
    source: &SOURCE,
    entry: "rms_norm_dw",
    bindings: &[10, 11, 12, 13],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

fn grid(workgroups: usize) -> [u32; 3] {
    grid_1d(u32::try_from(workgroups).unwrap_or(u32::MAX))
}

fn params(rows: usize, len: usize, eps: f32, chunks: usize) -> Params {
    let cols = len.next_power_of_two().min(64);
    Params::new()
        .size(rows)
        .size(len)
        .f32(eps)
        .size(cols)
        .size(len.div_ceil(cols))
        .size(chunks)
        .size(rows.div_ceil(chunks.max(1)).max(1))
}

/// `y = w * x * rstd` over rows of `len`, saving `rstd` (rows): buffers x, w, y, rstd.
pub fn forward(rows: usize, len: usize, eps: f32) -> Launch {
    Launch {
        kernel: FORWARD,
        constants: vec![],
        workgroups: grid(rows),
        params: params(rows, len, eps, 1).build(),
    }
}

/// [`forward`] with y written as f16 (rounded bit for bit as the f32 -> f16 cast) for an even
/// `len`: buffers x, w, y (rows * len / 2 u32 words), rstd.
pub fn forward_f16(rows: usize, len: usize, eps: f32) -> Launch {
    Launch {
        kernel: FORWARD_F16,
        ..forward(rows, len, eps)
    }
}

/// The input gradient: buffers x, w, rstd, g, dx.
pub fn backward(rows: usize, len: usize) -> Launch {
    Launch {
        kernel: BACKWARD,
        constants: vec![],
        workgroups: grid(rows),
        params: params(rows, len, 0.0, 1).build(),
    }
}

/// Into how many row chunks the weight gradient splits (the partial sums are then summed
/// over chunks with `reduce::sum(1, chunks, len, 1, 1.0)` when this is over 1).
pub fn weight_grad_chunks(rows: usize, len: usize) -> usize {
    crate::reduce::sum_chunks(1, rows, len)
}

/// Partial weight gradients (chunks, len): buffers x, rstd, g, partial.
pub fn weight_grad(rows: usize, len: usize, chunks: usize) -> Launch {
    let chunks = chunks.max(1);
    let cols = len.next_power_of_two().min(64);
    Launch {
        kernel: WEIGHT_GRAD,
        constants: vec![],
        workgroups: grid(chunks * len.div_ceil(cols)),
        params: params(rows, len, 0.0, chunks).build(),
    }
}
