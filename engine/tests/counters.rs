//! The device's work counters: dispatches recorded and command buffers submitted.

use engine::{Counters, Device, DeviceOptions, Tensor};

#[test]
fn counts_dispatches_and_submits() {
    // A device of its own: other tests' work must not land between the readings.
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    let dev = Device::with_options(opts).expect("a GPU adapter (lavapipe on CPU machines)");
    let x = Tensor::from_slice(&dev, &[1.0f32; 64], &[64]).unwrap();
    dev.sync().unwrap();
    let before = dev.counters();
    let y = x.add_scalar(1.0).unwrap().add_scalar(2.0).unwrap();
    let recorded = dev.counters() - before;
    assert_eq!(recorded.dispatches, 2, "{recorded:?}");
    assert_eq!(
        recorded.submits, 0,
        "nothing is submitted before a sync point"
    );
    assert_eq!(y.to_vec().unwrap(), vec![4.0f32; 64]);
    let after = dev.counters() - before;
    assert_eq!(
        after,
        Counters {
            dispatches: 2,
            submits: 1
        },
        "one submit for the download"
    );
    assert_eq!(dev.dispatch_count(), dev.counters().dispatches);
}

#[test]
fn long_sequences_are_submitted_in_batches_without_waiting() {
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    let dev = Device::with_options(opts).expect("a GPU adapter (lavapipe on CPU machines)");
    let mut x = Tensor::from_slice(&dev, &[0.5f32; 300], &[300]).unwrap();
    dev.sync().unwrap();
    let before = dev.counters();
    // A chain across submissions (each op reads the last one's output) and past the uniform
    // ring's 4096 parameter slots, so that the ring is rewritten while earlier batches may
    // still be queued.
    let n = 5000;
    for _ in 0..n {
        x = x.add_scalar(1.0).unwrap();
    }
    let recorded = dev.counters() - before;
    assert_eq!(recorded.dispatches, n);
    assert_eq!(
        recorded.submits,
        n / 256,
        "one submission per 256 dispatches, before any sync point"
    );
    assert_eq!(x.to_vec().unwrap(), vec![5000.5f32; 300]);
}
