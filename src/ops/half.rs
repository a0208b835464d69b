//! F16 tensors: creation from `half::f16`, casts between F32 and F16 (recorded for autograd),
//! read-back, elementwise ops in one pass (`unary_f16`, `binary_f16`: the graph records the
//! F16 inputs), and `via_f32`, the way other ops without an F16 kernel take F16 inputs.
//!
//! Storage is packed on both backends (two elements per 4-byte word, see `cpu/half.rs`), so an
//! F16 tensor takes half the memory of an F32 one. Ops compute in f32 and round their F16
//! outputs once, to nearest even, as PyTorch's do.

use crate::op::{BinaryOp, Op, UnaryOp};
use crate::shape::{Layout, Shape};
use crate::tensor::Storage;
use crate::{cpu, gpu, DType, Device, Error, Result, Tensor};
use half::f16;

impl Tensor {
    /// An `F16` tensor of `shape` holding `data` in row-major order.
    pub fn from_f16(data: &[f16], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        const OP: &str = "from_f16";
        let shape = shape.into();
        shape.check_numel(OP)?;
        if data.len() != shape.numel() {
            return Err(Error::ElementCount {
                op: OP,
                shape: shape.dims().to_vec(),
                len: data.len(),
            });
        }
        let words = cpu::half::pack(data)?;
        let storage = match device {
            Device::Cpu => Storage::cpu(words),
            Device::Gpu(ctx) => Storage::Gpu(gpu::buffer::upload(
                ctx,
                bytemuck::cast_slice(&words),
                OP,
                shape.dims(),
            )?),
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            DType::F16,
            device,
            None,
        ))
    }

    /// The elements of an `F16` tensor, exactly (waits for the device). [`Tensor::to_vec`]
    /// gives them converted to f32.
    pub fn to_vec_f16(&self) -> Result<Vec<f16>> {
        self.check_dtype(DType::F16, "to_vec_f16")?;
        let words = self.to_words()?;
        let mut h: Vec<f16> = bytemuck::cast_slice(&words).to_vec();
        h.truncate(self.numel());
        Ok(h)
    }

    /// Casts between `F32` and `F16` (`F16 → F16` is a dense copy), recorded so the gradient
    /// is cast back. `rec` overrides the recorded op (`copy` records a reshape).
    pub(crate) fn cast_f16(&self, to: DType, rec: Option<Op>) -> Result<Tensor> {
        const OP: &str = "to_dtype";
        let from = self.dtype();
        debug_assert!(from == DType::F16 || to == DType::F16);
        let n = self.numel();
        let storage = match self.storage() {
            Storage::Cpu(x) => {
                let x = x.read().unwrap();
                Storage::cpu(if to == DType::F32 {
                    cpu::half::to_f32(&x, self.layout())?
                } else {
                    cpu::half::to_f16(&x, self.layout(), from == DType::F16)?
                })
            }
            Storage::Gpu(x) => {
                let words = if to == DType::F32 {
                    n
                } else {
                    cpu::half::words(n)
                };
                let Device::Gpu(ctx) = self.device() else {
                    unreachable!()
                };
                let out = gpu::buffer::alloc(ctx, words, OP, self.dims())?;
                gpu::half::cast(
                    (x, self.layout()),
                    from == DType::F16,
                    &out,
                    to == DType::F32,
                )?;
                Storage::Gpu(out)
            }
        };
        Ok(Tensor::from_storage(
            storage,
            self.shape().clone(),
            to,
            self.device(),
            Some(rec.unwrap_or_else(|| Op::Cast(self.clone()))),
        ))
    }

    /// Runs `f` on an F32 copy of this F16 tensor and casts an F32 result back to F16: the
    /// path of ops that have no F16 kernel (they compute in f32 anyway). Other dtypes pass
    /// through unchanged.
    pub(crate) fn via_f32(&self, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let y = f(&self.to_dtype(DType::F32)?)?;
        if y.dtype() == DType::F32 {
            y.to_dtype(DType::F16)
        } else {
            Ok(y)
        }
    }

    /// [`Tensor::via_f32`] for the ops on autocast's F32 list: under autocast the F32 result
    /// is kept.
    pub(crate) fn via_f32_autocast(
        &self,
        f: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if crate::amp::is_autocast_enabled() {
            f(&self.to_dtype(DType::F32)?)
        } else {
            self.via_f32(f)
        }
    }

    /// An F32 view of a tensor for ops without F16 kernels (`self` unless it is F16).
    pub(crate) fn as_f32(&self) -> Result<Tensor> {
        if self.dtype() == DType::F16 {
            self.to_dtype(DType::F32)
        } else {
            Ok(self.clone())
        }
    }
}

impl Tensor {
    /// An elementwise op on an F16 tensor, F16 out: one pass (computed in f32, rounded once)
    /// and recorded on the F16 input, so the graph keeps no f32 copy.
    pub(crate) fn unary_f16(&self, op: UnaryOp) -> Result<Tensor> {
        let shape = self.shape().clone();
        let out = Layout::contiguous(shape.clone());
        let storage = match self.storage() {
            Storage::Cpu(x) => {
                let xf = cpu::half::to_f32(&x.read().unwrap(), self.layout())?;
                let y = cpu::elementwise::unary(op, &xf, &out);
                Storage::cpu(cpu::half::to_f16(&y, &out, false)?)
            }
            Storage::Gpu(x) => {
                let buf = self.alloc_f16(&shape, "unary")?;
                let (code, scalars) = op.code();
                gpu::elementwise::to_f16(
                    "unary",
                    "unary_h",
                    code,
                    scalars,
                    &[((x, self.layout()), true)],
                    &buf,
                    &shape,
                )?;
                Storage::Gpu(buf)
            }
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            DType::F16,
            self.device(),
            Some(Op::Unary(self.clone(), op)),
        ))
    }

    /// A binary op on two F16 tensors (already broadcast to `shape` by `la`, `lb`), F16 out,
    /// in one pass like [`Tensor::unary_f16`].
    pub(crate) fn binary_f16(
        &self,
        rhs: &Tensor,
        op: BinaryOp,
        (shape, la, lb): (Shape, Layout, Layout),
    ) -> Result<Tensor> {
        let out = Layout::contiguous(shape.clone());
        let storage = match (self.storage(), rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                let af = cpu::half::to_f32(&a.read().unwrap(), &la)?;
                let bf = cpu::half::to_f32(&b.read().unwrap(), &lb)?;
                let y = cpu::elementwise::binary(op, &af, &out, &bf, &out);
                Storage::cpu(cpu::half::to_f16(&y, &out, false)?)
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => {
                let buf = self.alloc_f16(&shape, op.name())?;
                gpu::elementwise::to_f16(
                    op.name(),
                    "binary_h",
                    op.code(),
                    [0.0; 2],
                    &[((a, &la), true), ((b, &lb), true)],
                    &buf,
                    &shape,
                )?;
                Storage::Gpu(buf)
            }
            _ => unreachable!("devices checked"),
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            DType::F16,
            self.device(),
            Some(Op::Binary(self.clone(), rhs.clone(), op)),
        ))
    }

    /// A GPU buffer for a contiguous F16 tensor of `shape` on this tensor's device.
    fn alloc_f16(
        &self,
        shape: &Shape,
        op: &'static str,
    ) -> Result<std::sync::Arc<gpu::buffer::GpuBuffer>> {
        let Device::Gpu(ctx) = self.device() else {
            unreachable!("wgml bug: GPU allocation on the CPU device")
        };
        gpu::buffer::alloc(ctx, cpu::half::words(shape.numel()), op, shape.dims())
    }
}

/// The dtype PyTorch's type promotion gives two floating operands: F16 only when both are.
pub(crate) fn promote(a: DType, b: DType) -> DType {
    match (a, b) {
        (DType::F16, DType::F16) => DType::F16,
        (DType::U32, DType::U32) => DType::U32,
        _ => DType::F32,
    }
}
