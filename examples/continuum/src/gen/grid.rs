//! 4x4 sudoku (2x2 boxes), a model-weak domain: a solution grid drawn uniformly from all 288,
//! cells blanked in a seeded order as long as the solution stays unique (checked by a
//! backtracking solver), 6 to 10 blanks. The response is the blanks' digits alone, in reading
//! order: the givens can be copied from the prompt, so a response that re-printed them would
//! be mostly tokens any model predicts, and the domain would not be model-weak by the
//! diagnostic's measure.

use super::{distinct, Domain, GenError, Record};
use crate::rng::Rng;

/// Rows of digits 1-4; 0 is a blank.
pub type Grid = [[u8; 4]; 4];

pub const INSTRUCTIONS: &str = "Solve this 4x4 sudoku. Fill each _ with a digit from 1 to 4 so \
that every row, every column and every 2x2 box contains each digit exactly once.";

/// What the prompt asks the answer to look like (after the grid).
pub const ANSWER_FORMAT: &str = "Answer with the digits that fill the blanks only, in reading \
order (row by row, left to right), with nothing between them.";

/// Fewest and most blanks a puzzle is drawn with.
pub const BLANKS: (i64, i64) = (6, 10);

/// Whether digit `d` may go at (r, c) given the other filled cells.
fn allowed(g: &Grid, r: usize, c: usize, d: u8) -> bool {
    let (br, bc) = (r / 2 * 2, c / 2 * 2);
    (0..4).all(|i| g[r][i] != d && g[i][c] != d)
        && (0..2).all(|i| (0..2).all(|j| g[br + i][bc + j] != d))
}

/// Up to `limit` completions of `givens` (backtracking over blanks in row-major order).
pub fn solutions(givens: &Grid, limit: usize) -> Vec<Grid> {
    fn go(g: &mut Grid, limit: usize, out: &mut Vec<Grid>) {
        if out.len() >= limit {
            return;
        }
        let Some(cell) = (0..16).find(|&i| g[i / 4][i % 4] == 0) else {
            out.push(*g);
            return;
        };
        let (r, c) = (cell / 4, cell % 4);
        for d in 1..=4 {
            if allowed(g, r, c, d) {
                g[r][c] = d;
                go(g, limit, out);
                g[r][c] = 0;
            }
        }
    }
    let mut out = Vec::new();
    let mut g = *givens;
    // A given that clashes with another has no completion.
    for i in 0..16 {
        let d = g[i / 4][i % 4];
        if d != 0 {
            g[i / 4][i % 4] = 0;
            let ok = allowed(&g, i / 4, i % 4, d);
            g[i / 4][i % 4] = d;
            if !ok {
                return out;
            }
        }
    }
    go(&mut g, limit, &mut out);
    out
}

/// All 288 solved 4x4 grids, in lexicographic order.
pub fn all_grids() -> Vec<Grid> {
    solutions(&[[0; 4]; 4], usize::MAX)
}

/// A puzzle: its givens (0 = blank) and its unique solution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Puzzle {
    pub givens: Grid,
    pub solution: Grid,
}

/// `count` puzzles with distinct prompts.
pub fn generate(count: usize, seed: u64) -> Result<Vec<Puzzle>, GenError> {
    let grids = all_grids();
    let mut rng = Rng::stream(seed, "sudoku");
    distinct(
        Domain::Sudoku,
        count,
        || draw(&grids, &mut rng),
        Puzzle::prompt,
    )
}

fn draw(grids: &[Grid], rng: &mut Rng) -> Puzzle {
    loop {
        let solution = *rng.pick(grids);
        let target = rng.range(BLANKS.0, BLANKS.1) as usize;
        let mut order: Vec<usize> = (0..16).collect();
        rng.shuffle(&mut order);
        let mut givens = solution;
        let mut blanks = 0;
        for i in order {
            if blanks == target {
                break;
            }
            let (r, c) = (i / 4, i % 4);
            givens[r][c] = 0;
            if solutions(&givens, 2).len() == 1 {
                blanks += 1;
            } else {
                givens[r][c] = solution[r][c];
            }
        }
        if blanks >= BLANKS.0 as usize {
            return Puzzle { givens, solution };
        }
    }
}

/// The digits `g` puts in the blanks of `givens`, in reading order, run together: "2314".
pub fn blank_digits(givens: &Grid, g: &Grid) -> String {
    (0..16)
        .filter(|&i| givens[i / 4][i % 4] == 0)
        .map(|i| char::from(b'0' + g[i / 4][i % 4]))
        .collect()
}

/// Rows as "1 _ 3 _" lines.
pub fn grid_lines(g: &Grid) -> String {
    g.iter()
        .map(|row| {
            row.iter()
                .map(|&d| {
                    if d == 0 {
                        "_".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Puzzle {
    pub fn prompt(&self) -> String {
        format!(
            "{INSTRUCTIONS}\n\n{}\n\n{ANSWER_FORMAT}",
            grid_lines(&self.givens)
        )
    }

    /// The record answering with `g`'s digits in the blanks (the response is the answer).
    fn answered(&self, g: &Grid) -> Record {
        let digits = blank_digits(&self.givens, g);
        Record {
            prompt: self.prompt(),
            response: digits.clone(),
            answer: digits,
        }
    }

    pub fn record(&self) -> Record {
        self.answered(&self.solution)
    }

    /// The solution with two blank cells of one row swapped (they hold different digits in a
    /// valid row, so the grid stays a plausible-looking answer that agrees with the givens but
    /// breaks two columns).
    pub fn noisy_record(&self, rng: &mut Rng) -> Record {
        let blank_cols =
            |r: usize| -> Vec<usize> { (0..4).filter(|&c| self.givens[r][c] == 0).collect() };
        // At least 6 blanks in 4 rows put two in some row.
        let rows: Vec<usize> = (0..4).filter(|&r| blank_cols(r).len() >= 2).collect();
        let r = *rng.pick(&rows);
        let mut cols = blank_cols(r);
        rng.shuffle(&mut cols);
        let mut wrong = self.solution;
        wrong[r].swap(cols[0], cols[1]);
        self.answered(&wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_288_grids() {
        assert_eq!(all_grids().len(), 288);
    }
}
