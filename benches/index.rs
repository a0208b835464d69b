//! An embedding-heavy training step on a GPU adapter: token and position embeddings looked up
//! from `U32` indices already on the device, a projection to the vocabulary, cross-entropy
//! against device labels, backward, and one read-back of the loss. Before issue 10 every
//! embedding call read its indices back to validate them (one wait on the device per lookup);
//! now the kernels record a bad index in a device error word checked at the loss's read-back.
//! A second case times 8 lookups alone with one wait at the end. Sizes from `WGML_BENCH_INDEX` = `batch,seq,vocab,dim` (default `8,32,65,32`, small enough
//! for the software adapter).

use criterion::{criterion_group, criterion_main, Criterion};
use std::cell::Cell;
use std::time::Instant;
use wgml::{nn, Device, Tensor};

const SIZES_ENV: &str = "WGML_BENCH_INDEX";

fn gpu(c: &mut Criterion) {
    let dev = match Device::gpu() {
        Ok(d) => d,
        Err(e) => {
            println!("index_gpu: skipped, no GPU adapter ({e})");
            return;
        }
    };
    let spec = std::env::var(SIZES_ENV).unwrap_or_else(|_| "8,32,65,32".into());
    let s: Vec<usize> = spec
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let [b, t, v, d] = s[..] else {
        panic!("{SIZES_ENV} must be batch,seq,vocab,dim, got {spec:?}");
    };
    let n = b * t;
    let tok: Vec<u32> = (0..n).map(|i| ((i * 7 + 3) % v) as u32).collect();
    let tgt: Vec<u32> = (0..n).map(|i| ((i * 5 + 1) % v) as u32).collect();
    let pos: Vec<u32> = (0..n).map(|i| (i % t) as u32).collect();
    let tok = Tensor::from_indices(&tok, [b, t], &dev).unwrap();
    let pos = Tensor::from_indices(&pos, [b, t], &dev).unwrap();
    let tgt = Tensor::from_indices(&tgt, n, &dev).unwrap();
    let emb = Tensor::rand_uniform([v, d], -0.1, 0.1, 1, &dev)
        .unwrap()
        .requires_grad();
    let pemb = Tensor::rand_uniform([t, d], -0.1, 0.1, 2, &dev)
        .unwrap()
        .requires_grad();
    let w = Tensor::rand_uniform([d, v], -0.1, 0.1, 3, &dev)
        .unwrap()
        .requires_grad();
    let step = || -> f32 {
        let x = emb
            .embedding(&tok)
            .unwrap()
            .add(&pemb.embedding(&pos).unwrap());
        let logits = x.unwrap().reshape([n, d]).unwrap().matmul(&w).unwrap();
        let loss = nn::loss::cross_entropy(&logits, &tgt).unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(&emb).is_some());
        loss.item().unwrap()
    };
    step();
    let best = Cell::new(f64::INFINITY);
    let id = format!("embedding_step/b{b}_t{t}_v{v}_d{d}");
    c.bench_function(&id, |bch| {
        bch.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(step());
            }
            let e = t0.elapsed();
            best.set(best.get().min(e.as_secs_f64() / iters as f64));
            e
        })
    });
    println!(
        "index_gpu {id}: {:.3} ms/step on {}",
        best.get() * 1e3,
        dev.name()
    );

    // The lookups alone, 8 per iteration, one wait at the end: what a wait per lookup costs.
    let lookups = || {
        for _ in 0..4 {
            std::hint::black_box(emb.embedding(&tok).unwrap());
            std::hint::black_box(pemb.embedding(&pos).unwrap());
        }
    };
    lookups();
    dev.synchronize().unwrap();
    let best = Cell::new(f64::INFINITY);
    let id = format!("8_lookups/b{b}_t{t}_v{v}_d{d}");
    c.bench_function(&id, |bch| {
        bch.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                lookups();
            }
            dev.synchronize().unwrap();
            let e = t0.elapsed();
            best.set(best.get().min(e.as_secs_f64() / iters as f64));
            e
        })
    });
    println!(
        "index_gpu {id}: {:.3} ms per 8 lookups on {}",
        best.get() * 1e3,
        dev.name()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = gpu
}
criterion_main!(benches);
