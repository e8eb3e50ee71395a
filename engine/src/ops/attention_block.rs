//! Self-attention with f16 q, k, v whose six products are matmuls on the f16 kernels
//! (cooperative matrices, i.e. tensor cores, where the adapter has them). A block is one batch
//! row and kv head: the scores of its G query heads, S = Q K^T ((G T) x T, f32), are one
//! product, a kernel turns them into f16 probabilities P (masked, scaled softmax; the
//! log-sum-exps kept), and O = P V is another. The backward recomputes S and P and takes
//! dV = P^T dO, dP = dO V^T, dS = scale P (dP - rowsum(dO O)), dQ = dS K and dK = dS^T Q,
//! the sums over a kv head's query heads falling out of the products. Consecutive blocks are
//! batched into one series of dispatches as far as [`MAX_SCORE_CELLS`] scores allow (the
//! forward holds 6 bytes per score cell, the backward 12). [`applies`] says where this beats
//! falling back: the flash kernels (`attention.rs`) stay the path for long sequences, caches,
//! f32 and adapters without cooperative matrices.

use kernels::attention_block::{self as kb, ScoreBlock};

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::attention::check_qkv;
use crate::ops::matmul::product_batch_at;
use crate::ops::run;
use crate::tensor::Tensor;

const OP: &str = "attention_f16";

/// The sizes of one call, after the checks.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    hq: usize,
    hkv: usize,
    t: usize,
    d: usize,
    causal: bool,
    scale: f32,
}

impl Dims {
    /// Query heads per kv head.
    fn group(&self) -> usize {
        self.hq / self.hkv
    }
    /// Score cells of one block.
    fn cells(&self) -> usize {
        self.group() * self.t * self.t
    }
    /// Blocks (batch row, kv head) per chunk: as many as the score budget and the binding
    /// limit allow, at least one.
    fn per_chunk(&self, max_binding: u64) -> usize {
        let cap = MAX_SCORE_CELLS.min(max_binding / 4) as usize;
        (cap / self.cells().max(1)).clamp(1, self.b * self.hkv)
    }
    /// The chunks: (first block, blocks) over all B Hkv blocks in order.
    fn chunks(&self, max_binding: u64) -> Vec<(usize, usize)> {
        let (all, per) = (self.b * self.hkv, self.per_chunk(max_binding));
        (0..all)
            .step_by(per)
            .map(|j| (j, per.min(all - j)))
            .collect()
    }
    /// The score rows of `nb` blocks from block `j0` (their lse at row j0 G T of (B, Hq, T)).
    fn rows(&self, j0: usize, nb: usize) -> ScoreBlock {
        let gt = self.group() * self.t;
        ScoreBlock {
            rows: nb * gt,
            t: self.t,
            causal: self.causal,
            scale: self.scale,
            lse_base: j0 * gt,
        }
    }
    /// (base, stride) in elements of the query (and output) rows of the blocks from `j0`.
    fn q_at(&self, j0: usize) -> (usize, usize) {
        let stride = self.group() * self.t * self.d;
        (j0 * stride, stride)
    }
    /// (base, stride) of their key (and value) rows.
    fn k_at(&self, j0: usize) -> (usize, usize) {
        let stride = self.t * self.d;
        (j0 * stride, stride)
    }
}

/// Most score cells (G T^2 per block) held at once: 256 MiB of f32 scores in the forward,
/// 768 MiB of scores, probabilities and their gradients in the backward.
pub const MAX_SCORE_CELLS: u64 = 1 << 26;

/// Score cells of one block (G T^2).
fn block_cells(q_heads: usize, kv_heads: usize, seq_len: usize) -> u64 {
    (q_heads / kv_heads.max(1)) as u64 * (seq_len as u64).pow(2)
}

/// Whether [`attention_f16`] takes these shapes (one block's scores within
/// [`MAX_SCORE_CELLS`] and the adapter's binding limit).
pub fn fits(dev: &crate::Device, q_heads: usize, kv_heads: usize, seq_len: usize) -> bool {
    let cells = block_cells(q_heads, kv_heads, seq_len);
    cells <= MAX_SCORE_CELLS && cells * 4 <= dev.max_binding_bytes()
}

/// Whether the blocks are the better path for self-attention of these shapes on `dev`: they
/// fit, and every product lands on cooperative matrices (T and D multiples of 16 on an
/// adapter that has them); elsewhere the f32 flash kernels are.
pub fn applies(
    dev: &crate::Device,
    q_heads: usize,
    kv_heads: usize,
    seq_len: usize,
    head_dim: usize,
) -> bool {
    dev.coop_fragment().is_some()
        && seq_len.is_multiple_of(16)
        && head_dim.is_multiple_of(16)
        && fits(dev, q_heads, kv_heads, seq_len)
}

/// `softmax(scale q k^T + mask) v` for self-attention (as many queries as keys; with `causal`,
/// position i sees keys 0..=i) with q (B, Hq, T, D), k and v (B, Hkv, T, D) all f16, query
/// head h reading kv head h / (Hq / Hkv). Returns (B, Hq, T, D) in f32; the gradients it
/// records are f32. `scale` defaults to 1 / sqrt(D). Errors where the shapes do not [`fits`].
pub fn attention_f16(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
) -> Result<Tensor> {
    let dm = check(q, k, v, causal, scale)?;
    let dev = q.device();
    let out = Tensor::uninit(dev, OP, q.shape(), DType::F32)?;
    let lse = Tensor::uninit(dev, OP, &[dm.b, dm.hq, dm.t], DType::F32)?;
    let chunks = dm.chunks(dev.max_binding_bytes());
    let cells = dm.cells() * chunks[0].1;
    let s = Tensor::uninit(dev, OP, &[cells], DType::F32)?;
    let p = Tensor::uninit(dev, OP, &[cells], DType::F16)?;
    let (gt, t, d, cs) = (dm.group() * dm.t, dm.t, dm.d, dm.cells());
    for (j0, nb) in chunks {
        let ((qo, qs), (ko, ks)) = (dm.q_at(j0), dm.k_at(j0));
        scores(&dm, q, k, &s, j0, nb)?;
        run(OP, &kb::softmax(&dm.rows(j0, nb)), &[&s, &p, &lse])?;
        // O (G T, D) = P (G T, T) V (T, D).
        let oc = (&out, qo, qs);
        product_batch_at(
            OP,
            (&p, 0, cs),
            (v, ko, ks),
            oc,
            nb,
            [gt, d, t],
            false,
            false,
        )?;
    }
    let saved = || BlockAttentionBackward {
        dm,
        q: q.detach(),
        k: k.detach(),
        v: v.detach(),
        out: out.detach(),
        lse,
    };
    Ok(out.clone().recorded(&[q, k, v], saved))
}

/// S (G T, T) = Q (G T, D) K^T for the `nb` blocks from `j0`, one after another in `s`.
fn scores(dm: &Dims, q: &Tensor, k: &Tensor, s: &Tensor, j0: usize, nb: usize) -> Result<()> {
    let ((qo, qs), (ko, ks)) = (dm.q_at(j0), dm.k_at(j0));
    let mnk = [dm.group() * dm.t, dm.t, dm.d];
    let sc = (s, 0, dm.cells());
    product_batch_at(OP, (q, qo, qs), (k, ko, ks), sc, nb, mnk, false, true)
}

fn check(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool, scale: Option<f32>) -> Result<Dims> {
    check_qkv(OP, q, k, v, DType::F16)?;
    let (qs, ks) = (q.shape(), k.shape());
    // Self-attention only: as many queries as keys.
    if qs[2] != ks[2] {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: qs.to_vec(),
            rhs: ks.to_vec(),
        });
    }
    if qs.contains(&0) {
        return Err(Error::BadShape {
            op: OP,
            shape: qs.to_vec(),
            reason: "batch, heads, seq_len and head_dim must be positive".into(),
        });
    }
    if !fits(q.device(), qs[1], ks[1], qs[2]) {
        let bytes = block_cells(qs[1], ks[1], qs[2]) * 4;
        return Err(Error::BindingTooLarge {
            op: OP,
            bytes,
            limit: (MAX_SCORE_CELLS * 4).min(q.device().max_binding_bytes()),
        });
    }
    Ok(Dims {
        b: qs[0],
        hq: qs[1],
        hkv: ks[1],
        t: qs[2],
        d: qs[3],
        causal,
        scale: scale.unwrap_or(1.0 / (qs[3].max(1) as f32).sqrt()),
    })
}

struct BlockAttentionBackward {
    dm: Dims,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
}

impl Backward for BlockAttentionBackward {
    fn name(&self) -> &'static str {
        OP
    }

    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "attention_f16 backward";
        g.expect_dtype(OP, DType::F32)?;
        let (dm, q, k, v) = (self.dm, &self.q, &self.k, &self.v);
        let dev = q.device();
        let g16 = g.to_dtype(DType::F16)?;
        // delta from the f16 dO the products see, so that each row of dS sums to zero.
        let delta = Tensor::uninit(dev, OP, &[dm.b * dm.hq * dm.t], DType::F32)?;
        run(
            OP,
            &kb::delta(dm.b * dm.hq * dm.t, dm.d),
            &[&g16, &self.out, &delta],
        )?;
        let dq = Tensor::uninit(dev, OP, q.shape(), DType::F32)?;
        let dk = Tensor::uninit(dev, OP, k.shape(), DType::F32)?;
        let dv = Tensor::uninit(dev, OP, v.shape(), DType::F32)?;
        let chunks = dm.chunks(dev.max_binding_bytes());
        let cells = dm.cells() * chunks[0].1;
        let s = Tensor::uninit(dev, OP, &[cells], DType::F32)?;
        let dp = Tensor::uninit(dev, OP, &[cells], DType::F32)?;
        let p = Tensor::uninit(dev, OP, &[cells], DType::F16)?;
        let ds = Tensor::uninit(dev, OP, &[cells], DType::F16)?;
        let (gt, t, d, cs) = (dm.group() * dm.t, dm.t, dm.d, dm.cells());
        for (j0, nb) in chunks {
            let ((qo, qs), (ko, ks)) = (dm.q_at(j0), dm.k_at(j0));
            let blk = dm.rows(j0, nb);
            let (sq, sk, sg) = ((q, qo, qs), (k, ko, ks), (&g16, qo, qs));
            scores(&dm, q, k, &s, j0, nb)?;
            run(OP, &kb::probs(&blk), &[&s, &self.lse, &p])?;
            // dV (T, D) = P^T (T, G T) dO (G T, D).
            let dvc = (&dv, ko, ks);
            product_batch_at(OP, (&p, 0, cs), sg, dvc, nb, [t, d, gt], true, false)?;
            // dP (G T, T) = dO (G T, D) V^T (D, T).
            let dpc = (&dp, 0, cs);
            product_batch_at(OP, sg, (v, ko, ks), dpc, nb, [gt, t, d], false, true)?;
            run(OP, &kb::dsoft(&blk), &[&s, &self.lse, &dp, &delta, &ds])?;
            // dQ (G T, D) = dS (G T, T) K (T, D); dK (T, D) = dS^T (T, G T) Q (G T, D).
            let (dqc, dkc) = ((&dq, qo, qs), (&dk, ko, ks));
            product_batch_at(OP, (&ds, 0, cs), sk, dqc, nb, [gt, d, t], false, false)?;
            product_batch_at(OP, (&ds, 0, cs), sq, dkc, nb, [t, d, gt], true, false)?;
        }
        Ok(vec![Some(dq), Some(dk), Some(dv)])
    }
}
