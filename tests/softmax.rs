//! Softmax and log-softmax: the CPU reference by hand, GPU against CPU on awkward rows and
//! strided views, large-magnitude inputs, rows summing to one, and errors. (The fused backward
//! kernels are crate-internal; their tests sit beside them in `src/ops/softmax.rs`.)

mod common;

use common::{assert_close, data, gpu_matches_cpu};
use wgml::{Device, Error, Shape, Tensor};

fn cpu() -> Device {
    Device::cpu()
}

fn both(x: &Tensor) -> [Tensor; 2] {
    [x.softmax().unwrap(), x.log_softmax().unwrap()]
}

#[test]
fn cpu_reference_by_hand() {
    let x = Tensor::from_slice(
        &[0.0, 0.0, 1.0, 2.0, 3.0, 3.0f32.ln() + 1.0],
        [2, 3],
        &cpu(),
    )
    .unwrap();
    let [s, l] = both(&x);
    // Row 0: e^0, e^0, e^1 over 2 + e. Row 1: e^2, e^3, 3e over e^2 + e^3 + 3e.
    let e = std::f32::consts::E;
    let r1 = e * e + e * e * e + 3.0 * e;
    let want = [
        1. / (2. + e),
        1. / (2. + e),
        e / (2. + e),
        e * e / r1,
        e * e * e / r1,
        3. * e / r1,
    ];
    assert_close(&s.to_vec().unwrap(), &want, 0.0, 1e-6, "softmax by hand");
    let logs: Vec<f32> = want.iter().map(|v| v.ln()).collect();
    assert_close(
        &l.to_vec().unwrap(),
        &logs,
        1e-6,
        1e-6,
        "log_softmax by hand",
    );
    let half = Tensor::from_slice(&[5.0, 5.0], [2], &cpu()).unwrap();
    assert_eq!(half.softmax().unwrap().to_vec().unwrap(), [0.5, 0.5]);
    // A row of one is 1 (log 0); a scalar is a row of one.
    let one = Tensor::from_slice(&[-7.0, 3.0], [2, 1], &cpu()).unwrap();
    assert_eq!(one.softmax().unwrap().to_vec().unwrap(), [1.0, 1.0]);
    assert_eq!(one.log_softmax().unwrap().to_vec().unwrap(), [0.0, 0.0]);
    assert_eq!(
        Tensor::scalar(4.0, &cpu())
            .unwrap()
            .softmax()
            .unwrap()
            .to_vec()
            .unwrap(),
        [1.0]
    );
    // A transposed input: softmax over its logical last axis.
    let t = x.t().unwrap().softmax().unwrap();
    assert_eq!(t.dims(), &[3, 2]);
    let col0 = (0.0f32.exp(), 2.0f32.exp());
    let want0 = col0.0 / (col0.0 + col0.1);
    assert_close(&t.to_vec().unwrap()[..1], &[want0], 0.0, 1e-6, "transposed");
    // Masked (-inf) entries get 0.
    let m = Tensor::from_slice(&[1.0, f32::NEG_INFINITY, 1.0], [3], &cpu()).unwrap();
    assert_eq!(m.softmax().unwrap().to_vec().unwrap(), [0.5, 0.0, 0.5]);
}

#[test]
fn gpu_rows_of_awkward_lengths() {
    for (i, dims) in [
        vec![1usize],
        vec![3],
        vec![17],
        vec![127],
        vec![129],
        vec![1000],
        vec![1025],
        vec![5, 1],
        vec![3, 1000, 7],
        vec![7, 3, 129],
        vec![2, 100_003],
    ]
    .into_iter()
    .enumerate()
    {
        let v: Vec<f32> = data(dims.iter().product(), i as u64)
            .iter()
            .map(|x| x * 4.0)
            .collect();
        gpu_matches_cpu(&format!("softmax {dims:?}"), 1e-7, 1e-5, |dev| {
            Tensor::from_slice(&v, dims.as_slice(), dev)?.softmax()
        });
        gpu_matches_cpu(&format!("log_softmax {dims:?}"), 1e-5, 1e-5, |dev| {
            Tensor::from_slice(&v, dims.as_slice(), dev)?.log_softmax()
        });
    }
    gpu_matches_cpu("softmax of a scalar", 0.0, 0.0, |dev| {
        Tensor::scalar(3.0, dev)?.softmax()
    });
    gpu_matches_cpu("softmax of an empty tensor", 0.0, 0.0, |dev| {
        Tensor::zeros([0, 4], dev)?.softmax()
    });
}

#[test]
fn gpu_strided_inputs() {
    let v = data(129 * 17, 20);
    for log in [false, true] {
        let f = move |x: Tensor| if log { x.log_softmax() } else { x.softmax() };
        gpu_matches_cpu(&format!("transposed (log {log})"), 1e-6, 1e-5, |dev| {
            let x = Tensor::from_slice(&v, [129, 17], dev)?.t()?;
            assert!(!x.is_contiguous());
            f(x)
        });
        gpu_matches_cpu(&format!("narrowed rows (log {log})"), 1e-6, 1e-5, |dev| {
            f(Tensor::from_slice(&v, [129, 17], dev)?.narrow(0, 3, 50)?)
        });
        gpu_matches_cpu(&format!("broadcast (log {log})"), 1e-6, 1e-5, |dev| {
            f(Tensor::from_slice(&v[..17], [17], dev)?.broadcast_to([4, 17])?)
        });
    }
}

#[test]
fn gpu_many_rows_fold_the_grid() {
    let v = data(66_000 * 2, 30);
    gpu_matches_cpu("softmax of [66000, 2]", 1e-7, 1e-5, |dev| {
        Tensor::from_slice(&v, [66_000, 2], dev)?.softmax()
    });
}

#[test]
fn large_magnitudes_stay_finite_and_rows_sum_to_one() {
    let rows: Vec<f32> = [
        [1000.0, -1000.0, 0.0, 999.0],
        [-1000.0, -1000.0, -1000.0, -1000.0],
        [88.0, 89.0, 90.0, 1e30],
        [-1e30, 0.0, 0.0, 1.0],
    ]
    .concat();
    let devices: Vec<Device> = std::iter::once(cpu()).chain(common::gpu()).collect();
    for dev in devices {
        let x = Tensor::from_slice(&rows, [4, 4], &dev).unwrap();
        let [s, l] = both(&x);
        let (s, l) = (s.to_vec().unwrap(), l.to_vec().unwrap());
        assert!(
            s.iter().chain(&l).all(|v| v.is_finite()),
            "{}: {s:?} {l:?}",
            dev.name()
        );
        let e1 = (-1.0f32).exp();
        let want = [
            1.0 / (1.0 + e1),
            0.0,
            0.0,
            e1 / (1.0 + e1),
            0.25,
            0.25,
            0.25,
            0.25,
            0.0,
            0.0,
            0.0,
            1.0,
            0.0,
            1.0 / (2.0 + std::f32::consts::E),
            1.0 / (2.0 + std::f32::consts::E),
            std::f32::consts::E / (2.0 + std::f32::consts::E),
        ];
        assert_close(&s, &want, 1e-7, 1e-5, &format!("softmax on {}", dev.name()));
        assert_close(
            &l[..2],
            &[-(1.0 + e1).ln(), -2000.0 - (1.0 + e1).ln()],
            1e-4,
            1e-6,
            "log",
        );
        assert_close(&l[4..8], &[-(4.0f32.ln()); 4], 1e-6, 1e-6, "log of uniform");
        // Rows of random data sum to one, short and long.
        for n in [1usize, 7, 300, 5000] {
            let v: Vec<f32> = data(3 * n, n as u64).iter().map(|x| x * 20.0).collect();
            let s = Tensor::from_slice(&v, [3, n], &dev)
                .unwrap()
                .softmax()
                .unwrap();
            let sums = s.sum(-1, false).unwrap().to_vec().unwrap();
            assert_close(
                &sums,
                &[1.0; 3],
                1e-5,
                0.0,
                &format!("row sums n={n} {}", dev.name()),
            );
            let l = Tensor::from_slice(&v, [3, n], &dev)
                .unwrap()
                .log_softmax()
                .unwrap();
            let sums = l.exp().unwrap().sum(-1, false).unwrap().to_vec().unwrap();
            assert_close(&sums, &[1.0; 3], 1e-5, 0.0, &format!("exp log rows n={n}"));
        }
    }
}

#[test]
fn errors_name_the_op_and_shape() {
    let idx = Tensor::from_indices(&[1, 2, 3, 4], [2, 2], &cpu()).unwrap();
    for (r, op) in [
        (idx.softmax(), "softmax"),
        (idx.log_softmax(), "log_softmax"),
    ] {
        let e = r.expect_err("U32 input");
        assert!(matches!(e, Error::DType { .. }), "{e:?}");
        let s = e.to_string();
        assert!(
            s.starts_with(op) && s.contains("[2, 2]") && s.contains("U32"),
            "{s}"
        );
    }
    let x = Tensor::zeros(Shape::from([2, 3]), &cpu()).unwrap();
    assert_eq!(x.softmax().unwrap().dims(), &[2, 3]);
}

/// Throughput, GPU and CPU: `cargo test --release --test softmax -- --ignored --nocapture`,
/// with `WGML_BENCH_N` elements (default 2^20).
#[test]
#[ignore]
fn bench_softmax() {
    let n: usize = std::env::var("WGML_BENCH_N").map_or(1 << 20, |v| v.parse().unwrap());
    let devices: Vec<Device> = common::gpu().into_iter().chain(Some(cpu())).collect();
    for dev in &devices {
        for row in [128usize, 1000, 32_000] {
            for log in [false, true] {
                let x = Tensor::rand([n / row, row], 1, dev).unwrap();
                let f = |x: &Tensor| if log { x.log_softmax() } else { x.softmax() }.unwrap();
                f(&x).to_vec().unwrap();
                let iters = 5;
                let t0 = std::time::Instant::now();
                for _ in 0..iters {
                    drop(f(&x));
                }
                dev.synchronize().unwrap();
                let s = t0.elapsed().as_secs_f64() / iters as f64;
                let gbs = x.numel() as f64 * 8.0 / s / 1e9; // read + write
                let what = if log { "log_softmax" } else { "softmax" };
                println!(
                    "{:<28} {what:<12} rows of {row:>6}: {:9.3} ms {gbs:7.2} GB/s",
                    dev.name(),
                    s * 1e3
                );
            }
        }
    }
}
