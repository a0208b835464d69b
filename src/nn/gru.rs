//! `Gru` (stacked, optionally bidirectional layers over a sequence, with variable lengths) and
//! `GruCell` (one step), with PyTorch's parameter names, shapes and initialisation; both run
//! on the fused op `Tensor::gru`.

use super::init::Init;
use super::rnn::{self, Lengths};
use super::{Dropout, Module};
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// Options of [`Gru`] beyond the sizes.
#[derive(Clone, Copy, Debug, Default)]
pub struct GruConfig {
    /// Input and output are `[B, T, ·]` instead of `[T, B, ·]` (the state stays
    /// `[L·D, B, H]`).
    pub batch_first: bool,
    /// Dropout probability on the outputs of every layer but the last, in training mode.
    pub dropout: f32,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// A second direction per layer reading every sequence backwards (`_reverse` parameters);
    /// outputs are `[T, B, 2H]` and states `[2·num_layers, B, H]`.
    pub bidirectional: bool,
}

/// The four parameters of one layer·direction (or of a cell), in PyTorch's layout.
#[derive(Clone)]
struct Weights {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

impl Weights {
    /// PyTorch's initialisation: every parameter uniform in `±1/√H`.
    fn new(input: usize, hidden: usize, rng: &mut Rng, device: &Device) -> Result<Weights> {
        let k = 1.0 / (hidden.max(1) as f32).sqrt();
        let mut u = |dims: &[usize]| -> Result<Tensor> {
            Ok(Init::Uniform(-k, k)
                .tensor(dims.to_vec(), rng, device)?
                .requires_grad())
        };
        Ok(Weights {
            w_ih: u(&[3 * hidden, input])?,
            w_hh: u(&[3 * hidden, hidden])?,
            b_ih: u(&[3 * hidden])?,
            b_hh: u(&[3 * hidden])?,
        })
    }

    fn named(&self, suffix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("weight_ih{suffix}"), self.w_ih.clone()),
            (format!("weight_hh{suffix}"), self.w_hh.clone()),
            (format!("bias_ih{suffix}"), self.b_ih.clone()),
            (format!("bias_hh{suffix}"), self.b_hh.clone()),
        ]
    }

    fn run(&self, x: &Tensor, h0: &Tensor) -> Result<(Tensor, Tensor)> {
        x.gru(h0, &self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh)
    }
}

/// A stack of GRU layers over a sequence, as `torch.nn.GRU`: parameters `weight_ih_l{k}
/// [3H, I or D·H]`, `weight_hh_l{k} [3H, H]`, `bias_ih_l{k}`, `bias_hh_l{k} [3H]` (and the same
/// with a `_reverse` suffix when bidirectional, D = 2), gates in the order (r, z, n). Each
/// layer·direction is one fused op (see [`Tensor::gru`]).
pub struct Gru {
    /// `layers[l][d]`: layer l, direction d (0 forward, 1 reverse).
    layers: Vec<Vec<Weights>>,
    input_size: usize,
    hidden_size: usize,
    batch_first: bool,
    dropout: Option<Dropout>,
}

impl Gru {
    /// `num_layers` layers of `hidden_size` units reading `input_size` features, initialised
    /// as PyTorch does (uniform in `±1/√hidden_size`), drawn from `rng` in parameter order.
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        config: GruConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Gru> {
        if input_size == 0 || hidden_size == 0 || num_layers == 0 {
            return Err(Error::invalid(
                "Gru",
                format!(
                    "sizes must be positive: input {input_size}, hidden {hidden_size}, layers {num_layers}"
                ),
            ));
        }
        let dirs = if config.bidirectional { 2 } else { 1 };
        let layers = (0..num_layers)
            .map(|l| {
                let i = if l == 0 {
                    input_size
                } else {
                    dirs * hidden_size
                };
                (0..dirs)
                    .map(|_| Weights::new(i, hidden_size, rng, device))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let dropout = if config.dropout > 0.0 && num_layers > 1 {
            Some(Dropout::new(config.dropout, config.seed)?)
        } else {
            None
        };
        Ok(Gru {
            layers,
            input_size,
            hidden_size,
            batch_first: config.batch_first,
            dropout,
        })
    }

    /// Input features per step.
    pub fn input_size(&self) -> usize {
        self.input_size
    }
    /// Hidden units per layer and direction.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    /// Number of stacked layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    /// 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        self.layers[0].len()
    }

    /// Runs the stack over `x` (`[T, B, I]`, or `[B, T, I]` when batch-first) from `h0`
    /// (`[num_layers·D, B, H]`, D = 2 when bidirectional; zeros when `None`). Returns the last
    /// layer's outputs `[T, B, D·H]` (or `[B, T, D·H]`; the forward direction's units first,
    /// as PyTorch) and the final state `h_n [num_layers·D, B, H]` (index `layer·D + direction`).
    /// Gradients flow to the input, the state and every parameter.
    ///
    /// Errors name the shapes: an input whose rank is not 3 or whose last dim is not
    /// `input_size`, or a state that is not `[num_layers·D, B, H]`.
    pub fn forward(&self, x: &Tensor, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.run(x, h0, None)
    }

    /// [`Gru::forward`] over a padded batch: sequence `b` has `lengths[b]` valid steps (the
    /// first ones; the rest are padding), as PyTorch's packed sequences. Padded steps neither
    /// update the state (`h_n` is each sequence's state after its own last step) nor reach
    /// the reverse direction (which starts at step `lengths[b] − 1`), and their outputs are
    /// zero. Errors, besides [`Gru::forward`]'s: not one length per sequence, a length of 0
    /// or more than T.
    pub fn forward_with_lengths(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        lengths: &[usize],
    ) -> Result<(Tensor, Tensor)> {
        self.run(x, h0, Some(lengths))
    }

    fn run(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        lengths: Option<&[usize]>,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "Gru";
        let x = rnn::time_major(OP, x, self.input_size, self.batch_first)?;
        let (nl, nd, h) = (self.layers.len(), self.num_directions(), self.hidden_size);
        let b = x.dims()[1];
        if let Some(h0) = h0 {
            rnn::check_state(OP, "h0", h0, [nl * nd, b, h], &x)?;
        }
        let lens = Lengths::new(OP, lengths, x.dims(), nd == 2, x.device())?;
        let states = h0.map(|h0| [h0.clone()]);
        let mut cell = |l: usize, d: usize, x: &Tensor, init: Vec<Tensor>, lens: &Lengths| {
            let (out, hn) = self.layers[l][d].run(x, &init[0])?;
            let hn = lens.last(&out)?.unwrap_or(hn);
            Ok((out, vec![hn]))
        };
        let (y, mut finals) = rnn::run_stack(
            x,
            (nl, nd, h, 1),
            states.as_ref().map(|s| &s[..]),
            &lens,
            self.dropout.as_ref(),
            &mut cell,
        )?;
        let y = if self.batch_first {
            y.transpose(0, 1)?
        } else {
            y
        };
        Ok((y, finals.pop().unwrap()))
    }
}

impl Module for Gru {
    /// The output sequence from a zero state (`Gru::forward` also returns the final state).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Gru::forward(self, x, None).map(|(y, _)| y)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (l, dirs) in self.layers.iter().enumerate() {
            for (d, w) in dirs.iter().enumerate() {
                let rev = if d == 1 { "_reverse" } else { "" };
                out.extend(w.named(&format!("_l{l}{rev}")));
            }
        }
        out
    }
    fn set_training(&mut self, training: bool) {
        if let Some(d) = &mut self.dropout {
            d.set_training(training);
        }
    }
}

/// One GRU step, as `torch.nn.GRUCell`: parameters `weight_ih [3H, I]`, `weight_hh [3H, H]`,
/// `bias_ih`, `bias_hh [3H]`, the same fused op as [`Gru`] with one time step.
pub struct GruCell {
    w: Weights,
    input_size: usize,
    hidden_size: usize,
}

impl GruCell {
    /// A cell reading `input_size` features into `hidden_size` units (PyTorch's init).
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<GruCell> {
        if input_size == 0 || hidden_size == 0 {
            return Err(Error::invalid(
                "GruCell",
                format!("sizes must be positive: input {input_size}, hidden {hidden_size}"),
            ));
        }
        Ok(GruCell {
            w: Weights::new(input_size, hidden_size, rng, device)?,
            input_size,
            hidden_size,
        })
    }

    /// One step: `x [B, I]` and `h [B, H]` (zeros when `None`) give the next `h [B, H]`.
    /// Errors name the shapes when they do not fit.
    pub fn forward(&self, x: &Tensor, h: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "GruCell";
        if x.rank() != 2 || x.dims()[1] != self.input_size {
            return Err(Error::invalid(
                OP,
                format!(
                    "input must be [B, {}], got shape {:?}",
                    self.input_size,
                    x.dims()
                ),
            ));
        }
        let b = x.dims()[0];
        let h0 = match h {
            Some(h) if h.dims() != [b, self.hidden_size] => {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "h must be [B, H] = {:?} for input {:?}, got {:?}",
                        [b, self.hidden_size],
                        x.dims(),
                        h.dims()
                    ),
                ))
            }
            Some(h) => h.clone(),
            None => Tensor::zeros([b, self.hidden_size], x.device())?,
        };
        let (_, h) = self.w.run(&x.unsqueeze(0)?, &h0)?;
        Ok(h)
    }
}

impl Module for GruCell {
    /// The next hidden state from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        GruCell::forward(self, x, None)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.w.named("")
    }
}
