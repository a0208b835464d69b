//! The fused LSTM op and `nn::Lstm`/`nn::LstmCell`: reference values, finite-difference checks
//! of every gradient, GPU against CPU on awkward sizes, safetensors round trips, bad input.

mod common;

use common::{assert_close, data, gpu};
use wgml::nn::{Lstm, LstmCell, LstmConfig, Module};
use wgml::rng::Rng;
use wgml::{checkpoint, Device, Error, Result, Tensor};

/// Sizes of one layer: T steps, B batch, I input, H hidden.
#[derive(Clone, Copy, Debug)]
struct Sz {
    t: usize,
    b: usize,
    i: usize,
    h: usize,
}

impl Sz {
    /// Element counts of x, h0, c0, w_ih, w_hh, b_ih, b_hh.
    fn lens(self) -> [usize; 7] {
        let Sz { t, b, i, h } = self;
        [t * b * i, b * h, b * h, 4 * h * i, 4 * h * h, 4 * h, 4 * h]
    }
    fn dims(self) -> [Vec<usize>; 7] {
        let Sz { t, b, i, h } = self;
        [
            vec![t, b, i],
            vec![b, h],
            vec![b, h],
            vec![4 * h, i],
            vec![4 * h, h],
            vec![4 * h],
            vec![4 * h],
        ]
    }
}

/// The deterministic values `tests/lstm_reference.py` uses: `((k·a + b) mod 11 - 5) / 10`.
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

/// A layer's `(output, h_n, c_n)`.
type Outs = Result<(Tensor, Tensor, Tensor)>;

fn run(ts: &[Tensor]) -> Outs {
    ts[0].lstm(&ts[1], &ts[2], &ts[3], &ts[4], &ts[5], &ts[6])
}

/// `L = Σ w_out·output + Σ w_h·h_n + Σ w_c·c_n`, so every output's gradient path is checked.
fn loss(ts: &[Tensor], w: &[Tensor; 3]) -> Result<Tensor> {
    let (y, h, c) = run(ts)?;
    y.mul(&w[0])?
        .sum_all()?
        .add(&h.mul(&w[1])?.sum_all()?)?
        .add(&c.mul(&w[2])?.sum_all()?)
}

fn loss_weights(s: Sz, dev: &Device, seed: u64) -> [Tensor; 3] {
    let Sz { t, b, h, .. } = s;
    [
        Tensor::from_vec(data(t * b * h, seed), [t, b, h], dev).unwrap(),
        Tensor::from_vec(data(b * h, seed + 1), [b, h], dev).unwrap(),
        Tensor::from_vec(data(b * h, seed + 2), [b, h], dev).unwrap(),
    ]
}

/// Random inputs scaled to keep the gates away from saturation.
fn inputs(s: Sz, seed: u64) -> Vec<Vec<f32>> {
    s.lens()
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            data(n, seed + k as u64)
                .into_iter()
                .map(|v| v * 0.4)
                .collect()
        })
        .collect()
}

const NAMES: [&str; 7] = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"];

/// Analytic gradients of all seven inputs.
fn grads(vals: &[Vec<f32>], s: Sz, dev: &Device, w: &[Tensor; 3]) -> Vec<Vec<f32>> {
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

/// The dispatch counter is process-wide: the tests of this file that launch GPU work take this
/// lock, so `gpu_layer_dispatches_per_step` counts its own dispatches only.
fn exclusive_gpu() -> std::sync::MutexGuard<'static, ()> {
    static GPU: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GPU.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn matches_reference_values() {
    // Expected numbers from tests/lstm_reference.py (float64, PyTorch's equations).
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
        fill(4, 5, 4),
        fill(24, 4, 3),
        fill(16, 6, 5),
        fill(8, 2, 7),
        fill(8, 9, 1),
    ];
    let ts = tensors(&vals, s, &cpu, false);
    let (y, _, c) = run(&ts).unwrap();
    let want_y = [
        -0.12035385,
        -0.13848123,
        -0.07468556,
        -0.03478948,
        -0.10592406,
        -0.15595089,
        -0.07725933,
        -0.08412552,
    ];
    assert_close(&y.to_vec().unwrap(), &want_y, 1e-6, 1e-5, "output");
    let want_c = [-0.21663258, -0.21145715, -0.1595057, -0.11426825];
    assert_close(&c.to_vec().unwrap(), &want_c, 1e-6, 1e-5, "c_n");
    // L = Σ w_out·output + Σ w_c·c_n (no h_n term).
    let w = [
        Tensor::from_vec(fill(8, 5, 3), [2, 2, 2], &cpu).unwrap(),
        Tensor::zeros([2, 2], &cpu).unwrap(),
        Tensor::from_vec(fill(4, 7, 2), [2, 2], &cpu).unwrap(),
    ];
    let want: [&[f32]; 7] = [
        &[
            0.0456391, -0.0193482, -0.0018819, -0.0410264, 0.0954753, 0.0055940, 0.0576748,
            -0.0243433, 0.0147413, -0.1036215, 0.1795949, 0.0013873,
        ],
        &[0.0826597, -0.0018819, -0.0959324, 0.0055940],
        &[-0.1370486, 0.1997943, -0.1463901, -0.0378244],
        &[
            -0.0093174, 0.0153557, -0.0144722, 0.0129671, -0.0140136, 0.0042126, 0.0135951,
            0.0084552, -0.0195341, -0.0243902, 0.0094105, 0.0017391, -0.0432615, -0.0857733,
            0.1559051, -0.0114291, 0.0927011, 0.0014404, 0.0026014, 0.0098113, -0.0201366,
            0.0051181, -0.0051950, 0.0031639,
        ],
        &[
            -0.0093067, -0.0097124, 0.0152629, -0.0000917, -0.0034143, -0.0121932, -0.0120788,
            0.0059028, 0.0244428, 0.1106332, -0.1045127, -0.0105511, 0.0005567, -0.0159192,
            0.0038268, 0.0019913,
        ],
        &[
            0.0745699, -0.0455655, 0.0699731, 0.0191786, -0.604196, 0.2281518, 0.0748698,
            -0.0208973,
        ],
        &[
            0.0745699, -0.0455655, 0.0699731, 0.0191786, -0.604196, 0.2281518, 0.0748698,
            -0.0208973,
        ],
    ];
    let got = grads(&vals, s, &cpu, &w);
    for k in 0..7 {
        assert_close(&got[k], want[k], 2e-6, 1e-4, NAMES[k]);
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
        for k in 0..7 {
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
    let _gpu = exclusive_gpu();
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
        Sz {
            t: 6,
            b: 2,
            i: 16,
            h: 16,
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
            t: 2,
            b: 2,
            i: 3,
            h: 257,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let vals = inputs(s, 200 + 10 * n as u64);
        let outs = |dev: &Device| -> Vec<Vec<f32>> {
            let ts = tensors(&vals, s, dev, false);
            let (y, h, c) = run(&ts).unwrap();
            [y, h, c].iter().map(|t| t.to_vec().unwrap()).collect()
        };
        let (g, c) = (outs(&gpu), outs(&cpu));
        for (k, name) in ["output", "h_n", "c_n"].iter().enumerate() {
            assert_close(&g[k], &c[k], 1e-5, 1e-4, &format!("{name} {s:?}"));
        }
        let (wg, wc) = (loss_weights(s, &gpu, 9), loss_weights(s, &cpu, 9));
        let (gg, gc) = (grads(&vals, s, &gpu, &wg), grads(&vals, s, &cpu, &wc));
        for k in 0..7 {
            assert_close(&gg[k], &gc[k], 1e-5, 1e-4, &format!("d{} {s:?}", NAMES[k]));
        }
    }
}

/// Dispatches of one layer's forward and backward: for H up to 256 the recurrence is one
/// whole-sequence dispatch each way, whatever T; beyond, a matmul and a cell kernel per step.
#[test]
fn gpu_layer_dispatches_per_step() {
    let _gpu = exclusive_gpu();
    let Some(gpu) = gpu() else { return };
    for (h, t) in [(4, 7), (4, 19), (257, 3)] {
        let s = Sz { t, b: 2, i: 3, h };
        let vals = inputs(s, 5);
        let ts = tensors(&vals, s, &gpu, true);
        let w = loss_weights(s, &gpu, 1);
        loss(&ts, &w).unwrap().backward().unwrap(); // builds the pipelines
        let before = wgml::gpu::dispatch_count();
        let (y, _, _) = run(&ts).unwrap();
        let forward = wgml::gpu::dispatch_count() - before;
        assert_eq!(y.dims(), &[t, 2, h]);
        let l = loss(&ts, &w).unwrap();
        let before = wgml::gpu::dispatch_count();
        l.backward().unwrap();
        let backward = wgml::gpu::dispatch_count() - before;
        if h <= 256 {
            // The copy of c0, the input projection, the whole sequence.
            assert_eq!(forward, 3, "forward dispatches for T = {t}, H = {h}");
        } else {
            // The copy of c0, the input projection, then a matmul and a cell per step.
            assert_eq!(
                forward,
                2 + 2 * t as u64,
                "forward dispatches for T = {t}, H = {h}"
            );
        }
        eprintln!("T {t}, H {h}: {forward} dispatches forward, {backward} for the loss's backward");
        if h <= 256 && t == 19 {
            // Independent of T: the recurrence, and a few large products for the gradients.
            assert!(backward < 20, "{backward} backward dispatches for T = {t}");
        }
    }
}

/// A stacked `Lstm` (3 layers, I != H, state given) on both devices: outputs, state and the
/// gradients of the input, the state and every parameter.
#[test]
fn stacked_lstm_gpu_matches_cpu() {
    let _gpu = exclusive_gpu();
    let Some(gpu) = gpu() else { return };
    let (t, b, i, h, l) = (4, 3, 5, 6, 3);
    let x = data(t * b * i, 1);
    let (h0, c0) = (data(l * b * h, 2), data(l * b * h, 3));
    let run = |dev: &Device| -> Vec<Vec<f32>> {
        let m = Lstm::new(i, h, l, LstmConfig::default(), &mut Rng::new(4), dev).unwrap();
        let x = Tensor::from_slice(&x, [t, b, i], dev)
            .unwrap()
            .requires_grad();
        let h0 = Tensor::from_slice(&h0, [l, b, h], dev)
            .unwrap()
            .requires_grad();
        let c0 = Tensor::from_slice(&c0, [l, b, h], dev)
            .unwrap()
            .requires_grad();
        let (y, (hn, cn)) = m.forward(&x, Some((h0.clone(), c0.clone()))).unwrap();
        let w = Tensor::from_vec(data(t * b * h, 5), [t, b, h], dev).unwrap();
        let loss = y
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&hn.sum_all().unwrap())
            .unwrap()
            .add(&cn.mul_scalar(0.5).unwrap().sum_all().unwrap())
            .unwrap();
        let g = loss.backward().unwrap();
        let mut v = vec![
            y.to_vec().unwrap(),
            hn.to_vec().unwrap(),
            cn.to_vec().unwrap(),
        ];
        for p in [&x, &h0, &c0] {
            v.push(g.get(p).unwrap().to_vec().unwrap());
        }
        for (name, p) in m.parameters() {
            let gp = g
                .get(&p)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            v.push(gp.to_vec().unwrap());
        }
        v
    };
    let (g, c) = (run(&gpu), run(&Device::cpu()));
    assert_eq!(g.len(), 6 + 4 * l);
    for (k, (a, b)) in g.iter().zip(&c).enumerate() {
        assert_close(a, b, 2e-5, 1e-4, &format!("stacked result {k}"));
    }
}

#[test]
fn cell_is_one_step_of_the_layer_and_matches_on_gpu() {
    let _gpu = exclusive_gpu();
    let (b, i, h) = (3, 4, 7);
    let check = |dev: &Device| -> Vec<f32> {
        let cell = LstmCell::new(i, h, &mut Rng::new(11), dev).unwrap();
        let names: Vec<String> = cell.parameters().into_iter().map(|p| p.0).collect();
        assert_eq!(names, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]);
        let x = Tensor::from_vec(data(b * i, 12), [b, i], dev).unwrap();
        let hc = Tensor::from_vec(data(b * h, 13), [b, h], dev).unwrap();
        let cc = Tensor::from_vec(data(b * h, 14), [b, h], dev).unwrap();
        let (h1, c1) = cell.forward(&x, Some((hc.clone(), cc.clone()))).unwrap();
        // The same step by hand from composed primitive ops.
        let p = cell.parameters();
        let z = x
            .matmul(&p[0].1.t().unwrap())
            .unwrap()
            .add(&p[2].1)
            .unwrap()
            .add(&hc.matmul(&p[1].1.t().unwrap()).unwrap())
            .unwrap()
            .add(&p[3].1)
            .unwrap();
        let gate = |k: usize| z.narrow(1, k * h, h).unwrap();
        let (ig, fg) = (gate(0).sigmoid().unwrap(), gate(1).sigmoid().unwrap());
        let (gg, og) = (gate(2).tanh().unwrap(), gate(3).sigmoid().unwrap());
        let c_want = fg.mul(&cc).unwrap().add(&ig.mul(&gg).unwrap()).unwrap();
        let h_want = og.mul(&c_want.tanh().unwrap()).unwrap();
        let what = format!("cell on {}", dev.name());
        assert_close(
            &c1.to_vec().unwrap(),
            &c_want.to_vec().unwrap(),
            1e-6,
            1e-5,
            &what,
        );
        assert_close(
            &h1.to_vec().unwrap(),
            &h_want.to_vec().unwrap(),
            1e-6,
            1e-5,
            &what,
        );
        [h1.to_vec().unwrap(), c1.to_vec().unwrap()].concat()
    };
    let want = check(&Device::cpu());
    if let Some(gpu) = gpu() {
        assert_close(&check(&gpu), &want, 1e-5, 1e-4, "cell gpu vs cpu");
    }
}

#[test]
fn batch_first_is_a_transpose() {
    let cpu = Device::cpu();
    let (t, b, i, h) = (3, 2, 4, 5);
    let cfg = LstmConfig {
        batch_first: true,
        ..Default::default()
    };
    let bf = Lstm::new(i, h, 2, cfg, &mut Rng::new(3), &cpu).unwrap();
    let tf = Lstm::new(i, h, 2, LstmConfig::default(), &mut Rng::new(3), &cpu).unwrap();
    let x = Tensor::from_vec(data(t * b * i, 1), [t, b, i], &cpu).unwrap();
    let (y1, (h1, _)) = tf.forward(&x, None).unwrap();
    let (y2, (h2, _)) = bf.forward(&x.transpose(0, 1).unwrap(), None).unwrap();
    assert_eq!(y2.dims(), &[b, t, h]);
    assert_close(
        &y2.transpose(0, 1).unwrap().to_vec().unwrap(),
        &y1.to_vec().unwrap(),
        0.0,
        0.0,
        "batch_first output",
    );
    assert_close(
        &h2.to_vec().unwrap(),
        &h1.to_vec().unwrap(),
        0.0,
        0.0,
        "h_n",
    );
}

#[test]
fn dropout_between_layers_only_in_training() {
    let cpu = Device::cpu();
    let cfg = LstmConfig {
        dropout: 0.5,
        seed: 9,
        ..Default::default()
    };
    let mut m = Lstm::new(3, 4, 2, cfg, &mut Rng::new(1), &cpu).unwrap();
    let plain = Lstm::new(3, 4, 2, LstmConfig::default(), &mut Rng::new(1), &cpu).unwrap();
    let x = Tensor::from_vec(data(2 * 3 * 3, 2), [2, 3, 3], &cpu).unwrap();
    let want = Module::forward(&plain, &x).unwrap().to_vec().unwrap();
    let train = Module::forward(&m, &x).unwrap().to_vec().unwrap();
    assert_ne!(train, want, "dropout had no effect in training");
    m.set_training(false);
    let eval = Module::forward(&m, &x).unwrap().to_vec().unwrap();
    assert_close(&eval, &want, 0.0, 0.0, "evaluation ignores dropout");
}

#[test]
fn pytorch_names_and_safetensors_round_trip() {
    let cpu = Device::cpu();
    let (i, h) = (5, 3);
    let a = Lstm::new(i, h, 2, LstmConfig::default(), &mut Rng::new(1), &cpu).unwrap();
    let b = Lstm::new(i, h, 2, LstmConfig::default(), &mut Rng::new(2), &cpu).unwrap();
    let params = a.parameters();
    let got: Vec<(String, Vec<usize>)> = params
        .iter()
        .map(|(n, t)| (n.clone(), t.dims().to_vec()))
        .collect();
    let want: Vec<(String, Vec<usize>)> = [
        ("weight_ih_l0", vec![12, 5]),
        ("weight_hh_l0", vec![12, 3]),
        ("bias_ih_l0", vec![12]),
        ("bias_hh_l0", vec![12]),
        ("weight_ih_l1", vec![12, 3]),
        ("weight_hh_l1", vec![12, 3]),
        ("bias_ih_l1", vec![12]),
        ("bias_hh_l1", vec![12]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    assert_eq!(got, want);
    // PyTorch's init: every value within ±1/√H.
    let bound = 1.0 / (h as f32).sqrt();
    for (n, t) in &params {
        assert!(
            t.to_vec().unwrap().iter().all(|v| v.abs() <= bound),
            "{n} outside ±{bound}"
        );
    }
    let x = Tensor::from_vec(data(4 * 2 * i, 3), [4, 2, i], &cpu).unwrap();
    let ya = Module::forward(&a, &x).unwrap().to_vec().unwrap();
    assert_ne!(Module::forward(&b, &x).unwrap().to_vec().unwrap(), ya);
    let path = std::env::temp_dir().join(format!("wgml_lstm_{}.safetensors", std::process::id()));
    checkpoint::save(&path, &params).unwrap();
    checkpoint::load_into(&path, &b.parameters()).unwrap();
    let _ = std::fs::remove_file(&path);
    let yb = Module::forward(&b, &x).unwrap().to_vec().unwrap();
    assert_close(&yb, &ya, 0.0, 0.0, "outputs after load_into");
}

#[test]
fn bad_input_is_a_clear_error() {
    let _gpu = exclusive_gpu();
    let cpu = Device::cpu();
    let m = Lstm::new(4, 3, 2, LstmConfig::default(), &mut Rng::new(1), &cpu).unwrap();
    let msg = |r: Result<(Tensor, wgml::nn::LstmState)>| match r {
        Err(e @ Error::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("wrong error kind: {e:?}"),
        Ok(_) => panic!("accepted bad input"),
    };
    let x2 = Tensor::zeros([5, 4], &cpu).unwrap();
    let e = msg(m.forward(&x2, None));
    assert!(e.contains("Lstm") && e.contains("[5, 4]"), "{e}");
    let xi = Tensor::zeros([5, 2, 6], &cpu).unwrap();
    let e = msg(m.forward(&xi, None));
    assert!(e.contains("[5, 2, 6]"), "{e}");
    let x = Tensor::zeros([5, 2, 4], &cpu).unwrap();
    let good = Tensor::zeros([2, 2, 3], &cpu).unwrap();
    let bad = Tensor::zeros([1, 2, 3], &cpu).unwrap();
    let e = msg(m.forward(&x, Some((bad, good.clone()))));
    assert!(e.contains("h0") && e.contains("[1, 2, 3]"), "{e}");
    let e = msg(m.forward(
        &x,
        Some((good.clone(), Tensor::zeros([2, 3, 3], &cpu).unwrap())),
    ));
    assert!(e.contains("c0") && e.contains("[2, 3, 3]"), "{e}");
    assert!(m.forward(&x, Some((good.clone(), good))).is_ok());
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
        .lstm(&ts[1], &ts[2], &ts[3], &ts[4], &ts[5], &ts[6]);
    assert!(e.unwrap_err().to_string().contains("rank 3"));
    let e = ts[0]
        .lstm(&ts[1], &ts[2], &ts[4], &ts[4], &ts[5], &ts[6])
        .unwrap_err();
    assert!(e.to_string().contains("weight_ih"), "{e}");
    let e = ts[0].lstm(&ts[1], &ts[1].t().unwrap(), &ts[3], &ts[4], &ts[5], &ts[6]);
    assert!(e.is_ok(), "a square state of the right shape is fine");
    let wrong_b = Tensor::zeros([3, 2], &cpu).unwrap();
    let e = ts[0]
        .lstm(&wrong_b, &ts[2], &ts[3], &ts[4], &ts[5], &ts[6])
        .unwrap_err();
    assert!(e.to_string().contains("h0"), "{e}");
    let e = ts[0]
        .lstm(&ts[1], &ts[2], &ts[3], &ts[3], &ts[5], &ts[6])
        .unwrap_err();
    assert!(e.to_string().contains("weight_hh"), "{e}");
    let cell = LstmCell::new(3, 2, &mut Rng::new(1), &cpu).unwrap();
    assert!(cell
        .forward(&Tensor::zeros([2, 4], &cpu).unwrap(), None)
        .is_err());
    assert!(cell
        .forward(&Tensor::zeros([2, 2, 3], &cpu).unwrap(), None)
        .is_err());
    if let Some(gpu) = gpu() {
        let g = Tensor::zeros([2, 2], &gpu).unwrap();
        let e = ts[0]
            .lstm(&g, &ts[2], &ts[3], &ts[4], &ts[5], &ts[6])
            .unwrap_err();
        assert!(matches!(e, Error::DeviceMismatch { .. }), "{e:?}");
    }
}

/// The same layer from primitive ops (matmul, add, narrow, sigmoid, tanh, mul, cat): an
/// independent reference for the fused op's forward and, through autograd, its backward.
fn composed(ts: &[Tensor]) -> Outs {
    let (t, b, i) = (ts[0].dims()[0], ts[0].dims()[1], ts[0].dims()[2]);
    let h = ts[4].dims()[1];
    let zx = ts[0].reshape([t * b, i])?.matmul(&ts[3].t()?)?;
    let (mut hh, mut cc) = (ts[1].clone(), ts[2].clone());
    let mut outs = Vec::new();
    for s in 0..t {
        let z = zx
            .narrow(0, s * b, b)?
            .add(&ts[5])?
            .add(&hh.matmul(&ts[4].t()?)?)?
            .add(&ts[6])?;
        let gate = |k: usize| z.narrow(1, k * h, h);
        let (ig, fg) = (gate(0)?.sigmoid()?, gate(1)?.sigmoid()?);
        let (gg, og) = (gate(2)?.tanh()?, gate(3)?.sigmoid()?);
        cc = fg.mul(&cc)?.add(&ig.mul(&gg)?)?;
        hh = og.mul(&cc.tanh()?)?;
        outs.push(hh.unsqueeze(0)?);
    }
    let y = Tensor::cat(&outs.iter().collect::<Vec<_>>(), 0)?;
    Ok((y, hh, cc))
}

/// Steps with B·H >= 2048 cells are split across threads by hidden units (H = 131 splits
/// unevenly), and products of 2^20 multiply-adds or more (the input projection and weight
/// gradients of the T = 4, B = 32, I = 64, H = 128 case) are split into blocks of rows or
/// columns; forward and every gradient must still match the composed reference.
#[test]
fn threaded_steps_match_composed_ops() {
    let cpu = Device::cpu();
    for s in [
        Sz {
            t: 3,
            b: 16,
            i: 5,
            h: 131,
        },
        Sz {
            t: 2,
            b: 64,
            i: 3,
            h: 32,
        },
        Sz {
            t: 2,
            b: 8,
            i: 3,
            h: 256,
        },
        Sz {
            t: 4,
            b: 32,
            i: 64,
            h: 128,
        },
    ] {
        let vals = inputs(s, 300);
        let w = loss_weights(s, &cpu, 301);
        let run_with = |f: fn(&[Tensor]) -> Outs| {
            let ts = tensors(&vals, s, &cpu, true);
            let (y, h, c) = f(&ts).unwrap();
            let l = y
                .mul(&w[0])
                .unwrap()
                .sum_all()
                .unwrap()
                .add(&h.mul(&w[1]).unwrap().sum_all().unwrap())
                .unwrap()
                .add(&c.mul(&w[2]).unwrap().sum_all().unwrap())
                .unwrap();
            let g = l.backward().unwrap();
            let mut v = vec![
                y.to_vec().unwrap(),
                h.to_vec().unwrap(),
                c.to_vec().unwrap(),
            ];
            v.extend(ts.iter().map(|t| g.get(t).unwrap().to_vec().unwrap()));
            v
        };
        let (fused, reference) = (run_with(run), run_with(composed));
        let names = [
            "output", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh",
        ];
        for (k, name) in names.iter().enumerate() {
            assert_close(
                &fused[k],
                &reference[k],
                2e-5,
                1e-4,
                &format!("{name} {s:?}"),
            );
        }
    }
}

/// Running a sequence in two halves, feeding the returned state back in, equals one pass.
#[test]
fn returned_state_continues_the_sequence() {
    let cpu = Device::cpu();
    let (t, b, i, h) = (6, 2, 3, 4);
    let m = Lstm::new(i, h, 2, LstmConfig::default(), &mut Rng::new(8), &cpu).unwrap();
    let x = Tensor::from_vec(data(t * b * i, 9), [t, b, i], &cpu).unwrap();
    let (y, (hn, cn)) = m.forward(&x, None).unwrap();
    let (y1, st) = m.forward(&x.narrow(0, 0, 2).unwrap(), None).unwrap();
    let (y2, (hn2, cn2)) = m.forward(&x.narrow(0, 2, 4).unwrap(), Some(st)).unwrap();
    let joined = Tensor::cat(&[&y1, &y2], 0).unwrap();
    assert_close(
        &joined.to_vec().unwrap(),
        &y.to_vec().unwrap(),
        1e-6,
        1e-5,
        "output",
    );
    assert_close(
        &hn2.to_vec().unwrap(),
        &hn.to_vec().unwrap(),
        1e-6,
        1e-5,
        "h_n",
    );
    assert_close(
        &cn2.to_vec().unwrap(),
        &cn.to_vec().unwrap(),
        1e-6,
        1e-5,
        "c_n",
    );
}
