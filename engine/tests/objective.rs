//! The fused LM head + objective against an f64 CPU reference that materialises the logits:
//! loss, per-token log p and loss, dx and every chunk's dW for each objective, over vocabulary
//! sizes off the tile and split into unequal chunks, masked and out-of-range tokens, p near 0
//! and 1; the backward against finite differences; the forward-only log-probability path.

mod common;
mod objective_ref;
use common::*;
use objective_ref::*;

use engine::ops::objective::{lm_head_log_probs, lm_head_objective, Objective, ThresholdLoss};
use engine::{tape_len, DType, Tensor};

#[test]
fn every_objective_matches_reference() {
    for (seed, n, d, chunks) in [(1, 5, 8, vec![257]), (2, 33, 33, vec![300, 257, 443])] {
        let pb = Problem::random(seed, n, d, &chunks, 1.0);
        for (obj, use_thr) in objectives(&pb) {
            check("objectives", &pb, &obj, use_thr);
        }
    }
}

#[test]
fn edge_shapes_match_reference() {
    let mut cases = Vec::new();
    for chunks in [vec![1], vec![7], vec![257], vec![1000], vec![300, 257, 443]] {
        for n in [1, 5, 33] {
            for d in [1, 8, 33] {
                cases.push((n, d, chunks.clone()));
            }
        }
    }
    // Several backward blocks; two token tiles; chunks of one row and of a whole tile.
    cases.extend([
        (5, 8, vec![9000]),
        (70, 16, vec![65, 63]),
        (33, 1, vec![64, 1, 128]),
    ]);
    for (seed, (n, d, chunks)) in cases.into_iter().enumerate() {
        let pb = Problem::random(100 + seed as u64, n, d, &chunks, 1.0);
        for obj in [Objective::Nll, Objective::FAlpha(0.5), Objective::Dft] {
            check("edge", &pb, &obj, false);
        }
    }
}

#[test]
fn masked_tokens_contribute_nothing() {
    let mut pb = Problem::random(11, 33, 8, &[100, 57], 1.0);
    let obj = Objective::FAlpha(1.0);
    let (out, dx, dw) = run_gpu(&pb, &obj, false, DType::F32);
    // Whatever a masked token holds changes nothing but its own log p.
    let masked: Vec<usize> = (0..pb.n).filter(|&i| pb.mask[i] == 0.0).collect();
    assert!(!masked.is_empty());
    for &i in &masked {
        pb.targets[i] = (pb.targets[i] + 1) % pb.vocab() as u32;
        for k in 0..pb.d {
            pb.x[i * pb.d + k] *= -3.0;
        }
    }
    let (out2, dx2, dw2) = run_gpu(&pb, &obj, false, DType::F32);
    assert_eq!(
        out.loss.to_scalar().unwrap(),
        out2.loss.to_scalar().unwrap()
    );
    assert_eq!(dw, dw2);
    for i in 0..pb.n {
        let row = &dx[i * pb.d..(i + 1) * pb.d];
        if masked.contains(&i) {
            assert!(
                row.iter().all(|&g| g == 0.0),
                "masked token {i} has a gradient"
            );
        } else {
            assert_eq!(row, &dx2[i * pb.d..(i + 1) * pb.d]);
        }
    }
    // All masked: loss 0, gradients 0, nothing NaN.
    pb.mask.iter_mut().for_each(|m| *m = 0.0);
    for obj in [Objective::Nll, Objective::FAlpha(0.5), Objective::Dft] {
        check("all masked", &pb, &obj, false);
        let (out, dx, dw) = run_gpu(&pb, &obj, false, DType::F32);
        assert_eq!(out.loss.to_scalar().unwrap(), 0.0);
        assert!(dx.iter().chain(&dw).all(|&g| g == 0.0));
        assert!(out.token_loss.to_vec().unwrap().iter().all(|&l| l == 0.0));
    }
    // A threshold that keeps nothing: the same.
    let none = Objective::Threshold {
        q: 2.0,
        keep_above: true,
        loss: ThresholdLoss::Nll,
    };
    pb.mask.iter_mut().for_each(|m| *m = 1.0);
    let (out, dx, _) = run_gpu(&pb, &none, false, DType::F32);
    assert_eq!(out.loss.to_scalar().unwrap(), 0.0);
    assert!(dx.iter().all(|&g| g == 0.0));
}

#[test]
fn out_of_range_targets_are_not_kept() {
    let mut pb = Problem::random(12, 5, 8, &[40, 20], 1.0);
    pb.mask = vec![1.0; 5];
    pb.targets[1] = 60;
    pb.targets[3] = u32::MAX;
    let obj = Objective::FAlpha(0.5);
    check("out of range", &pb, &obj, false);
    let (out, dx, _) = run_gpu(&pb, &obj, false, DType::F32);
    let lp = out.log_p.to_vec().unwrap();
    assert!(lp[1] == f32::NEG_INFINITY && lp[3] == f32::NEG_INFINITY);
    // The same as masking them.
    let mut masked = pb;
    masked.mask[1] = 0.0;
    masked.mask[3] = 0.0;
    let (out2, dx2, _) = run_gpu(&masked, &obj, false, DType::F32);
    assert_eq!(
        out.loss.to_scalar().unwrap(),
        out2.loss.to_scalar().unwrap()
    );
    assert_eq!(dx, dx2);
}

/// Logits built so that token targets have p ~ 1 - 1e-7, ~ 1e-30 and in between.
#[test]
fn extreme_probabilities_stay_finite_and_exact() {
    // d = 1, x = 1: the logits are the weight column [0, -c x 6, -69.08], so that target 0
    // has p = 1 - 1e-7 and target 7 p ~ 1e-30; a second head moves logit 3 to -2 (p ~ 0.1).
    let c = (6e7f32).ln();
    let w = vec![0.0, -c, -c, -c, -c, -c, -c, -69.08];
    let v = w.len();
    let targets = vec![0, 7, 3, 1, 0];
    let n = targets.len();
    let pb = Problem {
        n,
        d: 1,
        chunks: vec![3, 5],
        x: vec![1.0; n],
        w,
        targets,
        mask: vec![1.0; n],
        thr: vec![0.9, 0.1, 0.9, 0.1, 0.9],
    };
    let mut pb1 = pb.clone();
    pb1.w[3] = -2.0;
    let (lp, _) = pb.log_probs();
    assert!((1.0 - lp[0].exp() - 1e-7).abs() < 1e-9);
    assert!(lp[1].exp() < 2e-30);
    assert_eq!(v, 8);
    for pb in [&pb, &pb1] {
        for (obj, use_thr) in objectives_fixed() {
            check("extreme", pb, &obj, use_thr);
            let (out, dx, dw) = run_gpu(pb, &obj, use_thr, DType::F32);
            let lp = out.log_p.to_vec().unwrap();
            let tl = out.token_loss.to_vec().unwrap();
            assert!(out.loss.to_scalar().unwrap().is_finite());
            assert!(lp.iter().all(|&l| l.is_finite() && l <= 0.0), "{lp:?}");
            assert!(tl.iter().chain(&dx).chain(&dw).all(|g| g.is_finite()));
        }
        // alpha = 0 is exactly NLL: bit for bit the same as Nll, token loss = -log p.
        let (a, dxa, dwa) = run_gpu(pb, &Objective::FAlpha(0.0), false, DType::F32);
        let (b, dxb, dwb) = run_gpu(pb, &Objective::Nll, false, DType::F32);
        let lp = a.log_p.to_vec().unwrap();
        let tl = a.token_loss.to_vec().unwrap();
        assert_eq!(tl, lp.iter().map(|l| -l).collect::<Vec<_>>());
        assert_eq!(a.loss.to_scalar().unwrap(), b.loss.to_scalar().unwrap());
        assert_eq!((dxa, dwa), (dxb, dwb));
    }
}

/// The objectives with fixed thresholds (for problems whose probabilities are not spread).
fn objectives_fixed() -> Vec<(Objective, bool)> {
    let mut v = base_objectives();
    v.push((
        Objective::Threshold {
            q: 0.5,
            keep_above: true,
            loss: ThresholdLoss::OneMinusP,
        },
        true,
    ));
    v.push((
        Objective::Threshold {
            q: 0.5,
            keep_above: false,
            loss: ThresholdLoss::Nll,
        },
        false,
    ));
    v
}

#[test]
fn backward_matches_finite_differences() {
    let (n, d, chunks) = (5, 4, [5, 6]);
    // Spread logits, so that p^alpha is not negligible for alpha = 10.
    let pb = Problem::random(13, n, d, &chunks, 3.0);
    let targets = Tensor::from_u32_slice(&dev(), &pb.targets, &[n]).unwrap();
    let mask = tensor(&pb.mask, &[n]);
    let thr = tensor(&pb.thr, &[n]);
    let inputs = vec![
        (pb.x.clone(), vec![n, d]),
        (pb.w[..5 * d].to_vec(), vec![5, d]),
        (pb.w[5 * d..].to_vec(), vec![6, d]),
    ];
    for (obj, use_thr) in [
        (Objective::Nll, false),
        (Objective::FAlpha(0.5), false),
        (Objective::FAlpha(10.0), false),
        (Objective::NegPow(2.0), false),
        (Objective::Unlikelihood, false),
        (
            Objective::Threshold {
                q: 0.5,
                keep_above: true,
                loss: ThresholdLoss::OneMinusP,
            },
            true,
        ),
    ] {
        check_grads(
            &format!("{obj:?}"),
            &inputs,
            |xs| {
                let thr = use_thr.then_some(&thr);
                Ok(lm_head_objective(&xs[0], &xs[1..], &targets, &mask, &obj, thr)?.loss)
            },
            1e-2,
            2e-2,
        );
    }
}

#[test]
fn log_probs_match_reference_without_a_tape() {
    for (seed, n, d, chunks) in [(14, 1, 1, vec![1]), (15, 33, 33, vec![300, 1, 700])] {
        let mut pb = Problem::random(seed, n, d, &chunks, 1.0);
        pb.targets[0] = u32::MAX;
        let (want, _) = pb.log_probs();
        let x = tensor(&pb.x, &[n, d]).var();
        let mut chunks = Vec::new();
        let mut start = 0;
        for &rows in &pb.chunks {
            chunks.push(tensor(&pb.w[start * d..(start + rows) * d], &[rows, d]).var());
            start += rows;
        }
        let targets = Tensor::from_u32_slice(&dev(), &pb.targets, &[n]).unwrap();
        let before = tape_len();
        let lp = lm_head_log_probs(&x, &chunks, &targets).unwrap();
        assert_eq!(tape_len(), before, "the diagnostic path records nothing");
        assert!(!lp.is_tracked());
        let got = lp.to_vec().unwrap();
        assert_eq!(got[0], f32::NEG_INFINITY);
        assert_close("log_probs", &got[1..], &want[1..], F32_TOL);
    }
}

#[test]
fn frozen_inputs_get_no_gradient() {
    let pb = Problem::random(16, 5, 8, &[30, 20], 1.0);
    let want = reference(&pb, &Objective::Nll, false);
    let x = tensor(&pb.x, &[5, 8]);
    let w0 = tensor(&pb.w[..30 * 8], &[30, 8]);
    let w1 = tensor(&pb.w[30 * 8..], &[20, 8]).var();
    let targets = Tensor::from_u32_slice(&dev(), &pb.targets, &[5]).unwrap();
    let mask = tensor(&pb.mask, &[5]);
    let out = lm_head_objective(
        &x,
        &[w0, w1.clone()],
        &targets,
        &mask,
        &Objective::Nll,
        None,
    )
    .unwrap();
    let grads = out.loss.backward().unwrap();
    assert_eq!(grads.len(), 1);
    assert_rel(
        "dW of the trained chunk",
        &grads.get(&w1).unwrap().to_vec().unwrap(),
        &want.dw[30 * 8..],
        F32_TOL,
    );
}

#[test]
fn bad_inputs_are_errors() {
    let x = tensor(&[0.0; 10], &[5, 2]);
    let w = tensor(&[0.0; 6], &[3, 2]);
    let w_bad = tensor(&[0.0; 9], &[3, 3]);
    let t = Tensor::from_u32_slice(&dev(), &[0; 5], &[5]).unwrap();
    let t_short = Tensor::from_u32_slice(&dev(), &[0; 4], &[4]).unwrap();
    let m = tensor(&[1.0; 5], &[5]);
    let m_short = tensor(&[1.0; 4], &[4]);
    let nll = Objective::Nll;
    let w_ok = std::slice::from_ref(&w);
    assert!(lm_head_objective(&x, &[w_bad], &t, &m, &nll, None).is_err());
    assert!(lm_head_objective(&x, &[], &t, &m, &nll, None).is_err());
    assert!(lm_head_objective(&x, w_ok, &t_short, &m, &nll, None).is_err());
    assert!(lm_head_objective(&x, w_ok, &m, &m, &nll, None).is_err());
    assert!(lm_head_objective(&x, w_ok, &t, &m_short, &nll, None).is_err());
    assert!(lm_head_objective(&x.reshape(&[10]).unwrap(), w_ok, &t, &m, &nll, None).is_err());
    for bad in [
        Objective::NegPow(0.0),
        Objective::FAlpha(f32::NAN),
        Objective::Threshold {
            q: f32::INFINITY,
            keep_above: true,
            loss: ThresholdLoss::Nll,
        },
    ] {
        assert!(lm_head_objective(&x, w_ok, &t, &m, &bad, None).is_err());
    }
    let th = Objective::Threshold {
        q: 0.5,
        keep_above: true,
        loss: ThresholdLoss::Nll,
    };
    assert!(lm_head_objective(&x, w_ok, &t, &m, &th, Some(&m_short)).is_err());
    assert!(lm_head_log_probs(&x, &[tensor(&[0.0; 0], &[0, 2])], &t).is_err());
}
