//! Transformer layers: `MultiHeadAttention` against a plain f64 reference of PyTorch's formula,
//! embeddings and positional encodings, the block on GPU vs CPU (forward and gradients),
//! KV-cache decoding against the full forward (CPU and GPU, across a window slide), and a
//! small GPU training run whose loss goes down.

mod common;
use common::{assert_close, data, gpu};
use wgml::nn::{
    Embedding, KvCache, Module, MultiHeadAttention, PositionalEmbedding,
    SinusoidalPositionalEncoding, TransformerBlock, TransformerConfig, TransformerLm,
};
use wgml::optim::{Adam, Optimizer};
use wgml::rng::Rng;
use wgml::{Device, Tensor};

/// PyTorch's `MultiheadAttention(E, H, batch_first=True)(x, x, x)` in f64 loops.
fn mha_reference(
    x: &[f32],
    (b, t, e, h): (usize, usize, usize, usize),
    w_in: &[f32],
    b_in: &[f32],
    w_out: &[f32],
    b_out: &[f32],
    causal: bool,
) -> Vec<f32> {
    let d = e / h;
    let mut out = vec![0.0f32; b * t * e];
    for bi in 0..b {
        // proj[t][3E]
        let proj: Vec<Vec<f64>> = (0..t)
            .map(|ti| {
                (0..3 * e)
                    .map(|o| {
                        b_in[o] as f64
                            + (0..e)
                                .map(|i| w_in[o * e + i] as f64 * x[(bi * t + ti) * e + i] as f64)
                                .sum::<f64>()
                    })
                    .collect()
            })
            .collect();
        let mut concat = vec![vec![0.0f64; e]; t];
        for hi in 0..h {
            for i in 0..t {
                let kmax = if causal { i + 1 } else { t };
                let s: Vec<f64> = (0..kmax)
                    .map(|j| {
                        (0..d)
                            .map(|c| proj[i][hi * d + c] * proj[j][e + hi * d + c])
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for c in 0..d {
                    concat[i][hi * d + c] = (0..kmax)
                        .map(|j| (s[j] - m).exp() / z * proj[j][2 * e + hi * d + c])
                        .sum();
                }
            }
        }
        for i in 0..t {
            for o in 0..e {
                let v: f64 = b_out[o] as f64
                    + (0..e)
                        .map(|c| w_out[o * e + c] as f64 * concat[i][c])
                        .sum::<f64>();
                out[(bi * t + i) * e + o] = v as f32;
            }
        }
    }
    out
}

#[test]
fn multi_head_attention_matches_pytorch_formula() {
    let cpu = Device::cpu();
    let (b, t, e, h) = (2, 5, 12, 3);
    for causal in [false, true] {
        let mut rng = Rng::new(1);
        let mha = MultiHeadAttention::new(e, h, causal, &mut rng, &cpu).unwrap();
        let names: Vec<(String, Vec<usize>)> = mha
            .parameters()
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("in_proj_weight".to_string(), vec![3 * e, e]),
                ("in_proj_bias".to_string(), vec![3 * e]),
                ("out_proj.weight".to_string(), vec![e, e]),
                ("out_proj.bias".to_string(), vec![e]),
            ]
        );
        // Non-zero biases so that their placement is checked too.
        let params = mha.parameters();
        for (i, (_, p)) in params.iter().enumerate() {
            p.assign(&Tensor::from_slice(&data(p.numel(), 50 + i as u64), p.dims(), &cpu).unwrap())
                .unwrap();
        }
        let v = |i: usize| params[i].1.to_vec().unwrap();
        let xv = data(b * t * e, 7);
        let x = Tensor::from_slice(&xv, [b, t, e], &cpu).unwrap();
        let got = mha.forward(&x).unwrap();
        assert_eq!(got.dims(), &[b, t, e]);
        let want = mha_reference(&xv, (b, t, e, h), &v(0), &v(1), &v(2), &v(3), causal);
        assert_close(
            &got.to_vec().unwrap(),
            &want,
            1e-4,
            1e-4,
            &format!("mha causal {causal}"),
        );
    }
    let mut rng = Rng::new(1);
    assert!(MultiHeadAttention::new(10, 3, false, &mut rng, &cpu).is_err());
    let mha = MultiHeadAttention::new(12, 3, false, &mut rng, &cpu).unwrap();
    assert!(mha
        .forward(&Tensor::zeros([2, 5, 8], &cpu).unwrap())
        .is_err());
    assert!(mha.forward(&Tensor::zeros([5, 12], &cpu).unwrap()).is_err());
}

#[test]
fn embeddings_and_positions() {
    let cpu = Device::cpu();
    let mut rng = Rng::new(3);
    let emb = Embedding::new(10, 4, &mut rng, &cpu).unwrap();
    let w = emb.weight.to_vec().unwrap();
    let ids = Tensor::from_indices(&[3, 0, 9, 3, 1, 2], [2, 3], &cpu).unwrap();
    let y = emb.forward(&ids).unwrap();
    assert_eq!(y.dims(), &[2, 3, 4]);
    let y = y.to_vec().unwrap();
    for (p, &i) in [3usize, 0, 9, 3, 1, 2].iter().enumerate() {
        assert_eq!(&y[p * 4..p * 4 + 4], &w[i * 4..i * 4 + 4]);
    }
    // N(0, 1) initialisation: a crude check of the spread over 4096 draws.
    let big = Embedding::new(1024, 4, &mut rng, &cpu)
        .unwrap()
        .weight
        .to_vec()
        .unwrap();
    let var = big.iter().map(|v| v * v).sum::<f32>() / big.len() as f32;
    assert!((var - 1.0).abs() < 0.1, "variance {var}");
    assert!(emb
        .forward(&Tensor::from_indices(&[10], [1], &cpu).unwrap())
        .is_err());

    let pe = SinusoidalPositionalEncoding::new(50, 6, &cpu).unwrap();
    let table = pe.table().to_vec().unwrap();
    // pe[t, 2i] = sin(t / 10000^(2i/6)), pe[t, 2i+1] = cos(..).
    let want = |t: usize, j: usize| {
        let a = t as f64 / 10000f64.powf((j - j % 2) as f64 / 6.0);
        if j.is_multiple_of(2) {
            a.sin()
        } else {
            a.cos()
        }
    };
    for (t, j) in [(0, 0), (0, 1), (7, 2), (7, 3), (49, 5)] {
        assert!(
            (table[t * 6 + j] as f64 - want(t, j)).abs() < 1e-6,
            "pe[{t}, {j}]"
        );
    }
    let x = Tensor::zeros([2, 3, 6], &cpu).unwrap();
    let y = pe.forward_from(&x, 4).unwrap().to_vec().unwrap();
    assert_eq!(&y[6..12], &table[5 * 6..6 * 6]);
    assert!(pe.forward_from(&x, 48).is_err());

    let pos =
        PositionalEmbedding::new(8, 6, wgml::nn::init::Init::Normal(0.02), &mut rng, &cpu).unwrap();
    let y = pos.forward(&x).unwrap().to_vec().unwrap();
    assert_eq!(&y[18..24], &pos.weight.to_vec().unwrap()[..6]);
    assert!(pos
        .forward(&Tensor::zeros([1, 9, 6], &cpu).unwrap())
        .is_err());
}

#[test]
fn block_gpu_matches_cpu_with_gradients() {
    let Some(gpu) = gpu() else { return };
    let (b, t, e) = (2, 7, 16);
    let run = |dev: &Device| {
        let mut rng = Rng::new(5);
        let block = TransformerBlock::new(e, 4, 24, 0.0, true, &mut rng, dev).unwrap();
        let x = Tensor::from_slice(&data(b * t * e, 9), [b, t, e], dev)
            .unwrap()
            .requires_grad();
        let r = Tensor::from_slice(&data(b * t * e, 10), [b, t, e], dev).unwrap();
        let y = block.forward(&x).unwrap();
        let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let mut out = vec![y.to_vec().unwrap(), g.get(&x).unwrap().to_vec().unwrap()];
        for (_, p) in block.parameters() {
            out.push(g.get(&p).unwrap().to_vec().unwrap());
        }
        out
    };
    let (want, got) = (run(&Device::cpu()), run(&gpu));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(g, w, 1e-4, 1e-3, &format!("block output/grad #{i}"));
    }
}

fn tiny(dev: &Device, context: usize) -> TransformerLm {
    let cfg = TransformerConfig {
        vocab: 11,
        context,
        layers: 2,
        d_model: 16,
        heads: 2,
        mlp: 32,
        dropout: 0.0,
    };
    TransformerLm::new(cfg, 42, dev).unwrap()
}

/// Decodes a sequence token by token through the cache (crossing one window slide) and
/// compares each step's logits with the full forward over the positions the cache holds.
fn cached_matches_full(dev: &Device, atol: f32) {
    let context = 8;
    let model = tiny(dev, context);
    let ids: Vec<u32> = (0..14).map(|i| (i * 7 + 3) % 11).collect();
    wgml::no_grad(|| {
        let mut cache = KvCache::new();
        // Prefill three tokens at once, then one at a time.
        let mut fed = 3;
        let mut got = model.feed(&mut cache, &ids[..3], 1).unwrap();
        let mut slid = false;
        loop {
            let window = cache.history(0).to_vec();
            assert_eq!(window.len(), cache.len());
            assert_eq!(window[..], ids[fed - window.len()..fed]);
            let x = Tensor::from_indices(&window, [1, window.len()], dev).unwrap();
            let full = model.logits(&x).unwrap();
            let v = full.dims()[2];
            let want = full
                .narrow(1, window.len() - 1, 1)
                .unwrap()
                .reshape([1, v])
                .unwrap();
            assert_close(
                &got.to_vec().unwrap(),
                &want.to_vec().unwrap(),
                atol,
                1e-4,
                &format!("cached logits after {fed} tokens (cache {})", cache.len()),
            );
            if fed == ids.len() {
                break;
            }
            let before = cache.len();
            got = model.feed(&mut cache, &ids[fed..fed + 1], 1).unwrap();
            slid |= cache.len() < before;
            fed += 1;
        }
        assert!(slid, "the window never slid");
        // Two sequences at once give each one's logits.
        let mut cache = KvCache::new();
        model.feed(&mut cache, &[1, 2, 3, 4, 5, 6], 2).unwrap();
        let two = model
            .feed(&mut cache, &[7, 8], 2)
            .unwrap()
            .to_vec()
            .unwrap();
        let x = Tensor::from_indices(&[1, 2, 3, 7, 4, 5, 6, 8], [2, 4], dev).unwrap();
        let full = model
            .logits(&x)
            .unwrap()
            .narrow(1, 3, 1)
            .unwrap()
            .contiguous()
            .unwrap();
        assert_close(&two, &full.to_vec().unwrap(), atol, 1e-4, "batch of two");
        assert!(model.feed(&mut cache, &[1, 2, 3], 2).is_err());
    });
}

#[test]
fn kv_cache_matches_full_forward_cpu() {
    cached_matches_full(&Device::cpu(), 1e-5);
}

#[test]
fn kv_cache_matches_full_forward_gpu() {
    let Some(gpu) = gpu() else { return };
    cached_matches_full(&gpu, 1e-4);
}

#[test]
fn gpu_training_reduces_the_loss() {
    let Some(gpu) = gpu() else { return };
    let model = tiny(&gpu, 8);
    let mut opt = Adam::adamw(model.parameters(), 1e-2, 0.01);
    // A repeating pattern is easy to learn: the loss must fall well below its start.
    let ids: Vec<u32> = (0..4 * 9).map(|i| (i % 5) as u32).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..4 {
        x.extend_from_slice(&ids[r * 9..r * 9 + 8]);
        y.extend_from_slice(&ids[r * 9 + 1..r * 9 + 9]);
    }
    let x = Tensor::from_indices(&x, [4, 8], &gpu).unwrap();
    let y = Tensor::from_indices(&y, [32], &gpu).unwrap();
    let mut losses = Vec::new();
    for _ in 0..15 {
        let logits = model.logits(&x).unwrap().reshape([32, 11]).unwrap();
        let loss = wgml::nn::loss::cross_entropy(&logits, &y).unwrap();
        let g = loss.backward().unwrap();
        opt.step(&g).unwrap();
        losses.push(loss.item().unwrap());
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        losses[14] < 0.5 * losses[0],
        "loss did not fall: {losses:?}"
    );
}
