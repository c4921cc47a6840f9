//! netmap mode on a kernel without ptnetmap (every stock FreeBSD since
//! 13.0): applications get rings and buffers from the guest's own netmap
//! allocator, and the driver copies packets between those and the host's
//! rings. Slot `i` of a guest ring stands for slot `i` of the host ring,
//! so the ring pointers the CSB carries are the application's own and only
//! the bytes, lengths and flags cross.
//!
//! Everything the application or the host wrote is checked: a buffer index
//! outside its pool, or a length larger than either buffer, leaves an empty
//! slot (the chain flag kept) and is counted, and the ring stays usable.

use crate::abi::netmap::SlotFlags;
use crate::device::Ptnet;
use crate::kring::{next, Dir};
use crate::layout::{Buffers, RingLayout};
use crate::os::{Kernel, Registers};
use crate::shmem::SharedRegion;

/// Buffers found by index: the host's pool, or the guest netmap
/// allocator's (its lookup table).
pub trait BufferPool {
    /// Buffer `idx`, or `None` for an index outside the pool.
    fn buf(&self, idx: u32) -> Option<SharedRegion>;
    /// Size of every buffer.
    fn buf_size(&self) -> u32;
}

impl BufferPool for Buffers {
    fn buf(&self, idx: u32) -> Option<SharedRegion> {
        self.get(idx)
    }

    fn buf_size(&self) -> u32 {
        Buffers::buf_size(self)
    }
}

/// Flags a guest application may hand the host: the chain, and the hints a
/// VALE switch honours. `NS_BUF_CHANGED` and `NS_INDIRECT` concern the
/// guest's own buffers and stay behind.
const TX_FLAGS: u16 = SlotFlags::MOREFRAG.bits() | SlotFlags::FORWARD.bits() | SlotFlags::NO_LEARN.bits();

/// One slot moved between two rings; false when its buffer or length was
/// unusable (then the destination slot is left empty).
fn copy_slot(
    src: (&RingLayout, &dyn BufferPool),
    dst: (&RingLayout, &dyn BufferPool),
    i: u32,
    keep_flags: u16,
) -> bool {
    let (sring, sbufs) = src;
    let (dring, dbufs) = dst;
    let len = sring.slot_len(i).unwrap_or(u16::MAX);
    let flags = sring.slot_flags(i).unwrap_or(0) & keep_flags;
    let copied = (|| {
        let from = sbufs.buf(sring.slot_buf_idx(i)?)?;
        let to = dbufs.buf(dring.slot_buf_idx(i)?)?;
        let n = usize::from(len);
        if n > from.len() || n > to.len() {
            return None;
        }
        to.copy_from_region(0, &from, 0, n).ok()
    })();
    let len = if copied.is_some() { len } else { 0 };
    let _ = dring.set_slot(i, len, flags);
    copied.is_some()
}

/// Copies slots `[from, to)` from `src` to `dst`; returns the unusable ones.
fn copy_slots(
    src: (&RingLayout, &dyn BufferPool),
    dst: (&RingLayout, &dyn BufferPool),
    from: u32,
    to: u32,
    keep_flags: u16,
) -> u32 {
    let n = src.0.num_slots.min(dst.0.num_slots);
    let mut bad = 0u32;
    let mut i = from;
    while i != to && i < n {
        if !copy_slot(src, dst, i, keep_flags) {
            bad = bad.saturating_add(1);
        }
        i = next(i, n);
    }
    bad
}

impl<K: Kernel, R: Registers> Ptnet<K, R> {
    /// Transmit: the application filled slots `[from, to)` of its TX ring
    /// `guest` (buffers in `bufs`); they go into the host's TX ring `idx`
    /// before the sync publishes them. Returns the slots left empty.
    pub fn copy_to_host(&self, idx: u32, guest: &RingLayout, bufs: &dyn BufferPool, from: u32, to: u32) -> u32 {
        let Some((host, hbufs)) = self.layout().and_then(|l| Some((l.ring(Dir::Tx, idx)?, l.buffers))) else {
            return 0;
        };
        copy_slots((guest, bufs), (&host, &hbufs), from, to, TX_FLAGS)
    }

    /// Receive: the host filled slots `[from, to)` of its RX ring `idx`
    /// (what a sync just imported); they go into the application's RX ring
    /// `guest`. Returns the slots left empty.
    pub fn copy_from_host(&self, idx: u32, guest: &RingLayout, bufs: &dyn BufferPool, from: u32, to: u32) -> u32 {
        let Some((host, hbufs)) = self.layout().and_then(|l| Some((l.ring(Dir::Rx, idx)?, l.buffers))) else {
            return 0;
        };
        copy_slots((&host, &hbufs), (guest, bufs), from, to, SlotFlags::MOREFRAG.bits())
    }
}
