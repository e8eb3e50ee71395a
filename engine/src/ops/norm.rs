//! RMSNorm over the last axis (HF's LlamaRMSNorm in f32), with a fused input gradient and a
//! weight gradient summed over rows without atomics.

use kernels::norm as k;

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::reduce::sum_axis;
use crate::ops::run;
use crate::ops::softmax::rows_and_len;
use crate::tensor::Tensor;

impl Tensor {
    /// `weight * x / sqrt(mean(x^2) + eps)` over the last axis; `weight` has the last axis'
    /// length.
    pub fn rms_norm(&self, weight: &Tensor, eps: f32) -> Result<Tensor> {
        self.rms_norm_as(weight, eps, DType::F32)
    }

    /// [`Tensor::rms_norm`] with the result stored as `dtype`: f32, or f16 rounded bit for
    /// bit as `to_dtype` rounds (written by the norm kernel itself where the last axis is
    /// even, else cast after it), for an f16 product to read. The gradient is f32 either way.
    pub fn rms_norm_as(&self, weight: &Tensor, eps: f32, dtype: DType) -> Result<Tensor> {
        let op = "rms_norm";
        if dtype == DType::U32 {
            return Err(Error::DTypeMismatch {
                op,
                expected: DType::F32,
                got: dtype,
            });
        }
        self.expect_dtype(op, DType::F32)?;
        weight.expect_dtype(op, DType::F32)?;
        weight.check_same_device(op, self)?;
        let (rows, len) = rows_and_len(self, op)?;
        if weight.shape() != [len] {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: weight.shape().to_vec(),
            });
        }
        if dtype == DType::F16 && len % 2 != 0 {
            return self.rms_norm(weight, eps)?.to_dtype(DType::F16);
        }
        let dev = self.device();
        let out = Tensor::uninit(dev, op, self.shape(), dtype)?;
        let rstd = Tensor::uninit(dev, op, &[rows], DType::F32)?;
        let launch = match dtype {
            DType::F16 => k::forward_f16(rows, len, eps),
            _ => k::forward(rows, len, eps),
        };
        if rows > 0 {
            run(op, &launch, &[self, weight, &out, &rstd])?;
        }
        let (x, w) = (self.detach(), weight.detach());
        let (need_dx, need_dw) = (self.is_tracked(), weight.is_tracked());
        Ok(out.recorded(&[self, weight], || RmsNormBackward {
            x,
            w,
            rstd,
            need_dx,
            need_dw,
        }))
    }
}

/// y_j = w_j x_j r, r = (mean_k x_k^2 + eps)^(-1/2) (saved per row), x_hat = x r.
/// dr/dx_j = -r^3 x_j / n, so
///   dx_j = sum_k g_k w_k (d_kj r - x_k r^3 x_j / n)
///        = r (g_j w_j - x_hat_j mean_k(g_k w_k x_hat_k))        (one fused kernel per row)
///   dw_j = sum over rows of g_j x_hat_j                            (column sums, no atomics)
struct RmsNormBackward {
    x: Tensor,
    w: Tensor,
    rstd: Tensor,
    need_dx: bool,
    need_dw: bool,
}

impl Backward for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms_norm"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let op = "rms_norm_backward";
        let g = &g.to_dtype(DType::F32)?;
        let (rows, len) = rows_and_len(&self.x, op)?;
        let dev = g.device();
        let dx = if self.need_dx {
            let dx = Tensor::uninit(dev, op, self.x.shape(), DType::F32)?;
            if rows > 0 {
                run(
                    op,
                    &k::backward(rows, len),
                    &[&self.x, &self.w, &self.rstd, g, &dx],
                )?;
            }
            Some(dx)
        } else {
            None
        };
        let dw = if !self.need_dw {
            None
        } else if rows == 0 {
            Some(Tensor::zeros(dev, &[len], DType::F32)?)
        } else {
            let chunks = k::weight_grad_chunks(rows, len);
            let partial = Tensor::uninit(dev, op, &[chunks, len], DType::F32)?;
            run(
                op,
                &k::weight_grad(rows, len, chunks),
                &[&self.x, &self.rstd, g, &partial],
            )?;
            Some(if chunks == 1 {
                partial.reshape(&[len])?
            } else {
                sum_axis(&partial, op, (1, chunks, len), 1.0, &[len])?
            })
        };
        Ok(vec![dx, dw])
    }
}
