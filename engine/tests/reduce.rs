//! Reductions (sum, mean, max/argmax over any axis; sum_all, mean_all) against f64 CPU
//! references over edge shapes, and their backward rules against finite differences.

mod common;
use common::*;

use engine::{Error, Tensor};

/// (outer, len, inner) around axis d.
fn split(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// f64 sum, mean, max and first argmax over axis d, each (outer * inner).
fn reference(x: &[f32], shape: &[usize], d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<u32>) {
    let (outer, len, inner) = split(shape, d);
    let (mut sum, mut mean, mut max, mut idx) = (vec![], vec![], vec![], vec![]);
    for o in 0..outer {
        for i in 0..inner {
            let vals: Vec<f64> = (0..len)
                .map(|j| x[(o * len + j) * inner + i] as f64)
                .collect();
            let s: f64 = vals.iter().sum();
            sum.push(s);
            mean.push(s / len as f64);
            let mut best = 0;
            for j in 1..len {
                if vals[j] > vals[best] {
                    best = j;
                }
            }
            max.push(vals[best]);
            idx.push(best as u32);
        }
    }
    (sum, mean, max, idx)
}

const SHAPES: &[&[usize]] = &[
    &[1],
    &[7],
    &[3, 1],
    &[2, 255],
    &[2, 256],
    &[3, 257],
    &[2, 1000],
    &[2, 3, 4],
    &[2, 5, 1, 70],
    &[1500, 3], // axis 0 splits into chunks
];

#[test]
fn sum_mean_max_over_every_axis() {
    let mut r = rng(1);
    for &shape in SHAPES {
        let n: usize = shape.iter().product();
        // Values on a coarse grid so that max has ties (the first index must win).
        let x: Vec<f32> = randn(&mut r, n)
            .iter()
            .map(|v| (v * 8.0).round() / 8.0)
            .collect();
        let t = tensor(&x, shape);
        for d in 0..shape.len() {
            let (sum, mean, max, idx) = reference(&x, shape, d);
            for keepdim in [false, true] {
                let mut want_shape = shape.to_vec();
                if keepdim {
                    want_shape[d] = 1;
                } else {
                    want_shape.remove(d);
                }
                let what = format!("{shape:?} dim {d} keepdim {keepdim}");
                let dim = if keepdim {
                    d as isize - shape.len() as isize
                } else {
                    d as isize
                };
                let s = t.sum(dim, keepdim).unwrap();
                assert_eq!(s.shape(), &want_shape[..], "sum {what}");
                assert_close(&format!("sum {what}"), &s.to_vec().unwrap(), &sum, F32_TOL);
                let m = t.mean(dim, keepdim).unwrap();
                assert_eq!(m.shape(), &want_shape[..], "mean {what}");
                assert_close(
                    &format!("mean {what}"),
                    &m.to_vec().unwrap(),
                    &mean,
                    F32_TOL,
                );
                let mx = t.max(dim, keepdim).unwrap();
                assert_eq!(mx.shape(), &want_shape[..], "max {what}");
                assert_close(&format!("max {what}"), &mx.to_vec().unwrap(), &max, 0.0);
                let am = t.argmax(dim, keepdim).unwrap();
                assert_eq!(am.shape(), &want_shape[..], "argmax {what}");
                assert_eq!(am.to_vec_u32().unwrap(), idx, "argmax {what}");
            }
        }
    }
}

#[test]
fn long_rows_and_whole_tensor() {
    let mut r = rng(2);
    let len = 151_936;
    let x = randn(&mut r, 2 * len);
    let t = tensor(&x, &[2, len]);
    let (sum, _, max, idx) = reference(&x, &[2, len], 1);
    assert_close(
        "sum of long rows",
        &t.sum(-1, false).unwrap().to_vec().unwrap(),
        &sum,
        F32_TOL,
    );
    assert_close(
        "max of long rows",
        &t.max(-1, false).unwrap().to_vec().unwrap(),
        &max,
        0.0,
    );
    assert_eq!(t.argmax(-1, false).unwrap().to_vec_u32().unwrap(), idx);

    // Whole-tensor sums of a long vector go through two launches.
    let total: f64 = x.iter().map(|&v| v as f64).sum();
    let s = t.sum_all().unwrap();
    assert_eq!(s.shape(), &[] as &[usize]);
    assert_close("sum_all", &s.to_vec().unwrap(), &[total], F32_TOL);
    let m = t.mean_all().unwrap();
    assert_close(
        "mean_all",
        &m.to_vec().unwrap(),
        &[total / x.len() as f64],
        F32_TOL,
    );
    for n in [1, 3, 1000, 1025] {
        let y = randn(&mut r, n);
        let want: f64 = y.iter().map(|&v| v as f64).sum();
        assert_close(
            &format!("sum_all of {n}"),
            &[tensor(&y, &[n]).sum_all().unwrap().to_scalar().unwrap()],
            &[want],
            F32_TOL,
        );
    }
}

#[test]
fn all_minus_infinity_row_has_a_valid_argmax() {
    let x = vec![f32::NEG_INFINITY; 300];
    let t = tensor(&x, &[1, 300]);
    assert_eq!(t.argmax(-1, false).unwrap().to_vec_u32().unwrap(), vec![0]);
    assert_eq!(
        t.max(-1, false).unwrap().to_vec().unwrap(),
        vec![f32::NEG_INFINITY]
    );
}

#[test]
fn bad_axes_are_errors() {
    let t = tensor(&[1.0, 2.0], &[2]);
    assert!(matches!(t.sum(1, false), Err(Error::BadShape { .. })));
    assert!(matches!(t.mean(-2, false), Err(Error::BadShape { .. })));
    let scalar = t.sum_all().unwrap();
    assert!(matches!(scalar.sum(0, false), Err(Error::BadShape { .. })));
    let empty = Tensor::zeros(&dev(), &[2, 0], engine::DType::F32).unwrap();
    assert!(matches!(empty.max(1, false), Err(Error::BadShape { .. })));
    assert_eq!(
        empty.sum(1, false).unwrap().to_vec().unwrap(),
        vec![0.0, 0.0]
    );
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(3);
    let shape = vec![3, 4, 2];
    let x = randn(&mut r, 24);
    for d in [0isize, 1, -1] {
        check_grads(
            &format!("sum dim {d}"),
            &[(x.clone(), shape.clone())],
            |v| v[0].sum(d, false),
            1e-2,
            2e-2,
        );
        check_grads(
            &format!("mean dim {d}"),
            &[(x.clone(), shape.clone())],
            |v| v[0].mean(d, true),
            1e-2,
            2e-2,
        );
    }
    check_grads(
        "sum_all",
        &[(x.clone(), shape.clone())],
        |v| v[0].sum_all(),
        1e-2,
        2e-2,
    );
    check_grads(
        "mean_all",
        &[(x.clone(), shape.clone())],
        |v| v[0].mean_all(),
        1e-2,
        2e-2,
    );
    // Distinct values at least 0.1 apart, so a step of eps never changes the argmax.
    let mut perm: Vec<f32> = (0..24).map(|i| i as f32 * 0.1).collect();
    for i in (1..perm.len()).rev() {
        perm.swap(i, (r_next(&mut r) as usize) % (i + 1));
    }
    for d in [0isize, 1, 2] {
        check_grads(
            &format!("max dim {d}"),
            &[(perm.clone(), shape.clone())],
            |v| v[0].max(d, false),
            1e-2,
            2e-2,
        );
    }
}

fn r_next(r: &mut rand::rngs::StdRng) -> u32 {
    use rand::Rng;
    r.random()
}

#[test]
fn max_gradient_goes_to_the_first_maximum() {
    let x = tensor(&[1.0, 3.0, 3.0, 0.0, 2.0, 2.0], &[2, 3]).var();
    let g = x.max(1, false).unwrap().backward().unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    );
}
