//! The LLaMA / Qwen2 decoder, top to bottom as in the papers' diagram: token embedding,
//! N x (RMSNorm, attention with rotary embeddings and grouped-query heads, residual,
//! RMSNorm, SwiGLU MLP, residual), final RMSNorm, LM head (tied to the embedding or not).
//! Qwen2 is LLaMA with q/k/v biases: one decoder, a config flag. Weight names are HF's.

use engine::ops::{
    activation::swiglu,
    attention::{attention, KvCache},
    attention_block::{self, attention_f16},
    embedding::embedding,
};
use engine::{DType, Device, Tensor};
use std::cell::Cell;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::weights::{Init, Weights};

/// A `(rows, cols)` matrix over the vocabulary, stored as row chunks that each fit one GPU
/// binding (Qwen's 151,936 x 896 f32 embedding is 545 MB; lavapipe binds 128 MiB).
pub struct VocabMatrix {
    pub name: String,
    pub chunks: Vec<Tensor>,
    /// First vocabulary row of each chunk, and one past the last.
    pub offsets: Vec<usize>,
}

impl VocabMatrix {
    fn load(w: &Weights, name: &str, rows: usize, cols: usize, std: f32) -> Result<VocabMatrix> {
        let max_rows = ((w.device().max_binding_bytes() as usize / 4) / cols).max(1);
        let mut chunks = Vec::new();
        let mut offsets = vec![0];
        let mut start = 0;
        while start < rows {
            let len = max_rows.min(rows - start);
            chunks.push(w.get_rows(name, &[rows, cols], start..start + len, Init::Normal(std))?);
            start += len;
            offsets.push(start);
        }
        Ok(VocabMatrix {
            name: name.into(),
            chunks,
            offsets,
        })
    }

    fn vars(self) -> VocabMatrix {
        VocabMatrix {
            chunks: self.chunks.into_iter().map(Tensor::var).collect(),
            ..self
        }
    }

    /// Rows `ids` (host ids, `shape`) -> shape + [cols]: each chunk gathers the ids it holds
    /// (others read as zero rows) and the chunks' results are summed.
    fn gather(&self, dev: &Device, ids: &[u32], shape: &[usize]) -> Result<Tensor> {
        let mut out: Option<Tensor> = None;
        for (i, chunk) in self.chunks.iter().enumerate() {
            let (lo, hi) = (self.offsets[i] as u32, self.offsets[i + 1] as u32);
            let local: Vec<u32> = ids
                .iter()
                .map(|&id| {
                    if (lo..hi).contains(&id) {
                        id - lo
                    } else {
                        u32::MAX
                    }
                })
                .collect();
            let part = embedding(chunk, &Tensor::from_u32_slice(dev, &local, shape)?)?;
            out = Some(match out {
                Some(acc) => acc.add(&part)?,
                None => part,
            });
        }
        Ok(out.expect("a vocabulary matrix has at least one chunk"))
    }

    /// x @ self^T over all chunks: (.., cols) -> (.., rows).
    fn project(&self, x: &Tensor) -> Result<Tensor> {
        let parts: Vec<Tensor> = self
            .chunks
            .iter()
            .map(|c| x.linear(c, None))
            .collect::<engine::Result<_>>()?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        Ok(Tensor::cat(&refs, -1)?)
    }
}

/// The dtype the decoder's linear layers multiply in. Weights, gradients and the optimizer
/// state stay f32 (the master copy) either way; everything else runs in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Inputs and weights rounded to f16 for each product (f32 accumulation): on cooperative
    /// matrices (tensor cores) where the adapter has them.
    F16,
}

/// How the forward pass is computed (not what it computes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compute {
    pub precision: Precision,
    /// Keep only each decoder layer's input during training and recompute the layer in the
    /// backward pass (activation checkpointing: less memory, one more forward of compute).
    pub recompute: bool,
    /// How attention is computed in f16 (f32 always takes the flash kernels).
    pub attention: AttentionPath,
}

/// Which kernels compute self-attention during training in f16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionPath {
    /// Matmul blocks where they run on cooperative matrices and fit
    /// (`engine::ops::attention_block::applies`), else the flash kernels.
    #[default]
    Auto,
    /// The f32 flash kernels (`engine::ops::attention`).
    Flash,
    /// f16 matmul blocks wherever they fit, whatever kernel the products land on.
    Blocks,
}

#[derive(Clone)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(w: &Weights, out_dim: usize, in_dim: usize, bias: bool, std: f32) -> Result<Linear> {
        Ok(Linear {
            weight: w.get("weight", &[out_dim, in_dim], Init::Normal(std))?,
            bias: if bias {
                Some(w.get("bias", &[out_dim], Init::Zeros)?)
            } else {
                None
            },
        })
    }
    fn forward(&self, x: &Tensor, precision: Precision) -> Result<Tensor> {
        Ok(match precision {
            Precision::F32 => x.linear(&self.weight, self.bias.as_ref())?,
            // Cast inside the graph, so the f32 master weight receives the gradient.
            Precision::F16 => x
                .to_dtype(DType::F16)?
                .linear(&self.weight.to_dtype(DType::F16)?, self.bias.as_ref())?,
        })
    }
}

#[derive(Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &Config, w: &Weights, std: f32) -> Result<Mlp> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate_proj: Linear::new(&w.pp("gate_proj"), i, h, false, std)?,
            up_proj: Linear::new(&w.pp("up_proj"), i, h, false, std)?,
            down_proj: Linear::new(&w.pp("down_proj"), h, i, false, std)?,
        })
    }
    fn forward(&self, x: &Tensor, p: Precision) -> Result<Tensor> {
        let act = swiglu(&self.gate_proj.forward(x, p)?, &self.up_proj.forward(x, p)?)?;
        self.down_proj.forward(&act, p)
    }
}

#[derive(Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Config, w: &Weights, std: f32) -> Result<Attention> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (nq, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Ok(Attention {
            q_proj: Linear::new(&w.pp("q_proj"), nq * d, h, cfg.qkv_bias, std)?,
            k_proj: Linear::new(&w.pp("k_proj"), nkv * d, h, cfg.qkv_bias, std)?,
            v_proj: Linear::new(&w.pp("v_proj"), nkv * d, h, cfg.qkv_bias, std)?,
            o_proj: Linear::new(&w.pp("o_proj"), h, nq * d, cfg.o_bias, std)?,
            num_heads: nq,
            num_kv_heads: nkv,
            head_dim: d,
        })
    }

    /// q, k, v of `x` (B, T, C) as (B, heads, T, D), rotary applied to q and k.
    fn qkv(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        p: Precision,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t) = (x.dim(0), x.dim(1));
        let heads = |proj: &Linear, n: usize| -> Result<Tensor> {
            // (B, T, n*D) -> (B, n, T, D)
            Ok(proj
                .forward(x, p)?
                .reshape(&[b, t, n, self.head_dim])?
                .permute(&[0, 2, 1, 3])?)
        };
        let q = heads(&self.q_proj, self.num_heads)?.rope_with_freqs(positions, inv_freq)?;
        let k = heads(&self.k_proj, self.num_kv_heads)?.rope_with_freqs(positions, inv_freq)?;
        Ok((q, k, heads(&self.v_proj, self.num_kv_heads)?))
    }

    /// (B, Hq, T, D) attention output -> (B, T, C) through o_proj.
    fn output(&self, y: &Tensor, p: Precision) -> Result<Tensor> {
        let (b, t) = (y.dim(0), y.dim(2));
        let y = y
            .permute(&[0, 2, 1, 3])?
            .reshape(&[b, t, self.num_heads * self.head_dim])?;
        self.o_proj.forward(&y, p)
    }

    /// (B, T, C) -> (B, T, C), causal over T.
    fn forward(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        c: Compute,
    ) -> Result<Tensor> {
        let (q, k, v) = self.qkv(x, positions, inv_freq, c.precision)?;
        let (dev, t) = (q.device(), q.dim(2));
        let (hq, hkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let blocks = c.precision == Precision::F16
            && match c.attention {
                AttentionPath::Auto => attention_block::applies(dev, hq, hkv, t, d),
                AttentionPath::Flash => false,
                AttentionPath::Blocks => attention_block::fits(dev, hq, hkv, t),
            };
        let y = if blocks {
            let f16 = |t: &Tensor| t.to_dtype(DType::F16);
            attention_f16(&f16(&q)?, &f16(&k)?, &f16(&v)?, true, None)?
        } else {
            attention(&q, &k, &v, true, None)?
        };
        self.output(&y, c.precision)
    }

    /// The new tokens `x` (B, Tn, C) at `positions`, attending to the cache and themselves;
    /// their keys and values are appended to the cache. With `key_start` (u32, (B)), batch row
    /// b does not see cache positions before key_start[b] (its left padding).
    fn forward_cached(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        cache: &mut KvCache,
        key_start: Option<&Tensor>,
        p: Precision,
    ) -> Result<Tensor> {
        let (q, k, v) = self.qkv(x, positions, inv_freq, p)?;
        cache.append(&k, &v)?;
        let y = match key_start {
            Some(ks) => cache.attend_masked(&q, ks)?,
            None => cache.attend(&q)?,
        };
        self.output(&y, p)
    }
}

#[derive(Clone)]
struct DecoderLayer {
    input_layernorm: Tensor,
    self_attn: Attention,
    post_attention_layernorm: Tensor,
    mlp: Mlp,
    eps: f32,
}

impl DecoderLayer {
    fn new(cfg: &Config, w: &Weights, std: f32) -> Result<DecoderLayer> {
        let h = cfg.hidden_size;
        Ok(DecoderLayer {
            input_layernorm: w.get("input_layernorm.weight", &[h], Init::Ones)?,
            self_attn: Attention::new(cfg, &w.pp("self_attn"), std)?,
            post_attention_layernorm: w.get("post_attention_layernorm.weight", &[h], Init::Ones)?,
            mlp: Mlp::new(cfg, &w.pp("mlp"), std)?,
            eps: cfg.rms_norm_eps as f32,
        })
    }

    /// With `cache`, the tokens attend to the cached ones before them (inference), except
    /// those before `key_start` (see [`Attention::forward_cached`]).
    fn forward(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        cache: Option<&mut KvCache>,
        key_start: Option<&Tensor>,
        c: Compute,
    ) -> Result<Tensor> {
        let h = x.rms_norm(&self.input_layernorm, self.eps)?;
        let attn = match cache {
            Some(cache) => self.self_attn.forward_cached(
                &h,
                positions,
                inv_freq,
                cache,
                key_start,
                c.precision,
            )?,
            None => self.self_attn.forward(&h, positions, inv_freq, c)?,
        };
        let x = x.add(&attn)?;
        let h = x.rms_norm(&self.post_attention_layernorm, self.eps)?;
        Ok(x.add(&self.mlp.forward(&h, c.precision)?)?)
    }

    /// [`DecoderLayer::forward`] without a cache, keeping only `x` for the backward pass,
    /// which recomputes the layer (activation checkpointing).
    fn forward_recomputed(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        c: Compute,
    ) -> Result<Tensor> {
        let params: Vec<Tensor> = self.named().into_iter().map(|(_, t)| t).collect();
        let params: Vec<&Tensor> = params.iter().collect();
        let (layer, positions, inv_freq) = (self.clone(), positions.clone(), inv_freq.clone());
        Ok(engine::checkpoint(&[x], &params, move |xs| {
            layer
                .forward(&xs[0], &positions, &inv_freq, None, None, c)
                .map_err(|e| match e {
                    Error::Engine(e) => e,
                    other => engine::Error::Backward(other.to_string()),
                })
        })?)
    }

    /// The layer's weights under their HF names within the layer.
    fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "input_layernorm.weight".into(),
            self.input_layernorm.clone(),
        )];
        let a = &self.self_attn;
        for (n, lin) in [
            ("q_proj", &a.q_proj),
            ("k_proj", &a.k_proj),
            ("v_proj", &a.v_proj),
            ("o_proj", &a.o_proj),
        ] {
            out.push((format!("self_attn.{n}.weight"), lin.weight.clone()));
            if let Some(b) = &lin.bias {
                out.push((format!("self_attn.{n}.bias"), b.clone()));
            }
        }
        out.push((
            "post_attention_layernorm.weight".into(),
            self.post_attention_layernorm.clone(),
        ));
        for (n, lin) in [
            ("gate_proj", &self.mlp.gate_proj),
            ("up_proj", &self.mlp.up_proj),
            ("down_proj", &self.mlp.down_proj),
        ] {
            out.push((format!("mlp.{n}.weight"), lin.weight.clone()));
        }
        out
    }
}

/// A causal language model of the LLaMA / Qwen2 family.
pub struct Model {
    pub config: Config,
    embed_tokens: VocabMatrix,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    /// `None` when tied to the embedding.
    lm_head: Option<VocabMatrix>,
    inv_freq: Tensor,
    dev: Device,
    compute: Cell<Compute>,
}

impl Model {
    /// Build from `weights` (a checkpoint, or random init with std 0.02). With `trainable`,
    /// every weight is a variable that `backward` returns a gradient for.
    pub fn new(config: &Config, weights: &Weights, trainable: bool) -> Result<Model> {
        let std = 0.02;
        let (h, v) = (config.hidden_size, config.vocab_size);
        let w = weights.pp("model");
        let mut embed_tokens = VocabMatrix::load(&w, "embed_tokens.weight", v, h, std)?;
        embed_tokens.name = "model.embed_tokens.weight".into();
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::new(config, &w.pp(format!("layers.{i}")), std))
            .collect::<Result<Vec<_>>>()?;
        let norm = w.get("norm.weight", &[h], Init::Ones)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(VocabMatrix::load(weights, "lm_head.weight", v, h, std)?)
        };
        let dev = weights.device().clone();
        let inv_freq = config.inv_freq();
        let inv_freq = Tensor::from_slice(&dev, &inv_freq, &[inv_freq.len()])?;
        let mut model = Model {
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            inv_freq,
            dev,
            compute: Cell::new(Compute::default()),
        };
        if trainable {
            model = model.into_vars();
        }
        Ok(model)
    }

    fn into_vars(self) -> Model {
        let lin = |l: Linear| Linear {
            weight: l.weight.var(),
            bias: l.bias.map(Tensor::var),
        };
        let layers = self
            .layers
            .into_iter()
            .map(|l| DecoderLayer {
                input_layernorm: l.input_layernorm.var(),
                self_attn: Attention {
                    q_proj: lin(l.self_attn.q_proj),
                    k_proj: lin(l.self_attn.k_proj),
                    v_proj: lin(l.self_attn.v_proj),
                    o_proj: lin(l.self_attn.o_proj),
                    ..l.self_attn
                },
                post_attention_layernorm: l.post_attention_layernorm.var(),
                mlp: Mlp {
                    gate_proj: lin(l.mlp.gate_proj),
                    up_proj: lin(l.mlp.up_proj),
                    down_proj: lin(l.mlp.down_proj),
                },
                eps: l.eps,
            })
            .collect();
        Model {
            embed_tokens: self.embed_tokens.vars(),
            layers,
            norm: self.norm.var(),
            lm_head: self.lm_head.map(VocabMatrix::vars),
            ..self
        }
    }

    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// How later forward passes compute (precision, recomputation).
    pub fn set_compute(&self, compute: Compute) {
        self.compute.set(compute);
    }

    pub fn compute(&self) -> Compute {
        self.compute.get()
    }

    /// Final-normed hidden states (B, T, C) of `ids` (B x T, row-major, on the host).
    pub fn hidden_states(&self, ids: &[u32], batch: usize, seq_len: usize) -> Result<Tensor> {
        self.run(ids, batch, seq_len, None, None)
    }

    /// One KV cache per layer for `batch` sequences of up to `capacity` tokens.
    pub fn new_caches(&self, batch: usize, capacity: usize) -> Result<Vec<KvCache>> {
        let c = &self.config;
        (0..c.num_hidden_layers)
            .map(|_| {
                Ok(KvCache::new(
                    &self.dev,
                    batch,
                    c.num_key_value_heads,
                    capacity,
                    c.head_dim,
                )?)
            })
            .collect()
    }

    /// Hidden states of new tokens `ids` (B x Tn) that follow the tokens already in `caches`
    /// (whose keys and values they append). Inference only: run it under `no_grad`.
    pub fn hidden_states_cached(
        &self,
        ids: &[u32],
        batch: usize,
        caches: &mut [KvCache],
    ) -> Result<Tensor> {
        if caches.len() != self.layers.len() {
            return Err(Error::Engine(engine::Error::BadShape {
                op: "Model::hidden_states_cached",
                shape: vec![caches.len()],
                reason: format!("one cache per layer ({}) needed", self.layers.len()),
            }));
        }
        self.run(ids, batch, ids.len() / batch.max(1), Some(caches), None)
    }

    /// [`Model::hidden_states_cached`] for a left-padded batch: the first `pads[b]` positions
    /// of batch row b (in the caches and, while they last, in `ids`) are padding, hidden from
    /// every query of the row, and the row's positions count from after them (token t of the
    /// row sits at position t - pads[b], as if alone). Padding queries get meaningless (finite)
    /// hidden states. Inference only: run it under `no_grad`.
    pub fn hidden_states_cached_padded(
        &self,
        ids: &[u32],
        batch: usize,
        pads: &[usize],
        caches: &mut [KvCache],
    ) -> Result<Tensor> {
        if caches.len() != self.layers.len() || pads.len() != batch {
            return Err(Error::Engine(engine::Error::BadShape {
                op: "Model::hidden_states_cached_padded",
                shape: vec![caches.len(), pads.len()],
                reason: format!(
                    "one cache per layer ({}) and one pad per batch row ({batch}) needed",
                    self.layers.len()
                ),
            }));
        }
        self.run(
            ids,
            batch,
            ids.len() / batch.max(1),
            Some(caches),
            Some(pads),
        )
    }

    fn run(
        &self,
        ids: &[u32],
        batch: usize,
        seq_len: usize,
        mut caches: Option<&mut [KvCache]>,
        pads: Option<&[usize]>,
    ) -> Result<Tensor> {
        if ids.len() != batch * seq_len || ids.is_empty() {
            return Err(Error::Engine(engine::Error::DataLength {
                op: "Model::hidden_states",
                len: ids.len(),
                shape: vec![batch, seq_len],
                expected: batch * seq_len,
            }));
        }
        engine::ops::embedding::check_ids(ids, self.config.vocab_size)?;
        let start = caches
            .as_ref()
            .and_then(|c| c.first())
            .map_or(0, |c| c.len()) as u32;
        let (positions, key_start) = match pads {
            None => {
                let positions: Vec<u32> = (start..start + seq_len as u32).collect();
                (
                    Tensor::from_u32_slice(&self.dev, &positions, &[seq_len])?,
                    None,
                )
            }
            Some(pads) => {
                // (B, Tn): padding positions clamp to 0 (their outputs are never used).
                let positions: Vec<u32> = pads
                    .iter()
                    .flat_map(|&pad| {
                        (start..start + seq_len as u32).map(move |t| t.saturating_sub(pad as u32))
                    })
                    .collect();
                let pads: Vec<u32> = pads.iter().map(|&p| p as u32).collect();
                (
                    Tensor::from_u32_slice(&self.dev, &positions, &[batch, seq_len])?,
                    Some(Tensor::from_u32_slice(&self.dev, &pads, &[batch])?),
                )
            }
        };
        let mut x = self
            .embed_tokens
            .gather(&self.dev, ids, &[batch, seq_len])?;
        let compute = self.compute.get();
        let recompute = compute.recompute && caches.is_none() && engine::is_grad_enabled();
        for (i, layer) in self.layers.iter().enumerate() {
            x = if recompute {
                layer.forward_recomputed(&x, &positions, &self.inv_freq, compute)?
            } else {
                let cache = caches.as_deref_mut().map(|c| &mut c[i]);
                layer.forward(
                    &x,
                    &positions,
                    &self.inv_freq,
                    cache,
                    key_start.as_ref(),
                    compute,
                )?
            };
        }
        Ok(x.rms_norm(&self.norm, self.config.rms_norm_eps as f32)?)
    }

    /// The LM head: (.., C) -> (.., V) logits.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head
            .as_ref()
            .unwrap_or(&self.embed_tokens)
            .project(hidden)
    }

    /// Logits (B, T, V) of `ids` (B x T on the host).
    pub fn forward(&self, ids: &[u32], batch: usize, seq_len: usize) -> Result<Tensor> {
        self.logits(&self.hidden_states(ids, batch, seq_len)?)
    }

    /// The LM head's weight chunks (the embedding's when tied).
    pub fn lm_head(&self) -> &VocabMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// The operands of `lm_head_objective` / `lm_head_log_probs` for final-normed hidden
    /// states `hidden` (N, d), in the compute precision: `hidden` and the LM head's chunks as
    /// they are in f32, or both cast to f16 (recorded casts, so gradients reach the f32
    /// weights) so that the vocabulary products run on the f16 kernels (cooperative matrices
    /// where the adapter has them), as the linear layers do.
    pub fn lm_head_operands(&self, hidden: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let chunks = &self.lm_head().chunks;
        Ok(match self.compute().precision {
            Precision::F32 => (hidden.clone(), chunks.clone()),
            Precision::F16 => (
                hidden.to_dtype(DType::F16)?,
                chunks
                    .iter()
                    .map(|c| c.to_dtype(DType::F16))
                    .collect::<std::result::Result<_, _>>()?,
            ),
        })
    }

    /// Every weight under its HF name; a vocabulary matrix split into chunks appears once
    /// per chunk, as `name` then `name#1`, `name#2`, ...
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let vocab = |m: &VocabMatrix, out: &mut Vec<(String, Tensor)>| {
            for (i, c) in m.chunks.iter().enumerate() {
                let name = if i == 0 {
                    m.name.clone()
                } else {
                    format!("{}#{i}", m.name)
                };
                out.push((name, c.clone()));
            }
        };
        vocab(&self.embed_tokens, &mut out);
        for (i, l) in self.layers.iter().enumerate() {
            for (name, t) in l.named() {
                out.push((format!("model.layers.{i}.{name}"), t));
            }
        }
        out.push(("model.norm.weight".into(), self.norm.clone()));
        if let Some(head) = &self.lm_head {
            vocab(head, &mut out);
        }
        out
    }
}
