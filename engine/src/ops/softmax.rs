//! Softmax and log-softmax over the last axis (numerically stable), with fused backward rules.

use kernels::softmax as k;

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

/// (rows, len) of a tensor reduced over its last axis; refuses rank 0.
pub(crate) fn rows_and_len(x: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    let Some(&len) = x.shape().last() else {
        return Err(Error::BadShape {
            op,
            shape: vec![],
            reason: "needs at least one dimension".into(),
        });
    };
    let rows = x.elem_count().checked_div(len).unwrap_or(0);
    Ok((rows, len))
}

impl Tensor {
    /// `exp(x - max) / sum(exp(x - max))` over the last axis.
    pub fn softmax(&self) -> Result<Tensor> {
        self.softmax_impl("softmax", false)
    }

    /// `x - max - log(sum(exp(x - max)))` over the last axis.
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.softmax_impl("log_softmax", true)
    }

    fn softmax_impl(&self, op: &'static str, log: bool) -> Result<Tensor> {
        self.expect_dtype(op, DType::F32)?;
        let (rows, len) = rows_and_len(self, op)?;
        let out = Tensor::uninit(self.device(), op, self.shape(), DType::F32)?;
        if rows > 0 {
            run(op, &k::forward(rows, len, log), &[self, &out])?;
        }
        let y = out.detach();
        Ok(out.recorded(&[self], || SoftmaxBackward { y, log }))
    }
}

/// Softmax, y = softmax(x): dy_i/dx_j = y_i (d_ij - y_j), so
///   dx_j = sum_i g_i y_i (d_ij - y_j) = y_j (g_j - sum_i g_i y_i).
/// Log-softmax, y = x - logsumexp(x): dy_i/dx_j = d_ij - softmax(x)_j, so
///   dx_j = g_j - softmax(x)_j sum_i g_i, with softmax(x) = exp(y).
/// Both are one fused kernel over the saved output y.
struct SoftmaxBackward {
    y: Tensor,
    log: bool,
}

impl Backward for SoftmaxBackward {
    fn name(&self) -> &'static str {
        if self.log {
            "log_softmax"
        } else {
            "softmax"
        }
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let op = self.name();
        g.expect_dtype(op, DType::F32)?;
        let (rows, len) = rows_and_len(&self.y, op)?;
        let dx = Tensor::uninit(g.device(), op, self.y.shape(), DType::F32)?;
        if rows > 0 {
            run(op, &k::backward(rows, len, self.log), &[&self.y, g, &dx])?;
        }
        Ok(vec![Some(dx)])
    }
}
