//! The experiment driver behind `continuum run`: for each domain, generate the data, place it on
//! the continuum with `trainer diagnose`, evaluate the base model, then train and evaluate once
//! per alpha; the results go to OUT/results.{json,md,svg} after every domain.
//!
//! Layout under OUT: `data/<domain>_{train,test}.jsonl`, `<domain>/base/eval.json`,
//! `<domain>/alpha-<A>/` (the trainer's output, `final/` the checkpoint, `eval.json`).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::gen::{self, Domain, GenError};
use crate::report;

/// Everything `continuum run` takes.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The `trainer` executable.
    pub trainer: PathBuf,
    /// Base model: a folder, alias or HF repo id, passed through to the trainer.
    pub model: String,
    pub out: PathBuf,
    pub domains: Vec<Domain>,
    pub train: usize,
    pub test: usize,
    pub steps: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub max_new_tokens: usize,
    pub seed: u64,
    pub label_noise: f64,
    pub alphas: Vec<f64>,
    /// Keep each run's `final/` checkpoint after its evaluation (else it is deleted).
    pub keep_checkpoints: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad arguments: {0}")]
    Config(String),
    #[error(transparent)]
    Gen(#[from] GenError),
    #[error("could not start `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: String },
    #[error("`{command}`: {reason}")]
    Output { command: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// One evaluation report, as the trainer's `eval` wrote it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Eval {
    pub accuracy: f64,
    pub correct: u64,
    pub examples: u64,
    pub report: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlphaResult {
    pub alpha: f64,
    /// The trainer's --output folder (checkpoint in `final/`).
    pub output: PathBuf,
    pub eval: Eval,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DomainResult {
    pub domain: String,
    /// Mean probability the base model gives the training tokens (`trainer diagnose`).
    pub mean_prob: f64,
    /// The whole diagnosis object.
    pub diagnosis: Value,
    /// Train records given a wrong answer.
    pub noised: usize,
    pub base: Eval,
    pub alphas: Vec<AlphaResult>,
}

/// What results.json holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub model: String,
    pub train: usize,
    pub test: usize,
    pub steps: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub max_new_tokens: usize,
    pub seed: u64,
    pub label_noise: f64,
    pub alphas: Vec<f64>,
    pub domains: Vec<DomainResult>,
    /// Every command run, in order, as a shell would take it.
    pub commands: Vec<String>,
}

/// "10", "0.5": how an alpha is passed to the trainer and named in folders.
pub fn alpha_name(alpha: f64) -> String {
    format!("{alpha}")
}

impl RunConfig {
    pub fn validate(&self) -> Result<(), RunError> {
        let bad = |m: String| Err(RunError::Config(m));
        if self.domains.is_empty() {
            return bad("--domains is empty".into());
        }
        if self.domains.iter().collect::<HashSet<_>>().len() != self.domains.len() {
            return bad("--domains names a domain twice".into());
        }
        if self.alphas.is_empty() {
            return bad("--alphas is empty".into());
        }
        let mut seen = HashSet::new();
        for &a in &self.alphas {
            if !(a.is_finite() && a >= 0.0) {
                return bad(format!("alpha {a}: expected a number >= 0"));
            }
            if !seen.insert(alpha_name(a)) {
                return bad(format!("alpha {a} is listed twice"));
            }
        }
        if !(0.0..=1.0).contains(&self.label_noise) {
            return bad(format!(
                "--label-noise {}: expected a fraction in [0, 1]",
                self.label_noise
            ));
        }
        let noised = self
            .domains
            .iter()
            .any(|d| d.label_noise(self.label_noise) > 0.0);
        if self.label_noise > 0.0 && !noised {
            return bad(format!(
                "--label-noise {} applies to arithmetic's training answers, and --domains has \
                 no arithmetic",
                self.label_noise
            ));
        }
        if self.train == 0 || self.test == 0 || self.steps == 0 || self.batch_size == 0 {
            return bad("--train, --test, --steps and --batch-size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr {}: expected a positive number", self.lr));
        }
        Ok(())
    }
}

/// Quotes an argument the way a POSIX shell would need it.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_word(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a child with stderr passed through; stdout is captured when `capture` (and passed
/// through otherwise). Logs the command line in `log`.
fn run_child(mut cmd: Command, capture: bool, log: &mut Vec<String>) -> Result<String, RunError> {
    let line = command_line(&cmd);
    eprintln!("continuum: $ {line}");
    log.push(line.clone());
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    cmd.stdout(if capture {
        Stdio::piped()
    } else {
        Stdio::inherit()
    });
    let out = cmd.output().map_err(|source| RunError::Spawn {
        command: line.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(RunError::Failed {
            command: line,
            status: out.status.to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The diagnosis object in diagnose's stdout: the whole of it, or else its last JSON line.
fn parse_diagnosis(stdout: &str, command: &str) -> Result<(Value, f64), RunError> {
    let whole = serde_json::from_str::<Value>(stdout.trim()).ok();
    let value = whole
        .or_else(|| {
            stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        })
        .filter(Value::is_object)
        .ok_or_else(|| RunError::Output {
            command: command.to_string(),
            reason: "printed no JSON object on stdout".into(),
        })?;
    let p = value
        .get("mean_prob")
        .and_then(Value::as_f64)
        .ok_or_else(|| RunError::Output {
            command: command.to_string(),
            reason: "its JSON has no number \"mean_prob\"".into(),
        })?;
    Ok((value, p))
}

/// Reads an eval report: "accuracy" (or correct/examples when it is missing).
pub fn read_eval(path: &Path, command: &str) -> Result<Eval, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::Output {
        command: command.to_string(),
        reason: format!("no report at {}: {e}", path.display()),
    })?;
    let bad = |reason: String| RunError::Output {
        command: command.to_string(),
        reason: format!("{}: {reason}", path.display()),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let correct = v.get("correct").and_then(Value::as_u64);
    let examples = v.get("examples").and_then(Value::as_u64);
    let accuracy = match (v.get("accuracy").and_then(Value::as_f64), correct, examples) {
        (Some(a), _, _) => a,
        (None, Some(c), Some(n)) if n > 0 => c as f64 / n as f64,
        _ => {
            return Err(bad(
                "no \"accuracy\" (nor \"correct\" and \"examples\")".into()
            ))
        }
    };
    Ok(Eval {
        accuracy,
        correct: correct.unwrap_or(0),
        examples: examples.unwrap_or(0),
        report: path.to_path_buf(),
    })
}

fn eval(
    cfg: &RunConfig,
    domain: Domain,
    model: &str,
    test: &Path,
    dir: &Path,
    log: &mut Vec<String>,
) -> Result<Eval, RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let report = dir.join("eval.json");
    // A stale report must not pass for this run's.
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(&cfg.trainer);
    cmd.args(["eval", "--model", model, "--data"])
        .arg(test)
        .args([
            "--max-new-tokens",
            &domain.max_new_tokens(cfg.max_new_tokens).to_string(),
            "--report",
        ])
        .arg(&report);
    let line = command_line(&cmd);
    run_child(cmd, false, log)?;
    read_eval(&report, &line)
}

/// Runs the whole experiment; results.{json,md,svg} are rewritten after each domain, so a
/// failure part-way leaves the finished domains reported.
pub fn run(cfg: &RunConfig) -> Result<Results, RunError> {
    cfg.validate()?;
    let mut results = Results {
        model: cfg.model.clone(),
        train: cfg.train,
        test: cfg.test,
        steps: cfg.steps,
        lr: cfg.lr,
        batch_size: cfg.batch_size,
        max_new_tokens: cfg.max_new_tokens,
        seed: cfg.seed,
        label_noise: cfg.label_noise,
        alphas: cfg.alphas.clone(),
        domains: Vec::new(),
        commands: Vec::new(),
    };
    let data_dir = cfg.out.join("data");
    for &domain in &cfg.domains {
        let log = &mut results.commands;
        let split = gen::split(
            domain,
            cfg.train,
            cfg.test,
            cfg.seed,
            domain.label_noise(cfg.label_noise),
        )?;
        let (train, test) = domain.paths(&data_dir);
        gen::write_jsonl(&train, &split.train)?;
        gen::write_jsonl(&test, &split.test)?;
        eprintln!(
            "continuum: {domain}: {} train ({} noised), {} test records in {}",
            split.train.len(),
            split.noised.len(),
            split.test.len(),
            data_dir.display()
        );

        let mut cmd = Command::new(&cfg.trainer);
        cmd.args(["diagnose", "--model", &cfg.model, "--data"])
            .arg(&train)
            .arg("--json");
        let line = command_line(&cmd);
        let stdout = run_child(cmd, true, log)?;
        let (diagnosis, mean_prob) = parse_diagnosis(&stdout, &line)?;
        eprintln!("continuum: {domain}: mean p {mean_prob:.4}");

        let domain_dir = cfg.out.join(domain.name());
        let base = eval(
            cfg,
            domain,
            &cfg.model,
            &test,
            &domain_dir.join("base"),
            log,
        )?;

        let mut alphas = Vec::new();
        for &alpha in &cfg.alphas {
            let a = alpha_name(alpha);
            let output = domain_dir.join(format!("alpha-{a}"));
            let mut cmd = Command::new(&cfg.trainer);
            cmd.args(["--model", &cfg.model, "--data"])
                .arg(&train)
                .args(["--alpha", &a])
                .args(["--steps", &cfg.steps.to_string()])
                .args(["--lr", &cfg.lr.to_string()])
                .args(["--batch-size", &cfg.batch_size.to_string()])
                .args(["--seed", &cfg.seed.to_string()])
                .arg("--output")
                .arg(&output);
            let line = command_line(&cmd);
            run_child(cmd, false, log)?;
            let fin = output.join("final");
            if !fin.is_dir() {
                return Err(RunError::Output {
                    command: line,
                    reason: format!("finished but wrote no checkpoint at {}", fin.display()),
                });
            }
            let e = eval(cfg, domain, &fin.to_string_lossy(), &test, &output, log)?;
            eprintln!("continuum: {domain}: alpha {a}: accuracy {:.4}", e.accuracy);
            if !cfg.keep_checkpoints {
                std::fs::remove_dir_all(&fin).map_err(|source| RunError::Io {
                    path: fin.clone(),
                    source,
                })?;
            }
            alphas.push(AlphaResult {
                alpha,
                output,
                eval: e,
            });
        }
        results.domains.push(DomainResult {
            domain: domain.name().to_string(),
            mean_prob,
            diagnosis,
            noised: split.noised.len(),
            base,
            alphas,
        });
        report::write_all(&cfg.out, &results)?;
    }
    Ok(results)
}
