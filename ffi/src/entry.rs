//! The entry points the C shim calls. Each checks its pointers, runs the
//! softc's operation and maps the outcome to an errno; none can unwind.
//!
//! Pointers from the shim are trusted to be either NULL or valid for the
//! duration of the call (a `PtnetRsSoftc` from `ptnet_rs_attach` until
//! `ptnet_rs_detach`); that is the contract stated in `ptnet_rs.h`.

use crate::kbox::KBox;
use crate::mbuf::MbufPkt;
use crate::nmring::PtnetRsNmRing;
use crate::ops::{ops, register, Mbuf, PtnetShimOps};
use crate::os::ShimDev;
use crate::softc::{Error, Softc};
use core::ffi::{c_int, c_void};
use ptnet::abi::regs::{PCI_DEVICE_ID_MEMDEV, PCI_DEVICE_ID_PTNET, PCI_VENDOR_ID};
use ptnet::csb::SyncOpts;
use ptnet::ifnet::IfCounters;
use ptnet::kring::{Dir, Kring};
use ptnet::net::caps::IfCap;
use ptnet::tx::TxError;
use ptnet::Config;

/// FreeBSD's errno values.
mod errno {
    use core::ffi::c_int;
    pub(super) const EIO: c_int = 5;
    pub(super) const ENXIO: c_int = 6;
    pub(super) const ENOMEM: c_int = 12;
    pub(super) const EBUSY: c_int = 16;
    pub(super) const EINVAL: c_int = 22;
    pub(super) const ENETDOWN: c_int = 50;
    pub(super) const ENOBUFS: c_int = 55;
}

/// An attached device, opaque to the shim.
pub struct PtnetRsSoftc {
    sc: KBox<Softc>,
}

/// What the device reported at attach, for the shim's `ifnet` and netmap
/// registration.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsInfo {
    /// Station address.
    pub mac: [u8; 6],
    /// Granted features (`PTNETMAP_F_*`).
    pub features: u32,
    /// virtio-net header length in use (0, 10 or 12).
    pub vnet_hdr_len: u32,
    /// TX rings.
    pub num_tx_rings: u32,
    /// RX rings.
    pub num_rx_rings: u32,
    /// Slots per TX ring.
    pub num_tx_slots: u32,
    /// Slots per RX ring.
    pub num_rx_slots: u32,
    /// Host memory allocator id (the memdev the rings live in).
    pub memid: u32,
    /// Offset of the `netmap_if` in the host memory.
    pub nifp_ofs: u32,
}

/// What netmap's `nm_config` reports, with the host memory mapped.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsNmConfig {
    /// TX rings.
    pub num_tx_rings: u32,
    /// RX rings.
    pub num_rx_rings: u32,
    /// Slots per TX ring.
    pub num_tx_slots: u32,
    /// Slots per RX ring.
    pub num_rx_slots: u32,
    /// Size of the host's netmap buffers.
    pub buf_size: u32,
}

/// Interface capabilities and MTU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsCaps {
    /// `IFCAP_*` the interface can offer (`if_setcapabilities`).
    pub supported: u32,
    /// `IFCAP_*` enabled (`if_setcapenable`).
    pub enabled: u32,
    /// `CSUM_*` the stack may request (`if_sethwassist`).
    pub hwassist: u32,
    /// Current MTU.
    pub mtu: u32,
    /// Largest MTU.
    pub max_mtu: u32,
}

/// Interface counters for `if_get_counter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsIfCounters {
    /// `IFCOUNTER_IPACKETS`.
    pub ipackets: u64,
    /// `IFCOUNTER_IBYTES`.
    pub ibytes: u64,
    /// `IFCOUNTER_IERRORS`.
    pub ierrors: u64,
    /// `IFCOUNTER_IQDROPS`.
    pub iqdrops: u64,
    /// `IFCOUNTER_OPACKETS`.
    pub opackets: u64,
    /// `IFCOUNTER_OBYTES`.
    pub obytes: u64,
    /// `IFCOUNTER_OERRORS`.
    pub oerrors: u64,
    /// `IFCOUNTER_OQDROPS`.
    pub oqdrops: u64,
    /// Packets sent with checksum offload.
    pub tx_csum: u64,
    /// Packets sent with TSO.
    pub tx_tso: u64,
    /// Frames received as large-receive frames.
    pub rx_lro: u64,
    /// Checksums completed on receive (RXCSUM off).
    pub rx_csum_completed: u64,
    /// Super-packets segmented on receive (LRO off).
    pub rx_segmented: u64,
    /// Transmit watchdog timeouts.
    pub tx_watchdog: u64,
    /// Receive interrupts the host lost, found by the watchdog.
    pub rx_missed_irqs: u64,
    /// Packets sent into a ring that the host never took before detach.
    pub tx_abandoned: u64,
}

impl From<IfCounters> for PtnetRsIfCounters {
    fn from(c: IfCounters) -> Self {
        Self {
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
}

/// One ring's counters, for `sysctl dev.ptnrs.<unit>.{tx,rx}q<N>`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsQueueStats {
    /// Packets through the ring.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// TX: packets refused (bad offload request); RX: bad slots or headers.
    pub errors: u64,
    /// TX: software queue full, interface down, or freed by the
    /// watchdog; RX: no mbufs.
    pub drops: u64,
    /// TX: sent with checksum offload; RX: checksums completed in software.
    pub csum: u64,
    /// TX: sent with TSO; RX: handed up as large-receive frames.
    pub tso_lro: u64,
    /// Syncs run.
    pub syncs: u64,
    /// Kicks written.
    pub kicks: u64,
    /// Interrupts received.
    pub irqs: u64,
    /// Host updates refused (inconsistent ring pointers).
    pub host_errors: u64,
    /// Host ring states adopted after the host reset them.
    pub host_resets: u64,
    /// TX: packets waiting in the software queue now.
    pub queued: u64,
    /// TX: watchdog firings (the host took nothing for the timeout);
    /// RX: interrupts the host lost, found by the watchdog.
    pub watchdog: u64,
    /// Times the host was found wedged on the ring and restarted.
    pub stuck: u64,
}

/// A ring's pointers, copied between netmap's kring and the driver.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsKring {
    /// `nkr_num_slots`.
    pub num_slots: u32,
    /// `nr_hwcur`.
    pub hwcur: u32,
    /// `nr_hwtail`.
    pub hwtail: u32,
    /// `rhead`.
    pub rhead: u32,
    /// `rcur`.
    pub rcur: u32,
}

impl From<Kring> for PtnetRsKring {
    fn from(k: Kring) -> Self {
        Self { num_slots: k.num_slots, hwcur: k.hwcur, hwtail: k.hwtail, rhead: k.rhead, rcur: k.rcur }
    }
}

/// No action for the shim (returned by `ptnet_rs_intr`).
pub const PTNET_RS_INTR_NONE: c_int = 0;
/// Enqueue the ring's task.
pub const PTNET_RS_INTR_TASK: c_int = 2;

/// Packets a TX ring's software queue holds while the ring is full.
pub const PTNET_RS_TXQ_LEN: u32 = 256;
/// Packets `if_transmit` may leave for a TX ring another thread holds.
pub const PTNET_RS_HANDOFF_LEN: u32 = 64;

/// `ptnet_rs_attach` flag: ask the host for the virtio-net header.
pub const PTNET_RS_WANT_VNET_HDR: u32 = 1;
/// `ptnet_rs_attach` flag: refuse to attach when the header is not granted.
pub const PTNET_RS_REQUIRE_VNET_HDR: u32 = 2;
/// `ptnet_rs_nm_sync` flag: reclaim completed TX slots even if not needed
/// (`NAF_FORCE_RECLAIM`).
pub const PTNET_RS_SYNC_FORCE_RECLAIM: u32 = 1;
/// `ptnet_rs_nm_sync` flag: the kring wants no interrupt (`NKR_NOINTR`).
pub const PTNET_RS_SYNC_NOINTR: u32 = 2;

fn errno(e: Error) -> c_int {
    match e {
        // No contiguous memory for the CSB is worth retrying later.
        Error::Attach(ptnet::AttachError::CsbAlloc) => errno::ENOMEM,
        Error::Attach(_) | Error::NoRing => errno::ENXIO,
        Error::Up(_) | Error::Sync(_) => errno::EIO,
        Error::Tx(TxError::QueueFull) => errno::ENOBUFS,
        Error::Tx(TxError::Down) => errno::ENETDOWN,
        Error::NoMemory => errno::ENOMEM,
        Error::Invalid => errno::EINVAL,
        Error::Busy => errno::EBUSY,
    }
}

fn status(r: Result<(), Error>) -> c_int {
    r.map_or_else(errno, |()| 0)
}

/// The softc behind `sc`, if any.
///
/// # Safety
/// `sc` is NULL or a pointer from `ptnet_rs_attach` not yet detached.
unsafe fn softc<'a>(sc: *const PtnetRsSoftc) -> Option<&'a Softc> {
    // SAFETY: per the contract above.
    unsafe { sc.as_ref() }.map(|s| &*s.sc)
}

fn dir(is_rx: u32) -> Dir {
    if is_rx != 0 {
        Dir::Rx
    } else {
        Dir::Tx
    }
}

/// Registers the shim's functions (`MOD_LOAD`); every entry of `ops` must
/// be set. Returns 0 or EINVAL.
///
/// # Safety
/// `ops` is NULL or points to a table valid for the call.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_init(ops: *const PtnetShimOps) -> c_int {
    // SAFETY: per the contract above.
    match unsafe { ops.as_ref() } {
        Some(t) if register(t) => 0,
        _ => errno::EINVAL,
    }
}

/// Whether a PCI function is a ptnet NIC (`device_probe`): 0 or ENXIO.
#[no_mangle]
pub extern "C" fn ptnet_rs_probe(vendor: u16, device: u16) -> c_int {
    if vendor == PCI_VENDOR_ID && device == PCI_DEVICE_ID_PTNET {
        0
    } else {
        errno::ENXIO
    }
}

/// Whether a PCI function is a ptnetmap-memdev, the host memory behind
/// ptnet NICs (`device_probe`): 0 or ENXIO.
#[no_mangle]
pub extern "C" fn ptnet_rs_probe_memdev(vendor: u16, device: u16) -> c_int {
    if vendor == PCI_VENDOR_ID && device == PCI_DEVICE_ID_MEMDEV {
        0
    } else {
        errno::ENXIO
    }
}

/// Attaches to the device whose resources the shim holds as `dev`
/// (`device_attach`, after the BAR and `msix_vectors` vectors were
/// allocated). On success `*out` is the device until `ptnet_rs_detach`.
///
/// # Safety
/// `out` is NULL or valid for a write; `dev` stays valid until detach.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_attach(
    dev: *mut c_void,
    msix_vectors: u32,
    flags: u32,
    out: *mut *mut PtnetRsSoftc,
) -> c_int {
    if out.is_null() {
        return errno::EINVAL;
    }
    let cfg = Config {
        want_vnet_hdr: flags & PTNET_RS_WANT_VNET_HDR != 0,
        require_vnet_hdr: flags & PTNET_RS_REQUIRE_VNET_HDR != 0,
    };
    let sc = match Softc::attach(ShimDev(dev), msix_vectors, cfg) {
        Ok(sc) => sc,
        Err(e) => return errno(e),
    };
    match KBox::new(PtnetRsSoftc { sc }) {
        Ok(b) => {
            // SAFETY: `out` is valid for a write (checked non-NULL above).
            unsafe { out.write(b.into_raw()) };
            0
        }
        Err(p) => {
            let _ = Softc::release(p.sc);
            errno::ENOMEM
        }
    }
}

/// Detaches (`device_detach`): EBUSY, and nothing changed, while the
/// interface is up or netmap holds a ring; otherwise stops the host,
/// withdraws the CSB and releases everything. The shim must have stopped
/// every interrupt and task that could call in. `last` (NULL or valid for
/// a write) receives the interface counters as they end, packets the host
/// never took counted.
///
/// # Safety
/// `sc` is NULL or from `ptnet_rs_attach`, and not used after success.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_detach(sc: *mut PtnetRsSoftc, last: *mut PtnetRsIfCounters) -> c_int {
    // SAFETY: per the contract above.
    let Some(s) = (unsafe { softc(sc) }) else { return errno::EINVAL };
    if let Err(e) = s.detachable() {
        return errno(e);
    }
    // SAFETY: `sc` came from `KBox::into_raw` in attach and is given up
    // by the caller now.
    let b = unsafe { KBox::from_raw(sc) };
    let counters = Softc::release(KBox::into_inner(b).sc);
    // SAFETY: per the contract above.
    if let Some(out) = unsafe { last.as_mut() } {
        *out = counters.into();
    }
    0
}

/// Whether detach would be refused now (EBUSY) or go through (0): the
/// shim asks before it takes the interface away.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_detachable(sc: *const PtnetRsSoftc) -> c_int {
    // SAFETY: per the contract above.
    unsafe { softc(sc) }.map_or(errno::EINVAL, |s| status(s.detachable()))
}

/// `device_shutdown`: stops the host and clears the CSB address registers,
/// so that after a reboot the host writes nothing into reused pages.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_shutdown(sc: *const PtnetRsSoftc) {
    // SAFETY: per the contract above.
    if let Some(s) = unsafe { softc(sc) } {
        s.shutdown();
    }
}

/// Fills `*out` with what the device reported at attach.
///
/// # Safety
/// `sc` as for every entry point; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_info(sc: *const PtnetRsSoftc, out: *mut PtnetRsInfo) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(out)) = (unsafe { softc(sc) }, unsafe { out.as_mut() }) else { return errno::EINVAL };
    let i = s.core().info();
    *out = PtnetRsInfo {
        mac: i.mac,
        features: i.features.bits(),
        vnet_hdr_len: i.vnet_hdr_len,
        num_tx_rings: i.num_tx_rings,
        num_rx_rings: i.num_rx_rings,
        num_tx_slots: i.num_tx_slots,
        num_rx_slots: i.num_rx_slots,
        memid: i.memid,
        nifp_ofs: i.nifp_ofs,
    };
    0
}

/// `if_init`: brings the interface up. The shim then sets
/// `IFF_DRV_RUNNING` and enqueues every RX task once.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_if_init(sc: *const PtnetRsSoftc) -> c_int {
    // SAFETY: per the contract above.
    unsafe { softc(sc) }.map_or(errno::EINVAL, |s| status(s.if_init()))
}

/// Brings the interface down (`ifconfig down`, shutdown, suspend):
/// queued packets are freed and counted.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_if_stop(sc: *const PtnetRsSoftc) -> c_int {
    // SAFETY: per the contract above.
    unsafe { softc(sc) }.map_or(errno::EINVAL, |s| status(s.if_stop()))
}

/// `SIOCSIFMTU`: 0 or EINVAL (out of range for the buffers).
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_set_mtu(sc: *const PtnetRsSoftc, mtu: u32) -> c_int {
    // SAFETY: per the contract above.
    let Some(s) = (unsafe { softc(sc) }) else { return errno::EINVAL };
    s.core().ifstate().set_mtu(mtu).map_or(errno::EINVAL, |()| 0)
}

/// `SIOCSIFCAP`: enables exactly `caps` (`IFCAP_*`); 0, or EINVAL when
/// the device cannot (the shim then reads `ptnet_rs_caps` again).
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_set_caps(sc: *const PtnetRsSoftc, caps: u32) -> c_int {
    // SAFETY: per the contract above.
    let Some(s) = (unsafe { softc(sc) }) else { return errno::EINVAL };
    s.core().ifstate().set_capabilities(IfCap::from_bits_truncate(caps)).map_or(errno::EINVAL, |_| 0)
}

/// Capabilities, hardware assist and MTU, for `ifnet`.
///
/// # Safety
/// `sc` as for every entry point; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_caps(sc: *const PtnetRsSoftc, out: *mut PtnetRsCaps) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(out)) = (unsafe { softc(sc) }, unsafe { out.as_mut() }) else { return errno::EINVAL };
    let st = s.core().ifstate();
    *out = PtnetRsCaps {
        supported: st.supported().bits(),
        enabled: st.enabled().bits(),
        hwassist: st.hwassist().bits(),
        mtu: st.mtu(),
        max_mtu: st.max_mtu(),
    };
    0
}

/// `if_transmit`: takes `m` in every case (sent, queued, or freed) and
/// returns 0, ENOBUFS (queue full) or ENETDOWN.
///
/// # Safety
/// `sc` as for every entry point; `m` a chain the caller gives up.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_transmit(sc: *const PtnetRsSoftc, m: *mut Mbuf) -> c_int {
    // SAFETY: per the contract above.
    let Some(s) = (unsafe { softc(sc) }) else {
        if let (Some(o), false) = (ops(), m.is_null()) {
            // SAFETY: the caller gave `m` up; nobody else frees it.
            unsafe { (o.m_free)(m) };
        }
        return errno::EINVAL;
    };
    let Some(pkt) = MbufPkt::new(m, s.shim()) else { return errno::EINVAL };
    status(s.transmit(pkt))
}

/// `if_qflush`: frees the packets waiting in the software queues.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_qflush(sc: *const PtnetRsSoftc) {
    // SAFETY: per the contract above.
    if let Some(s) = unsafe { softc(sc) } {
        s.flush_queues();
    }
}

/// The MSI-X handler of `vector` (no sleeping, no allocation): counts the
/// interrupt and returns `PTNET_RS_INTR_TASK` when the network stack uses
/// the ring and its task should run. The shim first lets netmap take the
/// interrupt (`netmap_rx_irq`/`netmap_tx_irq`) and only falls through
/// here when netmap says `NM_IRQ_PASS`.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_intr(sc: *const PtnetRsSoftc, vector: u32) -> c_int {
    // SAFETY: per the contract above.
    match unsafe { softc(sc) } {
        Some(s) if s.intr(vector) => PTNET_RS_INTR_TASK,
        _ => PTNET_RS_INTR_NONE,
    }
}

/// A TX ring's task: resumes its software queue.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_tx_task(sc: *const PtnetRsSoftc, ring: u32) -> c_int {
    // SAFETY: per the contract above.
    unsafe { softc(sc) }.map_or(errno::EINVAL, |s| status(s.tx_task(ring)))
}

/// An RX ring's task: hands up to `budget` frames to the stack through
/// `rx_input`. Returns 1 when more are waiting (enqueue the task again),
/// else 0 (the ring's interrupt is armed).
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_rx_task(sc: *const PtnetRsSoftc, ring: u32, budget: u32) -> c_int {
    // SAFETY: per the contract above.
    let more = unsafe { softc(sc) }.and_then(|s| s.rx_task(ring, budget).ok());
    c_int::from(more == Some(true))
}

/// The once-a-second tick (a callout's task) with the kernel's clock in
/// milliseconds: runs every TX ring's watchdog, which frees and counts
/// what a stalled host has not taken within `timeout_ms`. Returns how many
/// rings' watchdogs fired (the shim then restarts the host side).
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_tick(sc: *const PtnetRsSoftc, now_ms: u64, timeout_ms: u64) -> c_int {
    // SAFETY: per the contract above.
    unsafe { softc(sc) }.map_or(0, |s| c_int::try_from(s.tick(now_ms, timeout_ms)).unwrap_or(c_int::MAX))
}

/// The once-a-second tick of RX ring `ring`: returns 1 when frames wait
/// whose interrupt the host lost (the shim then enqueues the ring's task
/// as the interrupt would have), 0 otherwise.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_rx_watchdog(sc: *const PtnetRsSoftc, ring: u32) -> c_int {
    // SAFETY: per the contract above.
    c_int::from(unsafe { softc(sc) }.is_some_and(|s| s.rx_watchdog(ring)))
}

/// netmap's `nm_config`: the rings and the host's buffer size. The host
/// memory is found and mapped here if it was not yet (netmap asks before
/// registering a client); ENXIO when its memdev is not there.
///
/// # Safety
/// `sc` as for every entry point; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_config(sc: *const PtnetRsSoftc, out: *mut PtnetRsNmConfig) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(out)) = (unsafe { softc(sc) }, unsafe { out.as_mut() }) else { return errno::EINVAL };
    match s.nm_config() {
        Ok(buf_size) => {
            let i = s.core().info();
            *out = PtnetRsNmConfig {
                num_tx_rings: i.num_tx_rings,
                num_rx_rings: i.num_rx_rings,
                num_tx_slots: i.num_tx_slots,
                num_rx_slots: i.num_rx_slots,
                buf_size,
            };
            0
        }
        Err(e) => errno(e),
    }
}

/// netmap's `nm_register` for one kring whose mode goes on: netmap takes
/// the ring from the stack (the first ring starts the host). `*out` is
/// the ring's state, for the kring (`nr_hwcur`, `nr_hwtail`, `rhead`,
/// `rcur`, `rtail`) and for the netmap ring (`head`, `cur`, `tail`). In
/// copy mode `guest` is netmap's ring (else NULL): frames waiting in the
/// host's RX ring are copied into it.
///
/// # Safety
/// `sc` as for every entry point; `guest` NULL or a ring valid for the
/// call; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_ring_on(
    sc: *const PtnetRsSoftc,
    is_rx: u32,
    ring: u32,
    guest: *const PtnetRsNmRing,
    out: *mut PtnetRsKring,
) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(out)) = (unsafe { softc(sc) }, unsafe { out.as_mut() }) else { return errno::EINVAL };
    // SAFETY: per the contract above.
    match s.nm_ring_on(dir(is_rx), ring, unsafe { guest.as_ref() }) {
        Ok(k) => {
            *out = k.into();
            0
        }
        Err(e) => errno(e),
    }
}

/// netmap's `nm_register` for one kring whose mode goes off: the ring goes
/// back to the stack (the last one stops the host unless the interface is
/// up). `*resume` is 1 when the ring's task should run now (an RX ring of
/// a running interface: what arrived meanwhile).
///
/// # Safety
/// `sc` as for every entry point; `resume` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_ring_off(
    sc: *const PtnetRsSoftc,
    is_rx: u32,
    ring: u32,
    resume: *mut u32,
) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(resume)) = (unsafe { softc(sc) }, unsafe { resume.as_mut() }) else { return errno::EINVAL };
    match s.nm_ring_off(dir(is_rx), ring) {
        Ok(r) => {
            *resume = u32::from(r);
            0
        }
        Err(e) => errno(e),
    }
}

/// netmap's `nm_intr`: the interrupts of the rings netmap holds on (1) or
/// off (0).
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_intr(sc: *const PtnetRsSoftc, onoff: c_int) {
    // SAFETY: per the contract above.
    if let Some(s) = unsafe { softc(sc) } {
        s.nm_intr(onoff != 0);
    }
}

/// netmap's `nm_txsync`/`nm_rxsync` on a ring netmap holds: `k` carries
/// the application's `rhead`/`rcur` in and the ring's `hwcur`/`hwtail`
/// out. `flags` are `PTNET_RS_SYNC_*`; in copy mode `guest` is netmap's
/// ring (else NULL). EINVAL for pointers that break the ring invariants;
/// EIO when the host's pointers were inconsistent (counted, ring state
/// kept, host kicked to publish again).
///
/// # Safety
/// `sc` as for every entry point; `k` NULL or valid for reads and writes;
/// `guest` NULL or a ring valid for the call.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_sync(
    sc: *const PtnetRsSoftc,
    is_rx: u32,
    ring: u32,
    k: *mut PtnetRsKring,
    flags: u32,
    guest: *const PtnetRsNmRing,
) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(k)) = (unsafe { softc(sc) }, unsafe { k.as_mut() }) else { return errno::EINVAL };
    let opts = SyncOpts {
        force_reclaim: flags & PTNET_RS_SYNC_FORCE_RECLAIM != 0,
        want_intr: flags & PTNET_RS_SYNC_NOINTR == 0,
        ..SyncOpts::default()
    };
    // SAFETY: per the contract above.
    match s.nm_sync(dir(is_rx), ring, (k.rhead, k.rcur), opts, unsafe { guest.as_ref() }) {
        Ok(new) => {
            *k = new.into();
            0
        }
        Err(e) => errno(e),
    }
}

/// Restarts the host side (`PTCTL` delete then create), e.g. on resume:
/// the rings keep their state.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_restart(sc: *const PtnetRsSoftc) -> c_int {
    // SAFETY: per the contract above.
    unsafe { softc(sc) }.map_or(errno::EINVAL, |s| status(s.restart()))
}

/// Interface counters, summed over the rings (`if_get_counter`).
///
/// # Safety
/// `sc` as for every entry point; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_counters(sc: *const PtnetRsSoftc, out: *mut PtnetRsIfCounters) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(out)) = (unsafe { softc(sc) }, unsafe { out.as_mut() }) else { return errno::EINVAL };
    *out = s.counters().into();
    0
}

/// One ring's counters (`sysctl`).
///
/// # Safety
/// `sc` as for every entry point; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_queue_stats(
    sc: *const PtnetRsSoftc,
    is_rx: u32,
    ring: u32,
    out: *mut PtnetRsQueueStats,
) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(out)) = (unsafe { softc(sc) }, unsafe { out.as_mut() }) else { return errno::EINVAL };
    let d = dir(is_rx);
    let Some(q) = s.core().stats(d, ring).map(|q| q.snapshot()) else { return errno::ENXIO };
    let mut st = PtnetRsQueueStats {
        syncs: q.syncs,
        kicks: q.kicks,
        irqs: q.irqs,
        host_errors: q.host_errors,
        host_resets: q.host_resets,
        stuck: q.stuck,
        ..Default::default()
    };
    match d {
        Dir::Tx => s.with_tx(ring, |r, handoff_drops| {
            let t = &r.stats;
            st.packets = t.packets.get();
            st.bytes = t.bytes.get();
            st.errors = t.refused.get();
            st.drops = t.dropped().saturating_add(handoff_drops);
            st.watchdog = t.watchdog.get();
            st.csum = t.csum.get();
            st.tso_lro = t.tso.get();
            st.queued = r.queued() as u64;
        }),
        Dir::Rx => s.with_rx(ring, |r| {
            let t = &r.stats;
            st.packets = t.packets.get();
            st.bytes = t.bytes.get();
            st.errors = t.errors.get();
            st.drops = t.no_memory.get();
            st.csum = t.csum_completed.get();
            st.tso_lro = t.lro.get();
            st.watchdog = t.missed_irqs.get();
        }),
    };
    *out = st;
    0
}
