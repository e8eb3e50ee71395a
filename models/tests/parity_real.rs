//! The two real test models (SmolLM2-135M-Instruct, llama; Qwen2.5-Coder-0.5B-Instruct,
//! qwen2) against HF transformers in float32: per-token log-probabilities of fixed texts
//! within 1e-3 (through the logits and through the fused LM-head kernel), and greedy continuations with the KV cache identical for 20 tokens (recorded
//! by tests/scripts/make_hf_references.py).

mod common;
use common::*;

use engine::ops::objective::lm_head_log_probs;
use engine::{no_grad, Tensor};
use models::{Config, GenerateOptions, Model, Weights};

fn load(name: &str) -> Model {
    let dir = model_dir(name);
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    Model::new(&config, &Weights::from_dir(&device(), &dir).unwrap(), false).unwrap()
}

fn check(name: &str) {
    let model = load(name);
    let refs = read_json(&format!("hf/real_{name}.json"));
    let mut worst = 0f64;
    for case in refs["texts"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(case["logprobs"].clone()).unwrap();
        let t = ids.len();
        // Two paths from the same hidden states: logits materialised then log-softmax, and the
        // fused LM-head kernel that the objective and the diagnostic use.
        let (logp, fused) = no_grad(|| -> models::Result<(Vec<f32>, Vec<f32>)> {
            let hidden = model.hidden_states(&ids, 1, t)?;
            let logp = model.logits(&hidden)?.log_softmax()?.to_vec()?;
            let mut next = ids[1..].to_vec();
            next.push(0);
            let targets = Tensor::from_u32_slice(model.device(), &next, &[t])?;
            let flat = hidden.reshape(&[t, model.config.hidden_size])?;
            let fused = lm_head_log_probs(&flat, &model.lm_head().chunks, &targets)?.to_vec()?;
            Ok((logp, fused))
        })
        .unwrap();
        let v = logp.len() / t;
        for (j, &w) in want.iter().enumerate() {
            for (path, got) in [
                ("logits", logp[j * v + ids[j + 1] as usize]),
                ("fused", fused[j]),
            ] {
                let err = (got as f64 - w).abs();
                worst = worst.max(err);
                assert!(
                    err <= 1e-3,
                    "{name}: {path} path, token {j} of {:?}: log p {got} vs HF {w}",
                    case["text"]
                );
            }
        }
    }
    eprintln!("{name}: max |log p - HF| = {worst:.2e}");

    let opts = GenerateOptions {
        max_new_tokens: 20,
        min_new_tokens: 20,
        stop_tokens: model.config.eos_token_ids.clone(),
    };
    for case in refs["generations"].as_array().unwrap() {
        let prompt: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let want: Vec<u32> = serde_json::from_value(case["generated"].clone()).unwrap();
        let got = model.generate_greedy(&prompt, &opts).unwrap();
        assert_eq!(
            got, want,
            "{name}: greedy continuation of {:?}",
            case["prompt"]
        );
    }
}

#[test]
fn smollm2_matches_hf() {
    check(SMOLLM2);
}

#[test]
fn qwen_matches_hf() {
    check(QWEN);
}
