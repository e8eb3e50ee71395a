//! Reliability, through the `trainer` binary on a tiny model: every bad input file is one
//! `error:` line naming the file (and line, row or tensor) with a non-zero exit and no panic;
//! non-finite steps are skipped and stop a run that keeps failing, with the last good state
//! saved; a run killed mid-save leaves only whole checkpoints and resumes; Ctrl-C saves the
//! state after the step in flight and exits 130, and the run resumes; an operand over the
//! GPU's binding limit is a clear error saying what to reduce. (The library-level checks of
//! the same files are in models/tests/{weights,config}.rs and trainer/tests/data.rs.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{metrics, repo, tiny_model, trainer_env};

/// A tiny model in a temporary folder, and a JSONL data file beside it.
struct Setup {
    tmp: tempfile::TempDir,
    model: PathBuf,
    data: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("tiny");
        tiny_model(&model);
        let data = tmp.path().join("data.jsonl");
        std::fs::copy(repo("tests/fixtures/data/tiny_sft.jsonl"), &data).unwrap();
        Setup { tmp, model, data }
    }

    fn out(&self) -> PathBuf {
        self.tmp.path().join("run")
    }

    /// `trainer --model tiny --data DATA --output run` + `args`, for two steps by default
    /// (`args` may name another output).
    fn run_with(&self, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.out();
        let mut all = vec![
            "--model",
            self.model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ];
        if !args.contains(&"--output") {
            all.extend(["--output", out.to_str().unwrap()]);
        }
        if !args.contains(&"--steps") {
            all.extend(["--steps", "2", "--batch-size", "2"]);
        }
        all.extend_from_slice(args);
        trainer_env(&all, env)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&self.data, args, &[])
    }

    /// Arguments of a longer run into `run`: `steps` steps of two sequences at lr 1e-3, then
    /// `extra`.
    fn long_run(&self, steps: usize, extra: &[&str]) -> Vec<String> {
        let fixed = [
            "--model",
            self.model.to_str().unwrap(),
            "--data",
            self.data.to_str().unwrap(),
            "--output",
            self.out().to_str().unwrap(),
            "--steps",
            &steps.to_string(),
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
        ]
        .map(String::from);
        fixed
            .into_iter()
            .chain(extra.iter().map(|x| x.to_string()))
            .collect()
    }

    /// `trainer args` started in the background (stdout dropped, stderr as given).
    fn spawn(args: &[String], stderr: std::process::Stdio) -> std::process::Child {
        common::trainer_command()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Resume the `steps`-step run (`extra` as it had) from `ckpt` into the same folder: it
    /// completes, and metrics.jsonl has every step once.
    fn resume_to_the_end(&self, ckpt: &Path, steps: usize, extra: &[&str]) {
        let mut with = extra.to_vec();
        with.extend(["--resume", ckpt.to_str().unwrap()]);
        let args = self.long_run(steps, &with);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = trainer_env(&refs, &[]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let done: Vec<u64> = metrics(&self.out())
            .iter()
            .map(|l| l["step"].as_u64().unwrap())
            .collect();
        assert_eq!(done, (1..=steps as u64).collect::<Vec<u64>>());
    }

    fn weights(&self) -> PathBuf {
        self.model.join("model.safetensors")
    }
}

/// The run failed with exactly one stderr line, `error: ...`, holding every one of `want`.
#[track_caller]
fn assert_one_error(out: &Output, want: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for w in want {
        assert!(lines[0].contains(w), "expected {w:?} in: {err}");
    }
    lines[0].to_string()
}

/// Rewrite the header of the safetensors file at `path` with `edit` (data bytes kept).
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

const NORM: &str = "model.norm.weight";

// ---- bad model files ----

#[test]
fn truncated_safetensors() {
    let s = Setup::new();
    let bytes = std::fs::read(s.weights()).unwrap();
    std::fs::write(s.weights(), &bytes[..bytes.len() - 1000]).unwrap();
    assert_one_error(
        &s.run(&[]),
        &[
            "model.safetensors: not a valid safetensors file",
            "lie outside the data",
        ],
    );
}

#[test]
fn safetensors_header_length_beyond_the_file() {
    let s = Setup::new();
    let mut bytes = std::fs::read(s.weights()).unwrap();
    let len = bytes.len() as u64;
    bytes[..8].copy_from_slice(&len.to_le_bytes());
    std::fs::write(s.weights(), &bytes).unwrap();
    assert_one_error(
        &s.run(&[]),
        &["model.safetensors", "the header length field says"],
    );
}

#[test]
fn safetensors_offsets_outside_the_data() {
    let s = Setup::new();
    edit_header(&s.weights(), |h| {
        let end = h[NORM]["data_offsets"][1].as_u64().unwrap();
        h[NORM]["data_offsets"] = serde_json::json!([end + (1 << 30), end + (1 << 30) + 256]);
    });
    assert_one_error(
        &s.run(&[]),
        &[
            "model.safetensors",
            "tensor `model.norm.weight`: data_offsets",
            "outside the data",
        ],
    );
}

#[test]
fn safetensors_dtype_disagrees_with_the_bytes() {
    let s = Setup::new();
    edit_header(&s.weights(), |h| h[NORM]["dtype"] = "BF16".into());
    assert_one_error(
        &s.run(&[]),
        &[
            "model.safetensors",
            "tensor `model.norm.weight`: shape [64] of BF16 does not fit the 256 bytes",
        ],
    );
}

#[test]
fn safetensors_shape_disagrees_with_the_model() {
    let s = Setup::new();
    // Same bytes, another shape: the file is consistent, the model's check catches it.
    edit_header(&s.weights(), |h| {
        h[NORM]["shape"] = serde_json::json!([8, 8])
    });
    assert_one_error(
        &s.run(&[]),
        &[
            "model.safetensors",
            "`model.norm.weight` has shape [8, 8], expected [64]",
        ],
    );
}

#[test]
fn config_with_a_missing_field() {
    let s = Setup::new();
    let path = s.model.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(&path, c.to_string()).unwrap();
    assert_one_error(&s.run(&[]), &["config.json: field `hidden_size`: missing"]);
}

#[test]
fn config_with_absurd_fields() {
    let s = Setup::new();
    let path = s.model.join("config.json");
    let original = std::fs::read_to_string(&path).unwrap();
    for (field, value, want) in [
        (
            "vocab_size",
            "1000000000000",
            "`vocab_size`: 1000000000000 is implausibly large",
        ),
        (
            "num_attention_heads",
            "0",
            "`num_attention_heads`: must be positive",
        ),
        ("rms_norm_eps", "-1.0", "`rms_norm_eps`"),
        // Plausible alone, but the weights disagree: the missing layer is named.
        ("num_hidden_layers", "3", "tensor `model.layers.2."),
    ] {
        let mut c: serde_json::Value = serde_json::from_str(&original).unwrap();
        c[field] = serde_json::from_str(value).unwrap();
        std::fs::write(&path, c.to_string()).unwrap();
        let line = assert_one_error(&s.run(&[]), &[want]);
        assert!(
            line.contains("config.json") || line.contains("model.safetensors"),
            "{line}"
        );
    }
}

#[test]
fn tokenizer_json_that_does_not_parse() {
    let s = Setup::new();
    std::fs::write(
        s.model.join("tokenizer.json"),
        b"{\"version\": \"1.0\", \"model\": 3",
    )
    .unwrap();
    assert_one_error(&s.run(&[]), &["tokenizer.json: does not parse"]);
}

// ---- bad data files ----

fn data_file(s: &Setup, name: &str, bytes: &[u8]) -> PathBuf {
    let path = s.tmp.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn dataset_line_that_is_not_json() {
    let s = Setup::new();
    let good = std::fs::read_to_string(&s.data).unwrap();
    let data = data_file(
        &s,
        "bad.jsonl",
        format!("{good}{{\"prompt\": \"a\",\n").as_bytes(),
    );
    assert_one_error(
        &s.run_with(&data, &[], &[]),
        &["bad.jsonl:5: not valid JSON"],
    );
}

#[test]
fn dataset_line_that_is_not_utf8() {
    let s = Setup::new();
    let data = data_file(
        &s,
        "bad.jsonl",
        b"{\"text\": \"fine\"}\n\n{\"text\": \"\xff\xfe\"}\n",
    );
    assert_one_error(
        &s.run_with(&data, &[], &[]),
        &["bad.jsonl:3: not UTF-8 text"],
    );
}

#[test]
fn dataset_line_that_lacks_its_fields() {
    let s = Setup::new();
    for (line, want) in [
        (
            r#"{"prompt": "Hi"}"#,
            "bad.jsonl:2: missing field `response`",
        ),
        (
            r#"{"question": "Hi"}"#,
            "bad.jsonl:2: no `messages`, `prompt` or `text` field",
        ),
        (
            r#"{"text": 7}"#,
            "bad.jsonl:2: field `text` must be a string, found a number",
        ),
    ] {
        let data = data_file(
            &s,
            "bad.jsonl",
            format!("{{\"text\": \"ok\"}}\n{line}\n").as_bytes(),
        );
        assert_one_error(&s.run_with(&data, &[], &[]), &[want]);
    }
}

#[test]
fn parquet_with_the_wrong_columns() {
    let s = Setup::new();
    let data = repo("tests/fixtures/data/wrong_columns.parquet");
    assert_one_error(
        &s.run_with(&data, &[], &[]),
        &["wrong_columns.parquet: row 1: no `messages`, `prompt` or `text` field"],
    );
}

#[test]
fn parquet_file_that_is_cut_short() {
    let s = Setup::new();
    let bytes = std::fs::read(repo("tests/fixtures/data/tiny_sft.parquet")).unwrap();
    let data = data_file(&s, "cut.parquet", &bytes[..bytes.len() / 2]);
    assert_one_error(
        &s.run_with(&data, &[], &[]),
        &["cut.parquet: not a readable Parquet file"],
    );
}

#[test]
fn empty_dataset() {
    let s = Setup::new();
    let data = data_file(&s, "empty.jsonl", b"\n  \n");
    assert_one_error(&s.run_with(&data, &[], &[]), &["empty.jsonl: no records"]);
}

#[test]
fn sample_longer_than_the_maximum_length() {
    let s = Setup::new();
    let long = format!("{{\"text\": \"{}\"}}\n", "many words ".repeat(40));
    let data = data_file(
        &s,
        "long.jsonl",
        format!("{{\"text\": \"short\"}}\n{long}").as_bytes(),
    );
    assert_one_error(
        &s.run_with(&data, &["--max-length", "32", "--truncation", "error"], &[]),
        &["long.jsonl:2: ", "tokens, longer than --max-length 32"],
    );
    // By default it is cut, and the cut is reported.
    let ok = s.run_with(&data, &["--max-length", "32", "--steps", "1"], &[]);
    let err = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{err}");
    assert!(err.contains("(1 truncated to --max-length 32"), "{err}");
}

#[test]
fn data_file_that_does_not_exist() {
    let s = Setup::new();
    let data = s.tmp.path().join("nowhere.jsonl");
    let line = assert_one_error(
        &s.run_with(&data, &[], &[]),
        &["nowhere.jsonl: No such file"],
    );
    assert_eq!(line.matches("No such file").count(), 1, "{line}");
}

// ---- numerics ----

/// The tensors of a safetensors file, by name, as raw bytes.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = models::weights::parse_header(&bytes, path).unwrap();
    h.tensors
        .into_iter()
        .map(|(name, t)| {
            let (a, b) = t.data_offsets;
            (name, bytes[h.data_start + a..h.data_start + b].to_vec())
        })
        .collect()
}

/// Training arguments whose first step (lr 1e30, no warmup) sends the weights to ~1e30, so
/// every later step's loss is infinite or NaN.
const EXPLODE: &[&str] = &[
    "--lr",
    "1e30",
    "--warmup-ratio",
    "0",
    "--batch-size",
    "2",
    "--alpha",
    "0",
];

#[test]
fn non_finite_steps_are_skipped_and_change_nothing() {
    let s = Setup::new();
    let mut args = EXPLODE.to_vec();
    args.extend(["--steps", "4", "--save-every", "1", "--max-bad-steps", "10"]);
    let run = s.run(&args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let m = metrics(&s.out());
    assert_eq!(m.len(), 4, "{m:?}");
    assert!(m[0]["loss"].as_f64().unwrap().is_finite() && m[0].get("skipped").is_none());
    for (i, line) in m.iter().enumerate().skip(1) {
        assert_eq!(line["step"], i + 1);
        assert_eq!(line["skipped"], true, "step {}: {line}", i + 1);
    }
    assert_eq!(err.matches("warning: step").count(), 3, "{err}");
    // The weights and the AdamW moments at the end are those after step 1, bit for bit.
    let out = s.out();
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let (after_1, last) = (
            tensors(&out.join("checkpoint-1").join(file)),
            tensors(&out.join("final").join(file)),
        );
        assert!(!after_1.is_empty());
        assert!(after_1 == last, "{file} changed after step 1");
    }
}

#[test]
fn repeated_non_finite_steps_stop_the_run_with_the_last_good_state_saved() {
    let s = Setup::new();
    let mut args = EXPLODE.to_vec();
    args.extend(["--steps", "6", "--max-bad-steps", "2"]);
    let ckpt = s.out().join("checkpoint-1");
    let line = assert_one_error_after_warnings(
        &s.run(&args),
        &[
            "steps 2-3 had a NaN or infinite loss or gradient norm",
            "--max-bad-steps 2",
            &format!("saved the state after step 1 to {}", ckpt.display()),
        ],
    );
    assert!(!line.contains("final"), "{line}");
    assert!(!s.out().join("final").exists());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 1);
    // It is the state after step 1: equal to the checkpoint a --save-every run writes there.
    let other = s.tmp.path().join("other");
    let mut every = args.clone();
    every.extend(["--save-every", "1", "--output", other.to_str().unwrap()]);
    let _ = s.run(&every);
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let (a, b) = (
            tensors(&ckpt.join(file)),
            tensors(&other.join("checkpoint-1").join(file)),
        );
        assert!(!a.is_empty() && a == b, "{file} differs");
    }
    // Resumed, it fails the same way (the weights of step 1 are finite but huge), says that
    // nothing succeeded since, and metrics.jsonl keeps step 1.
    let mut again = args.clone();
    again.extend(["--resume", ckpt.to_str().unwrap()]);
    assert_one_error_after_warnings(
        &s.run(&again),
        &[
            "steps 2-3 had a NaN",
            &format!("no step succeeded since {}", ckpt.display()),
        ],
    );
    let m = metrics(&s.out());
    let steps: Vec<u64> = m.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 2, 3], "{m:?}");
    assert!(
        m[0].get("skipped").is_none() && m[1]["skipped"] == true,
        "{m:?}"
    );
}

/// Like [`assert_one_error`], with the data summary, the state line, progress and `warning:`
/// lines allowed before the error.
#[track_caller]
fn assert_one_error_after_warnings(out: &Output, want: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let rest: Vec<&str> = err
        .lines()
        .filter(|l| {
            !(l.starts_with("warning: ")
                || l.starts_with("step ")
                || l.contains(" examples, ")
                || l.contains(" GiB on the GPU before activations")
                || l.starts_with("padding: "))
        })
        .collect();
    let filtered = Output {
        status: out.status,
        stdout: Vec::new(),
        stderr: rest.join("\n").into_bytes(),
    };
    assert_one_error(&filtered, want)
}

// ---- GPU limits ----

#[test]
fn operand_over_the_binding_limit_says_what_to_reduce() {
    let s = Setup::new();
    // 2 MiB bindings: the vocabulary matrix is split into 7 chunks and trains; a
    // micro-batch of about 4,500 tokens makes a (4500, 128) f32 q/k/v product of 2.2 MiB,
    // refused (the MLP would take its tokens in parts).
    let cap = [("TRAINER_MAX_BINDING_BYTES", "2097152")];
    let long = format!("{{\"text\": \"{}\"}}\n", "one two three ".repeat(1500));
    let data = data_file(&s, "long.jsonl", long.as_bytes());
    let args = ["--steps", "1", "--batch-size", "1", "--max-length", "8192"];
    let line = assert_one_error_after_warnings(
        &s.run_with(&data, &args, &cap),
        &[
            "exceeds this adapter's largest storage binding (2097152 bytes)",
            "lower --batch-tokens",
        ],
    );
    assert!(line.contains("--max-length"), "{line}");
    // Doing what it says works.
    let args = ["--steps", "1", "--batch-size", "1", "--max-length", "1000"];
    let ok = s.run_with(&data, &args, &cap);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A weight over the limit is refused when the model loads, by name.
    let tiny_cap = [("TRAINER_MAX_BINDING_BYTES", "16384")];
    assert_one_error(
        &s.run_with(&s.data, &[], &tiny_cap),
        &["tensor `model.layers.0.", "largest binding (16384 bytes)"],
    );
}

// ---- faults ----

#[test]
fn killed_mid_run_leaves_whole_checkpoints_and_resumes() {
    let s = Setup::new();
    let out = s.out();
    let save_every = ["--save-every", "1"];
    let mut child = Setup::spawn(&s.long_run(6, &save_every), std::process::Stdio::null());
    let started = std::time::Instant::now();
    while !out.join("checkpoint-1").exists() {
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint-1 after 2 minutes"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A moment within the next few steps (which write a checkpoint each), chosen anew each
    // run and printed, so that over runs the kill lands in steps and in saves alike.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let delay = std::time::Duration::from_millis(nanos as u64 % 1000);
    eprintln!("killing {delay:?} after checkpoint-1 appeared");
    std::thread::sleep(delay);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Every checkpoint folder on disk is whole: config, weights and optimizer state load,
    // and the state names its own step.
    let dev = common::device();
    let mut latest = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(step) = name.strip_prefix("checkpoint-") else {
            assert!(name != "final", "the run was killed before its end");
            continue;
        };
        let step: usize = step.parse().unwrap();
        let dir = out.join(&name);
        let config = models::Config::from_file(&dir.join("config.json")).unwrap();
        let weights = models::Weights::from_dir(&dev, &dir).unwrap();
        models::Model::new(&config, &weights, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !tensors(&dir.join("optimizer.safetensors")).is_empty(),
            "{name}"
        );
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("trainer_state.json")).unwrap())
                .unwrap();
        assert_eq!(state["step"], step, "{name}");
        latest = latest.max(step);
        found.push(step);
    }
    eprintln!("whole checkpoints after the kill: {found:?}");
    assert!(latest >= 1);

    // Resuming from the latest into the same folder completes (every step once in
    // metrics.jsonl), and leftovers of an interrupted save are gone.
    s.resume_to_the_end(&out.join(format!("checkpoint-{latest}")), 6, &save_every);
    models::Weights::from_dir(&dev, &out.join("final")).unwrap();
    let hidden: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn ctrl_c_saves_the_state_after_the_step_in_flight_and_resumes() {
    let s = Setup::new();
    let out = s.out();
    let child = Setup::spawn(&s.long_run(40, &[]), std::process::Stdio::piped());
    let metrics_file = out.join("metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics_file).map_or(true, |t| t.lines().count() < 1) {
        assert!(started.elapsed().as_secs() < 120, "no step after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    // The step in flight finished, its state is saved, and the message says how to go on.
    let steps = metrics(&out).len();
    assert!((1..40).contains(&steps), "{err}");
    let ckpt = out.join(format!("checkpoint-{steps}"));
    assert!(
        err.contains("interrupted after step")
            && err.contains(&format!("--resume {}", ckpt.display())),
        "{err}"
    );
    assert!(!out.join("final").exists());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], steps);
    // Resuming completes the run, every step in metrics.jsonl once.
    s.resume_to_the_end(&ckpt, 40, &[]);
}

#[test]
fn resume_from_optimizer_state_of_another_model_is_an_error() {
    // Optimizer state is saved under HF tensor names (whatever this device stacked or
    // chunked); a name the model has no tensor of means the state is another model's, and is
    // refused by name rather than resumed with fresh moments for the model's tensors.
    let s = Setup::new();
    let ok = s.run(&["--save-every", "1"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ckpt = s.out().join("checkpoint-1");
    let state_file = ckpt.join("trainer_state.json");
    let text = std::fs::read_to_string(&state_file).unwrap();
    // HF names, not the stacked parameters'.
    assert!(
        text.contains("self_attn.k_proj.weight") && !text.contains("qkv_proj"),
        "{text}"
    );
    // Resume (two steps, as the run) with `from` replaced by `to` in the state file.
    let resume_with = |from: &str, to: &str| {
        assert!(text.contains(from), "{text}");
        std::fs::write(&state_file, text.replace(from, to)).unwrap();
        s.run(&["--resume", ckpt.to_str().unwrap()])
    };
    let line = assert_one_error_after_warnings(
        &resume_with(
            "layers.0.self_attn.k_proj.weight",
            "layers.0.self_attn.kk_proj.weight",
        ),
        &[
            "trainer_state.json",
            "self_attn.kk_proj.weight",
            "does not have",
        ],
    );
    assert!(line.contains("checkpoint-1"), "{line}");
    // A step count that is not a whole number is refused too (not resumed with fresh
    // moments).
    assert_one_error_after_warnings(
        &resume_with("\"model.norm.weight\":1", "\"model.norm.weight\":\"one\""),
        &[
            "trainer_state.json",
            "model.norm.weight",
            "not a whole number",
        ],
    );
}

#[test]
fn parquet_file_that_crashes_the_reader() {
    // A mutation of tiny_sft.parquet on which the parquet crate panics (an index past a
    // buffer in its decoder): contained, and reported as the file's error.
    let s = Setup::new();
    let data = repo("tests/fixtures/data/corrupt.parquet");
    assert_one_error(
        &s.run_with(&data, &[], &[]),
        &["corrupt.parquet: not a readable Parquet file: the reader failed on corrupt data"],
    );
}
