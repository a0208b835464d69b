//! `Trainer::fit` end to end on a toy problem: the same seed gives the same run, early stopping
//! stops and restores the best weights, a checkpoint resumes to the same run, accumulation,
//! clipping, schedules, validation, metrics, errors, and a GPU run that agrees with the CPU.

mod common;

use wgml::data::{DataLoader, HostTensor, SequentialSampler, TensorDataset};
use wgml::nn::{loss, Embedding, Linear, Module, Relu, Sequential};
use wgml::optim::{Adam, Sgd, StepLr};
use wgml::rng::Rng;
use wgml::train::{
    Accuracy, Callback, Context, CsvLogger, EarlyStopping, FitOptions, History, JsonLogger, Logs,
    Metric, Mode, ModelCheckpoint, Perplexity, TopKAccuracy, Trainer, Verbosity,
};
use wgml::{Device, Result, Tensor};

/// Three noisy clusters in 2-D: `n` points, labels 0..3.
fn toy(n: usize) -> TensorDataset {
    let mut rng = Rng::new(5);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n as u32 {
        let c = i % 3;
        let angle = c as f32 * 2.1 + rng.uniform() * 1.2;
        let r = 0.3 + rng.uniform();
        x.push(r * angle.cos());
        x.push(r * angle.sin());
        y.push(c);
    }
    TensorDataset::from_host(
        HostTensor::f32(x, [n, 2]).unwrap(),
        HostTensor::u32(y, [n]).unwrap(),
    )
    .unwrap()
}

fn mlp(dev: &Device) -> Sequential {
    let mut rng = Rng::new(1);
    Sequential::new()
        .add(Linear::new(2, 16, true, &mut rng, dev).unwrap())
        .add(Relu)
        .add(Linear::new(16, 3, true, &mut rng, dev).unwrap())
}

fn adam_trainer(dev: &Device) -> Trainer<Sequential> {
    let model = mlp(dev);
    let opt = Adam::new(model.parameters(), 0.02);
    Trainer::new(model, opt, loss::cross_entropy).metric(Accuracy::new())
}

fn params(m: &dyn Module) -> Vec<Vec<f32>> {
    m.parameters()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect()
}

fn quiet<'a>(epochs: usize) -> FitOptions<'a> {
    FitOptions::new(epochs).verbosity(Verbosity::Silent)
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let data = DataLoader::new(toy(96), 16).unwrap().seed(7);
        let mut t = adam_trainer(&Device::cpu());
        let h = t.fit(&data, quiet(3).validation_split(0.25)).unwrap();
        (h, params(t.model()))
    };
    let (h1, p1) = run();
    let (h2, p2) = run();
    assert_eq!(h1.to_json(), h2.to_json(), "histories differ");
    assert_eq!(p1, p2, "parameters differ");
    // And a different shuffling seed gives a different run (the order matters).
    let data = DataLoader::new(toy(96), 16).unwrap().seed(8);
    let mut t = adam_trainer(&Device::cpu());
    t.fit(&data, quiet(3).validation_split(0.25)).unwrap();
    assert_ne!(params(t.model()), p1, "the seed had no effect");
}

#[test]
fn fit_learns_and_logs_every_epoch_and_step() {
    let data = DataLoader::new(toy(96), 16).unwrap();
    let mut t = adam_trainer(&Device::cpu()).metric(TopKAccuracy::new(2).unwrap());
    let h = t.fit(&data, quiet(8).validation_split(0.25)).unwrap();
    assert_eq!(h.epochs(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        h.names(),
        [
            "loss",
            "accuracy",
            "top_2_accuracy",
            "val_loss",
            "val_accuracy",
            "val_top_2_accuracy",
            "learning_rate"
        ]
    );
    // 72 training examples in batches of 16: 5 steps per epoch.
    assert_eq!(h.step_loss().len(), 8 * 5);
    let loss = h.get("loss").unwrap();
    assert!(loss[7] < loss[0] * 0.5, "loss {loss:?}");
    assert!(h.last("accuracy").unwrap() > 0.8, "{h:?}");
    let top2 = h.last("top_2_accuracy").unwrap();
    assert!(top2 >= h.last("accuracy").unwrap() && top2 <= 1.0);
    // The epoch's loss is the batch-size-weighted mean of its steps' losses.
    let steps = &h.step_loss()[35..40];
    let weighted = (steps[..4].iter().sum::<f32>() * 16.0 + steps[4] * 8.0) / 72.0;
    assert!(
        (loss[7] - weighted as f64).abs() < 1e-5,
        "{} vs {weighted}",
        loss[7]
    );
}

/// A metric whose value is scripted per epoch (one `compute` per epoch when silent).
struct Scripted {
    values: Vec<f64>,
    at: usize,
}

impl Metric for Scripted {
    fn name(&self) -> &str {
        "score"
    }
    fn reset(&mut self) {}
    fn update(&mut self, _: &Tensor, _: &Tensor, _: &Tensor) -> Result<()> {
        Ok(())
    }
    fn compute(&mut self) -> Result<f64> {
        self.at += 1;
        Ok(self.values[self.at - 1])
    }
}

/// Copies the parameters at the end of every epoch.
#[derive(Default)]
struct Snapshots(Vec<Vec<Vec<f32>>>);

impl Callback for Snapshots {
    fn on_epoch_end(&mut self, ctx: &mut Context, _logs: &Logs) -> Result<()> {
        self.0.push(params(ctx.model));
        Ok(())
    }
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    let data = DataLoader::new(toy(48), 16).unwrap();
    let model = mlp(&Device::cpu());
    let opt = Adam::new(model.parameters(), 0.02);
    let score = Scripted {
        values: vec![5.0, 3.0, 3.5, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        at: 0,
    };
    let mut t = Trainer::new(model, opt, loss::cross_entropy).metric(score);
    let mut snaps = Snapshots::default();
    let mut early = EarlyStopping::new("score")
        .mode(Mode::Min)
        .patience(2)
        .restore_best_weights(true);
    let h = t
        .fit(&data, quiet(10).callback(&mut snaps).callback(&mut early))
        .unwrap();
    // Best at epoch 1 (0-based); epochs 2 and 3 do not improve: patience 2 runs out at 3.
    assert_eq!(early.stopped_epoch(), Some(3));
    assert_eq!(early.best(), Some((3.0, 1)));
    assert_eq!(h.len(), 4, "trained past the stop: {:?}", h.epochs());
    assert_eq!(snaps.0.len(), 4);
    let now = params(t.model());
    assert_eq!(now, snaps.0[1], "not the best epoch's weights");
    assert_ne!(now, snaps.0[3]);

    // Without restoring, the last epoch's weights stay.
    let model = mlp(&Device::cpu());
    let opt = Adam::new(model.parameters(), 0.02);
    let score = Scripted {
        values: vec![5.0, 3.0, 3.5, 4.0, 1.0],
        at: 0,
    };
    let mut t = Trainer::new(model, opt, loss::cross_entropy).metric(score);
    let mut snaps = Snapshots::default();
    let mut early = EarlyStopping::new("score").patience(2);
    t.fit(&data, quiet(10).callback(&mut snaps).callback(&mut early))
        .unwrap();
    assert_eq!(early.stopped_epoch(), Some(3));
    assert_eq!(params(t.model()), snaps.0[3]);

    // Restoring also happens when training ends without a stop (as Keras 3 does), and
    // patience 1 stops at the first epoch without improvement.
    for (patience, values, ran, stopped) in [
        (5, vec![1.0, 2.0, 3.0], 3, None),
        (1, vec![1.0, 2.0, 0.5], 2, Some(1)),
    ] {
        let model = mlp(&Device::cpu());
        let opt = Adam::new(model.parameters(), 0.02);
        let score = Scripted { values, at: 0 };
        let mut t = Trainer::new(model, opt, loss::cross_entropy).metric(score);
        let mut snaps = Snapshots::default();
        let mut early = EarlyStopping::new("score")
            .patience(patience)
            .restore_best_weights(true);
        let h = t
            .fit(&data, quiet(3).callback(&mut snaps).callback(&mut early))
            .unwrap();
        assert_eq!(h.len(), ran);
        assert_eq!(early.stopped_epoch(), stopped);
        assert_eq!(params(t.model()), snaps.0[0], "patience {patience}");
        assert_ne!(params(t.model()), snaps.0[ran - 1]);
    }
}

#[test]
fn early_stopping_on_a_missing_name_is_an_error() {
    let data = DataLoader::new(toy(32), 16).unwrap();
    let mut t = adam_trainer(&Device::cpu());
    let mut early = EarlyStopping::new("val_loss");
    let e = t.fit(&data, quiet(2).callback(&mut early)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("EarlyStopping") && msg.contains("val_loss"),
        "{msg}"
    );
    assert!(msg.contains("loss, accuracy"), "{msg}");
}

#[test]
fn checkpoint_resumes_to_the_same_run() {
    let dir = std::env::temp_dir().join(format!("wgml_fit_resume_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pattern = dir.join("ckpt_{epoch}.safetensors");
    let data = DataLoader::new(toy(96), 16).unwrap().seed(3);
    let schedule = || wgml::optim::CosineLr {
        base_lr: 0.02,
        t_max: 4 * 6,
        eta_min: 0.001,
    };

    // Uninterrupted: 4 epochs, a checkpoint after each.
    let mut full = adam_trainer(&Device::cpu());
    let mut ckpt = ModelCheckpoint::new(pattern.to_str().unwrap());
    let h_full = full
        .fit(
            &data,
            quiet(4)
                .lr_schedule_per_step(schedule())
                .callback(&mut ckpt),
        )
        .unwrap();
    assert_eq!(ckpt.saved().len(), 4);
    let after2 = dir.join("ckpt_2.safetensors");
    assert!(after2.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Resumed: a fresh model (different initial weights) loads the epoch-2 checkpoint.
    let fresh = || {
        let mut rng = Rng::new(99);
        let dev = Device::cpu();
        let model = Sequential::new()
            .add(Linear::new(2, 16, true, &mut rng, &dev).unwrap())
            .add(Relu)
            .add(Linear::new(16, 3, true, &mut rng, &dev).unwrap());
        let opt = Adam::new(model.parameters(), 0.02);
        Trainer::new(model, opt, loss::cross_entropy).metric(Accuracy::new())
    };
    let mut resumed = fresh();
    let epoch = resumed.load_checkpoint(&after2).unwrap();
    assert_eq!(epoch, 2);
    let h_rest = resumed
        .fit(
            &data,
            quiet(4)
                .initial_epoch(epoch)
                .lr_schedule_per_step(schedule()),
        )
        .unwrap();
    assert_eq!(h_rest.epochs(), &[3, 4]);
    assert_eq!(
        params(resumed.model()),
        params(full.model()),
        "resuming changed the run"
    );
    assert_eq!(
        &h_full.get("loss").unwrap()[2..],
        h_rest.get("loss").unwrap()
    );
    let state = |t: &Trainer<Sequential>| -> Vec<(String, Vec<f32>)> {
        t.optimizer()
            .state()
            .iter()
            .map(|(n, s)| (n.clone(), s.to_vec().unwrap()))
            .collect()
    };
    assert_eq!(state(&resumed), state(&full), "optimizer state differs");

    // The parameters alone (no optimizer state) do not give the same run: the check above
    // can tell.
    let mut params_only = fresh();
    wgml::checkpoint::load_into(&after2, &params_only.model().parameters()).unwrap();
    params_only
        .fit(
            &data,
            quiet(4).initial_epoch(2).lr_schedule_per_step(schedule()),
        )
        .unwrap();
    assert_ne!(params(params_only.model()), params(full.model()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn best_only_checkpoints_save_on_improvement() {
    let dir = std::env::temp_dir().join(format!("wgml_fit_best_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = DataLoader::new(toy(48), 16).unwrap();
    let model = mlp(&Device::cpu());
    let opt = Adam::new(model.parameters(), 0.02);
    let score = Scripted {
        values: vec![0.5, 0.7, 0.6, 0.9],
        at: 0,
    };
    let mut t = Trainer::new(model, opt, loss::cross_entropy).metric(score);
    let path = dir.join("best_{epoch}.safetensors");
    let mut ckpt = ModelCheckpoint::new(path.to_str().unwrap())
        .monitor("score")
        .mode(Mode::Max)
        .save_best_only(true);
    t.fit(&data, quiet(4).callback(&mut ckpt)).unwrap();
    let names: Vec<String> = ckpt
        .saved()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "best_1.safetensors",
            "best_2.safetensors",
            "best_4.safetensors"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sgd_run(batch: usize, accumulate: usize) -> Vec<Vec<f32>> {
    let data = DataLoader::new(toy(96), batch)
        .unwrap()
        .sampler(SequentialSampler);
    let model = mlp(&Device::cpu());
    let opt = Sgd::new(model.parameters(), 0.3);
    let mut t = Trainer::new(model, opt, loss::cross_entropy);
    t.fit(&data, quiet(2).accumulate(accumulate)).unwrap();
    params(t.model())
}

#[test]
fn accumulating_two_batches_is_one_batch_twice_as_large() {
    let want = sgd_run(16, 1);
    let got = sgd_run(8, 2);
    for (g, w) in got.iter().zip(&want) {
        common::assert_close(g, w, 1e-5, 1e-4, "accumulate 2 × 8 vs batch 16");
    }
    // A group of three with a shorter last group (96 / 8 = 12 = 4 × 3) also matches 24.
    let want = sgd_run(24, 1);
    let got = sgd_run(8, 3);
    for (g, w) in got.iter().zip(&want) {
        common::assert_close(g, w, 1e-5, 1e-4, "accumulate 3 × 8 vs batch 24");
    }
    // And without accumulation the runs differ (the check can fail).
    assert_ne!(sgd_run(8, 1), sgd_run(16, 1));
}

#[test]
fn clipping_bounds_each_update() {
    let data = DataLoader::new(toy(48), 16).unwrap();
    let start = params(&mlp(&Device::cpu()));
    let run = |clip: Option<f32>| {
        let model = mlp(&Device::cpu());
        let opt = Sgd::new(model.parameters(), 0.5);
        let mut t = Trainer::new(model, opt, loss::cross_entropy);
        let mut o = quiet(1);
        if let Some(c) = clip {
            o = o.clip_grad_norm(c);
        }
        t.fit(&data, o).unwrap();
        params(t.model())
    };
    let moved = |p: &[Vec<f32>]| -> f32 {
        p.iter()
            .flatten()
            .zip(start.iter().flatten())
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    };
    // 3 steps of lr 0.5 with gradient norm at most 1e-3 move at most 1.5e-3 in all.
    let clipped = moved(&run(Some(1e-3)));
    assert!(clipped <= 1.5e-3 * 1.001 && clipped > 0.0, "{clipped}");
    assert!(moved(&run(None)) > 0.05);
}

#[test]
fn epoch_schedule_sets_the_learning_rate() {
    let data = DataLoader::new(toy(48), 16).unwrap();
    let mut t = adam_trainer(&Device::cpu());
    let h = t
        .fit(
            &data,
            quiet(3).lr_schedule_per_epoch(StepLr {
                base_lr: 0.1,
                step_size: 1,
                gamma: 0.5,
            }),
        )
        .unwrap();
    let lr: Vec<f32> = h
        .get("learning_rate")
        .unwrap()
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(lr, [0.1, 0.05, 0.025]);
}

/// Stops training after the third batch of the first epoch.
struct StopAtBatch(usize);

impl Callback for StopAtBatch {
    fn on_batch_end(&mut self, ctx: &mut Context, loss: &Tensor) -> Result<()> {
        assert_eq!(loss.numel(), 1);
        if ctx.batch == self.0 {
            ctx.stop_training = true;
        }
        Ok(())
    }
}

#[test]
fn a_callback_can_stop_mid_epoch() {
    let data = DataLoader::new(toy(96), 16).unwrap();
    let mut t = adam_trainer(&Device::cpu());
    let mut stop = StopAtBatch(2);
    let h = t.fit(&data, quiet(5).callback(&mut stop)).unwrap();
    assert_eq!(h.epochs(), &[1]);
    assert_eq!(h.step_loss().len(), 3);
}

#[test]
fn evaluate_and_predict_agree() {
    let dev = Device::cpu();
    let data = DataLoader::new(toy(50), 16).unwrap().shuffle(false);
    let mut t = adam_trainer(&dev);
    t.fit(&data, quiet(3)).unwrap();
    let logs = t.evaluate(&data).unwrap();
    assert_eq!(logs.names(), ["loss", "accuracy"]);
    let out = t.predict(&data).unwrap();
    assert_eq!(out.dims(), &[50, 3]);
    let labels: Vec<u32> = (0..50).map(|i| i % 3).collect();
    let pred = out.argmax(-1, false).unwrap().to_vec_u32().unwrap();
    let hits = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert!((logs.get("accuracy").unwrap() - hits as f64 / 50.0).abs() < 1e-9);
    let y = Tensor::from_indices(&labels, [50], &dev).unwrap();
    let l = loss::cross_entropy(&out, &y).unwrap().item().unwrap();
    assert!((logs.get("loss").unwrap() - l as f64).abs() < 1e-5);
}

#[test]
fn bad_settings_and_a_diverging_loss_are_errors() {
    let data = DataLoader::new(toy(32), 16).unwrap();
    let mut t = adam_trainer(&Device::cpu());
    for (o, want) in [
        (quiet(1).accumulate(0), "accumulate"),
        (quiet(1).clip_grad_norm(-1.0), "clip_grad_norm"),
        (quiet(1).validation_split(1.5), "DataLoader::split"),
    ] {
        let msg = t.fit(&data, o).unwrap_err().to_string();
        assert!(msg.contains(want), "{msg}");
    }
    let model = mlp(&Device::cpu());
    let opt = Adam::new(model.parameters(), 0.02);
    let mut t = Trainer::new(model, opt, |o: &Tensor, y: &Tensor| {
        loss::cross_entropy(o, y)?.mul_scalar(f32::INFINITY)
    });
    let msg = t.fit(&data, quiet(1)).unwrap_err().to_string();
    assert!(msg.contains("became inf at step 1 of epoch 1"), "{msg}");
    // A loss that is not one value.
    let model = mlp(&Device::cpu());
    let opt = Adam::new(model.parameters(), 0.02);
    let mut t = Trainer::new(model, opt, |o: &Tensor, _: &Tensor| Ok(o.clone()));
    let msg = t.fit(&data, quiet(1)).unwrap_err().to_string();
    assert!(msg.contains("the loss must be one value"), "{msg}");
}

#[test]
fn metrics_on_known_values() {
    let dev = Device::cpu();
    let out = Tensor::from_vec(
        vec![
            0.1, 0.5, 0.4, 0.0, /**/ 0.7, 0.1, 0.2, 0.0, /**/ 0.2, 0.3, 0.1, 0.4,
        ],
        [3, 4],
        &dev,
    )
    .unwrap();
    let y = Tensor::from_indices(&[1, 2, 2], [3], &dev).unwrap();
    let l = Tensor::scalar(2.0, &dev).unwrap();
    let mut acc = Accuracy::new();
    acc.update(&out, &y, &l).unwrap();
    assert!((acc.compute().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    // Row 1: class 2 is second; row 2: class 2 is fourth.
    let mut top2 = TopKAccuracy::new(2).unwrap();
    top2.update(&out, &y, &l).unwrap();
    assert!((top2.compute().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    let mut top4 = TopKAccuracy::new(4).unwrap();
    top4.update(&out, &y, &l).unwrap();
    assert_eq!(top4.compute().unwrap(), 1.0);
    let mut ppl = Perplexity::new();
    ppl.update(&out, &y, &l).unwrap();
    assert!((ppl.compute().unwrap() - 2f64.exp()).abs() < 1e-5);
    ppl.reset();
    assert!(ppl.compute().unwrap().is_nan());
    // Shapes that do not fit, and k = 0.
    let bad = Tensor::from_indices(&[1, 2], [2], &dev).unwrap();
    let msg = acc.update(&out, &bad, &l).unwrap_err().to_string();
    assert!(msg.contains("Accuracy") && msg.contains("[3, 4]"), "{msg}");
    assert!(TopKAccuracy::new(0).is_err());
}

#[test]
fn a_character_model_trains_on_text_windows() {
    let dev = Device::cpu();
    let corpus = wgml::data::text::CharCorpus::from_text(&"abcabcabd ".repeat(40), 0.9).unwrap();
    let v = corpus.vocab_size();
    let train = DataLoader::new(wgml::data::CharWindows::train(&corpus, 8).unwrap(), 8).unwrap();
    let valid = DataLoader::new(wgml::data::CharWindows::valid(&corpus, 8).unwrap(), 8)
        .unwrap()
        .shuffle(false);
    let mut rng = Rng::new(0);
    let model = Sequential::new()
        .add(Embedding::new(v, 16, &mut rng, &dev).unwrap())
        .add(Linear::new(16, v, true, &mut rng, &dev).unwrap());
    let opt = Adam::new(model.parameters(), 0.05);
    // Logits [B, T, V] against next characters [B, T].
    let lm_loss = |o: &Tensor, y: &Tensor| {
        let v = o.dims()[2];
        loss::cross_entropy(&o.reshape([o.numel() / v, v])?, &y.reshape([y.numel()])?)
    };
    let mut t = Trainer::new(model, opt, lm_loss)
        .metric(Accuracy::new())
        .metric(Perplexity::new());
    let h = t.fit(&train, quiet(4).validation_data(&valid)).unwrap();
    let ppl = h.get("perplexity").unwrap();
    assert!(ppl[3] < ppl[0] && ppl[3] < 3.0, "{ppl:?}");
    let val = h.last("val_perplexity").unwrap();
    assert!((val - h.last("val_loss").unwrap().exp()).abs() < 1e-4 * val);
}

#[test]
fn loggers_write_the_history_fit_returns() {
    let dir = std::env::temp_dir().join(format!("wgml_fit_loggers_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = DataLoader::new(toy(64), 16).unwrap();
    let mut t = adam_trainer(&Device::cpu());
    let mut csv = CsvLogger::new(dir.join("log.csv"));
    let mut json = JsonLogger::new(dir.join("log.json"));
    let h = t
        .fit(
            &data,
            quiet(3)
                .validation_split(0.25)
                .callback(&mut csv)
                .callback(&mut json),
        )
        .unwrap();
    assert_eq!(History::load(dir.join("log.json")).unwrap(), h);
    let from_csv = History::load(dir.join("log.csv")).unwrap();
    assert_eq!(from_csv.epochs(), h.epochs());
    for n in h.names() {
        assert_eq!(from_csv.get(n), h.get(n), "{n}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mixed_precision_fit_learns() {
    let data = DataLoader::new(toy(96), 16).unwrap();
    let mut t = adam_trainer(&Device::cpu()).amp(true);
    let h = t.fit(&data, quiet(6).clip_grad_norm(5.0)).unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[5] < loss[0] * 0.6, "loss {loss:?}");
    // The first steps at scale 2^16 may overflow F16 and be skipped; most are not.
    assert!(t.skipped_steps() < 6, "{} steps skipped", t.skipped_steps());
    assert!(t.scaler().scale_value() >= 1.0);
}

#[test]
fn gpu_fit_agrees_with_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let run = |dev: &Device| -> (History, Vec<Vec<f32>>) {
        let data = DataLoader::new(toy(48), 16).unwrap();
        let mut t = adam_trainer(dev);
        let h = t.fit(&data, quiet(2).validation_split(0.25)).unwrap();
        (h, params(t.model()))
    };
    let (h_cpu, p_cpu) = run(&Device::cpu());
    let (h_gpu, p_gpu) = run(&gpu);
    for (g, c) in p_gpu.iter().zip(&p_cpu) {
        common::assert_close(g, c, 1e-4, 1e-3, "parameters after fit, gpu vs cpu");
    }
    for name in ["loss", "val_loss", "val_accuracy"] {
        let g: Vec<f32> = h_gpu.get(name).unwrap().iter().map(|&v| v as f32).collect();
        let c: Vec<f32> = h_cpu.get(name).unwrap().iter().map(|&v| v as f32).collect();
        common::assert_close(&g, &c, 1e-4, 1e-3, name);
    }
    common::assert_close(
        h_gpu.step_loss(),
        h_cpu.step_loss(),
        1e-4,
        1e-3,
        "step losses",
    );
}
