//! The kernel breakdown of a benchmarked step: one more call of the step with every dispatch
//! timed by timestamp queries (`Device::profile_start`), written into the figure's JSON row
//! and printed as a table, so that one GPU run says where a step's time goes.

use engine::{Device, Profile};
use serde_json::{json, Map, Value};
use trainer::profile::{kernel_rows, round};

/// Kernels (merged over grids) and single grids kept in a row.
const TOP_KERNELS: usize = 15;
const TOP_GRIDS: usize = 10;

/// Run `f` once with every dispatch timed; `None` when the adapter has no timestamp queries.
pub fn profiled<T>(
    dev: &Device,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<Option<Profile>> {
    if !dev.features().timestamps {
        return Ok(None);
    }
    dev.sync()?;
    dev.profile_start()?;
    let out = f();
    // Stop in any case, so that a failed step does not leave the device profiling.
    let profile = dev.profile_stop();
    out?;
    Ok(Some(profile?))
}

/// Add the profile to `row`: `gpu_ms` (kernel time of the step), `profiled_dispatches`,
/// `gpu_busy` (that over the
/// step's host time `ms_per_step`: well below 1 means the GPU waits for the host), `kernels`
/// (the longest, merged over grids) and `grids` (the longest single shapes); print the table
/// under `name` on stderr.
pub fn add_profile(row: &mut Map<String, Value>, name: &str, profile: &Profile, ms_per_step: f64) {
    let total = profile.total_ns();
    let gpu_ms = total / 1e6;
    row.insert("gpu_ms".into(), json!(round(gpu_ms, 3)));
    row.insert("profiled_dispatches".into(), json!(profile.dispatches()));
    row.insert(
        "gpu_busy".into(),
        json!(round(gpu_ms / ms_per_step.max(1e-9), 3)),
    );
    row.insert(
        "kernels".into(),
        kernel_rows(&profile.by_kernel(), TOP_KERNELS, total, false),
    );
    row.insert(
        "grids".into(),
        kernel_rows(&profile.kernels, TOP_GRIDS, total, true),
    );
    eprintln!(
        "{name}: GPU time per kernel in one step ({gpu_ms:.2} ms of kernels, {ms_per_step:.2} ms \
         per step on the host):\n{}",
        profile.table(TOP_KERNELS, true)
    );
}
