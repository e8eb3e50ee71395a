//! Grade-school arithmetic word problems (the domain the base model is strong on): a structured
//! [`Problem`] drawn from seven templates of one to three operations on small integers with an
//! integer result, rendered with a short worked solution ending "The answer is N.".

use super::{distinct, Domain, GenError, Record};
use crate::rng::Rng;

/// A person in a problem: name and pronouns (subject, possessive, object).
pub const PEOPLE: [(&str, &str, &str, &str); 12] = [
    ("Maya", "she", "her", "her"),
    ("Liam", "he", "his", "him"),
    ("Ava", "she", "her", "her"),
    ("Noah", "he", "his", "him"),
    ("Zoe", "she", "her", "her"),
    ("Omar", "he", "his", "him"),
    ("Lena", "she", "her", "her"),
    ("Ravi", "he", "his", "him"),
    ("Mia", "she", "her", "her"),
    ("Sam", "he", "his", "him"),
    ("Nina", "she", "her", "her"),
    ("Leo", "he", "his", "him"),
];

/// One problem in structured form; `person` indexes [`PEOPLE`]. Each variant's doc gives the
/// answer it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// have + won (one operation).
    Marbles { person: usize, have: i64, won: i64 },
    /// packs * per_pack - given.
    Pencils {
        person: usize,
        packs: i64,
        per_pack: i64,
        given: i64,
    },
    /// (have + picked) / friends, exact.
    Sharing {
        person: usize,
        have: i64,
        picked: i64,
        friends: i64,
    },
    /// age + older + years.
    Ages {
        person: usize,
        age: i64,
        older: i64,
        years: i64,
    },
    /// speed * hours + extra.
    Distance { speed: i64, hours: i64, extra: i64 },
    /// money - count * price.
    Shopping {
        person: usize,
        money: i64,
        count: i64,
        price: i64,
    },
    /// (weekly * weeks - spent) / jars, exact (three operations).
    Savings {
        person: usize,
        weekly: i64,
        weeks: i64,
        spent: i64,
        jars: i64,
    },
}

/// `count` problems with distinct prompts.
pub fn generate(count: usize, seed: u64) -> Result<Vec<Problem>, GenError> {
    let mut rng = Rng::stream(seed, "arithmetic");
    distinct(
        Domain::Arithmetic,
        count,
        || draw(&mut rng),
        |p| p.record().prompt,
    )
}

fn draw(rng: &mut Rng) -> Problem {
    let person = rng.index(PEOPLE.len());
    match rng.below(7) {
        0 => Problem::Marbles {
            person,
            have: rng.range(5, 60),
            won: rng.range(2, 40),
        },
        1 => {
            let packs = rng.range(2, 9);
            let per_pack = rng.range(3, 12);
            let given = rng.range(1, packs * per_pack - 1);
            Problem::Pencils {
                person,
                packs,
                per_pack,
                given,
            }
        }
        2 => {
            let friends = rng.range(2, 8);
            let total = friends * rng.range(2, 12);
            let have = rng.range(1, total - 1);
            Problem::Sharing {
                person,
                have,
                picked: total - have,
                friends,
            }
        }
        3 => Problem::Ages {
            person,
            age: rng.range(5, 15),
            older: rng.range(2, 10),
            years: rng.range(1, 10),
        },
        4 => Problem::Distance {
            speed: 5 * rng.range(4, 18),
            hours: rng.range(2, 6),
            extra: rng.range(5, 60),
        },
        5 => {
            let count = rng.range(2, 6);
            let price = rng.range(2, 15);
            Problem::Shopping {
                person,
                money: count * price + rng.range(0, 30),
                count,
                price,
            }
        }
        _ => {
            let jars = rng.range(2, 5);
            let weekly = rng.range(3, 15);
            let weeks = rng.range(2, 8);
            let total = weekly * weeks;
            let rest = jars * rng.range(1, (total - 1) / jars);
            Problem::Savings {
                person,
                weekly,
                weeks,
                spent: total - rest,
                jars,
            }
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl Problem {
    /// The prompt, the worked solution (one line per operation, then the answer line) and the
    /// answer.
    pub fn record(&self) -> Record {
        let (prompt, steps, answer) = self.render();
        let mut response = steps.join("\n");
        response.push('\n');
        response += &answer_line(&answer.to_string());
        Record {
            prompt,
            response,
            answer: answer.to_string(),
        }
    }

    /// The same record with a wrong final answer: a nearby non-negative integer in the answer
    /// field and the last line (the worked steps are left as they are).
    pub fn noisy_record(&self, rng: &mut Rng) -> Record {
        let (prompt, steps, answer) = self.render();
        let spread = (answer.abs() / 4).max(2);
        let wrong = loop {
            let w = answer + rng.range(-spread, spread);
            if w != answer && w >= 0 {
                break w;
            }
        };
        let mut response = steps.join("\n");
        response.push('\n');
        response += &answer_line(&wrong.to_string());
        Record {
            prompt,
            response,
            answer: wrong.to_string(),
        }
    }

    /// (prompt, worked steps, answer).
    fn render(&self) -> (String, Vec<String>, i64) {
        match *self {
            Problem::Marbles { person, have, won } => {
                let (n, s, _, _) = PEOPLE[person];
                let r = have + won;
                (
                    format!(
                        "{n} has {have} marbles. {} wins {won} more marbles in a game. \
                         How many marbles does {n} have now?",
                        capitalize(s)
                    ),
                    vec![format!("{n} has {have} + {won} = {r} marbles now.")],
                    r,
                )
            }
            Problem::Pencils {
                person,
                packs,
                per_pack,
                given,
            } => {
                let (n, s, _, _) = PEOPLE[person];
                let t = packs * per_pack;
                let r = t - given;
                (
                    format!(
                        "{n} buys {packs} packs of pencils with {per_pack} pencils in each pack. \
                         {} gives {given} pencils to classmates. How many pencils does {n} have left?",
                        capitalize(s)
                    ),
                    vec![
                        format!("{n} buys {packs} * {per_pack} = {t} pencils."),
                        format!("After giving away {given}, {s} has {t} - {given} = {r} pencils left."),
                    ],
                    r,
                )
            }
            Problem::Sharing {
                person,
                have,
                picked,
                friends,
            } => {
                let (n, s, _, _) = PEOPLE[person];
                let t = have + picked;
                let r = t / friends;
                (
                    format!(
                        "{n} has {have} apples and picks {picked} more. {} shares all the apples \
                         equally among {friends} friends. How many apples does each friend get?",
                        capitalize(s)
                    ),
                    vec![
                        format!("{n} has {have} + {picked} = {t} apples."),
                        format!("Each friend gets {t} / {friends} = {r} apples."),
                    ],
                    r,
                )
            }
            Problem::Ages {
                person,
                age,
                older,
                years,
            } => {
                let (n, _, p, o) = PEOPLE[person];
                let c = age + older;
                let r = c + years;
                (
                    format!(
                        "{n} is {age} years old. {} cousin is {older} years older than {o}. \
                         How old will the cousin be in {years} years?",
                        capitalize(p)
                    ),
                    vec![
                        format!("The cousin is {age} + {older} = {c} years old now."),
                        format!("In {years} years the cousin will be {c} + {years} = {r}."),
                    ],
                    r,
                )
            }
            Problem::Distance {
                speed,
                hours,
                extra,
            } => {
                let d = speed * hours;
                let r = d + extra;
                (
                    format!(
                        "A train travels at {speed} kilometers per hour for {hours} hours, then \
                         travels {extra} more kilometers. How many kilometers does it travel in total?"
                    ),
                    vec![
                        format!("In {hours} hours it travels {speed} * {hours} = {d} kilometers."),
                        format!("In total it travels {d} + {extra} = {r} kilometers."),
                    ],
                    r,
                )
            }
            Problem::Shopping {
                person,
                money,
                count,
                price,
            } => {
                let (n, s, _, _) = PEOPLE[person];
                let c = count * price;
                let r = money - c;
                (
                    format!(
                        "{n} has {money} dollars. {} buys {count} books that cost {price} dollars \
                         each. How many dollars does {n} have left?",
                        capitalize(s)
                    ),
                    vec![
                        format!("The books cost {count} * {price} = {c} dollars."),
                        format!("{n} has {money} - {c} = {r} dollars left."),
                    ],
                    r,
                )
            }
            Problem::Savings {
                person,
                weekly,
                weeks,
                spent,
                jars,
            } => {
                let (n, s, _, _) = PEOPLE[person];
                let t = weekly * weeks;
                let l = t - spent;
                let r = l / jars;
                (
                    format!(
                        "{n} saves {weekly} dollars every week for {weeks} weeks. {} spends {spent} \
                         dollars on a game and splits the rest equally into {jars} jars. How many \
                         dollars go into each jar?",
                        capitalize(s)
                    ),
                    vec![
                        format!("{n} saves {weekly} * {weeks} = {t} dollars."),
                        format!("After the game {s} has {t} - {spent} = {l} dollars."),
                        format!("Each jar gets {l} / {jars} = {r} dollars."),
                    ],
                    r,
                )
            }
        }
    }
}

/// "The answer is N.": the last line of every response, as math graders expect it.
fn answer_line(answer: &str) -> String {
    format!("The answer is {answer}.")
}
