//! Data-parallel training over MPI (`cargo test --features mpi --test distributed`): each case
//! launches `mpirun -np 2` on this very binary, whose worker half (selected by
//! `WGML_MPI_WORKER`) runs the case on every rank, with a timeout that kills the job's process
//! group. A custom harness (`harness = false`): the workers are not tests of their own. Built only
//! with the feature (`required-features` in Cargo.toml).

mod common;

fn main() {
    mpi_tests::main()
}

mod mpi_tests {
    use super::common;
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    use wgml::distributed::{self, DistributedDataParallel, ProcessGroup, Reduction};
    use wgml::nn::{loss, Linear, Module};
    use wgml::optim::{Adam, Optimizer, Sgd};
    use wgml::rng::Rng;
    use wgml::{DType, Device, Result, Tensor};

    const WORKER_ENV: &str = "WGML_MPI_WORKER";
    const DEVICE_ENV: &str = "WGML_MPI_DEVICE";

    /// Runs the named case (every rank under mpirun) or the test list (alone).
    pub fn main() {
        if let Ok(case) = std::env::var(WORKER_ENV) {
            return worker(&case);
        }
        let filter: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let gpu = common::gpu().is_some();
        let mut cases: Vec<(&str, &str)> = vec![
            ("collectives", "cpu"),
            ("ddp_equivalence", "cpu"),
            ("fit_equivalence", "cpu"),
            ("fails_on_error", "cpu"),
            ("fails_on_panic", "cpu"),
        ];
        if gpu {
            cases.push(("collectives", "gpu"));
            cases.push(("ddp_equivalence", "gpu"));
        }
        let mut failed = 0;
        let mut ran = 0;
        for (case, dev) in cases {
            let name = format!("{case}_{dev}");
            if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            ran += 1;
            let t0 = Instant::now();
            let outcome = std::panic::catch_unwind(|| check(case, dev));
            let secs = t0.elapsed().as_secs_f64();
            match outcome {
                Ok(()) => println!("test {name} ... ok ({secs:.1} s)"),
                Err(_) => {
                    println!("test {name} ... FAILED ({secs:.1} s)");
                    failed += 1;
                }
            }
        }
        println!("\ntest result: {} passed; {failed} failed", ran - failed);
        if failed > 0 {
            std::process::exit(101);
        }
    }

    /// What a job left behind.
    struct Job {
        status: Option<i32>,
        stdout: String,
        stderr: String,
        secs: f64,
    }

    /// `mpirun -np 2` on this binary for `case`, killed (its whole process group) after
    /// `timeout`.
    fn launch(case: &str, dev: &str, timeout: Duration) -> Job {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = Command::new("mpirun");
        cmd.args(["-np", "2"])
            .arg(exe)
            .env(WORKER_ENV, case)
            .env(DEVICE_ENV, dev)
            // Open MPI: allowed as root (CI), two ranks on any core count, yield when idle
            // (both ranks share two cores with lavapipe's threads), and a second deadline.
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .env("OMPI_MCA_mpi_yield_when_idle", "1")
            .env("MPIEXEC_TIMEOUT", (timeout.as_secs() + 30).to_string())
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let t0 = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run mpirun ({e}): install Open MPI (Debian: apt-get install \
                 openmpi-bin libopenmpi-dev)"
            ),
        };
        let pgid = child.id();
        // Read the pipes on threads so a chatty job cannot block on a full pipe.
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for mpirun") {
                break s.code();
            }
            if t0.elapsed() > timeout {
                let _ = Command::new("kill")
                    .args(["-KILL", &format!("-{pgid}")])
                    .status();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Job {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            secs: t0.elapsed().as_secs_f64(),
        }
    }

    /// Launches `case` and checks how the job ended.
    fn check(case: &str, dev: &str) {
        let timeout = Duration::from_secs(if dev == "gpu" { 400 } else { 120 });
        let job = launch(case, dev, timeout);
        let show = || {
            format!(
                "case {case} on {dev}: status {:?} after {:.1} s\n--- stdout\n{}\n--- stderr\n{}",
                job.status, job.secs, job.stdout, job.stderr
            )
        };
        match case {
            "fails_on_error" | "fails_on_panic" => {
                assert!(
                    matches!(job.status, Some(s) if s != 0),
                    "the job should have failed: {}",
                    show()
                );
                // Rank 0 was left waiting in a collective: the job must end because rank 1
                // failed, well before any timeout.
                assert!(job.secs < 30.0, "the job took too long to end: {}", show());
                assert!(
                    job.stderr.contains("rank 1") && job.stderr.contains("aborting the whole job"),
                    "no clear message: {}",
                    show()
                );
                assert!(
                    job.stdout.contains("rank 0 waiting in a collective"),
                    "rank 0 did not reach its collective: {}",
                    show()
                );
            }
            _ => {
                assert_eq!(job.status, Some(0), "the job failed: {}", show());
                for rank in 0..2 {
                    let done = format!("{case} done on rank {rank}");
                    assert!(job.stdout.contains(&done), "no '{done}': {}", show());
                }
                print!(
                    "{}",
                    job.stdout
                        .lines()
                        .filter(|l| l.starts_with("  "))
                        .fold(String::new(), |s, l| s + l + "\n")
                );
            }
        }
    }

    // ------------------------------------------------------------------ the worker half

    fn worker(case: &str) {
        let pg = distributed::init().expect("MPI init");
        let dev = match std::env::var(DEVICE_ENV).as_deref() {
            Ok("gpu") => Device::gpu().expect("a GPU adapter for the GPU case"),
            _ => Device::cpu(),
        };
        let r = match case {
            "collectives" => collectives(&pg, &dev),
            "ddp_equivalence" => ddp_equivalence(&pg, &dev),
            "fit_equivalence" => fit_equivalence(&pg, &dev),
            "fails_on_error" | "fails_on_panic" => fails(&pg, &dev, case == "fails_on_panic"),
            other => panic!("unknown case {other}"),
        };
        if let Err(e) = r {
            eprintln!("rank {}: {e}", pg.rank());
            std::process::exit(1);
        }
        println!("{case} done on rank {}", pg.rank());
    }

    /// Values on rank `r`: exactly representable in F16, and so are their sums.
    fn values(n: usize, r: usize) -> Vec<f32> {
        (0..n).map(|i| (i % 64) as f32 * 0.5 + r as f32).collect()
    }

    fn collectives(pg: &ProcessGroup, dev: &Device) -> Result<()> {
        let (r, w) = (pg.rank(), pg.world_size());
        assert_eq!(w, 2);
        for dtype in [DType::F32, DType::F16] {
            for n in [1usize, 2, 1001, 4099] {
                let t = Tensor::from_vec(values(n, r), [n], dev)?.to_dtype(dtype)?;
                let sum = pg.all_reduce(&t, Reduction::Sum)?;
                let mean = pg.all_reduce(&t, Reduction::Mean)?;
                assert_eq!((sum.dtype(), sum.dims()), (dtype, &[n][..]));
                assert_eq!(sum.device().name(), dev.name());
                let want: Vec<f32> = (0..n)
                    .map(|i| (0..w).map(|q| values(n, q)[i]).sum())
                    .collect();
                common::assert_close(&sum.to_vec()?, &want, 0.0, 0.0, "all_reduce sum");
                let want_mean: Vec<f32> = want.iter().map(|v| v / w as f32).collect();
                common::assert_close(&mean.to_vec()?, &want_mean, 0.0, 0.0, "all_reduce mean");
                // A strided view reduces as its values.
                let m = Tensor::from_vec(values(n * 2, r), [n, 2], dev)?.to_dtype(dtype)?;
                let col = m.narrow(1, 1, 1)?;
                let s = pg.all_reduce(&col, Reduction::Sum)?;
                let want: Vec<f32> = (0..n)
                    .map(|i| (0..w).map(|q| values(n * 2, q)[2 * i + 1]).sum())
                    .collect();
                common::assert_close(&s.to_vec()?, &want, 0.0, 0.0, "all_reduce of a view");
                // Broadcast from rank 1: rank 1's bits everywhere.
                let b = pg.broadcast(&t, 1)?;
                common::assert_close(&b.to_vec()?, &values(n, 1), 0.0, 0.0, "broadcast");
                // In place: every rank's tensor takes rank 1's values.
                let dst = Tensor::from_vec(values(n, r), [n], dev)?.to_dtype(dtype)?;
                if dtype == DType::F32 || n % 2 == 0 {
                    pg.broadcast_into(&dst, 1)?;
                    common::assert_close(&dst.to_vec()?, &values(n, 1), 0.0, 0.0, "broadcast_into");
                }
            }
            // 0 elements: a documented no-op.
            let empty = Tensor::zeros([0, 3], dev)?.to_dtype(dtype)?;
            assert_eq!(pg.all_reduce(&empty, Reduction::Sum)?.dims(), &[0, 3]);
            assert_eq!(pg.broadcast(&empty, 0)?.dims(), &[0, 3]);
        }
        // U32 sums (indices, counts); their mean is an error.
        let u = Tensor::from_indices(&[1, 2, 3 + r as u32], [3], dev)?;
        assert_eq!(
            pg.all_reduce(&u, Reduction::Sum)?.to_vec_u32()?,
            vec![2, 4, 7]
        );
        assert!(pg.all_reduce(&u, Reduction::Mean).is_err());
        assert_eq!(pg.broadcast(&u, 1)?.to_vec_u32()?, vec![1, 2, 4]);
        // Shapes that differ across ranks: the same clear error on every rank, and the group
        // still works afterwards.
        let odd = Tensor::zeros(if r == 0 { [3, 4] } else { [4, 3] }, dev)?;
        let e = pg.all_reduce(&odd, Reduction::Sum).unwrap_err().to_string();
        assert!(
            e.contains("all_reduce")
                && e.contains("rank 0: [3, 4] F32")
                && e.contains("rank 1: [4, 3] F32"),
            "{e}"
        );
        let half =
            Tensor::zeros([5], dev)?.to_dtype(if r == 0 { DType::F32 } else { DType::F16 })?;
        let e = pg.broadcast(&half, 0).unwrap_err().to_string();
        assert!(e.contains("broadcast") && e.contains("F16"), "{e}");
        assert!(pg
            .broadcast(&u, 2)
            .unwrap_err()
            .to_string()
            .contains("root rank 2"));
        // Agreement on a flag.
        assert!(pg.any(r == 1));
        assert!(!pg.any(false));
        pg.barrier();
        ddp_buckets(pg, dev)?;
        println!("  collectives on {}: rank {r} ok", dev.name());
        Ok(())
    }

    /// Bucketing, missing gradients, and a gradient larger than a bucket.
    fn ddp_buckets(pg: &ProcessGroup, dev: &Device) -> Result<()> {
        let r = pg.rank();
        // Different values on each rank: the constructor must give everyone rank 0's.
        let a = Tensor::from_vec(values(1000, r), [10, 100], dev)?;
        let b = Tensor::from_vec(values(3, r), [3], dev)?;
        let c = Tensor::from_vec(values(5, r), [5], dev)?;
        let d = Tensor::from_vec(values(4, r), [4], dev)?.to_dtype(DType::F16)?;
        let params = vec![
            ("a".to_string(), a.clone()),
            ("b".to_string(), b.clone()),
            ("c".to_string(), c.clone()),
            ("d".to_string(), d.clone()),
        ];
        // 64 bytes: `a` (4000 bytes) travels alone, the small ones share buckets.
        let ddp = DistributedDataParallel::with_bucket_bytes(pg, params, 64)?;
        assert!(ddp.bucket_count() >= 2, "{} buckets", ddp.bucket_count());
        for (t, n) in [(&a, 1000), (&b, 3), (&c, 5), (&d, 4)] {
            common::assert_close(&t.to_vec()?, &values(n, 0), 0.0, 0.0, "rank 0's parameters");
        }
        let mut grads = wgml::Gradients::default();
        grads.insert(&a, Tensor::from_vec(values(1000, r), [10, 100], dev)?);
        // `b` has a gradient on rank 1 only (a zero on rank 0); `c` on no rank.
        if r == 1 {
            grads.insert(&b, Tensor::full(4.0, [3], dev)?);
        }
        grads.insert(
            &d,
            Tensor::from_vec(values(4, r), [4], dev)?.to_dtype(DType::F16)?,
        );
        ddp.reduce_gradients(&mut grads)?;
        let mean = |n| -> Vec<f32> {
            (0..n)
                .map(|i| (values(n, 0)[i] + values(n, 1)[i]) / 2.0)
                .collect()
        };
        common::assert_close(
            &grads.get(&a).expect("a's grad").to_vec()?,
            &mean(1000),
            0.0,
            0.0,
            "bucket a",
        );
        common::assert_close(
            &grads.get(&b).expect("b's grad").to_vec()?,
            &[2.0; 3],
            0.0,
            0.0,
            "one rank's grad",
        );
        assert!(grads.get(&c).is_none(), "c had a gradient on no rank");
        let gd = grads.get(&d).expect("d's grad");
        assert_eq!(gd.dtype(), DType::F16);
        common::assert_close(&gd.to_vec()?, &mean(4), 0.0, 0.0, "F16 grad");
        // An inf on one rank only: after the reduction every rank holds it, so every rank's
        // GradScaler skips the step (the inf check agrees).
        let mut grads = wgml::Gradients::default();
        let bad = if r == 1 { f32::INFINITY } else { 1.0 };
        grads.insert(&b, Tensor::from_vec(vec![1.0, bad, 1.0], [3], dev)?);
        ddp.reduce_gradients(&mut grads)?;
        let mut scaler = wgml::amp::GradScaler::new();
        assert!(
            scaler.unscale(&mut grads)?,
            "rank {r} missed the other rank's inf"
        );
        // Parameter lists that differ across ranks are refused on every rank.
        let e = DistributedDataParallel::new(pg, vec![("x".into(), Tensor::zeros([r + 1], dev)?)])
            .err()
            .expect("an error")
            .to_string();
        assert!(
            e.contains("DistributedDataParallel") && e.contains("rank 1: [2]"),
            "{e}"
        );
        Ok(())
    }

    /// The classifier both sides train: 6 → 16 → tanh → 3.
    struct Mlp(Linear, Linear);

    impl Mlp {
        fn new(dev: &Device) -> Result<Mlp> {
            let mut rng = Rng::new(7);
            Ok(Mlp(
                Linear::new(6, 16, true, &mut rng, dev)?,
                Linear::new(16, 3, true, &mut rng, dev)?,
            ))
        }
        fn loss(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
            loss::cross_entropy(&self.1.forward(&self.0.forward(x)?.tanh()?)?, y)
        }
        fn parameters(&self) -> Vec<(String, Tensor)> {
            let mut p: Vec<(String, Tensor)> = self
                .0
                .parameters()
                .into_iter()
                .map(|(n, t)| (format!("0.{n}"), t))
                .collect();
            p.extend(
                self.1
                    .parameters()
                    .into_iter()
                    .map(|(n, t)| (format!("1.{n}"), t)),
            );
            p
        }
    }

    /// Step `s`'s global batch of 8: inputs and labels.
    fn batch(s: usize) -> (Vec<f32>, Vec<u32>) {
        let mut rng = Rng::new(100 + s as u64);
        let x = (0..8 * 6).map(|_| rng.normal()).collect();
        let y = (0..8).map(|_| rng.below(3) as u32).collect();
        (x, y)
    }

    /// Two ranks on half batches against one process on whole batches, for SGD with momentum
    /// and for clipped AdamW, with default and tiny buckets: parameters equal to tolerance,
    /// and identical (bitwise) on every rank.
    fn ddp_equivalence(pg: &ProcessGroup, dev: &Device) -> Result<()> {
        let (r, w) = (pg.rank(), pg.world_size());
        let mut worst = 0f32;
        for (opt_name, bucket) in [("sgd", 25usize << 20), ("adamw", 25 << 20), ("adamw", 100)] {
            let make = |m: &Mlp| -> Box<dyn Optimizer> {
                match opt_name {
                    "sgd" => Box::new(Sgd::new(m.parameters(), 0.1).momentum(0.9)),
                    _ => Box::new(Adam::adamw(m.parameters(), 0.01, 0.01)),
                }
            };
            let step = |opt: &mut Box<dyn Optimizer>, g: &wgml::Gradients| -> Result<()> {
                match opt_name {
                    "sgd" => opt.step(g),
                    _ => opt.step_clipped(g, 0.5).map(|_| ()),
                }
            };
            let model = Mlp::new(dev)?;
            // Perturb rank 1's start: the constructor must replace it with rank 0's.
            if r == 1 {
                for (_, p) in model.parameters() {
                    p.assign(&p.add_scalar(1.0)?)?;
                }
            }
            let ddp = DistributedDataParallel::with_bucket_bytes(pg, model.parameters(), bucket)?;
            let mut opt = make(&model);
            let reference = Mlp::new(dev)?;
            let mut ref_opt = make(&reference);
            for s in 0..6 {
                let (x, y) = batch(s);
                let half = 8 / w;
                let xs =
                    Tensor::from_vec(x[r * half * 6..(r + 1) * half * 6].to_vec(), [half, 6], dev)?;
                let ys = Tensor::from_indices(&y[r * half..(r + 1) * half], [half], dev)?;
                let mut g = model.loss(&xs, &ys)?.backward()?;
                ddp.reduce_gradients(&mut g)?;
                step(&mut opt, &g)?;
                if r == 0 {
                    let xf = Tensor::from_vec(x, [8, 6], dev)?;
                    let yf = Tensor::from_indices(&y, [8], dev)?;
                    let g = reference.loss(&xf, &yf)?.backward()?;
                    step(&mut ref_opt, &g)?;
                }
            }
            for ((name, p), (_, q)) in model.parameters().iter().zip(reference.parameters()) {
                let mine = p.to_vec()?;
                // Bitwise equal to rank 0's.
                let zero = pg.broadcast(p, 0)?.to_vec()?;
                let same = mine
                    .iter()
                    .zip(&zero)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{opt_name}: rank {r}'s {name} differs from rank 0's");
                if r == 0 {
                    let want = q.to_vec()?;
                    common::assert_close(&mine, &want, 1e-5, 1e-4, &format!("{opt_name} {name}"));
                    let d = mine
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    worst = worst.max(d);
                }
            }
        }
        if r == 0 {
            println!(
                "  ddp_equivalence on {}: largest |2 ranks - 1 process| = {worst:e}",
                dev.name()
            );
        }
        Ok(())
    }

    /// `Trainer::fit` on 2 ranks (a `DistributedSampler` loader of 6 per rank) against one
    /// process (batches of 12): the same parameters after 3 epochs, and the same (averaged)
    /// training loss and accuracy in the history.
    fn fit_equivalence(pg: &ProcessGroup, dev: &Device) -> Result<()> {
        use wgml::data::sampler::DistributedSampler;
        use wgml::data::{DataLoader, HostTensor, TensorDataset};
        use wgml::nn::{Relu, Sequential};
        use wgml::train::{Accuracy, FitOptions, Trainer, Verbosity};
        let (r, w) = (pg.rank(), pg.world_size());
        let data = || -> Result<TensorDataset> {
            let mut rng = Rng::new(3);
            let n = 72;
            let x: Vec<f32> = (0..n * 4).map(|_| rng.normal()).collect();
            let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
            TensorDataset::from_host(HostTensor::f32(x, [n, 4])?, HostTensor::u32(y, [n])?)
        };
        let trainer = |dev: &Device| -> Result<Trainer<Sequential>> {
            let mut rng = Rng::new(11);
            let model = Sequential::new()
                .add(Linear::new(4, 8, true, &mut rng, dev)?)
                .add(Relu)
                .add(Linear::new(8, 3, true, &mut rng, dev)?);
            let opt = Adam::new(model.parameters(), 0.01);
            Ok(Trainer::new(model, opt, loss::cross_entropy).metric(Accuracy::new()))
        };
        let quiet = || FitOptions::new(3).verbosity(Verbosity::Silent);
        let shard =
            DataLoader::new(data()?, 12 / w)?.sampler(DistributedSampler::new(72, w, r)?.seed(5));
        let mut t = trainer(dev)?.distributed(pg)?;
        let h = t.fit(&shard, quiet())?;
        if r == 0 {
            let whole = DataLoader::new(data()?, 12)?.seed(5);
            let mut one = trainer(dev)?;
            let h1 = one.fit(&whole, quiet())?;
            let mut worst = 0f32;
            for ((name, p), (_, q)) in t.model().parameters().iter().zip(one.model().parameters()) {
                let (a, b) = (p.to_vec()?, q.to_vec()?);
                common::assert_close(&a, &b, 1e-5, 1e-4, &format!("fit: {name}"));
                worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(worst, f32::max);
            }
            for key in ["loss", "accuracy"] {
                let (a, b) = (h.get(key).expect("logged"), h1.get(key).expect("logged"));
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() < 1e-5,
                        "{key}: 2 ranks {a:?}, 1 process {b:?}"
                    );
                }
            }
            println!(
                "  fit_equivalence on {}: largest |2 ranks - 1 process| = {worst:e}",
                dev.name()
            );
        }
        Ok(())
    }

    /// Rank 1 fails (an error, or a panic) while rank 0 waits in a collective.
    fn fails(pg: &ProcessGroup, dev: &Device, panic: bool) -> Result<()> {
        let t = Tensor::ones([16], dev)?;
        pg.all_reduce(&t, Reduction::Sum)?;
        if pg.rank() == 1 {
            std::thread::sleep(Duration::from_millis(200));
            if panic {
                panic!("a deliberate panic on rank 1");
            }
            return Err(wgml::Error::invalid(
                "fails_on_error",
                "a deliberate error on rank 1",
            ));
        }
        println!("rank 0 waiting in a collective");
        use std::io::Write;
        std::io::stdout().flush().ok();
        pg.all_reduce(&t, Reduction::Sum)?;
        unreachable!("rank 1 never joins this all-reduce");
    }
}
