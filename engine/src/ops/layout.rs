//! Layout ops that move data without arithmetic: permute (and transpose), narrow (a slice
//! along one dim) and concatenation, on 32-bit dtypes (f32, u32). Each is one strided copy.

use kernels::layout::{self as k, View};

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

fn check_32bit(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() == DType::F16 {
        return Err(Error::DTypeMismatch {
            op,
            expected: DType::F32,
            got: DType::F16,
        });
    }
    Ok(())
}

fn too_many_dims(op: &'static str, shape: &[usize]) -> Error {
    Error::BadShape {
        op,
        shape: shape.to_vec(),
        reason: format!("more than {} non-mergeable dimensions", k::MAX_RANK),
    }
}

fn resolve_dim(op: &'static str, shape: &[usize], dim: isize) -> Result<usize> {
    let r = shape.len() as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(Error::BadShape {
            op,
            shape: shape.to_vec(),
            reason: format!("no dimension {dim}"),
        });
    }
    Ok(d as usize)
}

/// Write contiguous `src` into `dst` through `view` (dst must cover the view).
fn scatter_into(op: &'static str, src: &Tensor, dst: &Tensor, view: &View) -> Result<()> {
    let launch = k::scatter(view).ok_or_else(|| too_many_dims(op, src.shape()))?;
    run(op, &launch, &[src, dst])
}

impl Tensor {
    /// Reorder dimensions: output dim `d` is input dim `perm[d]` (a copy).
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        self.permute_as(perm, self.dtype())
    }

    /// [`Tensor::permute`] with the copy stored as `dtype`: this tensor's own, or f16 from
    /// f32 (rounded bit for bit as `to_dtype` rounds), for an f16 product to read without a
    /// cast pass. The gradient is f32.
    pub fn permute_as(&self, perm: &[usize], dtype: DType) -> Result<Tensor> {
        let op = "permute";
        check_32bit(op, self)?;
        if dtype != self.dtype() && (self.dtype(), dtype) != (DType::F32, DType::F16) {
            return Err(Error::DTypeMismatch {
                op,
                expected: self.dtype(),
                got: dtype,
            });
        }
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::BadShape {
                op,
                shape: self.shape().to_vec(),
                reason: format!("{perm:?} is not a permutation of {r} dimensions"),
            });
        }
        let in_strides = contiguous_strides(self.shape());
        let view = View {
            dims: perm.iter().map(|&p| self.shape()[p]).collect(),
            strides: perm.iter().map(|&p| in_strides[p]).collect(),
            offset: 0,
        };
        let launch = match dtype {
            DType::F16 => k::gather_f16(&view),
            _ => k::gather(&view),
        }
        .ok_or_else(|| too_many_dims(op, self.shape()))?;
        let out = Tensor::uninit(self.device(), op, &view.dims, dtype)?;
        if out.elem_count() > 0 {
            run(op, &launch, &[self, &out])?;
        }
        let mut inverse = vec![0; r];
        for (d, &p) in perm.iter().enumerate() {
            inverse[p] = d;
        }
        Ok(out.recorded(&[self], || PermuteBackward { inverse }))
    }

    /// Swap two dimensions (a copy).
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = resolve_dim("transpose", self.shape(), d0)?;
        let b = resolve_dim("transpose", self.shape(), d1)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Elements `start..start + len` along `dim` (a copy).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let op = "narrow";
        check_32bit(op, self)?;
        let d = resolve_dim(op, self.shape(), dim)?;
        if start + len > self.shape()[d] {
            return Err(Error::BadShape {
                op,
                shape: self.shape().to_vec(),
                reason: format!("range {start}..{} past dimension {d}", start + len),
            });
        }
        let strides = contiguous_strides(self.shape());
        let mut dims = self.shape().to_vec();
        dims[d] = len;
        let view = View {
            dims: dims.clone(),
            strides,
            offset: start * contiguous_strides(self.shape())[d],
        };
        let launch = k::gather(&view).ok_or_else(|| too_many_dims(op, self.shape()))?;
        let out = Tensor::uninit(self.device(), op, &dims, self.dtype())?;
        run(op, &launch, &[self, &out])?;
        let from = self.shape().to_vec();
        Ok(out.recorded(&[self], || NarrowBackward {
            from,
            dim: d,
            start,
        }))
    }

    /// Concatenate along `dim`; all other dimensions must agree.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let op = "cat";
        let first = tensors.first().ok_or_else(|| Error::BadShape {
            op,
            shape: vec![],
            reason: "no tensors to concatenate".into(),
        })?;
        let d = resolve_dim(op, first.shape(), dim)?;
        let mut total = 0;
        for t in tensors {
            check_32bit(op, t)?;
            t.expect_dtype(op, first.dtype())?;
            t.check_same_device(op, first)?;
            let same_rest = t.rank() == first.rank()
                && (0..t.rank()).all(|i| i == d || t.shape()[i] == first.shape()[i]);
            if !same_rest {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: first.shape().to_vec(),
                    rhs: t.shape().to_vec(),
                });
            }
            total += t.shape()[d];
        }
        let mut shape = first.shape().to_vec();
        shape[d] = total;
        let out = Tensor::uninit(first.device(), op, &shape, first.dtype())?;
        let out_strides = contiguous_strides(&shape);
        let mut pos = 0;
        let mut sizes = Vec::with_capacity(tensors.len());
        for t in tensors {
            let view = View {
                dims: t.shape().to_vec(),
                strides: out_strides.clone(),
                offset: pos * out_strides[d],
            };
            scatter_into(op, t, &out, &view)?;
            pos += t.shape()[d];
            sizes.push(t.shape()[d]);
        }
        Ok(out.recorded(tensors, || CatBackward { dim: d, sizes }))
    }
}

/// d permute(x, p) = permute(g, p^-1)
struct PermuteBackward {
    inverse: Vec<usize>,
}

impl Backward for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.to_dtype(DType::F32)?.permute(&self.inverse)?)])
    }
}

/// d narrow(x) = g placed at its slice of a zero tensor shaped like x
struct NarrowBackward {
    from: Vec<usize>,
    dim: usize,
    start: usize,
}

impl Backward for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dx = Tensor::zeros(g.device(), &self.from, DType::F32)?;
        let strides = contiguous_strides(&self.from);
        let view = View {
            dims: g.shape().to_vec(),
            strides: strides.clone(),
            offset: self.start * strides[self.dim],
        };
        scatter_into("narrow backward", g, &dx, &view)?;
        Ok(vec![Some(dx)])
    }
}

/// d cat(x_1..x_n) = the slices of g, one per input
struct CatBackward {
    dim: usize,
    sizes: Vec<usize>,
}

impl Backward for CatBackward {
    fn name(&self) -> &'static str {
        "cat"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut start = 0;
        let mut grads = Vec::with_capacity(self.sizes.len());
        for &len in &self.sizes {
            grads.push(Some(g.narrow(self.dim as isize, start, len)?));
            start += len;
        }
        Ok(grads)
    }
}
