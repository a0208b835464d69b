//! One GRU layer over one sequence, forward and forward+backward: the fused op
//! (`Tensor::gru`) against the same cell composed of primitive ops (matmul, add, narrow,
//! sigmoid, tanh, mul). Reports time per time step and, on a GPU, dispatches per time step
//! (`wgml::gpu::dispatch_count`). CPU: T = 64, B = 32, I = H ∈ {128, 512}. GPU sizes come from
//! `WGML_BENCH_GRU_GPU` as `T,B,H` triples separated by `;` (default `8,4,32` for the software
//! adapter; `64,32,128;64,32,512` on a real GPU). Both variants project the input of all steps
//! with one matmul, so the difference is the recurrence.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};
use wgml::{Device, Result, Tensor};

const GPU_ENV: &str = "WGML_BENCH_GRU_GPU";

#[derive(Clone, Copy, Debug)]
struct Size {
    t: usize,
    b: usize,
    h: usize,
}

fn gpu_sizes() -> Vec<Size> {
    let spec = std::env::var(GPU_ENV).unwrap_or_else(|_| "8,4,32".into());
    spec.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let v: Vec<usize> = s
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("{GPU_ENV}={spec:?}: {x:?}: {e}"))
                })
                .collect();
            assert_eq!(v.len(), 3, "{GPU_ENV}: each entry is T,B,H");
            Size {
                t: v[0],
                b: v[1],
                h: v[2],
            }
        })
        .collect()
}

/// Inputs of one layer: x, h0, w_ih, w_hh, b_ih, b_hh (all needing gradients), and the
/// weights of a loss `Σ w·output`.
fn inputs(s: Size, dev: &Device) -> (Vec<Tensor>, Tensor) {
    let Size { t, b, h } = s;
    let k = 1.0 / (h as f32).sqrt();
    let u = |dims: Vec<usize>, seed: u64| {
        Tensor::rand_uniform(dims, -k, k, seed, dev)
            .unwrap()
            .requires_grad()
    };
    let ts = vec![
        u(vec![t, b, h], 1),
        u(vec![b, h], 2),
        u(vec![3 * h, h], 4),
        u(vec![3 * h, h], 5),
        u(vec![3 * h], 6),
        u(vec![3 * h], 7),
    ];
    (ts, Tensor::rand([t, b, h], 8, dev).unwrap())
}

fn fused(ts: &[Tensor]) -> Result<Tensor> {
    Ok(ts[0].gru(&ts[1], &ts[2], &ts[3], &ts[4], &ts[5])?.0)
}

/// The same layer from primitive ops: per step one matmul, adds, gate slices, two sigmoids,
/// a tanh and the products, then the outputs concatenated.
fn composed(ts: &[Tensor]) -> Result<Tensor> {
    let (t, b, i) = (ts[0].dims()[0], ts[0].dims()[1], ts[0].dims()[2]);
    let h = ts[3].dims()[1];
    let gx = ts[0]
        .reshape([t * b, i])?
        .matmul(&ts[2].t()?)?
        .add(&ts[4])?;
    let w_hh_t = ts[3].t()?;
    let mut hh = ts[1].clone();
    let mut outs = Vec::with_capacity(t);
    for s in 0..t {
        let gi = gx.narrow(0, s * b, b)?;
        let gh = hh.matmul(&w_hh_t)?.add(&ts[5])?;
        let (i_, h_) = (
            |k: usize| gi.narrow(1, k * h, h),
            |k: usize| gh.narrow(1, k * h, h),
        );
        let r = i_(0)?.add(&h_(0)?)?.sigmoid()?;
        let z = i_(1)?.add(&h_(1)?)?.sigmoid()?;
        let n = i_(2)?.add(&r.mul(&h_(2)?)?)?.tanh()?;
        // h' = n + z·(h − n)
        hh = n.add(&z.mul(&hh.sub(&n)?)?)?;
        outs.push(hh.unsqueeze(0)?);
    }
    Tensor::cat(&outs.iter().collect::<Vec<_>>(), 0)
}

type Layer = fn(&[Tensor]) -> Result<Tensor>;

/// One run: forward only, or forward and backward of `Σ w·output`.
fn once(f: Layer, ts: &[Tensor], w: &Tensor, backward: bool) {
    let y = f(ts).unwrap();
    if backward {
        black_box(y.mul(w).unwrap().sum_all().unwrap().backward().unwrap());
    } else {
        black_box(y);
    }
}

fn bench_one(c: &mut Criterion, dev: &Device, s: Size) {
    let (ts, w) = inputs(s, dev);
    let variants: [(&str, Layer, bool); 4] = [
        ("fused_forward", fused, false),
        ("composed_forward", composed, false),
        ("fused_fwd_bwd", fused, true),
        ("composed_fwd_bwd", composed, true),
    ];
    let group = format!("gru_{}", if dev.is_cpu() { "cpu" } else { "gpu" });
    let mut g = c.benchmark_group(&group);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    for (name, f, bwd) in variants {
        once(f, &ts, &w, bwd); // pipelines, pools
        dev.synchronize().unwrap();
        let before = wgml::gpu::dispatch_count();
        once(f, &ts, &w, bwd);
        let dispatches = wgml::gpu::dispatch_count() - before;
        dev.synchronize().unwrap();
        let best = Cell::new(f64::INFINITY);
        let id = format!("{name}/T{}_B{}_H{}", s.t, s.b, s.h);
        g.bench_function(BenchmarkId::from_parameter(&id), |bch| {
            bch.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    once(f, &ts, &w, bwd);
                }
                dev.synchronize().unwrap();
                let d = t0.elapsed();
                best.set(best.get().min(d.as_secs_f64() / iters as f64));
                d
            })
        });
        if best.get().is_finite() {
            println!(
                "{group} {id}: {:.3} ms per sequence, {:.1} us per step, {} dispatches per step on {}",
                best.get() * 1e3,
                best.get() * 1e6 / s.t as f64,
                if dev.is_cpu() {
                    "-".to_string()
                } else {
                    format!("{:.1}", dispatches as f64 / s.t as f64)
                },
                dev.name()
            );
        }
    }
    g.finish();
}

fn cpu(c: &mut Criterion) {
    for h in [128, 512] {
        bench_one(c, &Device::cpu(), Size { t: 64, b: 32, h });
    }
}

fn gpu(c: &mut Criterion) {
    let dev = match Device::gpu() {
        Ok(d) => d,
        Err(e) => {
            println!("gru_gpu: skipped, no GPU adapter ({e})");
            return;
        }
    };
    for s in gpu_sizes() {
        bench_one(c, &dev, s);
    }
}

criterion_group!(benches, cpu, gpu);
criterion_main!(benches);
