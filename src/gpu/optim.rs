//! Launchers for `shaders/optim.wgsl`: fused in-place updates of one parameter, or of all of
//! them packed in flat buffers (`gpu::flat`), with the global-norm clip folded in.

use super::buffer::{Binding, GpuBuffer};
use super::context::GpuContext;
use super::kernel::{Launch, OPTIM};
use crate::Result;
use std::sync::Arc;

/// `Params` in `shaders/optim.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct OptimParams {
    pub(crate) n: u32,
    pub(crate) nesterov: u32,
    pub(crate) decoupled: u32,
    /// Partial sums of squares the `_clipped` steps read.
    pub(crate) chunks: u32,
    pub(crate) lr: f32,
    pub(crate) weight_decay: f32,
    pub(crate) momentum: f32,
    pub(crate) dampening: f32,
    pub(crate) beta1: f32,
    pub(crate) beta2: f32,
    pub(crate) eps: f32,
    pub(crate) bias_correction1: f32,
    pub(crate) bias_correction2: f32,
    /// The `_clipped` steps' bound on the global gradient norm.
    pub(crate) max_norm: f32,
    pub(crate) _pad1: [f32; 2],
}

pub(crate) const WG: usize = 256;
/// Elements each invocation of `sum_squares` adds up (`SQ_ITEMS` in the shader).
const SQ_ITEMS: usize = 16;

/// Runs `entry` over `p.n` elements: `sgd_step` / `adam_step` bind the parameter, its
/// gradient and one or two states; their `_clipped` forms also the partial sums of squares and
/// the one-word norm output; `sum_squares` the partial sums' output and the gradient.
pub(crate) fn launch(
    ctx: &Arc<GpuContext>,
    entry: &'static str,
    p: &OptimParams,
    buffers: &[Binding],
) -> Result<()> {
    let per_workgroup = if entry == "sum_squares" {
        WG * SQ_ITEMS
    } else {
        WG
    };
    ctx.launch(Launch {
        shader: &OPTIM,
        entry,
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(p),
        buffers,
        grid: ctx.grid_1d((p.n as usize).div_ceil(per_workgroup), entry)?,
    })
}

/// The partial sums of squares `sum_squares` makes for `n` elements.
pub(crate) fn chunks(n: usize) -> usize {
    n.div_ceil(WG * SQ_ITEMS)
}

/// Runs `entry` (`sgd_step` with one state buffer, or `adam_step` with two) over `p.n`
/// elements of one parameter.
pub(crate) fn step(
    entry: &'static str,
    p: &OptimParams,
    param: &GpuBuffer,
    grad: &GpuBuffer,
    states: &[&GpuBuffer],
) -> Result<()> {
    let mut buffers = vec![param.binding(), grad.binding()];
    buffers.extend(states.iter().map(|s| s.binding()));
    launch(param.ctx(), entry, p, &buffers)
}
