//! The interface's transmit datapath: packets from the stack (mbuf chains
//! with their offload requests) are copied into TX slots behind a
//! virtio-net header, spanning several slots (`NS_MOREFRAG`) when they do
//! not fit one buffer. When the ring is full they wait in a bounded
//! per-ring software queue; the ring's interrupt, armed when the next
//! packet does not fit, resumes them.

use crate::abi::netmap::SlotFlags;
use crate::abi::vnet::VirtioNetHdr;
use crate::counter::Counter;
use crate::csb::SyncOpts;
use crate::device::{Ptnet, RingWatch};
use crate::kring::{advance, cyclic_dist, next, Dir, Kring};
use crate::layout::{Buffers, RingLayout};
use crate::net::caps::IfCap;
use crate::net::frame::MAX_FRAGS;
use crate::net::hdr::{self, ETHERTYPE_VLAN, MAX_HDR};
use crate::net::offload::{tx_header, TxRefusal, TxRequest};
use crate::os::{Kernel, LogLevel, Registers};
use crate::shmem::SharedRegion;
use crate::slots::{slots_for, SlotWriter};
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

/// A packet the stack hands to the driver (an mbuf chain).
pub trait TxPacket {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// True for an empty packet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The offloads requested and other packet header fields.
    fn request(&self) -> TxRequest;
    /// Copies the first `dst.len()` bytes (or fewer, if the packet is
    /// shorter) into `dst`; returns how many.
    fn peek(&self, dst: &mut [u8]) -> usize;
    /// Copies bytes `[off, off + len)` into shared memory `dst` at
    /// `dst_off`; false when out of range.
    fn copy_to(&self, off: usize, len: usize, dst: &SharedRegion, dst_off: usize) -> bool;
    /// The packet is in the ring, on its way to the host: the OS shows it
    /// to packet taps (`ETHER_BPF_MTAP`) before it is freed.
    fn on_ring(&self) {}
}

/// The TX ring for a packet among `rings`: the stack's flow id when it
/// has one, else a hash (FNV-1a) of the addresses and ports, so that a
/// flow stays in order on one ring.
pub fn flow_ring<P: TxPacket>(p: &P, rings: u32) -> u32 {
    let hash = match p.request().flowid {
        Some(id) => id,
        None => {
            let mut buf = [0u8; MAX_HDR];
            let n = p.peek(&mut buf);
            flow_hash(buf.get(..n).unwrap_or(&[]), p.len())
        }
    };
    hash.checked_rem(rings).unwrap_or(0)
}

fn flow_hash(prefix: &[u8], len: usize) -> u32 {
    let Ok(h) = hdr::parse(prefix, len) else { return 0 };
    let addrs = match h.l3 {
        hdr::L3::V4 => h.l3_off.saturating_add(12)..h.l3_off.saturating_add(20),
        hdr::L3::V6 => h.l3_off.saturating_add(8)..h.l3_off.saturating_add(40),
    };
    let ports = match h.l4 {
        hdr::L4::Tcp { .. } | hdr::L4::Udp => h.l4_off..h.l4_off.saturating_add(4),
        hdr::L4::Other(_) => 0..0,
    };
    let bytes = prefix.get(addrs).unwrap_or(&[]).iter().chain(prefix.get(ports).unwrap_or(&[]));
    bytes.fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A bounded FIFO of packets waiting for ring space (`buf_ring`).
pub struct SwQueue<P, const N: usize> {
    slots: [Option<P>; N],
    head: usize,
    len: usize,
}

impl<P, const N: usize> Default for SwQueue<P, N> {
    fn default() -> Self {
        Self { slots: [const { None }; N], head: 0, len: 0 }
    }
}

impl<P, const N: usize> SwQueue<P, N> {
    /// Builds an empty queue where it is to live: a kernel must not make a
    /// queue of several KiB on its 16 KiB stack first.
    pub fn init_in(slot: &mut MaybeUninit<Self>) -> &mut Self {
        let p = slot.as_mut_ptr();
        // SAFETY: every field of `*p` is written exactly once through raw
        // pointers into `slot` (the array element by element, all `N` of
        // them), after which the value is fully initialised.
        unsafe {
            let slots = addr_of_mut!((*p).slots).cast::<Option<P>>();
            for i in 0..N {
                slots.add(i).write(None);
            }
            addr_of_mut!((*p).head).write(0);
            addr_of_mut!((*p).len).write(0);
            slot.assume_init_mut()
        }
    }

    /// Appends a packet, or gives it back when the queue is full.
    pub fn push(&mut self, p: P) -> Result<(), P> {
        if self.len >= N {
            return Err(p);
        }
        let at = self.head.wrapping_add(self.len).checked_rem(N).unwrap_or(0);
        match self.slots.get_mut(at) {
            Some(s) => {
                *s = Some(p);
                self.len = self.len.wrapping_add(1);
                Ok(())
            }
            None => Err(p),
        }
    }

    /// The oldest packet.
    pub fn front(&self) -> Option<&P> {
        self.slots.get(self.head)?.as_ref()
    }

    /// Removes the oldest packet.
    pub fn pop(&mut self) -> Option<P> {
        let p = self.slots.get_mut(self.head)?.take()?;
        self.head = self.head.wrapping_add(1).checked_rem(N).unwrap_or(0);
        self.len = self.len.saturating_sub(1);
        Some(p)
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Transmit counters of one ring.
#[derive(Debug, Default)]
pub struct TxStats {
    /// Packets put in the ring.
    pub packets: Counter,
    /// Their bytes (as the stack gave them).
    pub bytes: Counter,
    /// Packets sent with checksum offload.
    pub csum: Counter,
    /// Packets sent with TSO.
    pub tso: Counter,
    /// Packets refused (offload request the packet does not support, or
    /// too large): dropped, `oerrors`.
    pub refused: Counter,
    /// Packets dropped because the software queue was full (`oqdrops`).
    pub queue_drops: Counter,
    /// Packets dropped because the interface was not running.
    pub down_drops: Counter,
    /// Watchdog firings: the host took nothing from a ring with packets
    /// waiting for the watchdog's timeout.
    pub watchdog: Counter,
    /// Packets the watchdog dropped from the software queue.
    pub watchdog_drops: Counter,
    /// Packets sent into the ring (counted in `packets`) that the host
    /// never took before detach.
    pub abandoned: Counter,
}

impl TxStats {
    /// Packets from the stack that never reached the host (`oqdrops`).
    pub fn dropped(&self) -> u64 {
        self.queue_drops.get().saturating_add(self.down_drops.get()).saturating_add(self.watchdog_drops.get())
    }
}

/// One TX ring's state in interface mode, protected by the OS's per-ring
/// lock: the ring pointers, the software queue, the counters.
pub struct TxRing<P, const N: usize> {
    /// Ring pointers.
    pub kring: Kring,
    queue: SwQueue<P, N>,
    /// Since when (OS clock, ms) and at which `hwtail` the watchdog has
    /// seen packets waiting without the host taking any.
    stall: Option<(u64, u32)>,
    /// The ring watchdog's view ([`Ptnet::ring_watchdog`]).
    pub watch: RingWatch,
    /// Counters.
    pub stats: TxStats,
}

impl<P, const N: usize> TxRing<P, N> {
    /// [`TxRing::new`] in place (see [`SwQueue::init_in`]).
    pub fn init_in(slot: &mut MaybeUninit<Self>, num_slots: u32) -> &mut Self {
        let p = slot.as_mut_ptr();
        // SAFETY: each field is written exactly once through raw pointers
        // into `slot` (the queue by its own in-place constructor, through
        // a `MaybeUninit` of the same layout), then the value is complete.
        unsafe {
            addr_of_mut!((*p).kring).write(Kring::new(Dir::Tx, num_slots));
            SwQueue::init_in(&mut *addr_of_mut!((*p).queue).cast::<MaybeUninit<SwQueue<P, N>>>());
            addr_of_mut!((*p).stall).write(None);
            addr_of_mut!((*p).watch).write(RingWatch::default());
            addr_of_mut!((*p).stats).write(TxStats::default());
            slot.assume_init_mut()
        }
    }

    /// A ring of `num_slots` slots with an empty queue.
    pub fn new(num_slots: u32) -> Self {
        Self {
            kring: Kring::new(Dir::Tx, num_slots),
            queue: SwQueue::default(),
            stall: None,
            watch: RingWatch::default(),
            stats: TxStats::default(),
        }
    }

    /// Packets waiting in the software queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Removes every queued packet (`qflush`, interface down), handing each
    /// to `free`; returns how many.
    pub fn flush(&mut self, mut free: impl FnMut(P)) -> usize {
        let mut n = 0usize;
        while let Some(p) = self.queue.pop() {
            free(p);
            n = n.wrapping_add(1);
        }
        n
    }
}

/// Why a packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// The software queue is full (`ENOBUFS`); the packet was freed.
    QueueFull,
    /// The interface is down (`ENETDOWN`); the packet was freed.
    Down,
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TxError::QueueFull => "transmit queue full",
            TxError::Down => "interface down",
        })
    }
}

enum Encap {
    Sent { csum: bool, tso: bool },
    NoRoom { need: u32 },
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Offload(TxRefusal),
    TooLarge(usize),
    Copy,
}

impl<K: Kernel, R: Registers> Ptnet<K, R> {
    /// `if_transmit`: queues `pkt` (if any) on TX ring `idx` and copies as
    /// many queued packets as fit into the ring, then syncs once (one kick
    /// at most). Each packet leaves through `free` once copied, refused, or
    /// dropped. When the next packet does not fit, the ring's interrupt is
    /// armed to resume with `transmit(idx, ring, None, ...)`.
    pub fn transmit<P: TxPacket, const N: usize>(
        &self,
        idx: u32,
        ring: &mut TxRing<P, N>,
        pkt: Option<P>,
        mut free: impl FnMut(P),
    ) -> Result<(), TxError> {
        if let Some(p) = pkt {
            if !self.is_running() {
                ring.stats.down_drops.inc();
                free(p);
                return Err(TxError::Down);
            }
            if let Err(p) = ring.queue.push(p) {
                ring.stats.queue_drops.inc();
                free(p);
                return Err(TxError::QueueFull);
            }
        }
        let Some((layout, bufs)) = self.layout().and_then(|l| Some((l.ring(Dir::Tx, idx)?, l.buffers))) else {
            return Ok(());
        };
        let mut wrote = false;
        let mut refreshed = false;
        let mut waiting_for = 0;
        while let Some(p) = ring.queue.front() {
            match self.encap(&layout, &bufs, &mut ring.kring, p) {
                Encap::Sent { csum, tso } => {
                    p.on_ring();
                    let st = &ring.stats;
                    st.packets.inc();
                    st.bytes.add(p.len() as u64);
                    if csum {
                        st.csum.inc();
                    }
                    if tso {
                        st.tso.inc();
                    }
                    wrote = true;
                }
                Encap::Refused(why) => {
                    if ring.stats.refused.inc_logged(1024) {
                        self.log_refusal(idx, why);
                    }
                }
                Encap::NoRoom { need } => {
                    if !refreshed {
                        // Reclaim what the host completed, then retry once.
                        refreshed = true;
                        let _ = self.txsync(idx, &mut ring.kring, SyncOpts::default());
                        continue;
                    }
                    waiting_for = need;
                    break;
                }
            }
            if let Some(p) = ring.queue.pop() {
                free(p);
            }
        }
        if wrote || waiting_for > 0 {
            let opts = SyncOpts { want_intr: waiting_for > 0, want_space: waiting_for, ..SyncOpts::default() };
            let _ = self.txsync(idx, &mut ring.kring, opts);
        }
        Ok(())
    }

    /// The transmit watchdog, run by the OS about once a second with its
    /// clock in milliseconds. When packets wait in the software queue and
    /// the host has taken nothing for `timeout_ms` (a stalled or hostile
    /// host), they are freed and counted, so the stack is never left
    /// waiting; returns true then (the OS may restart the host side).
    /// Otherwise it resumes the queue if the host made room.
    pub fn tx_watchdog<P: TxPacket, const N: usize>(
        &self,
        idx: u32,
        ring: &mut TxRing<P, N>,
        now_ms: u64,
        timeout_ms: u64,
        mut free: impl FnMut(P),
    ) -> bool {
        if !ring.queue.is_empty() {
            let _ = self.txsync(idx, &mut ring.kring, SyncOpts { force_reclaim: true, ..SyncOpts::default() });
            // Push what fits now, and re-arm the interrupt the sync withdrew.
            let _ = self.transmit(idx, ring, None, &mut free);
        }
        if ring.queue.is_empty() {
            ring.stall = None;
            return false;
        }
        let tail = ring.kring.hwtail;
        match ring.stall {
            Some((since, seen)) if seen == tail => {
                if now_ms.saturating_sub(since) < timeout_ms {
                    return false;
                }
                let n = ring.flush(&mut free) as u64;
                ring.stats.watchdog_drops.add(n);
                ring.stall = None;
                if ring.stats.watchdog.inc_logged(64) {
                    self.kernel().log(
                        LogLevel::Warning,
                        format_args!(
                            "tx ring {idx}: watchdog: the host took nothing for {timeout_ms} ms; {n} queued packets dropped"
                        ),
                    );
                }
                true
            }
            _ => {
                // First sight, or the host moved: (re)start the clock.
                ring.stall = Some((now_ms, tail));
                false
            }
        }
    }

    /// At detach, after the host stopped: packets published to TX ring
    /// `idx` that the host never took (`[hwcur, head)`, counted by their
    /// last slot) go with the ring; they are counted in `abandoned` and
    /// logged, so that nothing the stack handed over disappears silently.
    /// Returns how many.
    pub fn tx_abandon<P, const N: usize>(&self, idx: u32, ring: &mut TxRing<P, N>) -> u32 {
        let mut k = ring.kring;
        let Some(layout) = self.layout().and_then(|l| l.ring(Dir::Tx, idx)) else { return 0 };
        if self.peek(Dir::Tx, idx, &mut k).is_err() {
            return 0;
        }
        let (mut n, mut j) = (0u32, k.hwcur);
        for _ in 0..cyclic_dist(k.hwcur, k.rhead, k.num_slots) {
            if layout.slot_flags(j).unwrap_or(0) & SlotFlags::MOREFRAG.bits() == 0 {
                n = n.wrapping_add(1);
            }
            j = next(j, k.num_slots);
        }
        if n > 0 {
            ring.stats.abandoned.add(u64::from(n));
            self.kernel().log(
                LogLevel::Warning,
                format_args!("tx ring {idx}: {n} packets the host never took were dropped at detach"),
            );
        }
        n
    }

    fn log_refusal(&self, idx: u32, why: Refusal) {
        match why {
            Refusal::Offload(e) => {
                self.kernel().log(LogLevel::Warning, format_args!("tx ring {idx}: packet dropped: {e}"))
            }
            Refusal::TooLarge(n) => {
                self.kernel().log(LogLevel::Warning, format_args!("tx ring {idx}: {n}-byte packet dropped: too large"))
            }
            Refusal::Copy => self
                .kernel()
                .log(LogLevel::Warning, format_args!("tx ring {idx}: packet dropped: copy into the ring failed")),
        }
    }

    /// Copies one packet into the ring at `k.rhead`.
    fn encap<P: TxPacket>(&self, ring: &RingLayout, bufs: &Buffers, k: &mut Kring, p: &P) -> Encap {
        let req = p.request();
        let enabled = self.ifstate().enabled();
        let vlan = req.vlan.filter(|_| enabled.contains(IfCap::VLAN_HWTAGGING));
        let tag_len = if vlan.is_some() { 4 } else { 0 };
        let len = p.len();
        let wire_len = len.saturating_add(tag_len);
        let hdr_len = self.info().vnet_hdr_len as usize;
        let vhdr = if req.offloads() {
            if hdr_len == 0 {
                return Encap::Refused(Refusal::Offload(TxRefusal::NotEnabled));
            }
            let mut prefix = [0u8; MAX_HDR];
            let n = wire_prefix(p, vlan, &mut prefix);
            let h = match hdr::parse(prefix.get(..n).unwrap_or(&[]), wire_len) {
                Ok(h) => h,
                Err(e) => return Encap::Refused(Refusal::Offload(TxRefusal::Headers(e))),
            };
            // Whatever the device can do is honoured, not only what is
            // enabled: a packet built just before a capability went off
            // must not be lost (the stack stops asking at once).
            // The stack's checksum field goes out as it is: FreeBSD seeds
            // it with the pseudo-header sum including the length, for TSO
            // too, which is what virtio-net hosts expect.
            match tx_header(&h, &req, crate::net::caps::hwassist(self.ifstate().supported())) {
                Ok(v) => v,
                Err(e) => return Encap::Refused(Refusal::Offload(e)),
            }
        } else {
            VirtioNetHdr::default()
        };
        let total = wire_len.saturating_add(hdr_len);
        let need = slots_for(total, bufs.buf_size());
        if need > MAX_FRAGS || need >= k.num_slots as usize {
            return Encap::Refused(Refusal::TooLarge(len));
        }
        if need > k.user_avail() as usize {
            return Encap::NoRoom { need: need as u32 };
        }
        let mut w = SlotWriter::new(ring, bufs, k.rhead);
        // Copies packet bytes [from, from + n).
        let copy = |w: &mut SlotWriter<'_>, from: usize, n: usize| {
            w.put(n, |buf, at, done, m| p.copy_to(from.saturating_add(done), m, buf, at))
        };
        let vb = vhdr.to_le_bytes();
        w.bytes(vb.get(..hdr_len).unwrap_or(&[]));
        match vlan {
            Some(tag) if len >= 12 => {
                let [t0, t1] = tag.to_be_bytes();
                let [v0, v1] = ETHERTYPE_VLAN.to_be_bytes();
                copy(&mut w, 0, 12);
                w.bytes(&[v0, v1, t0, t1]);
                copy(&mut w, 12, len.saturating_sub(12));
            }
            _ => copy(&mut w, 0, len),
        }
        let Some(used) = w.finish() else {
            // The packet was shorter than it said, or a slot had a bad
            // buffer index: nothing is published from these slots.
            return Encap::Refused(Refusal::Copy);
        };
        k.rhead = advance(k.rhead, used, k.num_slots);
        k.rcur = k.rhead;
        Encap::Sent { csum: vhdr.flags != 0, tso: vhdr.gso_type != 0 }
    }
}

/// The first bytes of the frame as it goes on the wire (with the 802.1Q
/// tag the driver inserts, if any); returns how many were filled.
fn wire_prefix<P: TxPacket>(p: &P, vlan: Option<u16>, out: &mut [u8; MAX_HDR]) -> usize {
    let Some(tag) = vlan else { return p.peek(out) };
    let (macs, rest) = out.split_at_mut(12);
    if p.peek(macs) < 12 {
        return 0;
    }
    let (tci, inner) = rest.split_at_mut(4);
    let [t0, t1] = tag.to_be_bytes();
    let [v0, v1] = ETHERTYPE_VLAN.to_be_bytes();
    tci.copy_from_slice(&[v0, v1, t0, t1]);
    // The rest of the frame, from offset 12, after the tag.
    let mut raw = [0u8; MAX_HDR];
    let n = p.peek(&mut raw);
    let tail = raw.get(12..n).unwrap_or(&[]);
    let m = tail.len().min(inner.len());
    if let (Some(d), Some(s)) = (inner.get_mut(..m), tail.get(..m)) {
        d.copy_from_slice(s);
    }
    16usize.saturating_add(m)
}
