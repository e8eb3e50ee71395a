//! AdamW with torch.optim.AdamW's semantics as one fused in-place kernel per parameter, the
//! global L2 norm of a list of gradients, and clipping by it (torch's `clip_grad_norm_`)
//! without a host round trip: the clip scale stays in a small GPU buffer the step kernel reads.
//! The moments (8 bytes a parameter, half of what training holds between steps) can live in
//! host memory instead ([`AdamW::set_offload`]): each parameter's pair then travels to the GPU
//! for its update and back, through one pair of buffers the size of the largest parameter.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use kernels::optim::{self as k, AdamWStep};

use crate::autograd::{no_grad, Gradients};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::run;
use crate::tensor::{Tensor, TensorId};

/// Where a moment lives: on the GPU (an f32 tensor of the parameter's shape), or in host
/// memory (its elements in row-major order) when the optimizer offloads.
#[derive(Debug, Clone)]
pub enum Moment {
    Device(Tensor),
    Host(Vec<f32>),
}

impl Moment {
    /// The elements, on the host (a download for a device moment).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            Moment::Device(t) => t.to_vec(),
            Moment::Host(v) => Ok(v.clone()),
        }
    }

    /// This moment where `offload` says moments live: host memory, or a tensor of `shape`.
    fn placed(self, dev: &Device, shape: &[usize], offload: bool) -> Result<Moment> {
        Ok(match (self, offload) {
            (Moment::Device(t), true) => Moment::Host(t.to_vec()?),
            (Moment::Host(v), false) => Moment::Device(Tensor::from_slice(dev, &v, shape)?),
            (m, _) => m,
        })
    }
}

/// The moments of one parameter and its own step count (as torch keeps them).
#[derive(Debug, Clone)]
pub struct ParamState {
    /// First moment (exp_avg), f32, the parameter's shape.
    pub m: Moment,
    /// Second moment (exp_avg_sq), f32, the parameter's shape.
    pub v: Moment,
    /// Number of updates this parameter has had.
    pub step: u64,
}

/// AdamW with decoupled weight decay, as torch.optim.AdamW (amsgrad off):
/// `p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
///  p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
/// The hyper-parameters are public so schedules can change them between steps.
#[derive(Debug)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Every gradient is multiplied by this before the norm, clipping and the update: 1 / the
    /// loss scale when the loss was scaled (f16), so that the gradients need no unscaling
    /// pass of their own (torch's `GradScaler.unscale_`); 1 otherwise.
    pub inv_loss_scale: f32,
    state: HashMap<TensorId, ParamState>,
    steps: u64,
    offload: bool,
}

const OP: &str = "adamw";

/// What [`AdamW::step_if_finite`] did.
#[derive(Debug, Clone)]
pub enum StepOutcome {
    Applied(StepStats),
    /// The gradient norm was not finite; nothing was updated.
    Skipped {
        grad_norm: f32,
    },
}

/// The (parameter, gradient) pairs to update, each parameter once, all checked.
fn pairs<'a>(
    params: &'a [Tensor],
    grads: &'a Gradients,
) -> Result<(Device, Vec<(&'a Tensor, &'a Tensor)>)> {
    let Some(first) = params.first() else {
        return Err(Error::BadShape {
            op: OP,
            shape: vec![],
            reason: "no parameters to update".into(),
        });
    };
    let mut seen = HashSet::new();
    let mut pairs = Vec::new();
    for p in params {
        if !seen.insert(p.id()) {
            continue; // listed twice: update once
        }
        let Some(g) = grads.get(p) else { continue };
        p.check_same_device(OP, first)?;
        g.check_same_device(OP, first)?;
        p.expect_dtype(OP, DType::F32)?;
        g.expect_dtype(OP, DType::F32)?;
        p.expect_same_shape(OP, g)?;
        pairs.push((p, g));
    }
    Ok((first.device().clone(), pairs))
}

/// What one [`AdamW::step`] measured, left on the GPU until asked for.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// `[gradient norm, clip scale, clip scale * inv_loss_scale]` (the clip scale is 1 when
    /// not clipping; the norm is of the unscaled gradients).
    pub norm_and_scale: Tensor,
    /// Parameters updated (those with a gradient).
    pub updated: usize,
}

impl StepStats {
    /// The global L2 norm of the (unscaled) gradients, before clipping (downloads three
    /// floats).
    pub fn grad_norm(&self) -> Result<f32> {
        Ok(self.norm_and_scale.to_vec()?[0])
    }
    /// The factor clipping multiplied the unscaled gradients by (downloads three floats).
    pub fn clip_scale(&self) -> Result<f32> {
        Ok(self.norm_and_scale.to_vec()?[1])
    }
}

impl AdamW {
    /// torch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    pub fn new(lr: f32) -> Self {
        AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            inv_loss_scale: 1.0,
            state: HashMap::new(),
            steps: 0,
            offload: false,
        }
    }

    /// One update of every parameter in `params` that has a gradient in `grads` (the others
    /// are left alone, their moments and step count too). With `max_norm`, the gradients are
    /// scaled by `min(1, max_norm / (norm + 1e-6))` where `norm` is the L2 norm over all of
    /// them, as `clip_grad_norm_` does; the gradient tensors themselves are not modified.
    /// Moments start at zero. Everything is checked before anything is updated.
    pub fn step(
        &mut self,
        params: &[Tensor],
        grads: &Gradients,
        max_norm: Option<f32>,
    ) -> Result<StepStats> {
        let (dev, pairs) = pairs(params, grads)?;
        no_grad(|| {
            let stats = self.norm(&dev, &pairs, max_norm)?;
            self.apply(&dev, &pairs, stats)
        })
    }

    /// [`AdamW::step`], unless the gradients' global norm is NaN or infinite (some gradient
    /// is): then nothing changes, neither the parameters nor their moments nor any step
    /// count, and the norm is returned. Waits for the norm (one download of three floats).
    pub fn step_if_finite(
        &mut self,
        params: &[Tensor],
        grads: &Gradients,
        max_norm: Option<f32>,
    ) -> Result<StepOutcome> {
        let (dev, pairs) = pairs(params, grads)?;
        no_grad(|| {
            let stats = self.norm(&dev, &pairs, max_norm)?;
            let grad_norm = stats.to_vec()?[0];
            if !grad_norm.is_finite() {
                return Ok(StepOutcome::Skipped { grad_norm });
            }
            Ok(StepOutcome::Applied(self.apply(&dev, &pairs, stats)?))
        })
    }

    /// `[norm, clip scale, factor of the raw gradients]`, on the GPU.
    fn norm(
        &self,
        dev: &Device,
        pairs: &[(&Tensor, &Tensor)],
        max_norm: Option<f32>,
    ) -> Result<Tensor> {
        let grad_list: Vec<&Tensor> = pairs.iter().map(|&(_, g)| g).collect();
        let stats = Tensor::uninit(dev, OP, &[3], DType::F32)?;
        norm_into(dev, &grad_list, &stats, max_norm, self.inv_loss_scale)?;
        Ok(stats)
    }

    fn apply(
        &mut self,
        dev: &Device,
        pairs: &[(&Tensor, &Tensor)],
        stats: Tensor,
    ) -> Result<StepStats> {
        // Every moment exists before any parameter moves, so running out of memory here
        // leaves the state of the previous step whole; offloaded, so do the GPU buffers the
        // moments travel through (the transfers' staging buffers are made per parameter: a
        // failure there is a lost device, after which no checkpoint is written).
        for &(p, _) in pairs {
            if let Entry::Vacant(e) = self.state.entry(p.id()) {
                let zeros = || -> Result<Moment> {
                    Ok(if self.offload {
                        Moment::Host(vec![0.0; p.elem_count()])
                    } else {
                        Moment::Device(Tensor::zeros(dev, p.shape(), DType::F32)?)
                    })
                };
                e.insert(ParamState {
                    m: zeros()?,
                    v: zeros()?,
                    step: 0,
                });
            }
        }
        let largest = pairs.iter().map(|(p, _)| p.elem_count()).max();
        let transit = match largest {
            Some(n) if self.offload => Some((
                Tensor::uninit(dev, OP, &[n], DType::F32)?,
                Tensor::uninit(dev, OP, &[n], DType::F32)?,
            )),
            _ => None,
        };
        for &(p, g) in pairs {
            let st = self
                .state
                .get_mut(&p.id())
                .expect("allocated in the loop above");
            st.step += 1;
            let launch = k::adamw(
                p.elem_count(),
                AdamWStep {
                    lr: self.lr as f64,
                    beta1: self.beta1 as f64,
                    beta2: self.beta2 as f64,
                    eps: self.eps as f64,
                    weight_decay: self.weight_decay as f64,
                    t: st.step,
                },
            );
            // The parameter is the output binding: its storage is updated in place.
            match (&mut st.m, &mut st.v, &transit) {
                (Moment::Device(m), Moment::Device(v), None) => {
                    run(OP, &launch, &[p, m, v, g, &stats])?;
                    m.mark_written();
                    v.mark_written();
                }
                (Moment::Host(m), Moment::Host(v), Some((tm, tv))) => {
                    // The kernel reads and writes the first elem_count elements only.
                    tm.write_prefix(m)?;
                    tv.write_prefix(v)?;
                    run(OP, &launch, &[p, tm, tv, g, &stats])?;
                    let [new_m, new_v]: [Vec<f32>; 2] =
                        Tensor::read_prefixes(&[(tm, m.len()), (tv, v.len())])?
                            .try_into()
                            .expect("two asked, two read");
                    (*m, *v) = (new_m, new_v);
                }
                _ => unreachable!("set_offload and set_state place every moment"),
            }
            p.mark_written();
        }
        self.steps += 1;
        Ok(StepStats {
            norm_and_scale: stats,
            updated: pairs.len(),
        })
    }

    /// Keep the moments in host memory (`true`) or on the GPU; chosen before the first step
    /// (restored states follow it: [`AdamW::set_state`] moves them). The updates are the same
    /// either way (the same kernel reads and writes the moments); offloaded, each step moves
    /// 16 bytes a parameter between host and GPU.
    pub fn set_offload(&mut self, offload: bool) -> Result<()> {
        if offload != self.offload && !self.state.is_empty() {
            return Err(Error::Misuse {
                op: "adamw_set_offload",
                reason: "moments exist already: choose where they live before the first step"
                    .into(),
            });
        }
        self.offload = offload;
        Ok(())
    }

    /// Whether the moments live in host memory.
    pub fn offloaded(&self) -> bool {
        self.offload
    }

    /// The moments and step count of `param`, once it has been updated (for checkpoints).
    pub fn state(&self, param: &Tensor) -> Option<&ParamState> {
        self.state.get(&param.id())
    }

    /// Every parameter's state, by the parameter's id.
    pub fn states(&self) -> impl Iterator<Item = (&TensorId, &ParamState)> {
        self.state.iter()
    }

    /// Restore the state of `param` (from a checkpoint): `m` and `v` must hold as many f32
    /// elements as the parameter (tensors: of its shape, on its device); they are moved where
    /// this optimizer keeps moments.
    pub fn set_state(&mut self, param: &Tensor, state: ParamState) -> Result<()> {
        const OP: &str = "adamw_set_state";
        for m in [&state.m, &state.v] {
            match m {
                Moment::Device(t) => {
                    t.check_same_device(OP, param)?;
                    t.expect_dtype(OP, DType::F32)?;
                    param.expect_same_shape(OP, t)?;
                }
                Moment::Host(v) if v.len() != param.elem_count() => {
                    return Err(Error::DataLength {
                        op: OP,
                        len: v.len(),
                        shape: param.shape().to_vec(),
                        expected: param.elem_count(),
                    })
                }
                Moment::Host(_) => {}
            }
        }
        let dev = param.device();
        let state = ParamState {
            m: state.m.placed(dev, param.shape(), self.offload)?,
            v: state.v.placed(dev, param.shape(), self.offload)?,
            step: state.step,
        };
        self.state.insert(param.id(), state);
        Ok(())
    }

    /// Number of `step` calls made (or restored with [`AdamW::set_steps`]).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
    }
}

/// The L2 norm of all elements of `grads` taken together, as a one-element tensor (shape
/// `[]`) left on the GPU. Each tensor is reduced into a few partial sums, then one workgroup
/// adds them, always in the same order.
pub fn global_norm(grads: &[&Tensor]) -> Result<Tensor> {
    global_norm_unscaled(grads, 1.0)
}

/// [`global_norm`] of the gradients times `unscale` (1 / a loss scale), each element scaled
/// before it is squared, so that loss-scaled gradients whose own norm would overflow f32 give
/// the norm of the true ones.
pub fn global_norm_unscaled(grads: &[&Tensor], unscale: f32) -> Result<Tensor> {
    let Some(first) = grads.first() else {
        return Err(Error::BadShape {
            op: "global_norm",
            shape: vec![],
            reason: "no tensors given".into(),
        });
    };
    let dev = first.device().clone();
    let out = Tensor::uninit(&dev, "global_norm", &[], DType::F32)?;
    norm_into(&dev, grads, &out, None, unscale)?;
    Ok(out)
}

/// `out = [norm]` or `out = [norm, clip scale, clip scale * unscale]` over `grads` (f32, on
/// `dev`), each element taken times `unscale`.
fn norm_into(
    dev: &Device,
    grads: &[&Tensor],
    out: &Tensor,
    max_norm: Option<f32>,
    unscale: f32,
) -> Result<()> {
    const OP: &str = "global_norm";
    for g in grads {
        g.expect_dtype(OP, DType::F32)?;
        if !g.device().same(dev) {
            return Err(Error::DeviceMismatch { op: OP });
        }
    }
    let count: usize = grads.iter().map(|g| k::partials_for(g.elem_count())).sum();
    let partials = Tensor::uninit(dev, OP, &[count], DType::F32)?;
    let mut offset = 0;
    for g in grads {
        run(
            OP,
            &k::sumsq_partial(g.elem_count(), offset, unscale),
            &[g, &partials],
        )?;
        offset += k::partials_for(g.elem_count());
    }
    run(
        OP,
        &k::norm_finalize(count, max_norm, unscale),
        &[&partials, out],
    )
}
