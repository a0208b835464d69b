//! Data-parallel training over MPI (feature `mpi`): a process group, collectives on tensors, and
//! gradient averaging in buckets ([`DistributedDataParallel`]).
//!
//! Launch one process per device with `mpirun -np N program` (Open MPI or MPICH). Every process
//! calls [`init`], builds the same model, wraps its parameters in a
//! [`DistributedDataParallel`] (which broadcasts rank 0's values) and trains on its own shard
//! of each batch ([`crate::data::sampler::DistributedSampler`]); after `backward` the gradients
//! are averaged across the processes, and every process runs the same optimizer step, so the
//! parameters stay identical.
//!
//! ```no_run
//! # #[cfg(feature = "mpi")]
//! # fn main() -> wgml::Result<()> {
//! use wgml::distributed::{self, DistributedDataParallel};
//! use wgml::nn::{Linear, Module};
//! use wgml::optim::{Adam, Optimizer};
//! use wgml::{rng::Rng, Device, Tensor};
//!
//! let pg = distributed::init()?;
//! let dev = Device::cpu();
//! let model = Linear::new(8, 1, true, &mut Rng::new(0), &dev)?;
//! let ddp = DistributedDataParallel::new(&pg, model.parameters())?;
//! let mut opt = Adam::new(model.parameters(), 1e-3);
//! for step in 0..10 {
//!     // This rank's half (or 1/N) of the step's batch.
//!     let x = Tensor::randn([4, 8], (step * pg.world_size() + pg.rank()) as u64, &dev)?;
//!     let loss = model.forward(&x)?.powf(2.0)?.mean_all()?;
//!     let mut grads = loss.backward()?;
//!     ddp.reduce_gradients(&mut grads)?; // the mean over every rank's gradients
//!     opt.step(&grads)?;
//! }
//! # Ok(()) }
//! # #[cfg(not(feature = "mpi"))] fn main() {}
//! ```
//!
//! **Failures end the job.** A collective waits for every rank, so a rank that stops early
//! would leave the others waiting forever. After [`init`], a panic on any thread of any rank
//! prints its message and aborts the whole job (`MPI_Abort`), and a process that exits with a
//! non-zero status (`main` returning `Err`, `std::process::exit(1)`) aborts it too instead of
//! finalising; a zero exit finalises MPI. (The exit status is read through glibc's `on_exit`;
//! on other C libraries MPI is finalised at any exit, so bound jobs with `MPIEXEC_TIMEOUT`.)
//!
//! **GPU tensors are staged through host memory**: each collective reads the tensor back in
//! one contiguous read (a whole gradient bucket at once in [`DistributedDataParallel`]),
//! reduces or broadcasts it on the host, and uploads the result in one write. There is no
//! GPU-direct transport in WebGPU.

mod ddp;

pub use ddp::DistributedDataParallel;

use crate::cpu::alloc::CpuBuf;
use crate::tensor::Storage;
use crate::{DType, Device, Error, Result, Tensor};
use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{OnceLock, RwLockReadGuard};

/// How [`ProcessGroup::all_reduce`] combines the ranks' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The element-wise sum over the ranks.
    Sum,
    /// The element-wise mean over the ranks (the sum divided by the world size, in F32).
    Mean,
}

/// This process's place in the job: its rank, the world size, its rank among the processes on
/// its machine, and the collectives. Made by [`init`]; every handle speaks for the same job.
///
/// Collectives must be called by every rank in the same order with tensors of the same shape
/// and dtype (checked where it can be: each tensor collective first compares the ranks' shapes,
/// one small all-gather, and returns the same `Err` on every rank when they differ). A handle
/// is not `Send`: call collectives from one thread at a time.
pub struct ProcessGroup {
    world: SimpleCommunicator,
    info: &'static Info,
}

/// What [`init`] learned once for the whole process.
struct Info {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
}

static INFO: OnceLock<Info> = OnceLock::new();
/// This process's rank for the failure messages of the panic hook and the exit handler.
static RANK: AtomicI32 = AtomicI32::new(-1);

/// The most elements one MPI call moves (its counts are C `int`s).
const MAX_COUNT: usize = 1 << 30;

/// Joins the MPI job this process was launched in (`mpirun -np N ...`), or starts a job of one
/// process when it was launched alone. Later calls return another handle to the same group.
///
/// Installs the failure handling described in the [module docs](self): a panic anywhere
/// aborts the whole job, and so does a non-zero exit status.
pub fn init() -> Result<ProcessGroup> {
    let info = match INFO.get() {
        Some(info) => info,
        None => {
            let (universe, _threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
                .ok_or_else(|| {
                    Error::invalid(
                        "distributed::init",
                        "MPI was initialised outside wgml; call distributed::init() before \
                         anything else uses MPI",
                    )
                })?;
            // MPI is finalised by the exit handler, never by a drop: a rank unwinding from an
            // error must not finalise (that waits for ranks that are still in a collective).
            std::mem::forget(universe);
            let world = SimpleCommunicator::world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            // Collective: every rank splits, whatever the launcher's environment says.
            let shared = world.split_shared(rank as i32);
            let local_rank = launcher_local_rank().unwrap_or(shared.rank() as usize);
            let local_size = shared.size() as usize;
            RANK.store(rank as i32, Ordering::Relaxed);
            install_failure_handling();
            INFO.get_or_init(|| Info {
                rank,
                size,
                local_rank,
                local_size,
            })
        }
    };
    Ok(ProcessGroup {
        world: SimpleCommunicator::world(),
        info,
    })
}

/// The local rank the launcher exported (Open MPI, MPICH/Hydra, MVAPICH, Slurm).
fn launcher_local_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "MV2_COMM_WORLD_LOCAL_RANK",
        "PMI_LOCAL_RANK",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}

/// Ends the whole job from this rank with `code` (`MPI_Abort` on the world communicator).
fn abort_job(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

fn install_failure_handling() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        eprintln!(
            "wgml::distributed: rank {} panicked; aborting the whole job",
            RANK.load(Ordering::Relaxed)
        );
        abort_job(101);
    }));
    exit_handler::install();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod exit_handler {
    use std::ffi::{c_int, c_void};

    extern "C" {
        /// glibc: like `atexit`, with the exit status passed to the handler.
        fn on_exit(f: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
    }

    extern "C" fn at_exit(status: c_int, _: *mut c_void) {
        if status == 0 {
            // SAFETY: MPI was initialised by `init` and nothing runs MPI after exit begins.
            unsafe { mpi::ffi::MPI_Finalize() };
        } else {
            eprintln!(
                "wgml::distributed: rank {} is exiting with status {status}; aborting the whole job",
                super::RANK.load(std::sync::atomic::Ordering::Relaxed)
            );
            super::abort_job(status);
        }
    }

    pub(super) fn install() {
        // SAFETY: registers a plain function with no captured state.
        unsafe { on_exit(at_exit, std::ptr::null_mut()) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod exit_handler {
    extern "C" {
        fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
    }

    extern "C" fn at_exit() {
        // SAFETY: MPI was initialised by `init` and nothing runs MPI after exit begins.
        unsafe { mpi::ffi::MPI_Finalize() };
    }

    pub(super) fn install() {
        // SAFETY: registers a plain function with no captured state.
        unsafe { atexit(at_exit) };
    }
}

impl Clone for ProcessGroup {
    fn clone(&self) -> Self {
        ProcessGroup {
            world: SimpleCommunicator::world(),
            info: self.info,
        }
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProcessGroup(rank {} of {}, local rank {} of {})",
            self.info.rank, self.info.size, self.info.local_rank, self.info.local_size
        )
    }
}

impl ProcessGroup {
    /// This process's rank, `0..world_size()`.
    pub fn rank(&self) -> usize {
        self.info.rank
    }

    /// The number of processes in the job.
    pub fn world_size(&self) -> usize {
        self.info.size
    }

    /// This process's rank among the job's processes on the same machine: the launcher's
    /// (`OMPI_COMM_WORLD_LOCAL_RANK`, `MPI_LOCALRANKID`, `SLURM_LOCALID`, ...) where it exports
    /// one, else found by MPI. Use it to give each process its own adapter, `gpu:local_rank`.
    pub fn local_rank(&self) -> usize {
        self.info.local_rank
    }

    /// The number of the job's processes on this machine.
    pub fn local_size(&self) -> usize {
        self.info.local_size
    }

    /// Whether this is rank 0, the one that prints, evaluates and saves in the examples.
    pub fn is_main(&self) -> bool {
        self.info.rank == 0
    }

    /// This rank's device from a `--device`-style spec: `gpu` is this rank's own adapter on
    /// its machine, `gpu:N` with `N = local_rank mod` the adapters there are (so the processes
    /// on a machine with several GPUs spread over them); any other spec as [`Device::parse`];
    /// `None` is [`Device::best`].
    pub fn device(&self, spec: Option<&str>) -> Result<Device> {
        match spec.map(|s| s.trim().to_ascii_lowercase()) {
            Some(s) if s == "gpu" => {
                let n = crate::gpu::adapters().len().max(1);
                Device::gpu_index(self.local_rank() % n)
            }
            Some(s) => Device::parse(&s),
            None => Ok(Device::best()),
        }
    }

    /// Waits until every rank has called `barrier`.
    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// Whether `flag` is true on any rank (a logical-or all-reduce): how ranks agree to stop.
    pub fn any(&self, flag: bool) -> bool {
        let mut out = 0i32;
        self.world
            .all_reduce_into(&(flag as i32), &mut out, SystemOperation::max());
        out != 0
    }

    /// The element-wise sum or mean of `t` over every rank, as a new tensor on `t`'s device
    /// with `t`'s dtype. F32 and F16 (summed in F32, rounded once) take either reduction; U32
    /// takes `Sum` (wrapping). A tensor of 0 elements is a no-op that returns a copy.
    pub fn all_reduce(&self, t: &Tensor, op: Reduction) -> Result<Tensor> {
        const OP: &str = "all_reduce";
        self.check_same_tensors(OP, &[t])?;
        if t.numel() == 0 {
            return t.copy();
        }
        match t.dtype() {
            DType::U32 => {
                if op == Reduction::Mean {
                    return Err(Error::invalid(
                        OP,
                        format!("the mean of a U32 tensor (shape {:?}); use Sum", t.dims()),
                    ));
                }
                let send = t.to_vec_u32()?;
                let mut out = vec![0u32; send.len()];
                self.sum_into(&send, &mut out);
                Tensor::from_indices(&out, t.shape().clone(), t.device())
            }
            dtype => {
                // Into a recycled buffer (fresh pages cost a fault per 4 KiB), from the
                // storage itself where it is a dense CPU F32 one.
                let mut out = crate::cpu::alloc::try_take(t.numel(), OP)?;
                match dense_cpu_f32(t) {
                    Some((data, o)) => self.sum_into(&data[o..o + t.numel()], &mut out),
                    None => self.sum_into(&t.to_vec()?, &mut out),
                }
                if op == Reduction::Mean {
                    let inv = 1.0 / self.world_size() as f32;
                    out.iter_mut().for_each(|v| *v *= inv);
                }
                Tensor::from_vec(out, t.shape().clone(), t.device())?.to_dtype(dtype)
            }
        }
    }

    /// Rank `root`'s values of `t`, on every rank, as a new tensor on this rank's device (the
    /// bits are copied, so every rank ends with identical values). 0 elements: a no-op copy.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        const OP: &str = "broadcast";
        self.check_root(OP, root)?;
        self.check_same_tensors(OP, &[t])?;
        if t.numel() == 0 {
            return t.copy();
        }
        let mut words = if self.rank() == root {
            t.to_words()?
        } else {
            vec![0u32; words_of(t.dtype(), t.numel())]
        };
        self.broadcast_words(&mut words, root);
        Tensor::from_words(words, t.shape().clone(), t.dtype(), t.device(), OP)
    }

    /// [`ProcessGroup::broadcast`] into `t` in place ([`Tensor::assign`]): how parameters that
    /// models and optimizers already hold take rank `root`'s values.
    pub fn broadcast_into(&self, t: &Tensor, root: usize) -> Result<()> {
        let b = self.broadcast(t, root)?;
        if self.rank() != root {
            t.assign(&b)?;
        }
        Ok(())
    }

    fn check_root(&self, op: &'static str, root: usize) -> Result<()> {
        if root >= self.world_size() {
            return Err(Error::invalid(
                op,
                format!(
                    "root rank {root} is out of range for a world of {} processes",
                    self.world_size()
                ),
            ));
        }
        Ok(())
    }

    /// Compares the shapes and dtypes of `ts` across the ranks (one all-gather of a
    /// fingerprint per call); the same `Err`, naming each rank's shapes, on every rank.
    pub(crate) fn check_same_tensors(&self, op: &'static str, ts: &[&Tensor]) -> Result<()> {
        let describe = |ts: &[&Tensor]| -> String {
            ts.iter()
                .map(|t| format!("{:?} {:?}", t.dims(), t.dtype()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mine = fingerprint(ts);
        let mut all = vec![0u64; FINGERPRINT * self.world_size()];
        self.world.all_gather_into(&mine[..], &mut all[..]);
        let differs = all.chunks(FINGERPRINT).any(|f| f != mine);
        if !differs {
            return Ok(());
        }
        // The fingerprints carry what the message needs: count, dtype and leading dims.
        let ranks: Vec<String> = all
            .chunks(FINGERPRINT)
            .enumerate()
            .map(|(r, f)| format!("rank {r}: {}", describe_fingerprint(f)))
            .collect();
        Err(Error::invalid(
            op,
            format!(
                "the ranks' tensors differ ({}); this rank (rank {}) has {}",
                ranks.join("; "),
                self.rank(),
                describe(ts)
            ),
        ))
    }

    /// Sums `send` over the ranks into `out` (same length), in calls of at most
    /// [`MAX_COUNT`] elements.
    fn sum_into<T: Equivalence>(&self, send: &[T], out: &mut [T]) {
        debug_assert_eq!(send.len(), out.len());
        for (s, o) in send.chunks(MAX_COUNT).zip(out.chunks_mut(MAX_COUNT)) {
            self.world.all_reduce_into(s, o, SystemOperation::sum());
        }
    }

    /// Broadcasts `words` from `root`, in calls of at most [`MAX_COUNT`] words.
    fn broadcast_words(&self, words: &mut [u32], root: usize) {
        let root = self.world.process_at_rank(root as i32);
        for c in words.chunks_mut(MAX_COUNT) {
            root.broadcast_into(c);
        }
    }

    /// The world communicator, for the gradient buckets' nonblocking reductions.
    fn comm(&self) -> &SimpleCommunicator {
        &self.world
    }
}

/// A dense CPU F32 tensor's storage, read-locked, and its offset (`None` for anything else).
fn dense_cpu_f32(t: &Tensor) -> Option<(RwLockReadGuard<'_, CpuBuf>, usize)> {
    match (t.storage(), t.dtype(), t.is_contiguous()) {
        (Storage::Cpu(data), DType::F32, true) => Some((data.read().unwrap(), t.layout().offset)),
        _ => None,
    }
}

/// Copies `t`'s values (any dtype, device or layout) into `dst` as F32, in row-major order.
fn copy_into(t: &Tensor, dst: &mut [f32]) -> Result<()> {
    match dense_cpu_f32(t) {
        Some((data, o)) => dst.copy_from_slice(&data[o..o + t.numel()]),
        None => dst.copy_from_slice(&t.to_vec()?),
    }
    Ok(())
}

/// Words in a [`fingerprint`]: count, first dtype, first rank, first 6 dims, a hash of all.
const FINGERPRINT: usize = 10;

/// What [`ProcessGroup::check_same_tensors`] compares: the number of tensors, the first
/// tensor's dtype, rank and leading dims (for the message), and a hash of every shape and dtype.
fn fingerprint(ts: &[&Tensor]) -> [u64; FINGERPRINT] {
    use std::hash::{Hash, Hasher};
    // FNV-1a through std's Hasher trait: the same on every machine (DefaultHasher is not
    // guaranteed to be).
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let mut f = [0u64; FINGERPRINT];
    f[0] = ts.len() as u64;
    for t in ts {
        (t.dims(), dtype_code(t.dtype())).hash(&mut h);
    }
    if let Some(t) = ts.first() {
        f[1] = dtype_code(t.dtype());
        f[2] = t.rank() as u64;
        for (i, d) in t.dims().iter().take(6).enumerate() {
            f[3 + i] = *d as u64;
        }
    }
    f[9] = h.finish();
    f
}

/// The 4-byte words a tensor of `numel` elements of `dtype` occupies (F16: two per word).
fn words_of(dtype: DType, numel: usize) -> usize {
    match dtype {
        DType::F16 => crate::cpu::half::words(numel),
        _ => numel,
    }
}

fn dtype_code(d: DType) -> u64 {
    match d {
        DType::F32 => 1,
        DType::F16 => 2,
        DType::U32 => 3,
    }
}

fn describe_fingerprint(f: &[u64]) -> String {
    let dtype = match f[1] {
        1 => "F32",
        2 => "F16",
        3 => "U32",
        _ => "?",
    };
    let rank = f[2] as usize;
    let dims: Vec<String> = f[3..3 + rank.min(6)]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let more = if rank > 6 { ", ..." } else { "" };
    let others = if f[0] > 1 {
        format!(" and {} more tensors", f[0] - 1)
    } else {
        String::new()
    };
    format!("[{}{more}] {dtype}{others}", dims.join(", "))
}
