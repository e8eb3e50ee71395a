//! Attention with per-batch-row key starts (left-padded batches) against an f64 CPU
//! reference: key start 0, in between (inside and across 64-key blocks and decode splits) and
//! at Tk (every key hidden: zeros, finite), grouped-query heads, one query and several (the
//! decode kernel) and as many as keys (the block kernel), causal or not; the hidden keys and
//! values hold NaN, which must not leak. Also the KV cache's `attend_masked` and the errors.

mod common;
use common::*;

use engine::ops::attention::{attention_masked, KvCache};
use engine::{no_grad, DType, Tensor};

#[derive(Debug, Clone, Copy)]
struct Case {
    b: usize,
    hq: usize,
    hkv: usize,
    tq: usize,
    tk: usize,
    d: usize,
    causal: bool,
}

/// softmax(q k^T / sqrt(D)) v over keys key_start[b]..(causal end), zeros where none is left.
/// `stride` is the rows per (b, kv head) of k and v (a cache's capacity).
fn reference(
    c: &Case,
    key_start: &[u32],
    stride: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Vec<f64> {
    let (d, group) = (c.d, c.hq / c.hkv);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; q.len()];
    for b in 0..c.b {
        for h in 0..c.hq {
            let qo = (b * c.hq + h) * c.tq * d;
            let ko = (b * c.hkv + h / group) * stride * d;
            let row = |x: &[f32], base: usize| -> Vec<f64> {
                x[base..base + d].iter().map(|&e| e as f64).collect()
            };
            for i in 0..c.tq {
                let end = if c.causal { c.tk - c.tq + i + 1 } else { c.tk };
                let keys: Vec<usize> = (key_start[b] as usize..end).collect();
                if keys.is_empty() {
                    continue;
                }
                let qi = row(q, qo + i * d);
                let s: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        let kj = row(k, ko + j * d);
                        scale * qi.iter().zip(&kj).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for (&j, sj) in keys.iter().zip(&s) {
                    let p = (sj - m).exp() / sum;
                    for (e, vj) in row(v, ko + j * d).iter().enumerate() {
                        out[qo + i * d + e] += p * vj;
                    }
                }
            }
        }
    }
    out
}

/// Random (B, H, stride, D) keys or values with NaN in every row a key start hides.
fn poisoned(rg: &mut rand::rngs::StdRng, c: &Case, stride: usize, key_start: &[u32]) -> Vec<f32> {
    let mut x = randn(rg, c.b * c.hkv * stride * c.d);
    for b in 0..c.b {
        let hidden = (key_start[b] as usize).min(stride);
        for h in 0..c.hkv {
            let base = (b * c.hkv + h) * stride * c.d;
            x[base..base + hidden * c.d].fill(f32::NAN);
        }
    }
    x
}

fn starts(c: &Case, pick: &[usize]) -> Vec<u32> {
    (0..c.b).map(|b| pick[b % pick.len()] as u32).collect()
}

#[test]
fn masked_attention_matches_reference() {
    let mut rg = rng(21);
    let cases = [
        // Block kernel, Tq == Tk (a padded prefill): pads of 0, 3, all, and one crossing the
        // first 64-key block.
        (
            Case {
                b: 4,
                hq: 4,
                hkv: 2,
                tq: 70,
                tk: 70,
                d: 24,
                causal: true,
            },
            vec![0, 3, 70, 66],
        ),
        (
            Case {
                b: 3,
                hq: 2,
                hkv: 2,
                tq: 5,
                tk: 5,
                d: 8,
                causal: true,
            },
            vec![2, 0, 5],
        ),
        // Block kernel, 17 queries against more keys; and full (non-causal) attention.
        (
            Case {
                b: 2,
                hq: 3,
                hkv: 1,
                tq: 17,
                tk: 40,
                d: 16,
                causal: true,
            },
            vec![30, 39],
        ),
        (
            Case {
                b: 2,
                hq: 4,
                hkv: 1,
                tq: 6,
                tk: 6,
                d: 8,
                causal: false,
            },
            vec![1, 6],
        ),
        // Decode kernel: one query (several key splits, the first ones wholly hidden), and 3.
        (
            Case {
                b: 3,
                hq: 6,
                hkv: 2,
                tq: 1,
                tk: 150,
                d: 20,
                causal: true,
            },
            vec![0, 100, 150],
        ),
        (
            Case {
                b: 2,
                hq: 4,
                hkv: 2,
                tq: 3,
                tk: 35,
                d: 8,
                causal: true,
            },
            vec![33, 7],
        ),
        (
            Case {
                b: 2,
                hq: 2,
                hkv: 1,
                tq: 2,
                tk: 9,
                d: 8,
                causal: false,
            },
            vec![9, 4],
        ),
    ];
    for (c, pick) in cases {
        let ks = starts(&c, &pick);
        let q = randn(&mut rg, c.b * c.hq * c.tq * c.d);
        let k = poisoned(&mut rg, &c, c.tk, &ks);
        let v = poisoned(&mut rg, &c, c.tk, &ks);
        let kv_shape = [c.b, c.hkv, c.tk, c.d];
        let got = no_grad(|| {
            attention_masked(
                &tensor(&q, &[c.b, c.hq, c.tq, c.d]),
                &tensor(&k, &kv_shape),
                &tensor(&v, &kv_shape),
                &Tensor::from_u32_slice(&dev(), &ks, &[c.b])?,
                c.causal,
                None,
            )
        })
        .expect("masked attention")
        .to_vec()
        .unwrap();
        let want = reference(&c, &ks, c.tk, &q, &k, &v);
        assert_close(&format!("{c:?} key starts {ks:?}"), &got, &want, F32_TOL);
    }
}

/// The cache's strided buffers: a prefill-sized chunk then single tokens, each attended with
/// the key starts, against the reference over the filled prefix.
#[test]
fn kv_cache_attend_masked() {
    let (b, hq, hkv, d, cap) = (3, 4, 2, 16, 40);
    let mut rg = rng(22);
    let ks = [4u32, 0, 9];
    let full = Case {
        b,
        hq,
        hkv,
        tq: 0,
        tk: 0,
        d,
        causal: true,
    };
    let k = poisoned(&mut rg, &full, cap, &ks);
    let v = poisoned(&mut rg, &full, cap, &ks);
    let kv = Tensor::from_slice(&dev(), &k, &[b, hkv, cap, d]).unwrap();
    let vv = Tensor::from_slice(&dev(), &v, &[b, hkv, cap, d]).unwrap();
    let key_start = Tensor::from_u32_slice(&dev(), &ks, &[b]).unwrap();
    let mut cache = KvCache::new(&dev(), b, hkv, cap, d).expect("cache");
    let mut len = 0;
    for n in [10, 1, 1, 5] {
        cache
            .append(
                &kv.narrow(2, len, n).unwrap(),
                &vv.narrow(2, len, n).unwrap(),
            )
            .expect("append");
        len += n;
        let q = randn(&mut rg, b * hq * n * d);
        let got = no_grad(|| cache.attend_masked(&tensor(&q, &[b, hq, n, d]), &key_start))
            .expect("attend")
            .to_vec()
            .unwrap();
        let c = Case {
            tq: n,
            tk: len,
            ..full
        };
        let want = reference(&c, &ks, cap, &q, &k, &v);
        assert_close(
            &format!("cache {n} queries, {len} keys"),
            &got,
            &want,
            F32_TOL,
        );
    }
}

#[test]
fn masked_attention_errors() {
    let t = |shape: &[usize]| tensor(&vec![0.0; shape.iter().product()], shape);
    let (q, kv) = (t(&[2, 2, 3, 8]), t(&[2, 1, 3, 8]));
    let u = |v: &[u32]| Tensor::from_u32_slice(&dev(), v, &[v.len()]).unwrap();
    let run = |q: &Tensor, ks: &Tensor| attention_masked(q, &kv, &kv, ks, true, None);
    assert!(no_grad(|| run(&q, &u(&[0, 1]))).is_ok());
    let errors = [
        (
            "key_start of the wrong batch",
            no_grad(|| run(&q, &u(&[0]))).err(),
        ),
        (
            "f32 key_start",
            no_grad(|| run(&q, &Tensor::zeros(&dev(), &[2], DType::F32)?)).err(),
        ),
        (
            "gradient asked for",
            run(&q.clone().var(), &u(&[0, 1])).err(),
        ),
    ];
    for (what, err) in errors {
        eprintln!("{what}: {}", err.expect(what));
    }
}
