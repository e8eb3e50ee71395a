//! The f64 reference of the fused LM head + objective (logits materialised, every formula
//! written out) and the comparison of the GPU op with it, shared by the f32 and f16 tests.
#![allow(dead_code)]

use crate::common::*;

use engine::ops::objective::{lm_head_objective, Objective, ObjectiveOutput, ThresholdLoss};
use engine::{DType, Tensor};
use rand::Rng;

/// One problem: x (n, d), the LM head as chunks of `chunks[c]` rows (concatenated in `w`).
#[derive(Clone)]
pub struct Problem {
    pub n: usize,
    pub d: usize,
    pub chunks: Vec<usize>,
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub targets: Vec<u32>,
    pub mask: Vec<f32>,
    /// Threshold probabilities, used by `Threshold` objectives when `use_thr`.
    pub thr: Vec<f32>,
}

impl Problem {
    pub fn random(seed: u64, n: usize, d: usize, chunks: &[usize], spread: f32) -> Problem {
        let mut r = rng(seed);
        let v: usize = chunks.iter().sum();
        let x = randn(&mut r, n * d).iter().map(|a| a * spread).collect();
        let w = randn(&mut r, v * d);
        let targets = (0..n).map(|_| r.random_range(0..v as u32)).collect();
        // Mostly 1, some 0, some fractional weights; token 0 always kept.
        let mask = (0..n)
            .map(|i| match (i, r.random_range(0..10)) {
                (0, _) => 1.0,
                (_, 0 | 1) => 0.0,
                (_, 2) => 0.5,
                _ => 1.0,
            })
            .collect();
        // Away from the threshold 0.5 used in the tests.
        let thr = (0..n)
            .map(|_| {
                let t: f32 = r.random_range(0.0..0.49);
                if r.random_bool(0.5) {
                    t
                } else {
                    1.0 - t
                }
            })
            .collect();
        Problem {
            n,
            d,
            chunks: chunks.to_vec(),
            x,
            w,
            targets,
            mask,
            thr,
        }
    }

    /// The same problem with x and W rounded to f16, the values the f16 path computes with.
    pub fn rounded_to_f16(&self) -> Problem {
        let round = |v: &[f32]| -> Vec<f32> {
            v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect()
        };
        Problem {
            x: round(&self.x),
            w: round(&self.w),
            ..self.clone()
        }
    }

    /// x (n, d) and the chunks of W as variables in `dtype`.
    pub fn operands(&self, dtype: DType) -> (Tensor, Vec<Tensor>) {
        let d = self.d;
        let up = |v: &[f32], shape: &[usize]| -> Tensor {
            let t = tensor(v, shape);
            match dtype {
                DType::F32 => t,
                _ => t.to_dtype(dtype).unwrap(),
            }
            .var()
        };
        let x = up(&self.x, &[self.n, d]);
        let mut chunks = Vec::new();
        let mut start = 0;
        for &rows in &self.chunks {
            chunks.push(up(&self.w[start * d..(start + rows) * d], &[rows, d]));
            start += rows;
        }
        (x, chunks)
    }

    pub fn vocab(&self) -> usize {
        self.chunks.iter().sum()
    }

    /// f64 log p of every token (-inf for targets outside the vocabulary) and the logits.
    pub fn log_probs(&self) -> (Vec<f64>, Vec<Vec<f64>>) {
        let (d, v) = (self.d, self.vocab());
        let mut lps = Vec::new();
        let mut softmaxes = Vec::new();
        for i in 0..self.n {
            let z: Vec<f64> = (0..v)
                .map(|j| {
                    (0..d)
                        .map(|k| self.x[i * d + k] as f64 * self.w[j * d + k] as f64)
                        .sum()
                })
                .collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|a| (a - m).exp()).sum::<f64>().ln();
            let t = self.targets[i] as usize;
            lps.push(if t < v { z[t] - lse } else { f64::NEG_INFINITY });
            softmaxes.push(z.iter().map(|a| (a - lse).exp()).collect());
        }
        (lps, softmaxes)
    }
}

/// The f64 reference of everything `lm_head_objective` returns.
pub struct Reference {
    pub loss: f64,
    pub log_p: Vec<f64>,
    pub token_loss: Vec<f64>,
    pub dx: Vec<f64>,
    pub dw: Vec<f64>,
}

/// (loss l, weight w = -dl/dlog p, kept) of one token, the formulas written directly.
pub fn token(obj: &Objective, lp: f64, thr: Option<f64>) -> (f64, f64, bool) {
    let p = lp.exp();
    match *obj {
        Objective::Nll => (-lp, 1.0, true),
        Objective::FAlpha(0.0) => (-lp, 1.0, true),
        Objective::FAlpha(a) => {
            let a = a as f64;
            ((1.0 - p.powf(a)) / a, p.powf(a), true)
        }
        Objective::Threshold {
            q,
            keep_above,
            loss,
        } => {
            let pt = thr.unwrap_or(p);
            let keep = if keep_above {
                pt >= q as f64
            } else {
                pt <= q as f64
            };
            let (l, w) = match loss {
                ThresholdLoss::OneMinusP => (1.0 - p, p),
                ThresholdLoss::Nll => (-lp, 1.0),
            };
            (l, w, keep)
        }
        Objective::NegPow(q) => {
            let q = q as f64;
            (-p.powf(q) / q, p.powf(q), true)
        }
        Objective::Unlikelihood => ((1.0 - p + 1e-3).ln(), p / (1.0 - p + 1e-3), true),
        Objective::Dft => (-p * lp, p, true),
    }
}

pub fn reference(pb: &Problem, obj: &Objective, use_thr: bool) -> Reference {
    let (n, d, v) = (pb.n, pb.d, pb.vocab());
    let (log_p, sm) = pb.log_probs();
    let mut kept_w = vec![0.0; n];
    let mut grad_w = vec![0.0; n];
    let mut token_loss = vec![0.0; n];
    for i in 0..n {
        let thr = use_thr.then_some(pb.thr[i] as f64);
        if pb.mask[i] == 0.0 || (pb.targets[i] as usize) >= v {
            continue;
        }
        let (l, w, keep) = token(obj, log_p[i], thr);
        if keep {
            kept_w[i] = pb.mask[i] as f64;
            grad_w[i] = kept_w[i] * w;
            token_loss[i] = kept_w[i] * l;
        }
    }
    let den: f64 = kept_w.iter().sum();
    let loss = if den > 0.0 {
        token_loss.iter().sum::<f64>() / den
    } else {
        0.0
    };
    let mut dx = vec![0.0; n * d];
    let mut dw = vec![0.0; v * d];
    for i in 0..n {
        if grad_w[i] == 0.0 {
            continue;
        }
        for j in 0..v {
            let onehot = if j == pb.targets[i] as usize {
                1.0
            } else {
                0.0
            };
            let g = grad_w[i] / den * (sm[i][j] - onehot);
            for k in 0..d {
                dx[i * d + k] += g * pb.w[j * d + k] as f64;
                dw[j * d + k] += g * pb.x[i * d + k] as f64;
            }
        }
    }
    Reference {
        loss,
        log_p,
        token_loss,
        dx,
        dw,
    }
}

/// Run the fused op with x and every chunk as variables in `dtype`: its output and (dx, dW
/// joined), the gradients f32.
pub fn run_gpu(
    pb: &Problem,
    obj: &Objective,
    use_thr: bool,
    dtype: DType,
) -> (ObjectiveOutput, Vec<f32>, Vec<f32>) {
    let n = pb.n;
    let (x, chunks) = pb.operands(dtype);
    let targets = Tensor::from_u32_slice(&dev(), &pb.targets, &[n]).unwrap();
    let mask = tensor(&pb.mask, &[n]);
    let thr = tensor(&pb.thr, &[n]);
    let out =
        lm_head_objective(&x, &chunks, &targets, &mask, obj, use_thr.then_some(&thr)).unwrap();
    let grads = out.loss.backward().unwrap();
    let dx = grads.get(&x).unwrap();
    assert_eq!(dx.dtype(), DType::F32);
    let dx = dx.to_vec().unwrap();
    let mut dw = Vec::new();
    for c in &chunks {
        let g = grads.get(c).unwrap();
        assert_eq!(g.shape(), c.shape());
        dw.extend(g.to_vec().unwrap());
    }
    (out, dx, dw)
}

/// |got - want| <= tol * max |want| elementwise (gradients: relative to the tensor's scale).
pub fn assert_rel(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}[{i}]: got {g}, want {w}");
        let err = (g as f64 - w).abs() / scale.max(f64::MIN_POSITIVE);
        if err > worst.0 {
            worst = (err, i);
        }
    }
    eprintln!("{what}: max error {:.3e} of scale {scale:.3e}", worst.0);
    assert!(
        worst.0 <= tol,
        "{what}: error {:.3e} > {tol:e} at [{}]: got {}, want {}",
        worst.0,
        worst.1,
        got.get(worst.1).copied().unwrap_or(0.0),
        want.get(worst.1).copied().unwrap_or(0.0)
    );
}

/// Compare every output of the fused op in f32 with the reference.
pub fn check(what: &str, pb: &Problem, obj: &Objective, use_thr: bool) {
    check_in(what, pb, obj, use_thr, DType::F32, F32_TOL, F32_TOL);
}

/// Compare every output of the fused op with operands in `dtype` (the reference takes them
/// rounded to it) with the reference: loss, log p and token losses within `tol`, dx and dW
/// within `grad_tol` of their scale.
pub fn check_in(
    what: &str,
    pb: &Problem,
    obj: &Objective,
    use_thr: bool,
    dtype: DType,
    tol: f64,
    grad_tol: f64,
) {
    let rounded;
    let pb = if dtype == DType::F16 {
        rounded = pb.rounded_to_f16();
        &rounded
    } else {
        pb
    };
    let want = reference(pb, obj, use_thr);
    let (out, dx, dw) = run_gpu(pb, obj, use_thr, dtype);
    let what = format!(
        "{what} {dtype:?} {obj:?}{} n={} d={} chunks={:?}",
        if use_thr { " (thr given)" } else { "" },
        pb.n,
        pb.d,
        pb.chunks
    );
    assert_close(
        &format!("{what} loss"),
        &[out.loss.to_scalar().unwrap()],
        &[want.loss],
        tol,
    );
    // Targets outside the vocabulary have log p = -inf; the others are compared.
    let got_lp = out.log_p.to_vec().unwrap();
    let finite: Vec<usize> = (0..pb.n).filter(|&i| want.log_p[i].is_finite()).collect();
    for i in (0..pb.n).filter(|i| !finite.contains(i)) {
        assert_eq!(got_lp[i], f32::NEG_INFINITY, "{what}: log p of token {i}");
    }
    assert_close(
        &format!("{what} log_p"),
        &finite.iter().map(|&i| got_lp[i]).collect::<Vec<_>>(),
        &finite.iter().map(|&i| want.log_p[i]).collect::<Vec<_>>(),
        tol,
    );
    assert_close(
        &format!("{what} token_loss"),
        &out.token_loss.to_vec().unwrap(),
        &want.token_loss,
        tol,
    );
    assert_rel(&format!("{what} dx"), &dx, &want.dx, grad_tol);
    assert_rel(&format!("{what} dW"), &dw, &want.dw, grad_tol);
}

/// A threshold between the median probabilities of `pb`'s kept tokens, away from both.
pub fn median_q(pb: &Problem) -> f32 {
    let (lp, _) = pb.log_probs();
    let mut ps: Vec<f64> = lp.iter().map(|l| l.exp()).collect();
    ps.sort_by(f64::total_cmp);
    let m = ps.len() / 2;
    if m == 0 {
        return (ps[0] * 0.5) as f32;
    }
    let q = (ps[m - 1] * ps[m]).sqrt();
    assert!(ps[m] / ps[m - 1] > 1.001, "probabilities too close");
    q as f32
}

/// Every objective, threshold variants with given and current probabilities.
pub fn objectives(pb: &Problem) -> Vec<(Objective, bool)> {
    let q = median_q(pb);
    let th = |q, keep_above, loss| Objective::Threshold {
        q,
        keep_above,
        loss,
    };
    let mut v = base_objectives();
    v.extend([
        (th(0.5, true, ThresholdLoss::OneMinusP), true),
        (th(0.5, false, ThresholdLoss::Nll), true),
        (th(q, true, ThresholdLoss::Nll), false),
        (th(q, false, ThresholdLoss::OneMinusP), false),
    ]);
    v
}

/// Every objective but the thresholded ones.
pub fn base_objectives() -> Vec<(Objective, bool)> {
    [
        Objective::Nll,
        Objective::FAlpha(0.0),
        Objective::FAlpha(0.5),
        Objective::FAlpha(1.0),
        Objective::FAlpha(10.0),
        Objective::NegPow(0.5),
        Objective::NegPow(2.0),
        Objective::Unlikelihood,
        Objective::Dft,
    ]
    .into_iter()
    .map(|o| (o, false))
    .collect()
}
