//! Greedy generation with a KV cache: the prompt is run once (prefill), then one token at a
//! time attends to the cached keys and values of everything before it; for one prompt, or for
//! a batch of prompts left-padded to the longest (each row's tokens as if it were alone).

use engine::no_grad;

use crate::decoder::Model;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Stop tokens are suppressed until this many tokens are out (HF's `min_new_tokens`).
    pub min_new_tokens: usize,
    /// Generation ends after any of these (it is included in the output).
    pub stop_tokens: Vec<u32>,
}

/// Token id the batch's left padding uses (any valid id: padding is never attended to).
const PAD_ID: u32 = 0;

/// The first maximum of `logits` (as torch.argmax), stop tokens skipped when `suppress`.
fn pick(logits: &[f32], suppress: bool, stops: &[u32]) -> u32 {
    let mut best = (f32::NEG_INFINITY, 0u32);
    for (id, &z) in logits.iter().enumerate() {
        let id = id as u32;
        if z > best.0 && !(suppress && stops.contains(&id)) {
            best = (z, id);
        }
    }
    best.1
}

impl Model {
    /// Greedy continuation of `prompt` (first maximum on ties, as torch.argmax).
    pub fn generate_greedy(&self, prompt: &[u32], opts: &GenerateOptions) -> Result<Vec<u32>> {
        no_grad(|| {
            let mut caches = self.new_caches(1, prompt.len() + opts.max_new_tokens)?;
            let mut input = prompt.to_vec();
            let mut out = Vec::with_capacity(opts.max_new_tokens);
            while out.len() < opts.max_new_tokens {
                let hidden = self.hidden_states_cached(&input, 1, &mut caches)?; // (1, Tn, C)
                let last = hidden.narrow(1, input.len() - 1, 1)?;
                let logits = self.logits(&last)?.to_vec()?;
                let suppress = out.len() < opts.min_new_tokens;
                let next = pick(&logits, suppress, &opts.stop_tokens);
                out.push(next);
                if opts.stop_tokens.contains(&next) {
                    break;
                }
                input = vec![next];
            }
            Ok(out)
        })
    }

    /// [`Model::generate_greedy`] for several prompts at once: left-padded to the longest, one
    /// prefill, then one decode step per token for every row together (the weights are read
    /// once a step for all rows). Padding is hidden from attention and each row's positions
    /// start at its first real token, so row i gets the tokens `generate_greedy(&prompts[i])`
    /// gives (up to f32 rounding: the batched kernels sum in another order, which can only
    /// matter on a near-tie of the top two logits). A row that emits a stop token is finished;
    /// the others go on until all are finished or `max_new_tokens` are out.
    pub fn generate_greedy_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>> {
        let batch = prompts.len();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(Error::Engine(engine::Error::BadShape {
                op: "Model::generate_greedy_batch",
                shape: vec![batch, 0],
                reason: format!("prompt {i} is empty"),
            }));
        }
        let mut outs: Vec<Vec<u32>> = vec![Vec::with_capacity(opts.max_new_tokens); batch];
        if batch == 0 || opts.max_new_tokens == 0 {
            return Ok(outs);
        }
        no_grad(|| {
            let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
            let mut caches = self.new_caches(batch, longest + opts.max_new_tokens)?;
            // (B, longest), left-padded.
            let mut input: Vec<u32> = prompts
                .iter()
                .zip(&pads)
                .flat_map(|(p, &pad)| std::iter::repeat_n(PAD_ID, pad).chain(p.iter().copied()))
                .collect();
            let mut finished = vec![false; batch];
            for _ in 0..opts.max_new_tokens {
                let seq_len = input.len() / batch;
                let hidden = self.hidden_states_cached_padded(&input, batch, &pads, &mut caches)?;
                let last = hidden.narrow(1, seq_len - 1, 1)?; // (B, 1, C)
                let logits = self.logits(&last)?.to_vec()?;
                let vocab = logits.len() / batch;
                for (row, out) in outs.iter_mut().enumerate() {
                    if finished[row] {
                        continue; // still stepped with its last token; the result is dropped
                    }
                    let suppress = out.len() < opts.min_new_tokens;
                    let z = &logits[row * vocab..(row + 1) * vocab];
                    let next = pick(z, suppress, &opts.stop_tokens);
                    out.push(next);
                    finished[row] = opts.stop_tokens.contains(&next);
                }
                if finished.iter().all(|&f| f) {
                    break;
                }
                input = outs
                    .iter()
                    .map(|o| o.last().copied().unwrap_or(PAD_ID))
                    .collect();
            }
            Ok(outs)
        })
    }
}
