//! The harness kernel's interfaces as a stack and a netmap application
//! see them: [`HkIf`] sends through `if_transmit` (mbuf chains built as
//! FreeBSD's stack builds them) and receives what `if_input` delivered,
//! for the simulator's stacks ([`Nic`]); [`NmRing`] is an application's
//! mapping of a netmap ring (`netmap_user.h`).

use super::host::{HkPkt, Received};
use super::Kernel;
use ptnet::abi::netmap::{NetmapRing, NetmapSlot};
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::tx::TxError;
use ptnet_host_sim::guest::ifnet::{InputQueue, SimPacket};
use ptnet_host_sim::guest::nic::Nic;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `M_HASHTYPE_OPAQUE` (sys/mbuf.h).
const M_HASHTYPE_OPAQUE: u8 = 0x3f;
/// Bytes the stack puts in the packet-header mbuf: Ethernet, IP and TCP
/// headers (tcp_output() builds them there, the payload in clusters).
const HDR_MBUF: usize = 66;
/// Payload per cluster (MCLBYTES).
const CLUSTER: usize = 2048;

/// An interface of the harness kernel.
pub struct HkIf {
    k: Arc<Kernel>,
    /// Interface name (`ptnrs0`).
    pub name: String,
    mtu: AtomicU32,
    capenable: AtomicU32,
    hwassist: AtomicU64,
    /// Packets the stack handed to `if_transmit` that were refused.
    pub refused: AtomicU64,
    /// What the received mbufs carried.
    pub rx: RxMbufStats,
}

/// What the stack saw on the mbufs `if_input` delivered.
#[derive(Debug, Default)]
pub struct RxMbufStats {
    /// Frames.
    pub frames: AtomicU64,
    /// With the data checksum verified (`CSUM_DATA_VALID | CSUM_PSEUDO_HDR`,
    /// `csum_data` 0xffff, as tcp_input() and udp_input() take it).
    pub csum_valid: AtomicU64,
    /// Claiming a verified checksum some other way (wrong for FreeBSD's
    /// stack: it would check the wrong thing or nothing).
    pub csum_malformed: AtomicU64,
    /// Large-receive frames (`lro_nsegs` > 1).
    pub lro: AtomicU64,
    /// Frames spread over several mbufs.
    pub chains: AtomicU64,
    /// Frames without a flow hash type (`M_HASHTYPE_NONE`).
    pub unhashed: AtomicU64,
}

impl RxMbufStats {
    fn count(&self, r: &Received) {
        let m = &r.meta;
        let valid = CsumFlags::L4_VALID | CsumFlags::L4_CALC;
        let f = CsumFlags::from_bits_truncate(m.csum_flags);
        self.frames.fetch_add(1, Ordering::Relaxed);
        if f.contains(valid) && m.csum_data == 0xffff {
            self.csum_valid.fetch_add(1, Ordering::Relaxed);
        } else if f.intersects(valid) {
            self.csum_malformed.fetch_add(1, Ordering::Relaxed);
        }
        if m.lro_nsegs > 1 {
            self.lro.fetch_add(1, Ordering::Relaxed);
        }
        if m.nsegs > 1 {
            self.chains.fetch_add(1, Ordering::Relaxed);
        }
        if m.hashtype == 0 {
            self.unhashed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl HkIf {
    /// The interface `name` of kernel `k`.
    pub fn new(k: Arc<Kernel>, name: &str) -> Arc<Self> {
        let i = Arc::new(Self {
            k,
            name: name.to_string(),
            mtu: AtomicU32::new(1500),
            capenable: AtomicU32::new(0),
            hwassist: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            rx: RxMbufStats::default(),
        });
        i.refresh();
        i
    }

    /// Reads the MTU and offloads in effect again (after `ifconfig`).
    pub fn refresh(&self) {
        if let Ok(i) = self.k.ifconfig(&self.name) {
            self.mtu.store(i.mtu, Ordering::Relaxed);
            self.capenable.store(i.capenable as u32, Ordering::Relaxed);
            self.hwassist.store(i.hwassist, Ordering::Relaxed);
        }
    }

    /// Takes the frames `if_input` delivered so far, with their mbufs'
    /// metadata.
    pub fn take_received(&self) -> Vec<Received> {
        let mut g = self.k.host.rx.frames.lock().unwrap();
        g.get_mut(&self.name).map(|q| q.drain(..).collect()).unwrap_or_default()
    }
}

impl Nic for HkIf {
    fn if_up(&self) -> Result<(), String> {
        self.k.enter("stack");
        match self.k.ifconfig_updown(&self.name, true) {
            0 => {
                self.refresh();
                Ok(())
            }
            e => Err(format!("ifconfig {} up: error {e}", self.name)),
        }
    }

    fn transmit(&self, p: SimPacket) -> Result<(), TxError> {
        self.k.enter("stack");
        let meta = HkPkt {
            csum_flags: p.req.csum_flags.bits(),
            tso_segsz: p.req.tso_segsz,
            vtag: p.req.vlan.unwrap_or(0),
            has_vlan: u8::from(p.req.vlan.is_some()),
            flowid: p.req.flowid.unwrap_or(0),
            hashtype: if p.req.flowid.is_some() { M_HASHTYPE_OPAQUE } else { 0 },
            ..HkPkt::default()
        };
        match self.k.if_output(&self.name, &p.data, &meta, HDR_MBUF, CLUSTER) {
            0 => Ok(()),
            e => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(if e == libc::ENOBUFS { TxError::QueueFull } else { TxError::Down })
            }
        }
    }

    fn service(&self, input: &mut InputQueue, budget: u32) -> bool {
        let mut g = self.k.host.rx.frames.lock().unwrap();
        let Some(q) = g.get_mut(&self.name) else { return false };
        for _ in 0..budget {
            if !input.has_room() {
                break;
            }
            match q.pop_front() {
                Some(r) => {
                    self.rx.count(&r);
                    input.push(r.frame)
                }
                None => break,
            }
        }
        !q.is_empty() && input.has_room()
    }

    fn mtu(&self) -> u32 {
        self.mtu.load(Ordering::Relaxed)
    }

    fn enabled(&self) -> IfCap {
        IfCap::from_bits_truncate(self.capenable.load(Ordering::Relaxed))
    }

    fn hwassist(&self) -> CsumFlags {
        CsumFlags::from_bits_truncate(self.hwassist.load(Ordering::Relaxed) as u32)
    }

    fn idle_token(&self) -> u64 {
        self.k.host.rx.seq.load(Ordering::Acquire)
    }

    fn idle(&self, token: u64, timeout: Duration) {
        let rx = &self.k.host.rx;
        let g = rx.frames.lock().unwrap();
        if rx.seq.load(Ordering::Acquire) == token {
            let _ = rx.cv.wait_timeout(g, timeout).unwrap();
        }
    }
}

/// A netmap ring as an application maps it.
#[derive(Clone, Copy)]
pub struct NmRing {
    r: *mut NetmapRing,
}

impl NmRing {
    /// The ring at `r`.
    ///
    /// # Safety
    /// `r` is a ring of an open netmap descriptor, used while it is open.
    pub unsafe fn new(r: *mut std::ffi::c_void) -> Self {
        Self { r: r.cast() }
    }

    fn field(&self, off: usize) -> *mut u32 {
        // SAFETY: `off` is a field offset inside the ring header.
        unsafe { self.r.cast::<u8>().add(off).cast() }
    }

    fn get(&self, off: usize) -> u32 {
        // SAFETY: a 4-byte field of the live ring; the kernel writes it
        // concurrently, as an application's mapping sees it.
        unsafe { std::ptr::read_volatile(self.field(off)) }
    }

    fn set(&self, off: usize, v: u32) {
        // SAFETY: as above; head and cur are the application's to write.
        unsafe { std::ptr::write_volatile(self.field(off), v) }
    }

    /// `num_slots`.
    pub fn num_slots(&self) -> u32 {
        self.get(offset_of!(NetmapRing, num_slots))
    }

    /// `head`.
    pub fn head(&self) -> u32 {
        self.get(offset_of!(NetmapRing, head))
    }

    /// `cur`.
    pub fn cur(&self) -> u32 {
        self.get(offset_of!(NetmapRing, cur))
    }

    /// `tail`.
    pub fn tail(&self) -> u32 {
        self.get(offset_of!(NetmapRing, tail))
    }

    /// Sets `head` and `cur` (hands slots to the kernel).
    pub fn advance(&self, to: u32) {
        self.set(offset_of!(NetmapRing, cur), to);
        self.set(offset_of!(NetmapRing, head), to);
    }

    /// `nm_ring_space()`.
    pub fn space(&self) -> u32 {
        let (c, t, n) = (self.cur(), self.tail(), self.num_slots());
        if t >= c {
            t - c
        } else {
            t + n - c
        }
    }

    /// `nm_ring_next()`.
    pub fn next(&self, i: u32) -> u32 {
        if i + 1 == self.num_slots() {
            0
        } else {
            i + 1
        }
    }

    fn slot(&self, i: u32) -> *mut NetmapSlot {
        // SAFETY: the slots follow the header; `i` < num_slots (callers
        // use ring indices).
        unsafe { self.r.cast::<u8>().add(NetmapRing::SLOTS_OFFSET).cast::<NetmapSlot>().add(i as usize) }
    }

    /// `slot[i].len`.
    pub fn len(&self, i: u32) -> u16 {
        // SAFETY: a slot of the live ring.
        unsafe { std::ptr::read_volatile(&(*self.slot(i)).len) }
    }

    /// `slot[i].flags`.
    pub fn flags(&self, i: u32) -> u16 {
        // SAFETY: as above.
        unsafe { std::ptr::read_volatile(&(*self.slot(i)).flags) }
    }

    /// Sets `slot[i].len` and `flags`.
    pub fn set_len_flags(&self, i: u32, len: u16, flags: u16) {
        // SAFETY: as above; the slot is the application's (head..tail).
        unsafe {
            std::ptr::write_volatile(&mut (*self.slot(i)).len, len);
            std::ptr::write_volatile(&mut (*self.slot(i)).flags, flags);
        }
    }

    /// `NETMAP_BUF(ring, slot[i].buf_idx)` and its size.
    fn buf(&self, i: u32) -> (*mut u8, usize) {
        // SAFETY: the buffer of a slot of the live ring: buf_ofs and the
        // index come from the kernel's allocator, nr_buf_size bytes each.
        unsafe {
            let idx = std::ptr::read_volatile(&(*self.slot(i)).buf_idx) as usize;
            let size = self.get(offset_of!(NetmapRing, nr_buf_size)) as usize;
            let ofs = std::ptr::read_volatile(&(*self.r).buf_ofs);
            (self.r.cast::<u8>().offset(ofs as isize).add(idx * size), size)
        }
    }

    /// Writes `data` at `off` in slot `i`'s buffer (clipped to the buffer).
    pub fn write(&self, i: u32, off: usize, data: &[u8]) {
        let (p, size) = self.buf(i);
        let n = data.len().min(size.saturating_sub(off));
        // SAFETY: `off + n` is within the slot's buffer, which the
        // application owns between head and tail.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(off), n) };
    }

    /// The first `len` bytes of slot `i`'s buffer (clipped to the buffer).
    pub fn read(&self, i: u32, len: usize) -> Vec<u8> {
        let (p, size) = self.buf(i);
        // SAFETY: as in `write`.
        unsafe { std::slice::from_raw_parts(p, len.min(size)) }.to_vec()
    }
}
