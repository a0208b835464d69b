//! Creation and read-back: from_vec/from_slice/from_indices, zeros/ones/full/arange, seeded rand/randn, to_vec/to_vec_u32/to_vec_async, item and to_device.

mod common;

use common::gpu;
use wgml::{DType, Device, Tensor};

fn devices() -> Vec<Device> {
    std::iter::once(Device::cpu()).chain(gpu()).collect()
}

#[test]
fn from_vec_slice_and_indices() {
    for dev in devices() {
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &dev).unwrap();
        assert_eq!(x.dims(), &[2, 3]);
        assert_eq!(x.rank(), 2);
        assert_eq!(x.numel(), 6);
        assert_eq!(x.dtype(), DType::F32);
        assert_eq!(x.device(), &dev);
        assert!(x.is_contiguous());
        assert_eq!(x.dim(-1).unwrap(), 3);
        assert_eq!(x.to_vec().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let s = Tensor::from_slice(&[-0.0, f32::INFINITY, f32::MIN_POSITIVE], 3, &dev).unwrap();
        let bits: Vec<u32> = s.to_vec().unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits,
            [
                (-0.0f32).to_bits(),
                f32::INFINITY.to_bits(),
                f32::MIN_POSITIVE.to_bits()
            ],
            "{dev:?}"
        );
        let i = Tensor::from_indices(&[0, 1, u32::MAX, 0x7fc0_0000], [2, 2], &dev).unwrap();
        assert_eq!(i.dtype(), DType::U32);
        assert_eq!(
            i.to_vec_u32().unwrap(),
            [0, 1, u32::MAX, 0x7fc0_0000],
            "{dev:?}"
        );
        // to_vec converts indices to their f32 values.
        assert_eq!(
            i.to_vec().unwrap(),
            [0.0, 1.0, u32::MAX as f32, 0x7fc0_0000u32 as f32]
        );
        assert!(x.to_vec_u32().is_err(), "to_vec_u32 of F32");
        // Empty tensors.
        let e = Tensor::from_vec(vec![], [0, 3], &dev).unwrap();
        assert_eq!(e.numel(), 0);
        assert!(e.to_vec().unwrap().is_empty());
        assert!(Tensor::from_indices(&[], 0, &dev)
            .unwrap()
            .to_vec_u32()
            .unwrap()
            .is_empty());
    }
}

#[test]
fn filled_tensors() {
    for dev in devices() {
        let z = Tensor::zeros([2, 3], &dev).unwrap();
        assert_eq!(z.to_vec().unwrap(), [0.0; 6], "{dev:?}");
        assert_eq!(Tensor::ones(5, &dev).unwrap().to_vec().unwrap(), [1.0; 5]);
        assert_eq!(
            Tensor::full(-2.5, [3, 1], &dev).unwrap().to_vec().unwrap(),
            [-2.5; 3]
        );
        assert_eq!(z.ones_like().unwrap().to_vec().unwrap(), [1.0; 6]);
        assert_eq!(z.ones_like().unwrap().dims(), &[2, 3]);
        assert_eq!(
            Tensor::ones([4], &dev)
                .unwrap()
                .zeros_like()
                .unwrap()
                .to_vec()
                .unwrap(),
            [0.0; 4]
        );
        let s = Tensor::scalar(3.5, &dev).unwrap();
        assert_eq!(s.rank(), 0);
        assert_eq!(s.item().unwrap(), 3.5);
        // Awkward sizes, around the workgroup of 256 (fill and clear on the GPU).
        for n in [1usize, 3, 17, 255, 256, 257, 1000] {
            assert_eq!(
                Tensor::full(7.0, n, &dev).unwrap().to_vec().unwrap(),
                vec![7.0; n]
            );
            assert_eq!(
                Tensor::zeros(n, &dev).unwrap().to_vec().unwrap(),
                vec![0.0; n]
            );
        }
        // A pooled GPU buffer that held other values is cleared by zeros.
        drop(Tensor::full(9.0, 1000, &dev).unwrap());
        assert_eq!(
            Tensor::zeros(1000, &dev).unwrap().to_vec().unwrap(),
            vec![0.0; 1000]
        );
        assert_eq!(Tensor::zeros([0], &dev).unwrap().numel(), 0);
        assert_eq!(Tensor::full(1.0, [2, 0], &dev).unwrap().numel(), 0);
    }
}

#[test]
fn arange_ranges() {
    for dev in devices() {
        assert_eq!(
            Tensor::arange(0.0, 5.0, 1.0, &dev)
                .unwrap()
                .to_vec()
                .unwrap(),
            [0., 1., 2., 3., 4.]
        );
        assert_eq!(
            Tensor::arange(1.0, 2.0, 0.25, &dev)
                .unwrap()
                .to_vec()
                .unwrap(),
            [1., 1.25, 1.5, 1.75]
        );
        assert_eq!(
            Tensor::arange(3.0, 0.0, -1.0, &dev)
                .unwrap()
                .to_vec()
                .unwrap(),
            [3., 2., 1.]
        );
        assert_eq!(Tensor::arange(0.0, 1.0, 0.3, &dev).unwrap().dims(), &[4]);
        assert_eq!(Tensor::arange(2.0, 2.0, 1.0, &dev).unwrap().dims(), &[0]);
        assert_eq!(
            Tensor::arange(2.0, 0.0, 1.0, &dev).unwrap().dims(),
            &[0],
            "wrong direction: empty"
        );
        assert!(Tensor::arange(0.0, 1.0, 0.0, &dev).is_err());
        assert!(Tensor::arange(0.0, f32::INFINITY, 1.0, &dev).is_err());
        assert!(Tensor::arange(f32::NAN, 1.0, 1.0, &dev).is_err());
    }
}

#[test]
fn seeded_random_tensors() {
    let cpu = Device::cpu();
    let r1 = Tensor::rand([100], 42, &cpu).unwrap().to_vec().unwrap();
    let r2 = Tensor::rand([100], 42, &cpu).unwrap().to_vec().unwrap();
    let r3 = Tensor::rand([100], 43, &cpu).unwrap().to_vec().unwrap();
    assert_eq!(r1, r2, "same seed, same values");
    assert_ne!(r1, r3, "different seeds differ");
    let n1 = Tensor::randn([100], 7, &cpu).unwrap().to_vec().unwrap();
    assert_ne!(n1, Tensor::randn([100], 8, &cpu).unwrap().to_vec().unwrap());
    if let Some(g) = gpu() {
        // Drawn on the host: the same bits on every device.
        assert_eq!(Tensor::rand([100], 42, &g).unwrap().to_vec().unwrap(), r1);
        assert_eq!(Tensor::randn([100], 7, &g).unwrap().to_vec().unwrap(), n1);
        let u = Tensor::rand_uniform([50], -3.0, 5.0, 9, &g)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(
            u,
            Tensor::rand_uniform([50], -3.0, 5.0, 9, &cpu)
                .unwrap()
                .to_vec()
                .unwrap()
        );
    }
    // rand in [0, 1), rand_uniform in [lo, hi).
    let big = Tensor::rand([10_000], 1, &cpu).unwrap().to_vec().unwrap();
    assert!(big.iter().all(|&v| (0.0..1.0).contains(&v)));
    let mean = big.iter().map(|&v| v as f64).sum::<f64>() / 1e4;
    assert!((mean - 0.5).abs() < 0.02, "uniform mean {mean}");
    let u = Tensor::rand_uniform([10_000], -3.0, 5.0, 2, &cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(u.iter().all(|&v| (-3.0..5.0).contains(&v)));
    assert!(u.iter().any(|&v| v < -2.9) && u.iter().any(|&v| v > 4.9));
    // randn: mean ~ 0, std ~ 1 on 10k samples (standard errors 0.01 and ~0.007).
    let z = Tensor::randn([100, 100], 3, &cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / 1e4;
    let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 1e4;
    assert!(mean.abs() < 0.04, "randn mean {mean}");
    assert!((var.sqrt() - 1.0).abs() < 0.03, "randn std {}", var.sqrt());
    assert!(z.iter().all(|v| v.is_finite()));
}

#[test]
fn read_back_item_and_async() {
    for dev in devices() {
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &dev).unwrap();
        assert_eq!(
            x.narrow(1, 1, 1)
                .unwrap()
                .narrow(0, 1, 1)
                .unwrap()
                .item()
                .unwrap(),
            5.0
        );
        assert_eq!(
            Tensor::from_vec(vec![9.0], [1, 1, 1], &dev)
                .unwrap()
                .item()
                .unwrap(),
            9.0
        );
        assert!(x.item().is_err(), "item of 6 elements");
        // Read-back of views: transposed, narrowed with an offset.
        assert_eq!(
            x.t().unwrap().to_vec().unwrap(),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        assert_eq!(
            x.narrow(0, 1, 1).unwrap().to_vec().unwrap(),
            [4.0, 5.0, 6.0]
        );
        // to_vec_async resolves to the same values, views and indices included.
        let fut = x.t().unwrap().to_vec_async();
        assert_eq!(
            pollster::block_on(fut).unwrap(),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0],
            "{dev:?}"
        );
        let y = x.mul_scalar(2.0).unwrap();
        let (a, b) = pollster::block_on(futures_join(
            y.to_vec_async(),
            x.narrow(1, 2, 1).unwrap().to_vec_async(),
        ));
        assert_eq!(a.unwrap(), [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert_eq!(b.unwrap(), [3.0, 6.0]);
        let i = Tensor::from_indices(&[3, 1, 2], 3, &dev).unwrap();
        assert_eq!(
            pollster::block_on(i.to_vec_async()).unwrap(),
            [3.0, 1.0, 2.0]
        );
        let e = Tensor::zeros([0], &dev).unwrap();
        assert!(pollster::block_on(e.to_vec_async()).unwrap().is_empty());
    }
}

/// Awaits two futures one after the other (both were started when created).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let a = a.await;
    (a, b.await)
}

#[test]
fn to_device_both_ways() {
    let cpu = Device::cpu();
    let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), [3, 4], &cpu).unwrap();
    assert_eq!(
        x.to_device(&cpu).unwrap().id(),
        x.id(),
        "same device: same tensor"
    );
    let Some(g) = gpu() else { return };
    let on_gpu = x.to_device(&g).unwrap();
    assert!(on_gpu.device().is_gpu());
    assert_eq!(on_gpu.dims(), &[3, 4]);
    assert_eq!(on_gpu.to_vec().unwrap(), x.to_vec().unwrap());
    // A view goes over as its elements in row-major order.
    let t = x.t().unwrap().to_device(&g).unwrap();
    assert!(t.is_contiguous());
    assert_eq!(t.to_vec().unwrap(), x.t().unwrap().to_vec().unwrap());
    let back = on_gpu.t().unwrap().to_device(&cpu).unwrap();
    assert!(back.device().is_cpu());
    assert_eq!(back.dims(), &[4, 3]);
    assert_eq!(back.to_vec().unwrap(), x.t().unwrap().to_vec().unwrap());
    // Indices keep their dtype and words both ways.
    let i = Tensor::from_indices(&[u32::MAX, 0x7f80_0001, 5], 3, &cpu).unwrap();
    let ig = i.to_device(&g).unwrap();
    assert_eq!(ig.dtype(), DType::U32);
    assert_eq!(ig.to_vec_u32().unwrap(), [u32::MAX, 0x7f80_0001, 5]);
    assert_eq!(
        ig.to_device(&cpu).unwrap().to_vec_u32().unwrap(),
        [u32::MAX, 0x7f80_0001, 5]
    );
    assert_eq!(on_gpu.to_device(&g).unwrap().id(), on_gpu.id());
}
