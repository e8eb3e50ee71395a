//! Softmax and log-softmax over the last axis against f64 CPU references (edge row lengths,
//! a vocabulary-long row, large and -inf inputs), the fused backward against the analytic
//! f64 gradient, and against finite differences.

mod common;
use common::*;

use engine::{Error, Tensor};

/// f64 (softmax, log_softmax) of each row of `len`.
fn reference(x: &[f32], len: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut sm, mut lsm) = (Vec::new(), Vec::new());
    for row in x.chunks(len) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        for &v in row {
            lsm.push(v as f64 - lse);
            sm.push((v as f64 - lse).exp());
        }
    }
    (sm, lsm)
}

/// Compare probabilities scaled by the row length, so that tiny probabilities of long rows
/// are still checked to a relative 1e-4.
fn assert_probs(what: &str, got: &[f32], want: &[f64], len: usize) {
    let got: Vec<f32> = got.iter().map(|&v| v * len as f32).collect();
    let want: Vec<f64> = want.iter().map(|&v| v * len as f64).collect();
    assert_close(what, &got, &want, F32_TOL);
}

#[test]
fn forward_matches_reference() {
    let mut r = rng(1);
    for &(rows, len, spread) in &[
        (1, 1, 1.0),
        (3, 1, 1.0),
        (2, 255, 4.0),
        (2, 256, 4.0),
        (3, 257, 4.0),
        (2, 1000, 4.0),
        (2, 300, 100.0), // large logits: needs the max subtracted
        (1, 151_936, 8.0),
    ] {
        let x: Vec<f32> = randn(&mut r, rows * len)
            .iter()
            .map(|v| v * spread)
            .collect();
        let (sm, lsm) = reference(&x, len);
        let t = tensor(&x, &[rows, len]);
        let what = format!("({rows}, {len}) x{spread}");
        assert_probs(
            &format!("softmax {what}"),
            &t.softmax().unwrap().to_vec().unwrap(),
            &sm,
            len,
        );
        assert_close(
            &format!("log_softmax {what}"),
            &t.log_softmax().unwrap().to_vec().unwrap(),
            &lsm,
            F32_TOL,
        );
    }
}

#[test]
fn rank_three_and_masked_inputs() {
    let mut r = rng(2);
    let mut x = randn(&mut r, 2 * 3 * 40);
    // A causal-style mask: -inf entries give probability 0.
    for (i, v) in x.iter_mut().enumerate() {
        if i % 40 > 30 || i % 7 == 3 {
            *v = f32::NEG_INFINITY;
        }
    }
    let (sm, lsm) = reference(&x, 40);
    let t = tensor(&x, &[2, 3, 40]);
    let y = t.softmax().unwrap();
    assert_eq!(y.shape(), &[2, 3, 40]);
    assert_probs("masked softmax", &y.to_vec().unwrap(), &sm, 40);
    let got = t.log_softmax().unwrap().to_vec().unwrap();
    for (i, (&g, &w)) in got.iter().zip(&lsm).enumerate() {
        if w.is_infinite() {
            assert_eq!(g, f32::NEG_INFINITY, "log_softmax[{i}]");
        } else {
            assert!(
                (g as f64 - w).abs() <= F32_TOL * w.abs().max(1.0),
                "log_softmax[{i}]: {g} vs {w}"
            );
        }
    }
}

#[test]
fn fused_backward_matches_analytic_gradient() {
    let mut r = rng(3);
    for &(rows, len) in &[
        (2, 1),
        (2, 255),
        (2, 256),
        (2, 257),
        (3, 1000),
        (1, 151_936),
    ] {
        let x: Vec<f32> = randn(&mut r, rows * len).iter().map(|v| v * 4.0).collect();
        let w = randn(&mut r, rows * len);
        let (sm, _) = reference(&x, len);
        let wt = tensor(&w, &[rows, len]);
        for log in [false, true] {
            let xv = tensor(&x, &[rows, len]).var();
            let y = if log { xv.log_softmax() } else { xv.softmax() }.unwrap();
            let g = y.mul(&wt).unwrap().backward().unwrap();
            let got = g.get(&xv).unwrap().to_vec().unwrap();
            let mut want = Vec::with_capacity(rows * len);
            for (p, gw) in sm.chunks(len).zip(w.chunks(len)) {
                let dot: f64 = p.iter().zip(gw).map(|(&p, &g)| p * g as f64).sum();
                let gsum: f64 = gw.iter().map(|&g| g as f64).sum();
                for (&p, &g) in p.iter().zip(gw) {
                    want.push(if log {
                        g as f64 - p * gsum
                    } else {
                        p * (g as f64 - dot)
                    });
                }
            }
            let what = format!(
                "{} backward ({rows}, {len})",
                if log { "log_softmax" } else { "softmax" }
            );
            if log {
                assert_close(&what, &got, &want, F32_TOL);
            } else {
                assert_probs(&what, &got, &want, len);
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(4);
    for shape in [vec![3, 5], vec![2, 1], vec![2, 2, 3]] {
        let n = shape.iter().product();
        let x = randn(&mut r, n);
        check_grads(
            &format!("softmax {shape:?}"),
            &[(x.clone(), shape.clone())],
            |v| v[0].softmax(),
            1e-2,
            2e-2,
        );
        check_grads(
            &format!("log_softmax {shape:?}"),
            &[(x, shape)],
            |v| v[0].log_softmax(),
            1e-2,
            2e-2,
        );
    }
}

#[test]
fn scalar_is_an_error() {
    let s = tensor(&[1.0], &[1]).sum_all().unwrap();
    assert!(matches!(s.softmax(), Err(Error::BadShape { .. })));
    let u = Tensor::from_u32_slice(&dev(), &[1, 2], &[2]).unwrap();
    assert!(matches!(u.log_softmax(), Err(Error::DTypeMismatch { .. })));
}
