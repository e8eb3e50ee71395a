//! Self-attention on f16 q, k, v through matmul blocks (`attention_f16`) against the f64
//! reference on the same f16-rounded inputs: output and dq, dk, dv, over grouped heads,
//! both masks, one position, lengths off the 16-row tile; and the shape errors.

mod attention_ref;
mod common;
use attention_ref::*;
use common::*;

use engine::ops::attention_block::attention_f16;
use engine::{DType, Device, DeviceOptions, Error, Tensor};

/// Seen up to 7e-4: P, dO and dS rounded to f16 before their products.
const TOL: f64 = 2e-3;

fn rounded(v: Vec<f32>) -> Vec<f32> {
    v.into_iter()
        .map(|x| half::f16::from_f32(x).to_f32())
        .collect()
}

fn f16_var(dev: &Device, data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(dev, data, shape)
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap()
        .var()
}

fn check_f16(c: Case, seed: u64) {
    check_f16_on(&dev(), c, seed);
}

fn check_f16_on(dev: &Device, c: Case, seed: u64) {
    let mut rg = rng(seed);
    let qs = [c.b, c.hq, c.t, c.d];
    let ks = [c.b, c.hkv, c.t, c.d];
    let (nq, nk) = (qs.iter().product(), ks.iter().product());
    let q = rounded(randn(&mut rg, nq));
    let k = rounded(randn(&mut rg, nk));
    let v = rounded(randn(&mut rg, nk));
    let g = randn(&mut rg, nq);
    let want = reference(&c, &q, &k, &v, &g);
    let (tq, tk, tv) = (
        f16_var(dev, &q, &qs),
        f16_var(dev, &k, &ks),
        f16_var(dev, &v, &ks),
    );
    let out = attention_f16(&tq, &tk, &tv, c.causal, c.scale).expect("forward");
    assert_eq!((out.shape(), out.dtype()), (&qs[..], DType::F32));
    let what = format!("{c:?}");
    // P is rounded to f16 before P V, dO and dS before their products: f16 bounds.
    assert_close(
        &format!("out {what}"),
        &out.to_vec().unwrap(),
        &want.out,
        TOL,
    );
    let grads = out
        .mul(&Tensor::from_slice(dev, &g, &qs).unwrap())
        .unwrap()
        .backward()
        .expect("backward");
    for (name, var, want) in [
        ("dq", &tq, &want.dq),
        ("dk", &tk, &want.dk),
        ("dv", &tv, &want.dv),
    ] {
        let got = grads.get(var).expect("gradient");
        assert_eq!(got.dtype(), DType::F32);
        assert_close(&format!("{name} {what}"), &got.to_vec().unwrap(), want, TOL);
    }
}

#[test]
fn f16_block_attention_matches_reference() {
    for (i, c) in [
        case(1, (1, 1), 1, 8, true),
        case(2, (4, 2), 17, 24, true),
        case(1, (6, 1), 64, 64, false),
        case(2, (4, 2), 32, 16, true),
        case(1, (3, 3), 5, 8, false),
        Case {
            scale: Some(0.3),
            ..case(1, (2, 1), 48, 32, true)
        },
    ]
    .into_iter()
    .enumerate()
    {
        check_f16(c, 40 + i as u64);
    }
}

#[test]
fn blocks_split_into_chunks_where_the_binding_limit_asks() {
    // 3 blocks of 2 x 16 x 16 score cells (2 KiB of f32 each) under a 4 KiB binding limit:
    // two chunks, of two blocks and one.
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    opts.max_binding_bytes = Some(4096);
    let small = Device::with_options(opts).expect("a GPU adapter");
    check_f16_on(&small, case(3, (2, 1), 16, 8, true), 60);
}

#[test]
fn f16_block_attention_refuses_bad_shapes() {
    let f16 = |shape: &[usize]| {
        let n = shape.iter().product();
        tensor(&vec![0.5; n], shape).to_dtype(DType::F16).unwrap()
    };
    let (q, k) = (f16(&[1, 4, 8, 16]), f16(&[1, 2, 8, 16]));
    assert!(attention_f16(&q, &k, &k, true, None).is_ok());
    let q32 = tensor(&vec![0.5; 4 * 8 * 16], &[1, 4, 8, 16]);
    assert!(matches!(
        attention_f16(&q32, &k, &k, true, None),
        Err(Error::DTypeMismatch { .. })
    ));
    for (q, k, v) in [
        (
            f16(&[1, 4, 8, 16]),
            f16(&[1, 3, 8, 16]),
            f16(&[1, 3, 8, 16]),
        ), // heads do not divide
        (
            f16(&[1, 4, 8, 16]),
            f16(&[1, 2, 9, 16]),
            f16(&[1, 2, 9, 16]),
        ), // not self-attention
        (f16(&[1, 4, 8, 16]), f16(&[1, 2, 8, 16]), f16(&[1, 2, 8, 8])), // k and v differ
        (f16(&[4, 8, 16]), f16(&[1, 2, 8, 16]), f16(&[1, 2, 8, 16])),   // rank
        (
            f16(&[1, 0, 8, 16]),
            f16(&[1, 2, 8, 16]),
            f16(&[1, 2, 8, 16]),
        ), // no query heads
    ] {
        assert!(attention_f16(&q, &k, &v, true, None).is_err());
    }
}
