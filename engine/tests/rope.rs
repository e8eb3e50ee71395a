//! RoPE against an f64 CPU reference of HF's rotate-half formula (angles formed in f32 as HF
//! does, then cos/sin in f64), with positions shared or per batch row, positions up to 16M,
//! given (scaled) frequencies; the backward against the reference and finite differences.

mod common;
use common::*;

use engine::ops::rope::default_inv_freq;
use engine::{Error, Tensor};

/// f64 rope of x (outer, seq_len, d) with positions (groups of `group` outer rows per
/// positions row); `sign` -1 rotates backwards.
fn reference(
    x: &[f32],
    d: usize,
    seq_len: usize,
    pos: &[u32],
    group: usize,
    inv: &[f32],
    sign: f64,
) -> Vec<f64> {
    let h = d / 2;
    let mut out = vec![0.0; x.len()];
    for (row, xr) in x.chunks(d).enumerate() {
        let (o, t) = (row / seq_len, row % seq_len);
        let p = pos[(o / group) * seq_len + t];
        for i in 0..h {
            let angle = (p as f32 * inv[i]) as f64; // HF: f32 product
            let (s, c) = (sign * angle.sin(), angle.cos());
            let (x1, x2) = (xr[i] as f64, xr[i + h] as f64);
            out[row * d + i] = x1 * c - x2 * s;
            out[row * d + i + h] = x2 * c + x1 * s;
        }
    }
    out
}

fn upos(p: &[u32], shape: &[usize]) -> Tensor {
    Tensor::from_u32_slice(&dev(), p, shape).unwrap()
}

#[test]
fn forward_and_backward_match_reference() {
    let mut r = rng(1);
    // (batch, heads, seq_len, head_dim, per-batch positions, theta)
    for &(b, nh, t, d, per_batch, theta) in &[
        (1, 1, 1, 2, false, 10_000.0),
        (2, 3, 5, 8, false, 10_000.0),
        (2, 3, 5, 8, true, 10_000.0),
        (1, 2, 7, 64, true, 1_000_000.0),
        (2, 1, 3, 128, false, 500_000.0),
        (1, 2, 33, 14, false, 10_000.0),
    ] {
        let n = b * nh * t * d;
        let x = randn(&mut r, n);
        let np = if per_batch { b * t } else { t };
        let pos: Vec<u32> = (0..np).map(|i| (i as u32 * 37 + 5) % 4099).collect();
        let pos_shape = if per_batch { vec![b, t] } else { vec![t] };
        let group = if per_batch { nh } else { b * nh };
        let inv = default_inv_freq(theta, d);
        let xv = tensor(&x, &[b, nh, t, d]).var();
        let y = xv.rope(&upos(&pos, &pos_shape), theta).unwrap();
        assert_eq!(y.shape(), &[b, nh, t, d]);
        let what = format!("rope ({b}, {nh}, {t}, {d}) per batch {per_batch}");
        assert_close(
            &what,
            &y.to_vec().unwrap(),
            &reference(&x, d, t, &pos, group, &inv, 1.0),
            F32_TOL,
        );
        let g = randn(&mut r, n);
        let grads = y
            .mul(&tensor(&g, &[b, nh, t, d]))
            .unwrap()
            .backward()
            .unwrap();
        let want = reference(&g, d, t, &pos, group, &inv, -1.0);
        assert_close(
            &format!("{what} backward"),
            &grads.get(&xv).unwrap().to_vec().unwrap(),
            &want,
            F32_TOL,
        );
    }
}

#[test]
fn large_positions_keep_full_accuracy() {
    // Angles up to 16M radians: the kernel's own range reduction must match libm.
    let mut r = rng(2);
    let (t, d) = (12, 16);
    let pos: Vec<u32> = vec![
        0, 1, 2, 3, 100, 4095, 32_767, 65_536, 131_071, 1_000_003, 8_388_607, 16_777_215,
    ];
    let x = randn(&mut r, t * d);
    let inv = default_inv_freq(10_000.0, d);
    let y = tensor(&x, &[1, t, d])
        .rope(&upos(&pos, &[t]), 10_000.0)
        .unwrap();
    assert_close(
        "rope at large positions",
        &y.to_vec().unwrap(),
        &reference(&x, d, t, &pos, 1, &inv, 1.0),
        F32_TOL,
    );
    // Every frequency scale: an angle grid across [0, 2^24).
    let freqs: Vec<f32> = (0..64).map(|i| 1.2f32.powi(i) * 1e-5).collect();
    let many: Vec<u32> = (0..300).map(|i| (i as u32).pow(3) % 16_777_216).collect();
    let x = randn(&mut r, 300 * 128);
    let y = tensor(&x, &[300, 128])
        .rope_with_freqs(&upos(&many, &[300]), &tensor(&freqs, &[64]))
        .unwrap();
    let want = reference(&x, 128, 300, &many, 1, &freqs, 1.0);
    assert_close(
        "rope over an angle grid",
        &y.to_vec().unwrap(),
        &want,
        F32_TOL,
    );
}

#[test]
fn given_frequencies_are_used() {
    // Llama 3 style: scaled frequencies passed in.
    let mut r = rng(3);
    let (t, d) = (9, 32);
    let inv: Vec<f32> = default_inv_freq(500_000.0, d)
        .iter()
        .enumerate()
        .map(|(i, &f)| if i > 8 { f / 8.0 } else { f })
        .collect();
    let pos: Vec<u32> = (0..2 * t as u32).map(|i| i * 1000).collect();
    let x = randn(&mut r, 2 * 4 * t * d);
    let y = tensor(&x, &[2, 4, t, d])
        .rope_with_freqs(&upos(&pos, &[2, t]), &tensor(&inv, &[d / 2]))
        .unwrap();
    assert_close(
        "rope with scaled freqs",
        &y.to_vec().unwrap(),
        &reference(&x, d, t, &pos, 4, &inv, 1.0),
        F32_TOL,
    );
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(4);
    let x = randn(&mut r, 2 * 3 * 4);
    let pos = upos(&[3, 11, 250], &[3]);
    check_grads(
        "rope (1, 2, 3, 4)",
        &[(x, vec![1, 2, 3, 4])],
        |v| v[0].rope(&pos, 10_000.0),
        1e-2,
        2e-2,
    );
}

#[test]
fn bad_shapes_are_errors() {
    let x = tensor(&[0.0; 2 * 3 * 4], &[2, 3, 4]);
    let bad = |r: engine::Result<Tensor>| {
        matches!(r, Err(Error::ShapeMismatch { .. } | Error::BadShape { .. }))
    };
    assert!(bad(x.rope(&upos(&[0, 1], &[2]), 1e4))); // seq_len 3
    assert!(bad(x.rope(&upos(&[0; 9], &[3, 3]), 1e4))); // batch 2
    assert!(bad(
        tensor(&[0.0; 6], &[2, 3]).rope(&upos(&[0, 1], &[2]), 1e4)
    )); // odd head_dim
    assert!(bad(x.rope_with_freqs(
        &upos(&[0, 1, 2], &[3]),
        &tensor(&[1.0; 3], &[3])
    )));
    assert!(matches!(
        x.rope(&tensor(&[0.0; 3], &[3]), 1e4),
        Err(Error::DTypeMismatch { .. })
    ));
}
