//! From examples to the arrays one forward pass takes: shuffling by seed, a held-out split,
//! and micro-batches padded on the right to their longest sequence, rounded up to a multiple
//! of [`SEQ_MULTIPLE`] (right padding keeps causal attention exact for the real tokens; pads
//! carry no loss), or packed: the sequences one after another in one row, each token's
//! position counted within its own sequence, which is all it sees.

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
    /// Packed: each token's position within its own sequence (batch x seq_len, the padding
    /// at the end a sequence of its own); `None` when each row is one sequence from 0.
    pub positions: Option<Vec<u32>>,
    /// Where each example's tokens are: (offset into the row-major arrays, length).
    pub spans: Vec<(usize, usize)>,
}

impl MicroBatch {
    /// Pad `examples` on the right with `pad_id` to [`padded_len`] of the longest.
    pub fn new(examples: &[&Example], pad_id: u32) -> MicroBatch {
        let batch = examples.len();
        let seq_len = padded_len(examples.iter().map(|e| e.ids.len()).max().unwrap_or(0));
        let mut mb = MicroBatch::padding(batch, seq_len, pad_id);
        for (b, e) in examples.iter().enumerate() {
            mb.put(b * seq_len, e);
        }
        mb
    }

    /// `examples` one after another in one row, padded on the right with `pad_id` to
    /// [`padded_len`] of their total length; a sequence's last token predicts nothing (the next
    /// sequence is not its continuation).
    pub fn packed(examples: &[&Example], pad_id: u32) -> MicroBatch {
        let total: usize = examples.iter().map(|e| e.ids.len()).sum();
        let mut mb = MicroBatch::padding(1, padded_len(total), pad_id);
        let mut positions = Vec::with_capacity(mb.seq_len);
        for e in examples {
            mb.put(positions.len(), e);
            positions.extend(0..e.ids.len() as u32);
        }
        positions.extend(0..(mb.seq_len - total) as u32);
        mb.positions = Some(positions);
        mb
    }

    /// [`MicroBatch::packed`] or [`MicroBatch::new`].
    pub fn build(examples: &[&Example], pad_id: u32, packed: bool) -> MicroBatch {
        if packed {
            MicroBatch::packed(examples, pad_id)
        } else {
            MicroBatch::new(examples, pad_id)
        }
    }

    /// The model's final hidden states of the micro-batch, (batch, seq_len, hidden).
    pub fn hidden_states(&self, model: &models::Model) -> models::Result<engine::Tensor> {
        match &self.positions {
            Some(p) => model.hidden_states_packed(&self.ids, self.batch, self.seq_len, p),
            None => model.hidden_states(&self.ids, self.batch, self.seq_len),
        }
    }

    /// `batch` rows of `seq_len` padding, no loss, no examples yet.
    fn padding(batch: usize, seq_len: usize, pad_id: u32) -> MicroBatch {
        MicroBatch {
            batch,
            seq_len,
            ids: vec![pad_id; batch * seq_len],
            targets: vec![pad_id; batch * seq_len],
            mask: vec![0.0; batch * seq_len],
            positions: None,
            spans: Vec::new(),
        }
    }

    /// Write example `e` at flat offset `at`: its ids, each position's next token and loss.
    fn put(&mut self, at: usize, e: &Example) {
        self.ids[at..at + e.ids.len()].copy_from_slice(&e.ids);
        for t in 0..e.ids.len().saturating_sub(1) {
            self.targets[at + t] = e.ids[t + 1];
            self.mask[at + t] = if e.loss[t + 1] { 1.0 } else { 0.0 };
        }
        self.spans.push((at, e.ids.len()));
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

/// Tokens a forward pass computes for the micro-batch `group` (padding included), padded as
/// [`MicroBatch::new`] or, `packed`, as [`MicroBatch::packed`] pads it.
pub fn computed_tokens(examples: &[Example], group: &[usize], packed: bool) -> usize {
    let lens = group.iter().map(|&i| examples[i].ids.len());
    let (longest, total) = lens.fold((0, 0), |(m, s), n| (m.max(n), s + n));
    padded_tokens(longest, total, group.len(), packed)
}

/// Tokens a micro-batch of `count` sequences, the longest `longest` tokens and `total` in
/// all, computes: one row of the total packed, else a row of the longest each.
fn padded_tokens(longest: usize, total: usize, count: usize, packed: bool) -> usize {
    if packed {
        padded_len(total)
    } else {
        padded_len(longest) * count
    }
}

/// One line on how much of what a run computes is padding (real and computed tokens over
/// its micro-batches), with what would cut it where that is a fifth or more.
pub fn padding_line(real: usize, computed: usize, packed: bool) -> String {
    let pct = 100.0 * (computed - real.min(computed)) as f64 / computed.max(1) as f64;
    let advice = if pct >= 20.0 && !packed {
        " (--packing or --group-by-length cut it)"
    } else {
        ""
    };
    format!("padding: {pct:.0}% of the {computed} tokens the run's forward passes compute{advice}")
}

/// Group `order` (indices into `examples`) into micro-batches of at most `max_sequences`
/// sequences and at most `max_tokens` padded tokens each (padded as [`MicroBatch::new`] pads,
/// or, `packed`, as [`MicroBatch::packed`] does; a longer sequence goes alone).
pub fn micro_batches(
    examples: &[Example],
    order: &[usize],
    max_sequences: usize,
    max_tokens: usize,
    packed: bool,
) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let (mut longest, mut total) = (0, 0);
    for &i in order {
        let len = examples[i].ids.len();
        // What the micro-batch would compute with this sequence in it.
        let tokens = padded_tokens(longest.max(len), total + len, cur.len() + 1, packed);
        if !cur.is_empty() && (cur.len() >= max_sequences || tokens > max_tokens) {
            out.push(std::mem::take(&mut cur));
            (longest, total) = (0, 0);
        }
        longest = longest.max(len);
        total += len;
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

    /// Examples of these lengths, every token a loss token.
    fn of_lengths(lens: &[usize]) -> Vec<Example> {
        lens.iter()
            .map(|&n| ex(&vec![1; n], &vec![true; n]))
            .collect()
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
        let exs = of_lengths(&lens);
        let order: Vec<usize> = (0..lens.len()).collect();
        let mbs = micro_batches(&exs, &order, 3, 64, false);
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

    #[test]
    fn packing_puts_sequences_one_after_another() {
        let a = ex(&[1, 2, 3, 4], &[false, false, true, true]);
        let b = ex(&[5, 6, 7], &[false, true, true]);
        let mb = MicroBatch::packed(&[&a, &b], 0);
        assert_eq!((mb.batch, mb.seq_len), (1, 16));
        let pad = |v: &[u32]| [v, &vec![0; 16 - v.len()]].concat();
        assert_eq!(mb.ids, pad(&[1, 2, 3, 4, 5, 6, 7]));
        // a's last token predicts nothing: b is not its continuation.
        assert_eq!(mb.targets, pad(&[2, 3, 4, 0, 6, 7]));
        let mut mask = vec![0.0; 16];
        for t in [1, 2, 4, 5] {
            mask[t] = 1.0;
        }
        assert_eq!(mb.mask, mask);
        let positions: Vec<u32> = [vec![0, 1, 2, 3, 0, 1, 2], (0..9).collect()].concat();
        assert_eq!(mb.positions, Some(positions));
        assert_eq!(mb.spans, vec![(0, 4), (4, 3)]);
        // The loss tokens are those of the two padded rows.
        assert_eq!(
            mb.loss_tokens(),
            MicroBatch::new(&[&a, &b], 0).loss_tokens()
        );
        assert_eq!(MicroBatch::new(&[&a, &b], 0).spans, vec![(0, 4), (16, 3)]);
    }

    #[test]
    fn packed_micro_batches_count_total_tokens() {
        let lens = [10, 3, 50, 7, 7, 7, 200, 1];
        let exs = of_lengths(&lens);
        let order: Vec<usize> = (0..lens.len()).collect();
        let mbs = micro_batches(&exs, &order, usize::MAX, 64, true);
        let flat: Vec<usize> = mbs.iter().flatten().copied().collect();
        assert_eq!(flat, order);
        // 10 + 3 + 50 = 63 fits one row of 64; 7 + 7 + 7 the next; 200 alone; then 1.
        assert_eq!(mbs, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6], vec![7]]);
        assert_eq!(micro_batches(&exs, &order, 2, 64, true)[0], vec![0, 1]);
        // 63 tokens packed in a row of 64; padded, three rows of the longest (50 -> 64).
        assert_eq!(computed_tokens(&exs, &[0, 1, 2], true), 64);
        assert_eq!(computed_tokens(&exs, &[0, 1, 2], false), 3 * 64);
        let line = padding_line(63, 192, false);
        assert!(line.starts_with("padding: 67% of the 192 tokens"), "{line}");
        assert!(line.contains("--packing"), "{line}");
        assert!(!padding_line(63, 64, true).contains("--packing"));
    }
}
