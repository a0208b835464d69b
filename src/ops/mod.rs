//! The op methods of `Tensor`, one file per family: shape checks, then one match on the storage
//! that sends the work to `cpu/` or `gpu/`.

mod elementwise;
mod view;
