//! Attention GFLOP/s: the fused `scaled_dot_product_attention` against the composed
//! matmul → softmax → matmul path (existing tensor ops, autograd for the backward), forward and
//! forward + backward, on the CPU for (B, H, T, D) = (32, 4, 128, 32) causal (the Transformer
//! example's shape), (4, 4, 256, 64) and (2, 4, 512, 64), and on a GPU adapter for the `T:D`
//! pairs in `WGML_BENCH_GPU_ATTN` (B = 1, H = 4, causal; default `64:32` for the software
//! adapter, e.g. `1024:64,2048:64,4096:128` on a real GPU).
//!
//! FLOPs are counted as the dense products: forward 4·B·H·T²·D (Q·Kᵀ and P·V), forward +
//! backward 14·B·H·T²·D (five products in the backward), halved for a causal mask. Both paths
//! are charged the same count, so the fused/composed ratio printed is a speed ratio.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};
use wgml::nn::functional::scaled_dot_product_attention as sdpa;
use wgml::{Device, Result, Tensor};

const GPU_ENV: &str = "WGML_BENCH_GPU_ATTN";

#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    h: usize,
    t: usize,
    d: usize,
    causal: bool,
}

const CPU_SHAPES: [Shape; 3] = [
    Shape {
        b: 32,
        h: 4,
        t: 128,
        d: 32,
        causal: true,
    },
    Shape {
        b: 4,
        h: 4,
        t: 256,
        d: 64,
        causal: false,
    },
    Shape {
        b: 2,
        h: 4,
        t: 512,
        d: 64,
        causal: true,
    },
];

fn gpu_shapes() -> Vec<Shape> {
    let spec = std::env::var(GPU_ENV).unwrap_or_else(|_| "64:32".into());
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let parse = |x: &str| -> usize {
                x.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{GPU_ENV}={spec:?}: {s:?}: {e}"))
            };
            let (t, d) = s
                .split_once(':')
                .unwrap_or_else(|| panic!("{GPU_ENV}={spec:?}: {s:?} is not T:D"));
            Shape {
                b: 1,
                h: 4,
                t: parse(t),
                d: parse(d),
                causal: true,
            }
        })
        .collect()
}

/// The composed path: `softmax(q·kᵀ·scale + causal mask)·v` from existing ops.
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let d = q.dims()[3] as f32;
    let mut s = q
        .matmul(&k.transpose(-1, -2)?)?
        .mul_scalar(1.0 / d.sqrt())?;
    if let Some(m) = mask {
        s = s.add(m)?;
    }
    s.softmax()?.matmul(v)
}

/// Benches one path on one shape; returns the best sample mean in seconds.
fn bench_one(
    c: &mut Criterion,
    group: &str,
    dev: &Device,
    s: Shape,
    fused: bool,
    backward: bool,
) -> f64 {
    let dims = [s.b, s.h, s.t, s.d];
    let t = |seed| Tensor::randn(dims, seed, dev).unwrap().requires_grad();
    let (q, k, v) = (t(1), t(2), t(3));
    let mask = (s.causal && !fused).then(|| {
        let m: Vec<f32> = (0..s.t * s.t)
            .map(|x| {
                if x % s.t > x / s.t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(m, [s.t, s.t], dev).unwrap()
    });
    let step = || -> Tensor {
        let o = if fused {
            sdpa(&q, &k, &v, None, s.causal, None).unwrap()
        } else {
            composed(&q, &k, &v, mask.as_ref()).unwrap()
        };
        if backward {
            let g = o.sum_all().unwrap().backward().unwrap();
            g.get(&q).unwrap().clone()
        } else {
            o
        }
    };
    step().to_vec().unwrap(); // compile pipelines, fill the pools
    let per = if backward { 14 } else { 4 };
    let flops = (per * s.b * s.h * s.t * s.t * s.d) as f64 / if s.causal { 2.0 } else { 1.0 };
    let best = Cell::new(f64::INFINITY);
    let name = format!(
        "{}_{} B{} H{} T{} D{}{}",
        if fused { "fused" } else { "composed" },
        if backward { "fwd_bwd" } else { "fwd" },
        s.b,
        s.h,
        s.t,
        s.d,
        if s.causal { " causal" } else { "" }
    );
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_with_input(BenchmarkId::from_parameter(&name), &name, |bch, _| {
        bch.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(step());
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
            "{group} {name}: {:.3} ms, {:.2} GFLOP/s on {}",
            best.get() * 1e3,
            flops / best.get() / 1e9,
            dev.name()
        );
    }
    best.get()
}

fn run(c: &mut Criterion, group: &str, dev: &Device, shapes: &[Shape]) {
    for &s in shapes {
        for backward in [false, true] {
            let f = bench_one(c, group, dev, s, true, backward);
            let p = bench_one(c, group, dev, s, false, backward);
            if f.is_finite() && p.is_finite() {
                println!(
                    "{group} B{} H{} T{} D{} {}: fused/composed time ratio {:.2} (fused {:.2}x faster)",
                    s.b,
                    s.h,
                    s.t,
                    s.d,
                    if backward { "fwd+bwd" } else { "fwd" },
                    f / p,
                    p / f
                );
            }
        }
    }
}

fn cpu(c: &mut Criterion) {
    run(c, "attention_cpu", &Device::cpu(), &CPU_SHAPES);
}

fn gpu(c: &mut Criterion) {
    let dev = match Device::gpu() {
        Ok(d) => d,
        Err(e) => {
            println!("attention_gpu: skipped, no GPU adapter ({e})");
            return;
        }
    };
    run(c, "attention_gpu", &dev, &gpu_shapes());
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
