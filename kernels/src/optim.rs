//! Launchers for `wgsl/optim.wgsl`: the fused AdamW step, and the global L2 norm of a list of
//! gradients (per-tensor partial sums of squares, then one finalising workgroup) with the
//! clip scale of `clip_grad_norm_`.

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "optim",
    wgsl: include_str!("../wgsl/optim.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const SUMSQ_PARTIAL: Kernel = Kernel {
    source: &SOURCE,
    entry: "sumsq_partial",
    bindings: &[1, 2],
};
const NORM_FINALIZE: Kernel = Kernel {
    source: &SOURCE,
    entry: "norm_finalize",
    bindings: &[3, 4],
};
const ADAMW: Kernel = Kernel {
    source: &SOURCE,
    entry: "adamw",
    bindings: &[5, 6, 7, 8, 9],
};

/// Most workgroups (and so partial sums) per tensor in [`sumsq_partial`].
pub const MAX_PARTIALS: usize = 1024;
/// Elements each invocation of [`sumsq_partial`] sums at least (when the tensor is large).
const PER_INVOCATION: usize = 8;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// The hyper-parameters of one AdamW step, as the kernel takes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// The 1-based step number t of this parameter (for the bias corrections).
    pub t: u64,
}

#[derive(Default)]
struct Fields {
    n: usize,
    offset: usize,
    count: usize,
    clip: bool,
    max_norm: f32,
    unscale: f32,
    adam: Option<AdamWStep>,
}

fn params(f: Fields) -> Vec<u32> {
    let pb = Params::new()
        .size(f.n)
        .size(f.offset)
        .size(f.count)
        .u32(f.clip as u32)
        .f32(f.max_norm)
        .f32(f.unscale);
    match f.adam {
        None => pb.build(),
        Some(a) => {
            // torch: bias_correction1 = 1 - beta1^t, bias_correction2 = 1 - beta2^t
            let t = a.t.min(i32::MAX as u64) as i32;
            let bc1 = 1.0 - a.beta1.powi(t);
            let bc2 = 1.0 - a.beta2.powi(t);
            pb.f32((1.0 - a.lr * a.weight_decay) as f32)
                .f32(a.beta1 as f32)
                .f32((1.0 - a.beta1) as f32)
                .f32(a.beta2 as f32)
                .f32((1.0 - a.beta2) as f32)
                .f32((a.lr / bc1) as f32)
                .f32(bc2.sqrt() as f32)
                .f32(a.eps as f32)
                .build()
        }
    }
}

/// Number of partial sums [`sumsq_partial`] writes for a tensor of `n` elements.
pub fn partials_for(n: usize) -> usize {
    n.div_ceil(256 * PER_INVOCATION).clamp(1, MAX_PARTIALS)
}

/// Sum of squares of `n` elements, each times `unscale` first, into
/// `partials[offset .. offset + partials_for(n)]`. Bindings: x, partials.
pub fn sumsq_partial(n: usize, offset: usize, unscale: f32) -> Launch {
    Launch {
        kernel: SUMSQ_PARTIAL,
        constants: vec![],
        workgroups: [partials_for(n) as u32, 1, 1],
        params: params(Fields {
            n,
            offset,
            unscale,
            ..Fields::default()
        }),
    }
}

/// `out = [sqrt(sum of count partials), clip scale, clip scale * unscale]` (the last two are
/// written only when `out` holds three floats; the clip scale is 1 without `max_norm`).
/// Bindings: partials, out.
pub fn norm_finalize(count: usize, max_norm: Option<f32>, unscale: f32) -> Launch {
    Launch {
        kernel: NORM_FINALIZE,
        constants: vec![],
        workgroups: [1, 1, 1],
        params: params(Fields {
            count,
            clip: max_norm.is_some(),
            max_norm: max_norm.unwrap_or(0.0),
            unscale,
            ..Fields::default()
        }),
    }
}

/// One AdamW step on `n` elements, in place. Bindings: p, m, v, grad, stats
/// `[norm, clip scale, factor of the raw gradient]`.
pub fn adamw(n: usize, step: AdamWStep) -> Launch {
    Launch {
        kernel: ADAMW,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: params(Fields {
            n,
            adam: Some(step),
            ..Fields::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_counts() {
        assert_eq!(partials_for(0), 1);
        assert_eq!(partials_for(1), 1);
        assert_eq!(partials_for(2048), 1);
        assert_eq!(partials_for(2049), 2);
        assert_eq!(partials_for(1 << 30), MAX_PARTIALS);
    }

    #[test]
    fn adamw_scalars() {
        let step = AdamWStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.5,
            t: 2,
        };
        let p = adamw(10, step).params;
        let f = |i: usize| f32::from_bits(p[i]);
        assert_eq!(f(6), 0.95); // decay
        assert!((f(11) - (0.1 / 0.19) as f32).abs() < 1e-7); // step size
        assert!((f(12) - (1.0f64 - 0.9801).sqrt() as f32).abs() < 1e-7);
    }
}
