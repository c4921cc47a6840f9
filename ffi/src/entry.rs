//! The entry points the C shim calls. Each checks its pointers, runs the
//! softc's operation and maps the outcome to an errno; none can unwind.
//!
//! Pointers from the shim are trusted to be either NULL or valid for the
//! duration of the call (a `PtnetRsSoftc` from `ptnet_rs_attach` until
//! `ptnet_rs_detach`); that is the contract stated in `ptnet_rs.h`.

use crate::kbox::KBox;
use crate::mbuf::MbufPkt;
use crate::ops::{register, Mbuf, PtnetShimOps};
use crate::os::ShimDev;
use crate::softc::{Error, IntrAction, Softc};
use core::ffi::{c_int, c_void};
use ptnet::abi::regs::{PCI_DEVICE_ID_PTNET, PCI_VENDOR_ID};
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
    /// Size of a netmap buffer.
    pub buf_size: u32,
    /// Host memory allocator id.
    pub memid: u32,
    /// Offset of the `netmap_if` in the host memory.
    pub nifp_ofs: u64,
    /// Size of the host memory.
    pub memsize: u64,
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
    /// TX: packets waiting in the software queue now.
    pub queued: u64,
    /// TX: watchdog firings (the host took nothing for the timeout);
    /// RX: interrupts the host lost, found by the watchdog.
    pub watchdog: u64,
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
/// Call `netmap_tx_irq`/`netmap_rx_irq` for the ring.
pub const PTNET_RS_INTR_NETMAP: c_int = 1;
/// Enqueue the ring's task.
pub const PTNET_RS_INTR_TASK: c_int = 2;

/// `ptnet_rs_attach` flag: ask the host for the virtio-net header.
pub const PTNET_RS_WANT_VNET_HDR: u32 = 1;
/// `ptnet_rs_nm_sync` flag: reclaim completed TX slots even if not needed
/// (`NAF_FORCE_RECLAIM`).
pub const PTNET_RS_SYNC_FORCE_RECLAIM: u32 = 1;

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
    let want = flags & PTNET_RS_WANT_VNET_HDR != 0;
    let cfg = Config { want_vnet_hdr: want, require_vnet_hdr: false };
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
            Softc::release(p.sc);
            errno::ENOMEM
        }
    }
}

/// Detaches (`device_detach`): EBUSY while the interface is up or a
/// netmap client holds the rings; otherwise releases everything.
///
/// # Safety
/// `sc` is NULL or from `ptnet_rs_attach`, and not used after success.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_detach(sc: *mut PtnetRsSoftc) -> c_int {
    // SAFETY: per the contract above.
    let Some(s) = (unsafe { softc(sc) }) else { return errno::EINVAL };
    if s.core().users() > 0 {
        return errno::EBUSY;
    }
    // SAFETY: `sc` came from `KBox::into_raw` in attach and is given up
    // by the caller now.
    let b = unsafe { KBox::from_raw(sc) };
    Softc::release(KBox::into_inner(b).sc);
    0
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
        buf_size: i.buf_size,
        memid: i.memid,
        nifp_ofs: i.nifp_ofs as u64,
        memsize: i.memsize as u64,
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
    let Some(pkt) = MbufPkt::new(m) else { return errno::EINVAL };
    // SAFETY: per the contract above.
    let Some(s) = (unsafe { softc(sc) }) else { return errno::EINVAL };
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

/// The MSI-X handler of `vector`: safe in a filter (no sleeping, no
/// allocation), though netmap's wakeups need the ithread.
/// Returns a `PTNET_RS_INTR_*` action; `*is_rx`/`*ring` say which ring.
///
/// # Safety
/// `sc` as for every entry point; `is_rx` and `ring` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_intr(sc: *const PtnetRsSoftc, vector: u32, is_rx: *mut u32, ring: *mut u32) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(is_rx), Some(ring)) =
        (unsafe { softc(sc) }, unsafe { is_rx.as_mut() }, unsafe { ring.as_mut() })
    else {
        return PTNET_RS_INTR_NONE;
    };
    let (action, d, idx) = match s.intr(vector) {
        IntrAction::None => return PTNET_RS_INTR_NONE,
        IntrAction::Netmap(d, i) => (PTNET_RS_INTR_NETMAP, d, i),
        IntrAction::Task(d, i) => (PTNET_RS_INTR_TASK, d, i),
    };
    *is_rx = u32::from(d == Dir::Rx);
    *ring = idx;
    action
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

/// netmap's `nm_register`: a netmap client takes (`onoff` != 0) or gives
/// back the rings. After taking them, read each ring with
/// `ptnet_rs_nm_kring` into netmap's kring.
///
/// # Safety
/// `sc` as for every entry point.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_register(sc: *const PtnetRsSoftc, onoff: c_int) -> c_int {
    // SAFETY: per the contract above.
    unsafe { softc(sc) }.map_or(errno::EINVAL, |s| status(s.nm_register(onoff != 0)))
}

/// A ring's pointers as the driver holds them.
///
/// # Safety
/// `sc` as for every entry point; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_kring(
    sc: *const PtnetRsSoftc,
    is_rx: u32,
    ring: u32,
    out: *mut PtnetRsKring,
) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(out)) = (unsafe { softc(sc) }, unsafe { out.as_mut() }) else { return errno::EINVAL };
    match s.kring(dir(is_rx), ring) {
        Some(k) => {
            *out = k.into();
            0
        }
        None => errno::ENXIO,
    }
}

/// netmap's `nm_txsync`/`nm_rxsync`: `k` carries the application's
/// `rhead`/`rcur` in and the ring's `hwcur`/`hwtail` out. EIO when the
/// host's pointers are inconsistent (counted, ring state kept).
///
/// # Safety
/// `sc` as for every entry point; `k` NULL or valid for reads and writes.
#[no_mangle]
pub unsafe extern "C" fn ptnet_rs_nm_sync(
    sc: *const PtnetRsSoftc,
    is_rx: u32,
    ring: u32,
    k: *mut PtnetRsKring,
    flags: u32,
) -> c_int {
    // SAFETY: per the contract above.
    let (Some(s), Some(k)) = (unsafe { softc(sc) }, unsafe { k.as_mut() }) else { return errno::EINVAL };
    let opts =
        SyncOpts { force_reclaim: flags & PTNET_RS_SYNC_FORCE_RECLAIM != 0, want_intr: true, ..SyncOpts::default() };
    match s.nm_sync(dir(is_rx), ring, k.rhead, k.rcur, opts) {
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
    let info = s.core().info();
    let mut c =
        IfCounters { oqdrops: s.netmap_drops.load(core::sync::atomic::Ordering::Relaxed), ..IfCounters::default() };
    for i in 0..info.num_tx_rings {
        s.with_tx(i, |r| c.add_tx(&r.stats));
    }
    for i in 0..info.num_rx_rings {
        s.with_rx(i, |r| c.add_rx(&r.stats));
    }
    *out = PtnetRsIfCounters {
        ipackets: c.ipackets,
        ibytes: c.ibytes,
        ierrors: c.ierrors,
        iqdrops: c.iqdrops,
        opackets: c.opackets,
        obytes: c.obytes,
        oerrors: c.oerrors,
        oqdrops: c.oqdrops,
    };
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
        ..Default::default()
    };
    match d {
        Dir::Tx => s.with_tx(ring, |r| {
            let t = &r.stats;
            st.packets = t.packets.get();
            st.bytes = t.bytes.get();
            st.errors = t.refused.get();
            st.drops = t.dropped();
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
