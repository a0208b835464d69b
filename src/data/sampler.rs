//! `DistributedSampler`: each rank's shard of every epoch's shuffled order (PyTorch's meaning).

use crate::rng::Rng;
use crate::{Error, Result};

/// The indices one rank of a data-parallel job reads in an epoch, as PyTorch's
/// `DistributedSampler`: every rank shuffles `0..len` with the same seed (`seed + epoch`, the
/// order [`super::shuffled_batches`] uses), the order is padded by repeating its first indices
/// to a multiple of the world size (or, with `drop_last`, cut to one), and rank `r` takes every
/// `world_size`-th index starting at `r`. So the ranks' shards never overlap, and together
/// they cover the epoch; with per-rank batches of `b`, the `k`-th batches of all ranks hold
/// exactly the `k`-th global batch of `b · world_size` indices of the shuffled order.
#[derive(Clone, Debug)]
pub struct DistributedSampler {
    len: usize,
    world_size: usize,
    rank: usize,
    seed: u64,
    shuffle: bool,
    drop_last: bool,
    epoch: u64,
}

impl DistributedSampler {
    /// The sampler of rank `rank` of `world_size` over a data set of `len` examples (shuffled,
    /// seed 0, padded rather than cut).
    pub fn new(len: usize, world_size: usize, rank: usize) -> Result<DistributedSampler> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::invalid(
                "DistributedSampler",
                format!("rank {rank} is out of range for a world of {world_size} processes"),
            ));
        }
        Ok(DistributedSampler {
            len,
            world_size,
            rank,
            seed: 0,
            shuffle: true,
            drop_last: false,
            epoch: 0,
        })
    }

    /// The shuffling seed (the same on every rank).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether each epoch is shuffled (else `0..len` in order).
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Cut the order to a multiple of the world size instead of padding it.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// The epoch whose order [`DistributedSampler::indices`] gives (call at each epoch's start).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The number of indices each rank reads per epoch.
    pub fn num_samples(&self) -> usize {
        self.count_for(self.len)
    }

    /// This rank's indices for the current epoch.
    pub fn indices(&self) -> Vec<usize> {
        self.shard(self.len, self.epoch)
    }

    /// Indices per rank for a data set of `len`.
    fn count_for(&self, len: usize) -> usize {
        if self.drop_last {
            len / self.world_size
        } else {
            len.div_ceil(self.world_size)
        }
    }

    /// This rank's indices of `epoch` over `len` examples.
    fn shard(&self, len: usize, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        if self.shuffle {
            Rng::new(self.seed.wrapping_add(epoch)).shuffle(&mut order);
        }
        let total = self.count_for(len) * self.world_size;
        if total > order.len() && !order.is_empty() {
            let pad: Vec<usize> = order
                .iter()
                .cycle()
                .take(total - order.len())
                .copied()
                .collect();
            order.extend(pad);
        }
        order.truncate(total);
        order
            .into_iter()
            .skip(self.rank)
            .step_by(self.world_size)
            .collect()
    }

    /// This rank's indices for the current epoch in batches of `batch_size` (the last one
    /// possibly smaller).
    pub fn batches(&self, batch_size: usize) -> Vec<Vec<usize>> {
        self.indices()
            .chunks(batch_size.max(1))
            .map(|c| c.to_vec())
            .collect()
    }
}

/// As a [`DataLoader`](super::DataLoader)'s sampler it shards the loader's data set (its
/// length, not the one given to [`DistributedSampler::new`]) and epoch: the loader then
/// yields this rank's batches, and its `len` is this rank's batch count.
impl super::Sampler for DistributedSampler {
    fn indices(&self, len: usize, epoch: usize) -> Vec<usize> {
        self.shard(len, epoch as u64)
    }
    fn count(&self, len: usize) -> usize {
        self.count_for(len)
    }
}
