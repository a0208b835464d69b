//! `scaled_dot_product_attention`: checks, dispatch to `cpu::attention` / `gpu::attention`, backward.

use crate::cpu::attention::{self as cpu, Dims, View4};
use crate::gpu::attention as gpu;
use crate::op::Op;
use crate::ops::alloc_like;
use crate::shape::{Layout, Shape};
use crate::tensor::Storage;
use crate::{DType, Error, Result, Tensor};

const OP: &str = "scaled_dot_product_attention";

/// `softmax(q·kᵀ·scale + mask)·v` with PyTorch's semantics, as one fused op (the `Tq × Tk`
/// score matrix is never stored: the forward keeps each row's log-sum-exp and the backward
/// recomputes the probabilities from it).
///
/// - `q`: `(B, H, Tq, D)`; `k`: `(B, Hkv, Tk, D)`; `v`: `(B, Hkv, Tk, Dv)`. `Hkv` must divide
///   `H`: query head `h` attends with K/V head `h / (H / Hkv)` (grouped-query and multi-query
///   attention). The result is `(B, H, Tq, Dv)`. Any strides (permuted views of a fused
///   projection) are read in place.
/// - `attn_mask`: an additive `F32` mask broadcastable to `(B, H, Tq, Tk)`; `-inf` entries
///   mask a key out. (PyTorch's boolean masks: pass `0` / `-inf` instead.)
/// - `is_causal`: query `i` sees keys `j ≤ i` (top-left aligned, also when `Tq ≠ Tk`). Cannot
///   be combined with `attn_mask` (as in PyTorch).
/// - `scale`: defaults to `1 / √D`.
///
/// A query row whose every key is masked gives zeros (and zero gradients), not NaN.
/// Gradients flow to `q`, `k`, `v` and, if it requires one, to `attn_mask` (summed over its
/// broadcast dims; this last one is composed from tensor ops and stores the score matrix).
///
/// Errors ([`Error::Invalid`] or [`Error::ShapeMismatch`] naming the op and the shapes): a rank
/// other than 4, batch sizes or head dims that differ, `Hkv` not dividing `H`, `k` and `v`
/// of different lengths or head counts, a mask that does not broadcast, a mask with
/// `is_causal`; [`Error::DType`] for non-`F32` inputs; [`Error::DeviceMismatch`].
///
/// ```
/// use wgml::{nn::functional::scaled_dot_product_attention as sdpa, Device, Tensor};
/// # fn main() -> wgml::Result<()> {
/// let dev = Device::cpu();
/// let q = Tensor::randn([2, 4, 5, 8], 0, &dev)?;
/// let kv = Tensor::randn([2, 2, 7, 8], 1, &dev)?; // 2 K/V heads shared by 4 query heads
/// let o = sdpa(&q, &kv, &kv, None, false, None)?;
/// assert_eq!(o.dims(), &[2, 4, 5, 8]);
/// # Ok(())
/// # }
/// ```
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    attn_mask: Option<&Tensor>,
    is_causal: bool,
    scale: Option<f32>,
) -> Result<Tensor> {
    if [Some(q), Some(k), Some(v), attn_mask]
        .into_iter()
        .flatten()
        .any(|t| t.dtype() == DType::F16)
    {
        // F16 attention runs the f32 kernels and rounds the output once; q, k and v must
        // share a dtype (as PyTorch's), the mask may be either float dtype.
        for t in [k, v] {
            if t.dtype() != q.dtype() {
                return Err(crate::Error::DType {
                    op: OP,
                    msg: format!(
                        "q, k and v must share a dtype: q {:?} {:?}, got {:?} {:?}",
                        q.dtype(),
                        q.dims(),
                        t.dtype(),
                        t.dims()
                    ),
                });
            }
        }
        let m = attn_mask.map(|m| m.as_f32()).transpose()?;
        let o = scaled_dot_product_attention(
            &q.as_f32()?,
            &k.as_f32()?,
            &v.as_f32()?,
            m.as_ref(),
            is_causal,
            scale,
        )?;
        return if q.dtype() == DType::F16 {
            o.to_dtype(DType::F16)
        } else {
            Ok(o)
        };
    }
    let s = plan(q, k, v, attn_mask, is_causal, scale)?;
    let out_shape = Shape::from([s.b, s.h, s.tq, s.dv]);
    let lse_shape = Shape::from([s.b, s.h, s.tq]);
    let (o, lse) = match q.storage() {
        Storage::Cpu(_) => {
            let (qg, kg, vg) = (read(q), read(k), read(v));
            let mg = attn_mask.map(read);
            let (o, lse) = cpu::forward(
                &s,
                (&qg, view4(q.layout())),
                (&kg, view4(k.layout())),
                (&vg, view4(v.layout())),
                attn_mask
                    .zip(mg.as_deref())
                    .map(|(m, g)| (&g[..], mask_view(m, &s))),
            );
            (Storage::cpu(o), Storage::cpu(lse))
        }
        Storage::Gpu(_) => {
            let dev = q.device();
            let (o, lse) = (
                alloc_like(dev, &out_shape, OP)?,
                alloc_like(dev, &lse_shape, OP)?,
            );
            gpu::forward(
                &s,
                gpu_operand(q, view4(q.layout())),
                gpu_operand(k, view4(k.layout())),
                gpu_operand(v, view4(v.layout())),
                attn_mask.map(|m| gpu_operand(m, mask_view(m, &s))),
                &o,
                &lse,
            )?;
            (Storage::Gpu(o), Storage::Gpu(lse))
        }
    };
    let dev = q.device();
    let lse = Tensor::from_storage(lse, lse_shape, DType::F32, dev, None);
    Ok(Tensor::from_storage(
        o,
        out_shape,
        DType::F32,
        dev,
        Some(Op::Attention {
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            mask: attn_mask.cloned(),
            lse,
            causal: is_causal,
            scale: s.scale,
        }),
    ))
}

/// The gradients of [`scaled_dot_product_attention`] for the inputs that need one, given its
/// output `o`, the saved log-sum-exp and the output gradient `dout`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    lse: &Tensor,
    causal: bool,
    scale: f32,
    o: &Tensor,
    dout: &Tensor,
) -> Result<Vec<(Tensor, Tensor)>> {
    let s = plan(q, k, v, mask, causal, Some(scale))?;
    let (o, lse) = (o.dense()?, lse.dense()?);
    let dev = q.device();
    let grad = |st: Storage, dims: [usize; 4], offset: usize| {
        let mut layout = Layout::contiguous(Shape::from(dims));
        layout.offset = offset;
        Tensor::from_parts(st, layout, DType::F32, dev.clone(), None)
    };
    let (dq_dims, dk_dims, dv_dims) = (
        [s.b, s.h, s.tq, s.d],
        [s.b, s.hkv, s.tk, s.d],
        [s.b, s.hkv, s.tk, s.dv],
    );
    let (dq, dk, dv) = match q.storage() {
        Storage::Cpu(_) => {
            let (qg, kg, vg, gg) = (read(q), read(k), read(v), read(dout));
            let (og, lg) = (read(&o), read(&lse));
            let mg = mask.map(read);
            let (dq, dk, dv) = cpu::backward(
                &s,
                (&qg, view4(q.layout())),
                (&kg, view4(k.layout())),
                (&vg, view4(v.layout())),
                mask.zip(mg.as_deref())
                    .map(|(m, g)| (&g[..], mask_view(m, &s))),
                &og[..o.numel()],
                &lg[..lse.numel()],
                (&gg, view4(dout.layout())),
            );
            (
                grad(Storage::cpu(dq), dq_dims, 0),
                grad(Storage::cpu(dk), dk_dims, 0),
                grad(Storage::cpu(dv), dv_dims, 0),
            )
        }
        Storage::Gpu(_) => {
            // dK and dV share one buffer (the dK/dV kernel has one output binding).
            let (nk, nv): (usize, usize) = (dk_dims.iter().product(), dv_dims.iter().product());
            let di = alloc_like(dev, &Shape::from([s.b, s.h, s.tq]), OP)?;
            let dq = alloc_like(dev, &Shape::from(dq_dims), OP)?;
            let dkv = alloc_like(dev, &Shape::from([nk + nv]), OP)?;
            let (Storage::Gpu(ob), Storage::Gpu(lb)) = (o.storage(), lse.storage()) else {
                unreachable!("devices checked")
            };
            gpu::backward(
                &s,
                gpu_operand(q, view4(q.layout())),
                gpu_operand(k, view4(k.layout())),
                gpu_operand(v, view4(v.layout())),
                mask.map(|m| gpu_operand(m, mask_view(m, &s))),
                (ob, lb),
                gpu_operand(dout, view4(dout.layout())),
                &di,
                &dq,
                &dkv,
            )?;
            (
                grad(Storage::Gpu(dq), dq_dims, 0),
                grad(Storage::Gpu(dkv.clone()), dk_dims, 0),
                grad(Storage::Gpu(dkv), dv_dims, nk),
            )
        }
    };
    let mut out = Vec::with_capacity(4);
    for (t, g) in [(q, dq), (k, dk), (v, dv)] {
        if t.requires_grad_flag() {
            out.push((t.clone(), g));
        }
    }
    if let Some(m) = mask.filter(|m| m.requires_grad_flag()) {
        out.push((m.clone(), mask_grad(&s, q, k, v, m, &lse, &o, dout)?));
    }
    Ok(out)
}

/// `dMask = dS = P ∘ (dO Vᵀ − rowsum(dO ∘ O))`, summed to the mask's shape. Composed from
/// tensor ops (it materialises the `Tq × Tk` matrices; only a mask that requires a gradient
/// pays for it).
#[allow(clippy::too_many_arguments)]
fn mask_grad(
    s: &Dims,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    lse: &Tensor,
    o: &Tensor,
    dout: &Tensor,
) -> Result<Tensor> {
    let g = s.h / s.hkv;
    // (B, Hkv, T, X) → (B, H, T, X): each K/V head repeated for its G query heads.
    let expand = |t: &Tensor| -> Result<Tensor> {
        if g == 1 {
            return Ok(t.clone());
        }
        let d = t.dims().to_vec();
        t.unsqueeze(2)?
            .broadcast_to([d[0], d[1], g, d[2], d[3]])?
            .reshape([d[0], s.h, d[2], d[3]])
    };
    let (k, v) = (expand(k)?, expand(v)?);
    let p = q
        .matmul(&k.transpose(-1, -2)?)?
        .mul_scalar(s.scale)?
        .add(mask)?
        .sub(&lse.unsqueeze(-1)?)?
        .exp()?;
    let dp = dout.matmul(&v.transpose(-1, -2)?)?;
    let di = dout.mul(o)?.sum(-1, true)?;
    p.mul(&dp.sub(&di)?)?.sum_to_shape(mask.shape())
}

/// Checks the inputs and resolves the sizes.
fn plan(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
    scale: Option<f32>,
) -> Result<Dims> {
    for t in [k, v].into_iter().chain(mask) {
        q.check_same_device(t, OP)?;
    }
    for t in [q, k, v].into_iter().chain(mask) {
        t.check_dtype(DType::F32, OP)?;
    }
    let shapes = || {
        format!(
            "q {:?}, k {:?}, v {:?}{}",
            q.dims(),
            k.dims(),
            v.dims(),
            mask.map_or(String::new(), |m| format!(", attn_mask {:?}", m.dims()))
        )
    };
    let bad = |what: &str| Err(Error::invalid(OP, format!("{what} ({})", shapes())));
    if [q, k, v].iter().any(|t| t.rank() != 4) {
        return bad("q, k and v must have rank 4: (batch, heads, length, head dim)");
    }
    let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
    if qd[0] != kd[0] || kd[0] != vd[0] {
        return bad("batch sizes differ");
    }
    if kd[1] != vd[1] {
        return bad("k and v have different head counts");
    }
    if kd[1] == 0 || qd[1] % kd[1] != 0 {
        return bad("the K/V head count must divide the query head count");
    }
    if qd[3] != kd[3] {
        return bad("q and k head dims differ");
    }
    if kd[2] != vd[2] {
        return bad("k and v have different lengths");
    }
    let (b, h, tq, tk) = (qd[0], qd[1], qd[2], kd[2]);
    if let Some(m) = mask {
        if causal {
            return bad("attn_mask and is_causal cannot both be set (as in PyTorch)");
        }
        let full = Shape::from([b, h, tq, tk]);
        let fits = m.rank() <= 4 && m.shape().broadcast(&full, OP).is_ok_and(|s| s == full);
        if !fits {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: m.dims().to_vec(),
                rhs: full.dims().to_vec(),
            });
        }
    }
    Ok(Dims {
        b,
        h,
        hkv: kd[1],
        tq,
        tk,
        d: qd[3],
        dv: vd[3],
        scale: scale.unwrap_or(1.0 / (qd[3] as f32).sqrt()),
        causal,
    })
}

/// A GPU tensor's buffer with a view.
fn gpu_operand(t: &Tensor, view: View4) -> gpu::Operand<'_> {
    match t.storage() {
        Storage::Gpu(b) => (b, view),
        Storage::Cpu(_) => unreachable!("wgml bug: GPU launch on a CPU tensor"),
    }
}

/// A read guard on a CPU tensor's storage.
fn read(t: &Tensor) -> std::sync::RwLockReadGuard<'_, crate::cpu::alloc::CpuBuf> {
    match t.storage() {
        Storage::Cpu(d) => d.read().unwrap(),
        Storage::Gpu(_) => unreachable!("wgml bug: CPU read of a GPU tensor"),
    }
}

fn view4(l: &Layout) -> View4 {
    View4 {
        off: l.offset,
        s: [l.strides[0], l.strides[1], l.strides[2], l.strides[3]],
    }
}

/// The mask's view broadcast to `(B, H, Tq, Tk)` (stride 0 along broadcast dims).
fn mask_view(m: &Tensor, s: &Dims) -> View4 {
    view4(
        &m.layout()
            .broadcast_to(&Shape::from([s.b, s.h, s.tq, s.tk])),
    )
}
