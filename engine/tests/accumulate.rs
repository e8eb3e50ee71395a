//! Gradient accumulation in place: `add_assign` against the f32 sum on the CPU over edge
//! sizes, its refusals, and the autograd sums that use it: a variable's gradient that shares
//! its storage with another's (as `add`'s backward rule passes one gradient to both operands)
//! is never written in place, and micro-batches accumulate to the sums of their gradients.

mod common;
use common::*;

use engine::{DType, Gradients};

#[test]
fn add_assign_adds_in_place_over_edge_sizes() {
    let mut r = rng(5);
    // Around the 256-invocation workgroup, and more than one row of workgroups.
    for n in [0, 1, 255, 256, 257, 1000, 70_001] {
        let (a, b) = (randn(&mut r, n), randn(&mut r, n));
        let acc = tensor(&a, &[n]);
        acc.add_assign(&tensor(&b, &[n])).unwrap();
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(acc.to_vec().unwrap(), want, "n = {n}");
    }
    // Several dims: the same elementwise sum.
    let acc = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let v = acc.version();
    acc.add_assign(&tensor(&[10.0; 6], &[2, 3])).unwrap();
    assert_eq!(
        acc.to_vec().unwrap(),
        vec![11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    );
    assert_eq!(acc.version(), v + 1, "an in-place write moves the version");
}

#[test]
fn add_assign_refuses_other_shapes_dtypes_and_tape_tensors() {
    let acc = tensor(&[1.0; 6], &[2, 3]);
    let e = acc.add_assign(&tensor(&[1.0; 3], &[3])).unwrap_err();
    assert!(e.to_string().contains("add_assign"), "{e}");
    let half = acc.to_dtype(DType::F16).unwrap();
    assert!(half.add_assign(&half).is_err());
    assert!(acc.add_assign(&half).is_err());
    let x = tensor(&[1.0; 6], &[2, 3]).var();
    let y = x.scale(2.0).unwrap();
    let e = y.add_assign(&acc).unwrap_err().to_string();
    assert!(e.contains("on the tape"), "{e}");
    engine::clear_tape();
    assert_eq!(
        acc.to_vec().unwrap(),
        vec![1.0; 6],
        "refusals write nothing"
    );
}

#[test]
fn a_gradient_shared_by_two_variables_is_not_written_in_place() {
    // loss = sum((w1 + w2) * c) + sum(w1 * d), recorded in that order: backward reaches
    // `add` first, whose rule hands the same gradient c to w1 and w2, so w1's sum must not be
    // made in the buffer w2's gradient is. dw1 = c + d, dw2 = c.
    let mut r = rng(9);
    let n = 300;
    let (c, d) = (randn(&mut r, n), randn(&mut r, n));
    let w1 = tensor(&randn(&mut r, n), &[n]).var();
    let w2 = tensor(&randn(&mut r, n), &[n]).var();
    let (ct, dt) = (tensor(&c, &[n]), tensor(&d, &[n]));
    let first = w1.mul(&dt).unwrap().sum_all().unwrap();
    let second = w1.add(&w2).unwrap().mul(&ct).unwrap().sum_all().unwrap();
    let grads = second.add(&first).unwrap().backward().unwrap();
    let want1: Vec<f64> = c.iter().zip(&d).map(|(x, y)| (x + y) as f64).collect();
    assert_close(
        "dw1",
        &grads.get(&w1).unwrap().to_vec().unwrap(),
        &want1,
        F32_TOL,
    );
    assert_close(
        "dw2",
        &grads.get(&w2).unwrap().to_vec().unwrap(),
        &to_f64(&c),
        F32_TOL,
    );
}

#[test]
fn micro_batches_accumulate_to_the_sum_of_their_gradients() {
    // y = tanh(x W^T) b, over three micro-batches: the accumulated dW and db equal the sums
    // of each micro-batch's own (f64 reference), also where a micro-batch reaches a variable
    // twice (b enters twice in the third).
    let mut r = rng(13);
    let (rows, k, m) = (5, 7, 3);
    let ws = randn(&mut r, m * k);
    let bs = randn(&mut r, m);
    let w = tensor(&ws, &[m, k]).var();
    let b = tensor(&bs, &[m]).var();
    let mut acc = Gradients::default();
    let (mut dw, mut db) = (vec![0.0f64; m * k], vec![0.0f64; m]);
    for mb in 0..3 {
        let xs = randn(&mut r, rows * k);
        let x = tensor(&xs, &[rows, k]);
        let h = x
            .matmul(&w.transpose(0, 1).unwrap())
            .unwrap()
            .tanh()
            .unwrap();
        let mut y = h.mul(&b).unwrap().sum_all().unwrap();
        let twice = mb == 2;
        if twice {
            y = y.add(&b.sum_all().unwrap()).unwrap();
        }
        y.backward_into(&mut acc).unwrap();
        for i in 0..rows {
            for j in 0..m {
                let z: f64 = (0..k)
                    .map(|l| xs[i * k + l] as f64 * ws[j * k + l] as f64)
                    .sum();
                let t = z.tanh();
                db[j] += t;
                let g = bs[j] as f64 * (1.0 - t * t);
                for l in 0..k {
                    dw[j * k + l] += g * xs[i * k + l] as f64;
                }
            }
        }
        if twice {
            db.iter_mut().for_each(|v| *v += 1.0);
        }
    }
    assert_close("dW", &acc.get(&w).unwrap().to_vec().unwrap(), &dw, F32_TOL);
    assert_close("db", &acc.get(&b).unwrap().to_vec().unwrap(), &db, F32_TOL);
}
