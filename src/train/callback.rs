//! Callbacks of `fit` (Keras's): the `Callback` trait and its context, early stopping, model
//! checkpoints, CSV/JSON history loggers and learning-rate schedules.

use super::history::{History, Logs};
use crate::nn::Module;
use crate::optim::{LrSchedule, Optimizer};
use crate::{no_grad, Error, Result, Tensor};
use std::path::PathBuf;

/// What a callback sees and may change while `fit` runs.
pub struct Context<'a> {
    /// The model being trained (its parameters can be read, saved or assigned).
    pub model: &'a dyn Module,
    /// The optimizer (its learning rate and state).
    pub optimizer: &'a mut dyn Optimizer,
    /// The epochs recorded so far (the current one included at `on_epoch_end`).
    pub history: &'a History,
    /// The current epoch, 0-based.
    pub epoch: usize,
    /// The epoch at which training ends (exclusive).
    pub epochs: usize,
    /// The current batch within the epoch, 0-based (at batch events).
    pub batch: usize,
    /// Batches per epoch.
    pub steps_per_epoch: usize,
    /// Set to stop training: after this batch at batch events, after this epoch at epoch events
    /// (Keras's `model.stop_training`).
    pub stop_training: bool,
}

impl Context<'_> {
    /// The number of batches before this one over the whole run: `epoch · steps_per_epoch +
    /// batch`.
    pub fn global_step(&self) -> usize {
        self.epoch * self.steps_per_epoch + self.batch
    }
}

/// Hooks into `fit`. Every method has an empty default; an `Err` stops training and is
/// returned by `fit`.
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }
    /// After the last epoch (also after an early stop).
    fn on_train_end(&mut self, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }
    /// Before each epoch.
    fn on_epoch_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }
    /// After each epoch's training and validation, with its logs (already in `ctx.history`).
    fn on_epoch_end(&mut self, _ctx: &mut Context, _logs: &Logs) -> Result<()> {
        Ok(())
    }
    /// Before each batch's forward pass.
    fn on_batch_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }
    /// After each batch's update, with its loss as a one-element device tensor (reading it
    /// waits for the device).
    fn on_batch_end(&mut self, _ctx: &mut Context, _loss: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// Whether a monitored value should go down or up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracies).
    Max,
    /// `Max` for names containing `acc`, `auc` or `precision`/`recall`, else `Min` (Keras).
    Auto,
}

impl Mode {
    fn resolve(self, monitor: &str) -> Mode {
        match self {
            Mode::Auto => {
                let m = monitor.to_ascii_lowercase();
                if ["acc", "auc", "precision", "recall"]
                    .iter()
                    .any(|k| m.contains(k))
                {
                    Mode::Max
                } else {
                    Mode::Min
                }
            }
            m => m,
        }
    }
    /// Whether `value` beats `best` by more than `min_delta`.
    fn improves(self, value: f64, best: Option<f64>, min_delta: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        match (self, best) {
            (_, None) => true,
            (Mode::Max, Some(b)) => value - min_delta > b,
            (_, Some(b)) => value + min_delta < b,
        }
    }
}

fn monitored(who: &'static str, monitor: &str, logs: &Logs) -> Result<f64> {
    logs.get(monitor).ok_or_else(|| {
        Error::invalid(
            who,
            format!(
                "monitors {monitor:?}, which is not logged (the logs have {}; \
                 val_ names need validation data)",
                logs.names().join(", ")
            ),
        )
    })
}

/// Stops training when a monitored value has not improved for `patience` epochs in a row, and
/// can put back the parameters of the best epoch at the end (Keras 3's `EarlyStopping`, whose
/// quirk it keeps: patience 0 and 1 both stop at the first epoch without improvement).
pub struct EarlyStopping {
    monitor: String,
    mode: Mode,
    patience: usize,
    min_delta: f64,
    restore_best_weights: bool,
    best: Option<f64>,
    best_epoch: Option<usize>,
    best_weights: Option<Vec<Tensor>>,
    wait: usize,
    stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Monitors `monitor` (e.g. `"val_loss"`) with patience 0, mode auto, min_delta 0 and no
    /// restoring.
    pub fn new(monitor: impl Into<String>) -> EarlyStopping {
        EarlyStopping {
            monitor: monitor.into(),
            mode: Mode::Auto,
            patience: 0,
            min_delta: 0.0,
            restore_best_weights: false,
            best: None,
            best_epoch: None,
            best_weights: None,
            wait: 0,
            stopped_epoch: None,
        }
    }
    /// Epochs without improvement to wait before stopping.
    pub fn patience(mut self, epochs: usize) -> EarlyStopping {
        self.patience = epochs;
        self
    }
    /// Whether lower or higher is better.
    pub fn mode(mut self, mode: Mode) -> EarlyStopping {
        self.mode = mode;
        self
    }
    /// The smallest change that counts as an improvement (its absolute value).
    pub fn min_delta(mut self, delta: f64) -> EarlyStopping {
        self.min_delta = delta.abs();
        self
    }
    /// At the end of training (stopped early or not), assigns the parameters the values they
    /// had after the best epoch (a copy of them is kept on their device).
    pub fn restore_best_weights(mut self, on: bool) -> EarlyStopping {
        self.restore_best_weights = on;
        self
    }
    /// The epoch (0-based) after which it stopped training, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }
    /// The best value seen and its epoch (0-based).
    pub fn best(&self) -> Option<(f64, usize)> {
        self.best.zip(self.best_epoch)
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.best = None;
        self.best_epoch = None;
        self.best_weights = None;
        self.wait = 0;
        self.stopped_epoch = None;
        Ok(())
    }
    fn on_epoch_end(&mut self, ctx: &mut Context, logs: &Logs) -> Result<()> {
        let value = monitored("EarlyStopping", &self.monitor, logs)?;
        let mode = self.mode.resolve(&self.monitor);
        if mode.improves(value, self.best, self.min_delta) {
            self.best = Some(value);
            self.best_epoch = Some(ctx.epoch);
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(no_grad(|| {
                    ctx.model
                        .parameters()
                        .iter()
                        .map(|(_, p)| p.copy())
                        .collect::<Result<Vec<_>>>()
                })?);
            }
            return Ok(());
        }
        self.wait += 1;
        if self.wait >= self.patience {
            self.stopped_epoch = Some(ctx.epoch);
            ctx.stop_training = true;
        }
        Ok(())
    }
    fn on_train_end(&mut self, ctx: &mut Context) -> Result<()> {
        if let Some(best) = self.best_weights.take() {
            for ((_, p), b) in ctx.model.parameters().iter().zip(&best) {
                p.assign(b)?;
            }
        }
        Ok(())
    }
}

/// Saves a checkpoint after each epoch, or only when a monitored value improves (Keras's
/// `ModelCheckpoint`), atomically through [`crate::checkpoint::save`]: the model's parameters,
/// the optimizer's state and `trainer.epoch` (the epochs completed), the format
/// [`super::Trainer::load_checkpoint`] resumes from. `{epoch}` in the path becomes the 1-based
/// epoch number.
pub struct ModelCheckpoint {
    path: String,
    monitor: String,
    mode: Mode,
    save_best_only: bool,
    weights_only: bool,
    best: Option<f64>,
    saved: Vec<PathBuf>,
}

impl ModelCheckpoint {
    /// Saves to `path` after every epoch, monitoring `val_loss` if asked to save the best only.
    pub fn new(path: impl Into<String>) -> ModelCheckpoint {
        ModelCheckpoint {
            path: path.into(),
            monitor: "val_loss".into(),
            mode: Mode::Auto,
            save_best_only: false,
            weights_only: false,
            best: None,
            saved: Vec::new(),
        }
    }
    /// The value that decides what "best" is.
    pub fn monitor(mut self, monitor: impl Into<String>) -> ModelCheckpoint {
        self.monitor = monitor.into();
        self
    }
    /// Whether lower or higher is better.
    pub fn mode(mut self, mode: Mode) -> ModelCheckpoint {
        self.mode = mode;
        self
    }
    /// Saves only when the monitored value improves on the best so far.
    pub fn save_best_only(mut self, on: bool) -> ModelCheckpoint {
        self.save_best_only = on;
        self
    }
    /// Saves the parameters only (no optimizer state, no epoch).
    pub fn weights_only(mut self, on: bool) -> ModelCheckpoint {
        self.weights_only = on;
        self
    }
    /// The files written, in order.
    pub fn saved(&self) -> &[PathBuf] {
        &self.saved
    }
}

/// The tensors of a resumable checkpoint: parameters, optimizer state, `trainer.epoch`.
pub(super) fn checkpoint_tensors(
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    epochs_done: usize,
    weights_only: bool,
) -> Result<Vec<(String, Tensor)>> {
    let mut tensors = model.parameters();
    if !weights_only {
        tensors.extend(optimizer.state());
        let dev = tensors
            .first()
            .map(|(_, t)| t.device().clone())
            .unwrap_or(crate::Device::Cpu);
        tensors.push((
            super::EPOCH_KEY.to_string(),
            Tensor::scalar(epochs_done as f32, &dev)?,
        ));
    }
    Ok(tensors)
}

impl Callback for ModelCheckpoint {
    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        self.best = None;
        Ok(())
    }
    fn on_epoch_end(&mut self, ctx: &mut Context, logs: &Logs) -> Result<()> {
        if self.save_best_only {
            let value = monitored("ModelCheckpoint", &self.monitor, logs)?;
            let mode = self.mode.resolve(&self.monitor);
            if !mode.improves(value, self.best, 0.0) {
                return Ok(());
            }
            self.best = Some(value);
        }
        let path = PathBuf::from(self.path.replace("{epoch}", &(ctx.epoch + 1).to_string()));
        let tensors =
            checkpoint_tensors(ctx.model, ctx.optimizer, ctx.epoch + 1, self.weights_only)?;
        crate::checkpoint::save(&path, &tensors)?;
        self.saved.push(path);
        Ok(())
    }
}

/// Writes the whole history to a CSV file after every epoch (Keras's `CSVLogger`), atomically.
pub struct CsvLogger {
    path: PathBuf,
}

impl CsvLogger {
    /// Logs to `path`.
    pub fn new(path: impl Into<PathBuf>) -> CsvLogger {
        CsvLogger { path: path.into() }
    }
}

impl Callback for CsvLogger {
    fn on_epoch_end(&mut self, ctx: &mut Context, _logs: &Logs) -> Result<()> {
        crate::fs::write_atomic(&self.path, ctx.history.to_csv().as_bytes())
    }
}

/// Writes the whole history (step losses included) to a JSON file after every epoch,
/// atomically; [`History::load`] reads it back.
pub struct JsonLogger {
    path: PathBuf,
}

impl JsonLogger {
    /// Logs to `path`.
    pub fn new(path: impl Into<PathBuf>) -> JsonLogger {
        JsonLogger { path: path.into() }
    }
}

impl Callback for JsonLogger {
    fn on_epoch_end(&mut self, ctx: &mut Context, _logs: &Logs) -> Result<()> {
        crate::fs::write_atomic(&self.path, ctx.history.to_json().as_bytes())
    }
}

/// Sets the optimizer's learning rate from a schedule (Keras's `LearningRateScheduler`):
/// before each batch from the global step count, or before each epoch from the epoch count.
pub struct LrScheduler {
    schedule: Box<dyn LrSchedule>,
    per_step: bool,
}

impl LrScheduler {
    /// The rate before each batch is `schedule.lr(global step)` (batches, 0-based).
    pub fn per_step(schedule: impl LrSchedule + 'static) -> LrScheduler {
        LrScheduler {
            schedule: Box::new(schedule),
            per_step: true,
        }
    }
    /// The rate before each epoch is `schedule.lr(epoch)` (0-based).
    pub fn per_epoch(schedule: impl LrSchedule + 'static) -> LrScheduler {
        LrScheduler {
            schedule: Box::new(schedule),
            per_step: false,
        }
    }
}

impl Callback for LrScheduler {
    fn on_epoch_begin(&mut self, ctx: &mut Context) -> Result<()> {
        if !self.per_step {
            ctx.optimizer.set_lr(self.schedule.lr(ctx.epoch));
        }
        Ok(())
    }
    fn on_batch_begin(&mut self, ctx: &mut Context) -> Result<()> {
        if self.per_step {
            let step = ctx.global_step();
            ctx.optimizer.set_lr(self.schedule.lr(step));
        }
        Ok(())
    }
}
