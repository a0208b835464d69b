//! The classic Keras MNIST CNN — Conv2D(32, 3×3, relu) → MaxPool(2) → Conv2D(64, 3×3, relu) →
//! MaxPool(2) → Flatten → Dense(128, relu) → Dense(10) — trained with Adam (lr 1e-3, batch 32)
//! on the default device.
//!
//! `cargo run --release --example mnist_cnn -- [--device cpu|gpu|gpu:N] [--epochs 2]
//!  [--batch-size 32] [--save cnn.safetensors] [--amp]`
//!
//! `--amp` trains in mixed precision: convolutions and dense layers in F16 under
//! `amp::autocast`, F32 master weights, dynamic loss scaling with `amp::GradScaler`.

mod common;

use wgml::nn::{Conv2d, Flatten, Linear, MaxPool2d, Relu, Sequential};
use wgml::rng::Rng;
use wgml::Conv2dConfig;

fn main() -> wgml::Result<()> {
    let args = common::parse_args("mnist_cnn", 2, 32);
    let dev = common::device(&args)?;
    let mut rng = Rng::new(0);
    let conv = Conv2dConfig::default();
    let mut model = Sequential::new()
        .add(Conv2d::new(1, 32, [3, 3], conv, &mut rng, &dev)?)
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(32, 64, [3, 3], conv, &mut rng, &dev)?)
        .add(Relu)
        .add(MaxPool2d::new(2))
        .add(Flatten)
        .add(Linear::new(64 * 5 * 5, 128, true, &mut rng, &dev)?)
        .add(Relu)
        .add(Linear::new(128, 10, true, &mut rng, &dev)?);
    common::train(&mut model, &[1, 28, 28], &args, &dev)?;
    Ok(())
}
