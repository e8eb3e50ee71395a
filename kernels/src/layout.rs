//! Launchers for `wgsl/layout.wgsl`: strided copies of 32-bit elements, from which the
//! engine builds permute, narrow and concatenation.

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "layout",
    wgsl: concat!(
        include_str!("../wgsl/layout.wgsl"),
        include_str!("../wgsl/f16_bits.wgsl")
    ),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const GATHER: Kernel = Kernel {
    source: &SOURCE,
    entry: "gather",
    bindings: &[1, 2],
};
const GATHER_F16: Kernel = Kernel {
    source: &SOURCE,
    entry: "gather_f16",
    bindings: &[1, 5],
};
const SCATTER: Kernel = Kernel {
    source: &SOURCE,
    entry: "scatter",
    bindings: &[3, 4],
};

/// Most dimensions a strided view may have after collapsing.
pub const MAX_RANK: usize = 8;

/// The sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// A strided view: iteration shape, element strides, first element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub dims: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

impl View {
    /// Drop unit dims and merge neighbours that are contiguous with each other.
    fn collapsed(&self) -> View {
        let mut dims: Vec<usize> = Vec::new();
        let mut strides: Vec<usize> = Vec::new();
        for (&d, &s) in self.dims.iter().zip(&self.strides) {
            if d == 1 {
                continue;
            }
            match (dims.last_mut(), strides.last_mut()) {
                (Some(pd), Some(ps)) if *ps == s * d => {
                    *pd *= d;
                    *ps = s;
                }
                _ => {
                    dims.push(d);
                    strides.push(s);
                }
            }
        }
        View {
            dims,
            strides,
            offset: self.offset,
        }
    }
}

/// `per_invocation` output elements per invocation.
fn launch(kernel: Kernel, view: &View, per_invocation: usize) -> Option<Launch> {
    let v = view.collapsed();
    if v.dims.len() > MAX_RANK {
        return None;
    }
    let n: usize = view.dims.iter().product();
    let mut params = Params::new()
        .size(n)
        .size(v.dims.len())
        .size(v.offset)
        .u32(0)
        .build();
    let mut pack = |xs: &[usize]| {
        let mut a = [0u32; 8];
        for (i, &x) in xs.iter().enumerate() {
            a[i] = x as u32;
        }
        params.extend(a);
    };
    pack(&v.dims);
    pack(&v.strides);
    Some(Launch {
        kernel,
        constants: vec![],
        workgroups: grid_for(n.div_ceil(per_invocation), 256),
        params,
    })
}

/// Contiguous `out` = the elements of `src` seen through `view`. `None` past [`MAX_RANK`].
pub fn gather(view: &View) -> Option<Launch> {
    launch(GATHER, view, 1)
}

/// [`gather`] from f32 `src` into an f16 `out` (ceil(n / 2) u32 words), rounded bit for bit
/// as the f32 -> f16 cast. `None` past [`MAX_RANK`].
pub fn gather_f16(view: &View) -> Option<Launch> {
    launch(GATHER_F16, view, 2)
}

/// The elements of contiguous `src` written into `dst` through `view`.
pub fn scatter(view: &View) -> Option<Launch> {
    launch(SCATTER, view, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_view_collapses_to_one_dim() {
        let v = View {
            dims: vec![2, 3, 4],
            strides: vec![12, 4, 1],
            offset: 5,
        };
        assert_eq!(
            v.collapsed(),
            View {
                dims: vec![24],
                strides: vec![1],
                offset: 5
            }
        );
        let t = View {
            dims: vec![4, 3],
            strides: vec![1, 4],
            offset: 0,
        };
        assert_eq!(t.collapsed(), t);
    }
}
