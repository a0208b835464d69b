//! Autograd: the `no_grad` scope, which ops record a graph, and `backward()` with one arm per `Op`.

use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use crate::{DType, Error, Result, Tensor, TensorId};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record the graph (false inside [`no_grad`]).
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` without recording the graph (evaluation, optimizer updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

impl Op {
    /// The tensors this op read.
    pub(crate) fn parents(&self) -> Vec<&Tensor> {
        match self {
            Op::Unary(a, _)
            | Op::Reduce(a, ..)
            | Op::Softmax(a)
            | Op::LogSoftmax(a)
            | Op::Reshape(a)
            | Op::Cast(a)
            | Op::Permute(a, _)
            | Op::Narrow(a, ..)
            | Op::BroadcastTo(a)
            | Op::AvgPool2d(a, _)
            | Op::Im2col(a, _) => vec![a],
            // The arg-max indices are bookkeeping, not an input with a gradient.
            Op::MaxPool2d(a, _, _) => vec![a],
            Op::Binary(a, b, _) | Op::Matmul(a, b) => vec![a, b],
            Op::IndexSelect(a, idx, _) | Op::Gather(a, idx, _) => vec![a, idx],
            Op::Where(c, a, b) => vec![c, a, b],
            Op::Cat(ts, _) => ts.iter().collect(),
            Op::Attention { q, k, v, mask, .. } => [q, k, v].into_iter().chain(mask).collect(),
            Op::Lstm(s) => s.inputs().to_vec(),
            Op::Gru(s) => s.inputs().to_vec(),
            // The saved statistics are bookkeeping, not an input.
            Op::LayerNorm(x, w, b, _) => std::iter::once(x).chain(w).chain(b).collect(),
        }
    }
}

/// Whether a tensor made by `op` needs a graph node.
pub(crate) fn op_needs_grad(op: &Op) -> bool {
    op.parents().iter().any(|t| t.requires_grad_flag())
}

/// Gradients from [`Tensor::backward`], keyed by tensor. Each gradient has its tensor's shape
/// and lives on its device (GPU gradients never leave the GPU).
#[derive(Default, Clone, Debug)]
pub struct Gradients(HashMap<TensorId, Tensor>);

impl Gradients {
    /// The gradient of `t`, if `t` needed one and the loss depends on it.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id())
    }
    /// Removes and returns the gradient of `t`.
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id())
    }
    /// Sets the gradient of `t` (e.g. after clipping).
    pub fn insert(&mut self, t: &Tensor, grad: Tensor) {
        self.0.insert(t.id(), grad);
    }
    /// Every gradient held, mutably (in no particular order).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Tensor> {
        self.0.values_mut()
    }
    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn accumulate(&mut self, t: &Tensor, g: Tensor) -> Result<()> {
        let g = match self.0.remove(&t.id()) {
            Some(prev) => prev.add(&g)?,
            None => g,
        };
        self.0.insert(t.id(), g);
        Ok(())
    }
}

/// Nodes reachable from `root` through tensors that need gradients, parents before children.
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative DFS (deep graphs such as unrolled LSTMs would overflow a recursive one).
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            for p in op.parents() {
                if p.requires_grad_flag() && !seen.contains(&p.id()) {
                    stack.push((p.clone(), false));
                }
            }
        }
    }
    order
}

impl Tensor {
    /// Marks this tensor as a leaf that needs a gradient (a new handle sharing the storage).
    pub fn requires_grad(&self) -> Tensor {
        self.with_requires_grad(true)
    }

    /// The same values cut from the graph: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        self.with_requires_grad(false)
    }

    /// Back-propagates from this one-element tensor (the loss) and returns the gradient of
    /// every tensor that needs one. The backward pass itself records no graph.
    pub fn backward(&self) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(Error::invalid(
                "backward",
                format!("needs a one-element loss, got shape {:?}", self.dims()),
            ));
        }
        let mut grads = Gradients::default();
        let _in_backward = crate::anomaly::enter_backward()?;
        if !self.requires_grad_flag() {
            return Ok(grads);
        }
        // The backward ops run in the dtypes the forward recorded, whatever autocast says.
        crate::amp::set_autocast(false, || {
            no_grad(|| -> Result<()> {
                grads.0.insert(self.id(), self.ones_like()?);
                for node in topo_order(self).into_iter().rev() {
                    let Some(op) = node.op() else { continue };
                    let Some(dy) = grads.0.get(&node.id()).cloned() else {
                        continue;
                    };
                    for (parent, g) in backward_op(op, &node, &dy)? {
                        crate::anomaly::check_backward(op, &parent, &g)?;
                        if parent.requires_grad_flag() {
                            // A gradient has its tensor's dtype (arms mixing F16 and F32 may
                            // promote).
                            let g = if g.dtype() != parent.dtype() && parent.dtype() != DType::U32 {
                                g.to_dtype(parent.dtype())?
                            } else {
                                g
                            };
                            grads.accumulate(&parent, g)?;
                        }
                    }
                    // Interior gradients are not kept: only leaves are returned.
                    grads.0.remove(&node.id());
                }
                Ok(())
            })
        })?;
        Ok(grads)
    }
}

/// The gradients an op sends to its parents, given its output `y` and the output gradient.
fn backward_op(op: &Op, y: &Tensor, dy: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
    let one = |t: &Tensor, g: Tensor| Ok(vec![(t.clone(), g)]);
    match op {
        Op::Unary(x, u) => {
            let g = match *u {
                UnaryOp::Copy => dy.clone(),
                UnaryOp::Neg => dy.neg()?,
                UnaryOp::Abs => dy.mul(&x.unary(UnaryOp::Sign)?)?,
                UnaryOp::Exp => dy.mul(y)?,
                UnaryOp::Log => dy.div(x)?,
                UnaryOp::Sqrt => dy.div(&y.mul_scalar(2.0)?)?,
                UnaryOp::Relu => dy.mul(&x.gt_scalar(0.0)?)?,
                UnaryOp::Sigmoid => dy.mul(&y.mul(&y.affine(-1.0, 1.0)?)?)?,
                UnaryOp::Tanh => dy.mul(&y.mul(y)?.affine(-1.0, 1.0)?)?,
                UnaryOp::Gelu => dy.mul(&x.unary(UnaryOp::GeluGrad)?)?,
                UnaryOp::Affine { mul, .. } => dy.mul_scalar(mul)?,
                UnaryOp::Powf(p) => dy.mul(&x.powf(p - 1.0)?.mul_scalar(p)?)?,
                UnaryOp::Recip => dy.mul(&y.mul(y)?)?.neg()?,
                UnaryOp::Clamp { min, max } => {
                    dy.mul(&x.ge_scalar(min)?.mul(&x.le_scalar(max)?)?)?
                }
                UnaryOp::GeluGrad
                | UnaryOp::Sign
                | UnaryOp::CmpScalar(..)
                | UnaryOp::U32ToF32
                | UnaryOp::F32ToU32 => return Ok(vec![]),
            };
            one(x, g)
        }
        Op::Binary(a, b, op) => match op {
            BinaryOp::Add => pair(a, || Ok(dy.clone()), b, || Ok(dy.clone())),
            BinaryOp::Sub => pair(a, || Ok(dy.clone()), b, || dy.neg()),
            BinaryOp::Mul => pair(a, || dy.mul(b), b, || dy.mul(a)),
            BinaryOp::Div => pair(a, || dy.div(b), b, || dy.div(b)?.mul(y)?.neg()),
            BinaryOp::Maximum | BinaryOp::Minimum => {
                // Ties send the gradient to `a`.
                let pick_a = if *op == BinaryOp::Maximum {
                    a.ge(b)?
                } else {
                    a.le(b)?
                };
                let ga = dy.mul(&pick_a)?;
                pair(a, || Ok(ga.clone()), b, || dy.sub(&ga))
            }
            BinaryOp::Cmp(_) => Ok(vec![]),
        },
        Op::Where(c, a, b) => {
            let zero = Tensor::zeros((), dy.device())?;
            let ga = Tensor::where_cond(c, dy, &zero)?;
            pair(a, || Ok(ga.clone()), b, || dy.sub(&ga))
        }
        Op::Reduce(x, r, dims, keepdim) => {
            // dy and y with the reduced dims kept as size 1, so they broadcast against x.
            let mut kept = x.dims().to_vec();
            for &d in dims {
                kept[d] = 1;
            }
            let dy_k = if *keepdim {
                dy.clone()
            } else {
                dy.reshape(kept.clone())?
            };
            let g = match r {
                ReduceOp::Sum => dy_k.broadcast_to(x.shape().clone())?,
                ReduceOp::Mean => {
                    let count: usize = dims.iter().map(|&d| x.dims()[d]).product();
                    dy_k.mul_scalar(1.0 / count as f32)?
                        .broadcast_to(x.shape().clone())?
                }
                ReduceOp::Max | ReduceOp::Min => {
                    // Split evenly between tied extremes.
                    let y_k = if *keepdim {
                        y.clone()
                    } else {
                        y.reshape(kept.clone())?
                    };
                    let mask = x.eq(&y_k)?;
                    let ties = mask.reduce(ReduceOp::Sum, &to_isize(dims), true)?;
                    mask.mul(&dy_k.div(&ties)?)?
                }
                ReduceOp::ArgMax => return Ok(vec![]),
            };
            one(x, g.contiguous()?)
        }
        Op::Softmax(x) => one(x, Tensor::softmax_backward(y, dy)?),
        Op::LogSoftmax(x) => one(x, Tensor::log_softmax_backward(y, dy)?),
        Op::Matmul(a, b) => {
            // Work on the promoted (rank >= 2) shapes, then fold back.
            let a2 = if a.rank() == 1 {
                a.unsqueeze(0)?
            } else {
                a.clone()
            };
            let b2 = if b.rank() == 1 {
                b.unsqueeze(1)?
            } else {
                b.clone()
            };
            let batch = batch_shape(&a2, &b2)?;
            let mut dy_dims = batch;
            dy_dims.push(a2.dims()[a2.rank() - 2]);
            dy_dims.push(b2.dims()[b2.rank() - 1]);
            let dy2 = dy.reshape(dy_dims)?;
            pair_exact(
                a,
                || {
                    dy2.matmul(&b2.t()?)?
                        .sum_to_shape(a2.shape())?
                        .reshape(a.shape().clone())
                },
                b,
                || {
                    a2.t()?
                        .matmul(&dy2)?
                        .sum_to_shape(b2.shape())?
                        .reshape(b.shape().clone())
                },
            )
        }
        Op::IndexSelect(src, idx, dim) => one(
            src,
            crate::ops::index_select_backward(dy, idx, *dim, src.shape())?,
        ),
        Op::Gather(src, idx, dim) => one(
            src,
            crate::ops::gather_backward(dy, idx, *dim, src.shape())?,
        ),
        Op::Reshape(x) => one(x, dy.reshape(x.shape().clone())?),
        Op::Cast(x) => one(x, dy.to_dtype(x.dtype())?),
        Op::Permute(x, perm) => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            // A view: the consumer copies it only if it must.
            one(x, dy.permute(&inv)?)
        }
        Op::Narrow(x, dim, start) if dy.dtype() == DType::F32 => {
            // Zeros (a clear, no kernel) with dy written into the narrowed range: one copy
            // dispatch, where padding by `cat` copied the zeros too.
            let g = Tensor::zeros(x.shape().clone(), dy.device())?;
            g.narrow(*dim as isize, *start, dy.dims()[*dim])?
                .assign(dy)?;
            one(x, g)
        }
        Op::Narrow(x, dim, start) => {
            let d = *dim;
            let (len, size) = (dy.dims()[d], x.dims()[d]);
            let pad = |n: usize| -> Result<Option<Tensor>> {
                let mut dims = x.dims().to_vec();
                dims[d] = n;
                (n > 0)
                    .then(|| Tensor::zeros(dims, dy.device()))
                    .transpose()
            };
            let parts: Vec<Tensor> = [pad(*start)?, Some(dy.clone()), pad(size - start - len)?]
                .into_iter()
                .flatten()
                .collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            one(x, Tensor::cat(&refs, d as isize)?)
        }
        Op::Cat(ts, dim) => {
            let mut start = 0;
            let mut out = Vec::new();
            for t in ts {
                let len = t.dims()[*dim];
                out.push((
                    t.clone(),
                    dy.narrow(*dim as isize, start, len)?.contiguous()?,
                ));
                start += len;
            }
            Ok(out)
        }
        Op::BroadcastTo(x) => one(x, dy.sum_to_shape(x.shape())?),
        Op::MaxPool2d(x, arg, p) => one(x, crate::ops::pool2d_backward(x, dy, Some(arg), p)?),
        Op::AvgPool2d(x, p) => one(x, crate::ops::pool2d_backward(x, dy, None, p)?),
        Op::Im2col(x, g) => one(x, crate::ops::col2im(dy, g)?),
        Op::Attention {
            q,
            k,
            v,
            mask,
            lse,
            causal,
            scale,
        } => crate::nn::functional::attention_backward(
            q,
            k,
            v,
            mask.as_ref(),
            lse,
            *causal,
            *scale,
            y,
            dy,
        ),
        Op::Lstm(s) => crate::ops::lstm_backward(s, y, dy),
        Op::Gru(s) => crate::ops::gru_backward(s, y, dy),
        Op::LayerNorm(x, w, b, stats) => {
            let wants = |t: &Option<Tensor>| t.as_ref().is_some_and(|t| t.requires_grad_flag());
            let params = wants(w) || wants(b);
            let (dx, pw) =
                crate::nn::functional::layer_norm_backward(x, w.as_ref(), stats, dy, params)?;
            let mut out = vec![(x.clone(), dx)];
            if let Some((dw, db)) = pw {
                if let Some(w) = w {
                    out.push((w.clone(), dw.reshape(w.shape().clone())?));
                }
                if let Some(b) = b {
                    out.push((b.clone(), db.reshape(b.shape().clone())?));
                }
            }
            Ok(out)
        }
    }
}

/// The gradients of a two-input op, computed only for the inputs that need one and summed
/// back to each input's shape (undoing broadcasting).
fn pair(
    a: &Tensor,
    ga: impl FnOnce() -> Result<Tensor>,
    b: &Tensor,
    gb: impl FnOnce() -> Result<Tensor>,
) -> Result<Vec<(Tensor, Tensor)>> {
    pair_exact(
        a,
        || ga()?.sum_to_shape(a.shape()),
        b,
        || gb()?.sum_to_shape(b.shape()),
    )
}

/// Like [`pair`], for gradients that already have their input's shape.
fn pair_exact(
    a: &Tensor,
    ga: impl FnOnce() -> Result<Tensor>,
    b: &Tensor,
    gb: impl FnOnce() -> Result<Tensor>,
) -> Result<Vec<(Tensor, Tensor)>> {
    let mut out = Vec::with_capacity(2);
    if a.requires_grad_flag() {
        out.push((a.clone(), ga()?));
    }
    if b.requires_grad_flag() {
        out.push((b.clone(), gb()?));
    }
    Ok(out)
}

fn to_isize(dims: &[usize]) -> Vec<isize> {
    dims.iter().map(|&d| d as isize).collect()
}

/// The broadcast batch dims of two rank >= 2 matmul operands.
fn batch_shape(a: &Tensor, b: &Tensor) -> Result<Vec<usize>> {
    let ba = crate::Shape::from(&a.dims()[..a.rank() - 2]);
    let bb = crate::Shape::from(&b.dims()[..b.rank() - 2]);
    Ok(ba.broadcast(&bb, "matmul backward")?.dims().to_vec())
}
