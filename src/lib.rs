//! # wgml
//!
//! A deep-learning framework whose tensor ops run as WGSL compute shaders through `wgpu`
//! (Vulkan, Metal, DX12), with a CPU backend that is the reference for every kernel.
//!
//! ```
//! use wgml::{Device, Tensor};
//! # fn main() -> wgml::Result<()> {
//! let dev = Device::cpu(); // or Device::best(), Device::gpu()?
//! let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2], &dev)?;
//! let b = a.matmul(&a.t()?)?.softmax()?;
//! assert_eq!(b.dims(), &[2, 2]);
//! let row_sums = b.sum(-1, false)?.to_vec()?;
//! assert!((row_sums[0] - 1.0).abs() < 1e-6);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod amp;
mod anomaly;
pub mod backprop;
pub mod checkpoint;
#[doc(hidden)]
pub mod cpu;
pub mod data;
pub mod device;
#[cfg(feature = "mpi")]
pub mod distributed;
mod dtype;
pub mod error;
pub mod fs;
pub mod gpu;
pub mod nn;
pub mod op;
mod ops;
pub mod optim;
pub mod rng;
pub mod shape;
mod tensor;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

pub use anomaly::{detect_anomaly, is_anomaly_enabled, set_detect_anomaly};
pub use backprop::{no_grad, Gradients};
pub use device::Device;
pub use dtype::DType;
pub use error::{Error, Result};
pub use op::{BinaryOp, CmpOp, ReduceOp, UnaryOp};
pub use shape::{Conv2dConfig, Layout, Pool2d, Shape};
pub use tensor::{Tensor, TensorId};
