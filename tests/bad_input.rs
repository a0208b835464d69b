//! A battery of bad input, each case run on both devices (the CPU backend and the GPU adapter),
//! each asserting the specific error: sizes too large for memory or overflowing, indices and
//! labels out of range (on the GPU: reported by the next read-back, never handed out as valid
//! results), shape, device and dtype mistakes. Nothing here may panic or abort.
//!
//! The GPU cases share one device whose index-error words are global to it, so every test
//! here holds `LOCK`: an error provoked by one test must not surface in another's read-back.

mod common;

use common::gpu;
use std::sync::{Mutex, MutexGuard};
use wgml::nn::loss::{cross_entropy, one_hot};
use wgml::{Conv2dConfig, Device, Error, Result, Tensor};

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn devices() -> Vec<Device> {
    std::iter::once(Device::cpu()).chain(gpu()).collect()
}

/// The error of `r`, or — for a GPU op whose check runs on the device — of reading it back.
fn err_of(what: &str, r: Result<Tensor>) -> Error {
    match r {
        Err(e) => e,
        Ok(t) => match t.to_vec() {
            Err(e) => e,
            Ok(v) => panic!(
                "{what}: expected an error, got a result of shape {:?}: {v:?}",
                t.dims()
            ),
        },
    }
}

/// 2^50 elements (4 PiB): below the overflow bound, beyond any machine and any address space.
const HUGE: [usize; 3] = [1 << 20, 1 << 20, 1 << 10];

#[test]
fn too_large_for_memory() {
    let _g = lock();
    for dev in devices() {
        let expect = |e: &Error, op: &str| match (dev.is_cpu(), e) {
            (true, Error::OutOfMemory { op: o, bytes }) => {
                assert_eq!(*o, op, "{e}");
                assert_eq!(*bytes, 1u64 << 52, "{e}");
            }
            (false, Error::TooLarge { op: o, .. }) => assert_eq!(*o, op, "{e}"),
            _ => panic!("{dev:?} {op}: unexpected {e:?}"),
        };
        expect(&Tensor::zeros(HUGE, &dev).unwrap_err(), "zeros");
        expect(&Tensor::ones(HUGE, &dev).unwrap_err(), "full");
        if dev.is_cpu() {
            // Host-drawn samples: the host buffer is what fails.
            expect(&Tensor::rand(HUGE, 1, &dev).unwrap_err(), "rand");
            expect(&Tensor::randn(HUGE, 1, &dev).unwrap_err(), "randn");
        }
        // A broadcast view of a huge shape is free; an op materialising it is not.
        let s = Tensor::scalar(1.0, &dev).unwrap();
        let view = s.broadcast_to(HUGE).unwrap();
        expect(&view.exp().unwrap_err(), "unary");
        expect(&view.add(&view).unwrap_err(), "add");
        expect(&view.contiguous().unwrap_err(), "copy");
        if dev.is_cpu() {
            expect(&view.to_vec().unwrap_err(), "to_vec");
        }
        // A gather whose output is huge: rows of 2^30 (a broadcast view), 2^20 of them.
        let table = Tensor::zeros([2, 1], &dev)
            .unwrap()
            .broadcast_to([2, 1 << 30])
            .unwrap();
        let idx = Tensor::from_indices(&vec![1; 1 << 20], 1 << 20, &dev).unwrap();
        expect(&table.index_select(0, &idx).unwrap_err(), "index_select");
    }
    // The case on the GPU: beyond the binding limit.
    if let Some(dev) = gpu() {
        let e = Tensor::zeros([1 << 20, 1 << 20], &dev).unwrap_err();
        assert!(matches!(e, Error::TooLarge { op: "zeros", .. }), "{e:?}");
    }
}

#[test]
fn overflowing_shapes() {
    let _g = lock();
    let over = [usize::MAX / 2, 4];
    for dev in devices() {
        let is_overflow = |e: &Error, op: &str| {
            assert!(
                matches!(e, Error::Overflow { op: o, .. } if *o == op),
                "{dev:?} {op}: {e:?}"
            );
            assert!(e.to_string().contains("overflows"), "{e}");
        };
        is_overflow(&Tensor::zeros(over, &dev).unwrap_err(), "zeros");
        is_overflow(&Tensor::ones(over, &dev).unwrap_err(), "full");
        is_overflow(&Tensor::rand(over, 0, &dev).unwrap_err(), "rand");
        is_overflow(
            &Tensor::from_vec(vec![], over, &dev).unwrap_err(),
            "from_vec",
        );
        is_overflow(
            &Tensor::from_indices(&[], over, &dev).unwrap_err(),
            "from_indices",
        );
        is_overflow(
            &Tensor::arange(0.0, f32::MAX, 1e-30, &dev).unwrap_err(),
            "arange",
        );
        let x = Tensor::zeros([2, 3], &dev).unwrap();
        is_overflow(&x.reshape(over).unwrap_err(), "reshape");
        let s = Tensor::scalar(1.0, &dev).unwrap();
        is_overflow(&s.broadcast_to(over).unwrap_err(), "broadcast_to");
        // Each operand fits; their broadcast does not.
        let a = s.broadcast_to([1 << 40, 1]).unwrap();
        let b = s.broadcast_to([1, 1 << 40]).unwrap();
        is_overflow(&a.add(&b).unwrap_err(), "add");
        // matmul and conv output shapes.
        let a = Tensor::zeros([1 << 33, 0], &dev);
        if let Ok(a) = a {
            let b = Tensor::zeros([0, 1 << 33], &dev).unwrap();
            is_overflow(&a.matmul(&b).unwrap_err(), "matmul");
        }
        let big = s.broadcast_to([1 << 28, 1, 1 << 15, 1 << 15]).unwrap();
        let w = Tensor::zeros([1 << 10, 1, 1, 1], &dev).unwrap();
        let e = big.conv2d(&w, None, Conv2dConfig::default()).unwrap_err();
        is_overflow(&e, "conv2d");
    }
}

#[test]
fn indices_out_of_range() {
    let _g = lock();
    for dev in devices() {
        let table = Tensor::from_vec((0..10).map(|v| v as f32).collect(), [5, 2], &dev).unwrap();
        let bad = Tensor::from_indices(&[0, 7, 1], 3, &dev).unwrap();
        let check = |e: Error, op: &str, index: usize, size: usize| {
            assert!(
                matches!(e, Error::IndexOutOfRange { op: o, index: i, size: s, .. }
                    if o == op && i == index && s == size),
                "{dev:?} {op}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(op) && msg.contains(&index.to_string()),
                "{msg}"
            );
        };
        check(
            err_of("index_select", table.index_select(0, &bad)),
            "index_select",
            7,
            5,
        );
        check(
            err_of("index_select dim 1", table.index_select(1, &bad)),
            "index_select",
            7,
            2,
        );
        let e = err_of("embedding", table.embedding(&bad.reshape([1, 3]).unwrap()));
        check(e, "embedding", 7, 5);
        let g = Tensor::from_indices(&[0, 1, 2, 9], [2, 2], &dev).unwrap();
        check(err_of("gather", table.gather(0, &g)), "gather", 9, 5);
        // The shape of the indexed tensor is named too.
        let e = err_of("index_select", table.index_select(0, &bad));
        assert!(e.to_string().contains("[5, 2]"), "{e}");
        // A bad result is never handed out through later ops either.
        let e = err_of(
            "embedding then sum",
            table
                .embedding(&bad)
                .and_then(|t| t.mul_scalar(2.0))
                .and_then(|t| t.sum_all()),
        );
        check(e, "embedding", 7, 5);
        // The asynchronous read-back reports it too.
        if dev.is_gpu() {
            let t = table.gather(0, &g).unwrap();
            let e = pollster::block_on(t.to_vec_async()).expect_err("to_vec_async must fail");
            check(e, "gather", 9, 5);
        }
        // After the error is reported, the device works on.
        let ok = table
            .index_select(0, &Tensor::from_indices(&[4], 1, &dev).unwrap())
            .unwrap();
        assert_eq!(ok.to_vec().unwrap(), [8.0, 9.0], "{dev:?}");
    }
}

#[test]
fn labels_out_of_range() {
    let _g = lock();
    for dev in devices() {
        let logits = Tensor::zeros([3, 4], &dev).unwrap();
        let labels = Tensor::from_indices(&[1, 4, 2], 3, &dev).unwrap();
        let check = |e: Error, op: &str| {
            assert!(
                matches!(e, Error::IndexOutOfRange { op: o, index: 4, size: 4, .. } if o == op),
                "{dev:?} {op}: {e:?}"
            );
        };
        check(
            err_of("cross_entropy", cross_entropy(&logits, &labels)),
            "cross_entropy",
        );
        check(err_of("one_hot", one_hot(&labels, 4)), "one_hot");
        // The loss's item() is the read-back that reports it on the GPU.
        if dev.is_gpu() {
            let loss = cross_entropy(&logits, &labels).unwrap();
            check(loss.item().unwrap_err(), "cross_entropy");
            // Device::synchronize is an explicit check.
            let _ = one_hot(&labels, 4).unwrap();
            check(dev.synchronize().unwrap_err(), "one_hot");
            dev.synchronize().unwrap();
        }
        // Good labels still work, with the right values.
        let good = Tensor::from_indices(&[1, 3, 0], 3, &dev).unwrap();
        let l = cross_entropy(&logits, &good).unwrap().item().unwrap();
        assert!((l - 4f32.ln()).abs() < 1e-5, "{dev:?}: {l}");
        let oh = one_hot(&good, 4).unwrap().to_vec().unwrap();
        assert_eq!(
            oh,
            [0., 1., 0., 0., 0., 0., 0., 1., 1., 0., 0., 0.],
            "{dev:?}"
        );
    }
}

#[test]
fn shape_mismatches() {
    let _g = lock();
    for dev in devices() {
        let a = Tensor::zeros([2, 3], &dev).unwrap();
        let b = Tensor::zeros([4, 5], &dev).unwrap();
        let mm = |e: Error, op: &str| {
            assert!(
                matches!(e, Error::ShapeMismatch { op: o, .. } if o == op),
                "{dev:?}: {e:?}"
            );
        };
        mm(a.add(&b).unwrap_err(), "add");
        mm(a.matmul(&b).unwrap_err(), "matmul");
        mm(a.reshape([7]).unwrap_err(), "reshape");
        mm(Tensor::cat(&[&a, &b], 0).unwrap_err(), "cat");
        let labels = Tensor::from_indices(&[0, 1, 2], 3, &dev).unwrap();
        mm(cross_entropy(&a, &labels).unwrap_err(), "cross_entropy");
        let x = Tensor::zeros([1, 3, 5, 5], &dev).unwrap();
        let w = Tensor::zeros([2, 2, 3, 3], &dev).unwrap();
        mm(
            x.conv2d(&w, None, Conv2dConfig::default()).unwrap_err(),
            "conv2d",
        );
        let e = a.sum(2, false).unwrap_err();
        assert!(matches!(e, Error::DimOutOfRange { dim: 2, .. }), "{e:?}");
        let e = Tensor::from_vec(vec![1.0; 5], [2, 3], &dev).unwrap_err();
        assert!(matches!(e, Error::ElementCount { len: 5, .. }), "{e:?}");
    }
}

#[test]
fn device_and_dtype_mistakes() {
    let _g = lock();
    for dev in devices() {
        let x = Tensor::zeros([3, 2], &dev).unwrap();
        let idx = Tensor::from_indices(&[0, 1], 2, &dev).unwrap();
        let dt = |e: Error, op: &str| {
            assert!(
                matches!(e, Error::DType { op: o, .. } if o == op),
                "{dev:?}: {e:?}"
            );
        };
        dt(idx.exp().unwrap_err(), "unary");
        dt(x.embedding(&x).unwrap_err(), "embedding");
        dt(x.index_select(0, &x).unwrap_err(), "index_select");
        dt(
            x.matmul(&idx.reshape([2, 1]).unwrap()).unwrap_err(),
            "matmul",
        );
        dt(one_hot(&x, 3).unwrap_err(), "one_hot");
        dt(
            cross_entropy(&x, &x.sum(1, false).unwrap()).unwrap_err(),
            "cross_entropy",
        );
        if let Some(g) = gpu().filter(|_| dev.is_cpu()) {
            let y = Tensor::zeros([3, 2], &g).unwrap();
            let gi = Tensor::from_indices(&[0, 1], 2, &g).unwrap();
            let dm = |e: Error, op: &str| {
                assert!(
                    matches!(e, Error::DeviceMismatch { op: o, .. } if o == op),
                    "{e:?}"
                );
            };
            dm(x.add(&y).unwrap_err(), "add");
            dm(x.matmul(&y.t().unwrap()).unwrap_err(), "matmul");
            dm(x.index_select(0, &gi).unwrap_err(), "index_select");
            dm(y.index_select(0, &idx).unwrap_err(), "index_select");
            dm(Tensor::cat(&[&x, &y], 0).unwrap_err(), "cat");
        }
    }
}

#[test]
fn extreme_arguments() {
    let _g = lock();
    let m = usize::MAX;
    for dev in devices() {
        let x = Tensor::zeros([2, 3], &dev).unwrap();
        assert!(x.narrow(0, m, 2).is_err());
        assert!(x.narrow(0, 1, m).is_err());
        assert!(x.slice(1, 2..m).is_err());
        assert!(x.transpose(isize::MIN, isize::MAX).is_err());
        assert!(x.unsqueeze(isize::MAX).is_err());
        assert!(x.unsqueeze(isize::MIN).is_err());
        assert!(x.squeeze(isize::MIN).is_err());
        assert!(x.permute(&[m, 0]).is_err());
        assert!(x.flatten(isize::MIN, isize::MAX).is_err());
        assert!(x.reshape_infer(&[-1, isize::MAX]).is_err());
        assert!(x.reshape_infer(&[isize::MIN, 2]).is_err());
        assert!(x.sum(isize::MIN, false).is_err());
        let img = Tensor::zeros([1, 1, 4, 4], &dev).unwrap();
        let w = Tensor::zeros([1, 1, 3, 3], &dev).unwrap();
        for cfg in [
            Conv2dConfig {
                padding: [m / 2, 0],
                ..Conv2dConfig::default()
            },
            Conv2dConfig {
                padding: [m, m],
                ..Conv2dConfig::default()
            },
            Conv2dConfig {
                dilation: [m, 1],
                ..Conv2dConfig::default()
            },
            Conv2dConfig {
                stride: [m, m],
                ..Conv2dConfig::default()
            },
            Conv2dConfig {
                groups: m,
                ..Conv2dConfig::default()
            },
        ] {
            let r = img.conv2d(&w, None, cfg);
            if let Ok(t) = r {
                t.to_vec().unwrap();
            }
        }
        for p in [
            wgml::Pool2d {
                kernel: [m, m],
                stride: [1, 1],
                padding: [0, 0],
                ceil_mode: false,
            },
            wgml::Pool2d {
                kernel: [3, 3],
                stride: [m, m],
                padding: [1, 1],
                ceil_mode: true,
            },
            wgml::Pool2d {
                kernel: [m, 2],
                stride: [1, 1],
                padding: [m / 2, 0],
                ceil_mode: true,
            },
        ] {
            // Err or a valid result, never a panic.
            for t in [img.max_pool2d(p), img.avg_pool2d(p)].into_iter().flatten() {
                t.to_vec().unwrap();
            }
        }
        assert!(Tensor::arange(0.0, 1e30, 1.0, &dev).is_err());
        assert!(Tensor::arange(0.0, f32::INFINITY, 1.0, &dev).is_err());
        let table = Tensor::zeros([3, 2], &dev).unwrap();
        let idx = Tensor::from_indices(&[u32::MAX], 1, &dev).unwrap();
        assert!(err_of("index u32::MAX", table.index_select(0, &idx))
            .to_string()
            .contains("4294967295"));
        assert!(one_hot(&idx, m).is_err());
        assert!(x.sum_to_shape(&wgml::Shape::from([m, m])).is_err());
    }
}

#[test]
fn data_helpers_reject_bad_arguments() {
    use wgml::data::{mnist::Split, text::CharCorpus};
    let dev = Device::cpu();
    let split = Split {
        images: vec![0.5; 2 * 4],
        labels: vec![1, 2],
        rows: 2,
        cols: 2,
    };
    let (x, y) = split.batch(&[1, 0], &dev).unwrap();
    assert_eq!(
        (x.dims(), y.to_vec_u32().unwrap()),
        (&[2, 4][..], vec![2, 1])
    );
    for bad in [2, usize::MAX] {
        let e = split.batch(&[0, bad], &dev).unwrap_err();
        assert!(
            matches!(e, Error::IndexOutOfRange { index, size: 2, .. } if index == bad),
            "{e:?}"
        );
    }
    // A split whose public fields disagree is an error too, not a slice panic.
    let short = Split {
        images: vec![0.5; 4],
        ..split
    };
    assert!(short.batch(&[1], &dev).is_err());
    let corpus = CharCorpus::from_text("hello world, hello", 1.0).unwrap();
    let (vx, vy) = corpus.valid_windows(4);
    assert!(vx.is_empty() && vy.is_empty());
    let mut rng = wgml::rng::Rng::new(1);
    assert!(corpus.random_windows(2, usize::MAX, &mut rng).is_err());
    assert!(corpus.random_windows(usize::MAX, 2, &mut rng).is_err());
}

#[test]
fn f16_tables_report_indices_out_of_range() {
    let _g = lock();
    for dev in devices() {
        let table = Tensor::ones([6, 4], &dev)
            .unwrap()
            .to_dtype(wgml::DType::F16)
            .unwrap();
        let bad = Tensor::from_indices(&[1, 6], [2], &dev).unwrap();
        let e = err_of("f16 embedding", table.embedding(&bad));
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    op: "embedding",
                    index: 6,
                    size: 6,
                    ..
                }
            ),
            "{}: {e}",
            dev.name()
        );
        let idx = Tensor::from_indices(&[0, 9, 1, 2], [2, 2], &dev).unwrap();
        let e = err_of("f16 gather", table.narrow(1, 0, 2).unwrap().gather(0, &idx));
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    op: "gather",
                    index: 9,
                    ..
                }
            ),
            "{}: {e}",
            dev.name()
        );
        // The device reports each error once: later work is unaffected.
        assert_eq!(table.sum_all().unwrap().item().unwrap(), 24.0);
    }
}
