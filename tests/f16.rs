//! F16 tensors: bit-exact casts on both backends (specials, subnormals, ties), read-back of
//! strided views, every op family on F16 GPU against CPU through the packed and the native
//! kernels, gradients, autocast, the GradScaler, checkpoints, and clear errors.

mod common;

use common::{assert_close, data, gpu};
use half::f16;
use wgml::gpu::{with_f16_path, F16Path};
use wgml::nn::{loss, Linear, Module};
use wgml::optim::{Adam, Optimizer};
use wgml::{amp, Conv2dConfig, DType, Device, Error, Pool2d, Result, Tensor};

/// f32 values whose F16 rounding exercises every branch of the conversion.
fn awkward_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        65504.0,  // largest f16
        65519.0,  // rounds down to 65504
        65520.0,  // ties to even: inf
        -70000.0, // overflow to -inf
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0 / 16384.0,               // smallest normal 2^-14
        1023.0 / 16777216.0,         // largest subnormal
        1.0 / 16777216.0,            // smallest subnormal 2^-24
        1.0 / 33554432.0,            // 2^-25: tie, rounds to 0
        1.0000001 / 33554432.0,      // just above 2^-25: rounds to 2^-24
        1.5 / 16777216.0,            // 1.5 · 2^-24: tie, rounds to even 2^-23
        1.0e-10,                     // underflow to 0
        -3.0e-6,                     // negative subnormal
        1.0 + 1.0 / 2048.0,          // tie between 1 and 1 + 2^-10: to even (1)
        1.0 + 3.0 / 2048.0,          // tie: to even (1 + 2^-9)
        1.0 + 1.0 / 2048.0 + 1.0e-7, // just above the tie: up
        2049.0,                      // tie at integer spacing 2: to 2048
        2051.0,                      // tie: to 2052
        0.1,
        -1234.5678,
        f32::MAX,
        f32::MIN_POSITIVE, // f32 normal, far below f16: 0
        1.0e-40,           // f32 subnormal: 0
    ];
    v.extend(data(37, 3).iter().map(|x| x * 300.0));
    v
}

fn bits(v: &[f16]) -> Vec<u16> {
    v.iter().map(|h| h.to_bits()).collect()
}

/// The GPU device with each F16 path: packed always, native when the adapter offers it.
fn gpu_paths() -> Vec<(Device, F16Path)> {
    let Some(g) = gpu() else { return vec![] };
    let mut out = vec![(g.clone(), F16Path::Packed)];
    if let Device::Gpu(ctx) = &g {
        if ctx.features().contains(wgpu::Features::SHADER_F16) {
            out.push((g.clone(), F16Path::Native));
        }
    }
    out
}

fn on_path<R>(path: F16Path, f: impl FnOnce() -> R) -> R {
    with_f16_path(path, f)
}

#[test]
fn the_software_adapter_runs_both_f16_paths() {
    let Some(Device::Gpu(ctx)) = gpu() else {
        return;
    };
    let native = ctx.features().contains(wgpu::Features::SHADER_F16);
    eprintln!("adapter {:?}: SHADER_F16 {native}", ctx.name());
    if ctx.is_software() {
        // CI's lavapipe offers SHADER_F16: the native kernels must be exercised there.
        assert!(
            native,
            "the software adapter lost SHADER_F16; the native F16 path is untested"
        );
    }
    assert_eq!(
        with_f16_path(F16Path::Packed, || ctx.f16_path()),
        F16Path::Packed
    );
    if native && std::env::var("WGML_F16_PATH").is_err() {
        assert_eq!(ctx.f16_path(), F16Path::Native);
    }
}

#[test]
fn f32_to_f16_is_round_to_nearest_even_on_every_backend() {
    let v = awkward_values();
    let want: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    let mut devices = vec![(Device::cpu(), F16Path::Packed)];
    devices.extend(gpu_paths());
    for (dev, path) in devices {
        on_path(path, || {
            let t = Tensor::from_slice(&v, v.len(), &dev).unwrap();
            let h = t.to_dtype(DType::F16).unwrap();
            assert_eq!(h.dtype(), DType::F16);
            let got = h.to_vec_f16().unwrap();
            assert_eq!(
                bits(&got),
                bits(&want),
                "{} {path:?}: f32 -> f16 bits",
                dev.name()
            );
            // And back: exact, NaN stays NaN.
            let back = h.to_dtype(DType::F32).unwrap().to_vec().unwrap();
            for (i, (b, w)) in back.iter().zip(&want).enumerate() {
                let w = w.to_f32();
                assert!(
                    (b.is_nan() && w.is_nan()) || b.to_bits() == w.to_bits(),
                    "{} {path:?}: f16 -> f32 [{i}] got {b} want {w}",
                    dev.name()
                );
            }
            // to_vec converts, to_vec_f16 is exact.
            let conv = h.to_vec().unwrap();
            assert_eq!(conv.len(), v.len());
        });
    }
}

#[test]
fn every_f16_bit_pattern_converts_to_f32_exactly() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let want: Vec<f32> = all.iter().map(|h| h.to_f32()).collect();
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let t = Tensor::from_f16(&all, all.len(), &dev).unwrap();
        let got = t.to_dtype(DType::F32).unwrap().to_vec().unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits(),
                "{}: f16 bits {i:#06x} gave {g}, want {w}",
                dev.name()
            );
        }
        // f32 -> f16 of every exactly representable value gives the same bits back (NaN aside).
        let back = Tensor::from_slice(&want, want.len(), &dev)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
            .to_vec_f16()
            .unwrap();
        for (i, (b, h)) in back.iter().zip(&all).enumerate() {
            assert!(
                (b.is_nan() && h.is_nan()) || b.to_bits() == h.to_bits(),
                "{}: round trip of {i:#06x} gave {:#06x}",
                dev.name(),
                b.to_bits()
            );
        }
    }
}

#[test]
fn strided_views_of_f16_read_back_and_copy() {
    let v: Vec<f16> = data(5 * 7, 4).iter().map(|&x| f16::from_f32(x)).collect();
    let mut devices = vec![(Device::cpu(), F16Path::Packed)];
    devices.extend(gpu_paths());
    for (dev, path) in devices {
        on_path(path, || {
            let t = Tensor::from_f16(&v, [5, 7], &dev).unwrap();
            let tt = t.t().unwrap();
            let want: Vec<f16> = (0..7)
                .flat_map(|c| (0..5).map(move |r| (r, c)))
                .map(|(r, c)| v[r * 7 + c])
                .collect();
            assert_eq!(bits(&tt.to_vec_f16().unwrap()), bits(&want), "transpose");
            assert_eq!(
                bits(&tt.contiguous().unwrap().to_vec_f16().unwrap()),
                bits(&want)
            );
            // An odd offset and an odd length.
            let row = t.narrow(0, 1, 1).unwrap().narrow(1, 2, 3).unwrap();
            assert_eq!(bits(&row.to_vec_f16().unwrap()), bits(&v[9..12]), "narrow");
            let moved = row.to_device(&Device::cpu()).unwrap();
            assert_eq!(bits(&moved.to_vec_f16().unwrap()), bits(&v[9..12]));
            let up = row.to_dtype(DType::F32).unwrap().to_vec().unwrap();
            let want_up: Vec<f32> = v[9..12].iter().map(|h| h.to_f32()).collect();
            assert_eq!(up, want_up);
        });
    }
}

/// Rounds like an F16 tensor would.
fn r16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

fn f16_tensor(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_slice(&data(n, seed), shape, dev)
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap()
}

/// Runs `f` on the CPU, and on the GPU with each F16 path; F16 results must agree within
/// F16's precision (`atol + rtol·|ref|`) and dtypes must match.
fn f16_gpu_matches_cpu(what: &str, atol: f32, rtol: f32, f: impl Fn(&Device) -> Result<Tensor>) {
    let want = f(&Device::cpu()).unwrap_or_else(|e| panic!("{what} on cpu: {e}"));
    for (dev, path) in gpu_paths() {
        let got =
            on_path(path, || f(&dev)).unwrap_or_else(|e| panic!("{what} on gpu {path:?}: {e}"));
        assert_eq!(got.dims(), want.dims(), "{what}: shapes");
        assert_eq!(got.dtype(), want.dtype(), "{what}: dtypes");
        assert_close(
            &got.to_vec().unwrap(),
            &want.to_vec().unwrap(),
            atol,
            rtol,
            &format!("{what} ({path:?})"),
        );
    }
}

#[test]
fn f16_matmul_matches_an_f32_reference_on_awkward_shapes() {
    // (batch, m, k, n): ones, odd sizes, not multiples of any tile, a large K.
    let shapes = [
        (1, 1, 1, 1),
        (1, 7, 13, 5),
        (2, 65, 33, 17),
        (1, 3, 700, 4),
        (3, 1, 40, 70),
        (1, 70, 9, 1),
    ];
    for (i, &(b, m, k, n)) in shapes.iter().enumerate() {
        let a = data(b * m * k, 10 + i as u64);
        let w = data(k * n, 20 + i as u64);
        // Reference: f32 product of the F16-rounded operands, rounded once.
        let (ra, rw) = (r16(&a), r16(&w));
        let mut want = vec![0f32; b * m * n];
        for bi in 0..b {
            for r in 0..m {
                for c in 0..n {
                    let s: f64 = (0..k)
                        .map(|j| ra[bi * m * k + r * k + j] as f64 * rw[j * n + c] as f64)
                        .sum();
                    want[bi * m * n + r * n + c] = f16::from_f64(s).to_f32();
                }
            }
        }
        let mut devices = vec![(Device::cpu(), F16Path::Packed)];
        devices.extend(gpu_paths());
        for (dev, path) in devices {
            let got = on_path(path, || -> Result<Vec<f32>> {
                let ta = Tensor::from_slice(&a, [b, m, k], &dev)?.to_dtype(DType::F16)?;
                let tw = Tensor::from_slice(&w, [k, n], &dev)?.to_dtype(DType::F16)?;
                let y = ta.matmul(&tw)?;
                assert_eq!(y.dtype(), DType::F16);
                // Transposed operands read in place.
                let yt = tw.t()?.matmul(&ta.transpose(1, 2)?)?.transpose(1, 2)?;
                assert_close(&yt.to_vec()?, &y.to_vec()?, 1e-3, 2e-3, "transposed");
                y.to_vec()
            })
            .unwrap();
            // f32 accumulation: only the final rounding (one F16 ulp) and summation order.
            assert_close(
                &got,
                &want,
                1e-3 * (k as f32).sqrt(),
                1e-3,
                &format!("matmul {b}x{m}x{k}x{n} on {} {path:?}", dev.name()),
            );
        }
    }
}

#[test]
fn f16_matmul_on_every_gpu_tile_configuration() {
    for (cfg, name) in Tensor::matmul_gpu_configs().iter().enumerate() {
        f16_gpu_matches_cpu(&format!("matmul config {name}"), 2e-3, 2e-3, |dev| {
            let a = f16_tensor(&[37, 19], 1, dev);
            let b = f16_tensor(&[19, 41], 2, dev);
            if dev.is_gpu() {
                a.matmul_gpu_config(&b, cfg)
            } else {
                a.matmul(&b)
            }
        });
    }
}

#[test]
fn f16_elementwise_follows_pytorch_promotion() {
    f16_gpu_matches_cpu("unary on f16", 1e-3, 1e-3, |d| {
        let x = f16_tensor(&[3, 17], 1, d);
        let y = x.relu()?.add(&x.exp()?)?.tanh()?.mul_scalar(3.0)?;
        assert_eq!(y.dtype(), DType::F16);
        Ok(y)
    });
    f16_gpu_matches_cpu("f16 + f16 broadcast", 1e-3, 1e-3, |d| {
        let x = f16_tensor(&[4, 1, 5], 2, d);
        let y = f16_tensor(&[3, 1], 3, d);
        let z = x.add(&y)?.div(&y.abs()?.add_scalar(0.5)?)?;
        assert_eq!(z.dtype(), DType::F16);
        Ok(z)
    });
    f16_gpu_matches_cpu("f16 * f32 promotes", 1e-6, 1e-6, |d| {
        let x = f16_tensor(&[6, 5], 4, d);
        let y = Tensor::from_slice(&data(5, 5), [5], d)?;
        let z = x.mul(&y)?;
        assert_eq!(z.dtype(), DType::F32);
        Ok(z)
    });
    f16_gpu_matches_cpu("comparisons give f32 masks", 0.0, 0.0, |d| {
        let x = f16_tensor(&[9], 6, d);
        let m = x.gt_scalar(0.0)?.add(&x.le(&x.mul_scalar(0.5)?)?)?;
        assert_eq!(m.dtype(), DType::F32);
        Ok(m)
    });
    f16_gpu_matches_cpu("where with f16 branches", 0.0, 0.0, |d| {
        let x = f16_tensor(&[2, 7], 7, d);
        let y = f16_tensor(&[2, 7], 8, d);
        let z = Tensor::where_cond(&x.gt(&y)?, &x, &y)?;
        assert_eq!(z.dtype(), DType::F16);
        Ok(z)
    });
}

#[test]
fn every_f16_elementwise_op_matches_cpu_on_strided_and_broadcast_inputs() {
    use wgml::{BinaryOp, CmpOp, UnaryOp};
    let unary = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Affine {
            mul: -3.0,
            add: 0.5,
        },
        UnaryOp::Powf(3.0),
        UnaryOp::Recip,
        UnaryOp::Clamp {
            min: -0.5,
            max: 0.75,
        },
        UnaryOp::Sign,
        UnaryOp::CmpScalar(CmpOp::Ge, 0.25),
    ];
    for op in unary {
        // A transposed view with an odd element count (the last word is half used).
        f16_gpu_matches_cpu(&format!("{op:?}"), 2e-3, 2e-3, |d| {
            f16_tensor(&[7, 5], 11, d).t()?.unary(op)
        });
    }
    let binary = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Cmp(CmpOp::Lt),
    ];
    for op in binary {
        f16_gpu_matches_cpu(&format!("{op:?}"), 2e-3, 2e-3, |d| {
            let a = f16_tensor(&[3, 1, 5], 12, d);
            let b = f16_tensor(&[5, 4], 13, d).t()?;
            a.binary(&b, op)
        });
    }
    // Exact ops are bit-exact against the CPU, overflow gives inf on both.
    f16_gpu_matches_cpu("overflow to inf", 0.0, 0.0, |d| {
        let big = Tensor::from_slice(&[60000.0, -60000.0, 1.0], [3], d)?.to_dtype(DType::F16)?;
        let y = big.add(&big)?;
        assert_eq!(y.to_vec()?, [f32::INFINITY, f32::NEG_INFINITY, 2.0]);
        Ok(y)
    });
}

#[test]
fn f16_elementwise_gradients_match_f32_within_f16_precision() {
    // The same graph on F16-rounded inputs in F32 is the reference; F16 rounds every
    // intermediate, so agreement is to a few F16 ulps.
    let x32 = r16(&data(4 * 6, 21));
    let w32 = r16(&data(6, 22));
    let run = |dev: &Device, dtype: DType| -> (Vec<f32>, Vec<f32>) {
        let x = Tensor::from_slice(&x32, [4, 6], dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
            .requires_grad();
        let w = Tensor::from_slice(&w32, [6], dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
            .requires_grad();
        let y = x
            .mul(&w)
            .unwrap()
            .sigmoid()
            .unwrap()
            .add(&x.tanh().unwrap())
            .unwrap();
        let y = y
            .div(&w.abs().unwrap().add_scalar(1.0).unwrap())
            .unwrap()
            .gelu()
            .unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let (gx, gw) = (g.get(&x).unwrap(), g.get(&w).unwrap());
        assert_eq!((gx.dtype(), gw.dtype()), (dtype, dtype));
        (gx.to_vec().unwrap(), gw.to_vec().unwrap())
    };
    let (want_x, want_w) = run(&Device::cpu(), DType::F32);
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let (gx, gw) = run(&dev, DType::F16);
        assert_close(&gx, &want_x, 1e-2, 1e-2, &format!("dx on {}", dev.name()));
        assert_close(&gw, &want_w, 3e-2, 1e-2, &format!("dw on {}", dev.name()));
    }
}

#[test]
fn f16_reductions_softmax_and_norms_accumulate_in_f32() {
    // 5000 values of ~1: an f16 accumulator would stall at 2048; f32 does not.
    f16_gpu_matches_cpu("sum of many", 0.0, 2e-3, |d| {
        let x = Tensor::ones([5000], d)?.to_dtype(DType::F16)?;
        let s = x.sum_all()?;
        assert_eq!(s.dtype(), DType::F16);
        assert_eq!(s.item()?, 5000.0);
        Ok(s)
    });
    for (name, f) in [
        ("sum", 0usize),
        ("mean", 1),
        ("max", 2),
        ("argmax", 3),
        ("softmax", 4),
        ("log_softmax", 5),
        ("layer_norm", 6),
    ] {
        f16_gpu_matches_cpu(name, 2e-3, 2e-3, |d| {
            let x = f16_tensor(&[3, 5, 33], 9, d);
            let y = match f {
                0 => x.sum(1, false)?,
                1 => x.mean(-1, true)?,
                2 => x.max(0, false)?,
                3 => x.argmax(-1, false)?,
                4 => x.softmax()?,
                5 => x.log_softmax()?,
                _ => wgml::nn::functional::layer_norm(&x, &[33], None, None, 1e-5)?,
            };
            let want = if f == 3 { DType::U32 } else { DType::F16 };
            assert_eq!(y.dtype(), want, "{name}");
            Ok(y)
        });
    }
}

#[test]
fn f16_conv_pool_index_and_attention_match_cpu() {
    f16_gpu_matches_cpu("conv2d", 5e-3, 3e-3, |d| {
        let x = f16_tensor(&[2, 3, 9, 7], 1, d);
        let w = f16_tensor(&[4, 3, 3, 3], 2, d);
        let b = f16_tensor(&[4], 3, d);
        let cfg = Conv2dConfig {
            stride: [2, 1],
            padding: [1, 1],
            ..Default::default()
        };
        let y = x.conv2d(&w, Some(&b), cfg)?;
        assert_eq!(y.dtype(), DType::F16);
        Ok(y)
    });
    // Columns are copies of input halves: bit-exact, with padding, dilation and groups.
    f16_gpu_matches_cpu("im2col", 0.0, 0.0, |d| {
        let cfg = Conv2dConfig {
            stride: [2, 1],
            padding: [1, 2],
            dilation: [1, 2],
            groups: 3,
        };
        let cols = f16_tensor(&[2, 3, 7, 5], 14, d).im2col([3, 2], cfg)?;
        assert_eq!(cols.dtype(), DType::F16);
        Ok(cols)
    });
    f16_gpu_matches_cpu("max_pool2d", 0.0, 0.0, |d| {
        f16_tensor(&[2, 3, 7, 9], 4, d).max_pool2d(Pool2d::new(2))
    });
    f16_gpu_matches_cpu("max_pool2d padded, ceil mode", 0.0, 0.0, |d| {
        let p = Pool2d {
            kernel: [3, 2],
            stride: [2, 2],
            padding: [1, 1],
            ceil_mode: true,
        };
        let y = f16_tensor(&[2, 3, 7, 9], 15, d).max_pool2d(p)?;
        assert_eq!(y.dtype(), DType::F16);
        // The gradient goes to the first maximum, in F16.
        let x = f16_tensor(&[1, 2, 5, 5], 16, d).requires_grad();
        let g = x.max_pool2d(p)?.sum_all()?.backward()?;
        let gx = g.get(&x).unwrap();
        assert_eq!(gx.dtype(), DType::F16);
        Tensor::cat(&[&y.reshape([y.numel()])?, &gx.reshape([gx.numel()])?], 0)
    });
    f16_gpu_matches_cpu("avg_pool2d", 1e-3, 1e-3, |d| {
        f16_tensor(&[2, 3, 7, 9], 5, d).avg_pool2d(Pool2d::new(3))
    });
    f16_gpu_matches_cpu("embedding of an f16 table", 0.0, 0.0, |d| {
        let table = f16_tensor(&[11, 5], 6, d);
        let idx = Tensor::from_indices(&[3, 0, 10, 3, 7], [5], d)?;
        let y = table.embedding(&idx)?;
        assert_eq!(y.dtype(), DType::F16);
        Ok(y)
    });
    f16_gpu_matches_cpu("gather and cat", 0.0, 0.0, |d| {
        let x = f16_tensor(&[3, 4], 7, d);
        let idx = Tensor::from_indices(&[3, 1, 0, 0, 2, 2], [3, 2], d)?;
        let g = x.gather(1, &idx)?;
        Tensor::cat(&[&g, &x], 1)
    });
    f16_gpu_matches_cpu("attention", 3e-3, 3e-3, |d| {
        let q = f16_tensor(&[1, 2, 5, 8], 8, d);
        let k = f16_tensor(&[1, 2, 7, 8], 9, d);
        let v = f16_tensor(&[1, 2, 7, 8], 10, d);
        let o = wgml::nn::functional::scaled_dot_product_attention(&q, &k, &v, None, false, None)?;
        assert_eq!(o.dtype(), DType::F16);
        Ok(o)
    });
}

#[test]
fn f16_gradients_have_their_tensors_dtype_and_match_f32() {
    let mut devices = vec![(Device::cpu(), F16Path::Packed)];
    devices.extend(gpu_paths());
    let a32 = data(6 * 5, 1);
    let b32 = data(5 * 4, 2);
    // Reference: the same graph in f32 on F16-rounded values.
    let (ra, rb) = (r16(&a32), r16(&b32));
    let cpu = Device::cpu();
    let ta = Tensor::from_slice(&ra, [6, 5], &cpu)
        .unwrap()
        .requires_grad();
    let tb = Tensor::from_slice(&rb, [5, 4], &cpu)
        .unwrap()
        .requires_grad();
    let g = ta
        .matmul(&tb)
        .unwrap()
        .relu()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let (want_a, want_b) = (
        g.get(&ta).unwrap().to_vec().unwrap(),
        g.get(&tb).unwrap().to_vec().unwrap(),
    );
    for (dev, path) in devices {
        on_path(path, || {
            let a = Tensor::from_slice(&a32, [6, 5], &dev)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap()
                .requires_grad();
            let b = Tensor::from_slice(&b32, [5, 4], &dev)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap()
                .requires_grad();
            let loss = a.matmul(&b).unwrap().relu().unwrap().sum_all().unwrap();
            assert_eq!(loss.dtype(), DType::F16);
            let g = loss.backward().unwrap();
            let (ga, gb) = (g.get(&a).unwrap(), g.get(&b).unwrap());
            assert_eq!((ga.dtype(), gb.dtype()), (DType::F16, DType::F16));
            let what = format!("{} {path:?}", dev.name());
            assert_close(
                &ga.to_vec().unwrap(),
                &want_a,
                2e-3,
                2e-3,
                &format!("da {what}"),
            );
            assert_close(
                &gb.to_vec().unwrap(),
                &want_b,
                2e-3,
                2e-3,
                &format!("db {what}"),
            );
        });
    }
}

#[test]
fn f16_conv2d_gradients_match_f32() {
    let (x32, w32, b32) = (
        r16(&data(2 * 3 * 8 * 7, 31)),
        r16(&data(4 * 3 * 9, 32)),
        r16(&data(4, 33)),
    );
    let cfg = Conv2dConfig {
        stride: [2, 1],
        padding: [1, 0],
        ..Default::default()
    };
    let run = |dev: &Device, dtype: DType| -> Vec<Vec<f32>> {
        let leaf = |v: &[f32], s: &[usize]| {
            Tensor::from_slice(v, s, dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .requires_grad()
        };
        let (x, w, b) = (
            leaf(&x32, &[2, 3, 8, 7]),
            leaf(&w32, &[4, 3, 3, 3]),
            leaf(&b32, &[4]),
        );
        let y = x.conv2d(&w, Some(&b), cfg).unwrap();
        assert_eq!(y.dtype(), dtype);
        let g = y.tanh().unwrap().sum_all().unwrap().backward().unwrap();
        [&x, &w, &b]
            .iter()
            .map(|t| {
                let gt = g.get(t).unwrap();
                assert_eq!(gt.dtype(), dtype);
                gt.to_vec().unwrap()
            })
            .collect()
    };
    let want = run(&Device::cpu(), DType::F32);
    let mut devices = vec![(Device::cpu(), F16Path::Packed)];
    devices.extend(gpu_paths());
    for (dev, path) in devices {
        let got = on_path(path, || run(&dev, DType::F16));
        for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
            let atol = if i == 0 { 1e-2 } else { 5e-2 };
            assert_close(
                &got[i],
                &want[i],
                atol,
                1e-2,
                &format!("{name} on {} {path:?}", dev.name()),
            );
        }
    }
}

#[test]
fn cast_backward_casts_the_gradient_back() {
    // d/dx sum(w · f32(f16(x))) = w, in x's dtype (straight through the rounding).
    let dev = Device::cpu();
    let x = Tensor::from_slice(&data(7, 1), [7], &dev)
        .unwrap()
        .requires_grad();
    let w = Tensor::from_slice(&data(7, 2), [7], &dev).unwrap();
    let h = x.to_dtype(DType::F16).unwrap();
    let loss = h
        .to_dtype(DType::F32)
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    let gx = g.get(&x).unwrap();
    assert_eq!(gx.dtype(), DType::F32);
    assert_close(
        &gx.to_vec().unwrap(),
        &r16(&data(7, 2)),
        0.0,
        0.0,
        "cast backward",
    );
    // Finite differences through a smooth F16 op agree within F16's resolution.
    let f = |v: &[f32]| -> f32 {
        Tensor::from_slice(v, [7], &dev)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
            .tanh()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .item()
            .unwrap()
    };
    let x0 = data(7, 1);
    let xt = Tensor::from_slice(&x0, [7], &dev).unwrap().requires_grad();
    let lt = xt
        .to_dtype(DType::F16)
        .unwrap()
        .tanh()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap();
    let gt = lt.backward().unwrap().get(&xt).unwrap().to_vec().unwrap();
    for i in 0..7 {
        let eps = 0.05;
        let (mut p, mut m) = (x0.clone(), x0.clone());
        p[i] += eps;
        m[i] -= eps;
        let fd = (f(&p) - f(&m)) / (2.0 * eps);
        assert!(
            (fd - gt[i]).abs() < 0.03 + 0.03 * fd.abs(),
            "[{i}] fd {fd} vs grad {}",
            gt[i]
        );
    }
}

#[test]
fn autocast_runs_matmul_and_conv_in_f16_and_reductions_in_f32() {
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let mut rng = wgml::rng::Rng::new(1);
        let lin = Linear::new(6, 3, true, &mut rng, &dev).unwrap();
        let x = Tensor::from_slice(&data(4 * 6, 2), [4, 6], &dev).unwrap();
        let labels = Tensor::from_indices(&[0, 2, 1, 2], [4], &dev).unwrap();
        let (y, sm, s, loss) = amp::autocast(|| -> Result<_> {
            assert!(amp::is_autocast_enabled());
            let y = lin.forward(&x)?;
            let conv = x.reshape([1, 1, 4, 6])?.conv2d(
                &Tensor::ones([2, 1, 2, 2], &dev)?,
                None,
                Conv2dConfig::default(),
            )?;
            assert_eq!(conv.dtype(), DType::F16);
            // PyTorch's lists: means and activations keep F16; exp, log, pow run in F32.
            assert_eq!(y.mean_all()?.dtype(), DType::F16);
            assert_eq!(y.relu()?.dtype(), DType::F16);
            assert_eq!(y.exp()?.dtype(), DType::F32);
            assert_eq!(y.powf(2.0)?.dtype(), DType::F32);
            Ok((
                y.clone(),
                y.softmax()?,
                y.sum_all()?,
                loss::cross_entropy(&y, &labels)?,
            ))
        })
        .unwrap();
        assert!(!amp::is_autocast_enabled());
        assert_eq!(y.dtype(), DType::F16, "linear under autocast");
        assert_eq!(
            (sm.dtype(), s.dtype(), loss.dtype()),
            (DType::F32, DType::F32, DType::F32)
        );
        // Master weights stay F32 and get F32 gradients.
        let g = loss.backward().unwrap();
        for (name, p) in lin.parameters() {
            assert_eq!(p.dtype(), DType::F32);
            let gp = g.get(&p).unwrap_or_else(|| panic!("no grad for {name}"));
            assert_eq!(gp.dtype(), DType::F32, "{name}");
        }
        // The F16 forward agrees with the F32 one within F16's precision.
        let y32 = lin.forward(&x).unwrap();
        assert_close(
            &y.to_vec().unwrap(),
            &y32.to_vec().unwrap(),
            1e-2,
            1e-2,
            "autocast linear",
        );
    }
}

#[test]
fn grad_scaler_skips_steps_with_inf_and_adjusts_the_scale() {
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let p = Tensor::from_slice(&[1.0, 2.0, 3.0], [3], &dev)
            .unwrap()
            .requires_grad();
        let mut opt = Adam::new([("p".to_string(), p.clone())], 0.1);
        let mut scaler = amp::GradScaler::with_settings(1024.0, 2.0, 0.5, 3);
        assert_eq!(amp::GradScaler::new().scale_value(), 65536.0);
        // A clean step: the gradient is unscaled exactly, the step runs.
        let loss = p.mul(&p).unwrap().sum_all().unwrap();
        let scaled = scaler.scale(&loss).unwrap();
        assert_eq!(scaled.item().unwrap(), 14.0 * 1024.0);
        let mut g = scaled.backward().unwrap();
        assert!(!scaler.unscale(&mut g).unwrap());
        assert_close(
            &g.get(&p).unwrap().to_vec().unwrap(),
            &[2.0, 4.0, 6.0],
            0.0,
            0.0,
            "unscaled",
        );
        assert!(scaler.step(&mut opt, &mut g).unwrap());
        scaler.update();
        assert_eq!(scaler.scale_value(), 1024.0);
        let after_clean = p.to_vec().unwrap();
        assert!(after_clean[0] < 1.0, "the step ran: {after_clean:?}");
        // An injected inf: the step is skipped, the parameter unchanged, the scale halved.
        let inf = Tensor::from_slice(&[1.0, f32::INFINITY, 1.0], [3], &dev).unwrap();
        let loss = p.mul(&inf).unwrap().sum_all().unwrap();
        let mut g = scaler.scale(&loss).unwrap().backward().unwrap();
        assert!(
            !scaler.step(&mut opt, &mut g).unwrap(),
            "step with inf gradients"
        );
        scaler.update();
        assert_eq!(p.to_vec().unwrap(), after_clean);
        assert_eq!(scaler.scale_value(), 512.0);
        // A NaN too.
        let nan = Tensor::from_slice(&[f32::NAN, 1.0, 1.0], [3], &dev).unwrap();
        let mut g = scaler
            .scale(&p.mul(&nan).unwrap().sum_all().unwrap())
            .unwrap()
            .backward()
            .unwrap();
        assert!(!scaler.step(&mut opt, &mut g).unwrap());
        scaler.update();
        assert_eq!(scaler.scale_value(), 256.0);
        // Three clean steps in a row double it.
        for i in 0..3 {
            let mut g = scaler
                .scale(&p.sum_all().unwrap())
                .unwrap()
                .backward()
                .unwrap();
            assert!(scaler.step(&mut opt, &mut g).unwrap());
            scaler.update();
            let want = if i < 2 { 256.0 } else { 512.0 };
            assert_eq!(scaler.scale_value(), want, "after clean step {i}");
        }
    }
}

#[test]
fn f16_checkpoints_round_trip_and_load_into_f32() {
    let dir = std::env::temp_dir().join(format!("wgml-f16-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.safetensors");
    let v: Vec<f16> = awkward_values().iter().map(|&x| f16::from_f32(x)).collect();
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let t = Tensor::from_f16(&v, v.len(), &dev).unwrap();
        wgml::checkpoint::save(&path, &[("h".into(), t)]).unwrap();
        let back = wgml::checkpoint::load(&path, &dev).unwrap();
        assert_eq!(back[0].1.dtype(), DType::F16);
        assert_eq!(bits(&back[0].1.to_vec_f16().unwrap()), bits(&v));
        let target = Tensor::zeros(v.len(), &dev).unwrap();
        wgml::checkpoint::load_into(&path, &[("h".into(), target.clone())]).unwrap();
        let want: Vec<f32> = v.iter().map(|h| h.to_f32()).collect();
        assert_close(&target.to_vec().unwrap(), &want, 0.0, 0.0, "f16 into f32");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn f16_where_unsupported_is_a_clear_error() {
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let h = f16_tensor(&[2, 3], 1, &dev);
        let f = Tensor::ones([3, 2], &dev).unwrap();
        let e = h.matmul(&f).unwrap_err();
        assert!(matches!(e, Error::DType { op: "matmul", .. }), "{e}");
        assert!(
            e.to_string().contains("F16") && e.to_string().contains("[2, 3]"),
            "{e}"
        );
        let w = Tensor::ones([1, 1, 1, 1], &dev).unwrap();
        let e = h
            .reshape([1, 1, 2, 3])
            .unwrap()
            .conv2d(&w, None, Conv2dConfig::default())
            .unwrap_err();
        assert!(matches!(e, Error::DType { op: "conv2d", .. }), "{e}");
        // Optimizers keep F32 master weights.
        let p = h.requires_grad();
        let g = p.sum_all().unwrap().backward().unwrap();
        let mut opt = Adam::new([("p".to_string(), p.clone())], 0.1);
        let e = opt.step(&g).unwrap_err();
        assert!(
            matches!(e, Error::DType { .. }) && e.to_string().contains("master"),
            "{e}"
        );
        // The LSTM has no F16 path.
        let x = f16_tensor(&[2, 1, 3], 2, &dev);
        let cfg = wgml::nn::LstmConfig::default();
        let lstm = wgml::nn::Lstm::new(3, 4, 1, cfg, &mut wgml::rng::Rng::new(0), &dev).unwrap();
        let Err(e) = lstm.forward(&x, None) else {
            panic!("lstm on f16 did not fail");
        };
        assert!(matches!(e, Error::DType { .. }), "{e}");
        // Wrong element counts and dtypes name the op.
        let e = Tensor::from_f16(&[f16::ONE; 3], [2, 2], &dev).unwrap_err();
        assert!(
            matches!(e, Error::ElementCount { op: "from_f16", .. }),
            "{e}"
        );
        let e = Tensor::ones(3, &dev).unwrap().to_vec_f16().unwrap_err();
        assert!(
            matches!(
                e,
                Error::DType {
                    op: "to_vec_f16",
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn a_small_cnn_trains_under_autocast_with_loss_scaling() {
    use wgml::nn::{Conv2d, Flatten, MaxPool2d, Relu, Sequential};
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let mut rng = wgml::rng::Rng::new(5);
        let cfg = Conv2dConfig::default();
        let model = Sequential::new()
            .add(Conv2d::new(1, 4, [3, 3], cfg, &mut rng, &dev).unwrap())
            .add(Relu)
            .add(MaxPool2d::new(2))
            .add(Flatten)
            .add(Linear::new(4 * 3 * 3, 3, true, &mut rng, &dev).unwrap());
        // Three classes told apart by where the bright pixels are.
        let mut img = vec![0f32; 12 * 64];
        let labels: Vec<u32> = (0..12).map(|i| (i % 3) as u32).collect();
        for (i, &l) in labels.iter().enumerate() {
            for p in 0..64 {
                let (r, c) = (p / 8, p % 8);
                let lit = match l {
                    0 => r < 3,
                    1 => c < 3,
                    _ => r >= 5 && c >= 5,
                };
                img[i * 64 + p] =
                    if lit { 1.0 } else { 0.0 } + 0.1 * data(1, (i * 64 + p) as u64)[0];
            }
        }
        let x = Tensor::from_slice(&img, [12, 1, 8, 8], &dev).unwrap();
        let y = Tensor::from_indices(&labels, [12], &dev).unwrap();
        let mut opt = Adam::new(model.parameters(), 0.05);
        let mut scaler = amp::GradScaler::new();
        let mut losses = vec![];
        for _ in 0..30 {
            let loss = amp::autocast(|| loss::cross_entropy(&model.forward(&x)?, &y)).unwrap();
            assert_eq!(loss.dtype(), DType::F32);
            let mut g = scaler.scale(&loss).unwrap().backward().unwrap();
            scaler.step(&mut opt, &mut g).unwrap();
            scaler.update();
            losses.push(loss.item().unwrap());
        }
        for (name, p) in model.parameters() {
            assert_eq!(p.dtype(), DType::F32, "{name} stays an F32 master weight");
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(
            last.is_finite() && last < 0.5 * first,
            "{}: loss {first} -> {last}",
            dev.name()
        );
    }
}

#[test]
fn f16_tables_gather_only_the_rows_named_and_get_f16_gradients() {
    let table32 = r16(&data(6 * 4, 41));
    let idx = [5u32, 0, 5, 2];
    let w = data(4 * 4, 42);
    // Row r of the gradient is the sum of w's rows whose index is r.
    let mut want = vec![0f32; 6 * 4];
    for (j, &r) in idx.iter().enumerate() {
        for c in 0..4 {
            want[r as usize * 4 + c] += w[j * 4 + c];
        }
    }
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let table = Tensor::from_slice(&table32, [6, 4], &dev)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
            .requires_grad();
        let i = Tensor::from_indices(&idx, [4], &dev).unwrap();
        let rows = table.embedding(&i).unwrap();
        assert_eq!(rows.dtype(), DType::F16);
        let got_rows = rows.to_vec().unwrap();
        for (j, &r) in idx.iter().enumerate() {
            assert_eq!(
                got_rows[j * 4..j * 4 + 4],
                table32[r as usize * 4..r as usize * 4 + 4]
            );
        }
        let wt = Tensor::from_slice(&w, [4, 4], &dev).unwrap();
        let g = rows
            .mul(&wt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gt = g.get(&table).unwrap();
        assert_eq!(gt.dtype(), DType::F16);
        assert_close(
            &gt.to_vec().unwrap(),
            &r16(&want),
            0.0,
            2e-3,
            &format!("dtable on {}", dev.name()),
        );
    }
}
