//! gpubench: checks each hot kernel on the GPU against an f64 CPU reference at a moderate size,
//! then times it at the size that matters, and prints one JSON object per figure on stdout
//! (`name`, `ms` = median over reps, `tflops` / `gbps`, `check_max_err`, `ok`, `ref` = the
//! matching `benches/gpu/torch_ref.py` row) and a table on stderr.
//!
//! `gpubench [--quick [--full-checks]] [--only GROUP,GROUP..]`; groups: matmul_f32, matmul_f16,
//! attention, softmax, adamw, dispatch. `--quick` uses tiny sizes (a CPU adapter such as
//! lavapipe); `--full-checks` keeps the checks at the full run's sizes (timing stays tiny).
//! The adapter is chosen as the engine does (`WGPU_BACKEND`, `TRAINER_ADAPTER`). Exit status 1
//! if any check failed or any figure could not run. Timing is host time around `Device::sync`:
//! one warm-up call, one timed call to size a rep, then `reps` reps of `iters` back-to-back
//! calls followed by one sync each.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use benches::reference::{self as cpu, Heads};
use engine::ops::attention::attention;
use engine::ops::attention_block::{self, attention_f16};
use engine::ops::matmul::MatmulKernel;
use engine::ops::optim::AdamW;
use engine::{no_grad, DType, Device, Gradients, Tensor};
use half::f16;
use serde_json::{json, Map, Value};
use trainer::profile::round;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Problem sizes: the real ones, or tiny ones for a CPU adapter (`--quick`).
struct Sizes {
    quick: bool,
    /// (M, K, N) of the matmul checks (multiples of 16, so the coop kernels apply).
    mm_check: (usize, usize, usize),
    mm_f32: usize,
    mm_f16: usize,
    /// (q heads, kv heads, head dim) of every attention problem.
    heads: (usize, usize, usize),
    attn_check_t: usize,
    attn_t: Vec<usize>,
    softmax_check: (usize, usize),
    /// Rows wanted (fewer if one binding cannot hold them) and row length.
    softmax: (usize, usize),
    adamw_check: Vec<usize>,
    /// (number of tensors, elements each).
    adamw: (usize, usize),
    dispatch_ops: usize,
    /// Aim for reps of about this many milliseconds.
    rep_ms: f64,
    reps: usize,
}

impl Sizes {
    fn new(quick: bool, full_checks: bool) -> Self {
        let mut sz = Self::preset(quick);
        if full_checks {
            let full = Self::preset(false);
            sz.mm_check = full.mm_check;
            sz.attn_check_t = full.attn_check_t;
            sz.softmax_check = full.softmax_check;
            sz.adamw_check = full.adamw_check;
        }
        sz
    }

    fn preset(quick: bool) -> Self {
        if quick {
            Sizes {
                quick,
                mm_check: (64, 48, 32),
                mm_f32: 256,
                mm_f16: 256,
                heads: (12, 2, 128),
                attn_check_t: 40,
                attn_t: vec![64, 128],
                softmax_check: (5, 3001),
                softmax: (16, 32_000),
                adamw_check: vec![1, 257, 10_000],
                adamw: (4, 100_000),
                dispatch_ops: 1000,
                rep_ms: 30.0,
                reps: 3,
            }
        } else {
            Sizes {
                quick,
                mm_check: (512, 384, 256),
                mm_f32: 4096,
                mm_f16: 8192,
                heads: (12, 2, 128),
                attn_check_t: 256,
                attn_t: vec![1024, 4096],
                softmax_check: (37, 151_936),
                softmax: (3533, 151_936),
                adamw_check: vec![1, 257, 10_000, 1_000_003],
                adamw: (50, 10_000_000),
                dispatch_ops: 10_000,
                rep_ms: 200.0,
                reps: 5,
            }
        }
    }
}

/// The result of checking a kernel: the worst error and the tolerance it must stay under.
#[derive(Clone, Copy)]
struct Check {
    err: f64,
    tol: f64,
}

impl Check {
    fn ok(&self) -> bool {
        self.err.is_finite() && self.err <= self.tol
    }
    fn worst(self, other: Check) -> Check {
        let r = |c: &Check| {
            if c.err.is_finite() {
                c.err / c.tol
            } else {
                f64::INFINITY
            }
        };
        if r(&other) > r(&self) {
            other
        } else {
            self
        }
    }
}

/// Host timings of one callable, in milliseconds per call.
struct Timing {
    median: f64,
    min: f64,
    max: f64,
    iters: usize,
    reps: usize,
    dispatches: u64,
}

fn elapsed_ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Warm up, size a rep from one timed call, then time `reps` reps of back-to-back calls.
fn time<R>(dev: &Device, sz: &Sizes, mut f: impl FnMut() -> engine::Result<R>) -> Res<Timing> {
    drop(f()?);
    dev.sync()?;
    let d0 = dev.dispatch_count();
    let t = Instant::now();
    drop(f()?);
    dev.sync()?;
    let once = elapsed_ms(t).max(1e-3);
    let dispatches = dev.dispatch_count() - d0;
    let iters = ((sz.rep_ms / once).round() as usize).clamp(1, 200);
    let reps = if once > 2000.0 { 2 } else { sz.reps };
    let mut per = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..iters {
            drop(f()?);
        }
        dev.sync()?;
        per.push(elapsed_ms(t) / iters as f64);
    }
    per.sort_by(f64::total_cmp);
    Ok(Timing {
        median: per[per.len() / 2],
        min: per[0],
        max: per[per.len() - 1],
        iters,
        reps,
        dispatches,
    })
}

/// One printed figure.
struct Figure {
    name: String,
    /// The torch_ref.py row to compare with.
    reference: Option<String>,
    timing: Timing,
    flops: Option<f64>,
    bytes: Option<f64>,
    check: Check,
    /// Check of a few outputs at the timed size, where one is made.
    spot: Option<Check>,
    peak_bytes: u64,
    extra: Vec<(&'static str, Value)>,
}

impl Figure {
    fn new(name: String, reference: Option<&str>, timing: Timing, check: Check) -> Self {
        Figure {
            name,
            reference: reference.map(str::to_string),
            timing,
            flops: None,
            bytes: None,
            check,
            spot: None,
            peak_bytes: 0,
            extra: Vec::new(),
        }
    }

    fn ok(&self) -> bool {
        self.check.ok() && self.spot.is_none_or(|s| s.ok())
    }

    fn json(&self) -> Value {
        let t = &self.timing;
        let mut o = Map::new();
        o.insert("name".into(), json!(self.name));
        o.insert("ms".into(), json!(round(t.median, 4)));
        o.insert("ms_min".into(), json!(round(t.min, 4)));
        o.insert("ms_max".into(), json!(round(t.max, 4)));
        o.insert("iters".into(), json!(t.iters));
        o.insert("reps".into(), json!(t.reps));
        o.insert("dispatches".into(), json!(t.dispatches));
        if let Some(f) = self.flops {
            o.insert("tflops".into(), json!(round(f / t.median / 1e9, 3)));
        }
        if let Some(b) = self.bytes {
            o.insert("gbps".into(), json!(round(b / t.median / 1e6, 1)));
        }
        o.insert("check_max_err".into(), json!(self.check.err));
        o.insert("check_tol".into(), json!(self.check.tol));
        if let Some(s) = self.spot {
            o.insert("spot_max_err".into(), json!(s.err));
        }
        o.insert("ok".into(), json!(self.ok()));
        o.insert(
            "peak_gib".into(),
            json!(round(self.peak_bytes as f64 / (1u64 << 30) as f64, 2)),
        );
        if let Some(r) = &self.reference {
            o.insert("ref".into(), json!(r));
        }
        for (k, v) in &self.extra {
            o.insert((*k).into(), v.clone());
        }
        Value::Object(o)
    }
}

/// Runs the figures of the groups asked for, printing each as it is made.
struct Bench {
    dev: Device,
    sz: Sizes,
    rows: Vec<Value>,
    failed: usize,
}

impl Bench {
    fn emit(&mut self, mut fig: Figure) {
        fig.peak_bytes = self.dev.pool_stats().peak;
        let row = fig.json();
        if !fig.ok() {
            self.failed += 1;
        }
        println!("{row}");
        self.rows.push(row);
    }

    /// Emit a figure, or an error row named `name` if it could not be made.
    fn emit_result(&mut self, name: String, fig: Res<Figure>) {
        match fig {
            Ok(fig) => self.emit(fig),
            Err(e) => self.emit_error(&name, e.to_string()),
        }
    }

    fn emit_error(&mut self, group: &str, what: String) {
        self.failed += 1;
        let row = json!({"name": group, "error": what});
        println!("{row}");
        self.rows.push(row);
    }

    /// Run one group, turning an error or panic into an error row, then free its memory.
    fn group(&mut self, name: &str, f: fn(&mut Bench) -> Res<()>) {
        eprintln!("-- {name}");
        let errors = benches::gpu_log::errors();
        self.dev.reset_peak();
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.emit_error(name, e.to_string()),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                self.emit_error(name, format!("panicked: {msg}"));
            }
        }
        engine::clear_tape();
        let sync = self.dev.sync();
        let new_errors = benches::gpu_log::errors() - errors;
        if new_errors > 0 {
            self.emit_error(
                name,
                format!("{new_errors} wgpu error(s) logged (see stderr)"),
            );
        }
        if let Err(e) = sync {
            self.emit_error(name, format!("sync after the group: {e}"));
        }
        self.dev.trim_pool();
        eprintln!("   ({:.1} s)", t.elapsed().as_secs_f64());
    }
}

// ---------------------------------------------------------------- matmul

fn to_f16(x: &[f32]) -> Vec<f16> {
    x.iter().map(|&v| f16::from_f32(v)).collect()
}

/// Check `kernel` on (M, K, N) random inputs (rounded to f16 first when `half`) against f64.
fn matmul_check(dev: &Device, sz: &Sizes, kernel: MatmulKernel, half: bool) -> Res<Check> {
    let (m, k, n) = sz.mm_check;
    let (a, b) = (cpu::uniform(m * k, 11), cpu::uniform(k * n, 12));
    let (ta, tb, a, b) = if half {
        let (ah, bh) = (to_f16(&a), to_f16(&b));
        let back = |x: &[f16]| x.iter().map(|v| v.to_f32()).collect::<Vec<_>>();
        (
            Tensor::from_f16_slice(dev, &ah, &[m, k])?,
            Tensor::from_f16_slice(dev, &bh, &[k, n])?,
            back(&ah),
            back(&bh),
        )
    } else {
        (
            Tensor::from_slice(dev, &a, &[m, k])?,
            Tensor::from_slice(dev, &b, &[k, n])?,
            a,
            b,
        )
    };
    let got = ta.matmul_with(&tb, false, false, kernel)?.to_vec()?;
    let want = cpu::matmul(&a, &b, m, k, n);
    Ok(Check {
        err: cpu::max_err(&got, &want),
        tol: if half { 1e-3 } else { 1e-4 },
    })
}

/// 256 entries of a large product, against f64 dot products of the host inputs.
fn matmul_spot(
    out: &Tensor,
    n: usize,
    entry: impl Fn(usize, usize) -> f64,
    tol: f64,
) -> Res<Check> {
    let got = out.to_vec()?;
    let r = cpu::uniform(512, 99);
    let idx = |x: f32| (((x + 1.0) / 2.0) * n as f32) as usize % n;
    let mut err: f64 = 0.0;
    for s in 0..256 {
        // Corners first (edge tiles), then random entries.
        let (i, j) = match s {
            0 => (0, 0),
            1 => (n - 1, n - 1),
            2 => (0, n - 1),
            3 => (n - 1, 0),
            _ => (idx(r[2 * s]), idx(r[2 * s + 1])),
        };
        let w = entry(i, j);
        let e = (got[i * n + j] as f64 - w).abs() / w.abs().max(1.0);
        err = if e.is_finite() {
            err.max(e)
        } else {
            f64::INFINITY
        };
    }
    Ok(Check { err, tol })
}

fn matmul_f32(b: &mut Bench) -> Res<()> {
    let dev = b.dev.clone();
    let check = matmul_check(&dev, &b.sz, MatmulKernel::Simt, false)?;
    let n = b.sz.mm_f32;
    let (ha, hb) = (cpu::uniform(n * n, 1), cpu::uniform(n * n, 2));
    let ta = Tensor::from_slice(&dev, &ha, &[n, n])?;
    let tb = Tensor::from_slice(&dev, &hb, &[n, n])?;
    let run = || ta.matmul_with(&tb, false, false, MatmulKernel::Simt);
    let timing = time(&dev, &b.sz, run)?;
    let spot = matmul_spot(
        &run()?,
        n,
        |i, j| cpu::matmul_entry(&ha, &hb, n, n, i, j),
        1e-4,
    )?;
    let name = format!("matmul_f32_{n}");
    let mut fig = Figure::new(name.clone(), Some(&name), timing, check);
    fig.flops = Some(2.0 * (n as f64).powi(3));
    fig.spot = Some(spot);
    fig.extra.push(("kernel", json!("simt")));
    b.emit(fig);
    Ok(())
}

fn matmul_f16(b: &mut Bench) -> Res<()> {
    let dev = b.dev.clone();
    let feats = dev.features();
    if !feats.f16 {
        return Err(format!("{} has no SHADER_F16", dev.name()).into());
    }
    let n = b.sz.mm_f16;
    let (ha, hb) = (
        to_f16(&cpu::uniform(n * n, 3)),
        to_f16(&cpu::uniform(n * n, 4)),
    );
    let ta = Tensor::from_f16_slice(&dev, &ha, &[n, n])?;
    let tb = Tensor::from_f16_slice(&dev, &hb, &[n, n])?;
    let reference = format!("matmul_f16_{n}");
    let mut kernels = Vec::new();
    if feats.cooperative_matrix {
        kernels.push((MatmulKernel::Coop, "coop"));
        kernels.push((MatmulKernel::CoopStaged, "coop_staged"));
        kernels.push((MatmulKernel::CoopPrefetch, "coop_prefetch"));
    } else {
        eprintln!("   {} has no cooperative matrices: SIMT only", dev.name());
    }
    kernels.push((MatmulKernel::Simt, "simt"));
    for (kernel, tag) in kernels {
        let name = format!("matmul_f16_{n}_{tag}");
        let fig = (|| {
            let check = matmul_check(&dev, &b.sz, kernel, true)?;
            let run = || ta.matmul_with(&tb, false, false, kernel);
            let timing = time(&dev, &b.sz, run)?;
            let entry = |i, j| cpu::matmul_entry_f16(&ha, &hb, n, n, i, j);
            let spot = matmul_spot(&run()?, n, entry, 1e-3)?;
            let mut fig = Figure::new(name.clone(), Some(&reference), timing, check);
            fig.flops = Some(2.0 * (n as f64).powi(3));
            fig.spot = Some(spot);
            fig.extra.push(("kernel", json!(tag)));
            Ok(fig)
        })();
        b.emit_result(name, fig);
    }
    Ok(())
}

// ---------------------------------------------------------------- attention

fn heads(sz: &Sizes, t: usize) -> Heads {
    let (hq, hkv, d) = sz.heads;
    Heads { hq, hkv, t, d }
}

/// Forward and gradient checks at the check length: (forward, worst of dq, dk, dv).
fn attention_check(dev: &Device, sz: &Sizes) -> Res<(Check, Check)> {
    let s = heads(sz, sz.attn_check_t);
    let (qs, ks) = ([1, s.hq, s.t, s.d], [1, s.hkv, s.t, s.d]);
    let (nq, nk) = (s.hq * s.t * s.d, s.hkv * s.t * s.d);
    let (q, k, v, g) = (
        cpu::randn(nq, 21),
        cpu::randn(nk, 22),
        cpu::randn(nk, 23),
        cpu::randn(nq, 24),
    );
    let want = cpu::attention(s, &q, &k, &v, &g);
    let tq = Tensor::from_slice(dev, &q, &qs)?.var();
    let tk = Tensor::from_slice(dev, &k, &ks)?.var();
    let tv = Tensor::from_slice(dev, &v, &ks)?.var();
    let out = attention(&tq, &tk, &tv, true, None)?;
    let fwd = Check {
        err: cpu::max_err(&out.to_vec()?, &want.out),
        tol: 2e-4,
    };
    let grads = out.mul(&Tensor::from_slice(dev, &g, &qs)?)?.backward()?;
    let mut bwd = Check {
        err: 0.0,
        tol: 1e-3,
    };
    for (t, w) in [(&tq, &want.dq), (&tk, &want.dk), (&tv, &want.dv)] {
        let got = grads.get(t).ok_or("attention: no gradient")?.to_vec()?;
        bwd = bwd.worst(Check {
            err: cpu::max_err(&got, w),
            tol: 1e-3,
        });
    }
    Ok((fwd, bwd))
}

/// f16 inputs (rounded, so that the f64 reference sees the same values) as variables.
fn f16_vars(dev: &Device, data: &[&[f32]], shapes: [&[usize]; 3]) -> Res<Vec<Tensor>> {
    data.iter()
        .zip(shapes)
        .map(|(d, s)| Ok(Tensor::from_slice(dev, d, s)?.to_dtype(DType::F16)?.var()))
        .collect()
}

fn round_f16(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| f16::from_f32(x).to_f32()).collect()
}

/// The f16 block attention (`attention_f16`) forward + backward at the check size against
/// the f64 reference on the same rounded inputs.
fn attention_blocks_check(dev: &Device, sz: &Sizes) -> Res<Check> {
    let s = heads(sz, sz.attn_check_t);
    let (qs, ks) = ([1, s.hq, s.t, s.d], [1, s.hkv, s.t, s.d]);
    let (nq, nk) = (s.hq * s.t * s.d, s.hkv * s.t * s.d);
    let (q, k, v, g) = (
        round_f16(cpu::randn(nq, 25)),
        round_f16(cpu::randn(nk, 26)),
        round_f16(cpu::randn(nk, 27)),
        cpu::randn(nq, 28),
    );
    let want = cpu::attention(s, &q, &k, &v, &g);
    let t = f16_vars(dev, &[&q, &k, &v], [&qs, &ks, &ks])?;
    let out = attention_f16(&t[0], &t[1], &t[2], true, None)?;
    // f16 rounding of P, dO and dS before their products (seen 2.1e-3 at this size).
    let mut check = Check {
        err: cpu::max_err(&out.to_vec()?, &want.out),
        tol: 5e-3,
    };
    let grads = out.mul(&Tensor::from_slice(dev, &g, &qs)?)?.backward()?;
    for (t, w) in t.iter().zip([&want.dq, &want.dk, &want.dv]) {
        let got = grads.get(t).ok_or("attention_f16: no gradient")?.to_vec()?;
        check = check.worst(Check {
            err: cpu::max_err(&got, w),
            tol: 5e-3,
        });
    }
    Ok(check)
}

fn attention_group(b: &mut Bench) -> Res<()> {
    let dev = b.dev.clone();
    let (fwd_check, grad_check) = attention_check(&dev, &b.sz)?;
    let blocks_check = attention_blocks_check(&dev, &b.sz)?;
    for t in b.sz.attn_t.clone() {
        let s = heads(&b.sz, t);
        let (qs, ks) = ([1, s.hq, t, s.d], [1, s.hkv, t, s.d]);
        let (hq, hk, hv) = (
            cpu::randn(s.hq * t * s.d, 31),
            cpu::randn(s.hkv * t * s.d, 32),
            cpu::randn(s.hkv * t * s.d, 33),
        );
        let q = Tensor::from_slice(&dev, &hq, &qs)?;
        let k = Tensor::from_slice(&dev, &hk, &ks)?;
        let v = Tensor::from_slice(&dev, &hv, &ks)?;
        // Causal: half of the T x T scores, two products of T x T x D per head.
        let flops = 4.0 * (s.hq * t * t * s.d) as f64 / 2.0;
        let name = format!("attention_fwd_f32_T{t}");
        let fig = (|| {
            let fwd = || no_grad(|| attention(&q, &k, &v, true, None));
            let timing = time(&dev, &b.sz, fwd)?;
            // Spot: rows at the start, middle and end of a few heads, at the timed length.
            let out = fwd()?.to_vec()?;
            let mut err: f64 = 0.0;
            for h in [0, s.hq / 2, s.hq - 1] {
                for i in [0, 1, t / 2, t - 1] {
                    let want = cpu::attention_row(s, &hq, &hk, &hv, h, i);
                    let o = (h * t + i) * s.d;
                    err = err.max(cpu::max_err(&out[o..o + s.d], &want));
                }
            }
            let mut fig = Figure::new(name.clone(), Some(&name), timing, fwd_check);
            fig.flops = Some(flops);
            fig.spot = Some(Check { err, tol: 2e-4 });
            Ok(fig)
        })();
        b.emit_result(name, fig);

        let name = format!("attention_fwd_bwd_f32_T{t}");
        let fig = (|| {
            let (qv, kv, vv) = (q.clone().var(), k.clone().var(), v.clone().var());
            let train = || attention(&qv, &kv, &vv, true, None)?.backward();
            let timing = time(&dev, &b.sz, train)?;
            let check = fwd_check.worst(grad_check);
            let mut fig = Figure::new(name.clone(), Some(&name), timing, check);
            // The usual count: backward = 2.5 forwards (ours recomputes more).
            fig.flops = Some(3.5 * flops);
            fig.extra.push(("fwd_check_max_err", json!(fwd_check.err)));
            fig.extra
                .push(("grad_check_max_err", json!(grad_check.err)));
            Ok(fig)
        })();
        engine::clear_tape();
        b.emit_result(name, fig);

        // The f16 path of training (matmul blocks), where one block of scores fits it.
        if !attention_block::fits(&dev, s.hq, s.hkv, t) {
            continue;
        }
        let name = format!("attention_fwd_bwd_f16blocks_T{t}");
        let reference = format!("attention_fwd_bwd_bf16_T{t}");
        let fig = (|| {
            let t16 = f16_vars(&dev, &[&hq, &hk, &hv], [&qs, &ks, &ks])?;
            let train = || attention_f16(&t16[0], &t16[1], &t16[2], true, None)?.backward();
            let timing = time(&dev, &b.sz, train)?;
            let mut fig = Figure::new(name.clone(), Some(&reference), timing, blocks_check);
            // The causal count, as SDPA's row (the blocks compute the masked half too).
            fig.flops = Some(3.5 * flops);
            Ok(fig)
        })();
        engine::clear_tape();
        b.emit_result(name, fig);
    }
    Ok(())
}

// ---------------------------------------------------------------- softmax

fn softmax_rows_err(got: &[f32], x: &[f32], len: usize) -> f64 {
    got.chunks(len)
        .zip(x.chunks(len))
        .map(|(g, r)| cpu::max_rel_err(g, &cpu::softmax_row(r)))
        .fold(0.0, f64::max)
}

fn softmax(b: &mut Bench) -> Res<()> {
    let dev = b.dev.clone();
    let (cr, cl) = b.sz.softmax_check;
    let mut x = cpu::randn(cr * cl, 41);
    x.iter_mut().for_each(|v| *v *= 4.0);
    let got = Tensor::from_slice(&dev, &x, &[cr, cl])?
        .softmax()?
        .to_vec()?;
    let check = Check {
        err: softmax_rows_err(&got, &x, cl),
        tol: 1e-4,
    };
    let (want_rows, len) = b.sz.softmax;
    let fit = dev.max_binding_bytes() as usize / (len * 4);
    let rows = want_rows.min(fit);
    if rows == 0 {
        return Err(format!("softmax: one row of {len} f32 exceeds one binding").into());
    }
    if rows < want_rows {
        eprintln!("   softmax: {want_rows} rows do not fit one binding; {rows} rows");
    }
    let mut x = cpu::randn(rows * len, 42);
    x.iter_mut().for_each(|v| *v *= 4.0);
    let t = Tensor::from_slice(&dev, &x, &[rows, len])?;
    let timing = time(&dev, &b.sz, || t.softmax())?;
    let y = t.softmax()?;
    let mut err: f64 = 0.0;
    for r in [0, rows / 2, rows - 1] {
        let got = y.narrow(0, r, 1)?.to_vec()?;
        err = err.max(softmax_rows_err(&got, &x[r * len..(r + 1) * len], len));
    }
    let name = format!("softmax_f32_{rows}x{len}");
    let reference = format!("softmax_f32_{want_rows}x{len}");
    let mut fig = Figure::new(name, Some(&reference), timing, check);
    // Bytes that must move: the input read once, the output written once.
    fig.bytes = Some((2 * rows * len * 4) as f64);
    fig.spot = Some(Check { err, tol: 1e-4 });
    b.emit(fig);
    Ok(())
}

// ---------------------------------------------------------------- AdamW

/// Gradients holding `g[i]` for `params[i]` (d(sum(p * G))/dp = G).
fn grads_for(params: &[Tensor], g: &[Tensor]) -> Res<Gradients> {
    let mut grads = Gradients::default();
    for (p, g) in params.iter().zip(g) {
        p.mul(g)?.backward_into(&mut grads)?;
    }
    Ok(grads)
}

fn adamw_check(dev: &Device, sz: &Sizes) -> Res<Check> {
    let init: Vec<Vec<f32>> = sz
        .adamw_check
        .iter()
        .enumerate()
        .map(|(i, &n)| cpu::randn(n, 50 + i as u64))
        .collect();
    let params = init
        .iter()
        .map(|p| Ok(Tensor::from_slice(dev, p, &[p.len()])?.var()))
        .collect::<Res<Vec<_>>>()?;
    let mut opt = AdamW::new(1e-2);
    opt.weight_decay = 0.1;
    // The reference takes the optimizer's f32 hyper-parameters (1 - 0.999f32 is not 1e-3).
    let mut want = cpu::AdamWRef::new(opt.lr as f64, opt.weight_decay as f64, &init);
    (want.beta1, want.beta2, want.eps) = (opt.beta1 as f64, opt.beta2 as f64, opt.eps as f64);
    for step in 0..2u64 {
        let g: Vec<Vec<f32>> = init
            .iter()
            .enumerate()
            .map(|(i, p)| cpu::randn(p.len(), 60 + 10 * step + i as u64))
            .collect();
        let tg = g
            .iter()
            .map(|x| Ok(Tensor::from_slice(dev, x, &[x.len()])?))
            .collect::<Res<Vec<_>>>()?;
        opt.step(&params, &grads_for(&params, &tg)?, None)?;
        want.step(&g);
    }
    let mut err: f64 = 0.0;
    for (i, p) in params.iter().enumerate() {
        let st = opt.state(p).ok_or("adamw: no state")?;
        err = err.max(cpu::max_scaled_err(&p.to_vec()?, &want.p[i]));
        err = err.max(cpu::max_scaled_err(&st.m.to_vec()?, &want.m[i]));
        err = err.max(cpu::max_scaled_err(&st.v.to_vec()?, &want.v[i]));
    }
    Ok(Check { err, tol: 1e-4 })
}

fn adamw(b: &mut Bench) -> Res<()> {
    let dev = b.dev.clone();
    let check = adamw_check(&dev, &b.sz)?;
    let (count, each) = b.sz.adamw;
    let mut params = Vec::with_capacity(count);
    let mut grads = Gradients::default();
    for i in 0..count {
        let p = Tensor::from_slice(&dev, &cpu::randn(each, 100 + i as u64), &[each])?.var();
        let g = Tensor::from_slice(&dev, &cpu::randn(each, 200 + i as u64), &[each])?;
        p.mul(&g)?.backward_into(&mut grads)?;
        params.push(p);
    }
    dev.sync()?;
    let mut opt = AdamW::new(1e-4);
    let timing = time(&dev, &b.sz, || opt.step(&params, &grads, None))?;
    let n = count * each;
    let name = if n >= 1_000_000 {
        format!("adamw_f32_{}M", n / 1_000_000)
    } else {
        format!("adamw_f32_{}K", n / 1000)
    };
    let reference = name.clone();
    let mut fig = Figure::new(name, Some(&reference), timing, check);
    // Per parameter: p, m, v, g read; p, m, v written (our step also reads g for its norm).
    fig.bytes = Some(28.0 * n as f64);
    fig.extra.push(("tensors", json!(count)));
    fig.extra.push(("params", json!(n)));
    b.emit(fig);
    Ok(())
}

// ---------------------------------------------------------------- dispatch

fn dispatch(b: &mut Bench) -> Res<()> {
    let dev = b.dev.clone();
    let ops = b.sz.dispatch_ops;
    let x = Tensor::from_slice(&dev, &[0.5f32; 256], &[256])?;
    let chain = || {
        let mut y = x.clone();
        for _ in 0..ops {
            y = y.add_scalar(1.0)?;
        }
        Ok(y)
    };
    let got = chain()?.to_vec()?;
    let want = vec![0.5 + ops as f64; 256];
    let check = Check {
        err: cpu::max_err(&got, &want),
        tol: 0.0,
    };
    let timing = time(&dev, &b.sz, chain)?;
    let us = timing.median * 1e3 / ops as f64;
    let name = format!("dispatch_{}k_tiny", ops / 1000);
    let reference = name.clone();
    let mut fig = Figure::new(name, Some(&reference), timing, check);
    fig.extra.push(("ops", json!(ops)));
    fig.extra.push(("us_per_op", json!(round(us, 3))));
    b.emit(fig);
    Ok(())
}

// ---------------------------------------------------------------- main

const GROUPS: [(&str, fn(&mut Bench) -> Res<()>); 6] = [
    ("matmul_f32", matmul_f32),
    ("matmul_f16", matmul_f16),
    ("attention", attention_group),
    ("softmax", softmax),
    ("adamw", adamw),
    ("dispatch", dispatch),
];

fn table(rows: &[Value]) {
    eprintln!();
    eprintln!(
        "{:<34} {:>10} {:>9} {:>9} {:>10} {:>10} {:>5}",
        "figure", "ms", "TFLOP/s", "GB/s", "check err", "spot err", "ok"
    );
    let num = |v: &Value, k: &str, w: usize, p: usize| match v.get(k).and_then(Value::as_f64) {
        Some(x) => format!("{x:>w$.p$}"),
        None => format!("{:>w$}", "-"),
    };
    let sci = |v: &Value, k: &str| match v.get(k).and_then(Value::as_f64) {
        Some(x) => format!("{x:>10.2e}"),
        None => format!("{:>10}", "-"),
    };
    for r in rows {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            eprintln!("{name:<34} ERROR {e}");
            continue;
        }
        let ok = if r.get("ok") == Some(&json!(true)) {
            "yes"
        } else {
            "NO"
        };
        eprintln!(
            "{name:<34} {} {} {} {} {} {ok:>5}",
            num(r, "ms", 10, 3),
            num(r, "tflops", 9, 2),
            num(r, "gbps", 9, 0),
            sci(r, "check_max_err"),
            sci(r, "spot_max_err"),
        );
    }
}

fn main() {
    benches::gpu_log::install();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut quick, mut full_checks) = (false, false);
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--full-checks" => full_checks = true,
            "--only" => {
                only = it
                    .next()
                    .map(|s| s.split(',').map(str::to_string).collect())
            }
            "-h" | "--help" => {
                let names: Vec<&str> = GROUPS.iter().map(|g| g.0).collect();
                eprintln!(
                    "gpubench [--quick [--full-checks]] [--only GROUP,..]  groups: {}",
                    names.join(",")
                );
                return;
            }
            other => {
                eprintln!("gpubench: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    let dev = match Device::new() {
        Ok(d) => d,
        Err(e) => {
            println!("{}", json!({"name": "device", "error": e.to_string()}));
            eprintln!("gpubench: {e}");
            std::process::exit(1);
        }
    };
    let info = json!({
        "name": "device",
        "adapter": dev.name(),
        "backend": format!("{:?}", dev.backend()),
        "type": format!("{:?}", dev.device_type()),
        "features": format!("{:?}", dev.features()),
        "max_binding_bytes": dev.max_binding_bytes(),
        "shader_checks": dev.shader_checks(),
        "quick": quick,
        "full_checks": full_checks,
    });
    println!("{info}");
    eprintln!(
        "gpubench on {} ({:?}, {:?}), {:?}{}",
        dev.name(),
        dev.backend(),
        dev.device_type(),
        dev.features(),
        if quick { ", quick sizes" } else { "" }
    );
    let start = Instant::now();
    let mut b = Bench {
        dev,
        sz: Sizes::new(quick, full_checks),
        rows: Vec::new(),
        failed: 0,
    };
    for (name, f) in GROUPS {
        if only.as_ref().is_none_or(|o| o.iter().any(|g| g == name)) {
            b.group(name, f);
        }
    }
    table(&b.rows);
    eprintln!(
        "\n{} figure(s), {} failed, {:.1} s{}",
        b.rows.len(),
        b.failed,
        start.elapsed().as_secs_f64(),
        if b.sz.quick { " (quick sizes)" } else { "" }
    );
    if b.failed > 0 {
        std::process::exit(1);
    }
}
