//! `summary()`: a Keras-style table of a model's layers (name and type, output shape for a
//! given input, parameter count) with the totals, trainable and not.

use super::{Module, Sequential};
use crate::{no_grad, Device, Result, Tensor};
use std::fmt;

/// One row of a [`Summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// The layer's name (its index in a `Sequential`, the prefix of its parameter names).
    pub name: String,
    /// The layer's type (`Conv2d`, `Linear`, ...).
    pub kind: String,
    /// Its output shape for the summarised input (the batch dimension included).
    pub output: Vec<usize>,
    /// Its number of parameter values.
    pub params: usize,
    /// How many of them need gradients.
    pub trainable: usize,
}

/// A model's layers with their output shapes and parameter counts; `Display` prints the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The model's type.
    pub model: String,
    /// The input shape the output shapes were found for.
    pub input: Vec<usize>,
    /// One row per layer.
    pub rows: Vec<SummaryRow>,
}

impl Summary {
    /// Parameter values in all.
    pub fn total_params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }
    /// Parameter values that need gradients.
    pub fn trainable_params(&self) -> usize {
        self.rows.iter().map(|r| r.trainable).sum()
    }
    /// Parameter values that do not.
    pub fn non_trainable_params(&self) -> usize {
        self.total_params() - self.trainable_params()
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = ["Layer (type)", "Output Shape", "Param #"];
        let cells: Vec<[String; 3]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    format!("{} ({})", r.name, r.kind),
                    shape(&r.output),
                    thousands(r.params),
                ]
            })
            .collect();
        let w = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (w(0) + 2, w(1) + 2, w(2));
        let rule = |c: char| c.to_string().repeat(w0 + w1 + w2);
        writeln!(f, "Model: {} (input {})", self.model, shape(&self.input))?;
        writeln!(f, "{}", rule('━'))?;
        writeln!(f, "{:<w0$}{:<w1$}{:>w2$}", head[0], head[1], head[2])?;
        writeln!(f, "{}", rule('━'))?;
        for (i, c) in cells.iter().enumerate() {
            writeln!(f, "{:<w0$}{:<w1$}{:>w2$}", c[0], c[1], c[2])?;
            if i + 1 < cells.len() {
                writeln!(f, "{}", rule('─'))?;
            }
        }
        writeln!(f, "{}", rule('━'))?;
        writeln!(f, " Total params: {}", thousands(self.total_params()))?;
        writeln!(
            f,
            " Trainable params: {}",
            thousands(self.trainable_params())
        )?;
        write!(
            f,
            " Non-trainable params: {}",
            thousands(self.non_trainable_params())
        )
    }
}

fn counts(m: &dyn Module) -> (usize, usize) {
    m.parameters().iter().fold((0, 0), |(all, tr), (_, t)| {
        let n = t.numel();
        (all + n, tr + if t.requires_grad_flag() { n } else { 0 })
    })
}

fn device_of(m: &dyn Module) -> Device {
    m.parameters()
        .first()
        .map(|(_, t)| t.device().clone())
        .unwrap_or(Device::Cpu)
}

/// The batch of one example of `input` (zeros) on the model's device.
fn zeros_batch(m: &dyn Module, input: &[usize]) -> Result<Tensor> {
    let dims: Vec<usize> = std::iter::once(1).chain(input.iter().copied()).collect();
    Tensor::zeros(dims, &device_of(m))
}

/// One row for the whole module: its output shape for `x` (one forward pass without a graph).
pub fn summary_of(module: &dyn Module, x: &Tensor) -> Result<Summary> {
    let out = no_grad(|| module.forward(x))?;
    let (params, trainable) = counts(module);
    Ok(Summary {
        model: module.type_name().to_string(),
        input: x.dims().to_vec(),
        rows: vec![SummaryRow {
            name: "0".into(),
            kind: module.type_name().to_string(),
            output: out.dims().to_vec(),
            params,
            trainable,
        }],
    })
}

impl Sequential {
    /// The table for one example of shape `input` (without the batch dimension; a batch of
    /// one zero-filled `F32` example is run through the layers on the model's device, without
    /// a graph). A `Dropout` in training mode draws one mask. For index inputs (embeddings)
    /// use [`Sequential::summary_for`].
    pub fn summary(&self, input: &[usize]) -> Result<Summary> {
        self.summary_for(&zeros_batch(self, input)?)
    }

    /// The table for the input batch `x`, layer by layer.
    pub fn summary_for(&self, x: &Tensor) -> Result<Summary> {
        let mut rows = Vec::with_capacity(self.len());
        let mut h = x.clone();
        for (i, layer) in self.layers().iter().enumerate() {
            h = no_grad(|| layer.forward(&h))?;
            let (params, trainable) = counts(layer.as_ref());
            rows.push(SummaryRow {
                name: i.to_string(),
                kind: layer.type_name().to_string(),
                output: h.dims().to_vec(),
                params,
                trainable,
            });
        }
        Ok(Summary {
            model: "Sequential".into(),
            input: x.dims().to_vec(),
            rows,
        })
    }
}
