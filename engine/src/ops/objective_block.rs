//! The f16 path of [`super::objective::lm_head_objective`] and `lm_head_log_probs`, taken when
//! the hidden states and the LM-head chunks are f16: the vocabulary is cut into blocks of rows
//! (`kernels::objective_block::blocks`), and each block's logits z = x W[block]^T are one
//! matmul on the kernels `Auto` picks (cooperative matrices, i.e. tensor cores, where the
//! adapter has them), held as an (N, len) f32 buffer reused from block to block, so that the
//! N x V logits still never exist at once. The forward folds each block into the partials the
//! f32 path's finish kernel reads (one split per block); the backward recomputes each block's
//! logits, turns them into f16 logit gradients dz (times a power of two S that puts the
//! largest in [2^13, 2^14), so that none overflows and small ones stay out of f16's
//! subnormals), and takes dW[block] = dz^T x and dx += dz W[block] as two more f16 products,
//! dividing dx and dW by S at the end. Gradients are f32, as for every f16 input.

use kernels::objective_block::{self as kb, Block};

use crate::dtype::DType;
use crate::error::Result;
use crate::ops::matmul::product_at;
use crate::ops::run;
use crate::tensor::Tensor;

fn plan(x: &Tensor, chunks: &[Tensor]) -> Vec<Block> {
    let rows: Vec<usize> = chunks.iter().map(|w| w.dim(0)).collect();
    let len = kb::block_len(x.dim(0), x.device().max_binding_bytes());
    kb::blocks(&rows, len)
}

/// The (max, rest, target logit) partials, (3, s_total, n), and s_total (at most
/// `kb::SPLITS`: later blocks merge into the splits of earlier ones).
pub(crate) fn partials(
    op: &'static str,
    x: &Tensor,
    chunks: &[Tensor],
    targets: &Tensor,
) -> Result<(Tensor, usize)> {
    let n = x.dim(0);
    let blocks = plan(x, chunks);
    let s_total = kb::splits(blocks.len());
    let dev = x.device();
    let part = Tensor::uninit(dev, op, &[3 * s_total * n], DType::F32)?;
    if n == 0 {
        return Ok((part, s_total));
    }
    let widest = blocks.iter().map(|b| b.len).max().unwrap_or(1);
    let z = Tensor::uninit(dev, op, &[n * widest], DType::F32)?;
    for (s, b) in blocks.iter().enumerate() {
        logits(op, x, &chunks[b.chunk], b, &z)?;
        run(op, &kb::stats(n, b, s, s_total), &[&z, targets, &part])?;
    }
    Ok((part, s_total))
}

/// z (n, len) = x W[block]^T.
fn logits(op: &'static str, x: &Tensor, w: &Tensor, b: &Block, z: &Tensor) -> Result<()> {
    let (n, d) = (x.dim(0), x.dim(1));
    product_at(
        op,
        (x, 0),
        (w, b.start * d),
        (z, 0),
        [n, b.len, d],
        false,
        true,
    )
}

/// dx (when `need[0]`) and each chunk's dW (when `need[1 + c]`), f32, for the incoming
/// gradient `g` (1) and the forward's `saved`.
pub(crate) fn backward(
    op: &'static str,
    x: &Tensor,
    chunks: &[Tensor],
    targets: &Tensor,
    saved: &Tensor,
    g: &Tensor,
    need: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (n, d) = (x.dim(0), x.dim(1));
    let dev = x.device();
    let mut dw: Vec<Option<Tensor>> = Vec::with_capacity(chunks.len());
    for (c, w) in chunks.iter().enumerate() {
        dw.push(match need[c + 1] {
            // Written block by block below; all zero when there are no tokens.
            true if n > 0 => Some(Tensor::uninit(dev, op, &[w.dim(0), d], DType::F32)?),
            true => Some(Tensor::zeros(dev, &[w.dim(0), d], DType::F32)?),
            false => None,
        });
    }
    let mut dx: Option<Tensor> = None;
    let scale = Tensor::uninit(dev, op, &[3], DType::F32)?;
    if n > 0 {
        run(op, &kb::scale(n), &[saved, g, &scale])?;
        let blocks = plan(x, chunks);
        let widest = blocks.iter().map(|b| b.len).max().unwrap_or(1);
        let z = Tensor::uninit(dev, op, &[n * widest], DType::F32)?;
        let dz = Tensor::uninit(dev, op, &[n * widest], DType::F16)?;
        for b in &blocks {
            let (w, dw) = (&chunks[b.chunk], &dw[b.chunk]);
            if dw.is_none() && !need[0] {
                continue;
            }
            logits(op, x, w, b, &z)?;
            run(op, &kb::dz(n, b), &[&z, targets, saved, &scale, &dz])?;
            if let Some(dw) = dw {
                // dW[block] (len, d) = dz^T (len, n) x (n, d).
                product_at(
                    op,
                    (&dz, 0),
                    (x, 0),
                    (dw, b.start * d),
                    [b.len, d, n],
                    true,
                    false,
                )?;
            }
            if need[0] {
                // dx (n, d) += dz (n, len) W[block] (len, d), summed in place.
                let part = Tensor::uninit(dev, op, &[n, d], DType::F32)?;
                product_at(
                    op,
                    (&dz, 0),
                    (w, b.start * d),
                    (&part, 0),
                    [n, d, b.len],
                    false,
                    false,
                )?;
                match &dx {
                    None => dx = Some(part),
                    Some(acc) => acc.add_assign(&part)?,
                }
            }
        }
    }
    // The products saw dz times S: back to the gradients' own scale.
    for t in dw.iter().flatten().chain(dx.as_ref()).filter(|_| n > 0) {
        run(op, &kb::unscale(t.elem_count()), &[t, &scale])?;
    }
    let dx = match (need[0], dx) {
        (false, _) => None,
        (true, Some(dx)) => Some(dx),
        (true, None) => Some(Tensor::zeros(dev, &[n, d], DType::F32)?),
    };
    let mut out = vec![dx];
    out.extend(dw);
    Ok(out)
}
