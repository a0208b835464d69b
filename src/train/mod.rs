//! Training as Keras users know it: [`Trainer`] (`fit`, `evaluate`, `predict`), metrics,
//! callbacks, the [`History`] of a run with its JSON/CSV files and SVG plots. Native targets
//! only: `fit` waits on the device to log, which a browser's event loop cannot do.
//!
//! ```
//! use wgml::data::{DataLoader, HostTensor, TensorDataset};
//! use wgml::nn::{loss, Linear, Module, Relu, Sequential};
//! use wgml::optim::Adam;
//! use wgml::train::{Accuracy, EarlyStopping, FitOptions, Trainer, Verbosity};
//! # fn main() -> wgml::Result<()> {
//! let dev = wgml::Device::cpu();
//! let mut rng = wgml::rng::Rng::new(0);
//! // XOR-like labels of 64 points in the plane.
//! let x: Vec<f32> = (0..128).map(|_| rng.uniform() * 2.0 - 1.0).collect();
//! let y: Vec<u32> = x.chunks(2).map(|p| u32::from(p[0] * p[1] > 0.0)).collect();
//! let data = TensorDataset::from_host(HostTensor::f32(x, [64, 2])?, HostTensor::u32(y, [64])?)?;
//! let train = DataLoader::new(data, 16)?;
//!
//! let model = Sequential::new()
//!     .add(Linear::new(2, 32, true, &mut rng, &dev)?)
//!     .add(Relu)
//!     .add(Linear::new(32, 2, true, &mut rng, &dev)?);
//! println!("{}", model.summary(&[2])?);
//! let opt = Adam::new(model.parameters(), 0.01);
//! let mut trainer = Trainer::new(model, opt, loss::cross_entropy).metric(Accuracy::new());
//! let mut early = EarlyStopping::new("val_loss").patience(3).restore_best_weights(true);
//! let options = FitOptions::new(20)
//!     .validation_split(0.25)
//!     .verbosity(Verbosity::Silent)
//!     .callback(&mut early);
//! let history = trainer.fit(&train, options)?;
//! assert!(history.last("val_accuracy").is_some());
//! assert_eq!(history.get("loss").unwrap().len(), history.len());
//! let svg = history.to_svg()?; // or history.plot("run.svg"), history.save("run.json")
//! assert!(svg.starts_with("<svg"));
//! # Ok(())
//! # }
//! ```

mod callback;
mod history;
mod metric;
mod plot;
mod trainer;

pub use callback::{
    Callback, Context, CsvLogger, EarlyStopping, JsonLogger, LrScheduler, Mode, ModelCheckpoint,
};
pub use history::{History, Logs};
pub use metric::{Accuracy, MeanLoss, Metric, Perplexity, TopKAccuracy};
pub use trainer::{FitOptions, LossFn, Trainer, Verbosity};

/// The name under which checkpoints of [`Trainer::save_checkpoint`] and [`ModelCheckpoint`]
/// store the number of epochs completed.
pub const EPOCH_KEY: &str = "trainer.epoch";
