//! 2-D max and average pooling over NCHW tensors, with their backward passes.

use super::alloc_like;
use crate::cpu::pool as cpu;
use crate::gpu::pool as gpu;
use crate::op::Op;
use crate::shape::{Layout, Pool2d, Shape};
use crate::tensor::Storage;
use crate::{DType, Device, Error, Result, Tensor};

/// (planes, [h, w], [oh, ow]) of a pooling op, after checking the input.
fn geometry(x: &Tensor, p: &Pool2d, op: &'static str) -> Result<(usize, [usize; 2], [usize; 2])> {
    if x.dtype() == DType::U32 {
        x.check_dtype(DType::F32, op)?;
    }
    let ohw = p.output_hw(op, x.dims())?;
    let d = x.dims();
    Ok((d[0] * d[1], [d[2], d[3]], ohw))
}

impl Tensor {
    /// Max pooling of an NCHW tensor; gradients go to the first maximum of each window.
    pub fn max_pool2d(&self, p: Pool2d) -> Result<Tensor> {
        const OP: &str = "max_pool2d";
        let (planes, hw, ohw) = geometry(self, &p, OP)?;
        let x = self.dense()?;
        let d = x.dims();
        let shape = Shape::new(vec![d[0], d[1], ohw[0], ohw[1]]);
        // F16 maxima are F16 values: picked exactly, never rounded. The graph records the F16
        // input (no f32 copy is kept for backward).
        let f16 = self.dtype() == DType::F16;
        let (out, arg) = match x.storage() {
            Storage::Cpu(v) => {
                let v = v.read().unwrap();
                let (o, a) = if f16 {
                    let wide = crate::cpu::half::to_f32(&v, x.layout())?;
                    let (o, a) = cpu::max_forward(&wide, planes, hw, ohw, &p);
                    let o =
                        crate::cpu::half::to_f16(&o, &Layout::contiguous(shape.clone()), false)?;
                    (o, a)
                } else {
                    cpu::max_forward(&v, planes, hw, ohw, &p)
                };
                (Storage::cpu(o), Storage::cpu(a))
            }
            Storage::Gpu(v) if f16 => {
                let Device::Gpu(ctx) = self.device() else {
                    unreachable!("GPU storage")
                };
                let words = crate::cpu::half::words(shape.numel());
                let out = crate::gpu::buffer::alloc(ctx, words, OP, shape.dims())?;
                let arg = alloc_like(self.device(), &shape, OP)?;
                gpu::run(
                    "max_forward_h",
                    words,
                    planes,
                    hw,
                    ohw,
                    &p,
                    &[&out, v, &arg],
                )?;
                (Storage::Gpu(out), Storage::Gpu(arg))
            }
            Storage::Gpu(v) => {
                let out = alloc_like(self.device(), &shape, OP)?;
                let arg = alloc_like(self.device(), &shape, OP)?;
                gpu::run(
                    "max_forward",
                    shape.numel(),
                    planes,
                    hw,
                    ohw,
                    &p,
                    &[&out, v, &arg],
                )?;
                (Storage::Gpu(out), Storage::Gpu(arg))
            }
        };
        let arg = Tensor::from_storage(arg, shape.clone(), DType::U32, self.device(), None);
        Ok(Tensor::from_storage(
            out,
            shape,
            self.dtype(),
            self.device(),
            Some(Op::MaxPool2d(self.clone(), arg, p)),
        ))
    }

    /// Average pooling of an NCHW tensor (padding counted in the divisor, as PyTorch's default).
    pub fn avg_pool2d(&self, p: Pool2d) -> Result<Tensor> {
        const OP: &str = "avg_pool2d";
        if self.dtype() == DType::F16 {
            return self.via_f32(|x| x.avg_pool2d(p));
        }
        let (planes, hw, ohw) = geometry(self, &p, OP)?;
        let x = self.dense()?;
        let d = x.dims();
        let shape = Shape::new(vec![d[0], d[1], ohw[0], ohw[1]]);
        let out = match x.storage() {
            Storage::Cpu(v) => {
                Storage::cpu(cpu::avg_forward(&v.read().unwrap(), planes, hw, ohw, &p))
            }
            Storage::Gpu(v) => {
                let out = alloc_like(self.device(), &shape, OP)?;
                gpu::run(
                    "avg_forward",
                    shape.numel(),
                    planes,
                    hw,
                    ohw,
                    &p,
                    &[&out, v],
                )?;
                Storage::Gpu(out)
            }
        };
        Ok(Tensor::from_storage(
            out,
            shape,
            DType::F32,
            self.device(),
            Some(Op::AvgPool2d(self.clone(), p)),
        ))
    }
}

/// Gradient of a pooling op w.r.t. its input `x` (shape of `x`), given `dy` and, for max
/// pooling, the arg-max indices saved by the forward pass.
pub(crate) fn pool2d_backward(
    x: &Tensor,
    dy: &Tensor,
    arg: Option<&Tensor>,
    p: &Pool2d,
) -> Result<Tensor> {
    const OP: &str = "pool2d backward";
    let (planes, hw, ohw) = geometry(x, p, OP)?;
    // F16 output gradients are summed in f32 (backward casts the result to x's dtype).
    let dy = dy.as_f32()?.dense()?;
    if dy.dims() != [x.dims()[0], x.dims()[1], ohw[0], ohw[1]] {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: x.dims().to_vec(),
            rhs: dy.dims().to_vec(),
        });
    }
    let storage = match (dy.storage(), arg.map(|a| a.storage())) {
        (Storage::Cpu(g), a) => {
            let g = g.read().unwrap();
            let a = a.map(|a| match a {
                Storage::Cpu(a) => a.read().unwrap(),
                Storage::Gpu(_) => unreachable!("same device"),
            });
            // The saved indices are dense: max_pool2d made them.
            Storage::cpu(cpu::backward(
                &g,
                a.as_deref().map(|v| v.as_slice()),
                planes,
                hw,
                ohw,
                p,
            ))
        }
        (Storage::Gpu(g), a) => {
            let out = alloc_like(x.device(), x.shape(), OP)?;
            match a {
                Some(Storage::Gpu(a)) => {
                    gpu::run("max_backward", x.numel(), planes, hw, ohw, p, &[&out, g, a])?
                }
                None => gpu::run("avg_backward", x.numel(), planes, hw, ohw, p, &[&out, g])?,
                Some(Storage::Cpu(_)) => unreachable!("same device"),
            }
            Storage::Gpu(out)
        }
    };
    Ok(Tensor::from_storage(
        storage,
        x.shape().clone(),
        DType::F32,
        x.device(),
        None,
    ))
}
