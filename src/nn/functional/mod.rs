//! Stateless functions on tensors (PyTorch's torch.nn.functional).

mod attention;
mod norm;

pub(crate) use attention::attention_backward;
pub use attention::scaled_dot_product_attention;
pub use norm::layer_norm;
pub(crate) use norm::layer_norm_backward;
