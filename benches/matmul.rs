//! matmul GFLOP/s, F32 against F16: the CPU backend on square sizes 128–1024, a GPU adapter on
//! the square sizes in `WGML_BENCH_GPU_SIZES` (default `64,128` for the software adapter;
//! `1024,2048,4096` on a real GPU), F16 through both the packed-word and (where the adapter has
//! `SHADER_F16`) the native kernels. Criterion's elem/s is FLOP/s; one plain line per size
//! follows with GFLOP/s and the bytes the product reads and writes (operands and output once).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};
use wgml::gpu::{with_f16_path, F16Path};
use wgml::{DType, Device, Tensor};

const CPU_SIZES: [usize; 4] = [128, 256, 512, 1024];
const GPU_SIZES_ENV: &str = "WGML_BENCH_GPU_SIZES";

fn gpu_sizes() -> Vec<usize> {
    let spec = std::env::var(GPU_SIZES_ENV).unwrap_or_else(|_| "64,128".into());
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{GPU_SIZES_ENV}={spec:?}: {s:?}: {e}"))
        })
        .collect()
}

/// Benches `n×n @ n×n` on `dev`. Each timed batch launches `iters` products and then waits for
/// the device (a no-op on the CPU), so GPU figures are finished work, not queued dispatches.
fn bench_size(c: &mut Criterion, group: &str, dev: &Device, n: usize, dtype: DType) {
    let a = Tensor::rand([n, n], 1, dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let b = Tensor::rand([n, n], 2, dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    a.matmul(&b).unwrap().to_vec().unwrap(); // compile the pipeline, fill the pool
    let flops = 2 * n * n * n;
    let best = Cell::new(f64::INFINITY);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
        bch.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(a.matmul(&b).unwrap());
            }
            dev.synchronize().unwrap();
            let d = t.elapsed();
            best.set(best.get().min(d.as_secs_f64() / iters as f64));
            d
        })
    });
    g.finish();
    if best.get().is_infinite() {
        return; // filtered out on the command line
    }
    let bytes = 3 * n * n * dtype.size_in_bytes();
    println!(
        "{group} {n}x{n}x{n}: {:.2} GFLOP/s, {:.2} MB moved ({:.2} GB/s), best sample mean {:.3} ms, on {}",
        flops as f64 / best.get() / 1e9,
        bytes as f64 / 1e6,
        bytes as f64 / best.get() / 1e9,
        best.get() * 1e3,
        dev.name()
    );
}

fn cpu(c: &mut Criterion) {
    println!(
        "matmul_cpu: matrixmultiply sgemm, MATMUL_NUM_THREADS={} (unset: physical cores, max 4), {} logical CPUs",
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for n in CPU_SIZES {
        bench_size(c, "matmul_cpu", &Device::cpu(), n, DType::F32);
        bench_size(c, "matmul_cpu_f16", &Device::cpu(), n, DType::F16);
    }
}

fn gpu(c: &mut Criterion) {
    let dev = match Device::gpu() {
        Ok(d) => d,
        Err(e) => {
            println!("matmul_gpu: skipped, no GPU adapter ({e})");
            return;
        }
    };
    let native =
        matches!(&dev, Device::Gpu(ctx) if ctx.features().contains(wgpu::Features::SHADER_F16));
    for n in gpu_sizes() {
        bench_size(c, "matmul_gpu", &dev, n, DType::F32);
        with_f16_path(F16Path::Packed, || {
            bench_size(c, "matmul_gpu_f16_packed", &dev, n, DType::F16)
        });
        if native {
            with_f16_path(F16Path::Native, || {
                bench_size(c, "matmul_gpu_f16_native", &dev, n, DType::F16)
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = cpu, gpu
}
criterion_main!(benches);
