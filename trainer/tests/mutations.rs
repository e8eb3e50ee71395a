//! The stable, bounded stand-in for the cargo-fuzz targets under `fuzz/`: the safetensors
//! header reader and the JSONL/Parquet record reader are fed a few thousand seeded mutations
//! of valid files (byte flips, truncations, length-field and digit edits, spliced bytes) and
//! must never panic, and every error must name the file.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::repo;
use models::weights::{parse_header, tensor_f32};
use models::SaveDtype;
use trainer::batch::SplitMix;
use trainer::data::{parse_records, tokenize, DataOptions, Fields, Shape, Truncation};

/// The `i`th mutation of `valid`, chosen by `rng`.
fn mutate(valid: &[u8], rng: &mut SplitMix) -> Vec<u8> {
    let mut b = valid.to_vec();
    let pos = |rng: &mut SplitMix, len: usize| rng.below(len.max(1) as u64) as usize;
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if b.is_empty() {
            break;
        }
        match rng.below(7) {
            0 => {
                let i = pos(rng, b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = pos(rng, b.len());
                b[i] = rng.next_u64() as u8;
            }
            2 => b.truncate(pos(rng, b.len())),
            3 if b.len() >= 8 => {
                // The 8-byte length field (safetensors) or footer length (Parquet).
                let v = match rng.below(4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => rng.below(1 << 20),
                    _ => u64::from_le_bytes(b[..8].try_into().unwrap()).wrapping_add(rng.below(16)),
                };
                if rng.below(2) == 0 {
                    b[..8].copy_from_slice(&v.to_le_bytes());
                } else {
                    let n = b.len();
                    b[n - 8..n - 4].copy_from_slice(&(v as u32).to_le_bytes());
                }
            }
            4 => {
                // A digit changed: shapes, offsets, lengths in text.
                let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let i = digits[pos(rng, digits.len())];
                    b[i] = b"0123456789"[rng.below(10) as usize];
                }
            }
            5 => {
                // A span duplicated elsewhere.
                let (i, j) = (pos(rng, b.len()), pos(rng, b.len()));
                let len = (rng.below(64) as usize).min(b.len() - i);
                let span = b[i..i + len].to_vec();
                b.splice(j..j, span);
            }
            _ => {
                let i = pos(rng, b.len());
                let len = (rng.below(32) as usize).min(b.len() - i);
                b.drain(i..i + len);
            }
        }
    }
    b
}

/// Run `f` on `count` mutations of `valid`; no panic, and every error names `path`.
fn fuzz(valid: &[u8], path: &Path, count: usize, seed: u64, f: impl Fn(&[u8]) -> Option<String>) {
    let mut rng = SplitMix(seed);
    let mut errors = 0;
    for i in 0..count {
        let input = mutate(valid, &mut rng);
        let out = catch_unwind(AssertUnwindSafe(|| f(&input)));
        let Ok(err) = out else {
            std::fs::write("/tmp/mutation-panic.bin", &input).ok();
            panic!("mutation {i} (seed {seed}) panicked; input in /tmp/mutation-panic.bin");
        };
        if let Some(e) = err {
            errors += 1;
            assert!(
                e.starts_with(&path.display().to_string()),
                "mutation {i}: the error does not name the file: {e}"
            );
        }
    }
    // The mutations must reach the error paths, or the test proves little.
    assert!(
        errors > count / 4,
        "only {errors} of {count} mutations were rejected"
    );
}

#[test]
fn safetensors_header_reader_survives_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensors = vec![
        (
            "model.a.weight".to_string(),
            vec![3, 4],
            (0..12).map(|x| x as f32).collect(),
        ),
        ("model.b.bias".to_string(), vec![5], vec![0.5; 5]),
        ("lm_head.weight".to_string(), vec![2, 2, 2], vec![-1.0; 8]),
    ];
    models::save::write_safetensors(&path, &tensors, SaveDtype::BF16).unwrap();
    let valid = std::fs::read(&path).unwrap();
    fuzz(&valid, &path, 4000, 7, |bytes| {
        let h = match parse_header(bytes, &path) {
            Ok(h) => h,
            Err(e) => return Some(e.to_string()),
        };
        for (name, t) in &h.tensors {
            let rows = t.shape.first().copied().unwrap_or(1);
            if let Err(e) = tensor_f32(bytes, &h, &path, name, &t.shape, 0..rows) {
                return Some(e.to_string());
            }
        }
        None
    });
}

#[test]
fn jsonl_reader_survives_mutations() {
    let path = repo("tests/fixtures/data/tiny_sft.jsonl");
    let valid = std::fs::read(&path).unwrap();
    let tok = models::Tokenizer::from_dir(&common::smollm2()).unwrap();
    let opts = DataOptions {
        shape: Shape::Auto,
        fields: Fields::default(),
        max_length: 64,
        truncation: Truncation::Right,
    };
    fuzz(&valid, &path, 3000, 11, |bytes| {
        match parse_records(bytes, &path) {
            Err(e) => Some(e.to_string()),
            Ok(records) => {
                // Records that parse are tokenized (errors there get the line from `load`).
                for (_, r) in &records {
                    let _ = tokenize(r, &tok, &opts);
                }
                None
            }
        }
    });
}

#[test]
fn parquet_reader_survives_mutations() {
    for name in ["tiny_sft.parquet", "tiny_messages.parquet"] {
        let path = repo(&format!("tests/fixtures/data/{name}"));
        let valid = std::fs::read(&path).unwrap();
        fuzz(&valid, &path, 2000, 13, |bytes| {
            parse_records(bytes, &path).err().map(|e| e.to_string())
        });
    }
}
