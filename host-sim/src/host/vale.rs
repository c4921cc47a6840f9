//! A VALE-like learning switch: ports are host netmap ports; a TX sync on
//! one port forwards its packets, by copy, into the RX rings of the
//! destination ports, learning source addresses as it goes.
//!
//! As in netmap's VALE: the destination comes from a hash table of learned
//! MAC addresses (unknown, broadcast and multicast destinations are flooded
//! to every other port), a packet from TX ring `r` lands in RX ring
//! `r % nrings` of its destination (broadcasts in ring 0), a packet that
//! does not fit in the destination ring is dropped and counted (VALE has no
//! back-pressure), and the sender's TX slots are completed at once.

use super::mem::HostMemory;
use super::port::{rx_space, Backend, HostKring, HostRing, NmPort, NotifyList, PortConfig};
use ptnet::abi::netmap::{SlotFlags, NETMAP_MAX_FRAGS};
use ptnet::abi::vnet::VirtioNetHdr;
use ptnet::kring::{next, prev};
use ptnet::layout::Buffers;
use ptnet::net::frame::{Frags, FrameInfo, FrameSource};
use ptnet::net::gso::{complete_csum, emit_frame, segment_tcp};
use ptnet::net::hdr;
use ptnet::net::offload::{rx_interpret, RxCsum, RxOffload};
use ptnet::shmem::SharedRegion;
use ptnet::slots::RingSink;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

const HASH_SIZE: usize = 1024;
const BROADCAST: u16 = u16::MAX;
const ETH_HDR: usize = 14;

/// Switch counters.
#[derive(Debug, Default)]
pub struct ValeStats {
    /// Packets delivered to a destination port (one per copy).
    pub delivered: AtomicU64,
    /// Packets dropped because the destination ring was full.
    pub dropped_full: AtomicU64,
    /// Packets dropped because their slots were invalid (bad buffer index,
    /// bad length, too many fragments, runt frame).
    pub dropped_bad: AtomicU64,
}

/// The switch.
pub struct Vale {
    /// Switch name (`vale0`).
    pub name: String,
    ports: RwLock<Vec<Arc<NmPort>>>,
    table: Box<[AtomicU64]>,
    /// Counters.
    pub stats: ValeStats,
}

struct ValePort {
    sw: Weak<Vale>,
    port_no: u16,
    last_smac: AtomicU64,
}

/// One packet of a TX batch: its slots, destination, and its first
/// fragment's buffer and length (looked up once, when classified).
#[derive(Clone, Copy)]
struct Fwd {
    first: u32,
    frags: u32,
    dst: u16,
    len: u16,
    buf: SharedRegion,
}

/// What scanning the TX ring from one slot found.
enum Scan {
    /// The packet's last fragment is not in `[hwcur, head)` yet.
    Incomplete,
    /// A packet ending before slot `next`; `None` when it must be dropped.
    Packet { next: u32, fwd: Option<Fwd> },
}

thread_local! {
    static BATCH: RefCell<Vec<Fwd>> = const { RefCell::new(Vec::new()) };
}

fn mac_hash(mac: u64) -> usize {
    // Multiplicative hashing of the 48-bit address.
    ((mac.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 54) as usize % HASH_SIZE
}

fn mac_of(b: &[u8]) -> u64 {
    b.iter().take(6).fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

impl Vale {
    /// A switch with no ports.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            ports: RwLock::new(Vec::new()),
            table: (0..HASH_SIZE).map(|_| AtomicU64::new(0)).collect(),
            stats: ValeStats::default(),
        })
    }

    /// Creates a port (`vale0:<name>`) in its own memory allocator.
    pub fn attach(self: &Arc<Self>, name: &str, mem: Arc<HostMemory>, cfg: PortConfig) -> Arc<NmPort> {
        let mut ports = self.ports.write().unwrap();
        let port_no = ports.len() as u16;
        let backend = ValePort { sw: Arc::downgrade(self), port_no, last_smac: AtomicU64::new(u64::MAX) };
        let full = format!("{}:{}", self.name, name);
        let port = NmPort::create(&full, mem, cfg, None, Box::new(backend));
        ports.push(port.clone());
        port
    }

    /// Ports in attach order.
    pub fn ports(&self) -> Vec<Arc<NmPort>> {
        self.ports.read().unwrap().clone()
    }

    fn learn(&self, mac: u64, port: u16) {
        self.table[mac_hash(mac)].store((mac << 16) | (u64::from(port) + 1), Ordering::Relaxed);
    }

    fn lookup(&self, mac: u64) -> u16 {
        let e = self.table[mac_hash(mac)].load(Ordering::Relaxed);
        if e != 0 && e >> 16 == mac {
            ((e & 0xffff) - 1) as u16
        } else {
            BROADCAST
        }
    }
}

impl ValePort {
    /// Walks the packet starting at slot `first`, validating every
    /// fragment, and finds its destination.
    fn scan(&self, sw: &Vale, src: &NmPort, ring: &HostRing, bufs: &Buffers, first: u32, head: u32) -> Scan {
        let r = &ring.ring;
        let (mut j, mut frags, mut valid) = (first, 0u32, true);
        let mut head_frag = None;
        loop {
            frags += 1;
            let len = r.slot_len(j).unwrap_or(u16::MAX);
            let flags = r.slot_flags(j).unwrap_or(0);
            let buf = r.slot_buf_idx(j).and_then(|i| bufs.get(i));
            match buf {
                Some(b) if u32::from(len) <= bufs.buf_size() => {
                    if head_frag.is_none() {
                        head_frag = Some((b, len));
                    }
                }
                _ => valid = false,
            }
            j = next(j, r.num_slots);
            if flags & SlotFlags::MOREFRAG.bits() == 0 {
                break;
            }
            if j == head {
                return Scan::Incomplete;
            }
        }
        let fwd = (|| {
            let (buf, len) = head_frag.filter(|_| valid && frags as usize <= NETMAP_MAX_FRAGS)?;
            let hdr = src.vnet_hdr_len.load(Ordering::Relaxed) as usize;
            if (len as usize) < hdr + ETH_HDR {
                return None;
            }
            let mut eth = [0u8; 12];
            buf.read_bytes(hdr, &mut eth).ok()?;
            let (dmac, smac) = (mac_of(&eth[..6]), mac_of(&eth[6..]));
            if eth[6] & 1 == 0 && self.last_smac.load(Ordering::Relaxed) != smac {
                self.last_smac.store(smac, Ordering::Relaxed);
                sw.learn(smac, self.port_no);
            }
            let dst = if eth[0] & 1 == 0 { sw.lookup(dmac) } else { BROADCAST };
            Some(Fwd { first, frags, dst, len, buf })
        })();
        Scan::Packet { next: j, fwd }
    }
}

/// Copies packets from TX ring `src` into RX ring `dst`: reserves the
/// free slots, copies without holding the kring lock, publishes the new
/// tail. Packets that do not fit are dropped. Returns (delivered, dropped).
fn forward(
    src: &HostRing,
    src_bufs: &Buffers,
    pkts: &[Fwd],
    dst: &HostRing,
    dst_bufs: &Buffers,
    hdrs: (usize, usize),
) -> (u64, u64) {
    let _lease = dst.fwd.lock().unwrap();
    if hdrs.0 != hdrs.1 {
        return forward_converting(src, src_bufs, pkts, dst, dst_bufs, hdrs);
    }
    let (mut tail, mut space) = {
        let k = dst.kring.lock().unwrap();
        (k.k.hwtail, rx_space(&k.k))
    };
    let (s, d) = (&src.ring, &dst.ring);
    let (mut delivered, mut dropped) = (0, 0);
    let mut refreshed = false;
    for p in pkts {
        if space < p.frags && !refreshed {
            // The ring looks full: publish what was delivered and let the
            // ring's RX processing pick up slots the guest has released
            // since it last ran, then look again.
            refreshed = true;
            dst.kring.lock().unwrap().k.hwtail = tail;
            dst.notify();
            let k = dst.kring.lock().unwrap();
            (tail, space) = (k.k.hwtail, rx_space(&k.k));
        }
        if space < p.frags {
            dropped += 1;
            continue;
        }
        let mut j = p.first;
        for f in 0..p.frags {
            let (sb, len) = if f == 0 {
                (Some(p.buf), p.len)
            } else {
                (s.slot_buf_idx(j).and_then(|i| src_bufs.get(i)), s.slot_len(j).unwrap_or(0))
            };
            let copied = (|| {
                let sb = sb?;
                let db = dst_bufs.get(d.slot_buf_idx(tail)?)?;
                (u32::from(len) <= dst_bufs.buf_size()).then_some(())?;
                db.copy_from_region(0, &sb, 0, len as usize).ok()
            })();
            let more = if f + 1 < p.frags { SlotFlags::MOREFRAG.bits() } else { 0 };
            d.set_slot(tail, if copied.is_some() { len } else { 0 }, more);
            tail = next(tail, d.num_slots);
            j = next(j, s.num_slots);
        }
        space -= p.frags;
        delivered += 1;
    }
    if delivered > 0 {
        dst.kring.lock().unwrap().k.hwtail = tail;
    }
    (delivered, dropped)
}

/// Forwarding between ports that disagree on the virtio-net header (as
/// netmap's `bdg_mismatch_datapath`): a header is added (zeroed) or
/// resized, or removed, in which case what it asked for is done in
/// software first: a GSO super-packet is segmented, a partial checksum
/// completed. A header that does not describe its frame drops the frame.
fn forward_converting(
    src: &HostRing,
    src_bufs: &Buffers,
    pkts: &[Fwd],
    dst: &HostRing,
    dst_bufs: &Buffers,
    (src_hdr, dst_hdr): (usize, usize),
) -> (u64, u64) {
    let (tail, space) = {
        let k = dst.kring.lock().unwrap();
        (k.k.hwtail, rx_space(&k.k))
    };
    let mut sink = RingSink::new(&dst.ring, dst_bufs, tail, space);
    let mut bad = 0u64;
    for p in pkts {
        let mut frags = Frags::new(src_bufs, src_hdr);
        let mut j = p.first;
        for _ in 0..p.frags {
            let (b, l) = (src.ring.slot_buf_idx(j).unwrap_or(0), src.ring.slot_len(j).unwrap_or(0));
            frags.push(b, l);
            j = next(j, src.ring.num_slots);
        }
        let mut raw = [0u8; 12];
        let vhdr = (src_hdr > 0 && frags.read_raw(0, &mut raw[..src_hdr])).then(|| VirtioNetHdr::from_le_bytes(&raw));
        let offload = match vhdr.map(|h| rx_interpret(&h, frags.len())) {
            Some(Ok(o)) => Some(o),
            Some(Err(_)) => {
                bad += 1;
                continue;
            }
            None => None,
        };
        if dst_hdr > 0 {
            // Keep the flags, GSO fields and checksum position; the 12-byte
            // form's num_buffers is 0.
            let h = vhdr.unwrap_or_default().to_le_bytes();
            sink.set_prefix(&h[..dst_hdr]);
            emit_frame(&frags, &mut sink, &FrameInfo::default(), None);
            continue;
        }
        let mut hb = [0u8; hdr::MAX_HDR];
        let n = frags.len().min(hdr::MAX_HDR);
        let parsed = frags.read(0, &mut hb[..n]).then(|| hdr::parse(&hb[..n], frags.len()).ok()).flatten();
        let ok = match offload {
            Some(RxOffload { gso: Some(g), .. }) => match parsed {
                Some(h) => segment_tcp(&frags, &h, g.mss, &FrameInfo::default(), &mut sink).is_ok(),
                None => false,
            },
            Some(RxOffload { csum: RxCsum::Partial { start, offset }, .. }) => {
                let patch = complete_csum(&frags, start, offset);
                patch.is_some() && {
                    emit_frame(&frags, &mut sink, &FrameInfo::default(), patch);
                    true
                }
            }
            _ => {
                emit_frame(&frags, &mut sink, &FrameInfo::default(), None);
                true
            }
        };
        if !ok {
            bad += 1;
        }
    }
    if sink.delivered > 0 {
        dst.kring.lock().unwrap().k.hwtail = sink.tail;
    }
    (u64::from(sink.delivered), u64::from(sink.dropped) + bad)
}

impl Backend for ValePort {
    fn txsync(&self, port: &Arc<NmPort>, ring: &HostRing, k: &mut HostKring, notify: &mut NotifyList) {
        let Some(sw) = self.sw.upgrade() else { return };
        let ports = sw.ports.read().unwrap();
        let bufs = port.mem.buffers();
        let r = &ring.ring;
        let n = r.num_slots;
        BATCH.with_borrow_mut(|batch| {
            batch.clear();
            // Split [hwcur, rhead) into packets; an unfinished packet (last
            // slot with MOREFRAG) waits for the next sync.
            let mut j = k.k.hwcur;
            while j != k.k.rhead {
                match self.scan(&sw, port, ring, &bufs, j, k.k.rhead) {
                    Scan::Incomplete => break,
                    Scan::Packet { next, fwd } => {
                        match fwd {
                            Some(f) if f.dst != self.port_no => batch.push(f),
                            Some(_) => {}
                            None => {
                                sw.stats.dropped_bad.fetch_add(1, Ordering::Relaxed);
                                ring.drops.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        j = next;
                    }
                }
            }
            k.k.hwcur = j;
            k.k.hwtail = prev(j, n);

            // Deliver to each destination port, one ring lease per run of
            // packets bound to the same ring.
            let (mut delivered, mut full) = (0u64, 0u64);
            let mut run: Vec<Fwd> = Vec::new();
            for (d, dport) in ports.iter().enumerate() {
                let d = d as u16;
                if d == self.port_no {
                    continue;
                }
                let dbufs = dport.mem.buffers();
                let nrx = dport.rx.len() as u32;
                let mut touched = 0u64;
                let mut pkts = batch.iter().filter(|p| p.dst == d || p.dst == BROADCAST).peekable();
                while let Some(first) = pkts.next() {
                    let rid_of = |p: &Fwd| {
                        if p.dst == BROADCAST {
                            0
                        } else {
                            ring.idx % nrx
                        }
                    };
                    let rid = rid_of(first);
                    run.clear();
                    run.push(*first);
                    while let Some(p) = pkts.next_if(|p| rid_of(p) == rid) {
                        run.push(*p);
                    }
                    let dring = &dport.rx[rid as usize];
                    let hdrs = (
                        port.vnet_hdr_len.load(Ordering::Relaxed) as usize,
                        dport.vnet_hdr_len.load(Ordering::Relaxed) as usize,
                    );
                    let (ok, dropped) = forward(ring, &bufs, &run, dring, &dbufs, hdrs);
                    delivered += ok;
                    full += dropped;
                    dring.drops.fetch_add(dropped, Ordering::Relaxed);
                    if ok > 0 {
                        touched |= 1 << rid;
                    }
                }
                for rid in (0..nrx).filter(|r| touched & (1 << r) != 0) {
                    notify.push((dport.clone(), ptnet::Dir::Rx, rid));
                }
            }
            sw.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
            sw.stats.dropped_full.fetch_add(full, Ordering::Relaxed);
        });
    }

    fn rxsync(&self, _port: &Arc<NmPort>, _ring: &HostRing, k: &mut HostKring, _notify: &mut NotifyList) {
        // Slots before head are free again for the forwarders.
        k.k.hwcur = k.k.rhead;
    }
}
