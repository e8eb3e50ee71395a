//! Sequences packed into rows (`Model::hidden_states_packed`) against each sequence run alone
//! on the tiny HF fixtures: hidden states, and every parameter's gradient of a weighted sum of
//! them (the packed rows' one backward against the sum of the sequences' own), plainly, with
//! layer recomputation and in f16; positions that do not describe packed sequences are errors.

mod common;
use common::*;

use engine::Tensor;
use models::{Compute, Config, Model, Precision, Weights};

fn model(name: &str) -> Model {
    let dir = fixture(&format!("hf/{name}"));
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    Model::new(&config, &Weights::from_dir(&device(), &dir).unwrap(), true).unwrap()
}

/// A deterministic spread of values in [0.5, 1.5).
fn spread(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 + 0.5)
        .collect()
}

/// max |got - want| / max |want|
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &w| m.max(w.abs() as f64));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
    diff / scale.max(1e-30)
}

/// Every parameter's gradient of sum(hidden * w), by parameter name.
fn grads(m: &Model, hidden: &Tensor, w: &[f32]) -> Vec<(String, Vec<f32>)> {
    let w = Tensor::from_slice(m.device(), w, hidden.shape()).unwrap();
    let g = hidden
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    m.parameters()
        .into_iter()
        .map(|(name, p)| {
            let v = g
                .get(&p)
                .map_or_else(|| vec![0.0; p.elem_count()], |t| t.to_vec().unwrap());
            (name, v)
        })
        .collect()
}

fn check(name: &str, compute: Compute, (hidden_tol, grad_tol): (f64, f64)) {
    let m = model(name);
    m.set_compute(compute);
    let (vocab, c) = (m.config.vocab_size, m.config.hidden_size);
    // Two rows of 24: [5, 9, 1, 9] and [13, 11]; sequences cross no tile on purpose and on
    // purpose end mid-row.
    let rows: [&[usize]; 2] = [&[5, 9, 1, 9], &[13, 11]];
    let t = 24;
    let ids: Vec<u32> = (0..2 * t).map(|i| ((i * 37 + 11) % vocab) as u32).collect();
    let positions: Vec<u32> = rows
        .iter()
        .flat_map(|lens| lens.iter().flat_map(|&n| 0..n as u32))
        .collect();
    let w = spread(2 * t * c, 3);
    let packed = m.hidden_states_packed(&ids, 2, t, &positions).unwrap();
    let got = packed.to_vec().unwrap();
    let got_grads = grads(&m, &packed, &w);

    let mut want = vec![0.0; got.len()];
    let mut want_grads: Vec<(String, Vec<f32>)> = Vec::new();
    for (b, lens) in rows.iter().enumerate() {
        let mut at = b * t;
        for &n in lens.iter() {
            let alone = m.hidden_states(&ids[at..at + n], 1, n).unwrap();
            want[at * c..(at + n) * c].copy_from_slice(&alone.to_vec().unwrap());
            let g = grads(&m, &alone, &w[at * c..(at + n) * c]);
            if want_grads.is_empty() {
                want_grads = g;
            } else {
                for ((_, sum), (_, x)) in want_grads.iter_mut().zip(&g) {
                    sum.iter_mut().zip(x).for_each(|(s, v)| *s += v);
                }
            }
            at += n;
        }
    }
    let err = rel_err(&got, &want);
    eprintln!("{name} {compute:?}: hidden rel err {err:.2e}");
    assert!(err <= hidden_tol, "{name}: hidden states error {err:.2e}");
    for ((pname, g), (_, wg)) in got_grads.iter().zip(&want_grads) {
        let err = rel_err(g, wg);
        assert!(
            err <= grad_tol,
            "{name}: gradient of {pname}: error {err:.2e}"
        );
    }
}

#[test]
fn packed_sequences_are_what_they_are_alone() {
    check("tiny-llama", Compute::default(), (1e-5, 1e-4));
    check("tiny-qwen2", Compute::default(), (1e-5, 1e-4));
    let recompute = Compute {
        recompute: true,
        ..Compute::default()
    };
    check("tiny-qwen2", recompute, (1e-5, 1e-4));
    // In f16 the sequences alone may take the attention blocks (cooperative matrices) and
    // the packed rows the flash kernels: the same values within f16's rounding.
    let f16 = Compute {
        precision: Precision::F16,
        ..Compute::default()
    };
    check("tiny-llama", f16, (1e-2, 3e-2));
}

#[test]
fn positions_must_describe_packed_sequences() {
    let m = model("tiny-llama");
    let ids = vec![1u32; 8];
    for (positions, says) in [
        (vec![0, 1, 2, 0, 1, 2, 3], "7 positions for 8 tokens"),
        (vec![1, 2, 3, 4, 5, 6, 7, 8], "position 1 at token 0"),
        (vec![0, 1, 2, 0, 1, 3, 4, 5], "position 3 at token 5"),
    ] {
        let e = m
            .hidden_states_packed(&ids, 1, 8, &positions)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
    // Row 1 starts over.
    let e = m
        .hidden_states_packed(&ids, 2, 4, &[0, 1, 2, 3, 4, 5, 6, 7])
        .unwrap_err()
        .to_string();
    assert!(e.contains("position 4 at token 0 of row 1"), "{e}");
}
