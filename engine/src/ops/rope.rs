//! Rotary position embedding (HF rotate-half convention) from positions and inverse
//! frequencies (HF's default from theta, or scaled ones such as Llama 3's), and its backward.

use kernels::rope as k;

use crate::autograd::{Backward, BackwardMany};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

/// HF's default inverse frequencies for `head_dim`: `1 / theta^(2i / head_dim)`, in f32.
pub fn default_inv_freq(theta: f32, head_dim: usize) -> Vec<f32> {
    k::inv_freq(theta, head_dim)
}

/// Sizes of one rope launch.
#[derive(Clone, Copy)]
struct Dims {
    outer: usize,
    seq_len: usize,
    head_dim: usize,
    group: usize,
}

fn check(x: &Tensor, positions: &Tensor, inv_freq: &Tensor) -> Result<Dims> {
    let op = "rope";
    x.expect_dtype(op, DType::F32)?;
    positions.expect_dtype(op, DType::U32)?;
    inv_freq.expect_dtype(op, DType::F32)?;
    positions.check_same_device(op, x)?;
    inv_freq.check_same_device(op, x)?;
    let shape = x.shape();
    let bad = |reason: String| Error::BadShape {
        op,
        shape: shape.to_vec(),
        reason,
    };
    if shape.len() < 2 {
        return Err(bad("expected (.., seq_len, head_dim)".into()));
    }
    let (seq_len, head_dim) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    if head_dim % 2 != 0 {
        return Err(bad(format!("head_dim {head_dim} is odd")));
    }
    if inv_freq.shape() != [head_dim / 2] {
        return Err(Error::ShapeMismatch {
            op,
            lhs: shape.to_vec(),
            rhs: inv_freq.shape().to_vec(),
        });
    }
    let outer: usize = shape[..shape.len() - 2].iter().product();
    let group = match positions.shape() {
        [t] if *t == seq_len => outer,
        [b, t] if shape.len() >= 3 && *b == shape[0] && *t == seq_len => outer / b.max(&1),
        _ => {
            return Err(Error::ShapeMismatch {
                op,
                lhs: shape.to_vec(),
                rhs: positions.shape().to_vec(),
            })
        }
    };
    Ok(Dims {
        outer,
        seq_len,
        head_dim,
        group,
    })
}

fn launch(
    x: &Tensor,
    positions: &Tensor,
    inv_freq: &Tensor,
    d: Dims,
    backward: bool,
) -> Result<Tensor> {
    let out = Tensor::uninit(x.device(), "rope", x.shape(), DType::F32)?;
    if x.elem_count() > 0 {
        let l = k::rope(d.outer, d.seq_len, d.head_dim, d.group, backward);
        run("rope", &l, &[x, positions, inv_freq, &out])?;
    }
    Ok(out)
}

impl Tensor {
    /// Rotate x (.., seq_len, head_dim), typically (batch, heads, seq_len, head_dim), by the
    /// angles `position * inv_freq[i]` with HF's default frequencies for `theta`. `positions`
    /// are u32, (seq_len) shared by every row or (batch, seq_len) per batch row; below 2^24.
    pub fn rope(&self, positions: &Tensor, theta: f32) -> Result<Tensor> {
        let head_dim = self.shape().last().copied().unwrap_or(0);
        let inv = Tensor::from_slice(
            self.device(),
            &default_inv_freq(theta, head_dim),
            &[head_dim / 2],
        )?;
        self.rope_with_freqs(positions, &inv)
    }

    /// Like [`Tensor::rope`] with given inverse frequencies (f32, head_dim / 2), such as
    /// Llama 3's scaled ones: out[i] = x[i] cos - x[i + h] sin, out[i + h] = x[i + h] cos +
    /// x[i] sin, with the angle f32(position) * inv_freq[i] computed in f32 as HF does.
    pub fn rope_with_freqs(&self, positions: &Tensor, inv_freq: &Tensor) -> Result<Tensor> {
        let dims = check(self, positions, inv_freq)?;
        let out = launch(self, positions, inv_freq, dims, false)?;
        let (positions, inv_freq) = (positions.clone(), inv_freq.clone());
        Ok(out.recorded(&[self], || RopeBackward {
            positions,
            inv_freq,
            dims,
        }))
    }
}

/// y = R(a) x per pair (x_i, x_{i+h}), R(a) = [[cos, -sin], [sin, cos]] orthogonal, so
/// dx = R(a)^T g = R(-a) g: the same kernel with the sine negated. Positions and
/// frequencies get no gradient.
struct RopeBackward {
    positions: Tensor,
    inv_freq: Tensor,
    dims: Dims,
}

impl Backward for RopeBackward {
    fn name(&self) -> &'static str {
        "rope"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        g.expect_dtype("rope_backward", DType::F32)?;
        Ok(vec![Some(launch(
            g,
            &self.positions,
            &self.inv_freq,
            self.dims,
            true,
        )?)])
    }
}

/// Split `x` (B, T, H * D), the heads of several projections side by side in each token (the
/// product of one matmul with the q, k and v weights stacked: `[q | k | v]`), into one
/// (B, n, T, D) tensor per entry `(n, rotate)` of `groups` (in order; the n add up to H),
/// rotating those marked `rotate` as [`Tensor::rope_with_freqs`] does (`positions` u32, (T)
/// or (B, T); `inv_freq` f32, D / 2). One dispatch per group, forward and backward: the
/// layout change and the rotation in one pass over the data.
pub fn split_heads(
    x: &Tensor,
    groups: &[(usize, bool)],
    positions: &Tensor,
    inv_freq: &Tensor,
) -> Result<Vec<Tensor>> {
    split_heads_as(x, groups, positions, inv_freq, DType::F32)
}

/// [`split_heads`] with the heads stored as `dtype`: f32, or f16 rounded bit for bit as
/// `to_dtype` rounds (written by the same pass where D is a multiple of 4, else cast after
/// it), for f16 products to read. The gradient is f32 either way.
pub fn split_heads_as(
    x: &Tensor,
    groups: &[(usize, bool)],
    positions: &Tensor,
    inv_freq: &Tensor,
    dtype: DType,
) -> Result<Vec<Tensor>> {
    let op = "split_heads";
    if dtype == DType::U32 {
        return Err(Error::DTypeMismatch {
            op,
            expected: DType::F32,
            got: dtype,
        });
    }
    x.expect_dtype(op, DType::F32)?;
    positions.expect_dtype(op, DType::U32)?;
    inv_freq.expect_dtype(op, DType::F32)?;
    positions.check_same_device(op, x)?;
    inv_freq.check_same_device(op, x)?;
    let half = inv_freq.elem_count();
    let total: usize = groups.iter().map(|g| g.0).sum();
    let &[batch, seq_len, width] = x.shape() else {
        return Err(Error::BadShape {
            op,
            shape: x.shape().to_vec(),
            reason: "expected (batch, seq_len, heads * head_dim)".into(),
        });
    };
    if inv_freq.rank() != 1 || half == 0 || width != total * 2 * half {
        return Err(Error::BadShape {
            op,
            shape: x.shape().to_vec(),
            reason: format!(
                "the last dimension must hold {total} heads of {} (twice the {half} \
                 frequencies)",
                2 * half
            ),
        });
    }
    if dtype == DType::F16 && !half.is_multiple_of(2) {
        return split_heads_as(x, groups, positions, inv_freq, DType::F32)?
            .iter()
            .map(|t| t.to_dtype(DType::F16))
            .collect();
    }
    let positions_per_row = match positions.shape() {
        [t] if *t == seq_len => false,
        [b, t] if *b == batch && *t == seq_len => true,
        _ => {
            return Err(Error::ShapeMismatch {
                op,
                lhs: x.shape().to_vec(),
                rhs: positions.shape().to_vec(),
            })
        }
    };
    let mut head0 = 0;
    let mut plans = Vec::with_capacity(groups.len());
    let mut outs = Vec::with_capacity(groups.len());
    for &(heads, rotate) in groups {
        let g = k::HeadGroup {
            batch,
            seq_len,
            half,
            total,
            head0,
            heads,
            positions_per_row,
            rotate,
        };
        head0 += heads;
        let out = Tensor::uninit(x.device(), op, &[batch, heads, seq_len, 2 * half], dtype)?;
        let launch = match dtype {
            DType::F16 => k::heads_f16(&g),
            _ => k::heads(&g),
        };
        if out.elem_count() > 0 {
            run(op, &launch, &[x, positions, inv_freq, &out])?;
        }
        plans.push(g);
        outs.push(out);
    }
    let (positions, inv_freq) = (positions.clone(), inv_freq.clone());
    let shape = x.shape().to_vec();
    Ok(Tensor::recorded_many(outs, &[x], || SplitHeadsBackward {
        groups: plans,
        shape,
        positions,
        inv_freq,
    }))
}

/// Each group's gradient, rotated back by -a where the forward rotated (R(a) is orthogonal:
/// dx = R(a)^T g = R(-a) g), written into its heads of the fused gradient; a group no
/// gradient reached contributes zeros.
struct SplitHeadsBackward {
    groups: Vec<k::HeadGroup>,
    shape: Vec<usize>,
    positions: Tensor,
    inv_freq: Tensor,
}

impl BackwardMany for SplitHeadsBackward {
    fn name(&self) -> &'static str {
        "split_heads"
    }
    fn backward(&self, grads: &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>> {
        let op = "split_heads_backward";
        let dev = self.positions.device();
        let dx = Tensor::uninit(dev, op, &self.shape, DType::F32)?;
        for (g, plan) in grads.iter().zip(&self.groups) {
            let shape = [plan.batch, plan.heads, plan.seq_len, 2 * plan.half];
            let g = match g {
                Some(g) => g.to_dtype(DType::F32)?,
                None => Tensor::zeros(dev, &shape, DType::F32)?,
            };
            if g.elem_count() > 0 {
                run(
                    op,
                    &k::heads_backward(plan),
                    &[&g, &self.positions, &self.inv_freq, &dx],
                )?;
            }
        }
        Ok(vec![Some(dx)])
    }
}
