//! From `--model` to a model folder: a folder path as it is; a short alias or a Hugging Face
//! repo id looked up in the local Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`,
//! default `~/.cache/huggingface/hub`) and in this project's cache of converted test models,
//! and downloaded from the Hub into the Hugging Face cache when neither has it (unless
//! `HF_HUB_OFFLINE=1`).

use std::path::{Path, PathBuf};

pub use crate::hub::HubOptions;

/// Short names for the checkpoints the paper's experiments and our tests use.
pub const ALIASES: &[(&str, &str)] = &[
    ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B"),
    ("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
    ("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B"),
    ("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
    ("qwen2.5-3b", "Qwen/Qwen2.5-3B"),
    ("qwen2.5-7b", "Qwen/Qwen2.5-7B"),
    ("qwen2.5-math-1.5b", "Qwen/Qwen2.5-Math-1.5B"),
    ("qwen2.5-math-7b", "Qwen/Qwen2.5-Math-7B"),
    (
        "qwen2.5-coder-0.5b-instruct",
        "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    ),
    ("llama-3.2-1b", "meta-llama/Llama-3.2-1B"),
    ("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct"),
    ("llama-3.2-3b", "meta-llama/Llama-3.2-3B"),
    ("llama-3.1-8b", "meta-llama/Llama-3.1-8B"),
    ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M"),
    (
        "smollm2-135m-instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    ("smollm2-360m", "HuggingFaceTB/SmolLM2-360M"),
    ("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B"),
];

fn is_model_dir(p: &Path) -> bool {
    p.join("config.json").is_file()
}

/// The folder of `model` (a path, an alias or a repo id), with the Hub options the environment
/// gives; or a one-line error saying where we looked and how to get the model.
pub fn resolve(model: &str) -> Result<PathBuf, String> {
    resolve_with(model, &HubOptions::from_env())
}

/// The latest snapshot of `repo` in the Hugging Face cache: the one `refs/main` names, else the
/// most recently modified one that is a model folder.
fn cached_snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if !rev.trim().is_empty() && is_model_dir(&dir) {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_model_dir(p))
        .collect();
    dirs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    dirs.pop()
}

/// [`resolve`] with explicit Hub options: the cache to look in and download to, the endpoint,
/// the token, and whether downloading is allowed.
pub fn resolve_with(model: &str, hub: &HubOptions) -> Result<PathBuf, String> {
    let path = Path::new(model);
    if path.exists() {
        return if is_model_dir(path) {
            Ok(path.to_path_buf())
        } else {
            Err(format!("{model}: not a model folder (no config.json)"))
        };
    }
    let lower = model.to_lowercase();
    let (alias, repo) = match ALIASES
        .iter()
        .find(|(a, r)| *a == lower || r.eq_ignore_ascii_case(model))
    {
        Some(&(a, r)) => (Some(a), r.to_string()),
        None if model.contains('/') => (None, model.to_string()),
        None => {
            let known: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
            return Err(format!(
                "--model {model}: not a folder, a known alias ({}) or a Hugging Face repo id (ORG/NAME)",
                known.join(", ")
            ));
        }
    };
    let mut looked = Vec::new();
    let repo_dir = hub.repo_dir(&repo);
    if let Some(dir) = cached_snapshot(&repo_dir) {
        return Ok(dir);
    }
    looked.push(repo_dir.join("snapshots").display().to_string());
    let name = alias
        .map(str::to_string)
        .unwrap_or_else(|| repo.rsplit('/').next().unwrap_or(&repo).to_lowercase());
    let converted = models::trainer_cache().join("models").join(&name);
    if is_model_dir(&converted) {
        return Ok(converted);
    }
    looked.push(converted.display().to_string());
    let missing = format!(
        "--model {model}: {repo} is not on this machine (looked in {})",
        looked.join(" and ")
    );
    let how = format!(
        "download it with `huggingface-cli download {repo}` (or pass a folder); the two test \
         models come from `python3 scripts/fetch_models.py`"
    );
    if !crate::hub::is_repo_id(&repo) {
        return Err(format!(
            "{missing}, and {repo} is not a folder or a Hugging Face repo id (ORG/NAME)"
        ));
    }
    if hub.offline {
        return Err(format!(
            "{missing}, and HF_HUB_OFFLINE is set so it was not downloaded. To get it, {how}"
        ));
    }
    crate::hub::download(&repo, hub)
        .map_err(|e| format!("{missing}, and downloading it failed: {e}"))
}
