//! The fused LM head + objective never holds the N x V logits: the buffer pool's peak during
//! its forward and its backward stays far below N * V * 4 bytes (its own test binary, so that
//! no concurrent test moves the pool's counters). The loss and dx are checked against an f64
//! reference on the way, over a vocabulary of many backward blocks.

mod common;
use common::*;

use engine::ops::objective::{lm_head_objective, Objective};
use engine::Tensor;
use rand::Rng;

#[test]
fn peak_memory_stays_far_below_the_logits() {
    let (n, d, v) = (64, 16, 50_000);
    let mut r = rng(21);
    let xs = randn(&mut r, n * d);
    let ws = randn(&mut r, v * d);
    let ts: Vec<u32> = (0..n).map(|_| r.random_range(0..v as u32)).collect();
    let dev = dev();
    let x = tensor(&xs, &[n, d]).var();
    let w = tensor(&ws, &[v, d]).var();
    let targets = Tensor::from_u32_slice(&dev, &ts, &[n]).unwrap();
    let mask = tensor(&vec![1.0; n], &[n]);
    let logits_bytes = (n * v * 4) as u64;

    dev.sync().unwrap();
    let before = dev.pool_stats().in_use;
    dev.reset_peak();
    let out = lm_head_objective(
        &x,
        std::slice::from_ref(&w),
        &targets,
        &mask,
        &Objective::FAlpha(0.5),
        None,
    )
    .unwrap();
    let fwd = dev.pool_stats().peak - before;

    let before = dev.pool_stats().in_use;
    dev.reset_peak();
    let grads = out.loss.backward().unwrap();
    let bwd = dev.pool_stats().peak - before;
    // dW itself (V x d) is the one large buffer the backward must make.
    let dw_bytes = (v * d * 4) as u64;
    eprintln!(
        "logits would be {logits_bytes} bytes; forward peak +{fwd}, backward peak +{bwd} \
         (dW {dw_bytes})"
    );
    assert!(fwd <= logits_bytes / 10, "forward peak {fwd}");
    assert!(
        bwd <= dw_bytes * 9 / 8 + logits_bytes / 8,
        "backward peak {bwd}"
    );

    // Reference: loss and dx of the token mean of (1 - p^0.5) / 0.5.
    let mut loss = 0.0;
    let mut dx = vec![0.0f64; n * d];
    for i in 0..n {
        let z: Vec<f64> = (0..v)
            .map(|j| {
                (0..d)
                    .map(|k| xs[i * d + k] as f64 * ws[j * d + k] as f64)
                    .sum()
            })
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|a| (a - m).exp()).sum::<f64>().ln();
        let p = (z[ts[i] as usize] - lse).exp();
        loss += (1.0 - p.sqrt()) / 0.5 / n as f64;
        let c = p.sqrt() / n as f64;
        for (j, zj) in z.iter().enumerate() {
            let g = c * ((zj - lse).exp() - if j == ts[i] as usize { 1.0 } else { 0.0 });
            for k in 0..d {
                dx[i * d + k] += g * ws[j * d + k] as f64;
            }
        }
    }
    assert_close("loss", &[out.loss.to_scalar().unwrap()], &[loss], F32_TOL);
    let scale = dx.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let got = grads.get(&x).unwrap().to_vec().unwrap();
    let want: Vec<f64> = dx.iter().map(|g| g / scale).collect();
    let got: Vec<f32> = got.iter().map(|g| (*g as f64 / scale) as f32).collect();
    assert_close("dx / max |dx|", &got, &want, F32_TOL);
    assert_eq!(grads.get(&w).unwrap().shape(), &[v, d]);
}
