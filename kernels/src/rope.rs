//! Launchers for `wgsl/rope.wgsl`: rotary position embedding (HF rotate-half convention) and
//! its backward (the rotation by the negative angle), for `wgsl/heads.wgsl`: the fused q/k/v
//! product split into heads with the rotation on the way (and back), and HF's default
//! inverse frequencies. Both sources end with `wgsl/rotary_math.wgsl` (sin and cos).

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "rope",
    wgsl: concat!(
        include_str!("../wgsl/rope.wgsl"),
        include_str!("../wgsl/rotary_math.wgsl")
    ),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const ROPE: Kernel = Kernel {
    source: &SOURCE,
    entry: "rope",
    bindings: &[1, 2, 3, 4],
};

pub static HEADS_SOURCE: Source = Source {
    name: "heads",
    wgsl: concat!(
        include_str!("../wgsl/heads.wgsl"),
        include_str!("../wgsl/rotary_math.wgsl"),
        include_str!("../wgsl/f16_bits.wgsl")
    ),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const HEADS: Kernel = Kernel {
    source: &HEADS_SOURCE,
    entry: "heads",
    bindings: &[1, 2, 3, 4],
};
const HEADS_F16: Kernel = Kernel {
    source: &HEADS_SOURCE,
    entry: "heads_f16",
    bindings: &[1, 2, 3, 5],
};
const HEADS_BACK: Kernel = Kernel {
    source: &HEADS_SOURCE,
    entry: "heads_back",
    bindings: &[1, 2, 3, 4],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE, &HEADS_SOURCE]
}

/// HF's default inverse frequencies, computed in f32 as `transformers` does:
/// `1 / theta^(arange(0, head_dim, 2) / head_dim)`, `head_dim / 2` values.
pub fn inv_freq(theta: f32, head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
        .collect()
}

/// Rotate x, seen as (outer, seq_len, head_dim), by `pos * inv_freq`: buffers x, positions
/// (u32), inv_freq (head_dim / 2), out. Each group of `group` consecutive outer rows uses one
/// row of `seq_len` positions. `backward` rotates by the negative angle (the gradient).
pub fn rope(outer: usize, seq_len: usize, head_dim: usize, group: usize, backward: bool) -> Launch {
    let pairs = outer * seq_len * (head_dim / 2);
    Launch {
        kernel: ROPE,
        constants: vec![],
        workgroups: grid_for(pairs, 256),
        params: Params::new()
            .size(pairs)
            .size(seq_len)
            .size(head_dim / 2)
            .size(group.max(1))
            .f32(if backward { -1.0 } else { 1.0 })
            .build(),
    }
}

/// Where one group of heads sits in a fused projection (B, T, total, D), D = 2 * half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadGroup {
    pub batch: usize,
    pub seq_len: usize,
    pub half: usize,
    /// Heads in the fused projection.
    pub total: usize,
    /// The group's first head and head count.
    pub head0: usize,
    pub heads: usize,
    /// Positions per batch row (B, T) rather than shared (T).
    pub positions_per_row: bool,
    /// Rotate (q, k) or copy (v).
    pub rotate: bool,
}

fn heads_launch(kernel: Kernel, g: &HeadGroup, per_invocation: usize) -> Launch {
    let pairs = g.batch * g.heads * g.seq_len * g.half;
    Launch {
        kernel,
        constants: vec![],
        workgroups: grid_for(pairs.div_ceil(per_invocation), 256),
        params: Params::new()
            .size(pairs)
            .size(g.seq_len)
            .size(g.half)
            .size(g.heads.max(1))
            .size(g.total)
            .size(g.head0)
            .size(if g.positions_per_row { g.seq_len } else { 0 })
            .size(usize::from(g.rotate))
            .build(),
    }
}

/// Group `g` of the fused projection into its own (B, heads, T, D) tensor, rotated or
/// copied: buffers fused, positions (u32), inv_freq (half), out.
pub fn heads(g: &HeadGroup) -> Launch {
    heads_launch(HEADS, g, 1)
}

/// [`heads`] written as f16 (rounded bit for bit as the f32 -> f16 cast), for an even `half`:
/// buffers fused, positions, inv_freq, out (u32 words, two f16 each).
pub fn heads_f16(g: &HeadGroup) -> Launch {
    assert!(
        g.half.is_multiple_of(2),
        "heads_f16 packs neighbouring pairs: half must be even"
    );
    heads_launch(HEADS_F16, g, 2)
}

/// The gradient of [`heads`]: buffers g (B, heads, T, D), positions, inv_freq, and the fused
/// gradient (B, T, total, D), of which it writes the group's heads.
pub fn heads_backward(g: &HeadGroup) -> Launch {
    heads_launch(HEADS_BACK, g, 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn inv_freq_starts_at_one_and_falls() {
        let f = super::inv_freq(10_000.0, 64);
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert!(f.windows(2).all(|w| w[1] < w[0]));
        assert!((f[16] as f64 - 0.01).abs() < 1e-7);
    }
}
