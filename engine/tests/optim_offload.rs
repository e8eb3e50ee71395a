//! AdamW with its moments in host memory (`set_offload(true)`) against the same optimizer with
//! them on the GPU: the same parameters and moments, bit for bit, over steps with clipping, a
//! loss-scale factor, a parameter left without a gradient and a skipped non-finite step
//! (parameters of several sizes share one pair of GPU buffers the size of the largest, so the
//! smaller ones use only its first elements); moments restored from either place into either;
//! and the misuses are errors.

mod common;
use common::*;

use engine::ops::optim::{AdamW, Moment, ParamState, StepOutcome};
use engine::{Gradients, Tensor};

const SIZES: &[usize] = &[257, 1, 10_000, 255];

/// Gradients holding `values[k]` for `params[k]` (d(p * G)/dp = G), skipping empty ones.
fn grads_of(params: &[Tensor], values: &[Vec<f32>]) -> Gradients {
    let mut grads = Gradients::default();
    for (p, g) in params.iter().zip(values) {
        if !g.is_empty() {
            p.mul(&tensor(g, p.shape()))
                .unwrap()
                .backward_into(&mut grads)
                .unwrap();
        }
    }
    grads
}

fn optimizer(offload: bool) -> AdamW {
    let mut opt = AdamW::new(3e-2);
    opt.beta2 = 0.95;
    opt.weight_decay = 0.1;
    opt.inv_loss_scale = 0.5;
    opt.set_offload(offload).unwrap();
    assert_eq!(opt.offloaded(), offload);
    opt
}

/// Every parameter's values, moments and step count.
fn snapshot(opt: &AdamW, params: &[Tensor]) -> Vec<(Vec<f32>, Option<(Vec<f32>, Vec<f32>, u64)>)> {
    params
        .iter()
        .map(|p| {
            let st = opt
                .state(p)
                .map(|st| (st.m.to_vec().unwrap(), st.v.to_vec().unwrap(), st.step));
            (p.to_vec().unwrap(), st)
        })
        .collect()
}

#[test]
fn offloaded_moments_give_the_same_updates_bit_for_bit() {
    let mut r = rng(71);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| randn(&mut r, n)).collect();
    let make = || -> Vec<Tensor> {
        init.iter()
            .zip(SIZES)
            .map(|(v, &n)| tensor(v, &[n]).var())
            .collect()
    };
    let (on_gpu, on_host) = (make(), make());
    let (mut a, mut b) = (optimizer(false), optimizer(true));
    for step in 0..4 {
        let mut g: Vec<Vec<f32>> = SIZES.iter().map(|&n| randn(&mut r, n)).collect();
        if step == 1 {
            g[3].clear(); // the last parameter has no gradient this step
        }
        if step == 2 {
            g[2][17] = f32::NAN; // skipped whole, on both
        }
        let clip = Some(if step == 0 { 0.5 } else { 100.0 });
        let oa = a
            .step_if_finite(&on_gpu, &grads_of(&on_gpu, &g), clip)
            .unwrap();
        let ob = b
            .step_if_finite(&on_host, &grads_of(&on_host, &g), clip)
            .unwrap();
        match (oa, ob) {
            (StepOutcome::Applied(x), StepOutcome::Applied(y)) => {
                assert_eq!(x.updated, y.updated);
                assert_eq!(x.grad_norm().unwrap(), y.grad_norm().unwrap());
            }
            (StepOutcome::Skipped { .. }, StepOutcome::Skipped { .. }) => assert_eq!(step, 2),
            _ => panic!("step {step}: one optimizer applied, the other skipped"),
        }
        assert_eq!(snapshot(&a, &on_gpu), snapshot(&b, &on_host), "step {step}");
        for p in &on_host {
            if let Some(st) = b.state(p) {
                assert!(matches!((&st.m, &st.v), (Moment::Host(_), Moment::Host(_))));
            }
        }
    }
    assert_eq!((a.steps(), b.steps()), (3, 3));
    assert_eq!(b.state(&on_host[3]).unwrap().step, 2);
    // The parameters moved: the comparison is not of two idle optimizers.
    assert_ne!(on_host[2].to_vec().unwrap(), init[2]);
}

#[test]
fn moments_restore_across_placements() {
    let mut r = rng(72);
    let p0 = randn(&mut r, 300);
    let src = tensor(&p0, &[300]).var();
    let mut opt = optimizer(false);
    let g0 = randn(&mut r, 300);
    opt.step(
        std::slice::from_ref(&src),
        &grads_of(std::slice::from_ref(&src), &[g0]),
        None,
    )
    .unwrap();
    let st = opt.state(&src).unwrap();
    let (m, v) = (st.m.to_vec().unwrap(), st.v.to_vec().unwrap());
    // Fresh moments each time (a restored tensor must not share the source's storage).
    let saved = |on_host: bool| {
        let place = |x: &Vec<f32>| {
            if on_host {
                Moment::Host(x.clone())
            } else {
                Moment::Device(tensor(x, &[300]))
            }
        };
        ParamState {
            m: place(&m),
            v: place(&v),
            step: st.step,
        }
    };
    // Every (saved placement, restoring optimizer) pair continues the same way.
    let mut finals = Vec::new();
    for (on_host, offload) in [(false, false), (false, true), (true, false), (true, true)] {
        let p = tensor(&src.to_vec().unwrap(), &[300]).var();
        let mut o = optimizer(offload);
        o.set_state(&p, saved(on_host)).unwrap();
        o.set_steps(opt.steps());
        let placed = o.state(&p).unwrap();
        assert_eq!(matches!(placed.m, Moment::Host(_)), offload);
        assert_eq!(placed.m.to_vec().unwrap(), m);
        let mut r = rng(73);
        for _ in 0..2 {
            let g = randn(&mut r, 300);
            o.step(
                std::slice::from_ref(&p),
                &grads_of(std::slice::from_ref(&p), &[g]),
                Some(1.0),
            )
            .unwrap();
        }
        finals.push((
            p.to_vec().unwrap(),
            o.state(&p).unwrap().v.to_vec().unwrap(),
        ));
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]));
    assert_ne!(finals[0].0, src.to_vec().unwrap());
}

#[test]
fn misuses_are_errors() {
    let p = tensor(&[1.0; 8], &[8]).var();
    let mut opt = optimizer(true);
    let short = ParamState {
        m: Moment::Host(vec![0.0; 7]),
        v: Moment::Host(vec![0.0; 8]),
        step: 1,
    };
    let e = opt.set_state(&p, short).unwrap_err().to_string();
    assert!(e.contains("7 values"), "{e}");
    assert!(opt.state(&p).is_none());
    opt.step(
        std::slice::from_ref(&p),
        &grads_of(std::slice::from_ref(&p), &[vec![1.0; 8]]),
        None,
    )
    .unwrap();
    // Moments exist: where they live can no longer change; asking for the same is fine.
    opt.set_offload(true).unwrap();
    let e = opt.set_offload(false).unwrap_err().to_string();
    assert!(e.contains("before the first step"), "{e}");
    assert!(opt.offloaded());
}
