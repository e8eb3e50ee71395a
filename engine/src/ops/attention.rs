//! Causal (or full) attention with grouped-query heads, flash-style (no Tq x Tk matrix in
//! memory), on f32: the fused forward saves the per-row log-sum-exp, and the backward rule
//! recomputes the probabilities block by block (FlashAttention-2). Queries may be fewer than
//! keys (the causal mask aligned bottom-right, as with a cache); a few queries take the
//! split-key decode kernel. [`KvCache`] holds a layer's keys and values for generation.
//! [`attention_masked`] and [`KvCache::attend_masked`] add per-batch-row key starts for
//! left-padded batches (inference only: forward, no backward); [`attention_packed`] adds
//! per-query sequence starts for rows that pack several sequences (forward and backward).

use kernels::attention::{self as k, AttnShape, CacheWrite, Mask};

use crate::autograd::Backward;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

const OP: &str = "attention";
/// Workgroups the dk/dv kernel should have at least (about two per SM on a large GPU); below
/// it, the query heads sharing a kv head are split over more workgroups and summed after.
const DKV_MIN_WORKGROUPS: usize = 256;
/// Workgroups the decode kernel should have at least; below it, the keys are split over more
/// workgroups (flash-decoding) and the partial results combined.
const DECODE_MIN_WORKGROUPS: usize = 256;

/// `softmax(scale * q k^T + mask) v` per head, where query head h reads kv head
/// h / (Hq / Hkv).
///
/// q: (B, Hq, Tq, D); k, v: (B, Hkv, Tk, D) with Hq a multiple of Hkv and D <= 128; returns
/// (B, Hq, Tq, D). With `causal`, the mask is aligned bottom-right as with a KV cache: query i
/// sits at position Tk - Tq + i and sees keys 0..=Tk-Tq+i (so Tq <= Tk; Tq == Tk is the usual
/// causal self-attention). Without it every query sees every key (any Tq). `scale` defaults to
/// 1 / sqrt(D). A few queries (Tq <= 16) against more keys take the split-key decode kernel.
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
/// scores, (B, Hq, Tq) (detached: no gradient flows through it).
pub fn attention_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
) -> Result<(Tensor, Tensor)> {
    let s = attn_shape(q, k, v, causal, scale)?;
    forward(&s, q, k, v, Starts::None, Path::Auto)
}

/// [`attention`] of a left-padded batch: `key_start` (u32, (B)) hides keys j < key_start[b]
/// from every query of batch row b, on top of the causal mask. Those keys and values are never
/// read (garbage there cannot leak), and a query that sees no key at all (a padding query) gets
/// zeros. Inference only: no gradient flows (an error if q, k or v is tracked with gradients
/// on).
pub fn attention_masked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_start: &Tensor,
    causal: bool,
    scale: Option<f32>,
) -> Result<Tensor> {
    let s = attn_shape(q, k, v, causal, scale)?;
    forward_masked(&s, q, k, v, key_start)
}

/// Causal self-attention over rows that pack several sequences one after another: query i of
/// batch row b sees keys j with `seq_start[b, i] <= j <= i`, where `seq_start` (u32, (B, T))
/// holds the first token of each query's sequence (i - its position in the sequence), so no
/// sequence sees another. The starts must not decrease along a row and not pass their own
/// query (as packing makes them; the model's packed forward checks the positions they come
/// from); the kernels skip the blocks no query sees on that ground. q: (B, Hq, T, D); k, v:
/// (B, Hkv, T, D). With gradients, as [`attention`]. Each sequence gets exactly what it would
/// get alone (padding at a row's end is a sequence of its own, which no other sees).
pub fn attention_packed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq_start: &Tensor,
    scale: Option<f32>,
) -> Result<Tensor> {
    let s = attn_shape(q, k, v, true, scale)?;
    seq_start.expect_dtype(OP, DType::U32)?;
    seq_start.check_same_device(OP, q)?;
    if s.q_len != s.kv_len || seq_start.shape() != [s.batch, s.q_len] {
        return Err(Error::ShapeMismatch {
            op: "attention seq_start",
            lhs: seq_start.shape().to_vec(),
            rhs: vec![s.batch, s.kv_len],
        });
    }
    Ok(forward(&s, q, k, v, Starts::Seq(seq_start), Path::Main)?.0)
}

/// What hides keys beyond the causal mask, and the buffer that says how.
#[derive(Clone, Copy)]
enum Starts<'a> {
    None,
    Key(&'a Tensor),
    Seq(&'a Tensor),
}

/// Check `key_start` and run the masked forward, which records nothing.
fn forward_masked(
    s: &AttnShape,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_start: &Tensor,
) -> Result<Tensor> {
    key_start.expect_dtype(OP, DType::U32)?;
    key_start.check_same_device(OP, q)?;
    if key_start.shape() != [s.batch] {
        return Err(Error::ShapeMismatch {
            op: "attention key_start",
            lhs: key_start.shape().to_vec(),
            rhs: vec![s.batch],
        });
    }
    if crate::autograd::is_grad_enabled() && [q, k, v].iter().any(|t| t.is_tracked()) {
        return Err(Error::Backward(
            "attention with key starts is inference only: run it under no_grad".into(),
        ));
    }
    Ok(forward(s, q, k, v, Starts::Key(key_start), Path::Auto)?.0)
}

/// Which forward kernel to run: the heuristic's, or one forced (tests compare them).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    Auto,
    Main,
    /// The decode kernel with this many key splits.
    Decode(usize),
}

/// Run the forward for checked sizes `s` and record the backward rule.
fn forward(
    s: &AttnShape,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    starts: Starts,
    path: Path,
) -> Result<(Tensor, Tensor)> {
    let dev = q.device();
    if dev.limits().max_compute_workgroup_storage_size < k::WORKGROUP_BYTES {
        return Err(Error::MissingFeature {
            op: OP,
            feature: "26,128 bytes of workgroup memory (max_compute_workgroup_storage_size)",
            adapter: dev.name().to_string(),
        });
    }
    let out = Tensor::uninit(dev, OP, q.shape(), DType::F32)?;
    let lse = Tensor::uninit(dev, OP, &[s.batch, s.q_heads, s.q_len], DType::F32)?;
    let path = match path {
        Path::Auto if k::uses_decode(s) => Path::Decode(k::decode_splits(s, DECODE_MIN_WORKGROUPS)),
        Path::Auto => Path::Main,
        p => p,
    };
    // The decode kernel knows no sequence starts: packed rows take the main kernel.
    debug_assert!(!matches!(starts, Starts::Seq(_)) || path == Path::Main);
    // Unmasked launches do not read the starts' binding: q stands in.
    let (mask, ks) = match starts {
        Starts::None => (Mask::None, q),
        Starts::Key(t) => (Mask::KeyStart, t),
        Starts::Seq(t) => (Mask::SeqStart, t),
    };
    let masked = mask == Mask::KeyStart;
    match path {
        Path::Decode(1) => run(OP, &k::decode(s, 1, masked), &[q, k, v, &out, &lse, ks])?,
        Path::Decode(splits) => {
            let rows = s.batch * s.q_heads * s.q_len;
            let o_part = Tensor::uninit(dev, OP, &[splits, rows, s.head_dim], DType::F32)?;
            let lse_part = Tensor::uninit(dev, OP, &[splits, rows], DType::F32)?;
            let launch = k::decode(s, splits, masked);
            run(OP, &launch, &[q, k, v, &o_part, &lse_part, ks])?;
            run(
                OP,
                &k::decode_combine(s, splits),
                &[&o_part, &lse_part, &out, &lse],
            )?;
        }
        _ => run(OP, &k::forward(s, mask), &[q, k, v, &out, &lse, ks])?,
    }
    if masked {
        return Ok((out, lse));
    }
    let saved = || AttentionBackward {
        s: *s,
        q: q.detach(),
        k: k.detach(),
        v: v.detach(),
        out: out.detach(),
        lse: lse.clone(),
        seq_start: (mask == Mask::SeqStart).then(|| ks.clone()),
        kv_grads: k.is_tracked() || v.is_tracked(),
    };
    let out = out.clone().recorded(&[q, k, v], saved);
    Ok((out, lse))
}

fn bad_rank(op: &'static str, t: &Tensor) -> Error {
    Error::BadShape {
        op,
        shape: t.shape().to_vec(),
        reason: "q, k and v must have rank 4: (batch, heads, seq_len, head_dim)".into(),
    }
}

/// The checks every attention path makes: q, k and v of `dtype` on one device, of rank 4, k
/// and v of one shape, batch and head_dim agreeing, the query heads a multiple of the kv heads.
pub(crate) fn check_qkv(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    dtype: DType,
) -> Result<()> {
    for t in [q, k, v] {
        t.expect_dtype(op, dtype)?;
        t.check_same_device(op, q)?;
        if t.rank() != 4 {
            return Err(bad_rank(op, t));
        }
    }
    k.expect_same_shape(op, v)?;
    let (qs, ks) = (q.shape(), k.shape());
    if qs[0] != ks[0] || qs[3] != ks[3] || ks[1] == 0 || !qs[1].is_multiple_of(ks[1]) {
        return Err(Error::ShapeMismatch {
            op,
            lhs: qs.to_vec(),
            rhs: ks.to_vec(),
        });
    }
    Ok(())
}

/// Check dtypes and shapes; the kernels' sizes (k and v holding `kv_len` of their rows).
fn attn_shape_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kv_len: usize,
    causal: bool,
    scale: Option<f32>,
) -> Result<AttnShape> {
    check_qkv(OP, q, k, v, DType::F32)?;
    let (qs, ks) = (q.shape(), k.shape());
    let head_dim = qs[3];
    let s = AttnShape {
        batch: qs[0],
        q_heads: qs[1],
        kv_heads: ks[1],
        q_len: qs[2],
        kv_len,
        kv_stride: ks[2],
        head_dim,
        causal,
        scale: scale.unwrap_or(1.0 / (head_dim.max(1) as f32).sqrt()),
    };
    s.check().map_err(|reason| Error::BadShape {
        op: OP,
        shape: qs.to_vec(),
        reason: format!("{reason} (k, v {ks:?})"),
    })?;
    Ok(s)
}

fn attn_shape(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
) -> Result<AttnShape> {
    if k.rank() != 4 {
        return Err(bad_rank(OP, k));
    }
    attn_shape_with(q, k, v, k.shape()[2], causal, scale)
}

/// A per-layer key/value cache for generation: k and v (B, Hkv, capacity, D) allocated once;
/// [`KvCache::append`] writes new rows in place after the filled prefix, and
/// [`KvCache::attend`] runs attention of new queries against that prefix (the kernels read the
/// prefix straight from the cache buffers, whose capacity is their row stride).
///
/// Typical step: project the new tokens' q, k, v (with rope at their positions `len()..`),
/// `append(k, v)`, then `attend(q)`: the queries are the last `Tq` positions of the cache, and
/// the causal mask is aligned accordingly. No gradient flows into the cache; a gradient to q
/// does (backward must then run before [`KvCache::reset`] lets the rows be overwritten).
pub struct KvCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl KvCache {
    /// An empty cache for `capacity` positions of (batch, kv_heads, head_dim).
    pub fn new(
        dev: &Device,
        batch: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
    ) -> Result<KvCache> {
        let shape = [batch, kv_heads, capacity, head_dim];
        if shape.contains(&0) || head_dim > k::MAX_HEAD_DIM {
            return Err(Error::BadShape {
                op: "kv cache",
                shape: shape.to_vec(),
                reason: format!(
                    "sizes must be positive, head_dim at most {}",
                    k::MAX_HEAD_DIM
                ),
            });
        }
        Ok(KvCache {
            k: Tensor::zeros(dev, &shape, DType::F32)?,
            v: Tensor::zeros(dev, &shape, DType::F32)?,
            len: 0,
        })
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.k.shape()[2]
    }
    /// (B, Hkv, capacity, D).
    pub fn shape(&self) -> &[usize] {
        self.k.shape()
    }

    /// Forget the filled positions (the buffers are kept and overwritten by later appends).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Write k_new, v_new (B, Hkv, Tn, D) into positions len..len+Tn, in place.
    pub fn append(&mut self, k_new: &Tensor, v_new: &Tensor) -> Result<()> {
        let op = "kv cache append";
        let cs = self.k.shape();
        for t in [k_new, v_new] {
            t.expect_dtype(op, DType::F32)?;
            let s = t.shape();
            if s.len() != 4 || s[0] != cs[0] || s[1] != cs[1] || s[3] != cs[3] {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: s.to_vec(),
                    rhs: cs.to_vec(),
                });
            }
        }
        k_new.expect_same_shape(op, v_new)?;
        let new_len = k_new.shape()[2];
        if self.len + new_len > self.capacity() {
            return Err(Error::BadShape {
                op,
                shape: k_new.shape().to_vec(),
                reason: format!(
                    "{new_len} new positions do not fit: {} of {} filled",
                    self.len,
                    self.capacity()
                ),
            });
        }
        let w = CacheWrite {
            batch: cs[0],
            kv_heads: cs[1],
            new_len,
            head_dim: cs[3],
            capacity: cs[2],
            offset: self.len,
        };
        run(op, &k::kv_append(&w), &[k_new, v_new, &self.k, &self.v])?;
        self.k.mark_written();
        self.v.mark_written();
        self.len += new_len;
        Ok(())
    }

    /// Causal attention of q (B, Hq, Tq, D), the last Tq positions (Tq <= len), against the
    /// filled prefix, with scale 1 / sqrt(D); returns (B, Hq, Tq, D).
    pub fn attend(&self, q: &Tensor) -> Result<Tensor> {
        self.attend_with(q, true, None)
    }

    /// [`KvCache::attend`] with the mask and scale of [`attention`].
    pub fn attend_with(&self, q: &Tensor, causal: bool, scale: Option<f32>) -> Result<Tensor> {
        let s = attn_shape_with(q, &self.k, &self.v, self.len, causal, scale)?;
        Ok(forward(&s, q, &self.k, &self.v, Starts::None, Path::Auto)?.0)
    }

    /// [`KvCache::attend`] for a left-padded batch: keys (cache positions) j < key_start[b]
    /// (u32, (B)) are hidden from every query of batch row b; they are never read, and a query
    /// that sees no key (padding) gets zeros. Inference only (see [`attention_masked`]).
    pub fn attend_masked(&self, q: &Tensor, key_start: &Tensor) -> Result<Tensor> {
        let s = attn_shape_with(q, &self.k, &self.v, self.len, true, None)?;
        forward_masked(&s, q, &self.k, &self.v, key_start)
    }
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
/// Fewer queries than keys change only which (query, key) pairs are visible: the same rule.
struct AttentionBackward {
    s: AttnShape,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    /// The forward's sequence starts (packed rows), which mask the backward too.
    seq_start: Option<Tensor>,
    /// Whether k or v needs a gradient (not for a KV cache's buffers).
    kv_grads: bool,
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
        g.expect_same_shape(op, &self.q)?;
        let dev = g.device();
        let (q, k, v, lse) = (&self.q, &self.k, &self.v, &self.lse);
        let delta = Tensor::uninit(dev, op, lse.shape(), DType::F32)?;
        run(op, &k::backward_delta(&self.s), &[g, &self.out, &delta])?;
        let dq = Tensor::uninit(dev, op, q.shape(), DType::F32)?;
        // Without sequence starts the binding is not read: q stands in.
        let (packed, ss) = (
            self.seq_start.is_some(),
            self.seq_start.as_ref().unwrap_or(q),
        );
        run(
            op,
            &k::backward_dq(&self.s, packed),
            &[q, k, v, g, lse, &delta, &dq, ss],
        )?;
        if !self.kv_grads {
            return Ok(vec![Some(dq), None, None]);
        }
        if self.s.kv_stride != self.s.kv_len {
            return Err(Error::Backward(
                "attention: no gradient for keys and values read from a longer buffer".into(),
            ));
        }
        // (splits, B, Hkv, Tk, D): partial sums over the parts of each group.
        let mut parts = vec![splits];
        parts.extend_from_slice(k.shape());
        let dk = Tensor::uninit(dev, op, &parts, DType::F32)?;
        let dv = Tensor::uninit(dev, op, &parts, DType::F32)?;
        let launch = k::backward_dkv(&self.s, splits, packed);
        run(op, &launch, &[q, k, v, g, lse, &delta, &dk, &dv, ss])?;
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

    /// A device of the test's own, kernels compiled with bounds checks.
    fn checked_device() -> Result<Device> {
        let mut opts = DeviceOptions::from_env();
        opts.shader_checks = true;
        Device::with_options(opts)
    }

    /// A tensor of `shape` filled with a deterministic spread of values in [-1, 1).
    fn filled(dev: &Device, shape: &[usize], seed: usize) -> Result<Tensor> {
        let data: Vec<f32> = (0..shape.iter().product())
            .map(|i: usize| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
            .collect();
        Tensor::from_slice(dev, &data, shape)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// The decode kernel with any number of key splits (one, several, more than the keys
    /// need so that trailing splits are empty) gives what the block kernel gives, out and lse,
    /// for few queries against a strided key buffer (a cache), both masks, and a group whose
    /// rows fill more than one 8-row block.
    #[test]
    fn decode_splits_agree_with_block_kernel() -> Result<()> {
        let dev = checked_device()?;
        let t4 = |shape: &[usize], seed| filled(&dev, shape, seed);
        // (batch, q heads, kv heads, Tq, Tk, stride, head dim)
        for (b, hq, hkv, tq, tk, stride, d) in [
            (2, 6, 2, 3, 70, 75, 24),
            (1, 4, 1, 1, 130, 130, 5),
            (1, 10, 2, 2, 33, 40, 128),
        ] {
            let q = t4(&[b, hq, tq, d], 1)?;
            let kk = t4(&[b, hkv, stride, d], 2)?;
            let v = t4(&[b, hkv, stride, d], 3)?;
            for causal in [true, false] {
                let s = attn_shape_with(&q, &kk, &v, tk, causal, None)?;
                let run_path = |path| -> Result<(Vec<f32>, Vec<f32>)> {
                    let (out, lse) = forward(&s, &q, &kk, &v, Starts::None, path)?;
                    Ok((out.to_vec()?, lse.to_vec()?))
                };
                let want = run_path(Path::Main)?;
                for splits in [1, 2, 3, 7] {
                    let got = run_path(Path::Decode(splits))?;
                    for (what, w, g) in [("out", &want.0, &got.0), ("lse", &want.1, &got.1)] {
                        let worst = max_diff(w, g);
                        assert!(
                            worst < 1e-5,
                            "{what} Tq {tq} Tk {tk} causal {causal} splits {splits}: {worst}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// With key starts (some hiding whole splits, one hiding every key) the decode kernel
    /// with any number of splits still gives what the block kernel gives.
    #[test]
    fn masked_decode_splits_agree_with_block_kernel() -> Result<()> {
        let dev = checked_device()?;
        let (b, hq, hkv, tq, tk, stride, d) = (3, 4, 2, 2, 140, 150, 8);
        let t4 = |shape: &[usize], seed| filled(&dev, shape, seed);
        let q = t4(&[b, hq, tq, d], 1)?;
        let kk = t4(&[b, hkv, stride, d], 2)?;
        let v = t4(&[b, hkv, stride, d], 3)?;
        let ks = Tensor::from_u32_slice(&dev, &[70, 0, 140], &[b])?;
        let s = attn_shape_with(&q, &kk, &v, tk, true, None)?;
        let run_path = |path| -> Result<Vec<f32>> {
            forward(&s, &q, &kk, &v, Starts::Key(&ks), path)?.0.to_vec()
        };
        let want = run_path(Path::Main)?;
        for splits in [1, 2, 3, 5] {
            let got = run_path(Path::Decode(splits))?;
            let worst = max_diff(&want, &got);
            assert!(worst < 1e-5, "splits {splits}: {worst}");
            assert!(got.iter().all(|x| x.is_finite()));
        }
        Ok(())
    }

    /// Every way of splitting a group of 6 query heads gives the same dk and dv (the f64
    /// reference checks of `tests/attention.rs` cover the split the heuristic picks).
    #[test]
    fn dkv_splits_agree() -> Result<()> {
        let dev = checked_device()?;
        let (b, hq, hkv, t, d) = (2, 6, 1, 70, 24);
        let t4 = |shape: &[usize], seed| filled(&dev, shape, seed);
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
                seq_start: None,
                kv_grads: true,
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
                    let worst = max_diff(w, &x.to_vec()?);
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
