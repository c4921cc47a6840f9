//! The interface's receive datapath: frames (gathered from `NS_MOREFRAG`
//! slot chains) go to the stack with the checksum and large-receive state
//! their virtio-net header conveys, the way `if_vtnet` hands them to
//! FreeBSD's stack; offloads the interface has turned off are undone in
//! software. A budget bounds the work per call; interrupts are re-armed
//! with the double check when the ring runs dry.

use crate::abi::netmap::SlotFlags;
use crate::abi::vnet::VirtioNetHdr;
use crate::counter::Counter;
use crate::csb::SyncOpts;
use crate::device::{Ptnet, RingWatch};
use crate::kring::{next, Dir, Kring};
use crate::net::frame::{Frags, FrameInfo, FrameSink, FrameSource, MAX_FRAGS};
use crate::net::gso::{complete_csum, emit_frame, segment_tcp};
use crate::net::hdr::{self, MAX_HDR};
use crate::net::offload::{rx_action, rx_interpret, RxAction, RxBad};
use crate::os::{Kernel, LogLevel, Registers};

/// Largest frame accepted: a 64 KiB IP datagram behind Ethernet and
/// 802.1Q headers.
pub const MAX_FRAME: usize = 65535 + 18;

/// Receive counters of one ring.
#[derive(Debug, Default)]
pub struct RxStats {
    /// Frames handed to the stack.
    pub packets: Counter,
    /// Their bytes.
    pub bytes: Counter,
    /// Frames dropped for bad slots (buffer index, length, chain) or a bad
    /// virtio-net header (`ierrors`).
    pub errors: Counter,
    /// Frames dropped because the stack had no memory for them (`iqdrops`).
    pub no_memory: Counter,
    /// Frames whose checksum the driver completed in software.
    pub csum_completed: Counter,
    /// Frames handed up as large-receive frames.
    pub lro: Counter,
    /// Super-packets segmented in software (LRO off).
    pub segmented: Counter,
    /// Interrupts the host never delivered: frames found waiting by the
    /// receive watchdog with no receive pass since its previous run.
    pub missed_irqs: Counter,
}

/// One RX ring's state in interface mode, under the OS's per-ring lock.
pub struct RxRing {
    /// Ring pointers.
    pub kring: Kring,
    /// Receive passes so far: the watchdog's measure of progress (not
    /// `rcur`, which comes back to the same slot after a lap).
    passes: u64,
    /// The pass count at which the receive watchdog last saw frames
    /// waiting.
    waiting: Option<u64>,
    /// The ring watchdog's view ([`Ptnet::ring_watchdog`]).
    pub watch: RingWatch,
    /// Counters.
    pub stats: RxStats,
}

impl RxRing {
    /// A ring of `num_slots` slots.
    pub fn new(num_slots: u32) -> Self {
        Self {
            kring: Kring::new(Dir::Rx, num_slots),
            passes: 0,
            waiting: None,
            watch: RingWatch::default(),
            stats: RxStats::default(),
        }
    }
}

/// What one receive pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxReport {
    /// Frames handed to the stack (segments count one each).
    pub frames: u32,
    /// More work is waiting: the caller reschedules instead of waiting for
    /// an interrupt.
    pub more: bool,
}

enum Chain {
    /// No complete frame available.
    Empty,
    /// A frame spanning `slots` slots.
    Frame { slots: u32 },
    /// `slots` slots that do not form a valid frame.
    Bad { slots: u32 },
}

/// A sink wrapper that counts what it accepted.
struct Counting<'a, S> {
    inner: &'a mut S,
    frames: u32,
    bytes: u64,
    refused: u32,
}

impl<S: FrameSink> FrameSink for Counting<'_, S> {
    fn begin(&mut self, len: usize, info: &FrameInfo) -> bool {
        let ok = self.inner.begin(len, info);
        if ok {
            self.frames = self.frames.wrapping_add(1);
            self.bytes = self.bytes.wrapping_add(len as u64);
        } else {
            self.refused = self.refused.wrapping_add(1);
        }
        ok
    }
    fn bytes(&mut self, b: &[u8]) {
        self.inner.bytes(b)
    }
    fn shared(&mut self, r: &crate::shmem::SharedRegion, off: usize, len: usize) {
        self.inner.shared(r, off, len)
    }
    fn end(&mut self) {
        self.inner.end()
    }
}

impl<K: Kernel, R: Registers> Ptnet<K, R> {
    /// Receives up to `budget` frames from RX ring `idx` into `sink`
    /// (the task or interrupt handler's `rx_eof`). When the ring is empty
    /// at the end, the interrupt is re-armed (with the double check);
    /// `more` says whether to call again right away.
    pub fn receive<S: FrameSink>(&self, idx: u32, ring: &mut RxRing, budget: u32, sink: &mut S) -> RxReport {
        let Some(bufs) = self.layout().map(|l| l.buffers) else {
            return RxReport::default();
        };
        ring.passes = ring.passes.wrapping_add(1);
        let _ = self.rxsync(idx, &mut ring.kring, SyncOpts::default());
        let mut out = Counting { inner: sink, frames: 0, bytes: 0, refused: 0 };
        let mut handled = 0u32;
        while handled < budget {
            let k = &mut ring.kring;
            let mut frags = Frags::new(&bufs, self.info().vnet_hdr_len as usize);
            match self.gather(idx, k, &mut frags) {
                Chain::Empty => break,
                Chain::Bad { slots } => {
                    ring.stats.errors.inc();
                    k.rcur = crate::kring::advance(k.rcur, slots, k.num_slots);
                }
                Chain::Frame { slots } => {
                    k.rcur = crate::kring::advance(k.rcur, slots, k.num_slots);
                    if let Err(e) = self.deliver(&frags, &ring.stats, &mut out) {
                        if ring.stats.errors.inc_logged(1024) {
                            self.kernel().log(LogLevel::Warning, format_args!("rx ring {idx}: frame dropped: {e}"));
                        }
                    }
                }
            }
            k.rhead = k.rcur;
            handled = handled.wrapping_add(1);
        }
        ring.stats.packets.add(u64::from(out.frames));
        ring.stats.bytes.add(out.bytes);
        ring.stats.no_memory.add(u64::from(out.refused));
        let exhausted = handled >= budget;
        let opts = SyncOpts { want_intr: !exhausted, ..SyncOpts::default() };
        let _ = self.rxsync(idx, &mut ring.kring, opts);
        RxReport { frames: out.frames, more: exhausted || !ring.kring.would_block() }
    }

    /// The receive watchdog, run by the OS with the transmit watchdog
    /// (about once a second). Frames that already waited at the previous
    /// run, with no receive pass since, mean the host lost their interrupt
    /// (a buggy host, or one that drops MSI-X messages): with the ring full
    /// it would wait for the guest forever, and the guest for it. Returns
    /// true then, counted in `missed_irqs`: the OS runs the receive task as
    /// if the interrupt had come.
    pub fn rx_watchdog(&self, idx: u32, ring: &mut RxRing) -> bool {
        let _ = self.peek(Dir::Rx, idx, &mut ring.kring);
        let k = &ring.kring;
        if k.would_block() {
            ring.waiting = None;
            return false;
        }
        let missed = ring.waiting == Some(ring.passes);
        ring.waiting = Some(ring.passes);
        if missed && ring.stats.missed_irqs.inc_logged(64) {
            self.kernel().log(
                LogLevel::Warning,
                format_args!("rx ring {idx}: watchdog: frames waited without an interrupt; receiving"),
            );
        }
        missed
    }

    /// Collects the slots of the frame starting at `k.rcur`.
    fn gather(&self, idx: u32, k: &Kring, frags: &mut Frags<'_>) -> Chain {
        let Some(ring) = self.layout().and_then(|l| l.ring(Dir::Rx, idx)) else {
            return Chain::Empty;
        };
        let mut j = k.rcur;
        let mut slots = 0u32;
        let mut valid = true;
        loop {
            if j == k.hwtail {
                // The host publishes whole frames; a chain cut short by the
                // tail is either still arriving or broken. Past the longest
                // legal chain it is broken.
                return if slots as usize >= MAX_FRAGS { Chain::Bad { slots } } else { Chain::Empty };
            }
            let len = ring.slot_len(j).unwrap_or(u16::MAX);
            let flags = ring.slot_flags(j).unwrap_or(0);
            valid &= ring.slot_buf_idx(j).is_some_and(|b| frags.push(b, len));
            slots = slots.wrapping_add(1);
            j = next(j, k.num_slots);
            if flags & SlotFlags::MOREFRAG.bits() == 0 {
                break;
            }
            if slots as usize >= MAX_FRAGS {
                valid = false;
                break;
            }
        }
        let hdr_len = self.info().vnet_hdr_len as usize;
        if !valid || frags.raw_len() < hdr_len.saturating_add(hdr::ETH_HLEN) || frags.len() > MAX_FRAME {
            return Chain::Bad { slots };
        }
        Chain::Frame { slots }
    }

    /// Hands one frame to the stack, undoing offloads the interface has
    /// turned off.
    fn deliver<S: FrameSink>(&self, f: &Frags<'_>, st: &crate::rx::RxStats, sink: &mut S) -> Result<(), RxBad> {
        let hdr_len = self.info().vnet_hdr_len as usize;
        let len = f.len();
        let off = if hdr_len == 0 {
            crate::net::offload::RxOffload { csum: crate::net::offload::RxCsum::Unknown, gso: None }
        } else {
            let mut raw = [0u8; 12];
            let bytes = raw.get_mut(..hdr_len).ok_or(RxBad::Frame)?;
            if !f.read_raw(0, bytes) {
                return Err(RxBad::Frame);
            }
            rx_interpret(&VirtioNetHdr::from_le_bytes(&raw), len)?
        };
        let mut prefix = [0u8; MAX_HDR];
        let n = len.min(MAX_HDR);
        let prefix = prefix.get_mut(..n).unwrap_or(&mut []);
        let headers = if f.read(0, prefix) { hdr::parse(prefix, len).ok() } else { None };
        match rx_action(&off, headers.as_ref(), self.ifstate().enabled())? {
            RxAction::Deliver(info) => {
                if info.lro_segsz != 0 {
                    st.lro.inc();
                }
                emit_frame(f, sink, &info, None);
            }
            RxAction::CompleteCsum { start, offset } => {
                let patch = complete_csum(f, start, offset).ok_or(RxBad::CsumRange)?;
                st.csum_completed.inc();
                emit_frame(f, sink, &FrameInfo::default(), Some(patch));
            }
            RxAction::Segment(g) => {
                let h = headers.ok_or(RxBad::Frame)?;
                let en = self.ifstate().enabled();
                let mut info = FrameInfo::default();
                let rxcsum = match h.l3 {
                    hdr::L3::V4 => crate::net::caps::IfCap::RXCSUM,
                    hdr::L3::V6 => crate::net::caps::IfCap::RXCSUM_IPV6,
                };
                if en.contains(rxcsum) {
                    // The segments' checksums were just computed.
                    info.csum_flags = crate::net::caps::CsumFlags::L4_CALC | crate::net::caps::CsumFlags::L4_VALID;
                    info.csum_data = 0xffff;
                }
                segment_tcp(f, &h, g.mss, &info, sink).map_err(|_| RxBad::GsoSize)?;
                st.segmented.inc();
            }
        }
        Ok(())
    }
}
