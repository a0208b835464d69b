//! wgml in a browser: wasm32 + WebGPU, run by `wasm-bindgen-test` in headless Chromium
//! (SwiftShader's adapter, whose shader compiler is Tint). Every GPU result is checked against
//! the CPU backend on the same page, read back with the async API (nothing may block here),
//! and every pipeline the launchers can build is compiled by Tint.
//!
//! `.ci/run` runs it: `cargo test --target wasm32-unknown-unknown --test web` with
//! `wasm-bindgen-test-runner` as the target's runner, `CHROMEDRIVER=/usr/bin/chromedriver` and
//! `WASM_BINDGEN_TEST_WEBDRIVER_JSON=tests/web/webdriver.json` (Chromium's WebGPU flags).
//! On native targets this file is empty.
#![cfg(target_arch = "wasm32")]

mod common;

use common::{assert_close, data};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use wgml::nn::functional::scaled_dot_product_attention;
use wgml::optim::{Adam, Optimizer};
use wgml::{Conv2dConfig, DType, Device, Error, Tensor};

wasm_bindgen_test_configure!(run_in_browser);

/// The page's WebGPU device: opening it must work here, or every other test is moot.
async fn gpu() -> Device {
    Device::gpu_async()
        .await
        .unwrap_or_else(|e| panic!("no WebGPU device in this browser: {e}"))
}

/// The values of a tensor on either device, read without blocking.
async fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec_async().await.unwrap()
}

/// `data(n, seed)` as a tensor of `shape` on `dev`.
fn tensor(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(data(n, seed), shape, dev).unwrap()
}

/// Runs `f` on the GPU and on the CPU with the same inputs and compares the results.
async fn same_on_both(what: &str, atol: f32, rtol: f32, f: impl Fn(&Device) -> Tensor) {
    let gpu = gpu().await;
    let got = values(&f(&gpu)).await;
    let want = values(&f(&Device::cpu())).await;
    assert_close(&got, &want, atol, rtol, what);
}

#[wasm_bindgen_test]
async fn creation_and_read_back() {
    let dev = gpu().await;
    if let Device::Gpu(ctx) = &dev {
        let l = ctx.limits();
        console_log!(
            "adapter: {} ({:?}); {} invocations per workgroup, {} storage buffers per stage, \
             {} bytes of workgroup memory, features {:?}",
            ctx.info().name,
            ctx.info().backend,
            l.max_compute_invocations_per_workgroup,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            ctx.features()
        );
        assert_eq!(ctx.info().backend, wgpu::Backend::BrowserWebGpu);
    }
    let v = data(37, 1);
    let t = Tensor::from_vec(v.clone(), [37], &dev).unwrap();
    assert_eq!(values(&t).await, v);
    let idx = Tensor::from_indices(&[0, 7, 4_000_000_000], [3], &dev).unwrap();
    assert_eq!(idx.to_vec_u32_async().await.unwrap(), [0, 7, 4_000_000_000]);
    let z = Tensor::full(2.5, [3, 5], &dev).unwrap();
    assert_eq!(values(&z).await, vec![2.5; 15]);
    let r = Tensor::arange(0.0, 5.0, 1.0, &dev).unwrap();
    assert_eq!(values(&r).await, [0.0, 1.0, 2.0, 3.0, 4.0]);
    let s = t.sum(0, false).unwrap();
    let want: f32 = v.iter().sum();
    assert!((s.item_async().await.unwrap() - want).abs() < 1e-4);
    // F16 storage: packed words, converted exactly on read-back.
    let h = t.to_dtype(DType::F16).unwrap();
    let want: Vec<f32> = v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_eq!(values(&h).await, want);
    // A strided view reads back in row-major order.
    let m = Tensor::from_vec(data(6, 2), [2, 3], &dev).unwrap();
    let cpu = Tensor::from_vec(data(6, 2), [2, 3], &Device::cpu()).unwrap();
    assert_eq!(
        values(&m.t().unwrap()).await,
        cpu.t().unwrap().to_vec().unwrap()
    );
}

#[wasm_bindgen_test]
async fn blocking_calls_are_refused_not_trapped() {
    let dev = gpu().await;
    // The device opened asynchronously is what the blocking constructors hand out now.
    assert_eq!(Device::gpu().unwrap(), dev);
    assert_eq!(Device::parse("gpu").unwrap(), dev);
    let t = Tensor::ones([4], &dev).unwrap();
    match t.to_vec() {
        Err(Error::WouldBlock { op, instead }) => {
            assert_eq!(op, "to_vec");
            assert!(instead.contains("to_vec_async"), "{instead}");
        }
        other => panic!("to_vec on wasm32 should be refused, got {other:?}"),
    }
    assert!(matches!(t.item(), Err(Error::Invalid { .. })));
    assert!(matches!(dev.synchronize(), Err(Error::WouldBlock { .. })));
    dev.synchronize_async().await.unwrap();
    // The refused read-back left the device usable.
    assert_eq!(values(&t).await, [1.0; 4]);
}

#[wasm_bindgen_test]
async fn an_index_out_of_range_is_reported_at_the_async_read_back() {
    let dev = gpu().await;
    let table = tensor(&[5, 3], 3, &dev);
    let idx = Tensor::from_indices(&[1, 9], [2], &dev).unwrap();
    let rows = table.index_select(0, &idx).unwrap();
    match rows.to_vec_async().await {
        Err(Error::IndexOutOfRange { index, size, .. }) => assert_eq!((index, size), (9, 5)),
        other => panic!("expected IndexOutOfRange, got {other:?}"),
    }
    // Reported once; the device goes on.
    assert_eq!(values(&Tensor::ones([2], &dev).unwrap()).await, [1.0; 2]);
}

#[wasm_bindgen_test]
async fn elementwise_ops_match_the_cpu() {
    same_on_both("broadcast add, mul", 1e-6, 1e-6, |d| {
        let a = tensor(&[3, 1, 7], 4, d);
        let b = tensor(&[5, 1], 5, d);
        a.add(&b).unwrap().mul(&a).unwrap()
    })
    .await;
    same_on_both(
        "exp, tanh, sigmoid, gelu, relu of a transposed view",
        1e-5,
        1e-5,
        |d| {
            let x = tensor(&[9, 13], 6, d).t().unwrap();
            let y = x.exp().unwrap().add(&x.tanh().unwrap()).unwrap();
            let z = x.sigmoid().unwrap().mul(&x.gelu().unwrap()).unwrap();
            y.sub(&z.relu().unwrap()).unwrap()
        },
    )
    .await;
    same_on_both("log, sqrt, pow, division", 1e-5, 1e-5, |d| {
        let x = tensor(&[257], 7, d)
            .abs()
            .unwrap()
            .affine(1.0, 0.5)
            .unwrap();
        let y = x.log().unwrap().div(&x.sqrt().unwrap()).unwrap();
        y.add(&x.powf(1.7).unwrap()).unwrap()
    })
    .await;
    same_on_both("comparisons and where", 0.0, 0.0, |d| {
        let a = tensor(&[4, 6], 8, d);
        let b = tensor(&[6], 9, d);
        let mask = a.gt(&b).unwrap();
        Tensor::where_cond(&mask, &a, &b.neg().unwrap()).unwrap()
    })
    .await;
}

#[wasm_bindgen_test]
async fn matmul_matches_the_cpu() {
    for (m, k, n) in [
        (1, 1, 1),
        (1, 37, 5),
        (17, 33, 9),
        (65, 130, 70),
        (3, 300, 2),
    ] {
        same_on_both(&format!("{m}x{k} @ {k}x{n}"), 1e-4, 1e-4, |d| {
            tensor(&[m, k], 10, d)
                .matmul(&tensor(&[k, n], 11, d))
                .unwrap()
        })
        .await;
        same_on_both(&format!("({k}x{m})^T @ ({n}x{k})^T"), 1e-4, 1e-4, |d| {
            let a = tensor(&[k, m], 12, d).t().unwrap();
            let b = tensor(&[n, k], 13, d).t().unwrap();
            a.matmul(&b).unwrap()
        })
        .await;
    }
    same_on_both("batched, broadcast", 1e-4, 1e-4, |d| {
        tensor(&[2, 3, 5, 19], 14, d)
            .matmul(&tensor(&[3, 19, 6], 15, d))
            .unwrap()
    })
    .await;
}

#[wasm_bindgen_test]
async fn softmax_matches_the_cpu() {
    for n in [1, 37, 1100] {
        same_on_both(&format!("softmax of rows of {n}"), 1e-6, 1e-4, |d| {
            tensor(&[3, n], 16, d)
                .affine(4.0, 0.0)
                .unwrap()
                .softmax()
                .unwrap()
        })
        .await;
        same_on_both(&format!("log_softmax of rows of {n}"), 1e-5, 1e-5, |d| {
            tensor(&[3, n], 17, d).log_softmax().unwrap()
        })
        .await;
    }
}

/// The gradients of `loss(params)` with respect to each parameter, made on `dev`.
async fn grads_on(
    dev: &Device,
    shapes: &[&[usize]],
    loss: impl Fn(&[Tensor]) -> Tensor,
) -> Vec<Vec<f32>> {
    let params: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| tensor(s, 20 + i as u64, dev).requires_grad())
        .collect();
    let g = loss(&params).backward().unwrap();
    let mut out = Vec::new();
    for p in &params {
        out.push(values(g.get(p).expect("a gradient for every parameter")).await);
    }
    out
}

/// Forward values and gradients of `loss` agree between the GPU and the CPU.
async fn gradients_match(
    what: &str,
    shapes: &[&[usize]],
    atol: f32,
    loss: impl Fn(&[Tensor]) -> Tensor,
) {
    let gpu = gpu().await;
    let got = grads_on(&gpu, shapes, &loss).await;
    let want = grads_on(&Device::cpu(), shapes, &loss).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(g, w, atol, 1e-3, &format!("{what}: gradient of input {i}"));
    }
}

#[wasm_bindgen_test]
async fn conv2d_matches_the_cpu() {
    let cfg = Conv2dConfig {
        stride: [2, 1],
        padding: [1, 0],
        ..Conv2dConfig::default()
    };
    same_on_both("conv2d forward", 1e-4, 1e-4, |d| {
        let x = tensor(&[2, 3, 9, 8], 30, d);
        let w = tensor(&[5, 3, 3, 3], 31, d);
        let b = tensor(&[5], 32, d);
        x.conv2d(&w, Some(&b), cfg).unwrap()
    })
    .await;
    gradients_match(
        "conv2d backward",
        &[&[2, 3, 9, 8], &[5, 3, 3, 3], &[5]],
        1e-3,
        |p| {
            let y = p[0].conv2d(&p[1], Some(&p[2]), cfg).unwrap();
            y.mul(&y).unwrap().sum_all().unwrap()
        },
    )
    .await;
}

#[wasm_bindgen_test]
async fn attention_forward_and_backward_match_the_cpu() {
    for causal in [false, true] {
        // B 2, H 2, Tq 7, Tk 9 (unequal, not multiples of any tile), D 16, Dv 8.
        let shapes: [&[usize]; 3] = [&[2, 2, 7, 16], &[2, 2, 9, 16], &[2, 2, 9, 8]];
        same_on_both(
            &format!("attention forward, causal {causal}"),
            1e-5,
            1e-4,
            |d| {
                let [q, k, v] = shapes.map(|s| tensor(s, 40, d));
                scaled_dot_product_attention(&q, &k, &v, None, causal, None).unwrap()
            },
        )
        .await;
        gradients_match(
            &format!("attention backward, causal {causal}"),
            &shapes,
            1e-4,
            |p| {
                let o =
                    scaled_dot_product_attention(&p[0], &p[1], &p[2], None, causal, None).unwrap();
                o.mul(&o).unwrap().sum_all().unwrap()
            },
        )
        .await;
    }
}

#[wasm_bindgen_test]
async fn one_adam_step_matches_the_cpu() {
    let mut after = Vec::new();
    for dev in [gpu().await, Device::cpu()] {
        let w = tensor(&[33, 7], 50, &dev).requires_grad();
        let x = tensor(&[5, 33], 51, &dev);
        let loss = x.matmul(&w).unwrap().tanh().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = Adam::new([("w".to_string(), w.clone())], 0.01).weight_decay(0.1);
        opt.step(&grads).unwrap();
        after.push(values(&w).await);
    }
    assert_close(&after[0], &after[1], 1e-6, 1e-5, "Adam step");
}

#[wasm_bindgen_test]
async fn tint_compiles_every_pipeline() {
    let Device::Gpu(ctx) = gpu().await else {
        unreachable!()
    };
    let results = wgml::gpu::variants::check_all(&ctx).await;
    let (mut ok, mut failed) = (0, Vec::new());
    for (name, checked) in &results {
        match checked {
            wgml::gpu::variants::Checked::Ok => ok += 1,
            wgml::gpu::variants::Checked::Skipped(why) => {
                console_log!("skipped (the adapter lacks a feature it enables): {name}: {why}")
            }
            wgml::gpu::variants::Checked::Failed(e) => failed.push(format!("{name}: {e}")),
        }
    }
    console_log!(
        "Tint compiled {ok} of {} pipelines; {} failed",
        results.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "Tint rejected:\n{}", failed.join("\n"));
    assert!(ok > 200, "only {ok} pipelines compiled");
}
