//! LLaMA- and Qwen2-family decoders from Hugging Face checkpoints: `config.json`,
//! safetensors weights, the tokenizer and its chat template.

pub mod config;
pub mod decoder;
mod error;
pub mod generate;
pub mod hf_layout;
mod layers;
pub mod pyjson;
pub mod save;
pub mod tokenizer;
pub mod weights;

pub use config::{Arch, Config, RopeScaling};
pub use decoder::{AttentionPath, Compute, Model, Precision, VocabMatrix};
pub use error::{Error, Result};
pub use generate::GenerateOptions;
pub use hf_layout::{HfRows, Param};
pub use save::SaveDtype;
pub use tokenizer::{Message, Tokenizer};
pub use weights::{Init, Weights};

/// The project's cache folder: `$TRAINER_CACHE`, default `~/.cache/trainer` (converted test
/// models live under `models/`).
pub fn trainer_cache() -> std::path::PathBuf {
    match std::env::var_os("TRAINER_CACHE") {
        Some(dir) => dir.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/trainer"),
    }
}
