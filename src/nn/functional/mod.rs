//! Stateless functions on tensors (PyTorch's torch.nn.functional)

mod norm;

pub(crate) use norm::layer_norm_backward;
pub use norm::layer_norm;
