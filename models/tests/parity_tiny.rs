//! Tiny random-initialised `llama` and `qwen2` models against HF transformers (float32, CPU,
//! recorded by tests/scripts/make_hf_references.py): logits to 1e-4 and every parameter's
//! gradient of the next-token cross-entropy to 1e-3, relative to each tensor's largest value.

mod common;
use common::*;

use engine::{DType, Tensor};
use models::{Config, Model, Weights};
use safetensors::SafeTensors;

fn f32s(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (data, t.shape().to_vec())
}

/// max |got - want| / max |want|
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0f64, |m, &w| m.max(w.abs() as f64))
        .max(1e-30);
    got.iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()))
        / scale
}

/// Mean next-token cross-entropy of `logits` (B, T, V) for `ids`, as HF's causal LM loss.
fn next_token_loss(logits: &Tensor, ids: &[u32], b: usize, t: usize) -> Tensor {
    let v = logits.dim(-1);
    let mut onehot = vec![0f32; b * (t - 1) * v];
    for i in 0..b {
        for j in 0..t - 1 {
            onehot[(i * (t - 1) + j) * v + ids[i * t + j + 1] as usize] = 1.0;
        }
    }
    let onehot = Tensor::from_slice(logits.device(), &onehot, &[b, t - 1, v]).unwrap();
    let logp = logits.narrow(1, 0, t - 1).unwrap().log_softmax().unwrap();
    logp.mul(&onehot)
        .unwrap()
        .sum_all()
        .unwrap()
        .scale(-1.0 / (b * (t - 1)) as f32)
        .unwrap()
}

fn check(name: &str) {
    let dir = fixture(&format!("hf/{name}"));
    let dev = device();
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    let model = Model::new(&config, &Weights::from_dir(&dev, &dir).unwrap(), true).unwrap();
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let refs = SafeTensors::deserialize(&bytes).unwrap();
    let ids_t = refs.tensor("input_ids").unwrap();
    let (b, t) = (ids_t.shape()[0], ids_t.shape()[1]);
    let ids: Vec<u32> = ids_t
        .data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u32)
        .collect();

    let logits = model.forward(&ids, b, t).unwrap();
    let (want, shape) = f32s(&refs, "logits");
    assert_eq!(logits.shape(), &shape[..]);
    let err = rel_err(&logits.to_vec().unwrap(), &want);
    eprintln!("{name}: logits rel err {err:.2e}");
    assert!(err <= 1e-4, "{name}: logits error {err:.2e}");

    let loss = next_token_loss(&logits, &ids, b, t);
    let (want_loss, _) = f32s(&refs, "loss");
    let got_loss = loss.to_scalar().unwrap();
    assert!(
        ((got_loss - want_loss[0]) / want_loss[0]).abs() <= 1e-5,
        "{name}: loss {got_loss} vs {}",
        want_loss[0]
    );

    let grads = loss.backward().unwrap();
    let mut checked = 0;
    for (pname, p) in model.parameters() {
        let (want, shape) = f32s(&refs, &format!("grad.{pname}"));
        assert_eq!(p.shape(), &shape[..], "{pname}");
        assert_eq!(p.dtype(), DType::F32);
        let got = grads
            .get(&p)
            .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"))
            .to_vec()
            .unwrap();
        let err = rel_err(&got, &want);
        eprintln!("{name}: grad {pname} rel err {err:.2e}");
        assert!(err <= 1e-3, "{name}: gradient of {pname}: error {err:.2e}");
        checked += 1;
    }
    let expected = refs
        .names()
        .iter()
        .filter(|n| n.starts_with("grad."))
        .count();
    assert_eq!(
        checked, expected,
        "{name}: every HF parameter has a counterpart"
    );
}

#[test]
fn tiny_llama_matches_hf() {
    check("tiny-llama");
}

#[test]
fn tiny_qwen2_matches_hf() {
    check("tiny-qwen2");
}
