//! SwiGLU on the fused gate and up projections: x (.., 2w) -> silu(x[.., :w]) * x[.., w:],
//! forward and backward one kernel each (an f16 forward keeps x as f16 for the backward).

use kernels::activation as k;

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::{needs_tape, Tensor};

/// `silu(gate) * up` for x (.., 2w) whose last dimension holds the gate then the up values
/// (the output of one product with the gate and up weights stacked), giving (.., w);
/// silu(a) = a * sigmoid(a).
pub fn swiglu(x: &Tensor) -> Result<Tensor> {
    swiglu_as(x, DType::F32)
}

/// [`swiglu`] with its result stored as `dtype`: f32, or f16 rounded as `to_dtype` rounds
/// (bit for bit), so that an f16 product can read it without a cast pass. The gradient is
/// f32 either way. With an f16 result the backward keeps x as f16 too (written by the same
/// pass): the [gate | up] product is a layer's largest activation (at Qwen2.5-1.5B, 35,840
/// bytes a token as f32), and its gradient then follows the f16-rounded x, a rounding the f16
/// path makes anyway when it casts that gradient for the next product. Values past f16's
/// range in x would overflow the f16 result first.
pub fn swiglu_as(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let op = "swiglu";
    x.expect_dtype(op, DType::F32)?;
    let Some(&last) = x.shape().last().filter(|&&l| l % 2 == 0) else {
        return Err(Error::BadShape {
            op,
            shape: x.shape().to_vec(),
            reason: "expected (.., 2w): the gate and up halves in an even last dimension".into(),
        });
    };
    let width = last / 2;
    let mut shape = x.shape().to_vec();
    shape.pop();
    shape.push(width);
    let out = Tensor::uninit(x.device(), op, &shape, dtype)?;
    let n = out.elem_count();
    // With an f16 result and a tape, the backward reads an f16 copy of x the same pass writes.
    let x16 = match dtype {
        DType::F16 if needs_tape(&[x]) => {
            Some(Tensor::uninit(x.device(), op, x.shape(), DType::F16)?)
        }
        _ => None,
    };
    let launch = match (dtype, &x16) {
        (DType::F32, _) => k::swiglu(n, width),
        (DType::F16, None) => k::swiglu_f16(n, width),
        (DType::F16, Some(_)) => k::swiglu_f16_keep(n, width),
        (DType::U32, _) => {
            return Err(Error::DTypeMismatch {
                op,
                expected: DType::F32,
                got: dtype,
            })
        }
    };
    if n > 0 {
        let mut buffers = vec![x, &out];
        buffers.extend(x16.as_ref());
        run(op, &launch, &buffers)?;
    }
    let saved = x16.unwrap_or_else(|| x.detach());
    Ok(out.recorded(&[x], || SwigluBackward { x: saved, width }))
}

impl Tensor {
    /// SwiGLU of the [gate | up] halves of the last dimension: see [`swiglu`].
    pub fn swiglu(&self) -> Result<Tensor> {
        swiglu(self)
    }
}

/// y = silu(a) b, silu(a) = a s, s = sigmoid(a), s' = s (1 - s):
///   d silu/da = s + a s (1 - s) = s (1 + a (1 - s))
///   d a = g b s (1 + a (1 - s)),   d b = g silu(a)     (one kernel, into one [da | db] tensor)
struct SwigluBackward {
    /// The forward's x, f32, or its f16 copy.
    x: Tensor,
    width: usize,
}

impl Backward for SwigluBackward {
    fn name(&self) -> &'static str {
        "swiglu"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let op = "swiglu_backward";
        let g = g.to_dtype(DType::F32)?;
        let dx = Tensor::uninit(g.device(), op, self.x.shape(), DType::F32)?;
        let n = g.elem_count();
        let launch = match self.x.dtype() {
            DType::F16 => k::swiglu_backward_f16(n, self.width),
            _ => k::swiglu_backward(n, self.width),
        };
        if n > 0 {
            run(op, &launch, &[&self.x, &g, &dx])?;
        }
        Ok(vec![Some(dx)])
    }
}
