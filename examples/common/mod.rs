//! The MNIST training loop the examples share: flags, progress bar, per-epoch report.

pub mod models;

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use wgml::data::mnist::{self, Split};
use wgml::nn::{loss, Module};
use wgml::optim::{Adam, CosineLr, LrSchedule, Optimizer};
use wgml::{no_grad, Device, Error, Result, Tensor};

/// The error that stops training when the loss is no longer a number (rerun under
/// `wgml::set_detect_anomaly(true)` to find the op that made it so).
fn non_finite(loss: f32, epoch: usize, step: usize) -> Error {
    Error::invalid(
        "training",
        format!(
            "the training loss became {loss} by step {step} of epoch {}: stopping \
             (wgml::set_detect_anomaly(true) names the first op that produced a NaN or inf)",
            epoch + 1
        ),
    )
}

/// Command-line flags.
pub struct Args {
    pub device: Option<String>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub save: Option<String>,
    /// A checkpoint whose parameters are loaded before anything else.
    pub load: Option<String>,
    pub data: String,
    pub limit: Option<usize>,
    /// Mixed precision: forward under `amp::autocast`, loss scaling with a `GradScaler`.
    pub amp: bool,
}

/// Parses `--device --epochs --batch-size --lr --save --load --data --limit --amp`, with the example's
/// defaults.
pub fn parse_args(name: &str, epochs: usize, batch_size: usize) -> Args {
    let mut a = Args {
        device: None,
        epochs,
        batch_size,
        lr: 1e-3,
        save: None,
        load: None,
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist").to_string(),
        limit: None,
        amp: false,
    };
    let usage = format!(
        "usage: {name} [--device cpu|gpu|gpu:N] [--epochs N] [--batch-size N] [--lr F] \
         [--save PATH] [--load PATH] [--data DIR] [--limit N (training examples)] [--amp]"
    );
    let mut it = std::env::args().skip(1);
    let fail = |msg: String| -> ! {
        eprintln!("{msg}\n{usage}");
        std::process::exit(2)
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        if flag == "--amp" {
            a.amp = true;
            continue;
        }
        let value = it
            .next()
            .unwrap_or_else(|| fail(format!("{flag} needs a value")));
        let num = |v: &str| {
            v.parse::<usize>()
                .unwrap_or_else(|e| fail(format!("{flag}: {e}")))
        };
        match flag.as_str() {
            "--device" => a.device = Some(value),
            "--epochs" => a.epochs = num(&value),
            "--batch-size" => a.batch_size = num(&value).max(1),
            "--lr" => a.lr = value.parse().unwrap_or_else(|e| fail(format!("--lr: {e}"))),
            "--save" => a.save = Some(value),
            "--load" => a.load = Some(value),
            "--data" => a.data = value,
            "--limit" => a.limit = Some(num(&value)),
            other => fail(format!("unknown flag {other}")),
        }
    }
    a
}

/// Accuracy on a split, in batches of 500, without recording a graph.
pub fn accuracy(
    model: &dyn Module,
    split: &Split,
    input: &[usize],
    dev: &Device,
    amp: bool,
) -> Result<f32> {
    let run = || {
        let idx: Vec<usize> = (0..split.len()).collect();
        let mut correct = Tensor::zeros((), dev)?;
        for chunk in idx.chunks(500) {
            let (x, y) = split.batch(chunk, dev)?;
            let hit = model
                .forward(&prepare(&x, input)?)?
                .argmax(-1, false)?
                .eq(&y)?
                .sum_all()?;
            correct = correct.add(&hit)?;
        }
        Ok(correct.item()? / split.len() as f32)
    };
    no_grad(|| if amp { wgml::amp::autocast(run) } else { run() })
}

fn shape_of(batch: usize, input: &[usize]) -> Vec<usize> {
    std::iter::once(batch)
        .chain(input.iter().copied())
        .collect()
}

/// A batch as the model's input: `[batch, input...]`, standardised with MNIST's pixel mean
/// and standard deviation (0.1307, 0.3081), as torchvision's MNIST examples do.
fn prepare(x: &Tensor, input: &[usize]) -> Result<Tensor> {
    models::standardise(&x.reshape(shape_of(x.dims()[0], input))?)
}

/// Trains `model` on MNIST with Adam (cosine-decayed learning rate) and cross-entropy,
/// reporting each epoch; images are
/// reshaped to `[batch, input...]`. Returns the final test accuracy.
pub fn train(model: &mut dyn Module, input: &[usize], args: &Args, dev: &Device) -> Result<f32> {
    if let Some(path) = &args.load {
        wgml::checkpoint::load_into(path, &model.parameters())?;
        println!("loaded the parameters of {path}");
    }
    let mut data = mnist::load(&args.data)?;
    if let Some(n) = args.limit {
        let n = n.min(data.train.len());
        data.train.labels.truncate(n);
        data.train.images.truncate(n * 784);
    }
    println!("device: {}", dev.name());
    println!(
        "MNIST: {} train, {} test; batch {}, {} epochs{}",
        data.train.len(),
        data.test.len(),
        args.batch_size,
        args.epochs,
        if args.amp {
            "; mixed precision (F16 autocast, dynamic loss scaling)"
        } else {
            ""
        }
    );
    let mut scaler = wgml::amp::GradScaler::new();
    let mut skipped = 0;
    let mut opt = Adam::new(model.parameters(), args.lr);
    // Cosine decay of the learning rate over all steps (to lr/100).
    let steps_per_epoch = data.train.len().div_ceil(args.batch_size);
    let schedule = CosineLr {
        base_lr: args.lr,
        t_max: args.epochs * steps_per_epoch,
        eta_min: args.lr / 100.0,
    };
    let mut acc = 0.0;
    for epoch in 0..args.epochs {
        model.set_training(true);
        let batches = wgml::data::shuffled_batches(data.train.len(), args.batch_size, epoch as u64);
        let bar = ProgressBar::new(batches.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed} < {eta}]",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, args.epochs));
        let start = Instant::now();
        // The running loss stays on the device; it is read every 50 steps only.
        let mut total = Tensor::zeros((), dev)?;
        for (i, idx) in batches.iter().enumerate() {
            opt.set_lr(schedule.lr(epoch * steps_per_epoch + i));
            let (x, y) = data.train.batch(idx, dev)?;
            let x = prepare(&x, input)?;
            let l = if args.amp {
                let l = wgml::amp::autocast(|| loss::cross_entropy(&model.forward(&x)?, &y))?;
                let mut grads = scaler.scale(&l)?.backward()?;
                skipped += usize::from(!scaler.step(&mut opt, &mut grads)?);
                scaler.update();
                l
            } else {
                let l = loss::cross_entropy(&model.forward(&x)?, &y)?;
                opt.step(&l.backward()?)?;
                l
            };
            total = no_grad(|| total.add(&l.detach()))?;
            if (i + 1) % 50 == 0 || i + 1 == batches.len() {
                let mean = total.item()? / (i + 1) as f32;
                if !mean.is_finite() {
                    bar.abandon();
                    return Err(non_finite(mean, epoch, i + 1));
                }
                bar.set_message(format!("loss {mean:.4}"));
            }
            bar.inc(1);
        }
        let mean_loss = total.item()? / batches.len() as f32;
        let secs = start.elapsed().as_secs_f32();
        bar.finish_and_clear();
        model.set_training(false);
        acc = accuracy(model, &data.test, input, dev, args.amp)?;
        if args.amp {
            println!(
                "loss scale {} ({skipped} steps skipped for inf/NaN gradients so far)",
                scaler.scale_value()
            );
        }
        println!(
            "epoch {}: {:.1} s ({:.2} ms/step), loss {:.4}, test accuracy {:.2}%",
            epoch + 1,
            secs,
            secs * 1000.0 / batches.len() as f32,
            mean_loss,
            acc * 100.0
        );
    }
    if let Some(path) = &args.save {
        let mut tensors = model.parameters();
        tensors.extend(opt.state());
        wgml::checkpoint::save(path, &tensors)?;
        println!("saved {path}");
    }
    Ok(acc)
}

/// The device from `--device`, else `Device::best()`.
pub fn device(args: &Args) -> Result<Device> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match &args.device {
        Some(spec) => Device::parse(spec),
        None => Ok(Device::best()),
    }
}
