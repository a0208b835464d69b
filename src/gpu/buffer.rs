//! Buffer pool, upload, and `read_back` — the one place that waits on the device.

use super::context::GpuContext;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

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

/// A device buffer owned by one storage; it returns to the pool when the last tensor using it
/// drops. Commands already recorded against it stay valid: reuse is ordered on the one queue.
pub(crate) struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    ctx: Arc<GpuContext>,
}

impl GpuBuffer {
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("wgml bug: buffer used after release")
    }
    pub(crate) fn ctx(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buffer.take() {
            let mut pool = self.ctx.pool.lock().unwrap();
            pool.stats.live_bytes -= self.class;
            if pool.stats.pooled_bytes + self.class <= MAX_POOLED_BYTES {
                pool.stats.pooled_bytes += self.class;
                pool.free.entry(self.class).or_default().push(buf);
            }
        }
    }
}

/// Allocates room for `words` 4-byte elements (contents undefined).
pub(crate) fn alloc(
    ctx: &Arc<GpuContext>,
    words: usize,
    op: &'static str,
    shape: &[usize],
) -> Result<Arc<GpuBuffer>> {
    let bytes = words as u64 * 4;
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
    Ok(Arc::new(GpuBuffer {
        buffer: Some(buffer),
        class,
        ctx: ctx.clone(),
    }))
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
        ctx.with_encoder(|enc| enc.copy_buffer_to_buffer(&staging, 0, buf.raw(), 0, bytes));
    }
    Ok(buf)
}

/// Sets `words` words from `offset` to zero, in order with the pending work.
pub(crate) fn clear(buf: &GpuBuffer, offset_words: usize, words: usize) {
    if words > 0 {
        buf.ctx().with_encoder(|enc| {
            enc.clear_buffer(buf.raw(), offset_words as u64 * 4, Some(words as u64 * 4))
        });
    }
}

fn staging_copy(buf: &GpuBuffer, offset_words: usize, words: usize) -> wgpu::Buffer {
    let ctx = buf.ctx();
    let bytes = (words as u64 * 4).max(4);
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgml read-back"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    if words > 0 {
        ctx.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(buf.raw(), offset_words as u64 * 4, &staging, 0, bytes)
        });
    }
    ctx.flush();
    staging
}

fn words_of(staging: &wgpu::Buffer, words: usize) -> Result<Vec<u32>> {
    let view = staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
    let out = bytemuck::cast_slice::<u8, u32>(&view)[..words].to_vec();
    drop(view);
    staging.unmap();
    Ok(out)
}

/// Copies `words` words from `offset` back to the host, waiting for all pending work.
pub(crate) fn read_back(buf: &GpuBuffer, offset_words: usize, words: usize) -> Result<Vec<u32>> {
    let ctx = buf.ctx();
    let staging = staging_copy(buf, offset_words, words);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
    ctx.take_error()?;
    rx.recv()
        .map_err(|e| Error::Gpu(format!("read-back: {e}")))?
        .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
    words_of(&staging, words)
}

/// Like [`read_back`], but returns a future; a helper thread waits on the device.
pub(crate) fn read_back_async(
    buf: &GpuBuffer,
    offset_words: usize,
    words: usize,
) -> impl std::future::Future<Output = Result<Vec<u32>>> + Send + 'static {
    let ctx = buf.ctx().clone();
    let staging = staging_copy(buf, offset_words, words);
    let (tx, rx) = futures::channel::oneshot::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    let device = ctx.device.clone();
    std::thread::spawn(move || {
        let _ = device.poll(wgpu::PollType::wait_indefinitely());
    });
    async move {
        let mapped = rx
            .await
            .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
        ctx.take_error()?;
        mapped.map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
        words_of(&staging, words)
    }
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
