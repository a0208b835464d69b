//! Data-parallel costs over MPI (`cargo bench --features mpi --bench distributed`): all-reduce
//! bandwidth between 2 ranks at 1, 16 and 64 MB (raw MPI on host buffers, and wgml's tensor
//! `all_reduce`), and the Keras MNIST CNN's training steps per second with 1 and 2 ranks at the
//! same global batch, on the CPU backend with one thread per rank, with the time per step
//! split into its parts.
//!
//! Run alone, it launches itself under `mpirun` for each measurement (fixed iteration counts,
//! the same on every rank, so no rank waits on another's adaptive sampling as it would under
//! criterion). `WGML_BENCH_STEPS` sets the timed MNIST steps (default 40).

#[path = "../examples/common/models.rs"]
mod models;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::process::Command;
use std::time::{Duration, Instant};
use wgml::distributed::{self, DistributedDataParallel, ProcessGroup, Reduction};
use wgml::nn::{loss, Module};
use wgml::optim::{Adam, Optimizer};
use wgml::rng::Rng;
use wgml::{Device, Result, Tensor};

const ROLE_ENV: &str = "WGML_BENCH_ROLE";

fn main() -> Result<()> {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("allreduce") => allreduce(&distributed::init()?),
        Ok("mnist") => mnist(&distributed::init()?),
        _ => {
            launch("allreduce", 2, 1);
            launch("mnist", 1, 1);
            launch("mnist", 2, 1);
            // For comparison: one process using both cores through the CPU backend's threads.
            launch("mnist", 1, 2);
            Ok(())
        }
    }
}

/// Runs this binary as `role` on `np` ranks of `threads` CPU-backend threads each.
fn launch(role: &str, np: usize, threads: usize) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let status = Command::new("mpirun")
        .args(["-np", &np.to_string()])
        .arg(exe)
        .env(ROLE_ENV, role)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("MPIEXEC_TIMEOUT", "900")
        .status()
        .expect("mpirun (Debian: apt-get install openmpi-bin libopenmpi-dev)");
    assert!(status.success(), "mpirun -np {np} {role}: {status}");
}

/// Seconds per call of `f` over `iters` calls, every rank starting together.
fn time(pg: &ProcessGroup, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    pg.barrier();
    let t0 = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    pg.barrier();
    Ok(t0.elapsed().as_secs_f64() / iters as f64)
}

fn allreduce(pg: &ProcessGroup) -> Result<()> {
    let w = pg.world_size();
    if pg.is_main() {
        println!(
            "all-reduce (sum of f32) between {w} ranks on one machine: time per call, algorithm \
             bandwidth (bytes / time) and bus bandwidth (x 2(n-1)/n, as nccl-tests)"
        );
    }
    let world = SimpleCommunicator::world();
    for mb in [1usize, 16, 64] {
        let bytes = mb << 20;
        let n = bytes / 4;
        let iters = (1024 / mb).clamp(10, 200);
        let send = vec![1f32; n];
        let mut recv = vec![0f32; n];
        let raw = time(pg, iters, || {
            world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
            Ok(())
        })?;
        let t = Tensor::ones([n], &Device::Cpu)?;
        let tensor = time(pg, iters, || pg.all_reduce(&t, Reduction::Mean).map(|_| ()))?;
        if pg.is_main() {
            for (what, s) in [("raw MPI_Allreduce", raw), ("Tensor all_reduce", tensor)] {
                let alg = bytes as f64 / s / 1e9;
                println!(
                    "  {mb:>3} MB {what:<18} {:>8.3} ms  {alg:>6.2} GB/s algbw  {:>6.2} GB/s busbw",
                    s * 1e3,
                    alg * 2.0 * (w - 1) as f64 / w as f64
                );
            }
        }
    }
    Ok(())
}

/// The Keras MNIST CNN with Adam at a global batch of 64, split over the ranks.
fn mnist(pg: &ProcessGroup) -> Result<()> {
    let (r, w) = (pg.rank(), pg.world_size());
    let dev = Device::Cpu;
    let data = wgml::data::mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist"))?;
    let model = models::mnist_cnn(&mut Rng::new(0), &dev)?;
    let ddp = DistributedDataParallel::new(pg, model.parameters())?;
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let global = 64;
    let per = global / w;
    let steps: usize = std::env::var("WGML_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let batches = wgml::data::shuffled_batches(data.train.len(), global, 0);
    let (mut fwd_bwd, mut comm, mut update, mut input) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut run = |i: usize, timed: bool| -> Result<()> {
        let t0 = Instant::now();
        let idx = &batches[i][r * per..(r + 1) * per];
        let (x, y) = data.train.batch(idx, &dev)?;
        let x = models::standardise(&x.reshape([per, 1, 28, 28])?)?;
        let t1 = Instant::now();
        let mut grads = loss::cross_entropy(&model.forward(&x)?, &y)?.backward()?;
        let t2 = Instant::now();
        ddp.reduce_gradients(&mut grads)?;
        let t3 = Instant::now();
        opt.step(&grads)?;
        if timed {
            input += t1 - t0;
            fwd_bwd += t2 - t1;
            comm += t3 - t2;
            update += t3.elapsed();
        }
        Ok(())
    };
    for i in 0..3 {
        run(i, false)?;
    }
    pg.barrier();
    let t0 = Instant::now();
    for i in 3..3 + steps {
        run(i, true)?;
    }
    pg.barrier();
    let secs = t0.elapsed().as_secs_f64();
    if pg.is_main() {
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / steps as f64;
        let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
        println!(
            "mnist_cnn, global batch {global}: {w} rank(s) x {per} per rank, {threads} thread(s) \
             per rank: {:.2} steps/s ({:.1} ms/step; rank 0: batch {:.1}, forward+backward \
             {:.1}, gradient all-reduce {:.1}, optimizer {:.1} ms)",
            steps as f64 / secs,
            secs * 1e3 / steps as f64,
            ms(input),
            ms(fwd_bwd),
            ms(comm),
            ms(update)
        );
    }
    Ok(())
}
