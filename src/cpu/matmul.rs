//! Batched matmul reference: one `matrixmultiply::sgemm` per batch over general strides.

// B batch (broadcast already applied: stride 0), M rows of A, K inner, N columns of B.
//   out[b, m, n] = Σ_k a[b, m, k] · b[b, k, n]
// `a` is laid out as `[..B, M, K]`, `b` as `[..B, K, N]` (any strides, transposed views
// included: sgemm packs its operands itself); `out` is contiguous `[..B, M, N]`.
// matrixmultiply threads large products itself (`MATMUL_NUM_THREADS`, default: the number of
// physical cores, at most 4).

use crate::shape::{Layout, Shape};

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
    for ((oa, ob), c) in batch_offsets(la)
        .zip(batch_offsets(lb))
        .zip(out.chunks_exact_mut(m * n))
    {
        // SAFETY: every element sgemm reads is `oa + i·rsa + p·csa` (i < m, p < k), within
        // `last_index(la) < a.len()` (likewise for b); `c` is a dense m×n block of `out`.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr().add(oa),
                rsa,
                csa,
                b.as_ptr().add(ob),
                rsb,
                csb,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    out
}
