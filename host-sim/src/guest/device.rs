//! The attached ptnet device in the simulated guest kernel (`ptnet0`): the
//! driver instance, each ring's state behind its lock, interrupt dispatch,
//! and who uses the rings (netmap applications or the network stack).
//!
//! The per-ring locks play netmap's kring locks and the driver's queue
//! mutexes; the core lock around `up`/`down` plays the softc lock.

use super::kernel::{GuestKernel, GuestOs, Handler, PciBar};
use super::wait::{Vcpu, WaitQueue};
use crate::hv::PciFunction;
use ptnet::abi::regs::{memdev as mreg, PCI_DEVICE_ID_MEMDEV, PCI_DEVICE_ID_PTNET, PCI_VENDOR_ID};
use ptnet::device::{QueueCounters, UpError};
use ptnet::ifnet::IfCounters;
use ptnet::kring::{Dir, Kring};
use ptnet::rx::RxRing;
use ptnet::tx::TxRing;
use ptnet::{AttachError, Config, DeviceInfo, Ptnet, SyncError};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Packets a TX ring's software queue holds (`PTNET_BUF_RING_SIZE`-like).
pub const TXQ_LEN: usize = 512;

/// The transmit watchdog's timeout (as FreeBSD drivers' 5 s).
pub const TX_TIMEOUT_MS: u64 = 5_000;

/// What one interface holds, every part of it bounded when it attaches:
/// nothing grows with traffic or with what the host writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Footprint {
    /// The driver instance (softc) itself.
    pub softc_bytes: usize,
    /// Per-ring state: pointers, counters and the software queues' slots.
    pub ring_state_bytes: usize,
    /// DMA memory (the CSB).
    pub csb_bytes: usize,
    /// Packets the software queues may hold, over all TX rings.
    pub txq_packets: usize,
    /// The most those packets may weigh (each at most a 64 KiB frame).
    pub txq_bytes_max: usize,
}

/// A packet from the guest stack: an mbuf chain, here one buffer.
pub type TxPkt = super::ifnet::SimPacket;

/// Errors of the guest's device calls, as errno-like values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmError {
    /// The application's `head`/`cur` broke the ring invariants (the ring
    /// was reset to the kernel's view, as `netmap_ring_reinit` does).
    Inval,
    /// The host wrote inconsistent pointers (counted by the driver).
    Io,
    /// No such ring.
    NoRing,
    /// Attaching failed.
    Attach(AttachError),
    /// Bringing the rings up or down failed.
    Up(UpError),
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
            NmError::Up(e) => write!(f, "{e}"),
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

impl From<UpError> for NmError {
    fn from(e: UpError) -> Self {
        NmError::Up(e)
    }
}

/// Who uses the rings.
#[derive(Debug, Default)]
pub(crate) struct Users {
    pub netmap: u32,
    pub if_up: bool,
}

/// An attached ptnet interface.
pub struct PtnetIf {
    /// Interface name.
    pub name: String,
    pub(crate) dev: Ptnet<GuestOs, PciBar>,
    os: GuestOs,
    pub(crate) tx: Vec<Mutex<TxRing<TxPkt, TXQ_LEN>>>,
    pub(crate) rx: Vec<Mutex<RxRing>>,
    /// Sleepers in netmap `poll()`, per direction (TX, RX): any ring's
    /// interrupt of that direction wakes them, as netmap's `selinfo`.
    pub(crate) waits: [WaitQueue; 2],
    pub(crate) users: Mutex<Users>,
    /// Mirrors `users.netmap > 0` for the datapath and the interrupt
    /// handler, which must not take the core lock (a kloop raising an
    /// interrupt may be what a `PTCTL` delete under that lock waits for).
    pub(crate) netmap_mode: AtomicBool,
    /// Mirrors `users.if_up`, for the same reason.
    pub(crate) if_running: AtomicBool,
    /// Rings (by number) whose interrupt is waiting for the interface's
    /// service routine.
    pub(crate) pending: AtomicU64,
    /// The guest CPU that runs the interface's service routine.
    pub(crate) vcpu: Vcpu,
    /// Interrupts that arrived while nobody used the rings.
    pub stray_irqs: AtomicU32,
    /// Stack packets dropped while netmap applications owned the rings.
    pub(crate) netmap_drops: AtomicU64,
    /// The guest's clock for the transmit watchdog: attach time, the last
    /// watchdog run (ms since attach) and its timeout (ms).
    pub(crate) born: std::time::Instant,
    pub(crate) watchdog_last: AtomicU64,
    pub(crate) tx_timeout_ms: AtomicU64,
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
        let find_memdev = |q: &ptnet::device::MemdevQuery| {
            pci.iter()
                .filter(|m| m.vendor == PCI_VENDOR_ID && m.device == PCI_DEVICE_ID_MEMDEV)
                .find(|m| m.io.read32(mreg::MEMID) == q.memid)
                .and_then(|m| Some((PciBar(m.io.clone()), m.mem_bar?)))
        };
        let dev = Ptnet::attach(os.clone(), PciBar(f.io.clone()), f.msix_vectors, cfg, find_memdev)
            .map_err(|(_, _, e)| NmError::Attach(e))?;
        let info = *dev.info();
        let ifp = Arc::new(Self {
            name,
            tx: (0..info.num_tx_rings).map(|_| Mutex::new(TxRing::new(info.num_tx_slots))).collect(),
            rx: (0..info.num_rx_rings).map(|_| Mutex::new(RxRing::new(info.num_rx_slots))).collect(),
            dev,
            os,
            waits: Default::default(),
            users: Mutex::default(),
            netmap_mode: AtomicBool::new(false),
            if_running: AtomicBool::new(false),
            pending: AtomicU64::new(0),
            vcpu: Vcpu::default(),
            stray_irqs: AtomicU32::new(0),
            netmap_drops: AtomicU64::new(0),
            born: std::time::Instant::now(),
            watchdog_last: AtomicU64::new(0),
            tx_timeout_ms: AtomicU64::new(TX_TIMEOUT_MS),
            _resources: pci.to_vec(),
        });
        ifp.set_handlers(true);
        Ok(ifp)
    }

    /// Installs or removes the MSI-X handlers (`bus_setup_intr`,
    /// `bus_teardown_intr`: a removal waits for running calls).
    fn set_handlers(self: &Arc<Self>, on: bool) {
        for v in 0..self.dev.info().num_rings() {
            let w: Weak<PtnetIf> = Arc::downgrade(self);
            let h: Option<Handler> = on.then(|| {
                Arc::new(move || {
                    if let Some(ifp) = w.upgrade() {
                        ifp.intr(v);
                    }
                }) as Handler
            });
            self.os.kernel.irq.set_handler(v, h);
        }
    }

    /// Detaches the driver (no netmap client may hold it): the interface
    /// goes down first (queued packets freed and counted), then what the
    /// stopped host never took from the rings is counted too. Returns the
    /// final counters, or the interface back if something still holds it.
    pub fn detach(self: Arc<Self>) -> Result<IfCounters, Arc<Self>> {
        // Without handlers (and none running), only real users hold it.
        self.set_handlers(false);
        match Arc::try_unwrap(self) {
            Ok(ifp) => {
                let _ = ifp.if_down();
                for (i, r) in ifp.tx.iter().enumerate() {
                    ifp.dev.tx_abandon(i as u32, &mut r.lock().unwrap());
                }
                let counters = ifp.if_counters();
                ifp.dev.detach();
                Ok(counters)
            }
            Err(ifp) => {
                ifp.set_handlers(true);
                Err(ifp)
            }
        }
    }

    /// The MSI-X handler: wakes netmap sleepers in netmap mode, otherwise
    /// marks the ring for the interface's service routine.
    fn intr(&self, vector: u32) {
        let Some((dir, _)) = self.dev.interrupt(vector) else {
            return;
        };
        if self.netmap_mode.load(Ordering::Acquire) {
            self.wait(dir).wake();
        } else if self.if_running.load(Ordering::Acquire) {
            self.pending.fetch_or(1 << vector, Ordering::AcqRel);
            self.vcpu.wake();
        } else {
            self.stray_irqs.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn wait(&self, dir: Dir) -> &WaitQueue {
        &self.waits[usize::from(dir == Dir::Rx)]
    }

    /// What the device reported at attach.
    pub fn info(&self) -> DeviceInfo {
        *self.dev.info()
    }

    /// What this interface holds (see [`Footprint`]).
    pub fn footprint(&self) -> Footprint {
        let txq_packets = self.tx.len() * TXQ_LEN;
        Footprint {
            softc_bytes: std::mem::size_of::<Self>(),
            ring_state_bytes: self.tx.len() * std::mem::size_of::<Mutex<TxRing<TxPkt, TXQ_LEN>>>()
                + self.rx.len() * std::mem::size_of::<Mutex<RxRing>>(),
            csb_bytes: self.os.dma_bytes(),
            txq_packets,
            txq_bytes_max: txq_packets * ptnet::rx::MAX_FRAME,
        }
    }

    /// The kernel services of this device (for allocation ledgers).
    pub fn os(&self) -> &GuestOs {
        &self.os
    }

    /// Driver counters of one ring.
    pub fn counters(&self, dir: Dir, idx: u32) -> QueueCounters {
        self.dev.stats(dir, idx).map(|s| s.snapshot()).unwrap_or_default()
    }

    /// Sum of the driver counters over all rings.
    pub fn total_counters(&self) -> QueueCounters {
        let info = self.info();
        let rings = (0..info.num_tx_rings).map(|i| (Dir::Tx, i)).chain((0..info.num_rx_rings).map(|i| (Dir::Rx, i)));
        rings.map(|(d, i)| self.counters(d, i)).fold(QueueCounters::default(), |a, b| QueueCounters {
            syncs: a.syncs + b.syncs,
            kicks: a.kicks + b.kicks,
            irqs: a.irqs + b.irqs,
            host_errors: a.host_errors + b.host_errors,
        })
    }

    /// Every ring locked, TX first (ring-number order).
    pub(crate) fn lock_all(&self) -> Locked<'_> {
        Locked {
            tx: self.tx.iter().map(|r| r.lock().unwrap()).collect(),
            rx: self.rx.iter().map(|r| r.lock().unwrap()).collect(),
        }
    }

    /// Adds a user of the rings with every ring locked; `then` runs on the
    /// locked rings once they are aligned with the host.
    pub(crate) fn up(&self, then: impl FnOnce(&mut Locked<'_>)) -> Result<(), NmError> {
        let mut l = self.lock_all();
        self.dev.up(l.krings().into_iter())?;
        then(&mut l);
        Ok(())
    }

    /// Stops and restarts the host side (`PTCTL` delete then create) while
    /// the rings are in use, as a hypervisor migration or a port reset
    /// does; users keep running and lose nothing.
    pub fn restart(&self) -> Result<(), NmError> {
        let _users = self.users.lock().unwrap();
        let mut l = self.lock_all();
        self.dev.restart(l.krings().into_iter())?;
        // Only the tail: the applications' head and cur may be ahead of
        // the kernel's (slots filled, not yet synced) and stay theirs.
        l.publish_tails(self);
        Ok(())
    }
}

/// All rings, locked.
pub(crate) struct Locked<'a> {
    pub tx: Vec<MutexGuard<'a, TxRing<TxPkt, TXQ_LEN>>>,
    pub rx: Vec<MutexGuard<'a, RxRing>>,
}

impl Locked<'_> {
    pub fn krings(&mut self) -> Vec<&mut Kring> {
        let tx = self.tx.iter_mut().map(|g| &mut g.kring);
        tx.chain(self.rx.iter_mut().map(|g| &mut g.kring)).collect()
    }

    fn each(&self, mut f: impl FnMut(Dir, u32, &Kring)) {
        for (i, g) in self.tx.iter().enumerate() {
            f(Dir::Tx, i as u32, &g.kring);
        }
        for (i, g) in self.rx.iter().enumerate() {
            f(Dir::Rx, i as u32, &g.kring);
        }
    }

    /// Shows applications the kernel's view of every ring (what netmap
    /// does when an application registers).
    pub fn publish_to_apps(&mut self, ifp: &PtnetIf) {
        self.each(|d, i, k| super::netmap::publish(ifp, d, i, k, true));
    }

    /// Updates only the tails applications see.
    pub fn publish_tails(&mut self, ifp: &PtnetIf) {
        self.each(|d, i, k| super::netmap::publish(ifp, d, i, k, false));
    }
}
