//! Criterion bench: causal flash attention, forward and forward + backward, at Qwen2.5-1.5B's
//! head layout (B=1, Hq=12, Hkv=2, D=128, T=1024) on a GPU; on a CPU adapter (lavapipe) a tiny
//! size (T=128, D=64, 2 heads) so that `cargo bench` finishes fast.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::ops::attention::attention;
use engine::{Device, Tensor};

/// Deterministic values in [-1, 1) (no rand dependency in benches).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dev = Device::new().expect("a GPU adapter");
    let cpu = dev.device_type() == wgpu::DeviceType::Cpu;
    // (batch, q_heads, kv_heads, seq_len, head_dim)
    let (b, hq, hkv, t, d) = if cpu {
        (1, 2, 1, 128, 64)
    } else {
        (1, 12, 2, 1024, 128)
    };
    let qs = [b, hq, t, d];
    let ks = [b, hkv, t, d];
    let make = |shape: &[usize], seed| {
        Tensor::from_slice(&dev, &values(shape.iter().product(), seed), shape).expect("upload")
    };
    let (q, k, v) = (make(&qs, 1), make(&ks, 2), make(&ks, 3));
    // Causal: half of the T x T scores; forward 2 matmuls of (T x T x D), backward 5 (the
    // usual count; our backward recomputes s and dP twice, 7 in all).
    let fwd_flop = 2.0 * 2.0 * (b * hq * t * t * d) as f64 / 2.0;
    let (qv, kv, vv) = (q.clone().var(), k.clone().var(), v.clone().var());
    let forward = || engine::no_grad(|| attention(&q, &k, &v, true, None)).expect("forward");
    let train = || {
        let out = attention(&qv, &kv, &vv, true, None).expect("forward");
        out.backward().expect("backward")
    };
    // Build the pipelines before timing.
    drop((forward(), train()));
    dev.sync().expect("sync");
    eprintln!(
        "attention bench on {} ({:?})",
        dev.name(),
        dev.device_type()
    );

    let mut g = c.benchmark_group(format!("attention causal B{b} Hq{hq} Hkv{hkv} T{t} D{d}"));
    if cpu {
        g.sample_size(10);
    }
    // Throughput in elements = FLOP, so criterion's elem/s reads as FLOP/s.
    g.throughput(Throughput::Elements(fwd_flop as u64));
    g.bench_function("forward", |bench| {
        bench.iter(|| {
            let out = forward();
            dev.sync().expect("sync");
            out
        })
    });
    g.throughput(Throughput::Elements((fwd_flop * 3.5) as u64));
    g.bench_function("forward+backward", |bench| {
        bench.iter(|| {
            let grads = train();
            dev.sync().expect("sync");
            grads
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
