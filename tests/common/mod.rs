//! Shared test helpers: the GPU device (required in CI), and `atol + rtol·|ref|` comparisons
//! that print the first mismatches.
#![allow(dead_code)]

use wgml::{Device, Result, Tensor};

/// Set by `.ci/run`: GPU tests fail (instead of skipping) when no adapter is found.
pub const REQUIRE_GPU_ENV: &str = "WGML_REQUIRE_GPU";

/// The GPU device for tests: any adapter, the software one included. `None` (with one printed
/// line) when there is none and `WGML_REQUIRE_GPU` is unset; a panic when it is set.
pub fn gpu() -> Option<Device> {
    match Device::gpu() {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var(REQUIRE_GPU_ENV).is_ok_and(|v| v != "0") {
                panic!("{REQUIRE_GPU_ENV} is set but no GPU adapter was found: {e}");
            }
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| eprintln!("skipping GPU tests: {e}"));
            None
        }
    }
}

/// Asserts `|got - want| <= atol + rtol·|want|` elementwise (NaNs must match NaNs), printing
/// the first few mismatches with their indices.
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs reference {}",
        got.len(),
        want.len()
    );
    let bad: Vec<(usize, f32, f32)> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (&g, &w))| {
            if w.is_nan() || g.is_nan() {
                return !(w.is_nan() && g.is_nan());
            }
            if w.is_infinite() || g.is_infinite() {
                return g != w;
            }
            (g - w).abs() > atol + rtol * w.abs()
        })
        .map(|(i, (&g, &w))| (i, g, w))
        .collect();
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(8)
            .map(|(i, g, w)| format!("[{i}] got {g} want {w} (diff {})", (g - w).abs()))
            .collect();
        panic!(
            "{what}: {} of {} elements differ beyond atol {atol} + rtol {rtol}·|ref|:\n  {}",
            bad.len(),
            got.len(),
            first.join("\n  ")
        );
    }
}

/// Runs `f` on the CPU and on the GPU (if any) and compares the results.
pub fn gpu_matches_cpu(what: &str, atol: f32, rtol: f32, f: impl Fn(&Device) -> Result<Tensor>) {
    let Some(gpu) = gpu() else { return };
    let want = f(&Device::cpu()).unwrap_or_else(|e| panic!("{what} on cpu: {e}"));
    let got = f(&gpu).unwrap_or_else(|e| panic!("{what} on gpu: {e}"));
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtypes differ");
    assert_close(
        &got.to_vec().unwrap(),
        &want.to_vec().unwrap(),
        atol,
        rtol,
        what,
    );
}

/// Deterministic test data in `[-2, 2)`.
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = wgml::rng::Rng::new(seed);
    (0..n).map(|_| r.uniform() * 4.0 - 2.0).collect()
}

/// A process-wide lock for tests that count dispatches (`gpu::dispatch_count` counts every
/// test's launches): every GPU test of such a file takes it.
pub fn gpu_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
