//! The LLaMA / Qwen2 decoder, top to bottom as in the papers' diagram: token embedding,
//! N x (RMSNorm, attention with rotary embeddings and grouped-query heads, residual,
//! RMSNorm, SwiGLU MLP, residual), final RMSNorm, LM head (tied to the embedding or not).
//! Qwen2 is LLaMA with q/k/v biases: one decoder, a config flag. Weight names are HF's, except
//! that q/k/v and gate/up are each stacked into one tensor (one product instead of several).

use engine::ops::cast::CastCache;
use engine::ops::{
    attention::{attention, attention_packed, KvCache},
    attention_block::{self, attention_f16},
    embedding::embedding,
    rope::split_heads_as,
};
use engine::{DType, Device, Tensor};
use std::cell::Cell;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::hf_layout::{HfRows, Param};
use crate::layers::{Linear, Mlp};
use crate::weights::{Init, Weights};

/// A `(rows, cols)` matrix over the vocabulary, stored as row chunks that each fit one GPU
/// binding (Qwen's 151,936 x 896 f32 embedding is 545 MB; lavapipe binds 128 MiB).
pub struct VocabMatrix {
    pub name: String,
    pub chunks: Vec<Tensor>,
    /// First vocabulary row of each chunk, and one past the last.
    pub offsets: Vec<usize>,
    /// Each chunk's f16 copy for the f16 LM head, remade only after the chunk changes.
    casts: Vec<CastCache>,
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
            casts: chunks.iter().map(|_| CastCache::new()).collect(),
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

impl Precision {
    /// The dtype the linear layers' inputs are stored in (the norms and SwiGLU write them
    /// so, rounded as a cast would, saving a cast pass each).
    pub(crate) fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }
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
struct Attention {
    /// q_proj, k_proj and v_proj stacked: one product.
    qkv: Linear,
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
            qkv: Linear::new(
                w,
                "qkv_proj",
                &[("q_proj", nq * d), ("k_proj", nkv * d), ("v_proj", nkv * d)],
                h,
                cfg.qkv_bias,
                std,
            )?,
            o_proj: Linear::new(w, "o_proj", &[("o_proj", h)], nq * d, cfg.o_bias, std)?,
            num_heads: nq,
            num_kv_heads: nkv,
            head_dim: d,
        })
    }

    /// q, k, v of `x` (B, T, C) as (B, heads, T, D), rotary applied to q and k, stored as
    /// `dtype`.
    fn qkv(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        p: Precision,
        dtype: DType,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (nq, nkv) = (self.num_heads, self.num_kv_heads);
        // (B, T, (Hq + 2 Hkv) D) -> q (B, Hq, T, D), k, v (B, Hkv, T, D) in one pass.
        let groups = [(nq, true), (nkv, true), (nkv, false)];
        let fused = self.qkv.forward(x, p)?;
        let qkv = split_heads_as(&fused, &groups, positions, inv_freq, dtype)?;
        let [q, k, v]: [Tensor; 3] = qkv.try_into().expect("three groups, three tensors");
        Ok((q, k, v))
    }

    /// (B, Hq, T, D) attention output -> (B, T, C) through o_proj.
    fn output(&self, y: &Tensor, p: Precision) -> Result<Tensor> {
        let (b, t) = (y.dim(0), y.dim(2));
        // Heads back beside each other, in the products' dtype (one pass: no cast after).
        let y = y.permute_as(&[0, 2, 1, 3], p.dtype())?.reshape(&[
            b,
            t,
            self.num_heads * self.head_dim,
        ])?;
        self.o_proj.forward(&y, p)
    }

    /// (B, T, C) -> (B, T, C), causal over T; with `seq_start` (u32, (B, T)), each query sees
    /// only the keys of its own sequence (packed rows, on the flash kernels).
    fn forward(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        seq_start: Option<&Tensor>,
        c: Compute,
    ) -> Result<Tensor> {
        if let Some(starts) = seq_start {
            let (q, k, v) = self.qkv(x, positions, inv_freq, c.precision, DType::F32)?;
            return self.output(&attention_packed(&q, &k, &v, starts, None)?, c.precision);
        }
        let (dev, t) = (x.device(), x.dim(1));
        let (hq, hkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let blocks = c.precision == Precision::F16
            && match c.attention {
                AttentionPath::Auto => attention_block::applies(dev, hq, hkv, t, d),
                AttentionPath::Flash => false,
                AttentionPath::Blocks => attention_block::fits(dev, hq, hkv, t),
            };
        let y = if blocks {
            // The heads come out of the split in f16, ready for the f16 products.
            let (q, k, v) = self.qkv(x, positions, inv_freq, c.precision, DType::F16)?;
            attention_f16(&q, &k, &v, true, None)?
        } else {
            let (q, k, v) = self.qkv(x, positions, inv_freq, c.precision, DType::F32)?;
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
        let (q, k, v) = self.qkv(x, positions, inv_freq, p, DType::F32)?;
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
    /// those before a key start (see [`Attention::forward_cached`]); without, sequence starts
    /// keep packed sequences apart.
    fn forward(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        cache: Option<&mut KvCache>,
        hide: Hide,
        c: Compute,
    ) -> Result<Tensor> {
        let dtype = c.precision.dtype();
        let h = x.rms_norm_as(&self.input_layernorm, self.eps, dtype)?;
        let attn = match cache {
            Some(cache) => self.self_attn.forward_cached(
                &h,
                positions,
                inv_freq,
                cache,
                hide.key_start(),
                c.precision,
            )?,
            None => self
                .self_attn
                .forward(&h, positions, inv_freq, hide.seq_start(), c)?,
        };
        let x = x.add(&attn)?;
        let tokens = x.elem_count() / x.dim(-1).max(1);
        let mlp = match self.mlp.chunk_tokens(tokens, x.device()) {
            None => {
                let h = x.rms_norm_as(&self.post_attention_layernorm, self.eps, dtype)?;
                self.mlp.forward(&h, c.precision)?
            }
            Some(chunk) => {
                // f32, which the chunks are cut from (each is cast by its own product).
                let h = x.rms_norm(&self.post_attention_layernorm, self.eps)?;
                self.mlp.forward_chunked(&h, chunk, c.precision)?
            }
        };
        Ok(x.add(&mlp)?)
    }

    /// [`DecoderLayer::forward`] without a cache, keeping only `x` for the backward pass,
    /// which recomputes the layer (activation checkpointing).
    fn forward_recomputed(
        &self,
        x: &Tensor,
        positions: &Tensor,
        inv_freq: &Tensor,
        seq_start: Option<&Tensor>,
        c: Compute,
    ) -> Result<Tensor> {
        let params: Vec<Tensor> = self.named().into_iter().map(|p| p.tensor).collect();
        let params: Vec<&Tensor> = params.iter().collect();
        let (layer, positions, inv_freq) = (self.clone(), positions.clone(), inv_freq.clone());
        let seq_start = seq_start.cloned();
        Ok(engine::checkpoint(&[x], &params, move |xs| {
            let hide = seq_start.as_ref().map_or(Hide::Nothing, Hide::SeqStart);
            layer
                .forward(&xs[0], &positions, &inv_freq, None, hide, c)
                .map_err(|e| match e {
                    Error::Engine(e) => e,
                    other => engine::Error::Backward(other.to_string()),
                })
        })?)
    }

    /// The layer's linear maps, in HF's order, with the module each is in.
    fn linears(&self) -> [(&'static str, &Linear); 4] {
        [
            ("self_attn", &self.self_attn.qkv),
            ("self_attn", &self.self_attn.o_proj),
            ("mlp", &self.mlp.gate_up),
            ("mlp", &self.mlp.down_proj),
        ]
    }

    /// The layer's weights under their names within the layer (HF's, or a stack's).
    fn named(&self) -> Vec<Param> {
        let [qkv, o, gate_up, down] = self.linears();
        let named = |(scope, lin): (&'static str, &Linear)| {
            lin.named().into_iter().map(move |p| p.within(scope))
        };
        let mut out = vec![Param::single(
            "input_layernorm.weight",
            &self.input_layernorm,
        )];
        out.extend(named(qkv).chain(named(o)));
        out.push(Param::single(
            "post_attention_layernorm.weight",
            &self.post_attention_layernorm,
        ));
        out.extend(named(gate_up).chain(named(down)));
        out
    }
}

/// What hides keys from a layer's queries beyond the causal mask.
#[derive(Clone, Copy)]
enum Hide<'a> {
    Nothing,
    /// u32 (B): a left-padded batch row's first real position (with a KV cache).
    KeyStart(&'a Tensor),
    /// u32 (B, T): the first token of each query's sequence (packed rows).
    SeqStart(&'a Tensor),
}

impl<'a> Hide<'a> {
    fn key_start(self) -> Option<&'a Tensor> {
        match self {
            Hide::KeyStart(t) => Some(t),
            _ => None,
        }
    }
    fn seq_start(self) -> Option<&'a Tensor> {
        match self {
            Hide::SeqStart(t) => Some(t),
            _ => None,
        }
    }
}

/// Where the tokens of a forward pass sit, beyond one sequence per batch row from position 0.
#[derive(Clone, Copy)]
enum Layout<'a> {
    Plain,
    /// Left padding per batch row (with KV caches).
    Padded(&'a [usize]),
    /// Each token's position in its own sequence (B x T): sequences packed into rows.
    Packed(&'a [u32]),
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
        let layers = self
            .layers
            .into_iter()
            .map(|l| DecoderLayer {
                input_layernorm: l.input_layernorm.var(),
                self_attn: Attention {
                    qkv: l.self_attn.qkv.vars(),
                    o_proj: l.self_attn.o_proj.vars(),
                    ..l.self_attn
                },
                post_attention_layernorm: l.post_attention_layernorm.var(),
                mlp: Mlp {
                    gate_up: l.mlp.gate_up.vars(),
                    down_proj: l.mlp.down_proj.vars(),
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
    ///
    /// With recomputation, the decoder layers' f16 weight copies are made at each use and
    /// not kept: a recomputed layer's copies then live only through its own backward (one
    /// layer's worth at a time, not 2 bytes for every parameter), for one cast pass over the
    /// layer weights per forward and per recomputation.
    pub fn set_compute(&self, compute: Compute) {
        self.compute.set(compute);
        for (_, lin) in self.layers.iter().flat_map(DecoderLayer::linears) {
            for cast in &lin.casts {
                cast.set_retain(!compute.recompute);
            }
        }
    }

    pub fn compute(&self) -> Compute {
        self.compute.get()
    }

    /// Final-normed hidden states (B, T, C) of `ids` (B x T, row-major, on the host).
    pub fn hidden_states(&self, ids: &[u32], batch: usize, seq_len: usize) -> Result<Tensor> {
        self.run(ids, batch, seq_len, None, Layout::Plain)
    }

    /// [`Model::hidden_states`] of rows that pack several sequences one after another:
    /// `positions` (B x T) gives each token's position in its own sequence (0 where one
    /// starts, then counting up), and no token sees another sequence's. Each sequence's hidden
    /// states are what it gets alone, gradients included.
    pub fn hidden_states_packed(
        &self,
        ids: &[u32],
        batch: usize,
        seq_len: usize,
        positions: &[u32],
    ) -> Result<Tensor> {
        let bad = |reason: String| {
            Error::Engine(engine::Error::BadShape {
                op: "Model::hidden_states_packed",
                shape: vec![batch, seq_len],
                reason,
            })
        };
        if positions.len() != batch * seq_len {
            return Err(bad(format!(
                "{} positions for {} tokens",
                positions.len(),
                batch * seq_len
            )));
        }
        for (i, &p) in positions.iter().enumerate() {
            let t = i % seq_len.max(1);
            if p != 0 && (t == 0 || p != positions[i - 1].wrapping_add(1)) {
                return Err(bad(format!(
                    "position {p} at token {t} of row {} follows neither a sequence's start \
                     nor the position before it",
                    i / seq_len
                )));
            }
        }
        self.run(ids, batch, seq_len, None, Layout::Packed(positions))
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
        self.run(
            ids,
            batch,
            ids.len() / batch.max(1),
            Some(caches),
            Layout::Plain,
        )
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
            Layout::Padded(pads),
        )
    }

    fn run(
        &self,
        ids: &[u32],
        batch: usize,
        seq_len: usize,
        mut caches: Option<&mut [KvCache]>,
        layout: Layout,
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
        let (positions, key_start, seq_start) = match layout {
            Layout::Plain => {
                let positions: Vec<u32> = (start..start + seq_len as u32).collect();
                (
                    Tensor::from_u32_slice(&self.dev, &positions, &[seq_len])?,
                    None,
                    None,
                )
            }
            Layout::Packed(positions) => {
                // A token's sequence starts `position` tokens before it.
                let starts: Vec<u32> = positions
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| (i % seq_len) as u32 - p)
                    .collect();
                let shape = [batch, seq_len];
                (
                    Tensor::from_u32_slice(&self.dev, positions, &shape)?,
                    None,
                    Some(Tensor::from_u32_slice(&self.dev, &starts, &shape)?),
                )
            }
            Layout::Padded(pads) => {
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
                    None,
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
                layer.forward_recomputed(
                    &x,
                    &positions,
                    &self.inv_freq,
                    seq_start.as_ref(),
                    compute,
                )?
            } else {
                let cache = caches.as_deref_mut().map(|c| &mut c[i]);
                layer.forward(
                    &x,
                    &positions,
                    &self.inv_freq,
                    cache,
                    match (&key_start, &seq_start) {
                        (Some(ks), _) => Hide::KeyStart(ks),
                        (None, Some(ss)) => Hide::SeqStart(ss),
                        (None, None) => Hide::Nothing,
                    },
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
                    .zip(&self.lm_head().casts)
                    .map(|(c, cache)| cache.cast(c, DType::F16))
                    .collect::<std::result::Result<_, _>>()?,
            ),
        })
    }

    /// Free the f16 copies of the weights kept between passes (they are remade on the next
    /// f16 pass): before an optimizer step, which makes them stale anyway, so that they do
    /// not take memory while the optimizer's state does.
    pub fn release_casts(&self) {
        let vocab = [Some(&self.embed_tokens), self.lm_head.as_ref()];
        for m in vocab.into_iter().flatten() {
            m.casts.iter().for_each(CastCache::clear);
        }
        for (_, lin) in self.layers.iter().flat_map(DecoderLayer::linears) {
            lin.casts.iter().for_each(CastCache::clear);
        }
    }

    /// Every trainable tensor under its name: HF's, except where the model stacks HF
    /// projections into one tensor (`self_attn.qkv_proj`, `mlp.gate_up_proj`); a vocabulary
    /// matrix split into chunks appears once per chunk, as `name` then `name#1`, `name#2`,
    /// ... (see [`Model::parameter_layout`] for the HF tensors each holds).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.parameter_layout()
            .into_iter()
            .map(|p| (p.name, p.tensor))
            .collect()
    }

    /// Every parameter as [`Model::parameters`] lists them, with the HF rows each holds.
    pub fn parameter_layout(&self) -> Vec<Param> {
        let mut out = Vec::new();
        let vocab = |m: &VocabMatrix, out: &mut Vec<Param>| {
            let total = m.offsets.last().copied().unwrap_or(0);
            for (i, c) in m.chunks.iter().enumerate() {
                let name = if i == 0 {
                    m.name.clone()
                } else {
                    format!("{}#{i}", m.name)
                };
                out.push(Param {
                    name,
                    tensor: c.clone(),
                    hf: vec![HfRows {
                        name: m.name.clone(),
                        total,
                        rows: m.offsets[i]..m.offsets[i + 1],
                    }],
                });
            }
        };
        vocab(&self.embed_tokens, &mut out);
        for (i, l) in self.layers.iter().enumerate() {
            let scope = format!("model.layers.{i}");
            out.extend(l.named().into_iter().map(|p| p.within(&scope)));
        }
        out.push(Param::single("model.norm.weight", &self.norm));
        if let Some(head) = &self.lm_head {
            vocab(head, &mut out);
        }
        out
    }
}
