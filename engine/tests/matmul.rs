//! Matmul against an f64 CPU reference (edge shapes, every transpose combination, batch
//! broadcasting, f32 and f16 inputs, each kernel the adapter has), the backward rule against
//! central finite differences (and f16 inputs' gradients against the reference), and errors.

mod common;
use common::*;

use engine::ops::matmul::MatmulKernel;
use engine::{Error, Tensor};
use half::f16;

/// (M, K, N): sizes of one, long rows, and sizes around the 64 x 64 tile and its 16-deep slab.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 300, 1),
    (63, 65, 67),
    (64, 64, 64),
    (130, 17, 33),
];

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// Stored shape of an operand: `batch ++ [r, c]`, or `batch ++ [c, r]` when transposed.
fn stored(batch: &[usize], r: usize, c: usize, trans: bool) -> Vec<usize> {
    let mut s = batch.to_vec();
    s.extend(if trans { [c, r] } else { [r, c] });
    s
}

/// f64 reference of op(A) @ op(B) with numpy batch broadcasting.
fn reference(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    ta: bool,
    tb: bool,
) -> (Vec<f64>, Vec<usize>) {
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k) = if ta {
        (sa[ra - 1], sa[ra - 2])
    } else {
        (sa[ra - 2], sa[ra - 1])
    };
    let n = if tb { sb[rb - 2] } else { sb[rb - 1] };
    let rank = (ra - 2).max(rb - 2);
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (ba, bb) = (pad(&sa[..ra - 2]), pad(&sb[..rb - 2]));
    let batch: Vec<usize> = ba.iter().zip(&bb).map(|(&x, &y)| x.max(y)).collect();
    let count: usize = batch.iter().product();
    let index = |shape: &[usize], coord: &[usize]| {
        shape
            .iter()
            .zip(coord)
            .fold(0, |acc, (&d, &c)| acc * d + if d == 1 { 0 } else { c })
    };
    let mut out = vec![0.0; count * m * n];
    for z in 0..count {
        let mut coord = vec![0; rank];
        let mut rem = z;
        for d in (0..rank).rev() {
            coord[d] = rem % batch[d];
            rem /= batch[d];
        }
        let (oa, ob) = (index(&ba, &coord) * m * k, index(&bb, &coord) * k * n);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    let x = if ta {
                        a[oa + l * m + i]
                    } else {
                        a[oa + i * k + l]
                    };
                    let y = if tb {
                        b[ob + j * k + l]
                    } else {
                        b[ob + l * n + j]
                    };
                    s += x as f64 * y as f64;
                }
                out[(z * m + i) * n + j] = s;
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    (out, shape)
}

fn round_f16(v: &[f32]) -> (Vec<f16>, Vec<f32>) {
    let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    let r = h.iter().map(|x| x.to_f32()).collect();
    (h, r)
}

fn f16_tensor(h: &[f16], shape: &[usize]) -> Tensor {
    Tensor::from_f16_slice(&dev(), h, shape).expect("upload")
}

/// Check `op(A) @ op(B)` for batch shapes `ba`, `bb`, every transpose combination, with the
/// inputs as f32 and as f16 (and mixed), on `kernel`. `f16_only` for the coop kernels.
fn check_product(
    what: &str,
    (m, k, n): (usize, usize, usize),
    ba: &[usize],
    bb: &[usize],
    kernel: MatmulKernel,
    f16_only: bool,
    seed: u64,
) {
    let mut r = rng(seed);
    for (ta, tb) in TRANSPOSES {
        let (sa, sb) = (stored(ba, m, k, ta), stored(bb, k, n, tb));
        let a = randn(&mut r, sa.iter().product());
        let b = randn(&mut r, sb.iter().product());
        let tag = format!(
            "{what} {sa:?}{} @ {sb:?}{}",
            if ta { "^T" } else { "" },
            if tb { "^T" } else { "" }
        );
        if !f16_only {
            let (want, shape) = reference(&a, &sa, &b, &sb, ta, tb);
            let got = tensor(&a, &sa)
                .matmul_with(&tensor(&b, &sb), ta, tb, kernel)
                .unwrap();
            assert_eq!(got.shape(), &shape[..], "{tag}");
            assert_close(
                &format!("f32 {tag}"),
                &got.to_vec().unwrap(),
                &want,
                F32_TOL,
            );
        }
        if !dev().features().f16 {
            continue;
        }
        let ((ha, ra), (hb, rb)) = (round_f16(&a), round_f16(&b));
        let (want, _) = reference(&ra, &sa, &rb, &sb, ta, tb);
        let (xa, xb) = (f16_tensor(&ha, &sa), f16_tensor(&hb, &sb));
        let got = xa.matmul_with(&xb, ta, tb, kernel).unwrap();
        assert_close(
            &format!("f16 {tag}"),
            &got.to_vec().unwrap(),
            &want,
            F16_TOL,
        );
        if !f16_only {
            // Mixed operands (what the backward of f16 inputs runs) are exact in f32.
            let got = tensor(&ra, &sa).matmul_t(&xb, ta, tb).unwrap();
            assert_close(
                &format!("f32 x f16 {tag}"),
                &got.to_vec().unwrap(),
                &want,
                F32_TOL,
            );
            let got = xa.matmul_t(&tensor(&rb, &sb), ta, tb).unwrap();
            assert_close(
                &format!("f16 x f32 {tag}"),
                &got.to_vec().unwrap(),
                &want,
                F32_TOL,
            );
        }
    }
}

#[test]
fn simt_matches_reference_on_edge_shapes() {
    for (i, &s) in SHAPES.iter().enumerate() {
        check_product("simt", s, &[], &[], MatmulKernel::Simt, false, i as u64);
    }
}

#[test]
fn batches_broadcast() {
    let s = (5, 7, 6);
    // Both batched, broadcast both ways over three dims: out batch (2, 4, 3).
    check_product(
        "bcast",
        s,
        &[2, 1, 3],
        &[4, 1],
        MatmulKernel::Simt,
        false,
        10,
    );
    // A rank-2 right operand shared by every batch (folded into M unless A is transposed).
    check_product("shared rhs", s, &[3, 2], &[], MatmulKernel::Simt, false, 11);
    // A shared left operand.
    check_product("shared lhs", s, &[1], &[3], MatmulKernel::Simt, false, 12);
}

#[test]
fn auto_kernel_matches_reference() {
    // Sizes that fit the cooperative-matrix kernels (Auto takes them where the adapter has
    // them) and one that does not.
    check_product(
        "auto",
        (48, 32, 80),
        &[2],
        &[2],
        MatmulKernel::Auto,
        false,
        20,
    );
    check_product(
        "auto",
        (128, 16, 144),
        &[],
        &[],
        MatmulKernel::Auto,
        false,
        21,
    );
    check_product(
        "auto",
        (24, 40, 8),
        &[2],
        &[],
        MatmulKernel::Auto,
        false,
        22,
    );
}

#[test]
fn coop_kernels_match_reference_when_available() {
    let features = dev().features();
    if !(features.cooperative_matrix && features.f16) {
        eprintln!("skipped: {} has no cooperative matrices", dev().name());
        return;
    }
    for kernel in [
        MatmulKernel::Coop,
        MatmulKernel::CoopStaged,
        MatmulKernel::CoopPrefetch,
    ] {
        let what = format!("{kernel:?}");
        // Tiles past M or N inside a workgroup tile (128 x 128 on 16x16 fragments, 64 x 64 on
        // 8x8 ones), K past one slab (32 or 16 deep).
        check_product(&what, (48, 80, 16), &[], &[], kernel, true, 30);
        check_product(&what, (144, 48, 272), &[], &[], kernel, true, 31);
        check_product(&what, (128, 128, 128), &[], &[], kernel, true, 32);
        check_product(&what, (32, 16, 64), &[2, 1], &[3], kernel, true, 33);
        check_product(&what, (16, 32, 16), &[3], &[], kernel, true, 34);
    }
}

#[test]
fn coop_kernel_option_is_checked_when_the_device_opens() {
    use engine::{CoopMatmul, DeviceOptions};
    for (given, want) in [
        ("direct", CoopMatmul::Direct),
        ("Staged", CoopMatmul::Staged),
        (" prefetch ", CoopMatmul::Prefetch),
    ] {
        assert_eq!(CoopMatmul::parse(given).unwrap(), want, "{given}");
    }
    let open = |value: &str| {
        let mut opts = DeviceOptions::from_env();
        opts.shader_checks = true;
        opts.coop_matmul = Some(value.to_string());
        engine::Device::with_options(opts)
    };
    let e = open("fastest").expect_err("an unknown kernel");
    let msg = e.to_string();
    assert!(
        msg.contains("TRAINER_COOP_MATMUL=fastest") && msg.contains("prefetch"),
        "{msg}"
    );
    // The chosen kernel computes Auto's f16 products (the SIMT kernel where the adapter has
    // no cooperative matrices).
    let d = open("prefetch").unwrap();
    assert_eq!(d.coop_matmul(), CoopMatmul::Prefetch);
    if d.features().f16 {
        let mut r = rng(35);
        let (a, b) = (randn(&mut r, 32 * 48), randn(&mut r, 48 * 16));
        let h = |v: &[f32], s: &[usize]| {
            let v: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            Tensor::from_f16_slice(&d, &v, s).unwrap()
        };
        let got = h(&a, &[32, 48]).matmul(&h(&b, &[48, 16])).unwrap();
        let round =
            |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| f16::from_f32(x).to_f32()).collect() };
        let (want, _) = reference(&round(&a), &[32, 48], &round(&b), &[48, 16], false, false);
        assert_close("Auto f16 product", &got.to_vec().unwrap(), &want, F32_TOL);
    }
}

#[test]
fn requiring_cooperative_matrices_refuses_an_adapter_without_them() {
    let mut opts = engine::DeviceOptions::from_env();
    opts.shader_checks = true;
    opts.require_coop = true;
    let has = dev().coop_fragment().is_some();
    match engine::Device::with_options(opts) {
        Ok(d) => assert!(has && d.coop_fragment().is_some(), "{}", d.name()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!has, "{msg}");
            assert!(
                matches!(e, Error::MissingFeature { .. }) && msg.contains("TRAINER_REQUIRE_COOP"),
                "{msg}"
            );
        }
    }
}

/// The fragment the kernels use is one the adapter offers (as `trainer devices` lists them).
#[test]
fn the_fragment_used_is_one_offered() {
    let d = dev();
    let offered = d.coop_offered();
    if let Some(f) = d.coop_fragment() {
        let s = f.side();
        let want = format!("{s}x{s}x{s} f16 -> f32");
        assert!(offered.contains(&want), "{want} not in {offered:?}");
    }
    assert!(
        offered
            .iter()
            .all(|o| o.contains('x') && o.contains(" -> ")),
        "{offered:?}"
    );
}

#[test]
fn many_batches_split_the_grid() {
    // More batches than one grid dimension holds (65,535): dispatched in two parts.
    let z = 66_000;
    let mut r = rng(40);
    let (a, b) = (randn(&mut r, z * 2), randn(&mut r, z * 2));
    let got = tensor(&a, &[z, 2, 1])
        .matmul(&tensor(&b, &[z, 1, 2]))
        .unwrap();
    let (want, _) = reference(&a, &[z, 2, 1], &b, &[z, 1, 2], false, false);
    assert_close("66000 batches", &got.to_vec().unwrap(), &want, F32_TOL);
}

#[test]
fn empty_contraction_gives_zeros() {
    let got = tensor(&[], &[2, 0]).matmul(&tensor(&[], &[0, 3])).unwrap();
    assert_eq!(got.shape(), &[2, 3]);
    assert_eq!(got.to_vec().unwrap(), vec![0.0; 6]);
}

#[test]
fn linear_matches_reference() {
    let mut r = rng(50);
    let (x, w, b) = (
        randn(&mut r, 2 * 3 * 5),
        randn(&mut r, 4 * 5),
        randn(&mut r, 4),
    );
    let got = tensor(&x, &[2, 3, 5])
        .linear(&tensor(&w, &[4, 5]), Some(&tensor(&b, &[4])))
        .unwrap();
    assert_eq!(got.shape(), &[2, 3, 4]);
    let (mut want, _) = reference(&x, &[6, 5], &w, &[4, 5], false, true);
    for (i, v) in want.iter_mut().enumerate() {
        *v += b[i % 4] as f64;
    }
    assert_close("linear", &got.to_vec().unwrap(), &want, F32_TOL);
    let got = tensor(&x[..5], &[5])
        .linear(&tensor(&w, &[4, 5]), None)
        .unwrap();
    assert_eq!(got.shape(), &[4]);
    let (want, _) = reference(&x[..5], &[1, 5], &w, &[4, 5], false, true);
    assert_close("linear, one row", &got.to_vec().unwrap(), &want, F32_TOL);
}

#[test]
fn matmul_backward_matches_finite_differences() {
    let mut r = rng(60);
    let mut inputs = |sa: &[usize], sb: &[usize]| {
        vec![
            (randn(&mut r, sa.iter().product()), sa.to_vec()),
            (randn(&mut r, sb.iter().product()), sb.to_vec()),
        ]
    };
    check_grads(
        "matmul",
        &inputs(&[5, 7], &[7, 3]),
        |x| x[0].matmul(&x[1]),
        1e-2,
        2e-2,
    );
    for (ta, tb) in TRANSPOSES {
        let (sa, sb) = (stored(&[], 4, 6, ta), stored(&[], 6, 5, tb));
        let what = format!("matmul_t {ta} {tb}");
        check_grads(
            &what,
            &inputs(&sa, &sb),
            |x| x[0].matmul_t(&x[1], ta, tb),
            1e-2,
            2e-2,
        );
    }
    // Broadcast batches: the gradient of a broadcast operand sums over its copies.
    let cases: [(&[usize], &[usize], bool, bool); 4] = [
        (&[2, 1, 3, 4], &[3, 4, 2], false, false),
        (&[2, 3, 4], &[4, 5], false, false), // shared B, stacked along M
        (&[2, 3, 4], &[5, 4], false, true),
        (&[2, 4, 3], &[4, 5], true, false), // shared B, A transposed: summed per batch
    ];
    for (sa, sb, ta, tb) in cases {
        let what = format!("batched {sa:?} {sb:?} {ta} {tb}");
        check_grads(
            &what,
            &inputs(sa, sb),
            |x| x[0].matmul_t(&x[1], ta, tb),
            1e-2,
            2e-2,
        );
    }
    check_grads(
        "shared lhs",
        &inputs(&[3, 4], &[2, 4, 2]),
        |x| x[0].matmul(&x[1]),
        1e-2,
        2e-2,
    );
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut r = rng(70);
    let inputs = vec![
        (randn(&mut r, 2 * 3 * 4), vec![2, 3, 4]),
        (randn(&mut r, 5 * 4), vec![5, 4]),
        (randn(&mut r, 5), vec![5]),
    ];
    check_grads(
        "linear",
        &inputs,
        |x| x[0].linear(&x[1], Some(&x[2])),
        1e-2,
        2e-2,
    );
}

#[test]
fn f16_inputs_get_f32_gradients() {
    if !dev().features().f16 {
        eprintln!("skipped: {} has no f16", dev().name());
        return;
    }
    let mut r = rng(80);
    for (ta, tb) in TRANSPOSES {
        let (m, k, n) = (6, 5, 7);
        let (sa, sb) = (stored(&[2], m, k, ta), stored(&[], k, n, tb));
        let (ha, ra) = round_f16(&randn(&mut r, sa.iter().product()));
        let (hb, rb) = round_f16(&randn(&mut r, sb.iter().product()));
        let g = randn(&mut r, 2 * m * n);
        // Both operands f16: the backward products take G rounded to f16 (mixed precision).
        let (_, g_used) = round_f16(&g);
        let (a, b) = (f16_tensor(&ha, &sa).var(), f16_tensor(&hb, &sb).var());
        let out = a.matmul_t(&b, ta, tb).unwrap();
        let grads = out
            .mul(&tensor(&g, &[2, m, n]))
            .unwrap()
            .backward()
            .unwrap();
        let (ga, gb) = (grads.get(&a).unwrap(), grads.get(&b).unwrap());
        assert_eq!(
            (ga.dtype(), gb.dtype()),
            (engine::DType::F32, engine::DType::F32)
        );
        // op(A) as stored, its gradient likewise: dA = G @ op(B)^T, dB = sum_z op(A)^T @ G.
        let ga_want = if ta {
            reference(&rb, &sb, &g_used, &[2, m, n], tb, true).0
        } else {
            reference(&g_used, &[2, m, n], &rb, &sb, false, !tb).0
        };
        let gb_want: Vec<f64> = {
            let per = if tb {
                reference(&g_used, &[2, m, n], &ra, &sa, true, ta).0
            } else {
                reference(&ra, &sa, &g_used, &[2, m, n], !ta, false).0
            };
            let len = k * n;
            (0..len).map(|i| per[i] + per[len + i]).collect()
        };
        let tag = format!("f16 grads {ta} {tb}");
        assert_close(
            &format!("{tag} dA"),
            &ga.to_vec().unwrap(),
            &ga_want,
            F32_TOL,
        );
        assert_close(
            &format!("{tag} dB"),
            &gb.to_vec().unwrap(),
            &gb_want,
            F32_TOL,
        );
    }
}

#[test]
fn bad_operands_are_refused() {
    let t = |s: &[usize]| Tensor::zeros(&dev(), s, engine::DType::F32).unwrap();
    let err = |r: engine::Result<Tensor>| r.expect_err("should fail");
    assert!(matches!(
        err(t(&[2, 3]).matmul(&t(&[4, 5]))),
        Error::ShapeMismatch { .. }
    ));
    assert!(matches!(
        err(t(&[2, 3]).matmul_t(&t(&[2, 5]), false, true)),
        Error::ShapeMismatch { .. }
    ));
    assert!(matches!(
        err(t(&[2, 2, 3]).matmul(&t(&[3, 3, 5]))),
        Error::ShapeMismatch { .. }
    ));
    assert!(matches!(
        err(t(&[3]).matmul(&t(&[3, 5]))),
        Error::BadShape { .. }
    ));
    assert!(matches!(
        err(t(&[2, 3]).linear(&t(&[4, 5]), None)),
        Error::ShapeMismatch { .. }
    ));
    let ids = Tensor::from_u32_slice(&dev(), &[1, 2, 3, 4], &[2, 2]).unwrap();
    assert!(matches!(
        err(ids.matmul(&t(&[2, 2]))),
        Error::DTypeMismatch { .. }
    ));
    // The coop kernels take f16 only, and sizes that are multiples of 16.
    let coop = |a: &Tensor, b: &Tensor| a.matmul_with(b, false, false, MatmulKernel::Coop);
    assert!(matches!(
        err(coop(&t(&[16, 16]), &t(&[16, 16]))),
        Error::DTypeMismatch { .. }
    ));
    if dev().features().f16 {
        let h = |s: &[usize]| f16_tensor(&vec![f16::ZERO; s.iter().product()], s);
        let e = err(coop(&h(&[16, 8]), &h(&[8, 16])));
        if dev().features().cooperative_matrix {
            assert!(matches!(e, Error::BadShape { .. }), "{e}");
        } else {
            assert!(matches!(e, Error::MissingFeature { .. }), "{e}");
        }
    }
}

/// The skinny kernels that `linear` uses for up to 8 rows (decode steps), at edge sizes.
#[test]
fn skinny_linear_matches_reference() {
    let mut r = rng(91);
    for (lead, k, n) in [
        (vec![1, 1], 1, 1),
        (vec![1, 1], 33, 9),
        (vec![2, 3], 70, 17),
        (vec![8], 300, 1003),
        (vec![1, 7], 5, 64),
        // K a multiple of 4 takes the vec4 kernel (32 columns x 8 lanes per workgroup).
        (vec![1, 1], 4, 33),
        (vec![3], 36, 65),
        (vec![8], 8, 1),
        (vec![4], 576, 100),
    ] {
        let rows: usize = lead.iter().product();
        let a = randn(&mut r, rows * k);
        let w = randn(&mut r, n * k);
        let mut shape = lead.clone();
        shape.push(k);
        let got = tensor(&a, &shape)
            .linear(&tensor(&w, &[n, k]), None)
            .unwrap();
        let mut want_shape = lead.clone();
        want_shape.push(n);
        assert_eq!(got.shape(), &want_shape[..]);
        let want: Vec<f64> = (0..rows * n)
            .map(|i| {
                (0..k)
                    .map(|j| a[(i / n) * k + j] as f64 * w[(i % n) * k + j] as f64)
                    .sum()
            })
            .collect();
        assert_close(
            &format!("skinny linear {lead:?} k={k} n={n}"),
            &got.to_vec().unwrap(),
            &want,
            F32_TOL,
        );
    }
}
