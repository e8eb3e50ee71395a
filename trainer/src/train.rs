//! The SFT loop: micro-batches through the decoder and the fused f_alpha objective, gradients
//! accumulated to the global batch, clipped by global norm, AdamW with warmup and cosine decay;
//! one JSONL metrics line per step, a progress line, HF checkpoints every `save_every` steps
//! and at the end (with the optimizer state and the step, so `resume` continues exactly).
//! Steps with a non-finite loss or gradient are skipped (see `guard`); a run that must stop
//! (too many of them, the GPU too small) first saves the last good state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use engine::ops::objective::{lm_head_objective, Objective};
use engine::ops::optim::{AdamW, Moment, ParamState};
use engine::{Gradients, Tensor};
use models::{Model, SaveDtype};
use serde_json::json;

use crate::batch::{computed_tokens, micro_batches, padding_line, shuffled, MicroBatch};
use crate::data::Dataset;
use crate::scaler::LossScaler;
use crate::schedule::{AlphaSchedule, CosineSchedule};

/// Hyper-parameters (defaults from the paper's runs: AdamW betas 0.9/0.95, weight decay 0.01,
/// 10% warmup then cosine, clip 1.0, lr 5e-5, one epoch).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub alpha: AlphaSchedule,
    pub steps: Option<usize>,
    pub epochs: usize,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub min_lr_ratio: f64,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub clip: Option<f32>,
    /// Sequences per optimizer step (the global batch).
    pub batch_size: usize,
    /// Padded tokens per forward pass (micro-batch).
    pub micro_batch_tokens: usize,
    /// At most this many sequences per forward pass too (verl's micro_batch_size_per_gpu).
    pub micro_batch_sequences: Option<usize>,
    /// Micro-batches take each step's sequences longest first (less padding).
    pub group_by_length: bool,
    /// Each micro-batch's sequences packed into one row (no padding between them).
    pub packing: bool,
    pub seed: u64,
    pub output: PathBuf,
    /// Write `output/checkpoint-STEP` every this many steps.
    pub save_every: Option<usize>,
    /// Keep only the newest this many `checkpoint-STEP` folders.
    pub save_total_limit: Option<usize>,
    /// A checkpoint folder to continue from (weights already loaded into the model; the
    /// optimizer state and the step are read here).
    pub resume: Option<PathBuf>,
    /// Fraction of the examples held out (chosen by seed) and evaluated at the end.
    pub eval_fraction: f64,
    /// Held-out examples from a file of their own (instead of a fraction of `ds`).
    pub eval_set: Option<Arc<Dataset>>,
    /// Evaluate the held-out examples every this many steps too.
    pub eval_every: Option<usize>,
    /// Precision of the linear layers and layer recomputation; f16 turns on loss scaling.
    pub compute: models::Compute,
    /// The f16 loss scale to start from.
    pub initial_loss_scale: f32,
    /// Stop after this many steps in a row with a NaN or infinite loss or gradient norm.
    pub max_bad_steps: usize,
    /// Time every GPU kernel of this (1-based) step into OUTPUT/profile.{json,txt}.
    pub profile_step: Option<usize>,
    /// Keep AdamW's moments in host memory (8 bytes a parameter off the GPU).
    pub offload_optimizer: bool,
    /// The chat template the data was rendered with when it is not the model folder's
    /// (`--chat-template`): written into each checkpoint as chat_template.jinja.
    pub chat_template: Option<String>,
}

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "trainer_state.json";

/// Write a checkpoint: the HF folder plus the optimizer moments and the position in the run.
#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    model: &Model,
    adam: &AdamW,
    scaler: &LossScaler,
    dir: &Path,
    tokenizer_dir: Option<&Path>,
    step: usize,
    total: usize,
    opts: &TrainOptions,
) -> anyhow::Result<()> {
    // Moments and step counts under HF tensor names (stacked parameters split, vocabulary
    // chunks joined, as the weights are), so a checkpoint resumes whatever chunking or
    // stacking the next device chooses.
    let mut param_steps = serde_json::Map::new();
    for p in model.parameter_layout() {
        let Some(st) = adam.state(&p.tensor) else {
            continue;
        };
        for h in &p.hf {
            // Chunks of one vocabulary matrix share its name: their steps must agree.
            let prev = param_steps.insert(h.name.clone(), json!(st.step));
            if prev.is_some_and(|v| v != json!(st.step)) {
                anyhow::bail!(
                    "`{}`: its chunks were updated different numbers of times",
                    h.name
                );
            }
        }
    }
    let mut moments = Vec::new();
    for (prefix, pick) in [("m.", 0), ("v.", 1)] {
        let tensors = model.to_hf(|p| {
            let st = adam.state(&p.tensor);
            Ok(st
                .map(|st| if pick == 0 { &st.m } else { &st.v }.to_vec())
                .transpose()?)
        })?;
        moments.extend(
            tensors
                .into_iter()
                .map(|(name, shape, data)| (format!("{prefix}{name}"), shape, data)),
        );
    }
    let state = json!({
        "step": step, "total_steps": total, "seed": opts.seed, "batch_size": opts.batch_size,
        "optimizer_steps": adam.steps(), "param_steps": param_steps,
        "loss_scale": scaler.state().0, "loss_scale_good_steps": scaler.state().1,
    });
    model.save_with(dir, tokenizer_dir, SaveDtype::F32, |tmp| {
        models::save::write_safetensors(&tmp.join(OPTIMIZER_FILE), &moments, SaveDtype::F32)?;
        if let Some(template) = &opts.chat_template {
            // transformers, like our tokenizer, takes this file over tokenizer_config.json's.
            let path = tmp.join("chat_template.jinja");
            std::fs::write(&path, template).map_err(|e| models::Error::Io { path, source: e })?;
        }
        let path = tmp.join(STATE_FILE);
        std::fs::write(&path, state.to_string()).map_err(|e| models::Error::Io { path, source: e })
    })?;
    Ok(())
}

/// Restore the optimizer from a checkpoint written by [`save_checkpoint`]; returns its step.
fn load_checkpoint(
    model: &Model,
    adam: &mut AdamW,
    scaler: &mut LossScaler,
    dir: &Path,
    total: usize,
    opts: &TrainOptions,
) -> anyhow::Result<usize> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (is {} a checkpoint folder written by trainer?)",
            state_path.display(),
            dir.display()
        )
    })?;
    let state: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", state_path.display()))?;
    let field = |k: &str| {
        state[k]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("{}: no `{k}`", state_path.display()))
    };
    let (step, saved_total) = (field("step")? as usize, field("total_steps")? as usize);
    if saved_total != total
        || field("seed")? != opts.seed
        || field("batch_size")? as usize != opts.batch_size
    {
        anyhow::bail!(
            "{}: the run had {saved_total} steps, seed {}, batch size {}; resume with the same --steps/--epochs, --seed and --batch-size (now {total}, {}, {})",
            state_path.display(),
            state["seed"],
            state["batch_size"],
            opts.seed,
            opts.batch_size
        );
    }
    // Optimizer state is kept under HF tensor names, one whole number of steps each; a name
    // the model has no rows of means another model (or an older trainer) wrote it.
    let layout = model.parameter_layout();
    let Some(saved) = state["param_steps"].as_object() else {
        anyhow::bail!("{}: no `param_steps` object", state_path.display());
    };
    if let Some((name, _)) = saved.iter().find(|(_, v)| v.as_u64().is_none()) {
        anyhow::bail!(
            "{}: `param_steps` of `{name}` is not a whole number of steps",
            state_path.display()
        );
    }
    let known = |n: &str| layout.iter().any(|p| p.hf.iter().any(|h| h.name == n));
    if let Some(unknown) = saved.keys().find(|n| !known(n)) {
        let why = if unknown.contains('#')
            || unknown.contains("qkv_proj")
            || unknown.contains("gate_up_proj")
        {
            "written by an earlier trainer, before optimizer state was saved under HF tensor names"
        } else {
            "written for another model?"
        };
        anyhow::bail!(
            "{}: optimizer state for `{unknown}`, a tensor this model does not have ({why}); \
             start a new run from {}/ as --model instead",
            state_path.display(),
            dir.display()
        );
    }
    let moments = models::Weights::from_files(model.device(), &[dir.join(OPTIMIZER_FILE)])?;
    for p in &layout {
        let steps: Vec<Option<u64>> =
            p.hf.iter()
                .map(|h| state["param_steps"][&h.name].as_u64())
                .collect();
        let pstep = match steps[..] {
            [Some(s), ..] if steps.iter().all(|&t| t == Some(s)) => s,
            _ if steps.iter().all(Option::is_none) => continue, // never updated
            _ => anyhow::bail!(
                "{}: the tensors of `{}` ({}) have different or missing optimizer steps",
                state_path.display(),
                p.name,
                p.hf.iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let m = model.param_from_hf(p, &moments, "m.")?;
        let v = model.param_from_hf(p, &moments, "v.")?;
        adam.set_state(
            &p.tensor,
            ParamState {
                m: Moment::Device(m),
                v: Moment::Device(v),
                step: pstep,
            },
        )?;
    }
    adam.set_steps(field("optimizer_steps")?);
    if let (Some(scale), Some(good)) = (
        state["loss_scale"].as_f64(),
        state["loss_scale_good_steps"].as_u64(),
    ) {
        scaler.restore(scale as f32, good as u32);
    }
    Ok(step)
}

/// One optimizer step's numbers, as written to metrics.jsonl.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    pub step: usize,
    pub loss: f64,
    pub mean_p: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub alpha: f32,
    pub tokens: usize,
    pub tokens_per_s: f64,
}

/// The micro-batches of one step's examples `batch` (indices into `ds`).
fn step_groups(ds: &Dataset, batch: &[usize], opts: &TrainOptions) -> Vec<Vec<usize>> {
    let mut order = batch.to_vec();
    if opts.group_by_length {
        order.sort_by_key(|&i| std::cmp::Reverse(ds.examples[i].ids.len()));
    }
    micro_batches(
        &ds.examples,
        &order,
        opts.micro_batch_sequences.unwrap_or(usize::MAX),
        opts.micro_batch_tokens,
        opts.packing,
    )
}

fn objective_for(alpha: f32) -> Objective {
    if alpha == 0.0 {
        Objective::Nll
    } else {
        Objective::FAlpha(alpha)
    }
}

/// The optimizer steps of the run: the examples of each epoch, shuffled by seed, cut into
/// global batches of `batch_size`; `steps` (if set) overrides the epochs.
pub fn plan_steps(n: usize, opts: &TrainOptions) -> Vec<Vec<usize>> {
    let per_epoch = n.div_ceil(opts.batch_size.max(1)).max(1);
    let total = opts.steps.unwrap_or(per_epoch * opts.epochs.max(1));
    let mut steps = Vec::with_capacity(total);
    let mut epoch = 0u64;
    while steps.len() < total {
        let order = shuffled(n, opts.seed.wrapping_add(epoch));
        for chunk in order.chunks(opts.batch_size.max(1)) {
            if steps.len() == total {
                break;
            }
            steps.push(chunk.to_vec());
        }
        epoch += 1;
    }
    steps
}

/// How far a run got: the step it started from and the last step whose update is in the
/// model and optimizer.
#[derive(Debug, Default)]
struct Progress {
    start: usize,
    done: usize,
    total: usize,
}

/// Train `model` on `ds`; returns the metrics of every step. `on_step` sees each step's
/// metrics as they come (progress display). A run stopped by too many non-finite steps or
/// by the GPU (out of memory, a tensor over its limits) first writes the state after its last
/// good step to `output/checkpoint-STEP` (unless that checkpoint exists), then returns the
/// error, which says where that state is.
pub fn train(
    model: &Model,
    ds: &Dataset,
    pad_id: u32,
    opts: &TrainOptions,
    tokenizer_dir: Option<&Path>,
    on_step: impl FnMut(&StepMetrics, usize),
) -> anyhow::Result<Vec<StepMetrics>> {
    for line in models::save::recover_interrupted(&opts.output)? {
        eprintln!("note: {line}");
    }
    let mut adam = AdamW::new(opts.lr as f32);
    adam.beta1 = opts.beta1;
    adam.beta2 = opts.beta2;
    adam.eps = opts.eps;
    adam.weight_decay = opts.weight_decay;
    adam.set_offload(opts.offload_optimizer)?;
    let mut scaler = LossScaler::new(opts.compute.precision == models::Precision::F16)
        .with_initial(opts.initial_loss_scale);
    let mut progress = Progress::default();
    let result = run_steps(
        model,
        ds,
        pad_id,
        opts,
        tokenizer_dir,
        on_step,
        &mut adam,
        &mut scaler,
        &mut progress,
    );
    let Err(e) = result else { return result };
    let engine_error = crate::guard::engine_error(&e);
    let bad_steps = e.downcast_ref::<crate::guard::TooManyBadSteps>().is_some();
    let interrupted = e.downcast_ref::<crate::guard::Interrupted>().is_some();
    let resource = engine_error.is_some_and(engine::Error::is_resource);
    if !(bad_steps || interrupted || resource) || progress.total == 0 {
        return Err(e);
    }
    let Progress { start, done, total } = progress;
    let dir = opts.output.join(format!("checkpoint-{done}"));
    // A stop on request says how to go on from the state it leaves.
    let resumable = |text: String| match interrupted {
        true => format!("{text}; continue with --resume {}", dir.display()),
        false => text,
    };
    let saved = match &opts.resume {
        _ if done == 0 => "no step succeeded; nothing to save".to_string(),
        Some(from) if done == start => {
            format!("no step succeeded since {}", from.display())
        }
        _ if dir.exists() => resumable(format!(
            "the state after step {done} is in {}",
            dir.display()
        )),
        _ if matches!(engine_error, Some(engine::Error::DeviceLost { .. })) => {
            "the GPU's memory is gone; the checkpoints already written are whole".to_string()
        }
        _ => match save_checkpoint(
            model,
            &adam,
            &scaler,
            &dir,
            tokenizer_dir,
            done,
            total,
            opts,
        ) {
            Ok(()) => resumable(format!(
                "saved the state after step {done} to {}",
                dir.display()
            )),
            Err(save) => format!("could not save the state after step {done}: {save:#}"),
        },
    };
    Err(e.context(format!("stopped ({saved})")))
}

#[allow(clippy::too_many_arguments)]
fn run_steps(
    model: &Model,
    ds: &Dataset,
    pad_id: u32,
    opts: &TrainOptions,
    tokenizer_dir: Option<&Path>,
    mut on_step: impl FnMut(&StepMetrics, usize),
    adam: &mut AdamW,
    scaler: &mut LossScaler,
    progress: &mut Progress,
) -> anyhow::Result<Vec<StepMetrics>> {
    let dev = model.device().clone();
    let params: Vec<Tensor> = model.parameters().into_iter().map(|(_, t)| t).collect();
    let (train_idx, eval_idx) =
        crate::batch::split(ds.examples.len(), opts.eval_fraction, opts.seed);
    let held_out = (!eval_idx.is_empty()).then(|| Dataset {
        paths: ds.paths.clone(),
        examples: eval_idx.iter().map(|&i| ds.examples[i].clone()).collect(),
        truncated: 0,
        dropped: 0,
    });
    let held = opts.eval_set.as_deref().or(held_out.as_ref());
    // Each step's micro-batches (indices into `ds`), planned once for the run.
    let steps: Vec<Vec<Vec<usize>>> = plan_steps(train_idx.len(), opts)
        .into_iter()
        .map(|b| {
            let batch: Vec<usize> = b.into_iter().map(|i| train_idx[i]).collect();
            step_groups(ds, &batch, opts)
        })
        .collect();
    let total = steps.len();
    let schedule = CosineSchedule::new(opts.lr, total, opts.warmup_ratio, opts.min_lr_ratio);
    std::fs::create_dir_all(&opts.output)?;
    let metrics_path = opts.output.join("metrics.jsonl");
    let mut history = Vec::with_capacity(total);
    let hidden_size = model.config.hidden_size;
    model.set_compute(opts.compute);
    let start = match &opts.resume {
        Some(dir) => load_checkpoint(model, adam, scaler, dir, total, opts)?,
        None => 0,
    };
    let mut metrics_file =
        crate::guard::open_metrics(&metrics_path, opts.resume.as_ref().map(|_| start))?;
    *progress = Progress {
        start,
        done: start,
        total,
    };
    let mut bad = crate::guard::BadSteps::new(opts.max_bad_steps);
    let (mut real, mut computed) = (0, 0);
    for group in steps[start.min(total)..].iter().flatten() {
        real += group
            .iter()
            .map(|&i| ds.examples[i].ids.len())
            .sum::<usize>();
        computed += computed_tokens(&ds.examples, group, opts.packing);
    }
    eprintln!("{}", padding_line(real, computed, opts.packing));
    if let Some(at) = opts.profile_step {
        crate::profile::check_step(&dev, at, start, total)?;
    }
    for (step, groups) in steps.iter().enumerate().skip(start) {
        // Asked to stop (Ctrl-C, SIGTERM): `train` saves the state after the last good step.
        if crate::guard::stop_asked() {
            return Err(crate::guard::Interrupted { step, total }.into());
        }
        // The profiled step ends here, whichever way it went (a skipped step included).
        if let Some(line) = crate::profile::finish(&dev, step, &opts.output)? {
            eprintln!("{line}");
        }
        if opts.profile_step == Some(step + 1) {
            dev.profile_start()?;
        }
        let started = Instant::now();
        let alpha = opts.alpha.at(step, total);
        let objective = objective_for(alpha);
        let mut grads = Gradients::default();
        let (mut loss_sum, mut p_sum, mut p_count, mut tokens) = (0.0f64, 0.0f64, 0usize, 0usize);
        for group in groups {
            let refs: Vec<_> = group.iter().map(|&i| &ds.examples[i]).collect();
            let mb = MicroBatch::build(&refs, pad_id, opts.packing);
            let n = mb.batch * mb.seq_len;
            let hidden = mb.hidden_states(model)?.reshape(&[n, hidden_size])?;
            let targets = Tensor::from_u32_slice(&dev, &mb.targets, &[n])?;
            let mask = Tensor::from_slice(&dev, &mb.mask, &[n])?;
            let (x, chunks) = model.lm_head_operands(&hidden)?;
            let out = lm_head_objective(&x, &chunks, &targets, &mask, &objective, None)?;
            // Token mean within each micro-batch, averaged over micro-batches (verl's reduction),
            // times the loss scale (1 in f32).
            out.loss
                .scale(scaler.scale() / groups.len() as f32)?
                .backward_into(&mut grads)?;
            loss_sum += out.loss.to_scalar()? as f64 / groups.len() as f64;
            let log_p = out.log_p.to_vec()?;
            for (lp, &m) in log_p.iter().zip(&mb.mask) {
                if m > 0.0 {
                    p_sum += (*lp as f64).exp();
                    p_count += 1;
                }
            }
            // Real tokens, not the padding to the longest (and to a multiple of 16).
            tokens += refs.iter().map(|e| e.ids.len()).sum::<usize>();
        }
        let lr = schedule.lr(step);
        adam.lr = lr as f32;
        let loss_scale = scaler.scale();
        // The optimizer unscales inside its norm and update kernels (1 in f32).
        adam.inv_loss_scale = 1.0 / loss_scale;
        // A NaN or infinite loss or gradient norm: the update is skipped, nothing changes.
        // The f16 weight copies go stale with this update: free them for its duration.
        model.release_casts();
        let grad_norm = match crate::guard::update(adam, &params, &grads, opts.clip, loss_sum)? {
            crate::guard::Update::Applied { grad_norm } => {
                scaler.update(true);
                grad_norm
            }
            crate::guard::Update::Skipped { .. }
                if scaler.enabled() && loss_sum.is_finite() && loss_scale > 1.0 =>
            {
                // The f16 gradients overflowed at this loss scale: halve it and go on, as
                // GradScaler does (not a bad step).
                scaler.update(false);
                let line = json!({"step": step + 1, "skipped": true, "overflow": true,
                    "loss": loss_sum, "loss_scale": loss_scale});
                writeln!(metrics_file, "{line}")?;
                continue;
            }
            crate::guard::Update::Skipped { grad_norm } => {
                bad.skipped(step + 1, total, loss_sum, grad_norm, &mut metrics_file)?;
                continue;
            }
        };
        bad.good();
        progress.done = step + 1;
        let secs = started.elapsed().as_secs_f64();
        let profiled = crate::profile::finish(&dev, step + 1, &opts.output)?;
        if let Some(line) = &profiled {
            eprintln!("{line}");
        }
        let m = StepMetrics {
            step: step + 1,
            loss: loss_sum,
            mean_p: p_sum / p_count.max(1) as f64,
            grad_norm,
            lr,
            alpha,
            tokens,
            tokens_per_s: tokens as f64 / secs.max(1e-9),
        };
        let mut line = json!({
            "step": m.step, "loss": m.loss, "mean_p": m.mean_p, "grad_norm": m.grad_norm, "lr": m.lr,
            "alpha": m.alpha, "tokens": m.tokens, "tokens_per_s": m.tokens_per_s,
            "gpu_peak_mib": dev.pool_stats().peak as f64 / (1u64 << 20) as f64,
        });
        if scaler.enabled() {
            line["loss_scale"] = loss_scale.into();
        }
        if profiled.is_some() {
            // Its time includes reading the timestamps back at every submission.
            line["profiled"] = true.into();
        }
        writeln!(metrics_file, "{line}")?;
        on_step(&m, total);
        history.push(m);
        let due = opts.eval_every.is_some_and(|k| (step + 1) % k == 0);
        if let (Some(held), true) = (held, due && step + 1 < total) {
            let line = evaluate(model, held, opts, pad_id, step + 1)?;
            writeln!(metrics_file, "{line}")?;
        }
        if opts
            .save_every
            .is_some_and(|k| (step + 1) % k == 0 && step + 1 < total)
        {
            let dir = opts.output.join(format!("checkpoint-{}", step + 1));
            save_checkpoint(
                model,
                adam,
                scaler,
                &dir,
                tokenizer_dir,
                step + 1,
                total,
                opts,
            )?;
            if let Some(keep) = opts.save_total_limit {
                prune_checkpoints(&opts.output, keep)?;
            }
        }
    }
    if let Some(line) = crate::profile::finish(&dev, total, &opts.output)? {
        eprintln!("{line}");
    }
    save_checkpoint(
        model,
        adam,
        scaler,
        &opts.output.join("final"),
        tokenizer_dir,
        total,
        total,
        opts,
    )?;
    std::fs::write(
        opts.output.join("training.svg"),
        crate::plot::training_svg(&history),
    )?;
    if let Some(held) = held {
        let line = evaluate(model, held, opts, pad_id, total)?;
        writeln!(metrics_file, "{line}")?;
    }
    Ok(history)
}

/// Delete all but the newest `keep` `checkpoint-STEP` folders of `output` (by step).
fn prune_checkpoints(output: &Path, keep: usize) -> anyhow::Result<()> {
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(output)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let step = name
            .strip_prefix("checkpoint-")
            .and_then(|s| s.parse().ok());
        if let (Some(step), true) = (step, entry.file_type()?.is_dir()) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    for (_, dir) in found.iter().rev().skip(keep) {
        std::fs::remove_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("removing the old checkpoint {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// The metrics line of the held-out examples after `step`: NLL and mean p of their loss
/// tokens under the model as it is (the diagnostic's forward, no tape).
fn evaluate(
    model: &Model,
    held: &Dataset,
    opts: &TrainOptions,
    pad_id: u32,
    step: usize,
) -> anyhow::Result<serde_json::Value> {
    let probs: Vec<f64> =
        crate::diagnose::token_probs(model, held, opts.micro_batch_tokens, opts.packing, pad_id)?
            .into_iter()
            .flatten()
            .collect();
    let (mean_p, nll) = crate::diagnose::mean_p_and_nll(&probs);
    eprintln!(
        "eval after step {step}: {} examples, nll {nll:.4}, mean p {mean_p:.4}",
        held.examples.len()
    );
    Ok(json!({
        "step": step,
        "eval_examples": held.examples.len(),
        "eval_tokens": probs.len(),
        "eval_nll": nll,
        "eval_mean_p": mean_p,
    }))
}

/// What the run's state takes on the GPU before any activation, in GiB: f32 weights and
/// gradients (8 bytes a parameter), AdamW's two moments (8; offloaded, only the two buffers
/// the largest parameter's moments pass through) and, in f16, the weights' f16 copies (2; with
/// recomputation only the LM head's are kept). One line for the log, so that a model's fit
/// can be judged before the first step.
pub fn state_summary(model: &Model, opts: &TrainOptions) -> String {
    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    let sizes: Vec<u64> = model
        .parameters()
        .iter()
        .map(|(_, t)| t.elem_count() as u64)
        .collect();
    let parameters: u64 = sizes.iter().sum();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let lm_head: u64 = model
        .lm_head()
        .chunks
        .iter()
        .map(|t| t.elem_count() as u64)
        .sum();
    let (moments, moments_part) = if opts.offload_optimizer {
        let transit = 8 * largest;
        let part = format!(
            "AdamW moments in host memory ({:.1}; {:.1} on the GPU while each is updated)",
            gib(8 * parameters),
            gib(transit)
        );
        (transit, part)
    } else {
        let part = format!(
            "AdamW moments {:.1} (--offload-optimizer moves them to host memory)",
            gib(8 * parameters)
        );
        (8 * parameters, part)
    };
    let mut parts = vec![
        format!("weights and gradients {:.1}", gib(8 * parameters)),
        moments_part,
    ];
    let f16 = opts.compute.precision == models::Precision::F16;
    let copies = match (f16, opts.compute.recompute) {
        (false, _) => 0,
        (true, false) => {
            parts.push(format!(
                "f16 weight copies {:.1} (--recompute keeps only the LM head's)",
                gib(2 * parameters)
            ));
            2 * parameters
        }
        (true, true) => {
            parts.push(format!("the LM head's f16 copy {:.1}", gib(2 * lm_head)));
            2 * lm_head
        }
    };
    format!(
        "{:.2}B parameters: {:.1} GiB on the GPU before activations: {}",
        parameters as f64 / 1e9,
        gib(8 * parameters + moments + copies),
        parts.join(", ")
    )
}
