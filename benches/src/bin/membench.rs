//! membench: the GPU memory a training step of a Qwen2.5 model takes, by count: the buffer
//! pool's bytes (every buffer the engine allocates, rounded to its size class), which do not
//! depend on the adapter's speed, so a CPU adapter (lavapipe) measures them.
//!
//! The real config at 4 x 1024 tokens does not fit a CPU's time, so the step (`trainbench`'s,
//! optimizer included, at the real widths and vocabulary with random weights) is weighed at
//! 1 and 2 layers and two token counts, after one step that allocates the optimizer's moments:
//! the state between steps (weights, moments), the bytes held when the loss is computed (the
//! state, the f16 weight copies, and everything the backward reads), the peak through the
//! backward and the peak of the update. Each is fitted as a + b L + c N + d L N through the
//! four points and projected to the real layers and tokens; a step at 3 layers checks the
//! forward's fit (`fit_err`). The forward's holdings grow linearly by construction (d: the
//! activation bytes per layer and token); the two peaks are each a maximum over the step, whose
//! place moves with N, so their projections from small N are lower bounds, and the step's
//! projected peak is at least the largest of the three projections. Attention's score blocks
//! (the f16 blocks path), which grow with T^2 and live within one layer, are not in it.
//!
//! `membench [--model qwen2.5-1.5b|qwen2.5-0.5b|qwen2.5-7b|tiny] [--tokens 16,32]
//! [--target 4x1024] [--compute f32,f16,f16-flash,f16-recompute[-offload]]`: one JSON object
//! per compute on stdout (`-offload`: AdamW's moments in host memory, their transit buffers on
//! the GPU), a table on stderr. At Qwen2.5-1.5B each compute takes about 6 minutes on lavapipe (2 cores).

use anyhow::{bail, Context, Result};
use benches::step::{config, random_batch, Phase, Trainer};
use engine::ops::objective::Objective;
use engine::Device;
use models::{AttentionPath, Compute, Config, Model, Precision, Weights};
use serde_json::{json, Value};

struct Args {
    model: String,
    tokens: (usize, usize),
    target: (usize, usize),
    computes: Vec<(String, Setup)>,
}

/// What a step is weighed with: the model's compute, and whether AdamW's moments live in
/// host memory.
#[derive(Debug, Clone, Copy)]
struct Setup {
    compute: Compute,
    offload: bool,
}

/// `f32`, `f16`, `f16-flash` or `f16-recompute`, each optionally followed by `-offload`.
fn setup(name: &str) -> Result<Setup> {
    let (base, offload) = match name.strip_suffix("-offload") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let (precision, recompute, attention) = match base {
        "f32" => (Precision::F32, false, AttentionPath::Flash),
        "f16" => (Precision::F16, false, AttentionPath::Blocks),
        "f16-flash" => (Precision::F16, false, AttentionPath::Flash),
        "f16-recompute" => (Precision::F16, true, AttentionPath::Blocks),
        other => bail!(
            "--compute {other:?}: expected f32, f16, f16-flash or f16-recompute, \
             each optionally followed by -offload"
        ),
    };
    Ok(Setup {
        compute: Compute {
            precision,
            recompute,
            attention,
        },
        offload,
    })
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        model: "qwen2.5-1.5b".into(),
        tokens: (16, 32),
        target: (4, 1024),
        computes: Vec::new(),
    };
    let mut computes = "f32,f16,f16-flash,f16-recompute".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?,
            "--compute" => computes = value()?,
            "--tokens" => {
                let v = value()?;
                let (x, y) = v.split_once(',').context("--tokens N1,N2")?;
                a.tokens = (x.parse()?, y.parse()?);
            }
            "--target" => {
                let v = value()?;
                let (b, t) = v.split_once('x').context("--target BATCHxSEQ")?;
                a.target = (b.parse()?, t.parse()?);
            }
            "-h" | "--help" => {
                eprintln!("{}", USAGE);
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if a.tokens.0 == 0 || a.tokens.0 >= a.tokens.1 {
        bail!("--tokens N1,N2 needs 0 < N1 < N2");
    }
    for name in computes.split(',') {
        a.computes.push((name.to_string(), setup(name)?));
    }
    Ok(a)
}

const USAGE: &str =
    "membench [--model qwen2.5-1.5b|qwen2.5-0.5b|qwen2.5-7b|tiny] [--tokens 16,32] \
[--target 4x1024] [--compute f32,f16,f16-flash,f16-recompute[-offload]]";

/// The pool's bytes at the points of one training step of `layers` layers on `tokens` tokens
/// (one sequence), after a first step that allocates the optimizer's moments.
#[derive(Debug, Clone, Copy, Default)]
struct Weighed {
    /// Between steps: the weights and the optimizer's moments.
    state: f64,
    /// When the loss is computed: what the backward will read, the f16 weight copies, and
    /// the state.
    forward: f64,
    /// The peak from the start of the step to the end of its backward.
    peak: f64,
    /// The peak of the optimizer's update.
    update_peak: f64,
}

fn weigh_step(
    dev: &Device,
    cfg: &Config,
    layers: usize,
    tokens: usize,
    c: Setup,
) -> Result<Weighed> {
    let mut cfg = cfg.clone();
    cfg.num_hidden_layers = layers;
    let model = Model::new(&cfg, &Weights::random(dev, 7), true)?;
    model.set_compute(c.compute);
    let mb = random_batch(cfg.vocab_size, 1, tokens, 3);
    let mut tr = Trainer::new(&model, 1e-5);
    tr.adam.set_offload(c.offload)?;
    let objective = Objective::FAlpha(1.0);
    tr.step(&mb, &objective)?;
    dev.sync()?;
    let mut w = Weighed {
        state: dev.pool_stats().in_use as f64,
        ..Weighed::default()
    };
    dev.reset_peak();
    tr.step_probed(&mb, &objective, &mut |phase| {
        dev.sync()?;
        let stats = dev.pool_stats();
        match phase {
            Phase::Forward => w.forward = stats.in_use as f64,
            Phase::Backward => {
                w.peak = stats.peak as f64;
                dev.reset_peak();
            }
        }
        Ok(())
    })?;
    dev.sync()?;
    w.update_peak = dev.pool_stats().peak as f64;
    Ok(w)
}

fn gib(bytes: f64) -> f64 {
    (bytes / (1u64 << 30) as f64 * 1000.0).round() / 1000.0
}

/// `f(L, N) = a + b L + c N + d L N` through its values at (1, n1), (2, n1), (1, n2), (2, n2).
struct Fit([f64; 4]);

impl Fit {
    fn new(n1: usize, n2: usize, v11: f64, v21: f64, v12: f64, v22: f64) -> Fit {
        let dn = (n2 - n1) as f64;
        let d = (v22 - v12 - v21 + v11) / dn;
        let b = v21 - v11 - d * n1 as f64;
        let c = (v12 - v11) / dn - d;
        Fit([v11 - b - c * n1 as f64 - d * n1 as f64, b, c, d])
    }
    fn at(&self, l: usize, n: usize) -> f64 {
        let [a, b, c, d] = self.0;
        a + b * l as f64 + c * n as f64 + d * (l * n) as f64
    }
}

fn weigh(dev: &Device, cfg: &Config, a: &Args, name: &str, c: Setup) -> Result<Value> {
    let (n1, n2) = a.tokens;
    let w = |l, n| weigh_step(dev, cfg, l, n, c);
    let (w11, w21, w12, w22) = (w(1, n1)?, w(2, n1)?, w(1, n2)?, w(2, n2)?);
    let fit = |f: fn(&Weighed) -> f64| Fit::new(n1, n2, f(&w11), f(&w21), f(&w12), f(&w22));
    let (state, forward) = (fit(|w| w.state), fit(|w| w.forward));
    let (peak, update) = (fit(|w| w.peak), fit(|w| w.update_peak));
    let w31 = w(3, n1)?;
    let fit_err = (forward.at(3, n1) - w31.forward) / w31.forward;
    let (layers, tokens) = (cfg.num_hidden_layers, a.target.0 * a.target.1);
    // What the tape holds for the backward, per layer and token: the forward's bytes beyond
    // the state that grow with both.
    let per_layer_token = forward.0[3] - state.0[3];
    Ok(json!({
        "name": format!("memory_{name}"),
        "model": a.model,
        "compute": name,
        "measured_tokens": [n1, n2],
        "bytes": {
            "l1_n1": [w11.state, w11.forward, w11.peak, w11.update_peak],
            "l2_n1": [w21.state, w21.forward, w21.peak, w21.update_peak],
            "l1_n2": [w12.state, w12.forward, w12.peak, w12.update_peak],
            "l2_n2": [w22.state, w22.forward, w22.peak, w22.update_peak],
            "l3_n1": [w31.state, w31.forward, w31.peak, w31.update_peak],
        },
        "activation_bytes_per_layer_token": per_layer_token,
        "fit_err": fit_err,
        "target": format!("{}x{}", a.target.0, a.target.1),
        "projected_state_gib": gib(state.at(layers, tokens)),
        "projected_forward_gib": gib(forward.at(layers, tokens)),
        "projected_backward_peak_gib": gib(peak.at(layers, tokens)),
        "projected_update_peak_gib": gib(update.at(layers, tokens)),
        "projected_peak_at_least_gib": gib(
            [&forward, &peak, &update]
                .iter()
                .map(|f| f.at(layers, tokens))
                .fold(0.0, f64::max)
        ),
    }))
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let run = || -> Result<Vec<Value>> {
        let dev = Device::new()?;
        let cfg = config(&a.model)?;
        eprintln!(
            "membench on {}: {} ({} layers), steps at 1-3 layers and {:?} tokens, projected to {}x{}",
            dev.name(),
            a.model,
            cfg.num_hidden_layers,
            a.tokens,
            a.target.0,
            a.target.1
        );
        let mut rows = Vec::new();
        for (name, c) in &a.computes {
            let row = weigh(&dev, &cfg, &a, name, *c)?;
            println!("{row}");
            rows.push(row);
        }
        Ok(rows)
    };
    match run() {
        Ok(rows) => {
            eprintln!(
                "\n{:<14} {:>13} {:>8} {:>10} {:>12} {:>13} {:>11} {:>10}",
                "compute",
                "act B/lay/tok",
                "fit err",
                "state GiB",
                "forward GiB",
                "backward GiB",
                "update GiB",
                "peak >= GiB"
            );
            for r in &rows {
                let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                eprintln!(
                    "{:<14} {:>13.0} {:>7.2}% {:>10.3} {:>12.3} {:>13.3} {:>11.3} {:>10.3}",
                    r["compute"].as_str().unwrap_or(""),
                    f("activation_bytes_per_layer_token"),
                    f("fit_err") * 100.0,
                    f("projected_state_gib"),
                    f("projected_forward_gib"),
                    f("projected_backward_peak_gib"),
                    f("projected_update_peak_gib"),
                    f("projected_peak_at_least_gib"),
                );
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
