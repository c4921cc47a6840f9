//! mbuf chains on both paths: a transmitted chain read through
//! `m_copydata`, a received frame built with `m_append` and handed to the
//! stack with its checksum and LRO state.

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
}

// SAFETY: an mbuf chain handed to the driver belongs to it alone; the
// shim's accessors may be called from any thread.
unsafe impl Send for MbufPkt {}

impl MbufPkt {
    /// Takes ownership of `m` (None for NULL or before registration, in
    /// which case nothing is taken).
    pub fn new(m: *mut Mbuf) -> Option<Self> {
        let m = NonNull::new(m)?;
        let o = ops()?;
        let mut info = PtnetRsPktInfo::default();
        // SAFETY: `m` is a chain the stack handed over; `info` is a valid
        // out-pointer.
        unsafe { (o.m_info)(m.as_ptr(), &mut info) };
        Some(Self { m, info })
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
            tso_segsz: i.tso_segsz,
            vlan: (i.has_vlan != 0).then_some(i.vlan),
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
}

impl Drop for MbufPkt {
    fn drop(&mut self) {
        if let Some(o) = ops() {
            // SAFETY: the chain is ours and freed once.
            unsafe { (o.m_free)(self.m.as_ptr()) };
        }
    }
}

/// Builds received frames in mbufs and hands each to the stack as it is
/// finished.
pub(crate) struct RxSink {
    pub dev: ShimDev,
    pub ring: u16,
    /// Frames dropped after `begin` because the chain could not grow (out
    /// of clusters); the caller adds them to the ring's `no_memory`.
    pub dropped: u64,
    building: Option<(NonNull<Mbuf>, PtnetRsRxInfo, bool)>,
}

impl RxSink {
    pub fn new(dev: ShimDev, ring: u16) -> Self {
        Self { dev, ring, dropped: 0, building: None }
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
}

impl FrameSink for RxSink {
    fn begin(&mut self, len: usize, info: &FrameInfo) -> bool {
        let (Some(o), Ok(len32)) = (ops(), u32::try_from(len)) else { return false };
        // SAFETY: the shim returns NULL or a fresh chain the driver owns.
        let Some(m) = NonNull::new(unsafe { (o.rx_alloc)(self.dev.0, len32) }) else { return false };
        let rx = PtnetRsRxInfo {
            csum_flags: info.csum_flags.bits(),
            csum_data: info.csum_data,
            lro_segsz: info.lro_segsz,
            lro_nsegs: info.lro_nsegs,
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
        if ok {
            // SAFETY: `m` is a complete chain handed over to the stack.
            unsafe { (o.rx_input)(self.dev.0, m.as_ptr(), &info) };
        } else {
            self.dropped = self.dropped.saturating_add(1);
            // SAFETY: the chain is ours and freed once.
            unsafe { (o.m_free)(m.as_ptr()) };
        }
    }
}
