//! Launchers for `shaders/attention.wgsl`: the flash-style forward, and the Di, dQ and dK/dV kernels.

use super::buffer::GpuBuffer;
use super::kernel::{Launch, ATTENTION};
use crate::cpu::attention::{Dims, View4};
use crate::{Error, Result};

const OP: &str = "scaled_dot_product_attention";

/// Threads (rows) per workgroup of the forward, dQ and dK/dV kernels.
pub(crate) const BQ: usize = 64;
/// Largest streamed tile (the shader's `BKMAX`).
const BK_MAX: usize = 64;
/// Largest head dim (the shader's `DMAX`: per-thread rows live in private arrays).
pub(crate) const D_MAX: usize = 128;

/// A strided input: its buffer and its rank-4 view.
pub(crate) type Operand<'a> = (&'a GpuBuffer, View4);

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    qs: [u32; 4],
    ks: [u32; 4],
    vs: [u32; 4],
    ms: [u32; 4],
    gs: [u32; 4],
    off: [u32; 4],
    dims: [u32; 4],
    dims2: [u32; 4],
    scale: f32,
    dv_off: u32,
    b: u32,
    _pad: u32,
}

fn strides(v: &View4) -> [u32; 4] {
    v.s.map(|x| x as u32)
}

impl Params {
    fn new(s: &Dims, q: &View4, k: &View4, v: &View4, mask: Option<&View4>) -> Params {
        let flags = s.causal as u32 | (mask.is_some() as u32) << 1;
        Params {
            qs: strides(q),
            ks: strides(k),
            vs: strides(v),
            ms: mask.map_or([0; 4], strides),
            gs: [0; 4],
            off: [
                q.off as u32,
                k.off as u32,
                v.off as u32,
                mask.map_or(0, |m| m.off as u32),
            ],
            dims: [s.h, s.hkv, s.tq, s.tk].map(|x| x as u32),
            dims2: [s.d as u32, s.dv as u32, flags, 0],
            scale: s.scale,
            dv_off: 0,
            b: s.b as u32,
            _pad: 0,
        }
    }
}

/// The largest power-of-two tile of rows (at most `BK_MAX`) whose `floats_per_row` fit the
/// device's workgroup memory.
fn tile_rows(limit_bytes: u32, floats_per_row: usize) -> usize {
    let mut bk = BK_MAX;
    while bk > 1 && bk * floats_per_row * 4 > limit_bytes as usize {
        bk /= 2;
    }
    bk
}

/// Refuses what the kernels cannot do, with the sizes.
pub(crate) fn check(s: &Dims, limits: &wgpu::Limits) -> Result<()> {
    if s.d > D_MAX || s.dv > D_MAX {
        return Err(Error::invalid(
            OP,
            format!(
                "the GPU kernels take head dims up to {D_MAX}, got D = {} and Dv = {}",
                s.d, s.dv
            ),
        ));
    }
    let max = limits.max_compute_workgroups_per_dimension as usize;
    let (bh, rows) = (s.b * s.h, s.tq.max(s.tk).div_ceil(BQ));
    if bh > max || rows > max {
        return Err(Error::invalid(
            OP,
            format!(
                "B·H = {bh} or {rows} row blocks exceed the device's {max} workgroups per dimension"
            ),
        ));
    }
    Ok(())
}

/// The override constants of one entry point: tile A holds `rows × a` floats, tile B
/// `rows × b`, tile C `2 × rows`.
pub(crate) fn constants(
    limits: &wgpu::Limits,
    a: usize,
    b: usize,
    extra: usize,
) -> [(&'static str, f64); 5] {
    let bk = tile_rows(limits.max_compute_workgroup_storage_size, a + b + extra);
    [
        ("BQ", BQ as f64),
        ("BK", bk as f64),
        ("TA", (bk * a).max(1) as f64),
        ("TB", (bk * b).max(1) as f64),
        ("TC", (2 * bk) as f64),
    ]
}

/// `o` (B, H, Tq, Dv) and `lse` (B, H, Tq), contiguous from offset 0.
pub(crate) fn forward(
    s: &Dims,
    q: Operand<'_>,
    k: Operand<'_>,
    v: Operand<'_>,
    mask: Option<Operand<'_>>,
    o: &GpuBuffer,
    lse: &GpuBuffer,
) -> Result<()> {
    let ctx = o.ctx();
    check(s, &ctx.limits)?;
    if s.b * s.h * s.tq == 0 {
        return Ok(());
    }
    let params = Params::new(s, &q.1, &k.1, &v.1, mask.as_ref().map(|m| &m.1));
    let m = mask.map_or(q.0, |m| m.0);
    ctx.launch(Launch {
        shader: &ATTENTION,
        entry: "attention_forward",
        constants: &constants(&ctx.limits, s.d, s.dv, 0),
        params: bytemuck::bytes_of(&params),
        buffers: &[
            q.0.binding(),
            k.0.binding(),
            v.0.binding(),
            m.binding(),
            lse.binding(),
            o.binding(),
        ],
        grid: [s.tq.div_ceil(BQ) as u32, (s.b * s.h) as u32, 1],
    })
}

/// The gradients: `dq` (B, H, Tq, D) and `dkv` holding dK (B, Hkv, Tk, D) followed by dV
/// (B, Hkv, Tk, Dv), contiguous from offset 0. `o` and `lse` are the forward's outputs, `di`
/// scratch for B·H·Tq floats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    s: &Dims,
    q: Operand<'_>,
    k: Operand<'_>,
    v: Operand<'_>,
    mask: Option<Operand<'_>>,
    (o, lse): (&GpuBuffer, &GpuBuffer),
    dout: Operand<'_>,
    di: &GpuBuffer,
    dq: &GpuBuffer,
    dkv: &GpuBuffer,
) -> Result<()> {
    let ctx = o.ctx();
    check(s, &ctx.limits)?;
    let mut params = Params::new(s, &q.1, &k.1, &v.1, mask.as_ref().map(|m| &m.1));
    params.gs = strides(&dout.1);
    params.dims2[3] = dout.1.off as u32;
    params.dv_off = (s.b * s.hkv * s.tk * s.d) as u32;
    let params = bytemuck::bytes_of(&params);
    let m = mask.map_or(q.0, |m| m.0);
    let rows = s.b * s.h * s.tq;
    if rows > 0 {
        ctx.launch(Launch {
            shader: &ATTENTION,
            entry: "attention_di",
            constants: &[],
            params,
            buffers: &[dout.0.binding(), o.binding(), di.binding()],
            grid: ctx.grid_1d(rows.div_ceil(64), OP)?,
        })?;
        ctx.launch(Launch {
            shader: &ATTENTION,
            entry: "attention_dq",
            constants: &constants(&ctx.limits, s.d, s.dv, 0),
            params,
            buffers: &[
                q.0.binding(),
                k.0.binding(),
                v.0.binding(),
                m.binding(),
                lse.binding(),
                dout.0.binding(),
                di.binding(),
                dq.binding(),
            ],
            grid: [s.tq.div_ceil(BQ) as u32, (s.b * s.h) as u32, 1],
        })?;
    }
    if s.b * s.hkv * s.tk > 0 {
        ctx.launch(Launch {
            shader: &ATTENTION,
            entry: "attention_dkdv",
            constants: &constants(&ctx.limits, s.d, s.dv, 2),
            params,
            buffers: &[
                q.0.binding(),
                k.0.binding(),
                v.0.binding(),
                m.binding(),
                lse.binding(),
                dout.0.binding(),
                di.binding(),
                dkv.binding(),
            ],
            grid: [s.tk.div_ceil(BQ) as u32, (s.b * s.hkv) as u32, 1],
        })?;
    }
    Ok(())
}
