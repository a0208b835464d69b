//! Metrics that `fit` and `evaluate` report: the `Metric` trait and mean loss, accuracy,
//! top-k accuracy and perplexity. Each accumulates on the device; only `compute` reads back.

use crate::{no_grad, DType, Error, Result, Tensor};

/// A value computed over an epoch (or an evaluation) batch by batch, as Keras's `Metric`:
/// `reset`, `update` per batch, `compute` at the end. `update` runs under `no_grad` and should
/// not read back (so a GPU keeps working); `compute` may.
pub trait Metric {
    /// The name in logs and the history (validation values get a `val_` prefix).
    fn name(&self) -> &str;
    /// Forgets everything accumulated.
    fn reset(&mut self);
    /// Adds one batch: the model's `outputs`, the `targets`, and the batch's mean `loss` (a
    /// one-element tensor).
    fn update(&mut self, outputs: &Tensor, targets: &Tensor, loss: &Tensor) -> Result<()>;
    /// The value over every batch since the last reset (`NaN` if there was none).
    fn compute(&mut self) -> Result<f64>;
}

/// A device scalar sum and a host count: the running state of a mean.
#[derive(Default)]
struct Mean {
    sum: Option<Tensor>,
    count: usize,
}

impl Mean {
    fn add(&mut self, value: Tensor, count: usize) -> Result<()> {
        let value = value.to_dtype(DType::F32)?;
        self.sum = Some(match self.sum.take() {
            Some(s) => s.add(&value)?,
            None => value,
        });
        self.count += count;
        Ok(())
    }
    fn value(&self) -> Result<f64> {
        match &self.sum {
            Some(s) if self.count > 0 => Ok(s.item()? as f64 / self.count as f64),
            _ => Ok(f64::NAN),
        }
    }
}

fn rows(outputs: &Tensor) -> usize {
    outputs.dims().first().copied().unwrap_or(1)
}

/// The mean of the batches' losses, weighted by batch size: the `loss` of the logs.
#[derive(Default)]
pub struct MeanLoss {
    mean: Mean,
}

impl MeanLoss {
    /// A fresh mean.
    pub fn new() -> MeanLoss {
        MeanLoss::default()
    }
}

impl Metric for MeanLoss {
    fn name(&self) -> &str {
        "loss"
    }
    fn reset(&mut self) {
        self.mean = Mean::default();
    }
    fn update(&mut self, outputs: &Tensor, _targets: &Tensor, loss: &Tensor) -> Result<()> {
        let n = rows(outputs);
        no_grad(|| self.mean.add(loss.reshape(())?.mul_scalar(n as f32)?, n))
    }
    fn compute(&mut self) -> Result<f64> {
        self.mean.value()
    }
}

/// `exp` of the mean loss: the perplexity of a language model trained with cross-entropy.
#[derive(Default)]
pub struct Perplexity {
    loss: MeanLoss,
}

impl Perplexity {
    /// A fresh metric.
    pub fn new() -> Perplexity {
        Perplexity::default()
    }
}

impl Metric for Perplexity {
    fn name(&self) -> &str {
        "perplexity"
    }
    fn reset(&mut self) {
        self.loss.reset();
    }
    fn update(&mut self, outputs: &Tensor, targets: &Tensor, loss: &Tensor) -> Result<()> {
        self.loss.update(outputs, targets, loss)
    }
    fn compute(&mut self) -> Result<f64> {
        Ok(self.loss.compute()?.exp())
    }
}

/// Checks `outputs [..., C]` against class ids `targets [...]` (`U32`).
fn check_classes(op: &'static str, outputs: &Tensor, targets: &Tensor) -> Result<()> {
    targets.check_dtype(DType::U32, op)?;
    let r = outputs.rank();
    if r == 0 || outputs.dims()[..r - 1] != *targets.dims() || outputs.dims()[r - 1] == 0 {
        return Err(Error::ShapeMismatch {
            op,
            lhs: outputs.dims().to_vec(),
            rhs: targets.dims().to_vec(),
        });
    }
    Ok(())
}

/// The fraction of positions whose largest output is the target class (Keras's
/// `sparse_categorical_accuracy`): outputs `[..., C]`, `U32` targets `[...]`.
#[derive(Default)]
pub struct Accuracy {
    mean: Mean,
}

impl Accuracy {
    /// A fresh metric.
    pub fn new() -> Accuracy {
        Accuracy::default()
    }
}

impl Metric for Accuracy {
    fn name(&self) -> &str {
        "accuracy"
    }
    fn reset(&mut self) {
        self.mean = Mean::default();
    }
    fn update(&mut self, outputs: &Tensor, targets: &Tensor, _loss: &Tensor) -> Result<()> {
        check_classes("Accuracy", outputs, targets)?;
        no_grad(|| {
            let hits = outputs.argmax(-1, false)?.eq(targets)?.sum_all()?;
            self.mean.add(hits, targets.numel())
        })
    }
    fn compute(&mut self) -> Result<f64> {
        self.mean.value()
    }
}

/// The fraction of positions whose target class is among the `k` largest outputs (Keras's
/// `sparse_top_k_categorical_accuracy`; a tie with the target's output counts for the
/// target). Outputs `[..., C]`, `U32` targets `[...]`.
pub struct TopKAccuracy {
    k: usize,
    name: String,
    mean: Mean,
}

impl TopKAccuracy {
    /// Top-`k` accuracy, named `top_{k}_accuracy`; `Err` if `k` is zero.
    pub fn new(k: usize) -> Result<TopKAccuracy> {
        if k == 0 {
            return Err(Error::invalid("TopKAccuracy", "k must be at least 1"));
        }
        Ok(TopKAccuracy {
            k,
            name: format!("top_{k}_accuracy"),
            mean: Mean::default(),
        })
    }
}

impl Metric for TopKAccuracy {
    fn name(&self) -> &str {
        &self.name
    }
    fn reset(&mut self) {
        self.mean = Mean::default();
    }
    fn update(&mut self, outputs: &Tensor, targets: &Tensor, _loss: &Tensor) -> Result<()> {
        check_classes("TopKAccuracy", outputs, targets)?;
        no_grad(|| {
            let classes = outputs.dims()[outputs.rank() - 1];
            let m = targets.numel();
            let out = outputs.to_dtype(DType::F32)?.reshape([m, classes])?;
            let picked = out.gather(1, &targets.reshape([m, 1])?)?;
            // The target is in the top k when fewer than k outputs exceed its own.
            let above = out.gt(&picked)?.sum(-1, false)?;
            let k = Tensor::scalar(self.k as f32 - 0.5, out.device())?;
            self.mean.add(above.lt(&k)?.sum_all()?, m)
        })
    }
    fn compute(&mut self) -> Result<f64> {
        self.mean.value()
    }
}
