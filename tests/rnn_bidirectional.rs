//! Bidirectional and variable-length `nn::Gru` and `nn::Lstm` (PyTorch's packed-sequence
//! semantics): reference values, finite differences, GPU against CPU, a padded batch against
//! its sequences run one by one, PyTorch's `_reverse` names, bad lengths and states.

// Reference values are printed in float64 by tests/gru_reference.py and kept as printed.
#![allow(clippy::excessive_precision)]

mod common;

use common::{assert_close, data, gpu, gpu_lock};
use wgml::nn::{Gru, GruConfig, Lstm, LstmConfig, Module};
use wgml::rng::Rng;
use wgml::{checkpoint, Device, Error, Result, Tensor};

/// A GRU or an LSTM stack behind one interface: states are `[h]` or `[h, c]`.
enum Rnn {
    Gru(Gru),
    Lstm(Lstm),
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    lstm: bool,
    i: usize,
    h: usize,
    layers: usize,
    bidirectional: bool,
    batch_first: bool,
}

impl Rnn {
    fn new(c: Cfg, seed: u64, dev: &Device) -> Rnn {
        let mut rng = Rng::new(seed);
        if c.lstm {
            let config = LstmConfig {
                bidirectional: c.bidirectional,
                batch_first: c.batch_first,
                ..Default::default()
            };
            Rnn::Lstm(Lstm::new(c.i, c.h, c.layers, config, &mut rng, dev).unwrap())
        } else {
            let config = GruConfig {
                bidirectional: c.bidirectional,
                batch_first: c.batch_first,
                ..Default::default()
            };
            Rnn::Gru(Gru::new(c.i, c.h, c.layers, config, &mut rng, dev).unwrap())
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            Rnn::Gru(m) => m.parameters(),
            Rnn::Lstm(m) => m.parameters(),
        }
    }

    /// `(output, final states)` from `state` (zeros when `None`), over `lengths` if given.
    fn run(
        &self,
        x: &Tensor,
        state: Option<&[Tensor]>,
        lengths: Option<&[usize]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        match self {
            Rnn::Gru(m) => {
                let h0 = state.map(|s| &s[0]);
                let (y, h) = match lengths {
                    Some(l) => m.forward_with_lengths(x, h0, l)?,
                    None => m.forward(x, h0)?,
                };
                Ok((y, vec![h]))
            }
            Rnn::Lstm(m) => {
                let s = state.map(|s| (s[0].clone(), s[1].clone()));
                let (y, (h, c)) = match lengths {
                    Some(l) => m.forward_with_lengths(x, s, l)?,
                    None => m.forward(x, s)?,
                };
                Ok((y, vec![h, c]))
            }
        }
    }
}

/// Sets every parameter of `m` to the values of `vals` (in parameter order) through a
/// safetensors round trip, as a user loads PyTorch weights.
fn load(m: &Rnn, vals: &[Vec<f32>]) {
    let params = m.parameters();
    let dev = Device::cpu();
    let named: Vec<(String, Tensor)> = params
        .iter()
        .zip(vals)
        .map(|((n, t), v)| (n.clone(), Tensor::from_slice(v, t.dims(), &dev).unwrap()))
        .collect();
    let bytes = checkpoint::to_bytes(&named).unwrap();
    checkpoint::load_into_from_bytes(&bytes, "reference", &params).unwrap();
}

/// The deterministic values `tests/gru_reference.py` uses: `((k·a + b) mod 11 - 5) / 10`.
fn fill(n: usize, a: usize, b: usize) -> Vec<f32> {
    (0..n)
        .map(|k| ((k * a + b) % 11) as f32 / 10.0 - 0.5)
        .collect()
}

/// Expected numbers from tests/gru_reference.py (numpy float64 from PyTorch's equations and
/// packed-sequence semantics): a one-layer bidirectional layer, T = 3, B = 3, I = 2, H = 2,
/// lengths [3, 1, 2], zero initial state; L = Σ wy·y + Σ wh·h_n (+ Σ wh[::-1]·c_n).
struct Want {
    y: &'static [f32],
    h: &'static [f32],
    c: &'static [f32],
    dx: &'static [f32],
    dw_hh_rev: &'static [f32],
}

const GRU_WANT: Want = Want {
    y: &[
        0.29731724,
        -0.10312561,
        -0.06208098,
        0.00111729,
        0.29872146,
        -0.10214032,
        -0.03767796,
        0.00000000,
        0.29991279,
        -0.10115434,
        -0.05448708,
        0.00055804,
        0.35838737,
        0.05091847,
        -0.05448708,
        0.00055804,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.37352060,
        0.04685788,
        -0.03767796,
        0.00000000,
        0.40035219,
        0.13427357,
        -0.03767796,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
    ],
    h: &[
        0.40035219,
        0.13427357,
        0.29872146,
        -0.10214032,
        0.37352060,
        0.04685788,
        -0.06208098,
        0.00111729,
        -0.03767796,
        0.00000000,
        -0.05448708,
        0.00055804,
    ],
    c: &[],
    dx: &[
        0.07474689,
        -0.07176966,
        0.21371818,
        -0.22357487,
        -0.01848622,
        0.02648049,
        0.04125308,
        -0.03567375,
        0.00000000,
        0.00000000,
        -0.01068994,
        0.01239342,
        -0.01182339,
        -0.00073214,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
    ],
    dw_hh_rev: &[
        -0.00245864,
        0.00001456,
        0.00003395,
        -0.00000021,
        -0.00031486,
        0.00000122,
        -0.00002232,
        0.00000012,
        -0.01240237,
        0.00007292,
        0.01078492,
        -0.00005762,
    ],
};

const LSTM_WANT: Want = Want {
    y: &[
        0.09639433,
        -0.04655380,
        0.04759395,
        -0.00088213,
        0.09932353,
        -0.04460488,
        0.02943220,
        0.00000000,
        0.10224145,
        -0.04268119,
        0.04215508,
        -0.00044109,
        0.09365632,
        0.04804724,
        0.04215508,
        -0.00044109,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.10155785,
        0.04366164,
        0.02943220,
        0.00000000,
        0.09942909,
        0.09211080,
        0.02943220,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
    ],
    h: &[
        0.09942909,
        0.09211080,
        0.09932353,
        -0.04460488,
        0.10155785,
        0.04366164,
        0.04759395,
        -0.00088213,
        0.02943220,
        0.00000000,
        0.04215508,
        -0.00044109,
    ],
    c: &[
        0.30924748,
        0.17683246,
        0.27660863,
        -0.10705597,
        0.30576443,
        0.08061401,
        0.09987461,
        -0.00197780,
        0.06203927,
        0.00000000,
        0.08856494,
        -0.00098622,
    ],
    dx: &[
        0.01907471,
        -0.00973249,
        -0.01420356,
        -0.01568695,
        -0.02686853,
        0.03913950,
        0.00498946,
        -0.00694234,
        0.00000000,
        0.00000000,
        -0.09614362,
        0.04874174,
        -0.09218527,
        0.06291243,
        0.00000000,
        0.00000000,
        0.00000000,
        0.00000000,
    ],
    dw_hh_rev: &[
        0.00012150,
        -0.00000030,
        0.00000949,
        0.00000004,
        0.00010407,
        -0.00000035,
        -0.00000090,
        0.00000001,
        0.00383338,
        -0.00001003,
        -0.00540223,
        -0.00001303,
        0.00071107,
        -0.00000548,
        0.00001799,
        -0.00000015,
    ],
};

#[test]
fn bidirectional_variable_length_matches_reference_values() {
    let _gpu = gpu_lock();
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    let (t, b, i, h) = (3, 3, 2, 2);
    let lengths = [3, 1, 2];
    for (lstm, want) in [(false, &GRU_WANT), (true, &LSTM_WANT)] {
        let gates = if lstm { 4 } else { 3 };
        let g = gates * h;
        let sizes = [g * i, g * h, g, g, g * i, g * h, g, g];
        let vals: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(p, &n)| fill(n, 3 + 2 * p, p + 1))
            .collect();
        for dev in &devices {
            let cfg = Cfg {
                lstm,
                i,
                h,
                layers: 1,
                bidirectional: true,
                batch_first: false,
            };
            let m = Rnn::new(cfg, 1, dev);
            load(&m, &vals);
            let x = Tensor::from_vec(fill(t * b * i, 5, 2), [t, b, i], dev)
                .unwrap()
                .requires_grad();
            let (y, s) = m.run(&x, None, Some(&lengths)).unwrap();
            let what = |n: &str| format!("{n} ({}, {dev:?})", if lstm { "lstm" } else { "gru" });
            assert_eq!(y.dims(), &[t, b, 2 * h]);
            assert_close(&y.to_vec().unwrap(), want.y, 1e-6, 1e-5, &what("y"));
            assert_eq!(s[0].dims(), &[2, b, h]);
            assert_close(&s[0].to_vec().unwrap(), want.h, 1e-6, 1e-5, &what("h_n"));
            let wy = Tensor::from_vec(fill(t * b * 2 * h, 4, 1), [t, b, 2 * h], dev).unwrap();
            let wh_vals = fill(2 * b * h, 6, 3);
            let wh = Tensor::from_slice(&wh_vals, [2, b, h], dev).unwrap();
            let mut loss = y
                .mul(&wy)
                .unwrap()
                .sum_all()
                .unwrap()
                .add(&s[0].mul(&wh).unwrap().sum_all().unwrap())
                .unwrap();
            if lstm {
                assert_close(&s[1].to_vec().unwrap(), want.c, 1e-6, 1e-5, &what("c_n"));
                // wh[::-1]: the directions swapped.
                let mut wc_vals = wh_vals[b * h..].to_vec();
                wc_vals.extend_from_slice(&wh_vals[..b * h]);
                let wc = Tensor::from_vec(wc_vals, [2, b, h], dev).unwrap();
                loss = loss
                    .add(&s[1].mul(&wc).unwrap().sum_all().unwrap())
                    .unwrap();
            }
            let grads = loss.backward().unwrap();
            let dx = grads.get(&x).unwrap().to_vec().unwrap();
            assert_close(&dx, want.dx, 2e-6, 1e-4, &what("dx"));
            let params = m.parameters();
            assert_eq!(params[5].0, "weight_hh_l0_reverse");
            let dw = grads.get(&params[5].1).unwrap().to_vec().unwrap();
            assert_close(
                &dw,
                want.dw_hh_rev,
                2e-6,
                1e-4,
                &what("dweight_hh_l0_reverse"),
            );
        }
    }
}

/// `L = Σ w·y + Σ_k Σ w_k·state_k` with fixed random weights.
fn loss(y: &Tensor, states: &[Tensor], dev: &Device) -> Result<Tensor> {
    let w = Tensor::from_vec(data(y.numel(), 77), y.dims(), dev)?;
    let mut l = y.mul(&w)?.sum_all()?;
    for (k, s) in states.iter().enumerate() {
        let w = Tensor::from_vec(data(s.numel(), 78 + k as u64), s.dims(), dev)?;
        l = l.add(&s.mul(&w)?.sum_all()?)?;
    }
    Ok(l)
}

/// The input, the initial states and every parameter with their analytic gradients, plus the
/// outputs, for a model on `dev`: `[y, states.., dx, dstates.., dparams..]`.
fn run_all(c: Cfg, t: usize, b: usize, lengths: Option<&[usize]>, dev: &Device) -> Vec<Vec<f32>> {
    let m = Rnn::new(c, 11, dev);
    let d = if c.bidirectional { 2 } else { 1 };
    let xd = if c.batch_first {
        [b, t, c.i]
    } else {
        [t, b, c.i]
    };
    let x = Tensor::from_vec(data(t * b * c.i, 1), xd, dev)
        .unwrap()
        .requires_grad();
    let ns = if c.lstm { 2 } else { 1 };
    let s0: Vec<Tensor> = (0..ns)
        .map(|k| {
            let n = c.layers * d * b * c.h;
            let v = data(n, 2 + k as u64).into_iter().map(|v| v * 0.5).collect();
            Tensor::from_vec(v, [c.layers * d, b, c.h], dev)
                .unwrap()
                .requires_grad()
        })
        .collect();
    let (y, s) = m.run(&x, Some(&s0), lengths).unwrap();
    let g = loss(&y, &s, dev).unwrap().backward().unwrap();
    let mut out = vec![y.to_vec().unwrap()];
    out.extend(s.iter().map(|s| s.to_vec().unwrap()));
    out.push(g.get(&x).unwrap().to_vec().unwrap());
    out.extend(s0.iter().map(|s| g.get(s).unwrap().to_vec().unwrap()));
    for (n, p) in m.parameters() {
        let gp = g.get(&p).unwrap_or_else(|| panic!("no gradient for {n}"));
        out.push(gp.to_vec().unwrap());
    }
    out
}

#[test]
fn gradients_match_finite_differences() {
    let cpu = Device::cpu();
    let (t, b) = (4, 3);
    let lengths = [2, 4, 1];
    for lstm in [false, true] {
        let c = Cfg {
            lstm,
            i: 3,
            h: 2,
            layers: 2,
            bidirectional: true,
            batch_first: false,
        };
        let m = Rnn::new(c, 5, &cpu);
        let ns = if lstm { 2 } else { 1 };
        let mut leaves: Vec<(String, Tensor)> = vec![(
            "x".into(),
            Tensor::from_vec(data(t * b * 3, 1), [t, b, 3], &cpu).unwrap(),
        )];
        for k in 0..ns {
            let v = data(4 * b * 2, 2 + k as u64)
                .iter()
                .map(|v| v * 0.5)
                .collect();
            leaves.push((
                format!("s{k}"),
                Tensor::from_vec(v, [4, b, 2], &cpu).unwrap(),
            ));
        }
        let params = m.parameters();
        let eval = |leaves: &[(String, Tensor)]| -> Result<Tensor> {
            let (y, s) = m.run(
                &leaves[0].1,
                Some(
                    &leaves[1..1 + ns]
                        .iter()
                        .map(|l| l.1.clone())
                        .collect::<Vec<_>>(),
                ),
                Some(&lengths),
            )?;
            loss(&y, &s, &cpu)
        };
        let grad_leaves: Vec<(String, Tensor)> = leaves
            .iter()
            .map(|(n, t)| (n.clone(), t.clone().requires_grad()))
            .collect();
        let g = eval(&grad_leaves).unwrap().backward().unwrap();
        let mut checks: Vec<(String, Tensor, Vec<f32>)> = grad_leaves
            .iter()
            .map(|(n, t)| (n.clone(), t.clone(), g.get(t).unwrap().to_vec().unwrap()))
            .collect();
        checks.extend(
            params
                .iter()
                .map(|(n, p)| (n.clone(), p.clone(), g.get(p).unwrap().to_vec().unwrap())),
        );
        let eps = 1e-2f32;
        for (k, (name, tensor, analytic)) in checks.iter().enumerate() {
            let base = tensor.to_vec().unwrap();
            let numeric: Vec<f32> = (0..base.len())
                .map(|e| {
                    let f = |delta: f32| -> f64 {
                        let mut v = base.clone();
                        v[e] += delta;
                        let moved = Tensor::from_vec(v, tensor.dims(), &cpu).unwrap();
                        if k <= ns {
                            let mut l = leaves.clone();
                            l[k].1 = moved;
                            eval(&l).unwrap().item().unwrap() as f64
                        } else {
                            // A parameter: write the moved values into the module's tensor.
                            let bytes = checkpoint::to_bytes(&[(name.clone(), moved)]).unwrap();
                            checkpoint::load_into_from_bytes(
                                &bytes,
                                "fd",
                                &[(name.clone(), tensor.clone())],
                            )
                            .unwrap();
                            let r = eval(&leaves).unwrap().item().unwrap() as f64;
                            let orig = Tensor::from_vec(base.clone(), tensor.dims(), &cpu).unwrap();
                            let bytes = checkpoint::to_bytes(&[(name.clone(), orig)]).unwrap();
                            checkpoint::load_into_from_bytes(
                                &bytes,
                                "fd",
                                &[(name.clone(), tensor.clone())],
                            )
                            .unwrap();
                            r
                        }
                    };
                    ((f(eps) - f(-eps)) / (2.0 * eps as f64)) as f32
                })
                .collect();
            let kind = if lstm { "lstm" } else { "gru" };
            assert_close(analytic, &numeric, 2e-3, 2e-2, &format!("d{name} ({kind})"));
        }
    }
}

#[test]
fn gpu_matches_cpu() {
    let _gpu = gpu_lock();
    let Some(gpu) = gpu() else { return };
    let cpu = Device::cpu();
    for (c, t, b, lengths) in [
        (
            Cfg {
                lstm: false,
                i: 3,
                h: 5,
                layers: 2,
                bidirectional: true,
                batch_first: true,
            },
            4,
            3,
            Some(vec![4, 1, 3]),
        ),
        (
            Cfg {
                lstm: true,
                i: 3,
                h: 5,
                layers: 2,
                bidirectional: true,
                batch_first: false,
            },
            4,
            3,
            Some(vec![2, 4, 1]),
        ),
        (
            Cfg {
                lstm: true,
                i: 1,
                h: 3,
                layers: 1,
                bidirectional: true,
                batch_first: false,
            },
            1,
            1,
            None,
        ),
        (
            Cfg {
                lstm: false,
                i: 2,
                h: 7,
                layers: 1,
                bidirectional: false,
                batch_first: false,
            },
            3,
            2,
            Some(vec![1, 3]),
        ),
        // The per-step kernels (H > 256), the LSTM's c_n taken at each row's last step.
        (
            Cfg {
                lstm: true,
                i: 2,
                h: 257,
                layers: 1,
                bidirectional: true,
                batch_first: false,
            },
            3,
            2,
            Some(vec![2, 3]),
        ),
    ] {
        let l = lengths.as_deref();
        let (g, w) = (run_all(c, t, b, l, &gpu), run_all(c, t, b, l, &cpu));
        assert_eq!(g.len(), w.len());
        for (k, (a, r)) in g.iter().zip(&w).enumerate() {
            assert_close(
                a,
                r,
                2e-5,
                2e-4,
                &format!("result {k} of {c:?} {lengths:?}"),
            );
        }
    }
}

/// A padded batch gives each sequence's results run alone: outputs at valid steps, zeros at
/// padded ones, and final states; the padding's values do not matter.
#[test]
fn padded_batch_equals_sequences_one_by_one() {
    let _gpu = gpu_lock();
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    let (t, b, i, h) = (5, 3, 2, 3);
    let lengths = [3, 5, 1];
    for dev in &devices {
        for lstm in [false, true] {
            let c = Cfg {
                lstm,
                i,
                h,
                layers: 2,
                bidirectional: true,
                batch_first: false,
            };
            let m = Rnn::new(c, 4, dev);
            let xv = data(t * b * i, 9);
            let x = Tensor::from_slice(&xv, [t, b, i], dev).unwrap();
            let (y, s) = m.run(&x, None, Some(&lengths)).unwrap();
            // Other padding: the same results.
            let mut other = data(t * b * i, 10);
            for s in 0..t {
                for (r, &l) in lengths.iter().enumerate() {
                    if s < l {
                        let k = (s * b + r) * i;
                        other[k..k + i].copy_from_slice(&xv[k..k + i]);
                    }
                }
            }
            let xo = Tensor::from_vec(other, [t, b, i], dev).unwrap();
            let (yo, so) = m.run(&xo, None, Some(&lengths)).unwrap();
            let kind = format!("{} on {dev:?}", if lstm { "lstm" } else { "gru" });
            assert_close(&yo.to_vec().unwrap(), &y.to_vec().unwrap(), 0.0, 0.0, &kind);
            for (a, r) in so.iter().zip(&s) {
                assert_close(&a.to_vec().unwrap(), &r.to_vec().unwrap(), 0.0, 0.0, &kind);
            }
            let yv = y.to_vec().unwrap();
            for (r, &l) in lengths.iter().enumerate() {
                let xr = x.narrow(1, r, 1).unwrap().narrow(0, 0, l).unwrap();
                let (ya, sa) = m.run(&xr, None, None).unwrap();
                let ya = ya.to_vec().unwrap();
                for s in 0..t {
                    let got = &yv[(s * b + r) * 2 * h..(s * b + r + 1) * 2 * h];
                    let want = if s < l {
                        ya[s * 2 * h..(s + 1) * 2 * h].to_vec()
                    } else {
                        vec![0.0; 2 * h]
                    };
                    assert_close(got, &want, 1e-6, 1e-5, &format!("y[{s}, {r}] {kind}"));
                }
                for (k, (full, alone)) in s.iter().zip(&sa).enumerate() {
                    let got = full.narrow(1, r, 1).unwrap().to_vec().unwrap();
                    let want = alone.to_vec().unwrap();
                    assert_close(
                        &got,
                        &want,
                        1e-6,
                        1e-5,
                        &format!("state {k} of row {r} {kind}"),
                    );
                }
            }
        }
    }
}

#[test]
fn pytorch_reverse_names_and_shapes() {
    let cpu = Device::cpu();
    let (i, h) = (5, 3);
    for lstm in [false, true] {
        let c = Cfg {
            lstm,
            i,
            h,
            layers: 2,
            bidirectional: true,
            batch_first: false,
        };
        let g = if lstm { 4 * h } else { 3 * h };
        let got: Vec<(String, Vec<usize>)> = Rnn::new(c, 1, &cpu)
            .parameters()
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        let mut want = Vec::new();
        for l in 0..2 {
            for rev in ["", "_reverse"] {
                let input = if l == 0 { i } else { 2 * h };
                want.push((format!("weight_ih_l{l}{rev}"), vec![g, input]));
                want.push((format!("weight_hh_l{l}{rev}"), vec![g, h]));
                want.push((format!("bias_ih_l{l}{rev}"), vec![g]));
                want.push((format!("bias_hh_l{l}{rev}"), vec![g]));
            }
        }
        assert_eq!(got, want);
        let m = Rnn::new(c, 1, &cpu);
        let x = Tensor::zeros([4, 2, i], &cpu).unwrap();
        let (y, s) = m.run(&x, None, None).unwrap();
        assert_eq!(y.dims(), &[4, 2, 2 * h]);
        for s in &s {
            assert_eq!(s.dims(), &[4, 2, h]);
        }
    }
}

#[test]
fn bad_lengths_and_states_are_clear_errors() {
    let cpu = Device::cpu();
    for lstm in [false, true] {
        let c = Cfg {
            lstm,
            i: 2,
            h: 3,
            layers: 1,
            bidirectional: true,
            batch_first: false,
        };
        let m = Rnn::new(c, 1, &cpu);
        let name = if lstm { "Lstm" } else { "Gru" };
        let x = Tensor::zeros([4, 2, 2], &cpu).unwrap();
        let msg = |r: Result<(Tensor, Vec<Tensor>)>| match r {
            Err(e @ Error::Invalid { .. }) => e.to_string(),
            Err(e) => panic!("wrong error kind: {e:?}"),
            Ok(_) => panic!("{name} accepted bad input"),
        };
        let e = msg(m.run(&x, None, Some(&[4])));
        assert!(
            e.contains(name) && e.contains("1 lengths") && e.contains("batch size 2"),
            "{e}"
        );
        let e = msg(m.run(&x, None, Some(&[4, 5])));
        assert!(
            e.contains(name) && e.contains("lengths[1] = 5") && e.contains("1..=4"),
            "{e}"
        );
        let e = msg(m.run(&x, None, Some(&[0, 2])));
        assert!(e.contains("lengths[0] = 0"), "{e}");
        // A one-directional state for a bidirectional stack.
        let ns = if lstm { 2 } else { 1 };
        let bad = vec![Tensor::zeros([1, 2, 3], &cpu).unwrap(); ns];
        let e = msg(m.run(&x, Some(&bad), Some(&[4, 2])));
        assert!(
            e.contains("h0") && e.contains("[1, 2, 3]") && e.contains("[2, 2, 3]"),
            "{e}"
        );
        let good = vec![Tensor::zeros([2, 2, 3], &cpu).unwrap(); ns];
        assert!(m.run(&x, Some(&good), Some(&[4, 2])).is_ok());
        let e = msg(m.run(
            &Tensor::zeros([4, 2, 3], &cpu).unwrap(),
            None,
            Some(&[4, 2]),
        ));
        assert!(e.contains(name) && e.contains("[4, 2, 3]"), "{e}");
    }
}
