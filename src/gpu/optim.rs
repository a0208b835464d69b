//! Launcher for `shaders/optim.wgsl`: one fused in-place update per parameter.

use super::buffer::GpuBuffer;
use super::kernel::{Launch, OPTIM};
use crate::Result;

/// `Params` in `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct OptimParams {
    pub(crate) n: u32,
    pub(crate) nesterov: u32,
    pub(crate) decoupled: u32,
    pub(crate) _pad: u32,
    pub(crate) lr: f32,
    pub(crate) weight_decay: f32,
    pub(crate) momentum: f32,
    pub(crate) dampening: f32,
    pub(crate) beta1: f32,
    pub(crate) beta2: f32,
    pub(crate) eps: f32,
    pub(crate) bias_correction1: f32,
    pub(crate) bias_correction2: f32,
    pub(crate) _pad1: [f32; 3],
}

pub(crate) const WG: usize = 256;

/// Runs `entry` (`sgd_step` with one state buffer, or `adam_step` with two) over `p.n`
/// elements, all buffers at offset 0.
pub(crate) fn step(
    entry: &'static str,
    p: &OptimParams,
    param: &GpuBuffer,
    grad: &GpuBuffer,
    states: &[&GpuBuffer],
) -> Result<()> {
    let ctx = param.ctx();
    let mut buffers = vec![param.raw(), grad.raw()];
    buffers.extend(states.iter().map(|s| s.raw()));
    ctx.launch(Launch {
        shader: &OPTIM,
        entry,
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(p),
        buffers: &buffers,
        grid: ctx.grid_1d((p.n as usize).div_ceil(WG), entry)?,
    })
}
