//! `Linear`: `y = x·Wᵀ + b` with PyTorch's weight layout `[out, in]` and default init.

use super::init::Init;
use super::Module;
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// A fully connected layer. Input `[..., in]`, output `[..., out]`.
pub struct Linear {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
}

impl Linear {
    /// PyTorch's default initialisation: weight Kaiming-uniform with `a = √5` (bound
    /// `1/√in`), bias uniform in `±1/√in`.
    pub fn new(
        inputs: usize,
        outputs: usize,
        bias: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Linear> {
        let bound = 1.0 / (inputs.max(1) as f32).sqrt();
        Linear::with_init(
            inputs,
            outputs,
            Init::KaimingUniform(5f32.sqrt()),
            bias.then_some(Init::Uniform(-bound, bound)),
            rng,
            device,
        )
    }

    /// Keras's `Dense` defaults: Glorot-uniform weight, zero bias.
    pub fn keras(inputs: usize, outputs: usize, rng: &mut Rng, device: &Device) -> Result<Linear> {
        Linear::with_init(
            inputs,
            outputs,
            Init::GlorotUniform,
            Some(Init::Zeros),
            rng,
            device,
        )
    }

    /// Explicit initialisers (`bias: None` for no bias).
    pub fn with_init(
        inputs: usize,
        outputs: usize,
        weight: Init,
        bias: Option<Init>,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: weight
                .tensor([outputs, inputs], rng, device)?
                .requires_grad(),
            bias: match bias {
                Some(b) => Some(b.tensor([outputs], rng, device)?.requires_grad()),
                None => None,
            },
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inputs = self.weight.dims()[1];
        if x.rank() == 0 || x.dims()[x.rank() - 1] != inputs {
            return Err(Error::ShapeMismatch {
                op: "Linear",
                lhs: x.dims().to_vec(),
                rhs: self.weight.dims().to_vec(),
            });
        }
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            // Under autocast the bias joins the F16 product, as in PyTorch's `linear`.
            Some(b) => y.add(&crate::amp::to_f16(b)?),
            None => Ok(y),
        }
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }
}
