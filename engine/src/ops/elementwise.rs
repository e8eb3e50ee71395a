//! Elementwise ops on f32 tensors: binary ops with numpy broadcasting, unary functions, and
//! their backward rules. Broadcast gradients are summed back to the operand's shape.

use kernels::elementwise::{self as k, BinaryOp, UnaryOp};

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::Tensor;

/// Fill `t` with `value` in place (no tape).
pub(crate) fn fill(t: &Tensor, value: f32) -> Result<()> {
    t.expect_dtype("fill", DType::F32)?; // f16 and u32 are filled through casts
    run("fill", &k::fill(t.elem_count(), value), &[t])
}

fn binary(op: &'static str, kind: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.expect_dtype(op, DType::F32)?;
    b.expect_dtype(op, DType::F32)?;
    let shape = k::broadcast_shape(a.shape(), b.shape()).ok_or_else(|| Error::ShapeMismatch {
        op,
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
    })?;
    let launch = k::binary(kind, a.shape(), b.shape(), &shape).ok_or_else(|| Error::BadShape {
        op,
        shape: shape.clone(),
        reason: format!("broadcast over more than {} dimensions", k::MAX_RANK),
    })?;
    let out = Tensor::uninit(a.device(), op, &shape, DType::F32)?;
    run(op, &launch, &[a, b, &out])?;
    Ok(out)
}

fn unary(op: &'static str, kind: UnaryOp, a: &Tensor) -> Result<Tensor> {
    a.expect_dtype(op, DType::F32)?;
    let out = Tensor::uninit(a.device(), op, a.shape(), DType::F32)?;
    run(op, &k::unary(kind, a.elem_count()), &[a, &out])?;
    Ok(out)
}

impl Tensor {
    /// `self += rhs` in place (f32, same shapes), not recorded on the tape: gradient
    /// accumulation. Refused on a tensor the tape tracks, whose value a backward rule may
    /// have saved.
    pub fn add_assign(&self, rhs: &Tensor) -> Result<()> {
        const OP: &str = "add_assign";
        self.expect_dtype(OP, DType::F32)?;
        rhs.expect_dtype(OP, DType::F32)?;
        self.expect_same_shape(OP, rhs)?;
        if self.is_tracked() {
            return Err(Error::Backward(format!(
                "{OP}: tensor {:?} is on the tape; an in-place write would change what its \
                 backward rules saved",
                self.id()
            )));
        }
        self.mark_written();
        run(OP, &k::accumulate(self.elem_count()), &[self, rhs])
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("add", BinaryOp::Add, self, rhs)?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(out.recorded(&[self, rhs], || AddBackward { sa, sb, sign: 1.0 }))
    }

    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("sub", BinaryOp::Sub, self, rhs)?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(out.recorded(&[self, rhs], || AddBackward { sa, sb, sign: -1.0 }))
    }

    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("mul", BinaryOp::Mul, self, rhs)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(out.recorded(&[self, rhs], || MulBackward { a, b }))
    }

    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("div", BinaryOp::Div, self, rhs)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(out.recorded(&[self, rhs], || DivBackward { a, b }))
    }

    /// Elementwise maximum (the gradient goes to `self` where `self >= rhs`).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("maximum", BinaryOp::Max, self, rhs)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(out.recorded(&[self, rhs], || MaxBackward { a, b }))
    }

    /// Elementwise minimum (the gradient goes to `self` where `self <= rhs`).
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        // min(a, b) = -max(-a, -b)
        self.neg()?.maximum(&rhs.neg()?)?.neg()
    }

    /// `alpha * self + beta`.
    pub fn affine(&self, alpha: f32, beta: f32) -> Result<Tensor> {
        let out = unary("affine", UnaryOp::Affine { alpha, beta }, self)?;
        Ok(out.recorded(&[self], || ScaleBackward { alpha }))
    }

    pub fn scale(&self, alpha: f32) -> Result<Tensor> {
        self.affine(alpha, 0.0)
    }

    pub fn add_scalar(&self, beta: f32) -> Result<Tensor> {
        self.affine(1.0, beta)
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.affine(-1.0, 0.0)
    }

    pub fn exp(&self) -> Result<Tensor> {
        self.unary_op("exp", UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary_op("log", UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary_op("sqrt", UnaryOp::Sqrt)
    }
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.unary_op("rsqrt", UnaryOp::Rsqrt)
    }
    pub fn square(&self) -> Result<Tensor> {
        self.unary_op("square", UnaryOp::Square)
    }
    pub fn recip(&self) -> Result<Tensor> {
        self.unary_op("recip", UnaryOp::Recip)
    }
    pub fn silu(&self) -> Result<Tensor> {
        self.unary_op("silu", UnaryOp::Silu)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary_op("sigmoid", UnaryOp::Sigmoid)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary_op("relu", UnaryOp::Relu)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary_op("tanh", UnaryOp::Tanh)
    }
    /// `self^alpha` for non-negative elements.
    pub fn powf(&self, alpha: f32) -> Result<Tensor> {
        self.unary_op("powf", UnaryOp::Powf(alpha))
    }

    fn unary_op(&self, op: &'static str, kind: UnaryOp) -> Result<Tensor> {
        let out = unary(op, kind, self)?;
        let (x, y) = (self.clone(), out.detach());
        Ok(out.recorded(&[self], || UnaryBackward { kind, x, y }))
    }

    /// Sum this tensor down to `shape`, which must broadcast to `self.shape()`: the adjoint
    /// of broadcasting (used by the backward of broadcast ops).
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        if k::broadcast_shape(shape, self.shape()).as_deref() != Some(self.shape()) {
            return Err(Error::ShapeMismatch {
                op: "sum_to",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        self.expect_dtype("sum_to", DType::F32)?;
        let launch = k::sum_to(self.shape(), shape).ok_or_else(|| Error::BadShape {
            op: "sum_to",
            shape: self.shape().to_vec(),
            reason: format!("more than {} dimensions", k::MAX_RANK),
        })?;
        let out = Tensor::uninit(self.device(), "sum_to", shape, DType::F32)?;
        run("sum_to", &launch, &[self, &out])?;
        let from = self.shape().to_vec();
        Ok(out.recorded(&[self], || BroadcastBackward { to: from }))
    }

    /// Broadcast to `shape` (materialised).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let zeros = Tensor::zeros(self.device(), shape, DType::F32)?;
        self.add(&zeros)
    }
}

/// d(a ± b) = (g, ±g), each summed back over the dims it was broadcast along.
struct AddBackward {
    sa: Vec<usize>,
    sb: Vec<usize>,
    sign: f32,
}

impl Backward for AddBackward {
    fn name(&self) -> &'static str {
        "add"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gb = g.sum_to(&self.sb)?;
        let gb = if self.sign < 0.0 { gb.neg()? } else { gb };
        Ok(vec![Some(g.sum_to(&self.sa)?), Some(gb)])
    }
}

/// d(a * b) = (g * b, g * a)
struct MulBackward {
    a: Tensor,
    b: Tensor,
}

impl Backward for MulBackward {
    fn name(&self) -> &'static str {
        "mul"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            Some(g.mul(&self.b)?.sum_to(self.a.shape())?),
            Some(g.mul(&self.a)?.sum_to(self.b.shape())?),
        ])
    }
}

/// d(a / b) = (g / b, -g * a / b^2)
struct DivBackward {
    a: Tensor,
    b: Tensor,
}

impl Backward for DivBackward {
    fn name(&self) -> &'static str {
        "div"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let ga = g.div(&self.b)?;
        let gb = ga.mul(&self.a)?.div(&self.b)?.neg()?;
        Ok(vec![
            Some(ga.sum_to(self.a.shape())?),
            Some(gb.sum_to(self.b.shape())?),
        ])
    }
}

/// d max(a, b) = (g * [a >= b], g * [a < b]) (ties go to a)
struct MaxBackward {
    a: Tensor,
    b: Tensor,
}

impl Backward for MaxBackward {
    fn name(&self) -> &'static str {
        "maximum"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // [a < b] = step(b - a); [a >= b] = 1 - [a < b]
        let b_wins = unary("step", UnaryOp::Step, &self.b.sub(&self.a)?)?;
        let a_wins = b_wins.affine(-1.0, 1.0)?;
        Ok(vec![
            Some(g.mul(&a_wins)?.sum_to(self.a.shape())?),
            Some(g.mul(&b_wins)?.sum_to(self.b.shape())?),
        ])
    }
}

/// d(alpha x + beta) = alpha g
struct ScaleBackward {
    alpha: f32,
}

impl Backward for ScaleBackward {
    fn name(&self) -> &'static str {
        "affine"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.scale(self.alpha)?)])
    }
}

/// d sum_to(x) = broadcast of g back to x's shape
struct BroadcastBackward {
    to: Vec<usize>,
}

impl Backward for BroadcastBackward {
    fn name(&self) -> &'static str {
        "sum_to"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.broadcast_to(&self.to)?)])
    }
}

/// Unary functions, with y = f(x) saved:
///   exp: y g          log: g / x          sqrt: g / (2 y)        rsqrt: -g y^3 / 2
///   square: 2 x g     recip: -g y^2       sigmoid: g y (1 - y)   tanh: g (1 - y^2)
///   relu: g [x > 0]   powf(a): g a x^(a-1)
///   silu: y = x s(x), s = sigmoid(x): g s (1 + x (1 - s))
struct UnaryBackward {
    kind: UnaryOp,
    x: Tensor,
    y: Tensor,
}

impl Backward for UnaryBackward {
    fn name(&self) -> &'static str {
        "unary"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = (&self.x, &self.y);
        let dx = match self.kind {
            UnaryOp::Affine { alpha, .. } => g.scale(alpha)?,
            UnaryOp::Exp => g.mul(y)?,
            UnaryOp::Log => g.div(x)?,
            UnaryOp::Sqrt => g.div(y)?.scale(0.5)?,
            UnaryOp::Rsqrt => g.mul(&y.powf(3.0)?)?.scale(-0.5)?,
            UnaryOp::Square => g.mul(x)?.scale(2.0)?,
            UnaryOp::Recip => g.mul(&y.square()?)?.neg()?,
            UnaryOp::Sigmoid => g.mul(&y.mul(&y.affine(-1.0, 1.0)?)?)?,
            UnaryOp::Tanh => g.mul(&y.square()?.affine(-1.0, 1.0)?)?,
            UnaryOp::Relu | UnaryOp::Step => {
                if matches!(self.kind, UnaryOp::Step) {
                    g.scale(0.0)?
                } else {
                    g.mul(&unary("step", UnaryOp::Step, x)?)?
                }
            }
            UnaryOp::Powf(a) => g.mul(&x.powf(a - 1.0)?)?.scale(a)?,
            UnaryOp::Silu => {
                let s = x.sigmoid()?;
                let inner = x.mul(&s.affine(-1.0, 1.0)?)?.add_scalar(1.0)?;
                g.mul(&s)?.mul(&inner)?
            }
        };
        Ok(vec![Some(dx)])
    }
}
