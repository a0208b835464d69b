//! The op methods of `Tensor`, one file per family: shape checks, then one match on the storage
//! that sends the work to `cpu/` or `gpu/`.

mod elementwise;
mod index;
mod matmul;
mod reduce;
mod softmax;
mod view;

pub(crate) use elementwise::alloc_like;
#[allow(unused_imports)] // for backprop.rs
pub(crate) use index::{gather_backward, index_select_backward};
