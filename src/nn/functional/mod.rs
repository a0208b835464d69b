//! Stateless functions on tensors (PyTorch's torch.nn.functional).

mod attention;

pub(crate) use attention::attention_backward;
pub use attention::scaled_dot_product_attention;
