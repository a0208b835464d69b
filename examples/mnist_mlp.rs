//! Trains a 784-256-10 MLP (ReLU) on MNIST with Adam, on the default device.
//!
//! `cargo run --release --example mnist_mlp -- [--device cpu|gpu|gpu:N] [--epochs 3]
//!  [--batch-size 64] [--lr 0.001] [--save mlp.safetensors] [--data data/mnist]`

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use wgml::nn::{loss, Linear, Module, Relu, Sequential};
use wgml::optim::{Adam, Optimizer};
use wgml::{no_grad, DType, Device, Result};

struct Args {
    device: Option<String>,
    epochs: usize,
    batch_size: usize,
    lr: f32,
    save: Option<String>,
    data: String,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        device: None,
        epochs: 3,
        batch_size: 64,
        lr: 1e-3,
        save: None,
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist").to_string(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => a.device = Some(value()?),
            "--epochs" => a.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--batch-size" => {
                a.batch_size = value()?.parse().map_err(|e| format!("--batch-size: {e}"))?
            }
            "--lr" => a.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--save" => a.save = Some(value()?),
            "--data" => a.data = value()?,
            "-h" | "--help" => {
                return Err("usage: mnist_mlp [--device cpu|gpu|gpu:N] [--epochs N] \
                            [--batch-size N] [--lr F] [--save PATH] [--data DIR]"
                    .into())
            }
            other => return Err(format!("unknown flag {other} (try --help)")),
        }
    }
    Ok(a)
}

/// Test-set accuracy, in batches, without recording a graph.
fn accuracy(model: &dyn Module, split: &wgml::data::mnist::Split, dev: &Device) -> Result<f32> {
    no_grad(|| {
        let idx: Vec<usize> = (0..split.len()).collect();
        let mut correct = 0.0;
        for chunk in idx.chunks(1000) {
            let (x, y) = split.batch(chunk, dev)?;
            let pred = model.forward(&x)?.argmax(-1, false)?;
            correct += pred.eq(&y)?.to_dtype(DType::F32)?.sum_all()?.item()?;
        }
        Ok(correct / split.len() as f32)
    })
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let dev = match &args.device {
        Some(spec) => Device::parse(spec)?,
        None => Device::best(),
    };
    println!("device: {}", dev.name());
    let mnist = wgml::data::mnist::load(&args.data)?;
    println!("MNIST: {} train, {} test", mnist.train.len(), mnist.test.len());

    let mut rng = wgml::rng::Rng::new(0);
    let mut model = Sequential::new()
        .add(Linear::new(784, 256, true, &mut rng, &dev)?)
        .add(Relu)
        .add(Linear::new(256, 10, true, &mut rng, &dev)?);
    let mut opt = Adam::new(model.parameters(), args.lr);

    for epoch in 0..args.epochs {
        model.set_training(true);
        let batches = wgml::data::shuffled_batches(mnist.train.len(), args.batch_size, epoch as u64);
        let bar = ProgressBar::new(batches.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, args.epochs));
        let start = Instant::now();
        let (mut running, mut seen) = (0.0f32, 0usize);
        for (i, idx) in batches.iter().enumerate() {
            let (x, y) = mnist.train.batch(idx, &dev)?;
            let loss = loss::cross_entropy(&model.forward(&x)?, &y)?;
            let grads = loss.backward()?;
            opt.step(&grads)?;
            // Reading the loss waits on the device: do it only every 50 steps.
            if i % 50 == 0 || i + 1 == batches.len() {
                running += loss.item()?;
                seen += 1;
                bar.set_message(format!("loss {:.4}", running / seen as f32));
            }
            bar.inc(1);
        }
        dev.synchronize()?;
        let secs = start.elapsed().as_secs_f32();
        bar.finish_and_clear();
        model.set_training(false);
        let acc = accuracy(&model, &mnist.test, &dev)?;
        println!(
            "epoch {}: {:.1} s, loss {:.4}, test accuracy {:.2}%",
            epoch + 1,
            secs,
            running / seen.max(1) as f32,
            acc * 100.0
        );
    }
    if let Some(path) = &args.save {
        let mut tensors = model.parameters();
        tensors.extend(opt.state());
        wgml::checkpoint::save(path, &tensors)?;
        println!("saved {path}");
    }
    Ok(())
}
