//! What stacked, bidirectional and variable-length `Lstm` and `Gru` layers share, composed
//! around their fused one-layer ops: the state checks, the per-sequence time reversal, the
//! padding mask and the gather of each sequence's last valid step.

use super::{Dropout, Module};
use crate::{Device, Error, Result, Tensor};

/// Per-sequence lengths of a padded batch `[T, B, ·]`, as index tensors on the batch's device.
pub(crate) struct Lengths {
    /// `[T·B]` U32: row `t·B + b` ↦ `(len_b − 1 − t)·B + b` for `t < len_b`, else itself. It
    /// reverses every sequence within its own length and is its own inverse.
    /// `None` for a one-directional stack of full-length sequences, which never reverses.
    reverse: Option<Tensor>,
    /// `[T, B, 1]`: 1 where `t < len_b`, else 0. `None` when every length is T.
    mask: Option<Tensor>,
    /// The lengths when some sequence is shorter than T.
    lengths: Option<Vec<usize>>,
    /// `[B]` U32: row `(len_b − 1)·B + b` of a `[T·B, H]` view (each sequence's last step).
    /// `None` when every length is T.
    last: Option<Tensor>,
}

impl Lengths {
    /// The index tensors for `lengths` (`None`: every sequence has length T) of a time-major
    /// `[T, B, ·]` input of shape `x` (with the reversal only when `bidirectional`). Errors
    /// (naming `op` and the shape) when there is not one length per sequence or a length is 0
    /// or more than T.
    pub(crate) fn new(
        op: &'static str,
        lengths: Option<&[usize]>,
        x: &[usize],
        bidirectional: bool,
        device: &Device,
    ) -> Result<Lengths> {
        let (t, b) = (x[0], x[1]);
        let full = vec![t; b];
        let lens = lengths.unwrap_or(&full);
        if lens.len() != b {
            return Err(Error::invalid(
                op,
                format!(
                    "lengths must give one length per sequence: {} lengths for batch size {b} \
                     (input [T, B, I] = {x:?})",
                    lens.len()
                ),
            ));
        }
        if let Some((i, &l)) = lens.iter().enumerate().find(|(_, &l)| l == 0 || l > t) {
            return Err(Error::invalid(
                op,
                format!(
                    "lengths[{i}] = {l} must be in 1..={t} (input [T, B, I] = {x:?}), lengths {lens:?}"
                ),
            ));
        }
        let mut reverse = Vec::with_capacity(t * b);
        let mut mask = Vec::with_capacity(t * b);
        for s in 0..t {
            for (j, &l) in lens.iter().enumerate() {
                let src = if s < l { l - 1 - s } else { s };
                reverse.push((src * b + j) as u32);
                mask.push(if s < l { 1.0 } else { 0.0 });
            }
        }
        let last: Vec<u32> = lens
            .iter()
            .enumerate()
            .map(|(j, &l)| ((l - 1) * b + j) as u32)
            .collect();
        let padded = lens.iter().any(|&l| l != t);
        Ok(Lengths {
            reverse: match bidirectional {
                true => Some(Tensor::from_indices(&reverse, [t * b], device)?),
                false => None,
            },
            mask: match padded {
                true => Some(Tensor::from_vec(mask, [t, b, 1], device)?),
                false => None,
            },
            lengths: padded.then(|| lens.to_vec()),
            last: match padded {
                true => Some(Tensor::from_indices(&last, [b], device)?),
                false => None,
            },
        })
    }

    /// The per-sequence lengths when some sequence is shorter than T, else `None`.
    pub(crate) fn lengths(&self) -> Option<&[usize]> {
        self.lengths.as_deref()
    }

    /// `x [T, B, F]` with every sequence reversed within its own length (padding stays put).
    pub(crate) fn reverse(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.dims().to_vec();
        x.reshape([d[0] * d[1], d[2]])?
            .index_select(
                0,
                self.reverse.as_ref().expect("wgml bug: no reversal built"),
            )?
            .reshape(d)
    }

    /// `y [T, B, H]` with padded steps zeroed.
    pub(crate) fn mask(&self, y: &Tensor) -> Result<Tensor> {
        match &self.mask {
            Some(m) => y.mul(m),
            None => Ok(y.clone()),
        }
    }

    /// Each sequence's last valid step of `y [T, B, H]` (`[B, H]`); `None` when no sequence
    /// is padded (the op's own final state is then the right one).
    pub(crate) fn last(&self, y: &Tensor) -> Result<Option<Tensor>> {
        let Some(last) = &self.last else {
            return Ok(None);
        };
        let d = y.dims();
        y.reshape([d[0] * d[1], d[2]])?
            .index_select(0, last)
            .map(Some)
    }
}

/// The input `[T, B, F]` of a stack (transposed from `[B, T, F]` when `batch_first`), checked
/// against `features`.
pub(crate) fn time_major(
    op: &'static str,
    x: &Tensor,
    features: usize,
    batch_first: bool,
) -> Result<Tensor> {
    if x.rank() != 3 || x.dims()[2] != features {
        return Err(Error::invalid(
            op,
            format!(
                "input must be {} with I = {features}, got shape {:?}",
                if batch_first {
                    "[B, T, I]"
                } else {
                    "[T, B, I]"
                },
                x.dims()
            ),
        ));
    }
    if batch_first {
        x.transpose(0, 1)
    } else {
        Ok(x.clone())
    }
}

/// Checks an initial state `name` against `[layers·directions, B, H]`.
pub(crate) fn check_state(
    op: &'static str,
    name: &str,
    s: &Tensor,
    want: [usize; 3],
    x: &Tensor,
) -> Result<()> {
    if s.dims() == want {
        return Ok(());
    }
    Err(Error::invalid(
        op,
        format!(
            "{name} must be [num_layers·num_directions, B, H] = {want:?} for input {:?} \
             ([T, B, I]), got {:?}",
            x.dims(),
            s.dims()
        ),
    ))
}

/// One layer·direction of a stack: `(layer, direction, x [T, B, F], initial states [B, H]
/// each)` → `(output [T, B, H], final states [B, H] each)`, the finals taken at each
/// sequence's last valid step when `lengths` is padded.
pub(crate) type Cell<'a> =
    dyn FnMut(usize, usize, &Tensor, Vec<Tensor>, &Lengths) -> Result<(Tensor, Vec<Tensor>)> + 'a;

/// Runs a stack of `layers` × `dirs` (1 or 2) recurrent layers over `x [T, B, F]` (time
/// major) from `states` (each `[layers·dirs, B, H]`; zeros when `None`, with `nstates` of
/// them), with dropout between layers. The reverse direction reads every sequence backwards
/// from its own last step; padded steps give zero outputs. Returns the last layer's output
/// `[T, B, dirs·H]` and the final states, each `[layers·dirs, B, H]`, in PyTorch's order
/// (index `layer·dirs + direction`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_stack(
    x: Tensor,
    (layers, dirs, h, nstates): (usize, usize, usize, usize),
    states: Option<&[Tensor]>,
    lengths: &Lengths,
    dropout: Option<&Dropout>,
    cell: &mut Cell<'_>,
) -> Result<(Tensor, Vec<Tensor>)> {
    let b = x.dims()[1];
    let zeros = match states {
        None => Some(Tensor::zeros([b, h], x.device())?),
        Some(_) => None,
    };
    let mut y = x;
    let mut finals: Vec<Vec<Tensor>> = vec![Vec::with_capacity(layers * dirs); nstates];
    for l in 0..layers {
        let mut outs = Vec::with_capacity(dirs);
        for dir in 0..dirs {
            let k = l * dirs + dir;
            let init = match states {
                Some(s) => s
                    .iter()
                    .map(|s| s.narrow(0, k, 1)?.squeeze(0))
                    .collect::<Result<Vec<_>>>()?,
                None => vec![zeros.clone().unwrap(); nstates],
            };
            let input = if dir == 1 {
                lengths.reverse(&y)?
            } else {
                y.clone()
            };
            let (out, fin) = cell(l, dir, &input, init, lengths)?;
            let out = if dir == 1 {
                lengths.reverse(&out)?
            } else {
                out
            };
            outs.push(lengths.mask(&out)?);
            for (f, s) in finals.iter_mut().zip(fin) {
                f.push(s.unsqueeze(0)?);
            }
        }
        y = match outs.len() {
            1 => outs.pop().unwrap(),
            _ => Tensor::cat(&outs.iter().collect::<Vec<_>>(), 2)?,
        };
        if let Some(d) = dropout.filter(|_| l + 1 < layers) {
            y = d.forward(&y)?;
        }
    }
    let finals = finals
        .iter()
        .map(|v| match v.len() {
            1 => Ok(v[0].clone()),
            _ => Tensor::cat(&v.iter().collect::<Vec<_>>(), 0),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((y, finals))
}
