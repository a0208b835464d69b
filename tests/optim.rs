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
    let _g = common::gpu_lock();
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
    let _g = common::gpu_lock();
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

/// A small model's worth of parameters with awkward sizes (1, odd, not multiples of any
/// workgroup or of the binding alignment) and gradients for them.
fn model_params(dev: &Device) -> (Vec<(String, Tensor)>, Vec<Vec<f32>>) {
    let shapes: [&[usize]; 5] = [&[1], &[3, 7], &[257], &[33, 65], &[5]];
    let params = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.iter().product();
            let t = Tensor::from_vec(common::data(n, i as u64), *s, dev).unwrap();
            (format!("p{i}"), t.requires_grad())
        })
        .collect();
    let grads = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| common::data(s.iter().product(), 100 + i as u64))
        .collect();
    (params, grads)
}

/// Makes an optimizer over named parameters.
type Make = dyn Fn(Vec<(String, Tensor)>) -> Box<dyn Optimizer>;

/// What [`fused_run`] returns: parameters, states, norms, and the dispatches of the last step.
struct Run {
    values: Vec<Vec<f32>>,
    states: Vec<Vec<f32>>,
    norms: Vec<f32>,
    dispatches: u64,
}

/// Runs three steps of `make`'s optimizer on [`model_params`] on `dev`, clipped to `clip` when
/// given, scaling the gradients by `gscale`; returns the parameters, the states and the norms.
fn fused_run(dev: &Device, make: &Make, clip: Option<f32>, gscale: f32) -> Run {
    let (params, gvals) = model_params(dev);
    let mut opt = make(params.clone());
    let mut norms = Vec::new();
    let mut dispatches = 0;
    for step in 0..3 {
        let mut grads = Gradients::default();
        for ((_, p), g) in params.iter().zip(&gvals) {
            let g: Vec<f32> = g.iter().map(|v| v * gscale * (step + 1) as f32).collect();
            grads.insert(p, Tensor::from_vec(g, p.dims(), dev).unwrap());
        }
        dev.synchronize().unwrap();
        let d0 = wgml::gpu::dispatch_count();
        match clip {
            Some(c) => norms.push(opt.step_clipped(&grads, c).unwrap().item().unwrap()),
            None => opt.step(&grads).unwrap(),
        }
        dispatches = wgml::gpu::dispatch_count() - d0;
    }
    Run {
        values: params.iter().map(|(_, p)| p.to_vec().unwrap()).collect(),
        states: opt
            .state()
            .iter()
            .map(|(_, t)| t.to_vec().unwrap())
            .collect(),
        norms,
        dispatches,
    }
}

/// The fused GPU step (every parameter in one dispatch, the clip in one more) against the
/// CPU's per-parameter loops, for SGD with momentum and Nesterov, Adam and AdamW, with the
/// clip inactive (small gradients) and active (large ones), over three steps.
#[test]
fn fused_steps_match_the_cpu_and_take_one_or_two_dispatches() {
    let _g = common::gpu_lock();
    let Some(gpu) = common::gpu() else {
        return;
    };
    let makers: [(&str, Box<Make>); 4] = [
        (
            "sgd",
            Box::new(|p| Box::new(Sgd::new(p, 0.1).momentum(0.9).weight_decay(0.01))),
        ),
        (
            "nesterov",
            Box::new(|p| Box::new(Sgd::new(p, 0.05).momentum(0.8).nesterov(true))),
        ),
        (
            "adam",
            Box::new(|p| Box::new(Adam::new(p, 0.01).weight_decay(0.1))),
        ),
        ("adamw", Box::new(|p| Box::new(Adam::adamw(p, 0.01, 0.05)))),
    ];
    for (name, make) in &makers {
        for (clip, gscale) in [(None, 1.0), (Some(1e3), 0.1), (Some(0.5), 3.0)] {
            let what = format!("{name} clip {clip:?} grads x{gscale}");
            let g = fused_run(&gpu, make.as_ref(), clip, gscale);
            let c = fused_run(&Device::cpu(), make.as_ref(), clip, gscale);
            for (i, (g, c)) in g.values.iter().zip(&c.values).enumerate() {
                common::assert_close(g, c, 1e-5, 1e-4, &format!("{what}: parameter {i}"));
            }
            for (i, (g, c)) in g.states.iter().zip(&c.states).enumerate() {
                common::assert_close(g, c, 1e-5, 1e-4, &format!("{what}: state {i}"));
            }
            common::assert_close(&g.norms, &c.norms, 1e-4, 1e-5, &format!("{what}: norms"));
            let want = if clip.is_some() { 2 } else { 1 };
            assert_eq!(g.dispatches, want, "{what}: dispatches per step");
        }
    }
}

/// A parameter without a gradient this step is left alone (no weight decay, no moment decay),
/// as in PyTorch: the step falls back to one update per parameter.
#[test]
fn a_parameter_without_a_gradient_is_not_updated() {
    let _g = common::gpu_lock();
    for dev in devices() {
        let (params, gvals) = model_params(&dev);
        let mut opt = Adam::adamw(params.clone(), 0.01, 0.1);
        let before = params[1].1.to_vec().unwrap();
        for _ in 0..2 {
            let mut grads = Gradients::default();
            for (i, ((_, p), g)) in params.iter().zip(&gvals).enumerate() {
                if i != 1 {
                    grads.insert(p, Tensor::from_vec(g.clone(), p.dims(), &dev).unwrap());
                }
            }
            opt.step(&grads).unwrap();
        }
        assert_eq!(params[1].1.to_vec().unwrap(), before, "{}", dev.name());
        assert_ne!(
            params[0].1.to_vec().unwrap(),
            common::data(1, 0),
            "{}",
            dev.name()
        );
    }
}

/// Packed parameters and states survive a checkpoint round trip: saved after fused steps,
/// loaded into a fresh model and optimizer, the next step gives the same parameters.
#[test]
fn fused_state_round_trips_through_a_checkpoint() {
    let _g = common::gpu_lock();
    let Some(dev) = common::gpu() else {
        return;
    };
    let step = |opt: &mut Adam, params: &[(String, Tensor)], gvals: &[Vec<f32>]| {
        let mut grads = Gradients::default();
        for ((_, p), g) in params.iter().zip(gvals) {
            grads.insert(p, Tensor::from_vec(g.clone(), p.dims(), &dev).unwrap());
        }
        opt.step_clipped(&grads, 0.5).unwrap();
    };
    let (params, gvals) = model_params(&dev);
    let mut opt = Adam::new(params.clone(), 0.01);
    step(&mut opt, &params, &gvals);
    step(&mut opt, &params, &gvals);
    let mut saved = params.clone();
    saved.extend(opt.state());
    let bytes = wgml::checkpoint::to_bytes(&saved).unwrap();
    step(&mut opt, &params, &gvals);

    let (fresh, _) = model_params(&dev);
    wgml::checkpoint::load_into_from_bytes(&bytes, "ckpt", &fresh).unwrap();
    let mut opt2 = Adam::new(fresh.clone(), 0.01);
    let loaded = wgml::checkpoint::from_bytes(&bytes, "ckpt", &dev).unwrap();
    opt2.load_state(&loaded).unwrap();
    step(&mut opt2, &fresh, &gvals);
    for ((_, a), (_, b)) in params.iter().zip(&fresh) {
        common::assert_close(
            &b.to_vec().unwrap(),
            &a.to_vec().unwrap(),
            1e-6,
            1e-5,
            "resumed",
        );
    }
}

/// Packed parameters share one buffer: writing one from another (legal for a user, and a
/// usage conflict for WebGPU within one dispatch) reads the source from a copy, and matmuls
/// of two packed parameters read both in place.
#[test]
fn packed_parameters_can_be_written_from_each_other() {
    let _g = common::gpu_lock();
    let Some(dev) = common::gpu() else {
        return;
    };
    let a = Tensor::from_vec(common::data(6, 1), [2, 3], &dev)
        .unwrap()
        .requires_grad();
    let b = Tensor::from_vec(common::data(6, 2), [2, 3], &dev)
        .unwrap()
        .requires_grad();
    let mut opt = Sgd::new(vec![("a".into(), a.clone()), ("b".into(), b.clone())], 0.1);
    let mut grads = Gradients::default();
    grads.insert(&a, Tensor::ones([2, 3], &dev).unwrap());
    grads.insert(&b, Tensor::ones([2, 3], &dev).unwrap());
    opt.step(&grads).unwrap();
    let bv = b.to_vec().unwrap();
    a.assign(&b).unwrap();
    assert_eq!(a.to_vec().unwrap(), bv);
    let ab = a.matmul(&b.t().unwrap()).unwrap().to_vec().unwrap();
    let cpu = Tensor::from_vec(bv.clone(), [2, 3], &Device::cpu()).unwrap();
    let want = cpu.matmul(&cpu.t().unwrap()).unwrap().to_vec().unwrap();
    common::assert_close(&ab, &want, 1e-5, 1e-5, "a @ b^T of packed parameters");
    dev.synchronize().unwrap();
}
