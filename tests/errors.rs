//! Bad input returns an `Err` whose message names the op and the shapes: never a panic, never a wgpu abort.

mod common;

use common::gpu;
use wgml::{Device, Error, Tensor};

fn devices() -> Vec<Device> {
    std::iter::once(Device::cpu()).chain(gpu()).collect()
}

/// Asserts the message of `e` contains every piece.
fn says(e: &Error, pieces: &[&str]) {
    let msg = e.to_string();
    for p in pieces {
        assert!(
            msg.contains(p),
            "error message {msg:?} should mention {p:?}"
        );
    }
}

#[test]
fn shape_mismatch_names_op_and_shapes() {
    for dev in devices() {
        let a = Tensor::zeros([2, 3], &dev).unwrap();
        let b = Tensor::zeros([4], &dev).unwrap();
        let e = a.add(&b).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { op: "add", .. }), "{e:?}");
        says(&e, &["add", "[2, 3]", "[4]"]);
        says(&a.mul(&b).unwrap_err(), &["mul", "[2, 3]", "[4]"]);
        says(&a.lt(&b).unwrap_err(), &["lt", "[2, 3]", "[4]"]);
        let c = Tensor::zeros([3, 1], &dev).unwrap();
        says(
            &Tensor::where_cond(&c, &a, &a).unwrap_err(),
            &["where", "[3, 1]", "[2, 3]"],
        );
        says(&a.reshape([5]).unwrap_err(), &["reshape", "[2, 3]", "[5]"]);
        says(
            &a.broadcast_to([4, 3]).unwrap_err(),
            &["broadcast_to", "[2, 3]", "[4, 3]"],
        );
        says(
            &Tensor::cat(&[&a, &b], 0).unwrap_err(),
            &["cat", "[2, 3]", "[4]"],
        );
    }
}

#[test]
fn device_mismatch_names_both_devices() {
    let Some(g) = gpu() else { return };
    let a = Tensor::zeros([2, 3], &Device::cpu()).unwrap();
    let b = Tensor::zeros([2, 3], &g).unwrap();
    let e = a.add(&b).unwrap_err();
    assert!(
        matches!(e, Error::DeviceMismatch { op: "add", .. }),
        "{e:?}"
    );
    says(&e, &["add", "cpu", "gpu:"]);
    says(&b.sub(&a).unwrap_err(), &["sub", "cpu", "gpu:"]);
    says(&Tensor::cat(&[&a, &b], 0).unwrap_err(), &["cat", "cpu"]);
    let c = Tensor::ones([2, 3], &g).unwrap();
    says(
        &Tensor::where_cond(&a, &b, &c).unwrap_err(),
        &["where", "cpu"],
    );
    let i = Tensor::from_indices(&[0], 1, &g).unwrap();
    says(
        &a.index_select(0, &i).unwrap_err(),
        &["index_select", "cpu"],
    );
    says(&a.embedding(&i).unwrap_err(), &["embedding", "cpu"]);
}

#[test]
fn index_out_of_range_names_op_index_and_shape() {
    // On the GPU the kernels report bad indices at the next read-back, an error global to the
    // device: those cases live in tests/bad_input.rs, whose tests do not run concurrently.
    {
        let dev = Device::cpu();
        let table = Tensor::zeros([5, 2], &dev).unwrap();
        let i = Tensor::from_indices(&[0, 5], 2, &dev).unwrap();
        let e = table.index_select(0, &i).unwrap_err();
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    op: "index_select",
                    index: 5,
                    size: 5,
                    ..
                }
            ),
            "{e:?}"
        );
        says(&e, &["index_select", "5", "[5, 2]"]);
        let e = table
            .embedding(&Tensor::from_indices(&[1, 2, 7], [3], &dev).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::IndexOutOfRange {
                    op: "embedding",
                    index: 7,
                    ..
                }
            ),
            "{e:?}"
        );
        says(&e, &["embedding", "7", "[5, 2]"]);
        // Any index into an empty table is out of range.
        let empty = Tensor::zeros([0, 2], &dev).unwrap();
        says(
            &empty
                .embedding(&Tensor::from_indices(&[0], 1, &dev).unwrap())
                .unwrap_err(),
            &["embedding", "[0, 2]"],
        );
    }
}

#[test]
fn too_large_for_the_gpu_is_an_error_not_an_abort() {
    let Some(g) = gpu() else { return };
    let Device::Gpu(ctx) = &g else { unreachable!() };
    let limit = ctx
        .limits()
        .max_storage_buffer_binding_size
        .min(ctx.limits().max_buffer_size);
    let n = (limit / 4 + 1) as usize;
    let e = Tensor::zeros([n], &g).unwrap_err();
    assert!(matches!(e, Error::TooLarge { op: "zeros", .. }), "{e:?}");
    says(&e, &["zeros", &format!("[{n}]"), &limit.to_string()]);
    says(
        &Tensor::full(1.0, [2, n / 2 + 1], &g).unwrap_err(),
        &["full", "bytes"],
    );
    // An op whose output is too large: a broadcast view is free, its copy is not.
    let s = Tensor::scalar(1.0, &g).unwrap().broadcast_to([n]).unwrap();
    let e = s.contiguous().unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    let e = s.add_scalar(1.0).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    // The device is still fine afterwards.
    let ok = Tensor::ones([3], &g).unwrap().add_scalar(1.0).unwrap();
    assert_eq!(ok.to_vec().unwrap(), [2.0; 3]);
    g.synchronize().unwrap();
}

#[test]
fn empty_tensors_where_data_is_needed() {
    for dev in devices() {
        let e = Tensor::zeros([0, 3], &dev).unwrap();
        let err = e.item().unwrap_err();
        says(&err, &["item", "[0, 3]"]);
        says(
            &Tensor::zeros([2, 2], &dev).unwrap().item().unwrap_err(),
            &["item", "[2, 2]"],
        );
        says(&Tensor::cat(&[], 0).unwrap_err(), &["cat"]);
        // Ops on empty tensors are fine and stay empty.
        assert_eq!(e.exp().unwrap().dims(), &[0, 3]);
        assert_eq!(
            e.add(&Tensor::ones([3], &dev).unwrap()).unwrap().dims(),
            &[0, 3]
        );
        assert_eq!(e.t().unwrap().contiguous().unwrap().dims(), &[3, 0]);
    }
}

#[test]
fn wrong_element_count_in_from_vec() {
    for dev in devices() {
        let e = Tensor::from_vec(vec![1.0; 5], [2, 3], &dev).unwrap_err();
        assert!(
            matches!(
                e,
                Error::ElementCount {
                    op: "from_vec",
                    len: 5,
                    ..
                }
            ),
            "{e:?}"
        );
        says(&e, &["from_vec", "[2, 3]", "6", "5"]);
        says(
            &Tensor::from_slice(&[1.0; 7], [2, 3], &dev).unwrap_err(),
            &["[2, 3]", "7"],
        );
        says(
            &Tensor::from_indices(&[1, 2], [3], &dev).unwrap_err(),
            &["from_indices", "[3]", "2"],
        );
        says(
            &Tensor::from_vec(vec![1.0], [0], &dev).unwrap_err(),
            &["from_vec", "[0]"],
        );
    }
}

#[test]
fn bad_dims_for_view_ops() {
    for dev in devices() {
        let x = Tensor::zeros([2, 3], &dev).unwrap();
        let e = x.transpose(0, 2).unwrap_err();
        assert!(
            matches!(
                e,
                Error::DimOutOfRange {
                    op: "transpose",
                    dim: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        says(&e, &["transpose", "2", "[2, 3]"]);
        says(
            &x.transpose(-3, 0).unwrap_err(),
            &["transpose", "-3", "[2, 3]"],
        );
        says(
            &x.narrow(1, 2, 2).unwrap_err(),
            &["narrow", "2..4", "[2, 3]"],
        );
        says(&x.narrow(2, 0, 1).unwrap_err(), &["narrow", "[2, 3]"]);
        says(
            &x.permute(&[0, 0]).unwrap_err(),
            &["permute", "[0, 0]", "[2, 3]"],
        );
        says(&x.permute(&[1]).unwrap_err(), &["permute", "[1]", "[2, 3]"]);
        says(&x.permute(&[0, 2]).unwrap_err(), &["permute", "[0, 2]"]);
        says(
            &Tensor::cat(&[&x, &x], 2).unwrap_err(),
            &["cat", "2", "[2, 3]"],
        );
        says(&Tensor::cat(&[&x, &x], -3).unwrap_err(), &["cat", "[2, 3]"]);
        let y = Tensor::zeros([3, 3], &dev).unwrap();
        says(
            &Tensor::cat(&[&x, &y], 1).unwrap_err(),
            &["cat", "[2, 3]", "[3, 3]"],
        );
        says(&x.squeeze(0).unwrap_err(), &["squeeze", "[2, 3]"]);
        says(&x.unsqueeze(3).unwrap_err(), &["unsqueeze", "[2, 3]"]);
        says(&x.flatten(1, 0).unwrap_err(), &["flatten", "[2, 3]"]);
        says(
            &Tensor::zeros([4], &dev).unwrap().t().unwrap_err(),
            &["t", "[4]"],
        );
        says(&x.dim(2).unwrap_err(), &["[2, 3]"]);
        says(
            &x.index_select(2, &Tensor::from_indices(&[0], 1, &dev).unwrap())
                .unwrap_err(),
            &["index_select", "[2, 3]"],
        );
    }
}
