//! Embedding gather against a CPU reference; its backward (GPU radix sort + segment sum)
//! against an f64 reference and, bit for bit, against a sequential f32 sum in position order;
//! edge cases (repeated ids, ids 0 and vocab-1, n = 1, d not a multiple of 4, several sort
//! passes and blocks, out-of-range ids); finite differences; the host-side id check.

mod common;
use common::*;

use engine::ops::embedding::{check_ids, embedding, embedding_grad};
use engine::{Error, Tensor};
use rand::Rng;

fn ids_tensor(ids: &[u32], shape: &[usize]) -> Tensor {
    Tensor::from_u32_slice(&dev(), ids, shape).expect("upload ids")
}

fn gather_ref(w: &[f32], d: usize, vocab: usize, ids: &[u32]) -> Vec<f64> {
    ids.iter()
        .flat_map(|&id| {
            (0..d).map(move |c| {
                if (id as usize) < vocab {
                    w[id as usize * d + c] as f64
                } else {
                    0.0
                }
            })
        })
        .collect()
}

/// (f64 reference, f32 sum in increasing position order) of the weight gradient.
fn grad_ref(g: &[f32], d: usize, vocab: usize, ids: &[u32]) -> (Vec<f64>, Vec<f32>) {
    let mut want = vec![0.0f64; vocab * d];
    let mut seq = vec![0.0f32; vocab * d];
    for (k, &id) in ids.iter().enumerate() {
        if (id as usize) < vocab {
            for c in 0..d {
                want[id as usize * d + c] += g[k * d + c] as f64;
                seq[id as usize * d + c] += g[k * d + c];
            }
        }
    }
    (want, seq)
}

/// (vocab, d, ids shape); ids drawn with heavy repetition, and 0 and vocab-1 forced in.
const CASES: &[(usize, usize, &[usize])] = &[
    (1, 1, &[1]),          // n = 1, vocab 1
    (7, 3, &[5]),          // d not a multiple of 4
    (300, 5, &[4, 129]),   // vocab 300: two sort passes (the out-of-range key 300 is 9 bits)
    (70_000, 2, &[1000]),  // three sort passes, four blocks
    (50, 64, &[3, 7, 11]), // many repeats per id
];

fn draw_ids(r: &mut rand::rngs::StdRng, vocab: usize, n: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..n)
        .map(|k| match k % 5 {
            0 => 0,                                      // a very frequent id (padding)
            1 => r.random_range(0..vocab.min(8)) as u32, // a few frequent ids
            _ => r.random_range(0..vocab) as u32,
        })
        .collect();
    if n > 1 {
        ids[n / 2] = (vocab - 1) as u32;
    }
    ids
}

#[test]
fn forward_and_backward_match_reference() {
    let mut r = rng(21);
    for &(vocab, d, ids_shape) in CASES {
        let n: usize = ids_shape.iter().product();
        let ids = draw_ids(&mut r, vocab, n);
        let w = randn(&mut r, vocab * d);
        let g = randn(&mut r, n * d);
        let weight = tensor(&w, &[vocab, d]).var();
        let idt = ids_tensor(&ids, ids_shape);
        let out = embedding(&weight, &idt).unwrap();
        let mut want_shape = ids_shape.to_vec();
        want_shape.push(d);
        assert_eq!(out.shape(), &want_shape[..]);
        let what = format!("V={vocab} d={d} ids {ids_shape:?}");
        assert_close(
            &format!("gather {what}"),
            &out.to_vec().unwrap(),
            &gather_ref(&w, d, vocab, &ids),
            0.0,
        );

        let grads = out
            .mul(&tensor(&g, out.shape()))
            .unwrap()
            .backward()
            .unwrap();
        let got = grads.get(&weight).expect("weight gradient");
        assert_eq!(got.shape(), &[vocab, d]);
        let got = got.to_vec().unwrap();
        let (want, seq) = grad_ref(&g, d, vocab, &ids);
        assert_close(&format!("grad {what}"), &got, &want, F32_TOL);
        // deterministic: the same additions in the same order as a sequential sum
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&got) == bits(&seq),
            "{what}: gradient differs from the position-order f32 sum"
        );
    }
}

#[test]
fn out_of_range_ids_read_nothing_and_get_no_gradient() {
    let (vocab, d) = (10, 3);
    let ids = [3u32, 10, 3, u32::MAX, 9, 0, 11];
    let w = randn(&mut rng(22), vocab * d);
    let g = randn(&mut rng(23), ids.len() * d);
    let weight = tensor(&w, &[vocab, d]);
    let idt = ids_tensor(&ids, &[ids.len()]);
    let out = embedding(&weight, &idt).unwrap();
    assert_close(
        "gather",
        &out.to_vec().unwrap(),
        &gather_ref(&w, d, vocab, &ids),
        0.0,
    );
    let got = embedding_grad(&idt, &tensor(&g, &[ids.len(), d]), vocab).unwrap();
    assert_close(
        "grad",
        &got.to_vec().unwrap(),
        &grad_ref(&g, d, vocab, &ids).0,
        F32_TOL,
    );

    match check_ids(&ids, vocab) {
        Err(Error::IdOutOfRange {
            id: 10,
            position: 1,
            vocab: 10,
            ..
        }) => {}
        other => panic!("expected id 10 at position 1 out of range, got {other:?}"),
    }
    let msg = check_ids(&ids, vocab).unwrap_err().to_string();
    assert!(msg.contains("id 10") && msg.contains("position 1"), "{msg}");
    assert!(check_ids(&[0, 9, 4], vocab).is_ok());
}

#[test]
fn backward_matches_finite_differences() {
    let ids = ids_tensor(&[2, 0, 2, 6, 2, 5], &[2, 3]);
    let w = randn(&mut rng(24), 7 * 3);
    check_grads(
        "embedding",
        &[(w, vec![7, 3])],
        |t| embedding(&t[0], &ids),
        1e-2,
        2e-2,
    );
}

#[test]
fn backward_is_deterministic_across_runs() {
    // many positions for few ids: long runs, several blocks
    let (vocab, d, n) = (5, 6, 2000);
    let mut r = rng(25);
    let ids: Vec<u32> = (0..n).map(|_| r.random_range(0..vocab) as u32).collect();
    let g: Vec<f32> = uniform(&mut r, n * d, -1e3, 1e3);
    let (idt, gt) = (ids_tensor(&ids, &[n]), tensor(&g, &[n, d]));
    let a = embedding_grad(&idt, &gt, vocab).unwrap().to_vec().unwrap();
    let b = embedding_grad(&idt, &gt, vocab).unwrap().to_vec().unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    let (want, seq) = grad_ref(&g, d, vocab, &ids);
    assert_close("long runs", &a, &want, F32_TOL);
    assert!(a.iter().zip(&seq).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn bad_operands_are_errors() {
    let w = tensor(&[0.0; 6], &[2, 3]);
    let ids = ids_tensor(&[0, 1], &[2]);
    assert!(embedding(&tensor(&[0.0; 6], &[6]), &ids).is_err()); // weight not 2-D
    assert!(embedding(&w, &tensor(&[0.0, 1.0], &[2])).is_err()); // f32 ids
    assert!(embedding_grad(&ids, &tensor(&[0.0; 6], &[3, 2]), 2).is_err()); // grad shape
                                                                            // no ids: an empty lookup, and an all-zero gradient
    let none = ids_tensor(&[], &[0]);
    assert_eq!(embedding(&w, &none).unwrap().shape(), &[0, 3]);
    let g = embedding_grad(&none, &tensor(&[], &[0, 3]), 2).unwrap();
    assert_eq!(g.to_vec().unwrap(), vec![0.0; 6]);
}
