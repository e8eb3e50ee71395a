//! Launchers for `wgsl/objective_block.wgsl`: the f16 path of the fused LM head + objective,
//! where each block of logits is a matmul (on cooperative matrices where the adapter has them)
//! and these kernels reduce it to the forward's partials or turn it into f16 logit gradients.

use crate::matmul::COOP_MULTIPLE;
use crate::objective::{BLOCK_ELEMS, MAX_BLOCK_ROWS};
use crate::{grid_1d, grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "objective_block",
    wgsl: concat!(
        include_str!("../wgsl/objective_block.wgsl"),
        include_str!("../wgsl/objective_math.wgsl")
    ),
    needs: Needs {
        f16: true,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const STATS: Kernel = Kernel {
    source: &SOURCE,
    entry: "blk_stats",
    bindings: &[1, 2, 3],
};
const DZ: Kernel = Kernel {
    source: &SOURCE,
    entry: "blk_dz",
    bindings: &[4, 5, 6, 7, 8],
};

const SCALE: Kernel = Kernel {
    source: &SOURCE,
    entry: "blk_scale",
    bindings: &[9, 10, 11],
};
const UNSCALE: Kernel = Kernel {
    source: &SOURCE,
    entry: "blk_unscale",
    bindings: &[12, 13],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// A block of vocabulary rows: rows `start..start + len` of chunk `chunk`, whose first row is
/// vocabulary id `v_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub chunk: usize,
    pub start: usize,
    pub len: usize,
    pub v_start: usize,
}

/// Most rows of a block for `n` tokens when a block of f32 logits may hold `max_bytes`: a
/// multiple of 16 (the cooperative-matrix tile), at most [`MAX_BLOCK_ROWS`], n x rows at most
/// [`BLOCK_ELEMS`], and at least 16.
pub fn block_len(n: usize, max_bytes: u64) -> usize {
    let by_bytes = usize::try_from(max_bytes / 4 / n.max(1) as u64).unwrap_or(usize::MAX);
    let len = (BLOCK_ELEMS / n.max(1)).min(by_bytes).min(MAX_BLOCK_ROWS);
    (len / COOP_MULTIPLE * COOP_MULTIPLE).max(COOP_MULTIPLE)
}

/// The blocks of every chunk in order (the split index of a block is its position): blocks of
/// `len` rows (a multiple of 16) over the rows a multiple of 16 covers, then the last rows of
/// the chunk, if any, as a block of their own, so that every product but those of the last
/// few rows fits the cooperative-matrix kernels.
pub fn blocks(chunk_rows: &[usize], len: usize) -> Vec<Block> {
    let len = len.max(1);
    let mut out = Vec::new();
    let mut v_off = 0;
    for (chunk, &rows) in chunk_rows.iter().enumerate() {
        let whole = rows / COOP_MULTIPLE * COOP_MULTIPLE;
        let mut start = 0;
        while start < whole {
            let l = len.min(whole - start);
            out.push(Block {
                chunk,
                start,
                len: l,
                v_start: v_off + start,
            });
            start += l;
        }
        if whole < rows {
            out.push(Block {
                chunk,
                start: whole,
                len: rows - whole,
                v_start: v_off + whole,
            });
        }
        v_off += rows;
    }
    out
}

/// Most splits the forward's partials hold: block i goes to split i % SPLITS (merged into
/// what earlier blocks left there), so that the partials and the finish kernel's serial merge
/// stay small however many blocks the vocabulary takes.
pub const SPLITS: usize = 16;

/// Splits of the partials for `blocks` blocks.
pub fn splits(blocks: usize) -> usize {
    blocks.clamp(1, SPLITS)
}

fn words(n: usize, b: &Block, split: usize, s_total: usize, fresh: bool) -> Vec<u32> {
    Params::new()
        .size(n)
        .size(b.len)
        .size(b.v_start)
        .size(split)
        .size(s_total)
        .u32(u32::from(fresh))
        .build()
}

/// The partials of block number `index` from its logits, into split `index % s_total`
/// (`s_total` = [`splits`] of the block count): buffers z (n, len) f32, targets (n),
/// part (3, s_total, n).
pub fn stats(n: usize, b: &Block, index: usize, s_total: usize) -> Launch {
    Launch {
        kernel: STATS,
        constants: vec![],
        workgroups: grid_1d(u32::try_from(n).unwrap_or(u32::MAX)),
        params: words(n, b, index % s_total, s_total, index < s_total),
    }
}

/// The power-of-two scale of the f16 logit gradients of `n` tokens: buffers saved (3n + 1),
/// grad (1), scale (3) (see the WGSL).
pub fn scale(n: usize) -> Launch {
    Launch {
        kernel: SCALE,
        constants: vec![],
        workgroups: [1, 1, 1],
        params: Params::new().size(n).build(),
    }
}

/// `t *= 1 / S` over `count` f32 elements in place: buffers t, scale (3).
pub fn unscale(count: usize) -> Launch {
    Launch {
        kernel: UNSCALE,
        constants: vec![],
        workgroups: grid_for(count, 256),
        params: Params::new().size(count).build(),
    }
}

/// The block's logit gradients times S in f16 from its logits: buffers z (n, len) f32,
/// targets (n), saved (3n + 1), scale (3), dz (n, len) f16.
pub fn dz(n: usize, b: &Block) -> Launch {
    Launch {
        kernel: DZ,
        constants: vec![],
        workgroups: grid_for(n * b.len, 256),
        params: words(n, b, 0, 0, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_row_once_in_tiles_of_16() {
        for (rows, len) in [
            (vec![300], 4096),
            (vec![300, 17, 5], 64),
            (vec![151_936], 4096),
            (vec![16], 16),
            (vec![0, 40], 16),
        ] {
            let bs = blocks(&rows, len);
            let mut v = 0;
            for (c, &r) in rows.iter().enumerate() {
                let mine: Vec<&Block> = bs.iter().filter(|b| b.chunk == c).collect();
                let mut at = 0;
                for (i, b) in mine.iter().enumerate() {
                    assert_eq!((b.start, b.v_start), (at, v + at), "{rows:?} {bs:?}");
                    assert!(b.len > 0 && b.len <= len);
                    // Only a chunk's last block may be off the 16-row tile.
                    if i + 1 < mine.len() {
                        assert_eq!(b.len % 16, 0, "{bs:?}");
                    }
                    at += b.len;
                }
                assert_eq!(at, r);
                v += r;
            }
        }
        assert_eq!(blocks(&[300], 4096).len(), 2); // 288 + 12
        assert_eq!(blocks(&[151_936], 4096).len(), 38);
    }

    #[test]
    fn blocks_share_at_most_sixteen_splits() {
        let b = blocks(&[151_936], 4096)[0];
        let split_and_fresh = |i: usize| {
            let p = stats(8, &b, i, splits(38)).params;
            (p[3], p[5])
        };
        assert_eq!(splits(38), 16);
        assert_eq!(splits(2), 2);
        assert_eq!(split_and_fresh(0), (0, 1));
        assert_eq!(split_and_fresh(15), (15, 1));
        assert_eq!(split_and_fresh(16), (0, 0));
        assert_eq!(split_and_fresh(37), (5, 0));
    }

    #[test]
    fn block_len_respects_every_bound() {
        assert_eq!(block_len(4096, u64::MAX), 4096);
        assert_eq!(block_len(8192, u64::MAX), 2048);
        assert_eq!(block_len(3, u64::MAX), MAX_BLOCK_ROWS);
        assert_eq!(block_len(1000, 4 * 1000 * 100), 96);
        assert_eq!(block_len(1 << 30, 1024), 16);
    }

    #[test]
    fn writes_spirv() {
        crate::spirv_check::assert_writes_spirv(&SOURCE, &[]);
    }
}
