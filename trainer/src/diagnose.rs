//! The capability diagnostic (arXiv 2510.00526): how likely the base model finds the training
//! tokens, before any training. The mean probability places the data on the paper's
//! model-capability continuum: high (math, ~0.8) favours prior-leaning objectives (alpha >= 1),
//! low (novel puzzles, ~0.01) favours NLL.

use engine::ops::objective::lm_head_log_probs;
use engine::{no_grad, Tensor};
use models::Model;
use serde_json::{json, Value};

use crate::batch::{micro_batches, MicroBatch};
use crate::data::Dataset;

/// The probability of every loss token of every example under `model`, example by example,
/// in the model's compute precision (`Model::set_compute`); `packed`, the examples of a
/// micro-batch share one row ([`MicroBatch::packed`]: each sees only itself).
pub fn token_probs(
    model: &Model,
    ds: &Dataset,
    max_batch_tokens: usize,
    packed: bool,
    pad_id: u32,
) -> models::Result<Vec<Vec<f64>>> {
    // Longest first: micro-batches of similar lengths pad little, and the first one tells
    // at once whether the longest example fits. An example's probabilities do not depend on
    // its batch-mates (right padding, causal attention) beyond the rounding of kernels chosen
    // by shape.
    let mut order: Vec<usize> = (0..ds.examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ds.examples[i].ids.len()));
    let mut probs = vec![Vec::new(); ds.examples.len()];
    let dev = model.device().clone();
    for group in micro_batches(&ds.examples, &order, 64, max_batch_tokens, packed) {
        let refs: Vec<_> = group.iter().map(|&i| &ds.examples[i]).collect();
        let mb = MicroBatch::build(&refs, pad_id, packed);
        let log_p = no_grad(|| -> models::Result<Vec<f32>> {
            let hidden = mb.hidden_states(model)?;
            let hidden = hidden.reshape(&[mb.batch * mb.seq_len, model.config.hidden_size])?;
            let targets = Tensor::from_u32_slice(&dev, &mb.targets, &[mb.batch * mb.seq_len])?;
            let (x, chunks) = model.lm_head_operands(&hidden)?;
            Ok(lm_head_log_probs(&x, &chunks, &targets)?.to_vec()?)
        })?;
        for (&i, &(at, len)) in group.iter().zip(&mb.spans) {
            for t in at..at + len {
                if mb.mask[t] > 0.0 {
                    probs[i].push((log_p[t] as f64).exp());
                }
            }
        }
    }
    Ok(probs)
}

/// f_alpha(p) = (1 - p^alpha) / alpha, and -log p at alpha = 0.
pub fn f_alpha(p: f64, alpha: f64) -> f64 {
    if alpha == 0.0 {
        -p.ln()
    } else {
        -(alpha * p.ln()).exp_m1() / alpha
    }
}

/// Percentile `q` (0-100) of sorted values, interpolated linearly as numpy does.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub const PERCENTILES: [u32; 6] = [5, 10, 20, 30, 50, 90];
pub const BINS: usize = 20;

/// The mean probability of `probs` and their mean -ln p (the NLL); both 0 when empty.
pub fn mean_p_and_nll(probs: &[f64]) -> (f64, f64) {
    let n = probs.len().max(1) as f64;
    (
        probs.iter().sum::<f64>() / n,
        probs.iter().map(|p| -p.ln()).sum::<f64>() / n,
    )
}

/// The statistics `trainer diagnose` prints.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub tokens: usize,
    pub mean_prob: f64,
    pub geometric_mean_prob: f64,
    pub nll: f64,
    pub histogram: [usize; BINS],
    pub frac_below_0_1: f64,
    pub frac_above_0_9: f64,
    pub percentiles: Vec<(u32, f64)>,
    pub per_example_mean: Vec<f64>,
    /// (alpha as written, mean f_alpha over tokens)
    pub f_alpha: Vec<(String, f64)>,
    pub recommended_alpha: f64,
    pub recommendation: String,
}

impl Diagnosis {
    /// Statistics of per-example token probabilities; `alphas` as the user wrote them.
    pub fn new(per_example: &[Vec<f64>], alphas: &[String]) -> Result<Diagnosis, String> {
        let mut all: Vec<f64> = per_example.iter().flatten().copied().collect();
        if all.is_empty() {
            return Err("no loss tokens to diagnose".into());
        }
        let n = all.len() as f64;
        let (mean_prob, nll) = mean_p_and_nll(&all);
        let mut histogram = [0usize; BINS];
        for &p in &all {
            histogram[((p * BINS as f64) as usize).min(BINS - 1)] += 1;
        }
        let frac_below_0_1 = all.iter().filter(|&&p| p < 0.1).count() as f64 / n;
        let frac_above_0_9 = all.iter().filter(|&&p| p > 0.9).count() as f64 / n;
        all.sort_by(f64::total_cmp);
        let percentiles = PERCENTILES
            .iter()
            .map(|&q| (q, percentile(&all, q as f64)))
            .collect();
        let mut f = Vec::new();
        for a in alphas {
            let alpha: f64 = a
                .parse()
                .map_err(|_| format!("--alphas: {a:?} is not a number"))?;
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(format!("--alphas: {a} must be a finite number >= 0"));
            }
            f.push((
                a.clone(),
                all.iter().map(|&p| f_alpha(p, alpha)).sum::<f64>() / n,
            ));
        }
        let (recommended_alpha, recommendation) = recommend(mean_prob);
        Ok(Diagnosis {
            tokens: all.len(),
            mean_prob,
            geometric_mean_prob: (-nll).exp(),
            nll,
            histogram,
            frac_below_0_1,
            frac_above_0_9,
            percentiles,
            per_example_mean: per_example
                .iter()
                .map(|ps| {
                    if ps.is_empty() {
                        f64::NAN
                    } else {
                        ps.iter().sum::<f64>() / ps.len() as f64
                    }
                })
                .collect(),
            f_alpha: f,
            recommended_alpha,
            recommendation,
        })
    }

    pub fn to_json(&self) -> Value {
        let hist: Vec<Value> = self
            .histogram
            .iter()
            .enumerate()
            .map(|(i, &c)| json!({"from": i as f64 / BINS as f64, "to": (i + 1) as f64 / BINS as f64, "count": c}))
            .collect();
        let pct: serde_json::Map<String, Value> = self
            .percentiles
            .iter()
            .map(|(q, v)| (format!("p{q}"), json!(v)))
            .collect();
        let fa: serde_json::Map<String, Value> = self
            .f_alpha
            .iter()
            .map(|(a, v)| (a.clone(), json!(v)))
            .collect();
        json!({
            "tokens": self.tokens,
            "mean_prob": self.mean_prob,
            "geometric_mean_prob": self.geometric_mean_prob,
            "nll": self.nll,
            "f_alpha": fa,
            "histogram": hist,
            "frac_below_0.1": self.frac_below_0_1,
            "frac_above_0.9": self.frac_above_0_9,
            "percentiles": pct,
            "per_example_mean": self.per_example_mean,
            "recommendation": {"alpha": self.recommended_alpha, "reason": self.recommendation},
        })
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s += &format!("loss tokens            {}\n", self.tokens);
        s += &format!("mean p                 {:.4}\n", self.mean_prob);
        s += &format!(
            "geometric mean p       {:.4}   (NLL {:.4})\n",
            self.geometric_mean_prob, self.nll
        );
        s += &format!(
            "p < 0.1 / p > 0.9      {:.1}% / {:.1}%\n",
            100.0 * self.frac_below_0_1,
            100.0 * self.frac_above_0_9
        );
        let pct: Vec<String> = self
            .percentiles
            .iter()
            .map(|(q, v)| format!("p{q} {v:.3}"))
            .collect();
        s += &format!("percentiles            {}\n", pct.join("  "));
        for (a, v) in &self.f_alpha {
            s += &format!("objective alpha = {a:<5}{v:.4}\n");
        }
        let max = *self.histogram.iter().max().unwrap_or(&1).max(&1);
        s += "histogram of p\n";
        for (i, &c) in self.histogram.iter().enumerate() {
            let bar = "#".repeat((40 * c).div_ceil(max));
            s += &format!(
                "  {:.2}-{:.2} {c:>7} {bar}\n",
                i as f64 / BINS as f64,
                (i + 1) as f64 / BINS as f64
            );
        }
        s += &format!(
            "recommendation: alpha = {} ({})\n",
            self.recommended_alpha, self.recommendation
        );
        s
    }

    /// An SVG bar chart of the histogram of p.
    pub fn histogram_svg(&self) -> String {
        let (w, h, pad) = (640.0, 360.0, 40.0);
        let max = *self.histogram.iter().max().unwrap_or(&1).max(&1) as f64;
        let bw = (w - 2.0 * pad) / BINS as f64;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{pad}\" y=\"20\">p of {} loss tokens under the base model (mean {:.3})</text>\n",
            self.tokens, self.mean_prob
        );
        for (i, &c) in self.histogram.iter().enumerate() {
            let bh = (h - 2.0 * pad) * c as f64 / max;
            s += &format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a7ab5\"/>\n",
                pad + i as f64 * bw + 1.0,
                h - pad - bh,
                bw - 2.0
            );
        }
        for tick in 0..=4 {
            let x = pad + (w - 2.0 * pad) * tick as f64 / 4.0;
            s += &format!(
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.2}</text>\n",
                h - pad + 16.0,
                tick as f64 / 4.0
            );
        }
        s += &format!(
            "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n</svg>\n",
            h - pad,
            w - pad
        );
        s
    }
}

/// The paper's rule of thumb: above 0.5 prefer a prior-leaning alpha, below 0.1 use NLL.
pub fn recommend(mean_prob: f64) -> (f64, String) {
    if mean_prob > 0.5 {
        (1.0, format!("mean p {mean_prob:.3} > 0.5: the model is strong on this data; prior-leaning objectives (alpha >= 1, the paper's -p) beat NLL there"))
    } else if mean_prob < 0.1 {
        (0.0, format!("mean p {mean_prob:.3} < 0.1: the model is weak on this data; NLL (alpha = 0) learns where -p learns nothing"))
    } else {
        (0.0, format!("mean p {mean_prob:.3} is intermediate (0.1-0.5): no objective dominates in the paper; NLL is the safe default"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_alpha_family() {
        let p: f64 = 0.3;
        assert_eq!(f_alpha(p, 0.0), -p.ln());
        assert!((f_alpha(p, 1.0) - (1.0 - p)).abs() < 1e-15);
        assert!((f_alpha(p, 10.0) - (1.0 - p.powi(10)) / 10.0).abs() < 1e-15);
        // alpha -> 0 approaches NLL.
        assert!((f_alpha(p, 1e-9) + p.ln()).abs() < 1e-8);
    }

    #[test]
    fn statistics_of_known_probabilities() {
        let ex = vec![vec![0.05, 0.5, 0.95], vec![0.2]];
        let d = Diagnosis::new(&ex, &["0".into(), "1".into()]).unwrap();
        assert_eq!(d.tokens, 4);
        assert!((d.mean_prob - 0.425).abs() < 1e-12);
        assert!(
            (d.nll - (-(0.05f64.ln() + 0.5f64.ln() + 0.95f64.ln() + 0.2f64.ln()) / 4.0)).abs()
                < 1e-12
        );
        assert_eq!(d.histogram.iter().sum::<usize>(), 4);
        assert_eq!(
            (
                d.histogram[1],
                d.histogram[4],
                d.histogram[10],
                d.histogram[19]
            ),
            (1, 1, 1, 1)
        );
        assert_eq!((d.frac_below_0_1, d.frac_above_0_9), (0.25, 0.25));
        // numpy.percentile([0.05, 0.2, 0.5, 0.95], 50) == 0.35
        assert!((d.percentiles[4].1 - 0.35).abs() < 1e-12);
        assert_eq!(d.per_example_mean, vec![0.5, 0.2]);
        assert!((d.f_alpha[1].1 - 0.575).abs() < 1e-12);
        assert_eq!(d.recommended_alpha, 0.0);
        assert!(Diagnosis::new(&[vec![]], &[]).is_err());
        assert!(Diagnosis::new(&ex, &["x".into()]).is_err());
    }

    #[test]
    fn rule_of_thumb() {
        assert_eq!(recommend(0.8).0, 1.0);
        assert_eq!(recommend(0.01).0, 0.0);
        assert!(recommend(0.3).1.contains("intermediate"));
    }
}
