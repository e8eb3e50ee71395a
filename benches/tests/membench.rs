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

/// `-offload` keeps AdamW's moments in host memory: between steps the GPU holds the weights
/// alone (a third of weights + two moments, up to the pool's size classes), and everything
/// the forward adds is the same bytes as without.
#[test]
fn offloaded_moments_leave_the_gpu() {
    let (rows, stdout) = common::run_rows(
        env!("CARGO_BIN_EXE_membench"),
        &[
            "--model",
            "tiny",
            "--target",
            "2x32",
            "--compute",
            "f16,f16-offload",
        ],
    );
    assert_eq!(rows.len(), 2, "{stdout}");
    let points = |r: &serde_json::Value| r["bytes"].as_object().unwrap().clone();
    let (on_gpu, on_host) = (points(&rows[0]), points(&rows[1]));
    for (key, dev) in &on_gpu {
        let at = |v: &serde_json::Value, i: usize| v[i].as_f64().unwrap();
        let host = &on_host[key];
        let (state_dev, state_host) = (at(dev, 0), at(host, 0));
        let third = state_dev / 3.0;
        assert!(
            (state_host - third).abs() <= 0.01 * third,
            "{key}: {state_host} bytes between steps offloaded, {state_dev} not"
        );
        assert_eq!(
            at(dev, 1) - at(host, 1),
            state_dev - state_host,
            "{key}: forward"
        );
    }
}
