//! Writing frames into consecutive slots of a ring: a frame longer than a
//! buffer continues in the next slot, every slot but the last flagged
//! `NS_MOREFRAG`. The driver's transmit path writes this way, and so does
//! the simulated switch when it delivers into a receive ring.

use crate::abi::netmap::SlotFlags;
use crate::kring::next;
use crate::layout::{Buffers, RingLayout};
use crate::net::frame::{FrameInfo, FrameSink};
use crate::shmem::SharedRegion;

/// Slots a frame of `len` bytes needs with `buf_size`-byte buffers.
pub fn slots_for(len: usize, buf_size: u32) -> usize {
    len.div_ceil((buf_size as usize).max(1)).max(1)
}

/// Writes one frame's bytes into slots starting at a given slot; the caller
/// has checked there is room for them.
pub struct SlotWriter<'a> {
    ring: &'a RingLayout,
    bufs: &'a Buffers,
    slot: u32,
    used: usize,
    slots: u32,
    ok: bool,
}

impl<'a> SlotWriter<'a> {
    /// A writer starting at slot `first`.
    pub fn new(ring: &'a RingLayout, bufs: &'a Buffers, first: u32) -> Self {
        Self { ring, bufs, slot: first, used: 0, slots: 1, ok: true }
    }

    fn close_slot(&mut self, more: bool) {
        let flags = if more { SlotFlags::MOREFRAG.bits() } else { 0 };
        self.ok &= self.ring.set_slot(self.slot, self.used as u16, flags).is_some();
        if more {
            self.slot = next(self.slot, self.ring.num_slots);
            self.used = 0;
            self.slots = self.slots.wrapping_add(1);
        }
    }

    /// Appends `len` bytes produced by `copy(dst, dst_off, src_off, n)`, one
    /// call per piece, crossing buffers as needed.
    pub fn put(&mut self, len: usize, mut copy: impl FnMut(&SharedRegion, usize, usize, usize) -> bool) {
        let size = self.bufs.buf_size() as usize;
        let mut done = 0usize;
        while done < len && self.ok {
            if self.used >= size {
                self.close_slot(true);
            }
            let Some(b) = self.ring.slot_buf_idx(self.slot).and_then(|i| self.bufs.get(i)) else {
                self.ok = false;
                return;
            };
            let n = len.saturating_sub(done).min(size.saturating_sub(self.used));
            self.ok &= copy(&b, self.used, done, n);
            self.used = self.used.saturating_add(n);
            done = done.saturating_add(n);
        }
    }

    /// Appends bytes.
    pub fn bytes(&mut self, src: &[u8]) {
        self.put(src.len(), |b, at, from, n| {
            src.get(from..from.saturating_add(n)).is_some_and(|s| b.write_bytes(at, s).is_ok())
        })
    }

    /// Appends `len` bytes of shared memory `r` from `off`.
    pub fn shared(&mut self, r: &SharedRegion, off: usize, len: usize) {
        self.put(len, |b, at, from, n| b.copy_from_region(at, r, off.saturating_add(from), n).is_ok())
    }

    /// Closes the last slot; returns the slots used, or `None` if a copy
    /// or a buffer index failed (the slots hold garbage then).
    pub fn finish(mut self) -> Option<u32> {
        self.close_slot(false);
        self.ok.then_some(self.slots)
    }
}

/// A [`FrameSink`] that appends frames to a ring from slot `tail` on,
/// within `space` free slots, each frame preceded by a prefix (a
/// virtio-net header) of up to 12 bytes. Frames that do not fit are
/// refused and counted.
pub struct RingSink<'a> {
    ring: &'a RingLayout,
    bufs: &'a Buffers,
    prefix: [u8; 12],
    prefix_len: usize,
    /// Next free slot.
    pub tail: u32,
    /// Free slots left.
    pub space: u32,
    /// Frames written.
    pub delivered: u32,
    /// Frames refused for lack of room (or a bad destination buffer).
    pub dropped: u32,
    current: Option<SlotWriter<'a>>,
}

impl<'a> RingSink<'a> {
    /// A sink over `space` free slots starting at `tail`, with no prefix.
    pub fn new(ring: &'a RingLayout, bufs: &'a Buffers, tail: u32, space: u32) -> Self {
        Self { ring, bufs, prefix: [0; 12], prefix_len: 0, tail, space, delivered: 0, dropped: 0, current: None }
    }

    /// Sets the bytes written before each following frame (at most 12).
    pub fn set_prefix(&mut self, p: &[u8]) {
        let n = p.len().min(self.prefix.len());
        if let (Some(d), Some(s)) = (self.prefix.get_mut(..n), p.get(..n)) {
            d.copy_from_slice(s);
        }
        self.prefix_len = n;
    }
}

impl FrameSink for RingSink<'_> {
    fn begin(&mut self, len: usize, _info: &FrameInfo) -> bool {
        let prefix = self.prefix.get(..self.prefix_len).unwrap_or(&[]);
        let need = slots_for(len.saturating_add(prefix.len()), self.bufs.buf_size());
        if need > self.space as usize {
            self.dropped = self.dropped.wrapping_add(1);
            return false;
        }
        let mut w = SlotWriter::new(self.ring, self.bufs, self.tail);
        w.bytes(prefix);
        self.current = Some(w);
        true
    }

    fn bytes(&mut self, b: &[u8]) {
        if let Some(w) = &mut self.current {
            w.bytes(b);
        }
    }

    fn shared(&mut self, r: &SharedRegion, off: usize, len: usize) {
        if let Some(w) = &mut self.current {
            w.shared(r, off, len);
        }
    }

    fn end(&mut self) {
        let Some(w) = self.current.take() else { return };
        match w.finish() {
            Some(n) => {
                self.tail = crate::kring::advance(self.tail, n, self.ring.num_slots);
                self.space = self.space.saturating_sub(n);
                self.delivered = self.delivered.wrapping_add(1);
            }
            None => self.dropped = self.dropped.wrapping_add(1),
        }
    }
}
