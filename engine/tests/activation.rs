//! SwiGLU on [gate | up] rows against an f64 CPU reference (edge sizes, saturating inputs),
//! its backward against the analytic f64 gradient and finite differences; the f16 result bit
//! for bit the cast's, its backward the rule's at the f16 copy of x the forward kept.

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
    // (rows, width): one row, one column, widths around the 256-wide workgroup, many rows.
    for (rows, w) in [
        (1usize, 1usize),
        (1, 255),
        (3, 256),
        (2, 257),
        (7, 100),
        (70, 1001),
    ] {
        let n = rows * w;
        let mut x: Vec<f32> = randn(&mut r, 2 * n).iter().map(|v| v * 6.0).collect();
        if w > 4 {
            // Saturated sigmoid both ways.
            x[0] = 100.0;
            x[1] = -100.0;
            x[2] = 30.0;
            x[3] = -30.0;
        }
        let g = randn(&mut r, n);
        let (xshape, yshape) = if rows % 7 == 0 {
            (vec![7, rows / 7, 2 * w], vec![7, rows / 7, w])
        } else {
            (vec![rows, 2 * w], vec![rows, w])
        };
        let xv = tensor(&x, &xshape).var();
        let y = swiglu(&xv).unwrap();
        assert_eq!(y.shape(), &yshape[..]);
        let mut want = vec![0.0; n];
        let mut dx = vec![0.0; 2 * n];
        for row in 0..rows {
            for i in 0..w {
                let (ja, o) = (row * 2 * w + i, row * w + i);
                let (a, b, gi) = (x[ja] as f64, x[ja + w] as f64, g[o] as f64);
                let s = sigmoid(a);
                want[o] = a * s * b;
                dx[ja] = gi * b * s * (1.0 + a * (1.0 - s));
                dx[ja + w] = gi * a * s;
            }
        }
        let name = format!("swiglu {rows}x{w}");
        assert_close(&name, &y.to_vec().unwrap(), &want, F32_TOL);
        let grads = y.mul(&tensor(&g, &yshape)).unwrap().backward().unwrap();
        let got = grads.get(&xv).unwrap().to_vec().unwrap();
        assert_close(&format!("{name} dx"), &got, &dx, F32_TOL);
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(2);
    let x: Vec<f32> = randn(&mut r, 24).iter().map(|v| v * 3.0).collect();
    check_grads("swiglu", &[(x, vec![3, 8])], |v| v[0].swiglu(), 1e-2, 2e-2);
}

#[test]
fn odd_or_missing_last_dimension_is_an_error() {
    for shape in [vec![2, 3], vec![]] {
        let n = shape.iter().product::<usize>();
        let x = tensor(&vec![1.0; n], &shape);
        assert!(
            matches!(swiglu(&x), Err(Error::BadShape { .. })),
            "{shape:?}"
        );
    }
}

#[test]
fn f16_output_is_the_f32_result_cast_bit_for_bit() {
    use engine::ops::activation::swiglu_as;
    use engine::DType;
    let mut r = rng(3);
    // Odd and even output counts (the last f16 word half padding), rows of odd width (word
    // pairs straddling rows), and values past f16's range and in its subnormals.
    for (rows, w) in [(1usize, 1usize), (3, 5), (4, 256), (9, 301)] {
        let mut x: Vec<f32> = randn(&mut r, 2 * rows * w)
            .iter()
            .map(|v| v * 4.0)
            .collect();
        if w > 4 {
            x[0] = 300.0; // gate
            x[w] = 400.0; // its up: 1.2e5, past f16's 65504
            x[1] = 1e-3;
            x[w + 1] = 1e-3; // ~5e-7: an f16 subnormal
        }
        let shape = [rows, 2 * w];
        let xv = tensor(&x, &shape).var();
        let y16 = swiglu_as(&xv, DType::F16).unwrap();
        assert_eq!(y16.dtype(), DType::F16);
        assert_eq!(y16.shape(), &[rows, w]);
        let want = engine::no_grad(|| swiglu(&xv).unwrap().to_dtype(DType::F16).unwrap());
        assert_eq!(f16_bits(&y16), f16_bits(&want), "{rows}x{w}");
        // Without the tape nothing is kept, and the result is the same.
        let plain = engine::no_grad(|| swiglu_as(&xv, DType::F16).unwrap());
        assert_eq!(f16_bits(&plain), f16_bits(&want), "{rows}x{w} untaped");
        // The gradient (f32) is the rule's at the f16-rounded x, which the forward kept.
        let gs = randn(&mut r, rows * w);
        let grads = weighted_grads(&[y16], &[tensor(&gs, &[rows, w])]);
        let got = grads.get(&xv).unwrap().to_vec().unwrap();
        let xh: Vec<f64> = tensor(&x, &shape)
            .to_dtype(DType::F16)
            .unwrap()
            .to_vec()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let mut dx = vec![0.0; 2 * rows * w];
        for row in 0..rows {
            for i in 0..w {
                let ja = row * 2 * w + i;
                let (a, b, gi) = (xh[ja], xh[ja + w], gs[row * w + i] as f64);
                let s = sigmoid(a);
                dx[ja] = gi * b * s * (1.0 + a * (1.0 - s));
                dx[ja + w] = gi * a * s;
            }
        }
        assert_close(&format!("{rows}x{w} f16 dx"), &got, &dx, F32_TOL);
    }
}
