//! Shared helpers of the models tests: where the real test models and HF fixtures are.
#![allow(dead_code)]

use std::path::PathBuf;

use engine::{Device, DeviceOptions};

pub const SMOLLM2: &str = "smollm2-135m-instruct";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct";

/// The folder of a real test model made by scripts/fetch_models.py.
pub fn model_dir(name: &str) -> PathBuf {
    let cache = std::env::var_os("TRAINER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/trainer")
        });
    let dir = cache.join("models").join(name);
    assert!(
        dir.join("config.json").exists() && dir.join("tokenizer.json").exists(),
        "{} is missing: run `python3 scripts/fetch_models.py` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A committed fixture under tests/fixtures/ at the repository root.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

pub fn read_json(rel: &str) -> serde_json::Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A device with the kernels' bounds checks on, as every test runs them.
pub fn device() -> Device {
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    Device::with_options(opts).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
}
