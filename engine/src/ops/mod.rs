//! Ops: each a forward that launches a kernel and a backward rule, with its derivation in a
//! comment, beside it. Fused ops (attention, the objective, AdamW) use the same interface.

pub mod activation;
pub mod attention;
pub mod attention_block;
pub mod cast;
pub mod elementwise;
pub mod embedding;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod objective;
mod objective_block;
pub mod optim;
pub mod reduce;
pub mod rope;
pub mod softmax;

use crate::error::Result;
use crate::tensor::Tensor;

/// Launch `launch` over `tensors` (bound in the kernel's binding order).
pub(crate) fn run(op: &'static str, launch: &kernels::Launch, tensors: &[&Tensor]) -> Result<()> {
    let dev = tensors[0].device();
    for t in &tensors[1..] {
        t.check_same_device(op, tensors[0])?;
    }
    let bindings: Vec<_> = tensors.iter().map(|t| t.binding()).collect();
    dev.dispatch(op, launch, &bindings)
}
