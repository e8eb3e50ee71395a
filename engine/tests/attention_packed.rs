//! Attention over packed rows (several sequences one after another in a batch row, each query
//! seeing only the keys of its own sequence) against the f64 reference run on each sequence
//! alone: output, dq, dk and dv, with sequence boundaries inside and across 64-row blocks,
//! sequences of one token, a row that is one sequence, grouped-query heads and head
//! dimensions below and above a 16-wide chunk; finite differences of the whole op; the errors.

mod attention_ref;
mod common;
use attention_ref::*;
use common::*;

use engine::ops::attention::attention_packed;
use engine::Tensor;

/// (B, H, T, D) rows of sequence `at..at + len` of batch row `b`, as (1, H, len, D).
fn slice(x: &[f32], (h, t, d): (usize, usize, usize), b: usize, at: usize, len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * len * d);
    for hh in 0..h {
        let base = ((b * h + hh) * t + at) * d;
        out.extend_from_slice(&x[base..base + len * d]);
    }
    out
}

/// Write a sequence's (1, H, len, D) values back at its place in the (B, H, T, D) whole.
fn place(
    whole: &mut [f64],
    part: &[f64],
    (h, t, d): (usize, usize, usize),
    b: usize,
    at: usize,
    len: usize,
) {
    for hh in 0..h {
        let base = ((b * h + hh) * t + at) * d;
        whole[base..base + len * d].copy_from_slice(&part[hh * len * d..(hh + 1) * len * d]);
    }
}

/// The first token of each position's sequence, (B, T), from the sequence lengths of each row.
fn seq_starts(rows: &[Vec<usize>]) -> Vec<u32> {
    rows.iter()
        .flat_map(|lens| {
            let mut at = 0;
            lens.iter().flat_map(move |&n| {
                let start = at;
                at += n;
                std::iter::repeat_n(start as u32, n)
            })
        })
        .collect()
}

fn check(rows: &[Vec<usize>], (hq, hkv): (usize, usize), d: usize, seed: u64) {
    let (b, t) = (rows.len(), rows[0].iter().sum::<usize>());
    assert!(rows.iter().all(|r| r.iter().sum::<usize>() == t));
    let mut rg = rng(seed);
    let (qs, ks) = ([b, hq, t, d], [b, hkv, t, d]);
    let (nq, nk) = (b * hq * t * d, b * hkv * t * d);
    let (q, k, v, g) = (
        randn(&mut rg, nq),
        randn(&mut rg, nk),
        randn(&mut rg, nk),
        randn(&mut rg, nq),
    );
    let (mut out, mut dq) = (vec![0.0; nq], vec![0.0; nq]);
    let (mut dk, mut dv) = (vec![0.0; nk], vec![0.0; nk]);
    for (bi, lens) in rows.iter().enumerate() {
        let mut at = 0;
        for &n in lens {
            let (sq, sk) = ((hq, t, d), (hkv, t, d));
            let r = reference(
                &case(1, (hq, hkv), n, d, true),
                &slice(&q, sq, bi, at, n),
                &slice(&k, sk, bi, at, n),
                &slice(&v, sk, bi, at, n),
                &slice(&g, sq, bi, at, n),
            );
            place(&mut out, &r.out, sq, bi, at, n);
            place(&mut dq, &r.dq, sq, bi, at, n);
            place(&mut dk, &r.dk, sk, bi, at, n);
            place(&mut dv, &r.dv, sk, bi, at, n);
            at += n;
        }
    }
    let starts = Tensor::from_u32_slice(&dev(), &seq_starts(rows), &[b, t]).unwrap();
    let (tq, tk, tv) = (
        tensor(&q, &qs).var(),
        tensor(&k, &ks).var(),
        tensor(&v, &ks).var(),
    );
    let y = attention_packed(&tq, &tk, &tv, &starts, None).expect("forward");
    let what = format!("{rows:?} heads {hq}/{hkv} d {d}");
    assert_close(&format!("out {what}"), &y.to_vec().unwrap(), &out, F32_TOL);
    let grads = y
        .mul(&tensor(&g, &qs))
        .unwrap()
        .backward()
        .expect("backward");
    for (name, var, want) in [("dq", &tq, &dq), ("dk", &tk, &dk), ("dv", &tv, &dv)] {
        let got = grads.get(var).expect(name).to_vec().unwrap();
        assert_close(&format!("{name} {what}"), &got, want, F32_TOL);
    }
}

#[test]
fn each_sequence_gets_what_it_gets_alone() {
    // Boundaries inside a 64-row block and across blocks, one-token sequences, a row that is
    // one sequence beside rows that are not (T = 150: three blocks, the last partial).
    check(
        &[vec![1, 63, 2, 70, 14], vec![150], vec![64, 64, 1, 1, 20]],
        (4, 2),
        16,
        1,
    );
    // Head dimensions that are not a multiple of the 16-wide chunk; many query heads per kv
    // head (the dk/dv kernel splits the group); a short row.
    check(&[vec![3, 2, 4], vec![9]], (6, 1), 20, 2);
    check(&[vec![40, 33, 57]], (2, 2), 72, 3);
}

#[test]
fn gradients_match_finite_differences() {
    let (b, hq, hkv, t, d) = (1, 2, 1, 7, 4);
    let mut rg = rng(11);
    let inputs = vec![
        (randn(&mut rg, b * hq * t * d), vec![b, hq, t, d]),
        (randn(&mut rg, b * hkv * t * d), vec![b, hkv, t, d]),
        (randn(&mut rg, b * hkv * t * d), vec![b, hkv, t, d]),
    ];
    let starts = Tensor::from_u32_slice(&dev(), &seq_starts(&[vec![3, 1, 3]]), &[b, t]).unwrap();
    check_grads(
        "attention packed",
        &inputs,
        |x| attention_packed(&x[0], &x[1], &x[2], &starts, None),
        1e-2,
        2e-2,
    );
}

#[test]
fn bad_sequence_starts_are_errors() {
    let t = |shape: &[usize]| tensor(&vec![0.0; shape.iter().product()], shape);
    let (q, k) = (t(&[2, 4, 5, 8]), t(&[2, 2, 5, 8]));
    let starts = |shape: &[usize]| {
        Tensor::from_u32_slice(&dev(), &vec![0; shape.iter().product()], shape).unwrap()
    };
    for bad in [starts(&[2]), starts(&[2, 4]), starts(&[5, 2])] {
        let e = attention_packed(&q, &k, &k, &bad, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("seq_start"), "{e}");
    }
    let wrong_dtype = t(&[2, 5]);
    assert!(attention_packed(&q, &k, &k, &wrong_dtype, None).is_err());
    // Fewer queries than keys: packed rows are self-attention only.
    let e = attention_packed(&t(&[2, 4, 3, 8]), &k, &k, &starts(&[2, 3]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("seq_start"), "{e}");
}
