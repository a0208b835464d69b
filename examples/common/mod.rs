//! What the MNIST examples share: flags, and the run through the library's `Trainer::fit`
//! (progress bar, per-epoch report, cosine learning rate, checkpoints, the plotted history).

pub mod models;

use wgml::data::mnist::{self, Split};
use wgml::data::{DataLoader, MnistDataset};
use wgml::nn::{loss, Module, Sequential};
use wgml::optim::{Adam, CosineLr};
use wgml::train::{Accuracy, FitOptions, Trainer};
use wgml::{no_grad, Device, Result, Tensor};

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
    /// Where to plot the training curves (SVG); the history goes next to it as JSON.
    pub plot: Option<String>,
    /// `--distributed`: data-parallel over the MPI job this process belongs to (feature
    /// `mpi`); `--batch-size` is then per process.
    pub distributed: bool,
}

/// Parses `--device --epochs --batch-size --lr --save --load --data --limit --amp --plot`, with
/// the example's defaults.
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
        plot: None,
        distributed: false,
    };
    let usage = format!(
        "usage: {name} [--device cpu|gpu|gpu:N] [--epochs N] [--batch-size N] [--lr F] \
         [--save PATH] [--load PATH] [--data DIR] [--limit N (training examples)] [--amp] \
         [--plot PATH.svg] [--distributed (under mpirun; --batch-size is per process)]"
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
        if flag == "--distributed" {
            if !cfg!(feature = "mpi") {
                fail("--distributed needs a build with --features mpi".into());
            }
            a.distributed = true;
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
            "--plot" => a.plot = Some(value),
            other => fail(format!("unknown flag {other}")),
        }
    }
    a
}

/// Accuracy on a split, in batches of 500, without recording a graph (`mnist_infer`'s).
#[allow(dead_code)] // the training examples evaluate through Trainer::fit
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

#[allow(dead_code)]
fn shape_of(batch: usize, input: &[usize]) -> Vec<usize> {
    std::iter::once(batch)
        .chain(input.iter().copied())
        .collect()
}

/// A batch as the model's input: `[batch, input...]`, standardised with MNIST's pixel mean
/// and standard deviation (0.1307, 0.3081), as torchvision's MNIST examples do.
#[allow(dead_code)]
fn prepare(x: &Tensor, input: &[usize]) -> Result<Tensor> {
    models::standardise(&x.reshape(shape_of(x.dims()[0], input))?)
}

/// MNIST's pixel mean and standard deviation, as torchvision's MNIST examples standardise.
const MNIST_MEAN_STD: (f32, f32) = (0.1307, 0.3081);

/// A split of MNIST as batches of `[batch, input...]` standardised images.
fn loader(split: Split, input: &[usize], batch: usize) -> Result<DataLoader> {
    let (mean, std) = MNIST_MEAN_STD;
    DataLoader::new(
        MnistDataset::new(split)
            .with_shape(input)?
            .standardised(mean, std)?,
        batch,
    )
}

/// Trains `model` on MNIST with `Trainer::fit`: Adam with a cosine-decayed learning rate (to
/// lr/100 over all steps), cross-entropy, accuracy, the test split as validation data after
/// each epoch. Images are `[batch, input...]`. Returns the final test accuracy.
pub fn train(model: Sequential, input: &[usize], args: &Args, dev: &Device) -> Result<f32> {
    #[cfg(feature = "mpi")]
    let pg = match args.distributed {
        true => Some(wgml::distributed::init()?),
        false => None,
    };
    #[cfg(feature = "mpi")]
    let (rank, world) = pg.as_ref().map_or((0, 1), |p| (p.rank(), p.world_size()));
    #[cfg(not(feature = "mpi"))]
    let (rank, world) = (0, 1);
    let main = rank == 0;
    if let Some(path) = &args.load {
        // Rank 0's parameters reach the others when training starts.
        wgml::checkpoint::load_into(path, &model.parameters())?;
        if main {
            println!("loaded the parameters of {path}");
        }
    }
    let mut data = mnist::load(&args.data)?;
    if let Some(n) = args.limit {
        let n = n.min(data.train.len());
        data.train.labels.truncate(n);
        data.train.images.truncate(n * 784);
    }
    if world > 1 {
        println!("rank {rank} of {world}: device {}", dev.name());
    }
    if main {
        println!("device: {}", dev.name());
        println!(
            "MNIST: {} train, {} test; batch {}{}, {} epochs{}",
            data.train.len(),
            data.test.len(),
            args.batch_size,
            if world > 1 {
                format!(" per process x {world} processes")
            } else {
                String::new()
            },
            args.epochs,
            if args.amp {
                "; mixed precision (F16 autocast, dynamic loss scaling)"
            } else {
                ""
            }
        );
        println!("{}", model.summary(input)?);
    }
    // Shuffled with seed 0 + epoch (the old loop's order); the test split in order.
    let n = data.train.len();
    let mut train = loader(data.train, input, args.batch_size)?;
    if world > 1 {
        // This process's shard of each epoch's order (the same order, seed 0, as one process).
        train = train.sampler(wgml::data::sampler::DistributedSampler::new(
            n, world, rank,
        )?);
    }
    let test = loader(data.test, input, 500)?.shuffle(false);
    let opt = Adam::new(model.parameters(), args.lr);
    let schedule = CosineLr {
        base_lr: args.lr,
        t_max: args.epochs * train.len(),
        eta_min: args.lr / 100.0,
    };
    let mut trainer = Trainer::new(model, opt, loss::cross_entropy)
        .metric(Accuracy::new())
        .amp(args.amp);
    #[cfg(feature = "mpi")]
    if let Some(pg) = &pg {
        trainer = trainer.distributed(pg)?;
    }
    let options = FitOptions::new(args.epochs)
        .validation_data(&test)
        .lr_schedule_per_step(schedule);
    let history = trainer.fit(&train, options)?;
    if !main {
        return Ok(f32::NAN);
    }
    let acc = match history.last("val_accuracy") {
        Some(a) => a,
        None => trainer.evaluate(&test)?.get("accuracy").unwrap_or(f64::NAN),
    };
    println!("test accuracy {:.2}%", acc * 100.0);
    if let Some(path) = &args.plot {
        history.plot(path)?;
        let json = std::path::Path::new(path).with_extension("json");
        history.save(&json)?;
        println!(
            "plotted the history to {path} (values in {})",
            json.display()
        );
    }
    if let Some(path) = &args.save {
        trainer.save_checkpoint(path, args.epochs)?;
        println!("saved {path}");
    }
    Ok(acc as f32)
}

/// The device from `--device`, else `Device::best()`.
pub fn device(args: &Args) -> Result<Device> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    #[cfg(feature = "mpi")]
    if args.distributed {
        return wgml::distributed::init()?.device(args.device.as_deref());
    }
    match &args.device {
        Some(spec) => Device::parse(spec),
        None => Ok(Device::best()),
    }
}
