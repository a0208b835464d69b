//! Training as Keras users know it: [`Trainer`] (`fit`, `evaluate`, `predict`), metrics,
//! callbacks, the [`History`] of a run with its JSON/CSV files and SVG plots. Native targets
//! only: `fit` waits on the device to log, which a browser's event loop cannot do.

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
