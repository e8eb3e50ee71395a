//! The `continuum` command: `gen` writes a domain's train/test JSONL; `run` drives `trainer`
//! over alpha on each domain and writes the results table and plot.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use continuum::gen::{self, Domain};
use continuum::run::{run, RunConfig};

#[derive(Parser)]
#[command(
    name = "continuum",
    version,
    about = "Data and driver for the model-capability continuum experiment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write OUT/<domain>_train.jsonl and OUT/<domain>_test.jsonl ({"prompt", "response",
    /// "answer"} per line), the same bytes for the same arguments.
    Gen(GenArgs),
    /// For each domain: generate the data, `trainer diagnose` it, evaluate the base model, then
    /// train and evaluate once per alpha; writes OUT/results.{json,md,svg}.
    Run(Box<RunArgs>),
}

#[derive(Args)]
struct RunArgs {
    /// The `trainer` executable.
    #[arg(long)]
    trainer: PathBuf,
    /// Base model (folder, alias or HF repo id), passed through to the trainer.
    #[arg(long)]
    model: String,
    /// Output folder (data/, one folder per domain, results.*).
    #[arg(long)]
    out: PathBuf,
    /// Domains to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "arithmetic,figlet,sudoku"
    )]
    domains: Vec<Domain>,
    /// Training records per domain.
    #[arg(long, default_value_t = 1000)]
    train: usize,
    /// Test records per domain.
    #[arg(long, default_value_t = 200)]
    test: usize,
    /// Optimizer steps per training run.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Peak learning rate (the paper's scripts use 5e-5 for math and FIGlet alike).
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    /// Sequences per optimizer step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Longest generation at evaluation.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Seed of the data and of the trainer's data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of the model-strong domain's (arithmetic's) train records given a wrong
    /// answer: the case the paper's mechanism names (prior-leaning objectives discount the
    /// improbable wrong labels). The weak domains train on clean labels.
    #[arg(long, default_value_t = 0.0)]
    label_noise: f64,
    /// Objectives, as alpha values (0 = NLL, 1 = -p, 10 = -p^10).
    #[arg(long, value_delimiter = ',', default_value = "0,1,10")]
    alphas: Vec<f64>,
    /// Keep each run's final checkpoint (weights + optimizer state: 3x the model) after its
    /// evaluation; by default it is deleted once evaluated.
    #[arg(long)]
    keep_checkpoints: bool,
}

fn run_command(a: &RunArgs) -> Result<()> {
    let cfg = RunConfig {
        trainer: a.trainer.clone(),
        model: a.model.clone(),
        out: a.out.clone(),
        domains: a.domains.clone(),
        train: a.train,
        test: a.test,
        steps: a.steps,
        lr: a.lr,
        batch_size: a.batch_size,
        max_new_tokens: a.max_new_tokens,
        seed: a.seed,
        label_noise: a.label_noise,
        alphas: a.alphas.clone(),
        keep_checkpoints: a.keep_checkpoints,
    };
    run(&cfg)?;
    eprintln!(
        "continuum: wrote {}",
        ["results.json", "results.md", "results.svg"]
            .map(|f| a.out.join(f).display().to_string())
            .join(", ")
    );
    print!("{}", std::fs::read_to_string(a.out.join("results.md"))?);
    Ok(())
}

#[derive(Args)]
struct GenArgs {
    /// arithmetic (model-strong), figlet or sudoku (model-weak).
    #[arg(long)]
    domain: Domain,
    /// Training records.
    #[arg(long)]
    train: usize,
    /// Test records (no prompt in common with train).
    #[arg(long)]
    test: usize,
    /// Seed of everything drawn (SplitMix64).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Fraction of the train records (chosen by seed) given a wrong answer; test is never noised.
    #[arg(long, default_value_t = 0.0)]
    label_noise: f64,
}

fn gen_command(a: &GenArgs) -> Result<()> {
    let split = gen::split(a.domain, a.train, a.test, a.seed, a.label_noise)?;
    let (train, test) = a.domain.paths(&a.out);
    gen::write_jsonl(&train, &split.train)?;
    gen::write_jsonl(&test, &split.test)?;
    eprintln!(
        "{}: {} train ({} noised) -> {}, {} test -> {}",
        a.domain,
        split.train.len(),
        split.noised.len(),
        train.display(),
        split.test.len(),
        test.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Gen(a) => gen_command(a),
        Command::Run(a) => run_command(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("continuum: {e:#}");
            ExitCode::FAILURE
        }
    }
}
