//! The op methods of `Tensor`, one file per family: shape checks, then one match on the storage
//! that sends the work to `cpu/` or `gpu/`.

mod conv;
mod elementwise;
mod gru;
mod half;
mod index;
mod lstm;
mod matmul;
mod pool;
mod reduce;
mod softmax;
mod view;

pub(crate) use conv::col2im;
pub(crate) use elementwise::alloc_like;
pub(crate) use gru::{gru_backward, GruSaved};
pub(crate) use half::promote;
pub(crate) use index::{gather_backward, index_select_backward, one_hot_gpu};
pub(crate) use lstm::{lstm_backward, LstmSaved};
pub(crate) use pool::pool2d_backward;
