//! The work one device has recorded and not yet submitted: the command encoder with its open
//! compute pass, the batch's kernel parameters (written to the uniform ring once per submit),
//! the bind groups already built, and the submit policy.
//!
//! Submit policy: a batch is submitted after `FIRST_BATCH` dispatches when the device has just
//! been waited on (so a GPU starts early instead of idling while the host records), and each
//! later batch may be twice as long, up to `MAX_BATCH`; a read-back or `synchronize` submits
//! whatever is pending and starts over. Parameters and bind groups need no new device objects
//! on the hot path: one dispatch is a pipeline change, a bind group with a dynamic offset and a
//! dispatch, all in the pass that stays open until a copy or a submit needs the encoder.

use super::buffer::Binding;
use super::context::GpuContext;
use super::layout::{SharedLayout, UNIFORM_BINDING};
use std::collections::HashMap;

/// Dispatches in the first batch after a wait.
const FIRST_BATCH: u32 = 16;
/// The longest batch.
const MAX_BATCH: u32 = 256;
/// Bytes of the uniform ring: room for `MAX_BATCH` dispatches of the largest parameters.
pub(crate) const RING_BYTES: u64 = MAX_BATCH as u64 * UNIFORM_BINDING;
/// Bind groups kept; past this the cache starts over (a training loop uses far fewer).
const MAX_BIND_GROUPS: usize = 4096;

/// A bind group's key: its layout and its storage buffers in binding order (the uniform ring
/// is the same for every group).
struct GroupKey {
    layout: u32,
    buffers: Vec<Binding>,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Commands since the last submit, and the size the current batch may reach.
    commands: u32,
    batch: u32,
    /// This batch's kernel parameters, each at an offset aligned for a dynamic uniform.
    params: Vec<u8>,
    groups: HashMap<u64, Vec<(GroupKey, wgpu::BindGroup)>>,
    group_count: usize,
}

fn group_hash(layout: u32, buffers: &[Binding]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    layout.hash(&mut h);
    for b in buffers {
        b.hash(&mut h);
    }
    h.finish()
}

impl Recorder {
    /// The encoder, created on demand.
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgml"),
            })
        })
    }

    /// Ends the open compute pass, if any, so the encoder can take other commands.
    fn end_pass(&mut self) {
        self.pass = None;
    }

    /// The bind group of `buffers` under `layout`, built once and then found again.
    fn group(
        &mut self,
        ctx: &GpuContext,
        layout: &SharedLayout,
        buffers: &[Binding],
    ) -> wgpu::BindGroup {
        let stale = ctx
            .groups_stale
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if stale || self.group_count >= MAX_BIND_GROUPS {
            self.groups.clear();
            self.group_count = 0;
        }
        let hash = group_hash(layout.id, buffers);
        let same = |k: &GroupKey| {
            k.layout == layout.id
                && k.buffers.len() == buffers.len()
                && k.buffers.iter().zip(buffers).all(|(a, b)| a == b)
        };
        if let Some((_, g)) = self
            .groups
            .get(&hash)
            .and_then(|v| v.iter().find(|(k, _)| same(k)))
        {
            return g.clone();
        }
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: ctx.uniform_ring(),
                offset: 0,
                size: std::num::NonZeroU64::new(UNIFORM_BINDING),
            }),
        });
        for (&(binding, _), b) in layout.storage.iter().zip(buffers) {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: b.resource(),
            });
        }
        let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgml"),
            layout: &layout.group,
            entries: &entries,
        });
        let key = GroupKey {
            layout: layout.id,
            buffers: buffers.to_vec(),
        };
        self.groups
            .entry(hash)
            .or_default()
            .push((key, group.clone()));
        self.group_count += 1;
        group
    }

    /// Appends `params` to the batch's uniform data; returns their offset in the ring, or
    /// `None` when the ring is full (submit first).
    fn push_params(&mut self, params: &[u8], align: u64) -> Option<u32> {
        let at = (self.params.len() as u64).next_multiple_of(align);
        if at + UNIFORM_BINDING > RING_BYTES {
            return None;
        }
        self.params.resize(at as usize, 0);
        self.params.extend_from_slice(params);
        Some(at as u32)
    }
}

impl GpuContext {
    /// Records one dispatch of `pipeline` over `buffers` with `params` (see the module docs).
    pub(crate) fn record_dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        layout: &SharedLayout,
        params: &[u8],
        buffers: &[Binding],
        grid: [u32; 3],
    ) {
        let align = self.limits.min_uniform_buffer_offset_alignment.max(16) as u64;
        let mut r = self.pending.lock().unwrap();
        let offset = match r.push_params(params, align) {
            Some(o) => o,
            None => {
                self.submit_locked(&mut r);
                r.push_params(params, align)
                    .expect("an empty ring takes one dispatch")
            }
        };
        let group = r.group(self, layout, buffers);
        if r.pass.is_none() {
            let pass = r
                .encoder(&self.device)
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("wgml"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            r.pass = Some(pass);
        }
        let pass = r.pass.as_mut().unwrap();
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[offset]);
        pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        self.count_command(&mut r);
    }

    /// Runs `f` with the pending encoder (the compute pass ended first); counts as one command
    /// towards the batch.
    pub(crate) fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut r = self.pending.lock().unwrap();
        r.end_pass();
        let out = f(r.encoder(&self.device));
        self.count_command(&mut r);
        out
    }

    /// Counts a recorded command; submits when the batch is as long as it may be.
    fn count_command(&self, r: &mut Recorder) {
        r.commands += 1;
        if r.commands >= r.batch.max(FIRST_BATCH) {
            self.submit_locked(r);
            r.batch = (r.batch.max(FIRST_BATCH) * 2).min(MAX_BATCH);
        }
    }

    /// Writes the batch's parameters to the ring and submits the encoder. The ring is reused
    /// by the next batch at once: queue writes and submits run in order on the device.
    pub(crate) fn submit_locked(&self, r: &mut Recorder) {
        r.end_pass();
        r.commands = 0;
        if !r.params.is_empty() {
            self.queue.write_buffer(self.uniform_ring(), 0, &r.params);
            r.params.clear();
        }
        if let Some(enc) = r.encoder.take() {
            self.queue.submit([enc.finish()]);
        }
    }

    /// Submits whatever is pending; the device is about to be waited on, so the next batch
    /// starts short again.
    pub(crate) fn flush(&self) {
        let mut r = self.pending.lock().unwrap();
        self.submit_locked(&mut r);
        r.batch = FIRST_BATCH;
    }
}
