//! Launchers for `wgsl/attention.wgsl`: flash-style self-attention with grouped-query heads
//! (causal or full), its forward with the saved log-sum-exp, and the FlashAttention-2 backward
//! (row dots `delta`, then dq per query block and dk, dv per key block, no atomics).

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "attention",
    wgsl: include_str!("../wgsl/attention.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const FWD: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_fwd",
    bindings: &[1, 2, 3, 4, 5],
};
const DELTA: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_bwd_delta",
    bindings: &[6, 7, 8],
};
const DQ: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_bwd_dq",
    bindings: &[9, 10, 11, 12, 13, 14, 15],
};
const DKV: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_bwd_dkv",
    bindings: &[16, 17, 18, 19, 20, 21, 22, 23],
};

/// Largest head dimension the kernels take.
pub const MAX_HEAD_DIM: usize = 128;
/// Rows (queries or keys) one workgroup owns, and the rows of each streamed block.
pub const BLOCK: usize = 64;

/// The sizes of one attention call. q: (batch, q_heads, seq_len, head_dim); k, v:
/// (batch, kv_heads, seq_len, head_dim), with `q_heads` a multiple of `kv_heads`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub seq_len: usize,
    pub head_dim: usize,
    pub causal: bool,
    /// Multiplies q.k before the softmax (usually 1 / sqrt(head_dim)).
    pub scale: f32,
}

impl AttnShape {
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("HEAD_DIM", self.head_dim as f64),
            ("CAUSAL", u32::from(self.causal) as f64),
        ]
    }

    fn params(&self) -> Vec<u32> {
        Params::new()
            .size(self.seq_len)
            .size(self.q_heads)
            .size(self.kv_heads)
            .f32(self.scale)
            .size(self.batch * self.q_heads * self.seq_len)
            .build()
    }

    fn blocks(&self) -> u32 {
        self.seq_len.div_ceil(BLOCK) as u32
    }

    /// Why these sizes cannot run, if they cannot (the engine reports it as a shape error).
    pub fn check(&self) -> Result<(), String> {
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM {
            return Err(format!(
                "head_dim {} is not in 1..={MAX_HEAD_DIM}",
                self.head_dim
            ));
        }
        if self.kv_heads == 0 || !self.q_heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "q_heads {} is not a multiple of kv_heads {}",
                self.q_heads, self.kv_heads
            ));
        }
        let max = crate::MAX_WORKGROUPS_PER_DIM as usize;
        if self.batch > max || self.q_heads > max || self.seq_len.div_ceil(BLOCK) > max {
            return Err(format!(
                "batch, heads and seq_len / {BLOCK} must each be at most {max}"
            ));
        }
        Ok(())
    }
}

/// `out, lse = attention(q, k, v)`; buffers q, k, v, out (like q), lse (batch, q_heads, seq_len).
pub fn forward(s: &AttnShape) -> Launch {
    Launch {
        kernel: FWD,
        constants: s.constants(),
        workgroups: [s.blocks(), s.q_heads as u32, s.batch as u32],
        params: s.params(),
    }
}

/// `delta = rowsum(d_out * out)`; buffers d_out, out (like q), delta (like lse).
pub fn backward_delta(s: &AttnShape) -> Launch {
    Launch {
        kernel: DELTA,
        constants: s.constants(),
        workgroups: grid_for(s.batch * s.q_heads * s.seq_len, 256),
        params: s.params(),
    }
}

/// `dq`; buffers q, k, v, d_out, lse, delta, dq (like q).
pub fn backward_dq(s: &AttnShape) -> Launch {
    Launch {
        kernel: DQ,
        constants: s.constants(),
        workgroups: [s.blocks(), s.q_heads as u32, s.batch as u32],
        params: s.params(),
    }
}

/// `dk, dv`, summed over each kv head's group of query heads; buffers q, k, v, d_out, lse,
/// delta, dk (like k), dv (like v).
pub fn backward_dkv(s: &AttnShape) -> Launch {
    Launch {
        kernel: DKV,
        constants: s.constants(),
        workgroups: [s.blocks(), s.kv_heads as u32, s.batch as u32],
        params: s.params(),
    }
}

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(t: usize) -> AttnShape {
        AttnShape {
            batch: 2,
            q_heads: 6,
            kv_heads: 2,
            seq_len: t,
            head_dim: 24,
            causal: true,
            scale: 0.5,
        }
    }

    #[test]
    fn grids_cover_every_block() {
        let s = shape(130);
        assert_eq!(forward(&s).workgroups, [3, 6, 2]);
        assert_eq!(backward_dq(&s).workgroups, [3, 6, 2]);
        assert_eq!(backward_dkv(&s).workgroups, [3, 2, 2]);
        assert_eq!(backward_delta(&s).workgroups, [7, 1, 1]); // 2 * 6 * 130 rows
        assert_eq!(forward(&s).params[3], 0.5f32.to_bits());
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(shape(5).check().is_ok());
        assert!(AttnShape {
            kv_heads: 4,
            ..shape(5)
        }
        .check()
        .is_err());
        assert!(AttnShape {
            head_dim: 129,
            ..shape(5)
        }
        .check()
        .is_err());
        assert!(AttnShape {
            head_dim: 0,
            ..shape(5)
        }
        .check()
        .is_err());
    }
}
