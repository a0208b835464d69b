//! Launchers for `shaders/softmax.wgsl`: fused (log-)softmax forward and backward by rows.

use super::buffer::GpuBuffer;
use super::kernel::{Launch, SOFTMAX};
use crate::Result;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    n: u32,
    x_off: u32,
    dy_off: u32,
}

/// A contiguous input: its buffer and the offset of its first element.
pub(crate) type Rows<'a> = (&'a GpuBuffer, usize);

/// 64 threads for short rows (attention scores), 256 for long ones (vocabularies).
pub(crate) fn workgroup_size(n: usize) -> usize {
    if n <= 1024 {
        64
    } else {
        256
    }
}

fn run(
    entry: &'static str,
    out: &GpuBuffer,
    inputs: &[Rows<'_>],
    rows: usize,
    n: usize,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    let params = Params {
        rows: rows as u32,
        n: n as u32,
        x_off: inputs[0].1 as u32,
        dy_off: inputs.get(1).map_or(0, |r| r.1) as u32,
    };
    let ctx = out.ctx();
    let mut buffers = vec![out.binding()];
    buffers.extend(inputs.iter().map(|r| r.0.binding()));
    ctx.launch(Launch {
        shader: &SOFTMAX,
        entry,
        constants: &[("WG", workgroup_size(n) as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &buffers,
        grid: ctx.grid_1d(rows, entry)?,
    })
}

/// `out = softmax(x)` (or `log_softmax`) over `rows` rows of `n`.
pub(crate) fn forward(
    log: bool,
    x: Rows<'_>,
    out: &GpuBuffer,
    rows: usize,
    n: usize,
) -> Result<()> {
    let entry = if log { "log_softmax" } else { "softmax" };
    run(entry, out, &[x], rows, n)
}

/// `out = y · (dy - Σ dy·y)` (softmax) or `dy - exp(y) · Σ dy` (log-softmax), per row.
pub(crate) fn backward(
    log: bool,
    y: Rows<'_>,
    dy: Rows<'_>,
    out: &GpuBuffer,
    rows: usize,
    n: usize,
) -> Result<()> {
    let entry = if log {
        "log_softmax_backward"
    } else {
        "softmax_backward"
    };
    run(entry, out, &[y, dy], rows, n)
}
