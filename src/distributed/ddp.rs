//! `DistributedDataParallel`: rank 0's parameters on every rank, gradients averaged in buckets.

use super::{copy_into, words_of, ProcessGroup};
use crate::{no_grad, DType, Error, Gradients, Result, Tensor};
use mpi::collective::SystemOperation;
use mpi::request::Request;
use mpi::traits::*;
use std::cell::RefCell;

/// PyTorch's default bucket size (`bucket_cap_mb=25`).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Data-parallel training as PyTorch's `DistributedDataParallel`, for wgml's explicit
/// gradients: [`DistributedDataParallel::new`] gives every rank rank 0's parameter values, and
/// [`DistributedDataParallel::reduce_gradients`], called between `backward` and the optimizer
/// step, replaces each rank's gradients by their mean over the ranks. Every rank then runs the
/// same optimizer step on the same gradients, so the parameters stay identical (bit for bit:
/// an MPI all-reduce hands every rank the same result), and gradient clipping and
/// [`crate::amp::GradScaler`]'s inf check see the same values everywhere.
///
/// The gradients travel in buckets of about `bucket_bytes` (default 25 MiB, as PyTorch) in
/// reverse parameter order, the order `backward` finishes them. Each bucket is packed on the
/// gradients' device into one contiguous F32 buffer, read back in one read, and handed to a
/// nonblocking all-reduce (`MPI_Iallreduce`) while the next bucket is packed; the results are
/// unpacked once every bucket is under way. (wgml's `backward` is one call, so communication
/// overlaps the packing of later buckets, not the backward pass itself as PyTorch's hooks do.)
///
/// A parameter without a gradient on some rank counts as a zero gradient there; one without a
/// gradient on every rank keeps none. The mean divides by the world size, as PyTorch does.
pub struct DistributedDataParallel {
    pg: ProcessGroup,
    params: Vec<(String, Tensor)>,
    /// Indices into `params`, last parameter first.
    buckets: Vec<Vec<usize>>,
    /// Each bucket's send and receive buffers, made at the first reduction and kept.
    buffers: RefCell<Vec<(Vec<f32>, Vec<f32>)>>,
}

impl DistributedDataParallel {
    /// Wraps `params` (every rank passes the same names, shapes and dtypes, in the same order)
    /// with 25 MiB buckets, and broadcasts rank 0's values into every rank's parameters.
    pub fn new(
        pg: &ProcessGroup,
        params: Vec<(String, Tensor)>,
    ) -> Result<DistributedDataParallel> {
        DistributedDataParallel::with_bucket_bytes(pg, params, DEFAULT_BUCKET_BYTES)
    }

    /// [`DistributedDataParallel::new`] with buckets of about `bucket_bytes` of F32 gradients
    /// (a parameter larger than that travels in a bucket of its own).
    pub fn with_bucket_bytes(
        pg: &ProcessGroup,
        params: Vec<(String, Tensor)>,
        bucket_bytes: usize,
    ) -> Result<DistributedDataParallel> {
        const OP: &str = "DistributedDataParallel";
        if params.is_empty() {
            return Err(Error::invalid(OP, "no parameters to train"));
        }
        if bucket_bytes == 0 {
            return Err(Error::invalid(
                OP,
                "the bucket size must be at least one byte",
            ));
        }
        let refs: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
        pg.check_same_tensors(OP, &refs)?;
        let mut buckets: Vec<Vec<usize>> = Vec::new();
        let mut filled = 0usize;
        for i in (0..params.len()).rev() {
            let bytes = params[i].1.numel().saturating_mul(4);
            match buckets.last_mut() {
                Some(b) if filled.saturating_add(bytes) <= bucket_bytes => b.push(i),
                _ => {
                    buckets.push(vec![i]);
                    filled = 0;
                }
            }
            filled = filled.saturating_add(bytes);
        }
        let ddp = DistributedDataParallel {
            pg: pg.clone(),
            params,
            buckets,
            buffers: RefCell::new(Vec::new()),
        };
        ddp.sync_parameters()?;
        Ok(ddp)
    }

    /// The process group.
    pub fn process_group(&self) -> &ProcessGroup {
        &self.pg
    }

    /// The wrapped parameters.
    pub fn parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The number of gradient buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Copies rank 0's parameter values into every rank's parameters, a bucket at a time (done
    /// by the constructor; again after rank 0 alone has loaded a checkpoint, say).
    pub fn sync_parameters(&self) -> Result<()> {
        if self.pg.world_size() == 1 {
            return Ok(());
        }
        for bucket in &self.buckets {
            let lens: Vec<usize> = bucket
                .iter()
                .map(|&i| {
                    let p = &self.params[i].1;
                    words_of(p.dtype(), p.numel())
                })
                .collect();
            let mut words = if self.pg.is_main() {
                let mut w = Vec::with_capacity(lens.iter().sum());
                for &i in bucket {
                    w.extend(self.params[i].1.to_words()?);
                }
                w
            } else {
                vec![0u32; lens.iter().sum()]
            };
            self.pg.broadcast_words(&mut words, 0);
            if !self.pg.is_main() {
                let mut off = 0;
                for (&i, &n) in bucket.iter().zip(&lens) {
                    let p = &self.params[i].1;
                    let t = Tensor::from_words(
                        words[off..off + n].to_vec(),
                        p.shape().clone(),
                        p.dtype(),
                        p.device(),
                        "DistributedDataParallel::sync_parameters",
                    )?;
                    p.assign(&t)?;
                    off += n;
                }
            }
        }
        Ok(())
    }

    /// Replaces the gradients of the wrapped parameters in `grads` by their mean over every
    /// rank (see the type's docs). Every rank must call it once per step.
    pub fn reduce_gradients(&self, grads: &mut Gradients) -> Result<()> {
        if self.pg.world_size() == 1 {
            return Ok(());
        }
        let mut guard = self.buffers.borrow_mut();
        let buffers = &mut *guard;
        if buffers.is_empty() {
            // Kept from step to step: fresh pages would cost a fault per 4 KiB every step.
            for b in &self.buckets {
                let n: usize = b.iter().map(|&i| self.params[i].1.numel()).sum();
                // One presence flag per parameter behind its values.
                let len = n + b.len();
                buffers.push((vec![0f32; len], vec![0f32; len]));
            }
        }
        {
            let grads = &*grads;
            let comm = self.pg.comm();
            mpi::request::scope(|scope| {
                let mut pending: Vec<Option<Request<'_, [f32], _>>> = Vec::new();
                let mut result = Ok(());
                for (bi, (send, recv)) in buffers.iter_mut().enumerate() {
                    if let Err(e) = self.pack(bi, grads, send) {
                        result = Err(e);
                        break;
                    }
                    let send: &Vec<f32> = send;
                    pending.push(Some(comm.immediate_all_reduce_into(
                        scope,
                        &send[..],
                        &mut recv[..],
                        SystemOperation::sum(),
                    )));
                    // Drive the reductions under way (MPI progresses them inside MPI calls).
                    for r in pending.iter_mut() {
                        if let Some(q) = r.take() {
                            *r = q.test().err();
                        }
                    }
                }
                for q in pending.into_iter().flatten() {
                    q.wait();
                }
                result
            })?;
        }
        self.unpack(buffers, grads)
    }

    /// Packs bucket `bi`'s gradients into `send`: the values (as F32, zeros for a missing
    /// gradient) in bucket order, then one presence flag (1 or 0) per parameter. On a GPU the
    /// bucket is concatenated on the device and read back in one read.
    fn pack(&self, bi: usize, grads: &Gradients, send: &mut [f32]) -> Result<()> {
        const OP: &str = "DistributedDataParallel::reduce_gradients";
        let bucket = &self.buckets[bi];
        let values = send.len() - bucket.len();
        let mut present = Vec::with_capacity(bucket.len());
        let mut found = Vec::with_capacity(bucket.len());
        for &i in bucket {
            let (name, p) = &self.params[i];
            let g = grads.get(p);
            if let Some(g) = g {
                if g.dims() != p.dims() {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "the gradient of {name} has shape {:?}, the parameter {:?}",
                            g.dims(),
                            p.dims()
                        ),
                    ));
                }
            }
            present.push(if g.is_some() { 1.0 } else { 0.0 });
            found.push(g);
        }
        send[values..].copy_from_slice(&present);
        if self.params[bucket[0]].1.device().is_gpu() {
            let flat = no_grad(|| -> Result<Tensor> {
                let pieces: Vec<Tensor> = bucket
                    .iter()
                    .zip(&found)
                    .map(|(&i, g)| {
                        let p = &self.params[i].1;
                        match g {
                            Some(g) => g.reshape([p.numel()])?.to_dtype(DType::F32),
                            None => Tensor::zeros([p.numel()], p.device()),
                        }
                    })
                    .collect::<Result<_>>()?;
                match pieces.as_slice() {
                    [one] => Ok(one.clone()),
                    _ => Tensor::cat(&pieces.iter().collect::<Vec<_>>(), 0),
                }
            })?;
            return copy_into(&flat, &mut send[..values]);
        }
        let mut off = 0;
        for (&i, g) in bucket.iter().zip(&found) {
            let n = self.params[i].1.numel();
            match g {
                Some(g) => copy_into(g, &mut send[off..off + n])?,
                None => send[off..off + n].fill(0.0),
            }
            off += n;
        }
        Ok(())
    }

    /// Writes the reduced buckets back into `grads` as means.
    fn unpack(&self, buffers: &[(Vec<f32>, Vec<f32>)], grads: &mut Gradients) -> Result<()> {
        const OP: &str = "DistributedDataParallel::reduce_gradients";
        let inv = 1.0 / self.pg.world_size() as f32;
        for (bucket, (_, recv)) in self.buckets.iter().zip(buffers) {
            let values = recv.len() - bucket.len();
            let flags = &recv[values..];
            let mut off = 0;
            for (&i, &flag) in bucket.iter().zip(flags) {
                let p = &self.params[i].1;
                let n = p.numel();
                if flag == 0.0 {
                    grads.remove(p);
                } else {
                    let mut mean = crate::cpu::alloc::try_take(n, OP)?;
                    for (m, v) in mean.iter_mut().zip(&recv[off..off + n]) {
                        *m = v * inv;
                    }
                    let g = Tensor::from_vec(mean, p.shape().clone(), p.device())?
                        .to_dtype(p.dtype())?;
                    grads.insert(p, g);
                }
                off += n;
            }
        }
        Ok(())
    }
}
