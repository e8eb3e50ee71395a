//! trainbench: whole training steps of a Qwen2.5 model (random weights at the real config)
//! done as the `trainer` does them, timed on the GPU; one JSON object per figure on stdout
//! (`name`, `tokens_per_s`, `peak_gib`, `dispatches_per_step`, `ok`, `ref` = the matching
//! `benches/gpu/torch_train_ref.py` row) and a table on stderr.
//!
//! A training step is `trainer/src/train.rs`'s, with one micro-batch: decoder hidden states,
//! the fused LM head + f_alpha objective (alpha = 1), backward of the loss times the loss scale,
//! the loss and per-token p downloaded, then `guard::update` (AdamW `step_if_finite`, which
//! unscales inside its norm and update kernels, clip 1.0, betas 0.9/0.95, weight decay 0.01)
//! and the loss scaler's update;
//! a `Device::sync` closes each step so that its optimizer kernels are inside its time.
//! The diagnostic is `trainer/src/diagnose.rs`'s forward: no tape, `lm_head_log_probs`.
//! Before any timing, a check that can fail: on a tiny Qwen2 config, three steps on one batch
//! in each precision / recomputation asked for; every step's per-token log p (training and
//! diagnostic paths) must match an f64 CPU forward of the weights read back from the GPU
//! (`benches::decoder_ref`), and the loss must fall. At the real config each figure is also
//! checked for sanity (first loss ~ 1 - 1/V, NLL ~ ln V at random init).
//!
//! `trainbench [--model qwen2.5-1.5b|qwen2.5-0.5b|qwen2.5-7b|tiny] [--batch 4] [--seq 1024]
//! [--warmup 3] [--steps 5] [--precision f32|f16|auto] [--recompute] [--plan ITEM,..]
//! [--budget-s 60] [--smoke] [--no-check]`; plan items: train-f16, train-f16-recompute,
//! train-f16-flash (attention on the f32 flash kernels instead of f16 matmul blocks), train-f32,
//! train-f32-recompute, train-f16-packed and train-f32-packed (the batch's sequences packed
//! into one row, `--packing`, on the flash kernels; checked first against the padded rows'
//! log p on the same GPU), each train item optionally followed by -offload (AdamW's moments in
//! host memory: what the step pays to carry them), diagnose-f16, diagnose-f32, objective,
//! objective-f16. Exit status 1 if a check failed or a figure could not be made.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use benches::decoder_ref::{self, HostWeights};
use benches::profile::{add_profile, profiled};
use benches::reference as cpu;
use benches::step::{config, random_batch, random_batch_as, Trainer};
use engine::ops::objective::{lm_head_log_probs, lm_head_objective, Objective};
use engine::{no_grad, Counters, Device, Tensor};
use models::{AttentionPath, Compute, Config, Model, Precision, Weights};
use serde_json::{json, Map, Value};
use trainer::batch::{MicroBatch, SplitMix};
use trainer::profile::round;

/// The check's model: tiny, untied or tied as the benchmarked one, vocabulary not a
/// multiple of 64 (edge tiles of the objective).
fn check_config(tie: bool) -> Result<Config> {
    let mut cfg = config("tiny")?;
    cfg.vocab_size = 300;
    cfg.tie_word_embeddings = tie;
    Ok(cfg)
}

// ---------------------------------------------------------------- the work measured

/// log p of every target under `model`, as `diagnose::token_probs` computes it.
fn diagnose_log_p(model: &Model, mb: &MicroBatch) -> Result<Vec<f32>> {
    let dev = model.device();
    let n = mb.batch * mb.seq_len;
    Ok(no_grad(|| -> models::Result<Vec<f32>> {
        let hidden = mb.hidden_states(model)?;
        let hidden = hidden.reshape(&[n, model.config.hidden_size])?;
        let targets = Tensor::from_u32_slice(dev, &mb.targets, &[n])?;
        let (x, chunks) = model.lm_head_operands(&hidden)?;
        Ok(lm_head_log_probs(&x, &chunks, &targets)?.to_vec()?)
    })?)
}

// ---------------------------------------------------------------- the check

fn host_weights(model: &Model) -> Result<HostWeights> {
    Ok(model
        .state_dict()?
        .into_iter()
        .map(|(name, _, data)| (name, data))
        .collect())
}

/// The check's model, with weights far from the random init's (std 0.02, zero biases, unit
/// norms, near-uniform attention, under which a wrong rotary or bias would hardly show):
/// N(0, 0.25^2) embedding, N(0, 1.5^2 / fan_in) matrices, N(0, 0.3^2) biases, 1 + N(0, 0.2^2)
/// norm weights, through a safetensors file, as a checkpoint would come.
fn check_model(dev: &Device, cfg: &Config) -> Result<Model> {
    let names = Model::new(cfg, &Weights::random(dev, 0), false)?.state_dict()?;
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = names
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape, _))| {
            let n = shape.iter().product();
            let (std, mean) = if name.ends_with("norm.weight") {
                (0.2, 1.0)
            } else if name.ends_with(".bias") {
                (0.3, 0.0)
            } else if name.contains("embed_tokens") {
                (0.25, 0.0)
            } else {
                (1.5 / (shape[1] as f32).sqrt(), 0.0)
            };
            let data = cpu::randn(n, 100 + i as u64)
                .into_iter()
                .map(|z| mean + std * z)
                .collect();
            (name, shape, data)
        })
        .collect();
    let path = std::env::temp_dir().join(format!(
        "trainbench-check-{}.safetensors",
        std::process::id()
    ));
    models::save::write_safetensors(&path, &tensors, models::SaveDtype::F32)?;
    let model = Weights::from_files(dev, std::slice::from_ref(&path))
        .and_then(|w| Model::new(cfg, &w, true));
    let _ = std::fs::remove_file(&path);
    Ok(model?)
}

/// Worst |ours - reference| / max(1, |reference|) over the loss positions.
fn masked_err(got: &[f32], want: &[f64], mask: &[f32]) -> f64 {
    got.iter()
        .zip(want)
        .zip(mask)
        .filter(|(_, &m)| m > 0.0)
        .map(|((&g, &w), _)| {
            let e = (g as f64 - w).abs() / w.abs().max(1.0);
            if e.is_finite() {
                e
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// Three steps of the tiny model on one batch in `compute`, each step's log p (training and
/// diagnostic paths) and loss against the f64 forward of the weights it started from.
fn check(dev: &Device, tie: bool, compute: Compute) -> Result<Value> {
    let cfg = check_config(tie)?;
    let model = check_model(dev, &cfg)?;
    model.set_compute(compute);
    let (b, t) = (2, 12);
    let mb = random_batch(cfg.vocab_size, b, t, 5);
    // A large learning rate, so that three steps move the loss of 1 - p at p ~ 1/V.
    let mut tr = Trainer::new(&model, 1e-2);
    let objective = Objective::FAlpha(1.0);
    let tol = match compute.precision {
        Precision::F32 => 1e-4,
        Precision::F16 => 1e-2,
    };
    let (mut err, mut diag_err, mut loss_err) = (0.0f64, 0.0f64, 0.0f64);
    let mut losses = Vec::new();
    for _ in 0..3 {
        let want = decoder_ref::target_log_probs(
            &cfg,
            &host_weights(&model)?,
            &mb.ids,
            &mb.targets,
            mb.batch,
            mb.seq_len,
        );
        diag_err = diag_err.max(masked_err(&diagnose_log_p(&model, &mb)?, &want, &mb.mask));
        let out = tr.step(&mb, &objective)?;
        err = err.max(masked_err(&out.log_p, &want, &mb.mask));
        let kept: Vec<f64> = want
            .iter()
            .zip(&mb.mask)
            .filter(|(_, &m)| m > 0.0)
            .map(|(lp, _)| 1.0 - lp.exp())
            .collect();
        let want_loss = kept.iter().sum::<f64>() / kept.len() as f64;
        loss_err = loss_err.max((out.loss - want_loss).abs());
        losses.push(out.loss);
    }
    let falls = losses[2] < losses[0];
    let ok = err <= tol && diag_err <= tol && loss_err <= tol && falls;
    Ok(json!({
        "name": format!("check_{}", tag(compute)),
        "model": "tiny-check", "precision": precision_name(compute.precision),
        "recompute": compute.recompute, "batch": b, "seq": t, "padded_seq": mb.seq_len, "vocab": cfg.vocab_size,
        "tied": tie, "log_p_max_err": err, "diagnose_log_p_max_err": diag_err,
        "loss_max_err": loss_err, "tol": tol, "losses": losses, "loss_falls": falls, "ok": ok,
    }))
}

// ---------------------------------------------------------------- figures

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::F16 => "f16",
    }
}

/// PyTorch's counterpart of our precision: f16 products against bf16 autocast.
fn torch_precision(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::F16 => "bf16",
    }
}

fn tag(c: Compute) -> String {
    format!(
        "{}{}{}",
        precision_name(c.precision),
        if c.recompute { "_recompute" } else { "" },
        if c.attention == AttentionPath::Flash && c.precision == Precision::F16 {
            "_flash"
        } else {
            ""
        }
    )
}

/// A training figure's tag: the compute's, `_packed` with packed rows (always on the flash
/// kernels, so not tagged `_flash` too), and `_offload` with the moments in host memory.
fn train_tag(c: Compute, offload: bool, packed: bool) -> String {
    let c = if packed {
        Compute {
            attention: AttentionPath::Auto,
            ..c
        }
    } else {
        c
    };
    format!(
        "{}{}{}",
        tag(c),
        if packed { "_packed" } else { "" },
        if offload { "_offload" } else { "" }
    )
}

/// A way of computing as a set key: (f16, recompute, flash attention in f16).
fn key(c: Compute) -> (bool, bool, bool) {
    let f16 = c.precision == Precision::F16;
    (f16, c.recompute, f16 && c.attention == AttentionPath::Flash)
}

fn unkey((f16, recompute, flash): (bool, bool, bool)) -> Compute {
    Compute {
        precision: if f16 { Precision::F16 } else { Precision::F32 },
        recompute,
        attention: if flash {
            AttentionPath::Flash
        } else {
            AttentionPath::Auto
        },
    }
}

fn diagnose_compute(precision: Precision) -> Compute {
    Compute {
        precision,
        ..Default::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Item {
    /// A training step; AdamW's moments in host memory (`--offload-optimizer`) or not; the
    /// batch's sequences packed into one row (`--packing`) or a padded row each.
    Train(Compute, bool, bool),
    Diagnose(Precision),
    Objective(Precision),
}

fn parse_item(s: &str) -> Result<Item> {
    let prec = |p: &str| match p {
        "f32" => Ok(Precision::F32),
        "f16" => Ok(Precision::F16),
        other => Err(anyhow!("--plan: precision {other:?} (f32 or f16)")),
    };
    let (s, offload) = match s.strip_suffix("-offload") {
        Some(rest) if rest.starts_with("train-") => (rest, true),
        _ => (s, false),
    };
    let parts: Vec<&str> = s.split('-').collect();
    Ok(match parts.as_slice() {
        ["train", p] => Item::Train(
            Compute {
                precision: prec(p)?,
                recompute: false,
                ..Default::default()
            },
            offload,
            false,
        ),
        ["train", p, "recompute"] => Item::Train(
            Compute {
                precision: prec(p)?,
                recompute: true,
                ..Default::default()
            },
            offload,
            false,
        ),
        ["train", "f16", "flash"] => Item::Train(
            Compute {
                precision: Precision::F16,
                attention: AttentionPath::Flash,
                ..Default::default()
            },
            offload,
            false,
        ),
        // Packed rows attend on the flash kernels, whichever the compute would pick.
        ["train", p, "packed"] => Item::Train(
            Compute {
                precision: prec(p)?,
                attention: AttentionPath::Flash,
                ..Default::default()
            },
            offload,
            true,
        ),
        ["diagnose", p] => Item::Diagnose(prec(p)?),
        ["objective"] => Item::Objective(Precision::F32),
        ["objective", p] => Item::Objective(prec(p)?),
        _ => bail!(
            "--plan item {s:?}: expected train-f16[-recompute], train-f16-flash, \
             train-f32[-recompute], train-f16-packed, train-f32-packed (each optionally \
             -offload), diagnose-f16, diagnose-f32, objective or objective-f16"
        ),
    })
}

struct Opts {
    model: String,
    batch: usize,
    seq: usize,
    warmup: usize,
    steps: usize,
    budget_s: f64,
    lr: f32,
}

/// Per-step host times (ms) of the timed steps, what they did to the device, and the
/// outputs of every step (warm-up first).
struct Timed<T> {
    ms: Vec<f64>,
    warmup: usize,
    counters: Counters,
    new_buffers: u64,
    outs: Vec<T>,
}

impl<T> Timed<T> {
    fn mean_ms(&self) -> f64 {
        self.ms.iter().sum::<f64>() / self.ms.len() as f64
    }
    fn per_step(&self, x: u64) -> f64 {
        x as f64 / self.ms.len() as f64
    }
}

/// Run `warmup` then `steps` calls of `f`, each followed by `Device::sync`; warm-up stops
/// early once it took a third of `budget_s`, the timed steps once the whole took `budget_s`
/// (at least one timed step is always run).
fn time_steps<T>(dev: &Device, o: &Opts, mut f: impl FnMut() -> Result<T>) -> Result<Timed<T>> {
    let start = Instant::now();
    let mut outs = Vec::new();
    let mut warmup = 0;
    while warmup < o.warmup {
        outs.push(f()?);
        dev.sync()?;
        warmup += 1;
        if start.elapsed().as_secs_f64() > o.budget_s / 3.0 {
            break;
        }
    }
    let (c0, b0) = (dev.counters(), dev.pool_stats().buffers_created);
    let mut ms = Vec::new();
    while ms.is_empty() || (ms.len() < o.steps && start.elapsed().as_secs_f64() < o.budget_s) {
        let t = Instant::now();
        outs.push(f()?);
        dev.sync()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Timed {
        ms,
        warmup,
        counters: dev.counters() - c0,
        new_buffers: dev.pool_stats().buffers_created - b0,
        outs,
    })
}

fn gib(bytes: u64) -> f64 {
    round(bytes as f64 / (1u64 << 30) as f64, 3)
}

/// The fields every timed figure has.
fn timing_fields<T>(row: &mut Map<String, Value>, dev: &Device, t: &Timed<T>, tokens: usize) {
    let sorted = {
        let mut v = t.ms.clone();
        v.sort_by(f64::total_cmp);
        v
    };
    let stats = dev.pool_stats();
    for (k, v) in [
        ("warmup", json!(t.warmup)),
        ("steps", json!(t.ms.len())),
        ("ms_per_step", json!(round(t.mean_ms(), 2))),
        ("ms_min", json!(round(sorted[0], 2))),
        ("ms_max", json!(round(sorted[sorted.len() - 1], 2))),
        (
            "tokens_per_s",
            json!(round(tokens as f64 / t.mean_ms() * 1e3, 1)),
        ),
        ("peak_gib", json!(gib(stats.peak))),
        ("pool_gib", json!(gib(stats.allocated))),
        (
            "dispatches_per_step",
            json!(round(t.per_step(t.counters.dispatches), 1)),
        ),
        (
            "submits_per_step",
            json!(round(t.per_step(t.counters.submits), 1)),
        ),
        (
            "new_buffers_per_step",
            json!(round(t.per_step(t.new_buffers), 2)),
        ),
    ] {
        row.insert(k.into(), v);
    }
}

fn base_row(name: String, reference: String, kind: &str, o: &Opts) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("name".into(), json!(name));
    row.insert("ref".into(), json!(reference));
    row.insert("kind".into(), json!(kind));
    row.insert("model".into(), json!(o.model));
    row.insert("batch".into(), json!(o.batch));
    row.insert("seq".into(), json!(o.seq));
    row
}

fn train_figure(
    model: &Model,
    o: &Opts,
    compute: Compute,
    (offload, packed): (bool, bool),
    ok_check: bool,
) -> Result<Value> {
    let dev = model.device();
    model.set_compute(compute);
    let mb = random_batch_as(model.config.vocab_size, o.batch, o.seq, 1, packed);
    // Packed rows on this GPU against the padded rows of the same sequences, before any
    // update: every loss token's log p (no sequence may see another's).
    let packed_err = if packed {
        let padded = random_batch(model.config.vocab_size, o.batch, o.seq, 1);
        let (a, b) = (diagnose_log_p(model, &padded)?, diagnose_log_p(model, &mb)?);
        let mut worst = 0f64;
        for (&(pa, n), &(pb, _)) in padded.spans.iter().zip(&mb.spans) {
            for t in (0..n).filter(|&t| padded.mask[pa + t] > 0.0) {
                worst = worst.max((a[pa + t] as f64 - b[pb + t] as f64).abs());
            }
        }
        Some(worst)
    } else {
        None
    };
    let mut tr = Trainer::new(model, o.lr);
    tr.adam.set_offload(offload)?;
    let objective = Objective::FAlpha(1.0);
    dev.reset_peak();
    let t = time_steps(dev, o, || tr.step(&mb, &objective))?;
    let name = format!("train_{}_{}", o.model, train_tag(compute, offload, packed));
    let reference = format!("train_{}_{}", o.model, torch_precision(compute.precision));
    let mut row = base_row(name.clone(), reference, "train", o);
    row.insert("precision".into(), json!(precision_name(compute.precision)));
    row.insert("recompute".into(), json!(compute.recompute));
    row.insert("offload".into(), json!(offload));
    row.insert("packed".into(), json!(packed));
    timing_fields(&mut row, dev, &t, o.batch * o.seq);
    if let Some(p) = profiled(dev, || tr.step(&mb, &objective))? {
        add_profile(&mut row, &name, &p, t.mean_ms());
    }
    let first = &t.outs[0];
    let last = &t.outs[t.outs.len() - 1];
    // At random init p ~ 1/V for every token, so 1 - p is 1 to within 1e-3.
    let v = model.config.vocab_size as f64;
    let sane = (first.loss - (1.0 - 1.0 / v)).abs() < 1e-3
        && t.outs
            .iter()
            .all(|s| s.loss.is_finite() && s.grad_norm.is_finite());
    // log p of random tokens is about -ln V: an error under 1e-2 is f16's rounding.
    let packed_ok = packed_err.is_none_or(|e| e < 1e-2);
    if let Some(e) = packed_err {
        row.insert("packed_log_p_err".into(), json!(e));
    }
    let overflows = t.outs.iter().filter(|s| s.overflow).count();
    for (k, val) in [
        ("loss_first", json!(first.loss)),
        ("loss_last", json!(last.loss)),
        ("mean_p", json!(last.mean_p)),
        ("grad_norm", json!(last.grad_norm)),
        ("loss_scale", json!(last.loss_scale)),
        ("overflow_steps", json!(overflows)),
        ("check_ok", json!(ok_check)),
        ("sane", json!(sane)),
        ("ok", json!(ok_check && sane && packed_ok)),
    ] {
        row.insert(k.into(), val);
    }
    Ok(Value::Object(row))
}

fn diagnose_figure(model: &Model, o: &Opts, precision: Precision, ok_check: bool) -> Result<Value> {
    let dev = model.device();
    model.set_compute(diagnose_compute(precision));
    let mb = random_batch(model.config.vocab_size, o.batch, o.seq, 2);
    dev.reset_peak();
    let t = time_steps(dev, o, || diagnose_log_p(model, &mb))?;
    let name = format!("diagnose_{}_{}", o.model, precision_name(precision));
    let reference = format!("diagnose_{}_{}", o.model, torch_precision(precision));
    let mut row = base_row(name.clone(), reference, "diagnose", o);
    row.insert("precision".into(), json!(precision_name(precision)));
    timing_fields(&mut row, dev, &t, o.batch * o.seq);
    if let Some(p) = profiled(dev, || diagnose_log_p(model, &mb))? {
        add_profile(&mut row, &name, &p, t.mean_ms());
    }
    let log_p = &t.outs[t.outs.len() - 1];
    let kept: Vec<f64> = log_p
        .iter()
        .zip(&mb.mask)
        .filter(|(_, &m)| m > 0.0)
        .map(|(&lp, _)| -(lp as f64))
        .collect();
    let nll = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
    // Random init: the NLL of random tokens is about ln V.
    let ln_v = (model.config.vocab_size as f64).ln();
    let sane = nll.is_finite() && (nll - ln_v).abs() < 0.1 * ln_v;
    row.insert("nll".into(), json!(nll));
    row.insert("ln_vocab".into(), json!(ln_v));
    row.insert("check_ok".into(), json!(ok_check));
    row.insert("sane".into(), json!(sane));
    row.insert("ok".into(), json!(ok_check && sane));
    Ok(Value::Object(row))
}

/// The fused LM head + f_alpha objective alone, forward + backward over B x T tokens of random
/// hidden states against the model's LM head (dW included), as torch's cross-entropy on
/// materialised logits is timed in torch_train_ref.py; in f16, with x and the LM head cast to
/// f16 each step as a training step casts them (`Model::lm_head_operands`).
fn objective_figure(model: &Model, o: &Opts, precision: Precision) -> Result<Value> {
    let dev = model.device();
    model.set_compute(diagnose_compute(precision));
    let (n, d, v) = (
        o.batch * o.seq,
        model.config.hidden_size,
        model.config.vocab_size,
    );
    let x = Tensor::from_slice(dev, &cpu::randn(n * d, 7), &[n, d])?.var();
    let mut rng = SplitMix(3);
    let targets: Vec<u32> = (0..n).map(|_| rng.below(v as u64) as u32).collect();
    let targets = Tensor::from_u32_slice(dev, &targets, &[n])?;
    let mask = Tensor::from_slice(dev, &vec![1.0f32; n], &[n])?;
    dev.sync()?;
    let base = dev.pool_stats().in_use;
    dev.reset_peak();
    let mut step = || {
        let (xo, chunks) = model.lm_head_operands(&x)?;
        let out = lm_head_objective(&xo, &chunks, &targets, &mask, &Objective::FAlpha(1.0), None)?;
        drop(out.loss.backward()?);
        Ok(out.loss.to_scalar()? as f64)
    };
    let t = time_steps(dev, o, &mut step)?;
    let shape = format!("{n}x{d}x{v}");
    let name = format!(
        "objective_falpha1_fwd_bwd_{}_{shape}",
        precision_name(precision)
    );
    let mut row = base_row(
        name.clone(),
        format!(
            "objective_ce_fwd_bwd_{}_{shape}",
            torch_precision(precision)
        ),
        "objective",
        o,
    );
    row.insert("precision".into(), json!(precision_name(precision)));
    timing_fields(&mut row, dev, &t, n);
    if let Some(p) = profiled(dev, step)? {
        add_profile(&mut row, &name, &p, t.mean_ms());
    }
    let ms = t.mean_ms();
    // Forward 2NdV, backward 4NdV (the usual count; ours recomputes the logits once more).
    row.insert("ms".into(), json!(round(ms, 3)));
    row.insert(
        "tflops".into(),
        json!(round(6.0 * (n * d * v) as f64 / ms / 1e9, 3)),
    );
    row.insert(
        "extra_peak_gib".into(),
        json!(gib(dev.pool_stats().peak - base)),
    );
    let loss = t.outs[t.outs.len() - 1];
    let sane = (loss - (1.0 - 1.0 / v as f64)).abs() < 1e-2;
    row.insert("loss".into(), json!(loss));
    row.insert("sane".into(), json!(sane));
    row.insert("ok".into(), json!(sane));
    Ok(Value::Object(row))
}

// ---------------------------------------------------------------- main

struct Args {
    opts: Opts,
    precision: String,
    recompute: bool,
    plan: Option<String>,
    smoke: bool,
    no_check: bool,
}

const USAGE: &str =
    "trainbench [--model qwen2.5-1.5b|qwen2.5-0.5b|qwen2.5-7b|tiny] [--batch 4] [--seq 1024] \
[--warmup 3] [--steps 5] [--precision f32|f16|auto] [--recompute] [--plan ITEM,..] \
[--budget-s 60] [--lr 5e-5] [--smoke] [--no-check]\n  plan items: train-f16, train-f16-recompute, \
train-f16-flash, \
train-f32, train-f32-recompute, train-f16-packed, train-f32-packed (each train item optionally \
-offload), diagnose-f16, \
diagnose-f32, objective, objective-f16\n  \
--smoke: tiny model, \
2 x 32 tokens, 1 warm-up + 2 steps, every item (for a CPU adapter)";

fn parse_args() -> Result<Args> {
    let mut a = Args {
        opts: Opts {
            model: "qwen2.5-1.5b".into(),
            batch: 4,
            seq: 1024,
            warmup: 3,
            steps: 5,
            budget_s: 60.0,
            lr: 5e-5,
        },
        precision: "auto".into(),
        recompute: false,
        plan: None,
        smoke: false,
        no_check: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    let mut set = Vec::new();
    while let Some(k) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("{k} needs a value"))
        };
        let num = |s: String| -> Result<f64> {
            s.parse()
                .map_err(|_| anyhow!("{k} {s:?}: expected a number"))
        };
        match k.as_str() {
            "--model" => a.opts.model = val()?,
            "--batch" => a.opts.batch = num(val()?)? as usize,
            "--seq" => a.opts.seq = num(val()?)? as usize,
            "--warmup" => a.opts.warmup = num(val()?)? as usize,
            "--steps" => a.opts.steps = num(val()?)? as usize,
            "--budget-s" => a.opts.budget_s = num(val()?)?,
            "--lr" => a.opts.lr = num(val()?)? as f32,
            "--precision" => a.precision = val()?,
            "--recompute" => a.recompute = true,
            "--plan" => a.plan = Some(val()?),
            "--smoke" => a.smoke = true,
            "--no-check" => a.no_check = true,
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
        set.push(k.clone());
    }
    if a.smoke {
        // Tiny sizes unless given explicitly.
        let given = |f: &str| set.iter().any(|s| s == f);
        if !given("--model") {
            a.opts.model = "tiny".into();
        }
        if !given("--batch") {
            a.opts.batch = 2;
        }
        if !given("--seq") {
            a.opts.seq = 32;
        }
        if !given("--warmup") {
            a.opts.warmup = 1;
        }
        if !given("--steps") {
            a.opts.steps = 2;
        }
        if a.plan.is_none() {
            a.plan = Some(
                "train-f16,diagnose-f16,train-f16-recompute,train-f16-recompute-offload,\
                 train-f16-flash,train-f16-packed,train-f32,diagnose-f32,objective,objective-f16"
                    .into(),
            );
        }
    }
    if a.opts.batch == 0 || a.opts.seq < 2 || a.opts.steps == 0 {
        bail!("--batch must be positive, --seq at least 2, --steps at least 1");
    }
    Ok(a)
}

fn plan(a: &Args, dev: &Device) -> Result<Vec<Item>> {
    let precision = match a.precision.as_str() {
        "f32" => Precision::F32,
        "f16" => Precision::F16,
        // As `trainer train --precision auto`.
        "auto" if dev.prefers_f16() => Precision::F16,
        "auto" => Precision::F32,
        other => bail!("--precision {other:?}: expected f32, f16 or auto"),
    };
    let default = format!(
        "train-{}{},diagnose-{}",
        precision_name(precision),
        if a.recompute { "-recompute" } else { "" },
        precision_name(precision)
    );
    a.plan
        .as_deref()
        .unwrap_or(&default)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(parse_item)
        .collect()
}

/// Run `f`, turning an error or a panic into an error row named `name`.
fn guarded(name: &str, f: impl FnOnce() -> Result<Value>) -> Value {
    let errors = benches::gpu_log::errors();
    let row = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(row)) => row,
        Ok(Err(e)) => json!({"name": name, "error": format!("{e:#}")}),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            json!({"name": name, "error": format!("panicked: {msg}")})
        }
    };
    let new_errors = benches::gpu_log::errors() - errors;
    if new_errors > 0 && row.get("error").is_none() {
        let mut row = row;
        row["ok"] = json!(false);
        row["gpu_errors"] = json!(new_errors);
        return row;
    }
    row
}

fn table(rows: &[Value]) {
    eprintln!();
    eprintln!(
        "{:<44} {:>11} {:>10} {:>9} {:>11} {:>5}",
        "figure", "tokens/s", "ms/step", "peak GiB", "dispatches", "ok"
    );
    let num = |v: &Value, k: &str, p: usize| match v.get(k).and_then(Value::as_f64) {
        Some(x) => format!("{x:.p$}"),
        None => "-".into(),
    };
    for r in rows {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            eprintln!("{name:<44} ERROR {e}");
            continue;
        }
        if name == "device" || name == "model" {
            continue;
        }
        let ok = if r.get("ok") == Some(&json!(true)) {
            "yes"
        } else {
            "NO"
        };
        eprintln!(
            "{name:<44} {:>11} {:>10} {:>9} {:>11} {ok:>5}",
            num(r, "tokens_per_s", 0),
            num(r, "ms_per_step", 1),
            num(r, "peak_gib", 2),
            num(r, "dispatches_per_step", 0),
        );
    }
}

fn run(a: &Args) -> Result<Vec<Value>> {
    let dev = Device::new().context("opening the GPU")?;
    let mut rows = vec![json!({
        "name": "device", "adapter": dev.name(), "backend": format!("{:?}", dev.backend()),
        "type": format!("{:?}", dev.device_type()), "features": format!("{:?}", dev.features()),
        "max_binding_bytes": dev.max_binding_bytes(), "shader_checks": dev.shader_checks(),
        "smoke": a.smoke,
    })];
    println!("{}", rows[0]);
    let items = plan(a, &dev)?;
    let cfg = config(&a.opts.model)?;
    eprintln!(
        "trainbench on {} ({:?}): {} at {} x {}, plan {:?}",
        dev.name(),
        dev.backend(),
        a.opts.model,
        a.opts.batch,
        a.opts.seq,
        items
    );
    let emit = |rows: &mut Vec<Value>, row: Value| {
        println!("{row}");
        rows.push(row);
    };
    // The checks first: one per way of computing that the plan uses.
    let mut computes = BTreeSet::new();
    for item in &items {
        match *item {
            // Where the moments live does not change the numbers: one check for both.
            Item::Train(c, _, _) => computes.insert(key(c)),
            Item::Diagnose(p) => computes.insert(key(diagnose_compute(p))),
            Item::Objective(_) => false,
        };
    }
    let mut passed = BTreeSet::new();
    for &k in &computes {
        let compute = unkey(k);
        if a.no_check {
            passed.insert(k);
            continue;
        }
        let t = Instant::now();
        let name = format!("check_{}", tag(compute));
        let mut row = guarded(&name, || check(&dev, cfg.tie_word_embeddings, compute));
        if row.get("ok") == Some(&json!(true)) {
            passed.insert(k);
        }
        row["seconds"] = json!(round(t.elapsed().as_secs_f64(), 2));
        emit(&mut rows, row);
        engine::clear_tape();
        dev.trim_pool();
    }
    let t = Instant::now();
    let model = Model::new(&cfg, &Weights::random(&dev, 0), true)?;
    dev.sync()?;
    let params: usize = model.parameters().iter().map(|(_, p)| p.elem_count()).sum();
    emit(
        &mut rows,
        json!({"name": "model", "model": a.opts.model, "params": params,
            "tied": cfg.tie_word_embeddings, "layers": cfg.num_hidden_layers,
            "hidden": cfg.hidden_size, "vocab": cfg.vocab_size,
            "weights_gib": gib(dev.pool_stats().in_use),
            "coop_matmul": format!("{:?}", dev.coop_matmul()).to_lowercase(),
            "init_s": round(t.elapsed().as_secs_f64(), 2)}),
    );
    let (model, passed, opts) = (&model, &passed, &a.opts);
    for item in items {
        let (name, f): (String, Box<dyn FnOnce() -> Result<Value>>) = match item {
            Item::Train(c, offload, packed) => (
                format!("train_{}_{}", a.opts.model, train_tag(c, offload, packed)),
                Box::new(move || {
                    let ok = passed.contains(&key(c));
                    train_figure(model, opts, c, (offload, packed), ok)
                }),
            ),
            Item::Diagnose(p) => (
                format!("diagnose_{}_{}", a.opts.model, precision_name(p)),
                Box::new(move || {
                    let ok = passed.contains(&key(diagnose_compute(p)));
                    diagnose_figure(model, opts, p, ok)
                }),
            ),
            Item::Objective(p) => (
                format!("objective_{}_{}", a.opts.model, precision_name(p)),
                Box::new(move || objective_figure(model, opts, p)),
            ),
        };
        let t = Instant::now();
        eprintln!("-- {name}");
        let mut row = guarded(&name, f);
        row["seconds"] = json!(round(t.elapsed().as_secs_f64(), 2));
        emit(&mut rows, row);
        engine::clear_tape();
        if let Err(e) = dev.sync() {
            emit(
                &mut rows,
                json!({"name": name, "error": format!("sync after the figure: {e}")}),
            );
        }
        dev.trim_pool();
    }
    Ok(rows)
}

fn main() {
    benches::gpu_log::install();
    let start = Instant::now();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("trainbench: {e:#}");
            std::process::exit(2);
        }
    };
    let rows = match run(&args) {
        Ok(rows) => rows,
        Err(e) => {
            println!(
                "{}",
                json!({"name": "trainbench", "error": format!("{e:#}")})
            );
            eprintln!("trainbench: {e:#}");
            std::process::exit(1);
        }
    };
    table(&rows);
    let failed = rows
        .iter()
        .filter(|r| {
            let info = matches!(r["name"].as_str(), Some("device" | "model"));
            r.get("error").is_some() || (!info && r.get("ok") != Some(&json!(true)))
        })
        .count();
    eprintln!(
        "\n{} row(s), {failed} failed, {:.1} s",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
