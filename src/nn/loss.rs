//! Losses, all reduced by the mean: cross-entropy from logits with integer labels, MSE, and
//! binary cross-entropy with logits.

use crate::{DType, Error, Result, Tensor};

/// Mean cross-entropy of `logits [N, C]` against `labels [N]` (`U32` class indices):
/// `-mean(log_softmax(logits)[i, labels[i]])`. The log-softmax is one fused kernel; the
/// pick of the label column is a mask product, so the gradient is `softmax - onehot` / N.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    if logits.dtype() == DType::F16 {
        return logits.via_f32_autocast(|l| cross_entropy(l, labels));
    }
    labels.check_dtype(DType::U32, OP)?;
    if logits.rank() != 2 || labels.rank() != 1 || labels.dims()[0] != logits.dims()[0] {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: logits.dims().to_vec(),
            rhs: labels.dims().to_vec(),
        });
    }
    logits.check_nonempty(OP)?;
    let classes = logits.dims()[1];
    let onehot = one_hot_as(labels, classes, OP)?;
    let picked = logits.log_softmax()?.mul(&onehot)?;
    picked.sum_all()?.mul_scalar(-1.0 / logits.dims()[0] as f32)
}

/// `[N] U32 -> [N, classes]` of 1.0 at each label (0.0 elsewhere). A label `>= classes` is an
/// [`Error::IndexOutOfRange`]: at once on the CPU; on the GPU the kernel records it and the next
/// read-back or `Device::synchronize` returns the error (no wait here).
pub fn one_hot(labels: &Tensor, classes: usize) -> Result<Tensor> {
    one_hot_as(labels, classes, "one_hot")
}

fn one_hot_as(labels: &Tensor, classes: usize, op: &'static str) -> Result<Tensor> {
    labels.check_dtype(DType::U32, op)?;
    let dev = labels.device();
    if dev.is_gpu() {
        return crate::ops::one_hot_gpu(labels, classes, op);
    }
    if let Some(&bad) = labels
        .to_vec_u32()?
        .iter()
        .find(|&&l| l as usize >= classes)
    {
        return Err(Error::IndexOutOfRange {
            op,
            index: bad as usize,
            size: classes,
            shape: labels.dims().to_vec(),
        });
    }
    let cls = Tensor::arange(0.0, classes as f32, 1.0, dev)?;
    labels.to_dtype(DType::F32)?.unsqueeze(-1)?.eq(&cls)
}

/// Mean squared error over all elements (shapes must match exactly).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_same_shape("mse", pred, target)?;
    let (pred, target) = (&crate::amp::to_f32(pred)?, &crate::amp::to_f32(target)?);
    let d = pred.sub(target)?;
    d.mul(&d)?.mean_all()
}

/// Mean binary cross-entropy of `logits` against `targets` in [0, 1], in the stable form
/// `max(x, 0) - x·t + log(1 + e^-|x|)` (PyTorch's `BCEWithLogitsLoss`).
pub fn binary_cross_entropy_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_same_shape("binary_cross_entropy_with_logits", logits, targets)?;
    let (logits, targets) = (&crate::amp::to_f32(logits)?, &crate::amp::to_f32(targets)?);
    let softplus = logits.abs()?.neg()?.exp()?.add_scalar(1.0)?.log()?;
    logits
        .relu()?
        .sub(&logits.mul(targets)?)?
        .add(&softplus)?
        .mean_all()
}

fn check_same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: a.dims().to_vec(),
            rhs: b.dims().to_vec(),
        });
    }
    a.check_same_device(b, op)?;
    a.check_nonempty(op)
}
