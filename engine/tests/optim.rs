//! AdamW against an f64 CPU implementation of torch.optim.AdamW (weight decay, bias
//! corrections, clipping by the global norm as clip_grad_norm_ does) over three steps; the
//! global norm and clip scale against f64; state save/restore; skipped parameters; a step
//! with a NaN or infinite gradient skipped whole.

mod common;
use common::*;

use engine::ops::optim::{
    global_norm, global_norm_unscaled, AdamW, Moment, ParamState, StepOutcome,
};
use engine::{Gradients, Tensor};

const SIZES: &[usize] = &[1, 255, 257, 10_000];

/// torch.optim.AdamW + clip_grad_norm_ in f64, on host copies of the parameters.
struct RefAdamW {
    p: Vec<Vec<f64>>,
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    t: i32,
}

fn norm_f64(grads: &[Vec<f32>]) -> f64 {
    grads
        .iter()
        .flatten()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt()
}

fn clip_scale(norm: f64, max_norm: Option<f32>) -> f64 {
    max_norm.map_or(1.0, |mx| (mx as f64 / (norm + 1e-6)).min(1.0))
}

impl RefAdamW {
    fn step(&mut self, opt: &AdamW, grads: &[Vec<f32>], max_norm: Option<f32>) -> (f64, f64) {
        let (lr, b1, b2, eps, wd) = (
            opt.lr as f64,
            opt.beta1 as f64,
            opt.beta2 as f64,
            opt.eps as f64,
            opt.weight_decay as f64,
        );
        let norm = norm_f64(grads);
        let scale = clip_scale(norm, max_norm);
        self.t += 1;
        let (bc1, bc2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (k, g) in grads.iter().enumerate() {
            for (i, &g) in g.iter().enumerate() {
                let g = g as f64 * scale;
                let p = &mut self.p[k][i];
                *p *= 1.0 - lr * wd;
                self.m[k][i] = b1 * self.m[k][i] + (1.0 - b1) * g;
                self.v[k][i] = b2 * self.v[k][i] + (1.0 - b2) * g * g;
                *p -= lr / bc1 * self.m[k][i] / (self.v[k][i].sqrt() / bc2.sqrt() + eps);
            }
        }
        (norm, scale)
    }
}

/// Gradients holding `values[k]` for `params[k]` (d(p * G)/dp = G, seeded with ones).
fn grads_of(params: &[Tensor], values: &[Vec<f32>]) -> Gradients {
    let mut grads = Gradients::default();
    for (p, g) in params.iter().zip(values) {
        p.mul(&tensor(g, p.shape()))
            .unwrap()
            .backward_into(&mut grads)
            .unwrap();
    }
    grads
}

/// Gradients holding `g` for the single parameter `p`.
fn grad_of(p: &Tensor, g: &[f32]) -> Gradients {
    grads_of(std::slice::from_ref(p), &[g.to_vec()])
}

/// Compare relative to the tensor's largest magnitude (moments can be tiny or cancel).
fn assert_close_scaled(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let s = want.iter().fold(1e-30f64, |a, &w| a.max(w.abs()));
    let got: Vec<f32> = got.iter().map(|&g| (g as f64 / s) as f32).collect();
    let want: Vec<f64> = want.iter().map(|&w| w / s).collect();
    assert_close(what, &got, &want, tol);
}

/// Three steps against the f64 reference, gradients uniform in [-grad_scale, grad_scale]; the
/// GPU gets them times `loss_scale` and `inv_loss_scale` = 1 / loss_scale (as f16 training
/// hands them over), the reference gets them as they are.
fn run_three_steps(max_norm: Option<f32>, grad_scale: f32, expect_clipped: bool) {
    run_three_steps_scaled(max_norm, grad_scale, expect_clipped, 1.0);
}

fn run_three_steps_scaled(
    max_norm: Option<f32>,
    grad_scale: f32,
    expect_clipped: bool,
    loss_scale: f32,
) {
    let mut r = rng(31);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| randn(&mut r, n)).collect();
    let params: Vec<Tensor> = init
        .iter()
        .zip(SIZES)
        .map(|(p, &n)| tensor(p, &[n]).var())
        .collect();
    let mut opt = AdamW::new(0.05);
    opt.weight_decay = 0.1;
    opt.beta2 = 0.99;
    opt.inv_loss_scale = 1.0 / loss_scale;
    let mut reference = RefAdamW {
        p: init.iter().map(|p| to_f64(p)).collect(),
        m: SIZES.iter().map(|&n| vec![0.0; n]).collect(),
        v: SIZES.iter().map(|&n| vec![0.0; n]).collect(),
        t: 0,
    };
    for step in 1..=3 {
        let g: Vec<Vec<f32>> = SIZES
            .iter()
            .map(|&n| uniform(&mut r, n, -grad_scale, grad_scale))
            .collect();
        let scaled: Vec<Vec<f32>> = g
            .iter()
            .map(|t| t.iter().map(|&x| x * loss_scale).collect())
            .collect();
        let grads = grads_of(&params, &scaled);
        let stats = opt.step(&params, &grads, max_norm).unwrap();
        let (norm, scale) = reference.step(&opt, &g, max_norm);
        let what = format!("max_norm {max_norm:?} loss scale {loss_scale} step {step}");
        assert_eq!(stats.updated, SIZES.len());
        assert_close(
            &format!("{what} norm"),
            &[stats.grad_norm().unwrap()],
            &[norm],
            1e-5,
        );
        assert_close(
            &format!("{what} clip scale"),
            &[stats.clip_scale().unwrap()],
            &[scale],
            1e-5,
        );
        assert_eq!(
            scale < 1.0,
            expect_clipped,
            "{what}: the test meant clipping to be {expect_clipped}"
        );
        for (k, p) in params.iter().enumerate() {
            let n = SIZES[k];
            let got = p.to_vec().unwrap();
            assert_close(&format!("{what} p[{n}]"), &got, &reference.p[k], 1e-5);
            // the total update in units of lr, so that the check does not hide in p's size
            let moved = |p: &[f64]| -> Vec<f64> {
                p.iter()
                    .zip(&init[k])
                    .map(|(&a, &b)| (a - b as f64) / 0.05)
                    .collect()
            };
            let got_moved: Vec<f32> = moved(&to_f64(&got)).iter().map(|&x| x as f32).collect();
            assert_close(
                &format!("{what} update[{n}]"),
                &got_moved,
                &moved(&reference.p[k]),
                1e-4,
            );
            let st = opt.state(p).expect("state after a step");
            assert_eq!(st.step, step);
            assert_close_scaled(
                &format!("{what} m[{n}]"),
                &st.m.to_vec().unwrap(),
                &reference.m[k],
                1e-5,
            );
            assert_close_scaled(
                &format!("{what} v[{n}]"),
                &st.v.to_vec().unwrap(),
                &reference.v[k],
                1e-5,
            );
        }
    }
    assert_eq!(opt.steps(), 3);
}

#[test]
fn adamw_matches_torch_formula_with_clipping() {
    // norm of ~10,500 values uniform in [-1, 1] is about 59: clipped to 1
    run_three_steps(Some(1.0), 1.0, true);
}

#[test]
fn adamw_unscales_loss_scaled_gradients_in_the_norm_and_the_step() {
    // Gradients times 2^16 (f16 loss scaling) and back by inv_loss_scale: the same norm,
    // clip scale and update as the plain gradients, with and without clipping.
    run_three_steps_scaled(Some(1.0), 1.0, true, 65536.0);
    run_three_steps_scaled(Some(100.0), 0.01, false, 65536.0);
    run_three_steps_scaled(None, 1.0, false, 1024.0);
}

#[test]
fn adamw_matches_torch_formula_when_clip_does_not_apply() {
    run_three_steps(Some(100.0), 0.01, false); // norm ~0.6 < 100: scale 1
    run_three_steps(None, 1.0, false);
}

#[test]
fn global_norm_matches_f64() {
    let mut r = rng(32);
    // the last tensor is large enough to use every partial slot with a grid-stride loop
    let sizes: Vec<usize> = SIZES.iter().copied().chain([2_200_000]).collect();
    let data: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(&mut r, n)).collect();
    let ts: Vec<Tensor> = data
        .iter()
        .zip(&sizes)
        .map(|(d, &n)| tensor(d, &[n]))
        .collect();
    for k in 0..ts.len() {
        let norm = global_norm(&[&ts[k]]).unwrap();
        assert_eq!(norm.shape(), &[] as &[usize]);
        assert_close(
            &format!("norm [{}]", sizes[k]),
            &[norm.to_scalar().unwrap()],
            &[norm_f64(&data[k..k + 1])],
            1e-5,
        );
    }
    let all: Vec<&Tensor> = ts.iter().collect();
    let got = global_norm(&all).unwrap().to_scalar().unwrap();
    assert_close("norm of all", &[got], &[norm_f64(&data)], 1e-5);
    // a 2-D tensor counts all its elements; an empty list is an error
    let m = tensor(&data[2], &[1, 257]);
    assert_close(
        "norm 2-D",
        &[global_norm(&[&m]).unwrap().to_scalar().unwrap()],
        &[norm_f64(&data[2..3])],
        1e-5,
    );
    assert!(global_norm(&[]).is_err());
}

#[test]
fn unscaled_global_norm_survives_what_would_overflow() {
    let mut r = rng(33);
    let data = randn(&mut r, 1000);
    let want = norm_f64(std::slice::from_ref(&data));
    // Gradients as a loss scale of 2^100 leaves them: their own sum of squares is past f32.
    let big: Vec<f32> = data.iter().map(|&x| x * 2f32.powi(100)).collect();
    let t = tensor(&big, &[1000]);
    assert!(global_norm(&[&t])
        .unwrap()
        .to_scalar()
        .unwrap()
        .is_infinite());
    let got = global_norm_unscaled(&[&t], 2f32.powi(-100))
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_close("unscaled norm", &[got], &[want], 1e-5);
}

#[test]
fn parameters_without_gradient_are_untouched_and_state_round_trips() {
    let mut r = rng(33);
    let (a0, b0) = (randn(&mut r, 255), randn(&mut r, 257));
    let a = tensor(&a0, &[255]).var();
    let b = tensor(&b0, &[257]).var();
    let alias = a.clone(); // shares storage: sees the in-place update
    let mut opt = AdamW::new(1e-2);
    let ga = randn(&mut r, 255);
    let stats = opt
        .step(&[a.clone(), b.clone(), a.clone()], &grad_of(&a, &ga), None)
        .unwrap();
    assert_eq!(stats.updated, 1); // b has no gradient, a is listed twice but updated once
    assert_eq!(b.to_vec().unwrap(), b0);
    assert!(opt.state(&b).is_none());
    assert_eq!(opt.state(&a).unwrap().step, 1);
    assert_ne!(alias.to_vec().unwrap(), a0);

    // Restore a's state into a fresh optimizer over a copy of a: the next steps agree.
    let a2 = tensor(&a.to_vec().unwrap(), &[255]).var();
    let st = opt.state(&a).unwrap();
    let mut opt2 = AdamW::new(1e-2);
    let copy = |m: &Moment| Moment::Device(tensor(&m.to_vec().unwrap(), &[255]));
    opt2.set_state(
        &a2,
        ParamState {
            m: copy(&st.m),
            v: copy(&st.v),
            step: st.step,
        },
    )
    .unwrap();
    opt2.set_steps(opt.steps());
    for _ in 0..2 {
        let g = randn(&mut r, 255);
        opt.step(std::slice::from_ref(&a), &grad_of(&a, &g), Some(0.5))
            .unwrap();
        opt2.step(std::slice::from_ref(&a2), &grad_of(&a2, &g), Some(0.5))
            .unwrap();
    }
    assert_eq!(a.to_vec().unwrap(), a2.to_vec().unwrap());
    assert_eq!(opt2.state(&a2).unwrap().step, 3);
    assert_eq!(opt2.steps(), 3);

    // wrong shapes and dtypes are errors, found before anything is updated
    let wrong = ParamState {
        m: Moment::Device(tensor(&[0.0; 3], &[3])),
        v: Moment::Device(tensor(&[0.0; 3], &[3])),
        step: 0,
    };
    assert!(opt2.set_state(&a2, wrong).is_err());
    let h = tensor(&[1.0; 7], &[7])
        .to_dtype(engine::DType::F16)
        .unwrap()
        .var();
    let mut grads = grad_of(&b, &randn(&mut r, 257));
    // (backward consumes the whole tape: record the cast only now)
    h.to_dtype(engine::DType::F32)
        .unwrap()
        .backward_into(&mut grads)
        .unwrap();
    assert!(grads.get(&b).is_some() && grads.get(&h).is_some());
    assert!(opt.step(&[b.clone(), h], &grads, None).is_err()); // an f16 parameter
    assert_eq!(b.to_vec().unwrap(), b0);
    assert!(opt.step(&[], &grads, None).is_err());
}

#[test]
fn non_finite_gradients_skip_the_whole_step() {
    let mut r = rng(34);
    let (a0, b0) = (randn(&mut r, 300), randn(&mut r, 7));
    let a = tensor(&a0, &[300]).var();
    let b = tensor(&b0, &[7]).var();
    let params = [a.clone(), b.clone()];
    let mut opt = AdamW::new(1e-2);
    let good = |r: &mut rand::rngs::StdRng| [randn(r, 300), randn(r, 7)];
    let g = good(&mut r);
    assert!(matches!(
        opt.step_if_finite(&params, &grads_of(&params, &g), Some(1.0))
            .unwrap(),
        StepOutcome::Applied(_)
    ));
    let snapshot = |t: &Tensor| t.to_vec().unwrap();
    let before: Vec<Vec<f32>> = [&a, &b]
        .iter()
        .flat_map(|p| {
            let st = opt.state(p).unwrap();
            [snapshot(p), st.m.to_vec().unwrap(), st.v.to_vec().unwrap()]
        })
        .collect();
    // One NaN or one infinity in one tensor: nothing moves, no step is counted.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut g = good(&mut r);
        g[1][3] = bad;
        match opt
            .step_if_finite(&params, &grads_of(&params, &g), Some(1.0))
            .unwrap()
        {
            StepOutcome::Skipped { grad_norm } => assert!(!grad_norm.is_finite()),
            StepOutcome::Applied(_) => panic!("a step with gradient {bad} was applied"),
        }
        let after: Vec<Vec<f32>> = [&a, &b]
            .iter()
            .flat_map(|p| {
                let st = opt.state(p).unwrap();
                [snapshot(p), st.m.to_vec().unwrap(), st.v.to_vec().unwrap()]
            })
            .collect();
        assert_eq!(after, before, "gradient {bad}");
        assert_eq!((opt.steps(), opt.state(&a).unwrap().step), (1, 1));
    }
    // A finite step after the skipped ones is the second step.
    let g = good(&mut r);
    let StepOutcome::Applied(stats) = opt
        .step_if_finite(&params, &grads_of(&params, &g), Some(1.0))
        .unwrap()
    else {
        panic!("a finite step was skipped")
    };
    assert!((stats.grad_norm().unwrap() as f64 - norm_f64(&g)).abs() < 1e-3 * norm_f64(&g));
    assert_eq!((opt.steps(), opt.state(&b).unwrap().step), (2, 2));
    assert_ne!(snapshot(&a), before[0]);
}
