//! Fuzz target: any bytes as a JSONL data file through the record reader; no panic, and
//! every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new("fuzz/train.jsonl");
    if let Err(e) = trainer::data::parse_records(bytes, path) {
        assert!(e.to_string().starts_with("fuzz/train.jsonl"), "{e}");
    }
});
