//! The continuum experiment (examples/continuum) end to end on lavapipe with SmolLM2-135M at
//! a toy size, as a test of the pipeline, not of the paper's claim: for each domain the data
//! is generated, diagnosed, the base model evaluated, then trained with alpha 0, 1 and 10
//! (one step each) and evaluated; the table and the plot are written. The real comparison
//! runs on a GPU (examples/continuum/README.md).

use continuum::gen::Domain;
use continuum::run::{run, RunConfig};

#[test]
fn continuum_pipeline_runs_end_to_end_on_smollm2() {
    let out = tempfile::tempdir().unwrap();
    let config = RunConfig {
        trainer: env!("CARGO_BIN_EXE_trainer").into(),
        model: "smollm2-135m-instruct".into(),
        out: out.path().to_path_buf(),
        domains: Domain::ALL.to_vec(),
        train: 2,
        test: 1,
        steps: 1,
        lr: 1e-5,
        batch_size: 1,
        max_new_tokens: 8,
        seed: 0,
        label_noise: 0.0,
        alphas: vec![0.0, 1.0, 10.0],
        keep_checkpoints: false,
    };
    let results = run(&config).unwrap();
    assert_eq!(results.domains.len(), 3);
    for d in &results.domains {
        // The diagnostic's mean p is a probability, and the model finds arithmetic more
        // likely than reading ASCII art (the ends of the paper's continuum).
        assert!(d.mean_prob > 0.0 && d.mean_prob < 1.0, "{}", d.domain);
        assert_eq!(d.alphas.len(), 3);
        for a in d.alphas.iter().map(|a| &a.eval).chain([&d.base]) {
            assert_eq!(a.examples, 1, "{}", d.domain);
            assert!(a.report.exists());
        }
        for a in &d.alphas {
            // Trained, evaluated, then deleted (the run keeps no checkpoints by default).
            assert!(a.output.join("metrics.jsonl").exists());
            assert!(!a.output.join("final").exists());
        }
    }
    let p = |name: &str| {
        results
            .domains
            .iter()
            .find(|d| d.domain == name)
            .unwrap()
            .mean_prob
    };
    assert!(
        p("arithmetic") > p("figlet"),
        "{} vs {}",
        p("arithmetic"),
        p("figlet")
    );
    for f in ["results.json", "results.md", "results.svg"] {
        assert!(out.path().join(f).exists(), "{f}");
    }
}

/// The puzzles' evaluations stop at 16 new tokens (`Domain::max_new_tokens`): every answer the
/// generators can write, and the end of the turn after it, fits that in both models'
/// tokenizers.
#[test]
fn puzzle_answers_fit_their_generation_budget() {
    for name in ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"] {
        let dir = models::trainer_cache().join("models").join(name);
        let tok = models::Tokenizer::from_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}: run `python3 scripts/fetch_models.py`"));
        for domain in [Domain::Figlet, Domain::Sudoku] {
            let budget = domain.max_new_tokens(usize::MAX);
            let records = domain.generate(2000, 3).unwrap();
            let longest = records
                .iter()
                .map(|r| tok.encode(&r.response, false).unwrap().len() + 1)
                .max()
                .unwrap();
            assert!(longest <= budget, "{name} {domain}: {longest} tokens");
        }
        assert_eq!(Domain::Arithmetic.max_new_tokens(300), 300);
    }
}
