//! A tensor engine on wgpu: device, buffer pool, tensors, ops with backward rules, tape
//! autograd and AdamW, every kernel written in WGSL (see the `kernels` crate).
//!
//! ```no_run
//! use engine::{Device, Tensor};
//! let dev = Device::new()?;
//! let a = Tensor::from_slice(&dev, &[1.0, 2.0, 3.0], &[3])?.var();
//! let loss = a.mul(&a)?; // backward seeds a non-scalar output with ones
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&a).unwrap().to_vec()?, vec![2.0, 4.0, 6.0]);
//! # Ok::<(), engine::Error>(())
//! ```

mod autograd;
mod device;
mod dtype;
mod error;
pub mod ops;
mod pool;
mod profile;
mod runtime;
mod tensor;

pub use autograd::{
    checkpoint, clear_tape, enable_grad, is_grad_enabled, no_grad, tape_len, Backward,
    BackwardMany, Gradients,
};
pub use device::{
    CoopMatmul, Counters, Device, DeviceOptions, Features, BINDING_CEILING, COOP_MATMUL_ENV,
    MAX_BINDING_ENV, REQUIRE_COOP_ENV,
};
pub use dtype::DType;
pub use error::{Error, Result};
pub use kernels::matmul::Fragment;
pub use pool::PoolStats;
pub use profile::{KernelTime, Profile};
pub use tensor::{Tensor, TensorId};
