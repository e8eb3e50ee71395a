//! SwiGLU: silu(gate) * up, fused forward and backward.

use kernels::activation as k;

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

/// `silu(gate) * up` elementwise (same shapes), silu(x) = x * sigmoid(x).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let op = "swiglu";
    gate.expect_dtype(op, DType::F32)?;
    up.expect_dtype(op, DType::F32)?;
    if gate.shape() != up.shape() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: gate.shape().to_vec(),
            rhs: up.shape().to_vec(),
        });
    }
    let out = Tensor::uninit(gate.device(), op, gate.shape(), DType::F32)?;
    if out.elem_count() > 0 {
        run(op, &k::swiglu(out.elem_count()), &[gate, up, &out])?;
    }
    let (g, u) = (gate.detach(), up.detach());
    Ok(out.recorded(&[gate, up], || SwigluBackward { gate: g, up: u }))
}

impl Tensor {
    /// `silu(self) * up`: see [`swiglu`].
    pub fn swiglu(&self, up: &Tensor) -> Result<Tensor> {
        swiglu(self, up)
    }
}

/// y = silu(a) b, silu(a) = a s, s = sigmoid(a), s' = s (1 - s):
///   d silu/da = s + a s (1 - s) = s (1 + a (1 - s))
///   d a = g b s (1 + a (1 - s)),   d b = g silu(a)          (one fused kernel)
struct SwigluBackward {
    gate: Tensor,
    up: Tensor,
}

impl Backward for SwigluBackward {
    fn name(&self) -> &'static str {
        "swiglu"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let op = "swiglu_backward";
        g.expect_dtype(op, DType::F32)?;
        let dev = g.device();
        let dgate = Tensor::uninit(dev, op, self.gate.shape(), DType::F32)?;
        let dup = Tensor::uninit(dev, op, self.up.shape(), DType::F32)?;
        let n = dgate.elem_count();
        if n > 0 {
            run(
                op,
                &k::swiglu_backward(n),
                &[&self.gate, &self.up, g, &dgate, &dup],
            )?;
        }
        Ok(vec![Some(dgate), Some(dup)])
    }
}
