//! The guest's netmap layer over an attached ptnet device: registration
//! (`PTCTL` create on the first open, delete on the last close), the
//! per-ring sync calls with netmap's prologue checks and finalisation,
//! `poll()` that sleeps until the ring's interrupt, and the view of the
//! rings an application gets from `mmap()`.
//!
//! On FreeBSD this layer is netmap itself, calling the driver's
//! `nm_register`/`nm_txsync`/`nm_rxsync`; here it is a small model of it
//! that drives the same core entry points.

use super::kernel::{GuestKernel, GuestOs, PciBar};
use crate::hv::PciFunction;
use ptnet::abi::netmap::NetmapRing;
use ptnet::abi::regs::{memdev as mreg, PCI_DEVICE_ID_MEMDEV, PCI_DEVICE_ID_PTNET, PCI_VENDOR_ID};
use ptnet::csb::SyncOpts;
use ptnet::device::QueueCounters;
use ptnet::kring::{cyclic_dist, Dir, Kring};
use ptnet::layout::{Buffers, RingLayout};
use ptnet::shmem::SharedRegion;
use ptnet::{AttachError, Config, DeviceInfo, Ptnet, SyncError};
use std::fmt;
use std::mem::offset_of;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

const HEAD: usize = offset_of!(NetmapRing, head);
const CUR: usize = offset_of!(NetmapRing, cur);
const TAIL: usize = offset_of!(NetmapRing, tail);

/// Errors of netmap calls, as errno-like values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmError {
    /// The application's `head`/`cur` broke the ring invariants (the ring
    /// was reset to the kernel's view, as `netmap_ring_reinit` does).
    Inval,
    /// The host wrote inconsistent pointers (counted by the driver).
    Io,
    /// No such ring.
    NoRing,
    /// Attaching or bringing the port up failed.
    Attach(AttachError),
    /// No ptnet device to attach to.
    NoDevice,
}

impl fmt::Display for NmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NmError::Inval => f.write_str("invalid ring pointers (EINVAL)"),
            NmError::Io => f.write_str("host ring state inconsistent (EIO)"),
            NmError::NoRing => f.write_str("no such ring (ENXIO)"),
            NmError::Attach(e) => write!(f, "{e}"),
            NmError::NoDevice => f.write_str("no ptnet device (ENXIO)"),
        }
    }
}

impl From<SyncError> for NmError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::NoRing => NmError::NoRing,
            SyncError::Host(_) => NmError::Io,
        }
    }
}

/// A sleep/wakeup channel (`selinfo`): a counter bumped by each wakeup.
#[derive(Default)]
pub struct WaitQueue {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl WaitQueue {
    fn seq(&self) -> u64 {
        *self.seq.lock().unwrap()
    }

    fn wake(&self) {
        *self.seq.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    /// Sleeps until a wakeup newer than `seen`; false on timeout.
    fn wait(&self, seen: u64, deadline: Instant) -> bool {
        let mut s = self.seq.lock().unwrap();
        while *s == seen {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self.cv.wait_timeout(s, deadline - now).unwrap().0;
        }
        true
    }
}

struct GuestRing {
    dir: Dir,
    idx: u32,
    kring: Mutex<Kring>,
    layout: RingLayout,
}

struct IfState {
    users: u32,
    started_once: bool,
}

/// An attached ptnet interface (`ptnet0`).
pub struct PtnetIf {
    /// Interface name.
    pub name: String,
    dev: Ptnet<GuestOs, PciBar>,
    os: GuestOs,
    rings: Vec<GuestRing>,
    /// Sleepers in `poll()`, per direction (TX, RX): any ring's interrupt
    /// of that direction wakes them, as netmap's per-adapter `selinfo`.
    waits: [WaitQueue; 2],
    state: Mutex<IfState>,
    /// The PCI functions whose BARs the driver uses (`bus_alloc_resource`):
    /// holding them keeps the mapped memory alive while the driver runs.
    _resources: Vec<PciFunction>,
}

impl PtnetIf {
    /// Probes the VM's PCI functions for ptnet unit `unit` and attaches
    /// the driver to it, finding its memdev by host memory id.
    pub fn attach(
        kernel: &Arc<GuestKernel>,
        pci: &[PciFunction],
        unit: u32,
        cfg: Config,
    ) -> Result<Arc<Self>, NmError> {
        let name = format!("ptnet{unit}");
        let f = pci
            .iter()
            .filter(|f| f.vendor == PCI_VENDOR_ID && f.device == PCI_DEVICE_ID_PTNET)
            .nth(unit as usize)
            .ok_or(NmError::NoDevice)?;
        let os = GuestOs::new(kernel.clone(), &name);
        let find_memdev = |memid: u32| {
            pci.iter()
                .filter(|m| m.vendor == PCI_VENDOR_ID && m.device == PCI_DEVICE_ID_MEMDEV)
                .find(|m| m.io.read32(mreg::MEMID) == memid)
                .and_then(|m| Some((PciBar(m.io.clone()), m.mem_bar?)))
        };
        let dev = Ptnet::attach(
            os.clone(),
            PciBar(f.io.clone()),
            f.msix_vectors,
            cfg,
            find_memdev,
        )
        .map_err(|(_, _, e)| NmError::Attach(e))?;
        let info = *dev.info();
        let layout = dev.layout();
        let ring = |dir: Dir, idx: u32| {
            let l = *layout.ring(dir, idx)?;
            Some(GuestRing {
                dir,
                idx,
                kring: Mutex::new(Kring::new(dir, l.num_slots)),
                layout: l,
            })
        };
        let rings = (0..info.num_tx_rings)
            .filter_map(|i| ring(Dir::Tx, i))
            .chain((0..info.num_rx_rings).filter_map(|i| ring(Dir::Rx, i)))
            .collect();
        let ifp = Arc::new(Self {
            name,
            dev,
            os,
            rings,
            waits: Default::default(),
            state: Mutex::new(IfState {
                users: 0,
                started_once: false,
            }),
            _resources: pci.to_vec(),
        });
        for v in 0..info.num_rings() {
            let w: Weak<PtnetIf> = Arc::downgrade(&ifp);
            kernel.irq.set_handler(
                v,
                Some(Arc::new(move || {
                    if let Some(ifp) = w.upgrade() {
                        ifp.intr(v);
                    }
                })),
            );
        }
        Ok(ifp)
    }

    /// Detaches the driver (the interface must not be open). Returns the
    /// interface back if something still holds it.
    pub fn detach(self: Arc<Self>) -> Result<(), Arc<Self>> {
        let n = self.dev.info().num_rings();
        for v in 0..n {
            self.os.kernel.irq.set_handler(v, None);
        }
        match Arc::try_unwrap(self) {
            Ok(ifp) => {
                ifp.dev.detach();
                Ok(())
            }
            Err(ifp) => Err(ifp),
        }
    }

    fn intr(&self, vector: u32) {
        if let Some((dir, _)) = self.dev.interrupt(vector) {
            self.wait(dir).wake();
        }
    }

    fn wait(&self, dir: Dir) -> &WaitQueue {
        &self.waits[usize::from(dir == Dir::Rx)]
    }

    fn ring(&self, dir: Dir, idx: u32) -> Option<&GuestRing> {
        self.rings.iter().find(|r| r.dir == dir && r.idx == idx)
    }

    /// What the device reported at attach.
    pub fn info(&self) -> DeviceInfo {
        *self.dev.info()
    }

    /// The kernel services of this device (for allocation ledgers).
    pub fn os(&self) -> &GuestOs {
        &self.os
    }

    /// Driver counters of one ring.
    pub fn counters(&self, dir: Dir, idx: u32) -> QueueCounters {
        self.dev
            .stats(dir, idx)
            .map(|s| s.snapshot())
            .unwrap_or_default()
    }

    /// Sum of the driver counters over all rings.
    pub fn total_counters(&self) -> QueueCounters {
        self.rings.iter().map(|r| self.counters(r.dir, r.idx)).fold(
            QueueCounters::default(),
            |a, b| QueueCounters {
                syncs: a.syncs + b.syncs,
                kicks: a.kicks + b.kicks,
                irqs: a.irqs + b.irqs,
                host_errors: a.host_errors + b.host_errors,
            },
        )
    }

    fn lock_all(&self) -> Vec<MutexGuard<'_, Kring>> {
        self.rings.iter().map(|r| r.kring.lock().unwrap()).collect()
    }

    /// Publishes the kernel's view of a ring to the application's ring.
    fn finalize(r: &GuestRing, k: &Kring) {
        r.layout.set_header_u32(TAIL, k.hwtail);
    }

    /// Starts the host and aligns every ring with it: the first time the
    /// host's state is adopted, later the guest's own state is handed back.
    fn bring_up(
        &self,
        st: &mut IfState,
        krings: &mut [MutexGuard<'_, Kring>],
    ) -> Result<(), NmError> {
        self.dev.start().map_err(NmError::Attach)?;
        for (r, k) in self.rings.iter().zip(krings.iter_mut()) {
            if st.started_once {
                self.dev.resume_ring(r.dir, r.idx, k)?;
            } else {
                **k = self.dev.adopt_ring(r.dir, r.idx)?;
                r.layout.set_header_u32(HEAD, k.rhead);
                r.layout.set_header_u32(CUR, k.rcur);
            }
            Self::finalize(r, k);
        }
        st.started_once = true;
        Ok(())
    }

    /// Opens the interface in netmap mode (`NETMAP_REQ_REGISTER`).
    pub fn open(self: &Arc<Self>) -> Result<NetmapPort, NmError> {
        let mut st = self.state.lock().unwrap();
        if st.users == 0 {
            let mut krings = self.lock_all();
            if let Err(e) = self.bring_up(&mut st, &mut krings) {
                let _ = self.dev.stop();
                return Err(e);
            }
        }
        st.users += 1;
        Ok(NetmapPort { ifp: self.clone() })
    }

    fn close(&self) {
        let mut st = self.state.lock().unwrap();
        st.users -= 1;
        if st.users == 0 {
            let _krings = self.lock_all();
            let _ = self.dev.stop();
        }
    }

    /// Stops and restarts the host side (`PTCTL` delete then create) while
    /// the interface is open, as a hypervisor migration or a port reset
    /// does; applications keep running and lose nothing.
    pub fn restart(&self) -> Result<(), NmError> {
        let mut st = self.state.lock().unwrap();
        if st.users == 0 {
            return Ok(());
        }
        let mut krings = self.lock_all();
        self.dev.stop().map_err(NmError::Attach)?;
        self.bring_up(&mut st, &mut krings)
    }

    fn sync(&self, r: &GuestRing, k: &mut Kring) -> Result<(), NmError> {
        let head = r.layout.header_u32(HEAD).unwrap_or(u32::MAX);
        let cur = r.layout.header_u32(CUR).unwrap_or(u32::MAX);
        let checked = match r.dir {
            Dir::Tx => k.tx_prologue(head, cur),
            Dir::Rx => k.rx_prologue(head, cur),
        };
        if checked.is_err() {
            r.layout.set_header_u32(HEAD, k.rhead);
            r.layout.set_header_u32(CUR, k.rcur);
            Self::finalize(r, k);
            return Err(NmError::Inval);
        }
        let opts = SyncOpts {
            want_intr: true,
            ..SyncOpts::default()
        };
        let res = match r.dir {
            Dir::Tx => self.dev.txsync(r.idx, k, opts),
            Dir::Rx => self.dev.rxsync(r.idx, k, opts),
        };
        Self::finalize(r, k);
        res.map_err(NmError::from)
    }
}

/// An open netmap file descriptor on a ptnet interface.
pub struct NetmapPort {
    ifp: Arc<PtnetIf>,
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

    /// The application's mapping of ring `idx` of direction `dir`.
    pub fn ring(&self, dir: Dir, idx: u32) -> Option<AppRing> {
        let r = self.ifp.ring(dir, idx)?;
        Some(AppRing {
            ring: r.layout,
            bufs: self.ifp.dev.layout().buffers,
        })
    }

    /// `ioctl(NIOCTXSYNC)` / `ioctl(NIOCRXSYNC)` on one ring.
    pub fn sync(&self, dir: Dir, idx: u32) -> Result<(), NmError> {
        let r = self.ifp.ring(dir, idx).ok_or(NmError::NoRing)?;
        let mut k = r.kring.lock().unwrap();
        self.ifp.sync(r, &mut k)
    }

    /// `poll()` on every ring of a direction: syncs them, and if none has
    /// anything for the application (no packets, or no free slots), sleeps
    /// until an interrupt of that direction or `timeout`. Returns whether a
    /// ring is ready.
    pub fn poll(&self, dir: Dir, timeout: Duration) -> Result<bool, NmError> {
        let deadline = Instant::now() + timeout;
        let wq = self.ifp.wait(dir);
        loop {
            let seen = wq.seq();
            let mut ready = false;
            for r in self.ifp.rings.iter().filter(|r| r.dir == dir) {
                let mut k = r.kring.lock().unwrap();
                self.ifp.sync(r, &mut k)?;
                ready |= !k.would_block();
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
        self.ring.set_header_u32(CUR, to);
        self.ring.set_header_u32(HEAD, to);
    }

    /// Sets `ring->head` and `ring->cur` separately (e.g. to wake only
    /// after more slots).
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
