//! Safetensors loading: shapes asserted, dtypes converted, sharded checkpoints, and a clear
//! error naming the file and tensor for a missing, mis-shaped, mistyped or truncated one, one
//! whose header disagrees with its bytes, and one too large for the GPU's bindings.

mod common;

use std::path::Path;

use common::device;
use models::weights::parse_header;
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

/// A safetensors file whose header is `header` (JSON), followed by `data` bytes.
fn raw_file(header: &str, data: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(vec![0u8; data]);
    out
}

#[test]
fn headers_that_disagree_with_their_bytes_name_the_tensor() {
    let path = Path::new("/ckpt/model.safetensors");
    let ok = r#"{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "__metadata__": {"format": "pt"}}"#;
    let h = parse_header(&raw_file(ok, 16), path).unwrap();
    assert_eq!(h.tensors["a"].shape, vec![2, 2]);
    assert_eq!(h.data_start, 8 + ok.len());
    let cases: &[(&str, usize, &str)] = &[
        (
            r#"{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}"#,
            12,
            "tensor `a`: data_offsets [0, 16] lie outside the data (12 bytes",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 8]}}"#,
            16,
            "tensor `a`: data_offsets [16, 8] lie outside",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}"#,
            16,
            "tensor `a`: shape [2, 3] of F32 does not fit the 16 bytes",
        ),
        (
            r#"{"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 16]}}"#,
            16,
            "shape [2, 2] of BF16 does not fit",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}"#,
            16,
            "does not fit",
        ),
        (
            r#"{"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}}"#,
            1,
            "tensor `a`: unknown dtype \"Q4\"",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#,
            4,
            "tensor `a`: `shape` is not a list of non-negative integers",
        ),
        (
            r#"{"a": {"shape": [1], "data_offsets": [0, 4]}}"#,
            4,
            "tensor `a`: no `dtype`",
        ),
        (r#"[1, 2]"#, 0, "not a JSON object"),
    ];
    for (header, data, want) in cases {
        let e = parse_header(&raw_file(header, *data), path)
            .expect_err(want)
            .to_string();
        assert!(
            e.starts_with("/ckpt/model.safetensors: not a valid safetensors file: ")
                && e.contains(want),
            "expected {want:?} in {e}"
        );
    }
    let e = parse_header(&[1, 2, 3], path).unwrap_err().to_string();
    assert!(e.contains("3 bytes, too short"), "{e}");
    let mut long = raw_file(ok, 16);
    long[..8].copy_from_slice(&1000u64.to_le_bytes());
    let e = parse_header(&long, path).unwrap_err().to_string();
    assert!(e.contains("says 1000 bytes but only"), "{e}");
}

#[test]
fn a_tensor_larger_than_a_binding_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("model.safetensors"),
        &[("big", "F32", vec![32, 32], f32_bytes(&[0.5; 1024]))],
    );
    let mut opts = engine::DeviceOptions::from_env();
    opts.shader_checks = true;
    opts.max_binding_bytes = Some(2048);
    let dev = engine::Device::with_options(opts).unwrap();
    let w = Weights::from_dir(&dev, dir.path()).unwrap();
    let e = w
        .get("big", &[32, 32], Init::Zeros)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors: tensor `big` needs 4096 bytes")
            && e.contains("largest binding (2048 bytes)"),
        "{e}"
    );
    // Half of its rows fit (vocabulary matrices are loaded so).
    let rows = w.get_rows("big", &[32, 32], 16..32, Init::Zeros).unwrap();
    assert_eq!(rows.shape(), &[16, 32]);
}
