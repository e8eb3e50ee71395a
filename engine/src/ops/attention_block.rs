//! Self-attention with f16 q, k, v whose six products are matmuls on the f16 kernels
//! (cooperative matrices, i.e. tensor cores, where the adapter has them): for each batch row
//! and kv head, the scores of its G query heads S = Q K^T ((G T) x T, f32) are one product,
//! a kernel turns them into f16 probabilities P (masked, scaled softmax; the log-sum-exps
//! kept), and O = P V is another. The backward recomputes S and P and takes
//! dV = P^T dO, dP = dO V^T, dS = scale P (dP - rowsum(dO O)), dQ = dS K and dK = dS^T Q,
//! the sums over a kv head's query heads falling out of the products. The scores of one block
//! at a time are held (G T^2 floats), never all of them: the flash kernels (`attention.rs`)
//! remain the path for long sequences, caches and f32.

use kernels::attention_block::{self as kb, ScoreBlock};

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::matmul::product_at;
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
    /// The score block of batch row `bi`, kv head `gi`, and the element offsets of its
    /// queries (and output rows) and of its keys (and values).
    fn block(&self, bi: usize, gi: usize) -> (ScoreBlock, usize, usize) {
        let g = self.group();
        let head0 = bi * self.hq + gi * g;
        let blk = ScoreBlock {
            rows: g * self.t,
            t: self.t,
            causal: self.causal,
            scale: self.scale,
            lse_base: head0 * self.t,
        };
        (
            blk,
            head0 * self.t * self.d,
            (bi * self.hkv + gi) * self.t * self.d,
        )
    }
}

/// Bytes of one block of f32 scores for these shapes: what [`attention_f16`] holds at once.
pub fn score_block_bytes(q_heads: usize, kv_heads: usize, seq_len: usize) -> u64 {
    (q_heads / kv_heads.max(1)) as u64 * (seq_len as u64).pow(2) * 4
}

/// `softmax(scale q k^T + mask) v` for self-attention (as many queries as keys; with `causal`,
/// position i sees keys 0..=i) with q (B, Hq, T, D), k and v (B, Hkv, T, D) all f16, query
/// head h reading kv head h / (Hq / Hkv). Returns (B, Hq, T, D) in f32; the gradients it
/// records are f32. `scale` defaults to 1 / sqrt(D). Errors where one block of scores,
/// [`score_block_bytes`], exceeds the adapter's binding limit.
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
    let cells = dm.group() * dm.t * dm.t;
    let s = Tensor::uninit(dev, OP, &[cells], DType::F32)?;
    let p = Tensor::uninit(dev, OP, &[cells], DType::F16)?;
    let (rows, t, d) = (dm.group() * dm.t, dm.t, dm.d);
    for bi in 0..dm.b {
        for gi in 0..dm.hkv {
            let (blk, qo, ko) = dm.block(bi, gi);
            product_at(OP, (q, qo), (k, ko), (&s, 0), [rows, t, d], false, true)?;
            run(OP, &kb::softmax(&blk), &[&s, &p, &lse])?;
            product_at(OP, (&p, 0), (v, ko), (&out, qo), [rows, d, t], false, false)?;
        }
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

fn check(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool, scale: Option<f32>) -> Result<Dims> {
    for t in [q, k, v] {
        t.expect_dtype(OP, DType::F16)?;
        t.check_same_device(OP, q)?;
        if t.rank() != 4 {
            return Err(Error::BadShape {
                op: OP,
                shape: t.shape().to_vec(),
                reason: "q, k and v must have rank 4: (batch, heads, seq_len, head_dim)".into(),
            });
        }
    }
    let (qs, ks) = (q.shape(), k.shape());
    if k.shape() != v.shape()
        || qs[0] != ks[0]
        || qs[2] != ks[2]
        || qs[3] != ks[3]
        || ks[1] == 0
        || !qs[1].is_multiple_of(ks[1])
    {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: qs.to_vec(),
            rhs: ks.to_vec(),
        });
    }
    if qs[0] == 0 || qs[2] == 0 || qs[3] == 0 {
        return Err(Error::BadShape {
            op: OP,
            shape: qs.to_vec(),
            reason: "batch, seq_len and head_dim must be positive".into(),
        });
    }
    let bytes = score_block_bytes(qs[1], ks[1], qs[2]);
    let limit = q.device().max_binding_bytes();
    if bytes > limit {
        return Err(Error::BindingTooLarge {
            op: OP,
            bytes,
            limit,
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
        let delta = Tensor::uninit(dev, OP, &[dm.b * dm.hq * dm.t], DType::F32)?;
        run(
            OP,
            &kb::delta(dm.b * dm.hq * dm.t, dm.d),
            &[g, &self.out, &delta],
        )?;
        let g16 = g.to_dtype(DType::F16)?;
        let dq = Tensor::uninit(dev, OP, q.shape(), DType::F32)?;
        let dk = Tensor::uninit(dev, OP, k.shape(), DType::F32)?;
        let dv = Tensor::uninit(dev, OP, v.shape(), DType::F32)?;
        let cells = dm.group() * dm.t * dm.t;
        let s = Tensor::uninit(dev, OP, &[cells], DType::F32)?;
        let dp = Tensor::uninit(dev, OP, &[cells], DType::F32)?;
        let p = Tensor::uninit(dev, OP, &[cells], DType::F16)?;
        let ds = Tensor::uninit(dev, OP, &[cells], DType::F16)?;
        let (rows, t, d) = (dm.group() * dm.t, dm.t, dm.d);
        for bi in 0..dm.b {
            for gi in 0..dm.hkv {
                let (blk, qo, ko) = dm.block(bi, gi);
                product_at(OP, (q, qo), (k, ko), (&s, 0), [rows, t, d], false, true)?;
                run(OP, &kb::probs(&blk), &[&s, &self.lse, &p])?;
                // dV (t, d) = P^T (t, rows) dO (rows, d).
                product_at(
                    OP,
                    (&p, 0),
                    (&g16, qo),
                    (&dv, ko),
                    [t, d, rows],
                    true,
                    false,
                )?;
                // dP (rows, t) = dO (rows, d) V^T (d, t).
                product_at(OP, (&g16, qo), (v, ko), (&dp, 0), [rows, t, d], false, true)?;
                run(OP, &kb::dsoft(&blk), &[&s, &self.lse, &dp, &delta, &ds])?;
                // dQ (rows, d) = dS (rows, t) K (t, d); dK (t, d) = dS^T (t, rows) Q (rows, d).
                product_at(OP, (&ds, 0), (k, ko), (&dq, qo), [rows, d, t], false, false)?;
                product_at(OP, (&ds, 0), (q, qo), (&dk, ko), [t, d, rows], true, false)?;
            }
        }
        Ok(vec![Some(dq), Some(dk), Some(dv)])
    }
}
