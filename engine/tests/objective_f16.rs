//! The fused LM head + objective with f16 operands (the mixed-precision path: each block of
//! logits a matmul, f32 accumulation, f16 logit gradients) against the f64 reference on the
//! same f16-rounded inputs: every objective, vocabularies with rows off the 16-row tile and
//! over several blocks, several chunks, hidden sizes off the tile; the forward-only path; and
//! dtype mismatches as errors.

mod common;
mod objective_ref;
use common::*;
use objective_ref::*;

use engine::ops::objective::{lm_head_log_probs, lm_head_objective, Objective};
use engine::{tape_len, DType, Error, Tensor};

/// The forward is exact products of the rounded inputs accumulated in f32, as the f32 path.
const FWD_TOL: f64 = 1e-4;
/// The backward rounds the (scaled) logit gradients to f16 before the dW and dx products:
/// errors of f16 rounding (2^-11) relative to the gradients' scale, seen up to 5e-4.
const GRAD_TOL: f64 = 2e-3;

#[test]
fn every_objective_matches_reference_in_f16() {
    for (seed, n, d, chunks) in [(1, 5, 8, vec![257]), (2, 33, 32, vec![300, 257, 443])] {
        let pb = Problem::random(seed, n, d, &chunks, 1.0);
        for (obj, use_thr) in objectives(&pb.rounded_to_f16()) {
            check_in("f16", &pb, &obj, use_thr, DType::F16, FWD_TOL, GRAD_TOL);
        }
    }
}

#[test]
fn edge_shapes_match_reference_in_f16() {
    // One token; a vocabulary of exactly one tile; 4200 rows = blocks of 4096 and 96 and a
    // last block of 8; a hidden size off the tile; tokens that fill 16-row tiles exactly;
    // 70,000 rows = 18 blocks, more than the 16 splits (later blocks merge into earlier ones).
    for (seed, (n, d, chunks)) in [
        (3, 8, vec![70_000]),
        (1, 16, vec![16]),
        (1, 8, vec![7]),
        (20, 24, vec![4200]),
        (33, 33, vec![1000]),
        (48, 16, vec![64, 1, 130]),
    ]
    .into_iter()
    .enumerate()
    {
        let pb = Problem::random(200 + seed as u64, n, d, &chunks, 1.0);
        for obj in [Objective::Nll, Objective::FAlpha(1.0), Objective::Dft] {
            check_in("f16 edge", &pb, &obj, false, DType::F16, FWD_TOL, GRAD_TOL);
        }
    }
}

#[test]
fn log_probs_match_reference_in_f16() {
    let mut pb = Problem::random(21, 33, 32, &[300, 1, 700], 1.0);
    pb.targets[0] = u32::MAX;
    let pb = pb.rounded_to_f16();
    let (want, _) = pb.log_probs();
    let (x, chunks) = pb.operands(DType::F16);
    let targets = Tensor::from_u32_slice(&dev(), &pb.targets, &[pb.n]).unwrap();
    let before = tape_len();
    let got = lm_head_log_probs(&x, &chunks, &targets)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(tape_len(), before, "the diagnostic path records nothing");
    assert_eq!(got[0], f32::NEG_INFINITY);
    assert_close("f16 log_probs", &got[1..], &want[1..], FWD_TOL);
}

#[test]
fn f16_and_f32_operands_do_not_mix() {
    let pb = Problem::random(22, 5, 8, &[30, 20], 1.0);
    let (x16, w16) = pb.operands(DType::F16);
    let (x32, w32) = pb.operands(DType::F32);
    let targets = Tensor::from_u32_slice(&dev(), &pb.targets, &[5]).unwrap();
    let mask = tensor(&pb.mask, &[5]);
    let nll = Objective::Nll;
    for (x, chunks) in [
        (&x16, vec![w32[0].clone(), w32[1].clone()]),
        (&x32, vec![w16[0].clone(), w16[1].clone()]),
        (&x16, vec![w16[0].clone(), w32[1].clone()]),
    ] {
        let e = lm_head_objective(x, &chunks, &targets, &mask, &nll, None).unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
        assert!(lm_head_log_probs(x, &chunks, &targets).is_err());
    }
}
