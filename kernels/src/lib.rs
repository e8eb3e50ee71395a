//! WGSL compute kernels, one file per op family, and their launchers.
//!
//! This crate knows nothing of tensors or of wgpu: a launcher turns sizes into a [`Launch`]
//! (which kernel, which specialization constants, how many workgroups, which uniform
//! parameters), and the engine's runtime binds buffers and records the dispatch.
//!
//! Binding convention, shared by every kernel: `@group(0) @binding(0)` is the uniform
//! parameter block (every kernel has one, at most 256 bytes), and each entry point lists the
//! binding numbers of its storage buffers in [`Kernel::bindings`].

pub mod activation;
pub mod attention;
pub mod attention_block;
pub mod cast;
pub mod elementwise;
pub mod embedding;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod objective;
pub mod objective_block;
pub mod optim;
pub mod reduce;
pub mod rope;
pub mod softmax;
#[cfg(test)]
mod spirv_check;

/// Every WGSL source of the crate (for validation tests and warm-up).
pub fn all_sources() -> Vec<&'static Source> {
    let mut all = vec![&elementwise::SOURCE];
    all.extend(layout::sources());
    all.extend(matmul::sources());
    all.extend(attention::sources());
    all.extend(attention_block::sources());
    all.extend(reduce::sources());
    all.extend(softmax::sources());
    all.extend(norm::sources());
    all.extend(rope::sources());
    all.extend(activation::sources());
    all.extend(embedding::sources());
    all.extend(cast::sources());
    all.extend(optim::sources());
    all.extend(objective::sources());
    all.extend(objective_block::sources());
    all
}

/// One WGSL source file.
#[derive(Debug)]
pub struct Source {
    /// Stable name, used as the pipeline-cache key.
    pub name: &'static str,
    pub wgsl: &'static str,
    /// Adapter features the source needs (`enable f16;` and the like).
    pub needs: Needs,
}

/// Adapter features a kernel needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub f16: bool,
    pub subgroups: bool,
    pub cooperative_matrix: bool,
}

/// An entry point of a source file.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    pub source: &'static Source,
    pub entry: &'static str,
    /// The binding numbers of its storage buffers, in the order the launcher's caller passes
    /// them. Entry points of one file use disjoint numbers, so no binding is declared twice.
    pub bindings: &'static [u32],
}

/// Everything the runtime needs to record one dispatch, apart from the buffers.
#[derive(Debug, Clone)]
pub struct Launch {
    pub kernel: Kernel,
    /// WGSL `override` constants (the pipeline is cached per distinct set).
    pub constants: Vec<(&'static str, f64)>,
    pub workgroups: [u32; 3],
    /// The uniform parameter block as 32-bit words; empty means the kernel has none.
    pub params: Vec<u32>,
}

/// Largest workgroup count allowed in one dimension by WebGPU's default limits.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65_535;

/// Split `count` workgroups into an (x, y) grid that respects the per-dimension limit.
///
/// Kernels that use it recover the linear workgroup index as `wid.y * nwg.x + wid.x`
/// (with `@builtin(num_workgroups) nwg`) and return early past `count`.
pub fn grid_1d(count: u32) -> [u32; 3] {
    if count <= MAX_WORKGROUPS_PER_DIM {
        [count.max(1), 1, 1]
    } else {
        let y = count.div_ceil(MAX_WORKGROUPS_PER_DIM);
        [count.div_ceil(y), y, 1]
    }
}

/// Number of workgroups of `per_group` items needed for `n` items, as a grid.
pub fn grid_for(n: usize, per_group: u32) -> [u32; 3] {
    let groups = (n as u64).div_ceil(per_group as u64);
    grid_1d(u32::try_from(groups).unwrap_or(u32::MAX))
}

/// Builder for a uniform parameter block: u32, i32 and f32 words in declaration order.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<u32>);

impl Params {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.push(v);
        self
    }
    /// A size as u32; sizes over u32::MAX are refused earlier by the engine's binding checks.
    pub fn size(self, v: usize) -> Self {
        self.u32(v as u32)
    }
    pub fn f32(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }
    pub fn build(self) -> Vec<u32> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_respects_dimension_limit() {
        assert_eq!(grid_1d(0), [1, 1, 1]);
        assert_eq!(grid_1d(65_535), [65_535, 1, 1]);
        let [x, y, z] = grid_1d(1_000_000);
        assert!(x <= MAX_WORKGROUPS_PER_DIM && z == 1);
        assert!(x as u64 * y as u64 >= 1_000_000);
        assert_eq!(grid_for(257, 256), [2, 1, 1]);
    }
}
