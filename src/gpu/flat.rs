//! Flat buffers: storages packed side by side in one buffer, each at an offset aligned for a
//! storage binding, so one dispatch can update every parameter of a model (the fused optimizer
//! step). A packed storage works everywhere as before: its `GpuBuffer` binds its own range.
//! The gaps between members hold zeros (made so at creation, and never written by a member).

use super::buffer::{self, Binding, GpuBuffer, Lease, Place};
use super::context::GpuContext;
use crate::Result;
use std::num::NonZeroU64;
use std::sync::Arc;

/// One flat buffer and where its members lie.
pub(crate) struct Flat {
    lease: Arc<Lease>,
    /// Word offset of each member.
    offsets: Vec<usize>,
    /// Words of each member (all non-zero).
    lens: Vec<usize>,
    /// Words spanned: the last member's end.
    words: usize,
}

impl Flat {
    /// A zeroed flat buffer for members of `lens` words (each at least one), in order.
    pub(crate) fn zeros(ctx: &Arc<GpuContext>, lens: &[usize], op: &'static str) -> Result<Flat> {
        debug_assert!(lens.iter().all(|&n| n > 0));
        let align = (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut offsets = Vec::with_capacity(lens.len());
        let mut words = 0usize;
        for &n in lens {
            let at = words.next_multiple_of(align);
            offsets.push(at);
            words = at + n;
        }
        let lease = buffer::lease(ctx, words as u64 * 4, op, &[words])?;
        ctx.with_encoder(|enc| enc.clear_buffer(lease.buffer(), 0, Some(words as u64 * 4)));
        Ok(Flat {
            lease,
            offsets,
            lens: lens.to_vec(),
            words,
        })
    }

    /// Words spanned, gaps included.
    pub(crate) fn words(&self) -> usize {
        self.words
    }

    /// The words of member `i`'s elements.
    pub(crate) fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// All of the flat buffer's span, for the fused kernels.
    pub(crate) fn binding(&self) -> Binding {
        Binding {
            buffer: self.lease.buffer().clone(),
            offset: 0,
            size: NonZeroU64::new(self.words as u64 * 4),
        }
    }

    /// Member `i`'s range.
    pub(crate) fn place(&self, i: usize) -> Place {
        Place {
            lease: self.lease.clone(),
            offset: self.offsets[i] as u64 * 4,
            size: NonZeroU64::new(self.lens[i] as u64 * 4),
        }
    }

    /// Whether `buf` lies at member `i`'s range.
    pub(crate) fn holds(&self, i: usize, buf: &GpuBuffer) -> bool {
        let p = buf.place();
        Arc::ptr_eq(&p.lease, &self.lease) && p.offset == self.offsets[i] as u64 * 4
    }

    /// Moves each storage `bufs[i]` (holding `lens[i]` words from word 0) into member `i`:
    /// its words are copied there, then it is re-placed, in order with all recorded work.
    pub(crate) fn adopt(&self, bufs: &[&GpuBuffer]) {
        self.copy_in(bufs);
        for (i, b) in bufs.iter().enumerate() {
            if !self.holds(i, b) {
                b.move_to(self.place(i));
            }
        }
    }

    /// Copies the first `lens[i]` words of each `srcs[i]` into member `i` (one batch of
    /// copies); members that already lie there are skipped.
    pub(crate) fn copy_in(&self, srcs: &[&GpuBuffer]) {
        let ctx = self.lease.ctx();
        let moves: Vec<(Binding, u64, u64)> = srcs
            .iter()
            .enumerate()
            .filter(|(i, b)| !self.holds(*i, b))
            .map(|(i, b)| {
                (
                    b.binding(),
                    self.offsets[i] as u64 * 4,
                    self.lens[i] as u64 * 4,
                )
            })
            .collect();
        if moves.is_empty() {
            return;
        }
        let dst = self.lease.buffer();
        ctx.with_encoder(|enc| {
            for (src, at, bytes) in &moves {
                enc.copy_buffer_to_buffer(&src.buffer, src.offset, dst, *at, *bytes);
            }
        });
    }
}
