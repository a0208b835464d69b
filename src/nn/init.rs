//! Weight initialisers matching PyTorch's and Keras's defaults.

use crate::rng::Rng;
use crate::{Device, Result, Shape, Tensor};

/// How to fill a new parameter. `fan_in`/`fan_out` follow PyTorch: for a weight of shape
/// `[out, in, k...]`, `fan_in = in·prod(k)` and `fan_out = out·prod(k)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// A constant.
    Constant(f32),
    /// Uniform in `[lo, hi)`.
    Uniform(f32, f32),
    /// Normal with mean 0 and the given standard deviation.
    Normal(f32),
    /// He/Kaiming uniform with negative slope `a`: bound `√(6 / ((1 + a²)·fan_in))`.
    /// PyTorch's `Linear`/`Conv` weights use `a = √5`, i.e. bound `1/√fan_in`.
    KaimingUniform(f32),
    /// Glorot/Xavier uniform: bound `√(6 / (fan_in + fan_out))` (Keras's default).
    GlorotUniform,
}

/// `(fan_in, fan_out)` of a weight shape.
pub fn fans(shape: &Shape) -> (usize, usize) {
    let d = shape.dims();
    match d.len() {
        0 => (1, 1),
        1 => (d[0], d[0]),
        _ => {
            let receptive: usize = d[2..].iter().product();
            (d[1] * receptive, d[0] * receptive)
        }
    }
}

impl Init {
    /// A new tensor of `shape` on `device`, drawn from `rng`.
    pub fn tensor(self, shape: impl Into<Shape>, rng: &mut Rng, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let (fan_in, fan_out) = fans(&shape);
        let n = shape.numel();
        let uniform =
            |rng: &mut Rng, b: f32| (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * b).collect();
        let data: Vec<f32> = match self {
            Init::Zeros => vec![0.0; n],
            Init::Constant(c) => vec![c; n],
            Init::Uniform(lo, hi) => (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect(),
            Init::Normal(std) => (0..n).map(|_| rng.normal() * std).collect(),
            Init::KaimingUniform(a) => {
                uniform(rng, (6.0 / ((1.0 + a * a) * fan_in.max(1) as f32)).sqrt())
            }
            Init::GlorotUniform => uniform(rng, (6.0 / (fan_in + fan_out).max(1) as f32).sqrt()),
        };
        Tensor::from_vec(data, shape, device)
    }
}
