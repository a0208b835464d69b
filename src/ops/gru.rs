//! `Tensor::gru`: one GRU layer over a whole sequence, recorded as one op with one backward.
//!
//! As for `Tensor::lstm` (see `src/ops/lstm.rs` for why one op per layer and sequence): the
//! input projection of all T steps is one matmul, each step is one `h·W_hhᵀ` product and one
//! fused cell pass (or, on a GPU with H ≤ 256, the whole recurrence is one dispatch), and the
//! weight gradients are a few large matmuls over all steps. The GRU keeps `W_hn·h + b_hn` apart
//! from the input part because `r` multiplies it. The op's single result packs `[h_0..h_T]`
//! as `[T + 1, B, H]` (row 0 is a copy of h0, so every step's previous state is a row of it);
//! the outputs the caller sees are views of rows 1..=T.

use crate::cpu::gru as cpu;
use crate::cpu::lstm::Dims;
use crate::gpu::buffer::GpuBuffer;
use crate::gpu::gru as gpu;
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::Storage;
use crate::{backprop, DType, Error, Result, Tensor};

const OP: &str = "gru";

#[derive(Clone)]
/// What `Op::Gru` keeps: the six inputs (dense) and what the forward pass saved.
pub(crate) struct GruSaved {
    /// x, h0, w_ih, w_hh, b_ih, b_hh
    inputs: [Tensor; 6],
    /// `[T, B, 4H]`: r, z, n and `W_hn·h_{t-1} + b_hn` of every step.
    saved: Tensor,
    dims: Dims,
}

impl GruSaved {
    /// The op's parents: x, h0, w_ih, w_hh, b_ih, b_hh.
    pub(crate) fn inputs(&self) -> [&Tensor; 6] {
        let i = &self.inputs;
        [&i[0], &i[1], &i[2], &i[3], &i[4], &i[5]]
    }
}

/// The shapes of one call, checked: `x [T, B, I]`, `h0 [B, H]`, `w_ih [3H, I]`,
/// `w_hh [3H, H]`, `b_ih, b_hh [3H]`.
fn check(ts: &[&Tensor; 6]) -> Result<Dims> {
    let [x, h0, w_ih, w_hh, b_ih, b_hh] = *ts;
    if x.rank() != 3 {
        return Err(Error::invalid(
            OP,
            format!(
                "the input must have rank 3 ([T, B, I]), got shape {:?}",
                x.dims()
            ),
        ));
    }
    let (t, b, i) = (x.dims()[0], x.dims()[1], x.dims()[2]);
    if w_hh.rank() != 2 || w_hh.dims()[0] != 3 * w_hh.dims()[1] || w_hh.dims()[1] == 0 {
        return Err(Error::invalid(
            OP,
            format!(
                "weight_hh must be [3H, H] with H > 0, got {:?}",
                w_hh.dims()
            ),
        ));
    }
    let h = w_hh.dims()[1];
    let want = |name: &str, t: &Tensor, dims: &[usize]| -> Result<()> {
        if t.dims() == dims {
            Ok(())
        } else {
            Err(Error::invalid(
                OP,
                format!(
                    "{name} must be {dims:?} for input {:?} and hidden size {h}, got {:?}",
                    x.dims(),
                    t.dims()
                ),
            ))
        }
    };
    want("weight_ih [3H, I]", w_ih, &[3 * h, i])?;
    want("bias_ih [3H]", b_ih, &[3 * h])?;
    want("bias_hh [3H]", b_hh, &[3 * h])?;
    want("h0 [B, H]", h0, &[b, h])?;
    if t == 0 || b == 0 || i == 0 {
        return Err(Error::Empty {
            op: OP,
            shape: x.dims().to_vec(),
        });
    }
    for other in &ts[1..] {
        x.check_same_device(other, OP)?;
    }
    for one in ts {
        one.check_dtype(DType::F32, OP)?;
    }
    Ok(Dims { t, b, i, h })
}

/// A dense tensor's buffer and the offset of its first element.
fn at(t: &Tensor) -> (&GpuBuffer, usize) {
    match t.storage() {
        Storage::Gpu(b) => (b, t.layout().offset),
        Storage::Cpu(_) => unreachable!("wgml bug: CPU tensor on the GPU path"),
    }
}

/// Runs `f` on the elements of dense CPU tensors.
fn with_cpu<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> R {
    let guards: Vec<_> = ts
        .iter()
        .map(|t| match t.storage() {
            Storage::Cpu(s) => s.read().unwrap(),
            Storage::Gpu(_) => unreachable!("wgml bug: GPU tensor on the CPU path"),
        })
        .collect();
    let slices: Vec<&[f32]> = ts
        .iter()
        .zip(&guards)
        .map(|(t, g)| &g[t.layout().offset..t.layout().offset + t.numel()])
        .collect();
    f(&slices)
}

impl Tensor {
    /// One GRU layer over a sequence with PyTorch's equations and gate order (r, z, n): for
    /// each step `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
    /// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
    ///
    /// `self` is the input `[T, B, I]`; `h0` is `[B, H]`; `w_ih [3H, I]`, `w_hh [3H, H]`,
    /// `b_ih`, `b_hh [3H]` (the layout of `torch.nn.GRU`'s parameters). Returns
    /// `(output [T, B, H], h_T [B, H])`. Gradients flow to all six inputs. One recorded op:
    /// the forward pass is one matmul for the input projection of all steps, then the
    /// recurrence (one dispatch on a GPU for H ≤ 256, else per step one matmul and one fused
    /// cell kernel); see `src/ops/gru.rs`.
    ///
    /// Errors: [`Error::Invalid`] naming the shapes when they do not fit together (rank of the
    /// input not 3, wrong input size, state or weights of the wrong shape), [`Error::Empty`],
    /// [`Error::DeviceMismatch`], [`Error::DType`].
    pub fn gru(
        &self,
        h0: &Tensor,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b_ih: &Tensor,
        b_hh: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let d = check(&[self, h0, w_ih, w_hh, b_ih, b_hh])?;
        let dense = [self, h0, w_ih, w_hh, b_ih, b_hh].map(|t| t.contiguous());
        let [x, h0, w_ih, w_hh, b_ih, b_hh] = match dense {
            [Ok(a), Ok(b), Ok(c), Ok(e), Ok(f), Ok(g)] => [a, b, c, e, f, g],
            other => return Err(other.into_iter().find_map(|r| r.err()).unwrap()),
        };
        let (hs, saved) = match x.storage() {
            Storage::Cpu(_) => {
                let f = with_cpu(&[&x, &h0, &w_ih, &w_hh, &b_ih, &b_hh], |s| {
                    cpu::forward(d, s[0], s[1], s[2], s[3], s[4], s[5])
                });
                (Storage::cpu(f.hs), Storage::cpu(f.saved))
            }
            Storage::Gpu(_) => {
                let gx = backprop::no_grad(|| {
                    x.reshape([d.t * d.b, d.i])?
                        .matmul(&w_ih.t()?)?
                        .contiguous()
                })?;
                let [hs, saved] =
                    gpu::forward(d, at(&gx), at(&h0), at(&w_hh), at(&b_ih), at(&b_hh))?;
                (Storage::Gpu(hs), Storage::Gpu(saved))
            }
        };
        let dev = self.device();
        let saved = GruSaved {
            saved: Tensor::from_storage(
                saved,
                Shape::from([d.t, d.b, 4 * d.h]),
                DType::F32,
                dev,
                None,
            ),
            inputs: [x, h0, w_ih, w_hh, b_ih, b_hh],
            dims: d,
        };
        let packed = Tensor::from_storage(
            hs,
            Shape::from([d.t + 1, d.b, d.h]),
            DType::F32,
            dev,
            Some(Op::Gru(Box::new(saved))),
        );
        Ok((
            packed.narrow(0, 1, d.t)?,
            packed.narrow(0, d.t, 1)?.squeeze(0)?,
        ))
    }
}

/// The gradients `Op::Gru` sends to its inputs, given its packed result `y [T + 1, B, H]`
/// (h_0..h_T) and that result's gradient `dy`.
pub(crate) fn gru_backward(s: &GruSaved, y: &Tensor, dy: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
    let d = s.dims;
    let g = 3 * d.h;
    let [x, h0, w_ih, w_hh, _b_ih, _b_hh] = &s.inputs;
    let dy = dy.contiguous()?;
    let dev = y.device();
    // Gradients in the order of `inputs`.
    let grads: [Tensor; 6] = match dy.storage() {
        Storage::Cpu(_) => {
            let gr = with_cpu(&[&dy, x, y, &s.saved, w_ih, w_hh], |v| {
                cpu::backward(d, v[0], v[1], v[2], v[3], v[4], v[5])
            });
            let t = |v: Vec<f32>, dims: &[usize]| {
                Tensor::from_storage(Storage::cpu(v), Shape::from(dims), DType::F32, dev, None)
            };
            [
                t(gr.dx, x.dims()),
                t(gr.dh0, h0.dims()),
                t(gr.dw_ih, w_ih.dims()),
                t(gr.dw_hh, w_hh.dims()),
                t(gr.db_ih, &[g]),
                t(gr.db_hh, &[g]),
            ]
        }
        Storage::Gpu(_) => {
            let y = y.contiguous()?;
            let [dgi, dgh, dh0] = gpu::backward(d, at(&dy), at(&s.saved).0, at(&y), at(w_hh))?;
            let t = |b, dims: &[usize]| {
                Tensor::from_storage(Storage::Gpu(b), Shape::from(dims), DType::F32, dev, None)
            };
            let (dgi, dgh) = (t(dgi, &[d.t * d.b, g]), t(dgh, &[d.t * d.b, g]));
            // h_0..h_{T-1}, the states each step's W_hh multiplied.
            let hprev = y.narrow(0, 0, d.t)?.reshape([d.t * d.b, d.h])?;
            [
                dgi.matmul(w_ih)?.reshape(x.dims())?,
                t(dh0, h0.dims()),
                dgi.t()?.matmul(&x.reshape([d.t * d.b, d.i])?)?,
                dgh.t()?.matmul(&hprev)?,
                dgi.sum(0, false)?,
                dgh.sum(0, false)?,
            ]
        }
    };
    Ok(s.inputs
        .iter()
        .zip(grads)
        .filter(|(p, _)| p.requires_grad_flag())
        .map(|(p, g)| (p.clone(), g))
        .collect())
}
