//! Launchers for `wgsl/attention.wgsl`: flash-style attention with grouped-query heads (causal,
//! aligned bottom-right when there are fewer queries than keys, or full), its forward with the
//! saved log-sum-exp, a split-key decode path for a few queries against many keys with the
//! combine of its partial results, the FlashAttention-2 backward (row dots `delta`, then dq per
//! query block and dk, dv per key block, no atomics), and the in-place KV-cache append. The
//! forward kernels take optional per-batch-row key starts (left-padded batches, inference only);
//! the forward and the backward take optional per-query sequence starts (packed rows).

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
    bindings: &[1, 2, 3, 4, 5, 37],
};
const DELTA: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_bwd_delta",
    bindings: &[6, 7, 8],
};
const DQ: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_bwd_dq",
    bindings: &[9, 10, 11, 12, 13, 14, 15, 39],
};
const DKV: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_bwd_dkv",
    bindings: &[16, 17, 18, 19, 20, 21, 22, 23, 40],
};
const DECODE: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_decode",
    bindings: &[24, 25, 26, 27, 28, 38],
};
const COMBINE: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_decode_combine",
    bindings: &[29, 30, 31, 32],
};
const APPEND: Kernel = Kernel {
    source: &SOURCE,
    entry: "attn_kv_append",
    bindings: &[33, 34, 35, 36],
};

/// Largest head dimension the kernels take.
pub const MAX_HEAD_DIM: usize = 128;
/// Rows (queries or keys) one workgroup owns, and the rows of each streamed block.
pub const BLOCK: usize = 64;
/// Workgroup memory every attention kernel declares (`stage` and `xs` in the WGSL).
pub const WORKGROUP_BYTES: u32 = (544 + 1088 + 1) * 16;
/// The decode path ([`decode`]) is taken for at most this many queries (and fewer than keys).
pub const DECODE_MAX_Q_LEN: usize = 16;
/// Query rows of one decode workgroup, and keys of its tiles.
const DECODE_ROWS: usize = 8;
const DECODE_TILE: usize = 32;
/// Fewest keys [`decode_splits`] gives a split (two tiles), so that the partial results stay
/// small next to the keys and values read.
const DECODE_MIN_CHUNK: usize = 64;

/// What hides keys beyond the causal mask, read from the forward's last binding (and the
/// backward's, for sequence starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Nothing: the binding is not read (bind any buffer).
    None,
    /// u32 (batch): keys before key_start[b] are hidden from every query of batch row b
    /// (left-padded batches; forward and decode only).
    KeyStart,
    /// u32 (batch, q_len), with q_len == kv_len: query i of batch row b sees keys from
    /// seq_start[b, i] on (the first token of its sequence when several are packed into one
    /// row); the backward kernels take it too.
    SeqStart,
}

impl Mask {
    fn code(self) -> usize {
        match self {
            Mask::None => 0,
            Mask::KeyStart => 1,
            Mask::SeqStart => 2,
        }
    }
}

/// The sizes of one attention call. q: (batch, q_heads, q_len, head_dim); k, v:
/// (batch, kv_heads, kv_stride, head_dim) of which the first kv_len rows of each (batch, kv
/// head) take part, with `q_heads` a multiple of `kv_heads`. Under `causal`, query i sits at
/// position kv_len - q_len + i and sees keys 0..=kv_len-q_len+i (the mask aligned bottom-right).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    /// Queries per head (Tq).
    pub q_len: usize,
    /// Keys per kv head (Tk).
    pub kv_len: usize,
    /// Rows per (batch, kv head) of the k and v buffers: kv_len for plain tensors, a cache's
    /// capacity otherwise. The backward writes dk, dv with kv_len rows.
    pub kv_stride: usize,
    pub head_dim: usize,
    pub causal: bool,
    /// Multiplies q.k before the softmax (usually 1 / sqrt(head_dim)).
    pub scale: f32,
}

/// Where [`kv_append`] writes: new rows (batch, kv_heads, new_len, head_dim) go to rows
/// offset..offset+new_len of a cache (batch, kv_heads, capacity, head_dim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheWrite {
    pub batch: usize,
    pub kv_heads: usize,
    pub new_len: usize,
    pub head_dim: usize,
    pub capacity: usize,
    pub offset: usize,
}

impl AttnShape {
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("HEAD_DIM", self.head_dim as f64),
            ("CAUSAL", u32::from(self.causal) as f64),
        ]
    }

    fn params(&self, splits: usize, chunk: usize) -> Vec<u32> {
        self.params_masked(splits, chunk, Mask::None)
    }

    fn params_masked(&self, splits: usize, chunk: usize, mask: Mask) -> Vec<u32> {
        Params::new()
            .size(self.q_len)
            .size(self.q_heads)
            .size(self.kv_heads)
            .f32(self.scale)
            .size(self.batch * self.q_heads * self.q_len)
            .size(self.batch)
            .size(splits)
            .size(self.kv_len)
            .size(self.kv_stride)
            .size(chunk)
            .size(0)
            .size(mask.code())
            .build()
    }

    /// Query blocks of attn_fwd and attn_bwd_dq.
    fn blocks(&self) -> u32 {
        self.q_len.div_ceil(BLOCK) as u32
    }

    /// Decode workgroups per (batch, kv head) and split: blocks of the group's query rows.
    fn decode_row_blocks(&self) -> usize {
        (self.q_heads / self.kv_heads.max(1) * self.q_len).div_ceil(DECODE_ROWS)
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
        if self.causal && self.q_len > self.kv_len {
            return Err(format!(
                "causal attention needs q_len {} <= kv_len {} (queries are the last positions)",
                self.q_len, self.kv_len
            ));
        }
        if self.kv_len == 0 && self.q_len > 0 {
            return Err("no keys to attend to (kv_len 0)".into());
        }
        if self.kv_stride < self.kv_len {
            return Err(format!(
                "kv_stride {} is below kv_len {}",
                self.kv_stride, self.kv_len
            ));
        }
        let max = crate::MAX_WORKGROUPS_PER_DIM as usize;
        if self.batch > max
            || self.q_heads > max
            || self.q_len.div_ceil(BLOCK) > max
            || self.kv_len.div_ceil(BLOCK) > max
        {
            return Err(format!(
                "batch, heads, q_len / {BLOCK} and kv_len / {BLOCK} must each be at most {max}"
            ));
        }
        Ok(())
    }
}

/// `out, lse = attention(q, k, v)`; buffers q, k, v, out (like q), lse (batch, q_heads, q_len),
/// and the `mask`'s starts (see [`Mask`]; with key starts a query left with no key gets out 0,
/// lse about -1e30).
pub fn forward(s: &AttnShape, mask: Mask) -> Launch {
    Launch {
        kernel: FWD,
        constants: s.constants(),
        workgroups: [s.blocks(), s.q_heads as u32, s.batch as u32],
        params: s.params_masked(1, 0, mask),
    }
}

/// Whether a forward should take [`decode`] (few queries, more keys) rather than [`forward`].
/// q_len == kv_len always takes [`forward`].
pub fn uses_decode(s: &AttnShape) -> bool {
    s.q_len <= DECODE_MAX_Q_LEN && s.q_len < s.kv_len
}

/// Keys per split when the keys are cut into `splits` parts: a multiple of the 32-key tile.
fn decode_chunk(s: &AttnShape, splits: usize) -> usize {
    s.kv_len
        .div_ceil(splits.max(1))
        .next_multiple_of(DECODE_TILE)
}

/// `out, lse` of attention for a few queries, the keys cut into `splits` chunks of
/// ceil(kv_len / splits) keys rounded up to 32 (one workgroup per chunk, block of 8 query rows
/// of a kv head's group, and batch). Buffers q, k, v, o_part (splits, B*Hq*q_len, head_dim),
/// lse_part (splits, B*Hq*q_len), key_start (as in [`forward`], with `masked`): each split's
/// output normalised over its own keys and natural log-sum-exp (a split that sees no key of a
/// row gives out 0, lse -1e30). With `splits == 1` these are out and lse; otherwise
/// [`decode_combine`] merges them. Any `splits >= 1` is correct; see [`decode_splits`] for the
/// count to use.
pub fn decode(s: &AttnShape, splits: usize, masked: bool) -> Launch {
    let splits = splits.max(1);
    let mask = if masked { Mask::KeyStart } else { Mask::None };
    Launch {
        kernel: DECODE,
        constants: s.constants(),
        workgroups: [
            splits as u32,
            (s.decode_row_blocks() * s.kv_heads) as u32,
            s.batch as u32,
        ],
        params: s.params_masked(splits, decode_chunk(s, splits), mask),
    }
}

/// `out, lse` from the partial results of [`decode`] with `splits > 1`; buffers o_part,
/// lse_part, out (like q), lse (batch, q_heads, q_len).
pub fn decode_combine(s: &AttnShape, splits: usize) -> Launch {
    Launch {
        kernel: COMBINE,
        constants: s.constants(),
        workgroups: grid_for(s.batch * s.q_heads * s.q_len * s.head_dim, 256),
        params: s.params(splits, 0),
    }
}

/// The key splits for [`decode`]: enough for `min_workgroups` workgroups in all, but no split
/// under 64 keys; every split it gives has keys (no empty trailing split).
pub fn decode_splits(s: &AttnShape, min_workgroups: usize) -> usize {
    let base = (s.batch * s.kv_heads * s.decode_row_blocks()).max(1);
    let most = s.kv_len.div_ceil(DECODE_MIN_CHUNK).max(1);
    let want = min_workgroups
        .div_ceil(base)
        .clamp(1, most)
        .min(crate::MAX_WORKGROUPS_PER_DIM as usize);
    s.kv_len.div_ceil(decode_chunk(s, want)).max(1)
}

/// Copy new keys and values (batch, kv_heads, new_len, head_dim) into rows offset.. of caches
/// (batch, kv_heads, capacity, head_dim), in place; buffers k_new, v_new, k_cache, v_cache.
pub fn kv_append(w: &CacheWrite) -> Launch {
    let n = w.batch * w.kv_heads * w.new_len * w.head_dim;
    Launch {
        kernel: APPEND,
        constants: vec![("HEAD_DIM", w.head_dim as f64)],
        workgroups: grid_for(n, 256),
        params: Params::new()
            .size(w.new_len)
            .size(0)
            .size(w.kv_heads)
            .f32(0.0)
            .size(n)
            .size(w.batch)
            .size(1)
            .size(0)
            .size(w.capacity)
            .size(0)
            .size(w.offset)
            .build(),
    }
}

/// `delta = rowsum(d_out * out)`; buffers d_out, out (like q), delta (like lse).
pub fn backward_delta(s: &AttnShape) -> Launch {
    Launch {
        kernel: DELTA,
        constants: s.constants(),
        workgroups: grid_for(s.batch * s.q_heads * s.q_len, 256),
        params: s.params(1, 0),
    }
}

/// The backward's mask: sequence starts or none (key starts have no backward).
fn backward_mask(seq_start: bool) -> Mask {
    if seq_start {
        Mask::SeqStart
    } else {
        Mask::None
    }
}

/// `dq`; buffers q, k, v, d_out, lse, delta, dq (like q), and the forward's sequence starts
/// when `seq_start` (otherwise not read: bind any).
pub fn backward_dq(s: &AttnShape, seq_start: bool) -> Launch {
    Launch {
        kernel: DQ,
        constants: s.constants(),
        workgroups: [s.blocks(), s.q_heads as u32, s.batch as u32],
        params: s.params_masked(1, 0, backward_mask(seq_start)),
    }
}

/// `dk, dv`; buffers q, k, v, d_out, lse, delta, dk, dv, and the sequence starts as in
/// [`backward_dq`]. Each kv head's group of query heads
/// is cut into `splits` parts (a divisor of q_heads / kv_heads, see [`dkv_splits`]): dk and dv
/// are (splits, batch, kv_heads, kv_len, head_dim), the sum over each part, to be added up
/// over the first dimension (with `splits == 1` they are the gradients, shaped like k and v).
pub fn backward_dkv(s: &AttnShape, splits: usize, seq_start: bool) -> Launch {
    debug_assert!(splits >= 1 && (s.q_heads / s.kv_heads).is_multiple_of(splits));
    Launch {
        kernel: DKV,
        constants: s.constants(),
        workgroups: [
            s.kv_len.div_ceil(BLOCK) as u32,
            s.kv_heads as u32,
            (s.batch * splits) as u32,
        ],
        params: s.params_masked(splits, 0, backward_mask(seq_start)),
    }
}

/// The parts to cut each group of query heads into in [`backward_dkv`]: 1 (the kernel sums
/// the whole group) when that gives at least `min_workgroups` workgroups, otherwise the
/// smallest divisor of the group size that does, or the group size (one head per part).
pub fn dkv_splits(s: &AttnShape, min_workgroups: usize) -> usize {
    let group = s.q_heads / s.kv_heads.max(1);
    let base = s.kv_len.div_ceil(BLOCK) * s.kv_heads * s.batch;
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
            q_len: t,
            kv_len: t,
            kv_stride: t,
            head_dim: 24,
            causal: true,
            scale: 0.5,
        }
    }

    #[test]
    fn grids_cover_every_block() {
        let s = shape(130);
        assert_eq!(forward(&s, Mask::None).workgroups, [3, 6, 2]);
        assert_eq!(backward_dq(&s, false).workgroups, [3, 6, 2]);
        assert_eq!(backward_dkv(&s, 1, false).workgroups, [3, 2, 2]);
        assert_eq!(backward_dkv(&s, 3, false).workgroups, [3, 2, 6]);
        assert_eq!(backward_dkv(&s, 3, true).params[6], 3);
        assert_eq!(backward_dkv(&s, 3, true).params[11], 2); // sequence starts
        assert_eq!(backward_delta(&s).workgroups, [7, 1, 1]); // 2 * 6 * 130 rows
        assert_eq!(forward(&s, Mask::None).params[3], 0.5f32.to_bits());
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
            q_len: 1024,
            kv_len: 1024,
            kv_stride: 1024,
            head_dim: 128,
            ..s
        };
        assert_eq!(dkv_splits(&q, 64), 2);
        assert_eq!(dkv_splits(&q, 65), 3);
        assert_eq!(dkv_splits(&q, 256), 6);
    }

    /// Decode grids: one workgroup per split, 8-row block of a group, kv head and batch; the
    /// splits cover the keys in chunks that are multiples of the 32-key tile.
    #[test]
    fn decode_grids_and_splits() {
        // Qwen2.5-1.5B decode: one query, group of 6 (one row block), 2 kv heads.
        let q = AttnShape {
            batch: 1,
            q_heads: 12,
            kv_heads: 2,
            q_len: 1,
            kv_len: 4096,
            kv_stride: 8192,
            head_dim: 128,
            causal: true,
            scale: 0.1,
        };
        assert!(uses_decode(&q));
        assert_eq!(decode_splits(&q, 256), 64); // at least 64 keys a split
        assert_eq!(decode(&q, 64, false).workgroups, [64, 2, 1]);
        let params = decode(&q, 64, true).params;
        assert_eq!(&params[6..10], &[64, 4096, 8192, 64]);
        assert_eq!(params[11], 1); // masked
        assert_eq!(forward(&q, Mask::None).params[11], 0);
        assert_eq!(decode_splits(&q, 8), 4);
        assert_eq!(decode_splits(&AttnShape { kv_len: 1024, ..q }, 256), 16);
        // 3 queries of a group of 3: 9 rows, 2 row blocks; splits never empty.
        let s = AttnShape {
            q_len: 3,
            kv_len: 130,
            kv_stride: 130,
            ..shape(3)
        };
        assert_eq!(decode(&s, 1, false).workgroups, [1, 4, 2]);
        for min in [1, 12, 13, 100, 10_000] {
            let n = decode_splits(&s, min);
            let chunk = decode_chunk(&s, n);
            assert!(chunk.is_multiple_of(DECODE_TILE) && chunk >= DECODE_MIN_CHUNK);
            assert!(
                (n - 1) * chunk < s.kv_len && n * chunk >= s.kv_len,
                "{min}: {n} x {chunk}"
            );
        }
        assert_eq!(decode_combine(&s, 3).workgroups, [4, 1, 1]); // 2 * 6 * 3 * 24 elements
        assert!(!uses_decode(&shape(3)));
        assert!(!uses_decode(&AttnShape { q_len: 17, ..s }));
    }

    #[test]
    fn kv_append_params() {
        let w = CacheWrite {
            batch: 2,
            kv_heads: 3,
            new_len: 5,
            head_dim: 8,
            capacity: 40,
            offset: 7,
        };
        let l = kv_append(&w);
        assert_eq!(l.workgroups, [1, 1, 1]); // 240 elements
        assert_eq!(
            (l.params[0], l.params[4], l.params[8], l.params[10]),
            (5, 240, 40, 7)
        );
    }

    #[test]
    fn workgroup_bytes_match_the_wgsl() {
        let declared: u32 = SOURCE
            .wgsl
            .lines()
            .filter_map(|l| l.strip_prefix("var<workgroup> "))
            .map(|l| {
                let n = l.rsplit(", ").next().unwrap().trim_end_matches(">;");
                n.parse::<u32>().unwrap() * 16 // every array is of 16-byte vec4s
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
        let fewer_keys = AttnShape {
            q_len: 5,
            kv_len: 4,
            kv_stride: 4,
            ..shape(5)
        };
        assert!(fewer_keys.check().is_err());
        assert!(AttnShape {
            causal: false,
            ..fewer_keys
        }
        .check()
        .is_ok());
        assert!(AttnShape {
            kv_stride: 3,
            ..fewer_keys
        }
        .check()
        .is_err());
    }
}
