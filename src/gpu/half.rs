//! F16 on the GPU: the casts of `shaders/half.wgsl`, and the choice between packed-word and
//! native (`enable f16;`) kernels.

use super::buffer::GpuBuffer;
use super::context::GpuContext;
use super::elementwise::{StridedU, MAX_RANK};
use super::kernel::{Launch, HALF};
use crate::shape::Layout;
use crate::{Error, Result};
use std::cell::Cell;

/// How F16 kernels read and write half-precision storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F16Path {
    /// Two values per `u32` word, unpacked and computed in f32: works on every adapter.
    Packed,
    /// `enable f16;` kernels reading and writing `array<f16>` (adapters with `SHADER_F16`).
    Native,
}

thread_local! {
    static FORCED: Cell<Option<F16Path>> = const { Cell::new(None) };
}

/// Runs `f` with the F16 kernels of this thread forced onto `path` (`Native` still needs an
/// adapter with `SHADER_F16`, else the packed kernels run). Tests use it to cover both paths on
/// one adapter; `WGML_F16_PATH=packed` does the same for a whole process.
pub fn with_f16_path<R>(path: F16Path, f: impl FnOnce() -> R) -> R {
    let before = FORCED.with(|c| c.replace(Some(path)));
    struct Restore(Option<F16Path>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

impl GpuContext {
    /// The F16 kernels this thread uses on this device: native where the device has
    /// `SHADER_F16`, unless forced by [`with_f16_path`] or `WGML_F16_PATH=packed`.
    pub fn f16_path(&self) -> F16Path {
        let native = self.features.contains(wgpu::Features::SHADER_F16);
        let forced = FORCED.with(|c| c.get()).or_else(|| {
            static ENV: std::sync::OnceLock<Option<F16Path>> = std::sync::OnceLock::new();
            *ENV.get_or_init(|| match std::env::var("WGML_F16_PATH").as_deref() {
                Ok("packed") => Some(F16Path::Packed),
                _ => None,
            })
        });
        match forced {
            Some(F16Path::Packed) => F16Path::Packed,
            _ if native => F16Path::Native,
            _ => F16Path::Packed,
        }
    }
}

/// `Params` in `shaders/half.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
    src: StridedU,
}

pub(crate) const WG: usize = 256;

/// Casts the elements of `src` (F16 storage when `src_f16`, else F32) into contiguous `dst`,
/// F32 when `to_f32` (then `src_f16` must hold) and packed F16 otherwise.
pub(crate) fn cast(
    src: (&GpuBuffer, &Layout),
    src_f16: bool,
    dst: &GpuBuffer,
    to_f32: bool,
) -> Result<()> {
    const OP: &str = "to_dtype";
    let l = src.1;
    let n = l.shape.numel();
    if n == 0 {
        return Ok(());
    }
    let (dims, strides) = l.collapsed();
    if dims.len() > MAX_RANK {
        return Err(Error::invalid(
            OP,
            format!(
                "strided layout of shape {:?} has {} non-mergeable dims; the GPU kernels take at most {MAX_RANK} (call .contiguous() first)",
                l.shape.dims(),
                dims.len()
            ),
        ));
    }
    let p = Params {
        n: n as u32,
        src: StridedU::new(&dims, &strides, l.offset),
        ..Default::default()
    };
    let ctx = dst.ctx();
    let invocations = if to_f32 { n } else { n.div_ceil(2) };
    let constants = [("SRC_F16", src_f16 as u32 as f64)];
    ctx.launch(Launch {
        shader: &HALF,
        entry: if to_f32 { "to_f32" } else { "to_f16" },
        constants: if to_f32 { &[] } else { &constants },
        params: bytemuck::bytes_of(&p),
        buffers: &[dst.binding(), src.0.binding()],
        grid: ctx.grid_1d(invocations.div_ceil(WG), OP)?,
    })
}
