//! Buffer pool, upload, and `read_back` — the one place that waits on the device.
//!
//! Every read-back also copies the device's index-error words (see `GpuContext::index_result`)
//! behind the data in the same staging buffer, so an out-of-range index met by any kernel
//! before it turns the read-back into an `Err` without a second wait.

use super::context::{GpuContext, INDEX_ERROR_BYTES};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Bytes the pool keeps for reuse before it starts freeing returned buffers.
const MAX_POOLED_BYTES: u64 = 2 << 30;

/// Live and pooled bytes of one device's buffer pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes in buffers held by tensors.
    pub live_bytes: u64,
    /// Bytes in buffers kept for reuse.
    pub pooled_bytes: u64,
    /// Buffers ever created (a steady loop stops creating them).
    pub created: u64,
}

/// Free buffers by size class.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

impl BufferPool {
    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }
}

/// Size classes: 256-byte steps up to 64 KiB, then four steps per power of two, so reuse is
/// likely and waste is at most 25%.
fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(16);
    if b <= 65536 {
        return b.div_ceil(256) * 256;
    }
    let p = 63 - b.leading_zeros() as u64; // 2^p <= b
    let step = 1u64 << (p - 2);
    b.div_ceil(step) * step
}

/// A pooled device buffer; it returns to the pool when its last holder drops it. Commands
/// already recorded against it stay valid: reuse is ordered on the one queue.
pub(crate) struct Lease {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    ctx: Arc<GpuContext>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(buf) = self.buffer.take() {
            let mut pool = self.ctx.pool.lock().unwrap();
            pool.stats.live_bytes -= self.class;
            if pool.stats.pooled_bytes + self.class <= MAX_POOLED_BYTES {
                pool.stats.pooled_bytes += self.class;
                pool.free.entry(self.class).or_default().push(buf);
            } else {
                // Freed for good: bind groups that hold it would keep its memory.
                self.ctx
                    .groups_stale
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

impl Lease {
    pub(crate) fn ctx(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("wgml bug: buffer used after release")
    }
}

/// What a kernel binds, or a copy reads or writes: a buffer and the byte range of one tensor's
/// words in it (all of it, for a tensor with a buffer of its own).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Binding {
    pub(crate) buffer: wgpu::Buffer,
    /// Byte offset of word 0 (a multiple of the device's storage-offset alignment).
    pub(crate) offset: u64,
    /// Bytes bound, `None` for the rest of the buffer.
    pub(crate) size: Option<std::num::NonZeroU64>,
}

impl Binding {
    /// All of `buffer`.
    pub(crate) fn whole(buffer: &wgpu::Buffer) -> Binding {
        Binding {
            buffer: buffer.clone(),
            offset: 0,
            size: None,
        }
    }

    /// The resource for a bind group entry.
    pub(crate) fn resource(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: self.size,
        })
    }
}

/// Where a storage's words are: a lease of its own, or a range of a lease shared with other
/// storages (parameters packed side by side for a fused optimizer step, see `gpu::flat`).
#[derive(Clone)]
pub(crate) struct Place {
    pub(crate) lease: Arc<Lease>,
    /// Byte offset and bytes; `size` is `None` for a lease of its own.
    pub(crate) offset: u64,
    pub(crate) size: Option<std::num::NonZeroU64>,
}

/// The device words of one storage. Its place can move (into a flat buffer shared with other
/// parameters) without the tensors that hold it noticing: every use reads the place anew.
pub(crate) struct GpuBuffer {
    place: RwLock<Place>,
    ctx: Arc<GpuContext>,
}

impl GpuBuffer {
    /// What a kernel binds for this storage (one cheap handle clone).
    pub(crate) fn binding(&self) -> Binding {
        let p = self.place.read().unwrap();
        Binding {
            buffer: p.lease.buffer().clone(),
            offset: p.offset,
            size: p.size,
        }
    }
    pub(crate) fn ctx(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    /// The current place.
    pub(crate) fn place(&self) -> Place {
        self.place.read().unwrap().clone()
    }
    /// Moves the storage to `place`, whose contents the caller has made equal to the old
    /// place's (in order with every recorded command).
    pub(crate) fn move_to(&self, place: Place) {
        *self.place.write().unwrap() = place;
    }
    /// A storage at `place` (a range of a shared lease).
    pub(crate) fn at(ctx: &Arc<GpuContext>, place: Place) -> Arc<GpuBuffer> {
        Arc::new(GpuBuffer {
            place: RwLock::new(place),
            ctx: ctx.clone(),
        })
    }
}

/// A fresh pooled lease of at least `bytes` (contents undefined); `Err(TooLarge)` past the
/// device's binding limit.
pub(crate) fn lease(
    ctx: &Arc<GpuContext>,
    bytes: u64,
    op: &'static str,
    shape: &[usize],
) -> Result<Arc<Lease>> {
    ctx.check_alive(op)?;
    let limit = ctx.max_binding_bytes();
    if bytes > limit {
        return Err(Error::TooLarge {
            op,
            shape: shape.to_vec(),
            bytes,
            limit,
        });
    }
    let class = size_class(bytes).min(limit.max(16));
    let mut pool = ctx.pool.lock().unwrap();
    let reused = pool.free.get_mut(&class).and_then(|v| v.pop());
    let buffer = match reused {
        Some(b) => {
            pool.stats.pooled_bytes -= class;
            b
        }
        None => {
            pool.stats.created += 1;
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgml tensor"),
                size: class,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        }
    };
    pool.stats.live_bytes += class;
    Ok(Arc::new(Lease {
        buffer: Some(buffer),
        class,
        ctx: ctx.clone(),
    }))
}

/// Allocates room for `words` 4-byte elements (contents undefined).
pub(crate) fn alloc(
    ctx: &Arc<GpuContext>,
    words: usize,
    op: &'static str,
    shape: &[usize],
) -> Result<Arc<GpuBuffer>> {
    let lease = lease(ctx, (words as u64).saturating_mul(4), op, shape)?;
    Ok(GpuBuffer::at(
        ctx,
        Place {
            lease,
            offset: 0,
            size: None,
        },
    ))
}

/// Uploads 4-byte words. The copy is recorded in the pending encoder, so it is ordered after
/// every command already recorded (a pooled buffer may still be read by one of them).
pub(crate) fn upload(
    ctx: &Arc<GpuContext>,
    words: &[u32],
    op: &'static str,
    shape: &[usize],
) -> Result<Arc<GpuBuffer>> {
    let buf = alloc(ctx, words.len(), op, shape)?;
    if !words.is_empty() {
        use wgpu::util::DeviceExt;
        let staging = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("wgml upload"),
                contents: bytemuck::cast_slice(words),
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        let bytes = words.len() as u64 * 4;
        let dst = buf.binding();
        ctx.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(&staging, 0, &dst.buffer, dst.offset, bytes)
        });
    }
    Ok(buf)
}

/// Copies `words` words from `src` (from word `src_off`) to `dst` (from word `dst_off`), in
/// order with the pending work.
pub(crate) fn copy_words(
    src: &GpuBuffer,
    src_off: usize,
    dst: &GpuBuffer,
    dst_off: usize,
    words: usize,
) {
    if words > 0 {
        let (s, d) = (src.binding(), dst.binding());
        dst.ctx().with_encoder(|enc| {
            enc.copy_buffer_to_buffer(
                &s.buffer,
                s.offset + src_off as u64 * 4,
                &d.buffer,
                d.offset + dst_off as u64 * 4,
                words as u64 * 4,
            )
        });
    }
}

/// Sets `words` words from `offset` to zero, in order with the pending work.
pub(crate) fn clear(buf: &GpuBuffer, offset_words: usize, words: usize) {
    if words > 0 {
        let b = buf.binding();
        buf.ctx().with_encoder(|enc| {
            enc.clear_buffer(
                &b.buffer,
                b.offset + offset_words as u64 * 4,
                Some(words as u64 * 4),
            )
        });
    }
}

/// A staging buffer holding `words` words of `buf` from `offset_words` (if any `buf`), then the
/// four index-error words, submitted with all pending work.
fn staging_copy(
    ctx: &GpuContext,
    buf: Option<&GpuBuffer>,
    offset_words: usize,
    words: usize,
) -> wgpu::Buffer {
    let bytes = words as u64 * 4;
    let src = buf.map(GpuBuffer::binding);
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgml read-back"),
        size: bytes + INDEX_ERROR_BYTES,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.with_encoder(|enc| {
        if let (Some(b), true) = (&src, words > 0) {
            enc.copy_buffer_to_buffer(
                &b.buffer,
                b.offset + offset_words as u64 * 4,
                &staging,
                0,
                bytes,
            );
        }
        enc.copy_buffer_to_buffer(
            ctx.index_error_buffer(),
            0,
            &staging,
            bytes,
            INDEX_ERROR_BYTES,
        );
    });
    ctx.flush();
    staging
}

/// The data words of a mapped staging buffer, or the index error recorded on the device.
fn words_of(ctx: &GpuContext, staging: &wgpu::Buffer, words: usize) -> Result<Vec<u32>> {
    let view = staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
    let all = bytemuck::cast_slice::<u8, u32>(&view);
    let checked = ctx.index_result(&all[words..words + 4]);
    let out = checked.map(|()| all[..words].to_vec());
    drop(view);
    staging.unmap();
    out
}

/// The mapping callback's result.
type Mapped = std::result::Result<(), wgpu::BufferAsyncError>;

/// A read-back under way: the copy is submitted and the staging buffer asked to map. Every
/// read-back, blocking or not, is this followed by [`PendingRead::finish`]; only what makes
/// the device progress differs ([`PendingRead::wait`] or [`PendingRead::detach`]).
struct PendingRead {
    ctx: Arc<GpuContext>,
    staging: wgpu::Buffer,
    words: usize,
    mapped: futures::channel::oneshot::Receiver<Mapped>,
}

impl PendingRead {
    /// Copies `words` words of `buf` from `offset_words` (if any `buf`) and the index-error
    /// words into a staging buffer, submits all pending work and asks for the mapping.
    fn start(
        ctx: &Arc<GpuContext>,
        buf: Option<&GpuBuffer>,
        offset_words: usize,
        words: usize,
    ) -> PendingRead {
        let staging = staging_copy(ctx, buf, offset_words, words);
        let (tx, mapped) = futures::channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        PendingRead {
            ctx: ctx.clone(),
            staging,
            words,
            mapped,
        }
    }

    /// Waits (without blocking) for the mapping, then reports a wgpu error, a lost device or
    /// an index out of range met before the copy, else returns the words.
    async fn finish(self) -> Result<Vec<u32>> {
        let mapped = self.mapped.await;
        self.ctx.take_error()?;
        self.ctx.check_alive("read-back")?;
        mapped
            .map_err(|_| Error::Gpu("read-back: the mapping was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
        words_of(&self.ctx, &self.staging, self.words)
    }

    /// Blocks until the device has done the copy, then finishes (native targets only).
    #[cfg(not(target_arch = "wasm32"))]
    fn wait(self) -> Result<Vec<u32>> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
        // The mapping callback ran inside `poll`: the future is ready.
        pollster::block_on(self.finish())
    }

    /// Finishes without blocking the caller. On native targets a helper thread polls the
    /// device until the copy is done; in a browser the page's event loop drives the mapping.
    fn detach(self) -> impl std::future::Future<Output = Result<Vec<u32>>> + Send + 'static {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let device = self.ctx.device.clone();
            std::thread::spawn(move || {
                let _ = device.poll(wgpu::PollType::wait_indefinitely());
            });
        }
        self.finish()
    }
}

/// Waits for all pending work and reports an index out of range met since the last check (the
/// explicit check behind `Device::synchronize`; `Err(WouldBlock)` on wasm32).
pub(crate) fn check_index_errors(ctx: &Arc<GpuContext>) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = ctx;
        Err(Error::WouldBlock {
            op: "synchronize",
            instead: "Device::synchronize_async",
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        PendingRead::start(ctx, None, 0, 0).wait().map(|_| ())
    }
}

/// [`check_index_errors`] without blocking.
pub(crate) async fn check_index_errors_async(ctx: &Arc<GpuContext>) -> Result<()> {
    PendingRead::start(ctx, None, 0, 0)
        .detach()
        .await
        .map(|_| ())
}

/// Copies `words` words from `offset` back to the host, waiting for all pending work
/// (`Err(WouldBlock)` on wasm32, where [`read_back_async`] is the way).
pub(crate) fn read_back(buf: &GpuBuffer, offset_words: usize, words: usize) -> Result<Vec<u32>> {
    buf.ctx().check_alive("read-back")?;
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (offset_words, words);
        Err(Error::WouldBlock {
            op: "to_vec",
            instead: "Tensor::to_vec_async (or item_async)",
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        PendingRead::start(buf.ctx(), Some(buf), offset_words, words).wait()
    }
}

/// Like [`read_back`], but returns a future and never blocks.
pub(crate) fn read_back_async(
    buf: &GpuBuffer,
    offset_words: usize,
    words: usize,
) -> impl std::future::Future<Output = Result<Vec<u32>>> + Send + 'static {
    let read = buf
        .ctx()
        .check_alive("read-back")
        .map(|()| PendingRead::start(buf.ctx(), Some(buf), offset_words, words));
    async move { read?.detach().await }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_request() {
        for b in [
            1u64,
            16,
            255,
            257,
            65536,
            65537,
            100_000,
            1 << 20,
            (1 << 20) + 1,
            3 << 30,
        ] {
            let c = size_class(b);
            assert!(c >= b && c <= b + b / 4 + 256, "{b} -> {c}");
        }
    }
}
