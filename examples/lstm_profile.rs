//! Times the parts of one training step of the char-LSTM (embedding 64, 2 × LSTM 128, Linear to
//! the vocabulary, batch 32, context 128) on the CPU backend: data and embedding, LSTM forward,
//! head and loss, backward, gradient clipping, Adam. Steps after the first two are averaged.
//!
//! `cargo run --release --example lstm_profile -- [steps (default 20)]`
//! (`WGML_LSTM_THREADS` and `MATMUL_NUM_THREADS` set the threads of the recurrence and of sgemm.)
use std::time::Instant;
use wgml::data::text::CharCorpus;
use wgml::nn::{loss, Linear, Lstm, LstmConfig, Module};
use wgml::optim::{clip_grad_norm, Adam, Optimizer};
use wgml::rng::Rng;
use wgml::{Device, Tensor};

fn main() -> wgml::Result<()> {
    let dev = Device::cpu();
    let corpus = CharCorpus::load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare.txt.gz"),
        0.9,
    )?;
    let v = corpus.vocab_size();
    let (b, t, e, h) = (32, 128, 64, 128);
    let mut rng = Rng::new(0);
    let emb = Tensor::randn([v, e], 1, &dev)?
        .mul_scalar(0.1)?
        .requires_grad();
    let lstm = Lstm::new(e, h, 2, LstmConfig::default(), &mut rng, &dev)?;
    let head = Linear::new(h, v, true, &mut rng, &dev)?;
    let mut params = vec![("emb".to_string(), emb.clone())];
    params.extend(lstm.parameters());
    params.extend(head.parameters());
    let ps: Vec<Tensor> = params.iter().map(|p| p.1.clone()).collect();
    let mut opt = Adam::new(params, 2e-3);
    let steps: usize = std::env::args().nth(1).map_or(20, |s| s.parse().unwrap());
    let mut tm = [0f64; 6];
    let t0 = Instant::now();
    for s in 0..steps {
        let a = Instant::now();
        let (x, y) = corpus.random_windows(b, t, &mut rng)?;
        let tr = |v: &[u32]| -> Vec<u32> { (0..t * b).map(|k| v[(k % b) * t + k / b]).collect() };
        let xt = Tensor::from_indices(&tr(&x), [t, b], &dev)?;
        let yt = Tensor::from_indices(&tr(&y), [t * b], &dev)?;
        let xe = emb.embedding(&xt)?;
        let a1 = Instant::now();
        let (out, _) = lstm.forward(&xe, None)?;
        let a2 = Instant::now();
        let logits = head.forward(&out.reshape([t * b, h])?)?;
        let l = loss::cross_entropy(&logits, &yt)?;
        let a3 = Instant::now();
        let mut g = l.backward()?;
        let a4 = Instant::now();
        clip_grad_norm(&mut g, &ps, 1.0)?;
        let a5 = Instant::now();
        opt.step(&g)?;
        let a6 = Instant::now();
        if s >= 2 {
            for (k, d) in [a1 - a, a2 - a1, a3 - a2, a4 - a3, a5 - a4, a6 - a5]
                .iter()
                .enumerate()
            {
                tm[k] += d.as_secs_f64() * 1e3;
            }
        }
        if s % 10 == 0 {
            println!("step {s} loss {}", l.item()?);
        }
    }
    let n = (steps - 2) as f64;
    println!("ms/step: data+emb {:.1} lstm fwd {:.1} head+loss {:.1} backward {:.1} clip {:.1} adam {:.1}; total {:.1} ({:.0} chars/s)",
        tm[0]/n, tm[1]/n, tm[2]/n, tm[3]/n, tm[4]/n, tm[5]/n, tm.iter().sum::<f64>()/n,
        (t*b) as f64 * steps as f64 / t0.elapsed().as_secs_f64());
    Ok(())
}
