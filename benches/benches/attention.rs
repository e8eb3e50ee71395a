//! Criterion bench: causal flash attention, forward and forward + backward, at Qwen2.5-1.5B's
//! head layout (B=1, Hq=12, Hkv=2, D=128, T=1024) on a GPU, and one decode step (Tq=1 against a
//! KV cache of Tk=1024 and 4096 positions, the split-key decode kernel); on a CPU adapter
//! (lavapipe) tiny sizes (T=128, D=64, 2 heads; decode Tk=128 and 512) so that `cargo bench`
//! finishes fast.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::ops::attention::{attention, KvCache};
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
    decode(c, &dev, cpu);
}

/// One decode step: a single query per head against a filled cache (capacity past Tk, as in
/// generation). Memory-bound: throughput in bytes of k and v read.
fn decode(c: &mut Criterion, dev: &Device, cpu: bool) {
    let (b, hq, hkv, d, lens) = if cpu {
        (1, 4, 2, 64, [128, 512])
    } else {
        (1, 12, 2, 128, [1024, 4096])
    };
    for tk in lens {
        let make = |shape: &[usize], seed| {
            Tensor::from_slice(dev, &values(shape.iter().product(), seed), shape).expect("upload")
        };
        let mut cache = KvCache::new(dev, b, hkv, tk + 64, d).expect("cache");
        let ks = [b, hkv, tk, d];
        cache.append(&make(&ks, 4), &make(&ks, 5)).expect("append");
        let q = make(&[b, hq, 1, d], 6);
        let step = || engine::no_grad(|| cache.attend(&q)).expect("decode");
        drop(step());
        dev.sync().expect("sync");
        let mut g = c.benchmark_group(format!("attention decode B{b} Hq{hq} Hkv{hkv} Tk{tk} D{d}"));
        if cpu {
            g.sample_size(10);
        }
        g.throughput(Throughput::Bytes((2 * b * hkv * tk * d * 4) as u64));
        g.bench_function("attend", |bench| {
            bench.iter(|| {
                let out = step();
                dev.sync().expect("sync");
                out
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
