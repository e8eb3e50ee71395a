//! `--profile-step`: one training step's GPU kernels timed (timestamp queries) into
//! OUTPUT/profile.json and profile.txt, without changing what the run computes.

mod common;

use common::{metrics, tiny_model, train_ok, train_on, train_tiny};
use models::{Config, Model, Weights};
use serde_json::Value;

#[test]
fn profiles_exactly_one_step_and_leaves_the_run_unchanged() {
    if !common::device().features().timestamps {
        eprintln!("skipped: the adapter has no timestamp queries");
        return;
    }
    let args = ["--steps", "3", "--batch-size", "2", "--precision", "f32"];
    let (tmp, model_dir, out) = train_tiny(&[&args[..], &["--profile-step", "2"]].concat());
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("profile.json")).unwrap()).unwrap();
    assert_eq!(doc["step"], 2);
    let dispatches = doc["dispatches"].as_u64().unwrap();
    let kernels = doc["kernels"].as_array().unwrap();
    let calls: u64 = kernels.iter().map(|k| k["calls"].as_u64().unwrap()).sum();
    assert_eq!(calls, dispatches, "{doc:#}");
    let ms: Vec<f64> = kernels.iter().map(|k| k["ms"].as_f64().unwrap()).collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "longest first: {ms:?}");
    let share: f64 = kernels.iter().map(|k| k["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 5e-3, "shares sum to {share}");
    let grids = doc["grids"].as_array().unwrap();
    let grid_calls: u64 = grids.iter().map(|k| k["calls"].as_u64().unwrap()).sum();
    assert_eq!(grid_calls, dispatches);
    // One step and only one: the optimizer ran once per parameter tensor.
    let config = Config::from_file(&model_dir.join("config.json")).unwrap();
    let params = Model::new(&config, &Weights::random(&common::device(), 0), false)
        .unwrap()
        .parameters()
        .len() as u64;
    let calls_of = |name: &str| {
        kernels
            .iter()
            .find(|k| k["kernel"] == name)
            .and_then(|k| k["calls"].as_u64())
    };
    assert_eq!(calls_of("adamw (optim::adamw)"), Some(params), "{doc:#}");
    assert!(calls_of("matmul (matmul::matmul)").is_some_and(|c| c > 0));
    let text = std::fs::read_to_string(out.join("profile.txt")).unwrap();
    assert!(
        text.contains("training step 2") && text.contains("adamw"),
        "{text}"
    );

    // The same run without profiling computes the same losses.
    let plain = tmp.path().join("plain");
    train_ok(&model_dir, &plain, &args);
    let loss =
        |m: &[Value]| -> Vec<f64> { m.iter().map(|x| x["loss"].as_f64().unwrap()).collect() };
    assert_eq!(loss(&metrics(&out)), loss(&metrics(&plain)));
    assert!(!plain.join("profile.json").exists());
}

#[test]
fn a_step_outside_the_run_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    tiny_model(&model_dir);
    let out = tmp.path().join("run");
    let run = train_on(&model_dir, &out, &["--steps", "3", "--profile-step", "4"]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("--profile-step 4") && lines[0].contains("steps 1 to 3"),
        "{err}"
    );
    assert!(!out.join("final").exists());
}
