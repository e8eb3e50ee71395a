//! Writing a checkpoint that HF transformers loads as it is: `model.safetensors` under HF's
//! tensor names, `config.json`, and the tokenizer files copied from the source folder. The
//! folder is written under a temporary name, flushed to disk, and renamed, so a crash leaves
//! no half checkpoint; [`recover_interrupted`] tidies what a crash mid-save left beside it.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::decoder::Model;
use crate::error::{Error, Result};

/// The dtype tensors are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    BF16,
}

const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "generation_config.json",
];

impl Model {
    /// The model's weights by HF name, on the host: vocabulary chunks joined, stacked
    /// projections (q/k/v, gate/up) split.
    pub fn state_dict(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
        self.to_hf(|p| Ok(Some(p.tensor.to_vec()?)))
    }

    /// Write an HF checkpoint into `dir` (replacing it), copying the tokenizer files found in
    /// `tokenizer_dir`.
    pub fn save(&self, dir: &Path, tokenizer_dir: Option<&Path>, dtype: SaveDtype) -> Result<()> {
        self.save_with(dir, tokenizer_dir, dtype, |_| Ok(()))
    }

    /// Like [`Model::save`], with `extra` writing more files (optimizer state, say) into the
    /// folder before it is renamed into place, so they appear together or not at all.
    pub fn save_with(
        &self,
        dir: &Path,
        tokenizer_dir: Option<&Path>,
        dtype: SaveDtype,
        extra: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;

        write_safetensors(&tmp.join("model.safetensors"), &self.state_dict()?, dtype)?;
        let mut config = self.config.raw.clone();
        if let Value::Object(map) = &mut config {
            let d = match dtype {
                SaveDtype::F32 => "float32",
                SaveDtype::BF16 => "bfloat16",
            };
            map.insert("dtype".into(), Value::from(d));
            map.insert("torch_dtype".into(), Value::from(d));
        }
        let cfg_path = tmp.join("config.json");
        let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Json {
            path: cfg_path.clone(),
            msg: e.to_string(),
        })?;
        std::fs::write(&cfg_path, text + "\n").map_err(|e| Error::io(&cfg_path, e))?;
        if let Some(src) = tokenizer_dir {
            for file in TOKENIZER_FILES {
                let from = src.join(file);
                if from.exists() {
                    std::fs::copy(&from, tmp.join(file)).map_err(|e| Error::io(&from, e))?;
                }
            }
        }
        extra(&tmp)?;
        // Every file and the folder itself on disk before the rename makes it visible, so
        // a power loss cannot leave the new name pointing at empty files.
        for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
            let path = entry.map_err(|e| Error::io(&tmp, e))?.path();
            sync_file(&path)?;
        }
        sync_dir(&tmp);
        if dir.exists() {
            // Between these two renames a crash leaves both folders whole under temporary
            // names; `recover_interrupted` puts the new one in place.
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        }
        sync_dir(parent);
        Ok(())
    }
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Flush a folder's entries (where the platform allows opening a folder; elsewhere the
/// rename is as durable as the platform makes it).
fn sync_dir(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
}

/// Tidy what saves interrupted by a crash left in `parent`: a folder whose replacement was
/// being renamed into place gets the new one (both were whole), and unfinished temporary
/// folders are deleted. Returns one line per thing done. Run it before saving into `parent`
/// (one writer per folder: another process's save in progress would be removed).
pub fn recover_interrupted(parent: &Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(done); // no folder yet: nothing to recover
    };
    let mut leftovers: Vec<(String, &'static str, String)> = Vec::new(); // (name, kind, pid)
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(parent, e))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix('.') else {
            continue;
        };
        for kind in [".tmp-", ".old-"] {
            if let Some((name, pid)) = rest.rsplit_once(kind) {
                if !name.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                    leftovers.push((name.to_string(), kind, pid.to_string()));
                }
            }
        }
    }
    leftovers.sort();
    for (name, kind, pid) in &leftovers {
        let path = parent.join(format!(".{name}{kind}{pid}"));
        if !path.exists() {
            continue; // moved by an earlier step of this loop
        }
        let target = parent.join(name);
        let tmp = parent.join(format!(".{name}.tmp-{pid}"));
        if *kind == ".old-" && !target.exists() {
            // Interrupted between the two renames: the new folder is whole, put it in place.
            let newest = if tmp.exists() { &tmp } else { &path };
            std::fs::rename(newest, &target).map_err(|e| Error::io(&target, e))?;
            done.push(format!(
                "restored {} (a save was interrupted while replacing it)",
                target.display()
            ));
        }
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            if *kind == ".tmp-" {
                done.push(format!("removed {} (an unfinished save)", path.display()));
            }
        }
    }
    Ok(done)
}

/// Write `(name, shape, data)` tensors as one safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: SaveDtype,
) -> Result<()> {
    let (tag, width) = match dtype {
        SaveDtype::F32 => ("F32", 4),
        SaveDtype::BF16 => ("BF16", 2),
    };
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let len = data.len() * width;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": tag, "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut raw = serde_json::to_vec(&Value::Object(header)).map_err(|e| Error::Json {
        path: path.into(),
        msg: e.to_string(),
    })?;
    raw.resize(raw.len().div_ceil(8) * 8, b' ');
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e| Error::io(path, e);
    w.write_all(&(raw.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&raw).map_err(io)?;
    for (_, _, data) in tensors {
        for &x in data {
            match dtype {
                SaveDtype::F32 => w.write_all(&x.to_le_bytes()).map_err(io)?,
                SaveDtype::BF16 => w
                    .write_all(&half::bf16::from_f32(x).to_le_bytes())
                    .map_err(io)?,
            }
        }
    }
    w.into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok(())
}
