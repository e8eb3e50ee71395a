//! Downloading a model from the Hugging Face Hub into the cache layout transformers reads:
//! `models--ORG--NAME/snapshots/<commit>/` with plain files and `refs/main` naming the commit.
//!
//! Each file goes to a temporary name in the snapshot folder and is renamed when complete, and
//! config.json (what marks a folder as a model) is written last, so a killed download never
//! leaves a snapshot that looks whole; the next run fetches what is still missing.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where to look for and put models, and how to reach the Hub; [`HubOptions::from_env`] reads
/// the variables `huggingface_hub` reads.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// The Hub (`$HF_ENDPOINT`, default `https://huggingface.co`), without a trailing slash.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer ...` (`$HF_TOKEN`, else the token file of
    /// `huggingface-cli login`); gated repos such as meta-llama's need it.
    pub token: Option<String>,
    /// No downloading (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
}

fn hf_home() -> PathBuf {
    match std::env::var_os("HF_HOME") {
        Some(home) => home.into(),
        None => home().join(".cache/huggingface"),
    }
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl HubOptions {
    /// The options the environment asks for.
    pub fn from_env() -> HubOptions {
        let cache = match std::env::var_os("HF_HUB_CACHE") {
            Some(hub) => hub.into(),
            None => hf_home().join("hub"),
        };
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        let token = std::env::var("HF_TOKEN").ok().or_else(|| {
            let file = match std::env::var_os("HF_TOKEN_PATH") {
                Some(p) => PathBuf::from(p),
                None => hf_home().join("token"),
            };
            std::fs::read_to_string(file).ok()
        });
        HubOptions {
            cache,
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            offline: env_true("HF_HUB_OFFLINE"),
        }
    }

    /// The cache folder of `repo` (`models--ORG--NAME`).
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache
            .join(format!("models--{}", repo.replace('/', "--")))
    }
}

/// Files fetched when the repo has them; a 404 for one of these is fine.
const OPTIONAL: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// Above this size a file's download shows progress.
const BIG: u64 = 8 << 20;

/// A name safe to use as one path component or a relative path inside the snapshot.
fn safe_rel(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
}

/// Whether `repo` is a plausible Hub repo id (`ORG/NAME`, letters, digits, `.`, `_`, `-`).
pub fn is_repo_id(repo: &str) -> bool {
    repo.split('/').count() == 2 && safe_rel(repo)
}

struct Hub<'a> {
    agent: ureq::Agent,
    opts: &'a HubOptions,
    repo: &'a str,
}

type Response = ureq::http::Response<ureq::Body>;

/// What a GET answered.
enum Got {
    Found(Box<Response>),
    Missing,
}

fn header<'r>(resp: &'r Response, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Hub<'_> {
    fn url(&self, rev: &str, file: &str) -> String {
        format!("{}/{}/resolve/{rev}/{file}", self.opts.endpoint, self.repo)
    }

    fn get(&self, rev: &str, file: &str) -> Result<Got, String> {
        let mut req = self.agent.get(&self.url(rev, file));
        if let Some(token) = &self.opts.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let (endpoint, repo) = (&self.opts.endpoint, self.repo);
        let resp = req.call().map_err(|e| {
            format!(
                "could not reach {endpoint}: {e}; download it with `huggingface-cli download \
                 {repo}` or pass a folder"
            )
        })?;
        match resp.status().as_u16() {
            200..=299 => Ok(Got::Found(Box::new(resp))),
            code @ (401 | 403) => {
                let how = if self.opts.token.is_some() {
                    "the token in HF_TOKEN does not give access to it"
                } else {
                    "no token was sent"
                };
                if header(&resp, "X-Error-Code") == Some("RepoNotFound") {
                    return Err(format!(
                        "{endpoint} has no repo {repo} ({code}; if it is private, set HF_TOKEN)"
                    ));
                }
                Err(format!(
                    "{repo} is gated or private ({endpoint} answered {code} for {file}; {how}): \
                     accept its license on {endpoint}/{repo} and set HF_TOKEN to a token of that \
                     account (or run `huggingface-cli login`)"
                ))
            }
            404 => {
                if header(&resp, "X-Error-Code") == Some("RepoNotFound") {
                    Err(format!("{endpoint} has no repo {repo} (404)"))
                } else {
                    Ok(Got::Missing)
                }
            }
            code => Err(format!(
                "{endpoint} answered {code} for {repo}/{file}; try again later, or download it with \
                 `huggingface-cli download {repo}` or pass a folder"
            )),
        }
    }

    /// Fetches `file` at `rev` into `dir` (temporary name, then renamed); false if the repo
    /// does not have it. A file already in `dir` is complete (renamed in place) and kept.
    fn fetch(&self, rev: &str, file: &str, dir: &Path) -> Result<bool, String> {
        let dest = dir.join(file);
        if dest.is_file() {
            return Ok(true);
        }
        let resp = match self.get(rev, file)? {
            Got::Found(resp) => resp,
            Got::Missing => return Ok(false),
        };
        let total: Option<u64> = header(&resp, "Content-Length").and_then(|n| n.parse().ok());
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "downloading {}/{file} from {} failed: {e}",
                self.repo, self.opts.endpoint
            )
        };
        let part = part_name(&dest);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed(&e))?;
        }
        let result = (|| -> Result<u64, String> {
            let mut out = std::fs::File::create(&part).map_err(|e| failed(&e))?;
            let bar = progress(self.repo, file, total);
            let mut reader = resp.into_body().into_reader();
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(failed(&e)),
                };
                out.write_all(&buf[..n]).map_err(|e| failed(&e))?;
                got += n as u64;
                if let Some(bar) = &bar {
                    bar.set_position(got);
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            out.sync_all().map_err(|e| failed(&e))?;
            Ok(got)
        })();
        let got = match result {
            Ok(got) => got,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        if let Some(total) = total.filter(|&t| t != got) {
            let _ = std::fs::remove_file(&part);
            return Err(failed(&format_args!(
                "the connection closed after {got} of {total} bytes"
            )));
        }
        std::fs::rename(&part, &dest).map_err(|e| failed(&e))?;
        Ok(true)
    }
}

/// The temporary name `file` downloads to: hidden, next to it, with the process id.
fn part_name(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    dest.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

/// A bar on a terminal, a line elsewhere, for big files (or ones of unknown size).
fn progress(repo: &str, file: &str, total: Option<u64>) -> Option<ProgressBar> {
    if total.is_some_and(|t| t < BIG) {
        return None;
    }
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    if !std::io::stderr().is_terminal() {
        match total {
            Some(t) => eprintln!("downloading {repo} {file} ({:.1} MiB)", mb(t)),
            None => eprintln!("downloading {repo} {file}"),
        }
        return None;
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} [{elapsed_precise} < {eta_precise}]",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{repo} {file}"));
    Some(bar)
}

/// Downloads `repo` (config.json, the tokenizer and generation files it has, and its
/// safetensors weights, one file or the shards an index names) into the cache; returns the
/// snapshot folder. Errors are one line naming the repo and what failed.
pub fn download(repo: &str, opts: &HubOptions) -> Result<PathBuf, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(10)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .user_agent(concat!("trainer/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let hub = Hub { agent, opts, repo };
    let endpoint = &opts.endpoint;
    let mut resp = match hub.get("main", "config.json")? {
        Got::Found(resp) => resp,
        Got::Missing => {
            return Err(format!(
                "{repo} on {endpoint} has no config.json (not a transformers model, or no such \
                 repo)"
            ))
        }
    };
    let rev = header(&resp, "X-Repo-Commit")
        .map(str::trim)
        .filter(|sha| safe_rel(sha) && !sha.contains('/'))
        .unwrap_or("main")
        .to_string();
    let config = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("downloading {repo}/config.json from {endpoint} failed: {e}"))?;
    let repo_dir = opts.repo_dir(repo);
    let dir = repo_dir.join("snapshots").join(&rev);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for file in OPTIONAL {
        hub.fetch(&rev, file, &dir)?;
    }
    let index = "model.safetensors.index.json";
    if hub.fetch(&rev, index, &dir)? {
        let text = std::fs::read_to_string(dir.join(index))
            .map_err(|e| format!("reading {}: {e}", dir.join(index).display()))?;
        let shards =
            shard_names(&text).map_err(|e| format!("{repo}/{index} from {endpoint}: {e}"))?;
        for shard in shards {
            if !hub.fetch(&rev, &shard, &dir)? {
                return Err(format!(
                    "{repo} on {endpoint} has no {shard}, which its {index} names"
                ));
            }
        }
    } else if !hub.fetch(&rev, "model.safetensors", &dir)? {
        return Err(format!(
            "{repo} on {endpoint} has neither model.safetensors nor {index} (only safetensors \
             checkpoints are supported)"
        ));
    }
    let write = |path: &Path, text: &str| -> Result<(), String> {
        let part = part_name(path);
        std::fs::write(&part, text)
            .and_then(|()| std::fs::rename(&part, path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&dir.join("config.json"), &config)?;
    let refs = repo_dir.join("refs");
    std::fs::create_dir_all(&refs).map_err(|e| format!("cannot create {}: {e}", refs.display()))?;
    write(&refs.join("main"), &rev)?;
    Ok(dir)
}

/// The distinct shard files of a `model.safetensors.index.json`, sorted.
fn shard_names(index: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(index).map_err(|e| format!("not JSON: {e}"))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no weight_map")?;
    let mut shards = Vec::new();
    for file in map.values() {
        let file = file.as_str().ok_or("a weight_map value is not a string")?;
        if !safe_rel(file) {
            return Err(format!("unsafe shard name {file:?}"));
        }
        shards.push(file.to_string());
    }
    shards.sort();
    shards.dedup();
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_shard_names() {
        assert!(is_repo_id("Qwen/Qwen2.5-1.5B"));
        assert!(!is_repo_id("./a/b"));
        assert!(!is_repo_id("a/../b"));
        assert!(!is_repo_id("/abs/path"));
        assert!(!is_repo_id("a/b/c"));
        let index = r#"{"weight_map": {"x": "m-2.safetensors", "y": "m-1.safetensors",
            "z": "m-2.safetensors"}}"#;
        assert_eq!(
            shard_names(index).unwrap(),
            ["m-1.safetensors", "m-2.safetensors"]
        );
        assert!(shard_names(r#"{"weight_map": {"x": "../evil"}}"#).is_err());
    }
}
