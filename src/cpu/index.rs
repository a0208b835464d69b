//! Indexing reference kernels: `gather` (index_select, embedding, torch.gather) and its backward `scatter_add`.

// The iteration shape is the output's for `gather` and the gradient's for `scatter_add`. The
// indices are given as a layout over that shape (index_select spreads its 1-D list over it with
// stride 0 on every other dim), so one pair of loops serves index_select and torch.gather.
// `dim` is the indexed dimension of the source, of size `size`. Indices are `U32` words stored
// as f32 bits.

use crate::shape::{Layout, Shape};

/// `l`'s offset and strides over `shape`, with the stride of `dim` set to 0: the storage offset
/// of element `m` with `m[dim]` taken as 0. `shape` agrees with `l.shape` except along `dim`.
pub(crate) fn along_dim(l: &Layout, shape: &Shape, dim: usize) -> Layout {
    let mut strides = l.strides.clone();
    strides[dim] = 0;
    Layout {
        shape: shape.clone(),
        strides,
        offset: l.offset,
    }
}

/// `out[m] = src[m with m[dim] = idx[m]]` for every `m` of `li`'s shape, row-major. Returns the
/// first index `>= src.shape[dim]` as the error.
pub(crate) fn gather<T: Copy>(
    src: &[T],
    ls: &Layout,
    idx: &[f32],
    li: &Layout,
    dim: usize,
) -> std::result::Result<Vec<T>, u32> {
    let size = ls.shape.dims()[dim];
    let step = ls.strides[dim];
    let base = along_dim(ls, &li.shape, dim);
    base.offsets()
        .zip(li.offsets())
        .map(|(b, i)| {
            let k = idx[i].to_bits();
            if k as usize >= size {
                Err(k)
            } else {
                Ok(src[b + k as usize * step])
            }
        })
        .collect()
}

/// The backward of `gather`: a contiguous zero tensor of `src_shape` with `grad[m]` added at
/// `m with m[dim] = idx[m]`, visiting `grad` row-major — so every destination sums its
/// contributions in increasing index position, the order the WGSL `scatter_add` uses, and both
/// give the same bits. Out-of-range indices (rejected by the forward) add nothing.
pub(crate) fn scatter_add(
    grad: &[f32],
    lg: &Layout,
    idx: &[f32],
    li: &Layout,
    dim: usize,
    src_shape: &Shape,
) -> Vec<f32> {
    let lo = Layout::contiguous(src_shape.clone());
    let size = src_shape.dims()[dim];
    let step = lo.strides[dim];
    let base = along_dim(&lo, &lg.shape, dim);
    let mut out = vec![0.0; src_shape.numel()];
    for ((g, i), b) in lg.offsets().zip(li.offsets()).zip(base.offsets()) {
        let k = idx[i].to_bits() as usize;
        if k < size {
            out[b + k * step] += grad[g];
        }
    }
    out
}
