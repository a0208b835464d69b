//! Runs a CNN checkpoint saved by `mnist_cnn --save`: test accuracy, and the time to classify
//! one image (batch 1, read-back included), the figure the browser demo (`examples/web/`)
//! shows for WebGPU.
//!
//! `cargo run --release --example mnist_infer -- --load examples/web/mnist_cnn.safetensors
//!  [--device cpu|gpu|gpu:N]`

#[allow(dead_code)] // the training loop is not used here
mod common;

use std::time::Instant;
use wgml::nn::Module;
use wgml::rng::Rng;
use wgml::Error;

fn main() -> wgml::Result<()> {
    let args = common::parse_args("mnist_infer", 0, 500);
    let dev = common::device(&args)?;
    let path = args.load.as_deref().ok_or_else(|| {
        Error::invalid(
            "mnist_infer",
            "--load PATH (a checkpoint of mnist_cnn --save) is needed",
        )
    })?;
    let model = common::models::mnist_cnn(&mut Rng::new(0), &dev)?;
    wgml::checkpoint::load_into(path, &model.parameters())?;
    let test = wgml::data::mnist::load(&args.data)?.test;
    println!("device: {}; checkpoint {path}", dev.name());
    let acc = common::accuracy(&model, &test, &[1, 28, 28], &dev, false)?;
    println!("test accuracy {:.2}% ({} images)", acc * 100.0, test.len());

    // One image at a time, as the demo classifies a drawing: forward, softmax, read-back.
    let (x, _) = test.batch(&[0], &dev)?;
    let x = common::models::standardise(&x.reshape([1, 1, 28, 28])?)?;
    let classify =
        || -> wgml::Result<Vec<f32>> { wgml::no_grad(|| model.forward(&x)?.softmax())?.to_vec() };
    classify()?; // builds the pipelines
    let mut ms: Vec<f64> = (0..100)
        .map(|_| {
            let t = Instant::now();
            classify().map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<wgml::Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    println!(
        "one image (batch 1, read-back included): median {:.2} ms, best {:.2} ms over {} runs",
        ms[ms.len() / 2],
        ms[0],
        ms.len()
    );
    Ok(())
}
