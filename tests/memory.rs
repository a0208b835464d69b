//! GPU memory stays flat in long loops of ops: buffers return to the pool and are reused, and the values at the end are right.

mod common;

use common::{assert_close, data, gpu};
use std::sync::Mutex;
use wgml::{Device, Result, Tensor};

/// The pool counters are per device and the tests of one binary share the device: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// (live bytes, pooled bytes, buffers ever created).
fn stats(dev: &Device) -> (u64, u64, u64) {
    let Device::Gpu(ctx) = dev else {
        unreachable!()
    };
    let s = ctx.pool_stats();
    assert_eq!(s.live_bytes, dev.live_bytes());
    assert_eq!(s.pooled_bytes, dev.pooled_bytes());
    (s.live_bytes, s.pooled_bytes, s.created)
}

#[test]
fn ten_thousand_elementwise_ops_do_not_grow_memory() -> Result<()> {
    let Some(g) = gpu() else { return Ok(()) };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = 1000;
    let y_host = data(n, 1);
    let y = Tensor::from_slice(&y_host, n, &g)?;
    let mut x = Tensor::from_vec(data(n, 2), n, &g)?;
    // x <- x/2 + y converges to 2y (exactly, in a few dozen steps): two ops per step.
    let step = |x: &Tensor| -> Result<Tensor> { x.mul_scalar(0.5)?.add(&y) };
    for _ in 0..250 {
        x = step(&x)?;
    }
    g.synchronize()?;
    let warm = stats(&g);
    for _ in 0..5000 {
        x = step(&x)?;
    }
    g.synchronize()?;
    let end = stats(&g);
    println!("after warm-up (live, pooled, created) = {warm:?}, after 10,000 ops = {end:?}");
    assert_eq!(end.0, warm.0, "live bytes grew");
    assert_eq!(end.1, warm.1, "pooled bytes grew");
    assert_eq!(end.2, warm.2, "new buffers were created in a steady loop");
    let want: Vec<f32> = y_host.iter().map(|v| 2.0 * v).collect();
    assert_close(&x.to_vec()?, &want, 0.0, 0.0, "x after 5,250 steps");
    // Dropping everything returns the bytes to the pool.
    let before_drop = g.live_bytes();
    drop(x);
    drop(y);
    assert!(g.live_bytes() < before_drop);
    Ok(())
}

#[test]
fn views_copies_and_indexing_do_not_grow_memory() -> Result<()> {
    let Some(g) = gpu() else { return Ok(()) };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let a = Tensor::from_vec(data(17 * 33, 3), [17, 33], &g)?;
    let idx = Tensor::from_indices(&[3, 0, 16, 3, 7], 5, &g)?;
    let w = Tensor::from_vec(data(33, 4), [33, 1], &g)?;
    // One step: a transposed copy, a cat, a broadcast binary op, a where, an index_select
    // (which reads its indices back) and a copy.
    let step = |a: &Tensor| -> Result<Tensor> {
        let t = a.t()?.contiguous()?; // [33, 17]
        let c = Tensor::cat(&[&t, &t.narrow(1, 0, 3)?], 1)?; // [33, 20]
        let m = c.mul(&w.abs()?)?.gt_scalar(0.0)?; // c > 0
        let s = Tensor::where_cond(&m, &c, &c.neg()?)?; // |c|
        let r = s.index_select(1, &idx)?; // [33, 5]
        r.t()?.contiguous()
    };
    // The previous result stays alive while the next is computed, as in a training loop.
    let mut last = step(&a)?;
    for _ in 0..20 {
        last = step(&a)?;
    }
    g.synchronize()?;
    let warm = stats(&g);
    for _ in 0..300 {
        last = step(&a)?;
    }
    g.synchronize()?;
    let end = stats(&g);
    println!("views loop: warm-up {warm:?}, end {end:?}");
    assert_eq!(end.0, warm.0, "live bytes grew");
    assert_eq!(end.1, warm.1, "pooled bytes grew");
    assert_eq!(end.2, warm.2, "new buffers were created in a steady loop");
    // The values: |a[i][j]| for the picked rows i, row-major [5, 33].
    let host = data(17 * 33, 3);
    let want: Vec<f32> = [3usize, 0, 16, 3, 7]
        .iter()
        .flat_map(|&i| {
            host[i * 33..(i + 1) * 33]
                .iter()
                .map(|v| v.abs())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_close(&last.to_vec()?, &want, 0.0, 0.0, "last step");
    Ok(())
}

#[test]
fn an_f16_graph_holds_half_the_bytes_of_an_f32_one() -> Result<()> {
    let Some(g) = gpu() else { return Ok(()) };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Elementwise ops on F16 record their F16 inputs: the graph keeps no f32 copies.
    let graph_bytes = |dtype: wgml::DType| -> Result<u64> {
        let x = Tensor::from_vec(data(256 * 1024, 3), [256, 1024], &g)?
            .to_dtype(dtype)?
            .requires_grad();
        g.synchronize()?;
        let before = g.live_bytes();
        let y = x.relu()?.mul(&x)?.tanh()?.add(&x)?.sigmoid()?;
        g.synchronize()?;
        let held = g.live_bytes() - before;
        drop(y);
        Ok(held)
    };
    let (f32_bytes, f16_bytes) = (
        graph_bytes(wgml::DType::F32)?,
        graph_bytes(wgml::DType::F16)?,
    );
    println!("a 5-op elementwise graph holds {f32_bytes} B in F32, {f16_bytes} B in F16");
    assert!(
        f16_bytes > 0 && f16_bytes * 10 <= f32_bytes * 6,
        "F16 {f16_bytes} B vs F32 {f32_bytes} B"
    );
    // A conv block (im2col, matmul, bias, relu, max-pool) keeps F16 columns and activations.
    let conv_bytes = |dtype: wgml::DType| -> Result<u64> {
        let leaf = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(dtype)?.requires_grad()) };
        let x = leaf(Tensor::from_vec(
            data(8 * 4 * 26 * 26, 4),
            [8, 4, 26, 26],
            &g,
        )?)?;
        let w = leaf(Tensor::from_vec(data(16 * 4 * 9, 5), [16, 4, 3, 3], &g)?)?;
        let b = leaf(Tensor::zeros([16], &g)?)?;
        g.synchronize()?;
        let before = g.live_bytes();
        let y = x
            .conv2d(&w, Some(&b), wgml::Conv2dConfig::default())?
            .relu()?
            .max_pool2d(wgml::Pool2d::new(2))?;
        g.synchronize()?;
        let held = g.live_bytes() - before;
        drop(y);
        Ok(held)
    };
    let (f32_bytes, f16_bytes) = (conv_bytes(wgml::DType::F32)?, conv_bytes(wgml::DType::F16)?);
    println!("a conv block's graph holds {f32_bytes} B in F32, {f16_bytes} B in F16");
    assert!(
        f16_bytes > 0 && f16_bytes * 10 <= f32_bytes * 6,
        "F16 {f16_bytes} B vs F32 {f32_bytes} B"
    );
    Ok(())
}
