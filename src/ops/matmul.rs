//! `matmul` with `torch.matmul` semantics: batched, broadcast batch dims, 1-D operands promoted.

use super::alloc_like;
use crate::cpu::matmul::Mkn;
use crate::gpu::buffer;
use crate::gpu::matmul::{self as gpu, F16Kernel, Io};
use crate::op::Op;
use crate::shape::{Layout, Shape};
use crate::tensor::Storage;
use crate::{backprop, cpu, DType, Device, Error, Result, Tensor};

const OP: &str = "matmul";

/// The shapes of one `matmul` call, resolved once for both backends.
struct Plan {
    /// Broadcast batch dims.
    batch: Vec<usize>,
    mkn: Mkn,
    /// The result's dims (the dims added for 1-D operands removed).
    out: Vec<usize>,
}

impl Plan {
    fn new(a: &[usize], b: &[usize]) -> Result<Plan> {
        let mismatch = || Error::ShapeMismatch {
            op: OP,
            lhs: a.to_vec(),
            rhs: b.to_vec(),
        };
        if a.is_empty() || b.is_empty() {
            return Err(mismatch());
        }
        let (pa, pb) = (promoted(a, Side::Lhs), promoted(b, Side::Rhs));
        let (ra, rb) = (pa.len(), pb.len());
        let (m, k, k2, n) = (pa[ra - 2], pa[ra - 1], pb[rb - 2], pb[rb - 1]);
        if k != k2 {
            return Err(mismatch());
        }
        let batch = Shape::new(pa[..ra - 2].to_vec())
            .broadcast(&Shape::new(pb[..rb - 2].to_vec()), OP)
            .map_err(|_| mismatch())?
            .dims()
            .to_vec();
        let mut out = batch.clone();
        if a.len() > 1 {
            out.push(m);
        }
        if b.len() > 1 {
            out.push(n);
        }
        let mut full = batch.clone();
        full.extend([m, n]);
        Shape::new(full).check_numel(OP)?;
        Ok(Plan {
            batch,
            mkn: Mkn { m, k, n },
            out,
        })
    }

    /// `t`'s layout promoted to a matrix and broadcast to `[..batch, rows, cols]`.
    fn operand(&self, t: &Layout, side: Side) -> Layout {
        let mut l = t.clone();
        if l.shape.rank() == 1 {
            // A 1-D lhs is a row [1, K], a 1-D rhs a column [K, 1]; the new dim has size 1,
            // so its stride is never used.
            let (d, s) = (l.shape.dims()[0], l.strides[0]);
            (l.shape, l.strides) = match side {
                Side::Lhs => (Shape::from([1, d]), vec![0, s]),
                Side::Rhs => (Shape::from([d, 1]), vec![s, 0]),
            };
        }
        let r = l.shape.rank();
        let mut full = self.batch.clone();
        full.extend_from_slice(&l.shape.dims()[r - 2..]);
        l.broadcast_to(&Shape::new(full))
    }
}

#[derive(Clone, Copy)]
enum Side {
    Lhs,
    Rhs,
}

fn promoted(dims: &[usize], side: Side) -> Vec<usize> {
    match (dims.len(), side) {
        (1, Side::Lhs) => vec![1, dims[0]],
        (1, Side::Rhs) => vec![dims[0], 1],
        _ => dims.to_vec(),
    }
}

impl Tensor {
    /// Matrix product with `torch.matmul` semantics: `[.., M, K] @ [.., K, N] → [.., M, N]`
    /// with NumPy broadcasting of the batch dims (`[2, 1, M, K] @ [3, K, N] → [2, 3, M, N]`).
    /// A 1-D lhs is treated as a row `[1, K]` and a 1-D rhs as a column `[K, 1]`; the added
    /// dim is removed from the result (so vector @ vector is a scalar). Transposed views
    /// (`b.t()?`) are read in place, without a copy.
    ///
    /// Errors: [`Error::ShapeMismatch`] when the inner dims differ, the batch dims do not
    /// broadcast or an operand is a scalar; [`Error::DeviceMismatch`]; [`Error::DType`] for
    /// `U32` operands.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        if crate::amp::is_autocast_enabled()
            && (self.dtype() == DType::F32 || rhs.dtype() == DType::F32)
        {
            return crate::amp::to_f16(self)?.matmul(&crate::amp::to_f16(rhs)?);
        }
        // `[.., M, K] @ [K, N]` with a contiguous lhs is one `[(..·M), K] @ [K, N]` product:
        // one large sgemm instead of a batch of small ones, and the rhs gradient becomes one
        // product instead of a batch of them and a reduction over the batch (4x faster on the
        // Transformer's Linear layers).
        let r = self.rank();
        if r > 2 && rhs.rank() == 2 && self.is_contiguous() && rhs.dims()[0] == self.dims()[r - 1] {
            let k = self.dims()[r - 1];
            let rows = self.numel() / k.max(1);
            if k > 0 && rows > 0 {
                let mut dims = self.dims()[..r - 1].to_vec();
                dims.push(rhs.dims()[1]);
                return self
                    .reshape([rows, k])?
                    .matmul_with(rhs, None)?
                    .reshape(dims);
            }
        }
        self.matmul_with(rhs, None)
    }

    /// Names of the GPU tile configurations, indexed as [`Tensor::matmul_gpu_config`] takes
    /// them. For tests and benches.
    #[doc(hidden)]
    pub fn matmul_gpu_configs() -> Vec<&'static str> {
        gpu::CONFIGS.iter().map(|c| c.name).collect()
    }

    /// [`Tensor::matmul`] with the GPU tile configuration `config` (an index into
    /// [`Tensor::matmul_gpu_configs`]) instead of the one picked for the shape; the CPU
    /// backend ignores it. For tests that must cover every configuration.
    #[doc(hidden)]
    pub fn matmul_gpu_config(&self, rhs: &Tensor, config: usize) -> Result<Tensor> {
        if config >= gpu::CONFIGS.len() {
            return Err(Error::invalid(
                OP,
                format!(
                    "GPU config {config} does not exist ({} configs)",
                    gpu::CONFIGS.len()
                ),
            ));
        }
        self.matmul_with(rhs, Some(config))
    }

    fn matmul_with(&self, rhs: &Tensor, config: Option<usize>) -> Result<Tensor> {
        self.check_same_device(rhs, OP)?;
        if self.dtype() != rhs.dtype() || self.dtype() == DType::U32 {
            return Err(Error::DType {
                op: OP,
                msg: format!(
                    "operands must both be F32 or both F16, got {:?} {:?} and {:?} {:?}",
                    self.dtype(),
                    self.dims(),
                    rhs.dtype(),
                    rhs.dims()
                ),
            });
        }
        let dtype = self.dtype();
        if dtype == DType::F16 && !self.device().is_gpu() {
            // The CPU has no F16 arithmetic: sgemm on f32 copies, one rounding of the output.
            return self
                .to_dtype(DType::F32)?
                .matmul_with(&rhs.to_dtype(DType::F32)?, config)?
                .to_dtype(DType::F16);
        }
        let plan = Plan::new(self.dims(), rhs.dims())?;
        let storage = match (self.storage(), rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::cpu(cpu::matmul::matmul(
                {
                    let out: usize = plan.batch.iter().product();
                    cpu::alloc::reserve(out * plan.mkn.m * plan.mkn.n, OP)?;
                    &a.read().unwrap()
                },
                &plan.operand(self.layout(), Side::Lhs),
                &b.read().unwrap(),
                &plan.operand(rhs.layout(), Side::Rhs),
                plan.mkn,
            )),
            (Storage::Gpu(_), Storage::Gpu(_)) => self.matmul_gpu(rhs, &plan, config)?,
            _ => unreachable!("devices checked"),
        };
        Ok(Tensor::from_storage(
            storage,
            Shape::new(plan.out),
            dtype,
            self.device(),
            Some(Op::Matmul(self.clone(), rhs.clone())),
        ))
    }

    /// The GPU path: operands whose matrices are neither row- nor column-major, or whose batch
    /// dims do not fit the kernel, are copied first (without recording a graph).
    fn matmul_gpu(&self, rhs: &Tensor, plan: &Plan, config: Option<usize>) -> Result<Storage> {
        let prepare = |t: &Tensor, side: Side| -> Result<(Tensor, Layout)> {
            let l = plan.operand(t.layout(), side);
            if gpu::matrix_major(&l).is_some() {
                Ok((t.clone(), l))
            } else {
                let c = backprop::no_grad(|| t.contiguous())?;
                let l = plan.operand(c.layout(), side);
                Ok((c, l))
            }
        };
        let (mut a, mut la) = prepare(self, Side::Lhs)?;
        let (mut b, mut lb) = prepare(rhs, Side::Rhs)?;
        if !gpu::batch_fits(&la, &lb) {
            // Many interleaved broadcast dims: materialise both operands in full.
            let dense = |l: &Layout, t: &Tensor| -> Result<(Tensor, Layout)> {
                let c = backprop::no_grad(|| t.view(l.clone(), None).contiguous())?;
                let lc = c.layout().clone();
                Ok((c, lc))
            };
            (a, la) = dense(&la, &a)?;
            (b, lb) = dense(&lb, &b)?;
        }
        let mut out_dims = plan.batch.clone();
        out_dims.extend([plan.mkn.m, plan.mkn.n]);
        let out_shape = Shape::new(out_dims);
        let (Storage::Gpu(ab), Storage::Gpu(bb)) = (a.storage(), b.storage()) else {
            unreachable!("devices checked")
        };
        let Device::Gpu(ctx) = self.device() else {
            unreachable!("GPU storage")
        };
        if self.dtype() == DType::F32 {
            let out = alloc_like(self.device(), &out_shape, OP)?;
            gpu::matmul((ab, &la), (bb, &lb), &out, plan.mkn, config, Io::F32)?;
            return Ok(Storage::Gpu(out));
        }
        let n = out_shape.numel();
        let kernel = gpu::pick_f16(
            crate::gpu::coop::device_config(ctx),
            ctx.f16_path(),
            plan.mkn,
            config.is_some(),
        );
        if kernel == F16Kernel::Native {
            let out = buffer::alloc(ctx, cpu::half::words(n), OP, out_shape.dims())?;
            gpu::matmul((ab, &la), (bb, &lb), &out, plan.mkn, config, Io::F16Native)?;
            return Ok(Storage::Gpu(out));
        }
        // Cooperative and packed kernels write f32; one cast pass rounds it into words.
        let wide = alloc_like(self.device(), &out_shape, OP)?;
        match kernel {
            F16Kernel::Coop(cfg) => {
                crate::gpu::coop::matmul_coop((ab, &la), (bb, &lb), &wide, plan.mkn, cfg)?
            }
            _ => gpu::matmul((ab, &la), (bb, &lb), &wide, plan.mkn, config, Io::F16Packed)?,
        }
        let out = buffer::alloc(ctx, cpu::half::words(n), OP, out_shape.dims())?;
        crate::gpu::half::cast((&wide, &Layout::contiguous(out_shape)), false, &out, false)?;
        Ok(Storage::Gpu(out))
    }
}
