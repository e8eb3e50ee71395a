//! Tensors: a shape, a dtype and GPU storage from the pool; cheap to clone (shared storage).
//! Tensors are always contiguous (row-major); `reshape` is a free view, and transposes are
//! folded into the kernels that need them (matmul takes transpose flags).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use half::f16;

use crate::autograd;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::runtime::Storage;

/// Identity of a tensor in the autograd tape (views get their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

struct Inner {
    id: TensorId,
    shape: Vec<usize>,
    dtype: DType,
    storage: Arc<Storage>,
    device: Device,
    /// Gradients flow to or through this tensor (a variable, or made from one on the tape).
    tracked: bool,
    /// A leaf that asked for its gradient.
    is_var: bool,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {:?}, {:?})",
            self.0.id, self.0.shape, self.0.dtype
        )
    }
}

pub(crate) fn elem_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    // ---- construction ----

    /// An uninitialised tensor (contents are whatever the pooled buffer held).
    pub(crate) fn uninit(
        dev: &Device,
        op: &'static str,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let bytes = (elem_count(shape) * dtype.size_in_bytes()) as u64;
        let storage = dev.alloc_storage(op, bytes)?;
        Ok(Tensor::from_storage(
            dev,
            Arc::new(storage),
            shape.to_vec(),
            dtype,
            false,
            false,
        ))
    }

    fn from_storage(
        dev: &Device,
        storage: Arc<Storage>,
        shape: Vec<usize>,
        dtype: DType,
        tracked: bool,
        is_var: bool,
    ) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::next(),
            shape,
            dtype,
            storage,
            device: dev.clone(),
            tracked,
            is_var,
        }))
    }

    /// An f32 tensor holding `data` (row-major).
    pub fn from_slice(dev: &Device, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        check_len("from_slice", data.len(), shape)?;
        let t = Tensor::uninit(dev, "from_slice", shape, DType::F32)?;
        dev.upload(&t.0.storage, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// An f16 tensor holding `data` (row-major).
    pub fn from_f16_slice(dev: &Device, data: &[f16], shape: &[usize]) -> Result<Tensor> {
        check_len("from_f16_slice", data.len(), shape)?;
        let t = Tensor::uninit(dev, "from_f16_slice", shape, DType::F16)?;
        dev.upload(&t.0.storage, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// A u32 tensor (token ids, indices).
    pub fn from_u32_slice(dev: &Device, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        check_len("from_u32_slice", data.len(), shape)?;
        let t = Tensor::uninit(dev, "from_u32_slice", shape, DType::U32)?;
        dev.upload(&t.0.storage, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    pub fn zeros(dev: &Device, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(dev, shape, dtype, 0.0)
    }

    /// A tensor with every element `value` (filled on the GPU).
    pub fn full(dev: &Device, shape: &[usize], dtype: DType, value: f32) -> Result<Tensor> {
        let t = Tensor::uninit(dev, "full", shape, dtype)?;
        crate::ops::elementwise::fill(&t, value)?;
        Ok(t)
    }

    /// A tensor of ones shaped like `self`.
    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::full(&self.0.device, &self.0.shape, self.0.dtype, 1.0)
    }

    /// Mark this tensor as a variable whose gradient `backward` returns (a leaf).
    pub fn var(self) -> Tensor {
        let i = &self.0;
        Tensor::from_storage(
            &i.device,
            i.storage.clone(),
            i.shape.clone(),
            i.dtype,
            true,
            true,
        )
    }

    /// The same storage, cut off from the tape.
    pub fn detach(&self) -> Tensor {
        let i = &self.0;
        Tensor::from_storage(
            &i.device,
            i.storage.clone(),
            i.shape.clone(),
            i.dtype,
            false,
            false,
        )
    }

    /// Mark an op's output as made from `inputs`, recording `rule` on the tape when a
    /// gradient must flow through it. `rule` is built only in that case.
    pub(crate) fn recorded<R, F>(self, inputs: &[&Tensor], rule: F) -> Tensor
    where
        R: autograd::Backward + 'static,
        F: FnOnce() -> R,
    {
        if !needs_tape(inputs) {
            return self;
        }
        let out = self.tracked();
        autograd::record(out.0.id, tracked_ids(inputs), Box::new(rule()));
        out
    }

    /// [`Tensor::recorded`] for an op with several outputs and one backward rule.
    pub(crate) fn recorded_many<R, F>(
        outputs: Vec<Tensor>,
        inputs: &[&Tensor],
        rule: F,
    ) -> Vec<Tensor>
    where
        R: autograd::BackwardMany + 'static,
        F: FnOnce() -> R,
    {
        if !needs_tape(inputs) {
            return outputs;
        }
        let outputs: Vec<Tensor> = outputs.iter().map(Tensor::tracked).collect();
        let ids = outputs.iter().map(|t| t.0.id).collect();
        autograd::record_many(ids, tracked_ids(inputs), Box::new(rule()));
        outputs
    }

    /// The same tensor (id, storage), marked as carrying gradients.
    fn tracked(&self) -> Tensor {
        let i = &self.0;
        Tensor(Arc::new(Inner {
            id: i.id,
            shape: i.shape.clone(),
            dtype: i.dtype,
            storage: i.storage.clone(),
            device: i.device.clone(),
            tracked: true,
            is_var: false,
        }))
    }

    // ---- accessors ----

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }
    /// Size of dimension `d`; negative counts from the end.
    pub fn dim(&self, d: isize) -> usize {
        let r = self.rank() as isize;
        let d = if d < 0 { d + r } else { d };
        self.0.shape[d as usize]
    }
    pub fn elem_count(&self) -> usize {
        elem_count(&self.0.shape)
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> &Device {
        &self.0.device
    }
    pub fn is_tracked(&self) -> bool {
        self.0.tracked
    }
    pub fn is_var(&self) -> bool {
        self.0.is_var
    }
    pub fn size_in_bytes(&self) -> u64 {
        (self.elem_count() * self.0.dtype.size_in_bytes()) as u64
    }
    /// The storage and the bytes of it this tensor covers, for a kernel binding.
    pub(crate) fn binding(&self) -> (&Storage, u64) {
        (&self.0.storage, self.size_in_bytes())
    }

    pub(crate) fn storage(&self) -> &Arc<Storage> {
        &self.0.storage
    }

    /// No other handle (clone, view or reshape) shares this tensor's storage, so writing it
    /// in place changes nothing anyone else can see.
    pub(crate) fn is_sole_owner(&self) -> bool {
        Arc::strong_count(&self.0) == 1 && Arc::strong_count(&self.0.storage) == 1
    }

    /// How many times an op has written this tensor's storage in place since it was made
    /// (optimizer steps, for a parameter): copies made from it are stale once it moves on.
    pub fn version(&self) -> u64 {
        self.0.storage.version()
    }

    /// Note that an op is writing this tensor's storage in place.
    pub(crate) fn mark_written(&self) {
        self.0.storage.mark_written()
    }

    // ---- host transfer ----

    /// Copy to the host as f32 (f16 is widened). Submits pending work and waits.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self
            .0
            .device
            .download(&self.0.storage, self.size_in_bytes())?;
        Ok(match self.0.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec(&bytes),
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(&bytes)
                .into_iter()
                .map(f32::from)
                .collect(),
            DType::U32 => bytemuck::pod_collect_to_vec::<u8, u32>(&bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        })
    }

    /// Overwrite the first `data.len()` elements of an f32 tensor (ordered with the pending
    /// dispatches, like an op).
    pub(crate) fn write_prefix(&self, data: &[f32]) -> Result<()> {
        self.expect_dtype("write_prefix", DType::F32)?;
        check_prefix("write_prefix", data.len(), self.elem_count())?;
        self.0
            .device
            .upload(&self.0.storage, bytemuck::cast_slice(data))
    }

    /// The first `n` elements of each f32 tensor of `parts` (all on one device), on the host:
    /// pending work is submitted once and waited for once.
    pub(crate) fn read_prefixes(parts: &[(&Tensor, usize)]) -> Result<Vec<Vec<f32>>> {
        let Some(&(first, _)) = parts.first() else {
            return Ok(Vec::new());
        };
        let mut srcs = Vec::with_capacity(parts.len());
        for &(t, n) in parts {
            t.expect_dtype("read_prefixes", DType::F32)?;
            t.check_same_device("read_prefixes", first)?;
            check_prefix("read_prefixes", n, t.elem_count())?;
            srcs.push((&*t.0.storage, (n * 4) as u64));
        }
        let bytes = first.0.device.download_many(&srcs)?;
        Ok(bytes
            .iter()
            .map(|b| bytemuck::pod_collect_to_vec(b))
            .collect())
    }

    /// Copy a u32 tensor to the host.
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        self.expect_dtype("to_vec_u32", DType::U32)?;
        let bytes = self
            .0
            .device
            .download(&self.0.storage, self.size_in_bytes())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Copy an f16 tensor to the host without widening.
    pub fn to_vec_f16(&self) -> Result<Vec<f16>> {
        self.expect_dtype("to_vec_f16", DType::F16)?;
        let bytes = self
            .0
            .device
            .download(&self.0.storage, self.size_in_bytes())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.elem_count() != 1 {
            return Err(Error::BadShape {
                op: "to_scalar",
                shape: self.shape().to_vec(),
                reason: "expected exactly one element".into(),
            });
        }
        Ok(self.to_vec()?[0])
    }

    // ---- views ----

    /// The same data under another shape with the same number of elements (free).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if elem_count(shape) != self.elem_count() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        let i = &self.0;
        let out = Tensor::from_storage(
            &i.device,
            i.storage.clone(),
            shape.to_vec(),
            i.dtype,
            false,
            false,
        );
        let from = self.shape().to_vec();
        Ok(out.recorded(&[self], move || ReshapeBackward { from }))
    }

    pub(crate) fn check_same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.0.device.same(&other.0.device) {
            Ok(())
        } else {
            Err(Error::DeviceMismatch { op })
        }
    }

    /// `other` has this tensor's shape, else a shape mismatch (this tensor's shape first).
    pub(crate) fn expect_same_shape(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.shape() == other.shape() {
            Ok(())
        } else {
            Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: other.shape().to_vec(),
            })
        }
    }

    pub(crate) fn expect_dtype(&self, op: &'static str, dtype: DType) -> Result<()> {
        if self.0.dtype == dtype {
            Ok(())
        } else {
            Err(Error::DTypeMismatch {
                op,
                expected: dtype,
                got: self.0.dtype,
            })
        }
    }
}

/// Whether an op on `inputs` records onto the tape: recording is on and some input carries
/// gradients.
pub(crate) fn needs_tape(inputs: &[&Tensor]) -> bool {
    autograd::is_grad_enabled() && inputs.iter().any(|t| t.0.tracked)
}

fn tracked_ids(inputs: &[&Tensor]) -> Vec<Option<TensorId>> {
    inputs
        .iter()
        .map(|t| t.0.tracked.then_some(t.0.id))
        .collect()
}

fn check_len(op: &'static str, len: usize, shape: &[usize]) -> Result<()> {
    let expected = elem_count(shape);
    if len == expected {
        Ok(())
    } else {
        Err(Error::DataLength {
            op,
            len,
            shape: shape.to_vec(),
            expected,
        })
    }
}

/// `len` elements fit a tensor of `count`.
fn check_prefix(op: &'static str, len: usize, count: usize) -> Result<()> {
    if len <= count {
        Ok(())
    } else {
        Err(Error::DataLength {
            op,
            len,
            shape: vec![count],
            expected: count,
        })
    }
}

/// d reshape(x) / dx: the gradient reshaped back.
struct ReshapeBackward {
    from: Vec<usize>,
}

impl autograd::Backward for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.reshape(&self.from)?)])
    }
}
