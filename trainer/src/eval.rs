//! `trainer eval`: greedy generation with the KV cache on each test prompt (rendered through
//! the chat template exactly as training renders it), several prompts at a time (grouped by
//! length, left-padded), the final answer extracted from the output, exact match after
//! normalising against the reference, accuracy and a JSON report in the file's order.

use std::path::{Path, PathBuf};
use std::time::Instant;

use models::{GenerateOptions, Model, Tokenizer};
use serde::Serialize;
use serde_json::Value;

use crate::answer;
use crate::data::{
    chat_field, expect_object, kind, lookup, prompt_field, prompt_tools, read_records,
    string_field, tools_field, DataError, Fields,
};

/// One test question: the prompt's token ids and the answer it should get.
#[derive(Debug, Clone)]
pub struct Item {
    /// 1-based line (JSONL) or row (Parquet) of the record.
    pub record: usize,
    pub prompt: String,
    pub ids: Vec<u32>,
    pub reference: String,
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub fields: Fields,
    /// Field holding the reference answer; where a record lacks it, the answer is extracted
    /// from its response (or last assistant turn).
    pub answer_field: String,
    /// Prompts longer than this (in tokens) are an error, not silently cut.
    pub max_length: usize,
    pub max_new_tokens: usize,
    /// Evaluate only the first N records.
    pub limit: Option<usize>,
    /// Prompts generated for together (a decode step costs about the same for up to 8 rows
    /// as for one: it is bound by reading the weights).
    pub batch_size: usize,
}

/// The outcome of one item.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub record: usize,
    pub prompt: String,
    pub reference: String,
    pub output: String,
    pub predicted: Option<String>,
    pub correct: bool,
    /// Tokens generated, and whether a stop token ended the output (else max_new_tokens did).
    pub tokens: usize,
    pub stopped: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: PathBuf,
    pub data: PathBuf,
    pub examples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Outputs from which no answer could be extracted.
    pub no_answer: usize,
    pub max_new_tokens: usize,
    pub tokens_generated: usize,
    pub seconds: f64,
    pub items: Vec<Outcome>,
}

/// A reference answer given as a string or a number.
fn answer_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What one record asks: the prompt's messages (as the chat template sees them), the tools
/// list given with them, and the reference answer.
struct Question {
    messages: Vec<Value>,
    tools: Option<Value>,
    reference: String,
}

/// The question of one record.
fn question(record: &Value, opts: &EvalOptions) -> Result<Question, String> {
    let f = &opts.fields;
    expect_object(record)?;
    let explicit = match lookup(record, &opts.answer_field) {
        None => None,
        Some(v) => Some(answer_value(v).ok_or_else(|| {
            format!(
                "field `{}` must be a string or a number, found {}",
                opts.answer_field,
                kind(v)
            )
        })?),
    };
    let (messages, tools, response) = if lookup(record, &f.messages).is_some() {
        // As training renders them: the messages as they are, and their tools list.
        let mut messages = chat_field(record, &f.messages)?;
        let response = match messages.last() {
            Some(last) if last["role"] == "assistant" => messages
                .pop()
                .and_then(|m| m["content"].as_str().map(str::to_string)),
            _ => None,
        };
        if messages.is_empty() {
            return Err(format!("field `{}` has no prompt turn", f.messages));
        }
        (messages, tools_field(record, &f.tools)?, response)
    } else if lookup(record, &f.prompt).is_some() {
        let response = match lookup(record, &f.response) {
            Some(_) => Some(string_field(record, &f.response)?.to_string()),
            None => None,
        };
        (
            prompt_field(record, &f.prompt)?,
            prompt_tools(record, f)?,
            response,
        )
    } else {
        return Err(format!(
            "eval needs a `{}` or a `{}` field (set the names with --prompt-field and friends)",
            f.prompt, f.messages
        ));
    };
    let reference = match (explicit, response) {
        (Some(a), _) => a,
        (None, Some(r)) => answer::extract(&r).ok_or_else(|| {
            format!(
                "no `{}` field, and its response states no answer to compare with",
                opts.answer_field
            )
        })?,
        (None, None) => {
            return Err(format!(
                "no `{}` field and no response to take the reference answer from",
                opts.answer_field
            ))
        }
    };
    Ok(Question {
        messages,
        tools,
        reference,
    })
}

/// Read the test questions of a JSONL or Parquet file.
pub fn load(path: &Path, tok: &Tokenizer, opts: &EvalOptions) -> Result<Vec<Item>, DataError> {
    let mut items = Vec::new();
    for (origin, record) in read_records(path)? {
        if opts.limit.is_some_and(|n| items.len() >= n) {
            break;
        }
        let bad = |msg: String| origin.error(path, msg);
        let Question {
            messages,
            tools,
            reference,
        } = question(&record, opts).map_err(bad)?;
        let rendered = tok
            .render_chat(&messages, tools.as_ref(), true)
            .map_err(|e| bad(e.to_string()))?;
        let ids = tok
            .encode(&rendered, false)
            .map_err(|e| bad(e.to_string()))?;
        if ids.len() > opts.max_length {
            return Err(bad(format!(
                "the prompt is {} tokens, over --max-length {}",
                ids.len(),
                opts.max_length
            )));
        }
        let record = match origin {
            crate::data::Origin::Line(n) | crate::data::Origin::Row(n) => n,
        };
        let prompt = match messages.last().map(|m| &m["content"]) {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        items.push(Item {
            record,
            prompt,
            ids,
            reference,
        });
    }
    if items.is_empty() {
        return Err(DataError::File {
            path: path.into(),
            msg: "no records".into(),
        });
    }
    Ok(items)
}

/// The tokens that end a generation: the config's eos ids, generation_config.json's (what HF
/// `generate` stops on) and the tokenizer's eos.
pub fn stop_tokens(model_dir: &Path, model: &Model, tok: &Tokenizer) -> Vec<u32> {
    let mut stops = model.config.eos_token_ids.clone();
    let gen = std::fs::read_to_string(model_dir.join("generation_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    if let Some(v) = gen.as_ref().and_then(|g| g.get("eos_token_id")) {
        let ids = match v {
            Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
            v => v.as_u64().into_iter().collect::<Vec<_>>(),
        };
        stops.extend(ids.into_iter().map(|i| i as u32));
    }
    stops.extend(tok.eos_token_id());
    stops.sort_unstable();
    stops.dedup();
    stops
}

/// Generate greedily for every item and grade the answers; `progress(done, total, correct)`
/// after each batch. Items are generated for `opts.batch_size` at a time, in order of prompt
/// length (less padding); the report lists them in the given order. The report's `model` and
/// `data` are left for the caller to fill in.
pub fn evaluate(
    model: &Model,
    tok: &Tokenizer,
    items: &[Item],
    stops: &[u32],
    opts: &EvalOptions,
    mut progress: impl FnMut(usize, usize, usize),
) -> models::Result<Report> {
    let started = Instant::now();
    let gen = GenerateOptions {
        max_new_tokens: opts.max_new_tokens,
        min_new_tokens: 0,
        stop_tokens: stops.to_vec(),
    };
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].ids.len());
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    let (mut done, mut correct) = (0, 0);
    for group in order.chunks(opts.batch_size.max(1)) {
        let prompts: Vec<Vec<u32>> = group.iter().map(|&i| items[i].ids.clone()).collect();
        let outs = model.generate_greedy_batch(&prompts, &gen)?;
        for (&i, out) in group.iter().zip(outs) {
            let outcome = grade(&items[i], &out, tok, stops)?;
            correct += outcome.correct as usize;
            outcomes[i] = Some(outcome);
        }
        done += group.len();
        progress(done, items.len(), correct);
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();
    let n = outcomes.len();
    Ok(Report {
        model: PathBuf::new(),
        data: PathBuf::new(),
        examples: n,
        correct,
        accuracy: correct as f64 / n.max(1) as f64,
        no_answer: outcomes.iter().filter(|o| o.predicted.is_none()).count(),
        max_new_tokens: opts.max_new_tokens,
        tokens_generated: outcomes.iter().map(|o| o.tokens).sum(),
        seconds: started.elapsed().as_secs_f64(),
        items: outcomes,
    })
}

/// The outcome of `item` given its generated tokens `out`.
fn grade(item: &Item, out: &[u32], tok: &Tokenizer, stops: &[u32]) -> models::Result<Outcome> {
    let stopped = out.last().is_some_and(|t| stops.contains(t));
    let output = tok.decode(out, true)?;
    let predicted = answer::extract(&output);
    let ok = predicted
        .as_deref()
        .is_some_and(|p| answer::matches(p, &item.reference));
    Ok(Outcome {
        record: item.record,
        prompt: item.prompt.clone(),
        reference: item.reference.clone(),
        output,
        predicted,
        correct: ok,
        tokens: out.len(),
        stopped,
    })
}
