//! The decoder's linear layers: [`Linear`] (several HF projections that read one input stacked
//! into one product) and the SwiGLU [`Mlp`] built of two of them.

use engine::ops::activation::swiglu_as;
use engine::ops::cast::CastCache;
use engine::{Device, Tensor};

use crate::config::Config;
use crate::decoder::Precision;
use crate::error::Result;
use crate::hf_layout::{HfRows, Param};
use crate::weights::{Init, Weights};

/// A linear layer whose weight may stack several HF projections that read the same input
/// (q, k, v; gate, up) along the output rows, so that they run as one product: one larger
/// matmul fills the GPU better than three small ones (k and v are 256 rows at Qwen2.5-1.5B),
/// and the input is cast and read once. Where the stack would not fit one GPU binding, each
/// part keeps its own tensor and the products are concatenated.
#[derive(Clone)]
pub(crate) struct Linear {
    /// Row blocks of the (out, in) weight: the whole stack, or one per part.
    pub(crate) weight: Vec<Tensor>,
    /// The bias in the same blocks (none, or one per weight block).
    pub(crate) bias: Vec<Tensor>,
    /// Name of the stack as one parameter (used when `weight` is one block of several parts).
    pub(crate) stacked: String,
    /// The HF tensors stacked, by name within the layer (without `.weight`), and their rows.
    pub(crate) parts: Vec<(String, usize)>,
    /// The f16 copy of each weight block, remade only after the weight changes (so a
    /// recomputed layer, further micro-batches and repeated inference reuse it).
    pub(crate) casts: Vec<CastCache>,
}

impl Linear {
    /// The projections `parts` (HF name, output rows) of `in_dim` inputs, stacked in that
    /// order under the name `stacked` (within the layer) where they fit one binding.
    pub(crate) fn new(
        w: &Weights,
        stacked: &str,
        parts: &[(&str, usize)],
        in_dim: usize,
        bias: bool,
        std: f32,
    ) -> Result<Linear> {
        let load = |suffix: &str, shape: &[usize], init: Init| -> Result<Vec<Tensor>> {
            parts
                .iter()
                .map(|&(name, rows)| {
                    let shape: Vec<usize> =
                        std::iter::once(rows).chain(shape.iter().copied()).collect();
                    w.pp(name).get(suffix, &shape, init)
                })
                .collect()
        };
        let rows: usize = parts.iter().map(|p| p.1).sum();
        let fits = (rows * in_dim * 4) as u64 <= w.device().max_binding_bytes();
        let stack = |t: Vec<Tensor>| -> Result<Vec<Tensor>> {
            if t.len() > 1 && fits {
                let refs: Vec<&Tensor> = t.iter().collect();
                Ok(vec![Tensor::cat(&refs, 0)?])
            } else {
                Ok(t)
            }
        };
        let weight = stack(load("weight", &[in_dim], Init::Normal(std))?)?;
        Ok(Linear {
            casts: weight.iter().map(|_| CastCache::new()).collect(),
            weight,
            bias: if bias {
                stack(load("bias", &[], Init::Zeros)?)?
            } else {
                Vec::new()
            },
            stacked: stacked.into(),
            parts: parts.iter().map(|&(n, r)| (n.to_string(), r)).collect(),
        })
    }

    pub(crate) fn vars(self) -> Linear {
        Linear {
            weight: self.weight.into_iter().map(Tensor::var).collect(),
            bias: self.bias.into_iter().map(Tensor::var).collect(),
            ..self
        }
    }

    /// x (.., in) -> (.., out), the parts' outputs side by side in their order.
    pub(crate) fn forward(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        // Cast inside the graph (to f16; f32 stays as it is), so the f32 master weight
        // receives the gradient. An input already in the dtype is not cast again, nor a
        // weight that has not changed since its last cast.
        let dtype = precision.dtype();
        let x = x.to_dtype(dtype)?;
        let outs = self
            .weight
            .iter()
            .enumerate()
            .map(|(i, w)| x.linear(&self.casts[i].cast(w, dtype)?, self.bias.get(i)))
            .collect::<engine::Result<Vec<_>>>()?;
        if outs.len() == 1 {
            return Ok(outs.into_iter().next().expect("one block"));
        }
        let refs: Vec<&Tensor> = outs.iter().collect();
        Ok(Tensor::cat(&refs, -1)?)
    }

    /// The parameters under their names within the layer, each with the HF tensors it
    /// holds.
    pub(crate) fn named(&self) -> Vec<Param> {
        let one = self.weight.len() == 1;
        let block = |i: usize, suffix: &str, t: &Tensor| {
            let hf = |(n, r): &(String, usize)| HfRows {
                name: format!("{n}.{suffix}"),
                total: *r,
                rows: 0..*r,
            };
            let (name, hf) = if one && self.parts.len() > 1 {
                let name = format!("{}.{suffix}", self.stacked);
                (name, self.parts.iter().map(hf).collect())
            } else {
                (
                    format!("{}.{suffix}", self.parts[i].0),
                    vec![hf(&self.parts[i])],
                )
            };
            Param {
                name,
                tensor: t.clone(),
                hf,
            }
        };
        let weights = self
            .weight
            .iter()
            .enumerate()
            .map(|(i, t)| block(i, "weight", t));
        let biases = self
            .bias
            .iter()
            .enumerate()
            .map(|(i, t)| block(i, "bias", t));
        weights.chain(biases).collect()
    }
}

#[derive(Clone)]
pub(crate) struct Mlp {
    /// gate_proj and up_proj stacked: one product, then SwiGLU on its two halves.
    pub(crate) gate_up: Linear,
    pub(crate) down_proj: Linear,
}

impl Mlp {
    pub(crate) fn new(cfg: &Config, w: &Weights, std: f32) -> Result<Mlp> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let parts = [("gate_proj", i), ("up_proj", i)];
        Ok(Mlp {
            gate_up: Linear::new(w, "gate_up_proj", &parts, h, false, std)?,
            down_proj: Linear::new(w, "down_proj", &[("down_proj", h)], i, false, std)?,
        })
    }
    pub(crate) fn forward(&self, x: &Tensor, p: Precision) -> Result<Tensor> {
        let act = swiglu_as(&self.gate_up.forward(x, p)?, p.dtype())?;
        self.down_proj.forward(&act, p)
    }

    /// Tokens per pass such that the [gate | up] product (f32, twice the intermediate size
    /// per token) fits one binding; `None` when all `tokens` do.
    pub(crate) fn chunk_tokens(&self, tokens: usize, dev: &Device) -> Option<usize> {
        let per_token = 4 * self.gate_up.parts.iter().map(|p| p.1).sum::<usize>();
        let limit = dev.max_binding_bytes() as usize;
        (tokens * per_token > limit).then(|| (limit / per_token.max(1)).max(1))
    }

    /// [`Mlp::forward`] on `x` (.., C, f32) `chunk` tokens at a time (the MLP is
    /// token-wise), the outputs joined: for a micro-batch whose stacked product would not
    /// fit one binding.
    pub(crate) fn forward_chunked(&self, x: &Tensor, chunk: usize, p: Precision) -> Result<Tensor> {
        let c = x.dim(-1);
        let tokens = x.elem_count() / c.max(1);
        let flat = x.reshape(&[tokens, c])?;
        let outs = (0..tokens)
            .step_by(chunk)
            .map(|t0| self.forward(&flat.narrow(0, t0, chunk.min(tokens - t0))?, p))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = outs.iter().collect();
        Ok(Tensor::cat(&refs, 0)?.reshape(x.shape())?)
    }
}
