//! Layers: the `Module` trait, `Sequential`, activations, and the layer types.

mod attention;
mod conv;
mod dropout;
mod embedding;
pub mod functional;
mod gru;
pub mod init;
mod linear;
pub mod loss;
mod lstm;
mod norm;
mod pool;
mod rnn;
mod summary;
mod transformer;

pub use attention::{AttentionCache, MultiHeadAttention};
pub use conv::Conv2d;
pub use dropout::Dropout;
pub use embedding::{Embedding, PositionalEmbedding, SinusoidalPositionalEncoding};
pub use gru::{Gru, GruCell, GruConfig};
pub use linear::Linear;
pub use lstm::{Lstm, LstmCell, LstmConfig, LstmState};
pub use norm::LayerNorm;
pub use pool::{AvgPool2d, MaxPool2d};
pub use summary::{summary_of, Summary, SummaryRow};
pub use transformer::{KvCache, TransformerBlock, TransformerConfig, TransformerLm};

use crate::{Result, Tensor};

/// A layer or model: a forward function plus named parameters.
pub trait Module {
    /// Applies the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// Named parameters (PyTorch-style names such as `0.weight`), in a stable order.
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Switches training mode (dropout on) or evaluation mode (off). Default: nothing to do.
    fn set_training(&mut self, _training: bool) {}
    /// The layer's type name as `summary()` shows it (default: the Rust type's last path
    /// segment, e.g. `Conv2d`).
    fn type_name(&self) -> &'static str {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base)
    }
}

/// Modules applied in order; parameter names are prefixed with the layer index.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Self {
        Sequential::default()
    }
    /// Appends a layer.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            x = l.forward(&x)?;
        }
        Ok(x)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.parameters()
                    .into_iter()
                    .map(move |(n, t)| (format!("{i}.{n}"), t))
            })
            .collect()
    }
    fn set_training(&mut self, training: bool) {
        for l in &mut self.layers {
            l.set_training(training);
        }
    }
}

macro_rules! activation {
    ($name:ident, $method:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;
        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                x.$method()
            }
        }
    };
}
activation!(Relu, relu, "`max(x, 0)` as a layer.");
activation!(Sigmoid, sigmoid, "The logistic sigmoid as a layer.");
activation!(Tanh, tanh, "`tanh` as a layer.");
activation!(Gelu, gelu, "Exact GELU as a layer.");

/// Flattens every dimension after the first (batch) one: `[N, ...] -> [N, prod(...)]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() <= 1 {
            return x.reshape([x.numel()]);
        }
        x.flatten(1, -1)
    }
}
