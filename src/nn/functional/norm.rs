//! `layer_norm`: one fused op (forward saving per-row mean and rstd, fused backward) over the
//! trailing dims, with PyTorch's semantics.

use crate::gpu::{buffer, norm as gpu};
use crate::op::Op;
use crate::tensor::Storage;
use crate::{cpu, DType, Error, Result, Shape, Tensor};

const OP: &str = "layer_norm";

/// Layer normalisation as `torch.nn.functional.layer_norm`: each slice of `x` over the trailing
/// dims `normalized_shape` is shifted to mean 0 and scaled to (biased) variance 1, then
/// multiplied by `weight` and shifted by `bias` (both of shape `normalized_shape`):
/// `y = (x - mean) / √(var + eps) · weight + bias`.
///
/// Errors when `normalized_shape` is empty or is not the trailing part of `x`'s shape, when
/// `weight`/`bias` do not have exactly that shape, on mixed devices, non-`F32` inputs, an empty
/// `x`, or a negative or non-finite `eps`.
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    if [Some(x), weight, bias]
        .into_iter()
        .flatten()
        .any(|t| t.dtype() == DType::F16)
    {
        // f32 statistics; the result is F16 for an F16 input, F32 under autocast.
        let (w, b) = (
            weight.map(|t| t.as_f32()).transpose()?,
            bias.map(|t| t.as_f32()).transpose()?,
        );
        let run = |x: &Tensor| layer_norm(x, normalized_shape, w.as_ref(), b.as_ref(), eps);
        return if x.dtype() == DType::F16 {
            x.via_f32_autocast(run)
        } else {
            run(x)
        };
    }
    x.check_dtype(DType::F32, OP)?;
    let k = normalized_shape.len();
    if k == 0 || x.rank() < k || &x.dims()[x.rank() - k..] != normalized_shape {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: x.dims().to_vec(),
            rhs: normalized_shape.to_vec(),
        });
    }
    for t in [weight, bias].into_iter().flatten() {
        t.check_dtype(DType::F32, OP)?;
        x.check_same_device(t, OP)?;
        if t.dims() != normalized_shape {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: normalized_shape.to_vec(),
                rhs: t.dims().to_vec(),
            });
        }
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::invalid(
            OP,
            format!(
                "eps must be finite and >= 0, got {eps} (x shape {:?})",
                x.dims()
            ),
        ));
    }
    x.check_nonempty(OP)?;
    let n: usize = normalized_shape.iter().product();
    let rows = x.numel() / n;
    let xc = x.contiguous()?;
    let (w, b) = (dense(weight)?, dense(bias)?);
    let xo = xc.layout().offset;
    let (y, stats) = match xc.storage() {
        Storage::Cpu(xs) => {
            let xs = xs.read().unwrap();
            let wg = w.as_ref().map(cpu_read);
            let bg = b.as_ref().map(cpu_read);
            let (y, st) = cpu::norm::forward(
                &xs[xo..xo + x.numel()],
                wg.as_ref().map(|g| &g[..n]),
                bg.as_ref().map(|g| &g[..n]),
                n,
                eps,
            );
            (Storage::cpu(y), Storage::cpu(st))
        }
        Storage::Gpu(xb) => {
            let ctx = xb.ctx();
            let y = buffer::alloc(ctx, x.numel(), OP, x.dims())?;
            let st = buffer::alloc(ctx, rows * 2, OP, x.dims())?;
            gpu::forward(
                (xb, xo),
                w.as_ref().map(gpu_buf),
                b.as_ref().map(gpu_buf),
                &y,
                &st,
                rows,
                n,
                eps,
            )?;
            (Storage::Gpu(y), Storage::Gpu(st))
        }
    };
    let stats = Tensor::from_storage(stats, Shape::from([rows, 2]), DType::F32, x.device(), None);
    Ok(Tensor::from_storage(
        y,
        x.shape().clone(),
        DType::F32,
        x.device(),
        Some(Op::LayerNorm(
            x.clone(),
            weight.cloned(),
            bias.cloned(),
            stats,
        )),
    ))
}

/// The gradients `(dx, dweight, dbias)` of [`layer_norm`] given the forward's saved
/// `stats` `[rows, 2]` and the output gradient `dy`; `dweight`/`dbias` only when `params`.
pub(crate) fn layer_norm_backward(
    x: &Tensor,
    weight: Option<&Tensor>,
    stats: &Tensor,
    dy: &Tensor,
    params: bool,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    const BOP: &str = "layer_norm_backward";
    if dy.dims() != x.dims() {
        return Err(Error::ShapeMismatch {
            op: BOP,
            lhs: x.dims().to_vec(),
            rhs: dy.dims().to_vec(),
        });
    }
    let rows = stats.dims()[0];
    let n = x.numel() / rows;
    let (xc, dyc) = (x.contiguous()?, dy.contiguous()?);
    let w = dense(weight)?;
    let (xo, go) = (xc.layout().offset, dyc.layout().offset);
    let dev = x.device();
    let wrap = |s: Storage, dims: Vec<usize>| {
        Tensor::from_storage(s, Shape::new(dims), DType::F32, dev, None)
    };
    match (xc.storage(), dyc.storage(), stats.storage()) {
        (Storage::Cpu(xs), Storage::Cpu(gs), Storage::Cpu(ss)) => {
            let (xs, gs, ss) = (xs.read().unwrap(), gs.read().unwrap(), ss.read().unwrap());
            let wg = w.as_ref().map(cpu_read);
            let (dx, dwdb) = cpu::norm::backward(
                &xs[xo..xo + x.numel()],
                &ss[..rows * 2],
                &gs[go..go + x.numel()],
                wg.as_ref().map(|g| &g[..n]),
                n,
                params,
            );
            let dx = wrap(Storage::cpu(dx), x.dims().to_vec());
            let pw = match dwdb {
                Some(v) => {
                    let t = wrap(Storage::cpu(v), vec![2, n]);
                    Some((
                        t.narrow(0, 0, 1)?.reshape(n)?,
                        t.narrow(0, 1, 1)?.reshape(n)?,
                    ))
                }
                None => None,
            };
            Ok((dx, pw))
        }
        (Storage::Gpu(xb), Storage::Gpu(gb), Storage::Gpu(sb)) => {
            let ctx = xb.ctx();
            let dx = buffer::alloc(ctx, x.numel(), BOP, x.dims())?;
            gpu::backward_dx(
                (xb, xo),
                sb,
                (gb, go),
                w.as_ref().map(gpu_buf),
                &dx,
                rows,
                n,
            )?;
            let dx = wrap(Storage::Gpu(dx), x.dims().to_vec());
            let pw = if params {
                let blocks = rows.div_ceil(gpu::PARAM_RB);
                let part = buffer::alloc(ctx, blocks * 2 * n, BOP, x.dims())?;
                gpu::backward_params((xb, xo), sb, (gb, go), &part, rows, n)?;
                let t = wrap(Storage::Gpu(part), vec![blocks, 2, n]).sum(0, false)?;
                Some((
                    t.narrow(0, 0, 1)?.reshape(n)?,
                    t.narrow(0, 1, 1)?.reshape(n)?,
                ))
            } else {
                None
            };
            Ok((dx, pw))
        }
        _ => Err(Error::DeviceMismatch {
            op: BOP,
            lhs: x.device().name(),
            rhs: dy.device().name(),
        }),
    }
}

fn dense(t: Option<&Tensor>) -> Result<Option<Tensor>> {
    t.map(|t| t.dense()).transpose()
}

fn cpu_read(t: &Tensor) -> std::sync::RwLockReadGuard<'_, crate::cpu::alloc::CpuBuf> {
    match t.storage() {
        Storage::Cpu(s) => s.read().unwrap(),
        Storage::Gpu(_) => unreachable!("devices checked"),
    }
}

fn gpu_buf(t: &Tensor) -> &buffer::GpuBuffer {
    match t.storage() {
        Storage::Gpu(b) => b,
        Storage::Cpu(_) => unreachable!("devices checked"),
    }
}
