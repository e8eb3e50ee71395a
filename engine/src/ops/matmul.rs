//! Matrix multiply: `matmul`, `matmul_t` (transposes folded into the kernel), `linear`
//! (x @ W^T + b, W stored (out, in) as in HF checkpoints), with numpy-style batch broadcasting,
//! and their backward rule.
//!
//! Inputs may be f32 or f16 (in any mix); the product is accumulated and returned in f32. f16
//! x f16 runs on cooperative matrices (tensor cores) where the adapter has them and M, N, K are
//! multiples of 16, else on the SIMT kernel, which widens f16 to f32 as it stages. Gradients
//! are always f32, also for f16 inputs (cast them where an f16 gradient is wanted).

use kernels::matmul::{self as k, Elem, Variant};

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

/// Which kernel computes a matmul. `Auto` is the right choice outside tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulKernel {
    /// Cooperative matrices for f16 x f16 where they fit, else SIMT.
    #[default]
    Auto,
    /// The tiled SIMT kernel (any dtypes and sizes).
    Simt,
    /// f16 cooperative matrices, loaded straight from global memory (the default coop kernel).
    Coop,
    /// f16 cooperative matrices with tiles staged through workgroup memory.
    CoopStaged,
    /// [`MatmulKernel::CoopStaged`] with the next tile fetched during the current one's
    /// products.
    CoopPrefetch,
}

fn elem(op: &'static str, t: &Tensor) -> Result<Elem> {
    match t.dtype() {
        DType::F32 => Ok(Elem::F32),
        DType::F16 => Ok(Elem::F16),
        got => Err(Error::DTypeMismatch {
            op,
            expected: DType::F32,
            got,
        }),
    }
}

/// The forward product, not recorded on the tape.
fn product(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    ta: bool,
    tb: bool,
    kernel: MatmulKernel,
) -> Result<Tensor> {
    for t in [a, b] {
        if t.rank() < 2 {
            return Err(Error::BadShape {
                op,
                shape: t.shape().to_vec(),
                reason: "matmul operands need rank >= 2 (batch.., rows, cols)".into(),
            });
        }
    }
    let (ea, eb) = (elem(op, a)?, elem(op, b)?);
    let (ra, rb) = (a.rank(), b.rank());
    let (m, ka) = if ta {
        (a.dim(-1), a.dim(-2))
    } else {
        (a.dim(-2), a.dim(-1))
    };
    let (kb, n) = if tb {
        (b.dim(-1), b.dim(-2))
    } else {
        (b.dim(-2), b.dim(-1))
    };
    let mismatch = || Error::ShapeMismatch {
        op,
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
    };
    if ka != kb {
        return Err(mismatch());
    }
    let dev = a.device();
    // A few rows against a shared (N, K) weight, as in a decode step: the skinny kernel.
    let rows = a.elem_count() / ka.max(1);
    if kernel == MatmulKernel::Auto
        && (ea, eb) == (Elem::F32, Elem::F32)
        && !ta
        && tb
        && rb == 2
        && ka > 0
        && rows <= k::GEMV_MAX_ROWS
    {
        let mut shape = a.shape()[..ra - 1].to_vec();
        shape.push(n);
        let out = Tensor::uninit(dev, op, &shape, DType::F32)?;
        run(op, &k::gemv(rows, n, ka), &[a, b, &out])?;
        return Ok(out);
    }
    let plan = k::plan(m, n, ka, ta, tb, &a.shape()[..ra - 2], &b.shape()[..rb - 2])
        .ok_or_else(mismatch)?;
    let variant = match kernel {
        MatmulKernel::Auto => auto_variant(dev, ea, eb, &plan),
        MatmulKernel::Simt => Variant::Simt { a: ea, b: eb },
        MatmulKernel::Coop | MatmulKernel::CoopStaged | MatmulKernel::CoopPrefetch => {
            for t in [a, b] {
                t.expect_dtype(op, DType::F16)?;
            }
            let Some(frag) = dev.coop_fragment() else {
                return Err(Error::MissingFeature {
                    op,
                    feature: "EXPERIMENTAL_COOPERATIVE_MATRIX",
                    adapter: dev.name().to_string(),
                });
            };
            if !plan.coop_fits() {
                return Err(Error::BadShape {
                    op,
                    shape: vec![plan.m, plan.n, plan.k],
                    reason: format!(
                        "the cooperative-matrix kernels need M, N and K (shown) multiples of {}",
                        k::COOP_MULTIPLE
                    ),
                });
            }
            match kernel {
                MatmulKernel::Coop => Variant::CoopDirect(frag),
                MatmulKernel::CoopStaged => Variant::CoopStaged(frag),
                _ => Variant::CoopPrefetch(frag),
            }
        }
    };
    let mut shape = plan.out_batch.clone();
    shape.extend([m, n]);
    let out = Tensor::uninit(dev, op, &shape, DType::F32)?;
    for launch in plan.launches(variant) {
        run(op, &launch, &[a, b, &out])?;
    }
    Ok(out)
}

/// The kernel `MatmulKernel::Auto` runs: cooperative matrices for f16 x f16 where the sizes
/// fit them (the device's [`crate::CoopMatmul`] one, on its [`crate::Fragment`]), else SIMT.
fn auto_variant(dev: &crate::Device, ea: Elem, eb: Elem, plan: &k::Plan) -> Variant {
    match dev.coop_fragment() {
        Some(f) if ea == Elem::F16 && eb == Elem::F16 && plan.coop_fits() => {
            match dev.coop_matmul() {
                crate::CoopMatmul::Direct => Variant::CoopDirect(f),
                crate::CoopMatmul::Staged => Variant::CoopStaged(f),
                crate::CoopMatmul::Prefetch => Variant::CoopPrefetch(f),
            }
        }
        _ => Variant::Simt { a: ea, b: eb },
    }
}

/// One 2-D product inside larger buffers, not recorded: `C = op(A) @ op(B)` where op(A) is
/// (M, K) (A stored (M, K), or (K, M) with `trans_a`), op(B) is (K, N) (B stored (K, N), or
/// (N, K) with `trans_b`) and C (M, N) is f32, each operand dense and row-major from its base
/// offset (in elements) into the tensor's storage, on the kernel `Auto` picks. For ops that
/// tile a product themselves (the f16 LM head objective); the caller keeps every range inside
/// its tensor.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_at(
    op: &'static str,
    (a, a_base): (&Tensor, usize),
    (b, b_base): (&Tensor, usize),
    (c, c_base): (&Tensor, usize),
    mnk: [usize; 3],
    trans_a: bool,
    trans_b: bool,
) -> Result<()> {
    product_batch_at(
        op,
        (a, a_base, 0),
        (b, b_base, 0),
        (c, c_base, 0),
        1,
        mnk,
        trans_a,
        trans_b,
    )
}

/// `count` such products at once (one series of dispatches), product z reading and writing
/// from each operand's base plus z times its stride (elements).
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_batch_at(
    op: &'static str,
    (a, a_base, a_stride): (&Tensor, usize, usize),
    (b, b_base, b_stride): (&Tensor, usize, usize),
    (c, c_base, c_stride): (&Tensor, usize, usize),
    count: usize,
    [m, n, kk]: [usize; 3],
    trans_a: bool,
    trans_b: bool,
) -> Result<()> {
    c.expect_dtype(op, DType::F32)?;
    let (ea, eb) = (elem(op, a)?, elem(op, b)?);
    let mut plan = k::plan(m, n, kk, trans_a, trans_b, &[], &[]).ok_or(Error::BadShape {
        op,
        shape: vec![m, n, kk],
        reason: "no plan for a 2-D product".into(),
    })?;
    plan.m = m;
    plan.groups = vec![k::BatchGroup {
        count,
        inner: count.max(1),
        base: [a_base, b_base, c_base],
        outer_strides: [0; 3],
        inner_strides: [a_stride, b_stride, c_stride],
    }];
    for launch in plan.launches(auto_variant(a.device(), ea, eb, &plan)) {
        run(op, &launch, &[a, b, c])?;
    }
    Ok(())
}

impl Tensor {
    /// `self @ rhs`: (.., M, K) @ (.., K, N) -> (.., M, N) in f32, batch dims broadcast
    /// (a rank-2 `rhs` is shared by every batch of `self`).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, false, false)
    }

    /// `op(self) @ op(rhs)` where op transposes the last two dims when its flag is set:
    /// `self` is (.., M, K), or (.., K, M) with `trans_a`; `rhs` is (.., K, N), or (.., N, K)
    /// with `trans_b`. No transposed copy is made.
    pub fn matmul_t(&self, rhs: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        self.matmul_with(rhs, trans_a, trans_b, MatmulKernel::Auto)
    }

    /// [`Tensor::matmul_t`] on a chosen kernel (tests and benchmarks); errors where that kernel
    /// does not apply (dtypes, adapter features, sizes).
    pub fn matmul_with(
        &self,
        rhs: &Tensor,
        trans_a: bool,
        trans_b: bool,
        kernel: MatmulKernel,
    ) -> Result<Tensor> {
        let out = product("matmul", self, rhs, trans_a, trans_b, kernel)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(out.recorded(&[self, rhs], || MatmulBackward {
            a,
            b,
            trans_a,
            trans_b,
        }))
    }

    /// A linear layer: `self @ weight^T + bias`, `self` (.., in), `weight` (out, in) as HF
    /// stores it, `bias` (out) in f32. Returns (.., out) in f32.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        if self.rank() == 0 || weight.rank() != 2 || self.dim(-1) != weight.dim(1) {
            return Err(Error::ShapeMismatch {
                op: "linear",
                lhs: self.shape().to_vec(),
                rhs: weight.shape().to_vec(),
            });
        }
        // (.., in) -> (rows, in), so that any leading shape, even none, is one product.
        let lead = &self.shape()[..self.rank() - 1];
        let rows: usize = lead.iter().product();
        let x = self.reshape(&[rows, self.dim(-1)])?;
        let mut shape = lead.to_vec();
        shape.push(weight.dim(0));
        let y = x.matmul_t(weight, false, true)?.reshape(&shape)?;
        match bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

/// C = op(A) @ op(B), per batch, with G = dL/dC:
///   d op(A) = G @ op(B)^T      d op(B) = op(A)^T @ G
/// so, with the stored operands (transposing the first when it was transposed):
///   A (M, K):  dA = G @ op(B)^T = matmul_t(G, B, false, !tb)
///   A (K, M):  dA = op(B) @ G^T = matmul_t(B, G, tb, true)
///   B (K, N):  dB = op(A)^T @ G = matmul_t(A, G, !ta, false)
///   B (N, K):  dB = G^T @ op(A) = matmul_t(G, A, true, ta)
/// An operand broadcast over batch dims gets the sum over them: when B is shared and A is
/// (.., M, K), that sum is one product over the stacked batches, (batches * M, ..).
/// Gradients are f32 whatever the operands' dtypes; when both operands are f16, G is rounded
/// to f16 for the two products (as mixed-precision training does; loss scaling keeps it in
/// range).
struct MatmulBackward {
    a: Tensor,
    b: Tensor,
    trans_a: bool,
    trans_b: bool,
}

impl MatmulBackward {
    fn grad_a(&self, g: &Tensor) -> Result<Tensor> {
        let (a, b, ta, tb) = (&self.a, &self.b, self.trans_a, self.trans_b);
        let da = if ta {
            product("matmul backward", b, g, tb, true, MatmulKernel::Auto)?
        } else {
            product("matmul backward", g, b, false, !tb, MatmulKernel::Auto)?
        };
        da.sum_to(a.shape())
    }

    fn grad_b(&self, g: &Tensor) -> Result<Tensor> {
        let (a, b, ta, tb) = (&self.a, &self.b, self.trans_a, self.trans_b);
        let b_batches: usize = b.shape()[..b.rank() - 2].iter().product();
        let g_batches: usize = g.shape()[..g.rank() - 2].iter().product();
        if b_batches == 1 && g_batches > 1 && !ta {
            // Shared B: sum_z A_z^T G_z = A'^T G' with A' (Z * M, K), G' (Z * M, N).
            let (m, kk, n) = (a.dim(-2), a.dim(-1), g.dim(-1));
            let a2 = a.reshape(&[g_batches * m, kk])?;
            let g2 = g.reshape(&[g_batches * m, n])?;
            let db = if tb {
                product("matmul backward", &g2, &a2, true, false, MatmulKernel::Auto)?
            } else {
                product("matmul backward", &a2, &g2, true, false, MatmulKernel::Auto)?
            };
            return db.reshape(b.shape());
        }
        let db = if tb {
            product("matmul backward", g, a, true, ta, MatmulKernel::Auto)?
        } else {
            product("matmul backward", a, g, !ta, false, MatmulKernel::Auto)?
        };
        db.sum_to(b.shape())
    }
}

impl Backward for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // A product taken in f16 (mixed precision) takes its gradient products in f16 too, so
        // that they run on the same fast kernels; they still accumulate and return f32.
        let g16;
        let g = if self.a.dtype() == DType::F16 && self.b.dtype() == DType::F16 {
            g16 = g.to_dtype(DType::F16)?;
            &g16
        } else {
            g
        };
        Ok(vec![Some(self.grad_a(g)?), Some(self.grad_b(g)?)])
    }
}
