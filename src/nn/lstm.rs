//! `Lstm` (stacked layers over a sequence) and `LstmCell` (one step), with PyTorch's parameter
//! names, shapes and initialisation; both run on the fused op `Tensor::lstm`.

use super::init::Init;
use super::{Dropout, Module};
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// Options of [`Lstm`] beyond the sizes.
#[derive(Clone, Copy, Debug, Default)]
pub struct LstmConfig {
    /// Input and output are `[B, T, ·]` instead of `[T, B, ·]` (the state stays `[L, B, H]`).
    pub batch_first: bool,
    /// Dropout probability on the outputs of every layer but the last, in training mode.
    pub dropout: f32,
    /// Seed of the dropout masks.
    pub seed: u64,
}

/// The four parameters of one layer (or of a cell), in PyTorch's layout.
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

    fn run(&self, x: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        x.lstm(h0, c0, &self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh)
    }
}

/// A stack of LSTM layers over a sequence, as `torch.nn.LSTM`: parameters `weight_ih_l{k}
/// [4H, I or H]`, `weight_hh_l{k} [4H, H]`, `bias_ih_l{k}`, `bias_hh_l{k} [4H]`, gates in the
/// order (i, f, g, o). Each layer is one fused op (see [`Tensor::lstm`]).
pub struct Lstm {
    layers: Vec<Weights>,
    input_size: usize,
    hidden_size: usize,
    batch_first: bool,
    dropout: Option<Dropout>,
}

/// An LSTM's state `(h, c)`, each `[num_layers, B, H]`: the initial state `forward` takes and
/// the final one it returns (so a returned state can be fed back in for the next window).
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
        let layers = (0..num_layers)
            .map(|l| {
                let i = if l == 0 { input_size } else { hidden_size };
                Weights::new(i, hidden_size, rng, device)
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
    /// Hidden units per layer.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    /// Number of stacked layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs the stack over `x` (`[T, B, I]`, or `[B, T, I]` when batch-first) from `state`
    /// (`(h0, c0)`, each `[num_layers, B, H]`; zeros when `None`). Returns the last layer's
    /// outputs `[T, B, H]` (or `[B, T, H]`) and the final state `(h_n, c_n)`. Gradients flow
    /// to the input, the state and every parameter.
    ///
    /// Errors name the shapes: an input whose rank is not 3 or whose last dim is not
    /// `input_size`, or a state that is not `[num_layers, B, H]`.
    pub fn forward(&self, x: &Tensor, state: Option<LstmState>) -> Result<(Tensor, LstmState)> {
        const OP: &str = "Lstm";
        if x.rank() != 3 || x.dims()[2] != self.input_size {
            return Err(Error::invalid(
                OP,
                format!(
                    "input must be {} with I = {}, got shape {:?}",
                    if self.batch_first {
                        "[B, T, I]"
                    } else {
                        "[T, B, I]"
                    },
                    self.input_size,
                    x.dims()
                ),
            ));
        }
        let x = if self.batch_first {
            x.transpose(0, 1)?
        } else {
            x.clone()
        };
        let (nl, b, h) = (self.layers.len(), x.dims()[1], self.hidden_size);
        let state = state.as_ref();
        if let Some((h0, c0)) = state {
            for (name, s) in [("h0", h0), ("c0", c0)] {
                if s.dims() != [nl, b, h] {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "{name} must be [num_layers, B, H] = {:?} for input {:?}, got {:?}",
                            [nl, b, h],
                            x.dims(),
                            s.dims()
                        ),
                    ));
                }
            }
        }
        let zeros = match state {
            None => Some(Tensor::zeros([b, h], x.device())?),
            Some(_) => None,
        };
        let mut y = x;
        let (mut hs, mut cs) = (Vec::with_capacity(nl), Vec::with_capacity(nl));
        for (l, w) in self.layers.iter().enumerate() {
            let (h0, c0) = match state {
                Some((h0, c0)) => (
                    h0.narrow(0, l, 1)?.squeeze(0)?,
                    c0.narrow(0, l, 1)?.squeeze(0)?,
                ),
                None => {
                    let z = zeros.clone().unwrap();
                    (z.clone(), z)
                }
            };
            let (out, hn, cn) = w.run(&y, &h0, &c0)?;
            y = match &self.dropout {
                Some(d) if l + 1 < nl => d.forward(&out)?,
                _ => out,
            };
            hs.push(hn.unsqueeze(0)?);
            cs.push(cn.unsqueeze(0)?);
        }
        let stack = |v: &[Tensor]| -> Result<Tensor> {
            if v.len() == 1 {
                return Ok(v[0].clone());
            }
            Tensor::cat(&v.iter().collect::<Vec<_>>(), 0)
        };
        let y = if self.batch_first {
            y.transpose(0, 1)?
        } else {
            y
        };
        Ok((y, (stack(&hs)?, stack(&cs)?)))
    }
}

impl Module for Lstm {
    /// The output sequence from a zero state (`Lstm::forward` also returns the final state).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Lstm::forward(self, x, None).map(|(y, _)| y)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(l, w)| w.named(&format!("_l{l}")))
            .collect()
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
        let (_, h, c) = self.w.run(&x.unsqueeze(0)?, &h0, &c0)?;
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
