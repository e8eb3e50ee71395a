//! `trainer eval` on SmolLM2-135M-Instruct (llama) and Qwen2.5-Coder-0.5B-Instruct (qwen2)
//! against HF transformers (float32; recorded by tests/scripts/make_eval_reference.py with its
//! own prompt rendering, greedy `generate` and answer rules): the same outputs, extracted
//! answers, grades and accuracy; and bad test files are one-line errors naming the file and
//! line.

mod common;

use common::{repo, trainer};
use serde_json::Value;

#[test]
fn smollm2_eval_matches_hf() {
    eval_matches_hf("smollm2-135m-instruct");
}

#[test]
fn qwen_eval_matches_hf() {
    eval_matches_hf("qwen2.5-coder-0.5b-instruct");
}

fn eval_matches_hf(model: &str) {
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(repo(&format!("tests/fixtures/hf/eval_{model}.json"))).unwrap(),
    )
    .unwrap();
    let report = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    let data = repo("tests/fixtures/data/tiny_eval.jsonl");
    let max_new = want["max_new_tokens"].to_string();
    let out = trainer(&[
        "eval",
        "--model",
        model,
        "--data",
        data.to_str().unwrap(),
        "--max-new-tokens",
        &max_new,
        "--report",
        report.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("accuracy "), "{stdout}");
    let got: Value =
        serde_json::from_str(&std::fs::read_to_string(report.path()).unwrap()).unwrap();
    for key in ["examples", "correct", "accuracy"] {
        assert_eq!(got[key], want[key], "{key}");
    }
    let (got, want) = (
        got["items"].as_array().unwrap(),
        want["items"].as_array().unwrap(),
    );
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let record = &w["record"];
        assert_eq!(&g["record"], record);
        for key in ["output", "reference", "predicted", "correct"] {
            assert_eq!(g[key], w[key], "record {record}: {key}");
        }
        assert_eq!(
            g["tokens"].as_u64().unwrap() as usize,
            w["generated"].as_array().unwrap().len(),
            "record {record}: tokens"
        );
    }
}

#[test]
fn bad_test_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let good = r#"{"prompt": "What is 1 + 1?", "answer": "2"}"#;
    let one = write("one.jsonl", &format!("{good}\n"));
    let cases = [
        (
            write("text.jsonl", &format!("{good}\n{{\"text\": \"hi\"}}\n")),
            vec![],
            "text.jsonl:2: eval needs a `prompt` or a `messages` field".to_string(),
        ),
        (
            write("noref.jsonl", "{\"prompt\": \"Hi\"}\n"),
            vec![],
            "noref.jsonl:1: no `answer` field and no response".to_string(),
        ),
        (
            write(
                "unstated.jsonl",
                "{\"prompt\": \"Hi\", \"response\": \"Hello!\\nHow are you?\"}\n",
            ),
            vec![],
            "unstated.jsonl:1: no `answer` field, and its response states no answer".to_string(),
        ),
        (
            write("badanswer.jsonl", "{\"prompt\": \"Hi\", \"answer\": [1]}\n"),
            vec![],
            "badanswer.jsonl:1: field `answer` must be a string or a number".to_string(),
        ),
        (
            write("long.jsonl", &format!("{good}\n")),
            vec!["--max-length", "5"],
            "long.jsonl:1: the prompt is".to_string(),
        ),
        (
            write("good.jsonl", &format!("{good}\n")),
            vec!["--max-new-tokens", "0"],
            "--max-new-tokens".to_string(),
        ),
        (
            one.clone(),
            vec![one.as_str()],
            "eval reads one test file; --data was given 2".to_string(),
        ),
    ];
    for (path, extra, want) in cases {
        let mut args = vec!["eval", "--model", "smollm2-135m-instruct", "--data", &path];
        args.extend(extra);
        let out = trainer(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(&want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
