//! Errors of the models crate: each names the file (and field or tensor) it is about.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid JSON: {msg}", path.display())]
    Json { path: PathBuf, msg: String },
    #[error("{}: field `{field}`: {msg}", path.display())]
    Config {
        path: PathBuf,
        field: &'static str,
        msg: String,
    },
    #[error(
        "{}: model_type {model_type:?} is not supported (supported: llama, qwen2)",
        path.display()
    )]
    UnknownArchitecture { path: PathBuf, model_type: String },
    #[error("{}: {msg}", path.display())]
    Safetensors { path: PathBuf, msg: String },
    #[error("{}: tensor `{name}` is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{}: tensor `{name}` has dtype {dtype}, expected F32, F16 or BF16", path.display())]
    TensorDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error(
        "{}: tensor `{name}` needs {bytes} bytes on the GPU, more than this adapter's largest \
         binding ({limit} bytes); this model does not fit this GPU's bindings",
        path.display()
    )]
    TensorTooLarge {
        path: PathBuf,
        name: String,
        bytes: u64,
        limit: u64,
    },
    #[error("{}: {msg}", path.display())]
    Tokenizer { path: PathBuf, msg: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("parameters and HF tensors: {0}")]
    Layout(String),
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
