//! `DataLoader`: mini-batches of a [`Dataset`] in a seeded, reproducible order (shuffled per
//! epoch or not, last partial batch dropped or kept), prepared on a background thread on
//! native targets while the device computes.

use super::dataset::{Batch, Dataset, Subset};
use crate::rng::Rng;
use crate::{Error, Result};
use std::sync::Arc;

/// The order in which a loader visits a data set's examples in one epoch: a pluggable policy,
/// so e.g. a distributed sampler can hand each process its own share.
pub trait Sampler: Send + Sync {
    /// The example indices of `epoch` over a data set of `len` examples, in visiting order.
    /// Each index must be `< len`.
    fn indices(&self, len: usize, epoch: usize) -> Vec<usize>;
    /// How many indices [`Sampler::indices`] returns for a data set of `len` examples (the
    /// loader's batches per epoch come from it): `len` unless the sampler shards or pads.
    fn count(&self, len: usize) -> usize {
        len
    }
}

/// `0, 1, …, len - 1` every epoch.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequentialSampler;

impl Sampler for SequentialSampler {
    fn indices(&self, len: usize, _epoch: usize) -> Vec<usize> {
        (0..len).collect()
    }
}

/// A permutation of `0..len` drawn from `seed + epoch` (Fisher–Yates on [`Rng`]): a new order
/// each epoch, the same orders for the same seed on every platform.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSampler {
    /// The base seed.
    pub seed: u64,
}

impl Sampler for RandomSampler {
    fn indices(&self, len: usize, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        Rng::new(self.seed.wrapping_add(epoch as u64)).shuffle(&mut order);
        order
    }
}

/// Batches of a data set, epoch by epoch (PyTorch's `DataLoader`). By default: shuffled with
/// seed 0 (the order of [`super::shuffled_batches`]), the last partial batch kept, and two
/// batches prepared ahead on a background thread (native targets only).
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    batch_size: usize,
    sampler: Arc<dyn Sampler>,
    drop_last: bool,
    prefetch: usize,
}

impl DataLoader {
    /// Batches of `batch_size` examples of `dataset`; `Err` if `batch_size` is zero.
    pub fn new(dataset: impl Dataset + 'static, batch_size: usize) -> Result<DataLoader> {
        DataLoader::from_arc(Arc::new(dataset), batch_size)
    }
    /// [`DataLoader::new`] over a shared data set.
    pub fn from_arc(dataset: Arc<dyn Dataset>, batch_size: usize) -> Result<DataLoader> {
        if batch_size == 0 {
            return Err(Error::invalid(
                "DataLoader",
                "batch_size must be at least 1",
            ));
        }
        Ok(DataLoader {
            dataset,
            batch_size,
            sampler: Arc::new(RandomSampler::default()),
            drop_last: false,
            prefetch: 2,
        })
    }
    /// Shuffles each epoch with `seed + epoch` (`true`, the default, seed 0) or visits the
    /// examples in order (`false`).
    pub fn shuffle(self, on: bool) -> DataLoader {
        if on {
            self.sampler(RandomSampler::default())
        } else {
            self.sampler(SequentialSampler)
        }
    }
    /// Shuffles each epoch with `seed + epoch`.
    pub fn seed(self, seed: u64) -> DataLoader {
        self.sampler(RandomSampler { seed })
    }
    /// Visits the examples in the order `sampler` gives.
    pub fn sampler(mut self, sampler: impl Sampler + 'static) -> DataLoader {
        self.sampler = Arc::new(sampler);
        self
    }
    /// Drops the last batch of an epoch when it is smaller than `batch_size`.
    pub fn drop_last(mut self, on: bool) -> DataLoader {
        self.drop_last = on;
        self
    }
    /// How many batches the background thread may prepare ahead; 0 prepares each batch on the
    /// calling thread when it is asked for (always so on wasm32, which has no threads).
    pub fn prefetch(mut self, batches: usize) -> DataLoader {
        self.prefetch = batches;
        self
    }
    /// The data set.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }
    /// Examples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.sampler.count(self.dataset.len());
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
    /// Whether an epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The example indices of each batch of `epoch`, in order. `Err` if the sampler returns an
    /// index out of range.
    pub fn batch_indices(&self, epoch: usize) -> Result<Vec<Vec<usize>>> {
        let len = self.dataset.len();
        let order = self.sampler.indices(len, epoch);
        if let Some(&bad) = order.iter().find(|&&i| i >= len) {
            return Err(Error::IndexOutOfRange {
                op: "DataLoader (sampler)",
                index: bad,
                size: len,
                shape: vec![len],
            });
        }
        Ok(order
            .chunks(self.batch_size)
            .filter(|c| !self.drop_last || c.len() == self.batch_size)
            .map(|c| c.to_vec())
            .collect())
    }
    /// The batches of `epoch` (0-based), in order. On native targets with `prefetch > 0` a
    /// background thread builds them ahead; dropping the iterator early stops it.
    pub fn epoch(&self, epoch: usize) -> Result<Batches> {
        let batches = self.batch_indices(epoch)?;
        Ok(Batches::new(self.dataset.clone(), batches, self.prefetch))
    }
    /// Keras's `validation_split`: the last `fraction` of the examples (in data set order,
    /// before any shuffling) as a second loader that visits them in order; this loader keeps
    /// the rest with its own settings. `Err` unless `0 < fraction < 1` leaves both sides
    /// non-empty.
    pub fn split(&self, fraction: f64) -> Result<(DataLoader, DataLoader)> {
        let n = self.dataset.len();
        let n_val = (n as f64 * fraction).round() as usize;
        if !(fraction > 0.0 && fraction < 1.0) || n_val == 0 || n_val >= n {
            return Err(Error::invalid(
                "DataLoader::split",
                format!(
                    "a validation fraction of {fraction} of {n} examples leaves one side empty"
                ),
            ));
        }
        let head = Subset::new(self.dataset.clone(), (0..n - n_val).collect())?;
        let tail = Subset::new(self.dataset.clone(), (n - n_val..n).collect())?;
        let train = DataLoader {
            dataset: Arc::new(head),
            ..self.clone()
        };
        let valid = DataLoader::new(tail, self.batch_size)?
            .shuffle(false)
            .prefetch(self.prefetch);
        Ok((train, valid))
    }
}

/// The batches of one epoch, as an iterator of `Result<Batch>`.
pub struct Batches {
    inner: Source,
    len: usize,
}

enum Source {
    /// Built on the calling thread as they are asked for.
    Inline {
        dataset: Arc<dyn Dataset>,
        batches: std::vec::IntoIter<Vec<usize>>,
    },
    /// Built ahead by a background thread.
    #[cfg(not(target_arch = "wasm32"))]
    Thread {
        rx: Option<std::sync::mpsc::Receiver<Result<Batch>>>,
        handle: Option<std::thread::JoinHandle<()>>,
    },
}

impl Batches {
    fn new(dataset: Arc<dyn Dataset>, batches: Vec<Vec<usize>>, prefetch: usize) -> Batches {
        let len = batches.len();
        #[cfg(not(target_arch = "wasm32"))]
        if prefetch > 0 && len > 1 {
            let (tx, rx) = std::sync::mpsc::sync_channel(prefetch);
            let handle = std::thread::Builder::new()
                .name("wgml-data-loader".into())
                .spawn(move || {
                    for idx in batches {
                        // A closed channel means the epoch was abandoned: stop.
                        if tx.send(dataset.get_batch(&idx)).is_err() {
                            break;
                        }
                    }
                });
            match handle {
                Ok(h) => {
                    return Batches {
                        inner: Source::Thread {
                            rx: Some(rx),
                            handle: Some(h),
                        },
                        len,
                    };
                }
                // No thread to be had: the batches are built inline below (the closure,
                // and with it the data, went with the failed spawn).
                Err(_) => return Batches::inline_unavailable(len),
            }
        }
        let _ = prefetch;
        Batches {
            inner: Source::Inline {
                dataset,
                batches: batches.into_iter(),
            },
            len,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn inline_unavailable(len: usize) -> Batches {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let _ = tx.send(Err(Error::invalid(
            "DataLoader",
            "could not start the background thread that prepares batches (try prefetch(0))",
        )));
        Batches {
            inner: Source::Thread {
                rx: Some(rx),
                handle: None,
            },
            len,
        }
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        match &mut self.inner {
            Source::Inline { dataset, batches } => {
                batches.next().map(|idx| dataset.get_batch(&idx))
            }
            #[cfg(not(target_arch = "wasm32"))]
            Source::Thread { rx, .. } => rx.as_ref()?.recv().ok(),
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Source::Thread { rx, handle } = &mut self.inner {
            // Close the channel first so a producer blocked on a full queue wakes and stops.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
