//! Reductions: sum, mean, max, min and argmax over some dims or all, and `sum_to_shape`.

use super::alloc_like;
use crate::gpu::reduce as gpu;
use crate::op::{Op, ReduceOp};
use crate::shape::Shape;
use crate::tensor::Storage;
use crate::{cpu, DType, Error, Result, Tensor};

fn op_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Sum => "sum",
        ReduceOp::Mean => "mean",
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
        ReduceOp::ArgMax => "argmax",
    }
}

impl Tensor {
    /// Reduces over `dims` (negative counts from the end; each at most once), dropping them or,
    /// with `keepdim`, keeping them with size 1. An empty `dims` reduces nothing. `ArgMax` gives
    /// `U32` indices into the reduced dims flattened row-major (the first on ties; NaN counts
    /// as the largest, and max / min propagate NaN, as in PyTorch). Over no elements, a sum is 0
    /// and a mean NaN; max, min and argmax return [`Error::Empty`]. Only `F32` input.
    pub fn reduce(&self, op: ReduceOp, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let name = op_name(op);
        if self.dtype() == DType::F16 {
            // Accumulates in f32; under autocast sums stay F32 (means do not: PyTorch's lists).
            return match op {
                ReduceOp::Sum => self.via_f32_autocast(|x| x.reduce(op, dims, keepdim)),
                _ => self.via_f32(|x| x.reduce(op, dims, keepdim)),
            };
        }
        self.check_dtype(DType::F32, name)?;
        let mut ds: Vec<usize> = Vec::with_capacity(dims.len());
        for &d in dims {
            let i = self.shape().dim_index(d, name)?;
            if ds.contains(&i) {
                return Err(Error::invalid(
                    name,
                    format!(
                        "dim {i} is named twice in dims {dims:?} (shape {:?})",
                        self.dims()
                    ),
                ));
            }
            ds.push(i);
        }
        ds.sort_unstable();
        let len: usize = ds.iter().map(|&d| self.dims()[d]).product();
        if len == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::ArgMax) {
            return Err(Error::Empty {
                op: name,
                shape: self.dims().to_vec(),
            });
        }
        let out_dims: Vec<usize> = (0..self.rank())
            .filter_map(|d| match (ds.contains(&d), keepdim) {
                (false, _) => Some(self.dims()[d]),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        let shape = Shape::new(out_dims);
        let storage = match self.storage() {
            Storage::Cpu(x) => Storage::cpu(cpu::reduce::reduce(
                op,
                &x.read().unwrap(),
                self.layout(),
                &ds,
            )),
            Storage::Gpu(x) => {
                let out = alloc_like(self.device(), &shape, name)?;
                gpu::reduce(op, name, (x, self.layout()), &ds, &out)?;
                Storage::Gpu(out)
            }
        };
        let (dtype, rec) = match op {
            ReduceOp::ArgMax => (DType::U32, None),
            _ => (DType::F32, Some(Op::Reduce(self.clone(), op, ds, keepdim))),
        };
        Ok(Tensor::from_storage(
            storage,
            shape,
            dtype,
            self.device(),
            rec,
        ))
    }

    fn reduce_all(&self, op: ReduceOp) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        self.reduce(op, &all, false)
    }

    /// Sum along `dim`.
    pub fn sum(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, &[dim], keepdim)
    }
    /// Mean along `dim` (NaN over an empty dim).
    pub fn mean(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, &[dim], keepdim)
    }
    /// Maximum along `dim`.
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, &[dim], keepdim)
    }
    /// Minimum along `dim`.
    pub fn min(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, &[dim], keepdim)
    }
    /// `U32` index of the maximum along `dim` (the first on ties).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::ArgMax, &[dim], keepdim)
    }
    /// Sum of all elements (rank 0).
    pub fn sum_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Sum)
    }
    /// Mean of all elements (rank 0).
    pub fn mean_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Mean)
    }
    /// Maximum of all elements (rank 0).
    pub fn max_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Max)
    }
    /// Minimum of all elements (rank 0).
    pub fn min_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::Min)
    }
    /// `U32` index of the maximum in the flattened tensor (rank 0; the first on ties).
    pub fn argmax_all(&self) -> Result<Tensor> {
        self.reduce_all(ReduceOp::ArgMax)
    }

    /// Sums a broadcast result back to `shape`, a shape it was broadcast from (NumPy rules):
    /// leading extra dims and dims where `shape` has 1 are summed. The gradient of
    /// [`Tensor::broadcast_to`].
    pub fn sum_to_shape(&self, shape: &Shape) -> Result<Tensor> {
        const OP: &str = "sum_to_shape";
        let mismatch = || Error::ShapeMismatch {
            op: OP,
            lhs: self.dims().to_vec(),
            rhs: shape.dims().to_vec(),
        };
        if shape.rank() > self.rank() {
            return Err(mismatch());
        }
        let extra = self.rank() - shape.rank();
        let mut dims = Vec::new();
        for (i, &d) in self.dims().iter().enumerate() {
            if i < extra {
                dims.push(i as isize);
                continue;
            }
            match shape.dims()[i - extra] {
                s if s == d => {}
                1 => dims.push(i as isize),
                _ => return Err(mismatch()),
            }
        }
        if dims.is_empty() {
            return Ok(self.clone());
        }
        self.reduce(ReduceOp::Sum, &dims, true)?.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use crate::op::{Op, ReduceOp};
    use crate::{Device, Tensor};

    #[test]
    fn records_the_op_with_sorted_dims() {
        let x = Tensor::from_slice(&[1.0; 24], [2, 3, 4], &Device::cpu())
            .unwrap()
            .with_requires_grad(true);
        let s = x.reduce(ReduceOp::Mean, &[-1, 0], true).unwrap();
        match s.op() {
            Some(Op::Reduce(p, ReduceOp::Mean, dims, true)) => {
                assert_eq!(p.id(), x.id());
                assert_eq!(dims, &[0, 2]);
            }
            _ => panic!("mean should record Op::Reduce"),
        }
        assert!(matches!(
            x.max_all().unwrap().op(),
            Some(Op::Reduce(_, ReduceOp::Max, _, false))
        ));
        let a = x.argmax(1, false).unwrap();
        assert!(a.op().is_none() && !a.requires_grad_flag());
    }
}
