//! Shape ops: reshape, transpose/permute, narrow, squeeze/unsqueeze, broadcast_to (views that
//! share storage) and contiguous / cat (copies).

use super::elementwise::alloc_like;
use crate::gpu::elementwise as gpu;
use crate::op::{Op, UnaryOp};
use crate::shape::{Layout, Shape};
use crate::tensor::Storage;
use crate::{cpu, DType, Error, Result, Tensor};

impl Tensor {
    /// The same elements in a new shape (a view when contiguous, else a copy). See
    /// [`Tensor::reshape_infer`] for a `-1` dimension.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        shape.check_numel("reshape")?;
        if shape.numel() != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.dims().to_vec(),
                rhs: shape.dims().to_vec(),
            });
        }
        let src = self.contiguous()?;
        let layout = Layout {
            strides: shape.contiguous_strides(),
            shape,
            offset: src.layout().offset,
        };
        Ok(src.view(layout, Some(Op::Reshape(self.clone()))))
    }

    /// Reshape where one dimension may be `-1` (inferred from the others).
    pub fn reshape_infer(&self, dims: &[isize]) -> Result<Tensor> {
        // Saturating: an overflowing product is rejected by `reshape`'s `check_numel`.
        let known: usize = dims
            .iter()
            .filter(|&&d| d >= 0)
            .fold(1usize, |acc, &d| acc.saturating_mul(d as usize));
        let unknown = dims.iter().filter(|&&d| d < 0).count();
        let bad = || {
            Error::invalid(
                "reshape",
                format!(
                    "cannot reshape a tensor of shape {:?} to {dims:?}",
                    self.dims()
                ),
            )
        };
        let wrong = unknown > 1 || dims.iter().any(|&d| d < -1);
        if wrong || (unknown == 1 && (known == 0 || !self.numel().is_multiple_of(known))) {
            return Err(bad());
        }
        let shape: Vec<usize> = dims
            .iter()
            .map(|&d| {
                if d < 0 {
                    self.numel() / known.max(1)
                } else {
                    d as usize
                }
            })
            .collect();
        self.reshape(shape)
    }

    /// Swaps two dimensions (negative counts from the end). A view, no copy.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = self.shape().dim_index(d0, "transpose")?;
        let b = self.shape().dim_index(d1, "transpose")?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        Ok(self.view(
            self.layout().transpose(a, b),
            Some(Op::Permute(self.clone(), perm)),
        ))
    }

    /// Transpose of the last two dimensions (a view).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::invalid(
                "t",
                format!("needs rank >= 2, got shape {:?}", self.dims()),
            ));
        }
        self.transpose(-2, -1)
    }

    /// Reorders dimensions: dimension `i` of the result is dimension `perm[i]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; self.rank()];
        let ok = perm.len() == self.rank()
            && perm
                .iter()
                .all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true));
        if !ok {
            return Err(Error::invalid(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the dims of shape {:?}",
                    self.dims()
                ),
            ));
        }
        Ok(self.view(
            self.layout().permute(perm),
            Some(Op::Permute(self.clone(), perm.to_vec())),
        ))
    }

    /// Elements `start..start + len` along `dim` (a view).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.shape().dim_index(dim, "narrow")?;
        let size = self.dims()[d];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "range {start}..{} out of bounds for dim {d} of size {size} (shape {:?})",
                    start.saturating_add(len),
                    self.dims()
                ),
            ));
        }
        Ok(self.view(
            self.layout().narrow(d, start, len),
            Some(Op::Narrow(self.clone(), d, start)),
        ))
    }

    /// Elements `range` along `dim` (a view); `narrow` with a range.
    pub fn slice(&self, dim: isize, range: std::ops::Range<usize>) -> Result<Tensor> {
        if range.end < range.start {
            return Err(Error::invalid(
                "slice",
                format!("empty-reversed range {range:?} (shape {:?})", self.dims()),
            ));
        }
        self.narrow(dim, range.start, range.end - range.start)
    }

    /// Inserts a dimension of size 1 at `dim` (`-1` appends).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let rank = self.rank() as isize;
        let d = if dim < 0 { dim + rank + 1 } else { dim };
        if d < 0 || d > rank {
            return Err(Error::DimOutOfRange {
                op: "unsqueeze",
                dim,
                shape: self.dims().to_vec(),
            });
        }
        let mut dims = self.dims().to_vec();
        dims.insert(d as usize, 1);
        self.reshape(dims)
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.shape().dim_index(dim, "squeeze")?;
        if self.dims()[d] != 1 {
            return Err(Error::invalid(
                "squeeze",
                format!(
                    "dim {d} has size {} (shape {:?}), not 1",
                    self.dims()[d],
                    self.dims()
                ),
            ));
        }
        let mut dims = self.dims().to_vec();
        dims.remove(d);
        self.reshape(dims)
    }

    /// Merges dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape([1]);
        }
        let s = self.shape().dim_index(start, "flatten")?;
        let e = self.shape().dim_index(end, "flatten")?;
        if s > e {
            return Err(Error::invalid(
                "flatten",
                format!("start dim {s} after end dim {e} (shape {:?})", self.dims()),
            ));
        }
        let d = self.dims();
        let mut dims = d[..s].to_vec();
        dims.push(d[s..=e].iter().product());
        dims.extend_from_slice(&d[e + 1..]);
        self.reshape(dims)
    }

    /// Broadcasts to `shape` (NumPy rules; a view with zero strides).
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        let b = self.shape().broadcast(&shape, "broadcast_to")?;
        if b != shape {
            return Err(Error::ShapeMismatch {
                op: "broadcast_to",
                lhs: self.dims().to_vec(),
                rhs: shape.dims().to_vec(),
            });
        }
        if &shape == self.shape() {
            return Ok(self.clone());
        }
        Ok(self.view(
            self.layout().broadcast_to(&shape),
            Some(Op::BroadcastTo(self.clone())),
        ))
    }

    /// A row-major copy, or `self` if already contiguous.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            Ok(self.clone())
        } else {
            self.unary(UnaryOp::Copy)
        }
    }

    /// Concatenates tensors of equal shape except along `dim`.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        const OP: &str = "cat";
        let first = *tensors
            .first()
            .ok_or_else(|| Error::invalid(OP, "needs at least one tensor"))?;
        if tensors.iter().all(|t| t.dtype() == DType::F16) {
            let wide: Vec<Tensor> = tensors.iter().map(|t| t.as_f32()).collect::<Result<_>>()?;
            let refs: Vec<&Tensor> = wide.iter().collect();
            return Tensor::cat(&refs, dim)?.to_dtype(DType::F16);
        }
        let d = first.shape().dim_index(dim, OP)?;
        let mut total = 0;
        for t in tensors {
            first.check_same_device(t, OP)?;
            let same_rest = t.rank() == first.rank()
                && t.dtype() == first.dtype()
                && (0..t.rank()).all(|i| i == d || t.dims()[i] == first.dims()[i]);
            if !same_rest {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    lhs: first.dims().to_vec(),
                    rhs: t.dims().to_vec(),
                });
            }
            total = usize::checked_add(total, t.dims()[d]).unwrap_or(usize::MAX);
        }
        let mut dims = first.dims().to_vec();
        dims[d] = total;
        let shape = Shape::new(dims);
        shape.check_numel(OP)?;
        let out_layout = Layout::contiguous(shape.clone());
        let storage = match first.storage() {
            Storage::Cpu(_) => {
                let mut out = cpu::alloc::try_zeroed(shape.numel(), OP)?;
                let mut start = 0;
                for t in tensors {
                    let Storage::Cpu(src) = t.storage() else {
                        unreachable!()
                    };
                    let dst = out_layout.narrow(d, start, t.dims()[d]);
                    cpu::elementwise::copy_into(&src.read().unwrap(), t.layout(), &mut out, &dst);
                    start += t.dims()[d];
                }
                Storage::cpu(out)
            }
            Storage::Gpu(_) => {
                let out = alloc_like(first.device(), &shape, OP)?;
                let mut start = 0;
                for t in tensors {
                    let Storage::Gpu(src) = t.storage() else {
                        unreachable!()
                    };
                    let dst = out_layout.narrow(d, start, t.dims()[d]);
                    gpu::unary(UnaryOp::Copy, (src, t.layout()), (&out, &dst))?;
                    start += t.dims()[d];
                }
                Storage::Gpu(out)
            }
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            first.dtype(),
            first.device(),
            Some(Op::Cat(tensors.iter().map(|&t| t.clone()).collect(), d)),
        ))
    }
}
