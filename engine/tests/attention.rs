//! Flash attention (grouped-query heads, causal or full) against an f64 CPU reference with the
//! softmax materialised: output, log-sum-exp, and the gradients dq, dk, dv (derived
//! analytically on the CPU), over a covering set of edge shapes, with as many queries as keys
//! and with fewer or more (the causal mask aligned bottom-right, the decode path for few
//! queries); finite differences of the whole op; the KV cache fed token by token and in chunks
//! against attention over the whole sequence; and the shape errors.

mod attention_ref;
mod common;
use attention_ref::*;
use common::*;

use engine::ops::attention::{attention, attention_with_lse, KvCache};
use engine::Tensor;

fn check_case(c: Case, seed: u64) {
    let mut rg = rng(seed);
    let qs = [c.b, c.hq, c.t, c.d];
    let ks = [c.b, c.hkv, c.tk, c.d];
    let (nq, nk) = (qs.iter().product(), ks.iter().product());
    let (q, k, v, g) = (
        randn(&mut rg, nq),
        randn(&mut rg, nk),
        randn(&mut rg, nk),
        randn(&mut rg, nq),
    );
    let want = reference(&c, &q, &k, &v, &g);

    let (tq, tk, tv) = (
        tensor(&q, &qs).var(),
        tensor(&k, &ks).var(),
        tensor(&v, &ks).var(),
    );
    let (out, lse) = attention_with_lse(&tq, &tk, &tv, c.causal, c.scale).expect("forward");
    assert_eq!(out.shape(), &qs);
    assert_eq!(lse.shape(), &[c.b, c.hq, c.t]);
    let what = format!("{c:?}");
    assert_close(
        &format!("out {what}"),
        &out.to_vec().unwrap(),
        &want.out,
        F32_TOL,
    );
    assert_close(
        &format!("lse {what}"),
        &lse.to_vec().unwrap(),
        &want.lse,
        F32_TOL,
    );

    let grads = out
        .mul(&tensor(&g, &qs))
        .unwrap()
        .backward()
        .expect("backward");
    for (name, var, want) in [
        ("dq", &tq, &want.dq),
        ("dk", &tk, &want.dk),
        ("dv", &tv, &want.dv),
    ] {
        let got = grads.get(var).expect("gradient").to_vec().unwrap();
        assert_close(&format!("{name} {what}"), &got, want, F32_TOL);
    }
}

/// Every T in {1, 5, 17, 64, 70}, D in {8, 24, 64}, (Hq, Hkv) in {(1,1), (4,2), (6,1)},
/// B in {1, 2} and both masks appear, each in several combinations, without the full product.
#[test]
fn forward_and_gradients_match_reference() {
    let cases = [
        case(1, (1, 1), 1, 8, true),
        case(2, (4, 2), 1, 64, false),
        case(2, (4, 2), 5, 24, false),
        case(1, (6, 1), 5, 64, true),
        case(1, (6, 1), 17, 64, true),
        case(2, (1, 1), 17, 24, false),
        case(2, (1, 1), 64, 8, false),
        case(1, (4, 2), 64, 24, true),
        case(1, (4, 2), 70, 64, true),
        case(2, (6, 1), 70, 24, true),
        case(1, (1, 1), 70, 8, false),
        case(1, (6, 1), 64, 64, false),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        check_case(c, 100 + i as u64);
    }
}

/// Past the shapes above: D = 128 (two vec4 of head-dim slots per invocation), a head dim
/// that is not a multiple of 4, three key blocks under the causal mask, an explicit scale.
#[test]
fn wide_odd_and_long_shapes_match_reference() {
    let cases = [
        case(1, (2, 1), 70, 128, true),
        Case {
            scale: Some(0.3),
            ..case(1, (2, 2), 17, 5, false)
        },
        case(1, (2, 1), 130, 24, true),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        check_case(c, 200 + i as u64);
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rg = rng(3);
    let (qs, ks) = (vec![1, 2, 5, 8], vec![1, 1, 5, 8]);
    let inputs = [
        (randn(&mut rg, 80), qs),
        (randn(&mut rg, 40), ks.clone()),
        (randn(&mut rg, 40), ks),
    ];
    check_grads(
        "attention",
        &inputs,
        |x| attention(&x[0], &x[1], &x[2], true, None),
        1e-2,
        2e-2,
    );
}

#[test]
fn bad_shapes_are_errors() {
    let t = |shape: &[usize]| tensor(&vec![0.0; shape.iter().product()], shape);
    let q = t(&[1, 4, 5, 8]);
    let kv = t(&[1, 2, 5, 8]);
    assert!(attention(&q, &kv, &kv, true, None).is_ok());
    let bad: [(&str, Tensor, Tensor, Tensor); 6] = [
        (
            "Hq not a multiple of Hkv",
            q.clone(),
            t(&[1, 3, 5, 8]),
            t(&[1, 3, 5, 8]),
        ),
        (
            "head dim mismatch",
            q.clone(),
            t(&[1, 2, 5, 4]),
            t(&[1, 2, 5, 4]),
        ),
        (
            "more queries than keys under the causal mask",
            q.clone(),
            t(&[1, 2, 4, 8]),
            t(&[1, 2, 4, 8]),
        ),
        ("k and v differ", q.clone(), kv.clone(), t(&[1, 1, 5, 8])),
        ("rank 3", t(&[4, 5, 8]), t(&[2, 5, 8]), t(&[2, 5, 8])),
        (
            "head dim over 128",
            t(&[1, 1, 2, 129]),
            t(&[1, 1, 2, 129]),
            t(&[1, 1, 2, 129]),
        ),
    ];
    for (what, q, k, v) in bad {
        let err = attention(&q, &k, &v, true, None).expect_err(what);
        eprintln!("{what}: {err}");
    }
}

/// Tq in {1, 3, 17} against Tk in {1, 5, 64, 70, 130}, (Hq, Hkv) in {(6, 2), (4, 4)}, D in
/// {8, 64}, both masks (every combination): output, lse and gradients against the reference.
/// Tq <= 16 < Tk takes the decode kernel (several key splits from Tk = 70 on), Tq = 17 the
/// block kernel; without the mask Tq > Tk works too, with it Tq > Tk is an error.
#[test]
fn fewer_queries_than_keys_match_reference() {
    let mut i = 0;
    for tq in [1, 3, 17] {
        for tk in [1, 5, 64, 70, 130] {
            for heads in [(6, 2), (4, 4)] {
                for d in [8, 64] {
                    for causal in [true, false] {
                        i += 1;
                        let c = Case {
                            tk,
                            ..case(1 + i % 2, heads, tq, d, causal)
                        };
                        if causal && tq > tk {
                            let t = |h: usize, len: usize| {
                                tensor(&vec![0.0; c.b * h * len * d], &[c.b, h, len, d])
                            };
                            let (q, kv) = (t(c.hq, tq), t(c.hkv, tk));
                            let err = attention(&q, &kv, &kv, true, None).expect_err("Tq > Tk");
                            assert!(err.to_string().contains("q_len"), "{err}");
                            continue;
                        }
                        check_case(c, 300 + i as u64);
                    }
                }
            }
        }
    }
}

/// Rows (b, h, t0..t0+n, :) of a (B, H, T, D) tensor.
fn rows(x: &Tensor, t0: usize, n: usize) -> Tensor {
    x.narrow(2, t0, n).expect("narrow")
}

/// A KV cache (capacity past the sequence, so the kernels read a strided prefix) fed a
/// sequence in chunks: each chunk's q attended against the cache gives the rows of causal
/// attention over the whole sequence. Chunks of one token are the decode path; a chunk of 17
/// the block kernel with a cache.
#[test]
fn kv_cache_matches_full_attention() {
    let (b, hq, hkv, d) = (2, 6, 2, 64);
    let total = 70;
    let mut rg = rng(7);
    let qs = [b, hq, total, d];
    let ks = [b, hkv, total, d];
    let q = tensor(&randn(&mut rg, qs.iter().product()), &qs);
    let k = tensor(&randn(&mut rg, ks.iter().product()), &ks);
    let v = tensor(&randn(&mut rg, ks.iter().product()), &ks);
    let full = attention(&q, &k, &v, true, None).expect("full attention");
    let one_by_one = vec![1; total];
    let mixed = [17, 1, 1, 3, 1, 20, 1, 16, 5, 1, 4];
    assert_eq!(mixed.iter().sum::<usize>(), total);
    for chunks in [&one_by_one[..], &mixed[..]] {
        let mut cache = KvCache::new(q.device(), b, hkv, total + 9, d).expect("cache");
        let mut t0 = 0;
        for &n in chunks {
            cache
                .append(&rows(&k, t0, n), &rows(&v, t0, n))
                .expect("append");
            assert_eq!(cache.len(), t0 + n);
            let got = cache.attend(&rows(&q, t0, n)).expect("attend");
            let want: Vec<f64> = rows(&full, t0, n)
                .to_vec()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect();
            let what = format!("cache rows {t0}..{} in chunks {chunks:?}", t0 + n);
            assert_close(&what, &got.to_vec().unwrap(), &want, F32_TOL);
            t0 += n;
        }
    }
}

/// A gradient flows to the queries through `attend` (none into the cache): dq as with the
/// filled prefix passed as plain k, v.
#[test]
fn kv_cache_query_gradient() {
    let (b, hq, hkv, d, tk, tq) = (1, 4, 2, 8, 9, 3);
    let mut rg = rng(8);
    let q = randn(&mut rg, b * hq * tq * d);
    let k = tensor(&randn(&mut rg, b * hkv * tk * d), &[b, hkv, tk, d]);
    let v = tensor(&randn(&mut rg, b * hkv * tk * d), &[b, hkv, tk, d]);
    let mut cache = KvCache::new(k.device(), b, hkv, 16, d).expect("cache");
    cache.append(&k, &v).expect("append");
    let mut dq = Vec::new();
    for with_cache in [true, false] {
        let qv = tensor(&q, &[b, hq, tq, d]).var();
        let out = if with_cache {
            cache.attend(&qv)
        } else {
            attention(&qv, &k, &v, true, None)
        }
        .expect("attention");
        let grads = out.mul(&out).unwrap().backward().expect("backward");
        dq.push(grads.get(&qv).expect("dq").to_vec().unwrap());
    }
    let want: Vec<f64> = dq[1].iter().map(|&x| f64::from(x)).collect();
    assert_close("dq through the cache", &dq[0], &want, F32_TOL);
}

#[test]
fn kv_cache_errors() {
    let t = |shape: &[usize]| tensor(&vec![0.0; shape.iter().product()], shape);
    let kv = t(&[1, 2, 3, 8]);
    let mut cache = KvCache::new(kv.device(), 1, 2, 4, 8).expect("cache");
    assert!(cache.attend(&t(&[1, 4, 1, 8])).is_err(), "empty cache");
    cache.append(&kv, &kv).expect("append");
    let errors = [
        ("overflow", cache.append(&kv, &kv).err()),
        (
            "head dim",
            cache.append(&t(&[1, 2, 1, 4]), &t(&[1, 2, 1, 4])).err(),
        ),
        (
            "kv heads",
            cache.append(&t(&[1, 1, 1, 8]), &t(&[1, 1, 1, 8])).err(),
        ),
        ("k and v differ", cache.append(&kv, &t(&[1, 2, 1, 8])).err()),
        (
            "more queries than filled",
            cache.attend(&t(&[1, 4, 4, 8])).err(),
        ),
        (
            "Hq not a multiple of Hkv",
            cache.attend(&t(&[1, 3, 1, 8])).err(),
        ),
    ];
    for (what, err) in errors {
        eprintln!("{what}: {}", err.expect(what));
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.attend(&t(&[1, 4, 3, 8])).is_ok());
    assert!(cache.attend_with(&t(&[1, 4, 4, 8]), false, None).is_ok());
    cache.reset();
    assert!(cache.is_empty());
    assert!(KvCache::new(kv.device(), 1, 0, 4, 8).is_err());
}
