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
/// Workgroup memory every attention kernel declares (`stage` and `xs` in the WGSL).
pub const WORKGROUP_BYTES: u32 = (544 + 1088) * 16;

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

    fn params(&self, splits: usize) -> Vec<u32> {
        Params::new()
            .size(self.seq_len)
            .size(self.q_heads)
            .size(self.kv_heads)
            .f32(self.scale)
            .size(self.batch * self.q_heads * self.seq_len)
            .size(self.batch)
            .size(splits)
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
        params: s.params(1),
    }
}

/// `delta = rowsum(d_out * out)`; buffers d_out, out (like q), delta (like lse).
pub fn backward_delta(s: &AttnShape) -> Launch {
    Launch {
        kernel: DELTA,
        constants: s.constants(),
        workgroups: grid_for(s.batch * s.q_heads * s.seq_len, 256),
        params: s.params(1),
    }
}

/// `dq`; buffers q, k, v, d_out, lse, delta, dq (like q).
pub fn backward_dq(s: &AttnShape) -> Launch {
    Launch {
        kernel: DQ,
        constants: s.constants(),
        workgroups: [s.blocks(), s.q_heads as u32, s.batch as u32],
        params: s.params(1),
    }
}

/// `dk, dv`; buffers q, k, v, d_out, lse, delta, dk, dv. Each kv head's group of query heads
/// is cut into `splits` parts (a divisor of q_heads / kv_heads, see [`dkv_splits`]): dk and dv
/// are (splits, batch, kv_heads, seq_len, head_dim), the sum over each part, to be added up
/// over the first dimension (with `splits == 1` they are the gradients, shaped like k and v).
pub fn backward_dkv(s: &AttnShape, splits: usize) -> Launch {
    debug_assert!(splits >= 1 && (s.q_heads / s.kv_heads).is_multiple_of(splits));
    Launch {
        kernel: DKV,
        constants: s.constants(),
        workgroups: [s.blocks(), s.kv_heads as u32, (s.batch * splits) as u32],
        params: s.params(splits),
    }
}

/// The parts to cut each group of query heads into in [`backward_dkv`]: 1 (the kernel sums
/// the whole group) when that gives at least `min_workgroups` workgroups, otherwise the
/// smallest divisor of the group size that does, or the group size (one head per part).
pub fn dkv_splits(s: &AttnShape, min_workgroups: usize) -> usize {
    let group = s.q_heads / s.kv_heads.max(1);
    let base = s.seq_len.div_ceil(BLOCK) * s.kv_heads * s.batch;
    let max_z = crate::MAX_WORKGROUPS_PER_DIM as usize;
    (1..=group)
        .filter(|&n| group.is_multiple_of(n) && s.batch * n <= max_z)
        .find(|&n| base * n >= min_workgroups)
        .unwrap_or_else(|| {
            (1..=group)
                .rev()
                .find(|&n| group.is_multiple_of(n) && s.batch * n <= max_z)
                .unwrap_or(1)
        })
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
        assert_eq!(backward_dkv(&s, 1).workgroups, [3, 2, 2]);
        assert_eq!(backward_dkv(&s, 3).workgroups, [3, 2, 6]);
        assert_eq!(backward_dkv(&s, 3).params[6], 3);
        assert_eq!(backward_delta(&s).workgroups, [7, 1, 1]); // 2 * 6 * 130 rows
        assert_eq!(forward(&s).params[3], 0.5f32.to_bits());
    }

    #[test]
    fn dkv_splits_are_divisors_of_the_group() {
        // 3 blocks * 2 kv heads * 2 batches = 12 workgroups unsplit; group of 3.
        let s = shape(130);
        assert_eq!(dkv_splits(&s, 1), 1);
        assert_eq!(dkv_splits(&s, 12), 1);
        assert_eq!(dkv_splits(&s, 13), 3);
        assert_eq!(dkv_splits(&s, 1000), 3);
        // Qwen2.5-1.5B, T = 1024, B = 1: 16 blocks * 2 kv heads, group of 6.
        let q = AttnShape {
            batch: 1,
            q_heads: 12,
            kv_heads: 2,
            seq_len: 1024,
            head_dim: 128,
            ..s
        };
        assert_eq!(dkv_splits(&q, 64), 2);
        assert_eq!(dkv_splits(&q, 65), 3);
        assert_eq!(dkv_splits(&q, 256), 6);
    }

    #[test]
    fn workgroup_bytes_match_the_wgsl() {
        let declared: u32 = SOURCE
            .wgsl
            .lines()
            .filter_map(|l| l.strip_prefix("var<workgroup> "))
            .map(|l| {
                let n = l.rsplit(", ").next().unwrap().trim_end_matches(">;");
                n.parse::<u32>().unwrap() * 16 // every array is of vec4<f32>
            })
            .sum();
        assert_eq!(declared, WORKGROUP_BYTES);
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
