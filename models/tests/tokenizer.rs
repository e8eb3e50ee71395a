//! Token ids and chat-template renderings identical to HF transformers' for both real test
//! models, chats with tool calls and tools lists included (fixtures recorded by
//! tests/scripts/make_tokenizer_references.py).

mod common;
use common::*;

use models::{Message, Tokenizer};

fn check_model(name: &str) {
    let tok = Tokenizer::from_dir(&model_dir(name)).unwrap();
    let refs = read_json(&format!("hf/tokenizer_{name}.json"));
    let mut checked = 0;
    for case in refs["texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let special = case["add_special_tokens"].as_bool().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let got = tok.encode(text, special).unwrap();
        assert_eq!(
            got, want,
            "{name}: ids of {text:?} (add_special_tokens={special})"
        );
        checked += 1;
    }
    for case in refs["chats"].as_array().unwrap() {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let gen = case["add_generation_prompt"].as_bool().unwrap();
        let rendered = tok.apply_chat_template(&messages, gen).unwrap();
        assert_eq!(
            rendered,
            case["rendered"].as_str().unwrap(),
            "{name}: chat template of {messages:?}"
        );
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            tok.encode(&rendered, false).unwrap(),
            want,
            "{name}: chat ids"
        );
        checked += 1;
    }
    // Chats with tool calls (null content), tool results and a tools list: the same text,
    // or, where HF's template cannot render them, an error too.
    for case in refs["tool_chats"].as_array().unwrap() {
        let messages = case["messages"].as_array().unwrap();
        let tools = Some(&case["tools"]).filter(|t| !t.is_null());
        let gen = case["add_generation_prompt"].as_bool().unwrap();
        let got = tok.render_chat(messages, tools, gen);
        match case.get("rendered") {
            Some(want) => {
                let rendered = got.unwrap();
                assert_eq!(
                    rendered,
                    want.as_str().unwrap(),
                    "{name}: tool chat, tools: {}",
                    tools.is_some()
                );
                let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
                assert_eq!(tok.encode(&rendered, false).unwrap(), want, "{name}: ids");
            }
            None => assert!(
                got.is_err(),
                "{name}: HF failed ({}) but we rendered",
                case["error"]
            ),
        }
        checked += 1;
    }
    assert!(checked >= 28, "{name}: only {checked} cases");
    let eos = tok.eos_token_id().expect("eos token");
    assert_eq!(tok.decode(&[eos], false).unwrap(), tok.eos_token().unwrap());
}

#[test]
fn smollm2_tokenizer_matches_hf() {
    check_model(SMOLLM2);
}

#[test]
fn qwen_tokenizer_matches_hf() {
    check_model(QWEN);
}

#[test]
fn missing_or_broken_tokenizer_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_dir(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("missing"),
        "{err}"
    );
    std::fs::write(dir.path().join("tokenizer.json"), "{not json").unwrap();
    let err = Tokenizer::from_dir(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("does not parse"),
        "{err}"
    );
}

/// A chat template that does not parse is an error at each render (the compiled template is
/// kept after the first render, and so is this error); a template that parses is rendered
/// with its variables.
#[test]
fn broken_chat_template_is_an_error_at_each_render() {
    let dir = tempfile::tempdir().unwrap();
    let real = models::trainer_cache().join("models/smollm2-135m-instruct");
    std::fs::copy(
        real.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .expect("run `python3 scripts/fetch_models.py`");
    let template = dir.path().join("chat_template.jinja");
    let hi = [Message::new("user", "hi")];
    std::fs::write(&template, "{% for m in messages %}{{ m.content }}").unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    for _ in 0..2 {
        let err = tok.apply_chat_template(&hi, false).unwrap_err().to_string();
        assert!(err.contains("does not parse"), "{err}");
    }
    std::fs::write(
        &template,
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    )
    .unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    for gen in [true, false, true] {
        let want = if gen {
            "<user>hi<assistant>"
        } else {
            "<user>hi"
        };
        assert_eq!(tok.apply_chat_template(&hi, gen).unwrap(), want);
    }
}
