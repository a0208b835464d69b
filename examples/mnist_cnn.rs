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

use wgml::rng::Rng;

fn main() -> wgml::Result<()> {
    let args = common::parse_args("mnist_cnn", 2, 32);
    let dev = common::device(&args)?;
    let mut model = common::models::mnist_cnn(&mut Rng::new(0), &dev)?;
    common::train(&mut model, &[1, 28, 28], &args, &dev)?;
    Ok(())
}
