//! Max and average pooling: hand values, GPU vs CPU on awkward shapes, geometry errors.
//! (Gradients are checked by finite differences in tests/autograd.rs.)

mod common;

use wgml::{Device, Pool2d, Tensor};

fn pool(k: [usize; 2], s: [usize; 2], p: [usize; 2], ceil: bool) -> Pool2d {
    Pool2d {
        kernel: k,
        stride: s,
        padding: p,
        ceil_mode: ceil,
    }
}

#[test]
fn hand_values() {
    let dev = Device::cpu();
    let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), [1, 1, 4, 4], &dev).unwrap();
    assert_eq!(
        x.max_pool2d(Pool2d::new(2)).unwrap().to_vec().unwrap(),
        vec![5.0, 7.0, 13.0, 15.0]
    );
    assert_eq!(
        x.avg_pool2d(Pool2d::new(2)).unwrap().to_vec().unwrap(),
        vec![2.5, 4.5, 10.5, 12.5]
    );
    // Padding 1, stride 2, kernel 3: windows clipped; avg divides by 9 (padding counted).
    let m = x.max_pool2d(pool([3, 3], [2, 2], [1, 1], false)).unwrap();
    assert_eq!(m.dims(), &[1, 1, 2, 2]);
    assert_eq!(m.to_vec().unwrap(), vec![5.0, 7.0, 13.0, 15.0]);
    let a = x
        .avg_pool2d(pool([3, 3], [2, 2], [1, 1], false))
        .unwrap()
        .to_vec()
        .unwrap();
    assert!((a[0] - (0.0 + 1.0 + 4.0 + 5.0) / 9.0).abs() < 1e-6);
    // Ceil mode: 5 -> ceil((5-2)/2)+1 = 3 windows, the last one hanging off the edge.
    let y = Tensor::from_vec((0..25).map(|v| v as f32).collect(), [1, 1, 5, 5], &dev).unwrap();
    let c = y.max_pool2d(pool([2, 2], [2, 2], [0, 0], true)).unwrap();
    assert_eq!(c.dims(), &[1, 1, 3, 3]);
    assert_eq!(c.to_vec().unwrap()[8], 24.0);
    let ca = y
        .avg_pool2d(pool([2, 2], [2, 2], [0, 0], true))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(ca[8], 24.0, "a clipped window divides by its clipped size");
    // Ties: the gradient goes to the first maximum.
    let t = Tensor::from_vec(vec![1.0; 4], [1, 1, 2, 2], &dev)
        .unwrap()
        .requires_grad();
    let g = t
        .max_pool2d(Pool2d::new(2))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        g.get(&t).unwrap().to_vec().unwrap(),
        vec![1.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn gpu_matches_cpu_forward_and_backward() {
    let cases: &[(&[usize], Pool2d)] = &[
        (&[1, 1, 1, 1], Pool2d::new(1)),
        (&[2, 3, 28, 28], Pool2d::new(2)),
        (&[1, 5, 13, 13], Pool2d::new(2)),
        (&[3, 2, 7, 9], pool([3, 2], [2, 1], [1, 1], false)),
        (&[2, 1, 9, 7], pool([3, 3], [2, 2], [1, 0], true)),
        (&[1, 4, 17, 5], pool([5, 3], [3, 2], [2, 1], true)),
        (&[1, 1, 6, 6], pool([3, 3], [1, 1], [1, 1], false)),
    ];
    for (shape, p) in cases {
        let n: usize = shape.iter().product();
        let data = common::data(n, 3);
        for max in [true, false] {
            let what = format!("{} {shape:?} {p:?}", if max { "max" } else { "avg" });
            let run = |dev: &Device| {
                let x = Tensor::from_vec(data.clone(), shape.to_vec(), dev)?.requires_grad();
                let y = if max {
                    x.max_pool2d(*p)?
                } else {
                    x.avg_pool2d(*p)?
                };
                let w = Tensor::from_vec(common::data(y.numel(), 4), y.shape().clone(), dev)?;
                let g = y.mul(&w)?.sum_all()?.backward()?;
                Ok((y, g.get(&x).unwrap().clone()))
            };
            common::gpu_matches_cpu(&format!("{what} forward"), 1e-6, 1e-5, |d| {
                run(d).map(|r| r.0)
            });
            common::gpu_matches_cpu(&format!("{what} backward"), 1e-5, 1e-5, |d| {
                run(d).map(|r| r.1)
            });
        }
    }
}

#[test]
fn non_contiguous_input() {
    common::gpu_matches_cpu("max_pool2d of a transposed view", 0.0, 0.0, |d| {
        let x = Tensor::from_vec(common::data(2 * 3 * 6 * 5, 8), [2, 3, 6, 5], d)?;
        x.transpose(2, 3)?.max_pool2d(Pool2d::new(2))
    });
}

#[test]
fn bad_geometry_is_an_error() {
    let dev = Device::cpu();
    let x = Tensor::zeros([1, 1, 3, 3], &dev).unwrap();
    let err = x.max_pool2d(Pool2d::new(4)).unwrap_err().to_string();
    assert!(
        err.contains("max_pool2d") && err.contains("[1, 1, 3, 3]") && err.contains("larger"),
        "{err}"
    );
    let err = x
        .avg_pool2d(pool([2, 2], [1, 1], [2, 2], false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("avg_pool2d") && err.contains("padding"),
        "{err}"
    );
    let err = Tensor::zeros([3, 3], &dev)
        .unwrap()
        .max_pool2d(Pool2d::new(2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rank 4") && err.contains("[3, 3]"), "{err}");
    assert!(x.max_pool2d(pool([2, 2], [0, 0], [0, 0], false)).is_err());
}
