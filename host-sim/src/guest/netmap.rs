//! The guest's netmap layer over an attached ptnet interface, modelled on
//! netmap's native-adapter path in `sys/dev/netmap/netmap.c`, calling the
//! shim's callbacks the way netmap calls them:
//!
//! - registration (`netmap_do_regif`): `nm_config` first, the rings and
//!   buffers of netmap's allocator, then `nm_register(na, 1)` for the
//!   krings whose mode goes on (here every NIC ring: `NR_REG_ALL_NIC`);
//!   the kring state the driver returns goes into the kring and the ring's
//!   `head`/`cur`/`tail` (`ptnet_sync_from_csb()` in `if_ptnet.c`);
//! - `ioctl(NIOCTXSYNC)`/`NIOCRXSYNC` (`netmap_ioctl`): the prologue
//!   (`nm_txsync_prologue`, `nm_rxsync_prologue`), the driver's sync with
//!   `NAF_FORCE_RECLAIM` on TX, then `nm_sync_finalize` (`tail = hwtail`);
//!   `poll()` (`netmap_poll`) syncs without it and sleeps on the
//!   direction's wait queue;
//! - the interrupt (`netmap_rx_irq`): a ring in netmap mode wakes its
//!   sleepers and is not the stack's;
//! - the last close (`netmap_do_unregif`): `nm_register(na, 0)` for the
//!   krings going off.
//!
//! Two allocators, as FreeBSD has them. A stock kernel ([`NmMode::Copy`])
//! gives applications rings and buffers of netmap's own, and the driver
//! copies between those and the host's. A kernel built with
//! `WITH_PTNETMAP` ([`NmMode::ZeroCopy`]) has netmap's guest allocator map
//! the host's memory, so applications use the host's rings themselves.

use super::device::{NmError, PtnetIf};
use crate::hv::PciFunction;
use ptnet::abi::netmap::NetmapRing;
use ptnet::abi::regs::{memdev as mreg, PCI_DEVICE_ID_MEMDEV, PCI_VENDOR_ID};
use ptnet::kring::{cyclic_dist, Dir, Kring};
use ptnet::layout::{Buffers, Expected, Memdev, NetmapLayout, RingLayout};
use ptnet::shmem::SharedRegion;
use ptnet::DeviceInfo;
use ptnet_ffi::{PtnetRsKring, PtnetRsNmConfig, PtnetRsNmRing};
use ptnet_netmapc::{CKring, Ptrs};
use std::mem::offset_of;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::kernel::PciBar;
use super::wait::WaitQueue;

const HEAD: usize = offset_of!(NetmapRing, head);
const CUR: usize = offset_of!(NetmapRing, cur);
const TAIL: usize = offset_of!(NetmapRing, tail);

/// Which netmap allocator the guest kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NmMode {
    /// A stock kernel: netmap's own rings and buffers, copied to and from
    /// the host's by the driver.
    #[default]
    Copy,
    /// A kernel built with `WITH_PTNETMAP`: the host's rings and buffers.
    ZeroCopy,
    /// As `ZeroCopy`, with the guest sync of FreeBSD's C ptnet driver
    /// (`if_ptnet.c`'s `ptnet_nm_txsync`/`_rxsync`: netmap's C
    /// `netmap_pt_guest_txsync`/`_rxsync`, then a kick if they say so) in
    /// place of the Rust driver's, on the same rings and CSB: the
    /// head-to-head baseline of `bench native`.
    ZeroCopyC,
}

/// Memory of netmap's own allocator: 8-aligned, reached through raw
/// pointers only (applications map it).
struct Arena {
    words: Box<[u64]>,
}

impl Arena {
    /// Zeroed memory, every page touched now: the kernel's allocation is
    /// wired, and a first touch in the datapath would stall it.
    fn new(bytes: usize) -> Self {
        let mut words = vec![0u64; bytes.div_ceil(8)].into_boxed_slice();
        for w in words.iter_mut().step_by(512) {
            // SAFETY: `w` is a valid, aligned element of the slice.
            unsafe { std::ptr::write_volatile(w, 0) };
        }
        Self { words }
    }

    fn region(&mut self) -> SharedRegion {
        let len = self.words.len() * 8;
        let base = NonNull::new(self.words.as_mut_ptr().cast::<u8>()).expect("non-empty arena");
        // SAFETY: the arena lives as long as the `NmMem` that holds it and
        // every region made of it (they are dropped together).
        unsafe { SharedRegion::new(base, len) }
    }
}

/// The rings and buffers applications map.
struct NmMem {
    /// Every NIC ring, TX first.
    rings: Vec<RingLayout>,
    bufs: Buffers,
    /// Copy mode: the allocator's lookup table (`struct lut_entry`:
    /// `vaddr`, `paddr`) and the memory behind it all.
    lut: Vec<[u64; 2]>,
    arena: Option<Arena>,
}

// SAFETY: the regions point into memory the `NmMem` owns (or the host's,
// which outlives the interface); every access to them is a bounds-checked
// atomic-width load or store.
unsafe impl Send for NmMem {}
// SAFETY: as above.
unsafe impl Sync for NmMem {}

impl NmMem {
    /// Copy mode: rings of `info`'s geometry and one `buf_size` buffer
    /// per slot (netmap's buffers 0 and 1 are reserved, as in
    /// `netmap_mem2.c`).
    fn own(info: &DeviceInfo, buf_size: u32) -> Self {
        let geo: Vec<(Dir, u32)> = (0..info.num_tx_rings)
            .map(|_| (Dir::Tx, info.num_tx_slots))
            .chain((0..info.num_rx_rings).map(|_| (Dir::Rx, info.num_rx_slots)))
            .collect();
        let ring_bytes: Vec<usize> = geo.iter().map(|(_, n)| RingLayout::bytes(*n).expect("ring size")).collect();
        let rings_total: usize = ring_bytes.iter().map(|b| b.next_multiple_of(128)).sum();
        let nbufs = 2 + geo.iter().map(|(_, n)| *n).sum::<u32>();
        let mut arena = Arena::new(rings_total + nbufs as usize * buf_size as usize);
        let mem = arena.region();
        let pool = mem.sub(rings_total, nbufs as usize * buf_size as usize).expect("buffer pool");
        let bufs = Buffers::new(pool, nbufs, buf_size);
        let (mut ofs, mut next_buf, mut rings) = (0usize, 2u32, Vec::new());
        for ((dir, n), bytes) in geo.iter().zip(&ring_bytes) {
            let region = mem.sub(ofs, *bytes).expect("ring");
            let r = RingLayout { dir: *dir, ofs, region, num_slots: *n };
            let _ = region.store_u32(offset_of!(NetmapRing, num_slots), *n);
            let _ = region.store_u32(offset_of!(NetmapRing, nr_buf_size), buf_size);
            let d = if *dir == Dir::Tx { NetmapRing::DIR_TX } else { NetmapRing::DIR_RX };
            let _ = region.store_u16(offset_of!(NetmapRing, dir), d);
            let _ = region.store_u64(offset_of!(NetmapRing, buf_ofs), (rings_total - ofs) as u64);
            for i in 0..*n {
                r.set_slot_buf_idx(i, next_buf);
                next_buf += 1;
            }
            rings.push(r);
            ofs += bytes.next_multiple_of(128);
        }
        let lut = (0..nbufs)
            .map(|i| {
                let va = pool.as_ptr() as u64 + u64::from(i) * u64::from(buf_size);
                [va, 0]
            })
            .collect();
        Self { rings, bufs, lut, arena: Some(arena) }
    }

    /// Zero copy: the host's rings, found in its memory as netmap's guest
    /// allocator finds them (`netmap_mem_pt_guest`).
    fn host(info: &DeviceInfo, pci: &[PciFunction]) -> Option<Self> {
        let f = pci.iter().find(|f| {
            f.vendor == PCI_VENDOR_ID && f.device == PCI_DEVICE_ID_MEMDEV && f.io.read32(mreg::MEMID) == info.memid
        })?;
        let memdev = Memdev::probe(&PciBar(f.io.clone()), f.mem_bar?).ok()?;
        let exp = Expected {
            nifp_ofs: info.nifp_ofs,
            num_tx: info.num_tx_rings,
            num_rx: info.num_rx_rings,
            tx_slots: info.num_tx_slots,
            rx_slots: info.num_rx_slots,
        };
        let l = NetmapLayout::locate(memdev, exp).ok()?;
        Some(Self { rings: l.rings().collect(), bufs: l.buffers, lut: Vec::new(), arena: None })
    }

    /// What the driver needs of ring `id` to copy (copy mode only).
    fn guest(&self, id: usize) -> Option<PtnetRsNmRing> {
        self.arena.as_ref()?;
        let r = self.rings.get(id)?;
        Some(PtnetRsNmRing {
            ring: r.region.as_ptr().cast(),
            num_slots: r.num_slots,
            lut_entry_size: 16,
            lut: self.lut.as_ptr().cast(),
            objtotal: self.bufs.count(),
            objsize: self.bufs.buf_size(),
        })
    }
}

/// netmap's adapter of one interface.
pub(crate) struct NmAdapter {
    mode: NmMode,
    num_tx: u32,
    /// `NMG_LOCK` and what it guards.
    st: Mutex<NmState>,
    /// Each kring's state (its lock is netmap's `nm_kr_tryget`).
    krings: Vec<Mutex<Kring>>,
    /// Each kring's mode (`nr_mode == NKR_NETMAP_ON`), for the interrupt.
    on: Vec<AtomicBool>,
    /// `ZeroCopyC`: each ring's kring as netmap's C has it.
    c_krings: Vec<OnceLock<CKring>>,
    /// `ZeroCopyC`: the C driver's syncs and kicks.
    c_syncs: AtomicU64,
    c_kicks: AtomicU64,
    /// Sleepers in `poll()`, per direction (TX, RX): any ring's interrupt
    /// of that direction wakes them, as netmap's `selinfo`.
    waits: [WaitQueue; 2],
    pci: Vec<PciFunction>,
    info: DeviceInfo,
}

#[derive(Default)]
struct NmState {
    active_fds: u32,
    mem: Option<Arc<NmMem>>,
}

impl NmAdapter {
    pub(crate) fn new(mode: NmMode, info: &DeviceInfo, pci: &[PciFunction]) -> Self {
        let n = info.num_rings() as usize;
        let krings = (0..info.num_rings())
            .map(|id| {
                let (dir, _) = info.ring_of(id).unwrap_or((Dir::Tx, 0));
                let slots = if dir == Dir::Tx { info.num_tx_slots } else { info.num_rx_slots };
                Mutex::new(Kring::new(dir, slots))
            })
            .collect();
        Self {
            mode,
            num_tx: info.num_tx_rings,
            st: Mutex::default(),
            krings,
            on: (0..n).map(|_| AtomicBool::new(false)).collect(),
            c_krings: (0..n).map(|_| OnceLock::new()).collect(),
            c_syncs: AtomicU64::new(0),
            c_kicks: AtomicU64::new(0),
            waits: Default::default(),
            pci: pci.to_vec(),
            info: *info,
        }
    }

    /// The C driver's syncs and kicks so far (`ZeroCopyC`).
    pub(crate) fn c_counts(&self) -> (u64, u64) {
        (self.c_syncs.load(Ordering::Relaxed), self.c_kicks.load(Ordering::Relaxed))
    }

    fn id(&self, dir: Dir, idx: u32) -> usize {
        (if dir == Dir::Tx { idx } else { self.num_tx + idx }) as usize
    }

    /// `netmap_rx_irq`/`netmap_tx_irq`: true when netmap holds the ring
    /// (its sleepers are woken), false (`NM_IRQ_PASS`) otherwise.
    pub(crate) fn irq(&self, dir: Dir, idx: u32) -> bool {
        let on = self.on.get(self.id(dir, idx)).is_some_and(|o| o.load(Ordering::Acquire));
        if on {
            self.wait(dir).wake();
        }
        on
    }

    fn wait(&self, dir: Dir) -> &WaitQueue {
        &self.waits[usize::from(dir == Dir::Rx)]
    }
}

impl PtnetIf {
    /// Opens the interface in netmap mode on every NIC ring
    /// (`NETMAP_REQ_REGISTER`, `NR_REG_ALL_NIC`).
    pub fn open(self: &Arc<Self>) -> Result<NetmapPort, NmError> {
        let na = &self.netmap;
        let mut st = na.st.lock().unwrap();
        if st.active_fds == 0 {
            let mut cfg = PtnetRsNmConfig::default();
            // `nm_config` under the shim's lock, as its callback takes it.
            let rc = {
                let _l = self.lock.lock().unwrap();
                // SAFETY: the softc is attached; `cfg` is a valid out-pointer.
                unsafe { ptnet_ffi::ptnet_rs_nm_config(self.rs(), &mut cfg) }
            };
            if rc != 0 {
                return Err(self.failed(rc));
            }
            let mem = match na.mode {
                NmMode::Copy => NmMem::own(&na.info, cfg.buf_size),
                NmMode::ZeroCopy | NmMode::ZeroCopyC => NmMem::host(&na.info, &na.pci).ok_or(NmError::NoRing)?,
            };
            st.mem = Some(Arc::new(mem));
        }
        let mem = st.mem.clone().ok_or(NmError::NoRing)?;
        if st.active_fds == 0 {
            // Every kring's mode goes on: nm_register(na, 1).
            let _l = self.lock.lock().unwrap();
            for id in 0..na.krings.len() {
                if let Err(e) = self.ring_on(&mem, id) {
                    for back in 0..id {
                        self.ring_off(back);
                    }
                    st.mem = None;
                    return Err(e);
                }
            }
        }
        st.active_fds += 1;
        Ok(NetmapPort { ifp: self.clone(), mem })
    }

    fn ring_on(&self, mem: &NmMem, id: usize) -> Result<(), NmError> {
        let na = &self.netmap;
        let (dir, idx) = na.info.ring_of(id as u32).ok_or(NmError::NoRing)?;
        let g = mem.guest(id);
        let mut k = PtnetRsKring::default();
        let gp = g.as_ref().map_or(std::ptr::null(), |g| g as *const PtnetRsNmRing);
        // SAFETY: the softc is attached; the guest ring and lookup table
        // live in `mem`, valid for the call; `k` is a valid out-pointer.
        let rc = unsafe { ptnet_ffi::ptnet_rs_nm_ring_on(self.rs(), u32::from(dir == Dir::Rx), idx, gp, &mut k) };
        if rc != 0 {
            return Err(self.failed(rc));
        }
        let kr = Kring { num_slots: k.num_slots, hwcur: k.hwcur, hwtail: k.hwtail, rhead: k.rhead, rcur: k.rcur };
        *na.krings[id].lock().unwrap() = kr;
        let r = &mem.rings[id];
        r.set_header_u32(HEAD, kr.rhead);
        r.set_header_u32(CUR, kr.rcur);
        r.set_header_u32(TAIL, kr.hwtail);
        na.on[id].store(true, Ordering::Release);
        Ok(())
    }

    fn ring_off(&self, id: usize) {
        let na = &self.netmap;
        let Some((dir, idx)) = na.info.ring_of(id as u32) else { return };
        na.on[id].store(false, Ordering::Release);
        let mut resume = 0u32;
        // SAFETY: the softc is attached; `resume` is a valid out-pointer.
        unsafe { ptnet_ffi::ptnet_rs_nm_ring_off(self.rs(), u32::from(dir == Dir::Rx), idx, &mut resume) };
        if resume != 0 {
            self.shim.schedule(id as u32);
        }
    }

    fn close(&self) {
        let na = &self.netmap;
        let mut st = na.st.lock().unwrap();
        st.active_fds -= 1;
        if st.active_fds == 0 {
            // The last client: every kring's mode goes off, nm_register(na, 0).
            let _l = self.lock.lock().unwrap();
            for id in 0..na.krings.len() {
                if let Some(mem) = &st.mem {
                    self.release(mem, id);
                }
                self.ring_off(id);
            }
            st.mem = None;
        }
    }

    /// The shim's `ptnrs_nm_release`: an RX ring leaving netmap first
    /// releases what the application consumed (its ring's head), so the
    /// stack does not receive it again.
    fn release(&self, mem: &NmMem, id: usize) {
        let na = &self.netmap;
        let Some((Dir::Rx, idx)) = na.info.ring_of(id as u32) else { return };
        let (Some(r), Ok(kr)) = (mem.rings.get(id), na.krings[id].lock()) else { return };
        let mut k = PtnetRsKring {
            num_slots: kr.num_slots,
            hwcur: kr.hwcur,
            hwtail: kr.hwtail,
            rhead: r.header_u32(HEAD).unwrap_or(u32::MAX),
            rcur: r.header_u32(CUR).unwrap_or(u32::MAX),
        };
        // SAFETY: the softc is attached; `k` is valid; no guest ring (no
        // copy: the frames stay for the stack).
        unsafe { ptnet_ffi::ptnet_rs_nm_sync(self.rs(), 1, idx, &mut k, 0, std::ptr::null()) };
    }

    /// One netmap sync of ring `id`: the prologue on the application's
    /// `head`/`cur`, the driver's sync, `nm_sync_finalize`.
    fn nm_sync(&self, mem: &NmMem, id: usize, ioctl: bool) -> Result<bool, NmError> {
        let na = &self.netmap;
        let (dir, idx) = na.info.ring_of(id as u32).ok_or(NmError::NoRing)?;
        let r = mem.rings.get(id).ok_or(NmError::NoRing)?;
        let mut kr = na.krings[id].lock().unwrap();
        let head = r.header_u32(HEAD).unwrap_or(u32::MAX);
        let cur = r.header_u32(CUR).unwrap_or(u32::MAX);
        let checked = match dir {
            Dir::Tx => kr.tx_prologue(head, cur),
            Dir::Rx => kr.rx_prologue(head, cur),
        };
        if checked.is_err() {
            // netmap_ring_reinit: the application sees the kernel's view.
            r.set_header_u32(HEAD, kr.rhead);
            r.set_header_u32(CUR, kr.rcur);
            r.set_header_u32(TAIL, kr.hwtail);
            return Err(NmError::Inval);
        }
        // NIOCTXSYNC asks for a reclaim (netmap_ioctl); poll() does not.
        let flags = if ioctl && dir == Dir::Tx { ptnet_ffi::PTNET_RS_SYNC_FORCE_RECLAIM } else { 0 };
        if na.mode == NmMode::ZeroCopyC {
            self.c_sync(id as u32, dir, &mut kr, flags != 0)?;
            r.set_header_u32(TAIL, kr.hwtail);
            return Ok(!kr.would_block());
        }
        let g = mem.guest(id);
        let gp = g.as_ref().map_or(std::ptr::null(), |g| g as *const PtnetRsNmRing);
        let mut k = PtnetRsKring {
            num_slots: kr.num_slots,
            hwcur: kr.hwcur,
            hwtail: kr.hwtail,
            rhead: kr.rhead,
            rcur: kr.rcur,
        };
        // SAFETY: the softc is attached; `k` and the guest ring are valid.
        let rc = unsafe { ptnet_ffi::ptnet_rs_nm_sync(self.rs(), u32::from(dir == Dir::Rx), idx, &mut k, flags, gp) };
        match rc {
            0 => {
                kr.hwcur = k.hwcur;
                kr.hwtail = k.hwtail;
            }
            // The driver refused the host's pointers (counted, logged): as
            // with netmap's ioctl, the application sees no progress.
            5 => {}
            rc => return Err(self.failed(rc)),
        }
        r.set_header_u32(TAIL, kr.hwtail);
        Ok(!kr.would_block())
    }
}

impl PtnetIf {
    /// `ZeroCopyC`: the sync of FreeBSD's C driver (`ptnet_nm_txsync`,
    /// `ptnet_nm_rxsync` of `if_ptnet.c`): netmap's C guest sync on the
    /// ring's CSB entries, and the kick it asks for.
    fn c_sync(&self, id: u32, dir: Dir, kr: &mut Kring, force_reclaim: bool) -> Result<(), NmError> {
        let (atok, ktoa) = self.shim.csb_entries(id).ok_or(NmError::NoRing)?;
        let ck = self.netmap.c_krings[id as usize].get_or_init(|| CKring::new(kr.num_slots));
        ck.set(&Ptrs {
            rhead: kr.rhead,
            rcur: kr.rcur,
            rtail: kr.hwtail,
            hwcur: kr.hwcur,
            hwtail: kr.hwtail,
            nointr: 0,
        });
        let flags = if force_reclaim { ptnet_netmapc::NAF_FORCE_RECLAIM } else { 0 };
        // SAFETY: the entries are in the CSB the driver allocated, alive
        // while the interface is attached; the kring's lock is held.
        self.netmap.c_syncs.fetch_add(1, Ordering::Relaxed);
        if unsafe { ck.guest_sync(dir == Dir::Tx, atok, ktoa, flags) } {
            self.netmap.c_kicks.fetch_add(1, Ordering::Relaxed);
            self.shim.kick(id);
        }
        let p = ck.get();
        (kr.hwcur, kr.hwtail) = (p.hwcur, p.hwtail);
        Ok(())
    }
}

/// An open netmap file descriptor on a ptnet interface.
pub struct NetmapPort {
    ifp: Arc<PtnetIf>,
    mem: Arc<NmMem>,
}

impl Drop for NetmapPort {
    fn drop(&mut self) {
        self.ifp.close();
    }
}

impl NetmapPort {
    /// The interface.
    pub fn ifp(&self) -> &Arc<PtnetIf> {
        &self.ifp
    }

    fn id(&self, dir: Dir, idx: u32) -> Option<usize> {
        let n = match dir {
            Dir::Tx => self.ifp.info().num_tx_rings,
            Dir::Rx => self.ifp.info().num_rx_rings,
        };
        (idx < n).then(|| self.ifp.netmap.id(dir, idx))
    }

    /// The application's mapping of ring `idx` of direction `dir`.
    pub fn ring(&self, dir: Dir, idx: u32) -> Option<AppRing> {
        Some(AppRing { ring: *self.mem.rings.get(self.id(dir, idx)?)?, bufs: self.mem.bufs })
    }

    /// `ioctl(NIOCTXSYNC)` / `ioctl(NIOCRXSYNC)` on one ring.
    pub fn sync(&self, dir: Dir, idx: u32) -> Result<(), NmError> {
        let id = self.id(dir, idx).ok_or(NmError::NoRing)?;
        self.ifp.nm_sync(&self.mem, id, true).map(|_| ())
    }

    /// `poll()` on every ring of a direction: syncs them, and if none has
    /// anything for the application (no packets, or no free slots), sleeps
    /// until an interrupt of that direction or `timeout`. Returns whether a
    /// ring is ready.
    pub fn poll(&self, dir: Dir, timeout: Duration) -> Result<bool, NmError> {
        let deadline = Instant::now() + timeout;
        let wq = self.ifp.netmap.wait(dir);
        let n = match dir {
            Dir::Tx => self.ifp.info().num_tx_rings,
            Dir::Rx => self.ifp.info().num_rx_rings,
        };
        loop {
            let seen = wq.seq();
            let mut ready = false;
            for i in 0..n {
                let id = self.id(dir, i).ok_or(NmError::NoRing)?;
                ready |= self.ifp.nm_sync(&self.mem, id, false)?;
            }
            if ready {
                return Ok(true);
            }
            if !wq.wait(seen, deadline) {
                return Ok(false);
            }
        }
    }
}

/// A ring as an application sees it through `mmap()` (`netmap_user.h`).
#[derive(Clone, Copy)]
pub struct AppRing {
    ring: RingLayout,
    bufs: Buffers,
}

impl AppRing {
    /// Slots in the ring.
    pub fn num_slots(&self) -> u32 {
        self.ring.num_slots
    }

    /// `ring->head`.
    pub fn head(&self) -> u32 {
        self.ring.header_u32(HEAD).unwrap_or(0)
    }

    /// `ring->cur`.
    pub fn cur(&self) -> u32 {
        self.ring.header_u32(CUR).unwrap_or(0)
    }

    /// `ring->tail`.
    pub fn tail(&self) -> u32 {
        self.ring.header_u32(TAIL).unwrap_or(0)
    }

    /// Sets `ring->head` and `ring->cur` (hands slots to the kernel).
    pub fn advance(&self, to: u32) {
        self.set_head_cur(to, to);
    }

    /// Sets `ring->head` and `ring->cur` separately.
    pub fn set_head_cur(&self, head: u32, cur: u32) {
        self.ring.set_header_u32(CUR, cur);
        self.ring.set_header_u32(HEAD, head);
    }

    /// `nm_ring_space()`: slots between `cur` and `tail`.
    pub fn space(&self) -> u32 {
        cyclic_dist(self.cur(), self.tail(), self.ring.num_slots)
    }

    /// `nm_tx_pending()`: slots handed to the kernel and not yet completed.
    pub fn tx_pending(&self) -> bool {
        self.next(self.tail()) != self.head()
    }

    /// `nm_ring_next()`.
    pub fn next(&self, i: u32) -> u32 {
        ptnet::kring::next(i, self.ring.num_slots)
    }

    /// `slot[i].len`.
    pub fn len(&self, i: u32) -> u16 {
        self.ring.slot_len(i).unwrap_or(0)
    }

    /// `slot[i].flags`.
    pub fn flags(&self, i: u32) -> u16 {
        self.ring.slot_flags(i).unwrap_or(0)
    }

    /// Sets `slot[i].len` and `slot[i].flags`.
    pub fn set_len_flags(&self, i: u32, len: u16, flags: u16) {
        self.ring.set_slot(i, len, flags);
    }

    /// `NETMAP_BUF(ring, slot[i].buf_idx)`; `None` for an invalid index.
    pub fn buf(&self, i: u32) -> Option<SharedRegion> {
        self.bufs.get(self.ring.slot_buf_idx(i)?)
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> u32 {
        self.bufs.buf_size()
    }
}
