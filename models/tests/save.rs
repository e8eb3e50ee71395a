//! A checkpoint saved by us reloads bit for bit, and loads in HF transformers with the same
//! logits (after an optimizer step, so the saved weights are not the ones HF made); what a
//! save killed half way leaves behind is tidied and never taken for a checkpoint.

mod common;
use common::*;

use std::process::Command;

use engine::ops::optim::AdamW;
use engine::Device;
use models::{Config, Model, SaveDtype, Weights};

fn hf_python() -> String {
    if let Ok(p) = std::env::var("TRAINER_HF_PYTHON") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    format!("{home}/.cache/trainer/venv-hf/bin/python")
}

fn stepped_model(dev: &Device, name: &str) -> (Model, std::path::PathBuf) {
    let dir = fixture(&format!("hf/{name}"));
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    let model = Model::new(&config, &Weights::from_dir(dev, &dir).unwrap(), true).unwrap();
    let ids: Vec<u32> = (0..16).map(|i| (i * 37 + 5) % 256).collect();
    let loss = model
        .forward(&ids, 2, 8)
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let params: Vec<_> = model.parameters().into_iter().map(|(_, t)| t).collect();
    AdamW::new(1e-2).step(&params, &grads, None).unwrap();
    (model, dir)
}

#[test]
fn saved_checkpoint_reloads_identically() {
    let dev = device();
    let (model, src) = stepped_model(&dev, "tiny-qwen2");
    let out = tempfile::tempdir().unwrap();
    let ckpt = out.path().join("ckpt");
    model.save(&ckpt, Some(&src), SaveDtype::F32).unwrap();
    // Saving again over an existing checkpoint replaces it whole.
    model.save(&ckpt, Some(&src), SaveDtype::F32).unwrap();
    let config = Config::from_file(&ckpt.join("config.json")).unwrap();
    let again = Model::new(&config, &Weights::from_dir(&dev, &ckpt).unwrap(), false).unwrap();
    for ((n1, a), (n2, b)) in model.parameters().iter().zip(again.parameters().iter()) {
        assert_eq!(n1, n2);
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{n1}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary folders left: {leftovers:?}"
    );
}

#[test]
fn saved_checkpoint_loads_in_hf_transformers() {
    let python = hf_python();
    let dev = device();
    for name in ["tiny-llama", "tiny-qwen2"] {
        let (model, src) = stepped_model(&dev, name);
        let out = tempfile::tempdir().unwrap();
        let ckpt = out.path().join(name);
        model.save(&ckpt, Some(&src), SaveDtype::F32).unwrap();
        let ids: Vec<u32> = (0..10).map(|i| (i * 53 + 11) % 256).collect();
        let ours = model.forward(&ids, 2, 5).unwrap().to_vec().unwrap();
        let ids_json = serde_json::to_string(&[&ids[..5], &ids[5..]]).unwrap();
        let script = fixture("../scripts/hf_logits.py");
        let run = Command::new(&python)
            .arg(&script)
            .arg(&ckpt)
            .arg(&ids_json)
            .output()
            .unwrap_or_else(|e| {
                panic!("{python}: {e}; run `bash scripts/setup_hf.sh` to make the HF environment")
            });
        assert!(
            run.status.success(),
            "{name}: HF could not load our checkpoint:\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let hf: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let theirs: Vec<f32> = serde_json::from_value(hf["logits"].clone()).unwrap();
        assert_eq!(ours.len(), theirs.len());
        let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = ours
            .iter()
            .zip(&theirs)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        eprintln!("{name}: logits of our checkpoint in HF vs ours: rel err {err:.2e}");
        assert!(err <= 1e-4, "{name}: rel err {err:.2e}");
    }
}

#[test]
fn interrupted_saves_are_recovered_or_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dev = common::device();
    let (model, dir) = stepped_model(&dev, "tiny-llama");
    let mk = |name: &str| {
        model
            .save(&root.join(name), Some(&dir), SaveDtype::F32)
            .unwrap()
    };
    // Killed between the two renames that replace `final`: the old copy aside, the new one
    // still under its temporary name, no `final`.
    mk(".final.tmp-77");
    mk(".final.old-77");
    // Killed while writing checkpoint-3: an unfinished temporary folder.
    std::fs::create_dir(root.join(".checkpoint-3.tmp-78")).unwrap();
    std::fs::write(root.join(".checkpoint-3.tmp-78/model.safetensors"), b"half").unwrap();
    mk("checkpoint-2");
    std::fs::write(root.join(".final.tmp-77/marker"), b"new").unwrap();
    let done = models::save::recover_interrupted(root).unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    let mut left: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["checkpoint-2", "final"]);
    assert!(root.join("final/marker").exists(), "the newer copy is kept");
    Weights::from_dir(&dev, &root.join("final")).unwrap();
    assert!(models::save::recover_interrupted(root).unwrap().is_empty());
    assert!(models::save::recover_interrupted(&root.join("none"))
        .unwrap()
        .is_empty());
}

/// Values saved under HF names come back whatever chunking or stacking the loading device
/// chooses: a device whose bindings hold the stacked q/k/v weight but not the stacked
/// gate/up one, nor the whole embedding, lays the same checkpoint out differently, computes
/// the same logits, and cuts per-parameter values (optimizer moments, say) written by the
/// first layout back out right.
#[test]
fn values_under_hf_names_survive_another_layout() {
    use engine::DeviceOptions;
    let dir = fixture("hf/tiny-qwen2");
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    let wide = device();
    let a = Model::new(&config, &Weights::from_dir(&wide, &dir).unwrap(), false).unwrap();
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    opts.max_binding_bytes = Some(40_960);
    let narrow = Device::with_options(opts).unwrap();
    let b = Model::new(&config, &Weights::from_dir(&narrow, &dir).unwrap(), false).unwrap();
    let names = |m: &Model| -> Vec<String> { m.parameters().into_iter().map(|p| p.0).collect() };
    let (na, nb) = (names(&a), names(&b));
    for (names, name) in [
        (&na, "mlp.gate_up_proj.weight"),
        (&nb, "mlp.gate_proj.weight"),
        (&nb, "self_attn.qkv_proj.weight"),
        (&nb, "embed_tokens.weight#1"),
    ] {
        assert!(names.iter().any(|n| n.ends_with(name)), "{name}: {names:?}");
    }
    // The same checkpoint, the same logits (every product computes the same sums).
    let ids: Vec<u32> = (0..16).map(|i| (i * 37 + 5) % 256).collect();
    let la = a.forward(&ids, 2, 8).unwrap().to_vec().unwrap();
    let lb = b.forward(&ids, 2, 8).unwrap().to_vec().unwrap();
    assert_eq!(la, lb);
    assert_eq!(a.state_dict().unwrap(), b.state_dict().unwrap());
    // Per-parameter values (here 2 w + 1) written from a's layout, read into b's.
    let moments = a
        .to_hf(|p| {
            let w = p.tensor.to_vec()?;
            Ok(Some(w.iter().map(|x| 2.0 * x + 1.0).collect()))
        })
        .unwrap();
    let moments: Vec<_> = moments
        .into_iter()
        .map(|(n, s, d)| (format!("m.{n}"), s, d))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("moments.safetensors");
    models::save::write_safetensors(&path, &moments, SaveDtype::F32).unwrap();
    let file = Weights::from_files(&narrow, std::slice::from_ref(&path)).unwrap();
    for p in b.parameter_layout() {
        let got = b.param_from_hf(&p, &file, "m.").unwrap().to_vec().unwrap();
        let want: Vec<f32> = p
            .tensor
            .to_vec()
            .unwrap()
            .iter()
            .map(|x| 2.0 * x + 1.0)
            .collect();
        assert_eq!(got, want, "{}", p.name);
    }
    // A value of the wrong size is refused, not cut short.
    let e = b.to_hf(|_| Ok(Some(vec![0.0; 3]))).unwrap_err();
    assert!(e.to_string().contains("3 values"), "{e}");
}

/// Where a micro-batch's stacked [gate | up] product would not fit one binding, the MLP runs
/// a part of the tokens at a time: hidden states equal the one-pass model's, gradients agree.
#[test]
fn narrow_bindings_split_the_mlp_by_tokens() {
    use engine::DeviceOptions;
    let dir = fixture("hf/tiny-qwen2");
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    let run = |dev: &Device| {
        let m = Model::new(&config, &Weights::from_dir(dev, &dir).unwrap(), true).unwrap();
        // 64 tokens: the [gate | up] product is 64 x 192 f32, 48 KiB.
        let ids: Vec<u32> = (0..64).map(|i| (i * 37 + 5) % 256).collect();
        let h = m.hidden_states(&ids, 2, 32).unwrap();
        let hv = h.to_vec().unwrap();
        let grads = h.square().unwrap().mean_all().unwrap().backward().unwrap();
        let g = m
            .to_hf(|p| Ok(Some(grads.get(&p.tensor).unwrap().to_vec()?)))
            .unwrap();
        (hv, g)
    };
    let (h_wide, g_wide) = run(&device());
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    opts.max_binding_bytes = Some(40_960); // 53 tokens of the product per pass
    let (h_narrow, g_narrow) = run(&Device::with_options(opts).unwrap());
    assert_eq!(h_wide, h_narrow);
    for ((name, _, a), (_, _, b)) in g_wide.iter().zip(&g_narrow) {
        let scale = a.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
        assert!(err <= 1e-5, "{name}: {err:e}");
    }
}

/// In f16 the weights' f16 copies are kept between forward passes and remade after an
/// optimizer step: the next forward computes what a model freshly loaded from the stepped
/// weights computes, to the bit (a stale copy would give the logits before the step).
#[test]
fn f16_weight_copies_follow_the_optimizer() {
    use models::{Compute, Precision};
    let dev = device();
    let dir = fixture("hf/tiny-qwen2");
    let config = Config::from_file(&dir.join("config.json")).unwrap();
    let f16 = Compute {
        precision: Precision::F16,
        recompute: true,
        ..Default::default()
    };
    let model = Model::new(&config, &Weights::from_dir(&dev, &dir).unwrap(), true).unwrap();
    model.set_compute(f16);
    let ids: Vec<u32> = (0..16).map(|i| (i * 37 + 5) % 256).collect();
    let logits = |m: &Model| m.forward(&ids, 2, 8).unwrap();
    let before = engine::no_grad(|| logits(&model).to_vec().unwrap());
    let loss = logits(&model).square().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let params: Vec<_> = model.parameters().into_iter().map(|(_, t)| t).collect();
    AdamW::new(1e-2).step(&params, &grads, None).unwrap();
    let after = engine::no_grad(|| logits(&model).to_vec().unwrap());
    assert_ne!(after, before);
    let tmp = tempfile::tempdir().unwrap();
    model
        .save(&tmp.path().join("m"), None, SaveDtype::F32)
        .unwrap();
    let fresh = Model::new(
        &config,
        &Weights::from_dir(&dev, &tmp.path().join("m")).unwrap(),
        false,
    )
    .unwrap();
    fresh.set_compute(f16);
    assert_eq!(after, engine::no_grad(|| logits(&fresh).to_vec().unwrap()));
}
