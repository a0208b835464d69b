//! The CPU backend: plain loops that are the specification every WGSL kernel is tested against.

pub(crate) mod elementwise;
