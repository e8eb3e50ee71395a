//! The `continuum` command: `gen` writes a domain's train/test JSONL; `run` drives `trainer`
//! over alpha on each domain and writes the results table and plot.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use continuum::gen::{self, Domain};

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("continuum: {e:#}");
            ExitCode::FAILURE
        }
    }
}
