//! mbuf chains on both paths: a transmitted chain read through
//! `m_copydata`, received frames built with `m_append`, linked into a
//! packet list and handed to the stack with their checksum and LRO state
//! once the ring's mutex is released.

use crate::ops::{ops, Mbuf, PtnetRsPktInfo, PtnetRsRxInfo};
use crate::os::ShimDev;
use core::ptr::NonNull;
use ptnet::net::caps::CsumFlags;
use ptnet::net::frame::{FrameInfo, FrameSink};
use ptnet::net::offload::TxRequest;
use ptnet::shmem::SharedRegion;
use ptnet::tx::TxPacket;

/// A chain from `if_transmit`, owned by the driver until freed (on drop).
pub(crate) struct MbufPkt {
    m: NonNull<Mbuf>,
    info: PtnetRsPktInfo,
    dev: ShimDev,
}

// SAFETY: an mbuf chain handed to the driver belongs to it alone; the
// shim's accessors may be called from any thread.
unsafe impl Send for MbufPkt {}

impl MbufPkt {
    /// Takes ownership of `m`, sent on device `dev` (None for NULL or
    /// before registration, in which case nothing is taken).
    pub fn new(m: *mut Mbuf, dev: ShimDev) -> Option<Self> {
        let m = NonNull::new(m)?;
        let o = ops()?;
        let mut info = PtnetRsPktInfo::default();
        // SAFETY: `m` is a chain the stack handed over; `info` is a valid
        // out-pointer.
        unsafe { (o.m_info)(m.as_ptr(), &mut info) };
        Some(Self { m, info, dev })
    }

    fn copy(&self, off: usize, len: usize, dst: *mut u8) -> bool {
        let (Ok(off), Ok(len), Some(o)) = (u32::try_from(off), u32::try_from(len), ops()) else {
            return false;
        };
        // SAFETY: the caller provides `len` writable bytes at `dst`;
        // `m_copydata` reads the chain and fails (instead of reading past
        // it) when the range is not inside.
        unsafe { (o.m_copydata)(self.m.as_ptr(), off, len, dst) == 0 }
    }
}

impl TxPacket for MbufPkt {
    fn len(&self) -> usize {
        self.info.len as usize
    }

    fn request(&self) -> TxRequest {
        let i = &self.info;
        TxRequest {
            csum_flags: CsumFlags::from_bits_truncate(i.csum_flags),
            tso_segsz: i.mss,
            vlan: (i.has_vlan != 0).then_some(i.vlan_tag),
            flowid: (i.has_flowid != 0).then_some(i.flowid),
        }
    }

    fn peek(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        if self.copy(0, n, dst.as_mut_ptr()) {
            n
        } else {
            0
        }
    }

    fn copy_to(&self, off: usize, len: usize, dst: &SharedRegion, dst_off: usize) -> bool {
        // The destination range is checked against the region first: the
        // shim writes exactly there.
        dst.sub(dst_off, len).is_ok_and(|d| self.copy(off, len, d.as_ptr()))
    }

    fn on_ring(&self) {
        if let Some(o) = ops() {
            // SAFETY: the chain is ours until freed; `dev` is the shim's
            // handle of the device it was sent on.
            unsafe { (o.tx_tap)(self.dev.0, self.m.as_ptr()) };
        }
    }
}

impl Drop for MbufPkt {
    fn drop(&mut self) {
        if let Some(o) = ops() {
            // SAFETY: the chain is ours and freed once.
            unsafe { (o.m_free)(self.m.as_ptr()) };
        }
    }
}

/// Builds received frames in mbufs, linked into a packet list (the
/// `m_nextpkt` chain `if_input` takes) to hand up after the ring's mutex
/// is released.
pub(crate) struct RxSink {
    pub dev: ShimDev,
    pub ring: u16,
    /// Frames dropped after `begin` because the chain could not grow (out
    /// of clusters); the caller adds them to the ring's `no_memory`.
    pub dropped: u64,
    building: Option<(NonNull<Mbuf>, PtnetRsRxInfo, bool)>,
    /// The finished frames: first and last.
    list: Option<(NonNull<Mbuf>, NonNull<Mbuf>)>,
}

impl RxSink {
    pub fn new(dev: ShimDev, ring: u16) -> Self {
        Self { dev, ring, dropped: 0, building: None, list: None }
    }

    fn append(&mut self, src: *const u8, len: usize) {
        let (Some(o), Some((m, _, ok))) = (ops(), self.building.as_mut()) else { return };
        let Ok(len) = u32::try_from(len) else {
            *ok = false;
            return;
        };
        // SAFETY: `src` is valid for `len` bytes (a slice, or a checked
        // sub-range of shared memory); `m` is the chain being built.
        *ok &= unsafe { (o.rx_append)(m.as_ptr(), src, len) } == 0;
    }

    /// Hands the finished frames to the stack (no driver lock held).
    pub fn input(mut self) {
        self.hand_up();
    }

    fn hand_up(&mut self) {
        if let (Some(o), Some((first, _))) = (ops(), self.list.take()) {
            // SAFETY: the list is ours and handed over whole.
            unsafe { (o.rx_input)(self.dev.0, first.as_ptr()) };
        }
    }
}

impl FrameSink for RxSink {
    fn begin(&mut self, len: usize, info: &FrameInfo) -> bool {
        let (Some(o), Ok(len32)) = (ops(), u32::try_from(len)) else { return false };
        // SAFETY: the shim returns NULL or a fresh chain the driver owns.
        let Some(m) = NonNull::new(unsafe { (o.rx_alloc)(self.dev.0, len32) }) else { return false };
        let rx = PtnetRsRxInfo {
            csum_flags: info.csum_flags.bits(),
            csum_value: info.csum_data,
            lro_mss: info.lro_segsz,
            lro_segs: info.lro_nsegs,
            ring: self.ring,
        };
        self.building = Some((m, rx, true));
        true
    }

    fn bytes(&mut self, b: &[u8]) {
        self.append(b.as_ptr(), b.len());
    }

    fn shared(&mut self, r: &SharedRegion, off: usize, len: usize) {
        match r.sub(off, len) {
            Ok(s) => self.append(s.as_ptr(), len),
            Err(_) => {
                if let Some((_, _, ok)) = self.building.as_mut() {
                    *ok = false;
                }
            }
        }
    }

    fn end(&mut self) {
        let (Some(o), Some((m, info, ok))) = (ops(), self.building.take()) else { return };
        if !ok {
            self.dropped = self.dropped.saturating_add(1);
            // SAFETY: the chain is ours and freed once.
            unsafe { (o.m_free)(m.as_ptr()) };
            return;
        }
        let prev = self.list.map_or(core::ptr::null_mut(), |(_, last)| last.as_ptr());
        // SAFETY: `m` is a complete chain of ours; `prev` is NULL or the
        // last frame of our list.
        unsafe { (o.rx_finish)(self.dev.0, m.as_ptr(), &info, prev) };
        self.list = Some((self.list.map_or(m, |(first, _)| first), m));
    }
}

impl Drop for RxSink {
    /// Nothing is leaked: a half-built frame is freed, finished ones go up.
    fn drop(&mut self) {
        if let (Some(o), Some((m, _, _))) = (ops(), self.building.take()) {
            // SAFETY: the chain is ours and freed once.
            unsafe { (o.m_free)(m.as_ptr()) };
        }
        self.hand_up();
    }
}
