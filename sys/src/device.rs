//! The ptnet device: attach, bring-up and tear-down, and the per-ring sync
//! entry points the OS's netmap layer calls.

use crate::abi::csb::CSB_ENTRY_SIZE;
use crate::abi::regs::{kick_reg, ptnet as reg, Features, PtctlCmd};
use crate::abi::vnet::{VirtioNetHdr, VirtioNetHdrMrgRxbuf};
use crate::counter::log_this;
use crate::csb::{self, CsbMem, CsbRing, Field, SyncOpts};
use crate::error::AttachError;
use crate::ifnet::IfState;
use crate::kring::{BadPointers, Dir, Kring};
use crate::layout::{Expected, Memdev, NetmapLayout, MAX_RINGS, MAX_SLOTS, MIN_SLOTS};
use crate::os::{DmaMemory, Kernel, LogLevel, Registers};
use crate::shmem::SharedRegion;
use core::mem::{size_of, MaybeUninit};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::Once;

/// Size of a CSB page: each direction's array gets one.
pub const CSB_PAGE: usize = 4096;

/// How the driver wants to use the device (loader tunables on FreeBSD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Ask for the virtio-net header (checksum and TSO offloads).
    pub want_vnet_hdr: bool,
    /// Refuse to attach when the header is not granted.
    pub require_vnet_hdr: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self { want_vnet_hdr: true, require_vnet_hdr: false }
    }
}

/// What the device told us at attach, after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Station address.
    pub mac: [u8; 6],
    /// Granted features.
    pub features: Features,
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
    /// Host memory allocator id (`HOSTMEMID`): the memdev to map.
    pub memid: u32,
    /// Offset of the `netmap_if` in that memory (`NIFP_OFS`).
    pub nifp_ofs: u32,
}

impl DeviceInfo {
    /// Rings of both directions.
    pub fn num_rings(&self) -> u32 {
        self.num_tx_rings.saturating_add(self.num_rx_rings)
    }

    /// Global ring number (TX first), which is also the kick register
    /// index and the MSI-X vector.
    pub fn ring_id(&self, dir: Dir, idx: u32) -> Option<u32> {
        match dir {
            Dir::Tx => (idx < self.num_tx_rings).then_some(idx),
            Dir::Rx => (idx < self.num_rx_rings).then(|| self.num_tx_rings.saturating_add(idx)),
        }
    }

    /// The ring a global ring number refers to.
    pub fn ring_of(&self, id: u32) -> Option<(Dir, u32)> {
        if id < self.num_tx_rings {
            Some((Dir::Tx, id))
        } else {
            let rx = id.checked_sub(self.num_tx_rings)?;
            (rx < self.num_rx_rings).then_some((Dir::Rx, rx))
        }
    }
}

/// Per-ring counters (exported as sysctls by the FreeBSD shim).
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Syncs run.
    pub syncs: AtomicU64,
    /// Kicks written to the host.
    pub kicks: AtomicU64,
    /// Interrupts received.
    pub irqs: AtomicU64,
    /// Host updates rejected because they broke the ring invariants.
    pub host_errors: AtomicU64,
    /// Times the host came back from `PTCTL` create with ring state that
    /// does not continue the guest's (a re-registered port), which the
    /// driver then adopted.
    pub host_resets: AtomicU64,
    /// Times the ring watchdog found the host wedged on the ring (its
    /// pointers refused, or published work unacknowledged, for the whole
    /// timeout) and had the host side restarted.
    pub stuck: AtomicU64,
}

/// A plain copy of [`QueueStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Syncs run.
    pub syncs: u64,
    /// Kicks written.
    pub kicks: u64,
    /// Interrupts received.
    pub irqs: u64,
    /// Host updates rejected.
    pub host_errors: u64,
    /// Host ring states adopted after a reset.
    pub host_resets: u64,
    /// Wedged hosts the watchdog restarted.
    pub stuck: u64,
}

impl QueueStats {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            syncs: AtomicU64::new(0),
            kicks: AtomicU64::new(0),
            irqs: AtomicU64::new(0),
            host_errors: AtomicU64::new(0),
            host_resets: AtomicU64::new(0),
            stuck: AtomicU64::new(0),
        }
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> QueueCounters {
        QueueCounters {
            syncs: self.syncs.load(Ordering::Relaxed),
            kicks: self.kicks.load(Ordering::Relaxed),
            irqs: self.irqs.load(Ordering::Relaxed),
            host_errors: self.host_errors.load(Ordering::Relaxed),
            host_resets: self.host_resets.load(Ordering::Relaxed),
            stuck: self.stuck.load(Ordering::Relaxed),
        }
    }
}

/// What the ring watchdog last saw of a ring ([`Ptnet::ring_watchdog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingWatch {
    /// Since when (OS clock, ms) the host has shown no progress, and at
    /// which of its pointers (`None`: refused).
    since: Option<(u64, Option<(u32, u32)>)>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A ring's notification state, made on demand from the CSB and the ring
/// number (so that the device stays small).
#[derive(Debug)]
struct Queue<'a> {
    csb: CsbRing,
    kick: u32,
    stats: &'a QueueStats,
}

/// An attached ptnet device.
///
/// Attach reads and checks the NIC's registers and programs the CSB; the
/// host's netmap memory behind the memdev is mapped and checked later
/// ([`Ptnet::map_memory`]), before the rings are first used, as the C
/// driver finalizes netmap's memory at init: the NIC may attach before its
/// memdev, and a memdev that is not there yet costs an `ifconfig up`
/// error, not the interface.
pub struct Ptnet<K: Kernel, R: Registers> {
    kernel: K,
    regs: R,
    info: DeviceInfo,
    layout: Once<NetmapLayout>,
    csb: DmaMemory,
    stats: [QueueStats; MAX_RINGS],
    running: AtomicBool,
    users: AtomicU32,
    started_once: AtomicBool,
    ifstate: IfState,
    /// The CSB is freed ([`Ptnet::teardown`]).
    torn_down: bool,
}

/// Every ring's kring, visited in ring-number order (TX first) while the
/// device is brought up: the OS decides how they are locked (all at once,
/// or each in turn while its datapath is held off).
pub trait KringSet {
    /// Calls `f` on each kring in order, stopping at its first error.
    fn visit(&mut self, f: &mut dyn FnMut(&mut Kring) -> Result<(), UpError>) -> Result<(), UpError>;
}

impl<'k, I: Iterator<Item = &'k mut Kring>> KringSet for I {
    fn visit(&mut self, f: &mut dyn FnMut(&mut Kring) -> Result<(), UpError>) -> Result<(), UpError> {
        self.try_for_each(f)
    }
}

/// Why bringing the rings up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpError {
    /// The host's netmap memory is not mapped yet ([`Ptnet::map_memory`]).
    NoMemory,
    /// `PTCTL` failed.
    Ptctl(AttachError),
    /// The host's ring state is inconsistent.
    Sync(SyncError),
}

impl core::fmt::Display for UpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UpError::NoMemory => f.write_str("the host's netmap memory is not mapped"),
            UpError::Ptctl(e) => write!(f, "{e}"),
            UpError::Sync(SyncError::NoRing) => f.write_str("no such ring"),
            UpError::Sync(SyncError::Host(b)) => {
                write!(f, "host ring state inconsistent (hwcur {} hwtail {})", b.a, b.b)
            }
        }
    }
}

/// A sync that the host's pointers made impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncError {
    /// No such ring.
    NoRing,
    /// The host wrote pointers that break the ring invariants.
    Host(BadPointers),
}

impl<K: Kernel, R: Registers> Ptnet<K, R> {
    /// Attaches to a ptnet function: negotiates features, reads and checks
    /// the configuration registers, allocates the CSB and hands its
    /// address to the device. Nothing is left allocated or programmed when
    /// attach fails; the kernel services and registers are handed back.
    pub fn attach(kernel: K, regs: R, msix_vectors: u32, cfg: Config) -> Result<Self, (K, R, AttachError)> {
        let mut slot = MaybeUninit::uninit();
        Self::attach_into(&mut slot, kernel, regs, msix_vectors, cfg)?;
        // SAFETY: `attach_into` initialised the slot when it succeeded.
        Ok(unsafe { slot.assume_init() })
    }

    /// [`Ptnet::attach`] into memory the caller provides: a kernel builds
    /// the device in its softc, never on its small stack.
    pub fn attach_into(
        slot: &mut MaybeUninit<Self>,
        kernel: K,
        regs: R,
        msix_vectors: u32,
        cfg: Config,
    ) -> Result<&mut Self, (K, R, AttachError)> {
        match Self::probe(&regs, msix_vectors, cfg) {
            Ok(info) => Self::finish_attach(slot, kernel, regs, info),
            Err(e) => {
                kernel.log(LogLevel::Error, format_args!("attach failed: {e}"));
                Err((kernel, regs, e))
            }
        }
    }

    fn probe(regs: &R, msix_vectors: u32, cfg: Config) -> Result<DeviceInfo, AttachError> {
        let wanted = if cfg.want_vnet_hdr { Features::VNET_HDR } else { Features::empty() };
        regs.write32(reg::PTFEAT, wanted.bits());
        let granted_raw = regs.read32(reg::PTFEAT);
        let features = Features::from_bits(granted_raw)
            .filter(|f| wanted.contains(*f))
            .ok_or(AttachError::UnrequestedFeatures { wanted, granted: granted_raw })?;
        if cfg.require_vnet_hdr && !features.contains(Features::VNET_HDR) {
            return Err(AttachError::FeatureNotGranted { missing: Features::VNET_HDR });
        }

        let num_tx = regs.read32(reg::NUM_TX_RINGS);
        let num_rx = regs.read32(reg::NUM_RX_RINGS);
        let total = num_tx.checked_add(num_rx);
        if num_tx == 0 || num_rx == 0 || total.is_none_or(|t| t as usize > MAX_RINGS) {
            return Err(AttachError::BadRingCount { tx: num_tx, rx: num_rx });
        }
        let need = num_tx.saturating_add(num_rx);
        if msix_vectors < need {
            return Err(AttachError::NotEnoughVectors { have: msix_vectors, need });
        }
        let tx_slots = regs.read32(reg::NUM_TX_SLOTS);
        let rx_slots = regs.read32(reg::NUM_RX_SLOTS);
        for (dir, slots) in [(Dir::Tx, tx_slots), (Dir::Rx, rx_slots)] {
            if !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) {
                return Err(AttachError::BadSlotCount { dir, slots });
            }
        }
        let vnet_hdr_len = Self::negotiate_hdr_len(regs, features)?;
        let hi = regs.read32(reg::MAC_HI).to_be_bytes();
        let lo = regs.read32(reg::MAC_LO).to_be_bytes();
        Ok(DeviceInfo {
            mac: [hi[2], hi[3], lo[0], lo[1], lo[2], lo[3]],
            features,
            vnet_hdr_len,
            num_tx_rings: num_tx,
            num_rx_rings: num_rx,
            num_tx_slots: tx_slots,
            num_rx_slots: rx_slots,
            memid: regs.read32(reg::HOSTMEMID),
            nifp_ofs: regs.read32(reg::NIFP_OFS),
        })
    }

    /// Asks for the 12-byte header (`virtio_net_hdr_mrg_rxbuf`, what
    /// FreeBSD's and Linux's C drivers use, so that a VALE switch shared
    /// with their ports passes packets without converting) when the feature
    /// was granted, 0 otherwise, and checks what the host port actually
    /// uses: 10 bytes is accepted too.
    fn negotiate_hdr_len(regs: &R, features: Features) -> Result<u32, AttachError> {
        let wanted = if features.contains(Features::VNET_HDR) { size_of::<VirtioNetHdrMrgRxbuf>() as u32 } else { 0 };
        regs.write32(reg::VNET_HDR_LEN, wanted);
        let len = regs.read32(reg::VNET_HDR_LEN);
        let usable = len == 0
            || (features.contains(Features::VNET_HDR)
                && (len == size_of::<VirtioNetHdr>() as u32 || len == size_of::<VirtioNetHdrMrgRxbuf>() as u32));
        if usable {
            Ok(len)
        } else {
            Err(AttachError::BadVnetHdrLen { len })
        }
    }

    fn finish_attach(
        slot: &mut MaybeUninit<Self>,
        kernel: K,
        regs: R,
        info: DeviceInfo,
    ) -> Result<&mut Self, (K, R, AttachError)> {
        let Some(csb) = kernel.alloc_dma(2 * CSB_PAGE, CSB_PAGE) else {
            kernel.log(LogLevel::Error, format_args!("attach failed: {}", AttachError::CsbAlloc));
            return Err((kernel, regs, AttachError::CsbAlloc));
        };
        let pages = (csb.region.sub(0, CSB_PAGE), csb.region.sub(CSB_PAGE, CSB_PAGE));
        let (Ok(atok), Ok(ktoa)) = pages else {
            kernel.free_dma(csb);
            return Err((kernel, regs, AttachError::CsbAlloc));
        };
        // Every ring's CSB entry and kick register must exist.
        let rings_ok =
            (0..info.num_rings()).all(|id| CsbRing::new(&atok, &ktoa, id as usize).is_some() && kick_reg(id).is_some());
        if !rings_ok {
            kernel.free_dma(csb);
            return Err((kernel, regs, AttachError::CsbAlloc));
        }
        Self::program_csb(&regs, csb.paddr);
        let dev = slot.write(Self {
            kernel,
            regs,
            info,
            layout: Once::new(),
            csb,
            stats: [const { QueueStats::new() }; MAX_RINGS],
            running: AtomicBool::new(false),
            users: AtomicU32::new(0),
            started_once: AtomicBool::new(false),
            ifstate: IfState::new(info.vnet_hdr_len),
            torn_down: false,
        });
        dev.log_attach();
        Ok(dev)
    }

    /// Hands the CSB's guest-physical address to the device (0 withdraws
    /// it). CSB allocation protocol: high half first; the low half write
    /// makes the hypervisor map (or unmap) the page.
    fn program_csb(regs: &R, paddr: u64) {
        let ktoa = if paddr == 0 { 0 } else { paddr.wrapping_add(CSB_PAGE as u64) };
        for (bah, bal, pa) in [(reg::CSB_GH_BAH, reg::CSB_GH_BAL, paddr), (reg::CSB_HG_BAH, reg::CSB_HG_BAL, ktoa)] {
            regs.write32(bah, (pa >> 32) as u32);
            regs.write32(bal, pa as u32);
        }
    }

    fn log_attach(&self) {
        let i = &self.info;
        let m = i.mac;
        self.kernel.log(
            LogLevel::Info,
            format_args!(
                "Ethernet address {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {} tx/{} rx rings, {}/{} slots, host memory {}, features <{}> (vnet hdr {} bytes)",
                m[0], m[1], m[2], m[3], m[4], m[5],
                i.num_tx_rings, i.num_rx_rings, i.num_tx_slots, i.num_rx_slots, i.memid,
                if i.features.contains(Features::VNET_HDR) { "VNET_HDR" } else { "" },
                i.vnet_hdr_len
            ),
        );
    }

    /// Maps the host's netmap memory: `regs` and `bar` are the register
    /// window and memory BAR of the ptnetmap-memdev the OS found for
    /// [`DeviceInfo::memid`]. The memory is checked against the NIC's
    /// registers (memory id, the `netmap_if`, every ring, the buffer pool)
    /// once; later calls return the first mapping. The MTU limit follows
    /// the buffer size from then on.
    pub fn map_memory<M: Registers>(&self, regs: &M, bar: SharedRegion) -> Result<&NetmapLayout, AttachError> {
        if let Some(l) = self.layout.get() {
            return Ok(l);
        }
        let i = &self.info;
        let memdev = Memdev::probe(regs, bar)?;
        if memdev.memid != i.memid {
            return Err(AttachError::MemIdMismatch { nic: i.memid, memdev: memdev.memid });
        }
        let exp = Expected {
            nifp_ofs: i.nifp_ofs,
            num_tx: i.num_tx_rings,
            num_rx: i.num_rx_rings,
            tx_slots: i.num_tx_slots,
            rx_slots: i.num_rx_slots,
        };
        let layout = self.layout.try_call_once(|| NetmapLayout::locate(memdev, exp))?;
        let b = layout.buffers;
        if let Some(mtu) = self.ifstate.limit_to_buffers(b.buf_size(), i.vnet_hdr_len) {
            self.kernel.log(LogLevel::Warning, format_args!("MTU lowered to {mtu}: the host's buffers are smaller"));
        }
        self.kernel.log(
            LogLevel::Info,
            format_args!(
                "host memory {}: {} bytes, {} buffers of {} bytes",
                i.memid,
                layout.memdev.region.len(),
                b.count(),
                b.buf_size()
            ),
        );
        Ok(layout)
    }

    /// The host memory's layout, once mapped.
    pub fn layout(&self) -> Option<&NetmapLayout> {
        self.layout.get()
    }

    /// The network interface's capabilities and MTU.
    pub fn ifstate(&self) -> &IfState {
        &self.ifstate
    }

    /// Adds a user of the rings (a netmap client, or the interface going
    /// up); the first one brings the host up and aligns every ring with it
    /// (`krings` in ring-number order, TX first, all locked by the caller,
    /// as is the OS's core lock around `up`/`down`/`restart`). The memory
    /// must be mapped.
    pub fn up(&self, krings: impl KringSet) -> Result<(), UpError> {
        if self.layout().is_none() {
            return Err(UpError::NoMemory);
        }
        if self.users.load(Ordering::Acquire) == 0 {
            self.bring_up(krings)?;
        }
        self.users.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Removes a user; the last one stops the host.
    pub fn down(&self) -> Result<(), UpError> {
        let before = self.users.load(Ordering::Acquire);
        if before == 0 {
            return Ok(());
        }
        self.users.store(before.saturating_sub(1), Ordering::Release);
        if before == 1 {
            self.stop().map_err(UpError::Ptctl)?;
        }
        Ok(())
    }

    /// Users of the rings.
    pub fn users(&self) -> u32 {
        self.users.load(Ordering::Acquire)
    }

    /// Stops and restarts the host (`PTCTL` delete then create) with users
    /// present, as a hypervisor migration or a port reset does.
    pub fn restart(&self, krings: impl KringSet) -> Result<(), UpError> {
        if self.users() == 0 {
            return Ok(());
        }
        self.stop().map_err(UpError::Ptctl)?;
        self.bring_up(krings)
    }

    fn bring_up(&self, mut krings: impl KringSet) -> Result<(), UpError> {
        self.start().map_err(UpError::Ptctl)?;
        let again = self.started_once.load(Ordering::Acquire);
        let mut id = 0u32;
        let res = krings.visit(&mut |k| {
            let Some((dir, idx)) = self.info.ring_of(id) else {
                return Ok(());
            };
            id = id.wrapping_add(1);
            let res = if again {
                self.resume_ring(dir, idx, k).map(|_| ())
            } else {
                self.adopt_ring(dir, idx).map(|fresh| *k = fresh)
            };
            res.map_err(UpError::Sync)
        });
        if let Err(e) = res {
            let _ = self.stop();
            return Err(e);
        }
        self.started_once.store(true, Ordering::Release);
        Ok(())
    }

    /// What the device reported at attach.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The kernel services this device was attached with.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// True between a successful [`Ptnet::start`] and [`Ptnet::stop`].
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    fn queue(&self, dir: Dir, idx: u32) -> Option<Queue<'_>> {
        self.queue_by_id(self.info.ring_id(dir, idx)?)
    }

    fn queue_by_id(&self, id: u32) -> Option<Queue<'_>> {
        if self.torn_down {
            return None;
        }
        let atok = self.csb.region.sub(0, CSB_PAGE).ok()?;
        let ktoa = self.csb.region.sub(CSB_PAGE, CSB_PAGE).ok()?;
        Some(Queue {
            csb: CsbRing::new(&atok, &ktoa, id as usize)?,
            kick: kick_reg(id)?,
            stats: self.stats.get(id as usize)?,
        })
    }

    /// Counters of one ring.
    pub fn stats(&self, dir: Dir, idx: u32) -> Option<&QueueStats> {
        self.stats.get(self.info.ring_id(dir, idx)? as usize)
    }

    fn ptctl(&self, cmd: PtctlCmd) -> Result<(), AttachError> {
        self.regs.write32(reg::PTCTL, cmd as u32);
        match self.regs.read32(reg::PTCTL) {
            0 => Ok(()),
            err => Err(AttachError::Ptctl { cmd: cmd as u32, err }),
        }
    }

    /// Brings the passed-through port up: enables notifications in both
    /// directions and has the host start its sync kloops (`PTCTL` create),
    /// which (re)initialise the CSB from the host's ring state. Follow with
    /// [`Ptnet::adopt_ring`] or [`Ptnet::resume_ring`] for every ring.
    pub fn start(&self) -> Result<(), AttachError> {
        for id in 0..self.info.num_rings() {
            if let (Some(q), Some((dir, _))) = (self.queue_by_id(id), self.info.ring_of(id)) {
                q.csb.store(Field::KernNeedKick, 1);
                q.csb.store(Field::ApplNeedKick, u32::from(dir == Dir::Rx));
            }
        }
        self.ptctl(PtctlCmd::Create)?;
        self.running.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops the host kloops (`PTCTL` delete). Slots handed to the host
    /// stay where they are; [`Ptnet::resume_ring`] picks them up again.
    pub fn stop(&self) -> Result<(), AttachError> {
        if self.running.swap(false, Ordering::AcqRel) {
            self.ptctl(PtctlCmd::Delete)
        } else {
            Ok(())
        }
    }

    fn ring_slots(&self, dir: Dir) -> u32 {
        match dir {
            Dir::Tx => self.info.num_tx_slots,
            Dir::Rx => self.info.num_rx_slots,
        }
    }

    /// After the first [`Ptnet::start`]: takes the ring state the host
    /// wrote into the CSB, checked for consistency.
    pub fn adopt_ring(&self, dir: Dir, idx: u32) -> Result<Kring, SyncError> {
        let q = self.queue(dir, idx).ok_or(SyncError::NoRing)?;
        self.adopt(&q, dir, idx)
    }

    fn adopt(&self, q: &Queue<'_>, dir: Dir, idx: u32) -> Result<Kring, SyncError> {
        let (hwtail, hwcur) = csb::appl_read(&q.csb);
        let (head, cur, _) = csb::kern_read(&q.csb);
        Kring::from_host(self.ring_slots(dir), hwcur, hwtail, head, cur).map_err(|e| self.host_error(q, dir, idx, e))
    }

    /// After a later [`Ptnet::start`]. A host that kept its ring state
    /// across delete and create (a restart, a migration) continues the
    /// guest's: the guest hands it its own `head`/`cur` again, so slots
    /// published before the restart are neither lost nor sent twice. A
    /// host whose port was registered anew (netmap rewrites the CSB from
    /// fresh krings) does not: its state is adopted, as the C driver does
    /// on every create, and what the guest had in flight on the ring is
    /// counted (`host_resets`) and logged rather than refused forever.
    /// Returns whether the caller must kick (pending work).
    pub fn resume_ring(&self, dir: Dir, idx: u32, k: &mut Kring) -> Result<bool, SyncError> {
        let q = self.queue(dir, idx).ok_or(SyncError::NoRing)?;
        let (hwtail, hwcur) = csb::appl_read(&q.csb);
        let mut cont = *k;
        if cont.host_update(hwcur, hwtail).is_err() {
            let fresh = self.adopt(&q, dir, idx)?;
            let n = q.stats.host_resets.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if log_this(n, 64) {
                self.kernel.log(
                    LogLevel::Warning,
                    format_args!(
                        "{dir} ring {idx}: the host's ring state was reset (hwcur {} hwtail {}, ours {} {}); adopted, {} slots in flight dropped",
                        fresh.hwcur,
                        fresh.hwtail,
                        k.hwcur,
                        k.hwtail,
                        k.pending()
                    ),
                );
            }
            *k = fresh;
            return Ok(false);
        }
        csb::appl_write(&q.csb, k.rcur, k.rhead);
        *k = cont;
        let kick = k.pending() > 0;
        if kick {
            self.kick(&q);
        }
        Ok(kick)
    }

    /// The ring watchdog, run by the OS about once a second with its clock
    /// in milliseconds, for a ring in use (`k`: the guest's pointers).
    /// The host is wedged on it when, for `timeout_ms`, every look at its
    /// pointers refused them (garbage it never corrected), or work the
    /// guest published (TX slots to send, RX slots given back) stayed
    /// unacknowledged though the watchdog kicked the host at every look.
    /// Returns true then, counted (`stuck`) and logged: the OS restarts
    /// the host side (`PTCTL` delete and create), after which the host's
    /// state is adopted ([`Ptnet::resume_ring`]). A healthy host, busy or
    /// idle, never trips it: it acknowledges what it is kicked for.
    pub fn ring_watchdog(
        &self,
        dir: Dir,
        idx: u32,
        k: &Kring,
        w: &mut RingWatch,
        now_ms: u64,
        timeout_ms: u64,
    ) -> bool {
        let Some(q) = self.queue(dir, idx) else { return false };
        let mut view = *k;
        let seen = match csb::refresh(&q.csb, &mut view) {
            Err(_) => Some(None),
            Ok(()) if view.hwcur != view.rhead => {
                self.kick(&q);
                Some(Some((view.hwcur, view.hwtail)))
            }
            Ok(()) => None,
        };
        let Some(seen) = seen else {
            w.since = None;
            return false;
        };
        match w.since {
            Some((t, before)) if before == seen => {
                if now_ms.saturating_sub(t) < timeout_ms {
                    return false;
                }
                w.since = None;
                let n = q.stats.stuck.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                if log_this(n, 64) {
                    let why = if seen.is_none() { "its pointers refused" } else { "published work unacknowledged" };
                    self.kernel.log(
                        LogLevel::Warning,
                        format_args!(
                            "{dir} ring {idx}: watchdog: host wedged ({why} for {timeout_ms} ms); restarting it"
                        ),
                    );
                }
                true
            }
            _ => {
                w.since = Some((now_ms, seen));
                false
            }
        }
    }

    fn host_error(&self, q: &Queue<'_>, dir: Dir, idx: u32, e: BadPointers) -> SyncError {
        let n = q.stats.host_errors.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if log_this(n, 1024) {
            self.kernel.log(
                LogLevel::Warning,
                format_args!(
                    "{dir} ring {idx}: host wrote inconsistent pointers hwcur {} hwtail {} (error #{})",
                    e.a, e.b, n
                ),
            );
        }
        SyncError::Host(e)
    }

    /// A sync refused the host's pointers: counted and logged, and the
    /// host is kicked so that it publishes its state again (a host that
    /// wrote garbage and went to sleep would otherwise leave the ring
    /// stuck with the guest waiting on it).
    fn refused(&self, q: &Queue<'_>, dir: Dir, idx: u32, e: BadPointers) -> SyncError {
        let err = self.host_error(q, dir, idx, e);
        self.kick(q);
        err
    }

    fn kick(&self, q: &Queue<'_>) {
        bump(&q.stats.kicks);
        self.regs.write32(q.kick, 0);
    }

    /// TX sync of ring `idx` (the driver's `nm_txsync`): `k` holds the
    /// application's new `rhead`/`rcur` (already checked by the prologue);
    /// on return `k.hwtail` tells how far the application may fill.
    pub fn txsync(&self, idx: u32, k: &mut Kring, opts: SyncOpts) -> Result<(), SyncError> {
        let q = self.queue(Dir::Tx, idx).ok_or(SyncError::NoRing)?;
        bump(&q.stats.syncs);
        match csb::guest_txsync(&q.csb, k, opts) {
            Ok(kick) => {
                if kick {
                    self.kick(&q);
                }
                Ok(())
            }
            Err(e) => Err(self.refused(&q, Dir::Tx, idx, e)),
        }
    }

    /// RX sync of ring `idx` (the driver's `nm_rxsync`).
    pub fn rxsync(&self, idx: u32, k: &mut Kring, opts: SyncOpts) -> Result<(), SyncError> {
        let q = self.queue(Dir::Rx, idx).ok_or(SyncError::NoRing)?;
        bump(&q.stats.syncs);
        match csb::guest_rxsync(&q.csb, k, opts) {
            Ok(kick) => {
                if kick {
                    self.kick(&q);
                }
                Ok(())
            }
            Err(e) => Err(self.refused(&q, Dir::Rx, idx, e)),
        }
    }

    /// Reads the host's pointers of ring `idx` into `k`, publishing nothing
    /// and leaving the interrupt request alone (the watchdogs look; only
    /// the datapath syncs).
    pub(crate) fn peek(&self, dir: Dir, idx: u32, k: &mut Kring) -> Result<(), SyncError> {
        let q = self.queue(dir, idx).ok_or(SyncError::NoRing)?;
        csb::refresh(&q.csb, k).map_err(|e| self.refused(&q, dir, idx, e))
    }

    /// Enables or disables the interrupt of a ring (netmap clients that
    /// busy-poll disable them; leaving netmap mode re-enables them).
    pub fn set_interrupt(&self, dir: Dir, idx: u32, on: bool) {
        if let Some(q) = self.queue(dir, idx) {
            q.csb.store(Field::ApplNeedKick, u32::from(on));
        }
    }

    /// Interrupt handler for MSI-X vector `vector`: counts it and tells the
    /// caller which ring's waiters to wake.
    pub fn interrupt(&self, vector: u32) -> Option<(Dir, u32)> {
        let (dir, idx) = self.info.ring_of(vector)?;
        if let Some(q) = self.queue(dir, idx) {
            bump(&q.stats.irqs);
        }
        Some((dir, idx))
    }

    /// System shutdown (`device_shutdown`): stops the host and withdraws
    /// the CSB addresses, so that the host never writes into pages the next
    /// kernel reuses after a reboot. Nothing is freed: the OS is going
    /// away, and the device keeps working as detached (syncs fail).
    pub fn shutdown(&self) {
        if let Err(e) = self.stop() {
            self.kernel.log(LogLevel::Warning, format_args!("shutdown: {e}"));
        }
        Self::program_csb(&self.regs, 0);
    }

    /// Detaches: stops the host, withdraws the CSB addresses from the
    /// device and frees the CSB. Returns the kernel services and registers
    /// so the OS can release its resources.
    pub fn detach(mut self) -> (K, R) {
        self.teardown();
        (self.kernel, self.regs)
    }

    /// [`Ptnet::detach`] in place, for a device that lives in kernel
    /// memory: afterwards the device only holds its kernel services and
    /// registers (syncs fail, the host is stopped). Runs once.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        if let Err(e) = self.stop() {
            self.kernel.log(LogLevel::Warning, format_args!("detach: {e}"));
        }
        Self::program_csb(&self.regs, 0);
        self.kernel.free_dma(self.csb);
        // newbus prints "detached" itself (device_detach() in subr_bus.c).
    }
}

const _: () = assert!(MAX_RINGS * CSB_ENTRY_SIZE <= CSB_PAGE);
