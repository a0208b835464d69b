//! The classic Keras MNIST CNN — Conv2D(32, 3×3, relu) → MaxPool(2) → Conv2D(64, 3×3, relu) →
//! MaxPool(2) → Flatten → Dense(128, relu) → Dense(10) — trained with Adam (lr 1e-3, batch 32)
//! on the default device.
//!
//! `cargo run --release --example mnist_cnn -- [--device cpu|gpu|gpu:N] [--epochs 2]
//!  [--batch-size 32] [--save cnn.safetensors] [--amp] [--plot cnn.svg]`
//!
//! Trained by the library's `Trainer::fit` (see `common/mod.rs`): a progress bar per epoch, a
//! summary line with the training and test (validation) loss and accuracy, and with `--plot`
//! the curves as SVG and the history as JSON.
//!
//! `--amp` trains in mixed precision: convolutions and dense layers in F16 under
//! `amp::autocast`, F32 master weights, dynamic loss scaling with `amp::GradScaler`.

mod common;

use wgml::rng::Rng;

fn main() -> wgml::Result<()> {
    let args = common::parse_args("mnist_cnn", 2, 32);
    let dev = common::device(&args)?;
    let model = common::models::mnist_cnn(&mut Rng::new(0), &dev)?;
    common::train(model, &[1, 28, 28], &args, &dev)?;
    Ok(())
}
