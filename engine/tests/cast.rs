//! f32 <-> f16 casts against the `half` crate's IEEE conversion, bit for bit (edge values:
//! 65504 and the rounding boundary to inf, subnormals, signed zeros, inf, NaN), round trips,
//! and the backward rule against finite differences.

mod common;
use common::*;

use engine::{DType, Tensor};
use half::f16;

/// Values that exercise every branch of the conversion.
fn edge_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65504.0, // f16::MAX
        -65504.0,
        65519.99, // just under half an ulp above MAX: rounds down to MAX
        65520.0,  // exactly half an ulp above MAX: ties to even -> inf
        -65520.0,
        65536.0,
        1.0e6,
        f32::MAX,
        6.103_515_6e-5, // smallest normal f16, 2^-14
        6.097e-5,       // just below: largest subnormals
        5.960_464_5e-8, // smallest subnormal, 2^-24
        -5.960_464_5e-8,
        2.980_232_2e-8, // 2^-25: tie between 0 and 2^-24 -> 0 (even)
        2.980_233e-8,   // just above the tie -> 2^-24
        8.940_697e-8,   // 1.5 * 2^-24: tie -> 2 * 2^-24 (even)
        1.0e-10,
        f32::MIN_POSITIVE,
        1.0e-45,     // f32 subnormal
        1.000_488_3, // 1 + 2^-11: tie -> 1 (even)
        1.001_464_8, // 1 + 3 * 2^-11: tie -> 1 + 2^-9 (even)
        1.000_488_4,
        std::f32::consts::PI,
        0.1,
        -2049.0,
        4097.0,
    ];
    // every f16 exponent, with mantissas that round both ways
    for e in -26..17 {
        for frac in [1.0f32, 1.1, 1.25, 1.333, 1.5, 1.999_9] {
            v.push(frac * 2f32.powi(e));
            v.push(-frac * 2f32.powi(e));
        }
    }
    v
}

#[test]
fn f32_to_f16_matches_half_bit_for_bit() {
    let mut vals = edge_values();
    vals.extend(uniform(&mut rng(3), 1001, -70000.0, 70000.0));
    vals.extend(uniform(&mut rng(4), 500, -1e-4, 1e-4));
    // random bit patterns: every exponent, NaN payloads included
    let mut r = rng(5);
    vals.extend((0..2000).map(|_| f32::from_bits(rand::Rng::random::<u32>(&mut r))));
    for n in [vals.len(), vals.len() - 1, 1] {
        // odd and even lengths (the last f16 word is half padding when n is odd)
        let x = tensor(&vals[..n], &[n]);
        let h = x.to_dtype(DType::F16).unwrap();
        assert_eq!(h.dtype(), DType::F16);
        assert_eq!(h.shape(), &[n]);
        let got = h.to_vec_f16().unwrap();
        for (i, (&g, &v)) in got.iter().zip(&vals[..n]).enumerate() {
            let want = f16::from_f32(v);
            assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "[{i}] f16({v:e} = {:#010x}) = {:#06x}, want {:#06x}",
                v.to_bits(),
                g.to_bits(),
                want.to_bits()
            );
        }
    }
}

#[test]
fn f16_to_f32_is_exact_for_every_f16() {
    // all 65,536 bit patterns (shape 2-D, to check shapes carry over)
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let h = Tensor::from_f16_slice(&dev(), &all, &[256, 256]).unwrap();
    let f = h.to_dtype(DType::F32).unwrap();
    assert_eq!(f.shape(), &[256, 256]);
    let got = f.to_vec().unwrap();
    for (i, (&g, &h)) in got.iter().zip(&all).enumerate() {
        let want = f32::from(h);
        let same = g.to_bits() == want.to_bits();
        assert!(
            same,
            "[{i}] f32({:#06x}) = {g:e} ({:#010x}), want {want:e}",
            h.to_bits(),
            g.to_bits()
        );
    }
    // odd length: the last element sits in the low half of the last word
    let h = Tensor::from_f16_slice(&dev(), &all[1..4], &[3]).unwrap();
    let want: Vec<f32> = all[1..4].iter().map(|&x| f32::from(x)).collect();
    assert_eq!(h.to_dtype(DType::F32).unwrap().to_vec().unwrap(), want);
}

#[test]
fn round_trips() {
    // f16 -> f32 -> f16 is the identity on every non-NaN pattern
    let all: Vec<f16> = (0..=u16::MAX)
        .map(f16::from_bits)
        .filter(|h| !h.is_nan())
        .collect();
    let n = all.len();
    let back = Tensor::from_f16_slice(&dev(), &all, &[n])
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap()
        .to_vec_f16()
        .unwrap();
    assert!(back
        .iter()
        .zip(&all)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // f32 -> f16 -> f32 is within half an f16 ulp (relative 2^-11) in the normal range
    let x = uniform(&mut rng(9), 257, -1000.0, 1000.0);
    let got = tensor(&x, &[257])
        .to_dtype(DType::F16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec()
        .unwrap();
    for (&g, &v) in got.iter().zip(&x) {
        assert!(
            (g - v).abs() <= v.abs() * 2f32.powi(-11) + 2f32.powi(-24),
            "{v} -> {g}"
        );
    }
    // casting to the own dtype is free
    let t = tensor(&x, &[257]);
    assert_eq!(t.to_dtype(DType::F32).unwrap().id(), t.id());
}

#[test]
fn u32_is_not_cast() {
    let ids = Tensor::from_u32_slice(&dev(), &[1, 2, 3], &[3]).unwrap();
    assert!(ids.to_dtype(DType::F32).is_err());
    assert!(tensor(&[1.0], &[1]).to_dtype(DType::U32).is_err());
}

#[test]
fn backward_is_identity_in_f32() {
    // Points and step on the 1/64 grid are exact in f16, so the finite differences of the
    // round trip are exact too.
    let mut r = rng(11);
    let x: Vec<f32> = (0..37)
        .map(|_| rand::Rng::random_range(&mut r, -64..64) as f32 / 64.0)
        .collect();
    check_grads(
        "f32 -> f16 -> f32",
        &[(x.clone(), vec![37])],
        |t| t[0].to_dtype(DType::F16)?.to_dtype(DType::F32),
        1.0 / 64.0,
        F32_TOL,
    );
    // the gradient of an f16 tensor's cast arrives in f32
    let h = tensor(&x, &[37]).to_dtype(DType::F16).unwrap().var();
    let y = h.to_dtype(DType::F32).unwrap().scale(3.0).unwrap();
    let g = y.backward().unwrap();
    let gh = g.get(&h).unwrap();
    assert_eq!(gh.dtype(), DType::F32);
    assert_eq!(gh.to_vec().unwrap(), vec![3.0; 37]);
}

#[test]
fn cast_cache_reuses_its_copy_until_the_tensor_is_written() {
    use engine::ops::cast::CastCache;
    use engine::ops::optim::AdamW;
    // Its own device: dispatches are counted, and the other tests running in parallel on the
    // shared one would land between the readings.
    let dev = own_dev();
    let on = |data: &[f32], shape: &[usize]| Tensor::from_slice(&dev, data, shape).unwrap();
    let mut r = rng(9);
    let w = on(&randn(&mut r, 6 * 5), &[6, 5]).var();
    let fresh = |w: &Tensor| engine::no_grad(|| w.to_dtype(DType::F16).unwrap());
    let cache = CastCache::new();
    let shared = cache.clone();
    let first = cache.cast(&w, DType::F16).unwrap();
    assert_eq!(f16_bits(&first), f16_bits(&fresh(&w)));
    // Again (through a clone too): the same copy, no kernel.
    let before = dev.counters();
    let again = shared.cast(&w, DType::F16).unwrap();
    assert_eq!((dev.counters() - before).dispatches, 0);
    assert_eq!(f16_bits(&again), f16_bits(&first));
    // Each use is a cast on the tape: the gradient reaches w, in f32.
    let g = randn(&mut r, 30);
    let grads = weighted_grads(&[again], &[on(&g, &[6, 5])]);
    assert_eq!(grads.get(&w).unwrap().to_vec().unwrap(), g);
    // An optimizer step writes w in place: the next use casts the new values.
    let version = w.version();
    AdamW::new(0.5)
        .step(std::slice::from_ref(&w), &grads, None)
        .unwrap();
    assert!(w.version() > version);
    let before = dev.counters();
    let stepped = cache.cast(&w, DType::F16).unwrap();
    assert!((dev.counters() - before).dispatches > 0);
    assert_eq!(f16_bits(&stepped), f16_bits(&fresh(&w)));
    assert_ne!(f16_bits(&stepped), f16_bits(&first));
    // Another tensor, or the same dtype, is not served the copy.
    let other = on(&randn(&mut r, 30), &[6, 5]);
    assert_eq!(
        f16_bits(&cache.cast(&other, DType::F16).unwrap()),
        f16_bits(&fresh(&other))
    );
    assert_eq!(
        cache.cast(&w, DType::F32).unwrap().to_vec().unwrap(),
        w.to_vec().unwrap()
    );
}

#[test]
fn cast_cache_without_retention_casts_at_each_use_and_keeps_nothing() {
    use engine::ops::cast::CastCache;
    // Its own device: the pool's bytes in use are compared exactly.
    let dev = own_dev();
    let on = |data: &[f32], shape: &[usize]| Tensor::from_slice(&dev, data, shape).unwrap();
    let mut r = rng(10);
    let w = on(&randn(&mut r, 40 * 3), &[40, 3]).var();
    let fresh = engine::no_grad(|| w.to_dtype(DType::F16).unwrap());
    let cache = CastCache::new();
    drop(cache.cast(&w, DType::F16).unwrap());
    let held = dev.pool_stats().in_use;
    // Turning retention off drops the copy held; each use then casts and keeps nothing.
    cache.set_retain(false);
    let base = dev.pool_stats().in_use;
    assert!(base < held, "the retained copy was not released");
    for _ in 0..2 {
        let before = dev.counters();
        let copy = cache.cast(&w, DType::F16).unwrap();
        assert_eq!((dev.counters() - before).dispatches, 1);
        assert_eq!(f16_bits(&copy), f16_bits(&fresh));
        // Still a cast on the tape: the gradient reaches w, in f32.
        let g = randn(&mut r, 120);
        let grads = weighted_grads(&[copy], &[on(&g, &[40, 3])]);
        assert_eq!(grads.get(&w).unwrap().to_vec().unwrap(), g);
        drop(grads);
        assert_eq!(dev.pool_stats().in_use, base);
    }
    // Back on: the next use is kept and reused.
    cache.set_retain(true);
    let kept = cache.cast(&w, DType::F16).unwrap();
    let before = dev.counters();
    let again = cache.cast(&w, DType::F16).unwrap();
    assert_eq!((dev.counters() - before).dispatches, 0);
    assert_eq!(f16_bits(&again), f16_bits(&kept));
}
