//! Elementwise ops: unary, scalar, binary with NumPy broadcasting, comparisons and `where`.

use crate::gpu::{buffer, elementwise as gpu};
use crate::op::{BinaryOp, CmpOp, Op, UnaryOp};
use crate::shape::Layout;
use crate::tensor::Storage;
use crate::{cpu, DType, Device, Error, Result, Tensor};

/// A fresh contiguous output of `shape` on the device of `like`.
pub(crate) fn alloc_like(
    device: &Device,
    shape: &crate::Shape,
    op: &'static str,
) -> Result<std::sync::Arc<crate::gpu::buffer::GpuBuffer>> {
    match device {
        Device::Gpu(ctx) => buffer::alloc(ctx, shape.numel(), op, shape.dims()),
        Device::Cpu => unreachable!("wgml bug: GPU allocation on the CPU device"),
    }
}

impl Tensor {
    /// Applies an elementwise op. `U32` inputs are accepted only by the dtype casts and `Copy`.
    /// `F16` inputs give `F16` outputs (computed in f32), except comparisons (F32 masks).
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        if self.dtype() == DType::F16 {
            return match op {
                UnaryOp::Copy => self.cast_f16(DType::F16, Some(Op::Reshape(self.clone()))),
                UnaryOp::CmpScalar(..) => self.to_dtype(DType::F32)?.unary(op),
                UnaryOp::U32ToF32 | UnaryOp::F32ToU32 => self.to_dtype(DType::F32)?.unary(op),
                // On autocast's F32 list (PyTorch's): exp, log, pow, reciprocal.
                UnaryOp::Exp | UnaryOp::Log | UnaryOp::Powf(_) | UnaryOp::Recip
                    if crate::amp::is_autocast_enabled() =>
                {
                    self.to_dtype(DType::F32)?.unary(op)
                }
                _ => self.unary_f16(op),
            };
        }
        let (name, out_dtype) = match op {
            UnaryOp::Copy => ("copy", self.dtype()),
            UnaryOp::U32ToF32 => {
                self.check_dtype(DType::U32, "to_dtype")?;
                ("to_dtype", DType::F32)
            }
            UnaryOp::F32ToU32 => {
                self.check_dtype(DType::F32, "to_dtype")?;
                ("to_dtype", DType::U32)
            }
            _ => {
                self.check_dtype(DType::F32, "unary")?;
                ("unary", DType::F32)
            }
        };
        let layout = self.layout();
        let storage = match self.storage() {
            Storage::Cpu(x) => {
                cpu::alloc::reserve(self.numel(), name)?;
                Storage::cpu(cpu::elementwise::unary(op, &x.read().unwrap(), layout))
            }
            Storage::Gpu(x) => {
                let out = alloc_like(self.device(), self.shape(), name)?;
                let out_layout = Layout::contiguous(self.shape().clone());
                gpu::unary(op, (x, layout), (&out, &out_layout))?;
                Storage::Gpu(out)
            }
        };
        let rec = match op {
            UnaryOp::Copy => Op::Reshape(self.clone()),
            _ => Op::Unary(self.clone(), op),
        };
        Ok(Tensor::from_storage(
            storage,
            self.shape().clone(),
            out_dtype,
            self.device(),
            Some(rec),
        ))
    }

    /// `-x`
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    /// `|x|`
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    /// `e^x`
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    /// Square root.
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    /// `max(x, 0)`
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    /// `1 / (1 + e^-x)`
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    /// Exact GELU (erf form, PyTorch's default).
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Gelu)
    }
    /// `1 / x`
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Recip)
    }
    /// `x · mul + add`
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Affine { mul, add })
    }
    /// `x + s`
    pub fn add_scalar(&self, s: f32) -> Result<Tensor> {
        self.affine(1.0, s)
    }
    /// `x - s`
    pub fn sub_scalar(&self, s: f32) -> Result<Tensor> {
        self.affine(1.0, -s)
    }
    /// `x · s`
    pub fn mul_scalar(&self, s: f32) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    /// `x / s`
    pub fn div_scalar(&self, s: f32) -> Result<Tensor> {
        self.affine(1.0 / s, 0.0)
    }
    /// `x^p` (negative bases only for integer `p`, as in C's `pow`).
    pub fn powf(&self, p: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p))
    }
    /// `min(max(x, min), max)`
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Clamp { min, max })
    }
    /// Mask of `x == s`.
    pub fn eq_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::CmpScalar(CmpOp::Eq, s))
    }
    /// Mask of `x > s`.
    pub fn gt_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::CmpScalar(CmpOp::Gt, s))
    }
    /// Mask of `x >= s`.
    pub fn ge_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::CmpScalar(CmpOp::Ge, s))
    }
    /// Mask of `x < s`.
    pub fn lt_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::CmpScalar(CmpOp::Lt, s))
    }
    /// Mask of `x <= s`.
    pub fn le_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::CmpScalar(CmpOp::Le, s))
    }
    /// Converts between dtypes: `F32 → U32` truncates toward zero (negatives to 0), `F32 →
    /// F16` rounds to nearest even (beyond ±65504 to ±inf). Float casts are recorded for
    /// autograd: the gradient is cast back.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        match (self.dtype(), dtype) {
            (a, b) if a == b => Ok(self.clone()),
            (DType::F32, DType::F16) | (DType::F16, DType::F32) => self.cast_f16(dtype, None),
            (DType::U32, DType::F16) | (DType::F16, DType::U32) => {
                self.to_dtype(DType::F32)?.to_dtype(dtype)
            }
            (DType::U32, DType::F32) => self.unary(UnaryOp::U32ToF32),
            (DType::F32, DType::U32) => self.unary(UnaryOp::F32ToU32),
            (a, b) => Err(Error::DType {
                op: "to_dtype",
                msg: format!("conversion {a:?} -> {b:?} is not supported"),
            }),
        }
    }

    /// Checks devices and dtypes and broadcasts both operands to a common shape.
    pub(crate) fn broadcast_pair(
        &self,
        rhs: &Tensor,
        op: &'static str,
    ) -> Result<(crate::Shape, Layout, Layout)> {
        self.check_same_device(rhs, op)?;
        if self.dtype() != rhs.dtype() {
            return Err(Error::DType {
                op,
                msg: format!(
                    "dtypes differ: {:?} {:?} vs {:?} {:?}",
                    self.dtype(),
                    self.dims(),
                    rhs.dtype(),
                    rhs.dims()
                ),
            });
        }
        let shape = self.shape().broadcast(rhs.shape(), op)?;
        Ok((
            shape.clone(),
            self.layout().broadcast_to(&shape),
            rhs.layout().broadcast_to(&shape),
        ))
    }

    /// Applies a binary op with NumPy broadcasting. Mixed `F16`/`F32` operands promote to
    /// `F32` as in PyTorch; two `F16` operands give `F16` (computed in f32).
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        if self.dtype() == DType::F16
            && rhs.dtype() == DType::F16
            && !matches!(op, BinaryOp::Cmp(_))
        {
            let plan = self.broadcast_pair(rhs, op.name())?;
            return self.binary_f16(rhs, op, plan);
        }
        if self.dtype() == DType::F16 || rhs.dtype() == DType::F16 {
            let out = super::promote(self.dtype(), rhs.dtype());
            let y = self.as_f32()?.binary(&rhs.as_f32()?, op)?;
            return if out == DType::F16 && !matches!(op, BinaryOp::Cmp(_)) {
                y.to_dtype(DType::F16)
            } else {
                Ok(y)
            };
        }
        let name = op.name();
        let (shape, la, lb) = self.broadcast_pair(rhs, name)?;
        if !matches!(op, BinaryOp::Cmp(_)) {
            self.check_dtype(DType::F32, name)?;
        }
        let storage = match (self.storage(), rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                cpu::alloc::reserve(shape.numel(), name)?;
                let (a, b) = (a.read().unwrap(), b.read().unwrap());
                Storage::cpu(
                    if matches!(op, BinaryOp::Cmp(_)) && self.dtype() == DType::U32 {
                        // Compare index values, not their bit patterns as floats.
                        let fa: Vec<f32> = a.iter().map(|w| w.to_bits() as f32).collect();
                        let fb: Vec<f32> = b.iter().map(|w| w.to_bits() as f32).collect();
                        cpu::elementwise::binary(op, &fa, &la, &fb, &lb)
                    } else {
                        cpu::elementwise::binary(op, &a, &la, &b, &lb)
                    },
                )
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => {
                if self.dtype() == DType::U32 {
                    return self
                        .to_dtype(DType::F32)?
                        .binary(&rhs.to_dtype(DType::F32)?, op);
                }
                let out = alloc_like(self.device(), &shape, name)?;
                let lo = Layout::contiguous(shape.clone());
                gpu::binary(op, (a, &la), (b, &lb), (&out, &lo))?;
                Storage::Gpu(out)
            }
            _ => unreachable!("devices checked"),
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            DType::F32,
            self.device(),
            Some(Op::Binary(self.clone(), rhs.clone(), op)),
        ))
    }

    /// `self + rhs` (broadcasting).
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    /// `self - rhs` (broadcasting).
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    /// `self * rhs` (broadcasting).
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    /// `self / rhs` (broadcasting).
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    /// Elementwise maximum (broadcasting).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum)
    }
    /// Elementwise minimum (broadcasting).
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum)
    }
    /// Mask of `self == rhs` (1.0 / 0.0, broadcasting; `U32` operands compare as indices).
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Cmp(CmpOp::Eq))
    }
    /// Mask of `self != rhs`.
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Cmp(CmpOp::Ne))
    }
    /// Mask of `self < rhs`.
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Cmp(CmpOp::Lt))
    }
    /// Mask of `self <= rhs`.
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Cmp(CmpOp::Le))
    }
    /// Mask of `self > rhs`.
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Cmp(CmpOp::Gt))
    }
    /// Mask of `self >= rhs`.
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Cmp(CmpOp::Ge))
    }

    /// `cond != 0 ? on_true : on_false`, all three broadcast together.
    pub fn where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        const OP: &str = "where";
        if [cond, on_true, on_false]
            .iter()
            .any(|t| t.dtype() == DType::F16)
        {
            let out = super::promote(on_true.dtype(), on_false.dtype());
            let y = Tensor::where_cond(&cond.as_f32()?, &on_true.as_f32()?, &on_false.as_f32()?)?;
            return if out == DType::F16 {
                y.to_dtype(out)
            } else {
                Ok(y)
            };
        }
        cond.check_dtype(DType::F32, OP)?;
        let (shape, lt, lf) = on_true.broadcast_pair(on_false, OP)?;
        on_true.check_dtype(DType::F32, OP)?;
        cond.check_same_device(on_true, OP)?;
        let shape = cond.shape().broadcast(&shape, OP)?;
        let (lc, lt, lf) = (
            cond.layout().broadcast_to(&shape),
            lt.broadcast_to(&shape),
            lf.broadcast_to(&shape),
        );
        let storage = match (cond.storage(), on_true.storage(), on_false.storage()) {
            (Storage::Cpu(c), Storage::Cpu(a), Storage::Cpu(b)) => {
                cpu::alloc::reserve(shape.numel(), OP)?;
                Storage::cpu(cpu::elementwise::where_select(
                    (&c.read().unwrap(), &lc),
                    (&a.read().unwrap(), &lt),
                    (&b.read().unwrap(), &lf),
                ))
            }
            (Storage::Gpu(c), Storage::Gpu(a), Storage::Gpu(b)) => {
                let out = alloc_like(cond.device(), &shape, OP)?;
                let lo = Layout::contiguous(shape.clone());
                gpu::where_select((c, &lc), (a, &lt), (b, &lf), (&out, &lo))?;
                Storage::Gpu(out)
            }
            _ => unreachable!("devices checked"),
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            DType::F32,
            cond.device(),
            Some(Op::Where(cond.clone(), on_true.clone(), on_false.clone())),
        ))
    }
}
