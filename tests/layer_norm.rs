//! `nn::functional::layer_norm`: a plain f64 reference, GPU vs CPU (forward and all gradients) on
//! awkward row lengths, finite-difference checks of dx, dweight and dbias, and bad input.

mod common;
use common::{assert_close, data, gpu};
use wgml::nn::functional::layer_norm;
use wgml::{Device, Error, Tensor};

/// f64 reference over rows of `n`.
fn reference(x: &[f32], w: Option<&[f32]>, b: Option<&[f32]>, n: usize, eps: f64) -> Vec<f32> {
    let mut out = Vec::new();
    for row in x.chunks(n) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        for (j, &v) in row.iter().enumerate() {
            let mut y = (v as f64 - mean) / (var + eps).sqrt();
            if let Some(w) = w {
                y *= w[j] as f64;
            }
            if let Some(b) = b {
                y += b[j] as f64;
            }
            out.push(y as f32);
        }
    }
    out
}

/// (x dims, normalized_shape) cases: row lengths 1, 7, 128, 1000, several rows, 2 normalized dims.
fn cases() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![3, 1], vec![1]),
        (vec![5, 7], vec![7]),
        (vec![7], vec![7]),
        (vec![2, 3, 128], vec![128]),
        (vec![3, 1000], vec![1000]),
        (vec![2, 4, 5], vec![4, 5]),
        (vec![65, 33], vec![33]),
    ]
}

#[test]
fn forward_matches_reference() {
    let cpu = Device::cpu();
    for (i, (dims, ns)) in cases().into_iter().enumerate() {
        let numel: usize = dims.iter().product();
        let n: usize = ns.iter().product();
        // An offset keeps the mean away from 0 so that a missing subtraction shows.
        let xv: Vec<f32> = data(numel, i as u64)
            .iter()
            .map(|v| v * 3.0 + 1.5)
            .collect();
        let (wv, bv) = (data(n, 100 + i as u64), data(n, 200 + i as u64));
        for (hw, hb) in [(false, false), (true, false), (false, true), (true, true)] {
            let x = Tensor::from_slice(&xv, dims.clone(), &cpu).unwrap();
            let w = Tensor::from_slice(&wv, ns.clone(), &cpu).unwrap();
            let b = Tensor::from_slice(&bv, ns.clone(), &cpu).unwrap();
            let y = layer_norm(&x, &ns, hw.then_some(&w), hb.then_some(&b), 1e-5).unwrap();
            assert_eq!(y.dims(), &dims[..]);
            let want = reference(&xv, hw.then_some(&wv[..]), hb.then_some(&bv[..]), n, 1e-5);
            let what = format!("forward {dims:?} {ns:?} w {hw} b {hb}");
            assert_close(&y.to_vec().unwrap(), &want, 1e-5, 1e-4, &what);
        }
    }
}

/// Forward output and (dx, dw, db) of `Σ y · r` on `dev`.
fn run(dev: &Device, dims: &[usize], ns: &[usize], hw: bool, hb: bool, seed: u64) -> Vec<Vec<f32>> {
    let numel: usize = dims.iter().product();
    let n: usize = ns.iter().product();
    let xv: Vec<f32> = data(numel, seed).iter().map(|v| v * 3.0 + 1.5).collect();
    let x = Tensor::from_slice(&xv, dims, dev).unwrap().requires_grad();
    let w = Tensor::from_slice(&data(n, seed + 1), ns, dev)
        .unwrap()
        .requires_grad();
    let b = Tensor::from_slice(&data(n, seed + 2), ns, dev)
        .unwrap()
        .requires_grad();
    let r = Tensor::from_slice(&data(numel, seed + 3), dims, dev).unwrap();
    let y = layer_norm(&x, ns, hw.then_some(&w), hb.then_some(&b), 1e-5).unwrap();
    let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y.to_vec().unwrap(), g.get(&x).unwrap().to_vec().unwrap()];
    if hw {
        let dw = g.get(&w).unwrap();
        assert_eq!(dw.dims(), ns);
        out.push(dw.to_vec().unwrap());
    }
    if hb {
        out.push(g.get(&b).unwrap().to_vec().unwrap());
    }
    out
}

#[test]
fn gpu_matches_cpu_forward_and_backward() {
    let Some(gpu) = gpu() else { return };
    let mut extra = cases();
    extra.push((vec![200, 16], vec![16])); // several blocks of the dw/db partial sums
    extra.push((vec![130, 300], vec![300])); // columns past one workgroup, ragged last block
    for (i, (dims, ns)) in extra.into_iter().enumerate() {
        for (hw, hb) in [(false, false), (true, false), (false, true), (true, true)] {
            let want = run(&Device::cpu(), &dims, &ns, hw, hb, 10 * i as u64);
            let got = run(&gpu, &dims, &ns, hw, hb, 10 * i as u64);
            let names = ["y", "dx", "dw/db", "db"];
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let what = format!("{} {dims:?} {ns:?} w {hw} b {hb}", names[k]);
                assert_close(g, w, 1e-4, 1e-4, &what);
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let cpu = Device::cpu();
    let (dims, ns) = ([3usize, 2, 5], [2usize, 5]);
    let (numel, n) = (30, 10);
    let xv = data(numel, 7);
    let wv: Vec<f32> = data(n, 8).iter().map(|v| v + 2.5).collect();
    let bv = data(n, 9);
    let rv = data(numel, 10);
    // L = Σ layer_norm(x) · r, evaluated in f64 from the f32 forward.
    let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
        let t = |v: &[f32], d: &[usize]| Tensor::from_slice(v, d, &cpu).unwrap();
        let y = layer_norm(&t(x, &dims), &ns, Some(&t(w, &ns)), Some(&t(b, &ns)), 1e-5)
            .unwrap()
            .to_vec()
            .unwrap();
        y.iter().zip(&rv).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let h = 1e-2f32;
    let fd = |which: usize, len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| {
                let mut args = [xv.clone(), wv.clone(), bv.clone()];
                args[which][i] += h;
                let p = loss(&args[0], &args[1], &args[2]);
                args[which][i] -= 2.0 * h;
                let m = loss(&args[0], &args[1], &args[2]);
                ((p - m) / (2.0 * h as f64)) as f32
            })
            .collect()
    };
    let x = Tensor::from_slice(&xv, dims, &cpu).unwrap().requires_grad();
    let w = Tensor::from_slice(&wv, ns, &cpu).unwrap().requires_grad();
    let b = Tensor::from_slice(&bv, ns, &cpu).unwrap().requires_grad();
    let r = Tensor::from_slice(&rv, dims, &cpu).unwrap();
    let y = layer_norm(&x, &ns, Some(&w), Some(&b), 1e-5).unwrap();
    let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |t: &Tensor| g.get(t).unwrap().to_vec().unwrap();
    assert_close(&grad(&x), &fd(0, numel), 5e-3, 2e-2, "dx");
    assert_close(&grad(&w), &fd(1, n), 5e-3, 2e-2, "dweight");
    assert_close(&grad(&b), &fd(2, n), 5e-3, 2e-2, "dbias");
    // dx of a normalised row sums to zero (the mean is removed): a wrong formula breaks this.
    let dx = grad(&x);
    for row in dx.chunks(n) {
        let s: f32 = row.iter().sum();
        assert!(s.abs() < 1e-4, "dx row sum {s}");
    }
}

#[test]
fn strided_input_and_no_grad_params() {
    // A transposed x (not contiguous) and a weight that needs no gradient.
    let cpu = Device::cpu();
    let xv = data(6 * 4, 3);
    let x = Tensor::from_slice(&xv, [4, 6], &cpu)
        .unwrap()
        .t()
        .unwrap()
        .requires_grad();
    let w = Tensor::from_slice(&data(4, 4), [4], &cpu).unwrap();
    let y = layer_norm(&x, &[4], Some(&w), None, 1e-5).unwrap();
    let xt = x.contiguous().unwrap().to_vec().unwrap();
    let want = reference(&xt, Some(&w.to_vec().unwrap()), None, 4, 1e-5);
    assert_close(&y.to_vec().unwrap(), &want, 1e-5, 1e-4, "strided");
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&w).is_none());
    // Σ_j dy = const per row gives dx = rstd·w·(1 - mean(w))… only check the shape and finiteness.
    let dx = g.get(&x).unwrap();
    assert_eq!(dx.dims(), &[6, 4]);
    assert!(dx.to_vec().unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn bad_input_is_an_error() {
    let cpu = Device::cpu();
    let x = Tensor::zeros([2, 3, 4], &cpu).unwrap();
    let w4 = Tensor::ones([4], &cpu).unwrap();
    let w3 = Tensor::ones([3], &cpu).unwrap();
    let shape_err = |r: wgml::Result<Tensor>| {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("layer_norm"), "{e}");
    };
    shape_err(layer_norm(&x, &[3], None, None, 1e-5)); // not the trailing dim
    shape_err(layer_norm(&x, &[], None, None, 1e-5)); // empty normalized_shape
    shape_err(layer_norm(&x, &[2, 3, 4, 1], None, None, 1e-5)); // longer than the rank
    shape_err(layer_norm(&x, &[4], Some(&w3), None, 1e-5)); // weight shape
    shape_err(layer_norm(&x, &[4], None, Some(&w3), 1e-5)); // bias shape
    shape_err(layer_norm(&x, &[3, 4], Some(&w4), None, 1e-5)); // weight must be [3, 4]
    assert!(layer_norm(&x, &[4], None, None, -1.0).is_err());
    assert!(layer_norm(&x, &[4], None, None, f32::NAN).is_err());
    let idx = Tensor::from_indices(&[1, 2], [2], &cpu).unwrap();
    assert!(matches!(
        layer_norm(&idx, &[2], None, None, 1e-5).unwrap_err(),
        Error::DType { .. }
    ));
    let empty = Tensor::zeros([0, 4], &cpu).unwrap();
    assert!(matches!(
        layer_norm(&empty, &[4], None, None, 1e-5).unwrap_err(),
        Error::Empty { .. }
    ));
    if let Some(gpu) = gpu() {
        let wg = Tensor::ones([4], &gpu).unwrap();
        let e = layer_norm(&x, &[4], Some(&wg), None, 1e-5).unwrap_err();
        assert!(matches!(e, Error::DeviceMismatch { .. }), "{e:?}");
    }
}
