//! Launchers for `shaders/index.wgsl`: `gather` (index_select, embedding, torch.gather) and its deterministic backward `scatter_add`.

use super::buffer::{self, GpuBuffer};
use super::elementwise::{StridedU, View, MAX_RANK};
use super::kernel::{Launch, INDEX};
use crate::cpu::index::along_dim;
use crate::gpu::buffer::Binding;
use crate::shape::{collapse_joint, Layout, Shape};
use crate::{Error, Result};

pub(crate) const WG: usize = 256;

/// `Params` in `shaders/index.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    len: u32,
    rows: u32,
    inner: u32,
    x_step: u32,
    idx_step: u32,
    code: u32,
    _pad: u32,
    out: StridedU,
    x: StridedU,
    idx: StridedU,
}

/// Collapses layouts of one iteration shape together (see `collapse_joint`), at most
/// `MAX_RANK` dims, and packs them.
fn pack<const N: usize>(
    op: &'static str,
    shape: &Shape,
    layouts: [&Layout; N],
) -> Result<[StridedU; N]> {
    let strides: Vec<&[usize]> = layouts.iter().map(|l| l.strides.as_slice()).collect();
    let (dims, strides) = collapse_joint(shape.dims(), &strides);
    if dims.len() > MAX_RANK {
        return Err(Error::invalid(
            op,
            format!(
                "strided layout of shape {:?} has {} non-mergeable dims; the GPU kernels take at most {MAX_RANK} (call .contiguous() first)",
                shape.dims(),
                dims.len()
            ),
        ));
    }
    Ok(std::array::from_fn(|j| {
        StridedU::new(&dims, &strides[j], layouts[j].offset)
    }))
}

/// `out[m] = src[m with m[dim] = idx[m]]` for every `m` of the indices' layout (the output's
/// shape), written densely into `out`. Indices past `src`'s size along `dim` give 0 and are
/// recorded in the device error words under a code naming op kind `kind` (an index into
/// `context::INDEX_OPS`): the next read-back reports them.
pub(crate) fn gather(
    op: &'static str,
    kind: u32,
    src: View<'_>,
    idx: View<'_>,
    dim: usize,
    out: &GpuBuffer,
    src_f16: bool,
) -> Result<()> {
    let shape = &idx.1.shape;
    let n = shape.numel();
    if n == 0 {
        return Ok(());
    }
    let base = along_dim(src.1, shape, dim);
    let [x, i] = pack(op, shape, [&base, idx.1])?;
    let params = Params {
        n: n as u32,
        len: src.1.shape.dims()[dim] as u32,
        x_step: src.1.strides[dim] as u32,
        code: out.ctx().index_site(kind, src.1.shape.dims()),
        x,
        idx: i,
        ..Default::default()
    };
    let ctx = out.ctx();
    ctx.launch(Launch {
        shader: &INDEX,
        entry: if src_f16 { "gather_h" } else { "gather" },
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &[
            out.binding(),
            src.0.binding(),
            idx.0.binding(),
            Binding::whole(ctx.index_error_buffer()),
        ],
        grid: ctx.grid_1d(n.div_ceil(WG), op)?,
    })
}

/// `out [N, classes]` (dense) = 1.0 where `labels[r] == c`. A label `>= classes` gives a zero
/// row and is recorded like [`gather`]'s bad indices, under op kind `kind`.
pub(crate) fn one_hot(
    op: &'static str,
    kind: u32,
    labels: View<'_>,
    classes: usize,
    out: &GpuBuffer,
) -> Result<()> {
    let shape = &labels.1.shape;
    let n = shape.numel() * classes;
    if n == 0 {
        return Ok(());
    }
    let [i] = pack(op, shape, [labels.1])?;
    let ctx = out.ctx();
    let params = Params {
        n: n as u32,
        len: classes as u32,
        code: ctx.index_site(kind, shape.dims()),
        idx: i,
        ..Default::default()
    };
    ctx.launch(Launch {
        shader: &INDEX,
        entry: "one_hot",
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &[
            out.binding(),
            labels.0.binding(),
            Binding::whole(ctx.index_error_buffer()),
        ],
        grid: ctx.grid_1d(n.div_ceil(WG), op)?,
    })
}

/// The backward of [`gather`]: `out` (contiguous, of `src_shape`) receives at each element `m`
/// the sum, in increasing position `k` along `dim`, of `grad[m with m[dim] = k]` over the `k`
/// whose index equals `m[dim]`. One invocation per destination element, no atomics: the result
/// is deterministic and equal to the CPU's `scatter_add`. The work is
/// `|region| · grad.shape[dim]`, fine for vocabularies of a few thousand rows.
pub(crate) fn scatter_add(
    op: &'static str,
    grad: View<'_>,
    idx: View<'_>,
    dim: usize,
    src_shape: &Shape,
    out: &GpuBuffer,
) -> Result<()> {
    // The destination region the gradient reaches: grad's shape with `dim` widened to the
    // source's (torch.gather's index may be smaller than the source on other dims).
    let mut region = grad.1.shape.dims().to_vec();
    region[dim] = src_shape.dims()[dim];
    let region = Shape::new(region);
    if &region != src_shape {
        buffer::clear(out, 0, src_shape.numel());
    }
    let n = region.numel();
    if n == 0 {
        return Ok(());
    }
    let dst = Layout {
        shape: region.clone(),
        strides: src_shape.contiguous_strides(),
        offset: 0,
    };
    let g = along_dim(grad.1, &region, dim);
    let i = along_dim(idx.1, &region, dim);
    let [o, g, i] = pack(op, &region, [&dst, &g, &i])?;
    let params = Params {
        n: n as u32,
        len: grad.1.shape.dims()[dim] as u32,
        rows: region.dims()[dim] as u32,
        inner: region.dims()[dim + 1..].iter().product::<usize>() as u32,
        x_step: grad.1.strides[dim] as u32,
        idx_step: idx.1.strides[dim] as u32,
        out: o,
        x: g,
        idx: i,
        ..Default::default()
    };
    let ctx = out.ctx();
    ctx.launch(Launch {
        shader: &INDEX,
        entry: "scatter_add",
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &[out.binding(), grad.0.binding(), idx.0.binding()],
        grid: ctx.grid_1d(n.div_ceil(WG), op)?,
    })
}
