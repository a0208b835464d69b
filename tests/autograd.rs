//! Every backward rule checked by central finite differences on the CPU, and GPU gradients
//! compared with CPU gradients.

mod common;

use wgml::nn::loss;
use wgml::{Device, Result, Tensor};

type F = fn(&[Tensor]) -> Result<Tensor>;

/// `sum(f(x) · w)` with fixed pseudo-random weights `w`, so every output element matters.
fn weighted(y: &Tensor) -> Result<Tensor> {
    let w = Tensor::from_vec(common::data(y.numel(), 99), y.shape().clone(), y.device())?;
    y.mul(&w)?.sum_all()
}

/// Input values: `Any` in [-2, 2); `Positive` in [0.5, 2.5); `Distinct` a shuffled grid with
/// spacing 0.1, so a finite-difference step never swaps the order of two elements (max, min).
#[derive(Clone, Copy, PartialEq)]
enum Domain {
    Any,
    Positive,
    Distinct,
}

fn inputs(shapes: &[&[usize]], dev: &Device, seed: u64, domain: Domain) -> Vec<Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n: usize = s.iter().product();
            let mut v = common::data(n, seed + i as u64);
            match domain {
                Domain::Any => {}
                Domain::Positive => v.iter_mut().for_each(|x| *x = x.abs() + 0.5),
                Domain::Distinct => {
                    let mut order: Vec<usize> = (0..n).collect();
                    wgml::rng::Rng::new(seed + i as u64).shuffle(&mut order);
                    let shift = i as f32 * 0.037;
                    v = order
                        .iter()
                        .map(|&k| k as f32 * 0.1 - n as f32 * 0.05 + shift)
                        .collect();
                }
            }
            Tensor::from_vec(v, s.to_vec(), dev).unwrap()
        })
        .collect()
}

/// Analytic gradients of `weighted(f(xs))` for every input.
fn grads(f: F, xs: &[Tensor]) -> Vec<Vec<f32>> {
    let vars: Vec<Tensor> = xs.iter().map(|x| x.requires_grad()).collect();
    let l = weighted(&f(&vars).unwrap()).unwrap();
    let g = l.backward().unwrap();
    vars.iter()
        .map(|v| match g.get(v) {
            Some(t) => {
                assert_eq!(t.dims(), v.dims(), "gradient shape");
                t.to_vec().unwrap()
            }
            None => vec![0.0; v.numel()],
        })
        .collect()
}

fn check(name: &str, f: F, shapes: &[&[usize]], domain: Domain) {
    let cpu = Device::cpu();
    let xs = inputs(shapes, &cpu, 7, domain);
    let analytic = grads(f, &xs);
    let eps = 1e-2f32;
    for (k, x) in xs.iter().enumerate() {
        let base = x.to_vec().unwrap();
        let mut numeric = vec![0.0; base.len()];
        for i in 0..base.len() {
            let eval = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                let mut args = xs.clone();
                args[k] = Tensor::from_vec(v, x.shape().clone(), &cpu).unwrap();
                weighted(&f(&args).unwrap()).unwrap().item().unwrap() as f64
            };
            numeric[i] = ((eval(eps) - eval(-eps)) / (2.0 * eps as f64)) as f32;
        }
        common::assert_close(
            &analytic[k],
            &numeric,
            2e-2,
            2e-2,
            &format!("{name}: d/dx{k} vs finite differences"),
        );
    }
    if let Some(gpu) = common::gpu() {
        let xg: Vec<Tensor> = xs.iter().map(|x| x.to_device(&gpu).unwrap()).collect();
        let on_gpu = grads(f, &xg);
        for k in 0..xs.len() {
            common::assert_close(
                &on_gpu[k],
                &analytic[k],
                1e-4,
                1e-3,
                &format!("{name}: GPU d/dx{k} vs CPU"),
            );
        }
    }
}

macro_rules! grad_test {
    ($name:ident, $shapes:expr, $f:expr) => {
        grad_test!($name, $shapes, Domain::Any, $f);
    };
    ($name:ident, $shapes:expr, $domain:expr, $f:expr) => {
        #[test]
        fn $name() {
            check(stringify!($name), $f, $shapes, $domain);
        }
    };
}

grad_test!(neg, &[&[3, 5]], |x| x[0].neg());
grad_test!(abs, &[&[17]], |x| x[0].abs());
grad_test!(exp, &[&[2, 3]], |x| x[0].exp());
grad_test!(log, &[&[2, 3]], Domain::Positive, |x| x[0].log());
grad_test!(sqrt, &[&[7]], Domain::Positive, |x| x[0].sqrt());
grad_test!(relu, &[&[4, 5]], |x| x[0].relu());
grad_test!(sigmoid, &[&[9]], |x| x[0].sigmoid());
grad_test!(tanh, &[&[9]], |x| x[0].tanh());
grad_test!(gelu, &[&[3, 3]], |x| x[0].gelu());
grad_test!(affine, &[&[5]], |x| x[0].affine(-1.5, 0.25));
grad_test!(powf, &[&[5]], Domain::Positive, |x| x[0].powf(2.5));
grad_test!(powf_int_negative_base, &[&[6]], |x| x[0].powf(3.0));
grad_test!(recip, &[&[5]], Domain::Positive, |x| x[0].recip());
grad_test!(clamp, &[&[13]], |x| x[0].clamp(-0.9, 1.1));
grad_test!(add_broadcast, &[&[3, 1, 4], &[5, 1]], |x| x[0].add(&x[1]));
grad_test!(sub_broadcast, &[&[2, 3], &[3]], |x| x[0].sub(&x[1]));
grad_test!(mul_broadcast, &[&[4, 1], &[1, 3]], |x| x[0].mul(&x[1]));
grad_test!(div_broadcast, &[&[2, 3], &[2, 1]], Domain::Positive, |x| x
    [0]
.div(&x[1]));
grad_test!(maximum, &[&[7], &[7]], Domain::Distinct, |x| x[0]
    .maximum(&x[1]));
grad_test!(minimum, &[&[2, 3], &[3]], |x| x[0].minimum(&x[1]));
grad_test!(where_cond, &[&[3, 4], &[3, 4], &[4]], |x| {
    Tensor::where_cond(&x[0].gt_scalar(0.0)?, &x[1], &x[2])
});
grad_test!(sum_dim, &[&[3, 4, 5]], |x| x[0].sum(1, false));
grad_test!(sum_keepdim, &[&[3, 4]], |x| x[0].sum(-1, true));
grad_test!(sum_all, &[&[3, 4]], |x| x[0].sum_all());
grad_test!(mean_dims, &[&[2, 3, 4]], |x| x[0].reduce(
    wgml::ReduceOp::Mean,
    &[0, 2],
    false
));
grad_test!(max_dim, &[&[4, 6]], Domain::Distinct, |x| x[0]
    .max(1, false));
grad_test!(min_dim, &[&[4, 6]], Domain::Distinct, |x| x[0].min(0, true));
grad_test!(softmax, &[&[3, 7]], |x| x[0].softmax());
grad_test!(log_softmax, &[&[2, 3, 5]], |x| x[0].log_softmax());
grad_test!(matmul_2d, &[&[3, 5], &[5, 4]], |x| x[0].matmul(&x[1]));
grad_test!(
    matmul_batched_broadcast,
    &[&[2, 1, 3, 4], &[3, 4, 2]],
    |x| x[0].matmul(&x[1])
);
grad_test!(matmul_vec, &[&[5], &[5, 3]], |x| x[0].matmul(&x[1]));
grad_test!(matmul_transposed, &[&[4, 3], &[5, 4]], |x| x[0]
    .t()?
    .matmul(&x[1].t()?));
grad_test!(index_select_rows, &[&[5, 3]], |x| {
    let idx = Tensor::from_indices(&[4, 0, 4, 2], [4], x[0].device())?;
    x[0].index_select(0, &idx)
});
grad_test!(index_select_cols, &[&[3, 5]], |x| {
    let idx = Tensor::from_indices(&[1, 1, 3], [3], x[0].device())?;
    x[0].index_select(1, &idx)
});
grad_test!(embedding, &[&[6, 4]], |x| {
    let idx = Tensor::from_indices(&[5, 0, 0, 3, 1, 5], [2, 3], x[0].device())?;
    x[0].embedding(&idx)
});
grad_test!(reshape, &[&[2, 6]], |x| x[0].reshape([3, 4])?.exp());
grad_test!(permute, &[&[2, 3, 4]], |x| x[0].permute(&[2, 0, 1])?.exp());
grad_test!(transpose, &[&[3, 5]], |x| x[0].t()?.contiguous());
grad_test!(narrow, &[&[4, 5]], |x| x[0].narrow(1, 1, 3)?.exp());
grad_test!(cat, &[&[2, 3], &[2, 2]], |x| Tensor::cat(
    &[&x[0], &x[1]],
    1
)?
.exp());
grad_test!(broadcast_to, &[&[3, 1]], |x| x[0].broadcast_to([2, 3, 4]));
grad_test!(mse, &[&[4, 3], &[4, 3]], |x| loss::mse(&x[0], &x[1]));
grad_test!(bce_with_logits, &[&[6], &[6]], |x| {
    loss::binary_cross_entropy_with_logits(&x[0], &x[1].sigmoid()?)
});
grad_test!(cross_entropy, &[&[4, 5]], |x| {
    let y = Tensor::from_indices(&[1, 0, 4, 4], [4], x[0].device())?;
    loss::cross_entropy(&x[0], &y)
});
grad_test!(gather, &[&[3, 4]], |x| {
    let idx = Tensor::from_indices(&[3, 0, 1, 1, 2, 2], [3, 2], x[0].device())?;
    x[0].gather(1, &idx)
});
grad_test!(max_all_ties_split, &[&[5]], |x| x[0]
    .clamp(-0.5, 0.5)?
    .max_all());
grad_test!(shared_input_accumulates, &[&[3]], |x| x[0]
    .mul(&x[0])?
    .add(&x[0].exp()?));

#[test]
fn no_grad_records_nothing() {
    let x = Tensor::from_vec(vec![1.0, 2.0], [2], &Device::cpu())
        .unwrap()
        .requires_grad();
    let y = wgml::no_grad(|| x.mul_scalar(3.0).unwrap());
    assert!(!y.requires_grad_flag());
    let z = x.detach().mul_scalar(3.0).unwrap();
    assert!(!z.requires_grad_flag());
    assert!(x.mul_scalar(3.0).unwrap().requires_grad_flag());
}

#[test]
fn backward_needs_scalar_loss() {
    let x = Tensor::from_vec(vec![1.0, 2.0], [2], &Device::cpu())
        .unwrap()
        .requires_grad();
    let err = x.exp().unwrap().backward().unwrap_err().to_string();
    assert!(err.contains("backward") && err.contains("[2]"), "{err}");
}

grad_test!(max_pool2d, &[&[2, 2, 5, 5]], Domain::Distinct, |x| {
    x[0].max_pool2d(wgml::Pool2d {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        ceil_mode: true,
    })
});
grad_test!(avg_pool2d, &[&[1, 2, 5, 6]], |x| {
    x[0].avg_pool2d(wgml::Pool2d {
        kernel: [2, 3],
        stride: [2, 2],
        padding: [1, 1],
        ceil_mode: false,
    })
});
grad_test!(
    conv2d_stride_pad,
    &[&[2, 3, 6, 5], &[4, 3, 3, 3], &[4]],
    |x| {
        let c = wgml::Conv2dConfig {
            stride: [2, 1],
            padding: [1, 2],
            dilation: [1, 1],
            groups: 1,
        };
        x[0].conv2d(&x[1], Some(&x[2]), c)
    }
);
grad_test!(
    conv2d_dilation_groups,
    &[&[1, 4, 7, 7], &[6, 2, 3, 2]],
    |x| {
        let c = wgml::Conv2dConfig {
            stride: [1, 1],
            padding: [1, 1],
            dilation: [2, 1],
            groups: 2,
        };
        x[0].conv2d(&x[1], None, c)
    }
);
