//! Launchers for `wgsl/elementwise.wgsl`: binary ops with broadcasting, unary ops, fill, the
//! sum over broadcast dimensions that the backward of a broadcast needs, and an in-place add
//! (gradient accumulation).

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "elementwise",
    wgsl: include_str!("../wgsl/elementwise.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const BINARY: Kernel = Kernel {
    source: &SOURCE,
    entry: "binary",
    bindings: &[1, 2, 3],
};
const UNARY: Kernel = Kernel {
    source: &SOURCE,
    entry: "unary",
    bindings: &[4, 5],
};
const FILL: Kernel = Kernel {
    source: &SOURCE,
    entry: "fill",
    bindings: &[6],
};
const SUM_TO: Kernel = Kernel {
    source: &SOURCE,
    entry: "sum_to",
    bindings: &[7, 8],
};
const ACCUMULATE: Kernel = Kernel {
    source: &SOURCE,
    entry: "accumulate",
    bindings: &[9, 10],
};

/// Most dimensions a broadcast may have after collapsing.
pub const MAX_RANK: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Max = 4,
    Min = 5,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// alpha * x + beta
    Affine {
        alpha: f32,
        beta: f32,
    },
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Square,
    Recip,
    Silu,
    Sigmoid,
    Relu,
    Tanh,
    /// x^alpha (x >= 0)
    Powf(f32),
    /// 1 where x > 0, else 0
    Step,
}

impl UnaryOp {
    fn code_and_scalars(self) -> (u32, f32, f32) {
        match self {
            UnaryOp::Affine { alpha, beta } => (0, alpha, beta),
            UnaryOp::Exp => (1, 0.0, 0.0),
            UnaryOp::Log => (2, 0.0, 0.0),
            UnaryOp::Sqrt => (3, 0.0, 0.0),
            UnaryOp::Rsqrt => (4, 0.0, 0.0),
            UnaryOp::Square => (5, 0.0, 0.0),
            UnaryOp::Recip => (6, 0.0, 0.0),
            UnaryOp::Silu => (7, 0.0, 0.0),
            UnaryOp::Sigmoid => (8, 0.0, 0.0),
            UnaryOp::Relu => (9, 0.0, 0.0),
            UnaryOp::Tanh => (10, 0.0, 0.0),
            UnaryOp::Powf(a) => (11, a, 0.0),
            UnaryOp::Step => (12, 0.0, 0.0),
        }
    }
}

/// The shape both operands broadcast to (numpy rules), or `None` if they do not.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Element strides of a contiguous `shape` seen through `out` (0 along broadcast dims).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let lead = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for d in (0..shape.len()).rev() {
        strides[lead + d] = if shape[d] == 1 && out[lead + d] != 1 {
            0
        } else {
            s
        };
        s *= shape[d];
    }
    strides
}

/// Drop unit dims and merge neighbours that are contiguous in every operand.
fn collapse(dims: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in 0..dims.len() {
        if dims[d] == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && strides.iter().enumerate().all(|(k, s)| {
                let prev = *out_strides[k].last().expect("same length as out_dims");
                prev == s[d] * dims[d]
            });
        if mergeable {
            *out_dims.last_mut().expect("non-empty") *= dims[d];
            for (k, s) in strides.iter().enumerate() {
                *out_strides[k].last_mut().expect("non-empty") = s[d];
            }
        } else {
            out_dims.push(dims[d]);
            for (k, s) in strides.iter().enumerate() {
                out_strides[k].push(s[d]);
            }
        }
    }
    (out_dims, out_strides)
}

fn pack8(v: &[usize]) -> [u32; 8] {
    let mut a = [0u32; 8];
    for (i, &x) in v.iter().enumerate() {
        a[i] = x as u32;
    }
    a
}

fn params(n: usize, dims: &[usize], sa: &[usize], sb: &[usize], alpha: f32, beta: f32) -> Vec<u32> {
    let mut p = Params::new()
        .size(n)
        .size(dims.len())
        .f32(alpha)
        .f32(beta)
        .build();
    p.extend(pack8(dims));
    p.extend(pack8(sa));
    p.extend(pack8(sb));
    p
}

/// `out = a OP b` where a and b (contiguous) broadcast to `out_shape`. `None` when the
/// broadcast has more than [`MAX_RANK`] non-mergeable dimensions.
pub fn binary(
    op: BinaryOp,
    a_shape: &[usize],
    b_shape: &[usize],
    out_shape: &[usize],
) -> Option<Launch> {
    let sa = broadcast_strides(a_shape, out_shape);
    let sb = broadcast_strides(b_shape, out_shape);
    let so = broadcast_strides(out_shape, out_shape);
    let (dims, s) = collapse(out_shape, &[&sa, &sb, &so]);
    if dims.len() > MAX_RANK {
        return None;
    }
    let n: usize = out_shape.iter().product();
    Some(Launch {
        kernel: BINARY,
        constants: vec![("BINARY_OP", op as u32 as f64)],
        workgroups: grid_for(n, 256),
        params: params(n, &dims, &s[0], &s[1], 0.0, 0.0),
    })
}

/// `out[i] = op(a[i])` over `n` elements.
pub fn unary(op: UnaryOp, n: usize) -> Launch {
    let (code, alpha, beta) = op.code_and_scalars();
    Launch {
        kernel: UNARY,
        constants: vec![("UNARY_OP", code as f64)],
        workgroups: grid_for(n, 256),
        params: params(n, &[], &[], &[], alpha, beta),
    }
}

/// `out[i] = value` over `n` elements.
pub fn fill(n: usize, value: f32) -> Launch {
    Launch {
        kernel: FILL,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: params(n, &[], &[], &[], value, 0.0),
    }
}

/// `acc[i] += a[i]` in place over `n` elements (bindings: acc, then a).
pub fn accumulate(n: usize) -> Launch {
    Launch {
        kernel: ACCUMULATE,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: params(n, &[], &[], &[], 0.0, 0.0),
    }
}

/// Sum a contiguous `in_shape` down to `out_shape` (which broadcasts to it): the adjoint of
/// broadcasting. `None` past [`MAX_RANK`] dimensions.
pub fn sum_to(in_shape: &[usize], out_shape: &[usize]) -> Option<Launch> {
    let s_in = broadcast_strides(in_shape, in_shape);
    let keep: Vec<usize> = broadcast_strides(out_shape, in_shape)
        .iter()
        .zip(in_shape)
        .map(|(&s, &d)| usize::from(s != 0 || d == 1))
        .collect();
    // Collapse only neighbours that are both kept or both summed.
    let mut dims = Vec::new();
    let mut strides = Vec::new();
    let mut kept = Vec::new();
    for d in 0..in_shape.len() {
        if in_shape[d] == 1 {
            continue;
        }
        if let (Some(&k), Some(&s)) = (kept.last(), strides.last()) {
            if k == keep[d] && s == s_in[d] * in_shape[d] {
                *dims.last_mut().expect("non-empty") *= in_shape[d];
                *strides.last_mut().expect("non-empty") = s_in[d];
                continue;
            }
        }
        dims.push(in_shape[d]);
        strides.push(s_in[d]);
        kept.push(keep[d]);
    }
    if dims.len() > MAX_RANK {
        return None;
    }
    let n: usize = out_shape.iter().product();
    Some(Launch {
        kernel: SUM_TO,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: params(n, &dims, &strides, &kept, 0.0, 0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shape(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[2, 3], &[2]), None);
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), vec![0, 1, 0]);
    }

    #[test]
    fn same_shapes_collapse_to_one_dim() {
        let l = binary(BinaryOp::Add, &[2, 3, 4], &[2, 3, 4], &[2, 3, 4]).unwrap();
        assert_eq!(l.params[1], 1); // rank
        assert_eq!(l.params[4], 24);
    }
}
