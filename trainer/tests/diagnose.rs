//! `trainer diagnose` on both real test models against HF transformers (float32; recorded by
//! tests/scripts/make_diagnose_reference.py with its own implementation of the data
//! conventions): the same loss tokens, mean p and per-example means within 1e-3 (f32), or
//! within 1e-2 with every product in f16 (on cooperative matrices where the adapter has them);
//! the same with the records packed into one row (`--packing`); and `--data` with several
//! files.

mod common;

use common::{repo, trainer};

fn check(model: &str, precision: &str, tol: f64) {
    check_with(model, precision, tol, &[]);
}

fn check_with(model: &str, precision: &str, tol: f64, extra: &[&str]) {
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let plot = tempfile::Builder::new().suffix(".svg").tempfile().unwrap();
    let mut args = vec![
        "diagnose",
        "--model",
        model,
        "--data",
        data.to_str().unwrap(),
        "--json",
        "--alphas",
        "0,1,10,0.5",
        "--plot",
        plot.path().to_str().unwrap(),
        "--precision",
        precision,
    ];
    args.extend_from_slice(extra);
    let out = trainer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = repo(&format!("tests/fixtures/hf/diagnose_{model}.json"));
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(got["tokens"], want["tokens"], "{model}: loss tokens");
    let close = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!(
            (a - b).abs() <= tol,
            "{model} {precision}: {what}: {a} vs HF {b}"
        );
    };
    close(&got["mean_prob"], &want["mean_prob"], "mean p");
    close(&got["nll"], &want["nll"], "nll");
    close(&got["f_alpha"]["0"], &want["nll"], "f_alpha 0 = nll");
    for (i, (a, b)) in got["per_example_mean"]
        .as_array()
        .unwrap()
        .iter()
        .zip(want["per_example_mean"].as_array().unwrap())
        .enumerate()
    {
        close(a, b, &format!("example {i} mean p"));
    }
    // f_alpha(1) = 1 - mean p
    let f1 = got["f_alpha"]["1"].as_f64().unwrap();
    assert!((f1 - (1.0 - got["mean_prob"].as_f64().unwrap())).abs() < 1e-9);
    for key in [
        "histogram",
        "percentiles",
        "recommendation",
        "geometric_mean_prob",
    ] {
        assert!(!got[key].is_null(), "{model}: {key} in the JSON");
    }
    let hist: u64 = got["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hist, got["tokens"].as_u64().unwrap());
    assert!(std::fs::read_to_string(plot.path())
        .unwrap()
        .starts_with("<svg"));
}

#[test]
fn smollm2_diagnosis_matches_hf() {
    check("smollm2-135m-instruct", "f32", 1e-3);
}

#[test]
fn qwen_diagnosis_matches_hf() {
    check("qwen2.5-coder-0.5b-instruct", "f32", 1e-3);
}

#[test]
fn smollm2_packed_diagnosis_matches_hf() {
    // The four records in one row, each attending only to itself from position 0.
    check_with("smollm2-135m-instruct", "f32", 1e-3, &["--packing"]);
}

#[test]
fn smollm2_f16_diagnosis_is_within_f16_bounds_of_hf() {
    check("smollm2-135m-instruct", "f16", 1e-2);
}

#[test]
fn qwen_f16_diagnosis_is_within_f16_bounds_of_hf() {
    check("qwen2.5-coder-0.5b-instruct", "f16", 1e-2);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let data = data.to_str().unwrap();
    for (args, want) in [
        (
            vec!["diagnose", "--model", "no-such-model", "--data", data],
            "not a folder, a known alias",
        ),
        (
            vec!["diagnose", "--model", "qwen2.5-7b", "--data", data],
            "is not on this machine",
        ),
        (
            vec![
                "diagnose",
                "--model",
                "smollm2-135m-instruct",
                "--data",
                data,
                "--alphas",
                "x",
            ],
            "--alphas",
        ),
        (
            vec![
                "diagnose",
                "--model",
                "smollm2-135m-instruct",
                "--data",
                "/no/such.jsonl",
            ],
            "/no/such.jsonl",
        ),
    ] {
        let out = trainer(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(want), "{args:?}: {err}");
    }
}

/// `--data` with several files reads them as one dataset: the same file twice doubles the
/// examples and tokens and leaves the mean p as it is (a tiny random model); training takes
/// them alike and names them in its log.
#[test]
fn several_data_files_are_one_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    common::tiny_model(&model);
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
    let diagnose = |files: &[&str]| -> serde_json::Value {
        let mut args = vec!["diagnose", "--model", model, "--json", "--data"];
        args.extend_from_slice(files);
        let out = trainer(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (one, two) = (diagnose(&[data]), diagnose(&[data, data]));
    for key in ["examples", "tokens"] {
        assert_eq!(
            two[key].as_u64().unwrap(),
            2 * one[key].as_u64().unwrap(),
            "{key}"
        );
    }
    let (p1, p2) = (
        one["mean_prob"].as_f64().unwrap(),
        two["mean_prob"].as_f64().unwrap(),
    );
    // (f32 on the GPU, in batches padded to other lengths: equal to rounding)
    assert!((p1 - p2).abs() <= 1e-5 * p1, "{p1} vs {p2}");

    let out = tmp.path().join("run");
    let run = trainer(&[
        "--model",
        model,
        "--data",
        data,
        data,
        "--steps",
        "1",
        "--output",
        out.to_str().unwrap(),
    ]);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("tiny_sft.jsonl and 1 more files: "), "{log}");
    assert_eq!(common::metrics(&out).len(), 1);
}
