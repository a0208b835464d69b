//! matmul: the CPU backend against a naive triple loop, every GPU tile configuration against
//! the CPU on awkward shapes (transposed, batched with broadcast, 1-D), and the errors.

mod common;

use common::{assert_close, data, gpu_matches_cpu};
use proptest::prelude::*;
use wgml::{Device, Error, Tensor};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

/// Tolerance for a sum of `k` products of values in [-2, 2): the two backends add in different
/// orders, so the error grows with the length of the dot products.
fn atol(k: usize) -> f32 {
    ATOL * (k as f32).sqrt().max(1.0) * 4.0
}

fn t(dims: &[usize], seed: u64, dev: &Device) -> wgml::Result<Tensor> {
    Tensor::from_vec(data(dims.iter().product(), seed), dims, dev)
}

/// Plain loops: `a` is `[m, k]`, `b` is `[k, n]`, both row-major; f64 accumulation.
fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            out[i * n + j] = s as f32;
        }
    }
    out
}

/// Runs `f(dev, config)` on the CPU and on the GPU with every tile configuration forced.
fn every_config(what: &str, atol: f32, f: impl Fn(&Device, Option<usize>) -> wgml::Result<Tensor>) {
    let Some(gpu) = common::gpu() else { return };
    let want = f(&Device::cpu(), None).unwrap_or_else(|e| panic!("{what} on cpu: {e}"));
    let configs = Tensor::matmul_gpu_configs();
    let picks = std::iter::once(None).chain((0..configs.len()).map(Some));
    for c in picks {
        let name = c.map_or("picked", |c| configs[c]);
        let what = format!("{what} [gpu {name}]");
        let got = f(&gpu, c).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
        assert_close(
            &got.to_vec().unwrap(),
            &want.to_vec().unwrap(),
            atol,
            RTOL,
            &what,
        );
    }
}

fn mm(a: &Tensor, b: &Tensor, config: Option<usize>) -> wgml::Result<Tensor> {
    match config {
        Some(c) => a.matmul_gpu_config(b, c),
        None => a.matmul(b),
    }
}

#[test]
fn cpu_matches_naive_loops() {
    let dev = Device::cpu();
    for &(m, k, n) in &[
        (1, 1, 1),
        (1, 7, 1),
        (3, 5, 7),
        (17, 33, 9),
        (8, 1, 8),
        (64, 65, 63),
    ] {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let ta = Tensor::from_slice(&a, [m, k], &dev).unwrap();
        let tb = Tensor::from_slice(&b, [k, n], &dev).unwrap();
        let got = ta.matmul(&tb).unwrap();
        assert_eq!(got.dims(), &[m, n]);
        let want = naive(&a, &b, m, k, n);
        assert_close(
            &got.to_vec().unwrap(),
            &want,
            atol(k),
            RTOL,
            &format!("cpu {m}x{k}x{n}"),
        );

        // Transposed operands read in place give the same product.
        let at = Tensor::from_slice(&a, [m, k], &dev)
            .unwrap()
            .t()
            .unwrap()
            .contiguous()
            .unwrap();
        let bt = Tensor::from_slice(&b, [k, n], &dev)
            .unwrap()
            .t()
            .unwrap()
            .contiguous()
            .unwrap();
        let got = at.t().unwrap().matmul(&bt.t().unwrap()).unwrap();
        let what = format!("cpu transposed {m}x{k}x{n}");
        assert_close(&got.to_vec().unwrap(), &want, atol(k), RTOL, &what);
    }
}

#[test]
fn cpu_batched_broadcast_matches_naive() {
    // [2, 1, 3, 4] @ [3, 4, 5] -> [2, 3, 3, 5]
    let dev = Device::cpu();
    let (a, b) = (data(2 * 3 * 4, 3), data(3 * 4 * 5, 4));
    let ta = Tensor::from_slice(&a, [2, 1, 3, 4], &dev).unwrap();
    let tb = Tensor::from_slice(&b, [3, 4, 5], &dev).unwrap();
    let got = ta.matmul(&tb).unwrap();
    assert_eq!(got.dims(), &[2, 3, 3, 5]);
    let got = got.to_vec().unwrap();
    for i in 0..2 {
        for j in 0..3 {
            let want = naive(&a[i * 12..(i + 1) * 12], &b[j * 20..(j + 1) * 20], 3, 4, 5);
            let o = (i * 3 + j) * 15;
            assert_close(
                &got[o..o + 15],
                &want,
                atol(4),
                RTOL,
                &format!("batch ({i}, {j})"),
            );
        }
    }
}

#[test]
fn one_d_operands() {
    let dev = Device::cpu();
    let v = Tensor::from_vec(vec![1.0, 2.0, 3.0], [3], &dev).unwrap();
    let m = Tensor::from_vec((0..6).map(|x| x as f32).collect(), [3, 2], &dev).unwrap();
    let dot = v.matmul(&v).unwrap();
    assert_eq!(dot.dims(), &[] as &[usize]);
    assert_eq!(dot.item().unwrap(), 14.0);
    let vm = v.matmul(&m).unwrap(); // [3] @ [3, 2] -> [2]
    assert_eq!(vm.dims(), &[2]);
    assert_eq!(vm.to_vec().unwrap(), vec![16.0, 22.0]);
    let mv = m.t().unwrap().matmul(&v).unwrap(); // [2, 3] @ [3] -> [2]
    assert_eq!(mv.dims(), &[2]);
    assert_eq!(mv.to_vec().unwrap(), vec![16.0, 22.0]);
    let b = Tensor::from_vec((0..12).map(|x| x as f32).collect(), [2, 3, 2], &dev).unwrap();
    let bv = v.matmul(&b).unwrap(); // [3] @ [2, 3, 2] -> [2, 2]
    assert_eq!(bv.dims(), &[2, 2]);
    assert_eq!(bv.to_vec().unwrap(), vec![16.0, 22.0, 52.0, 58.0]);
}

#[test]
fn gpu_awkward_shapes_every_config() {
    for &(m, k, n) in &[
        (1, 1, 1),
        (1, 37, 1),
        (3, 5, 7),
        (17, 129, 33),
        (127, 1, 129),
        (64, 300, 65),
        (2, 4099, 3),
        (9, 17, 130),
        (130, 17, 9),
    ] {
        every_config(&format!("{m}x{k}x{n}"), atol(k), |dev, c| {
            mm(&t(&[m, k], 10, dev)?, &t(&[k, n], 11, dev)?, c)
        });
    }
}

#[test]
fn gpu_transposed_operands_every_config() {
    let (m, k, n) = (33, 19, 70);
    every_config("a.t() @ b", atol(k), |dev, c| {
        mm(&t(&[k, m], 20, dev)?.t()?, &t(&[k, n], 21, dev)?, c)
    });
    every_config("a @ b.t()", atol(k), |dev, c| {
        mm(&t(&[m, k], 22, dev)?, &t(&[n, k], 23, dev)?.t()?, c)
    });
    every_config("a.t() @ b.t()", atol(k), |dev, c| {
        mm(&t(&[k, m], 24, dev)?.t()?, &t(&[n, k], 25, dev)?.t()?, c)
    });
    // Batched transposes, an offset view, and a layout neither row- nor column-major (copied).
    every_config("batched a.t() @ narrowed b", atol(k), |dev, c| {
        let a = t(&[3, k, m], 26, dev)?.transpose(-1, -2)?;
        let b = t(&[3, k, n + 5], 27, dev)?.narrow(-1, 2, n)?;
        mm(&a, &b, c)
    });
    every_config("permuted operand", atol(k), |dev, c| {
        // [2, m, k] with strides (1, 2k, 2): neither row- nor column-major.
        let a = t(&[m, k, 2], 28, dev)?.permute(&[2, 0, 1])?;
        mm(&a, &t(&[k, n], 29, dev)?, c)
    });
}

#[test]
fn gpu_never_reads_past_k() {
    // Operands are views into storage whose elements past K are NaN: a kernel that multiplies
    // a zero-padded edge tile by them (0 · NaN) instead of skipping the load gives NaN.
    let (m, k, n) = (19, 21, 23);
    let padded = |rows: usize, cols: usize, seed: u64| {
        let mut v = data(rows * cols, seed);
        for (i, x) in v.iter_mut().enumerate() {
            if i % cols >= cols - 5 {
                *x = f32::NAN;
            }
        }
        v
    };
    let (a, b) = (padded(m, k + 5, 50), padded(n, k + 5, 51));
    every_config("NaN past K", atol(k), |dev, c| {
        let ta = Tensor::from_slice(&a, [m, k + 5], dev)?.narrow(1, 0, k)?;
        let tb = Tensor::from_slice(&b, [n, k + 5], dev)?
            .narrow(1, 0, k)?
            .t()?;
        mm(&ta, &tb, c)
    });
}

#[test]
fn gpu_batched_broadcast() {
    gpu_matches_cpu("[2,1,5,7] @ [3,7,6]", atol(7), RTOL, |dev| {
        t(&[2, 1, 5, 7], 30, dev)?.matmul(&t(&[3, 7, 6], 31, dev)?)
    });
    gpu_matches_cpu("[4,3,5] @ [5,2]", atol(5), RTOL, |dev| {
        t(&[4, 3, 5], 32, dev)?.matmul(&t(&[5, 2], 33, dev)?)
    });
    gpu_matches_cpu("[5,2] @ [4,2,3] transposed batch", atol(2), RTOL, |dev| {
        t(&[5, 2], 34, dev)?.matmul(&t(&[4, 3, 2], 35, dev)?.t()?)
    });
    // Six batch dims that broadcast alternately: more than the kernel indexes (copied).
    gpu_matches_cpu("six interleaved batch dims", atol(3), RTOL, |dev| {
        let a = t(&[2, 1, 2, 1, 2, 1, 3, 3], 36, dev)?;
        let b = t(&[1, 2, 1, 2, 1, 2, 3, 4], 37, dev)?;
        a.matmul(&b)
    });
    every_config("[3,1,17,9] @ [1,2,9,33]", atol(9), |dev, c| {
        mm(
            &t(&[3, 1, 17, 9], 38, dev)?,
            &t(&[1, 2, 9, 33], 39, dev)?,
            c,
        )
    });
}

#[test]
fn gpu_one_d_operands() {
    gpu_matches_cpu("vec @ vec", atol(300), RTOL, |dev| {
        t(&[300], 40, dev)?.matmul(&t(&[300], 41, dev)?)
    });
    gpu_matches_cpu("vec @ mat", atol(17), RTOL, |dev| {
        t(&[17], 42, dev)?.matmul(&t(&[17, 129], 43, dev)?)
    });
    gpu_matches_cpu("mat @ vec", atol(17), RTOL, |dev| {
        t(&[129, 17], 44, dev)?.matmul(&t(&[17], 45, dev)?)
    });
    // A [1, K] row whose elements are 3 apart (a row of a transposed matrix).
    gpu_matches_cpu("strided row @ mat", atol(17), RTOL, |dev| {
        let row = t(&[17, 3], 48, dev)?.t()?.narrow(0, 1, 1)?;
        row.matmul(&t(&[17, 40], 49, dev)?)
    });
    gpu_matches_cpu("batched mat @ vec", atol(5), RTOL, |dev| {
        t(&[3, 4, 5], 46, dev)?.matmul(&t(&[5], 47, dev)?)
    });
}

#[test]
fn empty_and_zero_k() {
    gpu_matches_cpu("k = 0", 0.0, 0.0, |dev| {
        Tensor::zeros([3, 0], dev)?.matmul(&Tensor::zeros([0, 4], dev)?)
    });
    let dev = Device::cpu();
    let z = Tensor::zeros([3, 0], &dev)
        .unwrap()
        .matmul(&Tensor::zeros([0, 4], &dev).unwrap());
    assert_eq!(z.unwrap().to_vec().unwrap(), vec![0.0; 12]);
    let e = Tensor::zeros([0, 2], &dev)
        .unwrap()
        .matmul(&Tensor::zeros([2, 4], &dev).unwrap());
    assert_eq!(e.unwrap().dims(), &[0, 4]);
}

#[test]
fn errors_name_the_op_and_shapes() {
    let dev = Device::cpu();
    let a = Tensor::zeros([2, 3], &dev).unwrap();
    let b = Tensor::zeros([4, 5], &dev).unwrap();
    let e = a.matmul(&b).unwrap_err();
    assert!(
        matches!(&e, Error::ShapeMismatch { op: "matmul", lhs, rhs }
        if lhs == &[2, 3] && rhs == &[4, 5]),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[4, 5]"),
        "{msg}"
    );

    let ba = Tensor::zeros([2, 3, 4], &dev).unwrap();
    let bb = Tensor::zeros([3, 4, 5], &dev).unwrap();
    assert!(matches!(
        ba.matmul(&bb),
        Err(Error::ShapeMismatch { op: "matmul", .. })
    ));
    let s = Tensor::scalar(1.0, &dev).unwrap();
    assert!(matches!(
        s.matmul(&a),
        Err(Error::ShapeMismatch { op: "matmul", .. })
    ));
    let v = Tensor::zeros([4], &dev).unwrap();
    assert!(matches!(
        a.matmul(&v),
        Err(Error::ShapeMismatch { op: "matmul", .. })
    ));

    let idx = Tensor::from_indices(&[0, 1, 2, 3, 4, 5], [3, 2], &dev).unwrap();
    let e = a.matmul(&idx).unwrap_err();
    assert!(matches!(e, Error::DType { op: "matmul", .. }), "{e}");

    if let Some(gpu) = common::gpu() {
        let g = Tensor::zeros([3, 4], &gpu).unwrap();
        let e = a.matmul(&g).unwrap_err();
        assert!(
            matches!(e, Error::DeviceMismatch { op: "matmul", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("matmul"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn gpu_matches_cpu_random_shapes(
        m in 1usize..80, k in 1usize..80, n in 1usize..80,
        batch in 1usize..3, ta: bool, tb: bool, seed in 0u64..1000,
    ) {
        gpu_matches_cpu(&format!("[{batch},{m},{k}]@[{k},{n}] t={ta},{tb}"), atol(k), RTOL, |dev| {
            let a = if ta { t(&[batch, k, m], seed, dev)?.t()? } else { t(&[batch, m, k], seed, dev)? };
            let b = if tb { t(&[n, k], seed + 1, dev)?.t()? } else { t(&[k, n], seed + 1, dev)? };
            a.matmul(&b)
        });
    }
}
