//! `Device`: the CPU backend or one wgpu adapter; `Device::best()` and the `WGML_DEVICE` override.

use crate::gpu::context::{self, GpuContext};
use crate::{Error, Result};
use std::sync::Arc;

/// Where a tensor lives and where its ops run. Cheap to clone; two GPU devices are equal when
/// they are the same wgpu device.
#[derive(Clone)]
pub enum Device {
    /// The CPU backend: the reference for every GPU kernel, and a usable fallback.
    Cpu,
    /// A wgpu device (Vulkan, Metal, DX12, or a software Vulkan adapter).
    Gpu(Arc<GpuContext>),
}

/// The environment variable that overrides [`Device::best`]: `cpu`, `gpu` or `gpu:N`.
pub const DEVICE_ENV: &str = "WGML_DEVICE";

impl Device {
    /// The CPU backend.
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// The first GPU adapter in preference order (discrete, integrated, virtual, other,
    /// software). Software adapters are included: ask for one explicitly with this call.
    pub fn gpu() -> Result<Device> {
        Device::gpu_index(0)
    }

    /// The `n`-th GPU adapter in the order [`Device::gpu`] uses (see `examples/device_info`).
    /// Blocks until the device is open; on wasm32, where nothing may block, it returns a device
    /// [`Device::gpu_index_async`] opened before, else `Err(WouldBlock)`.
    pub fn gpu_index(n: usize) -> Result<Device> {
        Ok(Device::Gpu(context::open(n)?))
    }

    /// [`Device::gpu`] without blocking: the way to open a GPU in a browser (WebGPU), and
    /// usable from any async code. Later blocking calls ([`Device::gpu`], `Device::parse("gpu")`)
    /// return the same device.
    ///
    /// ```no_run
    /// # async fn run() -> wgml::Result<()> {
    /// let dev = wgml::Device::gpu_async().await?;
    /// let x = wgml::Tensor::randn([4, 4], 0, &dev)?.softmax()?;
    /// let v: Vec<f32> = x.to_vec_async().await?;
    /// # Ok(()) }
    /// ```
    pub async fn gpu_async() -> Result<Device> {
        Device::gpu_index_async(0).await
    }

    /// [`Device::gpu_index`] without blocking.
    pub async fn gpu_index_async(n: usize) -> Result<Device> {
        Ok(Device::Gpu(context::open_async(n).await?))
    }

    /// The best device here: `WGML_DEVICE` if set, else a hardware GPU (discrete before
    /// integrated), else the CPU backend. A software adapter is never chosen here: on the same
    /// machine it is hundreds of times slower than the CPU backend. Logs its choice.
    pub fn best() -> Device {
        if let Ok(spec) = std::env::var(DEVICE_ENV) {
            match Device::parse(&spec) {
                Ok(d) => {
                    log::info!("wgml: using {} ({DEVICE_ENV}={spec})", d.name());
                    return d;
                }
                Err(e) => log::warn!("wgml: ignoring {DEVICE_ENV}={spec}: {e}"),
            }
        }
        match context::first_hardware_adapter() {
            Some(n) => match Device::gpu_index(n) {
                Ok(d) => {
                    log::info!("wgml: using {}", d.name());
                    return d;
                }
                Err(e) => log::warn!("wgml: hardware GPU could not be opened: {e}"),
            },
            None => log::info!("wgml: no hardware GPU adapter found"),
        }
        log::info!("wgml: using the CPU backend");
        Device::Cpu
    }

    /// Parses `cpu`, `gpu` or `gpu:N` (as in `WGML_DEVICE` or a `--device` flag).
    pub fn parse(spec: &str) -> Result<Device> {
        let s = spec.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Device::gpu(),
            "best" | "auto" => Ok(Device::best()),
            _ => match s.strip_prefix("gpu:").map(|n| n.parse::<usize>()) {
                Some(Ok(n)) => Device::gpu_index(n),
                _ => Err(Error::invalid(
                    "Device::parse",
                    format!("unknown device {spec:?}; expected cpu, gpu, gpu:N or best"),
                )),
            },
        }
    }

    /// A human-readable name: `cpu`, or the adapter name and backend.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu".to_string(),
            Device::Gpu(ctx) => ctx.name(),
        }
    }

    /// Whether this is the CPU backend.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// Whether this is a wgpu device.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// Bytes of device memory held by live tensors (0 on the CPU backend, which uses the heap).
    pub fn live_bytes(&self) -> u64 {
        match self {
            Device::Cpu => 0,
            Device::Gpu(ctx) => ctx.pool_stats().live_bytes,
        }
    }

    /// Bytes the buffer pool holds for reuse, not used by any tensor.
    pub fn pooled_bytes(&self) -> u64 {
        match self {
            Device::Cpu => 0,
            Device::Gpu(ctx) => ctx.pool_stats().pooled_bytes,
        }
    }

    /// Submits all pending work and waits for the device to finish it (`Err(WouldBlock)` for a
    /// GPU on wasm32: use [`Device::synchronize_async`]).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(ctx) => ctx.synchronize(),
        }
    }

    /// [`Device::synchronize`] without blocking (the way to wait for a GPU in a browser).
    pub async fn synchronize_async(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(ctx) => ctx.synchronize_async().await,
        }
    }

    pub(crate) fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.same(other)
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())
    }
}
