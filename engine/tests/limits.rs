//! What the GPU cannot do ends in a clear error, never a panic or a mis-addressed kernel: a
//! buffer over the adapter's largest, an operand over the largest binding (lowered with
//! `DeviceOptions::max_binding_bytes` to keep the test cheap), and a lost device; the
//! objective's backward splits its gradient blocks to fit the binding instead.

use engine::{DType, Device, DeviceOptions, Error, Tensor};

fn device(max_binding_bytes: Option<u64>) -> Device {
    let mut opts = DeviceOptions::from_env();
    opts.shader_checks = true;
    opts.max_binding_bytes = max_binding_bytes;
    Device::with_options(opts).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
}

#[test]
fn a_buffer_beyond_the_adapter_limit_is_refused_with_its_size() {
    let dev = device(None);
    let limit = dev.limits().max_buffer_size;
    let n = (limit / 4 + 1) as usize;
    let e = Tensor::zeros(&dev, &[n], DType::F32).expect_err("an oversized buffer");
    assert!(
        matches!(e, Error::BufferTooLarge { .. }) && e.is_resource(),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&(n as u64 * 4).to_string()) && msg.contains(&limit.to_string()),
        "{msg}"
    );
    // The device is still usable afterwards.
    let t = Tensor::from_slice(&dev, &[1.0, 2.0], &[2]).unwrap();
    assert_eq!(t.add(&t).unwrap().to_vec().unwrap(), vec![2.0, 4.0]);
}

#[test]
fn an_operand_beyond_the_binding_limit_is_refused_by_name() {
    let dev = device(Some(4096 + 2)); // rounded down to whole words: 4096
    assert_eq!(dev.max_binding_bytes(), 4096);
    let fits = Tensor::from_slice(&dev, &vec![1.0; 1024], &[1024]).unwrap();
    assert_eq!(fits.add(&fits).unwrap().to_vec().unwrap()[1023], 2.0);
    // 1025 f32: one word over. Allocation is fine (a buffer may be larger than a binding);
    // launching a kernel on it is not.
    let big = Tensor::from_slice(&dev, &vec![1.0; 1025], &[1025]).unwrap();
    let e = big.add(&big).expect_err("an oversized binding");
    assert!(
        matches!(e, Error::BindingTooLarge { .. }) && e.is_resource(),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("4100 bytes") && msg.contains("(4096 bytes)"),
        "{msg}"
    );
    // A matmul whose weight exceeds the binding, as a too-large layer would.
    let x = Tensor::from_slice(&dev, &[1.0; 4], &[1, 4]).unwrap();
    let w = Tensor::from_slice(&dev, &vec![0.5; 4 * 1025], &[4, 1025]).unwrap();
    let e = x.matmul(&w).expect_err("an oversized weight");
    assert!(matches!(e, Error::BindingTooLarge { .. }), "{e:?}");
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    let dev = device(None);
    let t = Tensor::from_slice(&dev, &[1.0, 2.0, 3.0], &[3]).unwrap();
    assert_eq!(t.to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
    dev.simulate_loss();
    let lost = |e: Error| {
        assert!(
            matches!(e, Error::DeviceLost { .. }) && e.is_resource(),
            "{e:?}"
        );
        assert!(e.to_string().contains("device was lost"), "{e}");
    };
    lost(t.to_vec().expect_err("download after loss"));
    lost(t.add(&t).expect_err("kernel after loss"));
    lost(Tensor::from_slice(&dev, &[1.0], &[1]).expect_err("upload after loss"));
    lost(dev.sync().expect_err("sync after loss"));
}

#[test]
fn the_objective_backward_splits_its_blocks_to_fit_the_binding() {
    // 70 tokens over 300 vocabulary rows: one (70, 300) block of logit gradients normally;
    // with bindings of 70 x 64 floats, five blocks. The gradients agree.
    use engine::ops::objective::{lm_head_objective, Objective};
    let (n, d, rows) = (70, 8, 300);
    let x: Vec<f32> = (0..n * d)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let w: Vec<f32> = (0..rows * d)
        .map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0)
        .collect();
    let targets: Vec<u32> = (0..n as u32).map(|i| i * 7 % rows as u32).collect();
    let grads = |dev: &Device| {
        let xt = Tensor::from_slice(dev, &x, &[n, d]).unwrap().var();
        let wt = Tensor::from_slice(dev, &w, &[rows, d]).unwrap().var();
        let tt = Tensor::from_u32_slice(dev, &targets, &[n]).unwrap();
        let mask = Tensor::from_slice(dev, &vec![1.0; n], &[n]).unwrap();
        let out = lm_head_objective(
            &xt,
            std::slice::from_ref(&wt),
            &tt,
            &mask,
            &Objective::Nll,
            None,
        )
        .unwrap();
        let g = out.loss.backward().unwrap();
        (
            g.get(&xt).unwrap().to_vec().unwrap(),
            g.get(&wt).unwrap().to_vec().unwrap(),
        )
    };
    let (dx, dw) = grads(&device(None));
    let (dx_split, dw_split) = grads(&device(Some((n * 64 * 4) as u64)));
    let close = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .all(|(p, q)| (p - q).abs() <= 1e-5 * p.abs().max(1e-3))
    };
    assert!(close(&dx, &dx_split), "dx differs when split");
    assert!(close(&dw, &dw_split), "dW differs when split");
}
