//! An f64 CPU forward of the LLaMA / Qwen2 decoder for `trainbench`'s check: the log
//! probability of each token's target, from weights read back from the GPU by their HF names.
//! Written from the HF modelling code (RMSNorm, rotate-half rotary, grouped-query causal
//! attention, SwiGLU), not from `models`, so that the two can disagree.

use std::collections::HashMap;

use models::Config;

/// Weights by HF name (`model.layers.0.self_attn.q_proj.weight`, ...), row-major.
pub type HostWeights = HashMap<String, Vec<f32>>;

fn get<'a>(w: &'a HostWeights, name: &str) -> &'a [f32] {
    w.get(name)
        .unwrap_or_else(|| panic!("decoder_ref: no weight {name}"))
}

/// x (n, d_in) times W^T (W (d_out, d_in)) plus bias: (n, d_out).
fn linear(x: &[f64], n: usize, w: &[f32], d_out: usize, bias: Option<&[f32]>) -> Vec<f64> {
    let d_in = x.len() / n;
    assert_eq!(w.len(), d_out * d_in, "decoder_ref: linear shape");
    let mut out = vec![0.0; n * d_out];
    for i in 0..n {
        let xi = &x[i * d_in..(i + 1) * d_in];
        for o in 0..d_out {
            let wo = &w[o * d_in..(o + 1) * d_in];
            let dot: f64 = xi.iter().zip(wo).map(|(&a, &b)| a * b as f64).sum();
            out[i * d_out + o] = dot + bias.map_or(0.0, |b| b[o] as f64);
        }
    }
    out
}

/// x / sqrt(mean(x^2) + eps) * weight, row by row.
fn rms_norm(x: &[f64], weight: &[f32], eps: f64) -> Vec<f64> {
    let d = weight.len();
    let mut out = vec![0.0; x.len()];
    for (row, o) in x.chunks(d).zip(out.chunks_mut(d)) {
        let r = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
        for j in 0..d {
            o[j] = row[j] * r * weight[j] as f64;
        }
    }
    out
}

/// Rotary embedding in place on (b, t, heads, d) rows, rotate-half pairs (j, j + d/2).
fn rope(x: &mut [f64], t: usize, heads: usize, d: usize, inv_freq: &[f32]) {
    for (r, v) in x.chunks_mut(d).enumerate() {
        let pos = ((r / heads) % t) as f64;
        for j in 0..d / 2 {
            let (s, c) = (pos * inv_freq[j] as f64).sin_cos();
            let (a, b) = (v[j], v[j + d / 2]);
            v[j] = a * c - b * s;
            v[j + d / 2] = b * c + a * s;
        }
    }
}

/// Causal attention: q (b, t, hq, d), k and v (b, t, hkv, d) -> (b, t, hq, d).
fn attention(cfg: &Config, q: &[f64], k: &[f64], v: &[f64], b: usize, t: usize) -> Vec<f64> {
    let (hq, hkv, d) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; b * t * hq * d];
    for bi in 0..b {
        for h in 0..hq {
            let g = h / (hq / hkv);
            for i in 0..t {
                let qi = &q[((bi * t + i) * hq + h) * d..][..d];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        let kj = &k[((bi * t + j) * hkv + g) * d..][..d];
                        scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                let o = &mut out[((bi * t + i) * hq + h) * d..][..d];
                for (j, ej) in e.iter().enumerate() {
                    let vj = &v[((bi * t + j) * hkv + g) * d..][..d];
                    for c in 0..d {
                        o[c] += ej / z * vj[c];
                    }
                }
            }
        }
    }
    out
}

/// log p(targets[i]) for every position of `ids` (b x t, row-major) under the decoder.
pub fn target_log_probs(
    cfg: &Config,
    w: &HostWeights,
    ids: &[u32],
    targets: &[u32],
    b: usize,
    t: usize,
) -> Vec<f64> {
    let (h, n) = (cfg.hidden_size, b * t);
    let (hq, hkv, d) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    let eps = cfg.rms_norm_eps;
    let inv_freq = cfg.inv_freq();
    let embed = get(w, "model.embed_tokens.weight");
    let mut x: Vec<f64> = ids
        .iter()
        .flat_map(|&id| embed[id as usize * h..(id as usize + 1) * h].iter())
        .map(|&v| v as f64)
        .collect();
    let bias = |name: String| cfg.qkv_bias.then(|| get(w, &name));
    for l in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let hn = rms_norm(&x, get(w, &p("input_layernorm.weight")), eps);
        let proj = |name: &str, out: usize| {
            linear(
                &hn,
                n,
                get(w, &p(&format!("self_attn.{name}.weight"))),
                out,
                bias(p(&format!("self_attn.{name}.bias"))),
            )
        };
        let (mut q, mut k, v) = (
            proj("q_proj", hq * d),
            proj("k_proj", hkv * d),
            proj("v_proj", hkv * d),
        );
        rope(&mut q, t, hq, d, &inv_freq);
        rope(&mut k, t, hkv, d, &inv_freq);
        let y = attention(cfg, &q, &k, &v, b, t);
        let o_bias = cfg.o_bias.then(|| get(w, &p("self_attn.o_proj.bias")));
        let o = linear(&y, n, get(w, &p("self_attn.o_proj.weight")), h, o_bias);
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        let hn = rms_norm(&x, get(w, &p("post_attention_layernorm.weight")), eps);
        let i = cfg.intermediate_size;
        let gate = linear(&hn, n, get(w, &p("mlp.gate_proj.weight")), i, None);
        let up = linear(&hn, n, get(w, &p("mlp.up_proj.weight")), i, None);
        let act: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        let down = linear(&act, n, get(w, &p("mlp.down_proj.weight")), h, None);
        x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
    }
    let x = rms_norm(&x, get(w, "model.norm.weight"), eps);
    let head = if cfg.tie_word_embeddings {
        embed
    } else {
        get(w, "lm_head.weight")
    };
    let logits = linear(&x, n, head, cfg.vocab_size, None);
    logits
        .chunks(cfg.vocab_size)
        .zip(targets)
        .map(|(z, &y)| {
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            z[y as usize] - lse
        })
        .collect()
}
