//! Launchers for `shaders/norm.wgsl`: fused layer-norm forward, dx backward, and the partial
//! sums of the weight and bias gradients.

use super::buffer::{self, GpuBuffer};
use super::kernel::{Launch, NORM};
use crate::Result;

/// `Params` in `shaders/norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    n: u32,
    x_off: u32,
    dy_off: u32,
    has_w: u32,
    has_b: u32,
    eps: f32,
    col_blocks: u32,
}

pub(crate) use super::softmax::Rows;

/// 64 threads for the short rows of Transformers, 256 for long ones.
pub(crate) fn workgroup_size(n: usize) -> usize {
    if n <= 512 {
        64
    } else {
        256
    }
}

/// Threads (columns) and rows per workgroup of `layer_norm_backward_params`.
pub(crate) const PARAM_WG: usize = 64;
/// Rows per block of the weight/bias partial sums.
pub(crate) const PARAM_RB: usize = 64;

/// `y = layer_norm(x)` over `rows` rows of `n`, writing `stats` `[rows, 2]` (mean, rstd).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    x: Rows<'_>,
    w: Option<&GpuBuffer>,
    b: Option<&GpuBuffer>,
    y: &GpuBuffer,
    stats: &GpuBuffer,
    rows: usize,
    n: usize,
    eps: f32,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    let ctx = y.ctx();
    let p = Params {
        rows: rows as u32,
        n: n as u32,
        x_off: x.1 as u32,
        has_w: w.is_some() as u32,
        has_b: b.is_some() as u32,
        eps,
        ..Default::default()
    };
    // An absent weight or bias binds x (read-only twice is allowed); the flag skips the read.
    let buffers = [
        y.binding(),
        x.0.binding(),
        w.unwrap_or(x.0).binding(),
        b.unwrap_or(x.0).binding(),
        stats.binding(),
    ];
    ctx.launch(Launch {
        shader: &NORM,
        entry: "layer_norm_forward",
        constants: &[("WG", workgroup_size(n) as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &buffers,
        grid: ctx.grid_1d(rows, "layer_norm")?,
    })
}

/// `dx` of layer norm over `rows` rows of `n`, given the saved `stats`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_dx(
    x: Rows<'_>,
    stats: &GpuBuffer,
    dy: Rows<'_>,
    w: Option<&GpuBuffer>,
    dx: &GpuBuffer,
    rows: usize,
    n: usize,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    let ctx = dx.ctx();
    let p = Params {
        rows: rows as u32,
        n: n as u32,
        x_off: x.1 as u32,
        dy_off: dy.1 as u32,
        has_w: w.is_some() as u32,
        ..Default::default()
    };
    // The weight binding is read-write in the shader, so an absent weight binds a 1-word dummy.
    let dummy;
    let w = match w {
        Some(w) => w,
        None => {
            dummy = buffer::alloc(ctx, 1, "layer_norm_backward", &[1])?;
            &dummy
        }
    };
    let buffers = [
        dx.binding(),
        x.0.binding(),
        stats.binding(),
        dy.0.binding(),
        w.binding(),
    ];
    ctx.launch(Launch {
        shader: &NORM,
        entry: "layer_norm_backward_dx",
        constants: &[("WG", workgroup_size(n) as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &buffers,
        grid: ctx.grid_1d(rows, "layer_norm_backward")?,
    })
}

/// Per-block sums of the weight and bias gradients into `partial` `[blocks, 2n]`, where
/// `blocks = ceil(rows / PARAM_RB)`.
pub(crate) fn backward_params(
    x: Rows<'_>,
    stats: &GpuBuffer,
    dy: Rows<'_>,
    partial: &GpuBuffer,
    rows: usize,
    n: usize,
) -> Result<()> {
    if rows == 0 || n == 0 {
        return Ok(());
    }
    let ctx = partial.ctx();
    let col_blocks = n.div_ceil(PARAM_WG);
    let p = Params {
        rows: rows as u32,
        n: n as u32,
        x_off: x.1 as u32,
        dy_off: dy.1 as u32,
        col_blocks: col_blocks as u32,
        ..Default::default()
    };
    let buffers = [
        partial.binding(),
        x.0.binding(),
        stats.binding(),
        dy.0.binding(),
    ];
    ctx.launch(Launch {
        shader: &NORM,
        entry: "layer_norm_backward_params",
        constants: &[("WG", PARAM_WG as f64), ("RB", PARAM_RB as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &buffers,
        grid: ctx.grid_1d(col_blocks * rows.div_ceil(PARAM_RB), "layer_norm_backward")?,
    })
}
