//! The f64 reference of attention (softmax materialised, gradients derived analytically),
//! shared by the flash (f32) and block (f16) attention tests.
#![allow(dead_code)]

#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub b: usize,
    pub hq: usize,
    pub hkv: usize,
    /// Queries (Tq) and keys (Tk) per head.
    pub t: usize,
    pub tk: usize,
    pub d: usize,
    pub causal: bool,
    pub scale: Option<f32>,
}

/// Forward and backward of attention in f64, with `g` the gradient of the output.
pub struct Reference {
    pub out: Vec<f64>,
    pub lse: Vec<f64>,
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
}

/// Query i sees keys 0..=Tk-Tq+i under the causal mask, every key otherwise.
pub fn reference(c: &Case, q: &[f32], k: &[f32], v: &[f32], g: &[f32]) -> Reference {
    let (t, tk, d) = (c.t, c.tk, c.d);
    let scale = c.scale.map_or(1.0 / (d as f64).sqrt(), f64::from);
    let group = c.hq / c.hkv;
    let mut r = Reference {
        out: vec![0.0; q.len()],
        lse: vec![0.0; c.b * c.hq * t],
        dq: vec![0.0; q.len()],
        dk: vec![0.0; k.len()],
        dv: vec![0.0; v.len()],
    };
    for b in 0..c.b {
        for h in 0..c.hq {
            let qo = (b * c.hq + h) * t * d;
            let ko = (b * c.hkv + h / group) * tk * d;
            let row = |base: usize, x: &[f32], i: usize| -> Vec<f64> {
                x[base + i * d..base + (i + 1) * d]
                    .iter()
                    .map(|&e| e as f64)
                    .collect()
            };
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
            for i in 0..t {
                let qi = row(qo, q, i);
                let gi = row(qo, g, i);
                let n = if c.causal { tk - t + i + 1 } else { tk };
                let s: Vec<f64> = (0..n).map(|j| scale * dot(&qi, &row(ko, k, j))).collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = s.iter().map(|x| (x - m).exp()).sum();
                let p: Vec<f64> = s.iter().map(|x| (x - m).exp() / sum).collect();
                r.lse[(b * c.hq + h) * t + i] = m + sum.ln();
                let dp: Vec<f64> = (0..n).map(|j| dot(&gi, &row(ko, v, j))).collect();
                let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                for j in 0..n {
                    let (kj, vj) = (row(ko, k, j), row(ko, v, j));
                    let ds = p[j] * (dp[j] - delta);
                    for e in 0..d {
                        r.out[qo + i * d + e] += p[j] * vj[e];
                        r.dv[ko + j * d + e] += p[j] * gi[e];
                        r.dq[qo + i * d + e] += scale * ds * kj[e];
                        r.dk[ko + j * d + e] += scale * ds * qi[e];
                    }
                }
            }
        }
    }
    r
}

/// Self-attention (as many queries as keys) with the default scale.
pub fn case(b: usize, (hq, hkv): (usize, usize), t: usize, d: usize, causal: bool) -> Case {
    Case {
        b,
        hq,
        hkv,
        t,
        tk: t,
        d,
        causal,
        scale: None,
    }
}
