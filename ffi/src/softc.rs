//! One attached device: the driver core, each ring's state behind its
//! lock, and who uses the rings (the network stack, netmap applications).
//!
//! The shim serialises calls per ring with its queue mutexes, so the spin
//! locks here are uncontended; they keep Rust's aliasing rules whatever
//! the caller does.

use crate::kbox::KBox;
use crate::mbuf::{MbufPkt, RxSink};
use crate::ops::{ops, PtnetRsMemdev, PtnetRsMemdevQuery};
use crate::os::{Bar0, MemdevRegs, ShimDev, ShimKernel};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use ptnet::csb::SyncOpts;
use ptnet::device::{KringSet, MemdevQuery, UpError};
use ptnet::kring::{Dir, Kring};
use ptnet::layout::MAX_RINGS;
use ptnet::rx::RxRing;
use ptnet::shmem::SharedRegion;
use ptnet::tx::{flow_ring, TxError, TxRing};
use ptnet::{AttachError, Config, Ptnet, SyncError};
use spin::Mutex;

/// Packets a TX ring's software queue holds while the ring is full.
pub(crate) const TXQ_LEN: usize = 256;

type TxState = TxRing<MbufPkt, TXQ_LEN>;

/// Who uses the rings.
#[derive(Default)]
struct Users {
    netmap: bool,
    if_up: bool,
}

/// What an interrupt asks the shim to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntrAction {
    /// Nothing (stray, or nobody uses the rings).
    None,
    /// Wake netmap sleepers on the ring (`netmap_tx_irq`/`netmap_rx_irq`).
    Netmap(Dir, u32),
    /// Schedule the ring's task.
    Task(Dir, u32),
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
}

/// An attached ptnet device.
pub(crate) struct Softc {
    dev: KBox<Ptnet<ShimKernel, Bar0>>,
    shim: ShimDev,
    memdev: PtnetRsMemdev,
    tx: [Option<KBox<Mutex<TxState>>>; MAX_RINGS],
    rx: [Option<KBox<Mutex<RxRing>>>; MAX_RINGS],
    users: Mutex<Users>,
    netmap_mode: AtomicBool,
    if_running: AtomicBool,
    /// Stack packets dropped while netmap applications owned the rings.
    pub netmap_drops: AtomicU64,
}

/// The rings' krings for bring-up, each locked in turn: the datapath is
/// held off by the mode flags, which change only after bring-up.
struct EachRing<'a>(&'a Softc);

impl KringSet for EachRing<'_> {
    fn visit(&mut self, f: &mut dyn FnMut(&mut Kring) -> Result<(), UpError>) -> Result<(), UpError> {
        for r in self.0.tx.iter().flatten() {
            f(&mut r.lock().kring)?;
        }
        for r in self.0.rx.iter().flatten() {
            f(&mut r.lock().kring)?;
        }
        Ok(())
    }
}

impl Softc {
    /// Attaches the core to the device behind `shim` and allocates the
    /// rings' state, all in kernel memory (built in place: the device is
    /// several KiB).
    pub fn attach(shim: ShimDev, msix_vectors: u32, cfg: Config) -> Result<KBox<Softc>, Error> {
        let o = ops().ok_or(Error::Invalid)?;
        let mut found: Option<PtnetRsMemdev> = None;
        let find = |q: &MemdevQuery| {
            let mut m = PtnetRsMemdev { handle: core::ptr::null_mut(), base: core::ptr::null_mut(), size: 0 };
            let q = PtnetRsMemdevQuery {
                memid: q.memid,
                nifp_ofs: q.nifp_ofs,
                num_tx_rings: q.num_tx_rings,
                num_rx_rings: q.num_rx_rings,
                num_tx_slots: q.num_tx_slots,
                num_rx_slots: q.num_rx_slots,
            };
            // SAFETY: `q` and `m` are valid for the call; the shim fills
            // `m` on success.
            if unsafe { (o.memdev_find)(shim.0, &q, &mut m) } != 0 {
                return None;
            }
            found = Some(m);
            let base = NonNull::new(m.base)?;
            let size = usize::try_from(m.size).ok()?;
            // SAFETY: the shim mapped `size` bytes at `base` and keeps the
            // mapping until `memdev_release`, which runs only after the
            // core is detached.
            Some((MemdevRegs(m), unsafe { SharedRegion::new(base, size) }))
        };
        let release = |m: &PtnetRsMemdev| {
            // SAFETY: `m` is what `memdev_find` returned for this device.
            unsafe { (o.memdev_release)(shim.0, m) };
        };
        let Some(mut mem) = KBox::uninit() else { return Err(Error::NoMemory) };
        let attached = Ptnet::attach_into(&mut mem, ShimKernel { dev: shim }, Bar0(shim), msix_vectors, cfg, find);
        let (dev, memdev) = match (attached.map(|_| ()), found) {
            // SAFETY: `attach_into` initialised the memory.
            (Ok(()), Some(m)) => (unsafe { mem.assume_init() }, m),
            (Ok(()), None) => {
                // SAFETY: as above.
                unsafe { mem.assume_init() }.teardown();
                return Err(Error::Invalid);
            }
            (Err((_, _, e)), m) => {
                if let Some(m) = m {
                    release(&m);
                }
                return Err(Error::Attach(e));
            }
        };
        let info = *dev.info();
        let Some(mem) = KBox::uninit() else {
            let mut dev = dev;
            dev.teardown();
            release(&memdev);
            return Err(Error::NoMemory);
        };
        let mut sc = mem.write(Softc {
            dev,
            shim,
            memdev,
            tx: [const { None }; MAX_RINGS],
            rx: [const { None }; MAX_RINGS],
            users: Mutex::new(Users::default()),
            netmap_mode: AtomicBool::new(false),
            if_running: AtomicBool::new(false),
            netmap_drops: AtomicU64::new(0),
        });
        let mut ok = true;
        for (slot, _) in sc.tx.iter_mut().zip(0..info.num_tx_rings) {
            *slot = KBox::uninit().map(|m| m.write(Mutex::new(TxRing::new(info.num_tx_slots))));
            ok &= slot.is_some();
        }
        for (slot, _) in sc.rx.iter_mut().zip(0..info.num_rx_rings) {
            *slot = KBox::uninit().map(|m| m.write(Mutex::new(RxRing::new(info.num_rx_slots))));
            ok &= slot.is_some();
        }
        if !ok {
            Softc::release(sc);
            return Err(Error::NoMemory);
        }
        Ok(sc)
    }

    /// Detaches the core, releases the memdev and frees everything (the
    /// rings' queued packets too), in place.
    pub fn release(mut sc: KBox<Softc>) {
        // The host stopped with the last user: what it never took is
        // counted and logged, not lost silently.
        for (i, r) in (0u32..).zip(sc.tx.iter().flatten()) {
            sc.dev.tx_abandon(i, &mut r.lock());
        }
        sc.dev.teardown();
        if let Some(o) = ops() {
            // SAFETY: `memdev` is what `memdev_find` returned for `shim`.
            unsafe { (o.memdev_release)(sc.shim.0, &sc.memdev) };
        }
    }

    pub fn core(&self) -> &Ptnet<ShimKernel, Bar0> {
        &self.dev
    }

    fn tx_ring(&self, idx: u32) -> Option<&Mutex<TxState>> {
        self.tx.get(idx as usize)?.as_deref()
    }

    fn rx_ring(&self, idx: u32) -> Option<&Mutex<RxRing>> {
        self.rx.get(idx as usize)?.as_deref()
    }

    /// Waits until no datapath call holds a ring (after the mode flags
    /// changed, new ones return early).
    fn quiesce(&self) {
        for r in self.tx.iter().flatten() {
            drop(r.lock());
        }
        for r in self.rx.iter().flatten() {
            drop(r.lock());
        }
    }

    /// `if_init`: the interface takes the rings (the host starts if nobody
    /// else uses them). The shim then schedules every RX task once.
    pub fn if_init(&self) -> Result<(), Error> {
        let mut users = self.users.lock();
        if users.if_up {
            return Ok(());
        }
        self.dev.up(EachRing(self)).map_err(Error::Up)?;
        users.if_up = true;
        self.if_running.store(true, Ordering::Release);
        if !users.netmap {
            self.stack_interrupts_on();
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
        for r in self.tx.iter().flatten() {
            let mut r = r.lock();
            let n = r.flush(drop);
            r.stats.down_drops.add(n as u64);
        }
    }

    fn stack_interrupts_on(&self) {
        for i in 0..self.dev.info().num_rx_rings {
            self.dev.set_interrupt(Dir::Rx, i, true);
        }
    }

    /// `if_transmit`: the packet goes to its flow's ring (or the software
    /// queue), or is freed and the error returned.
    pub fn transmit(&self, pkt: MbufPkt) -> Result<(), Error> {
        if self.netmap_mode.load(Ordering::Acquire) {
            self.netmap_drops.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Tx(TxError::Down));
        }
        let i = flow_ring(&pkt, self.dev.info().num_tx_rings);
        let ring = self.tx_ring(i).ok_or(Error::NoRing)?;
        self.dev.transmit(i, &mut ring.lock(), Some(pkt), drop).map_err(Error::Tx)
    }

    /// The TX task: resumes a ring's software queue after its interrupt.
    pub fn tx_task(&self, idx: u32) -> Result<(), Error> {
        let ring = self.tx_ring(idx).ok_or(Error::NoRing)?;
        if self.netmap_mode.load(Ordering::Acquire) {
            return Ok(());
        }
        self.dev.transmit(idx, &mut ring.lock(), None, drop).map_err(Error::Tx)
    }

    /// The once-a-second tick: every TX ring's watchdog. Returns how many
    /// fired (their queued packets were freed and counted).
    pub fn tick(&self, now_ms: u64, timeout_ms: u64) -> u32 {
        if self.netmap_mode.load(Ordering::Acquire) || !self.if_running() {
            return 0;
        }
        let mut fired = 0u32;
        for (i, r) in (0u32..).zip(self.tx.iter().flatten()) {
            if self.dev.tx_watchdog(i, &mut r.lock(), now_ms, timeout_ms, drop) {
                fired = fired.saturating_add(1);
            }
        }
        fired
    }

    /// The once-a-second tick of RX ring `idx`: whether frames wait that
    /// lost their interrupt (the shim then runs the ring's task).
    pub fn rx_watchdog(&self, idx: u32) -> bool {
        if self.netmap_mode.load(Ordering::Acquire) || !self.if_running() {
            return false;
        }
        self.rx_ring(idx).is_some_and(|r| self.dev.rx_watchdog(idx, &mut r.lock()))
    }

    /// The RX task: up to `budget` frames of ring `idx` to the stack.
    /// Returns whether more are waiting (run again).
    pub fn rx_task(&self, idx: u32, budget: u32) -> Result<bool, Error> {
        let ring = self.rx_ring(idx).ok_or(Error::NoRing)?;
        if self.netmap_mode.load(Ordering::Acquire) || !self.if_running() {
            return Ok(false);
        }
        let mut sink = RxSink::new(self.shim, u16::try_from(idx).unwrap_or(u16::MAX));
        let mut r = ring.lock();
        let rep = self.dev.receive(idx, &mut r, budget, &mut sink);
        r.stats.no_memory.add(sink.dropped);
        Ok(rep.more)
    }

    /// The MSI-X handler of `vector`.
    pub fn intr(&self, vector: u32) -> IntrAction {
        let Some((dir, idx)) = self.dev.interrupt(vector) else {
            return IntrAction::None;
        };
        if self.netmap_mode.load(Ordering::Acquire) {
            IntrAction::Netmap(dir, idx)
        } else if self.if_running() {
            IntrAction::Task(dir, idx)
        } else {
            IntrAction::None
        }
    }

    /// netmap's `nm_register`: a netmap client takes (`on`) or gives back
    /// the rings. On success with `on`, every ring's state is the host's,
    /// for the shim to copy into netmap's krings ([`Softc::kring`]).
    pub fn nm_register(&self, on: bool) -> Result<(), Error> {
        let mut users = self.users.lock();
        if on == users.netmap {
            return Ok(());
        }
        if on {
            // The stack's datapath stops first, then the rings align.
            self.netmap_mode.store(true, Ordering::Release);
            self.quiesce();
            if let Err(e) = self.dev.up(EachRing(self)) {
                self.netmap_mode.store(false, Ordering::Release);
                return Err(Error::Up(e));
            }
            users.netmap = true;
            return Ok(());
        }
        users.netmap = false;
        self.netmap_mode.store(false, Ordering::Release);
        let res = self.dev.down().map_err(Error::Up);
        if users.if_up {
            self.stack_interrupts_on();
        }
        res
    }

    /// A ring's pointers as the driver holds them.
    pub fn kring(&self, dir: Dir, idx: u32) -> Option<Kring> {
        match dir {
            Dir::Tx => self.tx_ring(idx).map(|r| r.lock().kring),
            Dir::Rx => self.rx_ring(idx).map(|r| r.lock().kring),
        }
    }

    /// netmap's `nm_txsync`/`nm_rxsync` on the application's `rhead` and
    /// `rcur` (already checked by netmap's prologue); returns the ring's
    /// new state.
    pub fn nm_sync(&self, dir: Dir, idx: u32, rhead: u32, rcur: u32, opts: SyncOpts) -> Result<Kring, Error> {
        let apply = |k: &mut Kring| {
            if rhead >= k.num_slots || rcur >= k.num_slots {
                return Err(Error::Invalid);
            }
            k.rhead = rhead;
            k.rcur = rcur;
            Ok(())
        };
        match dir {
            Dir::Tx => {
                let mut r = self.tx_ring(idx).ok_or(Error::NoRing)?.lock();
                apply(&mut r.kring)?;
                self.dev.txsync(idx, &mut r.kring, opts).map_err(Error::Sync)?;
                Ok(r.kring)
            }
            Dir::Rx => {
                let mut r = self.rx_ring(idx).ok_or(Error::NoRing)?.lock();
                apply(&mut r.kring)?;
                self.dev.rxsync(idx, &mut r.kring, opts).map_err(Error::Sync)?;
                Ok(r.kring)
            }
        }
    }

    /// Stops and restarts the host side (`PTCTL` delete then create), as
    /// after a resume: users keep their rings and lose nothing.
    pub fn restart(&self) -> Result<(), Error> {
        let _users = self.users.lock();
        self.dev.restart(EachRing(self)).map_err(Error::Up)
    }

    /// Runs `f` on a TX ring's state (counters), locked.
    pub fn with_tx<T>(&self, idx: u32, f: impl FnOnce(&TxState) -> T) -> Option<T> {
        self.tx_ring(idx).map(|r| f(&r.lock()))
    }

    /// As [`Softc::with_tx`] for an RX ring.
    pub fn with_rx<T>(&self, idx: u32, f: impl FnOnce(&RxRing) -> T) -> Option<T> {
        self.rx_ring(idx).map(|r| f(&r.lock()))
    }
}
