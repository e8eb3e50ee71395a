//! The two real test models (SmolLM2-135M-Instruct, llama; Qwen2.5-Coder-0.5B-Instruct,
//! qwen2) against HF transformers in float32: per-token log-probabilities of fixed texts
//! within 1e-3, and greedy continuations with the KV cache identical for 20 tokens (recorded
//! by tests/scripts/make_hf_references.py).

mod common;
use common::*;

use engine::no_grad;
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
        let logp =
            no_grad(|| model.forward(&ids, 1, t).and_then(|l| Ok(l.log_softmax()?))).unwrap();
        let v = logp.dim(-1);
        let logp = logp.to_vec().unwrap();
        for (j, &w) in want.iter().enumerate() {
            let got = logp[j * v + ids[j + 1] as usize] as f64;
            let err = (got - w).abs();
            worst = worst.max(err);
            assert!(
                err <= 1e-3,
                "{name}: token {j} of {:?}: log p {got} vs HF {w}",
                case["text"]
            );
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
