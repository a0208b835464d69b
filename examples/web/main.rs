//! The browser demo's Rust side: the Keras MNIST CNN of `mnist_cnn`, its parameters loaded from
//! a checkpoint that `mnist_cnn --save` wrote, classifying 28×28 images on WebGPU (or on wgml's
//! CPU backend compiled to wasm, for comparison). `index.html` draws, calls and times it.
//!
//! Built by `examples/web/build.sh` (cargo for wasm32, then wasm-bindgen); on native targets
//! this example is empty.
#![cfg(target_arch = "wasm32")]

#[path = "../common/models.rs"]
mod models;

use wasm_bindgen::prelude::*;
use wgml::nn::{Module, Sequential};
use wgml::rng::Rng;
use wgml::{Device, Tensor};

/// Errors cross into JavaScript as `Error` objects with wgml's message.
fn js(e: wgml::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// The CNN on one device, with a checkpoint's parameters.
#[wasm_bindgen]
pub struct Classifier {
    model: Sequential,
    device: Device,
}

#[wasm_bindgen]
impl Classifier {
    /// Builds the CNN on WebGPU (`gpu`) or the CPU backend and loads the parameters of
    /// `checkpoint` (safetensors bytes, e.g. fetched `mnist_cnn.safetensors`); extra tensors
    /// (the optimizer state `--save` adds) are ignored.
    pub async fn create(checkpoint: Vec<u8>, gpu: bool) -> Result<Classifier, JsError> {
        let device = if gpu {
            Device::gpu_async().await.map_err(js)?
        } else {
            Device::cpu()
        };
        let model = models::mnist_cnn(&mut Rng::new(0), &device).map_err(js)?;
        wgml::checkpoint::load_into_from_bytes(&checkpoint, "checkpoint", &model.parameters())
            .map_err(js)?;
        Ok(Classifier { model, device })
    }

    /// The device in use, as wgml names it.
    pub fn device(&self) -> String {
        self.device.name()
    }

    /// Resolves to the 10 class probabilities of `pixels` (28×28, row-major, 0 = background,
    /// 1 = ink, as MNIST). The work is recorded at once; the promise waits only for the
    /// read-back.
    pub fn classify(&self, pixels: Vec<f32>) -> Result<js_sys::Promise, JsError> {
        let probs = wgml::no_grad(|| {
            let x = Tensor::from_vec(pixels, [1, 1, 28, 28], &self.device)?;
            self.model.forward(&models::standardise(&x)?)?.softmax()
        })
        .map_err(js)?;
        let values = probs.to_vec_async();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let v = values.await.map_err(|e| JsValue::from(js(e)))?;
            Ok(js_sys::Float32Array::from(v.as_slice()).into())
        }))
    }
}
