//! Training data: JSONL or Parquet files (verl's SFT files are Parquet) in three shapes,
//! tokenized with the model's tokenizer and chat template into token ids and a loss mask,
//! following verl's SFT conventions.
//!
//! - `{"prompt", "response"}`: the prompt as one user turn (or, where it is a list of
//!   messages, as that conversation) through the chat template with the generation prompt,
//!   then response + eos, each tokenized without special tokens; loss on the response tokens
//!   only.
//! - `{"messages": [{"role", "content"}, ...]}`: the conversation through the chat template
//!   (messages as they are: tool calls, tool results, and a `tools` list beside them reach the
//!   template as transformers passes them); loss on the assistant turns.
//! - `{"text"}`: the text (with the tokenizer's special tokens) + eos; loss on every token.
//!
//! Field names may be paths into nested records (`extra_info.question`, see [`lookup`]), so
//! verl's own files (prompt_dict_keys) read as they are.
//!
//! Reading is split from tokenizing: [`parse_records`] turns a file's bytes into records and
//! says which line or row is wrong (the fuzz targets drive it), [`load`] tokenizes them.

use std::path::{Path, PathBuf};

use models::Tokenizer;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {msg}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{}: row {row}: {msg}", path.display())]
    Row {
        path: PathBuf,
        row: usize,
        msg: String,
    },
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
}

/// Which shape the records have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Decided per record by which fields are present.
    Auto,
    PromptResponse,
    Messages,
    Text,
}

/// Field names of the three shapes (configurable, as verl's `prompt_key` and friends).
#[derive(Debug, Clone)]
pub struct Fields {
    pub prompt: String,
    pub response: String,
    pub messages: String,
    pub text: String,
    /// The tools list a `messages` record may carry for the chat template.
    pub tools: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            prompt: "prompt".into(),
            response: "response".into(),
            messages: "messages".into(),
            text: "text".into(),
            tools: "tools".into(),
        }
    }
}

/// What to do with a sequence longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Cut it at the end (and count it).
    #[default]
    Right,
    /// Keep its last `max_length` tokens (verl's `truncation: left`: the later turns of a
    /// long chat), and count it.
    Left,
    /// Refuse the file, naming the line or row (verl's `truncation: error`).
    Error,
}

#[derive(Debug, Clone)]
pub struct DataOptions {
    pub shape: Shape,
    pub fields: Fields,
    /// Sequences longer than this are cut at the end or the start, or refused, as
    /// `truncation` says.
    pub max_length: usize,
    pub truncation: Truncation,
}

/// One tokenized example: `loss[i]` says whether token i is a target (predicted from the
/// tokens before it); `loss[0]` is always false.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub loss: Vec<bool>,
}

impl Example {
    pub fn loss_tokens(&self) -> usize {
        self.loss.iter().filter(|&&l| l).count()
    }
}

#[derive(Debug)]
pub struct Dataset {
    /// The files read, in order.
    pub paths: Vec<PathBuf>,
    pub examples: Vec<Example>,
    /// Records cut to `max_length`.
    pub truncated: usize,
    /// Records left with no loss token (all of them past `max_length`, or no assistant turn).
    pub dropped: usize,
}

impl Dataset {
    pub fn loss_tokens(&self) -> usize {
        self.examples.iter().map(Example::loss_tokens).sum()
    }

    /// The file read, or the first and how many more (for messages).
    pub fn name(&self) -> String {
        match self.paths.as_slice() {
            [one] => one.display().to_string(),
            [first, rest @ ..] => format!("{} and {} more files", first.display(), rest.len()),
            [] => "no files".into(),
        }
    }
}

/// Where a record came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// 1-based line of a JSONL file.
    Line(usize),
    /// 1-based row of a Parquet file.
    Row(usize),
}

impl Origin {
    /// An error about this record of `path`.
    pub fn error(self, path: &Path, msg: String) -> DataError {
        match self {
            Origin::Line(line) => DataError::Line {
                path: path.into(),
                line,
                msg,
            },
            Origin::Row(row) => DataError::Row {
                path: path.into(),
                row,
                msg,
            },
        }
    }
}

fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// The records of a JSONL file (one JSON value per non-empty line) or, when `path` ends in
/// `.parquet`, of a Parquet file (one per row, nested columns as JSON), from the file's
/// `bytes`; `path` names it in errors.
pub fn parse_records(bytes: &[u8], path: &Path) -> Result<Vec<(Origin, Value)>, DataError> {
    if is_parquet(path) {
        return parquet_records(bytes::Bytes::copy_from_slice(bytes), path);
    }
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = Origin::Line(i + 1);
        let line = std::str::from_utf8(line)
            .map_err(|e| at.error(path, format!("not UTF-8 text: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line)
            .map_err(|e| at.error(path, format!("not valid JSON: {e}")))?;
        out.push((at, record));
    }
    Ok(out)
}

thread_local! {
    /// Set while this thread reads Parquet, whose reader panics on some corrupt files.
    static IN_PARQUET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The Parquet reader panics on some corrupt files (an index past a buffer, say): such a
/// panic becomes the file's error, and the panic hook (installed once, wrapping the one
/// before it) stays quiet for it.
fn parquet_records(bytes: bytes::Bytes, path: &Path) -> Result<Vec<(Origin, Value)>, DataError> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PARQUET.with(|f| f.get()) {
                previous(info);
            }
        }));
    });
    IN_PARQUET.with(|f| f.set(true));
    let result = std::panic::catch_unwind(|| read_parquet(bytes, path));
    IN_PARQUET.with(|f| f.set(false));
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(DataError::File {
            path: path.into(),
            msg: format!("not a readable Parquet file: the reader failed on corrupt data ({what})"),
        })
    })
}

fn read_parquet(bytes: bytes::Bytes, path: &Path) -> Result<Vec<(Origin, Value)>, DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad = |e: parquet::errors::ParquetError| DataError::File {
        path: path.into(),
        msg: format!("not a readable Parquet file: {e}"),
    };
    let reader = SerializedFileReader::new(bytes).map_err(bad)?;
    let mut out = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(bad)?.enumerate() {
        let at = Origin::Row(i + 1);
        let row = row.map_err(|e| at.error(path, e.to_string()))?;
        out.push((at, row.to_json_value()));
    }
    Ok(out)
}

/// The records of the JSONL or Parquet (`.parquet`) file at `path`, with where each came from.
pub fn read_records(path: &Path) -> Result<Vec<(Origin, Value)>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    if is_parquet(path) {
        parquet_records(bytes.into(), path)
    } else {
        parse_records(&bytes, path)
    }
}

/// Read and tokenize a JSONL or Parquet (`.parquet`) file.
pub fn load(path: &Path, tok: &Tokenizer, opts: &DataOptions) -> Result<Dataset, DataError> {
    load_files(&[path.to_path_buf()], tok, opts)
}

/// Read and tokenize JSONL or Parquet files (the shards of one dataset, say), their records
/// in the order of `paths` and of each file.
pub fn load_files(
    paths: &[PathBuf],
    tok: &Tokenizer,
    opts: &DataOptions,
) -> Result<Dataset, DataError> {
    let mut ds = Dataset {
        paths: paths.to_vec(),
        examples: Vec::new(),
        truncated: 0,
        dropped: 0,
    };
    for path in paths {
        load_into(&mut ds, path, tok, opts)?;
    }
    if ds.examples.is_empty() {
        let msg = if ds.dropped > 0 {
            format!(
                "none of its {} records has a loss token within --max-length {}",
                ds.dropped, opts.max_length
            )
        } else {
            "no records".to_string()
        };
        return Err(DataError::File {
            path: ds.name().into(),
            msg,
        });
    }
    Ok(ds)
}

/// Append the examples of one file to `ds`.
fn load_into(
    ds: &mut Dataset,
    path: &Path,
    tok: &Tokenizer,
    opts: &DataOptions,
) -> Result<(), DataError> {
    let records = read_records(path)?;
    let tokenized = tokenize_all(&records, tok, opts);
    for ((origin, _), ex) in records.iter().zip(tokenized) {
        let mut ex = ex.map_err(|msg| origin.error(path, msg))?;
        if ex.ids.len() > opts.max_length {
            if opts.truncation == Truncation::Error {
                return Err(origin.error(
                    path,
                    format!(
                        "{} tokens, longer than --max-length {} (raise it, or cut long \
                         records with --truncation right)",
                        ex.ids.len(),
                        opts.max_length
                    ),
                ));
            }
            if opts.truncation == Truncation::Left {
                let cut = ex.ids.len() - opts.max_length;
                ex.ids.drain(..cut);
                ex.loss.drain(..cut);
                // The first token left has nothing before it to be predicted from.
                if let Some(first) = ex.loss.first_mut() {
                    *first = false;
                }
            } else {
                ex.ids.truncate(opts.max_length);
                ex.loss.truncate(opts.max_length);
            }
            ds.truncated += 1;
        }
        if ex.loss_tokens() == 0 {
            ds.dropped += 1;
        } else {
            ds.examples.push(ex);
        }
    }
    Ok(())
}

/// [`tokenize`] of every record, on every core, the results in the records' order.
fn tokenize_all(
    records: &[(Origin, Value)],
    tok: &Tokenizer,
    opts: &DataOptions,
) -> Vec<Result<Example, String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = records.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, record)| tokenize(record, tok, opts))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The value of field `name` in a record, or None where it is absent or null (Parquet's absent).
/// A name that is not a key of the record is read as a path: `extra_info.question` is key
/// `question` of the object in `extra_info` (verl's `prompt_dict_keys`), and a number indexes
/// a list (`prompt.0.content`).
pub(crate) fn lookup<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    let found = match record.get(name) {
        Some(v) => Some(v),
        None if name.contains('.') => name.split('.').try_fold(record, |v, key| match v {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }),
        None => None,
    };
    found.filter(|v| !v.is_null())
}

pub(crate) fn string_field<'a>(record: &'a Value, name: &str) -> Result<&'a str, String> {
    match lookup(record, name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "field `{name}` must be a string, found {}",
            kind(other)
        )),
        None => Err(format!("missing field `{name}`")),
    }
}

/// The chat messages in field `name` as the chat template will see them: JSON objects, each
/// with a string `role` and a `content` that is a string, null (an assistant turn of tool
/// calls) or a list; other keys (`tool_calls`, `name`, ...) pass through.
pub(crate) fn chat_field(record: &Value, name: &str) -> Result<Vec<Value>, String> {
    let Some(Value::Array(messages)) = lookup(record, name) else {
        return Err(format!(
            "field `{name}` must be a list of {{\"role\", \"content\"}} objects, found {}",
            lookup(record, name).map_or("nothing", kind)
        ));
    };
    for (i, m) in messages.iter().enumerate() {
        let ok_role = m.get("role").is_some_and(Value::is_string);
        let content = m.get("content").unwrap_or(&Value::Null);
        let ok_content = matches!(content, Value::String(_) | Value::Null | Value::Array(_));
        if !(m.is_object() && ok_role && ok_content) {
            return Err(format!(
                "field `{name}`, message {i}: expected an object with a string `role` and a \
                 `content` that is a string, null or a list, found {m}"
            ));
        }
    }
    Ok(messages.clone())
}

/// The prompt in field `name` as chat messages: a string is one user turn (verl's SFT files), a
/// list is the conversation up to the response as it is (verl's RL files keep their prompts so).
pub(crate) fn prompt_field(record: &Value, name: &str) -> Result<Vec<Value>, String> {
    match lookup(record, name) {
        Some(Value::String(prompt)) => Ok(vec![serde_json::json!({"role": "user", "content": prompt})]),
        Some(Value::Array(_)) => match chat_field(record, name)? {
            messages if messages.is_empty() => Err(format!("field `{name}` is an empty list")),
            messages => Ok(messages),
        },
        Some(other) => Err(format!(
            "field `{name}` must be a string or a list of {{\"role\", \"content\"}} objects, found {}",
            kind(other)
        )),
        None => Err(format!("missing field `{name}`")),
    }
}

/// The tools list of a prompt/response record: only where the prompt is a conversation (a
/// string prompt is one user turn as verl renders it, with no tools).
pub(crate) fn prompt_tools(record: &Value, f: &Fields) -> Result<Option<Value>, String> {
    match lookup(record, &f.prompt) {
        Some(Value::Array(_)) => tools_field(record, &f.tools),
        _ => Ok(None),
    }
}

/// The tools list in field `name` for the chat template: absent or null for none, a list of
/// tool schemas, or a string holding one as JSON (as some datasets store it).
pub(crate) fn tools_field(record: &Value, name: &str) -> Result<Option<Value>, String> {
    let bad = |found: String| {
        format!("field `{name}` must be a list of tool schemas (or a JSON string of one), found {found}")
    };
    match lookup(record, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Array(_)) => Ok(Some(v.clone())),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Array(_)) => Ok(Some(v)),
            Ok(Value::Null) => Ok(None),
            Ok(other) => Err(bad(format!("a string holding {}", kind(&other)))),
            Err(e) => Err(bad(format!("a string that is not JSON ({e})"))),
        },
        Some(other) => Err(bad(kind(other).to_string())),
    }
}

/// Records are JSON objects.
pub(crate) fn expect_object(record: &Value) -> Result<(), String> {
    if record.is_object() {
        Ok(())
    } else {
        Err(format!(
            "a record must be a JSON object, found {}",
            kind(record)
        ))
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Tokenize one record in the shape `opts` names (or the one its fields show).
pub fn tokenize(record: &Value, tok: &Tokenizer, opts: &DataOptions) -> Result<Example, String> {
    let f = &opts.fields;
    expect_object(record)?;
    let shape = match opts.shape {
        Shape::Auto if lookup(record, &f.messages).is_some() => Shape::Messages,
        Shape::Auto if lookup(record, &f.prompt).is_some() => Shape::PromptResponse,
        Shape::Auto if lookup(record, &f.text).is_some() => Shape::Text,
        Shape::Auto => {
            return Err(format!(
                "no `{}`, `{}` or `{}` field (set the field names with --prompt-field and friends)",
                f.messages, f.prompt, f.text
            ))
        }
        s => s,
    };
    let enc = |s: &str, special: bool| tok.encode(s, special).map_err(|e| e.to_string());
    let eos = tok.eos_token().ok_or("the tokenizer has no eos token")?;
    match shape {
        Shape::PromptResponse => {
            let prompt = prompt_field(record, &f.prompt)?;
            let response = string_field(record, &f.response)?;
            let tools = prompt_tools(record, f)?;
            let rendered = tok
                .render_chat(&prompt, tools.as_ref(), true)
                .map_err(|e| e.to_string())?;
            let mut ids = enc(&rendered, false)?;
            let n_prompt = ids.len();
            ids.extend(enc(&format!("{response}{eos}"), false)?);
            let loss = (0..ids.len()).map(|i| i >= n_prompt && i > 0).collect();
            Ok(Example { ids, loss })
        }
        Shape::Messages => {
            let messages = chat_field(record, &f.messages)?;
            if messages.is_empty() {
                return Err(format!("field `{}` is empty", f.messages));
            }
            let tools = tools_field(record, &f.tools)?;
            let render = |m: &[Value], gen: bool| -> Result<Vec<u32>, String> {
                enc(
                    &tok.render_chat(m, tools.as_ref(), gen)
                        .map_err(|e| e.to_string())?,
                    false,
                )
            };
            let ids = render(&messages, false)?;
            let mut loss = vec![false; ids.len()];
            for (i, m) in messages.iter().enumerate() {
                if m["role"] != "assistant" {
                    continue;
                }
                // The assistant turn spans from the prompt-with-generation-header to the end of
                // the conversation rendered up to and including this turn.
                let start = render(&messages[..i], true)?.len();
                let upto = render(&messages[..=i], false)?;
                if upto.len() > ids.len() || upto[..] != ids[..upto.len()] || start > upto.len() {
                    return Err(
                        "the chat template does not render conversations prefix by prefix; \
                                use the prompt/response shape"
                            .into(),
                    );
                }
                for l in &mut loss[start.max(1)..upto.len()] {
                    *l = true;
                }
            }
            Ok(Example { ids, loss })
        }
        Shape::Text => {
            let text = string_field(record, &f.text)?;
            let mut ids = enc(text, true)?;
            ids.extend(enc(eos, false)?);
            let loss = (0..ids.len()).map(|i| i > 0).collect();
            Ok(Example { ids, loss })
        }
        Shape::Auto => unreachable!("resolved above"),
    }
}
