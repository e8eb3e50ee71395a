//! `membench` end to end on the tiny config (lavapipe in CI): one row per compute, the tape's
//! holdings exactly linear in layers and tokens (so a 3-layer step is predicted to the byte
//! and nothing is left over from step to step), and the activations ordered as the computes
//! keep them: f32 > f16 (f16 copies of the products' inputs) > f16 recomputed (layer inputs
//! only).

mod common;

#[test]
fn tiny_run_weighs_every_compute() {
    let (rows, stdout) = common::run_rows(
        env!("CARGO_BIN_EXE_membench"),
        &["--model", "tiny", "--target", "2x32"],
    );
    let names: Vec<&str> = rows.iter().filter_map(|r| r["compute"].as_str()).collect();
    assert_eq!(
        names,
        ["f32", "f16", "f16-flash", "f16-recompute"],
        "{stdout}"
    );
    let act = |i: usize| {
        rows[i]["activation_bytes_per_layer_token"]
            .as_f64()
            .unwrap()
    };
    for (i, r) in rows.iter().enumerate() {
        let err = r["fit_err"].as_f64().unwrap();
        assert!(err.abs() < 1e-9, "{r}");
        assert!(act(i) > 0.0, "{r}");
        let state = r["projected_state_gib"].as_f64().unwrap();
        let forward = r["projected_forward_gib"].as_f64().unwrap();
        assert!(forward >= state, "{r}");
    }
    assert!(act(0) > act(1) && act(1) > act(3), "{stdout}");
}
