//! conv2d: the im2col paths on both backends against the direct-loop reference on awkward
//! shapes (stride, padding, dilation, groups, 1×1, 5×5, non-square, single image, channel
//! counts not a multiple of 4), and bad-input errors. Gradients: tests/autograd.rs.

mod common;

use wgml::cpu::conv::conv2d_direct;
use wgml::{Conv2dConfig, Device, Tensor};

fn cfg(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [dilation; 2],
        groups,
    }
}

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    cfg: Conv2dConfig,
    bias: bool,
}

fn cases() -> Vec<Case> {
    let c = |x, w, cfg, bias| Case { x, w, cfg, bias };
    vec![
        c([1, 1, 1, 1], [1, 1, 1, 1], cfg(1, 0, 1, 1), false),
        c([2, 3, 7, 7], [5, 3, 3, 3], cfg(1, 0, 1, 1), true),
        c([2, 3, 8, 9], [4, 3, 3, 3], cfg(2, 1, 1, 1), true),
        c([1, 5, 9, 6], [7, 5, 3, 3], cfg(1, 2, 1, 1), true),
        c([2, 2, 11, 10], [3, 2, 3, 3], cfg(1, 1, 2, 1), false),
        c([2, 4, 7, 7], [6, 2, 3, 3], cfg(1, 1, 1, 2), true),
        c([3, 5, 6, 7], [3, 5, 1, 1], cfg(1, 0, 1, 1), true),
        c([1, 3, 13, 11], [2, 3, 5, 5], cfg(2, 2, 1, 1), true),
        c([2, 1, 28, 28], [32, 1, 3, 3], cfg(1, 0, 1, 1), true),
        c(
            [1, 6, 9, 5],
            [6, 1, 3, 2],
            Conv2dConfig {
                stride: [2, 1],
                padding: [1, 0],
                dilation: [1, 2],
                groups: 6,
            },
            true,
        ),
    ]
}

fn run(case: &Case, dev: &Device) -> wgml::Result<Tensor> {
    let x = Tensor::from_vec(common::data(case.x.iter().product(), 1), case.x, dev)?;
    let w = Tensor::from_vec(common::data(case.w.iter().product(), 2), case.w, dev)?;
    let b = Tensor::from_vec(common::data(case.w[0], 3), [case.w[0]], dev)?;
    x.conv2d(&w, case.bias.then_some(&b), case.cfg)
}

#[test]
fn cpu_matches_direct_loops() {
    for case in cases() {
        let got = run(&case, &Device::cpu()).unwrap();
        let want = conv2d_direct(
            &common::data(case.x.iter().product(), 1),
            &case.x,
            &common::data(case.w.iter().product(), 2),
            &case.w,
            case.bias.then(|| common::data(case.w[0], 3)).as_deref(),
            case.cfg,
        )
        .unwrap();
        common::assert_close(
            &got.to_vec().unwrap(),
            &want,
            1e-5,
            1e-5,
            &format!("conv2d {:?} {:?} {:?}", case.x, case.w, case.cfg),
        );
    }
}

#[test]
fn gpu_matches_cpu() {
    for case in cases() {
        common::gpu_matches_cpu(
            &format!("conv2d {:?} {:?} {:?}", case.x, case.w, case.cfg),
            1e-4,
            1e-4,
            |d| run(&case, d),
        );
    }
}

#[test]
fn gpu_gradients_match_cpu() {
    for case in cases().iter().skip(1).take(6) {
        for which in 0..3 {
            common::gpu_matches_cpu(
                &format!("conv2d grad {which} {:?} {:?}", case.x, case.cfg),
                1e-4,
                1e-3,
                |d| {
                    let x = Tensor::from_vec(common::data(case.x.iter().product(), 1), case.x, d)?
                        .requires_grad();
                    let w = Tensor::from_vec(common::data(case.w.iter().product(), 2), case.w, d)?
                        .requires_grad();
                    let b = Tensor::from_vec(common::data(case.w[0], 3), [case.w[0]], d)?
                        .requires_grad();
                    let y = x.conv2d(&w, Some(&b), case.cfg)?;
                    let r = Tensor::from_vec(common::data(y.numel(), 4), y.shape().clone(), d)?;
                    let g = y.mul(&r)?.sum_all()?.backward()?;
                    Ok(g.get([&x, &w, &b][which]).unwrap().clone())
                },
            );
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let dev = Device::cpu();
    let x = Tensor::zeros([1, 4, 5, 5], &dev).unwrap();
    let err = |w: &[usize], c: Conv2dConfig| {
        x.conv2d(&Tensor::zeros(w.to_vec(), &dev).unwrap(), None, c)
            .unwrap_err()
            .to_string()
    };
    let e = err(&[2, 4, 7, 7], cfg(1, 0, 1, 1));
    assert!(
        e.contains("conv2d")
            && e.contains("larger than the padded input")
            && e.contains("[1, 4, 5, 5]"),
        "{e}"
    );
    let e = err(&[3, 2, 3, 3], cfg(1, 0, 1, 3));
    assert!(e.contains("divisible by groups=3"), "{e}");
    let e = err(&[2, 3, 3, 3], cfg(1, 0, 1, 1));
    assert!(e.contains("conv2d") && e.contains("[2, 3, 3, 3]"), "{e}");
    let e = Tensor::zeros([4, 5, 5], &dev)
        .unwrap()
        .conv2d(
            &Tensor::zeros([2, 4, 3, 3], &dev).unwrap(),
            None,
            cfg(1, 0, 1, 1),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank 4") && e.contains("[4, 5, 5]"), "{e}");
    let e = err(&[2, 4, 3, 3], cfg(0, 0, 1, 1));
    assert!(e.contains("positive"), "{e}");
    let e = x
        .conv2d(
            &Tensor::zeros([2, 4, 3, 3], &dev).unwrap(),
            Some(&Tensor::zeros([3], &dev).unwrap()),
            cfg(1, 0, 1, 1),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv2d") && e.contains("[3]"), "{e}");
}
