//! Deterministic data for the continuum experiment: one domain the base model is strong on
//! (arithmetic word problems) and two it is weak on (FIGlet words, 4x4 sudoku), as
//! prompt/response/answer JSONL the trainer reads.
//!
//! Everything comes from [`Rng`] (SplitMix64) seeded by `--seed`, one stream per purpose, so the
//! same arguments give byte-identical files. Train and test are drawn together as distinct
//! prompts and cut in two, so they share no prompt. Label noise touches the train split only.

pub mod art;
pub mod grid;
pub mod problems;
pub mod words;

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// One JSONL line: the prompt (a user turn), the response (the loss is on it) and the final
/// answer as a string (what an evaluator compares against).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub prompt: String,
    pub response: String,
    pub answer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{domain}: asked for {asked} distinct prompts but only {found} exist (lower --train/--test)")]
    TooFew {
        domain: Domain,
        asked: usize,
        found: usize,
    },
    #[error("--label-noise {0}: expected a fraction in [0, 1]")]
    Noise(f64),
    #[error("unknown domain {0:?}: expected arithmetic, figlet or sudoku")]
    UnknownDomain(String),
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    Arithmetic,
    Figlet,
    Sudoku,
}

impl Domain {
    pub const ALL: [Domain; 3] = [Domain::Arithmetic, Domain::Figlet, Domain::Sudoku];

    pub fn name(self) -> &'static str {
        match self {
            Domain::Arithmetic => "arithmetic",
            Domain::Figlet => "figlet",
            Domain::Sudoku => "sudoku",
        }
    }

    /// `count` records with distinct prompts.
    pub fn generate(self, count: usize, seed: u64) -> Result<Vec<Record>, GenError> {
        match self {
            Domain::Arithmetic => arithmetic(count, seed),
            Domain::Figlet => figlet(count, seed),
            Domain::Sudoku => sudoku(count, seed),
        }
    }

    /// The generation budget of an evaluation asked for `asked` new tokens: the puzzles'
    /// answers are at most ten tokens (five spelled letters; ten digits) and the end of the
    /// turn, so 16 bound them, and an untrained model's explanation stops there instead of
    /// running on; arithmetic's worked solutions take what was asked.
    pub fn max_new_tokens(self, asked: usize) -> usize {
        match self {
            Domain::Arithmetic => asked,
            Domain::Figlet | Domain::Sudoku => asked.min(16),
        }
    }

    /// The label noise `continuum run` gives this domain's train split when asked for
    /// `asked`: the model-strong domain's, where the paper's mechanism is about noisy labels;
    /// none on the weak domains, where its claim is about NLL on clean data.
    pub fn label_noise(self, asked: f64) -> f64 {
        match self {
            Domain::Arithmetic => asked,
            Domain::Figlet | Domain::Sudoku => 0.0,
        }
    }

    /// Where `gen` writes this domain's splits in `dir`: (train, test).
    pub fn paths(self, dir: &Path) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{}_train.jsonl", self.name())),
            dir.join(format!("{}_test.jsonl", self.name())),
        )
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Domain {
    type Err = GenError;

    fn from_str(s: &str) -> Result<Self, GenError> {
        Domain::ALL
            .into_iter()
            .find(|d| d.name() == s.trim())
            .ok_or_else(|| GenError::UnknownDomain(s.to_string()))
    }
}

/// `count` grade-school word problems with worked solutions ending "The answer is N.".
pub fn arithmetic(count: usize, seed: u64) -> Result<Vec<Record>, GenError> {
    Ok(problems::generate(count, seed)?
        .iter()
        .map(problems::Problem::record)
        .collect())
}

/// `count` FIGlet renderings of 2-5 letter words; the response spells the word: "W O R D".
pub fn figlet(count: usize, seed: u64) -> Result<Vec<Record>, GenError> {
    Ok(art::generate(count, seed)?
        .iter()
        .map(art::Art::record)
        .collect())
}

/// `count` 4x4 sudoku puzzles with a unique solution; the response is the blanks' digits.
pub fn sudoku(count: usize, seed: u64) -> Result<Vec<Record>, GenError> {
    Ok(grid::generate(count, seed)?
        .iter()
        .map(grid::Puzzle::record)
        .collect())
}

/// A domain's two splits; `noised` lists the train indices whose answer was made wrong.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Vec<Record>,
    pub test: Vec<Record>,
    pub noised: Vec<usize>,
}

/// Draws `train + test` distinct prompts, cuts them in two and puts label noise on a fraction
/// `label_noise` of the train records (exactly `round(label_noise * train)`, chosen by seed).
pub fn split(
    domain: Domain,
    train: usize,
    test: usize,
    seed: u64,
    label_noise: f64,
) -> Result<Split, GenError> {
    if !(0.0..=1.0).contains(&label_noise) {
        return Err(GenError::Noise(label_noise));
    }
    let n = train + test;
    match domain {
        Domain::Arithmetic => Ok(cut(
            problems::generate(n, seed)?,
            train,
            seed,
            label_noise,
            problems::Problem::record,
            problems::Problem::noisy_record,
        )),
        Domain::Figlet => Ok(cut(
            art::generate(n, seed)?,
            train,
            seed,
            label_noise,
            art::Art::record,
            art::Art::noisy_record,
        )),
        Domain::Sudoku => Ok(cut(
            grid::generate(n, seed)?,
            train,
            seed,
            label_noise,
            grid::Puzzle::record,
            grid::Puzzle::noisy_record,
        )),
    }
}

/// The indices of `round(fraction * n)` records out of `n`, chosen by seed, ascending.
pub fn noise_indices(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
    let k = ((fraction * n as f64).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::stream(seed, "noise-pick").shuffle(&mut order);
    let mut picked = order[..k].to_vec();
    picked.sort_unstable();
    picked
}

fn cut<T>(
    items: Vec<T>,
    train: usize,
    seed: u64,
    fraction: f64,
    record: impl Fn(&T) -> Record,
    noisy: impl Fn(&T, &mut Rng) -> Record,
) -> Split {
    let noised = noise_indices(train, fraction, seed);
    let mut rng = Rng::stream(seed, "noise-answer");
    let mut next = noised.iter().peekable();
    let mut out_train = Vec::with_capacity(train);
    let mut out_test = Vec::with_capacity(items.len().saturating_sub(train));
    for (i, item) in items.iter().enumerate() {
        if i >= train {
            out_test.push(record(item));
        } else if next.peek() == Some(&&i) {
            next.next();
            out_train.push(noisy(item, &mut rng));
        } else {
            out_train.push(record(item));
        }
    }
    Split {
        train: out_train,
        test: out_test,
        noised,
    }
}

/// Draws items until `count` have distinct keys (prompts), giving up after many repeats.
pub(crate) fn distinct<T>(
    domain: Domain,
    count: usize,
    mut draw: impl FnMut() -> T,
    key: impl Fn(&T) -> String,
) -> Result<Vec<T>, GenError> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    let mut misses = 0usize;
    while out.len() < count {
        let item = draw();
        if seen.insert(key(&item)) {
            out.push(item);
        } else {
            misses += 1;
            if misses > 1000 + 20 * count {
                return Err(GenError::TooFew {
                    domain,
                    asked: count,
                    found: out.len(),
                });
            }
        }
    }
    Ok(out)
}

/// One JSON object per line, fields in the order prompt, response, answer.
pub fn write_jsonl(path: &Path, records: &[Record]) -> Result<(), GenError> {
    let io_err = |source| GenError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    let mut text = String::new();
    for r in records {
        text += &serde_json::to_string(r).expect("a Record always serializes");
        text.push('\n');
    }
    let mut f = fs::File::create(path).map_err(io_err)?;
    f.write_all(text.as_bytes()).map_err(io_err)
}

/// Reads a JSONL file of records back (the tests and the driver use it).
pub fn read_jsonl(path: &Path) -> io::Result<Vec<Record>> {
    fs::read_to_string(path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(io::Error::other))
        .collect()
}
