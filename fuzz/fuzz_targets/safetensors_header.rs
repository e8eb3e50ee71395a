//! Fuzz target: any bytes through the safetensors header reader and, where the header is
//! accepted, every tensor read back as f32; no panic, and every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use models::weights::{parse_header, tensor_f32};

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new("fuzz/model.safetensors");
    let header = match parse_header(bytes, path) {
        Ok(h) => h,
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz/model.safetensors"), "{e}");
            return;
        }
    };
    for (name, t) in &header.tensors {
        let rows = t.shape.first().copied().unwrap_or(1);
        if let Err(e) = tensor_f32(bytes, &header, path, name, &t.shape, 0..rows) {
            assert!(e.to_string().starts_with("fuzz/model.safetensors"), "{e}");
        }
    }
});
