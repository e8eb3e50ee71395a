//! What keeps a long run sound: a step whose loss or gradient norm is NaN or infinite is
//! skipped (weights and AdamW moments untouched) and counted, `--max-bad-steps` in a row stop
//! the run, metrics survive a resume, and errors that mean "the GPU is too small" say what to
//! reduce.

use std::io::{BufRead, Write};
use std::path::Path;

use engine::ops::optim::{global_norm_unscaled, AdamW, StepOutcome};
use engine::{Gradients, Tensor};
use serde_json::json;

/// Default of `--max-bad-steps`: a run whose weights have gone non-finite fails every step,
/// while one bad batch in a healthy run is rare; five in a row is past any doubt.
pub const DEFAULT_MAX_BAD_STEPS: usize = 5;

/// What [`update`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Update {
    Applied {
        grad_norm: f64,
    },
    /// Loss or gradient norm not finite: nothing changed.
    Skipped {
        grad_norm: f64,
    },
}

/// One AdamW step of `params` unless `loss` or the gradients' global norm is NaN or infinite
/// (gradients as the loss scale left them: `adam.inv_loss_scale` unscales them).
pub fn update(
    adam: &mut AdamW,
    params: &[Tensor],
    grads: &Gradients,
    clip: Option<f32>,
    loss: f64,
) -> anyhow::Result<Update> {
    if !loss.is_finite() {
        // The norm only for the report.
        let list: Vec<&Tensor> = params.iter().filter_map(|p| grads.get(p)).collect();
        let grad_norm = match list.is_empty() {
            true => f64::NAN,
            false => global_norm_unscaled(&list, adam.inv_loss_scale)?.to_scalar()? as f64,
        };
        return Ok(Update::Skipped { grad_norm });
    }
    Ok(match adam.step_if_finite(params, grads, clip)? {
        StepOutcome::Applied(stats) => Update::Applied {
            grad_norm: stats.grad_norm()? as f64,
        },
        StepOutcome::Skipped { grad_norm } => Update::Skipped {
            grad_norm: grad_norm as f64,
        },
    })
}

/// The run stopped after `--max-bad-steps` non-finite steps in a row.
#[derive(Debug, thiserror::Error)]
#[error(
    "steps {first}-{last} had a NaN or infinite loss or gradient norm, {count} in a row \
     (--max-bad-steps {count}); stopped. Lower --lr, or look for bad records in the data"
)]
pub struct TooManyBadSteps {
    pub first: usize,
    pub last: usize,
    pub count: usize,
}

/// Set when the process is asked to stop (Ctrl-C, SIGTERM); the training loop stops after
/// the step it is in, saving the state after it.
static STOP_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ask a running training loop to stop after its current step (what the signal handler
/// `trainer` installs does; a second signal ends the process at once).
pub fn ask_to_stop() {
    STOP_ASKED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether [`ask_to_stop`] was called.
pub fn stop_asked() -> bool {
    STOP_ASKED.load(std::sync::atomic::Ordering::SeqCst)
}

/// A run stopped on request (Ctrl-C, SIGTERM) after step `step`.
#[derive(Debug, thiserror::Error)]
#[error("interrupted after step {step} of {total}")]
pub struct Interrupted {
    pub step: usize,
    pub total: usize,
}

/// Consecutive skipped steps.
#[derive(Debug)]
pub struct BadSteps {
    limit: usize,
    first: Option<usize>,
    count: usize,
}

impl BadSteps {
    pub fn new(limit: usize) -> BadSteps {
        BadSteps {
            limit: limit.max(1),
            first: None,
            count: 0,
        }
    }

    pub fn good(&mut self) {
        self.first = None;
        self.count = 0;
    }

    /// Record skipped step `step` (1-based): a metrics line, a warning, and an error once
    /// `limit` steps in a row were skipped.
    pub fn skipped(
        &mut self,
        step: usize,
        total: usize,
        loss: f64,
        grad_norm: f64,
        metrics: &mut impl Write,
    ) -> anyhow::Result<()> {
        let first = *self.first.get_or_insert(step);
        self.count += 1;
        let line = json!({
            "step": step, "skipped": true,
            "loss": finite_or_text(loss), "grad_norm": finite_or_text(grad_norm),
        });
        writeln!(metrics, "{line}")?;
        eprintln!(
            "warning: step {step}/{total} skipped: loss {loss}, grad norm {grad_norm} (not \
             finite); weights and optimizer state left as they were ({} of --max-bad-steps {} \
             in a row)",
            self.count, self.limit
        );
        if self.count >= self.limit {
            return Err(TooManyBadSteps {
                first,
                last: step,
                count: self.count,
            }
            .into());
        }
        Ok(())
    }
}

/// JSON has no NaN: a finite number as it is, anything else as text ("NaN", "inf").
fn finite_or_text(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        json!(x.to_string())
    }
}

/// Open metrics.jsonl for this run: a fresh file, or on a resume at step `resumed_at`, the
/// lines of the steps up to it kept (a crash after them loses nothing; the steps after them
/// are run again and written again).
pub fn open_metrics(path: &Path, resumed_at: Option<usize>) -> anyhow::Result<std::fs::File> {
    let io = |e: std::io::Error| anyhow::anyhow!("{}: {e}", path.display());
    let mut kept = Vec::new();
    if let (Some(start), true) = (resumed_at, path.exists()) {
        let file = std::fs::File::open(path).map_err(io)?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(io)?;
            let step = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["step"].as_u64());
            if step.is_some_and(|s| s as usize <= start) {
                kept.push(line);
            }
        }
    }
    let mut file = std::fs::File::create(path).map_err(io)?;
    for line in kept {
        writeln!(file, "{line}").map_err(io)?;
    }
    Ok(file)
}

/// The engine error under `e`, if any.
pub fn engine_error(e: &anyhow::Error) -> Option<&engine::Error> {
    e.chain().find_map(|c| {
        c.downcast_ref::<engine::Error>()
            .or_else(|| match c.downcast_ref() {
                Some(models::Error::Engine(inner)) => Some(inner),
                _ => None,
            })
    })
}

/// What to do about an error of the GPU being too small or going away, if it is one.
pub fn resource_hint(e: &anyhow::Error) -> Option<&'static str> {
    Some(match engine_error(e)? {
        engine::Error::BindingTooLarge { .. } | engine::Error::BufferTooLarge { .. } => {
            "a tensor is too large for this GPU: lower --batch-tokens (tokens per forward \
             pass) or --max-length"
        }
        engine::Error::OutOfMemory { .. } => {
            "out of GPU memory: lower --batch-tokens (tokens per forward pass) or \
             --max-length, or use a smaller model"
        }
        engine::Error::DeviceLost { .. } => {
            "the GPU was lost (a driver reset, often after running out of memory): lower \
             --batch-tokens or --max-length and --resume from the last checkpoint"
        }
        _ => return None,
    })
}

/// An error as one line: its chain joined by ": " (a cause whose text the message already
/// holds is left out), line breaks flattened, and what to reduce when the GPU was too small.
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        let part = part
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    if let Some(hint) = resource_hint(e) {
        text = format!("{text}; {hint}");
    }
    text
}
