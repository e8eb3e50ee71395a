//! Batched greedy generation (left-padded prompts, one prefill, batched decode steps) gives
//! each row exactly the tokens of `generate_greedy` on that prompt alone: on the tiny random
//! llama and qwen2 models with prompts of many lengths (1 to 30 tokens, the prefill through
//! the block kernel, with stop tokens that end rows at different steps), and on the real
//! SmolLM2-135M-Instruct with three prompts of different lengths.

mod common;
use common::*;

use models::{Config, GenerateOptions, Model, Weights};

fn load(dir: &std::path::Path) -> Model {
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    Model::new(&config, &Weights::from_dir(&device(), dir).unwrap(), false).unwrap()
}

/// Batched against one-by-one generation, token for token.
fn check(name: &str, model: &Model, prompts: &[Vec<u32>], opts: &GenerateOptions) {
    let started = std::time::Instant::now();
    let got = model.generate_greedy_batch(prompts, opts).unwrap();
    let batched = started.elapsed();
    let started = std::time::Instant::now();
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| model.generate_greedy(p, opts).unwrap())
        .collect();
    eprintln!(
        "{name}: batch of {} in {batched:.2?}, one by one in {:.2?}",
        prompts.len(),
        started.elapsed()
    );
    assert_eq!(got.len(), prompts.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g,
            w,
            "{name}: row {i} (prompt of {} tokens)",
            prompts[i].len()
        );
    }
}

/// Prompts of the given lengths, ids spread over the vocabulary (deterministic).
fn prompts(lens: &[usize], vocab: usize) -> Vec<Vec<u32>> {
    lens.iter()
        .enumerate()
        .map(|(i, &n)| {
            (0..n)
                .map(|t| ((i * 7919 + t * 104_729 + 13) % vocab) as u32)
                .collect()
        })
        .collect()
}

#[test]
fn tiny_models_batch_matches_one_by_one() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let model = load(&fixture(&format!("hf/{name}")));
        let vocab = model.config.vocab_size;
        let ps = prompts(&[5, 1, 17, 30, 2, 9, 3], vocab);
        let free = GenerateOptions {
            max_new_tokens: 8,
            min_new_tokens: 0,
            stop_tokens: vec![],
        };
        check(name, &model, &ps, &free);
        // Stop tokens taken from the free-running outputs, so rows end at different steps
        // (and min_new_tokens holds some of them back).
        let outs = model.generate_greedy_batch(&ps, &free).unwrap();
        let stops = vec![outs[0][2], outs[3][5]];
        for min_new_tokens in [0, 3] {
            let opts = GenerateOptions {
                max_new_tokens: 8,
                min_new_tokens,
                stop_tokens: stops.clone(),
            };
            check(&format!("{name} stops {stops:?}"), &model, &ps, &opts);
        }
        // One row alone, and a batch of one.
        check(name, &model, &ps[2..3], &free);
    }
}

#[test]
fn batch_edge_cases() {
    let model = load(&fixture("hf/tiny-llama"));
    let opts = GenerateOptions {
        max_new_tokens: 4,
        min_new_tokens: 0,
        stop_tokens: vec![],
    };
    assert!(model.generate_greedy_batch(&[], &opts).unwrap().is_empty());
    assert!(model
        .generate_greedy_batch(&[vec![1, 2], vec![]], &opts)
        .is_err());
    let none = GenerateOptions {
        max_new_tokens: 0,
        ..opts
    };
    assert_eq!(
        model
            .generate_greedy_batch(&[vec![1, 2], vec![3]], &none)
            .unwrap(),
        vec![Vec::<u32>::new(); 2]
    );
}

#[test]
fn smollm2_batch_matches_one_by_one() {
    let model = load(&model_dir(SMOLLM2));
    let refs = read_json(&format!("hf/real_{SMOLLM2}.json"));
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    // 38, 12 and 35 tokens: chat prompts and a plain text.
    let ps = vec![
        ids(&refs["generations"][0]["ids"]),
        ids(&refs["texts"][0]["ids"]),
        ids(&refs["generations"][2]["ids"]),
    ];
    let opts = GenerateOptions {
        max_new_tokens: 10,
        min_new_tokens: 0,
        stop_tokens: model.config.eos_token_ids.clone(),
    };
    check(SMOLLM2, &model, &ps, &opts);
}
