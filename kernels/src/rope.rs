//! Launchers for `wgsl/rope.wgsl`: rotary position embedding (HF rotate-half convention) and
//! its backward (the rotation by the negative angle), and HF's default inverse frequencies.

use crate::{grid_for, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "rope",
    wgsl: include_str!("../wgsl/rope.wgsl"),
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

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
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
