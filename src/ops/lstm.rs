//! `Tensor::lstm`: one LSTM layer over a whole sequence, recorded as one op with one backward.
//!
//! Why one op per layer and sequence, not one per cell step: the input projection of all T
//! steps is then one large matmul, the per-step work is only `h·W_hhᵀ` plus one fused cell
//! pass, and backward through time can gather the weight gradients of all steps into a few
//! large matmuls (`dW_hh = Σ_t dz_tᵀ h_{t-1}` as one `[4H, T·B]×[T·B, H]` product) instead of
//! T small ones and T graph nodes. The op's single result packs `[h_1..h_T, c_T]` as
//! `[T + 1, B, H]`; the outputs the caller sees are views of it, so autograd sums their
//! gradients into it. The saved gate activations and cell states stay on the device.

use crate::cpu::lstm::{self as cpu, Dims};
use crate::gpu::buffer::GpuBuffer;
use crate::gpu::lstm as gpu;
use crate::op::Op;
use crate::shape::Shape;
use crate::tensor::Storage;
use crate::{backprop, DType, Error, Result, Tensor};

const OP: &str = "lstm";

#[derive(Clone)]
/// What `Op::Lstm` keeps: the seven inputs (dense) and what the forward pass saved.
pub(crate) struct LstmSaved {
    /// x, h0, c0, w_ih, w_hh, b_ih, b_hh
    inputs: [Tensor; 7],
    /// `[T, B, 4H]` gate activations.
    gates: Tensor,
    /// `[T + 1, B, H]`: c_0..c_T.
    cs: Tensor,
    dims: Dims,
    /// Per-row lengths of a variable-length layer (see [`Tensor::lstm_lengths`]), and on a
    /// GPU the same as a U32 `[B]` tensor for the backward kernels.
    lengths: Option<(Vec<usize>, Option<Tensor>)>,
}

impl LstmSaved {
    /// The op's parents: x, h0, c0, w_ih, w_hh, b_ih, b_hh.
    pub(crate) fn inputs(&self) -> [&Tensor; 7] {
        let i = &self.inputs;
        [&i[0], &i[1], &i[2], &i[3], &i[4], &i[5], &i[6]]
    }
}

/// The shapes of one call, checked: `x [T, B, I]`, `h0, c0 [B, H]`, `w_ih [4H, I]`,
/// `w_hh [4H, H]`, `b_ih, b_hh [4H]`.
fn check(ts: &[&Tensor; 7]) -> Result<Dims> {
    let [x, h0, c0, w_ih, w_hh, b_ih, b_hh] = *ts;
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
    if w_hh.rank() != 2 || w_hh.dims()[0] != 4 * w_hh.dims()[1] || w_hh.dims()[1] == 0 {
        return Err(Error::invalid(
            OP,
            format!(
                "weight_hh must be [4H, H] with H > 0, got {:?}",
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
    want("weight_ih [4H, I]", w_ih, &[4 * h, i])?;
    want("bias_ih [4H]", b_ih, &[4 * h])?;
    want("bias_hh [4H]", b_hh, &[4 * h])?;
    want("h0 [B, H]", h0, &[b, h])?;
    want("c0 [B, H]", c0, &[b, h])?;
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
    /// One LSTM layer over a sequence with PyTorch's equations and gate order (i, f, g, o):
    /// for each step `z = x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh`, `c_t = σ(z_f)·c_{t-1} +
    /// σ(z_i)·tanh(z_g)`, `h_t = σ(z_o)·tanh(c_t)`.
    ///
    /// `self` is the input `[T, B, I]`; `h0`, `c0` are `[B, H]`; `w_ih [4H, I]`,
    /// `w_hh [4H, H]`, `b_ih`, `b_hh [4H]` (the layout of `torch.nn.LSTM`'s parameters).
    /// Returns `(output [T, B, H], h_T [B, H], c_T [B, H])`. Gradients flow to all seven inputs.
    /// One recorded op: the forward pass is one matmul for the input projection of all steps,
    /// then per step one matmul and one fused cell kernel; see `src/ops/lstm.rs`.
    ///
    /// Errors: [`Error::Invalid`] naming the shapes when they do not fit together (rank of the
    /// input not 3, wrong input size, state of the wrong shape), [`Error::Empty`],
    /// [`Error::DeviceMismatch`], [`Error::DType`].
    pub fn lstm(
        &self,
        h0: &Tensor,
        c0: &Tensor,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b_ih: &Tensor,
        b_hh: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.lstm_lengths(h0, c0, w_ih, w_hh, b_ih, b_hh, None)
    }

    /// [`Tensor::lstm`] for the variable-length layers of `nn::Lstm`: with `lengths` (one per
    /// batch row, each in `1..=T`, else [`Error::Invalid`]) the returned cell state is each
    /// row's `c` after its own last step `lengths[b] − 1`. The outputs and `h_T` are those of
    /// all T steps; the caller masks the outputs and gathers each row's last `h` from them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lstm_lengths(
        &self,
        h0: &Tensor,
        c0: &Tensor,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b_ih: &Tensor,
        b_hh: &Tensor,
        lengths: Option<&[usize]>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let d = check(&[self, h0, c0, w_ih, w_hh, b_ih, b_hh])?;
        if let Some(l) = lengths {
            if l.len() != d.b || l.iter().any(|&l| l == 0 || l > d.t) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "lengths {l:?} must be one in 1..={} per row of {:?}",
                        d.t,
                        self.dims()
                    ),
                ));
            }
        }
        let dense = [self, h0, c0, w_ih, w_hh, b_ih, b_hh].map(|t| t.contiguous());
        let [x, h0, c0, w_ih, w_hh, b_ih, b_hh] = match dense {
            [Ok(a), Ok(b), Ok(c), Ok(e), Ok(f), Ok(g), Ok(h)] => [a, b, c, e, f, g, h],
            other => return Err(other.into_iter().find_map(|r| r.err()).unwrap()),
        };
        let g = 4 * d.h;
        let mut lens_dev = None;
        let (out, gates, cs) = match x.storage() {
            Storage::Cpu(_) => {
                let f = with_cpu(&[&x, &h0, &c0, &w_ih, &w_hh, &b_ih, &b_hh], |s| {
                    cpu::forward(d, s[0], s[1], s[2], s[3], s[4], s[5], s[6], lengths)
                });
                (
                    Storage::cpu(f.out),
                    Storage::cpu(f.gates),
                    Storage::cpu(f.cs),
                )
            }
            Storage::Gpu(_) => {
                let zx = backprop::no_grad(|| {
                    x.reshape([d.t * d.b, d.i])?
                        .matmul(&w_ih.t()?)?
                        .contiguous()
                })?;
                let [out, gates, cs] = gpu::forward(
                    d,
                    at(&zx).0,
                    at(&h0),
                    at(&c0),
                    at(&w_hh),
                    at(&b_ih),
                    at(&b_hh),
                )?;
                if let Some(l) = lengths {
                    let dev = x.device();
                    let rows: Vec<u32> = (0..d.b).map(|r| (l[r] * d.b + r) as u32).collect();
                    let rows = Tensor::from_indices(&rows, [d.b], dev)?;
                    gpu::last_cells(d, &out, &cs, &rows)?;
                    let l: Vec<u32> = l.iter().map(|&v| v as u32).collect();
                    lens_dev = Some(Tensor::from_indices(&l, [d.b], dev)?);
                }
                (Storage::Gpu(out), Storage::Gpu(gates), Storage::Gpu(cs))
            }
        };
        let dev = self.device();
        let hb = Shape::from([d.t + 1, d.b, d.h]);
        let saved = LstmSaved {
            gates: Tensor::from_storage(gates, Shape::from([d.t, d.b, g]), DType::F32, dev, None),
            cs: Tensor::from_storage(cs, hb.clone(), DType::F32, dev, None),
            inputs: [x, h0, c0, w_ih, w_hh, b_ih, b_hh],
            dims: d,
            lengths: lengths.map(|l| (l.to_vec(), lens_dev)),
        };
        let packed =
            Tensor::from_storage(out, hb, DType::F32, dev, Some(Op::Lstm(Box::new(saved))));
        Ok((
            packed.narrow(0, 0, d.t)?,
            packed.narrow(0, d.t - 1, 1)?.squeeze(0)?,
            packed.narrow(0, d.t, 1)?.squeeze(0)?,
        ))
    }
}

/// The gradients `Op::Lstm` sends to its inputs, given its packed result `y [T + 1, B, H]`
/// and that result's gradient `dy`.
pub(crate) fn lstm_backward(
    s: &LstmSaved,
    y: &Tensor,
    dy: &Tensor,
) -> Result<Vec<(Tensor, Tensor)>> {
    let d = s.dims;
    let g = 4 * d.h;
    let [x, h0, _c0, w_ih, w_hh, _b_ih, _b_hh] = &s.inputs;
    let dy = dy.contiguous()?;
    let dev = y.device();
    // Gradients in the order of `inputs`: x, h0, c0, w_ih, w_hh, b (for both biases).
    let [dx, dh0, dc0, dw_ih, dw_hh, db]: [Tensor; 6] = match dy.storage() {
        Storage::Cpu(_) => {
            let gr = with_cpu(&[&dy, x, h0, y, &s.gates, &s.cs, w_ih, w_hh], |v| {
                let l = s.lengths.as_ref().map(|(l, _)| &l[..]);
                cpu::backward(d, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], l)
            });
            let t = |v: Vec<f32>, dims: &[usize]| {
                Tensor::from_storage(Storage::cpu(v), Shape::from(dims), DType::F32, dev, None)
            };
            [
                t(gr.dx, x.dims()),
                t(gr.dh0, h0.dims()),
                t(gr.dc0, h0.dims()),
                t(gr.dw_ih, w_ih.dims()),
                t(gr.dw_hh, w_hh.dims()),
                t(gr.db, &[g]),
            ]
        }
        Storage::Gpu(_) => {
            let lens = s
                .lengths
                .as_ref()
                .and_then(|(_, t)| t.as_ref())
                .map(|t| at(t).0);
            let [dz, dh0, dc0] =
                gpu::backward(d, at(&dy), at(&s.gates).0, at(&s.cs).0, at(w_hh), lens)?;
            let t = |b, dims: &[usize]| {
                Tensor::from_storage(Storage::Gpu(b), Shape::from(dims), DType::F32, dev, None)
            };
            let dz = t(dz, &[d.t * d.b, g]);
            let rows = |a: &Tensor, n: usize| a.reshape([d.t * d.b, n]);
            // h_0..h_{T-1}, the states each step's W_hh multiplied.
            let hprev = if d.t == 1 {
                h0.clone()
            } else {
                Tensor::cat(&[&h0.unsqueeze(0)?, &y.narrow(0, 0, d.t - 1)?], 0)?
            };
            [
                dz.matmul(w_ih)?.reshape(x.dims())?,
                t(dh0, h0.dims()),
                t(dc0, h0.dims()),
                dz.t()?.matmul(&rows(x, d.i)?)?,
                dz.t()?.matmul(&rows(&hprev, d.h)?)?,
                dz.sum(0, false)?,
            ]
        }
    };
    let grads = [dx, dh0, dc0, dw_ih, dw_hh, db.clone(), db];
    Ok(s.inputs
        .iter()
        .zip(grads)
        .filter(|(p, _)| p.requires_grad_flag())
        .map(|(p, g)| (p.clone(), g))
        .collect())
}
