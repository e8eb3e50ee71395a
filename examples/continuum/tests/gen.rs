//! The generators: determinism, answers checked against independent computations, sudoku
//! uniqueness by brute force, FIGlet art, label noise and split disjointness.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use continuum::gen::grid::Grid;
use continuum::gen::problems::{self, Problem};
use continuum::gen::{self, Domain, Record};

fn last_line(r: &Record) -> &str {
    r.response.lines().last().unwrap()
}

#[test]
fn same_seed_same_records_other_seed_different() {
    for d in Domain::ALL {
        let a = gen::split(d, 60, 20, 7, 0.2).unwrap();
        let b = gen::split(d, 60, 20, 7, 0.2).unwrap();
        let c = gen::split(d, 60, 20, 8, 0.2).unwrap();
        assert_eq!(a.train, b.train, "{d}");
        assert_eq!(a.test, b.test, "{d}");
        assert_eq!(a.noised, b.noised, "{d}");
        assert_ne!(a.train, c.train, "{d}: seed 8 gave seed 7's train split");
        assert_ne!(a.test, c.test, "{d}: seed 8 gave seed 7's test split");
    }
}

#[test]
fn gen_cli_writes_byte_identical_files_for_the_same_arguments() {
    let exe = env!("CARGO_BIN_EXE_continuum");
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &str, seed: &str| {
        let o = Command::new(exe)
            .args(["gen", "--domain", "sudoku", "--train", "40", "--test", "10"])
            .args(["--seed", seed, "--label-noise", "0.25", "--out"])
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stderr).unwrap()
    };
    let stderr = run("a", "3");
    assert!(stderr.contains("(10 noised)"), "stderr: {stderr}");
    run("b", "3");
    run("c", "4");
    let read = |out: &str, split: &str| {
        std::fs::read(dir.path().join(out).join(format!("sudoku_{split}.jsonl"))).unwrap()
    };
    for split in ["train", "test"] {
        assert_eq!(read("a", split), read("b", split), "{split}");
        assert_ne!(read("a", split), read("c", split), "{split}");
    }
    let back = gen::read_jsonl(&dir.path().join("a/sudoku_train.jsonl")).unwrap();
    assert_eq!(back.len(), 40);
    let line = String::from_utf8(read("a", "test")).unwrap();
    let first = line.lines().next().unwrap();
    assert!(
        first.starts_with("{\"prompt\":")
            && first.contains(",\"response\":")
            && first.contains(",\"answer\":"),
        "{first}"
    );
}

/// The answer each variant stands for, computed here from the structure alone.
fn expected(p: &Problem) -> i64 {
    match *p {
        Problem::Marbles { have, won, .. } => have + won,
        Problem::Pencils {
            packs,
            per_pack,
            given,
            ..
        } => packs * per_pack - given,
        Problem::Sharing {
            have,
            picked,
            friends,
            ..
        } => {
            assert_eq!((have + picked) % friends, 0, "{p:?} does not share evenly");
            (have + picked) / friends
        }
        Problem::Ages {
            age, older, years, ..
        } => age + older + years,
        Problem::Distance {
            speed,
            hours,
            extra,
        } => speed * hours + extra,
        Problem::Shopping {
            money,
            count,
            price,
            ..
        } => money - count * price,
        Problem::Savings {
            weekly,
            weeks,
            spent,
            jars,
            ..
        } => {
            assert_eq!(
                (weekly * weeks - spent) % jars,
                0,
                "{p:?} does not split evenly"
            );
            (weekly * weeks - spent) / jars
        }
    }
}

fn numbers(p: &Problem) -> Vec<i64> {
    match *p {
        Problem::Marbles { have, won, .. } => vec![have, won],
        Problem::Pencils {
            packs,
            per_pack,
            given,
            ..
        } => vec![packs, per_pack, given],
        Problem::Sharing {
            have,
            picked,
            friends,
            ..
        } => vec![have, picked, friends],
        Problem::Ages {
            age, older, years, ..
        } => vec![age, older, years],
        Problem::Distance {
            speed,
            hours,
            extra,
        } => vec![speed, hours, extra],
        Problem::Shopping {
            money,
            count,
            price,
            ..
        } => vec![money, count, price],
        Problem::Savings {
            weekly,
            weeks,
            spent,
            jars,
            ..
        } => vec![weekly, weeks, spent, jars],
    }
}

#[test]
fn arithmetic_answers_equal_an_independent_evaluation() {
    let ps = problems::generate(3000, 11).unwrap();
    let mut kinds = HashSet::new();
    for p in &ps {
        kinds.insert(std::mem::discriminant(p));
        let r = p.record();
        let want = expected(p);
        assert!(want >= 0, "{p:?}");
        assert_eq!(r.answer, want.to_string(), "{p:?}");
        assert_eq!(last_line(&r), format!("The answer is {want}."), "{p:?}");
        let words: HashSet<&str> = r
            .prompt
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .collect();
        for n in numbers(p) {
            assert!(n > 0, "{p:?}");
            assert!(
                words.contains(n.to_string().as_str()),
                "{n} not in {:?}",
                r.prompt
            );
        }
        // Every worked step "a op b = c" is itself right.
        for line in r.response.lines() {
            let t: Vec<&str> = line.split_whitespace().collect();
            for w in t.windows(5) {
                let num = |s: &str| s.trim_end_matches('.').parse::<i64>().ok();
                if let (Some(a), Some(b), Some(c), "=") = (num(w[0]), num(w[2]), num(w[4]), w[3]) {
                    let v = match w[1] {
                        "+" => a + b,
                        "-" => a - b,
                        "*" => a * b,
                        "/" => {
                            assert_eq!(a % b, 0, "{line}");
                            a / b
                        }
                        op => panic!("operator {op} in {line}"),
                    };
                    assert_eq!(v, c, "{line}");
                }
            }
        }
    }
    assert_eq!(kinds.len(), 7, "every template appears");
}

/// Every solved 4x4 grid, found here by trying all 24^4 choices of row permutations.
fn brute_force_grids() -> Vec<Grid> {
    let mut perms = Vec::new();
    for a in 1..=4u8 {
        for b in 1..=4u8 {
            for c in 1..=4u8 {
                for d in 1..=4u8 {
                    let row = [a, b, c, d];
                    if (1..=4).all(|x| row.contains(&x)) {
                        perms.push(row);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for r0 in &perms {
        for r1 in &perms {
            for r2 in &perms {
                for r3 in &perms {
                    let g = [*r0, *r1, *r2, *r3];
                    let cols = (0..4).all(|c| (1..=4).all(|x| (0..4).any(|r| g[r][c] == x)));
                    let boxes = (0..4).all(|b| {
                        let (br, bc) = (b / 2 * 2, b % 2 * 2);
                        (1..=4).all(|x| (0..4).any(|k| g[br + k / 2][bc + k % 2] == x))
                    });
                    if cols && boxes {
                        out.push(g);
                    }
                }
            }
        }
    }
    out
}

/// The 4x4 grid shown in a prompt or response: the four lines of four space-separated cells.
fn parse_grid(text: &str) -> Grid {
    let rows: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| {
            let cells: Vec<&str> = l.split(' ').collect();
            cells.len() == 4 && cells.iter().all(|c| ["_", "1", "2", "3", "4"].contains(c))
        })
        .map(|l| l.split(' ').map(|c| c.parse().unwrap_or(0)).collect())
        .collect();
    assert_eq!(rows.len(), 4, "no 4x4 grid in {text:?}");
    let mut g = [[0; 4]; 4];
    for r in 0..4 {
        g[r].copy_from_slice(&rows[r]);
    }
    g
}

/// `givens` with its blanks filled, in reading order, by the digits of `digits`.
fn fill(givens: &Grid, digits: &str) -> Grid {
    let blanks: Vec<usize> = (0..16).filter(|&i| givens[i / 4][i % 4] == 0).collect();
    assert_eq!(digits.len(), blanks.len(), "{digits:?} for {givens:?}");
    let mut g = *givens;
    for (&i, d) in blanks.iter().zip(digits.bytes()) {
        assert!((b'1'..=b'4').contains(&d), "{digits:?}");
        g[i / 4][i % 4] = d - b'0';
    }
    g
}

#[test]
fn sudoku_puzzles_have_exactly_one_solution_and_the_answer_is_its_blanks() {
    let all = brute_force_grids();
    assert_eq!(all.len(), 288);
    for r in gen::sudoku(150, 5).unwrap() {
        let givens = parse_grid(&r.prompt);
        let blanks = givens.iter().flatten().filter(|&&d| d == 0).count();
        assert!((6..=10).contains(&blanks), "{blanks} blanks");
        let fits: Vec<&Grid> = all
            .iter()
            .filter(|g| {
                (0..16)
                    .all(|i| givens[i / 4][i % 4] == 0 || givens[i / 4][i % 4] == g[i / 4][i % 4])
            })
            .collect();
        assert_eq!(fits.len(), 1, "{} solutions of {:?}", fits.len(), r.prompt);
        // The response is the answer and holds nothing the prompt already shows.
        assert_eq!(r.response, r.answer);
        assert_eq!(r.answer.len(), blanks);
        assert_eq!(&fill(&givens, &r.answer), fits[0]);
        assert!(
            r.prompt.ends_with("with nothing between them."),
            "{}",
            r.prompt
        );
    }
}

#[test]
fn figlet_answers_are_short_uppercase_words_and_the_art_tells_words_apart() {
    let records = gen::figlet(800, 9).unwrap();
    let mut word_of_art: HashMap<String, String> = HashMap::new();
    for r in &records {
        assert!(
            (2..=5).contains(&r.answer.len()) && r.answer.chars().all(|c| c.is_ascii_uppercase()),
            "{:?}",
            r.answer
        );
        let letters: Vec<String> = r.answer.chars().map(String::from).collect();
        assert_eq!(r.response, letters.join(" "));
        let (question, rest) = r.prompt.split_once("\n\n```\n").unwrap();
        assert_eq!(
            question,
            "What word does this ASCII art spell? Answer with its letters only, separated by spaces."
        );
        let art = rest.strip_suffix("\n```").unwrap();
        assert!(!art.contains("```") && art.lines().count() >= 3, "{art}");
        assert!(!art.contains(&r.answer), "the word is written out in {art}");
        if let Some(w) = word_of_art.insert(art.to_string(), r.answer.clone()) {
            assert_eq!(w, r.answer, "one drawing for two words:\n{art}");
        }
    }
    // In one font, every word of the list looks different.
    use continuum::gen::art::{render, Font};
    use continuum::gen::words::WORDS;
    let arts: HashSet<String> = WORDS.iter().map(|w| render(w, Font::Standard)).collect();
    assert_eq!(arts.len(), WORDS.len());
    assert_eq!(
        WORDS.iter().collect::<HashSet<_>>().len(),
        WORDS.len(),
        "duplicate word"
    );
}

#[test]
fn label_noise_changes_exactly_round_f_n_train_records_and_no_test_record() {
    for (d, n, f) in [
        (Domain::Arithmetic, 101, 0.15),
        (Domain::Figlet, 50, 0.5),
        (Domain::Sudoku, 33, 0.1),
        (Domain::Arithmetic, 20, 1.0),
        (Domain::Sudoku, 20, 0.0),
    ] {
        let clean = gen::split(d, n, 30, 2, 0.0).unwrap();
        let noisy = gen::split(d, n, 30, 2, f).unwrap();
        let want = (f * n as f64).round() as usize;
        assert_eq!(noisy.test, clean.test, "{d}: test changed");
        let changed: Vec<usize> = (0..n)
            .filter(|&i| noisy.train[i] != clean.train[i])
            .collect();
        assert_eq!(changed.len(), want, "{d} n={n} f={f}");
        assert_eq!(changed, noisy.noised, "{d}");
        for &i in &changed {
            let (c, x) = (&clean.train[i], &noisy.train[i]);
            assert_eq!(c.prompt, x.prompt);
            assert_ne!(c.answer, x.answer);
            match d {
                Domain::Arithmetic => {
                    assert_eq!(last_line(x), format!("The answer is {}.", x.answer));
                    assert!(x.answer.parse::<u64>().is_ok(), "{}", x.answer);
                    let lines = |r: &Record| r.response.lines().count();
                    assert_eq!(lines(c), lines(x));
                }
                Domain::Figlet => {
                    assert_eq!(c.answer.len(), x.answer.len());
                    assert_eq!(x.response.replace(' ', ""), x.answer);
                }
                Domain::Sudoku => {
                    assert_eq!(x.response, x.answer);
                    let givens = parse_grid(&x.prompt);
                    let (g, w) = (fill(&givens, &c.answer), fill(&givens, &x.answer));
                    let diff: Vec<usize> = (0..16)
                        .filter(|&k| g[k / 4][k % 4] != w[k / 4][k % 4])
                        .collect();
                    assert_eq!(diff.len(), 2, "two cells swapped");
                    assert_eq!(diff[0] / 4, diff[1] / 4, "in one row");
                    assert!(gen::grid::solutions(&w, 1).is_empty(), "still a solution");
                }
            }
        }
    }
    assert!(gen::split(Domain::Figlet, 5, 5, 0, 1.5).is_err());
}

#[test]
fn train_and_test_share_no_prompt() {
    for d in Domain::ALL {
        let s = gen::split(d, 600, 200, 13, 0.3).unwrap();
        let train: HashSet<&str> = s.train.iter().map(|r| r.prompt.as_str()).collect();
        let test: HashSet<&str> = s.test.iter().map(|r| r.prompt.as_str()).collect();
        assert_eq!(train.len(), 600, "{d}: repeated train prompt");
        assert_eq!(test.len(), 200, "{d}: repeated test prompt");
        assert!(train.is_disjoint(&test), "{d}");
    }
}

#[test]
fn asking_for_more_figlet_prompts_than_exist_is_an_error() {
    let e = gen::figlet(100_000, 0).unwrap_err();
    assert!(e.to_string().contains("distinct prompts"), "{e}");
}
