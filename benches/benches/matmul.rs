//! Criterion bench: matmul on the adapter `engine::Device::new()` picks (unchecked shaders), f32
//! on the SIMT kernel and f16 inputs on every kernel the adapter has. Throughput is reported as
//! elements per second where one element is one FLOP (2 M N K per product), so "Telem/s" reads
//! as TFLOP/s. Square sizes: 4096 (f32) and 8192 (f16) on a GPU, 256 on a CPU adapter (lavapipe)
//! so that `cargo bench` finishes quickly there.
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::ops::matmul::MatmulKernel;
use engine::{Device, Tensor};

/// Deterministic values in [-1, 1) (no rand dependency needed here).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dev = Device::new().expect("a GPU adapter (or lavapipe)");
    let cpu = dev.device_type() == wgpu::DeviceType::Cpu;
    let (n32, n16) = if cpu { (256, 256) } else { (4096, 8192) };
    let features = dev.features();
    eprintln!(
        "matmul bench on {} ({:?}), features {features:?}",
        dev.name(),
        dev.device_type()
    );

    let mut g = c.benchmark_group("matmul");
    if cpu {
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    } else {
        g.sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
    }

    let mut run = |name: String, a: &Tensor, b: &Tensor, kernel: MatmulKernel, n: usize| {
        let flops = 2 * (n as u64).pow(3);
        g.throughput(Throughput::Elements(flops));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let out = a.matmul_with(b, false, false, kernel).expect("matmul");
                dev.sync().expect("sync");
                out
            })
        });
    };

    let a = Tensor::from_slice(&dev, &values(n32 * n32, 1), &[n32, n32]).expect("upload");
    let b = Tensor::from_slice(&dev, &values(n32 * n32, 2), &[n32, n32]).expect("upload");
    run(format!("f32 simt {n32}^3"), &a, &b, MatmulKernel::Simt, n32);
    drop((a, b));

    if features.f16 {
        let half = |seed| {
            values(n16 * n16, seed)
                .into_iter()
                .map(half::f16::from_f32)
                .collect::<Vec<_>>()
        };
        let a = Tensor::from_f16_slice(&dev, &half(3), &[n16, n16]).expect("upload");
        let b = Tensor::from_f16_slice(&dev, &half(4), &[n16, n16]).expect("upload");
        run(format!("f16 simt {n16}^3"), &a, &b, MatmulKernel::Simt, n16);
        if features.cooperative_matrix {
            run(
                format!("f16 coop direct {n16}^3"),
                &a,
                &b,
                MatmulKernel::Coop,
                n16,
            );
            run(
                format!("f16 coop staged {n16}^3"),
                &a,
                &b,
                MatmulKernel::CoopStaged,
                n16,
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
