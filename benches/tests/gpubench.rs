//! `gpubench --quick` end to end on whatever adapter there is (lavapipe in CI): every kernel's
//! check against the f64 CPU reference must pass and every figure must run, as the GPU run
//! (benches/gpu/run.sh) will ask of it at full size.

mod common;

use serde_json::Value;

#[test]
fn quick_run_checks_every_figure() {
    let (rows, stdout) = common::run_rows(env!("CARGO_BIN_EXE_gpubench"), &["--quick"]);
    let figures: Vec<&Value> = rows.iter().filter(|r| r["name"] != "device").collect();
    assert!(figures.iter().all(|r| r["ok"] == true), "{stdout}");
    for prefix in [
        "matmul_f32_",
        "attention_fwd_bwd_f32_",
        "attention_fwd_bwd_f16blocks_",
        "softmax_",
        "adamw_",
        "dispatch_",
    ] {
        assert!(
            figures
                .iter()
                .any(|r| r["name"].as_str().is_some_and(|n| n.starts_with(prefix))),
            "no {prefix} figure\n{stdout}"
        );
    }
}
