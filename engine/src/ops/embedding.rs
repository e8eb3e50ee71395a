//! Embedding lookup (a gather of weight rows by token id) and its backward, a deterministic
//! scatter-add done as a stable GPU radix sort of positions by id plus a segment sum (see
//! `kernels/wgsl/embedding.wgsl`), with no float atomics.

use kernels::embedding as k;

use crate::autograd::Backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::elementwise::fill;
use crate::ops::run;
use crate::tensor::Tensor;

/// Rows of `weight (vocab, d)` picked by `ids` (u32, any shape): shape `ids.shape + [d]`.
///
/// Ids `>= vocab` are not read (the GPU cannot report them without a sync): they give zero
/// rows and no gradient. Callers holding the ids on the host check them first with
/// [`check_ids`].
pub fn embedding(weight: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (vocab, d) = check_operands("embedding", weight, ids)?;
    let n = ids.elem_count();
    let mut shape = ids.shape().to_vec();
    shape.push(d);
    let out = Tensor::uninit(weight.device(), "embedding", &shape, DType::F32)?;
    run("embedding", &k::gather(n, d, vocab), &[weight, ids, &out])?;
    let ids = ids.clone();
    Ok(out.recorded(&[weight], || EmbeddingBackward { ids, vocab }))
}

/// An error naming the first id `>= vocab` and its position, if any.
pub fn check_ids(ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().position(|&id| id as usize >= vocab) {
        None => Ok(()),
        Some(position) => Err(Error::IdOutOfRange {
            op: "embedding",
            id: ids[position],
            position,
            vocab,
        }),
    }
}

/// The gradient of [`embedding`] with respect to its weight: a dense `(vocab, d)` tensor whose
/// row `v` is the sum of the rows of `grad_out` (shape `ids.shape + [d]`) at the positions
/// where `ids == v`, added in increasing position order (deterministic, bit for bit), and zero
/// for ids that do not occur. Ids `>= vocab` are ignored.
pub fn embedding_grad(ids: &Tensor, grad_out: &Tensor, vocab: usize) -> Result<Tensor> {
    const OP: &str = "embedding_grad";
    ids.expect_dtype(OP, DType::U32)?;
    grad_out.expect_dtype(OP, DType::F32)?;
    let n = ids.elem_count();
    let d = match grad_out.shape().split_last() {
        Some((&d, lead)) if lead == ids.shape() => d,
        _ => {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: ids.shape().to_vec(),
                rhs: grad_out.shape().to_vec(),
            })
        }
    };
    check_vocab(OP, vocab, d)?;
    let dev = ids.device();
    let out = Tensor::uninit(dev, OP, &[vocab, d], DType::F32)?;
    fill(&out, 0.0)?;
    if n == 0 || d == 0 {
        return Ok(out);
    }
    // Stable LSD radix sort of positions 0..n by min(id, vocab), ping-ponging two buffers.
    let mut src = Tensor::uninit(dev, OP, &[n], DType::U32)?;
    let mut dst = Tensor::uninit(dev, OP, &[n], DType::U32)?;
    let table = Tensor::uninit(dev, OP, &[k::table_len(n)], DType::U32)?;
    run(OP, &k::iota(n), &[&src])?;
    for pass in 0..k::sort_passes(vocab) {
        run(OP, &k::digit_hist(n, vocab, pass), &[ids, &src, &table])?;
        run(OP, &k::scan_table(n), &[&table])?;
        run(
            OP,
            &k::digit_scatter(n, vocab, pass),
            &[ids, &src, &table, &dst],
        )?;
        std::mem::swap(&mut src, &mut dst);
    }
    run(
        OP,
        &k::segment_sum(n, d, vocab),
        &[ids, &src, grad_out, &out],
    )?;
    Ok(out)
}

/// (vocab, d) of a valid weight / ids pair.
fn check_operands(op: &'static str, weight: &Tensor, ids: &Tensor) -> Result<(usize, usize)> {
    weight.check_same_device(op, ids)?;
    weight.expect_dtype(op, DType::F32)?;
    ids.expect_dtype(op, DType::U32)?;
    let &[vocab, d] = weight.shape() else {
        return Err(Error::BadShape {
            op,
            shape: weight.shape().to_vec(),
            reason: "the weight must be (vocab, d)".into(),
        });
    };
    check_vocab(op, vocab, d)?;
    Ok((vocab, d))
}

fn check_vocab(op: &'static str, vocab: usize, d: usize) -> Result<()> {
    // The sort's out-of-range key is `vocab` itself, and kernels index in u32.
    if vocab >= u32::MAX as usize || vocab.saturating_mul(d) > u32::MAX as usize {
        return Err(Error::BadShape {
            op,
            shape: vec![vocab, d],
            reason: "vocab and vocab * d must fit in 32 bits".into(),
        });
    }
    Ok(())
}

/// d out[k, :] / d weight[v, :] = [ids[k] == v] I, so
/// d weight[v, :] = sum over positions k with ids[k] == v of g[k, :]. The ids get no gradient.
struct EmbeddingBackward {
    ids: Tensor,
    vocab: usize,
}

impl Backward for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = g.to_dtype(DType::F32)?;
        Ok(vec![Some(embedding_grad(&self.ids, &g, self.vocab)?)])
    }
}
