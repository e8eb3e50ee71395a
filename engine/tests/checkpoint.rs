//! Activation checkpointing (`engine::checkpoint`): the recomputed graph gives the same
//! gradients as the plain one, for its inputs and for the variables it closes over, checked
//! against central finite differences too; `backward_seeded` starts from a given gradient.

mod common;
use common::*;

use engine::{checkpoint, tape_len, Tensor};

/// y = silu(x @ w) * x, a small two-op graph with a weight captured by the closure.
fn block(x: &Tensor, w: &Tensor) -> engine::Result<Tensor> {
    let h = x.matmul(w)?;
    h.silu()?.mul(x)
}

#[test]
fn recomputed_gradients_equal_plain_ones() {
    let mut r = rng(11);
    let (xd, wd) = (randn(&mut r, 3 * 5), randn(&mut r, 5 * 5));
    let x = tensor(&xd, &[3, 5]).var();
    let w = tensor(&wd, &[5, 5]).var();
    let plain = block(&x, &w).unwrap().sum_all().unwrap();
    let want = plain.backward().unwrap();

    let wc = w.clone();
    let before = tape_len();
    let y = checkpoint(&[&x], &[&w], move |xs| block(&xs[0], &wc)).unwrap();
    assert_eq!(tape_len() - before, 1, "one node for the whole block");
    let got = y.sum_all().unwrap().backward().unwrap();
    for (name, v) in [("x", &x), ("w", &w)] {
        let (g, e) = (got.get(v).unwrap(), want.get(v).unwrap());
        assert_close(
            name,
            &g.to_vec().unwrap(),
            &to_f64(&e.to_vec().unwrap()),
            1e-6,
        );
    }
    // And against finite differences, through the checkpoint.
    check_grads(
        "checkpoint",
        &[(xd, vec![3, 5]), (wd, vec![5, 5])],
        |v| {
            let w = v[1].clone();
            checkpoint(&[&v[0]], &[&v[1]], move |xs| block(&xs[0], &w))
        },
        1e-2,
        2e-2,
    );
}

#[test]
fn backward_from_a_given_gradient() {
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).var();
    let y = x.mul(&x).unwrap();
    let seed = tensor(&[1.0, 0.5, -2.0], &[3]);
    let mut grads = engine::Gradients::default();
    y.backward_seeded(Some(&seed), &mut grads).unwrap();
    // d(x^2)/dx * seed = 2x * seed
    assert_eq!(
        grads.get(&x).unwrap().to_vec().unwrap(),
        vec![2.0, 2.0, -12.0]
    );
    let bad = tensor(&[1.0], &[1]);
    let y = x.mul(&x).unwrap();
    assert!(y.backward_seeded(Some(&bad), &mut grads).is_err());
    engine::clear_tape();
}
