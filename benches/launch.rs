//! The host cost of the GPU launch path, measured without a GPU on wgpu's `noop` backend (it
//! records and validates everything and runs nothing): µs of host time per dispatch for small
//! ops recorded back to back, and host ms and dispatches per training step (forward, backward,
//! clipping, optimizer) of the `char_transformer` and `char_lstm` default models and the MNIST
//! CNN at batch 32. Every figure is a median over many iterations. Host time is the time to
//! record a step (a device that executes as it is submitted, like the software Vulkan adapter,
//! adds its work there); "with the device's work" waits for the device at the end of each step.
//!
//! `cargo bench --bench launch` opens the noop backend itself (`WGPU_BACKEND=noop
//! WGPU_NOOP_BACKEND=1`); set `WGPU_BACKEND=vulkan` to time a real adapter instead (on the
//! software one, `WGML_BENCH_LAUNCH_STEPS=3` keeps it short). `WGML_BENCH_LAUNCH_BATCH`
//! overrides the step models' batch size (32).

#[path = "../examples/common/models.rs"]
mod models;

use std::time::Instant;
use wgml::nn::{loss, Linear, Lstm, LstmConfig, Module, TransformerConfig, TransformerLm};
use wgml::optim::{Adam, Optimizer};
use wgml::rng::Rng;
use wgml::{gpu, Device, Result, Tensor};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median host µs per dispatch of `op` recorded `per_sample` times back to back.
fn per_dispatch(name: &str, dev: &Device, per_sample: usize, op: impl Fn() -> Result<Tensor>) {
    let samples = env_usize("WGML_BENCH_LAUNCH_SAMPLES", 60);
    op().unwrap(); // builds the pipelines
    dev.synchronize().unwrap();
    let mut us = Vec::with_capacity(samples);
    let mut per_op = 0;
    for _ in 0..samples {
        let d0 = gpu::dispatch_count();
        let t = Instant::now();
        for _ in 0..per_sample {
            drop(op().unwrap());
        }
        let dt = t.elapsed().as_secs_f64();
        let dispatches = (gpu::dispatch_count() - d0) as usize;
        per_op = dispatches / per_sample;
        us.push(dt * 1e6 / dispatches as f64);
        dev.synchronize().unwrap();
    }
    println!(
        "{name:<34} {:>8.2} µs per dispatch ({per_op} per op, {per_sample} ops back to back)",
        median(us)
    );
}

/// Median host ms and the dispatches of one training `step`.
fn per_step(name: &str, dev: &Device, mut step: impl FnMut() -> Result<()>) {
    let steps = env_usize("WGML_BENCH_LAUNCH_STEPS", 20);
    for _ in 0..2 {
        step().unwrap();
        dev.synchronize().unwrap();
    }
    let (mut host, mut wall) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    let mut dispatches = 0;
    for _ in 0..steps {
        let d0 = gpu::dispatch_count();
        let t = Instant::now();
        step().unwrap();
        host.push(t.elapsed().as_secs_f64() * 1e3);
        dispatches = gpu::dispatch_count() - d0;
        dev.synchronize().unwrap();
        wall.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ms = median(host);
    println!(
        "{name:<34} {ms:>8.2} ms host per step, {dispatches:>5} dispatches, {:>6.2} µs per \
         dispatch; {:.2} ms with the device's work",
        ms * 1e3 / dispatches as f64,
        median(wall)
    );
}

/// Random token ids `[b, t]` and next-token targets `[b·t]` below `v`.
fn tokens(b: usize, t: usize, v: usize, dev: &Device) -> (Tensor, Tensor) {
    let mut rng = Rng::new(1);
    let mut ids = || (0..b * t).map(|_| rng.below(v) as u32).collect::<Vec<_>>();
    let x = Tensor::from_indices(&ids(), [b, t], dev).unwrap();
    let y = Tensor::from_indices(&ids(), [b * t], dev).unwrap();
    (x, y)
}

/// One step of the char_transformer default model: 4 pre-LN layers, d 128, 4 heads, MLP 512,
/// context 128, V 84; AdamW 1e-3, clipping 1.0.
fn transformer(dev: &Device, b: usize) {
    let (t, v) = (128, 84);
    let cfg = TransformerConfig {
        vocab: v,
        context: t,
        layers: 4,
        d_model: 128,
        heads: 4,
        mlp: 512,
        dropout: 0.0,
    };
    let model = TransformerLm::new(cfg, 0, dev).unwrap();
    let mut opt = Adam::adamw(model.parameters(), 1e-3, 0.01);
    let (x, y) = tokens(b, t, v, dev);
    per_step(&format!("char_transformer step (B {b})"), dev, || {
        let logits = model.logits(&x)?.reshape([b * t, v])?;
        let grads = loss::cross_entropy(&logits, &y)?.backward()?;
        opt.step_clipped(&grads, 1.0).map(|_| ())
    });
}

/// One step of the char_lstm default model: embedding 64 → 2 × LSTM 128 → Linear 84, context
/// 128 (time-major); Adam 2e-3, clipping 1.0.
fn lstm(dev: &Device, b: usize) {
    let (t, v, e, h) = (128, 84, 64, 128);
    let mut rng = Rng::new(0);
    let embedding = Tensor::randn([v, e], 2, dev).unwrap().requires_grad();
    let lstm = Lstm::new(e, h, 2, LstmConfig::default(), &mut rng, dev).unwrap();
    let head = Linear::new(h, v, true, &mut rng, dev).unwrap();
    let mut named = vec![("embedding".to_string(), embedding.clone())];
    named.extend(lstm.parameters());
    named.extend(head.parameters());
    let mut opt = Adam::new(named, 2e-3);
    let (x, y) = tokens(t, b, v, dev);
    per_step(&format!("char_lstm step (B {b})"), dev, || {
        let (hs, _) = lstm.forward(&embedding.embedding(&x)?, None)?;
        let logits = head.forward(&hs.reshape([t * b, h])?)?;
        let grads = loss::cross_entropy(&logits, &y)?.backward()?;
        opt.step_clipped(&grads, 1.0).map(|_| ())
    });
}

/// One step of the Keras MNIST CNN; Adam 1e-3.
fn cnn(dev: &Device, b: usize) {
    let model = models::mnist_cnn(&mut Rng::new(0), dev).unwrap();
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let x = Tensor::rand([b, 1, 28, 28], 3, dev).unwrap();
    let labels: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
    let y = Tensor::from_indices(&labels, [b], dev).unwrap();
    per_step(&format!("mnist_cnn step (B {b})"), dev, || {
        let logits = model.forward(&models::standardise(&x)?)?;
        opt.step(&loss::cross_entropy(&logits, &y)?.backward()?)
    });
}

fn main() {
    if std::env::var_os("WGPU_BACKEND").is_none() {
        // SAFETY: nothing else runs yet; wgpu reads these when the device is opened below.
        unsafe {
            std::env::set_var("WGPU_BACKEND", "noop");
            std::env::set_var("WGPU_NOOP_BACKEND", "1");
        }
    }
    let dev = Device::gpu().expect("a GPU device (or wgpu's noop backend)");
    println!("device: {}", dev.name());
    let a = Tensor::randn([64], 0, &dev).unwrap();
    let m = Tensor::randn([64, 64], 1, &dev).unwrap();
    let s = Tensor::randn([32, 128], 2, &dev).unwrap();
    per_dispatch("elementwise add [64]", &dev, 200, || a.add(&a));
    per_dispatch("matmul 64x64 @ 64x64", &dev, 200, || m.matmul(&m));
    per_dispatch("softmax [32, 128]", &dev, 200, || s.softmax());
    let b = env_usize("WGML_BENCH_LAUNCH_BATCH", 32);
    transformer(&dev, b);
    lstm(&dev, b);
    cnn(&dev, b);
}
