//! From examples to the arrays one forward pass takes: shuffling by seed, a held-out split,
//! and micro-batches padded on the right to their longest sequence, rounded up to a multiple
//! of [`SEQ_MULTIPLE`] (right padding keeps causal attention exact for the real tokens; pads
//! carry no loss).

use crate::data::Example;

/// Padded sequence lengths are multiples of this, so that the tokens of a micro-batch (the M
/// of every linear layer's product) fit the 16 x 16 tiles of the cooperative-matrix kernels;
/// otherwise each product would fall back to the SIMT kernel.
pub const SEQ_MULTIPLE: usize = 16;

/// `longest` rounded up to the padded length of a micro-batch.
pub fn padded_len(longest: usize) -> usize {
    longest.max(1).next_multiple_of(SEQ_MULTIPLE)
}

/// A micro-batch: `ids`, `targets` and `mask` are (batch, seq_len) row-major. Position t of
/// row b predicts `targets[b][t]` (the next token) with weight `mask[b][t]` (0 or 1).
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    pub batch: usize,
    pub seq_len: usize,
    pub ids: Vec<u32>,
    pub targets: Vec<u32>,
    pub mask: Vec<f32>,
}

impl MicroBatch {
    /// Pad `examples` on the right with `pad_id` to [`padded_len`] of the longest.
    pub fn new(examples: &[&Example], pad_id: u32) -> MicroBatch {
        let batch = examples.len();
        let seq_len = padded_len(examples.iter().map(|e| e.ids.len()).max().unwrap_or(0));
        let mut mb = MicroBatch {
            batch,
            seq_len,
            ids: vec![pad_id; batch * seq_len],
            targets: vec![pad_id; batch * seq_len],
            mask: vec![0.0; batch * seq_len],
        };
        for (b, e) in examples.iter().enumerate() {
            let row = b * seq_len;
            mb.ids[row..row + e.ids.len()].copy_from_slice(&e.ids);
            for t in 0..e.ids.len().saturating_sub(1) {
                mb.targets[row + t] = e.ids[t + 1];
                mb.mask[row + t] = if e.loss[t + 1] { 1.0 } else { 0.0 };
            }
        }
        mb
    }

    /// Tokens that carry loss.
    pub fn loss_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }
}

/// SplitMix64: a small, well-mixed generator for shuffling by seed.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by rejection so every value is equally likely.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// A permutation of 0..n, the same for the same seed (Fisher-Yates).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Split indices into (train, held out): `fraction` of them (at least one when fraction > 0
/// and there are two or more) held out, chosen by `seed`.
pub fn split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let order = shuffled(n, seed ^ 0x005E_ED0F_5B11);
    // Keep at least one example for training; hold out at least one when asked to.
    let mut held = (((n as f64) * fraction).round() as usize).min(n.saturating_sub(1));
    if fraction > 0.0 && n >= 2 {
        held = held.max(1);
    }
    let mut train = order[held..].to_vec();
    let mut eval = order[..held].to_vec();
    train.sort_unstable();
    eval.sort_unstable();
    (train, eval)
}

/// Group `order` (indices into `examples`) into micro-batches of at most `max_sequences`
/// sequences and at most `max_tokens` padded tokens each (padded as [`MicroBatch::new`] pads;
/// a longer sequence goes alone).
pub fn micro_batches(
    examples: &[Example],
    order: &[usize],
    max_sequences: usize,
    max_tokens: usize,
) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut longest = 0;
    for &i in order {
        let len = examples[i].ids.len();
        let new_longest = longest.max(len);
        if !cur.is_empty()
            && (cur.len() >= max_sequences
                || padded_len(new_longest) * (cur.len() + 1) > max_tokens)
        {
            out.push(std::mem::take(&mut cur));
            longest = 0;
        }
        longest = longest.max(len);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32], loss: &[bool]) -> Example {
        Example {
            ids: ids.to_vec(),
            loss: loss.to_vec(),
        }
    }

    #[test]
    fn padding_shifts_targets_and_masks_pads() {
        let a = ex(&[1, 2, 3, 4], &[false, false, true, true]);
        let b = ex(&[5, 6], &[false, true]);
        let mb = MicroBatch::new(&[&a, &b], 0);
        // Both rows padded to 16, the tile of the cooperative-matrix kernels.
        assert_eq!((mb.batch, mb.seq_len), (2, 16));
        let row = |v: &[u32]| [v, &vec![0; 16 - v.len()]].concat();
        assert_eq!(mb.ids, [row(&[1, 2, 3, 4]), row(&[5, 6])].concat());
        assert_eq!(mb.targets, [row(&[2, 3, 4]), row(&[6])].concat());
        let mut mask = vec![0.0; 32];
        mask[1] = 1.0;
        mask[2] = 1.0;
        mask[16] = 1.0;
        assert_eq!(mb.mask, mask);
        assert_eq!(mb.loss_tokens(), 3);
        let long = ex(&[7; 17], &[true; 17]);
        assert_eq!(MicroBatch::new(&[&long], 0).seq_len, 32);
        assert_eq!(MicroBatch::new(&[], 0).seq_len, 16);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a = shuffled(100, 1);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, shuffled(100, 1));
        assert_ne!(a, shuffled(100, 2));
        assert_ne!(a, sorted);
    }

    #[test]
    fn split_holds_out_a_fraction() {
        let (train, eval) = split(10, 0.2, 3);
        assert_eq!((train.len(), eval.len()), (8, 2));
        assert!(eval.iter().all(|i| !train.contains(i)));
        assert_eq!(split(10, 0.0, 3).1.len(), 0);
        assert_eq!(split(3, 0.01, 3).1.len(), 1);
        assert_eq!(split(1, 0.5, 3).1.len(), 0);
    }

    #[test]
    fn micro_batches_respect_both_limits() {
        let lens = [10, 3, 50, 7, 7, 7, 200, 1];
        let exs: Vec<Example> = lens
            .iter()
            .map(|&n| ex(&vec![1; n], &vec![true; n]))
            .collect();
        let order: Vec<usize> = (0..lens.len()).collect();
        let mbs = micro_batches(&exs, &order, 3, 64);
        let flat: Vec<usize> = mbs.iter().flatten().copied().collect();
        assert_eq!(flat, order);
        for mb in &mbs {
            let longest = mb.iter().map(|&i| lens[i]).max().unwrap();
            assert!(mb.len() <= 3);
            assert!(
                mb.len() == 1 || padded_len(longest) * mb.len() <= 64,
                "{mb:?}"
            );
        }
        // 10 and 3 pad to 16 each: two fit 64 tokens, 50 (padded to 64) goes alone.
        assert_eq!(mbs[0], vec![0, 1]);
        assert_eq!(mbs[1], vec![2]);
    }
}
