//! The character-level language-model harness the `char_*` examples share: flags, a
//! time-budgeted training loop, validation loss, checkpoints and temperature sampling.
//!
//! An example declares it with `#[path = "common/lm.rs"] mod lm;`, implements [`CharLm`] for
//! its model and calls [`run`].

use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wgml::data::text::{window_tensors, CharCorpus};
use wgml::nn::loss;
use wgml::optim::Optimizer;
use wgml::rng::Rng;
use wgml::{no_grad, Device, Error, Result, Tensor};

/// A character-level language model as the harness drives it.
pub trait CharLm {
    /// Next-character logits `[B, T, V]` for `U32` inputs `[B, T]`.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;
    /// Named parameters (checkpoint names), in a stable order.
    fn parameters(&self) -> Vec<(String, Tensor)>;
    /// Training mode (dropout on) or evaluation mode.
    fn set_training(&mut self, _training: bool) {}
    /// Feeds `prompt`, then generates `n` more ids, each drawn by `pick` from the last
    /// position's logits (read back as a `V`-long slice). Returns the generated ids only.
    fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        pick: &mut dyn FnMut(&[f32]) -> u32,
    ) -> Result<Vec<u32>>;
}

/// The flags every language-model example takes, plus the model's own (`--layers`, ...).
pub struct Args {
    /// `--device cpu|gpu|gpu:N` (default: `Device::best()`).
    pub device: Option<String>,
    /// `--minutes`: training time budget (evaluation time not counted).
    pub minutes: f64,
    /// `--steps`: stop after this many steps even if time remains.
    pub steps: Option<usize>,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--context`: window length in characters.
    pub context: usize,
    /// `--lr`.
    pub lr: f32,
    /// `--clip`: global gradient-norm bound (0 turns clipping off).
    pub clip: f32,
    /// `--eval-every`: minutes of training between validation passes.
    pub eval_every: f64,
    /// `--save PATH`: checkpoint of parameters and optimizer state.
    pub save: Option<String>,
    /// `--load PATH`: resume from (or, with `--minutes 0`, only sample from) a checkpoint.
    pub load: Option<String>,
    /// `--prompt`.
    pub prompt: String,
    /// `--temperature` (0 = greedy).
    pub temperature: f32,
    /// `--sample-len`: characters to generate.
    pub sample_len: usize,
    /// `--data`: the corpus file.
    pub data: String,
    /// `--seed`.
    pub seed: u64,
    /// `--distributed`: data-parallel over the MPI job this process belongs to (feature
    /// `mpi`); `--batch-size` is then per rank.
    pub distributed: bool,
    model: BTreeMap<String, String>,
}

impl Args {
    /// A model flag as a number (its default was declared to [`parse_args`]).
    #[allow(dead_code)]
    pub fn usize(&self, flag: &str) -> usize {
        self.model[flag]
            .parse()
            .unwrap_or_else(|e| fail(&format!("{flag}: {e}")))
    }
    /// A model flag as a float.
    #[allow(dead_code)]
    pub fn f32(&self, flag: &str) -> f32 {
        self.model[flag]
            .parse()
            .unwrap_or_else(|e| fail(&format!("{flag}: {e}")))
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg} (--help lists the flags)");
    std::process::exit(2)
}

/// Parses the harness flags with the example's `lr` default, and the model's own flags
/// `(flag, default, help)`.
pub fn parse_args(name: &str, lr: f32, model_flags: &[(&str, &str, &str)]) -> Args {
    let mut a = Args {
        device: None,
        minutes: 10.0,
        steps: None,
        batch_size: 32,
        context: 128,
        lr,
        clip: 1.0,
        eval_every: 2.5,
        save: None,
        load: None,
        prompt: "ROMEO.\n".into(),
        temperature: 0.8,
        sample_len: 400,
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare.txt.gz").into(),
        seed: 0,
        distributed: false,
        model: model_flags
            .iter()
            .map(|(f, d, _)| (f.to_string(), d.to_string()))
            .collect(),
    };
    let usage = || {
        let mut s = format!(
            "usage: {name} [--device cpu|gpu|gpu:N] [--minutes 10] [--steps N] [--batch-size 32] \
             [--context 128] [--lr {lr}] [--clip 1.0] [--eval-every 2.5 (minutes)] [--save PATH] \
             [--load PATH] [--prompt TEXT] [--temperature 0.8] [--sample-len 400] [--data FILE] \
             [--seed 0] [--distributed (under mpirun; --batch-size is per rank)]"
        );
        for (f, d, h) in model_flags {
            s += &format!("\n  {f} N  {h} (default {d})");
        }
        s
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        if flag == "--distributed" {
            if !cfg!(feature = "mpi") {
                fail("--distributed needs a build with --features mpi");
            }
            a.distributed = true;
            continue;
        }
        let v = it
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> T
        where
            T::Err: std::fmt::Display,
        {
            v.parse().unwrap_or_else(|e| fail(&format!("{flag}: {e}")))
        }
        match flag.as_str() {
            "--device" => a.device = Some(v),
            "--minutes" => a.minutes = num(&flag, &v),
            "--steps" => a.steps = Some(num(&flag, &v)),
            "--batch-size" => a.batch_size = num::<usize>(&flag, &v).max(1),
            "--context" => a.context = num::<usize>(&flag, &v).max(1),
            "--lr" => a.lr = num(&flag, &v),
            "--clip" => a.clip = num(&flag, &v),
            "--eval-every" => a.eval_every = num(&flag, &v),
            "--save" => a.save = Some(v),
            "--load" => a.load = Some(v),
            "--prompt" => a.prompt = v,
            "--temperature" => a.temperature = num(&flag, &v),
            "--sample-len" => a.sample_len = num(&flag, &v),
            "--data" => a.data = v,
            "--seed" => a.seed = num(&flag, &v),
            f if a.model.contains_key(f) => {
                a.model.insert(flag, v);
            }
            other => fail(&format!("unknown flag {other}")),
        }
    }
    a
}

/// The device from `--device`, else `Device::best()`; also starts the logger. Under
/// `--distributed`, `--device gpu` means this rank's own adapter, `gpu:local_rank` (modulo
/// the adapters there are), and only rank 0 logs.
pub fn device(args: &Args) -> Result<Device> {
    let ranks = Ranks::new(args)?;
    let level = if ranks.is_main() { "info" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    #[cfg(feature = "mpi")]
    if let Some(pg) = &ranks.pg {
        return pg.device(args.device.as_deref());
    }
    match args.device.as_deref() {
        Some(spec) => Device::parse(spec),
        None => Ok(Device::best()),
    }
}

/// This process's part in a data-parallel run (`--distributed`): its rank, and the gradient
/// averaging of [`wgml::distributed::DistributedDataParallel`]. A single process is rank 0 of 1.
pub struct Ranks {
    #[cfg(feature = "mpi")]
    pg: Option<wgml::distributed::ProcessGroup>,
    #[cfg(feature = "mpi")]
    ddp: Option<wgml::distributed::DistributedDataParallel>,
}

impl Ranks {
    /// Joins the MPI job under `--distributed` (a no-op otherwise).
    pub fn new(args: &Args) -> Result<Ranks> {
        #[cfg(feature = "mpi")]
        {
            let pg = match args.distributed {
                true => Some(wgml::distributed::init()?),
                false => None,
            };
            Ok(Ranks { pg, ddp: None })
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = args;
            Ok(Ranks {})
        }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(pg) = &self.pg {
            return pg.rank();
        }
        0
    }

    /// The number of ranks.
    pub fn world(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(pg) = &self.pg {
            return pg.world_size();
        }
        1
    }

    /// Rank 0: the one that prints, evaluates and saves.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Gives every rank rank 0's parameters; later [`Ranks::reduce`] calls average gradients.
    pub fn wrap(&mut self, params: Vec<(String, Tensor)>) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(pg) = &self.pg {
            self.ddp = Some(wgml::distributed::DistributedDataParallel::new(pg, params)?);
        }
        let _ = params;
        Ok(())
    }

    /// Replaces the gradients by their mean over the ranks.
    pub fn reduce(&self, grads: &mut wgml::Gradients) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(ddp) = &self.ddp {
            return ddp.reduce_gradients(grads);
        }
        let _ = grads;
        Ok(())
    }

    /// Whether `flag` holds on any rank (how the ranks agree to stop together).
    pub fn any(&self, flag: bool) -> bool {
        #[cfg(feature = "mpi")]
        if let Some(pg) = &self.pg {
            return pg.any(flag);
        }
        flag
    }

    /// The mean of a scalar tensor over the ranks.
    pub fn mean(&self, t: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "mpi")]
        if let Some(pg) = &self.pg {
            return pg.all_reduce(t, wgml::distributed::Reduction::Mean);
        }
        Ok(t.clone())
    }
}

/// Loads the corpus named by `--data` (90% train, 10% validation).
pub fn corpus(args: &Args) -> Result<CharCorpus> {
    CharCorpus::load(&args.data, 0.9)
}

/// Mean loss in nats per character over the whole validation split, in non-overlapping
/// windows of the context length (batches of 64 windows), without recording a graph.
pub fn validation_loss(
    model: &mut dyn CharLm,
    corpus: &CharCorpus,
    context: usize,
    dev: &Device,
) -> Result<f32> {
    model.set_training(false);
    let (xs, ys) = corpus.valid_windows(context);
    let per = 64 * context;
    let total = no_grad(|| -> Result<f32> {
        // Summed on the device; one read-back at the end.
        let mut total = Tensor::zeros((), dev)?;
        for (x, y) in xs.chunks(per).zip(ys.chunks(per)) {
            let b = x.len() / context;
            let (x, y) = window_tensors(x, y, b, context, dev)?;
            let l = mean_loss(model, &x, &y)?.mul_scalar((b * context) as f32)?;
            total = total.add(&l)?;
        }
        total.item()
    })?;
    model.set_training(true);
    Ok(total / xs.len().max(1) as f32)
}

/// Mean next-character cross-entropy of `model` on `[B, T]` inputs and targets.
fn mean_loss(model: &dyn CharLm, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let logits = model.logits(x)?;
    let v = *logits.dims().last().expect("logits have a class dimension");
    loss::cross_entropy(&logits.reshape([x.numel(), v])?, &y.reshape([y.numel()])?)
}

/// Draws an id from `logits / temperature` (the arg-max when `temperature` is 0).
pub fn sample(logits: &[f32], temperature: f32, rng: &mut Rng) -> u32 {
    let best =
        logits.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &l)| if l > b.1 { (i, l) } else { b },
        );
    if temperature <= 0.0 {
        return best.0 as u32;
    }
    let w: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - best.1) / temperature) as f64).exp())
        .collect();
    let mut r = rng.uniform() as f64 * w.iter().sum::<f64>();
    for (i, wi) in w.iter().enumerate() {
        r -= wi;
        if r <= 0.0 {
            return i as u32;
        }
    }
    best.0 as u32
}

fn save(args: &Args, model: &dyn CharLm, opt: &dyn Optimizer) -> Result<()> {
    if let Some(path) = &args.save {
        let mut tensors = model.parameters();
        tensors.extend(opt.state());
        wgml::checkpoint::save(path, &tensors)?;
    }
    Ok(())
}

/// Trains `model` for `--minutes` of training time (or `--steps`) on random windows with
/// `opt`, global-norm clipping and cross-entropy; reports validation loss every
/// `--eval-every` minutes and at the end; saves the checkpoint; prints a sample.
/// Returns the final validation loss. Under `--distributed` every rank trains on its share of
/// each step's global batch (`--batch-size` windows per rank) with averaged gradients, and
/// rank 0 alone prints, evaluates, saves and samples (the others return NaN).
pub fn run(
    model: &mut dyn CharLm,
    opt: &mut dyn Optimizer,
    corpus: &CharCorpus,
    args: &Args,
    dev: &Device,
) -> Result<f32> {
    let params: Vec<Tensor> = model.parameters().into_iter().map(|(_, t)| t).collect();
    let n_params: usize = params.iter().map(|p| p.numel()).sum();
    let mut ranks = Ranks::new(args)?;
    let (main, r, w) = (ranks.is_main(), ranks.rank(), ranks.world());
    if main {
        println!("device: {}", dev.name());
        println!(
            "corpus: {} characters ({} train, {} validation), vocabulary {}; {} parameters",
            corpus.ids.len(),
            corpus.train().len(),
            corpus.valid().len(),
            corpus.vocab_size(),
            n_params
        );
    }
    if w > 1 {
        println!("rank {r} of {w}: device {}", dev.name());
    }
    if let Some(path) = &args.load {
        // Every rank loads (the optimizer state is per rank); the path must be readable on
        // every machine.
        let state = wgml::checkpoint::load(path, dev)?;
        let (p, o): (Vec<_>, Vec<_>) = state
            .into_iter()
            .partition(|(n, _)| model.parameters().iter().any(|(m, _)| m == n));
        wgml::checkpoint::load_into(path, &model.parameters())?;
        if !o.is_empty() {
            opt.load_state(&o)?;
        }
        if main {
            println!("loaded {path} ({} tensors)", p.len());
        }
    }
    // Rank 0's parameters on every rank (a no-op in a single process).
    ranks.wrap(model.parameters())?;

    let budget = Duration::from_secs_f64(args.minutes.max(0.0) * 60.0);
    let max_steps = args.steps.unwrap_or(usize::MAX);
    let (b, t) = (args.batch_size, args.context);
    let mut rng = Rng::new(args.seed);
    let bar = if main {
        ProgressBar::new(budget.as_secs().max(1))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("train [{bar:30}] {pos}/{len} s {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    model.set_training(true);
    let mut trained = Duration::ZERO; // training time only: evaluation is not counted
    let mut next_eval = Duration::from_secs_f64(args.eval_every.max(0.01) * 60.0);
    let mut steps = 0usize;
    let mut running = Tensor::zeros((), dev)?;
    let mut since = 0usize;
    // Rank 0's clock decides when every rank stops.
    while !ranks.any(main && (trained >= budget || steps >= max_steps)) {
        let t0 = Instant::now();
        // The step's global batch of `b · w` windows, drawn alike on every rank; this rank
        // trains on its `b`.
        let (x, y) = corpus.random_windows(b * w, t, &mut rng)?;
        let mine = r * b * t..(r + 1) * b * t;
        let (x, y) = window_tensors(&x[mine.clone()], &y[mine], b, t, dev)?;
        let l = mean_loss(model, &x, &y)?;
        let mut grads = l.backward()?;
        ranks.reduce(&mut grads)?;
        if args.clip > 0.0 {
            // Clip and update in one fused step (two dispatches on a GPU).
            opt.step_clipped(&grads, args.clip)?;
        } else {
            opt.step(&grads)?;
        }
        running = no_grad(|| running.add(&l.detach()))?;
        steps += 1;
        since += 1;
        // The running loss stays on the device; it is read every 25 steps only.
        if steps.is_multiple_of(25) || steps == max_steps {
            let mean = ranks.mean(&running)?.item()? / since as f32;
            if !mean.is_finite() {
                bar.abandon();
                return Err(Error::invalid(
                    "training",
                    format!("the training loss became {mean} by step {steps}: stopping"),
                ));
            }
            bar.set_message(format!(
                "step {steps}, loss {mean:.3}, {:.0} chars/s",
                (steps * b * w * t) as f64 / (trained + t0.elapsed()).as_secs_f64()
            ));
            running = Tensor::zeros((), dev)?;
            since = 0;
        }
        trained += t0.elapsed();
        bar.set_position(trained.as_secs().min(budget.as_secs()));
        if main && trained >= next_eval && trained < budget && steps < max_steps {
            let v = validation_loss(model, corpus, t, dev)?;
            bar.suspend(|| {
                println!(
                    "{:>6.1} min, step {steps}: validation loss {v:.4} nats/char",
                    trained.as_secs_f64() / 60.0
                )
            });
            save(args, model, opt)?;
            next_eval += Duration::from_secs_f64(args.eval_every.max(0.01) * 60.0);
        }
    }
    bar.finish_and_clear();
    if !main {
        return Ok(f32::NAN);
    }
    let secs = trained.as_secs_f64();
    if steps > 0 {
        println!(
            "trained {steps} steps in {secs:.0} s: {:.1} ms/step, {:.0} training chars/s",
            secs * 1000.0 / steps as f64,
            (steps * b * w * t) as f64 / secs
        );
    }
    let v = validation_loss(model, corpus, t, dev)?;
    println!("validation loss {v:.4} nats/char");
    if let Some(path) = &args.save {
        save(args, model, opt)?;
        println!("saved {path}");
    }

    model.set_training(false);
    let prompt = corpus.encode(&args.prompt)?;
    let (temperature, mut srng) = (args.temperature, Rng::new(args.seed ^ 0x5eed));
    let out = model.generate(&prompt, args.sample_len, &mut |l| {
        sample(l, temperature, &mut srng)
    })?;
    println!(
        "--- sample (temperature {temperature}) ---\n{}{}\n---",
        args.prompt,
        corpus.decode(&out)
    );
    Ok(v)
}
