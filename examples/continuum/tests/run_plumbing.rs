//! PLUMBING TEST of the `continuum run` driver, with a fake trainer (a shell script that prints
//! canned JSON and writes canned reports): it checks the commands the driver issues, the files
//! it reads and writes, its table and plot and its errors. It trains nothing and needs no GPU
//! and no model; it says nothing about the objectives themselves.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use continuum::run::Results;

/// Logs its arguments to $FAKE_LOG; `diagnose` prints mean p 0.8 for arithmetic data and 0.02
/// otherwise; training makes OUTPUT/final; `eval` writes a report whose accuracy depends on
/// the model path (base 0, alpha 0 -> 0.25, 1 -> 0.5, 10 -> 0.75). $FAKE_FAIL names a
/// subcommand (diagnose, train, eval) that exits 7 instead.
const FAKE: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE_LOG"
cmd=train
case "$1" in diagnose|eval) cmd=$1; shift;; esac
if [ "$cmd" = "$FAKE_FAIL" ]; then echo "fake trainer: $cmd refuses" >&2; exit 7; fi
model=; data=; output=; report=
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift;;
    --data) data=$2; shift;;
    --output) output=$2; shift;;
    --report) report=$2; shift;;
  esac
  shift
done
[ -s "$data" ] || { echo "fake trainer: no data at $data" >&2; exit 3; }
case $cmd in
  diagnose)
    case "$data" in *arithmetic*) p=0.8;; *) p=0.02;; esac
    echo "{\"tokens\": 10, \"mean_prob\": $p, \"nll\": 1.5}";;
  train)
    echo "fake trainer: training into $output" >&2
    mkdir -p "$output/final";;
  eval)
    case "$model" in
      */alpha-10/final) a=0.75; c=3;;
      */alpha-1/final) a=0.5; c=2;;
      */alpha-0/final) a=0.25; c=1;;
      *) a=0; c=0;;
    esac
    printf '{"accuracy": %s, "correct": %s, "examples": 4, "items": []}\n' $a $c > "$report";;
esac
"#;

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trainer");
        fs::write(&path, FAKE).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        Fake { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn run(&self, extra: &[&str], fail: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_continuum"))
            .arg("run")
            .arg("--trainer")
            .arg(self.dir.path().join("trainer"))
            .args(["--model", "tiny-model", "--out"])
            .arg(self.out())
            .args(["--train", "12", "--test", "4", "--steps", "3"])
            .args(extra)
            .env("FAKE_LOG", self.dir.path().join("log"))
            .env("FAKE_FAIL", fail)
            .output()
            .unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn plumbing_run_issues_the_commands_and_writes_table_and_plot() {
    let fake = Fake::new();
    let o = fake.run(
        &[
            "--domains",
            "arithmetic,sudoku",
            "--lr",
            "1e-5",
            "--seed",
            "5",
            "--label-noise",
            "0.25",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The children's stderr comes through.
    assert!(
        stderr(&o).contains("fake trainer: training into"),
        "{}",
        stderr(&o)
    );

    let log = fake.log();
    let lines: Vec<&str> = log.lines().collect();
    // Per domain: diagnose, base eval, then train + eval for each of 3 alphas.
    assert_eq!(lines.len(), 2 * (2 + 2 * 3), "{log}");
    assert!(
        lines[0].starts_with("diagnose --model tiny-model --data "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with("data/arithmetic_train.jsonl --json"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("eval --model tiny-model --data "),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("arithmetic_test.jsonl --max-new-tokens 256 --report "));
    assert!(
        lines[1].ends_with("arithmetic/base/eval.json"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("--model tiny-model --data "),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains(" --alpha 0 --steps 3 --lr 0.00001 --batch-size 16 --seed 5 --output "),
        "{}",
        lines[2]
    );
    assert!(lines[2].ends_with("arithmetic/alpha-0"), "{}", lines[2]);
    assert!(
        lines[3].contains("arithmetic/alpha-0/final --data "),
        "{}",
        lines[3]
    );
    assert!(lines[6].contains(" --alpha 10 "), "{}", lines[6]);
    assert!(lines[8].starts_with("diagnose ") && lines[8].contains("sudoku_train.jsonl"));
    // The puzzles' evaluations stop at 16 new tokens (their answers are shorter).
    assert!(
        lines[9].contains("sudoku_test.jsonl --max-new-tokens 16 --report "),
        "{}",
        lines[9]
    );

    let out = fake.out();
    let r: Results = serde_json::from_str(&read(&out.join("results.json"))).unwrap();
    assert_eq!(r.commands.len(), lines.len());
    assert_eq!(r.alphas, vec![0.0, 1.0, 10.0]);
    assert_eq!(r.domains.len(), 2);
    assert_eq!(r.domains[0].domain, "arithmetic");
    assert_eq!(r.domains[0].mean_prob, 0.8);
    assert_eq!(r.domains[0].diagnosis["nll"], 1.5);
    assert_eq!(r.domains[1].mean_prob, 0.02);
    // Label noise on the model-strong domain's train split only: 3 of its 12 records.
    assert_eq!((r.domains[0].noised, r.domains[1].noised), (3, 0));
    let accs: Vec<f64> = r.domains[1]
        .alphas
        .iter()
        .map(|a| a.eval.accuracy)
        .collect();
    assert_eq!(accs, vec![0.25, 0.5, 0.75]);

    let md = read(&out.join("results.md"));
    assert!(
        md.contains("| domain | mean p | base acc | acc alpha=0 | acc alpha=1 | acc alpha=10 |"),
        "{md}"
    );
    assert!(
        md.contains(
            "| arithmetic | 0.800 | 0.000 (0/4) | 0.250 (1/4) | 0.500 (2/4) | 0.750 (3/4) |"
        ),
        "{md}"
    );
    assert!(md.contains("| sudoku | 0.020 |"), "{md}");
    assert!(md.contains("diagnose --model tiny-model"), "{md}");
    // stdout is the table too.
    assert_eq!(String::from_utf8_lossy(&o.stdout), md);

    let svg = read(&out.join("results.svg"));
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert_eq!(svg.matches("<circle").count(), 6);
    assert!(svg.contains(">arithmetic (mean p 0.800)</text>"), "{svg}");
    assert!(svg.contains(">sudoku (mean p 0.020)</text>"), "{svg}");
    // Every tag opened is closed or self-closing.
    let opened = svg.matches("<text").count() + 1;
    assert_eq!(svg.matches("</text>").count() + 1, opened);

    // The data the trainer read is what `gen` writes for the same arguments.
    let gen_dir = fake.dir.path().join("gen");
    let g = Command::new(env!("CARGO_BIN_EXE_continuum"))
        .args([
            "gen", "--domain", "sudoku", "--train", "12", "--test", "4", "--seed", "5", "--out",
        ])
        .arg(&gen_dir)
        .output()
        .unwrap();
    assert!(g.status.success());
    assert_eq!(
        read(&gen_dir.join("sudoku_train.jsonl")),
        read(&out.join("data/sudoku_train.jsonl"))
    );
}

#[test]
fn plumbing_a_failing_trainer_command_is_named_in_the_error() {
    for (fail, expect) in [
        ("eval", "eval --model tiny-model"),
        ("train", " --alpha 0 "),
    ] {
        let fake = Fake::new();
        let o = fake.run(&["--domains", "figlet", "--alphas", "0"], fail);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains(&format!("fake trainer: {fail} refuses")), "{e}");
        let last = e.lines().last().unwrap();
        assert!(last.starts_with("continuum: `"), "{last}");
        assert!(
            last.contains(expect) && last.contains("failed (exit status: 7)"),
            "{last}"
        );
    }
}

#[test]
fn plumbing_bad_arguments_are_refused_before_any_command_runs() {
    for (args, expect) in [
        (&["--alphas", "0,-1"][..], "alpha -1"),
        (&["--alphas", "1,1.0"][..], "listed twice"),
        (&["--domains", "chess"][..], "unknown domain"),
        (&["--domains", "sudoku,sudoku"][..], "twice"),
        (&["--label-noise", "1.5"][..], "label-noise"),
        (
            &["--label-noise", "0.2", "--domains", "figlet,sudoku"][..],
            "no arithmetic",
        ),
        (&["--lr", "0"][..], "--lr"),
    ] {
        let fake = Fake::new();
        let o = fake.run(args, "");
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(stderr(&o).contains(expect), "{args:?}: {}", stderr(&o));
        assert_eq!(fake.log(), "", "{args:?} ran the trainer");
    }
}

#[test]
fn plumbing_a_diagnose_without_mean_prob_is_an_error() {
    let fake = Fake::new();
    let script = fake.dir.path().join("trainer");
    let text = read(&script).replace("\\\"mean_prob\\\"", "\\\"mean\\\"");
    fs::write(&script, text).unwrap();
    let o = fake.run(&["--domains", "arithmetic"], "");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no number \"mean_prob\""),
        "{}",
        stderr(&o)
    );
}
