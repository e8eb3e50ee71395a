//! `config.json` of LLaMA- and Qwen2-family checkpoints, in transformers' 4 and 5 forms,
//! normalised into one [`Config`]; rotary frequencies with Llama 3 and linear scaling.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

/// How rotary frequencies are scaled (HF `rope_scaling` / `rope_parameters`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// A decoder's hyper-parameters, whatever form its config.json took.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q, k and v projections (always for Qwen2; `attention_bias` for LLaMA,
    /// which then also has one on o_proj).
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The config.json as read, written back unchanged when a checkpoint is saved.
    pub raw: Value,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    vocab_size: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    hidden_act: Option<String>,
    use_sliding_window: Option<bool>,
}

impl Config {
    /// Read and check a config.json.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::from_json(&text, path)
    }

    /// Parse config.json text; `path` names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Config> {
        let json_err = |e: serde_json::Error| Error::Json {
            path: path.into(),
            msg: e.to_string(),
        };
        let raw: Value = serde_json::from_str(text).map_err(json_err)?;
        let c: RawConfig = serde_json::from_value(raw.clone()).map_err(json_err)?;
        let p = path.to_path_buf();
        let model_type = c.model_type.clone().unwrap_or_default();
        let arch = match model_type.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            _ => {
                return Err(Error::UnknownArchitecture {
                    path: p,
                    model_type,
                })
            }
        };
        let need = |v: Option<usize>, field: &'static str| -> Result<usize> {
            match v {
                Some(0) => Err(bad(&p, field, "must be positive")),
                Some(x) if x > 1 << 24 => Err(bad(&p, field, &format!("{x} is implausibly large"))),
                Some(x) => Ok(x),
                None => Err(bad(&p, field, "missing")),
            }
        };
        let hidden_size = need(c.hidden_size, "hidden_size")?;
        let num_attention_heads = need(c.num_attention_heads, "num_attention_heads")?;
        let num_key_value_heads = need(
            c.num_key_value_heads.or(Some(num_attention_heads)),
            "num_key_value_heads",
        )?;
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(bad(
                &p,
                "num_key_value_heads",
                &format!("{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"),
            ));
        }
        let head_dim = match c.head_dim {
            Some(d) => need(Some(d), "head_dim")?,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(bad(
                    &p,
                    "head_dim",
                    "missing, and hidden_size is not a multiple of the heads",
                ))
            }
        };
        if head_dim % 2 != 0 {
            return Err(bad(&p, "head_dim", "must be even for rotary embeddings"));
        }
        if let Some(act) = &c.hidden_act {
            if act != "silu" {
                return Err(bad(
                    &p,
                    "hidden_act",
                    &format!("{act:?} is not supported (silu is)"),
                ));
            }
        }
        if c.mlp_bias == Some(true) {
            return Err(bad(&p, "mlp_bias", "MLP biases are not supported"));
        }
        if c.use_sliding_window == Some(true) {
            return Err(bad(
                &p,
                "use_sliding_window",
                "sliding-window attention is not supported",
            ));
        }
        let rms_norm_eps = c.rms_norm_eps.unwrap_or(1e-6);
        if !(rms_norm_eps > 0.0 && rms_norm_eps < 1.0) {
            return Err(bad(
                &p,
                "rms_norm_eps",
                &format!("{rms_norm_eps} is outside (0, 1)"),
            ));
        }
        // transformers 5 keeps theta and scaling in rope_parameters; 4 in rope_theta/rope_scaling.
        let rope = c
            .rope_parameters
            .as_ref()
            .or(c.rope_scaling.as_ref())
            .filter(|v| !v.is_null());
        let rope_theta = c
            .rope_theta
            .or_else(|| {
                rope.and_then(|r| r.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10_000.0);
        if !(rope_theta > 0.0 && rope_theta.is_finite()) {
            return Err(bad(
                &p,
                "rope_theta",
                &format!("{rope_theta} must be positive"),
            ));
        }
        let rope_scaling = match rope {
            None => RopeScaling::None,
            Some(r) => parse_rope_scaling(r, &p)?,
        };
        let qkv_bias = match arch {
            Arch::Qwen2 => true,
            Arch::Llama => c.attention_bias.unwrap_or(false),
        };
        Ok(Config {
            arch,
            hidden_size,
            intermediate_size: need(c.intermediate_size, "intermediate_size")?,
            num_hidden_layers: need(c.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            vocab_size: need(c.vocab_size, "vocab_size")?,
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias: arch == Arch::Llama && qkv_bias,
            rope_theta,
            rope_scaling,
            max_position_embeddings: c.max_position_embeddings.unwrap_or(4096),
            bos_token_id: token_ids(c.bos_token_id.as_ref()).first().copied(),
            eos_token_ids: token_ids(c.eos_token_id.as_ref()),
            raw,
        })
    }

    /// Rotary inverse frequencies (head_dim / 2 of them) computed in f32 as transformers
    /// does: 1 / theta^(2i / head_dim), then the configured scaling.
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim;
        let base = self.rope_theta as f32;
        let inv: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
            .collect();
        match self.rope_scaling {
            RopeScaling::None => inv,
            RopeScaling::Linear { factor } => inv.iter().map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                inv.iter()
                    .map(|&f| {
                        let f = f as f64;
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen; // wavelen is finite
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                        } else {
                            scaled as f32
                        }
                    })
                    .collect()
            }
        }
    }

    /// Number of parameters of the decoder (embedding, layers, norm, untied head).
    pub fn num_parameters(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let attn = h * q
            + 2 * h * kv
            + q * h
            + if self.qkv_bias { q + 2 * kv } else { 0 }
            + if self.o_bias { h } else { 0 };
        let layer = attn + 3 * h * i + 2 * h;
        v * h
            + self.num_hidden_layers * layer
            + h
            + if self.tie_word_embeddings { 0 } else { v * h }
    }
}

fn bad(path: &Path, field: &'static str, msg: &str) -> Error {
    Error::Config {
        path: PathBuf::from(path),
        field,
        msg: msg.to_string(),
    }
}

fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_rope_scaling(r: &Value, path: &Path) -> Result<RopeScaling> {
    let kind = r
        .get("rope_type")
        .or_else(|| r.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |key: &'static str| -> Result<f64> {
        r.get(key)
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| {
                bad(
                    path,
                    "rope_scaling",
                    &format!("{kind} scaling needs a positive `{key}`"),
                )
            })
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => {
            let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
            if high <= low {
                return Err(bad(
                    path,
                    "rope_scaling",
                    "high_freq_factor must exceed low_freq_factor",
                ));
            }
            Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            })
        }
        other => Err(bad(
            path,
            "rope_scaling",
            &format!("rope type {other:?} is not supported (default, linear, llama3 are)"),
        )),
    }
}
