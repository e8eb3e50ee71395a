//! The tokenizer (`tokenizer.json` through the tokenizers crate) and the chat template
//! (`chat_template` in `tokenizer_config.json`, or `chat_template.jinja`) rendered with a real
//! Jinja engine configured as transformers configures jinja2.

use std::path::{Path, PathBuf};

use minijinja::value::ValueKind;
use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    dir: PathBuf,
    chat_template: Option<String>,
    /// The template compiled into its environment at the first render (or why it did not
    /// parse), then reused: a dataset renders it once or more per record.
    compiled: std::sync::OnceLock<std::result::Result<Environment<'static>, String>>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_token_id: Option<u32>,
}

/// A special token in tokenizer_config.json: a string or an AddedToken object.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// Load `tokenizer.json`, `tokenizer_config.json` (optional) and the chat template from
    /// a model folder.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::Tokenizer {
                path,
                msg: "missing (a model folder needs tokenizer.json)".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            msg: format!("does not parse: {e}"),
        })?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_path.exists() {
            let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
            serde_json::from_str(&text).map_err(|e| Error::Json {
                path: cfg_path.clone(),
                msg: e.to_string(),
            })?
        } else {
            Value::Null
        };
        let jinja = dir.join("chat_template.jinja");
        let chat_template = if jinja.exists() {
            Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
        } else {
            match cfg.get("chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                // A list of named templates: take "default".
                Some(Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            }
        };
        let bos_token = token_string(cfg.get("bos_token"));
        let eos_token = token_string(cfg.get("eos_token"));
        let eos_token_id = eos_token.as_deref().and_then(|t| inner.token_to_id(t));
        Ok(Tokenizer {
            inner,
            dir: dir.to_path_buf(),
            chat_template,
            compiled: std::sync::OnceLock::new(),
            bos_token,
            eos_token,
            eos_token_id,
        })
    }

    fn err(&self, msg: String) -> Error {
        Error::Tokenizer {
            path: self.dir.join("tokenizer.json"),
            msg,
        }
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's post-processor
    /// (e.g. a BOS token), as transformers' `tokenizer(text)` does by default.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.err(format!("encode: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.err(format!("decode: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_id
    }

    /// The chat template's source, if the tokenizer has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Render chats with `source` instead of the folder's template (a base model without
    /// one, say); an error saying why if it does not parse.
    pub fn set_chat_template(&mut self, source: String) -> std::result::Result<(), String> {
        let env = chat_environment(source.clone())?;
        self.chat_template = Some(source);
        self.compiled = std::sync::OnceLock::from(Ok(env));
        Ok(())
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Render `messages` through the chat template, as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
            .collect();
        self.render_chat(&messages, None, add_generation_prompt)
    }

    /// Render chat messages as they come in data (JSON objects with a `role` and whatever
    /// else the template reads: `content` as a string, null or a list, `tool_calls`, `name`,
    /// ...) and an optional tools list, as transformers'
    /// `apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=...)`:
    /// the template sees them as they are, in their key order; `tojson` writes what Python's
    /// `json.dumps` writes, and none and booleans print as Python prints them.
    pub fn render_chat(
        &self,
        messages: &[Value],
        tools: Option<&Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let source = self.chat_template.as_deref().ok_or_else(|| {
            Error::Template(format!("{} has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja)", self.dir.display()))
        })?;
        let env = self
            .compiled
            .get_or_init(|| chat_environment(source.to_string()))
            .as_ref()
            .map_err(|e| Error::Template(e.clone()))?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            tools => tools.map(|t| minijinja::Value::from(minijinja::value::Serde(t))),
            documents => minijinja::Value::from(()),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        })
        .map_err(|e| Error::Template(format!("render: {e}")))
    }
}

/// The environment chat templates render in, configured as transformers configures jinja2,
/// with `source` compiled in it as "chat".
fn chat_environment(source: String) -> std::result::Result<Environment<'static>, String> {
    let mut env = Environment::new();
    // transformers renders with jinja2's trim_blocks and lstrip_blocks.
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| e.to_string())?,
    );
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
    env.add_filter("tojson", tojson);
    env.set_formatter(|out, state, value| {
        // Jinja2 prints Python's None, True and False.
        match value.kind() {
            ValueKind::None => out.write_str("None")?,
            ValueKind::Bool if value.is_true() => out.write_str("True")?,
            ValueKind::Bool => out.write_str("False")?,
            _ => minijinja::escape_formatter(out, state, value)?,
        }
        Ok(())
    });
    env.add_template_owned("chat", source)
        .map_err(|e| format!("does not parse: {e}"))?;
    Ok(env)
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` with those keyword arguments.
fn tojson(
    value: minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let bad = |msg: String| minijinja::Error::new(ErrorKind::InvalidOperation, msg);
    if value.is_undefined() {
        return Err(bad("tojson of an undefined value".into()));
    }
    let json = serde_json::to_value(&value).map_err(|e| bad(format!("tojson: {e}")))?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let separators = match separators {
        None => None,
        Some(v) if v.len() == 2 => Some((v[0].clone(), v[1].clone())),
        Some(v) => {
            return Err(bad(format!(
                "tojson: separators needs two strings, got {v:?}"
            )))
        }
    };
    let options = crate::pyjson::Options {
        indent: kwargs.get("indent")?,
        separators,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    Ok(crate::pyjson::dumps(&json, &options))
}

/// Today's date (UTC) in the few strftime formats chat templates use (%d %b %B %m %Y %y).
fn strftime_now(fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}
