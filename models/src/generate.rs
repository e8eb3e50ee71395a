//! Greedy generation with a KV cache: the prompt is run once (prefill), then one token at a
//! time attends to the cached keys and values of everything before it.

use engine::no_grad;

use crate::decoder::Model;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Stop tokens are suppressed until this many tokens are out (HF's `min_new_tokens`).
    pub min_new_tokens: usize,
    /// Generation ends after any of these (it is included in the output).
    pub stop_tokens: Vec<u32>,
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
                let mut best = (f32::NEG_INFINITY, 0u32);
                for (id, &z) in logits.iter().enumerate() {
                    let id = id as u32;
                    if z > best.0 && !(suppress && opts.stop_tokens.contains(&id)) {
                        best = (z, id);
                    }
                }
                out.push(best.1);
                if opts.stop_tokens.contains(&best.1) {
                    break;
                }
                input = vec![best.1];
            }
            Ok(out)
        })
    }
}
