//! SwiGLU against an f64 CPU reference (edge sizes, saturating inputs), its fused backward
//! against the analytic f64 gradient and finite differences.

mod common;
use common::*;

use engine::ops::activation::swiglu;
use engine::Error;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn forward_and_backward_match_reference() {
    let mut r = rng(1);
    for n in [1usize, 255, 256, 257, 1000, 70_001] {
        let mut gate: Vec<f32> = randn(&mut r, n).iter().map(|v| v * 6.0).collect();
        if n > 4 {
            // Saturated sigmoid both ways.
            gate[0] = 100.0;
            gate[1] = -100.0;
            gate[2] = 30.0;
            gate[3] = -30.0;
        }
        let up = randn(&mut r, n);
        let g = randn(&mut r, n);
        let shape = if n % 5 == 0 { vec![n / 5, 5] } else { vec![n] };
        let (gv, uv) = (tensor(&gate, &shape).var(), tensor(&up, &shape).var());
        let y = swiglu(&gv, &uv).unwrap();
        assert_eq!(y.shape(), &shape[..]);
        let (mut want, mut dgate, mut dup) = (vec![], vec![], vec![]);
        for i in 0..n {
            let (a, b, gi) = (gate[i] as f64, up[i] as f64, g[i] as f64);
            let s = sigmoid(a);
            want.push(a * s * b);
            dgate.push(gi * b * s * (1.0 + a * (1.0 - s)));
            dup.push(gi * a * s);
        }
        assert_close(&format!("swiglu {n}"), &y.to_vec().unwrap(), &want, F32_TOL);
        let grads = y.mul(&tensor(&g, &shape)).unwrap().backward().unwrap();
        assert_close(
            &format!("swiglu d gate {n}"),
            &grads.get(&gv).unwrap().to_vec().unwrap(),
            &dgate,
            F32_TOL,
        );
        assert_close(
            &format!("swiglu d up {n}"),
            &grads.get(&uv).unwrap().to_vec().unwrap(),
            &dup,
            F32_TOL,
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(2);
    let gate: Vec<f32> = randn(&mut r, 12).iter().map(|v| v * 3.0).collect();
    let up = randn(&mut r, 12);
    check_grads(
        "swiglu",
        &[(gate, vec![3, 4]), (up, vec![3, 4])],
        |v| v[0].swiglu(&v[1]),
        1e-2,
        2e-2,
    );
}

#[test]
fn mismatched_shapes_are_an_error() {
    let a = tensor(&[1.0; 6], &[2, 3]);
    assert!(matches!(
        swiglu(&a, &tensor(&[1.0; 6], &[3, 2])),
        Err(Error::ShapeMismatch { .. })
    ));
}
