//! Launchers for `wgsl/embedding.wgsl`: the embedding gather, and its deterministic backward
//! (stable LSD radix sort of positions by id, then a segment sum; no float atomics).

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "embedding",
    wgsl: include_str!("../wgsl/embedding.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const GATHER: Kernel = Kernel {
    source: &SOURCE,
    entry: "gather",
    bindings: &[1, 2, 3],
};
const IOTA: Kernel = Kernel {
    source: &SOURCE,
    entry: "iota",
    bindings: &[4],
};
const DIGIT_HIST: Kernel = Kernel {
    source: &SOURCE,
    entry: "digit_hist",
    bindings: &[5, 6, 7],
};
const SCAN_TABLE: Kernel = Kernel {
    source: &SOURCE,
    entry: "scan_table",
    bindings: &[8],
};
const DIGIT_SCATTER: Kernel = Kernel {
    source: &SOURCE,
    entry: "digit_scatter",
    bindings: &[9, 10, 11, 12],
};
const SEGMENT_SUM: Kernel = Kernel {
    source: &SOURCE,
    entry: "segment_sum",
    bindings: &[13, 14, 15, 16],
};

/// Positions per sort block (the workgroup size of the sort kernels).
const BLOCK: usize = 256;

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

fn params(n: usize, d: usize, vocab: usize, shift: u32, len: usize) -> Vec<u32> {
    Params::new()
        .size(n)
        .size(d)
        .size(vocab)
        .u32(shift)
        .size(n.div_ceil(BLOCK))
        .size(len)
        .build()
}

/// `out (n, d) = weight (vocab, d)[ids (n)]`, zero rows for ids >= vocab.
/// Bindings: weight, ids, out.
pub fn gather(n: usize, d: usize, vocab: usize) -> Launch {
    Launch {
        kernel: GATHER,
        constants: vec![],
        workgroups: grid_for(n * d, 256),
        params: params(n, d, vocab, 0, n * d),
    }
}

/// Number of 8-bit digit passes that sort keys in `0..=vocab` (vocab is the out-of-range key).
pub fn sort_passes(vocab: usize) -> u32 {
    let bits = usize::BITS - vocab.leading_zeros();
    bits.div_ceil(8).max(1)
}

/// Entries of the (256 digits x blocks) count table the sort of `n` positions needs.
pub fn table_len(n: usize) -> usize {
    256 * n.div_ceil(BLOCK)
}

/// `pos[k] = k` for k < n. Bindings: pos.
pub fn iota(n: usize) -> Launch {
    Launch {
        kernel: IOTA,
        constants: vec![],
        workgroups: grid_for(n, 256),
        params: params(n, 0, 0, 0, n),
    }
}

/// Digit histogram per block for sort pass `pass`. Bindings: ids, src positions, table.
pub fn digit_hist(n: usize, vocab: usize, pass: u32) -> Launch {
    Launch {
        kernel: DIGIT_HIST,
        constants: vec![],
        workgroups: grid_for(n, BLOCK as u32),
        params: params(n, 0, vocab, 8 * pass, 0),
    }
}

/// Exclusive scan, in place, of the count table for `n` positions. Bindings: table.
pub fn scan_table(n: usize) -> Launch {
    Launch {
        kernel: SCAN_TABLE,
        constants: vec![],
        workgroups: [1, 1, 1],
        params: params(n, 0, 0, 0, table_len(n)),
    }
}

/// Stable scatter of positions by digit for sort pass `pass`.
/// Bindings: ids, src positions, scanned table, dst positions.
pub fn digit_scatter(n: usize, vocab: usize, pass: u32) -> Launch {
    Launch {
        kernel: DIGIT_SCATTER,
        constants: vec![],
        workgroups: grid_for(n, BLOCK as u32),
        params: params(n, 0, vocab, 8 * pass, 0),
    }
}

/// `out[id] = sum of grad rows of the positions with that id`, in position order, over the
/// positions sorted by id. `out (vocab, d)` must be zeroed first.
/// Bindings: ids, sorted positions, grad (n, d), out (vocab, d).
pub fn segment_sum(n: usize, d: usize, vocab: usize) -> Launch {
    Launch {
        kernel: SEGMENT_SUM,
        constants: vec![],
        workgroups: grid_for(n * d, 256),
        params: params(n, d, vocab, 0, n * d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_cover_the_out_of_range_key() {
        assert_eq!(sort_passes(1), 1);
        assert_eq!(sort_passes(255), 1);
        assert_eq!(sort_passes(256), 2); // key 256 needs 9 bits
        assert_eq!(sort_passes(151_936), 3);
        assert_eq!(sort_passes(1 << 24), 4);
        assert_eq!(table_len(1), 256);
        assert_eq!(table_len(257), 512);
    }
}
