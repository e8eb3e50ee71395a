//! Causal (or full) self-attention with grouped-query heads, flash-style (no T x T matrix in
//! memory), on f32: the fused forward saves the per-row log-sum-exp, and the backward rule
//! recomputes the probabilities block by block (FlashAttention-2).

use kernels::attention::{self as k, AttnShape};

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

const OP: &str = "attention";
/// Workgroups the dk/dv kernel should have at least (about two per SM on a large GPU); below
/// it, the query heads sharing a kv head are split over more workgroups and summed after.
const DKV_MIN_WORKGROUPS: usize = 256;

/// `softmax(scale * q k^T + mask) v` per head, where query head h reads kv head
/// h / (Hq / Hkv).
///
/// q: (B, Hq, T, D); k, v: (B, Hkv, T, D) with Hq a multiple of Hkv and D <= 128; returns
/// (B, Hq, T, D). With `causal`, query t sees keys 0..=t. `scale` defaults to 1 / sqrt(D).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
) -> Result<Tensor> {
    Ok(attention_with_lse(q, k, v, causal, scale)?.0)
}

/// [`attention`], also returning the natural log-sum-exp of each query row's scaled, masked
/// scores, (B, Hq, T) (detached: no gradient flows through it).
pub fn attention_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
) -> Result<(Tensor, Tensor)> {
    let s = attn_shape(q, k, v, causal, scale)?;
    let dev = q.device();
    if dev.limits().max_compute_workgroup_storage_size < k::WORKGROUP_BYTES {
        return Err(Error::MissingFeature {
            op: OP,
            feature: "26,112 bytes of workgroup memory (max_compute_workgroup_storage_size)",
            adapter: dev.name().to_string(),
        });
    }
    let out = Tensor::uninit(dev, OP, q.shape(), DType::F32)?;
    let lse = Tensor::uninit(dev, OP, &[s.batch, s.q_heads, s.seq_len], DType::F32)?;
    run(OP, &k::forward(&s), &[q, k, v, &out, &lse])?;
    let saved = || AttentionBackward {
        s,
        q: q.detach(),
        k: k.detach(),
        v: v.detach(),
        out: out.detach(),
        lse: lse.clone(),
    };
    let out = out.clone().recorded(&[q, k, v], saved);
    Ok((out, lse))
}

/// Check dtypes and shapes; the kernels' sizes.
fn attn_shape(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
) -> Result<AttnShape> {
    for t in [q, k, v] {
        t.expect_dtype(OP, DType::F32)?;
        if t.rank() != 4 {
            return Err(Error::BadShape {
                op: OP,
                shape: t.shape().to_vec(),
                reason: "q, k and v must have rank 4: (batch, heads, seq_len, head_dim)".into(),
            });
        }
    }
    if k.shape() != v.shape() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: k.shape().to_vec(),
            rhs: v.shape().to_vec(),
        });
    }
    let (qs, ks) = (q.shape(), k.shape());
    // Batch, seq_len and head_dim must agree; heads must divide.
    if qs[0] != ks[0]
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
    let head_dim = qs[3];
    let s = AttnShape {
        batch: qs[0],
        q_heads: qs[1],
        kv_heads: ks[1],
        seq_len: qs[2],
        head_dim,
        causal,
        scale: scale.unwrap_or(1.0 / (head_dim.max(1) as f32).sqrt()),
    };
    s.check().map_err(|reason| Error::BadShape {
        op: OP,
        shape: qs.to_vec(),
        reason,
    })?;
    Ok(s)
}

/// With s = scale q k^T (masked), P = softmax(s) row-wise, out = P v, and g = d loss / d out:
///   dv = P^T g                       (summed over the query heads sharing a kv head)
///   dP = g v^T
///   ds = P * (dP - delta),  delta_i = sum_j P_ij dP_ij = rowsum(g * out)_i
///        (softmax Jacobian: d s_ij = P_ij (dP_ij - sum_k P_ik dP_ik))
///   dq = scale ds k,  dk = scale ds^T q  (dk summed over the group, like dv)
/// P is recomputed block by block as exp(s - lse) from the saved log-sum-exp. The group sums
/// of dk and dv run inside the kernel, over all heads of the group or, when that leaves too
/// few workgroups, over equal parts of it whose partial sums are then added (`sum_to`).
struct AttentionBackward {
    s: AttnShape,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
}

impl Backward for AttentionBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        self.grads(g, k::dkv_splits(&self.s, DKV_MIN_WORKGROUPS))
    }
}

impl AttentionBackward {
    /// dq, dk, dv, with each group of query heads cut into `splits` parts for dk and dv.
    fn grads(&self, g: &Tensor, splits: usize) -> Result<Vec<Option<Tensor>>> {
        let op = "attention backward";
        g.expect_dtype(op, DType::F32)?;
        if g.shape() != self.q.shape() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: g.shape().to_vec(),
                rhs: self.q.shape().to_vec(),
            });
        }
        let dev = g.device();
        let (q, k, v, lse) = (&self.q, &self.k, &self.v, &self.lse);
        let delta = Tensor::uninit(dev, op, lse.shape(), DType::F32)?;
        run(op, &k::backward_delta(&self.s), &[g, &self.out, &delta])?;
        let dq = Tensor::uninit(dev, op, q.shape(), DType::F32)?;
        run(
            op,
            &k::backward_dq(&self.s),
            &[q, k, v, g, lse, &delta, &dq],
        )?;
        // (splits, B, Hkv, T, D): partial sums over the parts of each group.
        let mut parts = vec![splits];
        parts.extend_from_slice(k.shape());
        let dk = Tensor::uninit(dev, op, &parts, DType::F32)?;
        let dv = Tensor::uninit(dev, op, &parts, DType::F32)?;
        let launch = k::backward_dkv(&self.s, splits);
        run(op, &launch, &[q, k, v, g, lse, &delta, &dk, &dv])?;
        parts[0] = 1;
        let total = |x: Tensor| -> Result<Tensor> {
            let x = if splits == 1 { x } else { x.sum_to(&parts)? };
            x.reshape(k.shape())
        };
        Ok(vec![Some(dq), Some(total(dk)?), Some(total(dv)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Device, DeviceOptions};

    /// Every way of splitting a group of 6 query heads gives the same dk and dv (the f64
    /// reference checks of `tests/attention.rs` cover the split the heuristic picks).
    #[test]
    fn dkv_splits_agree() -> Result<()> {
        let mut opts = DeviceOptions::from_env();
        opts.shader_checks = true;
        let dev = Device::with_options(opts)?;
        let data = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
                .collect()
        };
        let (b, hq, hkv, t, d) = (2, 6, 1, 70, 24);
        let t4 = |shape: &[usize], seed| {
            Tensor::from_slice(&dev, &data(shape.iter().product(), seed), shape)
        };
        let (q, kk, v) = (
            t4(&[b, hq, t, d], 1)?,
            t4(&[b, hkv, t, d], 2)?,
            t4(&[b, hkv, t, d], 3)?,
        );
        let g = t4(&[b, hq, t, d], 4)?;
        for causal in [true, false] {
            let s = attn_shape(&q, &kk, &v, causal, None)?;
            let (out, lse) =
                crate::autograd::no_grad(|| attention_with_lse(&q, &kk, &v, causal, None))?;
            let rule = AttentionBackward {
                s,
                q: q.clone(),
                k: kk.clone(),
                v: v.clone(),
                out,
                lse,
            };
            let want: Vec<Vec<f32>> = rule
                .grads(&g, 1)?
                .into_iter()
                .map(|x| x.unwrap().to_vec())
                .collect::<Result<_>>()?;
            for splits in [2, 3, 6] {
                let got = rule.grads(&g, splits)?;
                for (w, x) in want.iter().zip(got) {
                    let x = x.unwrap();
                    assert_eq!(
                        x.shape(),
                        if w.len() == q.elem_count() {
                            q.shape()
                        } else {
                            kk.shape()
                        }
                    );
                    let worst = w
                        .iter()
                        .zip(x.to_vec()?)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        worst < 1e-5,
                        "splits {splits}, causal {causal}: differs by {worst}"
                    );
                }
            }
        }
        Ok(())
    }
}
