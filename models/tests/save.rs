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
