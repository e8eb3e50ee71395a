//! One training step as `trainer` takes it, on Qwen2.5 models at their real configs with random
//! weights, shared by `trainbench` (timed against PyTorch) and `membench` (the buffer pool's
//! bytes).

use anyhow::{bail, Result};
use engine::ops::objective::{lm_head_objective, Objective};
use engine::ops::optim::AdamW;
use engine::{Gradients, Tensor};
use models::{Config, Model, Precision};
use trainer::batch::{MicroBatch, SplitMix};
use trainer::data::Example;
use trainer::guard::{update, Update};
use trainer::scaler::LossScaler;

/// The real configs (HF config.json of Qwen/Qwen2.5-0.5B and Qwen/Qwen2.5-1.5B, which tie the
/// LM head to the embedding: 494M and 1.54B parameters; Qwen/Qwen2.5-7B, untied: 7.62B), and
/// a tiny one for CPU adapters.
const QWEN25_05B: &str = r#"{"model_type": "qwen2", "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": 151936,
    "tie_word_embeddings": true, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
    "hidden_act": "silu", "use_sliding_window": false, "bos_token_id": 151643,
    "eos_token_id": 151643}"#;
const QWEN25_15B: &str = r#"{"model_type": "qwen2", "hidden_size": 1536,
    "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": 151936,
    "tie_word_embeddings": true, "rope_theta": 1000000.0, "max_position_embeddings": 131072,
    "hidden_act": "silu", "use_sliding_window": false, "bos_token_id": 151643,
    "eos_token_id": 151643}"#;
const QWEN25_7B: &str = r#"{"model_type": "qwen2", "hidden_size": 3584,
    "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "vocab_size": 152064,
    "tie_word_embeddings": false, "rope_theta": 1000000.0, "max_position_embeddings": 131072,
    "hidden_act": "silu", "use_sliding_window": false, "bos_token_id": 151643,
    "eos_token_id": 151643}"#;
const TINY: &str = r#"{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6, "vocab_size": 512, "tie_word_embeddings": true,
    "rope_theta": 1000000.0, "max_position_embeddings": 4096, "hidden_act": "silu"}"#;

pub fn config(name: &str) -> Result<Config> {
    let text = match name {
        "qwen2.5-0.5b" => QWEN25_05B,
        "qwen2.5-1.5b" => QWEN25_15B,
        "qwen2.5-7b" => QWEN25_7B,
        "tiny" => TINY,
        other => {
            bail!("--model {other:?}: expected qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b or tiny")
        }
    };
    Ok(Config::from_json(
        text,
        std::path::Path::new(&format!("{name}/config.json")),
    )?)
}

/// `batch` sequences of `seq` random token ids, every token a loss token, as the trainer
/// batches them (targets = next token, the last position masked): a padded row each, or
/// `packed` into one row (`--packing`).
pub fn random_batch_as(
    vocab: usize,
    batch: usize,
    seq: usize,
    seed: u64,
    packed: bool,
) -> MicroBatch {
    let mut rng = SplitMix(seed);
    let examples: Vec<Example> = (0..batch)
        .map(|_| Example {
            ids: (0..seq).map(|_| rng.below(vocab as u64) as u32).collect(),
            loss: vec![true; seq],
        })
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    MicroBatch::build(&refs, 0, packed)
}

/// [`random_batch_as`], a padded row each.
pub fn random_batch(vocab: usize, batch: usize, seq: usize, seed: u64) -> MicroBatch {
    random_batch_as(vocab, batch, seq, seed, false)
}

/// What one training step reports (as a line of the trainer's metrics.jsonl would).
pub struct StepOut {
    pub loss: f64,
    pub mean_p: f64,
    pub grad_norm: f64,
    pub loss_scale: f32,
    /// f16 gradients overflowed: the step was skipped and the scale halved.
    pub overflow: bool,
    pub log_p: Vec<f32>,
}

/// Where a training step stands when [`Trainer::step_probed`] calls its probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The loss is computed; the tape holds every activation the backward reads.
    Forward,
    /// Every gradient is made; the optimizer has not run.
    Backward,
}

/// The optimizer state of a run of `train.rs`.
pub struct Trainer<'a> {
    pub model: &'a Model,
    pub params: Vec<Tensor>,
    pub adam: AdamW,
    pub scaler: LossScaler,
}

impl<'a> Trainer<'a> {
    /// `trainer train`'s defaults: betas 0.9/0.95, eps 1e-8, weight decay 0.01, loss scaling
    /// (from 2^16) in f16.
    pub fn new(model: &'a Model, lr: f32) -> Self {
        let mut adam = AdamW::new(lr);
        adam.beta1 = 0.9;
        adam.beta2 = 0.95;
        adam.eps = 1e-8;
        adam.weight_decay = 0.01;
        Trainer {
            model,
            params: model.parameters().into_iter().map(|(_, t)| t).collect(),
            adam,
            scaler: LossScaler::new(model.compute().precision == Precision::F16),
        }
    }

    /// One optimizer step on one micro-batch, as `train::run_steps` does it.
    pub fn step(&mut self, mb: &MicroBatch, objective: &Objective) -> Result<StepOut> {
        self.step_probed(mb, objective, &mut |_| Ok(()))
    }

    /// [`Trainer::step`], calling `probe` where each phase of it ends.
    pub fn step_probed(
        &mut self,
        mb: &MicroBatch,
        objective: &Objective,
        probe: &mut dyn FnMut(Phase) -> Result<()>,
    ) -> Result<StepOut> {
        let (model, dev) = (self.model, self.model.device());
        let n = mb.batch * mb.seq_len;
        let hidden = mb
            .hidden_states(model)?
            .reshape(&[n, model.config.hidden_size])?;
        let targets = Tensor::from_u32_slice(dev, &mb.targets, &[n])?;
        let mask = Tensor::from_slice(dev, &mb.mask, &[n])?;
        let (x, chunks) = model.lm_head_operands(&hidden)?;
        let out = lm_head_objective(&x, &chunks, &targets, &mask, objective, None)?;
        drop((hidden, x, chunks));
        probe(Phase::Forward)?;
        let mut grads = Gradients::default();
        out.loss
            .scale(self.scaler.scale())?
            .backward_into(&mut grads)?;
        probe(Phase::Backward)?;
        let loss = out.loss.to_scalar()? as f64;
        let log_p = out.log_p.to_vec()?;
        let (mut p_sum, mut p_count) = (0.0f64, 0usize);
        for (lp, &m) in log_p.iter().zip(&mb.mask) {
            if m > 0.0 {
                p_sum += (*lp as f64).exp();
                p_count += 1;
            }
        }
        let loss_scale = self.scaler.scale();
        self.adam.inv_loss_scale = 1.0 / loss_scale;
        model.release_casts();
        let (grad_norm, overflow) =
            match update(&mut self.adam, &self.params, &grads, Some(1.0), loss)? {
                Update::Applied { grad_norm } => {
                    self.scaler.update(true);
                    (grad_norm, false)
                }
                Update::Skipped { grad_norm }
                    if self.scaler.enabled() && loss.is_finite() && loss_scale > 1.0 =>
                {
                    self.scaler.update(false);
                    (grad_norm, true)
                }
                Update::Skipped { grad_norm } => {
                    bail!("step skipped: loss {loss}, gradient norm {grad_norm} (not finite)")
                }
            };
        Ok(StepOut {
            loss,
            mean_p: p_sum / p_count.max(1) as f64,
            grad_norm,
            loss_scale,
            overflow,
            log_p,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::config;

    /// Parameters of a Qwen2 config counted from its shapes: embedding (and an untied LM
    /// head), per layer q/k/v with biases, o, gate/up/down and two norms, the final norm.
    fn parameters(name: &str) -> usize {
        let c = config(name).unwrap();
        let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let kv = h / c.num_attention_heads * c.num_key_value_heads;
        let layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * i + 2 * h;
        let heads = if c.tie_word_embeddings { 1 } else { 2 };
        heads * v * h + c.num_hidden_layers * layer + h
    }

    #[test]
    fn configs_have_the_published_parameter_counts() {
        // The counts Hugging Face lists for each checkpoint.
        assert_eq!(parameters("qwen2.5-0.5b"), 494_032_768);
        assert_eq!(parameters("qwen2.5-1.5b"), 1_543_714_304);
        assert_eq!(parameters("qwen2.5-7b"), 7_615_616_512);
    }
}
