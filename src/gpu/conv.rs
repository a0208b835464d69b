//! Launchers for `shaders/conv.wgsl` (im2col, col2im).

use super::buffer::GpuBuffer;
use super::kernel::{Launch, CONV};
use crate::shape::ConvGeom;
use crate::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params([u32; 16]);

pub(crate) const WG: usize = 256;

/// Runs `entry` (`im2col` over `threads` = G·R·L, or `col2im` over N·C·H·W).
pub(crate) fn run(
    entry: &'static str,
    g: &ConvGeom,
    threads: usize,
    out: &GpuBuffer,
    src: &GpuBuffer,
) -> Result<()> {
    let c = &g.cfg;
    let params = Params(
        [
            g.n,
            g.c,
            g.h,
            g.w,
            g.kh,
            g.kw,
            g.oh,
            g.ow,
            c.stride[0],
            c.stride[1],
            c.padding[0],
            c.padding[1],
            c.dilation[0],
            c.dilation[1],
            c.groups,
            0,
        ]
        .map(|v| v as u32),
    );
    let ctx = out.ctx();
    ctx.launch(Launch {
        shader: &CONV,
        entry,
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &[out.binding(), src.binding()],
        grid: ctx.grid_1d(threads.div_ceil(WG), entry)?,
    })
}
