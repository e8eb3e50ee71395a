//! Layout ops (permute, transpose, narrow, cat) against CPU index arithmetic, and their
//! backward rules against finite differences.

mod common;
use common::*;

use engine::Tensor;

/// Row-major coordinates of flat index `i` in `shape`.
fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d];
        i /= shape[d];
    }
    c
}

fn flat(c: &[usize], shape: &[usize]) -> usize {
    c.iter().zip(shape).fold(0, |acc, (&x, &d)| acc * d + x)
}

#[test]
fn permute_matches_index_arithmetic() {
    let mut r = rng(11);
    for (shape, perm) in [
        (vec![2, 3], vec![1, 0]),
        (vec![2, 3, 4, 5], vec![0, 2, 1, 3]),
        (vec![1, 7, 1, 3], vec![3, 1, 0, 2]),
        (vec![3, 1, 300], vec![2, 0, 1]),
    ] {
        let n: usize = shape.iter().product();
        let x = randn(&mut r, n);
        let got = tensor(&x, &shape).permute(&perm).unwrap();
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        assert_eq!(got.shape(), &out_shape[..]);
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let oc = coords(i, &out_shape);
                let mut ic = vec![0; shape.len()];
                for (d, &p) in perm.iter().enumerate() {
                    ic[p] = oc[d];
                }
                x[flat(&ic, &shape)] as f64
            })
            .collect();
        assert_close(
            &format!("permute {shape:?} {perm:?}"),
            &got.to_vec().unwrap(),
            &want,
            0.0,
        );
    }
}

#[test]
fn narrow_and_cat_round_trip() {
    let mut r = rng(12);
    let shape = [3, 5, 4];
    let x = randn(&mut r, 60);
    let t = tensor(&x, &shape);
    for dim in 0..3 {
        let len = shape[dim];
        let a = t.narrow(dim as isize, 0, 1).unwrap();
        let b = t.narrow(dim as isize, 1, len - 1).unwrap();
        let want: Vec<f64> = (0..60)
            .filter(|&i| coords(i, &shape)[dim] >= 1)
            .map(|i| x[i] as f64)
            .collect();
        assert_close(
            &format!("narrow dim {dim}"),
            &b.to_vec().unwrap(),
            &want,
            0.0,
        );
        let back = Tensor::cat(&[&a, &b], dim as isize).unwrap();
        assert_eq!(back.shape(), &shape);
        assert_close(
            &format!("cat dim {dim}"),
            &back.to_vec().unwrap(),
            &to_f64(&x),
            0.0,
        );
    }
    let ids = Tensor::from_u32_slice(&dev(), &[1, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    assert_eq!(
        ids.transpose(0, 1).unwrap().to_vec_u32().unwrap(),
        vec![1, 4, 2, 5, 3, 6]
    );
}

#[test]
fn layout_backward_matches_finite_differences() {
    let mut r = rng(13);
    let a = (randn(&mut r, 24), vec![2, 3, 4]);
    let b = (randn(&mut r, 8), vec![2, 1, 4]);
    let (eps, tol) = (1e-2, 1e-2);
    check_grads(
        "permute",
        std::slice::from_ref(&a),
        |x| x[0].permute(&[2, 0, 1])?.square(),
        eps,
        tol,
    );
    check_grads(
        "transpose",
        std::slice::from_ref(&a),
        |x| x[0].transpose(-1, 0)?.square(),
        eps,
        tol,
    );
    check_grads(
        "narrow",
        std::slice::from_ref(&a),
        |x| x[0].narrow(1, 1, 2)?.square(),
        eps,
        tol,
    );
    check_grads(
        "cat",
        &[a.clone(), b.clone()],
        |x| Tensor::cat(&[&x[0], &x[1]], 1)?.square(),
        eps,
        tol,
    );
}

#[test]
fn bad_layout_arguments_are_errors() {
    let t = tensor(&[0.0; 6], &[2, 3]);
    assert!(t.permute(&[0, 0]).is_err());
    assert!(t.permute(&[1]).is_err());
    assert!(t
        .narrow(1, 2, 2)
        .unwrap_err()
        .to_string()
        .contains("past dimension"));
    assert!(t.narrow(2, 0, 1).is_err());
    let u = tensor(&[0.0; 4], &[4, 1]);
    assert!(Tensor::cat(&[&t, &u], 0).is_err());
    assert!(Tensor::cat(&[], 0).is_err());
}

#[test]
fn permute_to_f16_is_permute_then_cast_bit_for_bit() {
    use engine::{no_grad, DType};
    let mut r = rng(77);
    // Odd and even element counts, a rank-4 head swap as attention's output takes, values
    // past f16's range and in its subnormals.
    for (shape, perm) in [
        (vec![3usize, 5], vec![1usize, 0]),
        (vec![2, 3, 5, 4], vec![0, 2, 1, 3]),
        (vec![1, 1, 7], vec![2, 1, 0]),
    ] {
        let n: usize = shape.iter().product();
        let mut x = randn(&mut r, n);
        x[0] = 7e4;
        if n > 2 {
            x[1] = 3e-7;
        }
        let xv = tensor(&x, &shape).var();
        let got = xv.permute_as(&perm, DType::F16).unwrap();
        assert_eq!(got.dtype(), DType::F16);
        let want = no_grad(|| xv.permute(&perm).unwrap().to_dtype(DType::F16).unwrap());
        assert_eq!(got.shape(), want.shape());
        assert_eq!(f16_bits(&got), f16_bits(&want), "{shape:?} {perm:?}");
        // The gradient is the f32 permute's, in f32.
        let gt = tensor(&randn(&mut r, n), got.shape());
        let grad = |y: Tensor| {
            let grads = weighted_grads(&[y], std::slice::from_ref(&gt));
            grads.get(&xv).unwrap().to_vec().unwrap()
        };
        let d16 = grad(got);
        let d32 = grad(xv.permute(&perm).unwrap());
        assert_eq!(d16, d32, "{shape:?} {perm:?} gradient");
    }
    // u32 ids are not cast.
    let ids = Tensor::from_u32_slice(&dev(), &[1, 2, 3, 4], &[2, 2]).unwrap();
    assert!(ids.permute_as(&[1, 0], DType::F16).is_err());
}
