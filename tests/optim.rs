//! Optimizer steps against reference values computed by hand from the published update
//! formulas (SGD with momentum/Nesterov/weight decay, Adam, AdamW), on both backends;
//! gradient clipping and learning-rate schedules.

mod common;

use wgml::optim::{clip_grad_norm, Adam, CosineLr, LrSchedule, Optimizer, Sgd, StepLr};
use wgml::{Device, Gradients, Tensor};

const GRADS: [f32; 3] = [0.5, -1.0, 0.25];

fn devices() -> Vec<Device> {
    let mut d = vec![Device::cpu()];
    d.extend(common::gpu());
    d
}

/// Runs three steps with the gradients above on a 3-element parameter starting at 1.0 and
/// checks the parameter after each step.
fn run(name: &str, make: impl Fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer>, want: [f64; 3]) {
    for dev in devices() {
        let p = Tensor::ones([3], &dev).unwrap().requires_grad();
        let mut opt = make(vec![("p".into(), p.clone())]);
        for (step, &g) in GRADS.iter().enumerate() {
            let mut grads = Gradients::default();
            grads.insert(&p, Tensor::full(g, [3], &dev).unwrap());
            opt.step(&grads).unwrap();
            let got = p.to_vec().unwrap();
            common::assert_close(
                &got,
                &[want[step] as f32; 3],
                1e-6,
                1e-5,
                &format!("{name} step {} on {}", step + 1, dev.name()),
            );
        }
    }
}

#[test]
fn sgd_plain() {
    run("sgd", |p| Box::new(Sgd::new(p, 0.1)), [0.95, 1.05, 1.025]);
}

#[test]
fn sgd_momentum() {
    run(
        "sgd momentum",
        |p| Box::new(Sgd::new(p, 0.1).momentum(0.9)),
        [0.95, 1.005, 1.0295],
    );
}

#[test]
fn sgd_nesterov() {
    run(
        "sgd nesterov",
        |p| Box::new(Sgd::new(p, 0.1).momentum(0.9).nesterov(true)),
        [0.905, 1.0545, 1.05155],
    );
}

#[test]
fn sgd_weight_decay() {
    run(
        "sgd weight decay",
        |p| Box::new(Sgd::new(p, 0.1).momentum(0.9).weight_decay(0.1)),
        [0.94, 0.9766, 0.974774],
    );
}

#[test]
fn adam() {
    run(
        "adam",
        |p| Box::new(Adam::new(p, 0.1)),
        [0.900000002, 0.9366103542405654, 0.9502794203389762],
    );
}

#[test]
fn adam_l2() {
    run(
        "adam l2",
        |p| Box::new(Adam::new(p, 0.1).weight_decay(0.1)),
        [0.9000000016666666, 0.9252635194456061, 0.9247305742687093],
    );
}

#[test]
fn adamw_decoupled() {
    run(
        "adamw",
        |p| Box::new(Adam::adamw(p, 0.1, 0.1)),
        [0.890000002, 0.9177103542205653, 0.9222023167767704],
    );
}

#[test]
fn parameters_without_gradient_are_left_alone() {
    let dev = Device::cpu();
    let a = Tensor::ones([2], &dev).unwrap().requires_grad();
    let b = Tensor::ones([2], &dev).unwrap().requires_grad();
    let mut opt = Adam::new(vec![("a".into(), a.clone()), ("b".into(), b.clone())], 0.1);
    let mut g = Gradients::default();
    g.insert(&a, Tensor::ones([2], &dev).unwrap());
    opt.step(&g).unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![1.0, 1.0]);
    assert_ne!(a.to_vec().unwrap(), vec![1.0, 1.0]);
}

#[test]
fn clip_grad_norm_scales_to_max() {
    for dev in devices() {
        let a = Tensor::zeros([2], &dev).unwrap().requires_grad();
        let b = Tensor::zeros([1], &dev).unwrap().requires_grad();
        let mut g = Gradients::default();
        g.insert(&a, Tensor::from_vec(vec![3.0, 0.0], [2], &dev).unwrap());
        g.insert(&b, Tensor::from_vec(vec![4.0], [1], &dev).unwrap());
        let norm = clip_grad_norm(&mut g, &[a.clone(), b.clone()], 1.0).unwrap();
        assert!((norm.item().unwrap() - 5.0).abs() < 1e-5);
        common::assert_close(
            &g.get(&a).unwrap().to_vec().unwrap(),
            &[0.6, 0.0],
            1e-5,
            1e-5,
            "clipped a",
        );
        common::assert_close(
            &g.get(&b).unwrap().to_vec().unwrap(),
            &[0.8],
            1e-5,
            1e-5,
            "clipped b",
        );
        // Below the threshold nothing changes.
        let norm = clip_grad_norm(&mut g, &[a.clone(), b.clone()], 10.0).unwrap();
        assert!((norm.item().unwrap() - 1.0).abs() < 1e-4);
        common::assert_close(
            &g.get(&b).unwrap().to_vec().unwrap(),
            &[0.8],
            1e-5,
            1e-5,
            "unclipped b",
        );
    }
}

#[test]
fn schedules() {
    let s = StepLr {
        base_lr: 0.1,
        step_size: 2,
        gamma: 0.5,
    };
    assert_eq!(
        [s.lr(0), s.lr(1), s.lr(2), s.lr(5)],
        [0.1, 0.1, 0.05, 0.025]
    );
    let c = CosineLr {
        base_lr: 1.0,
        t_max: 4,
        eta_min: 0.0,
    };
    assert!((c.lr(0) - 1.0).abs() < 1e-6);
    assert!((c.lr(2) - 0.5).abs() < 1e-6);
    assert!(c.lr(4).abs() < 1e-6);
    assert!(c.lr(9).abs() < 1e-6);
}
