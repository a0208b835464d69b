//! Launchers for `shaders/pool.wgsl`.

use super::buffer::GpuBuffer;
use super::kernel::{Launch, POOL};
use crate::gpu::buffer::Binding;
use crate::shape::Pool2d;
use crate::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    _pad: u32,
}

pub(crate) const WG: usize = 256;

/// Runs `entry` with buffers `[out, src, (arg)]` over `threads` invocations.
pub(crate) fn run(
    entry: &'static str,
    threads: usize,
    planes: usize,
    hw: [usize; 2],
    ohw: [usize; 2],
    p: &Pool2d,
    buffers: &[&GpuBuffer],
) -> Result<()> {
    let params = Params {
        planes: planes as u32,
        h: hw[0] as u32,
        w: hw[1] as u32,
        oh: ohw[0] as u32,
        ow: ohw[1] as u32,
        kh: p.kernel[0] as u32,
        kw: p.kernel[1] as u32,
        sh: p.stride[0] as u32,
        sw: p.stride[1] as u32,
        ph: p.padding[0] as u32,
        pw: p.padding[1] as u32,
        _pad: 0,
    };
    let ctx = buffers[0].ctx();
    let raw: Vec<Binding> = buffers.iter().map(|b| b.binding()).collect();
    ctx.launch(Launch {
        shader: &POOL,
        entry,
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &raw,
        grid: ctx.grid_1d(threads.div_ceil(WG), entry)?,
    })
}
