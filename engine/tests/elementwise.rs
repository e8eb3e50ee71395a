//! Elementwise ops against f64 CPU references (with broadcasting and edge shapes), and their
//! backward rules against central finite differences.

mod common;
use common::*;

use engine::{DType, Tensor};

fn bcast_ref(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<f64>, Vec<usize>) {
    let rank = sa.len().max(sb.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let out: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let n: usize = out.iter().product();
    let idx = |shape: &[usize], coord: &[usize]| {
        shape
            .iter()
            .zip(coord)
            .fold(0, |acc, (&d, &c)| acc * d + if d == 1 { 0 } else { c })
    };
    let mut res = Vec::with_capacity(n);
    for i in 0..n {
        let mut coord = vec![0; rank];
        let mut rem = i;
        for d in (0..rank).rev() {
            coord[d] = rem % out[d];
            rem /= out[d];
        }
        res.push(f(a[idx(&pa, &coord)] as f64, b[idx(&pb, &coord)] as f64));
    }
    (res, out)
}

const SHAPES: &[(&[usize], &[usize])] = &[
    (&[1], &[1]),
    (&[7], &[7]),
    (&[3, 5], &[5]),
    (&[3, 5], &[3, 1]),
    (&[2, 1, 4], &[3, 1]),
    (&[1, 3, 1, 2], &[4, 1, 5, 2]),
    (&[1000], &[1]),
    (&[65], &[]),
];

#[test]
fn binary_ops_match_reference_with_broadcast() {
    let mut r = rng(1);
    for &(sa, sb) in SHAPES {
        let na: usize = sa.iter().product();
        let nb: usize = sb.iter().product();
        let a = randn(&mut r, na);
        let b = uniform(&mut r, nb, 0.5, 2.0);
        let (ta, tb) = (tensor(&a, sa), tensor(&b, sb));
        type F = fn(f64, f64) -> f64;
        let cases: [(&str, fn(&Tensor, &Tensor) -> engine::Result<Tensor>, F); 5] = [
            ("add", |x, y| x.add(y), |x, y| x + y),
            ("sub", |x, y| x.sub(y), |x, y| x - y),
            ("mul", |x, y| x.mul(y), |x, y| x * y),
            ("div", |x, y| x.div(y), |x, y| x / y),
            ("maximum", |x, y| x.maximum(y), f64::max),
        ];
        for (name, op, f) in cases {
            let (want, shape) = bcast_ref(&a, sa, &b, sb, f);
            let got = op(&ta, &tb).unwrap();
            assert_eq!(got.shape(), &shape[..], "{name} {sa:?} {sb:?}");
            assert_close(
                &format!("{name} {sa:?} {sb:?}"),
                &got.to_vec().unwrap(),
                &want,
                F32_TOL,
            );
        }
    }
}

#[test]
fn large_tensor_uses_2d_grid() {
    // More than 65,535 workgroups of 256: the launcher must split the grid.
    let n = 65_536 * 256 + 3;
    let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let t = tensor(&a, &[n]);
    let got = t.affine(2.0, 1.0).unwrap().to_vec().unwrap();
    for i in [0, 1, 65_535 * 256, n - 1] {
        assert_eq!(got[i], 2.0 * a[i] + 1.0, "element {i}");
    }
}

#[test]
fn unary_ops_match_reference() {
    let mut r = rng(2);
    for n in [1, 255, 256, 257, 1031] {
        let x = uniform(&mut r, n, 0.1, 3.0);
        let t = tensor(&x, &[n]);
        type F = fn(f64) -> f64;
        let cases: [(&str, fn(&Tensor) -> engine::Result<Tensor>, F); 12] = [
            ("exp", |t| t.exp(), f64::exp),
            ("log", |t| t.log(), f64::ln),
            ("sqrt", |t| t.sqrt(), f64::sqrt),
            ("rsqrt", |t| t.rsqrt(), |x| 1.0 / x.sqrt()),
            ("square", |t| t.square(), |x| x * x),
            ("recip", |t| t.recip(), |x| 1.0 / x),
            ("silu", |t| t.silu(), |x| x / (1.0 + (-x).exp())),
            ("sigmoid", |t| t.sigmoid(), |x| 1.0 / (1.0 + (-x).exp())),
            ("tanh", |t| t.tanh(), f64::tanh),
            (
                "relu",
                |t| t.add_scalar(-1.0)?.relu(),
                |x| (x - 1.0).max(0.0),
            ),
            ("powf", |t| t.powf(2.5), |x| x.powf(2.5)),
            ("affine", |t| t.affine(-3.0, 0.5), |x| -3.0 * x + 0.5),
        ];
        for (name, op, f) in cases {
            let want: Vec<f64> = x.iter().map(|&v| f(v as f64)).collect();
            assert_close(
                &format!("{name} n={n}"),
                &op(&t).unwrap().to_vec().unwrap(),
                &want,
                F32_TOL,
            );
        }
    }
}

#[test]
fn sum_to_is_the_adjoint_of_broadcast() {
    let mut r = rng(3);
    for (from, to) in [
        (vec![4, 5], vec![5]),
        (vec![4, 5], vec![4, 1]),
        (vec![2, 3, 4], vec![1, 3, 1]),
        (vec![2, 3, 4], vec![]),
        (vec![3, 1, 5], vec![1, 5]),
    ] {
        let n: usize = from.iter().product();
        let x = randn(&mut r, n);
        let got = tensor(&x, &from).sum_to(&to).unwrap();
        // Reference: sum of x over the broadcast dims, via the broadcast index map.
        let m: usize = to.iter().product();
        let ones = vec![0.0f32; m];
        let (_, _) = bcast_ref(&x, &from, &ones, &to, |a, _| a);
        let mut want = vec![0.0f64; m];
        let lead = from.len() - to.len();
        for i in 0..n {
            let mut rem = i;
            let mut o = 0;
            let mut stride = 1;
            for d in (0..from.len()).rev() {
                let c = rem % from[d];
                rem /= from[d];
                if d >= lead && to[d - lead] != 1 {
                    o += c * stride;
                    stride *= to[d - lead];
                }
            }
            want[o] += x[i] as f64;
        }
        assert_close(
            &format!("sum_to {from:?}->{to:?}"),
            &got.to_vec().unwrap(),
            &want,
            F32_TOL,
        );
    }
}

#[test]
fn backward_rules_match_finite_differences() {
    let mut r = rng(4);
    let a = (uniform(&mut r, 6, 0.5, 1.5), vec![2, 3]);
    let b = (uniform(&mut r, 3, 0.5, 1.5), vec![3]);
    let c = (uniform(&mut r, 2, 0.5, 1.5), vec![2, 1]);
    let tol = 2e-2;
    let eps = 1e-2;
    check_grads(
        "add",
        &[a.clone(), b.clone()],
        |x| x[0].add(&x[1]),
        eps,
        tol,
    );
    check_grads(
        "sub",
        &[a.clone(), c.clone()],
        |x| x[0].sub(&x[1]),
        eps,
        tol,
    );
    check_grads(
        "mul",
        &[a.clone(), b.clone()],
        |x| x[0].mul(&x[1]),
        eps,
        tol,
    );
    check_grads(
        "div",
        &[a.clone(), c.clone()],
        |x| x[0].div(&x[1]),
        eps,
        tol,
    );
    check_grads(
        "maximum",
        &[a.clone(), b.clone()],
        |x| x[0].maximum(&x[1]),
        eps,
        tol,
    );
    check_grads(
        "chain",
        std::slice::from_ref(&a),
        |x| x[0].exp()?.mul(&x[0].log()?.add_scalar(1.0)?)?.sqrt(),
        eps,
        tol,
    );
    check_grads(
        "silu",
        &[(randn(&mut r, 7), vec![7])],
        |x| x[0].silu(),
        eps,
        tol,
    );
    check_grads(
        "sigmoid.tanh",
        &[(randn(&mut r, 5), vec![5])],
        |x| x[0].sigmoid()?.tanh(),
        eps,
        tol,
    );
    check_grads(
        "recip.square.rsqrt",
        std::slice::from_ref(&a),
        |x| x[0].recip()?.square()?.add(&x[0].rsqrt()?),
        eps,
        tol,
    );
    check_grads(
        "powf.affine",
        std::slice::from_ref(&a),
        |x| x[0].powf(1.7)?.affine(-2.0, 1.0),
        eps,
        tol,
    );
    check_grads(
        "reshape.sum_to",
        std::slice::from_ref(&a),
        |x| x[0].reshape(&[3, 2])?.sum_to(&[1, 2]),
        eps,
        tol,
    );
    check_grads(
        "broadcast_to",
        std::slice::from_ref(&b),
        |x| x[0].broadcast_to(&[4, 3]),
        eps,
        tol,
    );
}

#[test]
fn gradient_accumulates_over_uses_and_calls() {
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).var();
    // y = x*x + x: dy/dx = 2x + 1
    let g1 = x.mul(&x).unwrap().add(&x).unwrap().backward().unwrap();
    assert_eq!(g1.get(&x).unwrap().to_vec().unwrap(), vec![3.0, 5.0, 7.0]);
    let mut acc = engine::Gradients::default();
    x.scale(2.0).unwrap().backward_into(&mut acc).unwrap();
    x.scale(3.0).unwrap().backward_into(&mut acc).unwrap();
    assert_eq!(acc.get(&x).unwrap().to_vec().unwrap(), vec![5.0, 5.0, 5.0]);
    assert_eq!(engine::tape_len(), 0, "backward consumes the tape");
}

#[test]
fn no_grad_records_nothing_and_backward_without_graph_is_an_error() {
    let x = tensor(&[1.0, 2.0], &[2]).var();
    let y = engine::no_grad(|| x.square().unwrap());
    assert!(!y.is_tracked());
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("not computed from any variable"), "{err}");
    let plain = tensor(&[1.0], &[1]);
    assert!(plain.exp().unwrap().backward().is_err());
}

#[test]
fn bad_shapes_and_dtypes_are_errors() {
    let a = tensor(&[1.0; 6], &[2, 3]);
    let b = tensor(&[1.0; 2], &[2]);
    let e = a.add(&b).unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[2, 3]") && e.contains("[2]"),
        "{e}"
    );
    assert!(a.reshape(&[4, 2]).is_err());
    assert!(Tensor::from_slice(&dev(), &[1.0; 5], &[2, 3]).is_err());
    let h = Tensor::zeros(&dev(), &[2, 3], DType::F16);
    if let Ok(h) = h {
        let e = a.add(&h).unwrap_err().to_string();
        assert!(e.contains("dtype"), "{e}");
    }
}

#[test]
fn pool_reuses_buffers() {
    // Its own device: the buffers other tests create on the shared one would be counted.
    let d = own_dev();
    let before = d.pool_stats().buffers_created;
    for _ in 0..10 {
        let t = Tensor::zeros(&d, &[12_345], DType::F32).unwrap();
        drop(t);
    }
    let after = d.pool_stats().buffers_created;
    // Ten rounds of one size: one buffer, reused.
    assert!(
        after - before <= 1,
        "{} buffers for ten same-size tensors",
        after - before
    );
}
