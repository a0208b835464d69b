//! Launchers for `shaders/lstm.wgsl`: one LSTM layer over a sequence, forward and backward
//! through time: one whole-sequence dispatch each for H up to 256, else per-step pairs of
//! (matmul, fused cell) dispatches.

use super::buffer::{self, GpuBuffer};
use super::kernel::{Launch, LSTM};
use crate::cpu::lstm::Dims;
use crate::cpu::matmul::Mkn;
use crate::gpu::buffer::Binding;
use crate::op::UnaryOp;
use crate::shape::{Layout, Shape};
use crate::tensor::Storage;
use crate::{DType, Result, Tensor};
use std::sync::Arc;

/// `Params` in `shaders/lstm.wgsl`.
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
    h0_off: u32,
    lengths: u32,
    _pad: [u32; 2],
}

pub(crate) const WG: usize = 64;
/// The largest hidden size the whole-sequence kernels take (`SEQ_MAX_H` in the shader).
pub(crate) const SEQ_MAX_H: usize = 256;

/// The workgroup size of the whole-sequence kernels for hidden size `h` (one invocation per
/// hidden unit, a power of two at least 64).
pub(crate) fn seq_workgroup(h: usize) -> usize {
    h.next_power_of_two().clamp(64, SEQ_MAX_H)
}

/// Whether one layer runs as one whole-sequence dispatch (forward and backward) on `ctx`:
/// H up to 256 and a workgroup per batch row within one grid dimension.
fn whole_sequence(d: Dims, limits: &wgpu::Limits) -> bool {
    d.h <= SEQ_MAX_H && d.b <= limits.max_compute_workgroups_per_dimension as usize
}

/// One whole-sequence dispatch of `entry` over `buffers`, a workgroup per batch row.
fn sequence(entry: &'static str, d: Dims, p: Params, buffers: &[&GpuBuffer]) -> Result<()> {
    run(entry, d, p, buffers, seq_workgroup(d.h), [d.b as u32, 1, 1])
}

/// One cell dispatch of `entry` at step `t`, an invocation per (batch row, hidden unit).
fn cell(entry: &'static str, d: Dims, t: usize, p: Params, buffers: &[&GpuBuffer]) -> Result<()> {
    let grid = buffers[0].ctx().grid_1d((d.b * d.h).div_ceil(WG), entry)?;
    let p = Params { t: t as u32, ..p };
    run(entry, d, p, buffers, WG, grid)
}

/// Launches `entry` of `lstm.wgsl` with `p` completed by the shapes of `d`.
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
        shader: &LSTM,
        entry,
        constants: &[("WG", wg as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &bindings,
        grid,
    })
}

/// A buffer and the element offset where a dense tensor starts in it.
pub(crate) type At<'a> = (&'a GpuBuffer, usize);

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

/// The recurrence of one layer: `zx [T, B, G]` = X·W_ihᵀ (no bias) is given; per step one
/// matmul `h_{t-1}·W_hhᵀ` and one fused cell dispatch. Returns `(out [T + 1, B, H], gates
/// [T, B, G], cs [T + 1, B, H])` as `cpu::lstm::forward` defines them.
pub(crate) fn forward(
    d: Dims,
    zx: &GpuBuffer,
    h0: At<'_>,
    c0: At<'_>,
    w_hh: At<'_>,
    b_ih: At<'_>,
    b_hh: At<'_>,
) -> Result<[Arc<GpuBuffer>; 3]> {
    const OP: &str = "lstm";
    let ctx = zx.ctx();
    let (bh, g) = (d.b * d.h, 4 * d.h);
    let out = buffer::alloc(ctx, (d.t + 1) * bh, OP, &[d.t + 1, d.b, d.h])?;
    let gates = buffer::alloc(ctx, d.t * d.b * g, OP, &[d.t, d.b, g])?;
    let cs = buffer::alloc(ctx, (d.t + 1) * bh, OP, &[d.t + 1, d.b, d.h])?;
    let hw = buffer::alloc(ctx, d.b * g, OP, &[d.b, g])?;
    super::elementwise::unary(
        UnaryOp::Copy,
        (c0.0, &matrix(d.b, d.h, c0.1, false)),
        (&cs, &matrix(d.b, d.h, 0, false)),
    )?;
    let p = Params {
        bi_off: b_ih.1 as u32,
        bh_off: b_hh.1 as u32,
        w_off: w_hh.1 as u32,
        h0_off: h0.1 as u32,
        ..Default::default()
    };
    if whole_sequence(d, &ctx.limits) {
        sequence(
            "lstm_seq_forward",
            d,
            p,
            &[&gates, &cs, &out, zx, w_hh.0, b_ih.0, b_hh.0, h0.0],
        )?;
        return Ok([out, gates, cs]);
    }
    let w_t = matrix(g, d.h, w_hh.1, true);
    let mkn = Mkn {
        m: d.b,
        k: d.h,
        n: g,
    };
    for t in 0..d.t {
        let (hb, ha) = if t == 0 {
            (h0.0, matrix(d.b, d.h, h0.1, false))
        } else {
            (&*out, matrix(d.b, d.h, (t - 1) * bh, false))
        };
        super::matmul::matmul(
            (hb, &ha),
            (w_hh.0, &w_t),
            &hw,
            mkn,
            None,
            super::matmul::Io::F32,
        )?;
        cell(
            "lstm_forward",
            d,
            t,
            p,
            &[&gates, &cs, &out, zx, &hw, b_ih.0, b_hh.0],
        )?;
    }
    Ok([out, gates, cs])
}

/// Backward through time of the recurrence: `dy [T + 1, B, H]` (at `dy.1`) is the gradient of
/// the packed result. Per step one fused cell-backward dispatch and one matmul
/// `dz_t·W_hh`. Returns `(dz [T, B, G], dh0 [B, H], dc0 [B, H])`; the weight and input
/// gradients are large matmuls over `dz` that the caller does.
///
/// `lens` (U32 `[B]`, each row's length) is given for a variable-length layer, whose packed
/// result's last row is each row's c at its own last step (see [`last_cells`]).
pub(crate) fn backward(
    d: Dims,
    dy: At<'_>,
    gates: &GpuBuffer,
    cs: &GpuBuffer,
    w_hh: At<'_>,
    lens: Option<&GpuBuffer>,
) -> Result<[Arc<GpuBuffer>; 3]> {
    const OP: &str = "lstm backward";
    let ctx = gates.ctx();
    let (bh, g) = (d.b * d.h, 4 * d.h);
    let lengths = lens.is_some() as u32;
    // Bound either way; not read without lengths.
    let unread;
    let lens = match lens {
        Some(l) => l,
        None => {
            unread = buffer::alloc(ctx, 1, OP, &[1])?;
            &*unread
        }
    };
    let dz = buffer::alloc(ctx, d.t * d.b * g, OP, &[d.t, d.b, g])?;
    let dc = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
    if whole_sequence(d, &ctx.limits) {
        let dh0 = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
        let p = Params {
            dy_off: dy.1 as u32,
            w_off: w_hh.1 as u32,
            lengths,
            ..Default::default()
        };
        sequence(
            "lstm_seq_backward",
            d,
            p,
            &[&dz, &dc, &dh0, dy.0, gates, cs, w_hh.0, lens],
        )?;
        return Ok([dz, dh0, dc]);
    }
    // Not read at the last step (the kernel starts the carries from dy), but bound.
    let mut dh = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
    let w = matrix(g, d.h, w_hh.1, false);
    let mkn = Mkn {
        m: d.b,
        k: g,
        n: d.h,
    };
    let p = Params {
        dy_off: dy.1 as u32,
        lengths,
        ..Default::default()
    };
    for t in (0..d.t).rev() {
        cell(
            "lstm_backward",
            d,
            t,
            p,
            &[&dz, &dc, &dh, dy.0, gates, cs, lens],
        )?;
        let next = buffer::alloc(ctx, bh, OP, &[d.b, d.h])?;
        let a = matrix(d.b, g, t * d.b * g, false);
        super::matmul::matmul(
            (&dz, &a),
            (w_hh.0, &w),
            &next,
            mkn,
            None,
            super::matmul::Io::F32,
        )?;
        dh = next;
    }
    Ok([dz, dh, dc])
}

/// The last row of a variable-length layer's packed result `out [T + 1, B, H]`: row b of it
/// becomes `cs[len_b, b]`, each row's c at its own last step. `rows` (U32 `[B]`) holds
/// `len_b·B + b`, the rows of `cs` viewed as `[(T + 1)·B, H]`.
pub(crate) fn last_cells(
    d: Dims,
    out: &GpuBuffer,
    cs: &Arc<GpuBuffer>,
    rows: &Tensor,
) -> Result<()> {
    let all = Tensor::from_storage(
        Storage::Gpu(cs.clone()),
        Shape::from([(d.t + 1) * d.b, d.h]),
        DType::F32,
        rows.device(),
        None,
    );
    let picked = crate::backprop::no_grad(|| all.index_select(0, rows))?;
    let Storage::Gpu(src) = picked.storage() else {
        unreachable!("wgml bug: CPU tensor on the GPU path")
    };
    super::elementwise::unary(
        UnaryOp::Copy,
        (src, &matrix(d.b, d.h, picked.layout().offset, false)),
        (out, &matrix(d.b, d.h, d.t * d.b * d.h, false)),
    )
}
