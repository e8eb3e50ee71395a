//! Shared test helpers: one checked device, seeded random data, comparison with f64 CPU
//! references (max difference printed), and central finite differences for backward rules.
#![allow(dead_code)]

use std::sync::OnceLock;

use engine::{no_grad, DType, Device, DeviceOptions, Gradients, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Tolerance of f32 paths against an f64 reference (relative, with an absolute floor).
pub const F32_TOL: f64 = 1e-4;
/// Tolerance of f16-input paths.
pub const F16_TOL: f64 = 1e-2;

/// The test device: shaders always compiled with wgpu's bounds checks on.
pub fn dev() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(own_dev).clone()
}

/// A device of the test's own (checks on), for counts the other tests running in parallel
/// on the shared one would disturb (the pool's bytes in use).
pub fn own_dev() -> Device {
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    Device::with_options(opts).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in [lo, hi).
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` values uniform in [-1, 1).
pub fn randn(rng: &mut StdRng, n: usize) -> Vec<f32> {
    uniform(rng, n, -1.0, 1.0)
}

pub fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(&dev(), data, shape).expect("upload")
}

/// The bit patterns of an f16 tensor's values (for comparisons to the bit).
pub fn f16_bits(t: &Tensor) -> Vec<u16> {
    t.to_vec_f16()
        .expect("download")
        .iter()
        .map(|h| h.to_bits())
        .collect()
}

/// The gradients of sum_k sum(f32(ys[k]) * gs[k]): what reaches the variables from outputs
/// of any dtype, each weighted by an f32 tensor of its shape. Consumes the tape.
pub fn weighted_grads(ys: &[Tensor], gs: &[Tensor]) -> Gradients {
    let mut loss: Option<Tensor> = None;
    for (y, g) in ys.iter().zip(gs) {
        let term = y
            .to_dtype(DType::F32)
            .and_then(|y| y.mul(g))
            .and_then(|t| t.sum_all())
            .expect("weighted sum");
        loss = Some(match loss {
            Some(l) => l.add(&term).expect("add"),
            None => term,
        });
    }
    loss.expect("at least one output")
        .backward()
        .expect("backward")
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Assert `|got - want| <= tol * max(1, |want|)` elementwise; prints the max difference.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() || !w.is_finite(),
            "{what}[{i}]: got {g}, want {w}"
        );
        let err = (g as f64 - w).abs() / w.abs().max(1.0);
        if err > worst.0 || err.is_nan() {
            worst = (err, i);
        }
    }
    eprintln!("{what}: max scaled error {:.3e} at {}", worst.0, worst.1);
    assert!(
        worst.0 <= tol,
        "{what}: error {:.3e} > {tol:e} at [{}]: got {}, want {}",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
}

/// Check the gradients of `f` at `inputs` against central finite differences of the same
/// GPU forward. The scalar checked is sum(f(x) * w) for a fixed random w, so every output
/// element's gradient counts.
pub fn check_grads(
    what: &str,
    inputs: &[(Vec<f32>, Vec<usize>)],
    f: impl Fn(&[Tensor]) -> engine::Result<Tensor>,
    eps: f32,
    tol: f64,
) {
    let vars: Vec<Tensor> = inputs.iter().map(|(d, s)| tensor(d, s).var()).collect();
    let out = f(&vars).expect("forward");
    let w = uniform(&mut rng(7), out.elem_count(), 0.5, 1.5);
    let wt = tensor(&w, out.shape());
    let grads = out.mul(&wt).expect("weight").backward().expect("backward");
    let objective = |xs: &[Tensor]| -> f64 {
        let y = no_grad(|| f(xs))
            .expect("forward")
            .to_vec()
            .expect("download");
        y.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    for (k, (data, shape)) in inputs.iter().enumerate() {
        let analytic = match grads.get(&vars[k]) {
            Some(g) => g.to_vec().expect("download"),
            None => vec![0.0; data.len()],
        };
        let mut numeric = Vec::with_capacity(data.len());
        for j in 0..data.len() {
            let eval = |delta: f32| {
                let mut d = data.clone();
                d[j] += delta;
                let xs: Vec<Tensor> = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, (di, si))| {
                        if i == k {
                            tensor(&d, si)
                        } else {
                            tensor(di, si)
                        }
                    })
                    .collect();
                objective(&xs)
            };
            numeric.push((eval(eps) - eval(-eps)) / (2.0 * eps as f64));
        }
        assert_close(
            &format!("{what}: d/d input {k} {shape:?}"),
            &analytic,
            &numeric,
            tol,
        );
    }
}
