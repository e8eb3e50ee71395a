//! How the model's parameters map onto the tensors of an HF checkpoint. Most parameters are
//! one HF tensor each; a vocabulary matrix split into row chunks (to fit GPU bindings) has
//! each chunk hold a row range of one HF tensor; a stacked projection (q/k/v, gate/up) holds
//! several HF tensors one after another. [`Model::to_hf`] assembles HF tensors from values
//! given per parameter (weights, optimizer moments, gradients) and [`Model::param_from_hf`]
//! cuts a parameter's value back out of them, so what is saved does not depend on how this
//! device chunked or stacked the parameters.

use std::collections::HashMap;
use std::ops::Range;

use engine::Tensor;

use crate::decoder::Model;
use crate::error::{Error, Result};
use crate::weights::{Init, Weights};

/// Rows `rows` of the HF tensor `name`, which has `total` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfRows {
    pub name: String,
    pub total: usize,
    pub rows: Range<usize>,
}

/// A trainable tensor under its own name, and the HF rows it holds, in order.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    pub hf: Vec<HfRows>,
}

fn rows_of(t: &Tensor) -> usize {
    t.shape().first().copied().unwrap_or(1)
}

impl Param {
    /// A parameter that is the whole HF tensor of the same name.
    pub(crate) fn single(name: &str, tensor: &Tensor) -> Param {
        let rows = rows_of(tensor);
        Param {
            name: name.into(),
            tensor: tensor.clone(),
            hf: vec![HfRows {
                name: name.into(),
                total: rows,
                rows: 0..rows,
            }],
        }
    }

    /// The same parameter with `scope.` before its names.
    pub(crate) fn within(self, scope: &str) -> Param {
        Param {
            name: format!("{scope}.{}", self.name),
            hf: self
                .hf
                .into_iter()
                .map(|h| HfRows {
                    name: format!("{scope}.{}", h.name),
                    ..h
                })
                .collect(),
            ..self
        }
    }
}

impl Model {
    /// HF tensors `(name, shape, data)` assembled from `value(param)`, host data in the
    /// parameter's shape for each parameter (`None` skips it; an HF tensor none of whose rows
    /// were given is left out), in the order their first rows come.
    pub fn to_hf(
        &self,
        mut value: impl FnMut(&Param) -> Result<Option<Vec<f32>>>,
    ) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
        let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for p in self.parameter_layout() {
            let Some(data) = value(&p)? else { continue };
            let shape = p.tensor.shape();
            if data.len() != p.tensor.elem_count() {
                return Err(Error::Layout(format!(
                    "{}: {} values for shape {shape:?}",
                    p.name,
                    data.len()
                )));
            }
            let row_len: usize = shape.iter().skip(1).product();
            let mut start = 0;
            for h in &p.hf {
                let i = *index.entry(h.name.clone()).or_insert_with(|| {
                    let mut hf_shape = shape.to_vec();
                    if let Some(first) = hf_shape.first_mut() {
                        *first = h.total;
                    }
                    out.push((h.name.clone(), hf_shape, Vec::new()));
                    out.len() - 1
                });
                let filled = out[i].2.len() / row_len.max(1);
                let end = start + h.rows.len();
                if h.rows.start != filled || end > rows_of(&p.tensor) {
                    return Err(Error::Layout(format!(
                        "{}: rows {:?} of `{}` out of order or past the parameter",
                        p.name, h.rows, h.name
                    )));
                }
                out[i]
                    .2
                    .extend_from_slice(&data[start * row_len..end * row_len]);
                start = end;
            }
            if start != rows_of(&p.tensor) {
                return Err(Error::Layout(format!(
                    "{}: its HF rows cover {start} of its {} rows",
                    p.name,
                    rows_of(&p.tensor)
                )));
            }
        }
        for (name, shape, data) in &out {
            if data.len() != shape.iter().product::<usize>() {
                return Err(Error::Layout(format!("`{name}` given only in part")));
            }
        }
        Ok(out)
    }

    /// The value of parameter `p` cut out of the HF tensors in `w`, named `prefix` followed
    /// by their HF names.
    pub fn param_from_hf(&self, p: &Param, w: &Weights, prefix: &str) -> Result<Tensor> {
        let rest = &p.tensor.shape()[1.min(p.tensor.rank())..];
        let parts =
            p.hf.iter()
                .map(|h| {
                    let shape: Vec<usize> = std::iter::once(h.total)
                        .chain(rest.iter().copied())
                        .collect();
                    w.get_rows(
                        &format!("{prefix}{}", h.name),
                        &shape,
                        h.rows.clone(),
                        Init::Zeros,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        Ok(Tensor::cat(&refs, 0)?)
    }
}
