//! JSON text as Python's `json.dumps` writes it, which is what transformers' `tojson` filter
//! gives chat templates (tool schemas, tool-call arguments): `", "` and `": "` between items
//! (`","` with an indent), keys in their order, non-ASCII characters as they are, control
//! characters escaped, floats in Python's `repr` (`1e-07`, `1e+20`, `10.0`).

use serde_json::Value;

/// `json.dumps`'s options that templates pass to `tojson`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Spaces per level; `None` writes everything on one line.
    pub indent: Option<usize>,
    /// (item, key) separators; `None` for Python's defaults.
    pub separators: Option<(String, String)>,
    pub sort_keys: bool,
    /// Escape every non-ASCII character as `\uXXXX` (transformers' default is false).
    pub ensure_ascii: bool,
}

/// `json.dumps(value, **options)`.
pub fn dumps(value: &Value, options: &Options) -> String {
    let (item, key) = options.separators.clone().unwrap_or_else(|| {
        let item = if options.indent.is_some() { "," } else { ", " };
        (item.to_string(), ": ".to_string())
    });
    let mut out = String::new();
    Writer {
        options,
        item: &item,
        key: &key,
    }
    .value(&mut out, value, 0);
    out
}

struct Writer<'a> {
    options: &'a Options,
    item: &'a str,
    key: &'a str,
}

impl Writer<'_> {
    fn newline(&self, out: &mut String, level: usize) {
        if let Some(n) = self.options.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    }

    fn value(&self, out: &mut String, v: &Value, level: usize) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&float_repr(f)),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(s) => self.string(out, s),
            Value::Array(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item);
                    }
                    self.newline(out, level + 1);
                    self.value(out, x, level + 1);
                }
                self.newline(out, level);
                out.push(']');
            }
            Value::Object(map) => {
                if map.is_empty() {
                    out.push_str("{}");
                    return;
                }
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if self.options.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item);
                    }
                    self.newline(out, level + 1);
                    self.string(out, k);
                    out.push_str(self.key);
                    self.value(out, x, level + 1);
                }
                self.newline(out, level);
                out.push('}');
            }
        }
    }

    fn string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.options.ensure_ascii && !(' '..='~').contains(&c) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr` of a float: the shortest digits that read back, positional when the
/// decimal exponent is in [-4, 16) (with `.0` when whole), else `d.ddde+XX`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp writes an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    if !(-4..16).contains(&exp) {
        let e_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{e_sign}{:02}", exp.abs());
    }
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_read_as_python_writes_them() {
        // repr() of each, from CPython.
        for (x, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (10.0, "10.0"),
            (21.5, "21.5"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1e-7, "1e-07"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1000000000000000.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-2.5e-300, "-2.5e-300"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn dumps_as_python() {
        let v = json!({"b": [1, 2.0, "x\"\\\n\u{1}é"], "a": {}, "c": [], "d": null, "e": true});
        // json.dumps(v, ensure_ascii=False)
        assert_eq!(
            dumps(&v, &Options::default()),
            r#"{"b": [1, 2.0, "x\"\\\n\u0001é"], "a": {}, "c": [], "d": null, "e": true}"#
        );
        // json.dumps(v, indent=2, sort_keys=True, ensure_ascii=True)
        let opts = Options {
            indent: Some(2),
            sort_keys: true,
            ensure_ascii: true,
            ..Options::default()
        };
        assert_eq!(
            dumps(&v, &opts),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.0,\n    \"x\\\"\\\\\\n\\u0001\\u00e9\"\n  ],\n  \"c\": [],\n  \"d\": null,\n  \"e\": true\n}"
        );
        // Separators given, and a character beyond the BMP as a surrogate pair.
        let opts = Options {
            separators: Some((",".into(), ":".into())),
            ensure_ascii: true,
            ..Options::default()
        };
        assert_eq!(
            dumps(&json!({"k": ["🤖", 3]}), &opts),
            r#"{"k":["\ud83e\udd16",3]}"#
        );
    }
}
