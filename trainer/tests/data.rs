//! The three data shapes tokenized with a real tokenizer and chat template (SmolLM2's): ids
//! equal to the template rendered and tokenized, loss exactly on the response / assistant
//! tokens, truncation counted, and every bad record named by file and line.

use std::io::Write;
use std::path::{Path, PathBuf};

use models::{Message, Tokenizer};
use trainer::data::{load, load_files, DataOptions, Fields, Shape, Truncation};

fn tokenizer() -> Tokenizer {
    tokenizer_of("smollm2-135m-instruct")
}

/// The tokenizer of a real test model (`scripts/fetch_models.py` fetches them).
fn tokenizer_of(name: &str) -> Tokenizer {
    let dir: PathBuf = models::trainer_cache().join("models").join(name);
    Tokenizer::from_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}: run `python3 scripts/fetch_models.py`"))
}

fn opts(max_length: usize) -> DataOptions {
    DataOptions {
        shape: Shape::Auto,
        fields: Fields::default(),
        max_length,
        truncation: Truncation::Right,
    }
}

fn file(lines: &[&str]) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f
}

#[test]
fn prompt_response_loss_is_on_response_and_eos() {
    let tok = tokenizer();
    let f = file(&[r#"{"prompt": "What is 2+3?", "response": "5"}"#]);
    let ds = load(f.path(), &tok, &opts(512)).unwrap();
    let ex = &ds.examples[0];
    let prompt = tok
        .apply_chat_template(&[Message::new("user", "What is 2+3?")], true)
        .unwrap();
    let p = tok.encode(&prompt, false).unwrap();
    let r = tok.encode("5<|im_end|>", false).unwrap();
    assert_eq!(ex.ids, [p.clone(), r.clone()].concat());
    let want: Vec<bool> = (0..ex.ids.len()).map(|i| i >= p.len()).collect();
    assert_eq!(ex.loss, want);
    assert_eq!(*ex.ids.last().unwrap(), tok.eos_token_id().unwrap());
    assert_eq!(ds.loss_tokens(), r.len());
}

#[test]
fn messages_loss_is_on_assistant_turns() {
    let tok = tokenizer();
    let f = file(&[
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Add 2 and 2."}, {"role": "assistant", "content": "4"}]}"#,
    ]);
    let ds = load(f.path(), &tok, &opts(512)).unwrap();
    let ex = &ds.examples[0];
    let text = tok.decode(&ex.ids, false).unwrap();
    // The loss tokens decode to exactly the two assistant turns with their end markers.
    let loss_text: String = ex
        .ids
        .iter()
        .zip(&ex.loss)
        .filter(|(_, &l)| l)
        .map(|(&id, _)| tok.decode(&[id], false).unwrap())
        .collect();
    assert_eq!(loss_text, "Hello!<|im_end|>\n4<|im_end|>\n", "in {text:?}");
}

#[test]
fn text_loss_is_on_every_token_but_the_first() {
    let tok = tokenizer();
    let f = file(&[r#"{"text": "The quick brown fox"}"#]);
    let ex = &load(f.path(), &tok, &opts(512)).unwrap().examples[0];
    assert!(!ex.loss[0] && ex.loss[1..].iter().all(|&l| l));
    assert_eq!(*ex.ids.last().unwrap(), tok.eos_token_id().unwrap());
}

#[test]
fn truncation_and_dropping_are_counted() {
    let tok = tokenizer();
    let long = "word ".repeat(200);
    let f = file(&[
        &format!(r#"{{"prompt": "Say it.", "response": "{long}"}}"#),
        &format!(r#"{{"prompt": "{long}", "response": "ok"}}"#),
        r#"{"prompt": "Hi", "response": "Hello"}"#,
    ]);
    let ds = load(f.path(), &tok, &opts(64)).unwrap();
    assert_eq!((ds.examples.len(), ds.truncated, ds.dropped), (2, 2, 1));
    assert!(ds.examples.iter().all(|e| e.ids.len() <= 64));

    // Left truncation keeps the last 64 tokens: the long prompt's record keeps its response
    // (no longer dropped), and every record is the tail of its whole form.
    let whole = load(f.path(), &tok, &opts(4096)).unwrap();
    let left = DataOptions {
        truncation: Truncation::Left,
        ..opts(64)
    };
    let ds = load(f.path(), &tok, &left).unwrap();
    assert_eq!((ds.examples.len(), ds.truncated, ds.dropped), (3, 2, 0));
    for (cut, full) in ds.examples.iter().zip(&whole.examples) {
        let n = cut.ids.len();
        assert_eq!(n, full.ids.len().min(64));
        assert_eq!(cut.ids[..], full.ids[full.ids.len() - n..]);
        // The first token kept is predicted from nothing; the rest keep their loss.
        assert!(!cut.loss[0]);
        assert_eq!(cut.loss[1..], full.loss[full.loss.len() - n + 1..]);
    }
}

#[test]
fn bad_records_name_file_and_line() {
    let tok = tokenizer();
    let cases: &[(&[&str], &str)] = &[
        (
            &[r#"{"prompt": "a", "response": "b"}"#, "{not json"],
            ":2: not valid JSON",
        ),
        (&[r#"{"prompt": "a"}"#], ":1: missing field `response`"),
        (
            &[r#"{"prompt": 3, "response": "b"}"#],
            ":1: field `prompt` must be a string or a list of {\"role\", \"content\"} objects, found a number",
        ),
        (
            &[r#"{"other": 1}"#],
            ":1: no `messages`, `prompt` or `text` field",
        ),
        (&[r#"{"messages": []}"#], ":1: field `messages` is empty"),
        (
            &[r#"{"messages": {"role": "user"}}"#],
            ":1: field `messages` must be a list",
        ),
        // No content: the template is given the message as it is, and SmolLM2's cannot
        // render it (neither can HF's).
        (
            &[r#"{"messages": [{"role": "user"}]}"#],
            ":1: chat template: render:",
        ),
        (&[r#"[1, 2]"#], ":1: a record must be a JSON object"),
        (&[""], "no records"),
        (
            &[r#"{"messages": [{"role": "user", "content": "hi"}]}"#],
            "none of its 1 records has a loss token",
        ),
    ];
    for (lines, want) in cases {
        let f = file(lines);
        let err = load(f.path(), &tok, &opts(512)).unwrap_err().to_string();
        assert!(err.starts_with(&f.path().display().to_string()), "{err}");
        assert!(err.contains(want), "expected {want:?} in {err}");
    }
    let err = load(
        std::path::Path::new("/nonexistent/train.jsonl"),
        &tok,
        &opts(512),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/train.jsonl"), "{err}");
}

#[test]
fn custom_field_names() {
    let tok = tokenizer();
    let f = file(&[r#"{"question": "Q?", "answer": "A."}"#]);
    let fields = Fields {
        prompt: "question".into(),
        response: "answer".into(),
        ..Fields::default()
    };
    let ds = load(
        f.path(),
        &tok,
        &DataOptions {
            shape: Shape::PromptResponse,
            fields,
            max_length: 128,
            truncation: Truncation::Right,
        },
    )
    .unwrap();
    assert_eq!(ds.examples.len(), 1);
}

#[test]
fn parquet_files_read_like_jsonl() {
    let tok = tokenizer();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data");
    let jsonl = load(&fixtures.join("tiny_sft.jsonl"), &tok, &opts(512)).unwrap();
    let pq = load(&fixtures.join("tiny_sft.parquet"), &tok, &opts(512)).unwrap();
    let msgs = load(&fixtures.join("tiny_messages.parquet"), &tok, &opts(512)).unwrap();
    // The Parquet files hold the JSONL file's three prompt/response records and its chat.
    assert_eq!(pq.examples[..], jsonl.examples[..3]);
    assert_eq!(msgs.examples[..], jsonl.examples[3..]);
    let err = load(&fixtures.join("wrong_columns.parquet"), &tok, &opts(512))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong_columns.parquet: row 1: no `messages`, `prompt` or `text` field"),
        "{err}"
    );
    let not_parquet = tempfile::Builder::new()
        .suffix(".parquet")
        .tempfile()
        .unwrap();
    std::fs::write(not_parquet.path(), b"PAR1 but not really").unwrap();
    let err = load(not_parquet.path(), &tok, &opts(512))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a readable Parquet file"), "{err}");
}

/// Qwen2.5's tokenizer and HF's renderings of the tool-calling chats (fixture of
/// tests/scripts/make_tokenizer_references.py).
fn qwen_tool_chats() -> (Tokenizer, Vec<serde_json::Value>) {
    let name = "qwen2.5-coder-0.5b-instruct";
    let tok = tokenizer_of(name);
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/fixtures/hf/tokenizer_{name}.json"));
    let mut refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let serde_json::Value::Array(chats) = refs["tool_chats"].take() else {
        panic!("no tool_chats in the fixture");
    };
    (tok, chats)
}

#[test]
fn tool_calls_and_tools_reach_the_template_as_hf_renders_them() {
    // A tool-calling conversation (an assistant turn of tool calls with null content, tool
    // results) with a tools list, as HF renders and tokenizes it for Qwen2.5 (fixture of
    // tests/scripts/make_tokenizer_references.py).
    let (tok, chats) = qwen_tool_chats();
    let case = chats
        .iter()
        .find(|c| !c["tools"].is_null() && c["add_generation_prompt"] == false)
        .unwrap();
    let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
    let rendered = case["rendered"].as_str().unwrap();
    // The assistant turns of HF's text: from after each assistant header to its end marker.
    let mut turns = String::new();
    for part in rendered.split("<|im_start|>assistant\n").skip(1) {
        let end = part.find("<|im_end|>\n").unwrap() + "<|im_end|>\n".len();
        turns.push_str(&part[..end]);
    }
    let tools_as_text = serde_json::Value::String(case["tools"].to_string());
    for tools in [case["tools"].clone(), tools_as_text] {
        let record = serde_json::json!({"messages": case["messages"], "tools": tools});
        let f = file(&[&record.to_string()]);
        let ex = &load(f.path(), &tok, &opts(4096)).unwrap().examples[0];
        assert_eq!(ex.ids, want);
        // The loss tokens, span by span, decode to exactly the assistant turns.
        let mut loss_text = String::new();
        let mut span = Vec::new();
        for (i, (&id, &l)) in ex.ids.iter().zip(&ex.loss).enumerate() {
            if l {
                span.push(id);
            }
            if (!l || i + 1 == ex.ids.len()) && !span.is_empty() {
                loss_text.push_str(&tok.decode(&span, false).unwrap());
                span.clear();
            }
        }
        assert_eq!(loss_text, turns);
    }
    for (record, says) in [
        (
            r#"{"messages": [{"role": "user", "content": "Hi"}], "tools": 5}"#,
            "field `tools`",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "Hi"}], "tools": "[oops"}"#,
            "not JSON",
        ),
        (r#"{"messages": [{"content": "Hi"}]}"#, "message 0"),
        (
            r#"{"messages": [{"role": "user", "content": 3}]}"#,
            "message 0",
        ),
    ] {
        let f = file(&[record]);
        let e = load(f.path(), &tok, &opts(512)).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(":1:"), "{e}");
    }
}

#[test]
fn eval_prompts_with_tool_calls_render_as_hf_renders_them() {
    // `trainer eval` renders a chat record's prompt as training does: the second tool chat of
    // the fixture ends with a user turn, so all of it is the prompt, with the generation
    // header, tools and all.
    let (tok, chats) = qwen_tool_chats();
    let case = chats
        .iter()
        .find(|c| {
            !c["tools"].is_null()
                && c["add_generation_prompt"] == true
                && c["messages"].as_array().unwrap().last().unwrap()["role"] == "user"
        })
        .unwrap();
    let record =
        serde_json::json!({"messages": case["messages"], "tools": case["tools"], "answer": "ok"});
    let f = file(&[&record.to_string()]);
    let opts = trainer::eval::EvalOptions {
        fields: Fields::default(),
        answer_field: "answer".into(),
        max_length: 4096,
        max_new_tokens: 1,
        limit: None,
        batch_size: 1,
    };
    let items = trainer::eval::load(f.path(), &tok, &opts).unwrap();
    let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
    assert_eq!(items[0].ids, want);
    assert_eq!(
        (items[0].prompt.as_str(), items[0].reference.as_str()),
        ("Thanks", "ok")
    );
}

/// Shards of one dataset: their examples in the order given (a JSONL file and a Parquet one
/// here), their counts summed, and an error in a later file named by that file and its line.
#[test]
fn several_files_are_one_dataset_in_order() {
    let tok = tokenizer();
    let jsonl = file(&[
        r#"{"prompt": "What is 2+3?", "response": "5"}"#,
        &format!(
            r#"{{"prompt": "Say it.", "response": "{}"}}"#,
            "word ".repeat(20)
        ),
    ]);
    let parquet =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data/tiny_sft.parquet");
    // Long enough for the first record, not for the second.
    let first = load(jsonl.path(), &tok, &opts(512)).unwrap().examples[0]
        .ids
        .len();
    let o = opts(first + 2);
    let (a, b) = (
        load(jsonl.path(), &tok, &o).unwrap(),
        load(&parquet, &tok, &o).unwrap(),
    );
    let both = load_files(&[jsonl.path().to_path_buf(), parquet.clone()], &tok, &o).unwrap();
    let ids = |ds: &trainer::data::Dataset| -> Vec<(Vec<u32>, Vec<bool>)> {
        ds.examples
            .iter()
            .map(|e| (e.ids.clone(), e.loss.clone()))
            .collect()
    };
    assert_eq!(ids(&both), [ids(&a), ids(&b)].concat());
    assert_eq!(
        (both.truncated, both.dropped),
        (a.truncated + b.truncated, a.dropped + b.dropped)
    );
    assert!(
        both.truncated > 0,
        "the cut records are counted across files"
    );
    assert!(both.name().ends_with("and 1 more files"), "{}", both.name());

    // The error of reading these two files together.
    let error_of = |a: &Path, b: &Path| {
        load_files(&[a.to_path_buf(), b.to_path_buf()], &tok, &o)
            .unwrap_err()
            .to_string()
    };
    let bad = file(&[r#"{"prompt": "a", "response": "b"}"#, "{not json"]);
    let err = error_of(jsonl.path(), bad.path());
    assert!(
        err.starts_with(&format!("{}:2: not valid JSON", bad.path().display())),
        "{err}"
    );
    let (empty1, empty2) = (file(&[""]), file(&[""]));
    let err = error_of(empty1.path(), empty2.path());
    assert!(err.contains("and 1 more files: no records"), "{err}");
}

/// Records are tokenized on every core; the examples keep the file's order (each equal to its
/// record tokenized alone), and the first bad record in that order is the one named.
#[test]
fn examples_keep_the_file_order() {
    let tok = tokenizer();
    let lines: Vec<String> = (0..61)
        .map(|i| {
            format!(
                r#"{{"prompt": "What is {i} + {i}?", "response": "{}"}}"#,
                2 * i
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let o = opts(512);
    let ds = load(file(&refs).path(), &tok, &o).unwrap();
    assert_eq!(ds.examples.len(), lines.len());
    for (line, ex) in lines.iter().zip(&ds.examples) {
        let alone =
            trainer::data::tokenize(&serde_json::from_str(line).unwrap(), &tok, &o).unwrap();
        assert_eq!((&ex.ids, &ex.loss), (&alone.ids, &alone.loss), "{line}");
    }
    let mut bad = refs.clone();
    bad[45] = r#"{"prompt": 1, "response": "b"}"#;
    bad[50] = "{not json";
    bad[20] = r#"{"prompt": "a"}"#;
    let f = file(&bad);
    // (lines parse before any record is tokenized, as they always did)
    let err = load(f.path(), &tok, &o).unwrap_err().to_string();
    assert!(err.contains(":51: not valid JSON"), "{err}");
    bad[50] = refs[50];
    let f = file(&bad);
    let err = load(f.path(), &tok, &o).unwrap_err().to_string();
    assert!(err.contains(":21: missing field `response`"), "{err}");
}

/// verl's own GSM8K files (tests/scripts/make_verl_references.py writes them in the shape its
/// preprocessing gives and records what verl makes of them with HF's tokenizer): the SFT
/// example's nested fields (`--prompt-field extra_info.question`, verl's prompt_dict_keys)
/// give verl's ids and loss exactly, and the RL `prompt` messages with
/// `--answer-field reward_model.ground_truth` give HF's rendered eval prompt and the answer.
#[test]
fn verl_gsm8k_files_read_as_verl_reads_them() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data/verl_gsm8k.parquet");
    for name in ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"] {
        let tok = tokenizer_of(name);
        let refs = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../tests/fixtures/hf/verl_{name}.json"));
        let refs: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(refs).unwrap()).unwrap();
        let fields = Fields {
            prompt: "extra_info.question".into(),
            response: "extra_info.answer".into(),
            ..Fields::default()
        };
        let sft = DataOptions {
            fields: fields.clone(),
            ..opts(1024)
        };
        let ds = load(&path, &tok, &sft).unwrap();
        let want = refs["sft"].as_array().unwrap();
        assert_eq!(ds.examples.len(), want.len());
        for (i, (ex, w)) in ds.examples.iter().zip(want).enumerate() {
            let ids: Vec<u32> = serde_json::from_value(w["ids"].clone()).unwrap();
            let loss: Vec<bool> = serde_json::from_value(w["loss"].clone()).unwrap();
            assert_eq!(ex.ids, ids, "{name} record {i}: ids");
            assert_eq!(ex.loss, loss, "{name} record {i}: loss");
        }

        let eval = trainer::eval::EvalOptions {
            fields: Fields::default(),
            answer_field: "reward_model.ground_truth".into(),
            max_length: 1024,
            max_new_tokens: 1,
            limit: None,
            batch_size: 1,
        };
        let items = trainer::eval::load(&path, &tok, &eval).unwrap();
        let want = refs["eval"].as_array().unwrap();
        assert_eq!(items.len(), want.len());
        for (i, (item, w)) in items.iter().zip(want).enumerate() {
            let ids: Vec<u32> = serde_json::from_value(w["ids"].clone()).unwrap();
            assert_eq!(item.ids, ids, "{name} record {i}: eval prompt");
            assert_eq!(item.reference, w["reference"].as_str().unwrap());
        }
    }
}

/// Field paths: a key that holds the dot is taken first, then the path through objects and
/// list indices; a path that leads nowhere is named in the error, and null counts as absent
/// (Parquet's way of saying so) when the shape is decided.
#[test]
fn field_paths_reach_into_nested_records() {
    let tok = tokenizer();
    let with = |prompt: &str, response: &str| DataOptions {
        fields: Fields {
            prompt: prompt.into(),
            response: response.into(),
            ..Fields::default()
        },
        ..opts(512)
    };
    let flat = file(&[r#"{"prompt": "What is 2+3?", "response": "5"}"#]);
    let want = load(flat.path(), &tok, &opts(512)).unwrap().examples;
    let nested =
        file(&[r#"{"q": {"turns": [{"text": "What is 2+3?"}]}, "a.b": "5", "a": {"b": "wrong"}}"#]);
    let got = load(nested.path(), &tok, &with("q.turns.0.text", "a.b")).unwrap();
    assert_eq!(got.examples, want);

    let f = file(&[r#"{"q": {"turns": []}, "a": "5"}"#]);
    let e = |shape| {
        let o = DataOptions {
            shape,
            ..with("q.turns.0.text", "a")
        };
        load(f.path(), &tok, &o).unwrap_err().to_string()
    };
    let named = e(Shape::PromptResponse);
    assert!(
        named.contains(":1: missing field `q.turns.0.text`"),
        "{named}"
    );
    let auto = e(Shape::Auto);
    assert!(
        auto.contains(":1: no `messages`, `q.turns.0.text` or `text` field"),
        "{auto}"
    );

    // A Parquet file with both a messages and a prompt column has null in the one a row
    // does not use: that row is read in the shape of the other.
    let mixed = file(&[r#"{"messages": null, "prompt": "What is 2+3?", "response": "5"}"#]);
    assert_eq!(load(mixed.path(), &tok, &opts(512)).unwrap().examples, want);
}

/// A prompt may be a list of messages (verl's RL files keep it so): the conversation up to
/// the response, a system turn included, rendered with the generation prompt as the
/// messages shape renders the same chat.
#[test]
fn prompt_lists_are_the_conversation_before_the_response() {
    let tok = tokenizer();
    let chat = r#"[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "What is 2+3?"}]"#;
    let listed = file(&[&format!(r#"{{"prompt": {chat}, "response": "5"}}"#)]);
    let got = load(listed.path(), &tok, &opts(512)).unwrap();
    let as_chat = file(&[&format!(
        r#"{{"messages": {}, {{"role": "assistant", "content": "5"}}]}}"#,
        &chat[..chat.len() - 1]
    )]);
    let want = load(as_chat.path(), &tok, &opts(512)).unwrap();
    // The chat form also ends its assistant turn with the template's newline, after eos.
    let n = got.examples[0].ids.len();
    assert_eq!(got.examples[0].ids[..], want.examples[0].ids[..n]);
    assert_eq!(got.examples[0].loss[..], want.examples[0].loss[..n]);
    assert!(got.examples[0].loss.iter().filter(|&&l| l).count() >= 2);

    // A string prompt is one user turn as verl renders it, without tools (whatever is in a
    // `tools` field); a conversation takes its tools list, so a bad one is an error there.
    let bad_tools = r#""tools": "not json""#;
    let f = file(&[&format!(
        r#"{{"prompt": "What is 2+3?", "response": "5", {bad_tools}}}"#
    )]);
    let flat = file(&[r#"{"prompt": "What is 2+3?", "response": "5"}"#]);
    assert_eq!(
        load(f.path(), &tok, &opts(512)).unwrap().examples,
        load(flat.path(), &tok, &opts(512)).unwrap().examples
    );
    let f = file(&[&format!(
        r#"{{"prompt": {chat}, "response": "5", {bad_tools}}}"#
    )]);
    let e = load(f.path(), &tok, &opts(512)).unwrap_err().to_string();
    assert!(e.contains("field `tools`"), "{e}");
    for (prompt, says) in [
        ("[]", "field `prompt` is an empty list"),
        ("7", "field `prompt` must be a string or a list of"),
        (r#"[{"content": "no role"}]"#, "field `prompt`, message 0"),
    ] {
        let f = file(&[&format!(r#"{{"prompt": {prompt}, "response": "5"}}"#)]);
        let e = load(f.path(), &tok, &opts(512)).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(":1:"), "{e}");
    }
}
