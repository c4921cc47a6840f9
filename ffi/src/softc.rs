//! One attached device: the driver core, each ring's state behind its
//! kernel mutex, and who uses each ring (the network stack, or a netmap
//! client).
//!
//! Locking, as FreeBSD's C driver has it: a mutex per ring for the
//! datapath (transmit, the tasks, syncs, the watchdogs), and one for the
//! device's users (up, down, netmap registration, restart), taken first.
//! The shim serialises the latter with its own sx lock, so that mutex is
//! uncontended; it is there so that this code is right whatever calls it.
//! No driver lock is held while frames go up the stack.

use crate::kbox::KBox;
use crate::klock::{KGuard, KLock};
use crate::mbuf::{MbufPkt, RxSink};
use crate::nmring::PtnetRsNmRing;
use crate::ops::{ops, PtnetRsMemdev};
use crate::os::{Bar0, MemdevRegs, ShimDev, ShimKernel};
use core::mem::MaybeUninit;
use core::ptr::{addr_of_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use ptnet::csb::SyncOpts;
use ptnet::device::{KringSet, UpError};
use ptnet::ifnet::IfCounters;
use ptnet::kring::{Dir, Kring};
use ptnet::layout::MAX_RINGS;
use ptnet::os::{Kernel, LogLevel};
use ptnet::rx::RxRing;
use ptnet::shmem::SharedRegion;
use ptnet::tx::{flow_ring, SwQueue, TxError, TxRing};
use ptnet::{AttachError, Config, Ptnet, SyncError};

/// Packets a TX ring's software queue holds while the ring is full.
pub(crate) const TXQ_LEN: usize = crate::entry::PTNET_RS_TXQ_LEN as usize;
/// Packets `if_transmit` may leave for a busy ring's task.
pub(crate) const HANDOFF_LEN: usize = crate::entry::PTNET_RS_HANDOFF_LEN as usize;
/// Frames received per pass under the ring's mutex; the mutex is dropped
/// to hand each batch to the stack.
const RX_BATCH: u32 = 16;

type TxState = TxRing<MbufPkt, TXQ_LEN>;
type Handoff = SwQueue<MbufPkt, HANDOFF_LEN>;

/// A TX ring: its state, the packets that found it busy, its owner.
pub(crate) struct TxQueue {
    ring: KLock<TxState>,
    /// Packets `if_transmit` could not put on the ring because another
    /// thread held it; whoever holds the ring next sends them first.
    handoff: KLock<Handoff>,
    /// Packets dropped because the hand-off queue was full.
    handoff_drops: AtomicU64,
    netmap: AtomicBool,
}

/// An RX ring: its state and its owner.
pub(crate) struct RxQueue {
    ring: KLock<RxRing>,
    netmap: AtomicBool,
    /// In copy mode: how far the application's ring holds the host's
    /// frames (the kring's `hwtail` can move without a netmap sync: a
    /// restart of the host side resumes it). Changed under the ring mutex.
    copied: AtomicU32,
}

/// Who uses the device, under the core mutex.
struct Users {
    if_up: bool,
    /// Rings a netmap client holds.
    netmap_rings: u32,
    /// The memdev, found and mapped when the rings were first needed.
    memdev: Option<PtnetRsMemdev>,
}

/// Errors of the softc's operations, mapped to errno at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    Attach(AttachError),
    Up(UpError),
    Sync(SyncError),
    Tx(TxError),
    NoMemory,
    NoRing,
    Invalid,
    Busy,
}

/// An attached ptnet device.
pub(crate) struct Softc {
    dev: KBox<Ptnet<ShimKernel, Bar0>>,
    shim: ShimDev,
    tx: [Option<KBox<TxQueue>>; MAX_RINGS],
    rx: [Option<KBox<RxQueue>>; MAX_RINGS],
    users: KLock<Users>,
    if_running: AtomicBool,
    /// Stack packets dropped because a netmap client held their ring.
    pub netmap_drops: AtomicU64,
}

/// The rings' krings for bring-up, each locked in turn: the datapath runs
/// only on rings whose owner is up, and owners change under the users
/// mutex, which the caller holds.
struct EachRing<'a>(&'a Softc);

impl KringSet for EachRing<'_> {
    fn visit(&mut self, f: &mut dyn FnMut(&mut Kring) -> Result<(), UpError>) -> Result<(), UpError> {
        for q in self.0.tx.iter().flatten() {
            f(&mut q.ring.lock().kring)?;
        }
        for q in self.0.rx.iter().flatten() {
            f(&mut q.ring.lock().kring)?;
        }
        Ok(())
    }
}

impl Softc {
    /// Attaches the core to the device behind `shim` and allocates the
    /// rings' state, all in kernel memory (built in place: the device is
    /// several KiB).
    pub fn attach(shim: ShimDev, msix_vectors: u32, cfg: Config) -> Result<KBox<Softc>, Error> {
        let Some(mut mem) = KBox::uninit() else { return Err(Error::NoMemory) };
        Ptnet::attach_into(&mut mem, ShimKernel { dev: shim }, Bar0(shim), msix_vectors, cfg)
            .map_err(|(_, _, e)| Error::Attach(e))?;
        // SAFETY: `attach_into` initialised the memory.
        let mut dev = unsafe { mem.assume_init() };
        let info = *dev.info();
        let users = Users { if_up: false, netmap_rings: 0, memdev: None };
        let (Some(mem), Ok(users)) = (KBox::uninit(), KLock::new(shim, c"ptnrs core", users)) else {
            dev.teardown();
            return Err(Error::NoMemory);
        };
        let mut sc = mem.write(Softc {
            dev,
            shim,
            tx: [const { None }; MAX_RINGS],
            rx: [const { None }; MAX_RINGS],
            users,
            if_running: AtomicBool::new(false),
            netmap_drops: AtomicU64::new(0),
        });
        let mut ok = true;
        for (slot, _) in sc.tx.iter_mut().zip(0..info.num_tx_rings) {
            *slot = TxQueue::new(shim, info.num_tx_slots);
            ok &= slot.is_some();
        }
        for (slot, _) in sc.rx.iter_mut().zip(0..info.num_rx_rings) {
            *slot = RxQueue::new(shim, info.num_rx_slots);
            ok &= slot.is_some();
        }
        if !ok {
            let _ = Softc::release(sc);
            return Err(Error::NoMemory);
        }
        Ok(sc)
    }

    /// Detaches the core, releases the memdev and frees everything (the
    /// rings' queued packets too), in place; returns the counters as they
    /// end.
    pub fn release(mut sc: KBox<Softc>) -> IfCounters {
        // The host stopped with the last user: what it never took is
        // counted and logged, not lost silently.
        for (i, q) in (0u32..).zip(sc.tx.iter().flatten()) {
            let mut r = q.ring.lock();
            sc.dev.tx_abandon(i, &mut r);
            let n = q.flush(&mut r);
            r.stats.down_drops.add(n);
        }
        let counters = sc.counters();
        sc.dev.teardown();
        // Released without the core's mutex: the shim may sleep there.
        let memdev = sc.users.lock().memdev.take();
        if let (Some(m), Some(o)) = (memdev, ops()) {
            // SAFETY: `m` is what `memdev_find` returned for this device.
            unsafe { (o.memdev_release)(sc.shim.0, &m) };
        }
        counters
    }

    /// Interface counters, summed over the rings (`if_get_counter`).
    pub fn counters(&self) -> IfCounters {
        let mut c = IfCounters { oqdrops: self.netmap_drops.load(Ordering::Relaxed), ..IfCounters::default() };
        for q in self.tx.iter().flatten() {
            c.add_tx(&q.ring.lock().stats);
            c.oqdrops = c.oqdrops.saturating_add(q.handoff_drops.load(Ordering::Relaxed));
        }
        for q in self.rx.iter().flatten() {
            c.add_rx(&q.ring.lock().stats);
        }
        c
    }

    pub fn core(&self) -> &Ptnet<ShimKernel, Bar0> {
        &self.dev
    }

    /// The shim's handle of this device.
    pub fn shim(&self) -> ShimDev {
        self.shim
    }

    /// netmap's `nm_config`: maps the host memory if needed (netmap asks
    /// before it registers a client) and returns the buffer size.
    pub fn nm_config(&self) -> Result<u32, Error> {
        self.ensure_memory()?;
        self.dev.layout().map(|l| l.buffers.buf_size()).ok_or(Error::Invalid)
    }

    fn txq(&self, idx: u32) -> Option<&TxQueue> {
        self.tx.get(idx as usize)?.as_deref()
    }

    fn rxq(&self, idx: u32) -> Option<&RxQueue> {
        self.rx.get(idx as usize)?.as_deref()
    }

    /// Finds and maps the host memory the first time the rings are needed
    /// (the NIC may have attached before its memdev); the memdev is held
    /// from then until detach. The lookup runs without the core's mutex:
    /// it may sleep (the zero-copy build finalizes netmap's guest
    /// allocator there, which takes netmap's sx lock and maps the BAR).
    fn ensure_memory(&self) -> Result<(), Error> {
        if self.dev.layout().is_some() {
            return Ok(());
        }
        let o = ops().ok_or(Error::Invalid)?;
        let memid = self.dev.info().memid;
        let mut m = PtnetRsMemdev { handle: core::ptr::null_mut(), base: core::ptr::null_mut(), size: 0 };
        // SAFETY: `m` is valid for the call; the shim fills it on success.
        if unsafe { (o.memdev_find)(self.shim.0, memid, &mut m) } != 0 {
            let e = AttachError::NoMemdev { memid };
            self.dev.kernel().log(LogLevel::Error, format_args!("cannot map the host memory: {e} (is it attached?)"));
            return Err(Error::Attach(e));
        }
        let mut users = self.users.lock();
        if users.memdev.is_some() {
            // Another thread mapped it meanwhile: one reference is enough.
            drop(users);
            // SAFETY: `m` is what `memdev_find` just returned.
            unsafe { (o.memdev_release)(self.shim.0, &m) };
            return Ok(());
        }
        let mapped = (|| {
            let base = NonNull::new(m.base).ok_or(AttachError::NoMemdev { memid })?;
            let size = usize::try_from(m.size).map_err(|_| AttachError::NoMemdev { memid })?;
            // SAFETY: the shim mapped `size` bytes at `base` and keeps the
            // mapping until `memdev_release`, which runs only after the
            // core is torn down.
            let bar = unsafe { SharedRegion::new(base, size) };
            self.dev.map_memory(&MemdevRegs(m), bar).map(|_| ())
        })();
        match mapped {
            Ok(()) => {
                users.memdev = Some(m);
                Ok(())
            }
            Err(e) => {
                drop(users);
                self.dev.kernel().log(LogLevel::Error, format_args!("cannot map the host memory: {e}"));
                // SAFETY: `m` is what `memdev_find` just returned.
                unsafe { (o.memdev_release)(self.shim.0, &m) };
                Err(Error::Attach(e))
            }
        }
    }

    /// Adds a user of the rings (see [`Ptnet::up`]); the memory is mapped
    /// ([`Softc::ensure_memory`], before the core's mutex is taken).
    fn add_user(&self, _held: &mut Users) -> Result<(), Error> {
        if self.dev.layout().is_none() {
            return Err(Error::Attach(AttachError::NoMemdev { memid: self.dev.info().memid }));
        }
        self.dev.up(EachRing(self)).map_err(|e| {
            self.dev.kernel().log(LogLevel::Error, format_args!("cannot bring the rings up: {e}"));
            Error::Up(e)
        })
    }

    /// Waits until no datapath call holds a ring.
    fn quiesce(&self) {
        for q in self.tx.iter().flatten() {
            drop(q.ring.lock());
        }
        for q in self.rx.iter().flatten() {
            drop(q.ring.lock());
        }
    }

    /// `if_init`: the interface takes the rings (the host starts if nobody
    /// else uses them). The shim then schedules every RX task once.
    pub fn if_init(&self) -> Result<(), Error> {
        self.ensure_memory()?;
        let mut users = self.users.lock();
        if users.if_up {
            return Ok(());
        }
        self.add_user(&mut users)?;
        users.if_up = true;
        self.if_running.store(true, Ordering::Release);
        for (i, q) in (0u32..).zip(self.rx.iter().flatten()) {
            if !q.netmap.load(Ordering::Acquire) {
                self.dev.set_interrupt(Dir::Rx, i, true);
            }
        }
        Ok(())
    }

    /// `if_stop`: queued packets are freed and counted, the host stops if
    /// nobody else uses the rings.
    pub fn if_stop(&self) -> Result<(), Error> {
        let mut users = self.users.lock();
        if !users.if_up {
            return Ok(());
        }
        users.if_up = false;
        self.if_running.store(false, Ordering::Release);
        self.flush_queues();
        self.quiesce();
        self.dev.down().map_err(Error::Up)
    }

    /// Whether the interface is up.
    pub fn if_running(&self) -> bool {
        self.if_running.load(Ordering::Acquire)
    }

    /// Frees what waits in the software queues (`if_qflush`, and going
    /// down); each packet is counted as a drop.
    pub fn flush_queues(&self) {
        for q in self.tx.iter().flatten() {
            let mut r = q.ring.lock();
            let n = q.flush(&mut r);
            r.stats.down_drops.add(n);
        }
    }

    /// `if_transmit`: the packet goes to its flow's ring (or the software
    /// queue), or is freed and the error returned. When another thread
    /// holds the ring, the packet is left for the ring's task instead of
    /// waiting for the mutex.
    pub fn transmit(&self, pkt: MbufPkt) -> Result<(), Error> {
        let i = flow_ring(&pkt, self.dev.info().num_tx_rings);
        let q = self.txq(i).ok_or(Error::NoRing)?;
        if q.netmap.load(Ordering::Acquire) {
            self.netmap_drops.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Tx(TxError::Down));
        }
        if !self.if_running() {
            q.ring.lock().stats.down_drops.inc();
            return Err(Error::Tx(TxError::Down));
        }
        match q.ring.try_lock() {
            Some(mut r) => {
                let res = self.send_locked(i, q, &mut r, Some(pkt));
                drop(r);
                // A packet handed off between our drain and the unlock
                // must not wait for the next transmit.
                if !q.handoff.lock().is_empty() {
                    self.schedule(Dir::Tx, i);
                }
                res
            }
            None => {
                let full = q.handoff.lock().push(pkt).is_err();
                self.schedule(Dir::Tx, i);
                if full {
                    q.handoff_drops.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::Tx(TxError::QueueFull));
                }
                Ok(())
            }
        }
    }

    /// Sends what the hand-off queue holds, then `pkt`, on a locked ring.
    fn send_locked(&self, i: u32, q: &TxQueue, r: &mut TxState, pkt: Option<MbufPkt>) -> Result<(), Error> {
        loop {
            let Some(p) = q.handoff.lock().pop() else { break };
            let _ = self.dev.transmit(i, r, Some(p), drop);
        }
        self.dev.transmit(i, r, pkt, drop).map_err(Error::Tx)
    }

    fn schedule(&self, dir: Dir, idx: u32) {
        if let Some(o) = ops() {
            // SAFETY: `shim` is the shim's own handle for this device.
            unsafe { (o.task_enqueue)(self.shim.0, u32::from(dir == Dir::Rx), idx) };
        }
    }

    /// The TX task: sends what was handed off and resumes the software
    /// queue after the ring's interrupt.
    pub fn tx_task(&self, idx: u32) -> Result<(), Error> {
        let q = self.txq(idx).ok_or(Error::NoRing)?;
        if q.netmap.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut r = q.ring.lock();
        if !self.if_running() {
            let n = q.flush(&mut r);
            r.stats.down_drops.add(n);
            return Ok(());
        }
        self.send_locked(idx, q, &mut r, None)
    }

    /// The once-a-second tick: the watchdog of every TX ring the stack
    /// uses (queued packets the host took nothing of for the timeout are
    /// freed and counted), and the ring watchdog of every ring in use
    /// (a host wedged on it, see [`Ptnet::ring_watchdog`]). Returns how
    /// many fired: the shim then restarts the host side.
    pub fn tick(&self, now_ms: u64, timeout_ms: u64) -> u32 {
        if !self.if_running() {
            return 0;
        }
        let mut fired = 0u32;
        for (i, q) in (0u32..).zip(self.tx.iter().flatten()) {
            let mut r = q.ring.lock();
            if !q.netmap.load(Ordering::Acquire) && self.dev.tx_watchdog(i, &mut r, now_ms, timeout_ms, drop) {
                fired = fired.saturating_add(1);
            }
            let k = r.kring;
            if self.dev.ring_watchdog(Dir::Tx, i, &k, &mut r.watch, now_ms, timeout_ms) {
                fired = fired.saturating_add(1);
            }
        }
        for (i, q) in (0u32..).zip(self.rx.iter().flatten()) {
            let mut r = q.ring.lock();
            let k = r.kring;
            if self.dev.ring_watchdog(Dir::Rx, i, &k, &mut r.watch, now_ms, timeout_ms) {
                fired = fired.saturating_add(1);
            }
        }
        fired
    }

    /// The once-a-second tick of RX ring `idx`: whether frames wait that
    /// lost their interrupt (the shim then runs the ring's task).
    pub fn rx_watchdog(&self, idx: u32) -> bool {
        let Some(q) = self.rxq(idx) else { return false };
        if q.netmap.load(Ordering::Acquire) || !self.if_running() {
            return false;
        }
        self.dev.rx_watchdog(idx, &mut q.ring.lock())
    }

    /// The RX task: up to `budget` frames of ring `idx` to the stack, in
    /// batches received under the ring's mutex and handed up without it.
    /// Returns whether more are waiting (run again).
    pub fn rx_task(&self, idx: u32, budget: u32) -> Result<bool, Error> {
        let q = self.rxq(idx).ok_or(Error::NoRing)?;
        let mut left = budget;
        let mut more = false;
        while left > 0 {
            let mut sink = RxSink::new(self.shim, u16::try_from(idx).unwrap_or(u16::MAX));
            {
                let mut r = q.ring.lock();
                if q.netmap.load(Ordering::Acquire) || !self.if_running() {
                    return Ok(false);
                }
                let rep = self.dev.receive(idx, &mut r, left.min(RX_BATCH), &mut sink);
                r.stats.no_memory.add(sink.dropped);
                left = left.saturating_sub(rep.frames.max(1));
                more = rep.more;
            }
            sink.input();
            if !more {
                break;
            }
        }
        Ok(more)
    }

    /// The MSI-X handler of `vector`: counts it and says whether the stack
    /// wants the ring's task (netmap decides first for its own rings).
    pub fn intr(&self, vector: u32) -> bool {
        let Some((dir, idx)) = self.dev.interrupt(vector) else {
            return false;
        };
        let netmap = match dir {
            Dir::Tx => self.txq(idx).is_some_and(|q| q.netmap.load(Ordering::Acquire)),
            Dir::Rx => self.rxq(idx).is_some_and(|q| q.netmap.load(Ordering::Acquire)),
        };
        self.if_running() && !netmap
    }

    /// netmap takes ring `idx` of `dir` (`nm_register` for a kring whose
    /// mode goes on): the first such ring brings the host up. The ring's
    /// state is returned for netmap's kring and ring; in copy mode
    /// (`guest`), frames the host delivered and the stack has not taken
    /// are copied into the application's ring first. Stack packets queued
    /// on a TX ring are freed and counted.
    pub fn nm_ring_on(&self, dir: Dir, idx: u32, guest: Option<&PtnetRsNmRing>) -> Result<Kring, Error> {
        self.ensure_memory()?;
        let mut users = self.users.lock();
        let owner = self.owner(dir, idx).ok_or(Error::NoRing)?;
        if owner.load(Ordering::Acquire) {
            return self.kring(dir, idx).ok_or(Error::NoRing);
        }
        if users.netmap_rings == 0 {
            self.add_user(&mut users)?;
        }
        users.netmap_rings = users.netmap_rings.saturating_add(1);
        owner.store(true, Ordering::Release);
        let k = match dir {
            Dir::Tx => {
                let q = self.txq(idx).ok_or(Error::NoRing)?;
                let mut r = q.ring.lock();
                let n = q.flush(&mut r);
                r.stats.down_drops.add(n);
                r.kring
            }
            Dir::Rx => {
                let q = self.rxq(idx).ok_or(Error::NoRing)?;
                let r = q.ring.lock();
                if let Some(view) = guest.and_then(|g| self.guest_view(g, Dir::Rx)) {
                    let k = r.kring;
                    let bad = self.dev.copy_from_host(idx, &view.0, &view.1, k.rhead, k.hwtail);
                    r.stats.errors.add(u64::from(bad));
                    q.copied.store(k.hwtail, Ordering::Relaxed);
                }
                r.kring
            }
        };
        Ok(k)
    }

    /// netmap gives ring `idx` of `dir` back (its kring's mode goes off);
    /// the last one stops the host unless the interface is up. Returns
    /// true when the stack should look at the ring at once (an RX ring
    /// whose interrupt was off while netmap had it).
    pub fn nm_ring_off(&self, dir: Dir, idx: u32) -> Result<bool, Error> {
        let mut users = self.users.lock();
        let owner = self.owner(dir, idx).ok_or(Error::NoRing)?;
        if !owner.load(Ordering::Acquire) {
            return Ok(false);
        }
        owner.store(false, Ordering::Release);
        // No sync of netmap's runs on the ring past this.
        match dir {
            Dir::Tx => drop(self.txq(idx).map(|q| q.ring.lock())),
            Dir::Rx => drop(self.rxq(idx).map(|q| q.ring.lock())),
        }
        users.netmap_rings = users.netmap_rings.saturating_sub(1);
        let mut res = Ok(());
        if users.netmap_rings == 0 {
            res = self.dev.down().map_err(Error::Up);
        }
        let stack = users.if_up && dir == Dir::Rx;
        if stack {
            self.dev.set_interrupt(Dir::Rx, idx, true);
        }
        res.map(|()| stack)
    }

    fn owner(&self, dir: Dir, idx: u32) -> Option<&AtomicBool> {
        match dir {
            Dir::Tx => self.txq(idx).map(|q| &q.netmap),
            Dir::Rx => self.rxq(idx).map(|q| &q.netmap),
        }
    }

    fn guest_view(&self, g: &PtnetRsNmRing, dir: Dir) -> Option<(ptnet::layout::RingLayout, crate::nmring::LutPool)> {
        // SAFETY: the shim passes netmap's own ring and lookup table,
        // valid for the call (the entry points' contract).
        unsafe { g.view(dir) }
    }

    /// netmap's `nm_intr`: interrupts of the rings netmap holds on or off.
    pub fn nm_intr(&self, on: bool) {
        let info = self.dev.info();
        for i in 0..info.num_tx_rings {
            if self.txq(i).is_some_and(|q| q.netmap.load(Ordering::Acquire)) {
                self.dev.set_interrupt(Dir::Tx, i, on);
            }
        }
        for i in 0..info.num_rx_rings {
            if self.rxq(i).is_some_and(|q| q.netmap.load(Ordering::Acquire)) {
                self.dev.set_interrupt(Dir::Rx, i, on);
            }
        }
    }

    /// A ring's pointers as the driver holds them.
    pub fn kring(&self, dir: Dir, idx: u32) -> Option<Kring> {
        match dir {
            Dir::Tx => self.txq(idx).map(|q| q.ring.lock().kring),
            Dir::Rx => self.rxq(idx).map(|q| q.ring.lock().kring),
        }
    }

    /// netmap's `nm_txsync`/`nm_rxsync` on the application's `rhead` and
    /// `rcur` (already checked by netmap's prologue, and checked again
    /// here); returns the ring's new state. In copy mode (`guest`), the
    /// slots the application hands over go to the host before the sync,
    /// and the slots the host filled come back after it.
    pub fn nm_sync(
        &self,
        dir: Dir,
        idx: u32,
        (rhead, rcur): (u32, u32),
        opts: SyncOpts,
        guest: Option<&PtnetRsNmRing>,
    ) -> Result<Kring, Error> {
        let view = match guest {
            Some(g) => Some(self.guest_view(g, dir).ok_or(Error::Invalid)?),
            None => None,
        };
        match dir {
            Dir::Tx => {
                let q = self.txq(idx).ok_or(Error::NoRing)?;
                let mut r = self.netmap_ring(&q.ring, &q.netmap)?;
                let from = r.kring.rhead;
                r.kring.tx_prologue(rhead, rcur).map_err(|_| Error::Invalid)?;
                if let Some((ring, bufs)) = &view {
                    let bad = self.dev.copy_to_host(idx, ring, bufs, from, rhead);
                    r.stats.refused.add(u64::from(bad));
                }
                self.dev.txsync(idx, &mut r.kring, opts).map_err(Error::Sync)?;
                Ok(r.kring)
            }
            Dir::Rx => {
                let q = self.rxq(idx).ok_or(Error::NoRing)?;
                let mut r = self.netmap_ring(&q.ring, &q.netmap)?;
                r.kring.rx_prologue(rhead, rcur).map_err(|_| Error::Invalid)?;
                let res = self.dev.rxsync(idx, &mut r.kring, opts).map_err(Error::Sync);
                if let Some((ring, bufs)) = &view {
                    let (from, to) = (q.copied.load(Ordering::Relaxed), r.kring.hwtail);
                    let bad = self.dev.copy_from_host(idx, ring, bufs, from, to);
                    r.stats.errors.add(u64::from(bad));
                    q.copied.store(to, Ordering::Relaxed);
                }
                res.map(|()| r.kring)
            }
        }
    }

    /// A ring netmap holds, locked; EINVAL for one it does not.
    fn netmap_ring<'a, T>(&self, lock: &'a KLock<T>, owner: &AtomicBool) -> Result<KGuard<'a, T>, Error> {
        let g = lock.lock();
        if owner.load(Ordering::Acquire) {
            Ok(g)
        } else {
            Err(Error::Invalid)
        }
    }

    /// Stops and restarts the host side (`PTCTL` delete then create), as
    /// after a resume: users keep their rings and lose nothing.
    pub fn restart(&self) -> Result<(), Error> {
        let _users = self.users.lock();
        self.dev.restart(EachRing(self)).map_err(Error::Up)
    }

    /// `device_shutdown`: the host stops and forgets the CSB.
    pub fn shutdown(&self) {
        let _users = self.users.lock();
        self.dev.shutdown();
    }

    /// Refuses detach while the interface is up or netmap holds a ring.
    pub fn detachable(&self) -> Result<(), Error> {
        let users = self.users.lock();
        if users.if_up || users.netmap_rings > 0 {
            Err(Error::Busy)
        } else {
            Ok(())
        }
    }

    /// Runs `f` on a TX ring's state (counters), locked, with the packets
    /// its hand-off queue dropped.
    pub fn with_tx<T>(&self, idx: u32, f: impl FnOnce(&TxState, u64) -> T) -> Option<T> {
        self.txq(idx).map(|q| f(&q.ring.lock(), q.handoff_drops.load(Ordering::Relaxed)))
    }

    /// As [`Softc::with_tx`] for an RX ring.
    pub fn with_rx<T>(&self, idx: u32, f: impl FnOnce(&RxRing) -> T) -> Option<T> {
        self.rxq(idx).map(|q| f(&q.ring.lock()))
    }
}

impl TxQueue {
    /// A TX ring's state, built in kernel memory.
    fn new(shim: ShimDev, slots: u32) -> Option<KBox<Self>> {
        let mut mem = KBox::<MaybeUninit<Self>>::uninit()?;
        let p = mem.as_mut_ptr();
        // SAFETY: the fields of `*p` are initialised one by one through
        // raw pointers into the box; on a failure the ones already made
        // are dropped and the box is freed uninitialised.
        unsafe {
            let ring = &mut *addr_of_mut!((*p).ring).cast::<MaybeUninit<KLock<TxState>>>();
            if !KLock::init_in(ring, shim, c"ptnrs txq", |t| {
                TxRing::init_in(t, slots);
            }) {
                return None;
            }
            let handoff = &mut *addr_of_mut!((*p).handoff).cast::<MaybeUninit<KLock<Handoff>>>();
            if !KLock::init_in(handoff, shim, c"ptnrs txq handoff", |q| {
                SwQueue::init_in(q);
            }) {
                ring.assume_init_drop();
                return None;
            }
            addr_of_mut!((*p).handoff_drops).write(AtomicU64::new(0));
            addr_of_mut!((*p).netmap).write(AtomicBool::new(false));
            Some(mem.assume_init())
        }
    }

    /// Frees what the ring's software queue and hand-off queue hold;
    /// returns how many.
    fn flush(&self, r: &mut TxState) -> u64 {
        let mut n = r.flush(drop) as u64;
        let mut h = self.handoff.lock();
        while h.pop().is_some() {
            n = n.saturating_add(1);
        }
        n
    }
}

impl RxQueue {
    /// An RX ring's state, built in kernel memory.
    fn new(shim: ShimDev, slots: u32) -> Option<KBox<Self>> {
        let mem = KBox::<MaybeUninit<Self>>::uninit()?;
        let ring = KLock::new(shim, c"ptnrs rxq", RxRing::new(slots)).ok()?;
        Some(mem.write(Self { ring, netmap: AtomicBool::new(false), copied: AtomicU32::new(0) }))
    }
}
