//! Helpers shared by the trainer's end-to-end tests: a tiny random model with SmolLM2's
//! tokenizer, the `trainer` binary run on it, and its metrics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use models::{Config, Model, SaveDtype, Weights};

pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

pub fn smollm2() -> PathBuf {
    models::trainer_cache().join("models/smollm2-135m-instruct")
}

pub fn device() -> engine::Device {
    let mut opts = engine::DeviceOptions::from_env();
    opts.shader_checks = true;
    engine::Device::with_options(opts)
        .expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
}

/// A tiny random llama with SmolLM2's tokenizer, saved as an HF folder in `dir`.
pub fn tiny_model(dir: &Path) {
    let config = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "vocab_size": 49152, "tie_word_embeddings": true,
        "rope_theta": 10000.0, "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2}"#;
    let config = Config::from_json(config, Path::new("tiny/config.json")).unwrap();
    let model = Model::new(&config, &Weights::random(&device(), 5), false).unwrap();
    model.save(dir, Some(&smollm2()), SaveDtype::F32).unwrap();
}

/// The `trainer` binary with the kernels' bounds checks on and the Hub offline, run through
/// the runner cargo runs this test through, if the environment sets one (scripts/test.sh does,
/// to run the f16 tests on another Vulkan driver with its own libc).
pub fn trainer_command() -> Command {
    let runner = std::env::var("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER").unwrap_or_default();
    let mut argv: Vec<&str> = runner.split_whitespace().collect();
    argv.push(env!("CARGO_BIN_EXE_trainer"));
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..])
        .env("TRAINER_SHADER_CHECKS", "1")
        .env("HF_HUB_OFFLINE", "1");
    c
}

pub fn trainer(args: &[&str]) -> std::process::Output {
    trainer_command().args(args).output().expect("runs trainer")
}

/// `trainer` training the model in `model_dir` on the small SFT file into `out`, with `args`.
pub fn train_on(model_dir: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let mut all = vec![
        "--model",
        model_dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    trainer(&all)
}

/// [`train_on`], which must succeed.
pub fn train_ok(model_dir: &Path, out: &Path, args: &[&str]) {
    let run = train_on(model_dir, out, args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// A tiny model in a temporary folder, trained on the small SFT file with `args`; returns the
/// folder (deleted on drop), the model folder and the run's output folder.
pub fn train_tiny(args: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    tiny_model(&model_dir);
    let out = tmp.path().join("run");
    train_ok(&model_dir, &out, args);
    (tmp, model_dir, out)
}

pub fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `trainer` binary with extra environment variables.
pub fn trainer_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    trainer_command()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("runs trainer")
}
