//! Shape ops on both devices against expected values: reshape, transpose/permute, narrow/slice, squeeze/unsqueeze/flatten, broadcast_to, contiguous and cat.

mod common;

use common::{data, gpu, gpu_matches_cpu};
use wgml::{DType, Device, Tensor};

fn devices() -> Vec<Device> {
    std::iter::once(Device::cpu()).chain(gpu()).collect()
}

/// `0, 1, …, n-1` in `dims`.
fn iota(dims: &[usize], dev: &Device) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec((0..n).map(|v| v as f32).collect(), dims, dev).unwrap()
}

fn check(t: &Tensor, dims: &[usize], want: &[f32], what: &str) {
    assert_eq!(t.dims(), dims, "{what} on {:?}: shape", t.device());
    assert_eq!(
        t.to_vec().unwrap(),
        want,
        "{what} on {:?}: values",
        t.device()
    );
}

#[test]
fn reshape_and_reshape_infer() {
    for dev in devices() {
        let x = iota(&[2, 3], &dev);
        let r = x.reshape([3, 2]).unwrap();
        check(&r, &[3, 2], &[0., 1., 2., 3., 4., 5.], "reshape");
        assert!(r.is_contiguous());
        check(
            &x.reshape(6).unwrap(),
            &[6],
            &[0., 1., 2., 3., 4., 5.],
            "reshape to 1-D",
        );
        check(
            &x.reshape_infer(&[-1, 2]).unwrap(),
            &[3, 2],
            &[0., 1., 2., 3., 4., 5.],
            "infer",
        );
        check(
            &x.reshape_infer(&[1, -1, 1]).unwrap(),
            &[1, 6, 1],
            &[0., 1., 2., 3., 4., 5.],
            "infer",
        );
        // A reshape of a transpose copies in the transposed order.
        let t = x.t().unwrap().reshape([6]).unwrap();
        check(&t, &[6], &[0., 3., 1., 4., 2., 5.], "reshape of transpose");
        // To and from rank 0.
        let s = Tensor::from_vec(vec![7.0], [1, 1], &dev)
            .unwrap()
            .reshape(())
            .unwrap();
        assert_eq!(s.rank(), 0);
        assert_eq!(s.item().unwrap(), 7.0);
        check(&s.reshape([1]).unwrap(), &[1], &[7.0], "scalar to [1]");
        // Errors.
        assert!(x.reshape([4]).is_err());
        assert!(x.reshape_infer(&[-1, -1]).is_err());
        assert!(x.reshape_infer(&[-1, 4]).is_err());
        assert!(x.reshape_infer(&[0, -1]).is_err());
    }
}

#[test]
fn transpose_t_and_permute() {
    for dev in devices() {
        let x = iota(&[2, 3], &dev);
        let t = x.t().unwrap();
        assert!(!t.is_contiguous());
        check(&t, &[3, 2], &[0., 3., 1., 4., 2., 5.], "t");
        check(
            &x.transpose(0, -1).unwrap(),
            &[3, 2],
            &[0., 3., 1., 4., 2., 5.],
            "transpose(0,-1)",
        );
        check(
            &x.transpose(1, 1).unwrap(),
            &[2, 3],
            &[0., 1., 2., 3., 4., 5.],
            "transpose(1,1)",
        );
        check(
            &t.t().unwrap(),
            &[2, 3],
            &[0., 1., 2., 3., 4., 5.],
            "t of t",
        );
        // [2,3,4] permuted to [4,2,3]: out[i][j][k] = x[j][k][i] = 12j + 4k + i.
        let y = iota(&[2, 3, 4], &dev);
        let p = y.permute(&[2, 0, 1]).unwrap();
        let want: Vec<f32> = (0..4)
            .flat_map(|i| {
                (0..2).flat_map(move |j| (0..3).map(move |k| (12 * j + 4 * k + i) as f32))
            })
            .collect();
        check(&p, &[4, 2, 3], &want, "permute");
        check(
            &p.contiguous().unwrap(),
            &[4, 2, 3],
            &want,
            "permute contiguous",
        );
        check(
            &y.permute(&[0, 1, 2]).unwrap(),
            &[2, 3, 4],
            &y.to_vec().unwrap(),
            "identity permute",
        );
        // A transpose of the middle pair of a 3-D tensor.
        let m = y.transpose(1, 2).unwrap();
        let want: Vec<f32> = (0..2)
            .flat_map(|a| {
                (0..4).flat_map(move |c| (0..3).map(move |b| (12 * a + 4 * b + c) as f32))
            })
            .collect();
        check(&m, &[2, 4, 3], &want, "transpose(1,2)");
    }
}

#[test]
fn narrow_and_slice() {
    for dev in devices() {
        let x = iota(&[3, 4], &dev);
        check(
            &x.narrow(0, 1, 2).unwrap(),
            &[2, 4],
            &[4., 5., 6., 7., 8., 9., 10., 11.],
            "narrow rows",
        );
        let c = x.narrow(1, 1, 2).unwrap();
        assert!(!c.is_contiguous());
        check(&c, &[3, 2], &[1., 2., 5., 6., 9., 10.], "narrow cols");
        check(
            &x.narrow(-1, 3, 1).unwrap(),
            &[3, 1],
            &[3., 7., 11.],
            "narrow last",
        );
        check(&x.narrow(0, 3, 0).unwrap(), &[0, 4], &[], "empty narrow");
        check(
            &x.slice(1, 2..4).unwrap(),
            &[3, 2],
            &[2., 3., 6., 7., 10., 11.],
            "slice",
        );
        check(&x.slice(0, 1..1).unwrap(), &[0, 4], &[], "empty slice");
        // Narrow of a transpose, and of a narrow.
        let t = x.t().unwrap().narrow(0, 1, 2).unwrap(); // rows 1..3 of [4, 3]
        check(
            &t,
            &[2, 3],
            &[1., 5., 9., 2., 6., 10.],
            "narrow of transpose",
        );
        let nn = x
            .narrow(1, 1, 3)
            .unwrap()
            .narrow(0, 1, 2)
            .unwrap()
            .narrow(1, 1, 2)
            .unwrap();
        check(&nn, &[2, 2], &[6., 7., 10., 11.], "narrow of narrow");
        // Errors: out of range, reversed.
        assert!(x.narrow(0, 2, 2).is_err());
        assert!(x.narrow(1, 5, 0).is_err());
        assert!(x.narrow(0, usize::MAX, 2).is_err());
        assert!(x.narrow(2, 0, 1).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 3..1;
        assert!(x.slice(0, reversed).is_err());
    }
}

#[test]
fn squeeze_unsqueeze_flatten() {
    for dev in devices() {
        let x = iota(&[2, 1, 3], &dev);
        let vals: Vec<f32> = (0..6).map(|v| v as f32).collect();
        check(&x.squeeze(1).unwrap(), &[2, 3], &vals, "squeeze");
        check(&x.squeeze(-2).unwrap(), &[2, 3], &vals, "squeeze -2");
        assert!(x.squeeze(0).is_err(), "dim 0 has size 2");
        assert!(x.squeeze(3).is_err());
        check(
            &x.unsqueeze(0).unwrap(),
            &[1, 2, 1, 3],
            &vals,
            "unsqueeze 0",
        );
        check(
            &x.unsqueeze(3).unwrap(),
            &[2, 1, 3, 1],
            &vals,
            "unsqueeze at rank",
        );
        check(
            &x.unsqueeze(-1).unwrap(),
            &[2, 1, 3, 1],
            &vals,
            "unsqueeze -1",
        );
        check(
            &x.unsqueeze(-4).unwrap(),
            &[1, 2, 1, 3],
            &vals,
            "unsqueeze -4",
        );
        assert!(x.unsqueeze(4).is_err());
        assert!(x.unsqueeze(-5).is_err());
        check(&x.flatten(0, -1).unwrap(), &[6], &vals, "flatten all");
        check(&x.flatten(1, 2).unwrap(), &[2, 3], &vals, "flatten 1..=2");
        check(
            &iota(&[2, 3, 4], &dev).flatten(0, 1).unwrap(),
            &[6, 4],
            &(0..24).map(|v| v as f32).collect::<Vec<_>>(),
            "flatten 0..=1",
        );
        assert!(x.flatten(2, 1).is_err());
        // Flatten of a transpose copies in the transposed order; a scalar flattens to [1].
        let t = iota(&[2, 3], &dev).t().unwrap().flatten(0, 1).unwrap();
        check(&t, &[6], &[0., 3., 1., 4., 2., 5.], "flatten of transpose");
        let s = Tensor::scalar(4.0, &dev).unwrap();
        check(&s.flatten(0, 0).unwrap(), &[1], &[4.0], "flatten scalar");
        check(&s.unsqueeze(0).unwrap(), &[1], &[4.0], "unsqueeze scalar");
    }
}

#[test]
fn broadcast_to_and_contiguous() {
    for dev in devices() {
        let col = iota(&[3, 1], &dev);
        let b = col.broadcast_to([2, 3, 4]).unwrap();
        assert!(!b.is_contiguous());
        let want: Vec<f32> = (0..2)
            .flat_map(|_| (0..3).flat_map(|r| [r as f32; 4]))
            .collect();
        check(&b, &[2, 3, 4], &want, "broadcast_to");
        let c = b.contiguous().unwrap();
        assert!(c.is_contiguous());
        check(&c, &[2, 3, 4], &want, "contiguous of broadcast");
        let s = Tensor::scalar(2.5, &dev)
            .unwrap()
            .broadcast_to([2, 2])
            .unwrap();
        check(&s, &[2, 2], &[2.5; 4], "broadcast scalar");
        assert_eq!(
            col.broadcast_to([3, 1]).unwrap().id(),
            col.id(),
            "same shape is a no-op"
        );
        assert!(col.broadcast_to([3, 2, 1]).is_err(), "3 vs 2");
        assert!(
            iota(&[3, 2], &dev).broadcast_to([3, 1]).is_err(),
            "cannot shrink"
        );
        // contiguous of a contiguous tensor is the same tensor; of a transpose, a copy.
        let x = iota(&[2, 3], &dev);
        assert_eq!(x.contiguous().unwrap().id(), x.id());
        let tc = x.t().unwrap().contiguous().unwrap();
        assert!(tc.is_contiguous());
        check(
            &tc,
            &[3, 2],
            &[0., 3., 1., 4., 2., 5.],
            "contiguous of transpose",
        );
        // A narrow with an offset is contiguous without a copy, and reads from its offset.
        let n = iota(&[4, 3], &dev).narrow(0, 2, 2).unwrap();
        assert!(n.is_contiguous());
        check(
            &n.contiguous().unwrap(),
            &[2, 3],
            &[6., 7., 8., 9., 10., 11.],
            "narrow offset",
        );
    }
}

#[test]
fn cat_along_each_dim() {
    for dev in devices() {
        let a = iota(&[2, 3], &dev);
        let b = iota(&[1, 3], &dev).add_scalar(100.0).unwrap();
        check(
            &Tensor::cat(&[&a, &b], 0).unwrap(),
            &[3, 3],
            &[0., 1., 2., 3., 4., 5., 100., 101., 102.],
            "cat 0",
        );
        let c = iota(&[2, 2], &dev).add_scalar(10.0).unwrap();
        let want = [0., 1., 2., 10., 11., 3., 4., 5., 12., 13.];
        check(&Tensor::cat(&[&a, &c], 1).unwrap(), &[2, 5], &want, "cat 1");
        check(
            &Tensor::cat(&[&a, &c], -1).unwrap(),
            &[2, 5],
            &want,
            "cat -1",
        );
        // Three pieces, one of them empty, and a single piece.
        let e = Tensor::zeros([2, 0], &dev).unwrap();
        check(
            &Tensor::cat(&[&c, &e, &a], 1).unwrap(),
            &[2, 5],
            &[10., 11., 0., 1., 2., 12., 13., 3., 4., 5.],
            "cat 3",
        );
        check(
            &Tensor::cat(&[&a], 0).unwrap(),
            &[2, 3],
            &a.to_vec().unwrap(),
            "cat 1 piece",
        );
        // Non-contiguous pieces: a transpose and a narrow.
        let t = iota(&[3, 2], &dev).t().unwrap(); // [[0 2 4] [1 3 5]]
        let n = iota(&[4, 4], &dev)
            .narrow(1, 1, 3)
            .unwrap()
            .narrow(0, 2, 2)
            .unwrap(); // [[9 10 11] [13 14 15]]
        check(
            &Tensor::cat(&[&t, &n], 0).unwrap(),
            &[4, 3],
            &[0., 2., 4., 1., 3., 5., 9., 10., 11., 13., 14., 15.],
            "cat of views dim 0",
        );
        check(
            &Tensor::cat(&[&t, &n], 1).unwrap(),
            &[2, 6],
            &[0., 2., 4., 9., 10., 11., 1., 3., 5., 13., 14., 15.],
            "cat of views dim 1",
        );
        // U32 tensors keep their dtype and words (including bit patterns that are float NaNs).
        let i = Tensor::from_indices(&[1, 2, u32::MAX], 3, &dev).unwrap();
        let j = Tensor::from_indices(&[0x7f80_0001, 4_000_000_000], 2, &dev).unwrap();
        let k = Tensor::cat(&[&i, &j], 0).unwrap();
        assert_eq!(k.dtype(), DType::U32);
        assert_eq!(
            k.to_vec_u32().unwrap(),
            [1, 2, u32::MAX, 0x7f80_0001, 4_000_000_000],
            "{dev:?}"
        );
        let it = Tensor::from_indices(&[1, 2, 3, 4, 5, 6], [2, 3], &dev)
            .unwrap()
            .t()
            .unwrap();
        let ic = Tensor::cat(&[&it, &it], 1).unwrap();
        assert_eq!(
            ic.to_vec_u32().unwrap(),
            [1, 4, 1, 4, 2, 5, 2, 5, 3, 6, 3, 6],
            "{dev:?}"
        );
        // Errors.
        assert!(Tensor::cat(&[], 0).is_err());
        assert!(
            Tensor::cat(&[&a, &c], 0).is_err(),
            "[2,3] and [2,2] along 0"
        );
        assert!(Tensor::cat(&[&a, &a], 2).is_err());
        assert!(
            Tensor::cat(&[&a, &a.reshape([6]).unwrap()], 0).is_err(),
            "ranks differ"
        );
        let af = Tensor::from_indices(&[0; 6], [2, 3], &dev).unwrap();
        assert!(Tensor::cat(&[&a, &af], 0).is_err(), "dtypes differ");
    }
}

#[test]
fn views_gpu_matches_cpu_on_awkward_shapes() {
    for n in [1usize, 3, 17, 127, 129, 1000] {
        gpu_matches_cpu(&format!("contiguous of transpose [{n},3]"), 0.0, 0.0, |d| {
            Tensor::from_vec(data(3 * n, 1), [3, n], d)?
                .t()?
                .contiguous()
        });
        gpu_matches_cpu(&format!("cat of views [{n},…]"), 0.0, 0.0, |d| {
            let a = Tensor::from_vec(data(5 * n, 2), [5, n], d)?.t()?; // [n, 5]
            let b = Tensor::from_vec(data(n * 7, 3), [n, 7], d)?.narrow(1, 2, 4)?; // [n, 4]
            let c = Tensor::from_vec(data(n, 4), [n, 1], d)?.broadcast_to([n, 2])?; // [n, 2]
            Tensor::cat(&[&a, &b, &c], -1)
        });
        gpu_matches_cpu(&format!("permute + reshape [2,{n},3]"), 0.0, 0.0, |d| {
            Tensor::from_vec(data(6 * n, 5), [2, n, 3], d)?
                .permute(&[2, 0, 1])?
                .reshape([3, 2 * n])
        });
    }
}

/// `assign` writes any strided source into any strided destination (the copy reads the source
/// in place), and a source that shares the destination's storage is read before it is
/// overwritten, on both devices.
#[test]
fn assign_from_strided_and_overlapping_sources() {
    let mut devs = vec![Device::cpu()];
    devs.extend(common::gpu());
    for dev in devs {
        let what = dev.name();
        let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), [3, 4], &dev).unwrap();
        // A transposed source into a narrowed destination.
        let dst = Tensor::zeros([6, 3], &dev).unwrap();
        dst.narrow(0, 1, 4)
            .unwrap()
            .assign(&x.t().unwrap())
            .unwrap();
        let mut want = vec![0.0; 18];
        for i in 0..4 {
            for j in 0..3 {
                want[(i + 1) * 3 + j] = (j * 4 + i) as f32;
            }
        }
        assert_eq!(
            dst.to_vec().unwrap(),
            want,
            "{what}: transposed into narrowed"
        );
        // A broadcast source.
        let row = Tensor::from_vec(vec![7.0, 8.0, 9.0], [3], &dev).unwrap();
        dst.narrow(0, 0, 2)
            .unwrap()
            .assign(&row.broadcast_to([2, 3]).unwrap())
            .unwrap();
        assert_eq!(
            dst.to_vec().unwrap()[..6],
            [7.0, 8.0, 9.0, 7.0, 8.0, 9.0],
            "{what}"
        );
        // Overlapping ranges of one storage: rows 0..2 <- rows 1..3 (shifted up by one).
        let y = Tensor::from_vec((0..12).map(|v| v as f32).collect(), [4, 3], &dev).unwrap();
        y.narrow(0, 0, 3)
            .unwrap()
            .assign(&y.narrow(0, 1, 3).unwrap())
            .unwrap();
        let want: Vec<f32> = (3..12).chain(9..12).map(|v| v as f32).collect();
        assert_eq!(y.to_vec().unwrap(), want, "{what}: overlapping");
        // Assigning a tensor to itself changes nothing.
        y.assign(&y).unwrap();
        assert_eq!(y.to_vec().unwrap(), want, "{what}: itself");
    }
}
