//! Reuse of large CPU buffers. Fresh multi-megabyte vectors come from `mmap` and go back on
//! free, so every op on a big activation paid a page fault per 4 KiB (measured: a 692K-element
//! relu took 1.3 ms, mostly faults). Buffers of at least `MIN_LEN` elements return here when
//! their storage drops and are handed out again for the same length.
//!
//! It is also the one place CPU tensor memory comes from fallibly: [`try_take`] and
//! [`try_zeroed`] return `Err(OutOfMemory)` where `vec![0.0; n]` would abort the process, and
//! [`reserve`] lets an op check (and pre-allocate) its output before a kernel's infallible
//! [`take`] runs.

use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Smaller buffers are left to the system allocator.
const MIN_LEN: usize = 1 << 14;
/// Elements kept for reuse at most (1 GiB of f32).
const MAX_POOLED: usize = 1 << 28;

#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    pooled: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: std::sync::OnceLock<Mutex<Pool>> = std::sync::OnceLock::new();
    POOL.get_or_init(Mutex::default)
}

/// A vector of length `n` whose contents are unspecified (callers overwrite every element).
pub(crate) fn take(n: usize) -> Vec<f32> {
    if n >= MIN_LEN {
        let mut p = pool().lock().unwrap();
        if let Some(v) = p.free.get_mut(&n).and_then(|l| l.pop()) {
            p.pooled -= n;
            return v;
        }
    }
    vec![0.0; n]
}

/// A fresh vector of `n` zeros from the system allocator, or `Err(OutOfMemory)`: never an
/// abort. Zeroed pages come from `calloc`/`mmap` lazily, so this is as cheap as `vec![0.0; n]`.
pub(crate) fn try_zeroed(n: usize, op: &'static str) -> Result<Vec<f32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let oom = || Error::OutOfMemory {
        op,
        bytes: (n as u64).saturating_mul(4),
    };
    let layout = std::alloc::Layout::array::<f32>(n).map_err(|_| oom())?;
    // SAFETY: `layout` has a non-zero size. A non-null pointer from `alloc_zeroed` is an
    // allocation of the global allocator with exactly `layout` (n f32s, f32's alignment), and
    // all-zero bits are a valid f32 (0.0), as `Vec::from_raw_parts(ptr, n, n)` requires.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut f32;
        if p.is_null() {
            return Err(oom());
        }
        Ok(Vec::from_raw_parts(p, n, n))
    }
}

/// Like [`take`] (a pooled buffer when one fits), but `Err(OutOfMemory)` instead of an abort.
pub(crate) fn try_take(n: usize, op: &'static str) -> Result<Vec<f32>> {
    if n >= MIN_LEN {
        let mut p = pool().lock().unwrap();
        if let Some(v) = p.free.get_mut(&n).and_then(|l| l.pop()) {
            p.pooled -= n;
            return Ok(v);
        }
    }
    try_zeroed(n, op)
}

/// Makes sure the next [`take`] of `n` elements does not need the system allocator, by
/// allocating the buffer now, fallibly, and parking it in the pool: ops call this before a CPU
/// kernel so that an output too large for memory (a broadcast view of a huge shape, say) is an
/// `Err(OutOfMemory)`, not an abort. Small buffers are left to the allocator.
pub(crate) fn reserve(n: usize, op: &'static str) -> Result<()> {
    if n < MIN_LEN {
        return Ok(());
    }
    if pool()
        .lock()
        .unwrap()
        .free
        .get(&n)
        .is_some_and(|l| !l.is_empty())
    {
        return Ok(());
    }
    let v = try_zeroed(n, op)?;
    let mut p = pool().lock().unwrap();
    p.pooled += n;
    p.free.entry(n).or_default().push(v);
    Ok(())
}

/// For kernels that collect their output rather than `take` it: checks that `n` elements can
/// be allocated by allocating (lazily zeroed, so untouched) and freeing them, when `n` is large
/// enough (64 MiB) for the check to matter. `Err(OutOfMemory)` instead of a later abort.
pub(crate) fn probe(n: usize, op: &'static str) -> Result<()> {
    if n >= 1 << 24 {
        // black_box: an allocation that is freed unused may be optimised away, success assumed.
        drop(std::hint::black_box(try_zeroed(n, op)?));
    }
    Ok(())
}

/// A vector of `n` zeros.
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    let mut v = take(n);
    v.fill(0.0);
    v
}

/// An empty vector with room for `n` elements (for `extend`).
pub(crate) fn with_capacity(n: usize) -> Vec<f32> {
    let mut v = take(n);
    v.clear();
    v
}

/// Returns a buffer for reuse (keyed by its capacity).
pub(crate) fn recycle(v: Vec<f32>) {
    let n = v.capacity();
    if n >= MIN_LEN {
        let mut p = pool().lock().unwrap();
        if p.pooled + n <= MAX_POOLED {
            p.pooled += n;
            p.free.entry(n).or_default().push(v);
        }
    }
}

/// A CPU tensor buffer that goes back to the pool when dropped.
pub(crate) struct CpuBuf(Vec<f32>);

impl CpuBuf {
    pub(crate) fn new(v: Vec<f32>) -> Self {
        CpuBuf(v)
    }
}

impl Drop for CpuBuf {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.0));
    }
}

impl std::ops::Deref for CpuBuf {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl std::ops::DerefMut for CpuBuf {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }
}
