//! Launchers for `shaders/elementwise.wgsl`: unary, binary, where and fill over strided layouts.

use super::buffer::GpuBuffer;
use super::kernel::{Launch, ELEMENTWISE};
use crate::op::{BinaryOp, UnaryOp};
use crate::shape::{collapse_joint, Layout};
use crate::{Error, Result};

/// Highest rank (after collapsing mergeable dims) the strided kernels index.
pub(crate) const MAX_RANK: usize = 8;
pub(crate) const WG: usize = 256;

/// `Strided` in `shaders/common.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StridedU {
    dims: [u32; 8],
    strides: [u32; 8],
    rank: u32,
    offset: u32,
    _pad: [u32; 2],
}

impl StridedU {
    pub(crate) fn new(dims: &[usize], strides: &[usize], offset: usize) -> StridedU {
        let mut s = StridedU {
            rank: dims.len() as u32,
            offset: offset as u32,
            ..Default::default()
        };
        for (i, (&d, &st)) in dims.iter().zip(strides).enumerate() {
            s.dims[i] = d as u32;
            s.strides[i] = st as u32;
        }
        s
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: u32,
    s0: f32,
    s1: f32,
    layouts: [StridedU; 4],
}

/// A GPU buffer together with how a tensor's elements sit in it.
pub(crate) type View<'a> = (&'a GpuBuffer, &'a Layout);

/// Collapses the output and input layouts (all of the output's shape) together and packs them.
fn pack(op: &'static str, out: &Layout, inputs: &[&Layout], scalars: [f32; 2]) -> Result<Params> {
    let all: Vec<&[usize]> = std::iter::once(out.strides.as_slice())
        .chain(inputs.iter().map(|l| l.strides.as_slice()))
        .collect();
    let (dims, strides) = collapse_joint(out.shape.dims(), &all);
    if dims.len() > MAX_RANK {
        return Err(Error::invalid(
            op,
            format!(
                "strided layout of shape {:?} has {} non-mergeable dims; the GPU kernels take at most {MAX_RANK} (call .contiguous() first)",
                out.shape.dims(),
                dims.len()
            ),
        ));
    }
    let mut p = Params {
        n: out.shape.numel() as u32,
        s0: scalars[0],
        s1: scalars[1],
        ..Default::default()
    };
    p.layouts[0] = StridedU::new(&dims, &strides[0], out.offset);
    for (i, l) in inputs.iter().enumerate() {
        p.layouts[i + 1] = StridedU::new(&dims, &strides[i + 1], l.offset);
    }
    Ok(p)
}

/// The override constants of the F32 entry points for op `code`.
pub(crate) fn constants(code: u32) -> [(&'static str, f64); 2] {
    [("OP", code as f64), ("WG", WG as f64)]
}

/// The override constants of the F16-output entry points: op `code`, and whether each input
/// is read as F16 (an absent input counts as F16).
pub(crate) fn constants_h(code: u32, in0_f16: bool, in1_f16: bool) -> [(&'static str, f64); 4] {
    [
        ("OP", code as f64),
        ("WG", WG as f64),
        ("IN0_F16", in0_f16 as u32 as f64),
        ("IN1_F16", in1_f16 as u32 as f64),
    ]
}

fn run(
    op: &'static str,
    entry: &'static str,
    code: u32,
    out: View<'_>,
    inputs: &[View<'_>],
    scalars: [f32; 2],
) -> Result<()> {
    let n = out.1.shape.numel();
    if n == 0 {
        return Ok(());
    }
    let layouts: Vec<&Layout> = inputs.iter().map(|v| v.1).collect();
    let params = pack(op, out.1, &layouts, scalars)?;
    let ctx = out.0.ctx();
    let mut buffers = vec![out.0.binding()];
    buffers.extend(inputs.iter().map(|v| v.0.binding()));
    ctx.launch(Launch {
        shader: &ELEMENTWISE,
        entry,
        constants: &constants(code),
        params: bytemuck::bytes_of(&params),
        buffers: &buffers,
        grid: ctx.grid_1d(n.div_ceil(WG), op)?,
    })
}

/// `unary`/`binary` into a fresh contiguous packed-F16 `out` of `shape`, each input read as F16
/// or F32 per `f16_in` (inputs already broadcast to `shape`).
pub(crate) fn to_f16(
    op: &'static str,
    entry: &'static str,
    code: u32,
    scalars: [f32; 2],
    inputs: &[(View<'_>, bool)],
    out: &GpuBuffer,
    shape: &crate::Shape,
) -> Result<()> {
    let n = shape.numel();
    if n == 0 {
        return Ok(());
    }
    let lo = Layout::contiguous(shape.clone());
    let layouts: Vec<&Layout> = inputs.iter().map(|(v, _)| v.1).collect();
    let params = pack(op, &lo, &layouts, scalars)?;
    let ctx = out.ctx();
    let mut buffers = vec![out.binding()];
    buffers.extend(inputs.iter().map(|(v, _)| v.0.binding()));
    let flag = |i: usize| inputs.get(i).is_none_or(|(_, h)| *h);
    ctx.launch(Launch {
        shader: &ELEMENTWISE,
        entry,
        constants: &constants_h(code, flag(0), flag(1)),
        params: bytemuck::bytes_of(&params),
        buffers: &buffers,
        grid: ctx.grid_1d(n.div_ceil(2).div_ceil(WG), op)?,
    })
}

/// `out[i] = op(x[i])` for every element of `out`'s shape (`x` has the same shape).
pub(crate) fn unary(op: UnaryOp, x: View<'_>, out: View<'_>) -> Result<()> {
    let (code, scalars) = op.code();
    run("unary", "unary", code, out, &[x], scalars)
}

/// `out[i] = op(a[i], b[i])`; `a` and `b` are already broadcast to `out`'s shape.
pub(crate) fn binary(op: BinaryOp, a: View<'_>, b: View<'_>, out: View<'_>) -> Result<()> {
    run(op.name(), "binary", op.code(), out, &[a, b], [0.0; 2])
}

/// `out[i] = cond[i] != 0 ? a[i] : b[i]`, all broadcast to `out`'s shape.
pub(crate) fn where_select(cond: View<'_>, a: View<'_>, b: View<'_>, out: View<'_>) -> Result<()> {
    run("where", "where_select", 0, out, &[cond, a, b], [0.0; 2])
}

/// Sets the first `n` words of `buf` to `value`.
pub(crate) fn fill(buf: &GpuBuffer, n: usize, value: f32) -> Result<()> {
    let layout = Layout::contiguous(n.into());
    run("fill", "fill", 0, (buf, &layout), &[], [value, 0.0])
}
