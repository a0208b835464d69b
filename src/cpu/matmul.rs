//! Batched matmul reference: one `matrixmultiply::sgemm` per batch over general strides.

// B batch (broadcast already applied: stride 0), M rows of A, K inner, N columns of B.
//   out[b, m, n] = Σ_k a[b, m, k] · b[b, k, n]
// `a` is laid out as `[..B, M, K]`, `b` as `[..B, K, N]` (any strides, transposed views
// included: sgemm packs its operands itself); `out` is contiguous `[..B, M, N]`.
// Threads: rayon's pool, the one the rest of the CPU backend uses. A large product is split
// into blocks of rows of `out` (or of columns, when there are more of them), each one
// single-threaded sgemm; batches of products run in parallel. (matrixmultiply's own thread
// pool, beside rayon's, left idle threads spinning in `sched_yield` that took a quarter of
// the CPU time of a Transformer training step on two cores.)

use crate::shape::{Layout, Shape};
use rayon::prelude::*;

/// The sizes of one matrix product: `[M, K] @ [K, N]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mkn {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
}

/// Largest storage index a layout touches (its offset when it has no elements).
fn last_index(l: &Layout) -> usize {
    if l.shape.numel() == 0 {
        return l.offset;
    }
    l.offset
        + l.shape
            .dims()
            .iter()
            .zip(&l.strides)
            .map(|(&d, &s)| (d - 1) * s)
            .sum::<usize>()
}

/// Storage offsets of each batch's matrix, in row-major batch order.
fn batch_offsets(l: &Layout) -> impl Iterator<Item = usize> {
    let nb = l.shape.rank() - 2;
    Layout {
        shape: Shape::new(l.shape.dims()[..nb].to_vec()),
        strides: l.strides[..nb].to_vec(),
        offset: l.offset,
    }
    .offsets()
}

/// `a @ b` for every batch; `la` and `lb` have the same batch dims (already broadcast).
pub(crate) fn matmul(a: &[f32], la: &Layout, b: &[f32], lb: &Layout, s: Mkn) -> Vec<f32> {
    let Mkn { m, k, n } = s;
    let nb = la.shape.rank() - 2;
    let batch: usize = la.shape.dims()[..nb].iter().product();
    if batch * m * n == 0 || k == 0 {
        return vec![0.0f32; batch * m * n];
    }
    // sgemm with β = 0 never reads C, so a recycled buffer needs no clearing.
    let mut out = super::alloc::take(batch * m * n);
    // sgemm reads through raw pointers: every index it can touch must lie in the slices.
    assert!(
        last_index(la) < a.len() && last_index(lb) < b.len(),
        "wgml bug: matmul layouts {la:?} / {lb:?} exceed storage of {} / {} elements",
        a.len(),
        b.len()
    );
    let (rsa, csa) = (la.strides[nb] as isize, la.strides[nb + 1] as isize);
    let (rsb, csb) = (lb.strides[nb] as isize, lb.strides[nb + 1] as isize);
    let jobs: Vec<(usize, usize, &mut [f32])> = batch_offsets(la)
        .zip(batch_offsets(lb))
        .zip(out.chunks_exact_mut(m * n))
        .map(|((oa, ob), c)| (oa, ob, c))
        .collect();
    let gemm = |oa: usize, ob: usize, c: &mut [f32]| {
        let c = SendPtr(c.as_mut_ptr());
        let (a, b) = (
            SendPtr(a.as_ptr() as *mut f32),
            SendPtr(b.as_ptr() as *mut f32),
        );
        // SAFETY: every element sgemm reads is `oa + i·rsa + p·csa` (i < m, p < k), within
        // `last_index(la) < a.len()` (likewise for b); each block writes its own rows (or
        // columns) of the dense m×n block `c`.
        let block = |r0: usize, rows: usize, c0: usize, cols: usize| unsafe {
            if rows == 0 || cols == 0 {
                return;
            }
            matrixmultiply::sgemm(
                rows,
                k,
                cols,
                1.0,
                a.get().add(oa).offset(r0 as isize * rsa),
                rsa,
                csa,
                b.get().add(ob).offset(c0 as isize * csb),
                rsb,
                csb,
                0.0,
                c.get().add(r0 * n + c0),
                n as isize,
                1,
            );
        };
        let parts = splits(m, k, n);
        if parts <= 1 {
            block(0, m, 0, n);
        } else if m >= n {
            let step = m.div_ceil(parts);
            (0..parts)
                .into_par_iter()
                .for_each(|p| block(p * step, step.min(m.saturating_sub(p * step)), 0, n));
        } else {
            let step = n.div_ceil(parts);
            (0..parts)
                .into_par_iter()
                .for_each(|p| block(0, m, p * step, step.min(n.saturating_sub(p * step))));
        }
    };
    if jobs.len() > 1 && m * k * n < BIG {
        jobs.into_par_iter().for_each(|(oa, ob, c)| gemm(oa, ob, c));
    } else {
        for (oa, ob, c) in jobs {
            gemm(oa, ob, c);
        }
    }
    out
}

/// Multiply-adds above which one product is split across threads.
const BIG: usize = 1 << 20;

/// Into how many blocks to split one `[m, k] @ [k, n]` product: one per thread for large
/// products, none for small ones (and never blocks thinner than 32 rows or columns).
fn splits(m: usize, k: usize, n: usize) -> usize {
    if m * k * n < BIG {
        return 1;
    }
    let threads = rayon::current_num_threads();
    threads.min(m.max(n) / 32).max(1)
}

/// A raw pointer that may cross threads: the blocks it is offset to are disjoint.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: the pointers are only read (a, b) or written in disjoint blocks (c), and the slices
// they point into outlive the parallel loop.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    //! The split paths (blocks of rows, blocks of columns, parallel batches) against plain loops.
    use super::*;

    fn check(batch: usize, m: usize, k: usize, n: usize, transposed_b: bool) {
        let mut r = crate::rng::Rng::new((m * 31 + k * 7 + n) as u64);
        let a: Vec<f32> = (0..batch * m * k).map(|_| r.uniform() - 0.5).collect();
        let b: Vec<f32> = (0..batch * k * n).map(|_| r.uniform() - 0.5).collect();
        let la = Layout::contiguous(Shape::new(vec![batch, m, k]));
        let lb = if transposed_b {
            // b stored as [batch, n, k], read as its transpose.
            Layout::contiguous(Shape::new(vec![batch, n, k])).permute(&[0, 2, 1])
        } else {
            Layout::contiguous(Shape::new(vec![batch, k, n]))
        };
        let got = matmul(&a, &la, &b, &lb, Mkn { m, k, n });
        let bi = |z: usize, p: usize, j: usize| {
            if transposed_b {
                b[z * n * k + j * k + p]
            } else {
                b[z * k * n + p * n + j]
            }
        };
        for z in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| a[z * m * k + i * k + p] as f64 * bi(z, p, j) as f64)
                        .sum();
                    let g = got[z * m * n + i * n + j];
                    assert!(
                        (g as f64 - want).abs() < 1e-4,
                        "[{z}, {i}, {j}] of {batch}x{m}x{k}x{n}: got {g} want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn split_products_match_loops() {
        check(1, 301, 70, 50, false); // blocks of rows, ragged last block
        check(1, 40, 100, 303, true); // blocks of columns, transposed b
        check(5, 17, 9, 13, false); // parallel batches of small products
        check(2, 130, 90, 97, true); // a batch of split products
        check(1, 1, 5, 1, false);
    }
}
