//! Launchers for matrix multiply: `wgsl/matmul.wgsl` (tiled SIMT, f32 or f16 inputs, f32
//! accumulation) and `wgsl/matmul_coop.wgsl` (f16 cooperative matrices, f32 accumulation).
//!
//! [`plan`] turns the shapes of a batched `C = op(A) @ op(B)` into batch offsets (collapsing
//! and broadcasting batch dimensions, folding a shared right operand into M), and
//! [`Plan::launches`] into dispatches of the chosen [`Variant`].

use crate::elementwise::{broadcast_shape, broadcast_strides};
use crate::{Kernel, Launch, Needs, Params, Source, MAX_WORKGROUPS_PER_DIM};

const SIMT_NEEDS_F16: Needs = Needs {
    f16: true,
    subgroups: false,
    cooperative_matrix: false,
};

/// The SIMT body is a template over the operands' element types (`AT`, `BT`).
macro_rules! simt_source {
    ($name:literal, $prefix:literal, $needs:expr) => {
        Source {
            name: $name,
            wgsl: concat!($prefix, include_str!("../wgsl/matmul.wgsl")),
            needs: $needs,
        }
    };
}

pub static F32_F32: Source = simt_source!(
    "matmul",
    "alias AT = f32;\nalias BT = f32;\n",
    Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false
    }
);
pub static F16_F16: Source = simt_source!(
    "matmul_f16",
    "enable f16;\nalias AT = f16;\nalias BT = f16;\n",
    SIMT_NEEDS_F16
);
pub static F32_F16: Source = simt_source!(
    "matmul_f32_f16",
    "enable f16;\nalias AT = f32;\nalias BT = f16;\n",
    SIMT_NEEDS_F16
);
pub static F16_F32: Source = simt_source!(
    "matmul_f16_f32",
    "enable f16;\nalias AT = f16;\nalias BT = f32;\n",
    SIMT_NEEDS_F16
);

/// The cooperative-matrix body is a template over the fragment side `F` and its types.
macro_rules! coop_source {
    ($name:literal, $side:literal) => {
        Source {
            name: $name,
            wgsl: concat!(
                "enable f16;\nenable wgpu_cooperative_matrix;\n",
                "diagnostic(off, derivative_uniformity);\n",
                "const F: u32 = ",
                $side,
                "u;\nalias FragA = coop_mat",
                $side,
                "x",
                $side,
                "<f16, A>;\nalias FragB = coop_mat",
                $side,
                "x",
                $side,
                "<f16, B>;\nalias FragC = coop_mat",
                $side,
                "x",
                $side,
                "<f32, C>;\n",
                include_str!("../wgsl/matmul_coop.wgsl")
            ),
            needs: Needs {
                f16: true,
                subgroups: true,
                cooperative_matrix: true,
            },
        }
    };
}

/// 16x16x16 fragments (NVIDIA's Vulkan driver offers them: GPU-NOTES).
pub static COOP: Source = coop_source!("matmul_coop", "16");
/// 8x8x8 fragments, where an adapter offers no 16x16x16 f16 -> f32 shape (Mesa 26's
/// lavapipe, which runs them on the CPU).
pub static COOP8: Source = coop_source!("matmul_coop8", "8");

/// The skinny (few-row) product, see `wgsl/matmul_gemv.wgsl`.
pub static GEMV: Source = Source {
    name: "matmul_gemv",
    wgsl: include_str!("../wgsl/matmul_gemv.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

/// Most rows of A the skinny kernel takes.
pub const GEMV_MAX_ROWS: usize = 8;

/// out (rows, n) = a (rows, k) @ b^T, b stored (n, k): the decode-step product, f32.
pub fn gemv(rows: usize, n: usize, k: usize) -> Launch {
    // K a multiple of 4 (every model width): vec4 loads, 8 lanes per column.
    let (entry, bindings, cols): (_, &'static [u32], _) = if k.is_multiple_of(4) {
        ("gemv4", &[4, 5, 6], 32)
    } else {
        ("gemv", &[1, 2, 3], 8)
    };
    Launch {
        kernel: Kernel {
            source: &GEMV,
            entry,
            bindings,
        },
        constants: vec![("ROWS", rows as f64)],
        workgroups: crate::grid_for(n, cols),
        params: crate::Params::new()
            .size(rows)
            .size(n)
            .size(k)
            .u32(0)
            .build(),
    }
}

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&F32_F32, &F16_F16, &F32_F16, &F16_F32, &COOP, &COOP8, &GEMV]
}

/// Element type of an operand (the output is always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    F16,
}

/// Which kernel computes the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Tiled SIMT (64 x 64 tiles, 8 x 4 per invocation), any sizes, f32 accumulation.
    Simt { a: Elem, b: Elem },
    /// f16 cooperative matrices with A/B staged through workgroup memory (8F x 8F tiles for
    /// fragments of side F).
    CoopStaged(Fragment),
    /// [`Variant::CoopStaged`] with the next slab fetched into registers while the current
    /// one is multiplied (global loads overlapping the tensor cores).
    CoopPrefetch(Fragment),
    /// f16 cooperative matrices loaded straight from global memory (8F x 8F tiles).
    CoopDirect(Fragment),
}

/// The shape of the cooperative matrices (f16 x f16 -> f32) a kernel multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// 16 x 16 x 16 (NVIDIA's Vulkan driver).
    X16,
    /// 8 x 8 x 8, where that is all an adapter offers (lavapipe).
    X8,
}

impl Fragment {
    /// The fragment's side.
    pub fn side(self) -> u32 {
        match self {
            Fragment::X16 => 16,
            Fragment::X8 => 8,
        }
    }

    fn source(self) -> &'static Source {
        match self {
            Fragment::X16 => &COOP,
            Fragment::X8 => &COOP8,
        }
    }
}

const SIMT_TILE: u32 = 64;
/// M, N and K must be multiples of this for the cooperative-matrix kernels.
pub const COOP_MULTIPLE: usize = 16;

/// One group of batches run by one series of dispatches: z in `0..count` maps to
/// `outer = z / inner`, `inner = z % inner` and each operand's offset
/// `base + outer * s_outer + inner * s_inner` (elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchGroup {
    pub count: usize,
    pub inner: usize,
    pub base: [usize; 3],
    pub outer_strides: [usize; 3],
    pub inner_strides: [usize; 3],
}

/// A batched `C = op(A) @ op(B)` ready to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Rows of op(A) and C, after folding a shared B's batch into M.
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    /// The output's batch shape (before folding): C is `out_batch ++ [M, N]`.
    pub out_batch: Vec<usize>,
    pub groups: Vec<BatchGroup>,
}

impl Plan {
    /// Whether the cooperative-matrix kernels accept these sizes.
    pub fn coop_fits(&self) -> bool {
        [self.m, self.n, self.k]
            .iter()
            .all(|d| d.is_multiple_of(COOP_MULTIPLE))
    }

    /// The dispatches, in order (several when the batch needs more than one grid).
    pub fn launches(&self, variant: Variant) -> Vec<Launch> {
        let (kernel, tile) = match variant {
            Variant::Simt { a, b } => {
                let source = match (a, b) {
                    (Elem::F32, Elem::F32) => &F32_F32,
                    (Elem::F16, Elem::F16) => &F16_F16,
                    (Elem::F32, Elem::F16) => &F32_F16,
                    (Elem::F16, Elem::F32) => &F16_F32,
                };
                (
                    Kernel {
                        source,
                        entry: "matmul",
                        bindings: &[1, 2, 3],
                    },
                    SIMT_TILE,
                )
            }
            Variant::CoopStaged(f) | Variant::CoopPrefetch(f) => (
                Kernel {
                    source: f.source(),
                    entry: "matmul_coop",
                    bindings: &[1, 2, 3],
                },
                8 * f.side(),
            ),
            Variant::CoopDirect(f) => (
                Kernel {
                    source: f.source(),
                    entry: "matmul_coop_direct",
                    bindings: &[4, 5, 6],
                },
                8 * f.side(),
            ),
        };
        let mut constants = vec![
            ("TRANS_A", f64::from(u8::from(self.trans_a))),
            ("TRANS_B", f64::from(u8::from(self.trans_b))),
        ];
        if matches!(variant, Variant::CoopPrefetch(_)) {
            constants.push(("PREFETCH", 1.0));
        }
        let gx = (self.n as u64).div_ceil(tile as u64) as u32;
        let gy = (self.m as u64).div_ceil(tile as u64) as u32;
        let mut out = Vec::new();
        for g in &self.groups {
            let mut z0 = 0;
            while z0 < g.count {
                let gz = (g.count - z0).min(MAX_WORKGROUPS_PER_DIM as usize);
                let params = Params::new()
                    .size(self.m)
                    .size(self.n)
                    .size(self.k)
                    .size(g.inner)
                    .size(g.outer_strides[0])
                    .size(g.inner_strides[0])
                    .size(g.outer_strides[1])
                    .size(g.inner_strides[1])
                    .size(g.outer_strides[2])
                    .size(g.inner_strides[2])
                    .size(g.base[0])
                    .size(g.base[1])
                    .size(g.base[2])
                    .size(z0)
                    .build();
                out.push(Launch {
                    kernel,
                    constants: constants.clone(),
                    workgroups: [gx, gy, gz as u32],
                    params,
                });
                z0 += gz;
            }
        }
        out
    }
}

/// Plan `C = op(A) @ op(B)` where op(A) is (M, K), op(B) is (K, N), A's batch dims are
/// `a_batch` and B's `b_batch` (numpy broadcasting). `None` if the batch dims do not broadcast.
pub fn plan(
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    a_batch: &[usize],
    b_batch: &[usize],
) -> Option<Plan> {
    let out_batch = broadcast_shape(a_batch, b_batch)?;
    let batches: usize = out_batch.iter().product();
    let b_count: usize = b_batch.iter().product();
    let mut p = Plan {
        m,
        n,
        k,
        trans_a,
        trans_b,
        out_batch: out_batch.clone(),
        groups: vec![],
    };
    if batches == 0 {
        return Some(p);
    }
    // B shared by every batch and A stored (.., M, K): one (batches * M, K) @ (K, N) product.
    if b_count == 1 && !trans_a {
        p.m = m * batches;
        p.groups.push(BatchGroup {
            count: 1,
            inner: 1,
            base: [0; 3],
            outer_strides: [0; 3],
            inner_strides: [0; 3],
        });
        return Some(p);
    }
    let scale = |s: Vec<usize>, size: usize| s.into_iter().map(|x| x * size).collect::<Vec<_>>();
    let sa = scale(broadcast_strides(a_batch, &out_batch), m * k);
    let sb = scale(broadcast_strides(b_batch, &out_batch), k * n);
    let sc = scale(broadcast_strides(&out_batch, &out_batch), m * n);
    let (dims, strides) = collapse(&out_batch, [&sa, &sb, &sc]);
    // The last two collapsed dims go to the grid; any before them are looped over.
    let split = dims.len().saturating_sub(2);
    let (lead, tail) = dims.split_at(split);
    let pick = |d: usize| [strides[0][d], strides[1][d], strides[2][d]];
    let (outer, inner, outer_strides, inner_strides) = match tail.len() {
        0 => (1, 1, [0; 3], [0; 3]),
        1 => (1, tail[0], [0; 3], pick(split)),
        _ => (tail[0], tail[1], pick(split), pick(split + 1)),
    };
    let lead_count: usize = lead.iter().product();
    for l in 0..lead_count {
        let mut base = [0; 3];
        let mut rem = l;
        for d in (0..split).rev() {
            let c = rem % dims[d];
            rem /= dims[d];
            for (o, b) in base.iter_mut().enumerate() {
                *b += c * strides[o][d];
            }
        }
        p.groups.push(BatchGroup {
            count: outer * inner,
            inner,
            base,
            outer_strides,
            inner_strides,
        });
    }
    Some(p)
}

/// Drop unit dims and merge neighbours that are contiguous in every operand (strides in
/// elements, 0 where broadcast).
fn collapse(dims: &[usize], strides: [&[usize]; 3]) -> (Vec<usize>, [Vec<usize>; 3]) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out: [Vec<usize>; 3] = Default::default();
    for d in 0..dims.len() {
        if dims[d] == 1 {
            continue;
        }
        let merge = !out_dims.is_empty()
            && (0..3).all(|o| out[o][out[o].len() - 1] == strides[o][d] * dims[d]);
        if merge {
            *out_dims.last_mut().expect("non-empty") *= dims[d];
            for o in 0..3 {
                *out[o].last_mut().expect("non-empty") = strides[o][d];
            }
        } else {
            out_dims.push(dims[d]);
            for o in 0..3 {
                out[o].push(strides[o][d]);
            }
        }
    }
    (out_dims, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (batch index, operand) offset a plan produces, in z order.
    fn offsets(p: &Plan) -> Vec<[usize; 3]> {
        let mut v = Vec::new();
        for g in &p.groups {
            for z in 0..g.count {
                let (o, i) = (z / g.inner, z % g.inner);
                v.push(
                    [0, 1, 2].map(|x| g.base[x] + o * g.outer_strides[x] + i * g.inner_strides[x]),
                );
            }
        }
        v
    }

    #[test]
    fn shared_rhs_folds_into_m() {
        let p = plan(5, 7, 3, false, true, &[2, 4], &[]).unwrap();
        assert_eq!(
            (p.m, p.out_batch.clone(), p.groups.len()),
            (40, vec![2, 4], 1)
        );
        // Not with a transposed A: its batches are not stacked along M.
        let p = plan(5, 7, 3, true, false, &[2, 4], &[1]).unwrap();
        assert_eq!(p.m, 5);
        assert_eq!(offsets(&p).len(), 8);
    }

    #[test]
    fn broadcast_batches_address_every_pair() {
        // A (2, 1, 3, M, K), B (4, 1, K, N): out batch (2, 4, 3).
        let (m, n, k) = (2, 3, 5);
        let p = plan(m, n, k, false, false, &[2, 1, 3], &[4, 1]).unwrap();
        assert_eq!(p.out_batch, vec![2, 4, 3]);
        let got = offsets(&p);
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..4 {
                for l in 0..3 {
                    want.push([
                        (i * 3 + l) * m * k,
                        j * k * n,
                        ((i * 4 + j) * 3 + l) * m * n,
                    ]);
                }
            }
        }
        assert_eq!(got, want);
        // Three collapsed dims: one group per leading index.
        assert_eq!(p.groups.len(), 2);
    }

    /// validate.rs checks the overrides' defaults; here every transpose combination, with and
    /// without the bounds-check policies a checked device uses, goes through naga's SPIR-V writer.
    #[test]
    fn every_transpose_combination_writes_spirv() {
        // The skinny kernel has no transpose constants (validate.rs checks it).
        for src in sources().into_iter().filter(|s| s.name != GEMV.name) {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let flags = [
                    ("TRANS_A", f64::from(u8::from(ta))),
                    ("TRANS_B", f64::from(u8::from(tb))),
                ];
                crate::spirv_check::assert_writes_spirv(src, &flags);
            }
        }
    }

    #[test]
    fn large_batches_split_the_grid() {
        let p = plan(1, 1, 1, true, false, &[70_000], &[70_000]).unwrap();
        let l = p.launches(Variant::Simt {
            a: Elem::F32,
            b: Elem::F32,
        });
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].workgroups[2] as usize + l[1].workgroups[2] as usize,
            70_000
        );
        assert_eq!(l[1].params[13], MAX_WORKGROUPS_PER_DIM);
    }

    #[test]
    fn coop_grids_cover_c_in_tiles_of_eight_fragments() {
        // 200 x 72 (M x N): 128-wide tiles on 16x16 fragments, 64-wide on 8x8.
        let p = plan(200, 72, 32, false, false, &[3], &[3]).unwrap();
        for (f, grid) in [(Fragment::X16, [1, 2, 3]), (Fragment::X8, [2, 4, 3])] {
            for v in [
                Variant::CoopDirect(f),
                Variant::CoopStaged(f),
                Variant::CoopPrefetch(f),
            ] {
                let l = p.launches(v);
                assert_eq!(l.len(), 1);
                assert_eq!(l[0].workgroups, grid, "{v:?}");
                assert_eq!(l[0].kernel.source.name, f.source().name, "{v:?}");
                let prefetch = l[0].constants.iter().any(|&(c, _)| c == "PREFETCH");
                assert_eq!(prefetch, matches!(v, Variant::CoopPrefetch(_)), "{v:?}");
            }
        }
    }
}
