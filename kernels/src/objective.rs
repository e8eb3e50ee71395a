//! Launchers for `wgsl/objective.wgsl`: the fused LM head + probability-based objective
//! (forward over vocabulary tiles with an online log-sum-exp, a one-workgroup finish that
//! evaluates the objective and the token mean), and its backward (logit gradients recomputed
//! a block of vocabulary rows at a time, then dW and dx as register-tiled products).

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "objective",
    wgsl: concat!(
        include_str!("../wgsl/objective.wgsl"),
        include_str!("../wgsl/objective_math.wgsl")
    ),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const FWD: Kernel = Kernel {
    source: &SOURCE,
    entry: "obj_fwd",
    bindings: &[1, 2, 3, 4],
};
const FINISH: Kernel = Kernel {
    source: &SOURCE,
    entry: "obj_finish",
    bindings: &[5, 6, 7, 8, 9, 10, 11, 12],
};
const LOGP: Kernel = Kernel {
    source: &SOURCE,
    entry: "obj_logp",
    bindings: &[13, 14, 15],
};
const DLOGITS: Kernel = Kernel {
    source: &SOURCE,
    entry: "obj_dlogits",
    bindings: &[16, 17, 18, 19, 20, 21],
};
const MM: Kernel = Kernel {
    source: &SOURCE,
    entry: "obj_mm",
    bindings: &[22, 23, 24],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// Tokens, and vocabulary rows, per tile.
pub const TILE: usize = 64;
/// Workgroups the forward aims for (splitting the vocabulary) so that a GPU is filled.
const TARGET_WORKGROUPS: usize = 2048;
/// Most elements of one block of logit gradients (N x block rows) the backward holds.
pub const BLOCK_ELEMS: usize = 1 << 24;
/// Most vocabulary rows per backward block.
pub const MAX_BLOCK_ROWS: usize = 4096;

/// The per-token loss the finish kernel evaluates from log p (see the WGSL `objective`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// (1 - p^alpha) / alpha; alpha = 0 is -log p.
    FAlpha(f32),
    /// 1 - p (or -log p when `nll`) on tokens whose threshold probability (the `thr` buffer
    /// when `given`, else the current p) is >= q (`keep_above`) or <= q; others are dropped.
    Threshold {
        q: f32,
        keep_above: bool,
        nll: bool,
        given: bool,
    },
    /// -p^q / q.
    NegPow(f32),
    /// log(1 - p + 1e-3).
    Unlikelihood,
    /// -sg(p) log p.
    Dft,
}

impl Loss {
    /// (kind, flags, alpha, q) words of the parameter block.
    fn words(self) -> (u32, u32, f32, f32) {
        match self {
            Loss::FAlpha(a) => (0, 0, a, 0.0),
            Loss::Threshold {
                q,
                keep_above,
                nll,
                given,
            } => (
                1,
                u32::from(keep_above) | u32::from(nll) << 1 | u32::from(given) << 2,
                0.0,
                q,
            ),
            Loss::NegPow(q) => (2, 0, q, 0.0),
            Loss::Unlikelihood => (3, 0, 0.0, 0.0),
            Loss::Dft => (4, 0, 0.0, 0.0),
        }
    }
}

/// How the forward splits the vocabulary: each workgroup covers `split_tiles` tiles of one
/// chunk, chunk `c` has `splits[c]` splits, and the splits of all chunks number `s_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardPlan {
    pub split_tiles: usize,
    pub splits: Vec<usize>,
    pub s_total: usize,
}

impl ForwardPlan {
    /// Elements of the partial-result buffer: (3, s_total, n).
    pub fn partials_len(&self, n: usize) -> usize {
        3 * self.s_total * n
    }
}

/// Split the vocabulary (chunks of `chunk_rows` rows) so that `n` tokens give about
/// `TARGET_WORKGROUPS` workgroups, each over at least one tile.
pub fn forward_plan(n: usize, chunk_rows: &[usize]) -> ForwardPlan {
    let token_tiles = n.div_ceil(TILE).max(1);
    let tiles: Vec<usize> = chunk_rows.iter().map(|r| r.div_ceil(TILE)).collect();
    let total: usize = tiles.iter().sum();
    let split_tiles = (total * token_tiles).div_ceil(TARGET_WORKGROUPS).max(1);
    let splits: Vec<usize> = tiles.iter().map(|t| t.div_ceil(split_tiles)).collect();
    let s_total = splits.iter().sum();
    ForwardPlan {
        split_tiles,
        splits,
        s_total,
    }
}

/// Elements of the buffer the finish kernel saves for the backward: per-token gradient
/// weights (n), log-sum-exps (n), log p (n), and the denominator (1).
pub fn saved_len(n: usize) -> usize {
    3 * n + 1
}

/// The parameter block (every kernel reads its own fields of one struct).
#[derive(Debug, Default, Clone, Copy)]
struct Words {
    n: usize,
    d: usize,
    rows: usize,
    v_off: usize,
    split_tiles: usize,
    s_base: usize,
    s_total: usize,
    v_total: usize,
    blk0: usize,
    vb: usize,
    kind: u32,
    flags: u32,
    alpha: f32,
    thr_q: f32,
    mm: [usize; 3],
    b_off: usize,
    c_off: usize,
    accumulate: bool,
}

impl Words {
    fn build(&self) -> Vec<u32> {
        Params::new()
            .size(self.n)
            .size(self.d)
            .size(self.rows)
            .size(self.v_off)
            .size(self.split_tiles)
            .size(self.s_base)
            .size(self.s_total)
            .size(self.v_total)
            .size(self.blk0)
            .size(self.vb)
            .u32(self.kind)
            .u32(self.flags)
            .f32(self.alpha)
            .f32(self.thr_q)
            .size(self.mm[0])
            .size(self.mm[1])
            .size(self.mm[2])
            .size(self.b_off)
            .size(self.c_off)
            .u32(u32::from(self.accumulate))
            .build()
    }
}

fn tiles(n: usize) -> u32 {
    u32::try_from(n.div_ceil(TILE)).unwrap_or(u32::MAX)
}

/// Forward over chunk `chunk` of `plan` (rows `rows`, first vocabulary id `v_off`):
/// buffers x (n, d), w (rows, d), targets (n), part (plan.partials_len(n)).
pub fn forward(
    n: usize,
    d: usize,
    rows: usize,
    v_off: usize,
    plan: &ForwardPlan,
    chunk: usize,
) -> Launch {
    let w = Words {
        n,
        d,
        rows,
        v_off,
        split_tiles: plan.split_tiles,
        s_base: plan.splits[..chunk].iter().sum(),
        s_total: plan.s_total,
        ..Default::default()
    };
    Launch {
        kernel: FWD,
        constants: vec![],
        workgroups: [plan.splits[chunk] as u32, tiles(n), 1],
        params: w.build(),
    }
}

/// Merge the splits, evaluate `loss` per token and the token mean over the kept mask, in one
/// workgroup: buffers part, targets (n), mask (n), thr (n; any f32 buffer unless
/// `Loss::Threshold { given: true, .. }`), log_p (n), token_loss (n), saved (saved_len(n)),
/// loss (1).
pub fn finish(n: usize, s_total: usize, v_total: usize, loss: Loss) -> Launch {
    let (kind, flags, alpha, thr_q) = loss.words();
    let w = Words {
        n,
        s_total,
        v_total,
        kind,
        flags,
        alpha,
        thr_q,
        ..Default::default()
    };
    Launch {
        kernel: FINISH,
        constants: vec![],
        workgroups: [1, 1, 1],
        params: w.build(),
    }
}

/// log p per token only: buffers part, targets (n), log_p (n).
pub fn log_probs(n: usize, s_total: usize, v_total: usize) -> Launch {
    let w = Words {
        n,
        s_total,
        v_total,
        ..Default::default()
    };
    Launch {
        kernel: LOGP,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: w.build(),
    }
}

/// Vocabulary rows per backward block for `n` tokens and a chunk of `rows`: as many as
/// `BLOCK_ELEMS` allows, at most `MAX_BLOCK_ROWS`, a multiple of the tile (or the chunk).
pub fn block_rows(n: usize, rows: usize) -> usize {
    let fit = (BLOCK_ELEMS / n.max(1)) / TILE * TILE;
    fit.clamp(TILE, MAX_BLOCK_ROWS).min(rows).max(1)
}

/// Logit gradients of block rows blk0..blk0+vb of a chunk: buffers x (n, d), w (rows, d),
/// targets (n), saved, grad (1), dz (n, vb).
pub fn dlogits(n: usize, d: usize, v_off: usize, blk0: usize, vb: usize) -> Launch {
    let w = Words {
        n,
        d,
        v_off,
        blk0,
        vb,
        ..Default::default()
    };
    Launch {
        kernel: DLOGITS,
        constants: vec![],
        workgroups: [tiles(vb), tiles(n), 1],
        params: w.build(),
    }
}

fn mm(
    m: usize,
    nn: usize,
    k: usize,
    trans_a: bool,
    b_off: usize,
    c_off: usize,
    acc: bool,
) -> Launch {
    let w = Words {
        mm: [m, nn, k],
        b_off,
        c_off,
        accumulate: acc,
        ..Default::default()
    };
    Launch {
        kernel: MM,
        constants: vec![("TRANS_A", f64::from(u8::from(trans_a)))],
        workgroups: [tiles(nn), tiles(m), 1],
        params: w.build(),
    }
}

/// dW rows blk0..blk0+vb of a chunk = dz^T x: buffers dz (n, vb), x (n, d), dw (rows, d).
pub fn grad_w(n: usize, d: usize, blk0: usize, vb: usize) -> Launch {
    mm(vb, d, n, true, 0, blk0 * d, false)
}

/// dx (+)= dz w[blk0..blk0+vb]: buffers dz (n, vb), w (rows, d), dx (n, d); adds to dx when
/// `accumulate`, else overwrites it.
pub fn grad_x(n: usize, d: usize, blk0: usize, vb: usize, accumulate: bool) -> Launch {
    mm(n, d, vb, false, blk0 * d, 0, accumulate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_tile_once() {
        for (n, rows) in [
            (1, vec![1]),
            (64, vec![50_000]),
            (4096, vec![151_936]),
            (33, vec![300, 257, 443]),
            (100_000, vec![7, 0, 9]),
        ] {
            let p = forward_plan(n, &rows);
            for (r, s) in rows.iter().zip(&p.splits) {
                let t = r.div_ceil(TILE);
                assert!(s * p.split_tiles >= t, "{n} {rows:?} {p:?}");
                assert!(*s == 0 || (s - 1) * p.split_tiles < t, "empty split {p:?}");
            }
            assert_eq!(p.s_total, p.splits.iter().sum::<usize>());
        }
        // The real size: enough workgroups, few partials.
        let p = forward_plan(4096, &[151_936]);
        let wgs = p.s_total * 4096 / TILE;
        assert!(
            (TARGET_WORKGROUPS / 2..=2 * TARGET_WORKGROUPS).contains(&wgs),
            "{wgs}"
        );
    }

    #[test]
    fn blocks_bound_the_gradient_buffer() {
        assert_eq!(block_rows(4096, 151_936), 4096);
        assert_eq!(block_rows(64, 50_000), MAX_BLOCK_ROWS);
        assert_eq!(block_rows(64, 7), 7);
        assert_eq!(block_rows(1 << 20, 151_936), TILE);
        for n in [1, 5, 4096, 16_384, 1 << 20] {
            let b = block_rows(n, 1 << 30);
            assert!(b * n <= BLOCK_ELEMS.max(n * TILE) && b.is_multiple_of(TILE));
        }
    }

    #[test]
    fn parameter_block_fits_and_flags_pack() {
        let l = finish(
            5,
            3,
            100,
            Loss::Threshold {
                q: 0.5,
                keep_above: true,
                nll: false,
                given: true,
            },
        );
        assert_eq!(l.params.len(), 20);
        assert_eq!(l.params[10..12], [1, 0b101]);
        assert_eq!(f32::from_bits(l.params[13]), 0.5);
        assert_eq!(grad_x(10, 8, 64, 32, true).params[18..20], [0, 1]);
    }

    /// validate.rs checks the default TRANS_A = false; here both values, with and without the
    /// bounds-check policies of a checked device, go through naga's SPIR-V writer.
    #[test]
    fn both_transposes_write_spirv() {
        for ta in [false, true] {
            crate::spirv_check::assert_writes_spirv(
                &SOURCE,
                &[("TRANS_A", f64::from(u8::from(ta)))],
            );
        }
    }
}
