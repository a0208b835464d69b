//! 2-D convolution as im2col + matmul on both backends. `im2col` is an op of its own whose
//! backward is the deterministic col2im, so conv2d's gradients come from the matmul's.

use super::alloc_like;
use crate::cpu::conv as cpu;
use crate::gpu::conv as gpu;
use crate::op::Op;
use crate::shape::{Conv2dConfig, ConvGeom, Shape};
use crate::tensor::Storage;
use crate::{DType, Device, Error, Result, Tensor};

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch's `conv2d`) of NCHW input with OIHW
    /// `weight` `[O, C/groups, KH, KW]` and an optional `bias` `[O]`; output `[N, O, OH, OW]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        cfg: Conv2dConfig,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        if crate::amp::is_autocast_enabled()
            && [Some(self), Some(weight), bias]
                .into_iter()
                .flatten()
                .any(|t| t.dtype() == DType::F32)
        {
            let b = bias.map(crate::amp::to_f16).transpose()?;
            return crate::amp::to_f16(self)?.conv2d(&crate::amp::to_f16(weight)?, b.as_ref(), cfg);
        }
        let f16 = [Some(self), Some(weight), bias]
            .into_iter()
            .flatten()
            .any(|t| t.dtype() == DType::F16);
        if f16 {
            // F16 convolution: f32 arithmetic, one rounding of the output (as PyTorch's).
            for t in [Some(weight), bias].into_iter().flatten() {
                if t.dtype() != self.dtype() {
                    return Err(Error::DType {
                        op: OP,
                        msg: format!(
                            "input {:?} {:?} and weight/bias {:?} {:?} must have the same dtype",
                            self.dtype(),
                            self.dims(),
                            t.dtype(),
                            t.dims()
                        ),
                    });
                }
            }
        }
        if f16 && !self.device().is_gpu() {
            // The CPU has no F16 arithmetic: the F32 convolution between one cast in and one
            // rounding out moves the least (F16 columns would be cast twice more).
            let b = bias.map(|b| b.as_f32()).transpose()?;
            // With autocast off, or the F32 convolution would be cast straight back.
            let y = crate::amp::set_autocast(false, || {
                self.as_f32()?.conv2d(&weight.as_f32()?, b.as_ref(), cfg)
            })?;
            return y.to_dtype(DType::F16);
        }
        // On a GPU an F16 convolution is the composition below in F16: F16 columns, the F16
        // matmul (cooperative matrices where the device has them), an F16 bias add.
        self.check_same_device(weight, OP)?;
        if !f16 {
            self.check_dtype(DType::F32, OP)?;
            weight.check_dtype(DType::F32, OP)?;
        }
        let g = ConvGeom::new(OP, self.dims(), weight.dims(), cfg)?;
        let o = weight.dims()[0];
        let groups = cfg.groups;
        // [G, O/G, R] @ [G, R, L] -> [G, O/G, L], L = N·OH·OW.
        let cols = self.im2col_geom(g)?;
        let w = weight.reshape([groups, o / groups, g.rows()])?;
        if let Some(b) = bias.filter(|b| b.dims() != [o]) {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: weight.dims().to_vec(),
                rhs: b.dims().to_vec(),
            });
        }
        let y = w.matmul(&cols)?;
        // [G, O/G, N, OH·OW] -> [N, G, O/G, OH·OW] = [N, O, OH, OW]: the permuted view is
        // materialised by the bias add when there is a bias (one pass for both), else copied.
        let y = y
            .reshape([groups, o / groups, g.n, g.oh * g.ow])?
            .permute(&[2, 0, 1, 3])?;
        let y = match bias {
            Some(b) => y.add(&b.reshape([1, groups, o / groups, 1])?)?,
            None => y,
        };
        y.reshape([g.n, o, g.oh, g.ow])
    }

    /// The column matrix `[G, C/G·KH·KW, N·OH·OW]` of this NCHW input for a kernel of
    /// `[kh, kw]` (zero where a tap falls in the padding).
    pub fn im2col(&self, kernel: [usize; 2], cfg: Conv2dConfig) -> Result<Tensor> {
        let c = self.dims().get(1).copied().unwrap_or(0);
        let weight = [cfg.groups, c / cfg.groups.max(1), kernel[0], kernel[1]];
        let g = ConvGeom::new("im2col", self.dims(), &weight, cfg)?;
        self.im2col_geom(g)
    }

    fn im2col_geom(&self, g: ConvGeom) -> Result<Tensor> {
        const OP: &str = "im2col";
        let f16 = self.dtype() == DType::F16;
        if f16 && !self.device().is_gpu() {
            return self.via_f32(|x| x.im2col_geom(g));
        }
        let x = self.dense()?;
        let shape = Shape::new(vec![g.cfg.groups, g.rows(), g.cols()]);
        let storage = match x.storage() {
            Storage::Gpu(v) if f16 => {
                // F16 columns straight from F16 input: the halves are copied, not converted.
                let Device::Gpu(ctx) = self.device() else {
                    unreachable!("GPU storage")
                };
                let words = crate::cpu::half::words(shape.numel());
                let out = crate::gpu::buffer::alloc(ctx, words, OP, shape.dims())?;
                gpu::run("im2col_h", &g, words, &out, v)?;
                Storage::Gpu(out)
            }
            Storage::Cpu(v) => {
                crate::cpu::alloc::reserve(shape.numel(), OP)?;
                Storage::cpu(cpu::im2col(&v.read().unwrap(), &g))
            }
            Storage::Gpu(v) => {
                let out = alloc_like(self.device(), &shape, OP)?;
                gpu::run("im2col", &g, shape.numel(), &out, v)?;
                Storage::Gpu(out)
            }
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            self.dtype(),
            self.device(),
            Some(Op::Im2col(self.clone(), g)),
        ))
    }
}

/// The adjoint of im2col: column-matrix gradient `[G, R, L]` back to the input's shape.
pub(crate) fn col2im(dcols: &Tensor, g: &ConvGeom) -> Result<Tensor> {
    const OP: &str = "col2im";
    // F16 column gradients are summed in f32 (backward casts the result to the input's dtype).
    let d = dcols.as_f32()?.dense()?;
    let shape = Shape::new(vec![g.n, g.c, g.h, g.w]);
    let storage = match d.storage() {
        Storage::Cpu(v) => Storage::cpu(cpu::col2im(&v.read().unwrap(), g)),
        Storage::Gpu(v) => {
            let out = alloc_like(d.device(), &shape, OP)?;
            gpu::run("col2im", g, shape.numel(), &out, v)?;
            Storage::Gpu(out)
        }
    };
    Ok(Tensor::from_storage(
        storage,
        shape,
        DType::F32,
        d.device(),
        None,
    ))
}
