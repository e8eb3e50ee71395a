//! The engine end to end: a one-layer transformer (embedding, RMSNorm, rotary causal
//! attention with grouped-query heads, SwiGLU MLP, LM head) learns to complete sequences that
//! repeat themselves, trained with AdamW and gradient clipping, every op a WGSL kernel.
//!
//! `cargo run --release -p engine --example fit_tiny [steps]`

use engine::ops::{
    activation::swiglu,
    attention::attention,
    embedding::embedding,
    optim::AdamW,
    rope::{default_inv_freq, split_heads},
};
use engine::{Device, Result, Tensor};

const VOCAB: usize = 16;
const DIM: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = DIM / HEADS;
const HIDDEN: usize = 64;
const HALF: usize = 8; // each sequence is HALF random tokens, then the same tokens again
const SEQ: usize = 2 * HALF;
const BATCH: usize = 16;

struct Model {
    params: Vec<Tensor>,
}

impl Model {
    fn new(dev: &Device, seed: u64) -> Result<Model> {
        let mut rng = Lcg(seed);
        let mut normal = |shape: &[usize], std: f32| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.normal() * std).collect();
            Tensor::from_slice(dev, &data, shape).map(Tensor::var)
        };
        let shapes: [(&[usize], f32); 5] = [
            (&[VOCAB, DIM], 0.5),                             // embed
            (&[(HEADS + 2 * KV_HEADS) * HEAD_DIM, DIM], 0.2), // q, k, v stacked
            (&[DIM, HEADS * HEAD_DIM], 0.2),                  // o
            (&[2 * HIDDEN, DIM], 0.2),                        // gate, up stacked
            (&[DIM, HIDDEN], 0.2),                            // down
        ];
        let mut params = Vec::new();
        for (shape, std) in shapes {
            params.push(normal(shape, std)?);
        }
        for _ in 0..3 {
            params.push(Tensor::full(dev, &[DIM], engine::DType::F32, 1.0)?.var());
            // norms
        }
        params.push(normal(&[VOCAB, DIM], 0.2)?); // lm head
        Ok(Model { params })
    }

    /// Mean negative log-likelihood of the second half of each sequence.
    fn loss(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        targets_onehot: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let p = &self.params;
        let (embed, wqkv, wo, wgu, wd) = (&p[0], &p[1], &p[2], &p[3], &p[4]);
        let (n1, n2, nf, head) = (&p[5], &p[6], &p[7], &p[8]);
        let x = embedding(embed, ids)?; // (B, T, C)
        let h = x.rms_norm(n1, 1e-5)?;
        // One product for q, k and v, split into (B, n, T, D) heads with rotary on q and k.
        let groups = [(HEADS, true), (KV_HEADS, true), (KV_HEADS, false)];
        let inv_freq = Tensor::from_slice(
            h.device(),
            &default_inv_freq(10_000.0, HEAD_DIM),
            &[HEAD_DIM / 2],
        )?;
        let qkv = split_heads(&h.linear(wqkv, None)?, &groups, positions, &inv_freq)?;
        let a = attention(&qkv[0], &qkv[1], &qkv[2], true, None)?; // (B, H, T, D)
        let a = a.permute(&[0, 2, 1, 3])?.reshape(&[BATCH, SEQ, DIM])?;
        let x = x.add(&a.linear(wo, None)?)?;
        let h = x.rms_norm(n2, 1e-5)?;
        // One product for gate and up, SwiGLU on its halves.
        let x = x.add(&swiglu(&h.linear(wgu, None)?)?.linear(wd, None)?)?;
        let logits = x.rms_norm(nf, 1e-5)?.linear(head, None)?; // (B, T, V)
        let nll = logits
            .log_softmax()?
            .mul(targets_onehot)?
            .sum(-1, false)?
            .mul(mask)?; // (B, T)
        nll.sum_all()?.scale(-1.0 / (BATCH * (HALF - 1)) as f32)
    }
}

/// A tiny deterministic generator (the example needs no rand crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn uniform(&mut self) -> f32 {
        (self.next() as f32 + 0.5) / (1u64 << 31) as f32
    }
    fn normal(&mut self) -> f32 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f32::consts::PI * self.uniform()).cos()
    }
}

fn batch(dev: &Device, rng: &mut Lcg) -> Result<(Tensor, Tensor, Tensor)> {
    let mut ids = Vec::with_capacity(BATCH * SEQ);
    for _ in 0..BATCH {
        let half: Vec<u32> = (0..HALF)
            .map(|_| (rng.next() % VOCAB as u64) as u32)
            .collect();
        ids.extend(&half);
        ids.extend(&half);
    }
    // Target of position t is token t+1; only positions HALF..SEQ-1 are predictable.
    let mut onehot = vec![0.0f32; BATCH * SEQ * VOCAB];
    let mut mask = vec![0.0f32; BATCH * SEQ];
    for b in 0..BATCH {
        for t in HALF..SEQ - 1 {
            onehot[(b * SEQ + t) * VOCAB + ids[b * SEQ + t + 1] as usize] = 1.0;
            mask[b * SEQ + t] = 1.0;
        }
    }
    Ok((
        Tensor::from_u32_slice(dev, &ids, &[BATCH, SEQ])?,
        Tensor::from_slice(dev, &onehot, &[BATCH, SEQ, VOCAB])?,
        Tensor::from_slice(dev, &mask, &[BATCH, SEQ])?,
    ))
}

fn main() -> Result<()> {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dev = Device::new()?;
    println!("adapter: {} ({:?})", dev.name(), dev.device_type());
    let model = Model::new(&dev, 1)?;
    let positions = Tensor::from_u32_slice(&dev, &(0..SEQ as u32).collect::<Vec<_>>(), &[SEQ])?;
    let mut opt = AdamW::new(1e-2);
    opt.weight_decay = 0.0;
    let mut rng = Lcg(7);
    let start = std::time::Instant::now();
    let mut first = None;
    let mut last = 0.0;
    for step in 1..=steps {
        let (ids, onehot, mask) = batch(&dev, &mut rng)?;
        let loss = model.loss(&ids, &positions, &onehot, &mask)?;
        let grads = loss.backward()?;
        let stats = opt.step(&model.params, &grads, Some(1.0))?;
        if step == 1 || step % 25 == 0 || step == steps {
            last = loss.to_scalar()?;
            first.get_or_insert(last);
            println!(
                "step {step:4}  loss {last:.4}  grad norm {:.3}",
                stats.grad_norm()?
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{steps} steps in {secs:.1} s ({:.0} ms/step); loss {:.3} -> {last:.3} (chance: ln {VOCAB} = {:.3}); peak pool {:.1} MiB",
        1e3 * secs / steps as f64,
        first.unwrap_or(last),
        (VOCAB as f32).ln(),
        dev.pool_stats().peak as f64 / (1 << 20) as f64
    );
    Ok(())
}
