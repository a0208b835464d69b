//! `LayerNorm`: [`functional::layer_norm`](super::functional::layer_norm) with learned weight
//! (ones) and bias (zeros), as `torch.nn.LayerNorm`.

use super::Module;
use crate::{Device, Result, Tensor};

/// Layer normalisation over the trailing `normalized_shape` dims, with an elementwise affine
/// weight and bias of that shape (PyTorch's names: `weight`, `bias`).
pub struct LayerNorm {
    /// `normalized_shape`, initialised to ones.
    pub weight: Tensor,
    /// `normalized_shape`, initialised to zeros.
    pub bias: Tensor,
    /// The trailing dims normalised over.
    pub normalized_shape: Vec<usize>,
    /// Added to the variance (PyTorch's default is 1e-5).
    pub eps: f32,
}

impl LayerNorm {
    /// A layer norm over `normalized_shape` with `eps = 1e-5`.
    pub fn new(normalized_shape: &[usize], device: &Device) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: Tensor::ones(normalized_shape, device)?.requires_grad(),
            bias: Tensor::zeros(normalized_shape, device)?.requires_grad(),
            normalized_shape: normalized_shape.to_vec(),
            eps: 1e-5,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::functional::layer_norm(
            x,
            &self.normalized_shape,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
        )
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }
}
