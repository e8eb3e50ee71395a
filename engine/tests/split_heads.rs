//! `split_heads` (the fused q/k/v product into heads, rotary on the way) against an f64 CPU
//! reference of the layout change and HF's rotate-half rotation, over edge shapes, positions
//! shared or per batch row; its backward (one rule for several outputs) against the reference
//! and central finite differences, with an output left unused; bad shapes are errors.

mod common;
use common::*;

use engine::ops::rope::{default_inv_freq, split_heads};
use engine::{Error, Tensor};

fn upos(p: &[u32], shape: &[usize]) -> Tensor {
    Tensor::from_u32_slice(&dev(), p, shape).unwrap()
}

/// Where one group's rotated pairs sit and how they turn.
struct Group<'a> {
    /// (batch, seq_len, heads in the fused layout, head_dim)
    dims: (usize, usize, usize, usize),
    head0: usize,
    n: usize,
    rotate: bool,
    pos: &'a [u32],
    per_row: bool,
    inv: &'a [f32],
}

impl Group<'_> {
    /// Visit each pair (i, i + D/2) of the group: its first element's index in the fused
    /// layout (B, T, H, D), in the heads layout (B, n, T, D), and the sine and cosine of its
    /// angle f32(pos) * inv[i], formed in f32 as HF does (0 and 1 when not rotating).
    fn for_each_pair(&self, mut f: impl FnMut(usize, usize, f64, f64)) {
        let (b, t, h, d) = self.dims;
        for bi in 0..b {
            for ni in 0..self.n {
                for ti in 0..t {
                    let fused = ((bi * t + ti) * h + self.head0 + ni) * d;
                    let heads = ((bi * self.n + ni) * t + ti) * d;
                    let p = self.pos[if self.per_row { bi * t + ti } else { ti }];
                    for i in 0..d / 2 {
                        let angle = (p as f32 * self.inv[i]) as f64;
                        let (s, c) = if self.rotate {
                            (angle.sin(), angle.cos())
                        } else {
                            (0.0, 1.0)
                        };
                        f(fused + i, heads + i, s, c);
                    }
                }
            }
        }
    }

    /// The f64 reference: the group of x (B, T, H, D) as (B, n, T, D), rotated.
    fn forward(&self, x: &[f32]) -> Vec<f64> {
        let (b, t, _, d) = self.dims;
        let half = d / 2;
        let mut out = vec![0.0; b * self.n * t * d];
        self.for_each_pair(|src, dst, s, c| {
            let (x1, x2) = (x[src] as f64, x[src + half] as f64);
            out[dst] = x1 * c - x2 * s;
            out[dst + half] = x2 * c + x1 * s;
        });
        out
    }

    /// The group's gradient g (B, n, T, D) rotated back into its heads of dx (B, T, H, D).
    fn backward_into(&self, g: &[f32], dx: &mut [f64]) {
        let half = self.dims.3 / 2;
        self.for_each_pair(|dst, src, s, c| {
            let (g1, g2) = (g[src] as f64, g[src + half] as f64);
            dx[dst] = g1 * c + g2 * s;
            dx[dst + half] = g2 * c - g1 * s;
        });
    }
}

#[test]
fn forward_and_backward_match_reference() {
    let mut r = rng(11);
    // (batch, seq_len, head_dim, groups (heads, rotate), per-row positions, theta)
    let cases: &[(usize, usize, usize, &[(usize, bool)], bool, f32)] = &[
        (
            1,
            1,
            2,
            &[(1, true), (1, true), (1, false)],
            false,
            10_000.0,
        ),
        (
            2,
            5,
            8,
            &[(4, true), (2, true), (2, false)],
            false,
            10_000.0,
        ),
        (
            2,
            5,
            8,
            &[(4, true), (2, true), (2, false)],
            true,
            1_000_000.0,
        ),
        (
            1,
            33,
            14,
            &[(3, true), (1, true), (1, false)],
            false,
            10_000.0,
        ),
        (
            3,
            7,
            64,
            &[(2, true), (2, true), (2, false)],
            true,
            500_000.0,
        ),
        (
            1,
            4,
            4,
            &[(2, false), (0, true), (1, true)],
            false,
            10_000.0,
        ),
    ];
    for &(b, t, d, groups, per_row, theta) in cases {
        let h: usize = groups.iter().map(|g| g.0).sum();
        let x = randn(&mut r, b * t * h * d);
        let np = if per_row { b * t } else { t };
        let pos: Vec<u32> = (0..np).map(|i| (i as u32 * 977 + 3) % 40_000).collect();
        let pos_shape = if per_row { vec![b, t] } else { vec![t] };
        let inv = default_inv_freq(theta, d);
        let xv = tensor(&x, &[b, t, h * d]).var();
        let outs = split_heads(
            &xv,
            groups,
            &upos(&pos, &pos_shape),
            &tensor(&inv, &[d / 2]),
        )
        .unwrap();
        assert_eq!(outs.len(), groups.len());
        let what = format!("split_heads b{b} t{t} d{d} {groups:?} per row {per_row}");
        let (mut head0, mut gs) = (0, Vec::new());
        let mut dx_want = vec![0.0; x.len()];
        for (out, &(n, rotate)) in outs.iter().zip(groups) {
            assert_eq!(out.shape(), &[b, n, t, d], "{what}");
            let group = Group {
                dims: (b, t, h, d),
                head0,
                n,
                rotate,
                pos: &pos,
                per_row,
                inv: &inv,
            };
            assert_close(
                &format!("{what} group {head0}"),
                &out.to_vec().unwrap(),
                &group.forward(&x),
                F32_TOL,
            );
            let g = randn(&mut r, out.elem_count());
            group.backward_into(&g, &mut dx_want);
            gs.push(tensor(&g, out.shape()));
            head0 += n;
        }
        let got = weighted_grads(&outs, &gs)
            .get(&xv)
            .unwrap()
            .to_vec()
            .unwrap();
        let want = dx_want;
        assert_close(&format!("{what} backward"), &got, &want, F32_TOL);
    }
}

#[test]
fn equals_permute_narrow_rope_exactly() {
    // The fused pass computes what the unfused ops do, to the bit.
    let mut r = rng(12);
    let (b, t, d, hq, hkv) = (2, 6, 16, 4, 2);
    let h = hq + 2 * hkv;
    let x = tensor(&randn(&mut r, b * t * h * d), &[b, t, h * d]);
    let pos = upos(&[3, 9, 0, 1, 70_000, 5, 2, 2, 8, 1, 0, 40], &[b, t]);
    let inv = tensor(&default_inv_freq(10_000.0, d), &[d / 2]);
    let fused = split_heads(&x, &[(hq, true), (hkv, true), (hkv, false)], &pos, &inv).unwrap();
    let all = x
        .reshape(&[b, t, h, d])
        .unwrap()
        .permute(&[0, 2, 1, 3])
        .unwrap();
    let q = all
        .narrow(1, 0, hq)
        .unwrap()
        .rope_with_freqs(&pos, &inv)
        .unwrap();
    let k = all
        .narrow(1, hq, hkv)
        .unwrap()
        .rope_with_freqs(&pos, &inv)
        .unwrap();
    let v = all.narrow(1, hq + hkv, hkv).unwrap();
    for (name, got, want) in [
        ("q", &fused[0], q),
        ("k", &fused[1], k),
        ("v", &fused[2], v),
    ] {
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap(), "{name}");
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(13);
    let (b, t, d) = (2, 3, 4);
    let groups = [(2, true), (1, true), (1, false)];
    let x = randn(&mut r, b * t * 4 * d);
    let inv = default_inv_freq(10_000.0, d);
    for unused in [None, Some(1)] {
        check_grads(
            &format!("split_heads, output {unused:?} unused"),
            &[(x.clone(), vec![b, t, 4 * d])],
            |v| {
                let pos = upos(&[1, 7, 30, 2, 0, 5], &[b, t]);
                let outs = split_heads(&v[0], &groups, &pos, &tensor(&inv, &[d / 2]))?;
                let flat: Vec<Tensor> = outs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != unused)
                    .map(|(_, o)| o.reshape(&[o.elem_count()]))
                    .collect::<engine::Result<_>>()?;
                Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)
            },
            1e-2,
            2e-2,
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    let inv = tensor(&default_inv_freq(10_000.0, 4), &[2]);
    let x = tensor(&[0.0; 2 * 3 * 12], &[2, 3, 12]);
    let pos = upos(&[0, 1, 2], &[3]);
    let groups = [(1, true), (1, true), (1, false)];
    assert!(split_heads(&x, &groups, &pos, &inv).is_ok());
    // Heads that do not fill the last dimension.
    assert!(matches!(
        split_heads(&x, &[(2, true)], &pos, &inv),
        Err(Error::BadShape { .. })
    ));
    // Not (B, T, H * D).
    let flat = tensor(&[0.0; 36], &[36]);
    assert!(matches!(
        split_heads(&flat, &groups, &pos, &inv),
        Err(Error::BadShape { .. })
    ));
    // Positions of another length.
    assert!(matches!(
        split_heads(&x, &groups, &upos(&[0, 1], &[2]), &inv),
        Err(Error::ShapeMismatch { .. })
    ));
    // Positions as f32.
    assert!(matches!(
        split_heads(&x, &groups, &tensor(&[0.0; 3], &[3]), &inv),
        Err(Error::DTypeMismatch { .. })
    ));
}

#[test]
fn f16_heads_are_the_f32_heads_cast_bit_for_bit() {
    use engine::ops::rope::split_heads_as;
    use engine::{no_grad, DType};
    let mut r = rng(14);
    // D a multiple of 4 (written as f16 by the pass) and D = 6 (cast after it); per-row
    // positions; large values that overflow f16.
    for (b, t, d, per_row) in [
        (1usize, 1usize, 4usize, false),
        (2, 5, 8, true),
        (1, 3, 6, false),
        (2, 17, 64, true),
    ] {
        let groups = [(3, true), (1, true), (1, false)];
        let mut x: Vec<f32> = randn(&mut r, b * t * 5 * d);
        x[0] = 7e4;
        let np = if per_row { b * t } else { t };
        let pos: Vec<u32> = (0..np).map(|i| (i as u32 * 131 + 7) % 9000).collect();
        let pos = upos(&pos, &if per_row { vec![b, t] } else { vec![t] });
        let inv = tensor(&default_inv_freq(10_000.0, d), &[d / 2]);
        let xv = tensor(&x, &[b, t, 5 * d]).var();
        let f16s = split_heads_as(&xv, &groups, &pos, &inv, DType::F16).unwrap();
        let f32s = no_grad(|| split_heads(&xv, &groups, &pos, &inv).unwrap());
        for (got, want) in f16s.iter().zip(&f32s) {
            assert_eq!(got.dtype(), DType::F16);
            let want = want.to_dtype(DType::F16).unwrap();
            assert_eq!(f16_bits(got), f16_bits(&want), "b{b} t{t} d{d}");
        }
        // The gradient through f16 heads is the f32 path's.
        let gs: Vec<Tensor> = f32s
            .iter()
            .map(|o| tensor(&randn(&mut r, o.elem_count()), o.shape()))
            .collect();
        let grad = |outs: Vec<Tensor>| {
            let grads = weighted_grads(&outs, &gs);
            grads.get(&xv).unwrap().to_vec().unwrap()
        };
        let d16 = grad(f16s);
        let d32 = grad(split_heads(&xv, &groups, &pos, &inv).unwrap());
        assert_eq!(d16, d32, "b{b} t{t} d{d} gradient");
    }
}
