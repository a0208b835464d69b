//! The fused GRU op and `nn::Gru`/`nn::GruCell`: reference values, finite-difference checks of
//! every gradient, GPU against CPU on awkward sizes (per-step and whole-sequence kernels),
//! PyTorch's names and init, bad input.

// Reference values are printed in float64 by tests/gru_reference.py and kept as printed.
#![allow(clippy::excessive_precision)]

mod common;

use common::{assert_close, data, gpu, gpu_lock};
use wgml::nn::{Gru, GruCell, GruConfig, Module};
use wgml::rng::Rng;
use wgml::{Device, Error, Result, Tensor};

/// Sizes of one layer: T steps, B batch, I input, H hidden.
#[derive(Clone, Copy, Debug)]
struct Sz {
    t: usize,
    b: usize,
    i: usize,
    h: usize,
}

impl Sz {
    /// Shapes of x, h0, w_ih, w_hh, b_ih, b_hh.
    fn dims(self) -> [Vec<usize>; 6] {
        let Sz { t, b, i, h } = self;
        [
            vec![t, b, i],
            vec![b, h],
            vec![3 * h, i],
            vec![3 * h, h],
            vec![3 * h],
            vec![3 * h],
        ]
    }
}

const NAMES: [&str; 6] = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"];

/// The deterministic values `tests/gru_reference.py` uses: `((k·a + b) mod 11 - 5) / 10`.
fn fill(n: usize, a: usize, b: usize) -> Vec<f32> {
    (0..n)
        .map(|k| ((k * a + b) % 11) as f32 / 10.0 - 0.5)
        .collect()
}

fn tensors(vals: &[Vec<f32>], s: Sz, dev: &Device, grad: bool) -> Vec<Tensor> {
    vals.iter()
        .zip(s.dims())
        .map(|(v, d)| {
            let t = Tensor::from_slice(v, d, dev).unwrap();
            if grad {
                t.requires_grad()
            } else {
                t
            }
        })
        .collect()
}

fn run(ts: &[Tensor]) -> Result<(Tensor, Tensor)> {
    ts[0].gru(&ts[1], &ts[2], &ts[3], &ts[4], &ts[5])
}

/// `L = Σ w_out·output + Σ w_h·h_n`, so both outputs' gradient paths are checked.
fn loss(ts: &[Tensor], w: &[Tensor; 2]) -> Result<Tensor> {
    let (y, h) = run(ts)?;
    y.mul(&w[0])?.sum_all()?.add(&h.mul(&w[1])?.sum_all()?)
}

fn loss_weights(s: Sz, dev: &Device, seed: u64) -> [Tensor; 2] {
    let Sz { t, b, h, .. } = s;
    [
        Tensor::from_vec(data(t * b * h, seed), [t, b, h], dev).unwrap(),
        Tensor::from_vec(data(b * h, seed + 1), [b, h], dev).unwrap(),
    ]
}

/// Random inputs scaled to keep the gates away from saturation.
fn inputs(s: Sz, seed: u64) -> Vec<Vec<f32>> {
    s.dims()
        .iter()
        .enumerate()
        .map(|(k, d)| {
            let n = d.iter().product();
            data(n, seed + k as u64)
                .into_iter()
                .map(|v| v * 0.4)
                .collect()
        })
        .collect()
}

/// Analytic gradients of all six inputs.
fn grads(vals: &[Vec<f32>], s: Sz, dev: &Device, w: &[Tensor; 2]) -> Vec<Vec<f32>> {
    let ts = tensors(vals, s, dev, true);
    let g = loss(&ts, w).unwrap().backward().unwrap();
    ts.iter()
        .zip(NAMES)
        .map(|(t, n)| {
            g.get(t)
                .unwrap_or_else(|| panic!("no gradient for {n}"))
                .to_vec()
                .unwrap()
        })
        .collect()
}

#[test]
fn matches_reference_values() {
    // Expected numbers from tests/gru_reference.py (numpy float64, PyTorch's equations;
    // gradients by central differences).
    let s = Sz {
        t: 2,
        b: 2,
        i: 3,
        h: 2,
    };
    let cpu = Device::cpu();
    let vals = vec![
        fill(12, 7, 1),
        fill(4, 3, 2),
        fill(18, 4, 3),
        fill(12, 6, 5),
        fill(6, 2, 7),
        fill(6, 9, 1),
    ];
    let want_y = [
        -0.35531157,
        -0.23767212,
        0.05231301,
        -0.37682574,
        -0.23762345,
        -0.18836419,
        0.02583678,
        -0.18412301,
    ];
    let want_h = [-0.23762345, -0.18836419, 0.02583678, -0.18412301];
    let w = [
        Tensor::from_vec(fill(8, 5, 3), [2, 2, 2], &cpu).unwrap(),
        Tensor::from_vec(fill(4, 7, 2), [2, 2], &cpu).unwrap(),
    ];
    let want: [&[f32]; 6] = [
        &[
            0.03168525,
            0.03851934,
            0.01666904,
            -0.05757960,
            0.10978673,
            0.05870508,
            0.00311451,
            0.08225416,
            0.02570490,
            -0.10618421,
            0.22194928,
            0.01354748,
        ],
        &[-0.18553007, 0.25628054, -0.44590754, 0.04659862],
        &[
            0.00828919,
            0.00465837,
            -0.00707777,
            0.00044574,
            -0.00853228,
            0.00517629,
            0.06722482,
            -0.01791598,
            0.00999830,
            -0.01418546,
            0.01670947,
            -0.01793929,
            -0.03904532,
            -0.16195589,
            0.28595118,
            -0.04623569,
            0.09699928,
            -0.02135835,
        ],
        &[
            -0.01200667,
            -0.00305837,
            0.01503035,
            0.00188300,
            -0.03729644,
            0.03780870,
            -0.01171872,
            -0.01179054,
            0.03947999,
            0.17461633,
            -0.12828003,
            0.01176323,
        ],
        &[
            0.02934035,
            -0.03427143,
            -0.06978570,
            0.08662189,
            -1.11976768,
            0.29589407,
        ],
        &[
            0.02934035,
            -0.03427143,
            -0.06978570,
            0.08662189,
            -0.58607853,
            0.21455984,
        ],
    ];
    let mut devices = vec![cpu.clone()];
    devices.extend(gpu());
    let _gpu = gpu_lock();
    for dev in &devices {
        let ts = tensors(&vals, s, dev, false);
        let (y, h) = run(&ts).unwrap();
        assert_close(&y.to_vec().unwrap(), &want_y, 1e-6, 1e-5, "output");
        assert_close(&h.to_vec().unwrap(), &want_h, 1e-6, 1e-5, "h_n");
        let w = [0, 1].map(|k| Tensor::from_vec(w[k].to_vec().unwrap(), w[k].dims(), dev).unwrap());
        let got = grads(&vals, s, dev, &w);
        for k in 0..6 {
            assert_close(
                &got[k],
                want[k],
                2e-6,
                1e-4,
                &format!("{} on {dev:?}", NAMES[k]),
            );
        }
    }
}

#[test]
fn every_gradient_matches_finite_differences() {
    let cpu = Device::cpu();
    for (n, s) in [
        Sz {
            t: 4,
            b: 2,
            i: 3,
            h: 5,
        },
        Sz {
            t: 1,
            b: 1,
            i: 2,
            h: 3,
        },
        Sz {
            t: 3,
            b: 3,
            i: 1,
            h: 2,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let vals = inputs(s, 100 + 10 * n as u64);
        let w = loss_weights(s, &cpu, 7 + n as u64);
        let analytic = grads(&vals, s, &cpu, &w);
        let f = |v: &[Vec<f32>]| -> f64 {
            loss(&tensors(v, s, &cpu, false), &w)
                .unwrap()
                .item()
                .unwrap() as f64
        };
        let eps = 1e-2f32;
        for k in 0..6 {
            let numeric: Vec<f32> = (0..vals[k].len())
                .map(|e| {
                    let (mut p, mut m) = (vals.to_vec(), vals.to_vec());
                    p[k][e] += eps;
                    m[k][e] -= eps;
                    ((f(&p) - f(&m)) / (2.0 * eps as f64)) as f32
                })
                .collect();
            assert_close(
                &analytic[k],
                &numeric,
                2e-3,
                2e-2,
                &format!("d{} {s:?}", NAMES[k]),
            );
        }
    }
}

#[test]
fn gpu_matches_cpu_forward_and_backward() {
    let _gpu = gpu_lock();
    let Some(gpu) = gpu() else { return };
    let cpu = Device::cpu();
    for (n, s) in [
        Sz {
            t: 1,
            b: 1,
            i: 3,
            h: 5,
        },
        Sz {
            t: 5,
            b: 3,
            i: 7,
            h: 6,
        },
        Sz {
            t: 3,
            b: 1,
            i: 1,
            h: 1,
        },
        Sz {
            t: 2,
            b: 4,
            i: 9,
            h: 13,
        },
        // Workgroups of 128 and 256 invocations in the whole-sequence kernels, idle lanes
        // included; the largest H they take; the first that runs step by step.
        Sz {
            t: 4,
            b: 3,
            i: 5,
            h: 65,
        },
        Sz {
            t: 3,
            b: 2,
            i: 4,
            h: 129,
        },
        Sz {
            t: 2,
            b: 2,
            i: 3,
            h: 256,
        },
        Sz {
            t: 3,
            b: 2,
            i: 3,
            h: 257,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut vals = inputs(s, 200 + 10 * n as u64);
        // Weights of PyTorch's scale (±1/√H, here ±2/√H) keep wide layers out of saturation,
        // where `1 − n²` cancels and the two backends' tanh differ in the last bits.
        let k = (4.0 / s.h as f32).sqrt().min(1.0);
        vals[3].iter_mut().for_each(|v| *v *= k);
        let outs = |dev: &Device| -> Vec<Vec<f32>> {
            let ts = tensors(&vals, s, dev, false);
            let (y, h) = run(&ts).unwrap();
            [y, h].iter().map(|t| t.to_vec().unwrap()).collect()
        };
        let (g, c) = (outs(&gpu), outs(&cpu));
        for (k, name) in ["output", "h_n"].iter().enumerate() {
            assert_close(&g[k], &c[k], 1e-5, 1e-4, &format!("{name} {s:?}"));
        }
        let (wg, wc) = (loss_weights(s, &gpu, 9), loss_weights(s, &cpu, 9));
        let (gg, gc) = (grads(&vals, s, &gpu, &wg), grads(&vals, s, &cpu, &wc));
        for k in 0..6 {
            assert_close(&gg[k], &gc[k], 1e-5, 1e-4, &format!("d{} {s:?}", NAMES[k]));
        }
    }
}

/// Dispatches of one layer: for H up to 256 the recurrence is one whole-sequence dispatch each
/// way, whatever T; beyond, a matmul and a cell kernel per step.
#[test]
fn gpu_layer_dispatches_per_step() {
    let _gpu = gpu_lock();
    let Some(gpu) = gpu() else { return };
    for (h, t) in [(4, 7), (4, 19), (257, 3)] {
        let s = Sz { t, b: 2, i: 3, h };
        let vals = inputs(s, 5);
        let ts = tensors(&vals, s, &gpu, true);
        let w = loss_weights(s, &gpu, 1);
        loss(&ts, &w).unwrap().backward().unwrap(); // builds the pipelines
        let before = wgml::gpu::dispatch_count();
        let (y, _) = run(&ts).unwrap();
        let forward = wgml::gpu::dispatch_count() - before;
        assert_eq!(y.dims(), &[t, 2, h]);
        // The copy of h0, the input projection, then the whole sequence or per step a matmul
        // and a cell.
        let want = if h <= 256 { 3 } else { 2 + 2 * t as u64 };
        assert_eq!(forward, want, "forward dispatches for T = {t}, H = {h}");
        let l = loss(&ts, &w).unwrap();
        let before = wgml::gpu::dispatch_count();
        l.backward().unwrap();
        let backward = wgml::gpu::dispatch_count() - before;
        eprintln!("T {t}, H {h}: {forward} dispatches forward, {backward} for the loss's backward");
        if h <= 256 && t == 19 {
            assert!(backward < 20, "{backward} backward dispatches for T = {t}");
        }
    }
}

/// A stacked `Gru` (3 layers, I != H, state given, batch-first) on both devices: outputs,
/// state and the gradients of the input, the state and every parameter.
#[test]
fn stacked_gru_gpu_matches_cpu() {
    let _gpu = gpu_lock();
    let Some(gpu) = gpu() else { return };
    let (t, b, i, h, l) = (4, 3, 5, 7, 3);
    let config = GruConfig {
        batch_first: true,
        ..GruConfig::default()
    };
    let run = |dev: &Device| -> Vec<Vec<f32>> {
        let m = Gru::new(i, h, l, config, &mut Rng::new(3), dev).unwrap();
        let x = Tensor::from_vec(data(b * t * i, 1), [b, t, i], dev)
            .unwrap()
            .requires_grad();
        let h0 = Tensor::from_vec(data(l * b * h, 2), [l, b, h], dev)
            .unwrap()
            .requires_grad();
        let (y, hn) = m.forward(&x, Some(&h0)).unwrap();
        assert_eq!(y.dims(), &[b, t, h]);
        assert_eq!(hn.dims(), &[l, b, h]);
        let wy = Tensor::from_vec(data(b * t * h, 3), [b, t, h], dev).unwrap();
        let wh = Tensor::from_vec(data(l * b * h, 4), [l, b, h], dev).unwrap();
        let loss = y
            .mul(&wy)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&hn.mul(&wh).unwrap().sum_all().unwrap())
            .unwrap();
        let g = loss.backward().unwrap();
        let mut out = vec![y.to_vec().unwrap(), hn.to_vec().unwrap()];
        out.push(g.get(&x).unwrap().to_vec().unwrap());
        out.push(g.get(&h0).unwrap().to_vec().unwrap());
        for (_, p) in m.parameters() {
            out.push(g.get(&p).unwrap().to_vec().unwrap());
        }
        out
    };
    let (g, c) = (run(&gpu), run(&Device::cpu()));
    assert_eq!(g.len(), 4 + 4 * l);
    for (k, (a, b)) in g.iter().zip(&c).enumerate() {
        assert_close(a, b, 1e-5, 1e-4, &format!("stacked GRU result {k}"));
    }
}

/// `GruCell` is one step of the layer op, on both devices, and feeding its state back runs
/// the sequence.
#[test]
fn cell_steps_equal_the_layer() {
    let _gpu = gpu_lock();
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    let (t, b, i, h) = (3, 2, 4, 5);
    for dev in &devices {
        let cell = GruCell::new(i, h, &mut Rng::new(9), dev).unwrap();
        let p: Vec<Tensor> = cell.parameters().into_iter().map(|(_, t)| t).collect();
        let x = Tensor::from_vec(data(t * b * i, 5), [t, b, i], dev).unwrap();
        let h0 = Tensor::from_vec(data(b * h, 6), [b, h], dev).unwrap();
        let (y, hn) = x.gru(&h0, &p[0], &p[1], &p[2], &p[3]).unwrap();
        let mut state = h0.clone();
        for s in 0..t {
            let xs = x.narrow(0, s, 1).unwrap().squeeze(0).unwrap();
            state = cell.forward(&xs, Some(&state)).unwrap();
            let ys = y.narrow(0, s, 1).unwrap().squeeze(0).unwrap();
            assert_close(
                &state.to_vec().unwrap(),
                &ys.to_vec().unwrap(),
                1e-6,
                1e-5,
                &format!("step {s} on {dev:?}"),
            );
        }
        assert_close(
            &state.to_vec().unwrap(),
            &hn.to_vec().unwrap(),
            1e-6,
            1e-5,
            "h_n",
        );
        // A zero state is the default.
        let x0 = x.narrow(0, 0, 1).unwrap().squeeze(0).unwrap();
        let z = Tensor::zeros([b, h], dev).unwrap();
        assert_eq!(
            Module::forward(&cell, &x0).unwrap().to_vec().unwrap(),
            cell.forward(&x0, Some(&z)).unwrap().to_vec().unwrap()
        );
    }
}

#[test]
fn pytorch_names_shapes_and_init() {
    let cpu = Device::cpu();
    let (i, h) = (5, 3);
    let m = Gru::new(i, h, 2, GruConfig::default(), &mut Rng::new(1), &cpu).unwrap();
    let got: Vec<(String, Vec<usize>)> = m
        .parameters()
        .iter()
        .map(|(n, t)| (n.clone(), t.dims().to_vec()))
        .collect();
    let want: Vec<(String, Vec<usize>)> = [
        ("weight_ih_l0", vec![9, 5]),
        ("weight_hh_l0", vec![9, 3]),
        ("bias_ih_l0", vec![9]),
        ("bias_hh_l0", vec![9]),
        ("weight_ih_l1", vec![9, 3]),
        ("weight_hh_l1", vec![9, 3]),
        ("bias_ih_l1", vec![9]),
        ("bias_hh_l1", vec![9]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    assert_eq!(got, want);
    let cell = GruCell::new(i, h, &mut Rng::new(1), &cpu).unwrap();
    let names: Vec<String> = cell.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]);
    // PyTorch's init: uniform within ±1/√H (and not all at one end).
    let bound = 1.0 / (h as f32).sqrt();
    for (n, t) in m.parameters() {
        let v = t.to_vec().unwrap();
        assert!(v.iter().all(|v| v.abs() <= bound), "{n} outside ±{bound}");
        assert!(v.iter().any(|v| v.abs() > bound / 4.0), "{n} too small");
    }
}

#[test]
fn dropout_between_layers_only_in_training() {
    let cpu = Device::cpu();
    let config = GruConfig {
        dropout: 0.5,
        seed: 3,
        ..GruConfig::default()
    };
    let mut m = Gru::new(3, 4, 2, config, &mut Rng::new(2), &cpu).unwrap();
    let x = Tensor::from_vec(data(5 * 2 * 3, 1), [5, 2, 3], &cpu).unwrap();
    m.set_training(false);
    let a = Module::forward(&m, &x).unwrap().to_vec().unwrap();
    assert_eq!(a, Module::forward(&m, &x).unwrap().to_vec().unwrap());
    m.set_training(true);
    let b = Module::forward(&m, &x).unwrap().to_vec().unwrap();
    assert_ne!(a, b, "dropout had no effect in training");
    // One layer: nothing to drop between layers.
    let mut one = Gru::new(3, 4, 1, config, &mut Rng::new(2), &cpu).unwrap();
    one.set_training(true);
    let c = Module::forward(&one, &x).unwrap().to_vec().unwrap();
    one.set_training(false);
    assert_eq!(c, Module::forward(&one, &x).unwrap().to_vec().unwrap());
}

#[test]
fn bad_input_is_a_clear_error() {
    let cpu = Device::cpu();
    let m = Gru::new(4, 3, 2, GruConfig::default(), &mut Rng::new(1), &cpu).unwrap();
    let msg = |r: Result<(Tensor, Tensor)>| match r {
        Err(e @ Error::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("wrong error kind: {e:?}"),
        Ok(_) => panic!("accepted bad input"),
    };
    let e = msg(m.forward(&Tensor::zeros([5, 4], &cpu).unwrap(), None));
    assert!(e.contains("Gru") && e.contains("[5, 4]"), "{e}");
    let e = msg(m.forward(&Tensor::zeros([5, 2, 6], &cpu).unwrap(), None));
    assert!(e.contains("Gru") && e.contains("[5, 2, 6]"), "{e}");
    let x = Tensor::zeros([5, 2, 4], &cpu).unwrap();
    let e = msg(m.forward(&x, Some(&Tensor::zeros([1, 2, 3], &cpu).unwrap())));
    assert!(
        e.contains("h0") && e.contains("[1, 2, 3]") && e.contains("[2, 2, 3]"),
        "{e}"
    );
    assert!(m
        .forward(&x, Some(&Tensor::zeros([2, 2, 3], &cpu).unwrap()))
        .is_ok());
    assert!(Gru::new(0, 3, 1, GruConfig::default(), &mut Rng::new(1), &cpu).is_err());
    // The op itself.
    let s = Sz {
        t: 2,
        b: 2,
        i: 3,
        h: 2,
    };
    let ts = tensors(&inputs(s, 1), s, &cpu, false);
    let e = ts[0]
        .reshape([4, 3])
        .unwrap()
        .gru(&ts[1], &ts[2], &ts[3], &ts[4], &ts[5])
        .unwrap_err();
    assert!(
        e.to_string().contains("gru") && e.to_string().contains("rank 3"),
        "{e}"
    );
    let e = ts[0]
        .gru(&ts[1], &ts[3], &ts[3], &ts[4], &ts[5])
        .unwrap_err();
    assert!(
        e.to_string().contains("weight_ih") && e.to_string().contains("[6, 3]"),
        "{e}"
    );
    let e = ts[0]
        .gru(&ts[1], &ts[2], &ts[2], &ts[4], &ts[5])
        .unwrap_err();
    assert!(e.to_string().contains("weight_hh"), "{e}");
    let wrong_b = Tensor::zeros([3, 2], &cpu).unwrap();
    let e = ts[0]
        .gru(&wrong_b, &ts[2], &ts[3], &ts[4], &ts[5])
        .unwrap_err();
    assert!(
        e.to_string().contains("h0") && e.to_string().contains("[3, 2]"),
        "{e}"
    );
    let e = ts[0]
        .gru(&ts[1], &ts[2], &ts[3], &ts[1], &ts[5])
        .unwrap_err();
    assert!(e.to_string().contains("bias_ih"), "{e}");
    let cell = GruCell::new(3, 2, &mut Rng::new(1), &cpu).unwrap();
    let e = cell
        .forward(&Tensor::zeros([2, 4], &cpu).unwrap(), None)
        .unwrap_err();
    assert!(e.to_string().contains("GruCell"), "{e}");
    let e = cell
        .forward(
            &Tensor::zeros([2, 3], &cpu).unwrap(),
            Some(&Tensor::zeros([3, 2], &cpu).unwrap()),
        )
        .unwrap_err();
    assert!(e.to_string().contains("[3, 2]"), "{e}");
    if let Some(gpu) = gpu() {
        let g = Tensor::zeros([2, 2], &gpu).unwrap();
        let e = ts[0].gru(&g, &ts[2], &ts[3], &ts[4], &ts[5]).unwrap_err();
        assert!(matches!(e, Error::DeviceMismatch { .. }), "{e:?}");
    }
}
