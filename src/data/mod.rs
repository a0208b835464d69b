//! Data sets and batching: the MNIST IDX reader, a character text corpus, the `Dataset` trait
//! and its `DataLoader`, seeded mini-batches, each data-parallel rank's shard.

mod dataset;
mod loader;
pub mod mnist;
pub mod sampler;
pub mod text;

pub use dataset::{
    Batch, CharWindows, Dataset, HostData, HostTensor, MnistDataset, Subset, TensorDataset,
};
pub use loader::{Batches, DataLoader, RandomSampler, Sampler, SequentialSampler};

use crate::rng::Rng;

/// Index batches over `n` examples: shuffled with `seed` (a new order each epoch when the
/// caller passes `seed + epoch`), the last batch possibly smaller.
pub fn shuffled_batches(n: usize, batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect()
}
