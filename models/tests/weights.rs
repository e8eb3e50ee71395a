//! Safetensors loading: shapes asserted, dtypes converted, sharded checkpoints, and a clear
//! error naming the file and tensor for a missing, mis-shaped, mistyped or truncated one.

mod common;

use std::path::Path;

use common::device;
use models::{Init, Weights};

/// A safetensors file from (name, dtype, shape, raw bytes).
fn write(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let raw = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (raw.len() as u64).to_le_bytes().to_vec();
    out.extend(raw);
    for (_, _, _, bytes) in tensors {
        out.extend(bytes);
    }
    std::fs::write(path, out).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn dtypes_prefixes_rows_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let vals = [1.5f32, -2.25, 3.0, 0.125, 61440.0, -0.0]; // exact in bf16 and f16
    let bf16: Vec<u8> = vals
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    let f16: Vec<u8> = vals
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    write(
        &dir.path().join("a.safetensors"),
        &[("model.a.weight", "F32", vec![2, 3], f32_bytes(&vals))],
    );
    write(
        &dir.path().join("b.safetensors"),
        &[
            ("model.b.weight", "BF16", vec![3, 2], bf16),
            ("model.c.weight", "F16", vec![6], f16),
        ],
    );
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.a.weight": "a.safetensors", "model.b.weight": "b.safetensors", "model.c.weight": "b.safetensors"}}"#,
    )
    .unwrap();
    let dev = device();
    let w = Weights::from_dir(&dev, dir.path()).unwrap().pp("model");
    for name in ["a.weight", "b.weight", "c.weight"] {
        let shape: &[usize] = match name {
            "a.weight" => &[2, 3],
            "b.weight" => &[3, 2],
            _ => &[6],
        };
        let t = w.get(name, shape, Init::Zeros).unwrap();
        assert_eq!(t.to_vec().unwrap(), vals.to_vec(), "{name}");
    }
    let rows = w.get_rows("b.weight", &[3, 2], 1..3, Init::Zeros).unwrap();
    assert_eq!(rows.shape(), &[2, 2]);
    assert_eq!(rows.to_vec().unwrap(), vals[2..].to_vec());
    assert!(w.contains("a.weight") && !w.contains("d.weight"));
}

#[test]
fn bad_checkpoints_name_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write(
        &path,
        &[
            ("w", "F32", vec![2, 2], f32_bytes(&[1.0; 4])),
            ("i", "I64", vec![1], vec![0; 8]),
        ],
    );
    let dev = device();
    let w = Weights::from_dir(&dev, dir.path()).unwrap();
    let err = |r: models::Result<engine::Tensor>| r.expect_err("an error").to_string();
    let e = err(w.get("missing", &[1], Init::Zeros));
    assert!(
        e.contains("model.safetensors") && e.contains("`missing` is missing"),
        "{e}"
    );
    let e = err(w.get("w", &[4, 1], Init::Zeros));
    assert!(e.contains("`w` has shape [2, 2], expected [4, 1]"), "{e}");
    let e = err(w.get("i", &[1], Init::Zeros));
    assert!(e.contains("`i` has dtype I64"), "{e}");

    // Truncated data, a header length past the end, and a header that is not JSON.
    let bytes = std::fs::read(&path).unwrap();
    for (what, broken) in [
        ("truncated", bytes[..bytes.len() - 3].to_vec()),
        (
            "header length",
            [&u64::MAX.to_le_bytes()[..], &bytes[8..]].concat(),
        ),
        (
            "garbage",
            b"\x10\x00\x00\x00\x00\x00\x00\x00not a json header".to_vec(),
        ),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, broken).unwrap();
        let e = Weights::from_dir(&dev, dir.path())
            .err()
            .expect(what)
            .to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("not a valid safetensors file"),
            "{what}: {e}"
        );
    }
    std::fs::remove_file(&path).unwrap();
    let e = Weights::from_dir(&dev, dir.path())
        .err()
        .expect("missing file")
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn random_init_is_deterministic_per_name() {
    let dev = device();
    let w = Weights::random(&dev, 3);
    let a = w
        .get("x", &[4, 8], Init::Normal(0.02))
        .unwrap()
        .to_vec()
        .unwrap();
    let b = w
        .get("x", &[4, 8], Init::Normal(0.02))
        .unwrap()
        .to_vec()
        .unwrap();
    let c = w
        .get("y", &[4, 8], Init::Normal(0.02))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let std = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
    assert!((0.01..0.03).contains(&std), "std {std}");
    let rows = w
        .get_rows("x", &[4, 8], 2..4, Init::Normal(0.02))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(rows, a[16..].to_vec());
}
