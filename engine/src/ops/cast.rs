//! f32 <-> f16 casts (`Tensor::to_dtype`) and their backward rule. Gradients are always f32,
//! so the gradient of a cast is the incoming gradient as f32, whichever way the cast went.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use kernels::cast as k;

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::runtime::Storage;
use crate::tensor::Tensor;

impl Tensor {
    /// This tensor as `dtype`: F32 -> F16 rounds to nearest even (overflow gives inf, as in
    /// IEEE), F16 -> F32 is exact. Casting to the tensor's own dtype returns it unchanged.
    /// U32 tensors are not cast (ids are not numbers to convert).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let launch = match (self.dtype(), dtype) {
            (DType::F32, DType::F16) => k::f32_to_f16(self.elem_count()),
            (DType::F16, DType::F32) => k::f16_to_f32(self.elem_count()),
            // one side is U32: name the float dtype the other side would need
            (from, to) => {
                return Err(Error::DTypeMismatch {
                    op: "to_dtype",
                    expected: if from == DType::U32 { to } else { from },
                    got: DType::U32,
                })
            }
        };
        let out = Tensor::uninit(self.device(), "to_dtype", self.shape(), dtype)?;
        run("to_dtype", &launch, &[self, &out])?;
        Ok(out.recorded(&[self], || CastBackward))
    }
}

/// A copy of one tensor in another dtype (the f16 copy of an f32 weight, say), made on first
/// use and reused while the tensor is unchanged: once an op writes the tensor in place (an
/// optimizer step; see [`Tensor::version`]), the next use casts it again. Each use stands on
/// the tape for a cast of the tensor, so gradients reach it as through
/// [`Tensor::to_dtype`]. Clones share the copy. With retention off
/// ([`CastCache::set_retain`]) every use casts afresh and nothing is kept: the copy lives only
/// as long as the tape or the caller holds it.
#[derive(Clone)]
pub struct CastCache {
    slot: Rc<RefCell<Option<Cached>>>,
    retain: Rc<Cell<bool>>,
}

impl Default for CastCache {
    fn default() -> CastCache {
        CastCache {
            slot: Rc::default(),
            retain: Rc::new(Cell::new(true)),
        }
    }
}

struct Cached {
    source: Arc<Storage>,
    version: u64,
    copy: Tensor,
}

impl CastCache {
    pub fn new() -> CastCache {
        CastCache::default()
    }

    /// `t.to_dtype(dtype)`, cast only when `t` (or the dtype asked) differs from last time.
    pub fn cast(&self, t: &Tensor, dtype: DType) -> Result<Tensor> {
        if t.dtype() == dtype || !self.retain.get() {
            return t.to_dtype(dtype);
        }
        let mut slot = self.slot.borrow_mut();
        let fresh = matches!(&*slot, Some(c) if Arc::ptr_eq(&c.source, t.storage())
            && c.version == t.version()
            && c.copy.dtype() == dtype
            && c.copy.shape() == t.shape());
        if !fresh {
            // The stale copy goes back to the pool before the new one is made.
            slot.take();
            let copy = crate::no_grad(|| t.detach().to_dtype(dtype))?;
            *slot = Some(Cached {
                source: t.storage().clone(),
                version: t.version(),
                copy,
            });
        }
        let copy = &slot.as_ref().expect("filled above").copy;
        Ok(copy.detach().recorded(&[t], || CastBackward))
    }

    /// Drop the copy (its memory goes back to the pool).
    pub fn clear(&self) {
        self.slot.borrow_mut().take();
    }

    /// Keep the copy between uses (the default), or cast at every use and keep nothing
    /// (the copy held now is dropped).
    pub fn set_retain(&self, retain: bool) {
        self.retain.set(retain);
        if !retain {
            self.clear();
        }
    }
}

/// d cast(x)/dx = 1 (the rounding is treated as the identity, as every framework does);
/// the gradient is kept in f32.
struct CastBackward;

impl Backward for CastBackward {
    fn name(&self) -> &'static str {
        "to_dtype"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.to_dtype(DType::F32)?)])
    }
}
