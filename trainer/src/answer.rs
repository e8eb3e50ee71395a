//! Final-answer extraction and comparison for `trainer eval`, in the order math graders use:
//! the last `\boxed{...}`, else what follows the last "the answer is", else the last number,
//! else the whole output when it is one line (a bare answer, as the paper's FIGlet evaluation
//! compares the output itself with the word); then both sides are normalised (LaTeX wrappers,
//! `$`, spaces, case, a trailing period and thousands separators go) and compared: integers
//! digit for digit, other numbers within a relative 1e-6.

/// The answer a model's output states, or `None` when it states none.
pub fn extract(text: &str) -> Option<String> {
    last_boxed(text)
        .or_else(|| after_answer_is(text))
        .or_else(|| last_number(text))
        .or_else(|| bare_line(text))
}

/// The output itself, trimmed, when it is a single non-empty line.
fn bare_line(text: &str) -> Option<String> {
    let line = text.trim();
    (!line.is_empty() && !line.contains('\n')).then(|| line.to_string())
}

/// The content of the last `\boxed{...}` (or `\fbox{...}`), braces balanced.
fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| i + m.len()))
        .max()?;
    let rest = text[start..].trim_start();
    let body = rest.strip_prefix('{')?;
    let mut depth = 1;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(body[..i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The rest of the line after the last "the answer is" (any case, optional colon), without the
/// sentence's closing period.
fn after_answer_is(text: &str) -> Option<String> {
    const MARK: &str = "the answer is";
    let lower = text.to_lowercase();
    // Lower-casing can change byte lengths outside ASCII; fall back to ASCII-only folding then.
    let (haystack, original) = if lower.len() == text.len() {
        (lower, text)
    } else {
        (text.to_ascii_lowercase(), text)
    };
    let at = haystack.rfind(MARK)? + MARK.len();
    let rest = original[at..].trim_start_matches([':', ' ', '\t']);
    let line = rest
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches('.');
    (!line.is_empty()).then(|| line.to_string())
}

/// The last number in the text (sign, thousands separators and decimals kept).
fn last_number(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let mut start = i;
            if start > 0 && b[start - 1] == b'-' {
                start -= 1;
            }
            let mut end = i;
            while end < b.len()
                && (b[end].is_ascii_digit()
                    || ((b[end] == b',' || b[end] == b'.')
                        && end + 1 < b.len()
                        && b[end + 1].is_ascii_digit()))
            {
                end += 1;
            }
            found = Some(text[start..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// The canonical form answers are compared in.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.trim().to_string();
    if let Some(inner) = last_boxed(&s) {
        s = inner;
    }
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\%", ""),
        ("%", ""),
        ("$", ""),
    ] {
        s = s.replace(from, to);
    }
    s = unwrap_text(&s);
    let mut s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    while s.ends_with('.') {
        s.pop();
    }
    let s = s.to_lowercase();
    if is_grouped_number(&s) {
        return s.replace(',', "");
    }
    s
}

/// `\text{abc}` and `\mathrm{abc}` -> `abc`.
fn unwrap_text(s: &str) -> String {
    let mut s = s.to_string();
    for m in ["\\text{", "\\textbf{", "\\mathrm{", "\\mbox{"] {
        while let Some(at) = s.find(m) {
            let body = &s[at + m.len()..];
            let Some(close) = body.find('}') else { break };
            s = format!("{}{}{}", &s[..at], &body[..close], &body[close + 1..]);
        }
    }
    s
}

/// 1,234 or -1,234,567.5: digits grouped by threes with commas.
fn is_grouped_number(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let int = body.split('.').next().unwrap_or("");
    let groups: Vec<&str> = int.split(',').collect();
    groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|c| c.is_ascii_digit()))
        && body
            .split('.')
            .nth(1)
            .is_none_or(|f| f.bytes().all(|c| c.is_ascii_digit()))
}

/// Whether a predicted answer equals the reference: equal normal forms, or equal numbers.
/// Two integers are equal only digit for digit (a sudoku's "2231213" is no number to be
/// near); a tolerance applies where either side has a fraction or an exponent.
pub fn matches(predicted: &str, reference: &str) -> bool {
    let (p, r) = (normalize(predicted), normalize(reference));
    if p == r {
        return true;
    }
    if let (Some(a), Some(b)) = (integer(&p), integer(&r)) {
        return a == b;
    }
    match (p.parse::<f64>(), r.parse::<f64>()) {
        (Ok(a), Ok(b)) if a.is_finite() && b.is_finite() => {
            (a - b).abs() <= 1e-6 * b.abs().max(1.0)
        }
        _ => false,
    }
}

/// A plain integer ("-007") in a canonical form ("-7"; "0" for any zero), else `None`.
fn integer(s: &str) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    Some(match (neg, digits) {
        (_, "") => "0".to_string(),
        (true, d) => format!("-{d}"),
        (false, d) => d.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_order() {
        let cases = [
            ("so \\boxed{\\frac{1}{2}} and 7", Some("\\frac{1}{2}")),
            ("\\boxed{3} then \\boxed{ {4} }", Some(" {4} ")),
            ("The answer is 42.", Some("42")),
            ("The answer is 3.5.", Some("3.5")),
            ("the answer is: HELLO\nmore 5", Some("HELLO")),
            (
                "The answer is 1234 3412 2143 4321.",
                Some("1234 3412 2143 4321"),
            ),
            ("3 + 5 = 8 apples, then -12.5 remain", Some("-12.5")),
            ("It costs $1,234.50 in all.", Some("1,234.50")),
            ("no answer here", Some("no answer here")),
            ("  S T U D Y\n", Some("S T U D Y")),
            ("first line\nsecond line", None),
            (" \n ", None),
            // A single line is a bare answer, even one that only began to state it.
            ("The answer is", Some("The answer is")),
            ("The answer is\n", Some("The answer is")),
            ("The answer is\nnothing", None),
            ("\\boxed{unclosed\nand more", None),
        ];
        for (text, want) in cases {
            assert_eq!(extract(text).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn normal_forms() {
        let cases = [
            (" $42$. ", "42"),
            ("1,234", "1234"),
            ("1,23", "1,23"),
            ("\\left( 1, 2 \\right)", "(1,2)"),
            ("\\dfrac{1}{2}", "\\frac{1}{2}"),
            ("\\text{HELLO}", "hello"),
            ("90^\\circ", "90"),
            ("1234 3412 2143 4321.", "1234341221434321"),
            ("\\boxed{7}", "7"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn comparison() {
        assert!(matches("8.", "8"));
        assert!(matches("8.0", "8"));
        assert!(matches("1,000", "1000"));
        assert!(matches("Hello", "HELLO"));
        assert!(matches("S T U D Y", "STUDY"));
        // Digit strings are equal digit for digit, however long.
        assert!(!matches("1234124", "1234123"));
        assert!(!matches("2231213444", "2231213443"));
        assert!(matches("007", "7"));
        assert!(matches("-0", "0"));
        assert!(!matches("-7", "7"));
        assert!(matches("1234567.0", "1234567"));
        assert!(!matches("9", "8"));
        assert!(!matches("0.5", "\\frac{1}{2}"));
        assert!(!matches("", "8"));
        assert!(!matches("HELLP", "HELLO"));
    }
}
