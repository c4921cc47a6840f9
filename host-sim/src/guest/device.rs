//! The attached ptnet device in the simulated guest kernel (`ptnet0`), as
//! `kmod/ptnet_shim.c` attaches it: the archive's softc (crate
//! `ptnet-ffi`, the code that ships in the module) behind its entry
//! points, the shim's state the archive calls back into
//! ([`super::shim::ShimDev`]), the MSI-X handlers, and the netmap adapter.
//!
//! The shim's sx lock (init, stop, ioctl, netmap registration, restart) is
//! [`PtnetIf::lock`]; the archive's own mutexes guard its rings.

use super::kernel::{GuestKernel, GuestOs, Handler};
use super::netmap::{NmAdapter, NmMode};
use super::shim::{self, ShimDev};
use crate::hv::PciFunction;
use ptnet::abi::regs::{Features, PCI_DEVICE_ID_PTNET, PCI_VENDOR_ID};
use ptnet::device::QueueCounters;
use ptnet::ifnet::IfCounters;
use ptnet::kring::Dir;
use ptnet::{Config, DeviceInfo};
use ptnet_ffi::{PtnetRsIfCounters, PtnetRsInfo, PtnetRsSoftc, PTNET_RS_INTR_TASK};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The transmit watchdog's timeout (as FreeBSD drivers' 5 s).
pub const TX_TIMEOUT_MS: u64 = 5_000;

/// What one interface holds, every part of it bounded when it attaches:
/// nothing grows with traffic or with what the host writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Footprint {
    /// Kernel memory (`malloc`) the driver took at attach: its softc, the
    /// rings' state with their software queues, their mutexes.
    pub kernel_bytes: usize,
    /// DMA memory (the CSB).
    pub csb_bytes: usize,
    /// Packets the software and hand-off queues may hold, over all TX rings.
    pub txq_packets: usize,
    /// The most those packets may weigh (each at most a 64 KiB frame).
    pub txq_bytes_max: usize,
}

/// Errors of the guest's device calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NmError {
    /// The application's `head`/`cur` broke the ring invariants (the ring
    /// was reset to the kernel's view, as `netmap_ring_reinit` does).
    Inval,
    /// The host wrote inconsistent pointers (counted by the driver).
    Io,
    /// No such ring.
    NoRing,
    /// Still in use.
    Busy,
    /// No ptnet device to attach to.
    NoDevice,
    /// The driver refused: its errno and the console line that says why.
    Failed {
        /// errno.
        errno: i32,
        /// The driver's last error line on the console.
        why: String,
    },
}

impl fmt::Display for NmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NmError::Inval => f.write_str("invalid ring pointers (EINVAL)"),
            NmError::Io => f.write_str("host ring state inconsistent (EIO)"),
            NmError::NoRing => f.write_str("no such ring (ENXIO)"),
            NmError::Busy => f.write_str("device busy (EBUSY)"),
            NmError::NoDevice => f.write_str("no ptnet device (ENXIO)"),
            NmError::Failed { errno, why } => write!(f, "{why} (errno {errno})"),
        }
    }
}

/// An errno from an entry point, without the console's explanation.
fn errno_to_nm(rc: i32) -> NmError {
    match rc {
        22 => NmError::Inval,
        16 => NmError::Busy,
        _ => NmError::Failed { errno: rc, why: format!("error {rc}") },
    }
}

/// The archive's softc pointer; the archive serialises its own state.
struct Rs(*mut PtnetRsSoftc);
// SAFETY: the softc's entry points may be called from any thread.
unsafe impl Send for Rs {}
// SAFETY: as above.
unsafe impl Sync for Rs {}

/// An attached ptnet interface.
pub struct PtnetIf {
    /// Interface name.
    pub name: String,
    rs: Rs,
    pub(crate) shim: Box<ShimDev>,
    info: DeviceInfo,
    /// The shim's sx lock: init, stop, ioctl, netmap registration, restart.
    pub(crate) lock: Mutex<()>,
    /// `IFF_DRV_RUNNING`.
    pub(crate) if_running: std::sync::atomic::AtomicBool,
    pub(crate) netmap: NmAdapter,
    /// Interrupts no user wanted.
    pub stray_irqs: AtomicU32,
    /// The guest's clock for the watchdog callout: attach time, the last
    /// run (ms since attach) and the transmit timeout (ms).
    pub(crate) born: std::time::Instant,
    pub(crate) watchdog_last: AtomicU64,
    pub(crate) tx_timeout_ms: AtomicU64,
    kernel_bytes: usize,
    /// The PCI functions whose BARs the driver uses (`bus_alloc_resource`):
    /// holding them keeps the mapped memory alive while the driver runs.
    _resources: Vec<PciFunction>,
}

impl PtnetIf {
    /// Probes the VM's PCI functions for ptnet unit `unit` and attaches
    /// the driver to it, as the shim's `device_attach` does; netmap's
    /// adapter works in `mode` (copy on a stock kernel).
    pub fn attach(
        kernel: &Arc<GuestKernel>,
        pci: &[PciFunction],
        unit: u32,
        cfg: Config,
        mode: NmMode,
    ) -> Result<Arc<Self>, NmError> {
        shim::register();
        let name = format!("ptnet{unit}");
        let f = pci
            .iter()
            .filter(|f| f.vendor == PCI_VENDOR_ID && f.device == PCI_DEVICE_ID_PTNET)
            .nth(unit as usize)
            .ok_or(NmError::NoDevice)?;
        let os = GuestOs::new(kernel.clone(), &name);
        let shim = ShimDev::new(os, f, pci);
        let mut flags = 0;
        if cfg.want_vnet_hdr {
            flags |= ptnet_ffi::PTNET_RS_WANT_VNET_HDR;
        }
        if cfg.require_vnet_hdr {
            flags |= ptnet_ffi::PTNET_RS_REQUIRE_VNET_HDR;
        }
        let before = shim::malloc_outstanding().1;
        let mut rs = std::ptr::null_mut();
        // SAFETY: our handle lives (boxed) as long as the softc.
        let rc = unsafe { ptnet_ffi::ptnet_rs_attach(shim.handle(), f.msix_vectors, flags, &mut rs) };
        if rc != 0 {
            return Err(NmError::Failed { errno: rc, why: last_error(kernel, &name) });
        }
        let kernel_bytes = (shim::malloc_outstanding().1 - before).max(0) as usize;
        let mut ri = PtnetRsInfo::default();
        // SAFETY: `rs` was just attached; `ri` is a valid out-pointer.
        unsafe { ptnet_ffi::ptnet_rs_info(rs, &mut ri) };
        let info = DeviceInfo {
            mac: ri.mac,
            features: Features::from_bits_truncate(ri.features),
            vnet_hdr_len: ri.vnet_hdr_len,
            num_tx_rings: ri.num_tx_rings,
            num_rx_rings: ri.num_rx_rings,
            num_tx_slots: ri.num_tx_slots,
            num_rx_slots: ri.num_rx_slots,
            memid: ri.memid,
            nifp_ofs: ri.nifp_ofs,
        };
        shim.set_tx_rings(info.num_tx_rings);
        let ifp = Arc::new(Self {
            name,
            rs: Rs(rs),
            shim,
            netmap: NmAdapter::new(mode, &info, pci),
            info,
            lock: Mutex::new(()),
            if_running: std::sync::atomic::AtomicBool::new(false),
            stray_irqs: AtomicU32::new(0),
            born: std::time::Instant::now(),
            watchdog_last: AtomicU64::new(0),
            tx_timeout_ms: AtomicU64::new(TX_TIMEOUT_MS),
            kernel_bytes,
            _resources: pci.to_vec(),
        });
        ifp.set_handlers(true);
        Ok(ifp)
    }

    /// The archive's softc.
    pub(crate) fn rs(&self) -> *mut PtnetRsSoftc {
        self.rs.0
    }

    /// The driver's last error line, for an errno that needs explaining.
    pub(crate) fn failed(&self, rc: i32) -> NmError {
        match errno_to_nm(rc) {
            NmError::Failed { errno, .. } => {
                NmError::Failed { errno, why: last_error(&self.shim.os.kernel, &self.name) }
            }
            e => e,
        }
    }

    /// Installs or removes the MSI-X handlers (`bus_setup_intr`,
    /// `bus_teardown_intr`: a removal waits for running calls).
    fn set_handlers(self: &Arc<Self>, on: bool) {
        for v in 0..self.info.num_rings() {
            let w: Weak<PtnetIf> = Arc::downgrade(self);
            let h: Option<Handler> = on.then(|| {
                Arc::new(move || {
                    if let Some(ifp) = w.upgrade() {
                        ifp.intr(v);
                    }
                }) as Handler
            });
            self.shim.os.kernel.irq.set_handler(v, h);
        }
    }

    /// The shim's interrupt handler: the archive counts the interrupt;
    /// netmap takes it for a ring it holds (`netmap_rx_irq` not
    /// `NM_IRQ_PASS`); otherwise the ring's task runs for the stack.
    fn intr(&self, vector: u32) {
        // SAFETY: the softc is attached (handlers go before detach).
        let action = unsafe { ptnet_ffi::ptnet_rs_intr(self.rs(), vector) };
        if let Some((dir, idx)) = self.info.ring_of(vector) {
            if self.netmap.irq(dir, idx) {
                return;
            }
        }
        if action == PTNET_RS_INTR_TASK {
            self.shim.schedule(vector);
        } else {
            self.stray_irqs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Detaches the driver (no netmap client may hold it): the interface
    /// goes down first (queued packets freed and counted), then what the
    /// stopped host never took from the rings is counted too. Returns the
    /// final counters, or the interface back if something still holds it.
    pub fn detach(self: Arc<Self>) -> Result<IfCounters, Arc<Self>> {
        // Without handlers (and none running), only real users hold it.
        self.set_handlers(false);
        let ifp = match Arc::try_unwrap(self) {
            Ok(ifp) => ifp,
            Err(ifp) => {
                ifp.set_handlers(true);
                return Err(ifp);
            }
        };
        let _ = ifp.if_down();
        let mut last = PtnetRsIfCounters::default();
        // SAFETY: nothing else calls into the softc now.
        let rc = unsafe { ptnet_ffi::ptnet_rs_detach(ifp.rs(), &mut last) };
        if rc != 0 {
            let ifp = Arc::new(ifp);
            ifp.set_handlers(true);
            return Err(ifp);
        }
        // As newbus does once DEVICE_DETACH succeeded (subr_bus.c).
        ifp.shim.os.kernel.printf(format!("{}: detached", ifp.name));
        Ok(if_counters_of(&last))
    }

    /// What the device reported at attach.
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// What this interface holds (see [`Footprint`]).
    pub fn footprint(&self) -> Footprint {
        let per_ring = (ptnet_ffi::PTNET_RS_TXQ_LEN + ptnet_ffi::PTNET_RS_HANDOFF_LEN) as usize;
        let txq_packets = self.info.num_tx_rings as usize * per_ring;
        Footprint {
            kernel_bytes: self.kernel_bytes,
            csb_bytes: self.shim.os.dma_bytes(),
            txq_packets,
            txq_bytes_max: txq_packets * ptnet::rx::MAX_FRAME,
        }
    }

    /// The kernel services of this device (for allocation ledgers).
    pub fn os(&self) -> &GuestOs {
        &self.shim.os
    }

    /// Memdev references the driver holds.
    pub fn memdevs_held(&self) -> i64 {
        self.shim.memdevs_held.load(Ordering::Relaxed)
    }

    /// Driver counters of one ring.
    pub fn counters(&self, dir: Dir, idx: u32) -> QueueCounters {
        let q = self.queue_stats(dir, idx);
        QueueCounters {
            syncs: q.syncs,
            kicks: q.kicks,
            irqs: q.irqs,
            host_errors: q.host_errors,
            host_resets: q.host_resets,
            stuck: q.stuck,
        }
    }

    /// Sum of the driver counters over all rings.
    pub fn total_counters(&self) -> QueueCounters {
        let info = self.info;
        let rings = (0..info.num_tx_rings).map(|i| (Dir::Tx, i)).chain((0..info.num_rx_rings).map(|i| (Dir::Rx, i)));
        let mut c = rings.map(|(d, i)| self.counters(d, i)).fold(QueueCounters::default(), |a, b| QueueCounters {
            syncs: a.syncs + b.syncs,
            kicks: a.kicks + b.kicks,
            irqs: a.irqs + b.irqs,
            host_errors: a.host_errors + b.host_errors,
            host_resets: a.host_resets + b.host_resets,
            stuck: a.stuck + b.stuck,
        });
        // The C driver's syncs and kicks (`NmMode::ZeroCopyC`).
        let (syncs, kicks) = self.netmap.c_counts();
        c.syncs += syncs;
        c.kicks += kicks;
        c
    }

    /// Stops and restarts the host side (`PTCTL` delete then create) while
    /// the rings are in use, as a hypervisor migration or a port reset
    /// does; users keep running and lose nothing.
    pub fn restart(&self) -> Result<(), NmError> {
        let _l = self.lock.lock().unwrap();
        // SAFETY: the softc is attached.
        match unsafe { ptnet_ffi::ptnet_rs_restart(self.rs()) } {
            0 => Ok(()),
            rc => Err(self.failed(rc)),
        }
    }
}

/// The driver's last error line for `name` on the console.
fn last_error(kernel: &GuestKernel, name: &str) -> String {
    let prefix = format!("{name}: error: ");
    kernel
        .dmesg()
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| "no reason given".into())
}

pub(crate) fn if_counters_of(c: &PtnetRsIfCounters) -> IfCounters {
    IfCounters {
        ipackets: c.ipackets,
        ibytes: c.ibytes,
        ierrors: c.ierrors,
        iqdrops: c.iqdrops,
        opackets: c.opackets,
        obytes: c.obytes,
        oerrors: c.oerrors,
        oqdrops: c.oqdrops,
        tx_csum: c.tx_csum,
        tx_tso: c.tx_tso,
        rx_lro: c.rx_lro,
        rx_csum_completed: c.rx_csum_completed,
        rx_segmented: c.rx_segmented,
        tx_watchdog: c.tx_watchdog,
        rx_missed_irqs: c.rx_missed_irqs,
        tx_abandoned: c.tx_abandoned,
    }
}
