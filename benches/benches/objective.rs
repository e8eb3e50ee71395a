//! Criterion bench: the fused LM-head objective (alpha = 1) forward + backward against the
//! unfused path (logits materialised, log-softmax, gather by one-hot), and the peak GPU
//! memory of each printed beside it: the fused path's peak must not grow with N x V.
//! On a GPU: N = 4096 tokens, d = 1536, V = 151,936 (Qwen2.5-1.5B's LM head, split into
//! chunks that fit one binding); on a CPU adapter: N = 64, d = 64, V = 8,000.
use criterion::{criterion_group, criterion_main, Criterion};
use engine::ops::objective::{lm_head_objective, Objective};
use engine::{Device, Tensor};

fn fused(x: &Tensor, w: &[Tensor], targets: &Tensor, mask: &Tensor) -> Tensor {
    let out =
        lm_head_objective(x, w, targets, mask, &Objective::FAlpha(1.0), None).expect("objective");
    out.loss.backward().expect("backward");
    out.loss
}

fn unfused(x: &Tensor, w: &[Tensor], onehot: &Tensor) -> Tensor {
    let parts: Vec<Tensor> = w
        .iter()
        .map(|c| x.linear(c, None).expect("logits"))
        .collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    let logits = Tensor::cat(&refs, -1).expect("cat");
    let logp = logits
        .log_softmax()
        .expect("log_softmax")
        .mul(onehot)
        .expect("gather")
        .sum(-1, false)
        .expect("sum");
    // 1 - p, token mean
    let loss = logp
        .exp()
        .expect("p")
        .affine(-1.0, 1.0)
        .expect("1-p")
        .mean_all()
        .expect("mean");
    loss.backward().expect("backward");
    loss
}

fn bench(c: &mut Criterion) {
    let dev = Device::new().expect("a GPU adapter (or lavapipe)");
    let cpu = format!("{:?}", dev.device_type()) == "Cpu";
    let (n, d, v) = if cpu {
        (64, 64, 8_000)
    } else {
        (4096, 1536, 151_936)
    };
    let rows_per_chunk = (dev.max_binding_bytes() as usize / (4 * d)).min(v);
    let x = Tensor::from_slice(
        &dev,
        &(0..n * d)
            .map(|i| ((i % 97) as f32 - 48.0) * 0.01)
            .collect::<Vec<_>>(),
        &[n, d],
    )
    .expect("x")
    .var();
    let mut w = Vec::new();
    let mut start = 0;
    while start < v {
        let rows = rows_per_chunk.min(v - start);
        let data: Vec<f32> = (0..rows * d)
            .map(|i| (((i + start * d) % 89) as f32 - 44.0) * 0.001)
            .collect();
        w.push(
            Tensor::from_slice(&dev, &data, &[rows, d])
                .expect("w")
                .var(),
        );
        start += rows;
    }
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
    let targets = Tensor::from_u32_slice(&dev, &ids, &[n]).expect("targets");
    let mask = Tensor::full(&dev, &[n], engine::DType::F32, 1.0).expect("mask");
    dev.sync().expect("sync");

    let mut g = c.benchmark_group("objective");
    g.sample_size(10);
    let base = dev.pool_stats().in_use;
    dev.reset_peak();
    fused(&x, &w, &targets, &mask);
    dev.sync().expect("sync");
    let fused_peak = dev.pool_stats().peak - base;
    g.bench_function(
        format!(
            "fused f_alpha=1 fwd+bwd N={n} d={d} V={v} on {}",
            dev.name()
        ),
        |b| {
            b.iter(|| {
                let l = fused(&x, &w, &targets, &mask);
                dev.sync().expect("sync");
                l
            })
        },
    );
    // The unfused path needs the one-hot targets (N x V) and the logits: only where they fit.
    let logits_bytes = (n * v * 4) as u64;
    if logits_bytes <= dev.max_binding_bytes() {
        let mut oh = vec![0f32; n * v];
        for (i, &t) in ids.iter().enumerate() {
            oh[i * v + t as usize] = 1.0;
        }
        let onehot = Tensor::from_slice(&dev, &oh, &[n, v]).expect("onehot");
        drop(oh);
        dev.sync().expect("sync");
        let base = dev.pool_stats().in_use;
        dev.reset_peak();
        unfused(&x, &w, &onehot);
        dev.sync().expect("sync");
        let unfused_peak = dev.pool_stats().peak - base;
        println!(
            "objective peak memory above inputs, N={n} d={d} V={v}: fused {:.1} MiB, unfused {:.1} MiB (logits alone {:.1} MiB)",
            fused_peak as f64 / 1048576.0,
            unfused_peak as f64 / 1048576.0,
            logits_bytes as f64 / 1048576.0
        );
        g.bench_function(
            format!("unfused 1-p fwd+bwd N={n} d={d} V={v} on {}", dev.name()),
            |b| {
                b.iter(|| {
                    let l = unfused(&x, &w, &onehot);
                    dev.sync().expect("sync");
                    l
                })
            },
        );
    } else {
        println!(
            "objective peak memory above inputs, N={n} d={d} V={v}: fused {:.1} MiB (the logits alone would be {:.1} MiB)",
            fused_peak as f64 / 1048576.0,
            logits_bytes as f64 / 1048576.0
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
