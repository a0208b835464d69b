//! Indexing ops: index_select, embedding and gather (PyTorch semantics), and the deterministic scatter-add backward they share.

use super::alloc_like;
use crate::gpu::index as gpu;
use crate::op::Op;
use crate::shape::{Layout, Shape};
use crate::tensor::Storage;
use crate::{cpu, DType, Device, Error, Result, Tensor};

/// A 1-D index list spread over `shape` along `dim` (stride 0 on every other dim), so
/// index_select runs through the same kernels as torch.gather.
fn spread(indices: &Layout, shape: &Shape, dim: usize) -> Layout {
    let mut strides = vec![0; shape.rank()];
    strides[dim] = indices.strides[0];
    Layout {
        shape: shape.clone(),
        strides,
        offset: indices.offset,
    }
}

/// The kind code of an index-validating op on the GPU (its position in `INDEX_OPS`): GPU
/// indices are checked by the kernels themselves, which record the first bad one in the
/// device's error words; the next read-back or `synchronize` reports it. No wait here.
fn kind(op: &'static str) -> u32 {
    crate::gpu::context::INDEX_OPS
        .iter()
        .position(|&o| o == op)
        .unwrap_or(0) as u32
}

/// `[N] U32 labels -> [N, classes]` of 1.0 at each label on the GPU, in one kernel that
/// records a label `>= classes` for the next read-back (reported as an error of `op`).
pub(crate) fn one_hot_gpu(labels: &Tensor, classes: usize, op: &'static str) -> Result<Tensor> {
    labels.check_dtype(DType::U32, op)?;
    let mut dims = labels.dims().to_vec();
    dims.push(classes);
    let shape = Shape::new(dims);
    shape.check_numel(op)?;
    let Storage::Gpu(l) = labels.storage() else {
        return Err(Error::invalid(op, "one_hot_gpu called with CPU labels"));
    };
    let out = alloc_like(labels.device(), &shape, op)?;
    gpu::one_hot(op, kind(op), (l, labels.layout()), classes, &out)?;
    Ok(Tensor::from_storage(
        Storage::Gpu(out),
        shape,
        DType::F32,
        labels.device(),
        None,
    ))
}

fn out_of_range(op: &'static str, index: u32, size: usize, shape: &[usize]) -> Error {
    Error::IndexOutOfRange {
        op,
        index: index as usize,
        size,
        shape: shape.to_vec(),
    }
}

impl Tensor {
    /// The slices of `self` along `dim` picked by `indices`, a 1-D `U32` tensor, in its order
    /// (repeats allowed): the result has `self`'s shape with `dim` replaced by the number of
    /// indices. As `torch.index_select`; the result keeps `self`'s dtype.
    ///
    /// An index `>= self.dim(dim)` is an [`Error::IndexOutOfRange`]: at once on the CPU; on a GPU
    /// device the kernel records it and the next read-back (`to_vec`, `item`) or
    /// `Device::synchronize` returns the error, so this call never waits for the device.
    pub fn index_select(&self, dim: isize, indices: &Tensor) -> Result<Tensor> {
        self.index_select_as(dim, indices, "index_select")
    }

    fn index_select_as(&self, dim: isize, indices: &Tensor, op: &'static str) -> Result<Tensor> {
        let d = self.shape().dim_index(dim, op)?;
        self.check_same_device(indices, op)?;
        indices.check_dtype(DType::U32, op)?;
        if indices.rank() != 1 {
            return Err(Error::invalid(
                op,
                format!(
                    "indices must be 1-D, got shape {:?} (source shape {:?})",
                    indices.dims(),
                    self.dims()
                ),
            ));
        }
        let mut dims = self.dims().to_vec();
        dims[d] = indices.numel();
        let shape = Shape::new(dims);
        shape.check_numel(op)?;
        let li = spread(indices.layout(), &shape, d);
        let storage = self.gather_storage(indices, &li, d, op)?;
        Ok(Tensor::from_storage(
            storage,
            shape,
            self.dtype(),
            self.device(),
            Some(Op::IndexSelect(self.clone(), indices.clone(), d)),
        ))
    }

    /// Looks up rows of the table `self` (`[V, D]`) for every index of `indices` (a `U32`
    /// tensor of any shape): the result has shape `indices.shape ++ [D]`. An index `>= V` is an
    /// [`Error::IndexOutOfRange`] (on a GPU device, at the next read-back, as for
    /// [`Tensor::index_select`]).
    pub fn embedding(&self, indices: &Tensor) -> Result<Tensor> {
        const OP: &str = "embedding";
        if self.rank() != 2 {
            return Err(Error::invalid(
                OP,
                format!(
                    "the table must be 2-D [V, D], got shape {:?} (indices shape {:?})",
                    self.dims(),
                    indices.dims()
                ),
            ));
        }
        indices.check_dtype(DType::U32, OP)?;
        let flat = indices.reshape(indices.numel())?;
        let rows = self.index_select_as(0, &flat, OP)?;
        let mut dims = indices.dims().to_vec();
        dims.push(self.dims()[1]);
        rows.reshape(dims)
    }

    /// `out[m] = self[m with m[dim] = index[m]]` for every position `m` of `index`, a `U32`
    /// tensor of `self`'s rank no larger than `self` on the other dims: the result has
    /// `index`'s shape and `self`'s dtype. As `torch.gather`. An index `>= self.dim(dim)` is an
    /// [`Error::IndexOutOfRange`] (on a GPU device, at the next read-back, as for
    /// [`Tensor::index_select`]).
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        const OP: &str = "gather";
        let d = self.shape().dim_index(dim, OP)?;
        self.check_same_device(index, OP)?;
        index.check_dtype(DType::U32, OP)?;
        let fits = index.rank() == self.rank()
            && (0..self.rank()).all(|i| i == d || index.dims()[i] <= self.dims()[i]);
        if !fits {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.dims().to_vec(),
                rhs: index.dims().to_vec(),
            });
        }
        let storage = self.gather_storage(index, index.layout(), d, OP)?;
        Ok(Tensor::from_storage(
            storage,
            index.shape().clone(),
            self.dtype(),
            self.device(),
            Some(Op::Gather(self.clone(), index.clone(), d)),
        ))
    }

    /// Runs the gather kernel: `li` lays the indices over the output shape.
    fn gather_storage(
        &self,
        indices: &Tensor,
        li: &Layout,
        dim: usize,
        op: &'static str,
    ) -> Result<Storage> {
        let size = self.dims()[dim];
        let f16 = self.dtype() == DType::F16;
        Ok(match (self.storage(), indices.storage()) {
            (Storage::Cpu(x), Storage::Cpu(i)) => {
                cpu::alloc::probe(li.shape.numel(), op)?;
                let x = x.read().unwrap();
                let i = i.read().unwrap();
                let out = if f16 {
                    // The picked halves themselves: only the rows named are touched.
                    let picked =
                        cpu::index::gather(cpu::half::halves(&x), self.layout(), &i, li, dim)
                            .map_err(|k| out_of_range(op, k, size, self.dims()))?;
                    cpu::half::pack(&picked)?
                } else {
                    cpu::index::gather(&x, self.layout(), &i, li, dim)
                        .map_err(|k| out_of_range(op, k, size, self.dims()))?
                };
                Storage::cpu(out)
            }
            (Storage::Gpu(x), Storage::Gpu(i)) => {
                let out = alloc_like(self.device(), &li.shape, op)?;
                gpu::gather(op, kind(op), (x, self.layout()), (i, li), dim, &out, f16)?;
                if !f16 {
                    return Ok(Storage::Gpu(out));
                }
                // f32 rows out of the F16 kernel, rounded back (exactly: they were F16).
                let Device::Gpu(ctx) = self.device() else {
                    unreachable!("GPU storage")
                };
                let packed = crate::gpu::buffer::alloc(
                    ctx,
                    cpu::half::words(li.shape.numel()),
                    op,
                    li.shape.dims(),
                )?;
                crate::gpu::half::cast(
                    (&out, &Layout::contiguous(li.shape.clone())),
                    false,
                    &packed,
                    false,
                )?;
                Storage::Gpu(packed)
            }
            _ => unreachable!("devices checked"),
        })
    }
}

/// The gradient of [`Tensor::index_select`] with respect to its source: a zero tensor of
/// `src_shape` with every slice of `grad` along `dim` added at the row its index names (repeats
/// accumulate). Deterministic on both backends (each destination sums in index order, no
/// atomics); records no op.
#[allow(dead_code)] // called by backprop.rs
pub(crate) fn index_select_backward(
    grad: &Tensor,
    indices: &Tensor,
    dim: usize,
    src_shape: &Shape,
) -> Result<Tensor> {
    const OP: &str = "index_select_backward";
    let mut want = src_shape.dims().to_vec();
    if dim >= want.len() || indices.rank() != 1 {
        return Err(Error::invalid(
            OP,
            format!(
                "dim {dim}, indices of shape {:?}, source shape {src_shape:?}",
                indices.dims()
            ),
        ));
    }
    want[dim] = indices.numel();
    if grad.dims() != want.as_slice() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: grad.dims().to_vec(),
            rhs: want,
        });
    }
    let li = spread(indices.layout(), grad.shape(), dim);
    scatter_add(grad, indices, &li, dim, src_shape, OP)
}

/// The gradient of [`Tensor::gather`] with respect to its source: a zero tensor of `src_shape`
/// with `grad[m]` added at `m with m[dim] = index[m]`. Deterministic on both backends; records
/// no op.
#[allow(dead_code)] // called by backprop.rs
pub(crate) fn gather_backward(
    grad: &Tensor,
    index: &Tensor,
    dim: usize,
    src_shape: &Shape,
) -> Result<Tensor> {
    const OP: &str = "gather_backward";
    let fits = grad.shape() == index.shape()
        && index.rank() == src_shape.rank()
        && dim < src_shape.rank()
        && (0..src_shape.rank()).all(|i| i == dim || index.dims()[i] <= src_shape.dims()[i]);
    if !fits {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: grad.dims().to_vec(),
            rhs: src_shape.dims().to_vec(),
        });
    }
    scatter_add(grad, index, index.layout(), dim, src_shape, OP)
}

fn scatter_add(
    grad: &Tensor,
    indices: &Tensor,
    li: &Layout,
    dim: usize,
    src_shape: &Shape,
    op: &'static str,
) -> Result<Tensor> {
    grad.check_same_device(indices, op)?;
    // An F16 gradient (of an F16 table) is summed in f32; backward casts the result back.
    let grad = &grad.as_f32()?;
    grad.check_dtype(DType::F32, op)?;
    indices.check_dtype(DType::U32, op)?;
    let storage = match (grad.storage(), indices.storage()) {
        (Storage::Cpu(g), Storage::Cpu(i)) => Storage::cpu(cpu::index::scatter_add(
            &g.read().unwrap(),
            grad.layout(),
            &i.read().unwrap(),
            li,
            dim,
            src_shape,
        )),
        (Storage::Gpu(g), Storage::Gpu(i)) => {
            let out = alloc_like(grad.device(), src_shape, op)?;
            gpu::scatter_add(op, (g, grad.layout()), (i, li), dim, src_shape, &out)?;
            Storage::Gpu(out)
        }
        _ => unreachable!("devices checked"),
    };
    Ok(Tensor::from_storage(
        storage,
        src_shape.clone(),
        DType::F32,
        grad.device(),
        None,
    ))
}

#[cfg(test)]
mod tests {
    //! The backward helpers are crate-internal, so they are tested here: against hand values,
    //! against finite differences of the forward on the CPU, and GPU against CPU bit for bit.

    use super::*;
    use crate::rng::Rng;
    use crate::Device;

    fn gpu() -> Option<Device> {
        match Device::gpu() {
            Ok(d) => Some(d),
            Err(e) if std::env::var("WGML_REQUIRE_GPU").is_ok_and(|v| v != "0") => {
                panic!("WGML_REQUIRE_GPU is set but no GPU adapter was found: {e}")
            }
            Err(_) => None,
        }
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| r.uniform() * 4.0 - 2.0).collect()
    }

    fn indices(n: usize, below: usize, seed: u64) -> Vec<u32> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| r.below(below) as u32).collect()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    /// d/dx of `sum(w ⊙ f(x))` by central differences on the CPU, in f64.
    fn finite_difference(
        x: &[f32],
        shape: &[usize],
        w: &[f32],
        f: impl Fn(&Tensor) -> Tensor,
    ) -> Vec<f32> {
        let loss = |x: &[f32]| -> f64 {
            let y = f(&Tensor::from_slice(x, shape, &Device::cpu()).unwrap())
                .to_vec()
                .unwrap();
            y.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let h = 1e-2f32;
        (0..x.len())
            .map(|j| {
                let (mut p, mut m) = (x.to_vec(), x.to_vec());
                p[j] += h;
                m[j] -= h;
                ((loss(&p) - loss(&m)) / (2.0 * h as f64)) as f32
            })
            .collect()
    }

    fn assert_near(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol + tol * w.abs(),
                "{what}: [{j}] got {g} want {w}"
            );
        }
    }

    #[test]
    fn index_select_backward_hand_values() {
        let cpu = Device::cpu();
        // grad rows g0 = [1, 2], g1 = [3, 4], g2 = [5, 6] picked rows 2, 0, 2 of a [3, 2] source.
        let grad = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], [3, 2], &cpu).unwrap();
        let idx = Tensor::from_indices(&[2, 0, 2], 3, &cpu).unwrap();
        let g = index_select_backward(&grad, &idx, 0, &Shape::from([3, 2])).unwrap();
        assert_eq!(g.to_vec().unwrap(), [3., 4., 0., 0., 6., 8.]);
        let g = index_select_backward(
            &grad.t().unwrap(),
            &Tensor::from_indices(&[1, 1, 0], 3, &cpu).unwrap(),
            1,
            &Shape::from([2, 2]),
        )
        .unwrap();
        // grad.t() = [[1, 3, 5], [2, 4, 6]]: column 1 gets 1 + 3, column 0 gets 5.
        assert_eq!(g.to_vec().unwrap(), [5., 4., 6., 6.]);
        if let Some(dev) = gpu() {
            let grad = grad.to_device(&dev).unwrap();
            let g = index_select_backward(
                &grad,
                &idx.to_device(&dev).unwrap(),
                0,
                &Shape::from([3, 2]),
            )
            .unwrap();
            assert_eq!(g.to_vec().unwrap(), [3., 4., 0., 0., 6., 8.]);
        }
    }

    #[test]
    fn index_select_backward_matches_finite_differences() {
        let src = [5usize, 4, 3];
        for dim in 0..3 {
            let k = 7;
            let idx = indices(k, src[dim], dim as u64);
            let x = data(60, 1);
            let mut out = src.to_vec();
            out[dim] = k;
            let w = data(out.iter().product(), 2);
            let cpu = Device::cpu();
            let i = Tensor::from_indices(&idx, k, &cpu).unwrap();
            let fd = finite_difference(&x, &src, &w, |x| x.index_select(dim as isize, &i).unwrap());
            let grad = Tensor::from_vec(w.clone(), out, &cpu).unwrap();
            let got = index_select_backward(&grad, &i, dim, &Shape::from(src)).unwrap();
            assert_near(
                &got.to_vec().unwrap(),
                &fd,
                1e-3,
                &format!("index_select dim {dim}"),
            );
        }
    }

    #[test]
    fn gather_backward_matches_finite_differences() {
        let src = [5usize, 4, 3];
        for dim in 0..3 {
            let mut ishape = [3usize, 2, 2];
            ishape[dim] = 6;
            let idx = indices(ishape.iter().product(), src[dim], 10 + dim as u64);
            let x = data(60, 3);
            let w = data(ishape.iter().product(), 4);
            let cpu = Device::cpu();
            let i = Tensor::from_indices(&idx, ishape, &cpu).unwrap();
            let fd = finite_difference(&x, &src, &w, |x| x.gather(dim as isize, &i).unwrap());
            let grad = Tensor::from_vec(w.clone(), ishape, &cpu).unwrap();
            let got = gather_backward(&grad, &i, dim, &Shape::from(src)).unwrap();
            assert_near(
                &got.to_vec().unwrap(),
                &fd,
                1e-3,
                &format!("gather dim {dim}"),
            );
        }
    }

    #[test]
    fn index_select_backward_gpu_matches_cpu_bit_for_bit() {
        let Some(dev) = gpu() else { return };
        let cpu = Device::cpu();
        for rows in [1usize, 3, 17, 127, 129, 1000] {
            // Many repeats (k > rows for small vocabularies) so sums have several terms.
            let k = rows.min(200) + 9;
            let idx = indices(k, rows, rows as u64);
            for (dim, src, grad_shape) in [
                (0usize, vec![rows, 5], vec![k, 5]),
                (1, vec![3, rows], vec![3, k]),
                (1, vec![2, rows, 3], vec![2, k, 3]),
            ] {
                let g = data(grad_shape.iter().product(), 5);
                let want = {
                    let grad = Tensor::from_vec(g.clone(), grad_shape.clone(), &cpu).unwrap();
                    let i = Tensor::from_indices(&idx, k, &cpu).unwrap();
                    index_select_backward(&grad, &i, dim, &Shape::from(src.clone())).unwrap()
                };
                let grad = Tensor::from_vec(g, grad_shape.clone(), &dev).unwrap();
                let i = Tensor::from_indices(&idx, k, &dev).unwrap();
                let got = index_select_backward(&grad, &i, dim, &Shape::from(src.clone())).unwrap();
                let again =
                    index_select_backward(&grad, &i, dim, &Shape::from(src.clone())).unwrap();
                assert_eq!(got.dims(), src.as_slice());
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "rows {rows} dim {dim}: GPU vs CPU bits"
                );
                assert_eq!(
                    bits(&got),
                    bits(&again),
                    "rows {rows} dim {dim}: two GPU runs"
                );
            }
        }
        // A transposed (non-contiguous) gradient and narrowed indices.
        let idx = indices(12, 6, 9);
        let run = |d: &Device| {
            let grad = Tensor::from_vec(data(40, 6), [5, 8], d)
                .unwrap()
                .t()
                .unwrap(); // [8, 5]
            let i = Tensor::from_indices(&idx, 12, d)
                .unwrap()
                .narrow(0, 3, 8)
                .unwrap();
            index_select_backward(&grad, &i, 0, &Shape::from([6, 5])).unwrap()
        };
        assert_eq!(bits(&run(&dev)), bits(&run(&cpu)), "transposed grad");
    }

    #[test]
    fn gather_backward_gpu_matches_cpu_bit_for_bit() {
        let Some(dev) = gpu() else { return };
        let cpu = Device::cpu();
        for n in [1usize, 3, 17, 127, 129, 1000] {
            for (dim, src, ishape) in [
                (1usize, vec![n, 6], vec![n, 9]),
                (0, vec![n, 6], vec![n.min(40) + 5, 4]), // smaller than the source on dim 1
                (2, vec![2, n, 5], vec![1, n, 7]),
            ] {
                let idx = indices(ishape.iter().product(), src[dim], n as u64 + dim as u64);
                let g = data(ishape.iter().product(), 7);
                let run = |d: &Device| {
                    let grad = Tensor::from_vec(g.clone(), ishape.clone(), d).unwrap();
                    let i = Tensor::from_indices(&idx, ishape.clone(), d).unwrap();
                    gather_backward(&grad, &i, dim, &Shape::from(src.clone())).unwrap()
                };
                let want = run(&cpu);
                let got = run(&dev);
                assert_eq!(bits(&got), bits(&want), "n {n} dim {dim}: GPU vs CPU bits");
                assert_eq!(
                    bits(&got),
                    bits(&run(&dev)),
                    "n {n} dim {dim}: two GPU runs"
                );
            }
        }
        // Transposed gradient and index.
        let idx = indices(30, 8, 3);
        let run = |d: &Device| {
            let grad = Tensor::from_vec(data(30, 8), [5, 6], d)
                .unwrap()
                .t()
                .unwrap();
            let i = Tensor::from_indices(&idx, [5, 6], d).unwrap().t().unwrap();
            gather_backward(&grad, &i, 0, &Shape::from([8, 5])).unwrap()
        };
        assert_eq!(
            bits(&run(&dev)),
            bits(&run(&cpu)),
            "transposed grad and index"
        );
    }

    #[test]
    fn backward_rejects_mismatched_shapes() {
        let cpu = Device::cpu();
        let grad = Tensor::zeros([4, 2], &cpu).unwrap();
        let idx = Tensor::from_indices(&[0, 1, 2], 3, &cpu).unwrap();
        assert!(index_select_backward(&grad, &idx, 0, &Shape::from([3, 2])).is_err());
        assert!(index_select_backward(&grad, &idx, 2, &Shape::from([3, 2])).is_err());
        let i2 = Tensor::from_indices(&[0; 8], [4, 2], &cpu).unwrap();
        assert!(gather_backward(&grad, &i2, 0, &Shape::from([3, 1])).is_err());
        assert!(gather_backward(&grad.t().unwrap(), &i2, 0, &Shape::from([3, 2])).is_err());
    }
}
