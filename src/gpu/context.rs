//! The wgpu instance, adapters, and one `GpuContext` per opened adapter (device, queue, limits,
//! the pending command encoder, the buffer pool and the pipeline cache).

use super::buffer::{BufferPool, PoolStats};
use super::kernel::PipelineCache;
use super::recorder::{Recorder, RING_BYTES};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Size of the device error buffer: `[code, index, bound, 0]`.
pub(crate) const INDEX_ERROR_BYTES: u64 = 16;

fn set_fatal(fatal: &(AtomicBool, Mutex<Option<String>>), why: String) {
    let mut m = fatal.1.lock().unwrap();
    if m.is_none() {
        *m = Some(why);
    }
    fatal.0.store(true, Ordering::Release);
}

/// Where a wgpu error raised outside any call goes: kept for the next read-back, and the
/// device refused from then on.
fn error_sink(
    errors: &Arc<Mutex<Vec<String>>>,
    fatal: &Arc<(AtomicBool, Mutex<Option<String>>)>,
) -> impl Fn(String) + Send + Sync + 'static {
    let (errors, fatal) = (errors.clone(), fatal.clone());
    move |e: String| {
        log::error!("wgml: wgpu error: {e}");
        set_fatal(&fatal, format!("a wgpu error was raised: {e}"));
        errors.lock().unwrap().push(e);
    }
}

/// A summary of one adapter, as `examples/device_info` prints it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Index for `Device::gpu_index` / `WGML_DEVICE=gpu:N`.
    pub index: usize,
    /// wgpu's description of the adapter.
    pub info: wgpu::AdapterInfo,
    /// The adapter's own limits (wgml requests exactly these).
    pub limits: wgpu::Limits,
    /// Features the adapter offers.
    pub features: wgpu::Features,
}

struct Registry {
    /// Owns the adapters' backend instances: kept alive as long as they are.
    _instance: wgpu::Instance,
    adapters: Vec<wgpu::Adapter>,
    opened: Mutex<HashMap<usize, Arc<GpuContext>>>,
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The instance and its adapters, found once per process. The search is asynchronous (a
/// browser answers `requestAdapter` through a promise); native callers block on it.
async fn registry_async() -> &'static Registry {
    if let Some(reg) = REGISTRY.get() {
        return reg;
    }
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if cfg!(not(target_arch = "wasm32")) && std::env::var("WGPU_BACKEND").is_err() {
        // GL has no storage-buffer compute on many drivers; use the modern APIs.
        desc.backends = wgpu::Backends::PRIMARY;
    }
    let backends = desc.backends;
    let instance = wgpu::Instance::new(desc);
    let mut adapters = instance.enumerate_adapters(backends).await;
    adapters.retain(|a| a.get_downlevel_capabilities().is_webgpu_compliant() || is_compute_ok(a));
    adapters.sort_by_key(|a| type_rank(a.get_info().device_type));
    // Two callers may have searched at once: the first registry stays, the other is dropped.
    REGISTRY.get_or_init(|| Registry {
        _instance: instance,
        adapters,
        opened: Mutex::new(HashMap::new()),
    })
}

/// The registry, searched now if need be (native targets block on the search).
#[cfg(not(target_arch = "wasm32"))]
fn registry() -> Option<&'static Registry> {
    Some(pollster::block_on(registry_async()))
}

/// The registry if [`registry_async`] has run: nothing may block in a browser.
#[cfg(target_arch = "wasm32")]
fn registry() -> Option<&'static Registry> {
    REGISTRY.get()
}

fn is_compute_ok(a: &wgpu::Adapter) -> bool {
    a.get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
}

fn summaries(reg: &Registry) -> Vec<AdapterSummary> {
    reg.adapters
        .iter()
        .enumerate()
        .map(|(index, a)| AdapterSummary {
            index,
            info: a.get_info(),
            limits: a.limits(),
            features: a.features(),
        })
        .collect()
}

/// Every adapter wgml can use, in preference order. On wasm32 this lists only what an earlier
/// [`adapters_async`] or `Device::gpu_async` found (a browser cannot be asked synchronously).
pub fn adapters() -> Vec<AdapterSummary> {
    registry().map(summaries).unwrap_or_default()
}

/// [`adapters`] without blocking: the way to list adapters in a browser.
pub async fn adapters_async() -> Vec<AdapterSummary> {
    summaries(registry_async().await)
}

/// Index of the first hardware (non-software) adapter, if any.
pub(crate) fn first_hardware_adapter() -> Option<usize> {
    registry()?
        .adapters
        .iter()
        .position(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

fn no_such_adapter(reg: &Registry, n: usize) -> Error {
    if reg.adapters.is_empty() {
        Error::NoAdapter(if cfg!(target_arch = "wasm32") {
            "the browser offers no WebGPU adapter (is WebGPU enabled? it needs a secure context; \
             headless Chromium needs --enable-unsafe-webgpu)"
                .into()
        } else {
            "wgpu found no Vulkan, Metal or DX12 adapter with compute shaders \
             (on Linux without a GPU, install mesa-vulkan-drivers for the software adapter)"
                .into()
        })
    } else {
        Error::NoAdapter(format!(
            "adapter gpu:{n} asked for, but only {} found",
            reg.adapters.len()
        ))
    }
}

/// Opens adapter `n` without blocking (once; later calls share the context).
pub(crate) async fn open_async(n: usize) -> Result<Arc<GpuContext>> {
    let reg = registry_async().await;
    if let Some(ctx) = reg.opened.lock().unwrap().get(&n) {
        return Ok(ctx.clone());
    }
    let adapter = reg.adapters.get(n).ok_or_else(|| no_such_adapter(reg, n))?;
    let ctx = Arc::new(GpuContext::new_async(n, adapter).await?);
    // Another caller may have opened it meanwhile: every caller shares the first context.
    Ok(reg.opened.lock().unwrap().entry(n).or_insert(ctx).clone())
}

/// Opens adapter `n`, blocking until it is ready. Opening is serialised, so threads asking at
/// once share one device instead of each creating its own.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn open(n: usize) -> Result<Arc<GpuContext>> {
    static OPENING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = OPENING.lock().unwrap_or_else(|e| e.into_inner());
    pollster::block_on(open_async(n))
}

/// Adapter `n` if `Device::gpu_async` (or [`open_async`]) has opened it: a browser cannot wait
/// for a device, so the blocking constructors only hand out devices already opened.
#[cfg(target_arch = "wasm32")]
pub(crate) fn open(n: usize) -> Result<Arc<GpuContext>> {
    registry()
        .and_then(|reg| reg.opened.lock().unwrap().get(&n).cloned())
        .ok_or(Error::WouldBlock {
            op: "Device::gpu",
            instead: "Device::gpu_async().await once; later Device::gpu() calls return that device",
        })
}

/// The ops whose kernels validate indices on the device, by the kind code kept in the low
/// bits of a launch's error code (the name survives when the launch's own record is gone).
pub(crate) const INDEX_OPS: [&str; 6] = [
    "?",
    "index_select",
    "embedding",
    "gather",
    "one_hot",
    "cross_entropy",
];
/// Launch records kept between two checks at most (each a name and a shape).
const MAX_INDEX_SITES: usize = 1 << 16;

/// The launches of index-validating kernels since the last check: error code → (op, shape of
/// the indexed tensor), so a bad index found on the device is reported with its op and shape.
#[derive(Default)]
struct IndexSites {
    next: u32,
    sites: HashMap<u32, (&'static str, Vec<usize>)>,
}

/// The optional features wgml asks for, of those the adapter offers: `SHADER_F16` for the
/// native half-precision kernels, and the experimental cooperative matrices when the adapter
/// lists at least one configuration (wgml then picks an f16 one, see `gpu::coop`).
pub(crate) fn requested_features(
    offered: wgpu::Features,
    coop_props: &[wgpu::CooperativeMatrixProperties],
) -> wgpu::Features {
    let mut want = wgpu::Features::SHADER_F16;
    if !coop_props.is_empty() {
        want |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    }
    offered & want
}

/// The adapter's own limits, with those wgpu-core keeps in fixed-size arrays held to what it
/// can hold: an adapter reporting unlimited values (wgpu's `noop` backend) would otherwise make
/// it panic. wgml uses one bind group per pipeline.
fn clamp_limits(mut limits: wgpu::Limits) -> wgpu::Limits {
    /// wgpu-hal's `MAX_BIND_GROUPS`.
    const MAX_BIND_GROUPS: u32 = 8;
    limits.max_bind_groups = limits.max_bind_groups.min(MAX_BIND_GROUPS);
    limits
}

/// One opened adapter: device, queue, the pending encoder, buffer pool and pipeline cache.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    /// Features the device was created with (see [`requested_features`]).
    pub(crate) features: wgpu::Features,
    /// The adapter's cooperative-matrix configurations (empty where it has none).
    pub(crate) coop_props: Vec<wgpu::CooperativeMatrixProperties>,
    /// Recorded work not yet submitted (see `gpu::recorder`).
    pub(crate) pending: Mutex<Recorder>,
    /// Kernel parameters: each batch's are written here once, at its submit, and each dispatch
    /// binds its own slice with a dynamic offset.
    uniform_ring: wgpu::Buffer,
    /// Set when the pool frees a buffer: cached bind groups may hold it, so they go.
    pub(crate) groups_stale: AtomicBool,
    pub(crate) pool: Mutex<BufferPool>,
    pub(crate) pipelines: PipelineCache,
    errors: Arc<Mutex<Vec<String>>>,
    /// Set once the device is lost or has raised a validation error: every later op fails.
    fatal: Arc<(AtomicBool, Mutex<Option<String>>)>,
    /// `[code, index, bound, 0]` of the first out-of-range index a kernel met since the last
    /// check (all zero when none): written by index-consuming kernels with an atomic
    /// compare-exchange, read back with every `read_back` at no extra wait.
    index_errors: wgpu::Buffer,
    index_sites: Mutex<IndexSites>,
    index: usize,
}

impl GpuContext {
    async fn new_async(index: usize, adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let limits = clamp_limits(adapter.limits());
        let coop_props = adapter.cooperative_matrix_properties();
        let features = requested_features(adapter.features(), &coop_props);
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: wgpu asks callers of experimental features to accept possible bugs in
            // them; only the cooperative-matrix matmul uses it, and only where the adapter lists
            // an f16 × f16 → f32 configuration (see `gpu::coop`).
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgml"),
                required_features: features,
                // The adapter's own limits: the defaults cap storage bindings at 128 MiB.
                required_limits: limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::NoAdapter(format!("{} refused a device: {e}", info.name)))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let fatal: Arc<(AtomicBool, Mutex<Option<String>>)> = Arc::default();
        // Never abort the process on a validation error: keep it, report it at read-back, and
        // refuse every later op (its results could not be trusted).
        let sink = error_sink(&errors, &fatal);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink(e.to_string())));
        let poison = fatal.clone();
        device.set_device_lost_callback(move |reason, msg| {
            log::error!("wgml: device lost ({reason:?}): {msg}");
            set_fatal(&poison, format!("the device was lost ({reason:?}): {msg}"));
        });
        // wgpu zero-initialises new buffers: no error recorded.
        let index_errors = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgml index errors"),
            size: INDEX_ERROR_BYTES,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let uniform_ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgml parameters"),
            size: RING_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        log::info!(
            "wgml: opened {} ({:?}, {:?}), max storage binding {} bytes",
            info.name,
            info.backend,
            info.device_type,
            limits.max_storage_buffer_binding_size
        );
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            coop_props,
            pending: Mutex::default(),
            uniform_ring,
            groups_stale: AtomicBool::new(false),
            pool: Mutex::new(BufferPool::default()),
            pipelines: PipelineCache::default(),
            errors,
            fatal,
            index_errors,
            index_sites: Mutex::default(),
            index,
        })
    }

    /// Reports an error that arrives after the call that caused it (a browser's answer to a
    /// pipeline's error scope): the next read-back returns it, later ops refuse to run.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn error_sink(&self) -> impl Fn(String) + Send + Sync + 'static {
        error_sink(&self.errors, &self.fatal)
    }

    /// `Err(DeviceLost)` once the device is lost or has raised an error; checked by every
    /// launch, allocation and read-back.
    pub(crate) fn check_alive(&self, op: &'static str) -> Result<()> {
        if !self.fatal.0.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = self.fatal.1.lock().unwrap().clone().unwrap_or_default();
        Err(Error::DeviceLost { op, reason })
    }

    /// Marks the device unusable, as a lost device or a validation error does (for tests of
    /// that path: a real loss cannot be provoked on demand).
    #[doc(hidden)]
    pub fn poison_for_test(&self, why: &str) {
        set_fatal(&self.fatal, why.to_string());
    }

    /// Destroys the wgpu device, as a driver reset would (for tests of the device-lost path).
    #[doc(hidden)]
    pub fn destroy_for_test(&self) {
        self.device.destroy();
    }

    /// The device error buffer index-consuming kernels bind (see `shaders/index.wgsl`).
    pub(crate) fn index_error_buffer(&self) -> &wgpu::Buffer {
        &self.index_errors
    }

    /// A fresh error code for one launch of an index-validating kernel of op kind `kind` (an
    /// index into [`INDEX_OPS`]) over a tensor of `shape`.
    pub(crate) fn index_site(&self, kind: u32, shape: &[usize]) -> u32 {
        let mut s = self.index_sites.lock().unwrap();
        s.next = s.next.wrapping_add(1) & ((1 << 29) - 1);
        let code = (s.next.max(1) << 3) | kind;
        if s.sites.len() < MAX_INDEX_SITES {
            let op = INDEX_OPS[kind as usize];
            s.sites.insert(code, (op, shape.to_vec()));
        }
        code
    }

    /// Turns the error words read back from the device into a result. An error is reported
    /// once: the device word is cleared (in order with later work) and the records dropped.
    pub(crate) fn index_result(&self, words: &[u32]) -> Result<()> {
        let mut s = self.index_sites.lock().unwrap();
        if words[0] == 0 {
            // Every launch recorded before this read-back has run, and found nothing.
            if s.sites.len() > MAX_INDEX_SITES / 2 {
                s.sites.clear();
            }
            return Ok(());
        }
        let (op, shape) = s.sites.remove(&words[0]).unwrap_or_else(|| {
            let kind = (words[0] & 7) as usize;
            (INDEX_OPS[kind.min(INDEX_OPS.len() - 1)], Vec::new())
        });
        s.sites.clear();
        drop(s);
        self.with_encoder(|enc| enc.clear_buffer(&self.index_errors, 0, None));
        Err(Error::IndexOutOfRange {
            op,
            index: words[1] as usize,
            size: words[2] as usize,
            shape,
        })
    }

    /// `gpu:N name (backend, type)`; browsers may keep the adapter's name to themselves.
    pub fn name(&self) -> String {
        let name = if self.info.name.is_empty() {
            String::new()
        } else {
            format!(" {}", self.info.name)
        };
        format!(
            "gpu:{}{name} ({:?}, {:?})",
            self.index, self.info.backend, self.info.device_type
        )
    }

    /// The adapter's description.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was created with (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The optional features the device was created with (`SHADER_F16`, cooperative matrices).
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// Whether this is a software adapter (llvmpipe / lavapipe / WARP).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Largest tensor a single storage binding can hold, in bytes.
    pub(crate) fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// The buffer kernel parameters are bound from.
    pub(crate) fn uniform_ring(&self) -> &wgpu::Buffer {
        &self.uniform_ring
    }

    /// Submits pending work and blocks until the device is idle. Reports an index out of
    /// range met by a kernel since the last check, a wgpu error, or a lost device. On wasm32,
    /// where nothing may block, it is `Err(WouldBlock)`: use [`GpuContext::synchronize_async`].
    pub fn synchronize(self: &Arc<Self>) -> Result<()> {
        self.check_alive("synchronize")?;
        super::buffer::check_index_errors(self)
    }

    /// [`GpuContext::synchronize`] as a future that never blocks: it resolves once the device
    /// has finished the work submitted before it, with the same checks.
    pub async fn synchronize_async(self: &Arc<Self>) -> Result<()> {
        self.check_alive("synchronize")?;
        super::buffer::check_index_errors_async(self).await
    }

    /// The first wgpu error raised since the last call, as an `Err`.
    pub(crate) fn take_error(&self) -> Result<()> {
        let mut errs = self.errors.lock().unwrap();
        if errs.is_empty() {
            Ok(())
        } else {
            let msg = errs.join("; ");
            errs.clear();
            Err(Error::Gpu(msg))
        }
    }

    /// Live and pooled bytes of the buffer pool.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.lock().unwrap().stats()
    }
}
