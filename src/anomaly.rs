//! Anomaly mode (like `torch.autograd.detect_anomaly`): names the first op whose forward output or backward gradient holds a NaN or an infinity.

use crate::op::Op;
use crate::{Error, Result, Tensor};
use std::cell::{Cell, RefCell};

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    /// Set while `backward()` runs, so the ops computing gradients count as backward.
    static IN_BACKWARD: Cell<bool> = const { Cell::new(false) };
    /// Set while a check reads a tensor back (the read may itself run ops).
    static CHECKING: Cell<bool> = const { Cell::new(false) };
    /// The first forward anomaly since anomaly mode was turned on (or last reported).
    static FIRST: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// Turns anomaly mode on or off for ops on this thread. While on, every op's output is read
/// back and checked (slow: a debugging aid), the first non-finite forward output is kept and
/// returned as [`Error::NonFinite`] by the next `backward()` (or by [`detect_anomaly`]), and
/// `backward()` stops at the first op whose gradient is non-finite.
pub fn set_detect_anomaly(on: bool) {
    ENABLED.with(|e| e.set(on));
    if !on {
        FIRST.with(|f| f.borrow_mut().take());
    }
}

/// Whether anomaly mode is on for this thread.
pub fn is_anomaly_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Runs `f` with anomaly mode on (restoring the previous mode after). If `f` succeeds but an op
/// inside it produced a NaN or an infinity, the result is that op's [`Error::NonFinite`].
pub fn detect_anomaly<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    let was = is_anomaly_enabled();
    let saved = FIRST.with(|s| s.borrow_mut().take());
    ENABLED.with(|e| e.set(true));
    let r = f();
    let found = FIRST.with(|s| s.borrow_mut().take());
    ENABLED.with(|e| e.set(was));
    FIRST.with(|s| *s.borrow_mut() = saved);
    match (r, found) {
        (Ok(_), Some(e)) => Err(e),
        (r, _) => r,
    }
}

/// A short description of an op: its name and the shapes it read. Views never make a value
/// non-finite, so they give `None` (and are not checked).
fn label(op: &Op) -> Option<String> {
    let name = match op {
        Op::Reshape(..) | Op::Permute(..) | Op::Narrow(..) | Op::BroadcastTo(..) => return None,
        Op::Unary(_, u) => format!("{u:?}"),
        Op::Binary(_, _, b) => b.name().to_string(),
        Op::Where(..) => "where".into(),
        Op::Reduce(_, r, ..) => format!("{r:?}"),
        Op::Softmax(..) => "softmax".into(),
        Op::LogSoftmax(..) => "log_softmax".into(),
        Op::Matmul(..) => "matmul".into(),
        Op::IndexSelect(..) => "index_select".into(),
        Op::Gather(..) => "gather".into(),
        Op::Cat(..) => "cat".into(),
        Op::Cast(..) => "to_dtype".into(),
        Op::MaxPool2d(..) => "max_pool2d".into(),
        Op::AvgPool2d(..) => "avg_pool2d".into(),
        Op::Im2col(..) => "im2col".into(),
        Op::Attention { .. } => "scaled_dot_product_attention".into(),
        Op::Lstm(..) => "lstm".into(),
        Op::Gru(..) => "gru".into(),
        Op::LayerNorm(..) => "layer_norm".into(),
    };
    let inputs: Vec<String> = op
        .parents()
        .iter()
        .map(|p| format!("{:?}", p.dims()))
        .collect();
    Some(format!("{name} of inputs {}", inputs.join(", ")))
}

/// `Some("2 NaN, 1 inf")` when `t` holds non-finite values (reads `t` back).
fn non_finite(t: &Tensor) -> Result<Option<String>> {
    if t.dtype() == crate::DType::U32 {
        return Ok(None);
    }
    CHECKING.with(|c| c.set(true));
    let v = t.to_vec();
    CHECKING.with(|c| c.set(false));
    let v = v?;
    let nan = v.iter().filter(|x| x.is_nan()).count();
    let inf = v.iter().filter(|x| x.is_infinite()).count();
    Ok((nan + inf > 0).then(|| format!("{nan} NaN and {inf} infinite of {} values", v.len())))
}

/// Whether forward outputs are to be checked now (cheap; called for every op).
pub(crate) fn forward_on() -> bool {
    is_anomaly_enabled() && !IN_BACKWARD.with(|b| b.get()) && !CHECKING.with(|c| c.get())
}

/// The label of `op` when its output is to be checked (computed only in anomaly mode).
pub(crate) fn forward_label(op: Option<&Op>) -> Option<String> {
    op.filter(|_| forward_on()).and_then(label)
}

/// Checks an op's output (forward); keeps the first anomaly for the next `backward()`.
pub(crate) fn check_forward(out: &Tensor, label: Option<String>) {
    let Some(label) = label else { return };
    if FIRST.with(|f| f.borrow().is_some()) {
        return;
    }
    let found = match non_finite(out) {
        Ok(None) => return,
        Ok(Some(detail)) => Error::NonFinite {
            phase: "forward",
            op: label,
            detail: format!("output of shape {:?} holds {detail}", out.dims()),
        },
        Err(e) => e,
    };
    log::error!("wgml anomaly: {found}");
    FIRST.with(|f| *f.borrow_mut() = Some(found));
}

/// Called when `backward()` starts: the forward anomaly kept, if any, as an error, and a guard
/// that marks the ops run until it drops as the backward pass.
pub(crate) fn enter_backward() -> Result<impl Drop> {
    struct Guard(bool);
    impl Drop for Guard {
        fn drop(&mut self) {
            IN_BACKWARD.with(|b| b.set(self.0));
        }
    }
    if is_anomaly_enabled() {
        if let Some(e) = FIRST.with(|f| f.borrow_mut().take()) {
            return Err(e);
        }
    }
    Ok(Guard(IN_BACKWARD.with(|b| b.replace(true))))
}

/// Checks the gradient `g` an op's backward sent to `parent`.
pub(crate) fn check_backward(op: &Op, parent: &Tensor, g: &Tensor) -> Result<()> {
    if !is_anomaly_enabled() || CHECKING.with(|c| c.get()) {
        return Ok(());
    }
    let label = label(op).unwrap_or_else(|| "a view".into());
    match non_finite(g)? {
        None => Ok(()),
        Some(detail) => Err(Error::NonFinite {
            phase: "backward",
            op: label,
            detail: format!(
                "gradient for an input of shape {:?} holds {detail}",
                parent.dims()
            ),
        }),
    }
}
