//! `Conv2d`: 2-D convolution layer over NCHW input with PyTorch's default initialisation.

use super::init::Init;
use super::Module;
use crate::rng::Rng;
use crate::{Conv2dConfig, Device, Result, Tensor};

/// A 2-D convolution layer: weight `[out, in/groups, kh, kw]`, optional bias `[out]`.
pub struct Conv2d {
    /// `[out, in/groups, kh, kw]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub config: Conv2dConfig,
}

impl Conv2d {
    /// PyTorch's default initialisation: weight Kaiming-uniform with `a = √5` (bound
    /// `1/√fan_in`, `fan_in = in/groups·kh·kw`), bias uniform in `±1/√fan_in`.
    pub fn new(
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        config: Conv2dConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Conv2d> {
        let fan_in = inputs / config.groups.max(1) * kernel[0] * kernel[1];
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        Conv2d::with_init(
            inputs,
            outputs,
            kernel,
            config,
            Init::KaimingUniform(5f32.sqrt()),
            Some(Init::Uniform(-bound, bound)),
            rng,
            device,
        )
    }

    /// Keras's `Conv2D` defaults: Glorot-uniform weight, zero bias.
    pub fn keras(
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        config: Conv2dConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Conv2d> {
        Conv2d::with_init(
            inputs,
            outputs,
            kernel,
            config,
            Init::GlorotUniform,
            Some(Init::Zeros),
            rng,
            device,
        )
    }

    /// Explicit initialisers (`bias: None` for no bias).
    #[allow(clippy::too_many_arguments)]
    pub fn with_init(
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        config: Conv2dConfig,
        weight: Init,
        bias: Option<Init>,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Conv2d> {
        let g = config.groups.max(1);
        if !inputs.is_multiple_of(g) || !outputs.is_multiple_of(g) {
            return Err(crate::Error::invalid(
                "Conv2d",
                format!(
                    "{inputs} input and {outputs} output channels must be divisible by groups={g}"
                ),
            ));
        }
        Ok(Conv2d {
            weight: weight
                .tensor([outputs, inputs / g, kernel[0], kernel[1]], rng, device)?
                .requires_grad(),
            bias: match bias {
                Some(b) => Some(b.tensor([outputs], rng, device)?.requires_grad()),
                None => None,
            },
            config,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.config)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }
}
