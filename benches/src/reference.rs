//! CPU side of `gpubench`: deterministic random inputs (generated on every core), f64
//! references for matmul, causal GQA attention (forward and backward), softmax and AdamW, and
//! the error measures the checks use.

/// Values are generated in chunks of this many, each from its own seed, so that the result
/// does not depend on the number of threads.
const CHUNK: usize = 1 << 20;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [-1, 1).
fn unit(state: &mut u64) -> f32 {
    (splitmix(state) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// `n` values from `gen`, filled in parallel chunks, each chunk seeded from (seed, chunk).
fn fill(n: usize, seed: u64, gen: fn(&mut u64) -> f32) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunks: Vec<(usize, &mut [f32])> = out.chunks_mut(CHUNK).enumerate().collect();
    let per = chunks.len().div_ceil(threads).max(1);
    let mut groups: Vec<Vec<(usize, &mut [f32])>> = Vec::new();
    let mut it = chunks.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        for group in groups {
            s.spawn(move || {
                for (c, chunk) in group {
                    let mut st = seed
                        .wrapping_mul(0xD6E8_FEB8_6659_FD93)
                        .wrapping_add(c as u64 + 1);
                    for x in chunk.iter_mut() {
                        *x = gen(&mut st);
                    }
                }
            });
        }
    });
    out
}

/// Uniform values in [-1, 1).
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    fill(n, seed, unit)
}

/// Roughly standard normal values (the sum of three uniforms in [-1, 1) has variance 1).
pub fn randn(n: usize, seed: u64) -> Vec<f32> {
    fill(n, seed, |s| unit(s) + unit(s) + unit(s))
}

/// The largest `|got - want| / max(|want|, 1)` (as the engine's tests measure); infinite if
/// any element is not finite or the lengths differ.
pub fn max_err(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter().zip(want).fold(0.0, |worst, (&g, &w)| {
        let e = (g as f64 - w).abs() / w.abs().max(1.0);
        if e.is_finite() {
            worst.max(e)
        } else {
            f64::INFINITY
        }
    })
}

/// The largest `|got - want| / |want|` over elements with `want != 0` (for probabilities).
pub fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter().zip(want).fold(0.0, |worst, (&g, &w)| {
        let e = (g as f64 - w).abs() / w.abs().max(1e-300);
        if e.is_finite() {
            worst.max(e)
        } else {
            f64::INFINITY
        }
    })
}

/// The largest `|got - want|` relative to the largest `|want|` (for AdamW's moments, which
/// can be tiny).
pub fn max_scaled_err(got: &[f32], want: &[f64]) -> f64 {
    let s = want.iter().fold(1e-30f64, |a, &w| a.max(w.abs()));
    let scaled: Vec<f64> = want.iter().map(|w| w / s).collect();
    let got: Vec<f32> = got.iter().map(|&g| (g as f64 / s) as f32).collect();
    max_err(&got, &scaled)
}

/// `a (m x k) @ b (k x n)` in f64.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let x = a[i * k + p] as f64;
            for (j, out) in row.iter_mut().enumerate() {
                *out += x * b[p * n + j] as f64;
            }
        }
    }
    c
}

/// One element `(i, j)` of `a (m x k) @ b (k x n)` in f64, for spot checks of large products.
pub fn matmul_entry(a: &[f32], b: &[f32], k: usize, n: usize, i: usize, j: usize) -> f64 {
    (0..k)
        .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
        .sum()
}

/// [`matmul_entry`] on f16 inputs.
pub fn matmul_entry_f16(
    a: &[half::f16],
    b: &[half::f16],
    k: usize,
    n: usize,
    i: usize,
    j: usize,
) -> f64 {
    (0..k)
        .map(|p| a[i * k + p].to_f64() * b[p * n + j].to_f64())
        .sum()
}

/// Head layout of a causal attention problem with one batch: q (hq, t, d), k and v (hkv, t, d).
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub hq: usize,
    pub hkv: usize,
    pub t: usize,
    pub d: usize,
}

/// Causal attention output row `i` of query head `h`, in f64 (scale 1/sqrt(d)).
pub fn attention_row(s: Heads, q: &[f32], k: &[f32], v: &[f32], h: usize, i: usize) -> Vec<f64> {
    let (t, d) = (s.t, s.d);
    let scale = 1.0 / (d as f64).sqrt();
    let qo = h * t * d;
    let ko = (h / (s.hq / s.hkv)) * t * d;
    let qi = &q[qo + i * d..qo + (i + 1) * d];
    let scores: Vec<f64> = (0..=i)
        .map(|j| {
            let kj = &k[ko + j * d..ko + (j + 1) * d];
            scale
                * qi.iter()
                    .zip(kj)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
        })
        .collect();
    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
    let sum: f64 = p.iter().sum();
    let mut out = vec![0.0; d];
    for (j, pj) in p.iter().enumerate() {
        for e in 0..d {
            out[e] += pj / sum * v[ko + j * d + e] as f64;
        }
    }
    out
}

/// Causal attention forward and the gradients of `sum(out * g)`, in f64.
pub struct AttentionRef {
    pub out: Vec<f64>,
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
}

/// dS = P * (dP - rowsum(P * dP)), dP = g V^T; dq = scale dS K, dk = scale dS^T Q, dv = P^T g,
/// with dk and dv summed over the query heads that share a kv head.
pub fn attention(s: Heads, q: &[f32], k: &[f32], v: &[f32], g: &[f32]) -> AttentionRef {
    let (t, d) = (s.t, s.d);
    let scale = 1.0 / (d as f64).sqrt();
    let group = s.hq / s.hkv;
    let f = |x: &[f32]| x.iter().map(|&e| e as f64).collect::<Vec<f64>>();
    let (q, k, v, g) = (f(q), f(k), f(v), f(g));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut r = AttentionRef {
        out: vec![0.0; q.len()],
        dq: vec![0.0; q.len()],
        dk: vec![0.0; k.len()],
        dv: vec![0.0; v.len()],
    };
    for h in 0..s.hq {
        let qo = h * t * d;
        let ko = (h / group) * t * d;
        for i in 0..t {
            let qi = &q[qo + i * d..qo + (i + 1) * d];
            let gi = &g[qo + i * d..qo + (i + 1) * d];
            let row = |x: &[f64], j: usize| x[ko + j * d..ko + (j + 1) * d].to_vec();
            let sc: Vec<f64> = (0..=i).map(|j| scale * dot(qi, &row(&k, j))).collect();
            let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|x| x / sum).collect();
            let dp: Vec<f64> = (0..=i).map(|j| dot(gi, &row(&v, j))).collect();
            let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for j in 0..=i {
                let ds = p[j] * (dp[j] - delta);
                for x in 0..d {
                    r.out[qo + i * d + x] += p[j] * v[ko + j * d + x];
                    r.dv[ko + j * d + x] += p[j] * gi[x];
                    r.dq[qo + i * d + x] += scale * ds * k[ko + j * d + x];
                    r.dk[ko + j * d + x] += scale * ds * qi[x];
                }
            }
        }
    }
    r
}

/// Softmax of one row in f64.
pub fn softmax_row(x: &[f32]) -> Vec<f64> {
    let m = x.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// torch.optim.AdamW (no clipping, amsgrad off) in f64 over several parameters.
pub struct AdamWRef {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub p: Vec<Vec<f64>>,
    pub m: Vec<Vec<f64>>,
    pub v: Vec<Vec<f64>>,
    pub t: i32,
}

impl AdamWRef {
    pub fn new(lr: f64, weight_decay: f64, params: &[Vec<f32>]) -> Self {
        AdamWRef {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            p: params
                .iter()
                .map(|p| p.iter().map(|&x| x as f64).collect())
                .collect(),
            m: params.iter().map(|p| vec![0.0; p.len()]).collect(),
            v: params.iter().map(|p| vec![0.0; p.len()]).collect(),
            t: 0,
        }
    }

    /// `p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    ///  p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
    pub fn step(&mut self, grads: &[Vec<f32>]) {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let (bc1, bc2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (k, g) in grads.iter().enumerate() {
            for (i, &g) in g.iter().enumerate() {
                let g = g as f64;
                let p = &mut self.p[k][i];
                *p *= 1.0 - self.lr * self.weight_decay;
                self.m[k][i] = b1 * self.m[k][i] + (1.0 - b1) * g;
                self.v[k][i] = b2 * self.v[k][i] + (1.0 - b2) * g * g;
                *p -= self.lr / bc1 * self.m[k][i] / (self.v[k][i].sqrt() / bc2.sqrt() + self.eps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_deterministic_and_spread() {
        let a = randn(3 * CHUNK + 17, 5);
        let b = randn(3 * CHUNK + 17, 5);
        assert_eq!(a, b);
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
            "{mean} {var}"
        );
        assert_ne!(uniform(100, 1), uniform(100, 2));
    }

    #[test]
    fn matmul_reference_agrees_with_entries() {
        let (m, k, n) = (5, 7, 3);
        let (a, b) = (uniform(m * k, 1), uniform(k * n, 2));
        let c = matmul(&a, &b, m, k, n);
        for i in 0..m {
            for j in 0..n {
                assert!((c[i * n + j] - matmul_entry(&a, &b, k, n, i, j)).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn attention_reference_rows_agree() {
        let s = Heads {
            hq: 4,
            hkv: 2,
            t: 9,
            d: 8,
        };
        let (q, k, v) = (randn(36 * 8, 1), randn(18 * 8, 2), randn(18 * 8, 3));
        let g = vec![0.0; q.len()];
        let r = attention(s, &q, &k, &v, &g);
        for h in 0..4 {
            for i in 0..9 {
                let row = attention_row(s, &q, &k, &v, h, i);
                let o = (h * 9 + i) * 8;
                for e in 0..8 {
                    assert!((row[e] - r.out[o + e]).abs() < 1e-12);
                }
            }
        }
        // The first query sees only the first key: its output is v's first row.
        for e in 0..8 {
            assert!((r.out[e] - v[e] as f64).abs() < 1e-12);
        }
    }
}
