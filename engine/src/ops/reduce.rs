//! Reductions: sum, mean and max (with argmax) over any one axis, sum and mean over
//! everything, and their backward rules.

use kernels::reduce as k;

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

/// The axis `dim` (negative counts from the end) as an index, checked.
pub(crate) fn axis(x: &Tensor, op: &'static str, dim: isize) -> Result<usize> {
    let rank = x.rank() as isize;
    let d = if dim < 0 { dim + rank } else { dim };
    if d < 0 || d >= rank {
        return Err(Error::BadShape {
            op,
            shape: x.shape().to_vec(),
            reason: format!("dimension {dim} out of range for rank {rank}"),
        });
    }
    Ok(d as usize)
}

/// The shape seen as (outer, len, inner) around axis `d`.
fn split(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// The shape after reducing axis `d`: kept as 1, or removed.
fn reduced_shape(shape: &[usize], d: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[d] = 1;
    } else {
        s.remove(d);
    }
    s
}

/// `scale * sum` over the middle axis of `x` seen as (outer, len, inner), as a new tensor
/// of `shape` (outer * inner elements). Splits a long axis over two launches when one
/// would leave the GPU mostly idle. No tape.
pub(crate) fn sum_axis(
    x: &Tensor,
    op: &'static str,
    (outer, len, inner): (usize, usize, usize),
    scale: f32,
    shape: &[usize],
) -> Result<Tensor> {
    x.expect_dtype(op, DType::F32)?;
    let dev = x.device();
    let out = Tensor::uninit(dev, op, shape, DType::F32)?;
    if outer * inner == 0 {
        return Ok(out);
    }
    let chunks = k::sum_chunks(outer, len, inner);
    if chunks > 1 {
        let partial = Tensor::uninit(dev, op, &[outer, chunks, inner], DType::F32)?;
        run(op, &k::sum(outer, len, inner, chunks, 1.0), &[x, &partial])?;
        run(
            op,
            &k::sum(outer, chunks, inner, 1, scale),
            &[&partial, &out],
        )?;
    } else {
        run(op, &k::sum(outer, len, inner, 1, scale), &[x, &out])?;
    }
    Ok(out)
}

impl Tensor {
    /// Sum over dimension `dim` (negative counts from the end).
    pub fn sum(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.sum_scaled("sum", dim, keepdim, false)
    }

    /// Mean over dimension `dim` (NaN over an empty dimension).
    pub fn mean(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.sum_scaled("mean", dim, keepdim, true)
    }

    fn sum_scaled(
        &self,
        op: &'static str,
        dim: isize,
        keepdim: bool,
        mean: bool,
    ) -> Result<Tensor> {
        let d = axis(self, op, dim)?;
        let split = split(self.shape(), d);
        let scale = if mean { 1.0 / split.1 as f32 } else { 1.0 };
        let out = sum_axis(
            self,
            op,
            split,
            scale,
            &reduced_shape(self.shape(), d, keepdim),
        )?;
        let (shape, kept) = (self.shape().to_vec(), reduced_shape(self.shape(), d, true));
        Ok(out.recorded(&[self], || SumBackward { shape, kept, scale }))
    }

    /// Sum of every element, a tensor of shape [].
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum_all_scaled("sum_all", 1.0)
    }

    /// Mean of every element, a tensor of shape [].
    pub fn mean_all(&self) -> Result<Tensor> {
        self.sum_all_scaled("mean_all", 1.0 / self.elem_count() as f32)
    }

    fn sum_all_scaled(&self, op: &'static str, scale: f32) -> Result<Tensor> {
        let out = sum_axis(self, op, (1, self.elem_count(), 1), scale, &[])?;
        let shape = self.shape().to_vec();
        Ok(out.recorded(&[self], || SumBackward {
            shape,
            kept: vec![],
            scale,
        }))
    }

    /// Maximum over dimension `dim`; the gradient goes to the first maximum of each slice.
    /// (NaN inputs give an unspecified result: the kernel does not propagate NaN.)
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let (values, idx, split) = self.max_and_index("max", dim, keepdim)?;
        let shape = self.shape().to_vec();
        Ok(values.recorded(&[self], || MaxBackward { idx, split, shape }))
    }

    /// Index (u32) of the first maximum over dimension `dim`.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.max_and_index("argmax", dim, keepdim)?.1)
    }

    fn max_and_index(
        &self,
        op: &'static str,
        dim: isize,
        keepdim: bool,
    ) -> Result<(Tensor, Tensor, (usize, usize, usize))> {
        self.expect_dtype(op, DType::F32)?;
        let d = axis(self, op, dim)?;
        let split @ (outer, len, inner) = split(self.shape(), d);
        if len == 0 {
            return Err(Error::BadShape {
                op,
                shape: self.shape().to_vec(),
                reason: format!("cannot take the maximum over the empty dimension {dim}"),
            });
        }
        let shape = reduced_shape(self.shape(), d, keepdim);
        let dev = self.device();
        let values = Tensor::uninit(dev, op, &shape, DType::F32)?;
        let idx = Tensor::uninit(dev, op, &shape, DType::U32)?;
        if outer * inner > 0 {
            run(op, &k::argmax(outer, len, inner), &[self, &values, &idx])?;
        }
        Ok((values, idx, split))
    }
}

/// y = scale * sum_j x[.., j, ..]  =>  dx = scale * g broadcast along j (sum_all: along all).
struct SumBackward {
    shape: Vec<usize>,
    /// The output shape with the reduced axis kept as 1 ([] for sum_all).
    kept: Vec<usize>,
    scale: f32,
}

impl Backward for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = g.reshape(&self.kept)?;
        let g = if self.scale == 1.0 {
            g
        } else {
            g.scale(self.scale)?
        };
        Ok(vec![Some(g.broadcast_to(&self.shape)?)])
    }
}

/// y = x[.., j*, ..] with j* the first argmax  =>  dx[.., j, ..] = g if j == j* else 0.
struct MaxBackward {
    idx: Tensor,
    split: (usize, usize, usize),
    shape: Vec<usize>,
}

impl Backward for MaxBackward {
    fn name(&self) -> &'static str {
        "max"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (outer, len, inner) = self.split;
        let dx = Tensor::uninit(g.device(), "max_backward", &self.shape, DType::F32)?;
        if dx.elem_count() > 0 {
            run(
                "max_backward",
                &k::argmax_backward(outer, len, inner),
                &[&self.idx, g, &dx],
            )?;
        }
        Ok(vec![Some(dx)])
    }
}
