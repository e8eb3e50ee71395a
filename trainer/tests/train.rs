//! `trainer` end to end on lavapipe: a tiny random model (SmolLM2's tokenizer and chat
//! template, 2 layers of width 64) memorises a small SFT file, its loss falling over 30 steps,
//! and leaves an HF checkpoint that reloads with the trained weights; and the real SmolLM2 runs
//! two steps of alpha = 1.

mod common;

use std::path::Path;

use common::{device, metrics, repo, smollm2, tiny_model, train_ok, train_on, train_tiny, trainer};
use models::{Config, Model, Weights};

#[test]
fn tiny_model_loss_falls_and_checkpoint_reloads() {
    let (_tmp, model_dir, out) = train_tiny(&[
        "--alpha",
        "0",
        "--steps",
        "30",
        "--batch-size",
        "4",
        "--lr",
        "1e-2",
    ]);
    let m = metrics(&out);
    assert_eq!(m.len(), 30);
    let svg = std::fs::read_to_string(out.join("training.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2);
    let loss = |i: usize| m[i]["loss"].as_f64().unwrap();
    let first = loss(0);
    let last = (27..30).map(loss).sum::<f64>() / 3.0;
    eprintln!("loss {first:.3} -> {last:.3}");
    // ln(49152) = 10.8 at random init; memorising 51 tokens must take it well down.
    assert!(first > 9.0 && last < 0.5 * first, "loss {first} -> {last}");
    // Warmup (3 steps) then cosine: lr rises, peaks, and ends near 0.
    let lr: Vec<f64> = m.iter().map(|x| x["lr"].as_f64().unwrap()).collect();
    assert_eq!(lr[0], 0.0);
    assert!((lr[3] - 1e-2).abs() < 1e-9 && lr[29] < 1e-4);

    // The checkpoint holds the trained weights: reloaded, its loss on the data matches the end.
    let ckpt = out.join("final");
    let config = Config::from_file(&ckpt.join("config.json")).unwrap();
    let trained = Model::new(
        &config,
        &Weights::from_dir(&device(), &ckpt).unwrap(),
        false,
    )
    .unwrap();
    let before = Model::new(
        &config,
        &Weights::from_dir(&device(), &model_dir).unwrap(),
        false,
    )
    .unwrap();
    let ids: Vec<u32> = vec![1, 504, 3426, 282, 260, 2];
    let l_trained = trained.forward(&ids, 1, 6).unwrap().to_vec().unwrap();
    let l_before = before.forward(&ids, 1, 6).unwrap().to_vec().unwrap();
    assert_ne!(
        l_trained, l_before,
        "the saved checkpoint must hold the trained weights"
    );
}

#[test]
fn recomputation_and_f16_follow_the_f32_run() {
    let args = ["--steps", "8", "--batch-size", "4", "--lr", "1e-2"];
    let losses = |extra: &[&str]| -> (Vec<serde_json::Value>, Vec<f64>) {
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        let (_tmp, _, out) = train_tiny(&all);
        let m = metrics(&out);
        let l = m.iter().map(|x| x["loss"].as_f64().unwrap()).collect();
        (m, l)
    };
    let (plain_m, plain) = losses(&["--precision", "f32"]);
    assert!(plain_m[0].get("loss_scale").is_none());
    // Recomputation changes what is kept, not what is computed.
    let (re_m, recomputed) = losses(&["--precision", "f32", "--recompute"]);
    for (i, (a, b)) in plain.iter().zip(&recomputed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "step {}: {a} vs {b}",
            i + 1
        );
    }
    assert!(re_m[7]["gpu_peak_mib"].as_f64().unwrap() > 0.0);
    // f16 products with loss scaling (attention as f16 matmul blocks, as on a GPU with
    // cooperative matrices): the same run within f16 rounding.
    let (half_m, half) = losses(&["--precision", "f16", "--recompute", "--attention", "blocks"]);
    assert_eq!(half_m[0]["loss_scale"].as_f64(), Some(65536.0));
    eprintln!("f32 {plain:?}\nf16 {half:?}");
    for (i, (a, b)) in plain.iter().zip(&half).enumerate() {
        assert!(
            (a - b).abs() <= 5e-3 * a.abs(),
            "step {}: {a} vs {b}",
            i + 1
        );
    }
    assert!(half[7] < 0.8 * half[0], "f16 loss {half:?}");
}

#[test]
fn f16_overflow_halves_the_loss_scale_and_skips_only_those_steps() {
    // Starting at 2^24, the scaled gradients overflow f16 (max 65504) until the scale has
    // come down: those steps are skipped (not counted as bad steps), each halving it.
    let (_tmp, _, out) = train_tiny(&[
        "--steps",
        "24",
        "--batch-size",
        "2",
        "--lr",
        "1e-2",
        "--precision",
        "f16",
        "--loss-scale",
        "16777216",
        "--max-bad-steps",
        "1",
    ]);
    let m = metrics(&out);
    assert_eq!(m.len(), 24);
    let overflows: Vec<&serde_json::Value> = m.iter().filter(|x| x["overflow"] == true).collect();
    assert!(!overflows.is_empty(), "no overflow at a loss scale of 2^24");
    for (i, o) in overflows.iter().enumerate() {
        assert_eq!(
            o["step"].as_u64(),
            Some(i as u64 + 1),
            "overflows come first"
        );
        assert_eq!(o["loss_scale"].as_f64(), Some(2f64.powi(24 - i as i32)));
    }
    let applied: Vec<&serde_json::Value> =
        m.iter().filter(|x| x.get("skipped").is_none()).collect();
    assert!(applied.len() >= 8, "{} steps applied", applied.len());
    let scale = applied[0]["loss_scale"].as_f64().unwrap();
    assert_eq!(scale, 2f64.powi(24 - overflows.len() as i32));
    assert!(applied
        .iter()
        .all(|x| x["loss_scale"].as_f64() == Some(scale)));
    let loss = |x: &serde_json::Value| x["loss"].as_f64().unwrap();
    assert!(loss(applied[applied.len() - 1]) < loss(applied[0]));
}

#[test]
fn smollm2_two_steps_of_alpha_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let run = trainer(&[
        "--model",
        smollm2().to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--alpha",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let m = metrics(&out);
    assert_eq!(m.len(), 2);
    for step in &m {
        let (loss, p) = (
            step["loss"].as_f64().unwrap(),
            step["mean_p"].as_f64().unwrap(),
        );
        // alpha = 1: the loss is 1 - p averaged over tokens.
        assert!(
            loss.is_finite() && (0.0..1.0).contains(&loss) && (loss - (1.0 - p)).abs() < 1e-4,
            "{step}"
        );
    }
    assert!(out.join("final/model.safetensors").exists());
}

#[test]
fn bad_training_arguments_are_one_line_errors() {
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let data = data.to_str().unwrap();
    let model = smollm2();
    let model = model.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--model", model, "--data", data, "--alpha=-1"],
            "--alpha",
        ),
        (
            vec!["--model", model, "--data", data, "--alpha", "p"],
            "--alpha",
        ),
        (
            vec!["--model", model, "--data", data, "--alpha-schedule", "0-1"],
            "--alpha-schedule",
        ),
        (
            vec!["--model", model, "--data", data, "--batch-size", "0"],
            "--batch-size",
        ),
        (vec!["--model", model, "--data", data, "--lr=-1"], "--lr"),
    ] {
        let out = trainer(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(want), "{args:?}: {err}");
    }
    let out = trainer(&["--data", data]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}

#[test]
fn resumed_run_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    tiny_model(&model_dir);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let args = [
        "--alpha",
        "1",
        "--steps",
        "20",
        "--batch-size",
        "2",
        "--lr",
        "1e-2",
        "--save-every",
        "10",
    ];
    let run = |extra: &[String], out: &Path| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(extra.iter().map(String::as_str));
        train_ok(&model_dir, out, &all);
    };
    run(&[], &a);
    let ckpt = a.join("checkpoint-10");
    assert!(ckpt.join("optimizer.safetensors").exists() && ckpt.join("model.safetensors").exists());
    run(
        &["--resume".into(), ckpt.to_string_lossy().into_owned()],
        &b,
    );
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(mb.len(), 10);
    for (x, y) in ma[10..].iter().zip(&mb) {
        assert_eq!(x["step"], y["step"]);
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!(
            (lx - ly).abs() <= 1e-5 * lx.abs().max(1e-12),
            "step {}: {lx} vs resumed {ly}",
            x["step"]
        );
        assert_eq!(x["lr"], y["lr"]);
    }
    // Moments in host memory: the same run, bit for bit (the same kernel updates them), its
    // checkpoint the same bytes; and it resumes from the run that kept them on the GPU.
    let (d, e) = (tmp.path().join("d"), tmp.path().join("e"));
    let mut offloaded: Vec<&str> = args.to_vec();
    offloaded.push("--offload-optimizer");
    let out = train_on(&model_dir, &d, &offloaded);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The log says what the state takes on the GPU, the moments being elsewhere.
    assert!(
        log.contains("GiB on the GPU before activations")
            && log.contains("AdamW moments in host memory"),
        "{log}"
    );
    let ckpt_str = ckpt.to_string_lossy().into_owned();
    run(
        &["--offload-optimizer".into(), "--resume".into(), ckpt_str],
        &e,
    );
    let same = |x: &[serde_json::Value], y: &[serde_json::Value], what: &str| {
        assert_eq!(x.len(), y.len(), "{what}");
        for (x, y) in x.iter().zip(y) {
            for key in ["step", "loss", "grad_norm", "mean_p", "lr"] {
                assert_eq!(x[key], y[key], "{what}: {key} at step {}", x["step"]);
            }
        }
    };
    let md = metrics(&d);
    same(&ma, &md, "offloaded run");
    // ... with the moments off the GPU: the pool's peak is lower by about their size.
    let peak = |m: &[serde_json::Value]| m.last().unwrap()["gpu_peak_mib"].as_f64().unwrap();
    assert!(
        peak(&md) < peak(&ma),
        "peak {} MiB offloaded, {} MiB not",
        peak(&md),
        peak(&ma)
    );
    same(&mb, &metrics(&e), "offloaded resume");
    let bytes = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    for file in [
        "checkpoint-10/optimizer.safetensors",
        "final/model.safetensors",
    ] {
        assert!(bytes(a.join(file)) == bytes(d.join(file)), "{file} differs");
    }
    // A different batch size cannot continue this run.
    let mut bad: Vec<&str> = args.to_vec();
    let at = bad.iter().position(|a| *a == "--batch-size").unwrap();
    bad[at + 1] = "3";
    let ckpt = ckpt.to_string_lossy();
    bad.extend(["--resume", &ckpt]);
    let r = train_on(&model_dir, &tmp.path().join("c"), &bad);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("resume with the same") && err.contains("--batch-size"),
        "{err}"
    );
}

#[test]
fn a_held_out_file_is_evaluated_every_n_steps_as_diagnose_scores_it() {
    let held = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    std::fs::write(
        held.path(),
        concat!(
            r#"{"prompt": "What is 6 + 1?", "response": "6 + 1 = 7. The answer is 7."}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}"#,
            "\n",
            r#"{"prompt": "Spell cat.", "response": "c-a-t"}"#,
            "\n",
            r#"{"text": "A short plain text."}"#,
            "\n"
        ),
    )
    .unwrap();
    let eval_arg = held.path().to_str().unwrap();
    let (_tmp, model_dir, out) = train_tiny(&[
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--lr",
        "1e-2",
        "--eval-data",
        eval_arg,
        "--eval-every",
        "2",
        "--save-every",
        "2",
    ]);
    let m = metrics(&out);
    let evals: Vec<&serde_json::Value> = m.iter().filter(|l| l.get("eval_nll").is_some()).collect();
    // After step 2, and after the last step (once, not twice).
    let at: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(at, [2, 4], "{m:?}");
    assert_eq!(m.len(), 6, "four steps and two evaluations");
    assert_eq!(evals[0]["eval_examples"], 4);
    // The same numbers as `trainer diagnose` gives the checkpoint of that step on that file.
    let d = diagnose_json(
        &out.join("checkpoint-2"),
        held.path(),
        &["--batch-tokens", "4096"],
    );
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    let (nll, p) = (
        evals[0]["eval_nll"].as_f64().unwrap(),
        evals[0]["eval_mean_p"].as_f64().unwrap(),
    );
    assert!(rel(nll, d["nll"].as_f64().unwrap()) < 1e-5, "{nll} vs {d}");
    assert!(
        rel(p, d["mean_prob"].as_f64().unwrap()) < 1e-5,
        "{p} vs {d}"
    );
    assert_eq!(evals[0]["eval_tokens"], d["tokens"], "{d}");
    // Training moved the held-out NLL.
    assert_ne!(evals[0]["eval_nll"], evals[1]["eval_nll"]);

    for (args, says) in [
        (vec!["--eval-every", "2"], "--eval-every needs"),
        (
            vec!["--eval-data", eval_arg, "--eval-fraction", "0.5"],
            "give one",
        ),
        (
            vec!["--eval-fraction", "0.5", "--eval-every", "0"],
            "must be positive",
        ),
        (
            vec!["--eval-data", "/nonexistent/eval.jsonl"],
            "/nonexistent/eval.jsonl",
        ),
    ] {
        let r = train_on(&model_dir, &out.join("x"), &args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(says), "{err}");
    }
}

/// `trainer diagnose --json` of `model` on `data` (+ `extra`), parsed.
fn diagnose_json(model: &Path, data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "diagnose",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let d = trainer(&args);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    serde_json::from_str(String::from_utf8_lossy(&d.stdout).trim()).unwrap()
}

#[test]
fn the_step_loss_is_the_mean_of_micro_batch_token_means() {
    // NLL (alpha = 0) at step 1, before any update, over all four records of the file: one
    // micro-batch gives their global token mean, one sequence per micro-batch the mean of
    // each record's token mean (verl's reduction); `trainer diagnose` scores both apart.
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    tiny_model(&model_dir);
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let nll = |file: &Path| {
        diagnose_json(&model_dir, file, &[])["nll"]
            .as_f64()
            .unwrap()
    };
    let lines: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 4);
    let per_record: Vec<f64> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let f = tmp.path().join(format!("r{i}.jsonl"));
            std::fs::write(&f, format!("{l}\n")).unwrap();
            nll(&f)
        })
        .collect();
    let step_loss = |out: &str, extra: &[&str]| -> f64 {
        let mut args = vec!["--alpha", "0", "--steps", "1", "--batch-size", "4"];
        args.extend_from_slice(extra);
        let out = tmp.path().join(out);
        train_ok(&model_dir, &out, &args);
        metrics(&out)[0]["loss"].as_f64().unwrap()
    };
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    let whole = step_loss("one", &[]);
    assert!(rel(whole, nll(&data)) < 1e-5, "{whole} vs {}", nll(&data));
    let each = step_loss("each", &["--micro-batch-size", "1"]);
    let want = per_record.iter().sum::<f64>() / 4.0;
    assert!(rel(each, want) < 1e-5, "{each} vs {want} ({per_record:?})");
    // The records differ in length (18, 7, 4 and 22 loss tokens), so the two reductions
    // differ, by far more than the agreement asked of each above (at random init every
    // token's NLL is near ln V, so by little).
    assert!(rel(each, whole) > 1e-4, "{each} vs {whole}");
    // --group-by-length: two micro-batches of two, the two longest sequences together.
    let tok = models::Tokenizer::from_dir(&model_dir).unwrap();
    let opts = trainer::data::DataOptions {
        shape: trainer::data::Shape::Auto,
        fields: Default::default(),
        max_length: 2048,
        truncation: trainer::data::Truncation::Right,
    };
    let examples = trainer::data::load(&data, &tok, &opts).unwrap().examples;
    let mut by_length: Vec<usize> = (0..4).collect();
    by_length.sort_by_key(|&i| std::cmp::Reverse(examples[i].ids.len()));
    let mb_mean = |pair: &[usize]| {
        let n = |i: usize| examples[i].loss_tokens() as f64;
        pair.iter().map(|&i| n(i) * per_record[i]).sum::<f64>()
            / pair.iter().map(|&i| n(i)).sum::<f64>()
    };
    let want = (mb_mean(&by_length[..2]) + mb_mean(&by_length[2..])) / 2.0;
    let grouped = step_loss("grouped", &["--micro-batch-size", "2", "--group-by-length"]);
    assert!(rel(grouped, want) < 1e-5, "{grouped} vs {want}");
    // ... which no other pairing of the four gives.
    for other in [[by_length[0], by_length[2]], [by_length[0], by_length[3]]] {
        let rest: Vec<usize> = by_length
            .iter()
            .copied()
            .filter(|i| !other.contains(i))
            .collect();
        let alt = (mb_mean(&other) + mb_mean(&rest)) / 2.0;
        assert!(
            rel(alt, want) > 1e-4,
            "pairing {other:?} gives the same loss"
        );
    }
    let bad = train_on(
        &model_dir,
        &tmp.path().join("bad"),
        &["--micro-batch-size", "0"],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--micro-batch-size"));
}

#[test]
fn packing_trains_as_padded_rows_do() {
    // The four records in one micro-batch, as padded rows or packed into one row: the same
    // tokens with the same loss weights, so the same run (losses, gradient norms), in f32,
    // with recomputation and in f16 (on the flash kernels both ways); diagnose scores the
    // same probabilities.
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    tiny_model(&model_dir);
    let run = |name: &str, extra: &[&str]| -> Vec<(f64, f64)> {
        let mut args = vec!["--steps", "4", "--batch-size", "4", "--lr", "1e-2"];
        args.extend_from_slice(extra);
        let out = tmp.path().join(name);
        train_ok(&model_dir, &out, &args);
        let m = metrics(&out);
        let at = |x: &serde_json::Value, k: &str| x[k].as_f64().unwrap();
        m.iter()
            .map(|x| (at(x, "loss"), at(x, "grad_norm")))
            .collect()
    };
    let close = |a: &[(f64, f64)], b: &[(f64, f64)], tol: f64, what: &str| {
        assert_eq!(a.len(), 4);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let rel = |u: f64, v: f64| (u - v).abs() / v.abs();
            assert!(
                rel(x.0, y.0) <= tol && rel(x.1, y.1) <= 10.0 * tol,
                "{what}, step {}: {x:?} vs {y:?}",
                i + 1
            );
        }
    };
    let f32_args = ["--precision", "f32"];
    let padded = run("padded", &f32_args);
    close(
        &run("packed", &[&f32_args[..], &["--packing"]].concat()),
        &padded,
        1e-5,
        "f32",
    );
    let recompute = [&f32_args[..], &["--recompute", "--packing"]].concat();
    close(
        &run("packed-recompute", &recompute),
        &padded,
        1e-5,
        "recompute",
    );
    let f16 = ["--precision", "f16", "--attention", "flash"];
    let padded16 = run("padded16", &f16);
    let packed16 = run("packed16", &[&f16[..], &["--packing"]].concat());
    close(&packed16, &padded16, 1e-3, "f16");

    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    let plain = diagnose_json(&model_dir, &data, &[]);
    let packed = diagnose_json(&model_dir, &data, &["--packing"]);
    for key in ["mean_prob", "nll"] {
        let (a, b) = (plain[key].as_f64().unwrap(), packed[key].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{key}: {a} vs {b}");
    }
}

#[test]
fn save_total_limit_keeps_the_newest_checkpoints() {
    let (_tmp, _model_dir, out) = train_tiny(&[
        "--steps",
        "5",
        "--batch-size",
        "2",
        "--save-every",
        "1",
        "--save-total-limit",
        "2",
    ]);
    let mut dirs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-") || n == "final")
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["checkpoint-3", "checkpoint-4", "final"]);
    // What is kept is whole.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("checkpoint-4").join("trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"], 4);
}

#[test]
fn held_out_examples_are_evaluated_at_the_end() {
    let (_tmp, model_dir, out) = train_tiny(&[
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--eval-fraction",
        "0.5",
    ]);
    let m = metrics(&out);
    assert_eq!(m.len(), 3, "two steps and the evaluation");
    let eval = &m[2];
    assert_eq!(eval["eval_examples"], 2);
    let (nll, p) = (
        eval["eval_nll"].as_f64().unwrap(),
        eval["eval_mean_p"].as_f64().unwrap(),
    );
    // A random model over 49,152 tokens: NLL near ln(49152) = 10.8, p tiny.
    assert!(
        eval["eval_tokens"].as_u64().unwrap() > 0 && nll > 8.0 && nll < 14.0 && p < 0.01,
        "{eval}"
    );
    let bad = train_on(&model_dir, &out.join("x"), &["--eval-fraction", "1.5"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--eval-fraction"));
}

/// `--min-lr-ratio`: the cosine ends at that fraction of the peak (verl's min_lr_ratio,
/// against the formula in f64), 1 holds the peak after warmup, and a ratio outside [0, 1] is
/// refused.
#[test]
fn the_cosine_decays_to_min_lr_ratio() {
    let (tmp, model_dir, out) = train_tiny(&[
        "--steps",
        "5",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
        "--warmup-ratio",
        "0.2",
        "--min-lr-ratio",
        "0.25",
    ]);
    let lr: Vec<f64> = metrics(&out)
        .iter()
        .map(|x| x["lr"].as_f64().unwrap())
        .collect();
    // One warmup step (from 0), then half a cosine over the 4 steps left, from 1e-3 to 2.5e-4.
    let want: Vec<f64> = (0..5)
        .map(|s| match s {
            0 => 0.0,
            s => {
                let c = 0.5 * (1.0 + (std::f64::consts::PI * (s - 1) as f64 / 4.0).cos());
                1e-3 * (0.25 + 0.75 * c)
            }
        })
        .collect();
    for (got, want) in lr.iter().zip(&want) {
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1e-3),
            "{lr:?} vs {want:?}"
        );
    }
    let flat = tmp.path().join("flat");
    train_ok(
        &model_dir,
        &flat,
        &[
            "--steps",
            "3",
            "--lr",
            "1e-3",
            "--warmup-ratio",
            "0",
            "--min-lr-ratio",
            "1",
        ],
    );
    for m in metrics(&flat) {
        assert_eq!(m["lr"].as_f64().unwrap(), 1e-3, "{m}");
    }
    let r = train_on(
        &model_dir,
        &tmp.path().join("bad"),
        &["--min-lr-ratio", "1.5"],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("--min-lr-ratio must be in [0, 1]"),
        "{err}"
    );
}

/// `--chat-template FILE`: the records are rendered with it (diagnose counts the loss tokens
/// that tokenizing with it gives), training saves it into its checkpoints, where our tokenizer
/// and transformers both take it over tokenizer_config.json's; a missing or broken file is
/// one error line naming it.
#[test]
fn chat_template_file_replaces_the_models() {
    let (tmp, model_dir, _) = train_tiny(&["--steps", "1"]);
    let data = repo("tests/fixtures/data/tiny_sft.jsonl");
    // Each turn closed by a marker of its own, which the assistant turns' loss then covers.
    let template = tmp.path().join("chat.jinja");
    let source = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>\n{% endfor %}\
                  {% if add_generation_prompt %}<|assistant|>{% endif %}";
    std::fs::write(&template, source).unwrap();
    let opts = trainer::data::DataOptions {
        shape: trainer::data::Shape::Auto,
        fields: trainer::data::Fields::default(),
        max_length: 2048,
        truncation: trainer::data::Truncation::Right,
    };
    let mut tok = models::Tokenizer::from_dir(&model_dir).unwrap();
    let own = trainer::data::load(&data, &tok, &opts)
        .unwrap()
        .loss_tokens();
    tok.set_chat_template(source.into()).unwrap();
    let want = trainer::data::load(&data, &tok, &opts)
        .unwrap()
        .loss_tokens();
    assert_ne!(
        own, want,
        "the fixture's chats must tell the templates apart"
    );
    let with = ["--chat-template", template.to_str().unwrap()];
    for (extra, tokens) in [(&[][..], own), (&with[..], want)] {
        let d = diagnose_json(&model_dir, &data, extra);
        assert_eq!(d["tokens"].as_u64().unwrap() as usize, tokens, "{extra:?}");
    }

    let out = tmp.path().join("templated");
    train_ok(
        &model_dir,
        &out,
        &[
            "--steps",
            "1",
            "--chat-template",
            template.to_str().unwrap(),
        ],
    );
    let saved = out.join("final");
    assert_eq!(
        std::fs::read_to_string(saved.join("chat_template.jinja")).unwrap(),
        source
    );
    let reloaded = models::Tokenizer::from_dir(&saved).unwrap();
    assert_eq!(reloaded.chat_template(), Some(source));
    if let Ok(python) = std::env::var("TRAINER_HF_PYTHON") {
        let hf = std::process::Command::new(python)
            .args([
                "-c",
                "import sys; from transformers import AutoTokenizer; \
                 sys.stdout.write(AutoTokenizer.from_pretrained(sys.argv[1]).chat_template)",
                saved.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&hf.stdout), source, "{hf:?}");
    }

    let broken = tmp.path().join("broken.jinja");
    std::fs::write(&broken, "{% for m in messages %}").unwrap();
    for (file, says) in [
        (broken.to_str().unwrap(), "broken.jinja: does not parse"),
        ("/nonexistent/chat.jinja", "/nonexistent/chat.jinja: "),
    ] {
        let r = train_on(
            &model_dir,
            &tmp.path().join("x"),
            &["--chat-template", file],
        );
        let err = String::from_utf8_lossy(&r.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert!(
            !r.status.success() && lines.len() == 1 && lines[0].contains(says),
            "{err}"
        );
    }
}
