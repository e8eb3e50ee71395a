//! Per-kernel GPU time from timestamp queries (`Device::profile_start` / `profile_stop`).

use engine::{Device, DeviceOptions, Error, Tensor};

/// A device of its own, so that no other test's dispatches land in the profile.
fn own_device() -> Device {
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    Device::with_options(opts).expect("a GPU adapter (lavapipe on CPU machines)")
}

fn ramp(dev: &Device, rows: usize, cols: usize) -> Tensor {
    let data: Vec<f32> = (0..rows * cols).map(|i| (i % 7) as f32 * 0.25).collect();
    Tensor::from_slice(dev, &data, &[rows, cols]).unwrap()
}

#[test]
fn times_every_dispatch_by_kernel_and_grid() {
    let dev = own_device();
    if !dev.features().timestamps {
        eprintln!("skipped: {} has no timestamp queries", dev.name());
        return;
    }
    let (small, big) = (ramp(&dev, 8, 8), ramp(&dev, 256, 256));
    // Warm up: the first run of a pipeline may carry the driver's one-time costs.
    small.matmul(&small).unwrap();
    big.matmul(&big).unwrap();
    small.add_scalar(1.0).unwrap();
    dev.sync().unwrap();
    let before = dev.counters();
    dev.profile_start().unwrap();
    assert!(dev.profiling());
    let s = small.matmul(&small).unwrap();
    let b = big.matmul(&big).unwrap();
    let z = s.add_scalar(1.0).unwrap();
    let profile = dev.profile_stop().unwrap();
    assert!(!dev.profiling());
    let recorded = (dev.counters() - before).dispatches;

    assert_eq!(profile.dispatches(), recorded, "{profile:?}");
    let matmuls: Vec<_> = profile
        .kernels
        .iter()
        .filter(|k| k.op == "matmul")
        .collect();
    assert_eq!(matmuls.len(), 2, "two grids of one kernel: {profile:?}");
    // 256^3 against 8^3 multiply-adds: the big product must take longer (and sort first).
    let big_grid = matmuls
        .iter()
        .max_by_key(|k| k.workgroups.iter().product::<u32>())
        .unwrap();
    assert!(
        big_grid.ns > matmuls.iter().map(|k| k.ns).fold(f64::MAX, f64::min),
        "{profile:?}"
    );
    assert_eq!(profile.kernels[0], **big_grid, "longest first: {profile:?}");
    assert!(profile.kernels.iter().all(|k| k.ns >= 0.0 && k.calls == 1));
    assert!(profile.total_ns() > 0.0);
    let merged = profile.by_kernel();
    let row = merged.iter().find(|k| k.op == "matmul").unwrap();
    assert_eq!((row.calls, row.workgroups), (2, [0, 0, 0]));
    assert!((row.ns - matmuls.iter().map(|k| k.ns).sum::<f64>()).abs() < 1e-6);
    let table = profile.table(10, true);
    assert!(
        table.contains("matmul") && table.contains("all 2 kernels"),
        "{table}"
    );

    // Profiling leaves the results alone.
    let want = |a: &[f32], n: usize, i: usize, j: usize| -> f32 {
        (0..n).map(|k| a[i * n + k] * a[k * n + j]).sum()
    };
    let sb = small.to_vec().unwrap();
    let zv = z.to_vec().unwrap();
    assert!((zv[9] - (want(&sb, 8, 1, 1) + 1.0)).abs() < 1e-4);
    let bb = big.to_vec().unwrap();
    let bv = b.to_vec().unwrap();
    let w = want(&bb, 256, 100, 37);
    assert!((bv[100 * 256 + 37] - w).abs() <= 1e-4 * w.abs().max(1.0));
}

#[test]
fn profiles_across_many_submissions() {
    let dev = own_device();
    if !dev.features().timestamps {
        eprintln!("skipped: {} has no timestamp queries", dev.name());
        return;
    }
    let mut x = Tensor::from_slice(&dev, &[0.0f32; 4], &[4]).unwrap();
    dev.profile_start().unwrap();
    // Batches go every 256 dispatches, each resolving and reading its stamps: 2500
    // dispatches take ten of them, every dispatch counted once.
    for _ in 0..2500 {
        x = x.add_scalar(1.0).unwrap();
    }
    let profile = dev.profile_stop().unwrap();
    assert_eq!(profile.dispatches(), 2500, "{profile:?}");
    assert_eq!(profile.kernels.len(), 1);
    assert_eq!(x.to_vec().unwrap(), vec![2500.0f32; 4]);
}

#[test]
fn stop_without_start_is_an_error() {
    let dev = own_device();
    match dev.profile_stop() {
        Err(Error::Gpu { op, reason }) => {
            assert_eq!(op, "profile_stop");
            assert!(reason.contains("not started"), "{reason}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
