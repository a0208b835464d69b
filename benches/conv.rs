//! conv2d forward and forward+backward for the two conv layers of the MNIST CNN
//! (1→32 on 28×28 and 32→64 on 13×13, 3×3 kernels): the CPU backend at batch 32 and 128, a GPU
//! adapter at the batches in `WGML_BENCH_GPU_CONV_BATCHES` (default `2` for the software
//! adapter; `32,128` on a real GPU). Criterion's elem/s is FLOP/s (2·MACs; backward counts
//! twice the forward); one plain line per case follows with GFLOP/s and the bytes the forward
//! reads and writes (input, weight, output once). Each case runs in F32 and in F16 (F16 conv
//! computes in f32 between one cast in and one rounding out).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;
use wgml::{Conv2dConfig, DType, Device, Tensor};

const GPU_BATCHES_ENV: &str = "WGML_BENCH_GPU_CONV_BATCHES";

/// (name, in channels, out channels, input size)
const LAYERS: [(&str, usize, usize, usize); 2] = [("conv1", 1, 32, 28), ("conv2", 32, 64, 13)];

fn bench_layer(
    c: &mut Criterion,
    dev: &Device,
    group: &str,
    layer: (&str, usize, usize, usize),
    batch: usize,
    dtype: DType,
) {
    let (name, ci, co, hw) = layer;
    let leaf = |t: Tensor| t.to_dtype(dtype).unwrap().requires_grad();
    let x = leaf(Tensor::rand([batch, ci, hw, hw], 1, dev).unwrap());
    let w = leaf(Tensor::rand_uniform([co, ci, 3, 3], -0.3, 0.3, 2, dev).unwrap());
    let b = leaf(Tensor::zeros([co], dev).unwrap());
    let out = hw - 2;
    let bytes =
        (batch * ci * hw * hw + co * ci * 9 + batch * co * out * out) * dtype.size_in_bytes();
    let fwd_flops = 2 * batch * co * out * out * ci * 9;
    for backward in [false, true] {
        let flops = if backward { 3 * fwd_flops } else { fwd_flops };
        let id = format!(
            "{name}/{}/batch{batch}/{dtype:?}",
            if backward { "fwd+bwd" } else { "fwd" }
        );
        let run = || {
            let y = x.conv2d(&w, Some(&b), Conv2dConfig::default()).unwrap();
            if backward {
                black_box(y.sum_all().unwrap().backward().unwrap());
            } else {
                black_box(y);
            }
        };
        run();
        dev.synchronize().unwrap();
        let best = Cell::new(f64::INFINITY);
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(BenchmarkId::from_parameter(&id), |bch| {
            bch.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    run();
                }
                dev.synchronize().unwrap();
                let d = t.elapsed();
                best.set(best.get().min(d.as_secs_f64() / iters as f64));
                d
            })
        });
        g.finish();
        if best.get().is_finite() {
            println!(
                "{group} {id}: {:.3} ms, {:.2} GFLOP/s, forward moves {:.2} MB, on {}",
                best.get() * 1e3,
                flops as f64 / best.get() / 1e9,
                bytes as f64 / 1e6,
                dev.name()
            );
        }
    }
}

fn cpu(c: &mut Criterion) {
    for batch in [32, 128] {
        for layer in LAYERS {
            for dtype in [DType::F32, DType::F16] {
                bench_layer(c, &Device::cpu(), "conv_cpu", layer, batch, dtype);
            }
        }
    }
}

fn gpu(c: &mut Criterion) {
    let dev = match Device::gpu() {
        Ok(d) => d,
        Err(e) => {
            println!("conv_gpu: skipped, no GPU adapter ({e})");
            return;
        }
    };
    let spec = std::env::var(GPU_BATCHES_ENV).unwrap_or_else(|_| "2".into());
    for batch in spec.split(',').filter_map(|s| s.trim().parse().ok()) {
        for layer in LAYERS {
            for dtype in [DType::F32, DType::F16] {
                bench_layer(c, &dev, "conv_gpu", layer, batch, dtype);
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = cpu, gpu
}
criterion_main!(benches);
