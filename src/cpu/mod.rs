//! The CPU backend: plain loops that are the specification every WGSL kernel is tested against.

pub(crate) mod alloc;
pub(crate) mod attention;
pub mod conv;
pub(crate) mod elementwise;
pub(crate) mod fastmath;
pub(crate) mod gru;
pub(crate) mod half;
pub(crate) mod index;
pub(crate) mod lstm;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod softmax;
