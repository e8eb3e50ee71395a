//! FIGlet words (the paper's own model-weak task, after reasoning-gym's `figlet_font`): a 2-5
//! letter word from [`WORDS`] drawn as ASCII art in one of the four FIGlet fonts figlet-rs ships
//! (standard, small, big, slant); the model must read the word back.

use std::collections::HashSet;
use std::sync::OnceLock;

use figlet_rs::FIGlet;

use super::words::WORDS;
use super::{Domain, GenError, Record};
use crate::rng::Rng;

pub const QUESTION: &str =
    "What word does this ASCII art spell? Answer with its letters only, separated by spaces.";

/// "S T U D Y": the response spells the word letter by letter, so that each letter is a token
/// of its own (Qwen's and Llama's tokenizers split a bare "STUDY" into one to three pieces, and
/// the end-of-turn token after them, which any instruct model predicts, would then weigh a
/// third to a half of the mean probability the diagnostic reports).
pub fn spelled(word: &str) -> String {
    word.chars().map(String::from).collect::<Vec<_>>().join(" ")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Font {
    Standard,
    Small,
    Big,
    Slant,
}

impl Font {
    pub const ALL: [Font; 4] = [Font::Standard, Font::Small, Font::Big, Font::Slant];

    pub fn name(self) -> &'static str {
        match self {
            Font::Standard => "standard",
            Font::Small => "small",
            Font::Big => "big",
            Font::Slant => "slant",
        }
    }

    fn figlet(self) -> &'static FIGlet {
        static FONTS: OnceLock<[FIGlet; 4]> = OnceLock::new();
        let fonts = FONTS.get_or_init(|| {
            let load = |f: Result<FIGlet, String>| f.expect("figlet-rs's bundled fonts parse");
            [
                load(FIGlet::standard()),
                load(FIGlet::small()),
                load(FIGlet::big()),
                load(FIGlet::slant()),
            ]
        });
        &fonts[self as usize]
    }
}

/// The word in `font`, trailing spaces and blank lines at the top and bottom removed.
pub fn render(word: &str, font: Font) -> String {
    let figure = font
        .figlet()
        .convert(word)
        .expect("every letter A-Z is in the bundled fonts");
    let text = figure.as_str();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|l| !l.is_empty()).unwrap_or(0);
    let last = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    lines[first..last.max(first)].join("\n")
}

/// One drawing: which word, in which font.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Art {
    pub word: &'static str,
    pub font: Font,
}

/// `count` distinct (word, font) drawings, chosen by seed without replacement.
pub fn generate(count: usize, seed: u64) -> Result<Vec<Art>, GenError> {
    let all = WORDS.len() * Font::ALL.len();
    if count > all {
        return Err(GenError::TooFew {
            domain: Domain::Figlet,
            asked: count,
            found: all,
        });
    }
    let mut order: Vec<usize> = (0..all).collect();
    Rng::stream(seed, "figlet").shuffle(&mut order);
    // Keyed by the art itself: two drawings that looked the same would be one prompt.
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    for i in order {
        if out.len() == count {
            break;
        }
        let art = Art {
            word: WORDS[i / Font::ALL.len()],
            font: Font::ALL[i % Font::ALL.len()],
        };
        if seen.insert(render(art.word, art.font)) {
            out.push(art);
        }
    }
    if out.len() < count {
        return Err(GenError::TooFew {
            domain: Domain::Figlet,
            asked: count,
            found: out.len(),
        });
    }
    Ok(out)
}

impl Art {
    pub fn prompt(&self) -> String {
        format!("{QUESTION}\n\n```\n{}\n```", render(self.word, self.font))
    }

    pub fn record(&self) -> Record {
        Record {
            prompt: self.prompt(),
            response: spelled(self.word),
            answer: self.word.to_string(),
        }
    }

    /// The same art answered with another word, of the same length where the list has one.
    pub fn noisy_record(&self, rng: &mut Rng) -> Record {
        let same: Vec<&str> = WORDS
            .iter()
            .copied()
            .filter(|w| w.len() == self.word.len() && *w != self.word)
            .collect();
        let wrong = if same.is_empty() {
            *rng.pick(
                &WORDS
                    .iter()
                    .copied()
                    .filter(|w| *w != self.word)
                    .collect::<Vec<_>>(),
            )
        } else {
            *rng.pick(&same)
        };
        Record {
            prompt: self.prompt(),
            response: spelled(wrong),
            answer: wrong.to_string(),
        }
    }
}
