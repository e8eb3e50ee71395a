//! Tape autograd. Each op whose inputs carry gradients records one node (its backward rule,
//! holding the tensors it saved) on this thread's tape. `backward` walks the tape in
//! reverse, consuming it: each node is dropped, and its saved activations freed, as soon as
//! its rule has run, and each intermediate gradient is freed once passed on.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};

/// The backward rule of one op: gradients of its inputs from the gradient of its output.
pub trait Backward {
    fn name(&self) -> &'static str;
    /// One entry per input, in the op's input order; `None` where no gradient flows.
    fn backward(&self, grad_out: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

/// The backward rule of an op with several outputs (made together by one kernel, say):
/// gradients of its inputs from those of its outputs, `None` for an output no gradient
/// reached.
pub trait BackwardMany {
    fn name(&self) -> &'static str;
    /// One entry per input, in the op's input order; `None` where no gradient flows.
    fn backward(&self, grads_out: &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>>;
}

enum Rule {
    One(Box<dyn Backward>),
    Many(Box<dyn BackwardMany>),
}

struct Node {
    /// The op's outputs (one, for a [`Rule::One`]).
    outputs: Vec<TensorId>,
    /// The op's inputs; `None` for those without gradient.
    inputs: Vec<Option<TensorId>>,
    rule: Rule,
}

thread_local! {
    static TAPE: RefCell<Vec<Node>> = const { RefCell::new(Vec::new()) };
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub(crate) fn record(output: TensorId, inputs: Vec<Option<TensorId>>, rule: Box<dyn Backward>) {
    push(vec![output], inputs, Rule::One(rule));
}

/// Record an op with several outputs: its rule runs once, when backward reaches the first of
/// them on the way back (all later uses of every output have passed their gradients by then).
pub(crate) fn record_many(
    outputs: Vec<TensorId>,
    inputs: Vec<Option<TensorId>>,
    rule: Box<dyn BackwardMany>,
) {
    push(outputs, inputs, Rule::Many(rule));
}

fn push(outputs: Vec<TensorId>, inputs: Vec<Option<TensorId>>, rule: Rule) {
    TAPE.with(|t| {
        t.borrow_mut().push(Node {
            outputs,
            inputs,
            rule,
        })
    });
}

/// Whether ops record onto the tape on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Run `f` with recording set to `enabled`, restoring the previous setting afterwards (also
/// when `f` panics).
fn with_grad<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(enabled)));
    f()
}

/// Run `f` without recording anything on the tape (inference, optimizer updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    with_grad(false, f)
}

/// Run `f` with recording on, also inside `no_grad` (a backward rule that records a graph of
/// its own, as [`checkpoint`] does).
pub fn enable_grad<R>(f: impl FnOnce() -> R) -> R {
    with_grad(true, f)
}

/// Number of nodes on this thread's tape (for tests and memory accounting).
pub fn tape_len() -> usize {
    TAPE.with(|t| t.borrow().len())
}

/// Drop this thread's tape (and the activations it holds) without running backward.
pub fn clear_tape() {
    let nodes = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    drop(nodes);
}

/// `acc + g`: written into `acc` itself when no other handle shares its storage (a gradient
/// passed on by `add`'s backward rule, say, is shared with the other operand's), else a new
/// tensor. In place, a sum of gradients needs no third buffer: accumulating a micro-batch's
/// parameter gradients as they arrive holds one set of them, not two.
fn sum_into(acc: Tensor, g: &Tensor) -> Result<Tensor> {
    if acc.is_sole_owner() && !acc.is_tracked() && acc.shape() == g.shape() {
        acc.add_assign(g)?;
        Ok(acc)
    } else {
        acc.add(g)
    }
}

/// Gradients of variables, by tensor id.
#[derive(Default, Debug)]
pub struct Gradients(HashMap<TensorId, Tensor>);

impl Gradients {
    pub fn get(&self, var: &Tensor) -> Option<&Tensor> {
        self.0.get(&var.id())
    }
    pub fn remove(&mut self, var: &Tensor) -> Option<Tensor> {
        self.0.remove(&var.id())
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&TensorId, &Tensor)> {
        self.0.iter()
    }

    /// Add `grad` to the gradient held for `id` (gradient accumulation), in place where
    /// nothing else shares the held one.
    fn add(&mut self, id: TensorId, grad: Tensor) -> Result<()> {
        let sum = match self.0.remove(&id) {
            Some(prev) => sum_into(prev, &grad)?,
            None => grad,
        };
        self.0.insert(id, sum);
        Ok(())
    }

    /// Add every gradient of `other` into `self` (accumulation over micro-batches).
    pub fn accumulate(&mut self, other: Gradients) -> Result<()> {
        no_grad(|| {
            for (id, g) in other.0 {
                self.add(id, g)?;
            }
            Ok(())
        })
    }
}

impl Tensor {
    /// Gradients of this tensor (seeded with ones) with respect to every variable it was
    /// computed from. Consumes this thread's tape.
    pub fn backward(&self) -> Result<Gradients> {
        let mut grads = Gradients::default();
        self.backward_into(&mut grads)?;
        Ok(grads)
    }

    /// Like [`Tensor::backward`], adding into `grads` (gradient accumulation): each
    /// variable's gradient is added (in place where nothing else shares the held one) as soon
    /// as backward makes it, so after an error partway `grads` holds part of this backward's
    /// gradients and should be dropped.
    pub fn backward_into(&self, grads: &mut Gradients) -> Result<()> {
        self.backward_seeded(None, grads)
    }

    /// Backward from `seed`, the gradient of some loss with respect to this tensor (its
    /// shape; ones when `None`), adding into `grads`. Consumes this thread's tape.
    pub fn backward_seeded(&self, seed: Option<&Tensor>, grads: &mut Gradients) -> Result<()> {
        if let Some(s) = seed {
            self.expect_same_shape("backward", s)?;
        }
        let seed = || match seed {
            Some(s) => Ok(s.detach()),
            None => self.ones_like(),
        };
        if !self.is_tracked() {
            return Err(Error::Backward(format!(
                "tensor {:?} of shape {:?} was not computed from any variable with gradient \
                 recording on (no graph to run backward through)",
                self.id(),
                self.shape()
            )));
        }
        let nodes = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
        // Tensors some node made; every other input is a leaf (a variable), whose gradients
        // go into `grads` as they arrive, so that each is added (in place) and freed at once.
        let made: HashSet<TensorId> = nodes
            .iter()
            .flat_map(|n| n.outputs.iter().copied())
            .collect();
        no_grad(|| {
            // Intermediate gradients live here until their producer's node consumes them.
            let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
            pending.insert(self.id(), seed()?);
            for node in nodes.into_iter().rev() {
                let out_grads: Vec<Option<Tensor>> =
                    node.outputs.iter().map(|o| pending.remove(o)).collect();
                if out_grads.iter().all(Option::is_none) {
                    continue; // not on the path to this tensor; dropping frees its saved tensors
                }
                let (name, in_grads) = match &node.rule {
                    Rule::One(r) => {
                        let g = out_grads
                            .into_iter()
                            .flatten()
                            .next()
                            .expect("one gradient");
                        (r.name(), r.backward(&g)?)
                    }
                    Rule::Many(r) => (r.name(), r.backward(&out_grads)?),
                };
                if in_grads.len() != node.inputs.len() {
                    return Err(Error::Backward(format!(
                        "rule {name} returned {} gradients for {} inputs",
                        in_grads.len(),
                        node.inputs.len()
                    )));
                }
                for (id, g) in node.inputs.iter().zip(in_grads) {
                    if let (Some(id), Some(g)) = (id, g) {
                        if !made.contains(id) {
                            grads.add(*id, g)?;
                            continue;
                        }
                        let sum = match pending.remove(id) {
                            Some(prev) => sum_into(prev, &g)?,
                            None => g,
                        };
                        pending.insert(*id, sum);
                    }
                }
            }
            // What is left is the seed, when this tensor is itself a leaf.
            if self.is_var() {
                grads.add(self.id(), seed()?)?;
            }
            Ok(())
        })
    }
}

/// Activation checkpointing (recomputation): `f(inputs)` runs without recording, so none of
/// its activations are kept, only `inputs`; when backward reaches its output, `f` runs again
/// with recording on and the gradient goes back through that graph. `params` are the
/// variables `f` reads besides `inputs`; they get their gradients as from `f` itself. `f`
/// must compute the same thing both times (no randomness).
pub fn checkpoint<F>(inputs: &[&Tensor], params: &[&Tensor], f: F) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor> + 'static,
{
    let saved: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let out = no_grad(|| f(&saved))?;
    let all: Vec<&Tensor> = inputs.iter().chain(params).copied().collect();
    Ok(out.recorded(&all, || CheckpointBackward {
        inputs: saved,
        params: params.iter().map(|&p| p.clone()).collect(),
        f: Box::new(f),
    }))
}

/// The gradient of a checkpointed `f`: rebuild its graph from the saved inputs (as fresh
/// leaves) on an empty tape and run backward through it from the incoming gradient.
struct CheckpointBackward {
    inputs: Vec<Tensor>,
    params: Vec<Tensor>,
    f: Box<dyn Fn(&[Tensor]) -> Result<Tensor>>,
}

impl Backward for CheckpointBackward {
    fn name(&self) -> &'static str {
        "checkpoint"
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // The outer backward has taken the tape, so the recomputation records on an empty one.
        let leaves: Vec<Tensor> = self.inputs.iter().map(|t| t.detach().var()).collect();
        let out = enable_grad(|| (self.f)(&leaves))?;
        let mut grads = Gradients::default();
        if out.is_tracked() {
            out.backward_seeded(Some(g), &mut grads)?;
        }
        Ok(leaves
            .iter()
            .chain(&self.params)
            .map(|t| grads.remove(t))
            .collect())
    }
}
