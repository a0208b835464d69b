//! `Lstm` (stacked, optionally bidirectional layers over a sequence, with variable lengths)
//! and `LstmCell` (one step), with PyTorch's parameter names, shapes and initialisation; both
//! run on the fused op `Tensor::lstm`.

use super::init::Init;
use super::rnn::{self, Lengths};
use super::{Dropout, Module};
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// Options of [`Lstm`] beyond the sizes.
#[derive(Clone, Copy, Debug, Default)]
pub struct LstmConfig {
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
            w_ih: u(&[4 * hidden, input])?,
            w_hh: u(&[4 * hidden, hidden])?,
            b_ih: u(&[4 * hidden])?,
            b_hh: u(&[4 * hidden])?,
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

    fn run(
        &self,
        x: &Tensor,
        h0: &Tensor,
        c0: &Tensor,
        lengths: Option<&[usize]>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        x.lstm_lengths(
            h0, c0, &self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh, lengths,
        )
    }
}

/// A stack of LSTM layers over a sequence, as `torch.nn.LSTM`: parameters `weight_ih_l{k}
/// [4H, I or D·H]`, `weight_hh_l{k} [4H, H]`, `bias_ih_l{k}`, `bias_hh_l{k} [4H]` (and the same
/// with a `_reverse` suffix when bidirectional, D = 2), gates in the order (i, f, g, o). Each
/// layer·direction is one fused op (see [`Tensor::lstm`]).
pub struct Lstm {
    /// `layers[l][d]`: layer l, direction d (0 forward, 1 reverse).
    layers: Vec<Vec<Weights>>,
    input_size: usize,
    hidden_size: usize,
    batch_first: bool,
    dropout: Option<Dropout>,
}

/// An LSTM's state `(h, c)`, each `[num_layers·D, B, H]` (D = 2 when bidirectional): the
/// initial state `forward` takes and the final one it returns (so a returned state can be fed
/// back in for the next window).
pub type LstmState = (Tensor, Tensor);

impl Lstm {
    /// `num_layers` layers of `hidden_size` units reading `input_size` features, initialised
    /// as PyTorch does (uniform in `±1/√hidden_size`), drawn from `rng` in parameter order.
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        config: LstmConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Lstm> {
        if input_size == 0 || hidden_size == 0 || num_layers == 0 {
            return Err(Error::invalid(
                "Lstm",
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
        Ok(Lstm {
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

    /// Runs the stack over `x` (`[T, B, I]`, or `[B, T, I]` when batch-first) from `state`
    /// (`(h0, c0)`, each `[num_layers·D, B, H]`, D = 2 when bidirectional; zeros when `None`).
    /// Returns the last layer's outputs `[T, B, D·H]` (or `[B, T, D·H]`; the forward
    /// direction's units first, as PyTorch) and the final state `(h_n, c_n)` (index
    /// `layer·D + direction`). Gradients flow to the input, the state and every parameter.
    ///
    /// Errors name the shapes: an input whose rank is not 3 or whose last dim is not
    /// `input_size`, or a state that is not `[num_layers·D, B, H]`.
    pub fn forward(&self, x: &Tensor, state: Option<LstmState>) -> Result<(Tensor, LstmState)> {
        self.run(x, state, None)
    }

    /// [`Lstm::forward`] over a padded batch: sequence `b` has `lengths[b]` valid steps (the
    /// first ones; the rest are padding), as PyTorch's packed sequences. Padded steps neither
    /// update the state (`h_n`, `c_n` are each sequence's state after its own last step) nor
    /// reach the reverse direction (which starts at step `lengths[b] − 1`), and their outputs
    /// are zero. Errors, besides [`Lstm::forward`]'s: not one length per sequence, a length
    /// of 0 or more than T.
    pub fn forward_with_lengths(
        &self,
        x: &Tensor,
        state: Option<LstmState>,
        lengths: &[usize],
    ) -> Result<(Tensor, LstmState)> {
        self.run(x, state, Some(lengths))
    }

    fn run(
        &self,
        x: &Tensor,
        state: Option<LstmState>,
        lengths: Option<&[usize]>,
    ) -> Result<(Tensor, LstmState)> {
        const OP: &str = "Lstm";
        let x = rnn::time_major(OP, x, self.input_size, self.batch_first)?;
        let (nl, nd, h) = (self.layers.len(), self.num_directions(), self.hidden_size);
        let b = x.dims()[1];
        if let Some((h0, c0)) = &state {
            rnn::check_state(OP, "h0", h0, [nl * nd, b, h], &x)?;
            rnn::check_state(OP, "c0", c0, [nl * nd, b, h], &x)?;
        }
        let lens = Lengths::new(OP, lengths, x.dims(), nd == 2, x.device())?;
        let states = state.map(|(h0, c0)| [h0, c0]);
        let mut cell = |l: usize, d: usize, x: &Tensor, init: Vec<Tensor>, lens: &Lengths| {
            let (out, hn, cn) = self.layers[l][d].run(x, &init[0], &init[1], lens.lengths())?;
            let hn = lens.last(&out)?.unwrap_or(hn);
            Ok((out, vec![hn, cn]))
        };
        let (y, mut finals) = rnn::run_stack(
            x,
            (nl, nd, h, 2),
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
        let c = finals.pop().unwrap();
        Ok((y, (finals.pop().unwrap(), c)))
    }
}

impl Module for Lstm {
    /// The output sequence from a zero state (`Lstm::forward` also returns the final state).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Lstm::forward(self, x, None).map(|(y, _)| y)
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

/// One LSTM step, as `torch.nn.LSTMCell`: parameters `weight_ih [4H, I]`, `weight_hh [4H, H]`,
/// `bias_ih`, `bias_hh [4H]`, the same fused op as [`Lstm`] with one time step.
pub struct LstmCell {
    w: Weights,
    input_size: usize,
    hidden_size: usize,
}

impl LstmCell {
    /// A cell reading `input_size` features into `hidden_size` units (PyTorch's init).
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<LstmCell> {
        if input_size == 0 || hidden_size == 0 {
            return Err(Error::invalid(
                "LstmCell",
                format!("sizes must be positive: input {input_size}, hidden {hidden_size}"),
            ));
        }
        Ok(LstmCell {
            w: Weights::new(input_size, hidden_size, rng, device)?,
            input_size,
            hidden_size,
        })
    }

    /// One step: `x [B, I]` and `state` `(h, c)` each `[B, H]` (zeros when `None`) give the
    /// next `(h, c)`. Errors name the shapes when they do not fit.
    pub fn forward(&self, x: &Tensor, state: Option<(Tensor, Tensor)>) -> Result<(Tensor, Tensor)> {
        const OP: &str = "LstmCell";
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
        let (h0, c0) = match state {
            Some((h, c)) => {
                for (name, s) in [("h", &h), ("c", &c)] {
                    if s.dims() != [b, self.hidden_size] {
                        return Err(Error::invalid(
                            OP,
                            format!(
                                "{name} must be [B, H] = {:?} for input {:?}, got {:?}",
                                [b, self.hidden_size],
                                x.dims(),
                                s.dims()
                            ),
                        ));
                    }
                }
                (h, c)
            }
            None => {
                let z = Tensor::zeros([b, self.hidden_size], x.device())?;
                (z.clone(), z)
            }
        };
        let (_, h, c) = self.w.run(&x.unsqueeze(0)?, &h0, &c0, None)?;
        Ok((h, c))
    }
}

impl Module for LstmCell {
    /// The next hidden state from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        LstmCell::forward(self, x, None).map(|(h, _)| h)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.w.named("")
    }
}
