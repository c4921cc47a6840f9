//! A host netmap port (VALE port or pipe endpoint): its `netmap_if`, its
//! rings in host memory, the kernel-private ring state ("krings"), and the
//! hook through which whoever serves a ring (a passed-through port's sync
//! kloop, the TAP bridge) is notified.

use super::mem::HostMemory;
use ptnet::abi::netmap::{NetmapIf, NetmapRing, NETMAP_API};
use ptnet::kring::{prev, Dir, Kring};
use ptnet::layout::RingLayout;
use ptnet::net::frame::FrameInfo;
use ptnet::net::gso::emit_frame;
use ptnet::slots::RingSink;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The host kernel's state of one ring: netmap's `netmap_kring` pointers,
/// plus `rtail`, the tail last reported to the guest.
#[derive(Debug, Clone, Copy)]
pub struct HostKring {
    /// `nr_hwcur`, `nr_hwtail`, `rhead`, `rcur`.
    pub k: Kring,
    /// Tail as last published in the CSB.
    pub rtail: u32,
}

/// A ring of a host port.
pub struct HostRing {
    /// Direction.
    pub dir: Dir,
    /// Index within its direction.
    pub idx: u32,
    /// The ring in host memory.
    pub ring: RingLayout,
    /// Kernel-private pointers.
    pub kring: Mutex<HostKring>,
    /// Serialises forwarders filling this (RX) ring. A forwarder reserves
    /// the free slots under the kring lock, copies into them holding only
    /// this lock, and publishes the new tail under the kring lock again,
    /// so the ring's own sync is never blocked behind a copy.
    pub fwd: Mutex<()>,
    /// Whoever serves this ring: the sync kloop while the port is passed
    /// through, or a host-side user such as the TAP bridge.
    waker: RwLock<Option<Arc<dyn Waker>>>,
    /// Packets dropped at this ring (destination full, bad slots).
    pub drops: AtomicU64,
}

impl HostRing {
    /// Wakes whoever serves this ring (netmap's `nm_notify`).
    pub fn notify(&self) {
        let w = self.waker.read().unwrap().clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Sets (or clears) who serves this ring.
    pub fn set_waker(&self, w: Option<Arc<dyn Waker>>) {
        *self.waker.write().unwrap() = w;
    }
}

/// Something that serves a ring and wants to hear when it has work.
pub trait Waker: Send + Sync {
    /// The ring has work (packets delivered, slots freed, a guest kick).
    fn wake(&self);
}

/// A ring that must be notified once the caller has released its locks.
pub type NotifyList = Vec<(Arc<NmPort>, Dir, u32)>;

/// What a port does on txsync and rxsync (netmap's `nm_sync` callbacks).
pub trait Backend: Send + Sync {
    /// Consumes `[hwcur, rhead)` of TX ring `ring` and updates the kring.
    fn txsync(&self, port: &Arc<NmPort>, ring: &HostRing, k: &mut HostKring, notify: &mut NotifyList);
    /// Takes back `[hwcur, rhead)` of RX ring `ring` and updates the kring.
    fn rxsync(&self, port: &Arc<NmPort>, ring: &HostRing, k: &mut HostKring, notify: &mut NotifyList);
}

/// A host netmap port.
pub struct NmPort {
    /// Port name (`vale0:1`, `pipe{1`, ...).
    pub name: String,
    /// The allocator the port's rings and buffers live in.
    pub mem: Arc<HostMemory>,
    /// Offset of the port's `netmap_if`.
    pub nifp_ofs: usize,
    /// TX rings.
    pub tx: Vec<HostRing>,
    /// RX rings.
    pub rx: Vec<HostRing>,
    /// virtio-net header length the port's users exchange (0, 10, 12).
    pub vnet_hdr_len: AtomicU32,
    /// The port's datapath.
    pub backend: Box<dyn Backend>,
}

/// Geometry of a port.
#[derive(Debug, Clone, Copy)]
pub struct PortConfig {
    /// Ring pairs.
    pub rings: u32,
    /// Slots per ring.
    pub slots: u32,
}

impl NmPort {
    /// The buffer ledger: every slot of every ring of the port holds a
    /// valid buffer, and no buffer twice (a host that lost or duplicated
    /// one would corrupt traffic for good). Returns how many were checked.
    pub fn buffers_intact(&self) -> Result<usize, String> {
        let pool = self.mem.buf_pool;
        let mut seen = std::collections::HashSet::new();
        for r in self.tx.iter().chain(&self.rx) {
            for j in 0..r.ring.num_slots {
                let b = r.ring.slot_buf_idx(j).ok_or("slot outside its ring")?;
                if !(ptnet::layout::FIRST_VALID_BUF..pool.objnum).contains(&b) {
                    return Err(format!(
                        "{} {} ring {}: slot {j} holds buffer {b}, outside the pool",
                        self.name, r.dir, r.idx
                    ));
                }
                if !seen.insert(b) {
                    return Err(format!("{} {} ring {}: buffer {b} held twice", self.name, r.dir, r.idx));
                }
            }
        }
        Ok(seen.len())
    }

    /// Creates a port in `mem`: writes its `netmap_if` and rings as netmap
    /// does at registration, each slot owning a buffer. With `mirror_of`
    /// (the other end of a pipe, in the same memory), slot `i` of each ring
    /// starts with the buffer of slot `i` of the peer's ring of the opposite
    /// direction, because a pipe moves packets by copying slot descriptors
    /// between mirrored rings.
    pub fn create(
        name: &str,
        mem: Arc<HostMemory>,
        cfg: PortConfig,
        mirror_of: Option<&NmPort>,
        backend: Box<dyn Backend>,
    ) -> Arc<Self> {
        let region = mem.region();
        let nifp_ofs = mem.alloc_if().expect("netmap_if pool exhausted");
        let mut name_bytes = [0u8; 16];
        for (d, s) in name_bytes.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        region.write_bytes(nifp_ofs, &name_bytes).unwrap();
        let w32 = |field: usize, v: u32| region.store_u32(nifp_ofs + field, v).unwrap();
        w32(offset_of!(NetmapIf, ni_version), NETMAP_API);
        w32(offset_of!(NetmapIf, ni_tx_rings), cfg.rings);
        w32(offset_of!(NetmapIf, ni_rx_rings), cfg.rings);
        w32(offset_of!(NetmapIf, ni_host_tx_rings), 0);
        w32(offset_of!(NetmapIf, ni_host_rx_rings), 0);

        let make = |dir: Dir, idx: u32| -> HostRing {
            let ofs = mem.alloc_ring().expect("ring pool exhausted");
            let n = cfg.slots;
            let bytes = RingLayout::bytes(n).unwrap();
            let rr = region.sub(ofs, bytes).unwrap();
            let ring = RingLayout { dir, ofs, region: rr, num_slots: n };
            let h32 = |field: usize, v: u32| rr.store_u32(field, v).unwrap();
            rr.store_u64(offset_of!(NetmapRing, buf_ofs), (mem.buf_pool.ofs as i64 - ofs as i64) as u64).unwrap();
            h32(offset_of!(NetmapRing, num_slots), n);
            h32(offset_of!(NetmapRing, nr_buf_size), mem.buf_pool.objsize);
            rr.store_u16(offset_of!(NetmapRing, ringid), idx as u16).unwrap();
            let d = if dir == Dir::Tx { NetmapRing::DIR_TX } else { NetmapRing::DIR_RX };
            rr.store_u16(offset_of!(NetmapRing, dir), d).unwrap();
            let kring = Kring::new(dir, n);
            h32(offset_of!(NetmapRing, head), kring.rhead);
            h32(offset_of!(NetmapRing, cur), kring.rcur);
            h32(offset_of!(NetmapRing, tail), kring.hwtail);
            for i in 0..n {
                let buf = match mirror_of {
                    Some(peer) => {
                        let other = if dir == Dir::Tx { Dir::Rx } else { Dir::Tx };
                        peer.ring(other, idx).unwrap().ring.slot_buf_idx(i).unwrap()
                    }
                    None => mem.alloc_buf().expect("buffer pool exhausted"),
                };
                ring.set_slot_buf_idx(i, buf).unwrap();
                ring.set_slot(i, mem.buf_pool.objsize.min(u16::MAX as u32) as u16, 0).unwrap();
            }
            let ring_ofs_entry = |k: u32| nifp_ofs + NetmapIf::RING_OFS_OFFSET + 8 * k as usize;
            let k = if dir == Dir::Tx { idx } else { cfg.rings + idx };
            region.store_u64(ring_ofs_entry(k), (ofs as i64 - nifp_ofs as i64) as u64).unwrap();
            HostRing {
                dir,
                idx,
                ring,
                kring: Mutex::new(HostKring { k: kring, rtail: kring.hwtail }),
                fwd: Mutex::new(()),
                waker: RwLock::new(None),
                drops: AtomicU64::new(0),
            }
        };
        let tx = (0..cfg.rings).map(|i| make(Dir::Tx, i)).collect();
        let rx = (0..cfg.rings).map(|i| make(Dir::Rx, i)).collect();
        Arc::new(Self { name: name.to_string(), mem, nifp_ofs, tx, rx, vnet_hdr_len: AtomicU32::new(0), backend })
    }

    /// Ring `idx` of direction `dir`.
    pub fn ring(&self, dir: Dir, idx: u32) -> Option<&HostRing> {
        match dir {
            Dir::Tx => self.tx.get(idx as usize),
            Dir::Rx => self.rx.get(idx as usize),
        }
    }

    /// Slots per ring.
    pub fn num_slots(&self, dir: Dir) -> u32 {
        self.ring(dir, 0).map_or(0, |r| r.ring.num_slots)
    }

    /// Puts raw frames (each starting with this port's virtio-net header
    /// bytes, whatever they say) into RX ring `ring` as a forwarder would,
    /// and notifies whoever serves it. Returns how many fitted. Tests and
    /// the hostile-host mode use it to hand a guest arbitrary input.
    pub fn inject(&self, ring: u32, frames: &[Vec<u8>]) -> usize {
        let Some(r) = self.rx.get(ring as usize) else { return 0 };
        let bufs = self.mem.buffers();
        let delivered = {
            let _lease = r.fwd.lock().unwrap();
            let (tail, space) = {
                let k = r.kring.lock().unwrap();
                (k.k.hwtail, rx_space(&k.k))
            };
            let mut sink = RingSink::new(&r.ring, &bufs, tail, space);
            for f in frames {
                emit_frame(f.as_slice(), &mut sink, &FrameInfo::default(), None);
            }
            r.kring.lock().unwrap().k.hwtail = sink.tail;
            sink.delivered as usize
        };
        r.notify();
        delivered
    }

    /// Total drops over all rings.
    pub fn drops(&self) -> u64 {
        self.tx.iter().chain(&self.rx).map(|r| r.drops.load(Ordering::Relaxed)).sum()
    }
}

/// Free slots the host may fill in an RX kring.
pub fn rx_space(k: &Kring) -> u32 {
    ptnet::kring::cyclic_dist(k.hwtail, prev(k.hwcur, k.num_slots), k.num_slots)
}

/// Runs the notifications collected while locks were held.
pub fn fire(list: &mut NotifyList) {
    for (port, dir, idx) in list.drain(..) {
        if let Some(r) = port.ring(dir, idx) {
            r.notify();
        }
    }
}
