//! `DistributedDataParallel`: rank 0's parameters on every rank, gradients averaged in buckets.

use super::{words_of, ProcessGroup};
use crate::{no_grad, DType, Error, Gradients, Result, Tensor};
use mpi::collective::SystemOperation;
use mpi::request::Request;
use mpi::traits::*;

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
        let mut sends: Vec<Vec<f32>> = vec![Vec::new(); self.buckets.len()];
        let mut recvs: Vec<Vec<f32>> = self
            .buckets
            .iter()
            .map(|b| {
                let n: usize = b.iter().map(|&i| self.params[i].1.numel()).sum();
                // One presence flag per parameter behind its values.
                vec![0f32; n + b.len()]
            })
            .collect();
        let packed = {
            let grads = &*grads;
            let comm = self.pg.comm();
            mpi::request::scope(|scope| {
                let mut pending: Vec<Option<Request<'_, [f32], _>>> = Vec::new();
                let mut result = Ok(());
                for (bi, (send, recv)) in sends.iter_mut().zip(recvs.iter_mut()).enumerate() {
                    match self.pack(bi, grads) {
                        Ok(v) => *send = v,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                    let send: &Vec<f32> = send;
                    debug_assert_eq!(send.len(), recv.len());
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
            })
        };
        packed?;
        self.unpack(&recvs, grads)
    }

    /// Bucket `bi`'s gradients as one host buffer: the values (F32, zeros for a missing
    /// gradient) in bucket order, then one presence flag (1 or 0) per parameter.
    fn pack(&self, bi: usize, grads: &Gradients) -> Result<Vec<f32>> {
        const OP: &str = "DistributedDataParallel::reduce_gradients";
        let bucket = &self.buckets[bi];
        no_grad(|| {
            let mut pieces = Vec::with_capacity(bucket.len());
            let mut present = Vec::with_capacity(bucket.len());
            for &i in bucket {
                let (name, p) = &self.params[i];
                match grads.get(p) {
                    Some(g) => {
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
                        pieces.push(g.reshape([g.numel()])?.to_dtype(DType::F32)?);
                        present.push(1.0);
                    }
                    None => {
                        pieces.push(Tensor::zeros([p.numel()], p.device())?);
                        present.push(0.0);
                    }
                }
            }
            let flat = match pieces.as_slice() {
                [one] => one.clone(),
                _ => Tensor::cat(&pieces.iter().collect::<Vec<_>>(), 0)?,
            };
            let mut host = flat.to_vec()?;
            host.extend(present);
            Ok(host)
        })
    }

    /// Writes the reduced buckets back into `grads` as means.
    fn unpack(&self, recvs: &[Vec<f32>], grads: &mut Gradients) -> Result<()> {
        let inv = 1.0 / self.pg.world_size() as f32;
        for (bucket, recv) in self.buckets.iter().zip(recvs) {
            let values = recv.len() - bucket.len();
            let flags = &recv[values..];
            let mut off = 0;
            for (&i, &flag) in bucket.iter().zip(flags) {
                let p = &self.params[i].1;
                let n = p.numel();
                if flag == 0.0 {
                    grads.remove(p);
                } else {
                    let mean: Vec<f32> = recv[off..off + n].iter().map(|v| v * inv).collect();
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
