//! Trains a 784-256-10 MLP (ReLU) on MNIST with Adam (lr 1e-3, batch 64) on the default device.
//!
//! `cargo run --release --example mnist_mlp -- [--device cpu|gpu|gpu:N] [--epochs 3]
//!  [--batch-size 64] [--save mlp.safetensors] [--plot mlp.svg]`

mod common;

use wgml::nn::{Linear, Relu, Sequential};
use wgml::rng::Rng;

fn main() -> wgml::Result<()> {
    let args = common::parse_args("mnist_mlp", 3, 64);
    let dev = common::device(&args)?;
    let mut rng = Rng::new(0);
    let model = Sequential::new()
        .add(Linear::new(784, 256, true, &mut rng, &dev)?)
        .add(Relu)
        .add(Linear::new(256, 10, true, &mut rng, &dev)?);
    common::train(model, &[784], &args, &dev)?;
    Ok(())
}
