//! `trainbench --smoke` end to end on whatever adapter there is (lavapipe in CI): it must exit
//! 0 and print, as JSON lines, passed checks and one sane figure per plan item, each with the
//! fields benches/gpu/compare.py reads.

mod common;

use serde_json::Value;

#[test]
fn smoke_run_prints_checked_figures() {
    let (rows, stdout) = common::run_rows(env!("CARGO_BIN_EXE_trainbench"), &["--smoke"]);
    let named = |prefix: &str| -> Vec<&Value> {
        rows.iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .collect()
    };
    assert!(rows.iter().all(|r| r.get("error").is_none()), "{stdout}");
    let checks = named("check_");
    assert_eq!(
        checks.len(),
        4,
        "f32, f16, f16 recomputed, f16 flash: {stdout}"
    );
    for c in &checks {
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["loss_falls"], true, "{c}");
    }
    let figures: Vec<&Value> = ["train_tiny_", "diagnose_tiny_", "objective_"]
        .iter()
        .flat_map(|p| named(p))
        .collect();
    assert_eq!(figures.len(), 10, "{stdout}");
    let offloaded = named("train_tiny_f16_recompute_offload");
    assert_eq!(offloaded.len(), 1, "{stdout}");
    assert_eq!(offloaded[0]["offload"], true, "{stdout}");
    // Packed rows: their log p against the padded rows' (f16 products, so not to the bit).
    let packed = named("train_tiny_f16_packed");
    assert_eq!(packed.len(), 1, "{stdout}");
    assert_eq!(packed[0]["packed"], true, "{stdout}");
    let err = packed[0]["packed_log_p_err"]
        .as_f64()
        .expect("packed_log_p_err");
    assert!(err < 1e-2, "{stdout}");
    for f in figures {
        assert_eq!(f["ok"], true, "{f}");
        assert!(f["ref"].is_string(), "{f}");
        assert!(f["tokens_per_s"].as_f64().is_some_and(|x| x > 0.0), "{f}");
        assert!(f["peak_gib"].as_f64().is_some(), "{f}");
        // The work counters of the engine: every step dispatches and submits something.
        assert!(
            f["dispatches_per_step"].as_f64().is_some_and(|x| x >= 1.0),
            "{f}"
        );
        assert!(
            f["submits_per_step"].as_f64().is_some_and(|x| x >= 1.0),
            "{f}"
        );
    }
    // Where the adapter has timestamp queries, each figure carries one profiled step: as many
    // dispatches timed as a timed step recorded, the longest kernels first.
    let timestamps = named("device")[0]["features"]
        .as_str()
        .is_some_and(|f| f.contains("timestamps: true"));
    if timestamps {
        for f in ["train_tiny_", "diagnose_tiny_", "objective_"]
            .iter()
            .flat_map(|p| named(p))
        {
            assert_eq!(
                f["profiled_dispatches"].as_f64(),
                f["dispatches_per_step"].as_f64(),
                "{f}"
            );
            assert!(f["gpu_ms"].as_f64().is_some_and(|x| x > 0.0), "{f}");
            let ms: Vec<f64> = f["kernels"]
                .as_array()
                .expect("kernels")
                .iter()
                .map(|k| k["ms"].as_f64().expect("ms"))
                .collect();
            assert!(!ms.is_empty() && ms.windows(2).all(|w| w[0] >= w[1]), "{f}");
        }
    }
    let train = named("train_tiny_f16")[0];
    assert_eq!(train["ref"], "train_tiny_bf16");
    assert!(
        train["loss_first"]
            .as_f64()
            .is_some_and(|l| l > 0.99 && l <= 1.0),
        "{train}"
    );
}
