//! Reductions: the CPU reference checked by hand, then every op and dim choice on the GPU
//! against it (awkward sizes, strided views, long rows, ties), `sum_to_shape`, and errors.

mod common;

use common::{assert_close, data, gpu_matches_cpu};
use proptest::prelude::*;
use wgml::{DType, Device, Error, ReduceOp, Shape, Tensor};

const OPS: [ReduceOp; 5] = [
    ReduceOp::Sum,
    ReduceOp::Mean,
    ReduceOp::Max,
    ReduceOp::Min,
    ReduceOp::ArgMax,
];

fn cpu() -> Device {
    Device::cpu()
}

fn t(v: &[f32], shape: impl Into<Shape>) -> Tensor {
    Tensor::from_slice(v, shape, &cpu()).unwrap()
}

fn vals(x: &Tensor) -> Vec<f32> {
    x.to_vec().unwrap()
}

/// Sums are compared with a tolerance growing with the number of terms summed.
fn tol(op: ReduceOp, len: usize) -> (f32, f32) {
    match op {
        ReduceOp::Sum => (1e-5 * (len as f32).sqrt().max(1.0), 1e-5),
        ReduceOp::Mean => (1e-6, 1e-5),
        _ => (0.0, 0.0),
    }
}

// ------------------------------------------------------------------ the reference, by hand

#[test]
fn cpu_reference_by_hand() {
    // [[1, 2, 3],
    //  [4, 5, 6]]
    let x = t(&[1., 2., 3., 4., 5., 6.], [2, 3]);
    assert_eq!(vals(&x.sum(0, false).unwrap()), [5., 7., 9.]);
    assert_eq!(vals(&x.sum(1, false).unwrap()), [6., 15.]);
    assert_eq!(vals(&x.sum(-1, false).unwrap()), [6., 15.]);
    assert_eq!(vals(&x.mean(1, false).unwrap()), [2., 5.]);
    assert_eq!(vals(&x.mean(0, false).unwrap()), [2.5, 3.5, 4.5]);
    assert_eq!(vals(&x.max(1, false).unwrap()), [3., 6.]);
    assert_eq!(vals(&x.min(0, false).unwrap()), [1., 2., 3.]);
    assert_eq!(x.argmax(0, false).unwrap().to_vec_u32().unwrap(), [1, 1, 1]);
    assert_eq!(x.argmax(1, false).unwrap().to_vec_u32().unwrap(), [2, 2]);
    assert_eq!(vals(&x.sum_all().unwrap()), [21.]);
    assert_eq!(vals(&x.mean_all().unwrap()), [3.5]);
    assert_eq!(vals(&x.max_all().unwrap()), [6.]);
    assert_eq!(vals(&x.min_all().unwrap()), [1.]);
    assert_eq!(x.argmax_all().unwrap().to_vec_u32().unwrap(), [5]);
    assert_eq!(x.sum_all().unwrap().dims(), &[] as &[usize]);
    assert_eq!(x.sum(1, true).unwrap().dims(), &[2, 1]);
    assert_eq!(x.sum(0, true).unwrap().dims(), &[1, 3]);
    assert_eq!(x.argmax(1, true).unwrap().dims(), &[2, 1]);
    assert_eq!(x.argmax(1, false).unwrap().dtype(), DType::U32);
    // Several dims; argmax indexes the reduced dims flattened row-major.
    // [[[1, 9], [3, 4]],
    //  [[5, 6], [7, 8]]]
    let y = t(&[1., 9., 3., 4., 5., 6., 7., 8.], [2, 2, 2]);
    assert_eq!(
        vals(&y.reduce(ReduceOp::Sum, &[0, 2], false).unwrap()),
        [21., 22.]
    );
    assert_eq!(
        vals(&y.reduce(ReduceOp::Sum, &[2, 0], true).unwrap()),
        [21., 22.]
    );
    assert_eq!(
        y.reduce(ReduceOp::Sum, &[2, 0], true).unwrap().dims(),
        &[1, 2, 1]
    );
    assert_eq!(
        vals(&y.reduce(ReduceOp::Max, &[1, 2], false).unwrap()),
        [9., 8.]
    );
    let am = y.reduce(ReduceOp::ArgMax, &[-2, -1], false).unwrap();
    assert_eq!(am.to_vec_u32().unwrap(), [1, 3]);
    // An empty dim list reduces nothing.
    assert_eq!(
        vals(&y.reduce(ReduceOp::Sum, &[], false).unwrap()),
        vals(&y)
    );
    // A transposed view reduces its logical rows.
    assert_eq!(vals(&x.t().unwrap().sum(1, false).unwrap()), [5., 7., 9.]);
}

#[test]
fn cpu_reference_ties_nan_and_empty() {
    let x = t(&[1., 7., 3., 7., 7.], [5]);
    assert_eq!(x.argmax(0, false).unwrap().to_vec_u32().unwrap(), [1]);
    let m = t(&[-0.5, -0.5, -3.0], [3]);
    assert_eq!(m.argmax_all().unwrap().to_vec_u32().unwrap(), [0]);
    // NaN propagates through max and min, and argmax points at it (as PyTorch).
    let n = t(&[1., f32::NAN, 5., f32::NAN], [4]);
    assert!(vals(&n.max_all().unwrap())[0].is_nan());
    assert!(vals(&n.min_all().unwrap())[0].is_nan());
    assert_eq!(n.argmax_all().unwrap().to_vec_u32().unwrap(), [1]);
    // Infinities are ordinary values.
    let i = t(&[f32::NEG_INFINITY, f32::NEG_INFINITY], [2]);
    assert_eq!(vals(&i.max_all().unwrap()), [f32::NEG_INFINITY]);
    assert_eq!(i.argmax_all().unwrap().to_vec_u32().unwrap(), [0]);
    // Empty reductions: sum 0, mean NaN; an empty *output* is fine for every op.
    let e = Tensor::zeros([3, 0], &cpu()).unwrap();
    assert_eq!(vals(&e.sum(1, false).unwrap()), [0., 0., 0.]);
    assert!(vals(&e.mean(1, false).unwrap()).iter().all(|v| v.is_nan()));
    assert_eq!(vals(&e.sum_all().unwrap()), [0.]);
    assert_eq!(e.max(0, false).unwrap().dims(), &[0]);
    assert_eq!(e.argmax(0, true).unwrap().dims(), &[1, 0]);
    // A scalar reduces over nothing to itself.
    let s = Tensor::scalar(4.5, &cpu()).unwrap();
    assert_eq!(vals(&s.sum_all().unwrap()), [4.5]);
    assert_eq!(s.argmax_all().unwrap().to_vec_u32().unwrap(), [0]);
}

#[test]
fn cpu_sum_is_accurate() {
    // 1 + 1e-8 · 10^6 in f32 naively stays 1 (each 1e-8 is below half an ulp); f64 does not.
    let mut v = vec![1e-8f32; 1_000_001];
    v[0] = 1.0;
    let x = t(&v, [v.len()]);
    assert_close(&vals(&x.sum_all().unwrap()), &[1.01], 0.0, 1e-6, "sum");
    assert_close(
        &vals(&x.mean_all().unwrap()),
        &[1.01 / 1_000_001.0],
        0.0,
        1e-6,
        "mean",
    );
}

// ------------------------------------------------------------------ GPU against CPU

/// Every op over every single dim (positive and negative), with and without keepdim, and
/// over all elements.
fn check_every_dim(dims: &[usize], seed: u64) {
    let n: usize = dims.iter().product();
    let v = data(n, seed);
    let rank = dims.len() as isize;
    for op in OPS {
        for d in -rank..rank {
            for keep in [false, true] {
                let len = dims[d.rem_euclid(rank) as usize];
                let (atol, rtol) = tol(op, len);
                let what = format!("{op:?} dim {d} keepdim {keep} of {dims:?}");
                gpu_matches_cpu(&what, atol, rtol, |dev| {
                    Tensor::from_slice(&v, dims, dev)?.reduce(op, &[d], keep)
                });
            }
        }
        let (atol, rtol) = tol(op, n);
        gpu_matches_cpu(&format!("{op:?} all of {dims:?}"), atol, rtol, |dev| {
            let x = Tensor::from_slice(&v, dims, dev)?;
            match op {
                ReduceOp::Sum => x.sum_all(),
                ReduceOp::Mean => x.mean_all(),
                ReduceOp::Max => x.max_all(),
                ReduceOp::Min => x.min_all(),
                ReduceOp::ArgMax => x.argmax_all(),
            }
        });
    }
}

#[test]
fn gpu_vectors_of_awkward_lengths() {
    for (i, n) in [1usize, 3, 17, 31, 32, 33, 127, 129, 1000, 1025, 4097]
        .into_iter()
        .enumerate()
    {
        check_every_dim(&[n], i as u64);
    }
}

#[test]
fn gpu_matrices_and_3d() {
    check_every_dim(&[3, 1000, 7], 10);
    check_every_dim(&[17, 129], 11);
    check_every_dim(&[127, 3], 12);
    check_every_dim(&[1, 33, 1], 13);
}

#[test]
fn gpu_several_dims() {
    let dims = [3, 1000, 7];
    let v = data(21_000, 20);
    let choices: [&[isize]; 6] = [&[0, 2], &[-1, -3], &[0, 1, 2], &[1, 2], &[0, 1], &[2, 0]];
    for op in OPS {
        for ds in choices {
            for keep in [false, true] {
                let len: usize = ds.iter().map(|&d| dims[d.rem_euclid(3) as usize]).product();
                let (atol, rtol) = tol(op, len);
                let what = format!("{op:?} dims {ds:?} keepdim {keep}");
                gpu_matches_cpu(&what, atol, rtol, |dev| {
                    Tensor::from_slice(&v, dims, dev)?.reduce(op, ds, keep)
                });
            }
        }
    }
}

#[test]
fn gpu_strided_views() {
    let v = data(129 * 17, 30);
    let w = data(4 * 5 * 6, 31);
    for op in OPS {
        let (atol, rtol) = tol(op, 129);
        for d in [0, 1] {
            gpu_matches_cpu(
                &format!("{op:?} dim {d} of a transpose"),
                atol,
                rtol,
                |dev| {
                    let x = Tensor::from_slice(&v, [129, 17], dev)?.t()?;
                    assert!(!x.is_contiguous());
                    x.reduce(op, &[d], false)
                },
            );
        }
        gpu_matches_cpu(&format!("{op:?} all of a transpose"), atol, rtol, |dev| {
            Tensor::from_slice(&v, [129, 17], dev)?
                .t()?
                .reduce(op, &[0, 1], false)
        });
        for ds in [&[0isize][..], &[1, 2], &[0, 2]] {
            gpu_matches_cpu(&format!("{op:?} {ds:?} of a permute"), atol, rtol, |dev| {
                Tensor::from_slice(&w, [4, 5, 6], dev)?
                    .permute(&[2, 0, 1])?
                    .reduce(op, ds, true)
            });
        }
        gpu_matches_cpu(&format!("{op:?} of a narrowed view"), atol, rtol, |dev| {
            Tensor::from_slice(&v, [129, 17], dev)?
                .narrow(0, 5, 100)?
                .narrow(1, 3, 11)?
                .reduce(op, &[0], false)
        });
        gpu_matches_cpu(&format!("{op:?} of a broadcast"), atol, rtol, |dev| {
            Tensor::from_slice(&v[..17], [17], dev)?
                .broadcast_to([40, 17])?
                .reduce(op, &[0], false)
        });
    }
}

#[test]
fn gpu_long_rows() {
    // 100,003 elements: two passes (chunks of 4,096, then the 25 partials).
    let n = 100_003;
    let v = data(n, 40);
    for op in OPS {
        let (atol, rtol) = tol(op, n);
        gpu_matches_cpu(&format!("{op:?} of a row of {n}"), atol, rtol, |dev| {
            Tensor::from_slice(&v, [1, n], dev)?.reduce(op, &[1], false)
        });
        // The same elements as 2 columns: strided long rows, and 50,001 rows of 2.
        let m = data(2 * 50_001, 41);
        for d in [0, 1] {
            let len = if d == 0 { 50_001 } else { 2 };
            let (atol, rtol) = tol(op, len);
            gpu_matches_cpu(
                &format!("{op:?} dim {d} of [50001, 2]"),
                atol,
                rtol,
                |dev| Tensor::from_slice(&m, [50_001, 2], dev)?.reduce(op, &[d], false),
            );
        }
    }
    // 300,007 elements: 74 partials, so the second pass is a workgroup tree over pairs.
    let n2 = 300_007;
    let v2 = data(n2, 42);
    for op in OPS {
        let (atol, rtol) = tol(op, n2);
        gpu_matches_cpu(&format!("{op:?} of a row of {n2}"), atol, rtol, |dev| {
            Tensor::from_slice(&v2, [n2], dev)?.reduce(op, &[0], true)
        });
    }
    // Positive terms: the GPU's tree order keeps the sum close to the f64 reference.
    let pos: Vec<f32> = v.iter().map(|x| x.abs() + 0.1).collect();
    gpu_matches_cpu("sum of 100,003 positive terms", 0.0, 2e-6, |dev| {
        Tensor::from_slice(&pos, [n], dev)?.sum_all()
    });
}

#[test]
fn gpu_many_rows_fold_the_grid() {
    // 66,000 rows exceed 65,535 workgroups in one grid dimension.
    let v = data(66_000 * 33, 50);
    for op in [ReduceOp::Sum, ReduceOp::ArgMax] {
        gpu_matches_cpu(
            &format!("{op:?} over rows of [66000, 33]"),
            1e-4,
            1e-5,
            |dev| Tensor::from_slice(&v, [66_000, 33], dev)?.reduce(op, &[1], false),
        );
    }
}

#[test]
fn gpu_argmax_ties_take_the_first() {
    let Some(gpu) = common::gpu() else { return };
    // All equal: index 0 through every path (thread per row, workgroup, two passes).
    for n in [5usize, 200, 5000, 100_003] {
        let x = Tensor::full(0.25, [n], &gpu).unwrap();
        assert_eq!(
            x.argmax_all().unwrap().to_vec_u32().unwrap(),
            [0],
            "n = {n}"
        );
        let y = Tensor::full(-1.0, [3, n], &gpu).unwrap();
        assert_eq!(y.argmax(1, false).unwrap().to_vec_u32().unwrap(), [0, 0, 0]);
    }
    // The maximum appears twice, in different threads and different chunks.
    for (n, a, b) in [
        (20usize, 3usize, 17usize),
        (700, 400, 65),
        (100_003, 90_000, 5_000),
        (300_007, 250_000, 140_000),
    ] {
        let mut v = data(n, n as u64);
        v[a] = 9.0;
        v[b] = 9.0;
        let x = Tensor::from_slice(&v, [n], &gpu).unwrap();
        let want = a.min(b) as u32;
        assert_eq!(
            x.argmax_all().unwrap().to_vec_u32().unwrap(),
            [want],
            "n = {n}"
        );
        assert_eq!(vals(&x.max_all().unwrap()), [9.0]);
    }
}

#[test]
fn gpu_nan_inf_and_empty() {
    let mut v = data(5000, 60);
    v[1234] = f32::NAN;
    v[4000] = f32::NAN;
    for op in [
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::ArgMax,
        ReduceOp::Sum,
    ] {
        gpu_matches_cpu(&format!("{op:?} with NaN"), 0.0, 0.0, |dev| {
            Tensor::from_slice(&v, [5000], dev)?.reduce(op, &[0], false)
        });
    }
    let inf = [f32::NEG_INFINITY; 40];
    gpu_matches_cpu("max of -inf", 0.0, 0.0, |dev| {
        Tensor::from_slice(&inf, [40], dev)?.max_all()
    });
    gpu_matches_cpu("argmax of -inf", 0.0, 0.0, |dev| {
        Tensor::from_slice(&inf, [40], dev)?.argmax_all()
    });
    gpu_matches_cpu("empty sum", 0.0, 0.0, |dev| {
        Tensor::zeros([3, 0], dev)?.sum(1, true)
    });
    gpu_matches_cpu("empty mean", 0.0, 0.0, |dev| {
        Tensor::zeros([3, 0], dev)?.mean(-1, false)
    });
    gpu_matches_cpu("empty output", 0.0, 0.0, |dev| {
        Tensor::zeros([0, 3], dev)?.max(1, false)
    });
    gpu_matches_cpu("scalar", 0.0, 0.0, |dev| {
        Tensor::scalar(2.5, dev)?.mean_all()
    });
}

#[test]
fn gpu_high_rank() {
    // Rank 10: mergeable neighbours collapse, so the kernel sees few dims.
    let dims = [2usize; 10];
    let v = data(1024, 90);
    for ds in [
        &[0isize][..],
        &[9],
        &[3, 4, 5],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    ] {
        gpu_matches_cpu(&format!("sum {ds:?} of rank 10"), 1e-5, 1e-5, |dev| {
            Tensor::from_slice(&v, dims.as_slice(), dev)?.reduce(ReduceOp::Sum, ds, false)
        });
    }
    // Every other dim of rank 18 leaves 9 kept dims that cannot merge: an error on the GPU
    // (naming the op and shape), an answer on the CPU.
    let Some(gpu) = common::gpu() else { return };
    let odd: Vec<isize> = (1..18).step_by(2).collect();
    let x = Tensor::zeros(vec![2usize; 18], &gpu).unwrap();
    let e = x.reduce(ReduceOp::Max, &odd, false).unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("max") && e.to_string().contains("[2, 2, 2"),
        "{e}"
    );
    let c = Tensor::zeros(vec![2usize; 18], &cpu()).unwrap();
    assert_eq!(c.reduce(ReduceOp::Max, &odd, false).unwrap().numel(), 512);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn gpu_random_shapes(
        dims in prop::collection::vec(1usize..7, 1..5),
        mask in any::<u8>(),
        op in 0usize..5,
        keep in any::<bool>(),
        transpose in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let op = OPS[op];
        let rank = dims.len();
        let ds: Vec<isize> = (0..rank).filter(|d| mask >> d & 1 == 1).map(|d| d as isize).collect();
        let n = dims.iter().product();
        let v = data(n, seed);
        let (atol, rtol) = tol(op, n);
        gpu_matches_cpu(&format!("{op:?} {ds:?} of {dims:?}"), atol, rtol, |dev| {
            let mut x = Tensor::from_slice(&v, dims.as_slice(), dev)?;
            if transpose && rank >= 2 {
                x = x.transpose(0, -1)?;
            }
            x.reduce(op, &ds, keep)
        });
    }
}

// ------------------------------------------------------------------ sum_to_shape

#[test]
fn sum_to_shape_by_hand_and_on_gpu() {
    let x = t(&[1., 2., 3., 4., 5., 6.], [2, 3]);
    let cases: [(&[usize], &[f32]); 6] = [
        (&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        (&[3], &[5., 7., 9.]),
        (&[1, 3], &[5., 7., 9.]),
        (&[2, 1], &[6., 15.]),
        (&[1], &[21.]),
        (&[], &[21.]),
    ];
    for (shape, want) in cases {
        let s = x.sum_to_shape(&Shape::from(shape)).unwrap();
        assert_eq!(s.dims(), shape);
        assert_eq!(vals(&s), want, "to {shape:?}");
    }
    let v = data(4 * 3 * 5, 70);
    for shape in [&[3usize, 1][..], &[5], &[4, 1, 5], &[1, 1, 1], &[]] {
        gpu_matches_cpu(&format!("sum_to_shape {shape:?}"), 1e-5, 1e-5, |dev| {
            Tensor::from_slice(&v, [4, 3, 5], dev)?.sum_to_shape(&Shape::from(shape))
        });
    }
}

// ------------------------------------------------------------------ errors

fn err_text(r: wgml::Result<Tensor>) -> (Error, String) {
    let e = r.expect_err("expected an error");
    let s = e.to_string();
    (e, s)
}

#[test]
fn errors_name_the_op_and_shape() {
    let x = t(&data(6, 80), [2, 3]);
    let (e, s) = err_text(x.sum(2, false));
    assert!(matches!(e, Error::DimOutOfRange { .. }), "{e:?}");
    assert!(s.contains("sum") && s.contains("[2, 3]"), "{s}");
    let (e, s) = err_text(x.argmax(-3, false));
    assert!(matches!(e, Error::DimOutOfRange { .. }), "{e:?}");
    assert!(s.contains("argmax") && s.contains("[2, 3]"), "{s}");
    let (e, s) = err_text(x.reduce(ReduceOp::Mean, &[1, -1], false));
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    assert!(
        s.contains("mean") && s.contains("[2, 3]") && s.contains("twice"),
        "{s}"
    );
    let idx = Tensor::from_indices(&[1, 2, 3], [3], &cpu()).unwrap();
    let (e, s) = err_text(idx.sum_all());
    assert!(matches!(e, Error::DType { .. }), "{e:?}");
    assert!(
        s.contains("sum") && s.contains("[3]") && s.contains("U32"),
        "{s}"
    );
    let (e, s) = err_text(x.sum_to_shape(&Shape::from([2])));
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
    assert!(
        s.contains("sum_to_shape") && s.contains("[2, 3]") && s.contains("[2]"),
        "{s}"
    );
    // [2, 3] cannot have come from [1, 2, 3]: broadcasting never drops a dim.
    assert!(x.sum_to_shape(&Shape::from([1, 2, 3])).is_err());
    assert!(x.sum_to_shape(&Shape::from([5, 2, 3])).is_err());
    let devices: Vec<Device> = std::iter::once(cpu()).chain(common::gpu()).collect();
    for dev in devices {
        let e3 = Tensor::zeros([3, 0], &dev).unwrap();
        for (r, op) in [
            (e3.max(1, false), "max"),
            (e3.min_all(), "min"),
            (e3.argmax(-1, true), "argmax"),
        ] {
            let (e, s) = err_text(r);
            assert!(matches!(e, Error::Empty { .. }), "{e:?}");
            assert!(s.contains(op) && s.contains("[3, 0]"), "{s}");
        }
    }
}

// ------------------------------------------------------------------ timings

/// Throughput of each kernel path, GPU and CPU: `cargo test --release --test reduce -- \
/// --ignored --nocapture`, with `WGML_BENCH_N` elements (default 2^20; 10^7 on a real GPU).
#[test]
#[ignore]
fn bench_reductions() {
    let n: usize = std::env::var("WGML_BENCH_N").map_or(1 << 20, |v| v.parse().unwrap());
    let cases: [(&str, Vec<usize>, ReduceOp, isize); 6] = [
        ("sum of one long row", vec![1, n], ReduceOp::Sum, 1),
        ("sum of rows of 3", vec![n / 3, 3], ReduceOp::Sum, 1),
        ("sum of columns", vec![n / 1000, 1000], ReduceOp::Sum, 0),
        (
            "mean of rows of 1000",
            vec![n / 1000, 1000],
            ReduceOp::Mean,
            1,
        ),
        (
            "max of rows of 4096",
            vec![n / 4096, 4096],
            ReduceOp::Max,
            1,
        ),
        ("argmax of one long row", vec![1, n], ReduceOp::ArgMax, 1),
    ];
    let devices: Vec<Device> = common::gpu().into_iter().chain(Some(cpu())).collect();
    for dev in &devices {
        for (what, dims, op, d) in &cases {
            let x = Tensor::rand(dims.as_slice(), 1, dev).unwrap();
            x.reduce(*op, &[*d], false).unwrap().to_vec().unwrap(); // pipelines, pool
            let iters = 5;
            let t0 = std::time::Instant::now();
            for _ in 0..iters {
                drop(x.reduce(*op, &[*d], false).unwrap());
            }
            dev.synchronize().unwrap();
            let s = t0.elapsed().as_secs_f64() / iters as f64;
            let gbs = x.numel() as f64 * 4.0 / s / 1e9;
            println!(
                "{:<28} {what:<24} {dims:?}: {:9.3} ms {gbs:7.2} GB/s",
                dev.name(),
                s * 1e3
            );
        }
    }
}
