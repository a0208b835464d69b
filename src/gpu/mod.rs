//! The wgpu backend: context, buffers, kernels, and one launcher file per kernel family.

pub(crate) mod attention;
pub mod buffer;
pub mod context;
pub(crate) mod conv;
pub(crate) mod coop;
pub(crate) mod elementwise;
pub(crate) mod flat;
pub(crate) mod gru;
pub mod half;
pub(crate) mod index;
pub(crate) mod kernel;
pub(crate) mod layout;
pub(crate) mod lstm;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod recorder;
pub(crate) mod reduce;
pub(crate) mod softmax;
#[doc(hidden)]
pub mod variants;

pub use buffer::PoolStats;
pub use context::{adapters, AdapterSummary, GpuContext};
pub use half::{with_f16_path, F16Path};
pub use kernel::dispatch_count;
#[doc(hidden)]
pub use kernel::shader_source;
