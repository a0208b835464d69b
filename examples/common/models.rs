//! The models of the MNIST examples, shared by the training examples, `mnist_infer` and the
//! browser demo (`examples/web/`), so a checkpoint saved by one loads into the others.
#![allow(dead_code)] // not every example uses every model

use wgml::nn::{Conv2d, Flatten, Linear, MaxPool2d, Relu, Sequential};
use wgml::rng::Rng;
use wgml::{Conv2dConfig, Device, Result, Tensor};

/// The classic Keras MNIST CNN: Conv2D(32, 3×3, relu) → MaxPool(2) → Conv2D(64, 3×3, relu) →
/// MaxPool(2) → Flatten → Dense(128, relu) → Dense(10), on `[batch, 1, 28, 28]` images.
pub fn mnist_cnn(rng: &mut Rng, dev: &Device) -> Result<Sequential> {
    let conv = Conv2dConfig::default();
    Ok(Sequential::new()
        .add(Conv2d::new(1, 32, [3, 3], conv, rng, dev)?)
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(32, 64, [3, 3], conv, rng, dev)?)
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Flatten)
        .add(Linear::new(64 * 5 * 5, 128, true, rng, dev)?)
        .add(Relu)
        .add(Linear::new(128, 10, true, rng, dev)?))
}

/// Pixels in [0, 1] standardised with MNIST's mean and standard deviation (0.1307, 0.3081), as
/// torchvision's MNIST examples do: what every model here is trained and run on.
pub fn standardise(x: &Tensor) -> Result<Tensor> {
    x.affine(1.0 / 0.3081, -0.1307 / 0.3081)
}
