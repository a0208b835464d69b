//! `Tensor`: a cheap-to-clone handle to storage plus a strided layout; creation, read-back,
//! views, and the bookkeeping autograd needs. The op methods live in `ops/`, one file a family.

use crate::gpu::buffer::{self, GpuBuffer};
use crate::op::Op;
use crate::shape::{Layout, Shape};
use crate::{DType, Device, Error, Result};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Unique id of a tensor node (for gradients and graph traversal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(usize);

impl TensorId {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A tensor's element words for a read-back: on the host already, or `(buffer, first word,
/// words)` on a GPU.
enum Words {
    Ready(Vec<u32>),
    OnDevice(Arc<GpuBuffer>, usize, usize),
}

/// Where the words of a tensor live. CPU storage is shared and lockable so optimizers can
/// update parameters in place; GPU storage returns to the pool when the last user drops.
#[derive(Clone)]
pub(crate) enum Storage {
    Cpu(Arc<RwLock<crate::cpu::alloc::CpuBuf>>),
    Gpu(Arc<GpuBuffer>),
}

impl Storage {
    pub(crate) fn cpu(data: Vec<f32>) -> Storage {
        Storage::Cpu(Arc::new(RwLock::new(crate::cpu::alloc::CpuBuf::new(data))))
    }
}

pub(crate) struct TensorInner {
    id: TensorId,
    storage: Storage,
    layout: Layout,
    dtype: DType,
    device: Device,
    op: Option<Op>,
    requires_grad: bool,
}

/// An n-dimensional array on a [`Device`]. Cloning is cheap (an `Arc`); views such as
/// [`Tensor::transpose`] share storage.
#[derive(Clone)]
pub struct Tensor(Arc<TensorInner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {:?}, {})",
            self.dims(),
            self.dtype(),
            self.device().name()
        )
    }
}

pub(crate) fn floats_to_words(v: &[f32]) -> Vec<u32> {
    bytemuck::cast_slice(v).to_vec()
}

impl Tensor {
    // ---------------------------------------------------------------- construction (internal)

    /// Wraps storage in a new tensor; records `op` only when a parent needs a gradient.
    pub(crate) fn from_parts(
        storage: Storage,
        layout: Layout,
        dtype: DType,
        device: Device,
        op: Option<Op>,
    ) -> Tensor {
        let requires_grad = op.as_ref().is_some_and(crate::backprop::op_needs_grad)
            && crate::backprop::grad_enabled();
        let anomaly = crate::anomaly::forward_label(op.as_ref());
        let t = Tensor(Arc::new(TensorInner {
            id: TensorId::new(),
            storage,
            layout,
            dtype,
            device,
            op: if requires_grad { op } else { None },
            requires_grad,
        }));
        crate::anomaly::check_forward(&t, anomaly);
        t
    }

    /// A new contiguous tensor on `device` holding `storage`.
    pub(crate) fn from_storage(
        storage: Storage,
        shape: Shape,
        dtype: DType,
        device: &Device,
        op: Option<Op>,
    ) -> Tensor {
        Tensor::from_parts(
            storage,
            Layout::contiguous(shape),
            dtype,
            device.clone(),
            op,
        )
    }

    /// A view of the same storage with another layout.
    pub(crate) fn view(&self, layout: Layout, op: Option<Op>) -> Tensor {
        Tensor::from_parts(
            self.0.storage.clone(),
            layout,
            self.dtype(),
            self.device().clone(),
            op,
        )
    }

    pub(crate) fn from_words(
        words: Vec<u32>,
        shape: Shape,
        dtype: DType,
        device: &Device,
        op: &'static str,
    ) -> Result<Tensor> {
        shape.check_numel(op)?;
        let want = match dtype {
            DType::F16 => crate::cpu::half::words(shape.numel()),
            _ => shape.numel(),
        };
        if words.len() != want {
            return Err(Error::ElementCount {
                op,
                shape: shape.dims().to_vec(),
                len: words.len(),
            });
        }
        let storage = match device {
            Device::Cpu => Storage::cpu(bytemuck::cast_vec(words)),
            Device::Gpu(ctx) => Storage::Gpu(buffer::upload(ctx, &words, op, shape.dims())?),
        };
        Ok(Tensor::from_storage(storage, shape, dtype, device, None))
    }

    // ---------------------------------------------------------------- creation

    /// A tensor of `shape` holding `data` in row-major order.
    pub fn from_vec(data: Vec<f32>, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        shape.check_numel("from_vec")?;
        if data.len() != shape.numel() {
            return Err(Error::ElementCount {
                op: "from_vec",
                shape: shape.dims().to_vec(),
                len: data.len(),
            });
        }
        match device {
            Device::Cpu => Ok(Tensor::from_storage(
                Storage::cpu(data),
                shape,
                DType::F32,
                device,
                None,
            )),
            _ => Tensor::from_words(
                floats_to_words(&data),
                shape,
                DType::F32,
                device,
                "from_vec",
            ),
        }
    }

    /// A tensor of `shape` copied from `data`.
    pub fn from_slice(data: &[f32], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    /// A `U32` tensor of indices (class labels, token ids, rows to gather).
    pub fn from_indices(data: &[u32], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::from_words(
            data.to_vec(),
            shape.into(),
            DType::U32,
            device,
            "from_indices",
        )
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: f32, device: &Device) -> Result<Tensor> {
        Tensor::from_vec(vec![value], (), device)
    }

    /// A tensor filled with `value`.
    pub fn full(value: f32, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.check_numel("full")?;
        match device {
            Device::Cpu => {
                let mut data = crate::cpu::alloc::try_take(n, "full")?;
                data.fill(value);
                Tensor::from_vec(data, shape, device)
            }
            Device::Gpu(ctx) => {
                let buf = buffer::alloc(ctx, shape.numel(), "full", shape.dims())?;
                crate::gpu::elementwise::fill(&buf, shape.numel(), value)?;
                Ok(Tensor::from_storage(
                    Storage::Gpu(buf),
                    shape,
                    DType::F32,
                    device,
                    None,
                ))
            }
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        shape.check_numel("zeros")?;
        match device {
            Device::Gpu(ctx) => {
                let buf = buffer::alloc(ctx, shape.numel(), "zeros", shape.dims())?;
                buffer::clear(&buf, 0, shape.numel());
                Ok(Tensor::from_storage(
                    Storage::Gpu(buf),
                    shape,
                    DType::F32,
                    device,
                    None,
                ))
            }
            Device::Cpu => {
                let data = crate::cpu::alloc::try_zeroed(shape.numel(), "zeros")?;
                Tensor::from_vec(data, shape, device)
            }
        }
    }

    /// A tensor of ones.
    pub fn ones(shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::full(1.0, shape, device)
    }

    /// Zeros with this tensor's shape and device, and its dtype when that is `F16` (`F32`
    /// otherwise).
    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros(self.shape().clone(), self.device())?.in_float_dtype_of(self)
    }

    /// Ones with this tensor's shape and device, and its dtype when that is `F16` (`F32`
    /// otherwise).
    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::ones(self.shape().clone(), self.device())?.in_float_dtype_of(self)
    }

    /// `self` cast to F16 when `like` is F16.
    fn in_float_dtype_of(self, like: &Tensor) -> Result<Tensor> {
        if like.dtype() == DType::F16 {
            self.to_dtype(DType::F16)
        } else {
            Ok(self)
        }
    }

    /// `start, start + step, …` up to (excluding) `end`, as a 1-D tensor.
    pub fn arange(start: f32, end: f32, step: f32, device: &Device) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(
                "arange",
                format!("invalid range start={start} end={end} step={step}"),
            ));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        Shape::from(n).check_numel("arange")?;
        let mut data = crate::cpu::alloc::try_take(n, "arange")?;
        for (i, v) in data.iter_mut().enumerate() {
            *v = start + i as f32 * step;
        }
        Tensor::from_vec(data, n, device)
    }

    /// Uniform samples in `[0, 1)`. The same seed gives the same values on every device (they
    /// are drawn on the host and uploaded).
    pub fn rand(shape: impl Into<Shape>, seed: u64, device: &Device) -> Result<Tensor> {
        Tensor::rand_uniform(shape, 0.0, 1.0, seed, device)
    }

    /// Uniform samples in `[lo, hi)`, seeded like [`Tensor::rand`].
    pub fn rand_uniform(
        shape: impl Into<Shape>,
        lo: f32,
        hi: f32,
        seed: u64,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let mut rng = crate::rng::Rng::new(seed);
        let mut data = crate::cpu::alloc::try_take(shape.check_numel("rand")?, "rand")?;
        for v in data.iter_mut() {
            *v = lo + (hi - lo) * rng.uniform();
        }
        Tensor::from_vec(data, shape, device)
    }

    /// Standard normal samples, seeded like [`Tensor::rand`].
    pub fn randn(shape: impl Into<Shape>, seed: u64, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let mut rng = crate::rng::Rng::new(seed);
        let mut data = crate::cpu::alloc::try_take(shape.check_numel("randn")?, "randn")?;
        for v in data.iter_mut() {
            *v = rng.normal();
        }
        Tensor::from_vec(data, shape, device)
    }

    // ---------------------------------------------------------------- queries

    /// The tensor's node id.
    pub fn id(&self) -> TensorId {
        self.0.id
    }
    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.0.layout.shape
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.0.layout.shape.dims()
    }
    /// Size of dimension `d` (negative counts from the end).
    pub fn dim(&self, d: isize) -> Result<usize> {
        Ok(self.dims()[self.shape().dim_index(d, "dim")?])
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape().rank()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape().numel()
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// The device the tensor lives on.
    pub fn device(&self) -> &Device {
        &self.0.device
    }
    /// The strided layout.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    /// Whether the elements are dense and row-major in storage.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    /// Whether a gradient will be computed for this tensor.
    pub fn requires_grad_flag(&self) -> bool {
        self.0.requires_grad
    }
    pub(crate) fn storage(&self) -> &Storage {
        &self.0.storage
    }
    pub(crate) fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }
    pub(crate) fn with_requires_grad(&self, on: bool) -> Tensor {
        Tensor(Arc::new(TensorInner {
            id: TensorId::new(),
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            dtype: self.0.dtype,
            device: self.0.device.clone(),
            op: None,
            requires_grad: on,
        }))
    }

    // ---------------------------------------------------------------- checks shared by ops

    pub(crate) fn check_same_device(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.device().same(other.device()) {
            Ok(())
        } else {
            Err(Error::DeviceMismatch {
                op,
                lhs: self.device().name(),
                rhs: other.device().name(),
            })
        }
    }

    pub(crate) fn check_dtype(&self, dtype: DType, op: &'static str) -> Result<()> {
        if self.dtype() == dtype {
            Ok(())
        } else {
            Err(Error::DType {
                op,
                msg: format!(
                    "expected {dtype:?}, got {:?} (shape {:?})",
                    self.dtype(),
                    self.dims()
                ),
            })
        }
    }

    pub(crate) fn check_nonempty(&self, op: &'static str) -> Result<()> {
        if self.numel() == 0 {
            Err(Error::Empty {
                op,
                shape: self.dims().to_vec(),
            })
        } else {
            Ok(())
        }
    }

    // ---------------------------------------------------------------- read-back

    /// The words of the elements in row-major order (F16 packed two to a word), already on the
    /// host or still to be read from the device. Makes a dense copy first where needed;
    /// nothing waits here.
    fn words_at(&self) -> Result<Words> {
        let f16 = self.dtype() == DType::F16;
        let host = |numel: usize| {
            let mut out = Vec::new();
            out.try_reserve_exact(numel)
                .map_err(|_| Error::OutOfMemory {
                    op: "to_vec",
                    bytes: (numel as u64).saturating_mul(4),
                })
                .map(|()| out)
        };
        if let (Storage::Cpu(data), false) = (self.storage(), f16) {
            // Any strided view reads in place.
            let data = data.read().unwrap();
            let mut out = host(self.numel())?;
            if self.is_contiguous() {
                // One copy (the general walk below costs ~4 ns per element).
                let o = self.layout().offset;
                out.extend_from_slice(bytemuck::cast_slice(&data[o..o + self.numel()]));
            } else {
                out.extend(self.layout().offsets().map(|o| data[o].to_bits()));
            }
            return Ok(Words::Ready(out));
        }
        let dense = self.is_contiguous() && (!f16 || self.layout().offset.is_multiple_of(2));
        let t = if dense {
            self.clone()
        } else {
            crate::backprop::no_grad(|| self.copy())?
        };
        let (start, words) = if f16 {
            (t.layout().offset / 2, crate::cpu::half::words(t.numel()))
        } else {
            (t.layout().offset, t.numel())
        };
        match t.storage() {
            Storage::Cpu(data) => {
                let data = data.read().unwrap();
                let mut out = host(words)?;
                out.extend(data[start..start + words].iter().map(|v| v.to_bits()));
                Ok(Words::Ready(out))
            }
            Storage::Gpu(buf) => Ok(Words::OnDevice(buf.clone(), start, words)),
        }
    }

    /// The raw words in row-major order (waits for the device; `Err(WouldBlock)` on wasm32).
    pub(crate) fn to_words(&self) -> Result<Vec<u32>> {
        match self.words_at()? {
            Words::Ready(w) => Ok(w),
            Words::OnDevice(buf, start, words) => buffer::read_back(&buf, start, words),
        }
    }

    /// [`Tensor::to_words`] as a future that never blocks.
    fn to_words_async(&self) -> impl Future<Output = Result<Vec<u32>>> + Send + 'static {
        use futures::future::{ready, Either};
        match self.words_at() {
            Ok(Words::OnDevice(buf, start, words)) => {
                Either::Left(buffer::read_back_async(&buf, start, words))
            }
            Ok(Words::Ready(w)) => Either::Right(ready(Ok(w))),
            Err(e) => Either::Right(ready(Err(e))),
        }
    }

    /// The elements as `f32` from the words [`Tensor::to_words`] returns.
    fn floats(dtype: DType, numel: usize, words: Vec<u32>) -> Vec<f32> {
        match dtype {
            DType::F32 => bytemuck::cast_vec(words),
            DType::U32 => words.into_iter().map(|w| w as f32).collect(),
            DType::F16 => bytemuck::cast_slice::<u32, half::f16>(&words)[..numel]
                .iter()
                .map(|h| h.to_f32())
                .collect(),
        }
    }

    /// The elements in row-major order as `f32` (`U32` indices and `F16` values are
    /// converted). Waits for the device; on wasm32, where nothing may block, a GPU tensor
    /// gives `Err(WouldBlock)`: use [`Tensor::to_vec_async`] there.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let words = self.to_words()?;
        Ok(Tensor::floats(self.dtype(), self.numel(), words))
    }

    /// A future resolving to [`Tensor::to_vec`]'s result without blocking the caller: the
    /// read-back to use in a browser (and anywhere an async runtime must not be blocked).
    pub fn to_vec_async(&self) -> impl Future<Output = Result<Vec<f32>>> + Send + 'static {
        let (dtype, numel) = (self.dtype(), self.numel());
        let words = self.to_words_async();
        async move { Ok(Tensor::floats(dtype, numel, words.await?)) }
    }

    /// The elements of a `U32` tensor.
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        self.check_dtype(DType::U32, "to_vec_u32")?;
        self.to_words()
    }

    /// [`Tensor::to_vec_u32`] without blocking.
    pub fn to_vec_u32_async(&self) -> impl Future<Output = Result<Vec<u32>>> + Send + 'static {
        let checked = self.check_dtype(DType::U32, "to_vec_u32");
        let words = checked.map(|()| self.to_words_async());
        async move { words?.await }
    }

    /// `Err` unless the tensor has exactly one element.
    fn check_item(&self) -> Result<()> {
        if self.numel() == 1 {
            return Ok(());
        }
        Err(Error::invalid(
            "item",
            format!(
                "needs exactly one element, tensor has shape {:?}",
                self.dims()
            ),
        ))
    }

    /// The single value of a one-element tensor (waits like [`Tensor::to_vec`]).
    pub fn item(&self) -> Result<f32> {
        self.check_item()?;
        Ok(self.to_vec()?[0])
    }

    /// [`Tensor::item`] without blocking.
    pub fn item_async(&self) -> impl Future<Output = Result<f32>> + Send + 'static {
        let values = self.check_item().map(|()| self.to_vec_async());
        async move { Ok(values?.await?[0]) }
    }

    /// A dense copy with its own storage (recorded like an identity op for autograd).
    pub fn copy(&self) -> Result<Tensor> {
        self.unary(crate::op::UnaryOp::Copy)
    }

    /// `self` if it is contiguous from storage offset 0, else a dense copy.
    pub(crate) fn dense(&self) -> Result<Tensor> {
        if self.is_contiguous() && self.layout().offset == 0 {
            Ok(self.clone())
        } else {
            self.copy()
        }
    }

    /// Overwrites this tensor's elements in place with `src`'s (same shape, any device). Used to
    /// load checkpoints into parameters that optimizers and models already hold.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        const OP: &str = "assign";
        if src.dims() != self.dims() || src.dtype() != self.dtype() {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.dims().to_vec(),
                rhs: src.dims().to_vec(),
            });
        }
        let mut src = src.to_device(self.device())?;
        let same_storage = match (self.storage(), src.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Arc::ptr_eq(a, b),
            (Storage::Gpu(a), Storage::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if same_storage {
            if self.layout() == src.layout() {
                return Ok(());
            }
            // Reading and writing one storage at once: read from a copy.
            src = src.copy()?;
        }
        if self.dtype() == DType::F16 {
            return self.assign_f16(&src.dense()?);
        }
        // Any strided source: the copy reads it in place.
        match (self.storage(), src.storage()) {
            (Storage::Cpu(dst), Storage::Cpu(s)) => {
                let s = s.read().unwrap();
                let mut d = dst.write().unwrap();
                for (o, so) in self.layout().offsets().zip(src.layout().offsets()) {
                    d[o] = s[so];
                }
                Ok(())
            }
            (Storage::Gpu(dst), Storage::Gpu(s)) => crate::gpu::elementwise::unary(
                crate::op::UnaryOp::Copy,
                (s, src.layout()),
                (dst, self.layout()),
            ),
            _ => unreachable!("moved to the same device"),
        }
    }

    /// `assign` for F16: whole words, so `self` must be dense from an even offset (parameters
    /// and buffers always are).
    fn assign_f16(&self, src: &Tensor) -> Result<()> {
        let off = self.layout().offset;
        if !self.is_contiguous() || !off.is_multiple_of(2) {
            return Err(Error::invalid(
                "assign",
                format!(
                    "an F16 destination must be contiguous from an even offset (shape {:?}, strides {:?}, offset {off})",
                    self.dims(),
                    self.layout().strides
                ),
            ));
        }
        let words = crate::cpu::half::words(self.numel());
        match (self.storage(), src.storage()) {
            (Storage::Cpu(dst), Storage::Cpu(s)) => {
                if Arc::ptr_eq(dst, s) {
                    return Ok(());
                }
                let s = s.read().unwrap();
                let mut d = dst.write().unwrap();
                let whole = self.numel() / 2;
                d[off / 2..off / 2 + whole].copy_from_slice(&s[..whole]);
                if self.numel() % 2 == 1 {
                    // The last word's high half may belong to another view: keep it.
                    let h: &[half::f16] = bytemuck::cast_slice(&s[..words]);
                    let dh: &mut [half::f16] = bytemuck::cast_slice_mut(&mut d[..]);
                    dh[off + self.numel() - 1] = h[self.numel() - 1];
                }
                Ok(())
            }
            (Storage::Gpu(dst), Storage::Gpu(s)) => {
                if Arc::ptr_eq(dst, s) {
                    return Ok(());
                }
                if self.numel() % 2 == 1 {
                    return Err(Error::invalid(
                        "assign",
                        format!(
                            "an F16 destination on the GPU needs an even element count (shape {:?})",
                            self.dims()
                        ),
                    ));
                }
                buffer::copy_words(s, 0, dst, off / 2, words);
                Ok(())
            }
            _ => unreachable!("moved to the same device"),
        }
    }

    /// A copy on `device` (the same tensor if it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device().same(device) {
            return Ok(self.clone());
        }
        let words = self.to_words()?;
        Tensor::from_words(
            words,
            self.shape().clone(),
            self.dtype(),
            device,
            "to_device",
        )
    }
}
