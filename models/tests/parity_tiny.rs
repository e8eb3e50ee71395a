//! Tiny random-initialised `llama` and `qwen2` models against HF transformers (float32, CPU,
//! recorded by tests/scripts/make_hf_references.py): logits to 1e-4 and every parameter's
//! gradient of the next-token cross-entropy to 1e-3, relative to each tensor's largest value;
//! the same with layer recomputation (activation checkpointing), with the linear layers in
//! f16 (mixed precision) to 1e-2 / 3e-2, and through the trainer's fused LM head objective in
//! f32 and f16.

mod common;
use common::*;

use engine::ops::objective::{lm_head_objective, Objective};
use engine::{DType, Tensor};
use models::{AttentionPath, Compute, Config, Model, Precision, Weights};
use safetensors::SafeTensors;

fn f32s(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (data, t.shape().to_vec())
}

/// max |got - want| / max |want|
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0f64, |m, &w| m.max(w.abs() as f64))
        .max(1e-30);
    got.iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()))
        / scale
}

/// Mean next-token cross-entropy of `logits` (B, T, V) for `ids`, as HF's causal LM loss.
fn next_token_loss(logits: &Tensor, ids: &[u32], b: usize, t: usize) -> Tensor {
    let v = logits.dim(-1);
    let mut onehot = vec![0f32; b * (t - 1) * v];
    for i in 0..b {
        for j in 0..t - 1 {
            onehot[(i * (t - 1) + j) * v + ids[i * t + j + 1] as usize] = 1.0;
        }
    }
    let onehot = Tensor::from_slice(logits.device(), &onehot, &[b, t - 1, v]).unwrap();
    let logp = logits.narrow(1, 0, t - 1).unwrap().log_softmax().unwrap();
    logp.mul(&onehot)
        .unwrap()
        .sum_all()
        .unwrap()
        .scale(-1.0 / (b * (t - 1)) as f32)
        .unwrap()
}

/// Error bounds (logits, gradients) for a way of computing.
fn bounds(compute: Compute) -> (f64, f64) {
    match compute.precision {
        Precision::F32 => (1e-4, 1e-3),
        Precision::F16 => (1e-2, 3e-2),
    }
}

fn check(name: &str) {
    check_with(name, Compute::default());
}

fn check_with(name: &str, compute: Compute) {
    let (logit_tol, grad_tol) = bounds(compute);
    let (model, bytes, ids, b, t) = load(name, compute);
    let refs = SafeTensors::deserialize(&bytes).unwrap();
    let logits = model.forward(&ids, b, t).unwrap();
    let tape = engine::tape_len();
    let (want, shape) = f32s(&refs, "logits");
    assert_eq!(logits.shape(), &shape[..]);
    let err = rel_err(&logits.to_vec().unwrap(), &want);
    eprintln!("{name}: logits rel err {err:.2e}");
    assert!(err <= logit_tol, "{name}: logits error {err:.2e}");
    if !compute.recompute {
        let loss = next_token_loss(&logits, &ids, b, t);
        return check_grads(name, &model, &loss, &refs, grad_tol);
    }
    // With recomputation the tape holds one node per layer instead of the layer's ops (and
    // their activations): compare with the same model computed plainly.
    model.set_compute(Compute {
        recompute: false,
        ..compute
    });
    engine::clear_tape();
    let plain = model.forward(&ids, b, t).unwrap();
    let plain_nodes = engine::tape_len();
    assert!(
        tape * 4 < plain_nodes,
        "{name}: {tape} tape nodes with recomputation vs {plain_nodes} without"
    );
    engine::clear_tape();
    model.set_compute(compute);
    let logits = model.forward(&ids, b, t).unwrap();
    assert_eq!(logits.to_vec().unwrap(), plain.to_vec().unwrap());
    let loss = next_token_loss(&logits, &ids, b, t);
    check_grads(name, &model, &loss, &refs, grad_tol);
}

/// The model's fixture: the model in `compute`, its reference tensors' bytes, and the ids.
fn load(name: &str, compute: Compute) -> (Model, Vec<u8>, Vec<u32>, usize, usize) {
    let dir = fixture(&format!("hf/{name}"));
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    let model = Model::new(&config, &Weights::from_dir(&device(), &dir).unwrap(), true).unwrap();
    model.set_compute(compute);
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let refs = SafeTensors::deserialize(&bytes).unwrap();
    let ids_t = refs.tensor("input_ids").unwrap();
    let (b, t) = (ids_t.shape()[0], ids_t.shape()[1]);
    let ids: Vec<u32> = ids_t
        .data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u32)
        .collect();
    (model, bytes, ids, b, t)
}

/// The same loss and gradients through the trainer's path: final hidden states, then the fused
/// LM head objective (NLL, the last position masked) on `Model::lm_head_operands` (f16 casts
/// of the hidden states and the LM head in f16).
fn check_fused(name: &str, compute: Compute) {
    let (model, bytes, ids, b, t) = load(name, compute);
    let refs = SafeTensors::deserialize(&bytes).unwrap();
    let dev = model.device();
    let d = model.config.hidden_size;
    let hidden = model
        .hidden_states(&ids, b, t)
        .unwrap()
        .reshape(&[b * t, d])
        .unwrap();
    let mut targets = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    for i in 0..b {
        for j in 0..t - 1 {
            targets[i * t + j] = ids[i * t + j + 1];
            mask[i * t + j] = 1.0;
        }
    }
    let targets = Tensor::from_u32_slice(dev, &targets, &[b * t]).unwrap();
    let mask = Tensor::from_slice(dev, &mask, &[b * t]).unwrap();
    let (x, chunks) = model.lm_head_operands(&hidden).unwrap();
    assert_eq!(
        x.dtype(),
        match compute.precision {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    );
    let out = lm_head_objective(&x, &chunks, &targets, &mask, &Objective::Nll, None).unwrap();
    check_grads(name, &model, &out.loss, &refs, bounds(compute).1);
}

fn check_grads(name: &str, model: &Model, loss: &Tensor, refs: &SafeTensors, grad_tol: f64) {
    let (want_loss, _) = f32s(refs, "loss");
    let got_loss = loss.to_scalar().unwrap();
    assert!(
        ((got_loss - want_loss[0]) / want_loss[0]).abs() as f64 <= grad_tol / 100.0,
        "{name}: loss {got_loss} vs {}",
        want_loss[0]
    );

    let grads = loss.backward().unwrap();
    let mut checked = 0;
    // Gradients by HF name (stacked q/k/v and gate/up split, as a checkpoint is written).
    let by_hf = model
        .to_hf(|p| {
            assert_eq!(p.tensor.dtype(), DType::F32);
            let g = grads
                .get(&p.tensor)
                .unwrap_or_else(|| panic!("{name}: no gradient for {}", p.name));
            Ok(Some(g.to_vec()?))
        })
        .unwrap();
    for (pname, shape, got) in by_hf {
        let (want, want_shape) = f32s(refs, &format!("grad.{pname}"));
        assert_eq!(shape, want_shape, "{pname}");
        let err = rel_err(&got, &want);
        eprintln!("{name}: grad {pname} rel err {err:.2e}");
        assert!(
            err <= grad_tol,
            "{name}: gradient of {pname}: error {err:.2e}"
        );
        checked += 1;
    }
    let expected = refs
        .names()
        .iter()
        .filter(|n| n.starts_with("grad."))
        .count();
    assert_eq!(
        checked, expected,
        "{name}: every HF parameter has a counterpart"
    );
}

#[test]
fn tiny_llama_matches_hf() {
    check("tiny-llama");
}

#[test]
fn tiny_qwen2_matches_hf() {
    check("tiny-qwen2");
}

#[test]
fn tiny_qwen2_through_the_fused_objective_matches_hf() {
    check_fused("tiny-qwen2", Compute::default());
}

#[test]
fn tiny_llama_through_the_fused_objective_in_f16_matches_hf() {
    check_fused(
        "tiny-llama",
        Compute {
            precision: Precision::F16,
            attention: AttentionPath::Blocks,
            ..Default::default()
        },
    );
}

#[test]
fn tiny_llama_with_recomputation_matches_hf() {
    check_with(
        "tiny-llama",
        Compute {
            precision: Precision::F32,
            recompute: true,
            ..Default::default()
        },
    );
}

#[test]
fn tiny_qwen2_in_f16_matches_hf() {
    check_with(
        "tiny-qwen2",
        Compute {
            precision: Precision::F16,
            recompute: false,
            ..Default::default()
        },
    );
}

#[test]
fn tiny_qwen2_in_f16_with_block_attention_matches_hf() {
    // Auto takes the matmul blocks only on cooperative-matrix adapters: ask for them.
    check_with(
        "tiny-qwen2",
        Compute {
            precision: Precision::F16,
            attention: AttentionPath::Blocks,
            ..Default::default()
        },
    );
}

#[test]
fn tiny_llama_in_f16_with_recomputation_matches_hf() {
    check_with(
        "tiny-llama",
        Compute {
            precision: Precision::F16,
            recompute: true,
            attention: AttentionPath::Blocks,
        },
    );
}

/// Peak GPU memory of a forward and backward pass beyond the weights and their gradients
/// (the activations and temporaries), in bytes.
fn peak_of_step(model: &Model, ids: &[u32], b: usize, t: usize) -> u64 {
    let dev = model.device();
    let weights = dev.pool_stats().in_use;
    let grad_bytes: u64 = model
        .parameters()
        .iter()
        .map(|(_, p)| p.size_in_bytes())
        .sum();
    dev.reset_peak();
    let loss = next_token_loss(&model.forward(ids, b, t).unwrap(), ids, b, t);
    let grads = loss.backward().unwrap();
    drop(grads);
    dev.pool_stats().peak - weights - grad_bytes
}

/// A small-vocabulary llama of 8 layers (width 64) with random weights from `seed`, on a
/// device of its own: activations and layer weights dominate its memory.
fn eight_layer_model(seed: u64) -> Model {
    let config = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 256,
        "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "vocab_size": 128, "tie_word_embeddings": true,
        "rope_theta": 10000.0, "max_position_embeddings": 256}"#;
    let config = Config::from_json(config, std::path::Path::new("config.json")).unwrap();
    Model::new(&config, &Weights::random(&device(), seed), true).unwrap()
}

#[test]
fn recomputation_lowers_peak_memory() {
    // Activations dominate here (small vocabulary, 8 layers, 2 x 64 tokens).
    let model = eight_layer_model(3);
    let ids: Vec<u32> = (0..128).map(|i| (i * 37 % 128) as u32).collect();
    let plain = peak_of_step(&model, &ids, 2, 64);
    model.set_compute(Compute {
        precision: Precision::F32,
        recompute: true,
        ..Default::default()
    });
    let recomputed = peak_of_step(&model, &ids, 2, 64);
    eprintln!("peak: {plain} bytes plain, {recomputed} with recomputation");
    assert!(
        (recomputed as f64) < 0.5 * plain as f64,
        "peak: {plain} bytes plain, {recomputed} with recomputation"
    );
}

#[test]
fn recomputed_f16_layers_keep_no_weight_copies() {
    // Between passes, f16 keeps a copy of every layer weight for the next pass; recomputed
    // layers cast at each use, so their copies live only through their own backward.
    let model = eight_layer_model(4);
    let dev = model.device();
    let ids: Vec<u32> = (0..128).map(|i| (i * 53 % 128) as u32).collect();
    let layer_f16_bytes: usize = model
        .parameters()
        .iter()
        .filter(|(name, p)| name.contains("layers.") && p.rank() == 2)
        .map(|(_, p)| 2 * p.elem_count())
        .sum();
    let mut kept = Vec::new();
    let mut grads_seen = Vec::new();
    for recompute in [false, true] {
        model.set_compute(Compute {
            precision: Precision::F16,
            recompute,
            ..Default::default()
        });
        let before = dev.pool_stats().in_use;
        let loss = next_token_loss(&model.forward(&ids, 2, 64).unwrap(), &ids, 2, 64);
        let grads = loss.backward().unwrap();
        drop(loss);
        grads_seen.push(
            model
                .parameters()
                .iter()
                .map(|(_, p)| grads.get(p).unwrap().to_vec().unwrap())
                .collect::<Vec<_>>(),
        );
        drop(grads);
        kept.push(dev.pool_stats().in_use - before);
    }
    eprintln!("kept after a step: {kept:?} bytes; layer weights in f16: {layer_f16_bytes}");
    assert!(kept[0] as usize >= layer_f16_bytes, "{kept:?}");
    assert!((kept[1] as usize) < layer_f16_bytes / 8, "{kept:?}");
    // The same casts, so the same gradients, bit for bit.
    assert_eq!(grads_seen[0], grads_seen[1]);
}
