//! `Trainer`: Keras's `compile` + `fit` / `evaluate` / `predict` over a [`DataLoader`], with
//! metrics, validation, callbacks, gradient clipping and accumulation, mixed precision, a
//! progress bar and a per-epoch summary line.

use super::callback::{checkpoint_tensors, Callback, Context, LrScheduler};
use super::history::{History, Logs};
use super::metric::{MeanLoss, Metric};
use super::EPOCH_KEY;
use crate::amp::{autocast, GradScaler};
use crate::data::DataLoader;
use crate::nn::Module;
use crate::optim::{LrSchedule, Optimizer};
use crate::{no_grad, DType, Device, Error, Gradients, Result, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;

/// How much `fit` prints (Keras's `verbose`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Nothing (quiet mode, for logs and tests).
    Silent,
    /// One summary line per epoch (Keras's `verbose=2`).
    Epochs,
    /// A progress bar during each epoch (running loss and metrics, steps/s, ETA; drawn only on
    /// a terminal) and the summary line (Keras's `verbose=1`).
    Progress,
}

enum Validation<'a> {
    None,
    Data(&'a DataLoader),
    Split(f64),
}

/// The settings of one [`Trainer::fit`] call (Keras's `fit` arguments), built from
/// [`FitOptions::new`].
pub struct FitOptions<'a> {
    epochs: usize,
    initial_epoch: usize,
    validation: Validation<'a>,
    lr_schedule: Option<LrScheduler>,
    clip_grad_norm: Option<f32>,
    accumulate: usize,
    verbosity: Verbosity,
    log_every: usize,
    callbacks: Vec<&'a mut dyn Callback>,
}

impl<'a> FitOptions<'a> {
    /// Train up to epoch `epochs`, no validation, no schedule, no clipping, one batch per
    /// update, progress bar on, losses read back every 50 steps.
    pub fn new(epochs: usize) -> FitOptions<'a> {
        FitOptions {
            epochs,
            initial_epoch: 0,
            validation: Validation::None,
            lr_schedule: None,
            clip_grad_norm: None,
            accumulate: 1,
            verbosity: Verbosity::Progress,
            log_every: 50,
            callbacks: Vec::new(),
        }
    }
    /// Starts at this epoch (0-based), e.g. the one a checkpoint returns from
    /// [`Trainer::load_checkpoint`]: shuffling, per-step schedules and the history's epoch
    /// numbers continue from there.
    pub fn initial_epoch(mut self, epoch: usize) -> Self {
        self.initial_epoch = epoch;
        self
    }
    /// Evaluates on `data` after each epoch (logged with a `val_` prefix).
    pub fn validation_data(mut self, data: &'a DataLoader) -> Self {
        self.validation = Validation::Data(data);
        self
    }
    /// Holds out the last `fraction` of the training examples (before shuffling) and evaluates
    /// on them after each epoch (Keras's `validation_split`).
    pub fn validation_split(mut self, fraction: f64) -> Self {
        self.validation = Validation::Split(fraction);
        self
    }
    /// Sets the learning rate before each batch from `schedule.lr(global step)`.
    pub fn lr_schedule_per_step(mut self, schedule: impl LrSchedule + 'static) -> Self {
        self.lr_schedule = Some(LrScheduler::per_step(schedule));
        self
    }
    /// Sets the learning rate before each epoch from `schedule.lr(epoch)`.
    pub fn lr_schedule_per_epoch(mut self, schedule: impl LrSchedule + 'static) -> Self {
        self.lr_schedule = Some(LrScheduler::per_epoch(schedule));
        self
    }
    /// Clips the gradients' global L2 norm to `max_norm` before each update.
    pub fn clip_grad_norm(mut self, max_norm: f32) -> Self {
        self.clip_grad_norm = Some(max_norm);
        self
    }
    /// Sums the gradients of `batches` batches (each loss divided by the group's size) before
    /// each update; an epoch's last group may be smaller.
    pub fn accumulate(mut self, batches: usize) -> Self {
        self.accumulate = batches;
        self
    }
    /// How much to print.
    pub fn verbosity(mut self, v: Verbosity) -> Self {
        self.verbosity = v;
        self
    }
    /// Reads the step losses back every `steps` steps (for the progress bar, the non-finite
    /// check and the history); each read waits for the device.
    pub fn log_every(mut self, steps: usize) -> Self {
        self.log_every = steps;
        self
    }
    /// Adds a callback (called after the schedule, in the order added).
    pub fn callback(mut self, cb: &'a mut dyn Callback) -> Self {
        self.callbacks.push(cb);
        self
    }
}

/// The training loss of a batch: `loss(outputs, targets)`, a one-element tensor.
pub type LossFn = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor>>;

/// A model with its loss, optimizer and metrics (Keras's compiled model). The model's inputs
/// and targets come from a [`DataLoader`]; every tensor lives on the model's device.
pub struct Trainer<M: Module> {
    model: M,
    optimizer: Box<dyn Optimizer>,
    loss: LossFn,
    metrics: Vec<Box<dyn Metric>>,
    device: Device,
    amp: bool,
    scaler: GradScaler,
    skipped_steps: usize,
    /// Data-parallel training over MPI ([`Trainer::distributed`]).
    #[cfg(feature = "mpi")]
    ddp: Option<crate::distributed::DistributedDataParallel>,
}

impl<M: Module> Trainer<M> {
    /// `model` trained with `optimizer` (over the model's parameters) on `loss(outputs,
    /// targets)`; the device is the first parameter's (the CPU for a model without any).
    pub fn new(
        model: M,
        optimizer: impl Optimizer + 'static,
        loss: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'static,
    ) -> Trainer<M> {
        let device = model
            .parameters()
            .first()
            .map(|(_, t)| t.device().clone())
            .unwrap_or(Device::Cpu);
        Trainer {
            model,
            optimizer: Box::new(optimizer),
            loss: Box::new(loss),
            metrics: Vec::new(),
            device,
            amp: false,
            scaler: GradScaler::new(),
            skipped_steps: 0,
            #[cfg(feature = "mpi")]
            ddp: None,
        }
    }

    /// Data-parallel training over MPI (feature `mpi`), as PyTorch's
    /// `DistributedDataParallel`: every rank gets rank 0's parameters now, and `fit` averages
    /// the gradients over the ranks before each update, so every rank makes the same update.
    /// Give `fit` a loader with a [`crate::data::sampler::DistributedSampler`] so each rank
    /// trains on its own shard (its batch size is then per rank). In `fit`, rank 0 alone shows
    /// progress and evaluates the validation data; the training metrics are averaged over the
    /// ranks; a stop asked for by a callback on any rank stops every rank at the same step.
    /// Callbacks that read validation metrics or write files belong on rank 0 only.
    #[cfg(feature = "mpi")]
    pub fn distributed(mut self, pg: &crate::distributed::ProcessGroup) -> Result<Self> {
        self.ddp = Some(crate::distributed::DistributedDataParallel::new(
            pg,
            self.model.parameters(),
        )?);
        Ok(self)
    }

    /// Whether this process shows progress, evaluates and logs (rank 0, or the only process).
    pub fn is_main_process(&self) -> bool {
        #[cfg(feature = "mpi")]
        if let Some(ddp) = &self.ddp {
            return ddp.process_group().is_main();
        }
        true
    }

    /// `stop` on any rank (every rank must stop at the same step: the others would wait for
    /// it in the next gradient all-reduce).
    fn agree_to_stop(&self, stop: bool) -> bool {
        #[cfg(feature = "mpi")]
        if let Some(ddp) = &self.ddp {
            return ddp.process_group().any(stop);
        }
        stop
    }

    /// The training logs averaged over the ranks (equal shards: the mean of the ranks' means
    /// is the global mean).
    fn mean_over_ranks(&self, logs: Logs) -> Result<Logs> {
        #[cfg(feature = "mpi")]
        if let Some(ddp) = &self.ddp {
            let values: Vec<f32> = logs.iter().map(|(_, v)| v as f32).collect();
            let t = Tensor::from_vec(values, [logs.len()], &Device::Cpu)?;
            let mean = ddp
                .process_group()
                .all_reduce(&t, crate::distributed::Reduction::Mean)?
                .to_vec()?;
            let mut out = Logs::new();
            for ((name, _), v) in logs.iter().zip(mean) {
                out.insert(name.to_string(), v as f64);
            }
            return Ok(out);
        }
        Ok(logs)
    }

    /// Averages the gradients over the ranks under [`Trainer::distributed`].
    fn reduce_gradients(&self, grads: &mut Gradients) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(ddp) = &self.ddp {
            return ddp.reduce_gradients(grads);
        }
        let _ = grads;
        Ok(())
    }
    /// Adds a metric, reported for training and validation.
    pub fn metric(mut self, metric: impl Metric + 'static) -> Self {
        self.metrics.push(Box::new(metric));
        self
    }
    /// Mixed precision for `fit`, `evaluate` and `predict`: forward and loss under
    /// [`autocast`], dynamic loss scaling with a [`GradScaler`] when training.
    pub fn amp(mut self, on: bool) -> Self {
        self.amp = on;
        self
    }
    /// The device batches are moved to.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }
    /// The model, mutably.
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }
    /// Gives the model back.
    pub fn into_model(self) -> M {
        self.model
    }
    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer {
        &*self.optimizer
    }
    /// The optimizer, mutably.
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        &mut *self.optimizer
    }
    /// The loss scaler of mixed-precision training.
    pub fn scaler(&self) -> &GradScaler {
        &self.scaler
    }
    /// Updates skipped so far because mixed-precision gradients held an inf or NaN.
    pub fn skipped_steps(&self) -> usize {
        self.skipped_steps
    }

    /// Saves the parameters, the optimizer's state and `epochs_done` to `path` (atomically),
    /// as [`super::ModelCheckpoint`] does.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>, epochs_done: usize) -> Result<()> {
        let t = checkpoint_tensors(&self.model, &*self.optimizer, epochs_done, false)?;
        crate::checkpoint::save(path, &t)
    }

    /// Restores a checkpoint of [`Trainer::save_checkpoint`] or [`super::ModelCheckpoint`]:
    /// the parameters, the optimizer's state (if saved) and the epochs completed (0 if not
    /// saved), which is what [`FitOptions::initial_epoch`] takes to continue. The loss scale of
    /// mixed precision is not saved: it starts over.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<usize> {
        let path = path.as_ref();
        let loaded = crate::checkpoint::load(path, &self.device)?;
        crate::checkpoint::load_into(path, &self.model.parameters())?;
        self.optimizer.load_state(&loaded)?;
        match loaded.iter().find(|(n, _)| n == EPOCH_KEY) {
            Some((_, t)) => Ok(t.item()? as usize),
            None => Ok(0),
        }
    }

    fn forward_loss(&self, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
        let run = || -> Result<(Tensor, Tensor)> {
            let out = self.model.forward(x)?;
            let l = (self.loss)(&out, y)?;
            if l.numel() != 1 {
                return Err(Error::invalid(
                    "Trainer",
                    format!(
                        "the loss must be one value, got shape {:?} (outputs {:?}, targets {:?})",
                        l.dims(),
                        out.dims(),
                        y.dims()
                    ),
                ));
            }
            Ok((out, l))
        };
        if self.amp {
            autocast(run)
        } else {
            run()
        }
    }

    /// Loss and metrics over every batch of `data`, in evaluation mode without a graph
    /// (Keras's `evaluate`). The model is left in evaluation mode.
    pub fn evaluate(&mut self, data: &DataLoader) -> Result<Logs> {
        if data.is_empty() {
            return Err(Error::invalid("Trainer::evaluate", "the data has no batch"));
        }
        self.model.set_training(false);
        let mut loss_metric = MeanLoss::new();
        for m in &mut self.metrics {
            m.reset();
        }
        no_grad(|| -> Result<()> {
            for batch in data.epoch(0)? {
                let (x, y) = batch?.to_device(&self.device)?;
                let (out, l) = self.forward_loss(&x, &y)?;
                loss_metric.update(&out, &y, &l)?;
                for m in &mut self.metrics {
                    m.update(&out, &y, &l)?;
                }
            }
            Ok(())
        })?;
        let mut logs = Logs::new();
        logs.insert("loss", loss_metric.compute()?);
        for m in &mut self.metrics {
            let v = m.compute()?;
            logs.insert(m.name().to_string(), v);
            m.reset();
        }
        Ok(logs)
    }

    /// The model's outputs for every batch of `data` (targets ignored), concatenated along the
    /// first dimension in the loader's order for epoch 0 (`shuffle(false)` keeps the data
    /// set's order), in evaluation mode without a graph (Keras's `predict`).
    pub fn predict(&mut self, data: &DataLoader) -> Result<Tensor> {
        self.model.set_training(false);
        let outs = no_grad(|| -> Result<Vec<Tensor>> {
            let mut outs = Vec::with_capacity(data.len());
            for batch in data.epoch(0)? {
                let x = batch?.inputs.to_tensor(&self.device)?;
                outs.push(if self.amp {
                    autocast(|| self.model.forward(&x))?
                } else {
                    self.model.forward(&x)?
                });
            }
            Ok(outs)
        })?;
        if outs.is_empty() {
            return Err(Error::invalid("Trainer::predict", "the data has no batch"));
        }
        let refs: Vec<&Tensor> = outs.iter().collect();
        no_grad(|| Tensor::cat(&refs, 0))
    }

    /// Trains on `train` from `options`' initial epoch up to its `epochs` (Keras's `fit`):
    /// each epoch visits the loader's batches of that epoch, updates after every batch (or
    /// group of batches), then computes the training metrics, evaluates the validation data if
    /// any, and calls the callbacks. Returns the history of the epochs run. A loss that stops
    /// being finite is an `Err` naming the step.
    pub fn fit(&mut self, train: &DataLoader, options: FitOptions) -> Result<History> {
        const OP: &str = "Trainer::fit";
        let FitOptions {
            epochs,
            initial_epoch,
            validation,
            mut lr_schedule,
            clip_grad_norm,
            accumulate,
            verbosity,
            log_every,
            callbacks: mut user_callbacks,
        } = options;
        let main = self.is_main_process();
        let verbosity = if main { verbosity } else { Verbosity::Silent };
        if accumulate == 0 || log_every == 0 {
            return Err(Error::invalid(
                OP,
                format!("accumulate ({accumulate}) and log_every ({log_every}) must be at least 1"),
            ));
        }
        if let Some(c) = clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::invalid(
                    OP,
                    format!("clip_grad_norm must be positive and finite, got {c}"),
                ));
            }
        }
        let split;
        let (train, valid) = match validation {
            Validation::None => (train, None),
            Validation::Data(v) => (train, Some(v)),
            Validation::Split(f) => {
                split = train.split(f)?;
                (&split.0, Some(&split.1))
            }
        };
        let steps = train.len();
        if steps == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "the training data has no batch ({} examples, batch size {})",
                    train.dataset().len(),
                    train.batch_size()
                ),
            ));
        }
        let mut callbacks: Vec<&mut dyn Callback> = Vec::new();
        if let Some(s) = lr_schedule.as_mut() {
            callbacks.push(s);
        }
        callbacks.extend(user_callbacks.iter_mut().map(|c| &mut **c));

        let mut history = History::new();
        let mut epoch = initial_epoch;
        let mut batch = 0;
        // Calls `$method` of every callback with a fresh context; evaluates to stop_training.
        macro_rules! emit {
            ($method:ident $(, $arg:expr)*) => {{
                let mut ctx = Context {
                    model: &self.model,
                    optimizer: &mut *self.optimizer,
                    history: &history,
                    epoch,
                    epochs,
                    batch,
                    steps_per_epoch: steps,
                    stop_training: false,
                };
                for cb in callbacks.iter_mut() {
                    cb.$method(&mut ctx $(, $arg)*)?;
                }
                ctx.stop_training
            }};
        }

        emit!(on_train_begin);
        let mut loss_metric = MeanLoss::new();
        while epoch < epochs {
            batch = 0;
            self.model.set_training(true);
            let mut stop = emit!(on_epoch_begin);
            stop = self.agree_to_stop(stop);
            loss_metric.reset();
            for m in &mut self.metrics {
                m.reset();
            }
            let bar = self.progress_bar(verbosity, steps, epoch, epochs);
            let start = Instant::now();
            let mut pending: Vec<Tensor> = Vec::new();
            let (mut loss_sum, mut loss_count) = (0.0f64, 0usize);
            let mut acc: Option<Gradients> = None;
            let mut ran = 0usize;
            for (i, b) in train.epoch(epoch)?.enumerate() {
                if stop {
                    break;
                }
                batch = i;
                stop |= emit!(on_batch_begin);
                let (x, y) = b?.to_device(&self.device)?;
                let (out, l) = self.forward_loss(&x, &y)?;
                // Gradient accumulation: groups of `accumulate` batches, the last one shorter.
                let group_start = i - i % accumulate;
                let group_len = accumulate.min(steps - group_start);
                let last_in_group = i + 1 == group_start + group_len;
                let scaled = if group_len > 1 {
                    l.mul_scalar(1.0 / group_len as f32)?
                } else {
                    l.clone()
                };
                let grads = if self.amp {
                    self.scaler.scale(&scaled)?.backward()?
                } else {
                    scaled.backward()?
                };
                let mut grads = match acc.take() {
                    None => grads,
                    Some(mut sum) => {
                        no_grad(|| -> Result<()> {
                            for (_, p) in self.model.parameters() {
                                if let Some(g) = grads.get(&p) {
                                    let total = match sum.get(&p) {
                                        Some(s) => s.add(g)?,
                                        None => g.clone(),
                                    };
                                    sum.insert(&p, total);
                                }
                            }
                            Ok(())
                        })?;
                        sum
                    }
                };
                if last_in_group {
                    self.update(&mut grads, clip_grad_norm)?;
                } else {
                    acc = Some(grads);
                }
                let l = l.detach();
                no_grad(|| -> Result<()> {
                    let out = out.detach();
                    loss_metric.update(&out, &y, &l)?;
                    for m in &mut self.metrics {
                        m.update(&out, &y, &l)?;
                    }
                    Ok(())
                })?;
                pending.push(l.clone());
                stop |= emit!(on_batch_end, &l);
                stop = self.agree_to_stop(stop);
                if (i + 1).is_multiple_of(log_every) || i + 1 == steps || stop {
                    let losses = read_losses(&mut pending)?;
                    if let Some((k, bad)) = losses.iter().enumerate().find(|(_, v)| !v.is_finite())
                    {
                        bar.abandon();
                        return Err(non_finite(*bad, epoch, i + 2 + k - losses.len()));
                    }
                    loss_sum += losses.iter().map(|&v| v as f64).sum::<f64>();
                    loss_count += losses.len();
                    history.push_step_losses(&losses);
                    if !bar.is_hidden() {
                        let mut msg = format!("loss {:.4}", loss_sum / loss_count as f64);
                        for m in &mut self.metrics {
                            let v = m.compute()?;
                            msg += &format!(" - {} {v:.4}", m.name());
                        }
                        bar.set_message(msg);
                    }
                }
                bar.inc(1);
                ran = i + 1;
            }
            let secs = start.elapsed().as_secs_f64();
            let done = ran.max(1) as f64;
            bar.finish_and_clear();

            let mut logs = Logs::new();
            logs.insert("loss", loss_metric.compute()?);
            for m in &mut self.metrics {
                let v = m.compute()?;
                logs.insert(m.name().to_string(), v);
            }
            let mut logs = self.mean_over_ranks(logs)?;
            let val_start = Instant::now();
            if let (Some(v), true) = (valid, main) {
                for (name, value) in self.evaluate(v)?.iter() {
                    logs.insert(format!("val_{name}"), value);
                }
            }
            let val_secs = val_start.elapsed().as_secs_f64();
            logs.insert("learning_rate", self.optimizer.lr() as f64);
            history.push_epoch(epoch + 1, &logs);
            if verbosity != Verbosity::Silent {
                let mut line = format!(
                    "epoch {}/{epochs}: {secs:.1} s ({:.2} ms/step)",
                    epoch + 1,
                    secs * 1000.0 / done
                );
                for (name, value) in logs.iter() {
                    line += &format!(" - {name} {}", fmt_value(value));
                }
                if valid.is_some() {
                    line += &format!(" (validation {val_secs:.1} s)");
                }
                if self.amp {
                    line += &format!(
                        " - loss scale {} ({} updates skipped so far)",
                        self.scaler.scale_value(),
                        self.skipped_steps
                    );
                }
                println!("{line}");
            }
            stop |= emit!(on_epoch_end, &logs);
            stop = self.agree_to_stop(stop);
            epoch += 1;
            if stop {
                break;
            }
        }
        emit!(on_train_end);
        Ok(history)
    }

    /// One optimizer update from `grads`: unscaled and checked for inf/NaN under mixed
    /// precision (a bad step is skipped), clipped if asked.
    fn update(&mut self, grads: &mut Gradients, clip: Option<f32>) -> Result<()> {
        self.reduce_gradients(grads)?;
        if self.amp && self.scaler.unscale(grads)? {
            self.skipped_steps += 1;
            self.scaler.update();
            return Ok(());
        }
        match clip {
            Some(c) => {
                self.optimizer.step_clipped(grads, c)?;
            }
            None => self.optimizer.step(grads)?,
        }
        if self.amp {
            self.scaler.update();
        }
        Ok(())
    }

    fn progress_bar(&self, v: Verbosity, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
        if v != Verbosity::Progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(steps as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} - {rate} [{elapsed} < {eta}]",
        ) {
            let rate = |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} steps/s", s.per_sec());
            };
            bar.set_style(style.with_key("rate", rate).progress_chars("=> "));
        }
        bar.set_prefix(format!("{}/{epochs}", epoch + 1));
        bar
    }
}

/// Reads the pending step losses back in one transfer (they are concatenated on the device).
fn read_losses(pending: &mut Vec<Tensor>) -> Result<Vec<f32>> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let parts = pending
        .drain(..)
        .map(|t| t.to_dtype(DType::F32)?.reshape([1]))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Tensor> = parts.iter().collect();
    no_grad(|| Tensor::cat(&refs, 0))?.to_vec()
}

/// The error that stops training when the loss is no longer a number.
fn non_finite(loss: f32, epoch: usize, step: usize) -> Error {
    Error::invalid(
        "Trainer::fit",
        format!(
            "the training loss became {loss} at step {step} of epoch {}: stopping \
             (wgml::set_detect_anomaly(true) names the first op that produced a NaN or inf)",
            epoch + 1
        ),
    )
}

/// Four significant decimals, or scientific notation for small values (learning rates).
fn fmt_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}
