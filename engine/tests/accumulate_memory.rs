//! Accumulating micro-batches holds one set of parameter gradients, not two: during a later
//! micro-batch's backward each fresh parameter gradient is added into the accumulated one as
//! it arrives and freed, so the buffer pool's peak above the accumulated gradients stays near
//! one parameter's gradient, not all of them (its own test binary, so that no concurrent
//! test moves the pool's counters). The sums are checked against the two micro-batches'
//! gradients taken apart.

mod common;
use common::*;

use engine::{Gradients, Tensor};

/// sum(x W_1^T ... W_L^T): a chain of square linear maps, small activations, large weights
/// (the products read W transposed in place, so the tape holds no copy of it).
fn loss(x: &Tensor, ws: &[Tensor]) -> Tensor {
    let mut h = x.clone();
    for w in ws {
        h = h.matmul_t(w, false, true).unwrap();
    }
    h.sum_all().unwrap()
}

#[test]
fn a_later_micro_batch_holds_one_gradient_at_a_time() {
    let (layers, d, rows) = (8, 256, 2);
    let mut r = rng(17);
    let dev = dev();
    let ws: Vec<Tensor> = (0..layers)
        .map(|_| tensor(&uniform(&mut r, d * d, -0.1, 0.1), &[d, d]).var())
        .collect();
    let xs: Vec<Tensor> = (0..2)
        .map(|_| tensor(&randn(&mut r, rows * d), &[rows, d]))
        .collect();
    let grad_bytes = (d * d * 4) as u64;

    // Each micro-batch alone, for the reference sums.
    let apart: Vec<Gradients> = xs
        .iter()
        .map(|x| loss(x, &ws).backward().unwrap())
        .collect();

    let mut acc = Gradients::default();
    loss(&xs[0], &ws).backward_into(&mut acc).unwrap();
    let held = loss(&xs[1], &ws);
    dev.sync().unwrap();
    let before = dev.pool_stats().in_use;
    dev.reset_peak();
    held.backward_into(&mut acc).unwrap();
    dev.sync().unwrap();
    let extra = dev.pool_stats().peak - before;
    eprintln!(
        "second micro-batch's backward: peak +{extra} bytes over {layers} accumulated \
         gradients of {grad_bytes} bytes each"
    );
    // Before accumulating in place: all eight fresh gradients, then a sum beside each.
    assert!(
        extra <= 2 * grad_bytes + grad_bytes / 2,
        "peak +{extra} bytes: more than about two gradients of {grad_bytes}"
    );

    for (i, w) in ws.iter().enumerate() {
        let want: Vec<f64> = apart[0]
            .get(w)
            .unwrap()
            .to_vec()
            .unwrap()
            .iter()
            .zip(apart[1].get(w).unwrap().to_vec().unwrap())
            .map(|(a, b)| (a + b) as f64)
            .collect();
        assert_close(
            &format!("dW{i}"),
            &acc.get(w).unwrap().to_vec().unwrap(),
            &want,
            F32_TOL,
        );
    }
}
