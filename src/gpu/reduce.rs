//! Launcher for `shaders/reduce.wgsl`: a thread per row, a workgroup per row, or two passes.

use super::buffer::{self, GpuBuffer};
use super::elementwise::{self, StridedU, View, MAX_RANK};
use super::kernel::{Launch, REDUCE};
use crate::op::ReduceOp;
use crate::shape::{collapse_joint, Layout};
use crate::{Error, Result};

/// Rows up to this length get a thread each: a workgroup would leave most threads idle.
const THREAD_MAX_LEN: usize = 32;
/// Workgroup size of the thread-per-row kernel.
pub(crate) const THREAD_WG: usize = 64;
/// Elements each thread folds per chunk before the tree; a longer row is split into chunks of
/// `WG · ITEMS` (4,096 for WG 256), so no thread sums more than 16 values serially and a long
/// row spreads over many workgroups.
const ITEMS: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    len: u32,
    chunks: u32,
    chunk_len: u32,
    scale: f32,
    flags: u32,
    idx_in_base: u32,
    idx_out_base: u32,
    outer: StridedU,
    inner: StridedU,
}

const PAIRS_IN: u32 = 1;
const PAIRS_OUT: u32 = 2;

pub(crate) fn op_code(op: ReduceOp) -> u32 {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => 0,
        ReduceOp::Max => 1,
        ReduceOp::Min => 2,
        ReduceOp::ArgMax => 3,
    }
}

/// Rows to reduce: `rows` rows of `len` elements in `buf`; `idx_in` is the base of the
/// indices when the input holds argmax pairs.
struct Rows<'a> {
    buf: &'a GpuBuffer,
    outer: StridedU,
    inner: StridedU,
    rows: usize,
    len: usize,
    idx_in: Option<usize>,
}

/// `(dims, strides)` of `dims` picked out of a layout, collapsed; `None` past `MAX_RANK`.
fn collapsed(l: &Layout, pick: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let dims: Vec<usize> = pick.iter().map(|&d| l.shape.dims()[d]).collect();
    let strides: Vec<usize> = pick.iter().map(|&d| l.strides[d]).collect();
    let (dims, mut strides) = collapse_joint(&dims, &[&strides]);
    (dims.len() <= MAX_RANK).then(|| (dims, strides.remove(0)))
}

/// Reduces dims `reduced` (sorted, distinct) of `x` into the contiguous `out`, whose elements
/// are the kept dims in order. An empty reduction gives 0 (sum) or NaN (mean); the caller has
/// rejected empty max / min / argmax. `name` is the op for error messages.
pub(crate) fn reduce(
    op: ReduceOp,
    name: &'static str,
    x: View<'_>,
    reduced: &[usize],
    out: &GpuBuffer,
) -> Result<()> {
    let (buf, l) = x;
    let kept: Vec<usize> = (0..l.shape.rank())
        .filter(|d| !reduced.contains(d))
        .collect();
    let rows: usize = kept.iter().map(|&d| l.shape.dims()[d]).product();
    let len: usize = reduced.iter().map(|&d| l.shape.dims()[d]).product();
    if rows == 0 {
        return Ok(());
    }
    if len == 0 {
        let v = if op == ReduceOp::Mean { f32::NAN } else { 0.0 };
        return elementwise::fill(out, rows, v);
    }
    let scale = if op == ReduceOp::Mean {
        (1.0 / len as f64) as f32
    } else {
        1.0
    };
    // A copy would not help: the permuted view has at least as many non-mergeable dims.
    let (Some(o), Some(i)) = (collapsed(l, &kept), collapsed(l, reduced)) else {
        return Err(Error::invalid(
            name,
            format!(
                "reducing dims {reduced:?} of shape {:?} (strides {:?}) leaves more than \
                 {MAX_RANK} non-mergeable dims for the GPU kernel; reshape first",
                l.shape.dims(),
                l.strides
            ),
        ));
    };
    let rows_in = Rows {
        buf,
        outer: StridedU::new(&o.0, &o.1, l.offset),
        inner: StridedU::new(&i.0, &i.1, 0),
        rows,
        len,
        idx_in: None,
    };
    reduce_rows(op, rows_in, out, scale)
}

/// Invocations per workgroup of `reduce_wg` for rows of `len`.
pub(crate) fn workgroup_size(len: usize) -> usize {
    if len <= 1024 {
        64
    } else {
        256
    }
}

/// One pass (or two, for long rows) writing the final result to `out[0..rows]`.
fn reduce_rows(op: ReduceOp, x: Rows<'_>, out: &GpuBuffer, scale: f32) -> Result<()> {
    let ctx = out.ctx();
    let mut p = Params {
        rows: x.rows as u32,
        len: x.len as u32,
        chunks: 1,
        chunk_len: x.len as u32,
        scale,
        flags: if x.idx_in.is_some() { PAIRS_IN } else { 0 },
        idx_in_base: x.idx_in.unwrap_or(0) as u32,
        idx_out_base: 0,
        outer: x.outer,
        inner: x.inner,
    };
    let code = op_code(op) as f64;
    if x.len <= THREAD_MAX_LEN {
        return ctx.launch(Launch {
            shader: &REDUCE,
            entry: "reduce_thread",
            constants: &[("OP", code), ("WG", THREAD_WG as f64)],
            params: bytemuck::bytes_of(&p),
            buffers: &[out.binding(), x.buf.binding()],
            grid: ctx.grid_1d(x.rows.div_ceil(THREAD_WG), "reduce")?,
        });
    }
    let wg = workgroup_size(x.len);
    let chunk_len = wg * ITEMS;
    let chunks = x.len.div_ceil(chunk_len);
    let constants = [("OP", code), ("WG", wg as f64)];
    if chunks == 1 {
        return ctx.launch(Launch {
            shader: &REDUCE,
            entry: "reduce_wg",
            constants: &constants,
            params: bytemuck::bytes_of(&p),
            buffers: &[out.binding(), x.buf.binding()],
            grid: ctx.grid_1d(x.rows, "reduce")?,
        });
    }
    // Pass 1: partials [rows, chunks] (argmax: values, then their indices).
    let n_part = x.rows * chunks;
    let pairs = op == ReduceOp::ArgMax;
    let partial = buffer::alloc(
        ctx,
        if pairs { 2 * n_part } else { n_part },
        "reduce",
        &[x.rows, chunks],
    )?;
    p.chunks = chunks as u32;
    p.chunk_len = chunk_len as u32;
    p.scale = 1.0;
    if pairs {
        p.flags |= PAIRS_OUT;
        p.idx_out_base = n_part as u32;
    }
    ctx.launch(Launch {
        shader: &REDUCE,
        entry: "reduce_wg",
        constants: &constants,
        params: bytemuck::bytes_of(&p),
        buffers: &[partial.binding(), x.buf.binding()],
        grid: ctx.grid_1d(n_part, "reduce")?,
    })?;
    // Pass 2: the partials are rows of their own (a sum of sums; mean scales only here).
    let next = Rows {
        buf: &partial,
        outer: StridedU::new(&[x.rows], &[chunks], 0),
        inner: StridedU::new(&[chunks], &[1], 0),
        rows: x.rows,
        len: chunks,
        idx_in: pairs.then_some(n_part),
    };
    let op2 = if op == ReduceOp::Mean {
        ReduceOp::Sum
    } else {
        op
    };
    reduce_rows(op2, next, out, scale)
}
