//! Launchers for `shaders/gru.wgsl`: one GRU layer over a sequence, forward and backward
//! through time: one whole-sequence dispatch each for H up to 256, else per-step pairs of
//! (matmul, fused cell) dispatches.

use super::buffer::{self, GpuBuffer};
use super::kernel::{Launch, GRU};
use super::lstm::{seq_workgroup, At, SEQ_MAX_H};
use crate::cpu::lstm::Dims;
use crate::cpu::matmul::Mkn;
use crate::gpu::buffer::Binding;
use crate::op::{BinaryOp, UnaryOp};
use crate::shape::{Layout, Shape};
use crate::Result;
use std::sync::Arc;

/// `Params` in `shaders/gru.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    hidden: u32,
    t: u32,
    steps: u32,
    dy_off: u32,
    bi_off: u32,
    bh_off: u32,
    w_off: u32,
}

/// The workgroup size of the per-step cell kernels.
pub(crate) const WG: usize = 64;

/// Whether one layer runs as one whole-sequence dispatch (forward and backward) on `ctx`:
/// H up to 256 and a workgroup per batch row within one grid dimension.
fn whole_sequence(d: Dims, limits: &wgpu::Limits) -> bool {
    d.h <= SEQ_MAX_H && d.b <= limits.max_compute_workgroups_per_dimension as usize
}

/// Launches `entry` of `gru.wgsl` with `p` completed by the shapes of `d`.
fn run(
    entry: &'static str,
    d: Dims,
    p: Params,
    buffers: &[&GpuBuffer],
    wg: usize,
    grid: [u32; 3],
) -> Result<()> {
    let params = Params {
        batch: d.b as u32,
        hidden: d.h as u32,
        steps: d.t as u32,
        ..p
    };
    let bindings: Vec<Binding> = buffers.iter().map(|b| b.binding()).collect();
    buffers[0].ctx().launch(Launch {
        shader: &GRU,
        entry,
        constants: &[("WG", wg as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &bindings,
        grid,
    })
}

/// One whole-sequence dispatch of `entry`, a workgroup per batch row.
fn sequence(entry: &'static str, d: Dims, p: Params, buffers: &[&GpuBuffer]) -> Result<()> {
    run(entry, d, p, buffers, seq_workgroup(d.h), [d.b as u32, 1, 1])
}

/// One cell dispatch of `entry` at step `t`, an invocation per (batch row, hidden unit).
fn cell(entry: &'static str, d: Dims, t: usize, p: Params, buffers: &[&GpuBuffer]) -> Result<()> {
    let grid = buffers[0].ctx().grid_1d((d.b * d.h).div_ceil(WG), entry)?;
    run(entry, d, Params { t: t as u32, ..p }, buffers, WG, grid)
}

/// A dense `[rows, cols]` matrix at `off`, or its transpose when `trans`.
fn matrix(rows: usize, cols: usize, off: usize, trans: bool) -> Layout {
    let mut l = Layout::contiguous(Shape::from([rows, cols]));
    l.offset = off;
    if trans {
        l.transpose(0, 1)
    } else {
        l
    }
}

/// The recurrence of one layer: `gx [T, B, G]` = X·W_ihᵀ (no bias, at offset `gx.1`) is
/// given. Returns `(hs [T + 1, B, H], saved [T, B, 4H])` as `cpu::gru::forward` defines them.
pub(crate) fn forward(
    d: Dims,
    gx: At<'_>,
    h0: At<'_>,
    w_hh: At<'_>,
    b_ih: At<'_>,
    b_hh: At<'_>,
) -> Result<[Arc<GpuBuffer>; 2]> {
    const OP: &str = "gru";
    assert_eq!(
        gx.1, 0,
        "wgml bug: the GRU input projection must start its buffer"
    );
    let ctx = gx.0.ctx();
    let (bh, g) = (d.b * d.h, 3 * d.h);
    let hs = buffer::alloc(ctx, (d.t + 1) * bh, OP, &[d.t + 1, d.b, d.h])?;
    let saved = buffer::alloc(ctx, d.t * d.b * 4 * d.h, OP, &[d.t, d.b, 4 * d.h])?;
    super::elementwise::unary(
        UnaryOp::Copy,
        (h0.0, &matrix(d.b, d.h, h0.1, false)),
        (&hs, &matrix(d.b, d.h, 0, false)),
    )?;
    let p = Params {
        bi_off: b_ih.1 as u32,
        bh_off: b_hh.1 as u32,
        w_off: w_hh.1 as u32,
        ..Default::default()
    };
    if whole_sequence(d, &ctx.limits) {
        let bufs = [&*saved, &*hs, gx.0, w_hh.0, b_ih.0, b_hh.0];
        sequence("gru_seq_forward", d, p, &bufs)?;
        return Ok([hs, saved]);
    }
    let hw = buffer::alloc(ctx, d.b * g, OP, &[d.b, g])?;
    let w_t = matrix(g, d.h, w_hh.1, true);
    let mkn = Mkn {
        m: d.b,
        k: d.h,
        n: g,
    };
    for t in 0..d.t {
        let ha = matrix(d.b, d.h, t * bh, false);
        let io = super::matmul::Io::F32;
        super::matmul::matmul((&hs, &ha), (w_hh.0, &w_t), &hw, mkn, None, io)?;
        let bufs = [&*saved, &*hs, gx.0, &*hw, b_ih.0, b_hh.0];
        cell("gru_forward", d, t, p, &bufs)?;
    }
    Ok([hs, saved])
}

/// Backward through time of the recurrence: `dy [T + 1, B, H]` (at `dy.1`) is the gradient of
/// the packed result `hs` (which must start its buffer). Returns `(dgi [T, B, G], dgh [T, B, G],
/// dh0 [B, H])`; the weight and input gradients are large matmuls over them that the caller
/// does.
pub(crate) fn backward(
    d: Dims,
    dy: At<'_>,
    saved: &GpuBuffer,
    hs: At<'_>,
    w_hh: At<'_>,
) -> Result<[Arc<GpuBuffer>; 3]> {
    const OP: &str = "gru backward";
    assert_eq!(hs.1, 0, "wgml bug: the GRU states must start their buffer");
    let ctx = saved.ctx();
    let (bh, g) = (d.b * d.h, 3 * d.h);
    let dgi = buffer::alloc(ctx, d.t * d.b * g, OP, &[d.t, d.b, g])?;
    let dgh = buffer::alloc(ctx, d.t * d.b * g, OP, &[d.t, d.b, g])?;
    let dh0 = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
    let p = Params {
        dy_off: dy.1 as u32,
        w_off: w_hh.1 as u32,
        ..Default::default()
    };
    if whole_sequence(d, &ctx.limits) {
        let bufs = [&*dgi, &*dgh, &*dh0, dy.0, saved, hs.0, w_hh.0];
        sequence("gru_seq_backward", d, p, &bufs)?;
        return Ok([dgi, dgh, dh0]);
    }
    // Neither is read at the last step (the kernel starts the carry from dy), but both are bound.
    let carry = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
    let mut mm = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
    let w = matrix(g, d.h, w_hh.1, false);
    let mkn = Mkn {
        m: d.b,
        k: g,
        n: d.h,
    };
    for t in (0..d.t).rev() {
        let bufs = [&*dgi, &*dgh, &*carry, dy.0, saved, hs.0, &*mm];
        cell("gru_backward", d, t, p, &bufs)?;
        let next = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
        let a = matrix(d.b, g, t * d.b * g, false);
        let io = super::matmul::Io::F32;
        super::matmul::matmul((&dgh, &a), (w_hh.0, &w), &next, mkn, None, io)?;
        mm = next;
    }
    // dh0 = dh_0·z_0 + dgh_0·W_hh
    let m = matrix(d.b, d.h, 0, false);
    super::elementwise::binary(BinaryOp::Add, (&carry, &m), (&mm, &m), (&dh0, &m))?;
    Ok([dgi, dgh, dh0])
}
