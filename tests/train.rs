//! A small MLP drives the loss down on a fixed tiny data set, on both backends; dropout is
//! seeded and off in evaluation mode.

mod common;

use wgml::nn::{loss, Dropout, Linear, Module, Relu, Sequential};
use wgml::optim::{Adam, Optimizer, Sgd};
use wgml::rng::Rng;
use wgml::{Device, Tensor};

/// Two interleaved spirals-ish clusters: 64 points in 2-D, 3 classes.
fn toy_data(dev: &Device) -> (Tensor, Tensor) {
    let mut rng = Rng::new(5);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..64u32 {
        let c = i % 3;
        let angle = c as f32 * 2.1 + rng.uniform() * 0.8;
        let r = 0.5 + rng.uniform();
        x.push(r * angle.cos());
        x.push(r * angle.sin());
        y.push(c);
    }
    (
        Tensor::from_vec(x, [64, 2], dev).unwrap(),
        Tensor::from_indices(&y, [64], dev).unwrap(),
    )
}

fn train(dev: &Device, use_adam: bool) -> (f32, f32) {
    let (x, y) = toy_data(dev);
    let mut rng = Rng::new(1);
    let model = Sequential::new()
        .add(Linear::new(2, 16, true, &mut rng, dev).unwrap())
        .add(Relu)
        .add(Linear::new(16, 3, true, &mut rng, dev).unwrap());
    let mut opt: Box<dyn Optimizer> = if use_adam {
        Box::new(Adam::new(model.parameters(), 0.05))
    } else {
        Box::new(Sgd::new(model.parameters(), 0.2).momentum(0.9))
    };
    let first = loss::cross_entropy(&model.forward(&x).unwrap(), &y)
        .unwrap()
        .item()
        .unwrap();
    let mut last = first;
    for _ in 0..60 {
        let l = loss::cross_entropy(&model.forward(&x).unwrap(), &y).unwrap();
        let g = l.backward().unwrap();
        opt.step(&g).unwrap();
        last = l.item().unwrap();
    }
    (first, last)
}

#[test]
fn mlp_loss_goes_down_on_cpu() {
    for adam in [true, false] {
        let (first, last) = train(&Device::cpu(), adam);
        assert!(last < first * 0.5, "adam={adam}: loss {first} -> {last}");
    }
}

#[test]
fn mlp_loss_goes_down_on_gpu_like_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let (cf, cl) = train(&Device::cpu(), true);
    let (gf, gl) = train(&gpu, true);
    assert!(gl < gf * 0.5, "gpu loss {gf} -> {gl}");
    assert!((cf - gf).abs() < 1e-4, "initial loss cpu {cf} vs gpu {gf}");
    assert!((cl - gl).abs() < 2e-2, "final loss cpu {cl} vs gpu {gl}");
}

#[test]
fn dropout_is_seeded_and_off_in_eval() {
    let dev = Device::cpu();
    let x = Tensor::ones([1000], &dev).unwrap();
    let mut d1 = Dropout::new(0.3, 42).unwrap();
    let d2 = Dropout::new(0.3, 42).unwrap();
    let a = d1.forward(&x).unwrap().to_vec().unwrap();
    assert_eq!(a, d2.forward(&x).unwrap().to_vec().unwrap());
    let zeros = a.iter().filter(|&&v| v == 0.0).count();
    assert!((200..400).contains(&zeros), "{zeros} dropped of 1000");
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    d1.set_training(false);
    assert_eq!(d1.forward(&x).unwrap().to_vec().unwrap(), vec![1.0; 1000]);
    assert!(Dropout::new(1.0, 0).is_err());
}

#[test]
fn default_inits_have_pytorch_bounds() {
    let dev = Device::cpu();
    let mut rng = Rng::new(3);
    let l = Linear::new(100, 50, true, &mut rng, &dev).unwrap();
    let w = l.weight.to_vec().unwrap();
    let bound = 1.0 / 10.0;
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(w.iter().any(|v| v.abs() > 0.9 * bound));
    let k = Linear::keras(100, 50, &mut rng, &dev).unwrap();
    let glorot = (6.0f32 / 150.0).sqrt();
    let kw = k.weight.to_vec().unwrap();
    assert!(kw.iter().all(|v| v.abs() <= glorot) && kw.iter().any(|v| v.abs() > 0.9 * glorot));
    assert!(k
        .bias
        .as_ref()
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    let names: Vec<String> = Sequential::new()
        .add(l)
        .add(Relu)
        .add(k)
        .parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
}
