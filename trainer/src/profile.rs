//! `--profile-step N`: every GPU kernel of one training step timed with timestamp queries,
//! written as OUTPUT/profile.json (the kernels merged over shapes, and the single shapes) and
//! OUTPUT/profile.txt (a table, longest first), so that a run on any GPU says where its time
//! goes. The same JSON shape is what the benchmarks record.

use std::path::Path;

use engine::{Device, KernelTime, Profile};
use serde_json::{json, Value};

/// `rows` of `list` as JSON objects: kernel (`op (file::entry)`), ms, calls, share of
/// `total_ns`, and the grid when `grid`.
pub fn kernel_rows(list: &[KernelTime], rows: usize, total_ns: f64, grid: bool) -> Value {
    list.iter()
        .take(rows)
        .map(|k| {
            let mut row = json!({
                "kernel": format!("{} ({}::{})", k.op, k.source, k.entry),
                "ms": round(k.ns / 1e6, 4),
                "calls": k.calls,
                "share": round(k.ns / total_ns.max(1.0), 4),
            });
            if grid {
                row["workgroups"] = json!(k.workgroups);
            }
            row
        })
        .collect()
}

/// `x` to `digits` decimals (for JSON reports).
pub fn round(x: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    (x * s).round() / s
}

/// Checks `--profile-step` against the run before any work: a step of the run still to come,
/// on an adapter with timestamp queries.
pub fn check_step(dev: &Device, step: usize, first: usize, total: usize) -> anyhow::Result<()> {
    if step <= first || step > total {
        anyhow::bail!(
            "--profile-step {step}: the run does steps {} to {total}",
            first + 1
        );
    }
    if !dev.features().timestamps {
        anyhow::bail!(
            "--profile-step: the adapter {} has no timestamp queries, so kernels cannot be timed",
            dev.name()
        );
    }
    Ok(())
}

/// Stop profiling if it is on, and write the step's profile into `output`; returns the line
/// to show.
pub fn finish(dev: &Device, step: usize, output: &Path) -> anyhow::Result<Option<String>> {
    if !dev.profiling() {
        return Ok(None);
    }
    let profile = dev.profile_stop()?;
    let total = profile.total_ns();
    let doc = json!({
        "step": step,
        "adapter": dev.name(),
        "gpu_ms": round(total / 1e6, 4),
        "dispatches": profile.dispatches(),
        "kernels": kernel_rows(&profile.by_kernel(), usize::MAX, total, false),
        "grids": kernel_rows(&profile.kernels, usize::MAX, total, true),
    });
    write(output, "profile.json", &format!("{doc:#}\n"))?;
    write(output, "profile.txt", &table(&profile, step, dev.name()))?;
    Ok(Some(format!(
        "profile of step {step}: {:.2} ms of GPU kernels in {} dispatches; {} and {}",
        total / 1e6,
        profile.dispatches(),
        output.join("profile.txt").display(),
        output.join("profile.json").display()
    )))
}

fn table(profile: &Profile, step: usize, adapter: &str) -> String {
    format!(
        "GPU time per kernel in training step {step} on {adapter} (timestamp queries)\n\n{}\n\
         The same, per shape (grid of workgroups):\n\n{}",
        profile.table(40, true),
        profile.table(40, false)
    )
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
