//! Property tests, GPU against the CPU reference on random shapes and layouts (transposed,
//! narrowed and broadcast views): reductions, softmax, the index ops, conv2d and pooling, each
//! forward and (for the differentiable ones) the gradient of a weighted sum. Few, small cases:
//! the GPU in CI is the software adapter.

mod common;

use common::{assert_close, data, gpu};
use proptest::prelude::*;
use wgml::{Conv2dConfig, Device, Pool2d, ReduceOp, Result, Tensor};

/// A view of `v` with logical shape `dims`, made awkward as `how` says: 0 contiguous, 1 the
/// transpose of a contiguous tensor of reversed dims, 2 narrowed from a larger first dim, 3
/// broadcast along the first dim from a single slice.
fn view(v: &[f32], dims: &[usize], how: u8, dev: &Device) -> Result<Tensor> {
    let r = dims.len();
    match how % 4 {
        1 if r >= 2 => {
            let mut d = dims.to_vec();
            d.swap(0, r - 1);
            Tensor::from_slice(&v[..d.iter().product()], d, dev)?.transpose(0, -1)
        }
        2 => {
            let mut d = dims.to_vec();
            d[0] += 2;
            let n = d.iter().product::<usize>();
            let w: Vec<f32> = (0..n).map(|i| v[i % v.len()]).collect();
            Tensor::from_vec(w, d, dev)?.narrow(0, 1, dims[0])
        }
        3 => {
            let mut d = dims.to_vec();
            d[0] = 1;
            Tensor::from_slice(&v[..d.iter().product()], d, dev)?.broadcast_to(dims)
        }
        _ => Tensor::from_slice(&v[..dims.iter().product()], dims, dev),
    }
}

/// Runs `f` on both devices and compares the output, then the gradient of `sum(w ⊙ f(x))`
/// with respect to `x`.
fn check(
    what: &str,
    v: &[f32],
    dims: &[usize],
    how: u8,
    grad: bool,
    tol: f32,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) {
    let Some(g) = gpu() else { return };
    let run = |dev: &Device| -> (Tensor, Vec<f32>, Option<Vec<f32>>) {
        let x = view(v, dims, how, dev).unwrap().requires_grad();
        let y = f(&x).unwrap_or_else(|e| panic!("{what} on {dev:?}: {e}"));
        let out = y.to_vec().unwrap();
        let gx = grad.then(|| {
            let w = Tensor::from_vec(data(y.numel(), 99), y.dims(), dev).unwrap();
            let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            grads.get(&x).unwrap().to_vec().unwrap()
        });
        (y, out, gx)
    };
    let (yc, want, gwant) = run(&Device::cpu());
    let (yg, got, ggot) = run(&g);
    assert_eq!(yg.dims(), yc.dims(), "{what}: shapes");
    assert_close(&got, &want, tol, tol, &format!("{what} forward"));
    if let (Some(a), Some(b)) = (ggot, gwant) {
        assert_close(&a, &b, tol, tol, &format!("{what} gradient"));
    }
}

fn dims_strategy(min_rank: usize, max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..6, min_rank..=max_rank)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reductions(dims in dims_strategy(1, 4), how in any::<u8>(), dim in any::<usize>(),
                  op in 0usize..4, keep in any::<bool>(), seed in 0u64..1000) {
        let op = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min][op];
        let d = (dim % dims.len()) as isize;
        let v = data(4 * dims.iter().product::<usize>() + 8, seed);
        // Max/min gradients go to the first extreme; random data has no ties.
        check(&format!("{op:?} dim {d} of {dims:?} view {how}"), &v, &dims, how, how % 4 != 3,
              1e-4, |x| x.reduce(op, &[d], keep));
    }

    #[test]
    fn softmax_and_log_softmax(dims in dims_strategy(1, 3), how in any::<u8>(),
                               log in any::<bool>(), seed in 0u64..1000) {
        let v = data(4 * dims.iter().product::<usize>() + 8, seed);
        check(&format!("softmax(log {log}) of {dims:?} view {how}"), &v, &dims, how, true, 1e-5,
              |x| if log { x.log_softmax() } else { x.softmax() });
    }

    #[test]
    fn index_ops(dims in dims_strategy(2, 3), how in any::<u8>(), dim in any::<usize>(),
                 k in 1usize..9, seed in 0u64..1000) {
        let d = dim % dims.len();
        let v = data(4 * dims.iter().product::<usize>() + 8, seed);
        let mut r = wgml::rng::Rng::new(seed);
        let idx: Vec<u32> = (0..k).map(|_| r.below(dims[d]) as u32).collect();
        let mut gdims = dims.clone();
        gdims[d] = k;
        let gidx: Vec<u32> = (0..gdims.iter().product::<usize>())
            .map(|_| r.below(dims[d]) as u32).collect();
        let rows: Vec<u32> = (0..k * 2).map(|_| r.below(dims[0]) as u32).collect();
        let dev_idx = |dev: &Device, w: &[u32], s: Vec<usize>| Tensor::from_indices(w, s, dev);
        check(&format!("index_select dim {d} of {dims:?} view {how}"), &v, &dims, how, true, 1e-6,
              |x| x.index_select(d as isize, &dev_idx(x.device(), &idx, vec![k])?));
        check(&format!("gather dim {d} of {dims:?} view {how}"), &v, &dims, how, true, 1e-6,
              |x| x.gather(d as isize, &dev_idx(x.device(), &gidx, gdims.clone())?));
        let table = [dims[0], dims[1]];
        check(&format!("embedding of {table:?} view {how}"), &v, &table, how, true, 1e-6,
              |x| x.embedding(&dev_idx(x.device(), &rows, vec![2, k])?));
    }

    #[test]
    fn conv2d(n in 1usize..3, groups in 1usize..3, cpg in 1usize..3, opg in 1usize..3,
              h in 3usize..9, w in 3usize..9, k in 1usize..4, stride in 1usize..3,
              pad in 0usize..2, dil in 1usize..3, transposed in any::<bool>(), seed in 0u64..1000) {
        let c = groups * cpg;
        let o = groups * opg;
        let cfg = Conv2dConfig { stride: [stride, 1], padding: [pad, pad], dilation: [dil, 1], groups };
        let span = dil * (k - 1) + 1;
        prop_assume!(h + 2 * pad >= span && w + 2 * pad >= k);
        let dims = [n, c, h, w];
        let v = data(4 * n * c * h * w + 8, seed);
        let wv = data(o * cpg * k * k, seed + 1);
        let bv = data(o, seed + 2);
        // how 1 transposes the whole NCHW tensor: a layout no kernel sees contiguous.
        check(&format!("conv2d {dims:?} -> {o} k{k} {cfg:?}"), &v, &dims, u8::from(transposed), true,
              1e-4, |x| {
                  let wt = Tensor::from_slice(&wv, [o, cpg, k, k], x.device())?;
                  let b = Tensor::from_slice(&bv, [o], x.device())?;
                  x.conv2d(&wt, Some(&b), cfg)
              });
    }

    #[test]
    fn pooling(n in 1usize..3, c in 1usize..4, h in 2usize..10, w in 2usize..10, k in 1usize..4,
               stride in 1usize..4, pad in 0usize..2, ceil in any::<bool>(), max in any::<bool>(),
               how in 0u8..3, seed in 0u64..1000) {
        let p = Pool2d { kernel: [k, k.min(w)], stride: [stride, stride], padding: [pad.min(k / 2), 0], ceil_mode: ceil };
        prop_assume!(h >= k && w >= k.min(w));
        let dims = [n, c, h, w];
        let v = data(4 * n * c * h * w + 8, seed);
        check(&format!("{} pool {dims:?} {p:?} view {how}", if max { "max" } else { "avg" }),
              &v, &dims, how, true, 1e-5,
              |x| if max { x.max_pool2d(p) } else { x.avg_pool2d(p) });
    }
}
