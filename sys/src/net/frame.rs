//! Frames as the datapath moves them: a source of bytes that may live in
//! shared memory (read only by copying), and a sink that builds the frame
//! somewhere else (an mbuf chain, the slots of another ring). Producers
//! describe a frame as a sequence of pieces (bytes they computed, ranges of
//! shared memory) so data is copied once, by the sink.

use super::caps::CsumFlags;
use super::cksum::Csum;
use crate::layout::Buffers;
use crate::shmem::SharedRegion;

/// What the receiver learns about a frame besides its bytes (the mbuf
/// packet header fields a driver fills).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// Checksum state (`csum_flags`).
    pub csum_flags: CsumFlags,
    /// `csum_data` (0xffff when the data checksum is known good).
    pub csum_data: u16,
    /// For a large-receive (coalesced) frame: its segment size.
    pub lro_segsz: u16,
    /// For a large-receive frame: how many segments it merges.
    pub lro_nsegs: u16,
}

/// Where a frame is built.
pub trait FrameSink {
    /// Starts a frame of `len` bytes. Returns false when there is no room
    /// for it; the producer then skips the frame (and counts the drop).
    fn begin(&mut self, len: usize, info: &FrameInfo) -> bool;
    /// Appends bytes.
    fn bytes(&mut self, b: &[u8]);
    /// Appends `len` bytes of shared memory starting at `off`.
    fn shared(&mut self, r: &SharedRegion, off: usize, len: usize);
    /// Finishes the frame started by `begin`.
    fn end(&mut self);
}

/// A frame's bytes, readable by copy.
pub trait FrameSource {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// True for an empty frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `[off, off + dst.len())` into `dst`; false when out of range.
    fn read(&self, off: usize, dst: &mut [u8]) -> bool;
    /// Appends `[off, off + len)` to `sink`, without an intermediate copy;
    /// false when out of range (nothing is appended then).
    fn emit<S: FrameSink>(&self, off: usize, len: usize, sink: &mut S) -> bool;
}

/// Most fragments a frame may span (`NETMAP_MAX_FRAGS`).
pub const MAX_FRAGS: usize = crate::abi::netmap::NETMAP_MAX_FRAGS;

/// A frame spread over the buffers of a `NS_MOREFRAG` slot chain, with the
/// first `skip` bytes (the virtio-net header) left out. It records buffer
/// indexes rather than memory regions, which keeps it small enough for a
/// kernel stack (well under 1 KiB).
#[derive(Debug, Clone, Copy)]
pub struct Frags<'a> {
    bufs: &'a Buffers,
    idx: [u32; MAX_FRAGS],
    lens: [u16; MAX_FRAGS],
    count: usize,
    skip: usize,
    len: usize,
}

impl<'a> Frags<'a> {
    /// An empty chain over buffer pool `bufs` whose first `skip` bytes are
    /// not part of the frame.
    pub fn new(bufs: &'a Buffers, skip: usize) -> Self {
        Self { bufs, idx: [0; MAX_FRAGS], lens: [0; MAX_FRAGS], count: 0, skip, len: 0 }
    }

    /// Appends `len` bytes at the start of buffer `buf_idx`; false when the
    /// index is invalid, `len` exceeds the buffer, or the chain is full.
    pub fn push(&mut self, buf_idx: u32, len: u16) -> bool {
        if self.bufs.get(buf_idx).is_none() || u32::from(len) > self.bufs.buf_size() {
            return false;
        }
        match (self.idx.get_mut(self.count), self.lens.get_mut(self.count)) {
            (Some(i), Some(l)) => {
                *i = buf_idx;
                *l = len;
                self.count = self.count.wrapping_add(1);
                self.len = self.len.saturating_add(usize::from(len));
                true
            }
            _ => false,
        }
    }

    /// Number of fragments.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes in all fragments, the skipped header included.
    pub fn raw_len(&self) -> usize {
        self.len
    }

    /// Reads `dst.len()` bytes at raw offset `off` (header included).
    pub fn read_raw(&self, off: usize, dst: &mut [u8]) -> bool {
        let mut done = 0usize;
        let ok = self.walk(off, dst.len(), |r, o, n| {
            let end = done.saturating_add(n);
            let copied = dst.get_mut(done..end).is_some_and(|d| r.read_bytes(o, d).is_ok());
            done = end;
            copied
        });
        ok && done == dst.len()
    }

    /// Calls `f(region, offset, len)` for the pieces covering raw bytes
    /// `[off, off + len)`; false when out of range or `f` fails.
    fn walk(&self, mut off: usize, mut len: usize, mut f: impl FnMut(&SharedRegion, usize, usize) -> bool) -> bool {
        if off.checked_add(len).is_none_or(|e| e > self.len) {
            return false;
        }
        let pieces = self.idx.iter().zip(self.lens.iter()).take(self.count);
        for (&b, &plen) in pieces {
            if len == 0 {
                break;
            }
            let plen = usize::from(plen);
            // The guards make every subtraction below exact.
            if off >= plen {
                off = off.saturating_sub(plen);
                continue;
            }
            let n = plen.saturating_sub(off).min(len);
            match self.bufs.get(b) {
                Some(r) if f(&r, off, n) => {}
                _ => return false,
            }
            len = len.saturating_sub(n);
            off = 0;
        }
        len == 0
    }
}

impl FrameSource for Frags<'_> {
    fn len(&self) -> usize {
        self.len.saturating_sub(self.skip)
    }

    fn read(&self, off: usize, dst: &mut [u8]) -> bool {
        off.checked_add(self.skip).is_some_and(|o| self.read_raw(o, dst))
    }

    fn emit<S: FrameSink>(&self, off: usize, len: usize, sink: &mut S) -> bool {
        let Some(raw) = off.checked_add(self.skip) else {
            return false;
        };
        // Check the whole range first, so nothing is appended on failure.
        if raw.checked_add(len).is_none_or(|e| e > self.len) {
            return false;
        }
        self.walk(raw, len, |r, o, n| {
            sink.shared(r, o, n);
            true
        })
    }
}

/// A frame in a plain byte slice (host-side code, tests).
impl FrameSource for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read(&self, off: usize, dst: &mut [u8]) -> bool {
        match off.checked_add(dst.len()).and_then(|e| self.get(off..e)) {
            Some(src) => {
                dst.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    fn emit<S: FrameSink>(&self, off: usize, len: usize, sink: &mut S) -> bool {
        match off.checked_add(len).and_then(|e| self.get(off..e)) {
            Some(b) => {
                sink.bytes(b);
                true
            }
            None => false,
        }
    }
}

/// Adds bytes `[off, off + len)` of `f` to a checksum, reading through a
/// small stack buffer.
pub fn csum_range<F: FrameSource + ?Sized>(f: &F, mut off: usize, mut len: usize, c: &mut Csum) -> bool {
    let mut buf = [0u8; 256];
    while len > 0 {
        let n = len.min(buf.len());
        let Some(chunk) = buf.get_mut(..n) else {
            return false;
        };
        if !f.read(off, chunk) {
            return false;
        }
        c.add(chunk);
        off = off.saturating_add(n);
        len = len.saturating_sub(n);
    }
    true
}
