//! Gradient bookkeeping: the `no_grad` scope and which ops record a graph.

use crate::op::Op;
use crate::Tensor;
use std::cell::Cell;

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
            | Op::Permute(a, _)
            | Op::Narrow(a, ..)
            | Op::BroadcastTo(a) => vec![a],
            Op::Binary(a, b, _) | Op::Matmul(a, b) => vec![a, b],
            Op::IndexSelect(a, idx, _) | Op::Gather(a, idx, _) => vec![a, idx],
            Op::Where(c, a, b) => vec![c, a, b],
            Op::Cat(ts, _) => ts.iter().collect(),
        }
    }
}

/// Whether a tensor made by `op` needs a graph node.
pub(crate) fn op_needs_grad(op: &Op) -> bool {
    op.parents().iter().any(|t| t.requires_grad_flag())
}
