//! One weight path for real checkpoints and random init: tensors are fetched by their HF
//! name through a prefixing builder (`w.pp("model.layers.3.self_attn")`), every shape is
//! asserted on load, and bf16/f16/f32 on disk become f32 on the device.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Device, Tensor};
use memmap2::Mmap;
use rand::{rngs::StdRng, Rng, SeedableRng};
use safetensors::{tensor::Metadata, Dtype, SafeTensors};

use crate::error::{Error, Result};

/// How a randomly initialised tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with this standard deviation (HF's `initializer_range`, 0.02).
    Normal(f32),
    Ones,
    Zeros,
}

struct File {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

enum Source {
    Safetensors {
        files: Vec<File>,
        by_name: HashMap<String, usize>,
    },
    Random {
        seed: u64,
    },
}

/// A view of a checkpoint (or of random init) under a name prefix.
#[derive(Clone)]
pub struct Weights {
    source: Arc<Source>,
    dev: Device,
    prefix: String,
}

impl Weights {
    /// The safetensors checkpoint in `dir`: `model.safetensors`, or the shards listed by
    /// `model.safetensors.index.json`.
    pub fn from_dir(dev: &Device, dir: &Path) -> Result<Weights> {
        let index = dir.join("model.safetensors.index.json");
        let files = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
                path: index.clone(),
                msg: e.to_string(),
            })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Json {
                    path: index.clone(),
                    msg: "no `weight_map` object".into(),
                })?;
            let mut shards: Vec<PathBuf> = Vec::new();
            for v in map.values() {
                let shard = v.as_str().ok_or_else(|| Error::Json {
                    path: index.clone(),
                    msg: "a `weight_map` value is not a file name".into(),
                })?;
                let p = dir.join(shard);
                if !shards.contains(&p) {
                    shards.push(p);
                }
            }
            shards
        } else {
            vec![dir.join("model.safetensors")]
        };
        Weights::from_files(dev, &files)
    }

    /// Safetensors files, each validated (header length, offsets, dtype and shape against
    /// the byte count) before any tensor is read.
    pub fn from_files(dev: &Device, paths: &[PathBuf]) -> Result<Weights> {
        let mut files = Vec::with_capacity(paths.len());
        let mut by_name = HashMap::new();
        for path in paths {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the file is only read; a checkpoint changed on disk while we read it
            // is outside what any loader can guard against.
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&mmap).map_err(|e| Error::Safetensors {
                    path: path.clone(),
                    msg: format!("not a valid safetensors file: {e}"),
                })?;
            for name in metadata.tensors().keys() {
                by_name.insert(name.clone(), files.len());
            }
            files.push(File {
                path: path.clone(),
                mmap,
                header_len,
                metadata,
            });
        }
        Ok(Weights {
            source: Arc::new(Source::Safetensors { files, by_name }),
            dev: dev.clone(),
            prefix: String::new(),
        })
    }

    /// Deterministic random init (per tensor name and seed), for tiny test models.
    pub fn random(dev: &Device, seed: u64) -> Weights {
        Weights {
            source: Arc::new(Source::Random { seed }),
            dev: dev.clone(),
            prefix: String::new(),
        }
    }

    /// The same weights under `prefix.` (nested prefixes join with dots).
    pub fn pp(&self, prefix: impl std::fmt::Display) -> Weights {
        let prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}.{prefix}", self.prefix)
        };
        Weights {
            source: self.source.clone(),
            dev: self.dev.clone(),
            prefix,
        }
    }

    pub fn device(&self) -> &Device {
        &self.dev
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the checkpoint holds `name` (always true for random init).
    pub fn contains(&self, name: &str) -> bool {
        match &*self.source {
            Source::Safetensors { by_name, .. } => by_name.contains_key(&self.full_name(name)),
            Source::Random { .. } => true,
        }
    }

    /// The tensor `name` as f32 on the device, which must have `shape`; random init fills
    /// it as `init` says.
    pub fn get(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let rows = shape.first().copied().unwrap_or(1);
        self.get_rows(name, shape, 0..rows, init)
    }

    /// Rows `rows` (along the first dimension) of the tensor `name`, which must have
    /// `shape`: for matrices too large for one GPU binding, loaded a block at a time.
    pub fn get_rows(
        &self,
        name: &str,
        shape: &[usize],
        rows: std::ops::Range<usize>,
        init: Init,
    ) -> Result<Tensor> {
        let full = self.full_name(name);
        let data = match &*self.source {
            Source::Safetensors { files, by_name } => {
                let first = files.first().map(|f| f.path.clone()).unwrap_or_default();
                let file = by_name
                    .get(&full)
                    .map(|&i| &files[i])
                    .ok_or(Error::MissingTensor {
                        path: first,
                        name: full.clone(),
                    })?;
                read_f32(file, &full, shape, rows.clone())?
            }
            Source::Random { seed } => {
                let row_len: usize = shape.iter().skip(1).product();
                random_data(*seed, &full, shape, init)[rows.start * row_len..rows.end * row_len]
                    .to_vec()
            }
        };
        let mut block = shape.to_vec();
        if let Some(first) = block.first_mut() {
            *first = rows.len();
        }
        Ok(Tensor::from_slice(&self.dev, &data, &block)?)
    }
}

fn read_f32(
    file: &File,
    name: &str,
    shape: &[usize],
    rows: std::ops::Range<usize>,
) -> Result<Vec<f32>> {
    let info = file
        .metadata
        .info(name)
        .ok_or_else(|| Error::MissingTensor {
            path: file.path.clone(),
            name: name.into(),
        })?;
    if info.shape != shape {
        return Err(Error::TensorShape {
            path: file.path.clone(),
            name: name.into(),
            expected: shape.to_vec(),
            found: info.shape.clone(),
        });
    }
    let (start, end) = info.data_offsets;
    let base = 8 + file.header_len;
    let bytes = &file.mmap[base + start..base + end];
    let row_bytes = bytes.len() / shape.first().copied().unwrap_or(1).max(1);
    let bytes = &bytes[rows.start * row_bytes..rows.end * row_bytes];
    Ok(match info.dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::TensorDtype {
                path: file.path.clone(),
                name: name.into(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

fn random_data(seed: u64, name: &str, shape: &[usize], init: Init) -> Vec<f32> {
    let n: usize = shape.iter().product();
    match init {
        Init::Ones => vec![1.0; n],
        Init::Zeros => vec![0.0; n],
        Init::Normal(std) => {
            // FNV-1a of the name, so each tensor's values depend only on (seed, name).
            let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let mut rng = StdRng::seed_from_u64(h);
            (0..n)
                .map(|_| {
                    // Box-Muller
                    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                    let u2: f32 = rng.random();
                    std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
                })
                .collect()
        }
    }
}
