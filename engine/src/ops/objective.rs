//! The fused LM head + probability-based SFT objectives of "Beyond Log Likelihood"
//! (arXiv 2510.00526): from hidden states x (N, d) and the LM-head weight as row chunks, the
//! per-token log p of the target, a per-token loss of p, and their token mean, with a backward
//! to x and every chunk; the N x V logits are never held in memory (see
//! `kernels/wgsl/objective.wgsl`).

use kernels::objective::{self as k, Loss};

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::{objective_block, run};
use crate::tensor::Tensor;

/// The per-token loss on the target probability p (all are averaged over the kept tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// -log p (the same as `FAlpha(0.0)`).
    Nll,
    /// f_alpha(p) = (1 - p^alpha) / alpha; alpha = 0 is -log p, alpha = 1 is 1 - p.
    FAlpha(f32),
    /// Keep only tokens whose threshold probability (the `threshold_p` tensor, e.g. the base
    /// model's p, or else the current p) is >= q (`keep_above`) or <= q, with `loss` on them;
    /// the kept tokens also make the denominator of the mean.
    Threshold {
        q: f32,
        keep_above: bool,
        loss: ThresholdLoss,
    },
    /// -p^q / q, the convexity-q family (f_alpha with alpha = q less the constant 1/q; same
    /// gradient). q must not be 0.
    NegPow(f32),
    /// log(1 - p + 1e-3).
    Unlikelihood,
    /// Dynamic fine-tuning: -sg(p) log p, whose gradient treats p as a constant.
    Dft,
}

/// The loss a thresholded objective puts on the tokens it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdLoss {
    /// 1 - p.
    OneMinusP,
    /// -log p.
    Nll,
}

/// What [`lm_head_objective`] returns.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput {
    /// The token-mean loss, shape []: on the tape, its backward gives dx and every chunk's dW.
    pub loss: Tensor,
    /// log p of each token's target (N), detached; -inf for targets outside the vocabulary.
    pub log_p: Tensor,
    /// Each token's contribution to the numerator of the mean (N), detached: mask * loss for
    /// kept tokens, 0 for the others (so `loss = sum(token_loss) / sum(kept mask)`).
    pub token_loss: Tensor,
}

const OP: &str = "lm_head_objective";

/// The loss of `objective` on the targets' probabilities under the LM head: with logits
/// z = x W^T (x (N, d); W (V, d) given as row chunks `w_chunks`, each (V_c, d), row r of
/// chunk c being vocabulary id offset_c + r), p_i = softmax(z_i)[targets_i] (targets u32 (N)),
///   loss = sum_i m_i l(p_i) / sum_i m_i
/// over the kept tokens (mask (N) f32 nonzero, target < V, and the threshold test for
/// [`Objective::Threshold`]; `threshold_p` (N) f32 is read only there), 0 when none is kept.
///
/// x and the chunks are all f32 (register-tiled SIMT products fused with the log-sum-exp) or
/// all f16 (the mixed-precision path: each block of logits a matmul on cooperative matrices
/// where the adapter has them, f32 accumulation; see `objective_block.rs`). Gradients are f32.
pub fn lm_head_objective(
    x: &Tensor,
    w_chunks: &[Tensor],
    targets: &Tensor,
    mask: &Tensor,
    objective: &Objective,
    threshold_p: Option<&Tensor>,
) -> Result<ObjectiveOutput> {
    let (n, _, rows) = check_operands(OP, x, w_chunks, targets)?;
    let f16 = x.dtype() == DType::F16;
    check_vector(OP, mask, x, n, DType::F32)?;
    let thr = match objective {
        Objective::Threshold { .. } => threshold_p,
        _ => None,
    };
    if let Some(t) = thr {
        check_vector(OP, t, x, n, DType::F32)?;
    }
    let loss_kind = loss_of(objective, thr.is_some())?;
    let v_total: usize = rows.iter().sum();
    let (part, s_total) = partials(OP, x, w_chunks, targets, &rows)?;

    let dev = x.device();
    let log_p = Tensor::uninit(dev, OP, &[n], DType::F32)?;
    let token_loss = Tensor::uninit(dev, OP, &[n], DType::F32)?;
    let saved = Tensor::uninit(dev, OP, &[k::saved_len(n)], DType::F32)?;
    let loss = Tensor::uninit(dev, OP, &[], DType::F32)?;
    run(
        OP,
        &k::finish(n, s_total, v_total, loss_kind),
        &[
            &part,
            targets,
            mask,
            thr.unwrap_or(mask),
            &log_p,
            &token_loss,
            &saved,
            &loss,
        ],
    )?;
    drop(part);

    let mut inputs: Vec<&Tensor> = vec![x];
    inputs.extend(w_chunks.iter());
    let rule = || ObjectiveBackward {
        need: inputs.iter().map(|t| t.is_tracked()).collect(),
        x: x.detach(),
        chunks: w_chunks.iter().map(Tensor::detach).collect(),
        targets: targets.clone(),
        saved,
        f16,
    };
    let loss = loss.recorded(&inputs, rule);
    Ok(ObjectiveOutput {
        loss,
        log_p,
        token_loss,
    })
}

/// log p of each token's target under the LM head (N), as in [`lm_head_objective`] but
/// forward only and never recorded on the tape (the diagnostic path). -inf for targets >= V.
pub fn lm_head_log_probs(x: &Tensor, w_chunks: &[Tensor], targets: &Tensor) -> Result<Tensor> {
    const OP: &str = "lm_head_log_probs";
    let (n, _, rows) = check_operands(OP, x, w_chunks, targets)?;
    let (part, s_total) = partials(OP, x, w_chunks, targets, &rows)?;
    let log_p = Tensor::uninit(x.device(), OP, &[n], DType::F32)?;
    if n > 0 {
        run(
            OP,
            &k::log_probs(n, s_total, rows.iter().sum()),
            &[&part, targets, &log_p],
        )?;
    }
    Ok(log_p)
}

/// The per-(split, token) max, rest and target logit over every chunk, and the number of
/// splits: fused SIMT tiles in f32, matmul blocks in f16.
fn partials(
    op: &'static str,
    x: &Tensor,
    w_chunks: &[Tensor],
    targets: &Tensor,
    rows: &[usize],
) -> Result<(Tensor, usize)> {
    if x.dtype() == DType::F16 {
        return objective_block::partials(op, x, w_chunks, targets);
    }
    let plan = k::forward_plan(x.dim(0), rows);
    let part = forward_partials(x, w_chunks, targets, rows, &plan)?;
    Ok((part, plan.s_total))
}

/// The f32 path's partials: fused tiles over every chunk.
fn forward_partials(
    x: &Tensor,
    w_chunks: &[Tensor],
    targets: &Tensor,
    rows: &[usize],
    plan: &k::ForwardPlan,
) -> Result<Tensor> {
    let (n, d) = (x.dim(0), x.dim(1));
    let part = Tensor::uninit(x.device(), OP, &[plan.partials_len(n)], DType::F32)?;
    let mut v_off = 0;
    for (c, w) in w_chunks.iter().enumerate() {
        if n > 0 && rows[c] > 0 {
            run(
                OP,
                &k::forward(n, d, rows[c], v_off, plan, c),
                &[x, w, targets, &part],
            )?;
        }
        v_off += rows[c];
    }
    Ok(part)
}

/// (N, d, rows of each chunk), after checking dtypes (x f32 or f16, every chunk the same)
/// and shapes.
fn check_operands(
    op: &'static str,
    x: &Tensor,
    w_chunks: &[Tensor],
    targets: &Tensor,
) -> Result<(usize, usize, Vec<usize>)> {
    if x.dtype() != DType::F16 {
        x.expect_dtype(op, DType::F32)?;
    }
    if x.rank() != 2 {
        return Err(Error::BadShape {
            op,
            shape: x.shape().to_vec(),
            reason: "hidden states must be (tokens, hidden_size)".into(),
        });
    }
    let (n, d) = (x.dim(0), x.dim(1));
    let mut rows = Vec::with_capacity(w_chunks.len());
    for w in w_chunks {
        w.expect_dtype(op, x.dtype())?;
        if w.rank() != 2 || w.dim(1) != d {
            return Err(Error::ShapeMismatch {
                op,
                lhs: x.shape().to_vec(),
                rhs: w.shape().to_vec(),
            });
        }
        w.check_same_device(op, x)?;
        rows.push(w.dim(0));
    }
    let v: usize = rows.iter().sum();
    if v == 0 || v > u32::MAX as usize {
        return Err(Error::BadShape {
            op,
            shape: rows,
            reason: "the LM head needs between 1 and 2^32 - 1 vocabulary rows".into(),
        });
    }
    check_vector(op, targets, x, n, DType::U32)?;
    Ok((n, d, rows))
}

/// `t` is (n) of `dtype` on x's device.
fn check_vector(op: &'static str, t: &Tensor, x: &Tensor, n: usize, dtype: DType) -> Result<()> {
    t.expect_dtype(op, dtype)?;
    t.check_same_device(op, x)?;
    if t.shape() != [n] {
        return Err(Error::ShapeMismatch {
            op,
            lhs: vec![n],
            rhs: t.shape().to_vec(),
        });
    }
    Ok(())
}

fn loss_of(objective: &Objective, thr_given: bool) -> Result<Loss> {
    let bad = |what: String| Error::BadShape {
        op: OP,
        shape: vec![],
        reason: what,
    };
    let finite = |v: f32, name: &str| {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(bad(format!("{name} = {v} must be finite")))
        }
    };
    Ok(match *objective {
        Objective::Nll => Loss::FAlpha(0.0),
        Objective::FAlpha(a) => Loss::FAlpha(finite(a, "alpha")?),
        Objective::Threshold {
            q,
            keep_above,
            loss,
        } => Loss::Threshold {
            q: finite(q, "threshold q")?,
            keep_above,
            nll: loss == ThresholdLoss::Nll,
            given: thr_given,
        },
        Objective::NegPow(q) => {
            if finite(q, "q")? == 0.0 {
                return Err(bad("-p^q/q needs q != 0 (q -> 0 is Nll)".into()));
            }
            Loss::NegPow(q)
        }
        Objective::Unlikelihood => Loss::Unlikelihood,
        Objective::Dft => Loss::Dft,
    })
}

/// L = sum_i m_i l(p_i) / M over kept tokens i (M = sum of their m_i), p_i = softmax(z_i)[t_i],
/// z_i = W x_i. With dlog p_i / dz_ij = [j = t_i] - softmax_ij,
///   dL/dz_ij = (m_i / M) w_i (softmax_ij - [j = t_i]),  w_i = -dl/dlog p_i,
/// w_i being (saved by the forward, times m_i): f_alpha p^alpha (1 for NLL); threshold 1 - p:
/// p, -log p: 1 (the keep test has zero gradient almost everywhere); -p^q/q: p^q;
/// log(1 - p + e): p / (1 - p + e); DFT: p (p held constant). Then, with G = dL/dz (N, V),
///   dx = G W = sum over chunks c of G_c W_c,    dW_c = G_c^T x,
/// scaled by the incoming gradient g (read on the GPU). The vocabulary is processed a block
/// of rows at a time: G for a block (N, vb) is recomputed from x, W_c and the saved
/// log-sum-exps, then dW_c's rows of the block = G^T x and dx += G W_c[block].
struct ObjectiveBackward {
    x: Tensor,
    chunks: Vec<Tensor>,
    targets: Tensor,
    saved: Tensor,
    /// Whether x and each chunk need a gradient.
    need: Vec<bool>,
    /// The operands are f16: the matmul-block path.
    f16: bool,
}

impl Backward for ObjectiveBackward {
    fn name(&self) -> &'static str {
        OP
    }

    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "lm_head_objective backward";
        g.expect_dtype(OP, DType::F32)?;
        if self.f16 {
            let (x, t) = (&self.x, &self.targets);
            return objective_block::backward(OP, x, &self.chunks, t, &self.saved, g, &self.need);
        }
        let (x, dev) = (&self.x, self.x.device());
        let (n, d) = (x.dim(0), x.dim(1));
        let need_x = self.need[0];
        let dx = if need_x {
            Some(Tensor::uninit(dev, OP, &[n, d], DType::F32)?)
        } else {
            None
        };
        let mut dx_written = false;
        let mut out = vec![None];
        let mut v_off = 0;
        for (c, w) in self.chunks.iter().enumerate() {
            let rows = w.dim(0);
            let need_w = self.need[c + 1];
            let dw = if need_w {
                Some(Tensor::uninit(dev, OP, &[rows, d], DType::F32)?)
            } else {
                None
            };
            if rows > 0 && (need_w || need_x) {
                // The (n, vb) block of logit gradients must fit one binding too.
                let fit = (dev.max_binding_bytes() as usize / 4 / n.max(1)).max(1);
                let vb = k::block_rows(n, rows).min(fit);
                let dz = Tensor::uninit(dev, OP, &[n, vb], DType::F32)?;
                for blk0 in (0..rows).step_by(vb) {
                    let len = vb.min(rows - blk0);
                    run(
                        OP,
                        &k::dlogits(n, d, v_off, blk0, len),
                        &[x, w, &self.targets, &self.saved, g, &dz],
                    )?;
                    if let Some(dw) = &dw {
                        run(OP, &k::grad_w(n, d, blk0, len), &[&dz, x, dw])?;
                    }
                    if let Some(dx) = &dx {
                        run(OP, &k::grad_x(n, d, blk0, len, dx_written), &[&dz, w, dx])?;
                        dx_written = true;
                    }
                }
            }
            v_off += rows;
            out.push(dw);
        }
        if let Some(dx) = &dx {
            if !dx_written {
                crate::ops::elementwise::fill(dx, 0.0)?;
            }
        }
        out[0] = dx;
        Ok(out)
    }
}
