//! Launchers for `wgsl/reduce.wgsl`: sum (and mean, through a scale) and max with its first
//! index over one axis of a tensor seen as (outer, len, inner), and the scatter that is the
//! backward of max.

use crate::{grid_1d, grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "reduce",
    wgsl: include_str!("../wgsl/reduce.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const REDUCE: Kernel = Kernel {
    source: &SOURCE,
    entry: "reduce",
    bindings: &[1, 2],
};
const ARGMAX: Kernel = Kernel {
    source: &SOURCE,
    entry: "argmax",
    bindings: &[3, 4, 5],
};
const ARGMAX_BWD: Kernel = Kernel {
    source: &SOURCE,
    entry: "argmax_bwd",
    bindings: &[6, 7, 8],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

/// Workgroups a reduction should spread over before its axis is split into chunks.
const TARGET_WORKGROUPS: usize = 1024;
/// Fewest elements of the reduced axis one chunk covers.
const MIN_CHUNK: usize = 512;

/// Neighbouring `inner` positions one workgroup owns (a power of two, at most 64).
fn cols(inner: usize) -> usize {
    inner.next_power_of_two().min(64)
}

/// Into how many chunks a sum over `len` should split its axis so that enough workgroups
/// run: 1 means one launch; more means a first launch writing (outer, chunks, inner) partial
/// sums and a second summing those over the chunks.
pub fn sum_chunks(outer: usize, len: usize, inner: usize) -> usize {
    let base = outer * inner.div_ceil(cols(inner));
    if base >= TARGET_WORKGROUPS || len < 2 * MIN_CHUNK {
        return 1;
    }
    let chunks = TARGET_WORKGROUPS.div_ceil(base).min(len / MIN_CHUNK).max(1);
    len.div_ceil(len.div_ceil(chunks)) // no empty chunk
}

fn params(outer: usize, len: usize, inner: usize, chunks: usize, scale: f32) -> (Vec<u32>, usize) {
    let c = cols(inner);
    let col_blocks = inner.div_ceil(c);
    let p = Params::new()
        .size(outer)
        .size(len)
        .size(inner)
        .size(c)
        .size(col_blocks)
        .size(chunks)
        .size(len.div_ceil(chunks).max(1))
        .f32(scale)
        .build();
    (p, outer * chunks * col_blocks)
}

fn grid(workgroups: usize) -> [u32; 3] {
    grid_1d(u32::try_from(workgroups).unwrap_or(u32::MAX))
}

/// `out[o, c, i] = scale * sum of x[o, j, i]` over chunk `c` of the axis (chunk length
/// `ceil(len / chunks)`); with `chunks = 1`, the sum over the whole axis, shape (outer, inner).
pub fn sum(outer: usize, len: usize, inner: usize, chunks: usize, scale: f32) -> Launch {
    let (params, workgroups) = params(outer, len, inner, chunks.max(1), scale);
    Launch {
        kernel: REDUCE,
        constants: vec![],
        workgroups: grid(workgroups),
        params,
    }
}

/// Max over the axis and the index of its first occurrence, both (outer, inner); `len >= 1`.
pub fn argmax(outer: usize, len: usize, inner: usize) -> Launch {
    let (params, workgroups) = params(outer, len, inner, 1, 1.0);
    Launch {
        kernel: ARGMAX,
        constants: vec![],
        workgroups: grid(workgroups),
        params,
    }
}

/// `dx[o, j, i] = g[o, i]` where `j == idx[o, i]`, else 0: dx is (outer, len, inner).
pub fn argmax_backward(outer: usize, len: usize, inner: usize) -> Launch {
    let (params, _) = params(outer, len, inner, 1, 1.0);
    Launch {
        kernel: ARGMAX_BWD,
        constants: vec![],
        workgroups: grid_for(outer * len * inner, 256),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_only_when_few_workgroups_and_long_axis() {
        assert_eq!(sum_chunks(4096, 151_936, 1), 1);
        assert_eq!(sum_chunks(1, 1000, 1), 1);
        let c = sum_chunks(1, 151_936, 1);
        assert!(c > 1 && c * MIN_CHUNK <= 151_936, "{c}");
        assert_eq!(sum_chunks(1, 1500, 3), 2);
        // Every chunk non-empty.
        for len in [1024, 1025, 5000, 99_999] {
            let c = sum_chunks(1, len, 1);
            assert!((c - 1) * len.div_ceil(c) < len, "{len} {c}");
        }
    }

    #[test]
    fn columns_per_workgroup() {
        assert_eq!(cols(1), 1);
        assert_eq!(cols(3), 4);
        assert_eq!(cols(1000), 64);
        let l = sum(2, 5, 3, 1, 1.0);
        assert_eq!(l.workgroups, [2, 1, 1]);
    }
}
