//! Criterion bench: reading an SFT dataset, every record's chat rendered through the model's
//! template and tokenized (`trainer::data::load`), on the CPU with the real tokenizers of the
//! two test models (`scripts/fetch_models.py`; a model not fetched is skipped). 2,000
//! generated records: half prompt/response, half five-turn chats with a system prompt (two
//! assistant turns, each located by rendering the conversation's prefixes).
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use trainer::data::{load, DataOptions, Fields, Shape, Truncation};

const RECORDS: usize = 2000;

/// The records as JSONL, deterministic.
fn write_records(path: &Path) {
    let mut text = String::new();
    for i in 0..RECORDS {
        let (a, b) = (i * 37 % 997 + 1, i * 91 % 991 + 1);
        let record = if i % 2 == 1 {
            serde_json::json!({
                "prompt": format!("What is {a} plus {b}? Show your work step by step."),
                "response": format!("We add {a} and {b}: {a} + {b} = {}. The answer is {}.", a + b, a + b),
            })
        } else {
            serde_json::json!({"messages": [
                {"role": "system", "content": "You are a careful math tutor."},
                {"role": "user", "content": format!("Compute {a} * {b}.")},
                {"role": "assistant", "content": format!("{a} times {b} is {}.", a * b)},
                {"role": "user", "content": "And plus 1?"},
                {"role": "assistant", "content": format!("{}.", a * b + 1)},
            ]})
        };
        text.push_str(&record.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).expect("write the records");
}

fn bench(c: &mut Criterion) {
    let path: PathBuf =
        std::env::temp_dir().join(format!("trainer-bench-data-{}.jsonl", std::process::id()));
    write_records(&path);
    let opts = DataOptions {
        shape: Shape::Auto,
        fields: Fields::default(),
        max_length: 2048,
        truncation: Truncation::Right,
    };
    let mut g = c.benchmark_group("data");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS as u64));
    for name in ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"] {
        let dir = models::trainer_cache().join("models").join(name);
        let Ok(tok) = models::Tokenizer::from_dir(&dir) else {
            eprintln!(
                "skipped {name}: not in {} (scripts/fetch_models.py)",
                dir.display()
            );
            continue;
        };
        g.bench_function(format!("load {RECORDS} records, {name}"), |b| {
            b.iter(|| load(&path, &tok, &opts).expect("load"))
        });
    }
    g.finish();
    std::fs::remove_file(&path).ok();
}

criterion_group!(benches, bench);
criterion_main!(benches);
