//! The three data shapes tokenized with a real tokenizer and chat template (SmolLM2's): ids
//! equal to the template rendered and tokenized, loss exactly on the response / assistant
//! tokens, truncation counted, and every bad record named by file and line.

use std::io::Write;
use std::path::PathBuf;

use models::{Message, Tokenizer};
use trainer::data::{load, DataOptions, Fields, Shape, Truncation};

fn tokenizer() -> Tokenizer {
    let dir: PathBuf = models::trainer_cache().join("models/smollm2-135m-instruct");
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
            ":1: field `prompt` must be a string, found a number",
        ),
        (
            &[r#"{"other": 1}"#],
            ":1: no `messages`, `prompt` or `text` field",
        ),
        (&[r#"{"messages": []}"#], ":1: field `messages` is empty"),
        (
            &[r#"{"messages": [{"role": "user"}]}"#],
            ":1: field `messages` must be a list",
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
