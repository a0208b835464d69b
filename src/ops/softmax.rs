//! Softmax and log-softmax over the last axis, and their fused backward passes for autograd.

use super::alloc_like;
use crate::gpu::softmax as gpu;
use crate::op::Op;
use crate::tensor::Storage;
use crate::{cpu, DType, Error, Result, Tensor};

impl Tensor {
    /// `exp(x - max) / Σ exp(x - max)` over the last axis (a rank-0 tensor is one row of one).
    /// Finite for any finite input, however large.
    pub fn softmax(&self) -> Result<Tensor> {
        self.softmax_forward(false)
    }

    /// `x - max - log Σ exp(x - max)` over the last axis: the log of [`Tensor::softmax`],
    /// without its underflow.
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.softmax_forward(true)
    }

    /// Row length (the last dim; 1 for rank 0) and row count.
    fn softmax_rows(&self) -> (usize, usize) {
        let n = self.dims().last().copied().unwrap_or(1);
        (n, self.numel().checked_div(n).unwrap_or(0))
    }

    fn softmax_forward(&self, log: bool) -> Result<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        if self.dtype() == DType::F16 {
            return self.via_f32_autocast(|x| x.softmax_forward(log));
        }
        self.check_dtype(DType::F32, name)?;
        let (n, rows) = self.softmax_rows();
        let x = self.contiguous()?;
        let off = x.layout().offset;
        let storage = match x.storage() {
            Storage::Cpu(d) => {
                let d = d.read().unwrap();
                Storage::cpu(cpu::softmax::forward(log, &d[off..off + x.numel()], n))
            }
            Storage::Gpu(b) => {
                let out = alloc_like(self.device(), self.shape(), name)?;
                gpu::forward(log, (b, off), &out, rows, n)?;
                Storage::Gpu(out)
            }
        };
        let rec = if log {
            Op::LogSoftmax(self.clone())
        } else {
            Op::Softmax(self.clone())
        };
        Ok(Tensor::from_storage(
            storage,
            self.shape().clone(),
            DType::F32,
            self.device(),
            Some(rec),
        ))
    }

    /// Gradient of [`Tensor::softmax`] given its output `y`: `y · (dy - Σ_last dy·y)`.
    /// Records no op.
    pub(crate) fn softmax_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        Tensor::softmax_grad(false, y, dy)
    }

    /// Gradient of [`Tensor::log_softmax`] given its output `y`: `dy - exp(y) · Σ_last dy`.
    /// Records no op.
    pub(crate) fn log_softmax_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        Tensor::softmax_grad(true, y, dy)
    }

    fn softmax_grad(log: bool, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let name = if log {
            "log_softmax_backward"
        } else {
            "softmax_backward"
        };
        y.check_same_device(dy, name)?;
        y.check_dtype(DType::F32, name)?;
        dy.check_dtype(DType::F32, name)?;
        if y.dims() != dy.dims() {
            return Err(Error::ShapeMismatch {
                op: name,
                lhs: y.dims().to_vec(),
                rhs: dy.dims().to_vec(),
            });
        }
        let (n, rows) = y.softmax_rows();
        let (y, dy) = (y.contiguous()?, dy.contiguous()?);
        let (oy, og, len) = (y.layout().offset, dy.layout().offset, y.numel());
        let storage = match (y.storage(), dy.storage()) {
            (Storage::Cpu(a), Storage::Cpu(g)) => {
                let (a, g) = (a.read().unwrap(), g.read().unwrap());
                Storage::cpu(cpu::softmax::backward(
                    log,
                    &a[oy..oy + len],
                    &g[og..og + len],
                    n,
                ))
            }
            (Storage::Gpu(a), Storage::Gpu(g)) => {
                let out = alloc_like(y.device(), y.shape(), name)?;
                gpu::backward(log, (a, oy), (g, og), &out, rows, n)?;
                Storage::Gpu(out)
            }
            _ => unreachable!("devices checked"),
        };
        Ok(Tensor::from_storage(
            storage,
            y.shape().clone(),
            DType::F32,
            y.device(),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    //! The backward kernels are crate-internal, so they are tested here: against finite
    //! differences of the forward on the CPU, and the GPU against the CPU.
    use crate::{Device, Error, Tensor};

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n).map(|_| r.uniform() * 4.0 - 2.0).collect()
    }

    fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= atol + rtol * w.abs(),
                "{what}: [{i}] got {g} want {w}"
            );
        }
    }

    fn grad(log: bool, y: &Tensor, dy: &Tensor) -> Tensor {
        if log {
            Tensor::log_softmax_backward(y, dy).unwrap()
        } else {
            Tensor::softmax_backward(y, dy).unwrap()
        }
    }

    fn forward(log: bool, x: &Tensor) -> Tensor {
        if log { x.log_softmax() } else { x.softmax() }.unwrap()
    }

    /// The GPU for these tests; `None` when there is none and `WGML_REQUIRE_GPU` is unset.
    fn gpu() -> Option<Device> {
        match Device::gpu() {
            Ok(d) => Some(d),
            Err(e) if std::env::var("WGML_REQUIRE_GPU").is_ok_and(|v| v != "0") => {
                panic!("WGML_REQUIRE_GPU is set but no GPU adapter was found: {e}")
            }
            Err(_) => None,
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let cpu = Device::cpu();
        let dims = [3, 5];
        let x = data(15, 1);
        let w = data(15, 2); // L = Σ w · f(x), so dL/dy = w
        for log in [false, true] {
            let loss = |x: &[f32]| -> f64 {
                let t = Tensor::from_slice(x, dims, &cpu).unwrap();
                let y = forward(log, &t).to_vec().unwrap();
                y.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).sum()
            };
            let h = 5e-3f32;
            let numeric: Vec<f32> = (0..x.len())
                .map(|i| {
                    let (mut p, mut m) = (x.clone(), x.clone());
                    p[i] += h;
                    m[i] -= h;
                    ((loss(&p) - loss(&m)) / (2.0 * h as f64)) as f32
                })
                .collect();
            let y = forward(log, &Tensor::from_slice(&x, dims, &cpu).unwrap());
            let dy = Tensor::from_slice(&w, dims, &cpu).unwrap();
            let analytic = grad(log, &y, &dy).to_vec().unwrap();
            assert_close(&analytic, &numeric, 2e-3, 1e-2, &format!("log {log}"));
        }
    }

    #[test]
    fn backward_by_hand() {
        let cpu = Device::cpu();
        // Uniform y over 4 with dy = e_0: softmax grad = y·(dy - 1/4) = [3/16, -1/16, ..].
        let y = Tensor::full(0.25, [4], &cpu).unwrap();
        let dy = Tensor::from_slice(&[1.0, 0.0, 0.0, 0.0], [4], &cpu).unwrap();
        let g = grad(false, &y, &dy).to_vec().unwrap();
        assert_close(
            &g,
            &[0.1875, -0.0625, -0.0625, -0.0625],
            1e-7,
            0.0,
            "softmax",
        );
        // log_softmax grad with y = log(1/4): dy - 1/4 · Σ dy.
        let ly = Tensor::full(0.25f32.ln(), [4], &cpu).unwrap();
        let g = grad(true, &ly, &dy).to_vec().unwrap();
        assert_close(&g, &[0.75, -0.25, -0.25, -0.25], 1e-7, 0.0, "log_softmax");
    }

    #[test]
    fn backward_gpu_matches_cpu() {
        let Some(gpu) = gpu() else { return };
        let shapes: [&[usize]; 7] = [
            &[1],
            &[3],
            &[3, 17],
            &[2, 129],
            &[1000],
            &[5, 1],
            &[2, 100_003],
        ];
        for (i, dims) in shapes.into_iter().enumerate() {
            let n: usize = dims.iter().product();
            let (x, w) = (data(n, 10 + i as u64), data(n, 20 + i as u64));
            for log in [false, true] {
                let run = |dev: &Device| {
                    let y = forward(log, &Tensor::from_slice(&x, dims, dev).unwrap());
                    let dy = Tensor::from_slice(&w, dims, dev).unwrap();
                    grad(log, &y, &dy).to_vec().unwrap()
                };
                let what = format!("log {log} {dims:?}");
                assert_close(&run(&gpu), &run(&Device::cpu()), 1e-5, 1e-4, &what);
            }
        }
        // Non-contiguous y and dy (transposed), and an offset view.
        for log in [false, true] {
            let (x, w) = (data(17 * 9, 30), data(17 * 9, 31));
            let run = |dev: &Device| {
                let y = forward(log, &Tensor::from_slice(&x, [17, 9], dev).unwrap())
                    .t()
                    .unwrap();
                let dy = Tensor::from_slice(&w, [9, 17], dev)
                    .unwrap()
                    .narrow(0, 0, 9)
                    .unwrap();
                let dy_t = Tensor::from_slice(&w, [17, 9], dev).unwrap().t().unwrap();
                let a = grad(log, &y, &dy).to_vec().unwrap();
                let b = grad(log, &y, &dy_t).to_vec().unwrap();
                [a, b].concat()
            };
            assert_close(&run(&gpu), &run(&Device::cpu()), 1e-5, 1e-4, "strided");
        }
    }

    #[test]
    fn backward_records_no_op_and_checks_shapes() {
        let cpu = Device::cpu();
        let x = Tensor::from_slice(&data(6, 3), [2, 3], &cpu)
            .unwrap()
            .with_requires_grad(true);
        let y = x.softmax().unwrap();
        assert!(matches!(y.op(), Some(crate::op::Op::Softmax(_))));
        assert!(matches!(
            x.log_softmax().unwrap().op(),
            Some(crate::op::Op::LogSoftmax(_))
        ));
        let g = Tensor::softmax_backward(&y, &x).unwrap();
        assert!(g.op().is_none() && !g.requires_grad_flag());
        let bad = Tensor::zeros([3, 2], &cpu).unwrap();
        let e = Tensor::log_softmax_backward(&y, &bad).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("log_softmax_backward"), "{e}");
    }
}
