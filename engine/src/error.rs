//! The engine's error type: one enum grouped by kind, variants that carry the op and the shapes.

use crate::DType;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- device ---
    #[error(
        "no GPU adapter found{filter}. On a machine without a GPU install Mesa's software Vulkan \
         driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`); adapters seen: {seen}"
    )]
    NoAdapter { filter: String, seen: String },
    #[error("{var}={value}: {reason}")]
    BadEnv {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("could not open the GPU device {adapter}: {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error("{op} needs the adapter feature {feature}, which {adapter} does not offer")]
    MissingFeature {
        op: &'static str,
        feature: &'static str,
        adapter: String,
    },
    #[error(
        "{op}: a buffer of {bytes} bytes exceeds this adapter's largest storage binding \
         ({limit} bytes); split the tensor or use a smaller shape"
    )]
    BindingTooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error(
        "{op}: a buffer of {bytes} bytes exceeds this adapter's largest buffer ({limit} bytes); \
         use a smaller shape"
    )]
    BufferTooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },
    /// `bytes` is 0 when the driver reported the shortage outside an allocation.
    #[error("{}", out_of_memory(*bytes, *in_use, reason))]
    OutOfMemory {
        bytes: u64,
        in_use: u64,
        reason: String,
    },
    #[error(
        "the GPU device was lost ({reason}): the driver reset it or it went away, and what it \
         held is gone"
    )]
    DeviceLost { reason: String },
    #[error("GPU error in {op}: {reason}")]
    Gpu { op: &'static str, reason: String },

    // --- shapes and types ---
    #[error("{op}: shape mismatch between {lhs:?} and {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    #[error("{op}: bad shape {shape:?}: {reason}")]
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        reason: String,
    },
    #[error("{op}: expected dtype {expected:?}, got {got:?}")]
    DTypeMismatch {
        op: &'static str,
        expected: DType,
        got: DType,
    },
    #[error("{op}: {len} values given for shape {shape:?} ({expected} elements)")]
    DataLength {
        op: &'static str,
        len: usize,
        shape: Vec<usize>,
        expected: usize,
    },
    #[error("{op}: tensors live on different devices")]
    DeviceMismatch { op: &'static str },

    // --- values ---
    #[error("{op}: id {id} at position {position} is out of range for a vocabulary of {vocab}")]
    IdOutOfRange {
        op: &'static str,
        id: u32,
        position: usize,
        vocab: usize,
    },

    /// A call made out of order (an optimizer's moments placed after they exist).
    #[error("{op}: {reason}")]
    Misuse { op: &'static str, reason: String },

    // --- autograd ---
    #[error("backward: {0}")]
    Backward(String),
}

impl Error {
    /// Whether the error is the GPU running short (memory, binding or buffer size, a lost
    /// device) rather than a mistake in the request: smaller shapes may succeed.
    pub fn is_resource(&self) -> bool {
        matches!(
            self,
            Error::BindingTooLarge { .. }
                | Error::BufferTooLarge { .. }
                | Error::OutOfMemory { .. }
                | Error::DeviceLost { .. }
        )
    }
}

fn out_of_memory(bytes: u64, in_use: u64, reason: &str) -> String {
    let what = if bytes > 0 {
        format!(" allocating {bytes} bytes")
    } else {
        String::new()
    };
    format!("out of GPU memory{what} ({in_use} bytes in use by tensors): {reason}")
}
