//! Fuzz target: any bytes as a Parquet data file through the record reader; no panic
//! escapes (the Parquet crate's own panics are contained), and every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new("fuzz/train.parquet");
    if let Err(e) = trainer::data::parse_records(bytes, path) {
        assert!(e.to_string().starts_with("fuzz/train.parquet"), "{e}");
    }
});
