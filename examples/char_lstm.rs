//! A stacked character-level LSTM language model on Shakespeare: embedding 64 → 2 × LSTM 128 →
//! Linear to the vocabulary, Adam 2e-3, global-norm clipping 1.0, batch 32, context 128 — the
//! model of the JAX yardstick `shared/anchors/jax_charlm.py lstm`, trained for a wall-clock
//! budget. Each batch is 32 random training windows started from a zero state (no state is
//! carried between windows, as in the yardstick). The validation loss (nats per character) is
//! taken over the whole validation split (the last 10% of the text) in non-overlapping windows.
//!
//! `cargo run --release --example char_lstm -- [--minutes 10] [--device cpu|gpu|gpu:N]
//!  [--layers 2] [--hidden 128] [--embed 64] [--context 128] [--batch-size 32] [--lr 2e-3]
//!  [--save lstm.safetensors] [--load lstm.safetensors] [--prompt "ROMEO:"] [--temperature 0.8]
//!  [--eval-minutes 2.5] [--data data/shakespeare.txt.gz]`
//!
//! With `--load` and `--minutes 0` it only samples from the checkpoint.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};
use wgml::data::text::CharCorpus;
use wgml::nn::{loss, Linear, Lstm, LstmConfig, LstmState, Module};
use wgml::optim::{clip_grad_norm, Adam, Optimizer};
use wgml::rng::Rng;
use wgml::{no_grad, Device, Result, Tensor};

struct Args {
    device: Option<String>,
    layers: usize,
    hidden: usize,
    embed: usize,
    context: usize,
    batch: usize,
    lr: f32,
    minutes: f64,
    eval_minutes: f64,
    save: Option<String>,
    load: Option<String>,
    prompt: String,
    temperature: f32,
    sample_len: usize,
    data: String,
    seed: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        device: None,
        layers: 2,
        hidden: 128,
        embed: 64,
        context: 128,
        batch: 32,
        lr: 2e-3,
        minutes: 10.0,
        eval_minutes: 2.5,
        save: None,
        load: None,
        prompt: "ROMEO:".into(),
        temperature: 0.8,
        sample_len: 400,
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare.txt.gz").into(),
        seed: 0,
    };
    let usage = "usage: char_lstm [--device cpu|gpu|gpu:N] [--layers N] [--hidden N] [--embed N] \
                 [--context N] [--batch-size N] [--lr F] [--minutes F] [--eval-minutes F] \
                 [--save PATH] [--load PATH] [--prompt TEXT] [--temperature F] \
                 [--sample-len N] [--data PATH] [--seed N]";
    let fail = |msg: String| -> ! {
        eprintln!("{msg}\n{usage}");
        std::process::exit(2)
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let v = it
            .next()
            .unwrap_or_else(|| fail(format!("{flag} needs a value")));
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> std::result::Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))
        }
        let r: std::result::Result<(), String> = (|| {
            match flag.as_str() {
                "--device" => a.device = Some(v.clone()),
                "--layers" => a.layers = num(&flag, &v)?,
                "--hidden" => a.hidden = num(&flag, &v)?,
                "--embed" => a.embed = num(&flag, &v)?,
                "--context" => a.context = num(&flag, &v)?,
                "--batch-size" => a.batch = num(&flag, &v)?,
                "--lr" => a.lr = num(&flag, &v)?,
                "--minutes" => a.minutes = num(&flag, &v)?,
                "--eval-minutes" => a.eval_minutes = num(&flag, &v)?,
                "--save" => a.save = Some(v.clone()),
                "--load" => a.load = Some(v.clone()),
                "--prompt" => a.prompt = v.clone(),
                "--temperature" => a.temperature = num(&flag, &v)?,
                "--sample-len" => a.sample_len = num(&flag, &v)?,
                "--data" => a.data = v.clone(),
                "--seed" => a.seed = num(&flag, &v)?,
                other => return Err(format!("unknown flag {other}")),
            }
            Ok(())
        })();
        if let Err(e) = r {
            fail(e);
        }
    }
    if a.layers == 0 || a.hidden == 0 || a.embed == 0 || a.context == 0 || a.batch == 0 {
        fail("sizes must be positive".into());
    }
    a
}

/// Embedding → stacked LSTM → Linear to the vocabulary.
struct CharLstm {
    /// `[V, E]`, N(0, 0.1) as in the yardstick.
    embedding: Tensor,
    lstm: Lstm,
    head: Linear,
    hidden: usize,
}

impl CharLstm {
    fn new(vocab: usize, a: &Args, dev: &Device) -> Result<CharLstm> {
        let mut rng = Rng::new(a.seed);
        let embedding = Tensor::randn([vocab, a.embed], a.seed + 1, dev)?
            .mul_scalar(0.1)?
            .requires_grad();
        let lstm = Lstm::new(
            a.embed,
            a.hidden,
            a.layers,
            LstmConfig::default(),
            &mut rng,
            dev,
        )?;
        let head = Linear::new(a.hidden, vocab, true, &mut rng, dev)?;
        Ok(CharLstm {
            embedding,
            lstm,
            head,
            hidden: a.hidden,
        })
    }

    /// Logits `[T·B, V]` (time-major rows) for ids `[T, B]`, and the final state.
    fn logits(&self, ids: &Tensor, state: Option<&LstmState>) -> Result<(Tensor, LstmState)> {
        let rows = ids.numel();
        let x = self.embedding.embedding(ids)?;
        let (y, st) = self.lstm.forward(&x, state.map(|(h, c)| (h, c)))?;
        let logits = self.head.forward(&y.reshape([rows, self.hidden])?)?;
        Ok((logits, st))
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("embedding.weight".to_string(), self.embedding.clone())];
        p.extend(
            self.lstm
                .parameters()
                .into_iter()
                .map(|(n, t)| (format!("lstm.{n}"), t)),
        );
        p.extend(
            self.head
                .parameters()
                .into_iter()
                .map(|(n, t)| (format!("head.{n}"), t)),
        );
        p
    }
}

/// `[B, T]` row-major windows as time-major ids `[T·B]`.
fn time_major(ids: &[u32], b: usize, t: usize) -> Vec<u32> {
    (0..t * b).map(|k| ids[(k % b) * t + k / b]).collect()
}

/// Mean cross-entropy (nats per character) over the whole validation split.
fn validate(m: &CharLstm, corpus: &CharCorpus, context: usize, dev: &Device) -> Result<f64> {
    no_grad(|| {
        let (x, y) = corpus.valid_windows(context);
        let n = x.len() / context;
        let mut total = 0.0f64;
        for start in (0..n).step_by(256) {
            let b = (n - start).min(256);
            let span = start * context..(start + b) * context;
            let xt = time_major(&x[span.clone()], b, context);
            let yt = time_major(&y[span], b, context);
            let (logits, _) = m.logits(&Tensor::from_indices(&xt, [context, b], dev)?, None)?;
            let l = loss::cross_entropy(&logits, &Tensor::from_indices(&yt, [context * b], dev)?)?;
            total += l.item()? as f64 * (b * context) as f64;
        }
        Ok(total / (n * context).max(1) as f64)
    })
}

/// `len` characters after `prompt`, drawn from softmax(logits / temperature).
fn sample(
    m: &CharLstm,
    corpus: &CharCorpus,
    prompt: &str,
    len: usize,
    temperature: f32,
    seed: u64,
    dev: &Device,
) -> Result<String> {
    no_grad(|| {
        let mut rng = Rng::new(seed);
        let mut ids = corpus.encode(prompt)?;
        if ids.is_empty() {
            ids.push(0);
        }
        let n = ids.len();
        let (mut logits, mut state) = m.logits(&Tensor::from_indices(&ids, [n, 1], dev)?, None)?;
        let mut out = String::from(prompt);
        for _ in 0..len {
            let v = logits.dims()[1];
            let last = logits.narrow(0, logits.dims()[0] - 1, 1)?;
            let p = last
                .mul_scalar(1.0 / temperature.max(1e-3))?
                .softmax()?
                .to_vec()?;
            let r = rng.uniform();
            let mut acc = 0.0;
            let mut next = v - 1;
            for (k, &pk) in p.iter().enumerate() {
                acc += pk;
                if r < acc {
                    next = k;
                    break;
                }
            }
            out.push_str(&corpus.decode(&[next as u32]));
            let x = Tensor::from_indices(&[next as u32], [1, 1], dev)?;
            (logits, state) = m.logits(&x, Some(&state))?;
        }
        Ok(out)
    })
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let a = parse_args();
    let dev = match &a.device {
        Some(s) => Device::parse(s)?,
        None => Device::best(),
    };
    let corpus = CharCorpus::load(&a.data, 0.9)?;
    let v = corpus.vocab_size();
    println!(
        "device {}; {} characters ({} train, {} validation), vocabulary {v}",
        dev.name(),
        corpus.ids.len(),
        corpus.train().len(),
        corpus.valid().len()
    );
    let model = CharLstm::new(v, &a, &dev)?;
    let params = model.parameters();
    let tensors: Vec<Tensor> = params.iter().map(|p| p.1.clone()).collect();
    let count: usize = tensors.iter().map(|t| t.numel()).sum();
    println!(
        "model: embedding {} → {} × LSTM {} → Linear {v} ({count} parameters); batch {}, context {}, Adam {}",
        a.embed, a.layers, a.hidden, a.batch, a.context, a.lr
    );
    let mut opt = Adam::new(params.clone(), a.lr);
    if let Some(path) = &a.load {
        wgml::checkpoint::load_into(path, &params)?;
        let state = wgml::checkpoint::load(path, &dev)?;
        opt.load_state(&state)?;
        println!("loaded {path}");
    }
    let budget = Duration::from_secs_f64(a.minutes * 60.0);
    let eval_every = Duration::from_secs_f64(a.eval_minutes.max(0.1) * 60.0);
    let mut rng = Rng::new(a.seed + 2);
    let (b, t) = (a.batch, a.context);
    let bar = ProgressBar::new(budget.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {elapsed} of the budget, {msg}")
            .unwrap()
            .progress_chars("=> "),
    );
    // Training time only: validation pauses the clock.
    let mut trained = Duration::ZERO;
    let mut next_eval = eval_every;
    let (mut steps, mut running) = (0usize, Tensor::zeros((), &dev)?);
    while trained < budget {
        let t0 = Instant::now();
        let (x, y) = corpus.random_windows(b, t, &mut rng)?;
        let xt = Tensor::from_indices(&time_major(&x, b, t), [t, b], &dev)?;
        let yt = Tensor::from_indices(&time_major(&y, b, t), [t * b], &dev)?;
        let (logits, _) = model.logits(&xt, None)?;
        let l = loss::cross_entropy(&logits, &yt)?;
        let mut grads = l.backward()?;
        clip_grad_norm(&mut grads, &tensors, 1.0)?;
        opt.step(&grads)?;
        running = no_grad(|| running.add(&l.detach()))?;
        steps += 1;
        if steps % 50 == 0 {
            let mean = running.item()? / 50.0;
            running = Tensor::zeros((), &dev)?;
            let secs = (trained + t0.elapsed()).as_secs_f64();
            bar.set_message(format!(
                "step {steps}, loss {mean:.3}, {:.0} chars/s, {:.1} ms/step",
                (steps * b * t) as f64 / secs,
                secs * 1e3 / steps as f64
            ));
        }
        trained += t0.elapsed();
        bar.set_position(trained.as_secs());
        if trained >= next_eval && trained < budget {
            let vl = validate(&model, &corpus, t, &dev)?;
            bar.println(format!(
                "{:.1} min, step {steps}: validation loss {vl:.4} nats/char",
                trained.as_secs_f64() / 60.0
            ));
            next_eval += eval_every;
        }
    }
    bar.finish_and_clear();
    let secs = trained.as_secs_f64().max(1e-9);
    if steps > 0 {
        println!(
            "trained {steps} steps in {secs:.0} s: {:.1} ms/step, {:.0} training chars/s",
            secs * 1e3 / steps as f64,
            (steps * b * t) as f64 / secs
        );
    }
    let vl = validate(&model, &corpus, t, &dev)?;
    println!("validation loss {vl:.4} nats/char over the whole validation split");
    if let Some(path) = &a.save {
        let mut all = model.parameters();
        all.extend(opt.state());
        wgml::checkpoint::save(path, &all)?;
        println!("saved {path}");
    }
    let text = sample(
        &model,
        &corpus,
        &a.prompt,
        a.sample_len,
        a.temperature,
        a.seed + 3,
        &dev,
    )?;
    println!("--- sample (temperature {}) ---\n{text}", a.temperature);
    Ok(())
}
