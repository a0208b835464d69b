//! A lost GPU device: every later op, allocation and read-back on it returns
//! `Err(DeviceLost)` saying why, and nothing panics. (Its own test binary: the lost device is
//! shared by every test of a process.)

mod common;

use wgml::nn::loss::cross_entropy;
use wgml::{Device, Error, Tensor};

fn lost(what: &str, e: Error) {
    assert!(
        matches!(e, Error::DeviceLost { .. } | Error::Gpu(_)),
        "{what}: expected DeviceLost, got {e:?}"
    );
}

#[test]
fn every_op_after_a_device_loss_is_an_error() {
    let Some(dev) = common::gpu() else { return };
    let Device::Gpu(ctx) = &dev else {
        unreachable!()
    };
    // Work recorded before the loss, read after it.
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2], &dev).unwrap();
    let b = a.matmul(&a).unwrap();
    assert_eq!(b.to_vec().unwrap(), [7.0, 10.0, 15.0, 22.0]);
    ctx.destroy_for_test();
    // The first report may be the raw wgpu error; every later one is DeviceLost.
    let _ = dev.synchronize();
    let e = dev.synchronize().unwrap_err();
    assert!(
        matches!(
            e,
            Error::DeviceLost {
                op: "synchronize",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("unusable"), "{e}");
    lost("to_vec", b.to_vec().unwrap_err());
    lost("item", b.sum_all().and_then(|s| s.item()).unwrap_err());
    lost("zeros", Tensor::zeros([3], &dev).unwrap_err());
    lost(
        "from_vec",
        Tensor::from_vec(vec![1.0], [1], &dev).unwrap_err(),
    );
    lost("add", a.add(&a).unwrap_err());
    lost("matmul", a.matmul(&a).unwrap_err());
    lost("softmax", a.softmax().unwrap_err());
    let labels = Tensor::from_indices(&[0, 1], 2, &dev);
    if let Ok(l) = labels {
        lost("cross_entropy", cross_entropy(&a, &l).unwrap_err());
    }
    // Moving data off the lost device fails too; the CPU still works.
    lost("to_device", a.to_device(&Device::cpu()).unwrap_err());
    let c = Tensor::ones([2], &Device::cpu()).unwrap();
    assert_eq!(c.add(&c).unwrap().to_vec().unwrap(), [2.0, 2.0]);
}
