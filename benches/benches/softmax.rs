//! Criterion bench: softmax and log-softmax over vocabulary-long rows (4096 x 151,936 as the
//! LM head's logits, fewer rows where one binding cannot hold them; 16 x 32,000 on a CPU
//! adapter such as lavapipe), each iteration waiting for the GPU.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::{Device, Tensor};

fn bench(c: &mut Criterion) {
    let dev = Device::new().expect("a GPU adapter (or lavapipe)");
    // The benches crate does not depend on wgpu, so the device type is matched by name.
    let cpu = format!("{:?}", dev.device_type()) == "Cpu";
    let (rows, len) = if cpu {
        (16, 32_000)
    } else {
        let len = 151_936;
        let fit = dev.max_binding_bytes() as usize / (len * 4);
        (4096.min(fit), len)
    };
    let data: Vec<f32> = (0..rows * len)
        .map(|i| ((i * 7919) % 2003) as f32 * 0.01 - 10.0)
        .collect();
    let x = Tensor::from_slice(&dev, &data, &[rows, len]).expect("upload");
    drop(data);
    dev.sync().expect("sync");

    let mut g = c.benchmark_group("softmax");
    g.sample_size(10);
    // Bytes that must move at least once: the logits read and the result written.
    g.throughput(Throughput::Bytes((2 * rows * len * 4) as u64));
    g.bench_function(format!("softmax {rows}x{len} on {}", dev.name()), |b| {
        b.iter(|| {
            let y = x.softmax().expect("softmax");
            dev.sync().expect("sync");
            y
        })
    });
    g.bench_function(format!("log_softmax {rows}x{len} on {}", dev.name()), |b| {
        b.iter(|| {
            let y = x.log_softmax().expect("log_softmax");
            dev.sync().expect("sync");
            y
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
