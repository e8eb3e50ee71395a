//! One weight path for real checkpoints and random init: tensors are fetched by their HF
//! name through a prefixing builder (`w.pp("model.layers.3.self_attn")`), every shape is
//! asserted on load, and bf16/f16/f32 on disk become f32 on the device. Safetensors headers
//! are read by [`parse_header`], which checks every tensor's bytes against the file before
//! any is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Device, Tensor};
use memmap2::Mmap;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;

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
    header: Header,
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The dtype as the header names it (`F32`, `BF16`, ...).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Byte range within the data that follows the header.
    pub data_offsets: (usize, usize),
}

/// A checked safetensors header: every tensor's byte range lies inside the file and has
/// exactly the bytes its dtype and shape need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Offset of the data in the file (8 + the header's length).
    pub data_start: usize,
    pub tensors: HashMap<String, TensorEntry>,
}

/// Largest header accepted (the safetensors crate's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bytes per element of the dtypes the safetensors format names (sub-byte ones excluded).
fn dtype_width(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" | "C64" => 8,
        _ => return None,
    })
}

/// Read the header of the safetensors file `bytes` (the whole file); `path` names it in
/// errors, which say what is wrong and with which tensor.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let bad = |msg: String| Error::Safetensors {
        path: path.into(),
        msg: format!("not a valid safetensors file: {msg}"),
    };
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(bad(format!(
            "{} bytes, too short for the 8-byte header length (empty or truncated)",
            bytes.len()
        )));
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let after = (bytes.len() - 8) as u64;
    if header_len > after {
        return Err(bad(format!(
            "the header length field says {header_len} bytes but only {after} follow \
             (truncated, or not a safetensors file)"
        )));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "a header of {header_len} bytes is implausible (over {MAX_HEADER_BYTES})"
        )));
    }
    let data_start = 8 + header_len as usize;
    let data_len = bytes.len() - data_start;
    let text = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|e| bad(format!("the header is not UTF-8: {e}")))?;
    let json: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("the header is not valid JSON: {e}")))?;
    let Value::Object(map) = json else {
        return Err(bad("the header is not a JSON object".into()));
    };
    let mut tensors = HashMap::with_capacity(map.len());
    for (name, entry) in map {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            entry
                .get(key)
                .ok_or_else(|| bad(format!("tensor `{name}`: no `{key}`")))
        };
        let dtype = field("dtype")?
            .as_str()
            .ok_or_else(|| bad(format!("tensor `{name}`: `dtype` is not a string")))?
            .to_string();
        let width = dtype_width(&dtype)
            .ok_or_else(|| bad(format!("tensor `{name}`: unknown dtype {dtype:?}")))?;
        let usizes = |key: &str| -> Result<Vec<usize>> {
            field(key)?
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|v| v.as_u64().and_then(|x| usize::try_from(x).ok()))
                        .collect::<Option<Vec<usize>>>()
                })
                .ok_or_else(|| {
                    bad(format!(
                        "tensor `{name}`: `{key}` is not a list of non-negative integers"
                    ))
                })
        };
        let shape = usizes("shape")?;
        let (start, end) = match usizes("data_offsets")?[..] {
            [s, e] => (s, e),
            _ => {
                return Err(bad(format!(
                    "tensor `{name}`: `data_offsets` must hold two numbers"
                )))
            }
        };
        if start > end || end > data_len {
            return Err(bad(format!(
                "tensor `{name}`: data_offsets [{start}, {end}] lie outside the data \
                 ({data_len} bytes after the header; truncated?)"
            )));
        }
        let need = shape
            .iter()
            .try_fold(width, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n == end - start);
        if need.is_none() {
            return Err(bad(format!(
                "tensor `{name}`: shape {shape:?} of {dtype} does not fit the {} bytes of \
                 data_offsets [{start}, {end}]",
                end - start
            )));
        }
        tensors.insert(
            name,
            TensorEntry {
                dtype,
                shape,
                data_offsets: (start, end),
            },
        );
    }
    Ok(Header {
        data_start,
        tensors,
    })
}

/// Rows `rows` of tensor `name` (which must have `shape`) of the safetensors file `bytes`
/// with header `header`, as f32 (F32, F16 and BF16 are read).
pub fn tensor_f32(
    bytes: &[u8],
    header: &Header,
    path: &Path,
    name: &str,
    shape: &[usize],
    rows: std::ops::Range<usize>,
) -> Result<Vec<f32>> {
    let info = header
        .tensors
        .get(name)
        .ok_or_else(|| Error::MissingTensor {
            path: path.into(),
            name: name.into(),
        })?;
    if info.shape != shape {
        return Err(Error::TensorShape {
            path: path.into(),
            name: name.into(),
            expected: shape.to_vec(),
            found: info.shape.clone(),
        });
    }
    let first = shape.first().copied().unwrap_or(1);
    if rows.start > rows.end || rows.end > first {
        return Err(Error::Safetensors {
            path: path.into(),
            msg: format!("tensor `{name}`: rows {rows:?} asked of {first}"),
        });
    }
    let (start, end) = info.data_offsets;
    let all = bytes
        .get(header.data_start + start..header.data_start + end)
        .ok_or_else(|| Error::Safetensors {
            path: path.into(),
            msg: format!("tensor `{name}`: its bytes are not in this file"),
        })?;
    let row_bytes = all.len() / first.max(1);
    let bytes = &all[rows.start * row_bytes..rows.end * row_bytes];
    Ok(match info.dtype.as_str() {
        "F32" => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::TensorDtype {
                path: path.into(),
                name: name.into(),
                dtype: other.into(),
            });
        }
    })
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
            let header = parse_header(&mmap, path)?;
            for name in header.tensors.keys() {
                by_name.insert(name.clone(), files.len());
            }
            files.push(File {
                path: path.clone(),
                mmap,
                header,
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
        let row_len: usize = shape.iter().skip(1).product();
        let bytes = (rows.len() * row_len * 4) as u64;
        let limit = self.dev.max_binding_bytes();
        let source = match &*self.source {
            Source::Safetensors { files, by_name } => by_name
                .get(&full)
                .map_or_else(
                    || files.first().map(|f| f.path.clone()),
                    |&i| Some(files[i].path.clone()),
                )
                .unwrap_or_default(),
            Source::Random { .. } => PathBuf::from("(random init)"),
        };
        if bytes > limit {
            return Err(Error::TensorTooLarge {
                path: source,
                name: full,
                bytes,
                limit,
            });
        }
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
            Source::Random { seed } => random_data(*seed, &full, shape, init)
                [rows.start * row_len..rows.end * row_len]
                .to_vec(),
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
    tensor_f32(&file.mmap, &file.header, &file.path, name, shape, rows)
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
