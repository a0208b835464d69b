//! Pooling layers over NCHW input.

use super::Module;
use crate::{Pool2d, Result, Tensor};

/// `MaxPool2d` (PyTorch semantics; `new(k)` is a k×k window with stride k).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d(pub Pool2d);

impl MaxPool2d {
    /// A `k`×`k` window with stride `k`.
    pub fn new(k: usize) -> Self {
        MaxPool2d(Pool2d::new(k))
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.0)
    }
}

/// `AvgPool2d` (PyTorch semantics, padding counted in the divisor).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d(pub Pool2d);

impl AvgPool2d {
    /// A `k`×`k` window with stride `k`.
    pub fn new(k: usize) -> Self {
        AvgPool2d(Pool2d::new(k))
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d(self.0)
    }
}
