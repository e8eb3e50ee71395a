//! Launchers for `wgsl/attention_block.wgsl`: the f16 path of self-attention, whose products
//! (scores, output, and the four of the backward) are matmuls, with these kernels between them
//! (masked softmax to f16 probabilities, their recomputation, the score gradient, and the
//! per-row delta of the backward).

use crate::{grid_1d, grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "attention_block",
    wgsl: include_str!("../wgsl/attention_block.wgsl"),
    needs: Needs {
        f16: true,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const SOFTMAX: Kernel = Kernel {
    source: &SOURCE,
    entry: "ab_softmax",
    bindings: &[1, 2, 3],
};
const PROBS: Kernel = Kernel {
    source: &SOURCE,
    entry: "ab_probs",
    bindings: &[4, 5, 6],
};
const DSOFT: Kernel = Kernel {
    source: &SOURCE,
    entry: "ab_dsoft",
    bindings: &[7, 8, 9, 10, 11],
};
const DELTA: Kernel = Kernel {
    source: &SOURCE,
    entry: "ab_delta",
    bindings: &[12, 13, 14],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// Score rows of one or more blocks: `rows` (G T per block: G query heads of T positions)
/// against `t` keys; their log-sum-exps start at `lse_base` in the (B, Hq, T) buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBlock {
    pub rows: usize,
    pub t: usize,
    pub causal: bool,
    pub scale: f32,
    pub lse_base: usize,
}

fn words(b: &ScoreBlock, d: usize) -> Vec<u32> {
    Params::new()
        .size(b.rows)
        .size(b.t)
        .u32(u32::from(b.causal))
        .f32(b.scale)
        .size(b.lse_base)
        .size(d)
        .build()
}

/// P (f16) and the log-sum-exps from the scores: buffers s (rows, t) f32, p (rows, t) f16, lse.
pub fn softmax(b: &ScoreBlock) -> Launch {
    Launch {
        kernel: SOFTMAX,
        constants: vec![],
        workgroups: grid_1d(u32::try_from(b.rows).unwrap_or(u32::MAX)),
        params: words(b, 0),
    }
}

/// P (f16) from the scores and the saved log-sum-exps: buffers s, lse, p.
pub fn probs(b: &ScoreBlock) -> Launch {
    Launch {
        kernel: PROBS,
        constants: vec![],
        workgroups: grid_for(b.rows * b.t, 256),
        params: words(b, 0),
    }
}

/// dS (f16) = scale P (dP - delta): buffers s, lse, dp (rows, t) f32, delta, ds (rows, t) f16.
pub fn dsoft(b: &ScoreBlock) -> Launch {
    Launch {
        kernel: DSOFT,
        constants: vec![],
        workgroups: grid_for(b.rows * b.t, 256),
        params: words(b, 0),
    }
}

/// delta = rowsum(dO * O) over `rows` rows of `d`: buffers do (f16), o, delta.
pub fn delta(rows: usize, d: usize) -> Launch {
    let b = ScoreBlock {
        rows,
        t: 1,
        causal: false,
        scale: 1.0,
        lse_base: 0,
    };
    Launch {
        kernel: DELTA,
        constants: vec![],
        workgroups: grid_for(rows, 256),
        params: words(&b, d),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_spirv() {
        crate::spirv_check::assert_writes_spirv(&super::SOURCE, &[]);
    }
}
