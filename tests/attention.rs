//! `scaled_dot_product_attention`: the CPU reference against a composition of existing ops and
//! against finite differences, the GPU kernels against the CPU, memory, and bad input.

mod common;

use common::{assert_close, data};
use wgml::nn::functional::scaled_dot_product_attention as sdpa;
use wgml::{Device, Error, Result, Tensor};

/// One attention problem: q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv).
#[derive(Clone, Copy, Debug)]
struct Case {
    b: usize,
    h: usize,
    hkv: usize,
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
    causal: bool,
    /// The mask's shape kind: none, full (B, H, Tq, Tk), (1, 1, Tq, Tk) or (B, 1, 1, Tk).
    mask: Mask,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mask {
    None,
    Full,
    Shared,
    KeyPadding,
}

impl Case {
    fn new(b: usize, h: usize, hkv: usize, tq: usize, tk: usize, d: usize) -> Case {
        Case {
            b,
            h,
            hkv,
            tq,
            tk,
            d,
            dv: d,
            causal: false,
            mask: Mask::None,
        }
    }
    fn causal(self) -> Case {
        Case {
            causal: true,
            ..self
        }
    }
    fn mask(self, mask: Mask) -> Case {
        Case { mask, ..self }
    }
    fn dv(self, dv: usize) -> Case {
        Case { dv, ..self }
    }
    fn q_dims(&self) -> [usize; 4] {
        [self.b, self.h, self.tq, self.d]
    }
    fn k_dims(&self) -> [usize; 4] {
        [self.b, self.hkv, self.tk, self.d]
    }
    fn v_dims(&self) -> [usize; 4] {
        [self.b, self.hkv, self.tk, self.dv]
    }
    fn mask_dims(&self) -> Option<Vec<usize>> {
        match self.mask {
            Mask::None => None,
            Mask::Full => Some(vec![self.b, self.h, self.tq, self.tk]),
            Mask::Shared => Some(vec![1, 1, self.tq, self.tk]),
            Mask::KeyPadding => Some(vec![self.b, 1, 1, self.tk]),
        }
    }
    /// Host data for q, k, v and the mask (values in [-1, 1), about a quarter of the mask
    /// entries -inf, but never a whole row of a `Full` or `Shared` mask; key 0 stays open).
    fn host(&self, seed: u64) -> [Vec<f32>; 4] {
        let n = |d: [usize; 4]| d.iter().product::<usize>();
        let half = |v: Vec<f32>| v.into_iter().map(|x| x * 0.5).collect::<Vec<f32>>();
        let mask = self.mask_dims().map_or(Vec::new(), |dims| {
            let len: usize = dims.iter().product();
            let last = dims[3];
            data(len, seed + 3)
                .into_iter()
                .enumerate()
                .map(|(i, x)| {
                    if x < -1.0 && i % last != 0 {
                        f32::NEG_INFINITY
                    } else {
                        x * 0.5
                    }
                })
                .collect()
        });
        [
            half(data(n(self.q_dims()), seed)),
            half(data(n(self.k_dims()), seed + 1)),
            half(data(n(self.v_dims()), seed + 2)),
            mask,
        ]
    }
    fn tensors(
        &self,
        host: &[Vec<f32>; 4],
        dev: &Device,
    ) -> (Tensor, Tensor, Tensor, Option<Tensor>) {
        let t = |v: &Vec<f32>, d: Vec<usize>| Tensor::from_slice(v, d, dev).unwrap();
        (
            t(&host[0], self.q_dims().to_vec()),
            t(&host[1], self.k_dims().to_vec()),
            t(&host[2], self.v_dims().to_vec()),
            self.mask_dims().map(|d| t(&host[3], d)),
        )
    }
}

/// Attention composed from existing ops (matmul, softmax): the plain definition.
fn naive(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
    scale: f32,
) -> Result<Tensor> {
    let (h, hkv) = (q.dims()[1], k.dims()[1]);
    let expand = |t: &Tensor| -> Result<Tensor> {
        let d = t.dims().to_vec();
        t.unsqueeze(2)?
            .broadcast_to([d[0], d[1], h / hkv, d[2], d[3]])?
            .reshape([d[0], h, d[2], d[3]])
    };
    let (k, v) = (expand(k)?, expand(v)?);
    let mut s = q.matmul(&k.transpose(-1, -2)?)?.mul_scalar(scale)?;
    if let Some(m) = mask {
        s = s.add(m)?;
    }
    if causal {
        let (tq, tk) = (q.dims()[2], k.dims()[2]);
        let c: Vec<f32> = (0..tq * tk)
            .map(|x| {
                if x % tk > x / tk {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        s = s.add(&Tensor::from_vec(c, [tq, tk], q.device())?)?;
    }
    s.softmax()?.matmul(&v)
}

fn fused(c: &Case, host: &[Vec<f32>; 4], dev: &Device) -> Tensor {
    let (q, k, v, m) = c.tensors(host, dev);
    sdpa(&q, &k, &v, m.as_ref(), c.causal, None).unwrap_or_else(|e| panic!("{c:?}: {e}"))
}

#[test]
fn cpu_forward_matches_composed_ops() {
    let cpu = Device::cpu();
    let cases = [
        Case::new(1, 1, 1, 1, 1, 1),
        Case::new(2, 3, 3, 5, 7, 4),
        Case::new(2, 4, 2, 9, 9, 8).causal(),
        Case::new(1, 4, 1, 7, 3, 16).causal(), // Tq > Tk: rows past Tk see every key
        Case::new(1, 2, 2, 3, 11, 8).causal(), // Tq < Tk: keys past Tq never seen
        Case::new(2, 2, 1, 70, 130, 8).mask(Mask::Full), // several row blocks
        Case::new(2, 2, 2, 6, 5, 8).mask(Mask::Shared).dv(3),
        Case::new(3, 2, 1, 4, 6, 5).mask(Mask::KeyPadding).dv(9),
        Case::new(1, 1, 1, 150, 150, 8).causal(),
    ];
    for (i, c) in cases.iter().enumerate() {
        let host = c.host(10 * i as u64);
        let got = fused(c, &host, &cpu);
        assert_eq!(got.dims(), &[c.b, c.h, c.tq, c.dv]);
        let (q, k, v, m) = c.tensors(&host, &cpu);
        let want = naive(&q, &k, &v, m.as_ref(), c.causal, 1.0 / (c.d as f32).sqrt()).unwrap();
        let what = format!("{c:?}");
        assert_close(
            &got.to_vec().unwrap(),
            &want.to_vec().unwrap(),
            1e-5,
            1e-4,
            &what,
        );
    }
    // An explicit scale.
    let c = Case::new(1, 2, 1, 4, 5, 3);
    let host = c.host(7);
    let (q, k, v, _) = c.tensors(&host, &cpu);
    let got = sdpa(&q, &k, &v, None, false, Some(2.5)).unwrap();
    let want = naive(&q, &k, &v, None, false, 2.5).unwrap();
    assert_close(
        &got.to_vec().unwrap(),
        &want.to_vec().unwrap(),
        1e-5,
        1e-4,
        "scale 2.5",
    );
}

/// Known values: one query, two keys with equal scores average the values; a causal first
/// row sees only key 0.
#[test]
fn cpu_forward_by_hand() {
    let cpu = Device::cpu();
    let q = Tensor::from_slice(&[0.0, 0.0, 1.0, 0.0], [1, 1, 2, 2], &cpu).unwrap();
    let k = Tensor::from_slice(&[1.0, 0.0, 0.0, 1.0], [1, 1, 2, 2], &cpu).unwrap();
    let v = Tensor::from_slice(&[2.0, 4.0, 6.0, 8.0], [1, 1, 2, 2], &cpu).unwrap();
    let o = sdpa(&q, &k, &v, None, false, Some(1.0))
        .unwrap()
        .to_vec()
        .unwrap();
    // Row 0: scores (0, 0) → (4, 6). Row 1: scores (1, 0) → weights (e, 1)/(e + 1).
    let w = std::f32::consts::E / (std::f32::consts::E + 1.0);
    let want = [
        4.0,
        6.0,
        2.0 * w + 6.0 * (1.0 - w),
        4.0 * w + 8.0 * (1.0 - w),
    ];
    assert_close(&o, &want, 1e-6, 1e-6, "by hand");
    let o = sdpa(&q, &k, &v, None, true, Some(1.0))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(&o[..2], &[2.0, 4.0], 1e-6, 0.0, "causal row 0");
}

/// `sum(O · W)` for fixed weights `W`.
fn loss_of(o: &Tensor, seed: u64) -> Tensor {
    let w = Tensor::from_vec(data(o.numel(), seed), o.shape().clone(), o.device()).unwrap();
    o.mul(&w).unwrap().sum_all().unwrap()
}

/// Gradients of q, k, v (and the mask) by autograd: [dq, dk, dv, dmask].
fn analytic(c: &Case, host: &[Vec<f32>; 4], dev: &Device) -> Vec<Vec<f32>> {
    let (q, k, v, m) = c.tensors(host, dev);
    let (q, k, v) = (q.requires_grad(), k.requires_grad(), v.requires_grad());
    let m = m.map(|m| m.requires_grad());
    let o = sdpa(&q, &k, &v, m.as_ref(), c.causal, None).unwrap();
    let g = loss_of(&o, 77).backward().unwrap();
    let mut out: Vec<Vec<f32>> = [&q, &k, &v]
        .iter()
        .map(|t| g.get(t).expect("a gradient").to_vec().unwrap())
        .collect();
    if let Some(m) = &m {
        out.push(g.get(m).expect("a mask gradient").to_vec().unwrap());
    }
    out
}

#[test]
fn cpu_backward_matches_finite_differences() {
    let cpu = Device::cpu();
    let cases = [
        Case::new(1, 2, 2, 3, 4, 3),
        Case::new(2, 4, 2, 5, 5, 4).causal(),
        Case::new(1, 3, 1, 4, 6, 2).dv(3),
        Case::new(1, 2, 1, 3, 5, 4).mask(Mask::Full),
        Case::new(2, 2, 2, 3, 4, 2).mask(Mask::KeyPadding),
        Case::new(1, 2, 1, 4, 3, 2).mask(Mask::Shared),
    ];
    for (ci, c) in cases.iter().enumerate() {
        let host = c.host(100 + ci as u64);
        let grads = analytic(c, &host, &cpu);
        let loss =
            |h: &[Vec<f32>; 4]| -> f64 { loss_of(&fused(c, h, &cpu), 77).item().unwrap() as f64 };
        let eps = 1e-2f32;
        for (which, g) in grads.iter().enumerate() {
            let mut numeric = Vec::with_capacity(g.len());
            for i in 0..host[which].len() {
                if host[which][i].is_infinite() {
                    numeric.push(0.0); // a masked-out entry: no gradient
                    continue;
                }
                let (mut p, mut m) = (host.clone(), host.clone());
                p[which][i] += eps;
                m[which][i] -= eps;
                numeric.push(((loss(&p) - loss(&m)) / (2.0 * eps as f64)) as f32);
            }
            let what = format!("{c:?} d{}", ["q", "k", "v", "mask"][which]);
            assert_close(g, &numeric, 2e-3, 2e-2, &what);
            assert!(g.iter().any(|x| x.abs() > 1e-3), "{what}: all gradients ~0");
        }
    }
}

/// Rows whose every key is masked give zeros, and zero gradients, never NaN.
#[test]
fn fully_masked_rows_give_zeros() {
    let cpu = Device::cpu();
    let c = Case::new(2, 2, 1, 4, 5, 3).mask(Mask::Full);
    let mut host = c.host(5);
    // Row (b 1, h 0, i 2) fully masked: row (1·H + 0)·Tq + 2 = 10 of the (B·H·Tq) rows.
    let r = 10;
    let row = r * 5;
    host[3][row..row + 5].fill(f32::NEG_INFINITY);
    let o = fused(&c, &host, &cpu).to_vec().unwrap();
    let orow = r * 3;
    assert_eq!(&o[orow..orow + 3], &[0.0; 3]);
    assert!(o.iter().all(|x| x.is_finite()));
    let g = analytic(&c, &host, &cpu);
    for (i, g) in g.iter().enumerate() {
        assert!(g.iter().all(|x| x.is_finite()), "gradient {i} not finite");
    }
    assert_eq!(&g[0][orow..orow + 3], &[0.0; 3], "dq of the masked row");
    assert_eq!(&g[3][row..row + 5], &[0.0; 5], "dmask of the masked row");
}

/// q, k and v as permuted views of one fused projection `[B, T, 3, H, D]`, as a Transformer
/// makes them: the same values and gradients as contiguous copies.
#[test]
fn strided_inputs_match_contiguous() {
    let cpu = Device::cpu();
    let (b, t, h, d) = (2, 6, 3, 4);
    let x = Tensor::from_vec(data(b * t * 3 * h * d, 9), [b, t, 3, h, d], &cpu)
        .unwrap()
        .requires_grad();
    let split = |x: &Tensor, i: usize| -> Tensor {
        x.narrow(2, i, 1)
            .unwrap()
            .reshape([b, t, h, d])
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap()
    };
    let (q, k, v) = (split(&x, 0), split(&x, 1), split(&x, 2));
    assert!(!q.is_contiguous());
    let o = sdpa(&q, &k, &v, None, true, None).unwrap();
    let gx = loss_of(&o, 3)
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec()
        .unwrap();
    let xc = Tensor::from_vec(x.to_vec().unwrap(), [b, t, 3, h, d], &cpu)
        .unwrap()
        .requires_grad();
    let dense = |i: usize| split(&xc, i).contiguous().unwrap();
    let oc = sdpa(&dense(0), &dense(1), &dense(2), None, true, None).unwrap();
    let gc = loss_of(&oc, 3)
        .backward()
        .unwrap()
        .get(&xc)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(
        &o.to_vec().unwrap(),
        &oc.to_vec().unwrap(),
        0.0,
        0.0,
        "strided forward",
    );
    assert_close(&gx, &gc, 1e-6, 1e-5, "strided gradients");
}

#[test]
fn bad_input_is_an_error() {
    let cpu = Device::cpu();
    let t = |d: &[usize]| Tensor::zeros(d.to_vec(), &cpu).unwrap();
    let q = t(&[2, 4, 5, 8]);
    let kv = t(&[2, 2, 6, 8]);
    let msg = |r: Result<Tensor>| -> String {
        let e = r.expect_err("an error");
        let s = e.to_string();
        assert!(s.contains("scaled_dot_product_attention"), "{s}");
        s
    };
    let s = msg(sdpa(&t(&[4, 5, 8]), &kv, &kv, None, false, None));
    assert!(s.contains("rank 4") && s.contains("[4, 5, 8]"), "{s}");
    let s = msg(sdpa(&q, &t(&[2, 2, 6, 7]), &kv, None, false, None));
    assert!(s.contains("head dims") && s.contains("[2, 2, 6, 7]"), "{s}");
    let s = msg(sdpa(
        &q,
        &t(&[2, 3, 6, 8]),
        &t(&[2, 3, 6, 8]),
        None,
        false,
        None,
    ));
    assert!(s.contains("divide"), "{s}");
    let s = msg(sdpa(
        &q,
        &t(&[3, 2, 6, 8]),
        &t(&[3, 2, 6, 8]),
        None,
        false,
        None,
    ));
    assert!(s.contains("batch"), "{s}");
    let s = msg(sdpa(&q, &kv, &t(&[2, 2, 7, 8]), None, false, None));
    assert!(s.contains("lengths"), "{s}");
    let s = msg(sdpa(&q, &kv, &t(&[2, 1, 6, 8]), None, false, None));
    assert!(s.contains("head counts"), "{s}");
    let e = sdpa(&q, &kv, &kv, Some(&t(&[5, 5])), false, None).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("[5, 5]"), "{e}");
    let e = sdpa(&q, &kv, &kv, Some(&t(&[1, 2, 4, 5, 6])), false, None).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let s = msg(sdpa(&q, &kv, &kv, Some(&t(&[5, 6])), true, None));
    assert!(s.contains("is_causal"), "{s}");
    let idx = Tensor::from_indices(&vec![0; 2 * 4 * 5 * 8], [2, 4, 5, 8], &cpu).unwrap();
    let e = sdpa(&idx, &kv, &kv, None, false, None).unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e}");
    // A valid broadcast mask passes.
    sdpa(&q, &kv, &kv, Some(&t(&[2, 1, 1, 6])), false, None).unwrap();
    sdpa(&q, &kv, &kv, Some(&t(&[6])), false, None).unwrap();
}

/// Empty sizes give empty or zero results, not panics.
#[test]
fn empty_sizes() {
    let cpu = Device::cpu();
    let t = |d: &[usize]| Tensor::zeros(d.to_vec(), &cpu).unwrap();
    let o = sdpa(
        &t(&[1, 2, 0, 4]),
        &t(&[1, 1, 3, 4]),
        &t(&[1, 1, 3, 4]),
        None,
        false,
        None,
    );
    assert_eq!(o.unwrap().dims(), &[1, 2, 0, 4]);
    let o = sdpa(
        &t(&[1, 2, 3, 4]),
        &t(&[1, 1, 0, 4]),
        &t(&[1, 1, 0, 5]),
        None,
        false,
        None,
    )
    .unwrap();
    assert_eq!(o.to_vec().unwrap(), vec![0.0; 30]);
}

/// The GPU tests share the device's pool counters (the memory test reads them): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forward and gradients on the GPU against the CPU.
fn gpu_vs_cpu(gpu: &Device, c: &Case, host: &[Vec<f32>; 4]) {
    let what = format!("{c:?}");
    let cpu = Device::cpu();
    let want = fused(c, host, &cpu).to_vec().unwrap();
    let got = fused(c, host, gpu).to_vec().unwrap();
    assert_close(&got, &want, 5e-5, 1e-3, &format!("{what} forward"));
    let (gw, gg) = (analytic(c, host, &cpu), analytic(c, host, gpu));
    for (i, (g, w)) in gg.iter().zip(&gw).enumerate() {
        let name = ["dq", "dk", "dv", "dmask"][i];
        assert_close(g, w, 1e-4, 1e-3, &format!("{what} {name}"));
    }
}

#[test]
fn gpu_matches_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let _s = serial();
    let cases = [
        Case::new(1, 1, 1, 1, 1, 8),
        Case::new(2, 4, 2, 7, 7, 16).causal(),
        Case::new(1, 4, 1, 64, 65, 64).mask(Mask::Full),
        Case::new(1, 2, 2, 65, 64, 80).causal(),
        Case::new(1, 2, 1, 200, 200, 8).causal(),
        Case::new(2, 2, 2, 7, 200, 16).mask(Mask::KeyPadding).dv(8),
        Case::new(1, 4, 2, 65, 7, 64).mask(Mask::Shared),
        Case::new(1, 1, 1, 200, 65, 80).dv(16),
        Case::new(1, 2, 1, 9, 70, 128).causal(),
        Case::new(1, 4, 4, 1, 200, 8),
    ];
    for (i, c) in cases.iter().enumerate() {
        gpu_vs_cpu(&gpu, c, &c.host(1000 + i as u64));
    }
}

#[test]
fn gpu_fully_masked_rows_and_strided_inputs() {
    let Some(gpu) = common::gpu() else { return };
    let _s = serial();
    // A fully masked row: zeros and zero gradients, no NaN.
    let c = Case::new(2, 2, 1, 4, 5, 8).mask(Mask::Full);
    let mut host = c.host(5);
    let row = (2 * 2 + 2) * 5;
    host[3][row..row + 5].fill(f32::NEG_INFINITY);
    gpu_vs_cpu(&gpu, &c, &host);
    let o = fused(&c, &host, &gpu).to_vec().unwrap();
    assert_eq!(&o[(2 * 2 + 2) * 8..][..8], &[0.0; 8]);
    // Permuted views of a fused projection [B, T, 3, H, D].
    let (b, t, h, d) = (2, 9, 2, 8);
    let x = data(b * t * 3 * h * d, 9);
    let run = |dev: &Device| -> (Vec<f32>, Vec<f32>) {
        let x = Tensor::from_slice(&x, [b, t, 3, h, d], dev)
            .unwrap()
            .requires_grad();
        let split = |i: usize| -> Tensor {
            x.narrow(2, i, 1)
                .unwrap()
                .reshape([b, t, h, d])
                .unwrap()
                .permute(&[0, 2, 1, 3])
                .unwrap()
        };
        let o = sdpa(&split(0), &split(1), &split(2), None, true, None).unwrap();
        let g = loss_of(&o, 3).backward().unwrap();
        (o.to_vec().unwrap(), g.get(&x).unwrap().to_vec().unwrap())
    };
    let ((og, gg), (oc, gc)) = (run(&gpu), run(&Device::cpu()));
    assert_close(&og, &oc, 5e-5, 1e-3, "strided forward");
    assert_close(&gg, &gc, 1e-4, 1e-3, "strided gradients");
    // Operands on different devices.
    let (qc, kg) = (
        Tensor::zeros([1, 1, 2, 4], &Device::cpu()).unwrap(),
        Tensor::zeros([1, 1, 2, 4], &gpu).unwrap(),
    );
    let e = sdpa(&qc, &kg, &kg, None, false, None).unwrap_err();
    assert!(matches!(e, Error::DeviceMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("scaled_dot_product_attention"),
        "{e}"
    );
    // Head dims beyond the kernels' limit are a clear error.
    let big = Tensor::zeros([1, 1, 2, 129], &gpu).unwrap();
    let e = sdpa(&big, &big, &big, None, false, None).unwrap_err();
    assert!(e.to_string().contains("129"), "{e}");
}

/// Item 5: at Tq = Tk = 2048, D = 64, one head, forward and backward allocate O(T·D) device
/// memory; the 2048² score matrix (16 MiB) never exists.
#[test]
fn gpu_memory_is_linear_in_length() {
    let Some(gpu) = common::gpu() else { return };
    let _s = serial();
    let (t, d) = (2048, 64);
    let mk = |seed| {
        Tensor::from_vec(data(t * d, seed), [1, 1, t, d], &gpu)
            .unwrap()
            .requires_grad()
    };
    let (q, k, v) = (mk(1), mk(2), mk(3));
    gpu.synchronize().unwrap();
    let total = |g: &Device| g.live_bytes() + g.pooled_bytes();
    let (live0, total0) = (gpu.live_bytes(), total(&gpu));
    let o = sdpa(&q, &k, &v, None, true, None).unwrap();
    let live_fwd = gpu.live_bytes() - live0;
    let g = o.sum_all().unwrap().backward().unwrap();
    let dq = g.get(&q).unwrap().to_vec().unwrap();
    assert!(dq.iter().all(|x| x.is_finite()));
    let live_bwd = gpu.live_bytes() - live0;
    let grown = total(&gpu) - total0;
    let score_matrix = (t * t * 4) as u64;
    println!(
        "attention T={t} D={d}: forward holds {live_fwd} B, after backward {live_bwd} B live; \
         the pool grew by {grown} B in all (peak bound); one score matrix is {score_matrix} B"
    );
    // O, LSE, the loss, dQ, dK|dV, Di and the ones of the loss gradient: about 2.6 MiB.
    assert!(
        grown < score_matrix / 4,
        "the pool grew by {grown} B, near a score matrix of {score_matrix} B"
    );
}
