//! RMSNorm against an f64 CPU reference of HF's LlamaRMSNorm (edge row lengths), its fused
//! input gradient and column-summed weight gradient against the analytic f64 gradient
//! (including the chunked weight-gradient path), and against finite differences.

mod common;
use common::*;

use engine::Error;

/// f64 (y, dx, dw) for rows of `len`, with output gradient `g`.
fn reference(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    len: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut dx, mut dw) = (Vec::new(), Vec::new(), vec![0.0; len]);
    for (xr, gr) in x.chunks(len).zip(g.chunks(len)) {
        let ms: f64 = xr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / len as f64;
        let r = 1.0 / (ms + eps).sqrt();
        let xhat: Vec<f64> = xr.iter().map(|&v| v as f64 * r).collect();
        let mean_gwx: f64 = (0..len)
            .map(|j| gr[j] as f64 * w[j] as f64 * xhat[j])
            .sum::<f64>()
            / len as f64;
        for j in 0..len {
            y.push(w[j] as f64 * xhat[j]);
            dx.push(r * (gr[j] as f64 * w[j] as f64 - xhat[j] * mean_gwx));
            dw[j] += gr[j] as f64 * xhat[j];
        }
    }
    (y, dx, dw)
}

#[test]
fn forward_and_backward_match_reference() {
    let mut r = rng(1);
    let eps = 1e-6;
    for &(rows, len) in &[
        (1, 1),
        (3, 1),
        (2, 255),
        (2, 256),
        (3, 257),
        (2, 1000),
        (1500, 8),
        (2100, 33),
        (300, 70),
    ] {
        let x: Vec<f32> = randn(&mut r, rows * len).iter().map(|v| v * 3.0).collect();
        let w = uniform(&mut r, len, 0.5, 1.5);
        let g = randn(&mut r, rows * len);
        let (y, dx, dw) = reference(&x, &w, &g, len, eps as f64);
        let (xv, wv) = (tensor(&x, &[rows, len]).var(), tensor(&w, &[len]).var());
        let out = xv.rms_norm(&wv, eps).unwrap();
        let what = format!("({rows}, {len})");
        assert_close(
            &format!("rms_norm {what}"),
            &out.to_vec().unwrap(),
            &y,
            F32_TOL,
        );
        let grads = out
            .mul(&tensor(&g, &[rows, len]))
            .unwrap()
            .backward()
            .unwrap();
        assert_close(
            &format!("rms_norm dx {what}"),
            &grads.get(&xv).unwrap().to_vec().unwrap(),
            &dx,
            F32_TOL,
        );
        assert_close(
            &format!("rms_norm dw {what}"),
            &grads.get(&wv).unwrap().to_vec().unwrap(),
            &dw,
            F32_TOL,
        );
    }
}

#[test]
fn rank_three_input_and_only_one_gradient() {
    let mut r = rng(2);
    let (x, w, g) = (
        randn(&mut r, 2 * 3 * 16),
        uniform(&mut r, 16, 0.5, 1.5),
        vec![1.0; 96],
    );
    let (y, dx, dw) = reference(&x, &w, &g, 16, 1e-5);
    let xt = tensor(&x, &[2, 3, 16]);
    let wt = tensor(&w, &[16]);
    let out = xt.rms_norm(&wt, 1e-5).unwrap();
    assert_eq!(out.shape(), &[2, 3, 16]);
    assert_close("rms_norm rank 3", &out.to_vec().unwrap(), &y, F32_TOL);
    // Weight frozen: only dx.
    let xv = xt.clone().var();
    let grads = xv.rms_norm(&wt, 1e-5).unwrap().backward().unwrap();
    assert_close(
        "dx only",
        &grads.get(&xv).unwrap().to_vec().unwrap(),
        &dx,
        F32_TOL,
    );
    assert!(grads.get(&wt).is_none());
    // Input constant: only dw.
    let wv = wt.clone().var();
    let grads = xt.rms_norm(&wv, 1e-5).unwrap().backward().unwrap();
    assert_close(
        "dw only",
        &grads.get(&wv).unwrap().to_vec().unwrap(),
        &dw,
        F32_TOL,
    );
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(3);
    for (rows, len) in [(3, 5), (2, 1), (4, 3)] {
        let x = randn(&mut r, rows * len);
        let w = uniform(&mut r, len, 0.5, 1.5);
        check_grads(
            &format!("rms_norm ({rows}, {len})"),
            &[(x, vec![rows, len]), (w, vec![len])],
            |v| v[0].rms_norm(&v[1], 1e-5),
            1e-2,
            2e-2,
        );
    }
}

#[test]
fn wrong_weight_shape_is_an_error() {
    let x = tensor(&[1.0; 6], &[2, 3]);
    assert!(matches!(
        x.rms_norm(&tensor(&[1.0; 2], &[2]), 1e-6),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        x.rms_norm(&tensor(&[1.0; 6], &[2, 3]), 1e-6),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn f16_output_is_the_f32_result_cast_bit_for_bit() {
    use engine::{no_grad, DType, Tensor};
    let mut r = rng(5);
    // Even lengths (the kernel writes f16 words), odd ones (norm, then cast), one past the
    // workgroup; rows whose values overflow f16 or fall into its subnormals.
    for (rows, len) in [(1usize, 2usize), (3, 7), (2, 256), (5, 514), (1, 1)] {
        let mut x = randn(&mut r, rows * len);
        let mut w: Vec<f32> = randn(&mut r, len).iter().map(|v| 1.0 + 0.2 * v).collect();
        if len > 4 {
            w[0] = 1e6; // y past 65504
            w[1] = 1e-6; // y an f16 subnormal
            x[2] = 0.0;
        }
        let xv = tensor(&x, &[rows, len]).var();
        let wv = tensor(&w, &[len]).var();
        let y16 = xv.rms_norm_as(&wv, 1e-6, DType::F16).unwrap();
        assert_eq!((y16.dtype(), y16.shape()), (DType::F16, &[rows, len][..]));
        let want = no_grad(|| {
            xv.rms_norm(&wv, 1e-6)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap()
        });
        assert_eq!(f16_bits(&y16), f16_bits(&want), "{rows}x{len}");
        // Gradients through the f16 output are the f32 path's.
        let g = tensor(&randn(&mut r, rows * len), &[rows, len]);
        let grads = |y: Tensor| {
            let gr = weighted_grads(&[y], std::slice::from_ref(&g));
            let get = |t: &Tensor| gr.get(t).unwrap().to_vec().unwrap();
            (get(&xv), get(&wv))
        };
        let d16 = grads(y16);
        let d32 = grads(xv.rms_norm(&wv, 1e-6).unwrap());
        assert_eq!(d16, d32, "{rows}x{len} gradients");
    }
}
