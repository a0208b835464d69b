//! The Transformer's costs: one CPU training step of the char_transformer default model
//! (batch 32 × context 128, 4 layers, d_model 128, 4 heads, MLP 512, V = 84) split into forward,
//! forward + backward, and the whole step with clipping and AdamW, reported in characters/s;
//! and layer norm forward and forward + backward on [4096, 128] (the step's shape) on the CPU,
//! and on a GPU adapter at `WGML_BENCH_GPU_LN` rows (default 256 for the software adapter),
//! reported in GB/s of the input read.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use wgml::nn::functional::layer_norm;
use wgml::nn::{loss, Module, TransformerConfig, TransformerLm};
use wgml::optim::{clip_grad_norm, Adam, Optimizer};
use wgml::{Device, Tensor};

const GPU_ENV: &str = "WGML_BENCH_GPU_LN";

fn step(c: &mut Criterion) {
    let dev = Device::cpu();
    let (b, t, v) = (32, 128, 84);
    let cfg = TransformerConfig {
        vocab: v,
        context: t,
        layers: 4,
        d_model: 128,
        heads: 4,
        mlp: 512,
        dropout: 0.0,
    };
    let model = TransformerLm::new(cfg, 0, &dev).unwrap();
    let params: Vec<Tensor> = model.parameters().into_iter().map(|(_, p)| p).collect();
    let mut opt = Adam::adamw(model.parameters(), 1e-3, 0.01);
    let mut rng = wgml::rng::Rng::new(1);
    let ids: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let next: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let x = Tensor::from_indices(&ids, [b, t], &dev).unwrap();
    let y = Tensor::from_indices(&next, [b * t], &dev).unwrap();
    let loss_of = || {
        let logits = model.logits(&x).unwrap().reshape([b * t, v]).unwrap();
        loss::cross_entropy(&logits, &y).unwrap()
    };
    let mut g = c.benchmark_group("transformer_step_cpu");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements((b * t) as u64));
    g.bench_function("forward", |bn| bn.iter(|| black_box(loss_of())));
    g.bench_function("forward+backward", |bn| {
        bn.iter(|| black_box(loss_of().backward().unwrap()))
    });
    g.bench_function("step (+clip, AdamW)", |bn| {
        bn.iter(|| {
            let mut grads = loss_of().backward().unwrap();
            clip_grad_norm(&mut grads, &params, 1.0).unwrap();
            opt.step(&grads).unwrap();
        })
    });
    g.finish();
}

fn layer_norm_bench(c: &mut Criterion) {
    let mut devices = vec![("cpu", Device::cpu(), 4096usize)];
    if let Ok(gpu) = Device::gpu() {
        let rows = std::env::var(GPU_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(256);
        devices.push(("gpu", gpu, rows));
    }
    let n = 128;
    let mut g = c.benchmark_group("layer_norm");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for (name, dev, rows) in devices {
        let x = Tensor::randn([rows, n], 1, &dev).unwrap().requires_grad();
        let w = Tensor::ones([n], &dev).unwrap().requires_grad();
        let bias = Tensor::zeros([n], &dev).unwrap().requires_grad();
        let r = Tensor::randn([rows, n], 2, &dev).unwrap();
        g.throughput(Throughput::Bytes((rows * n * 4) as u64));
        g.bench_with_input(BenchmarkId::new("forward", name), &rows, |bn, _| {
            bn.iter(|| {
                let y = layer_norm(&x, &[n], Some(&w), Some(&bias), 1e-5).unwrap();
                // Read back one element so that GPU work is waited for.
                black_box(y.narrow(0, 0, 1).unwrap().to_vec().unwrap())
            })
        });
        g.bench_with_input(
            BenchmarkId::new("forward+backward", name),
            &rows,
            |bn, _| {
                bn.iter(|| {
                    let y = layer_norm(&x, &[n], Some(&w), Some(&bias), 1e-5).unwrap();
                    let grads = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
                    black_box(grads.get(&w).unwrap().to_vec().unwrap())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, step, layer_norm_bench);
criterion_main!(benches);
