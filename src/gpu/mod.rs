//! The wgpu backend: context, buffers, kernels, and one launcher file per kernel family.

pub mod buffer;
pub mod context;
pub(crate) mod elementwise;
pub(crate) mod kernel;

pub use buffer::PoolStats;
pub use context::{adapters, AdapterSummary, GpuContext};
