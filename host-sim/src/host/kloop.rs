//! The host sync kloop of one passed-through ring: the host half of the CSB
//! protocol, as netmap's `netmap_sync_kloop_{tx,rx}_ring` run it.
//!
//! Two modes, as netmap's sync kloop offers:
//! - `Thread`: a host thread per ring sleeps until a guest kick or a
//!   backend notification wakes it, then processes the ring until there is
//!   no more work, suppressing guest kicks (`kern_need_kick = 0`) while it
//!   runs and re-enabling them, with the double check, before it sleeps.
//! - `Direct`: a kick or notification processes the ring right away in the
//!   thread that caused it (the vCPU's VM exit, or the forwarding thread).
//!   Kicks are never suppressed, as in netmap's direct mode.
//!
//! The host validates the guest's `head`/`cur` like netmap's sync
//! prologues; a guest that breaks the ring invariants gets its update
//! ignored and counted, never an out-of-range access on the host.
//!
//! A third mode, `NetmapC`, runs netmap's own C instead of this file's
//! per-ring sync: `netmap_sync_kloop_tx_ring`/`_rx_ring` of
//! `netmap_kloop.c` (crate `ptnet-netmapc`), in a thread per ring as
//! QEMU's ptnetmap backend runs netmap's kloop, the kloop's `nm_sync`
//! calling this port's backend, its irqfd raising the ring's interrupt.

use super::chaos::{Chaos, IrqFate};
use super::port::{fire, HostKring, HostRing, NmPort, NotifyList, Waker};
use crate::guest_mem::GuestMemory;
use crate::hv::Interrupts;
use ptnet::csb::{kern_read, kern_sleep_check, kern_wants_interrupt, kern_write, CsbMem, CsbRing, Field};
use ptnet::kring::{prev, Dir, Kring};
use ptnet_netmapc::{CKring, IrqFd, Ptrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};

/// How kloops run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KloopMode {
    /// One host thread per ring.
    #[serde(rename = "kloop")]
    #[value(name = "kloop")]
    Thread,
    /// Processing in the kicking or notifying thread.
    Direct,
    /// netmap's C per-ring sync, one host thread per ring.
    #[serde(rename = "netmap-c")]
    #[value(name = "netmap-c")]
    NetmapC,
}

/// Counters of one kloop.
#[derive(Debug, Default)]
pub struct KloopStats {
    /// Times the ring was processed.
    pub runs: AtomicU64,
    /// Interrupts sent to the guest.
    pub irqs: AtomicU64,
    /// Guest updates rejected by the prologue.
    pub guest_errors: AtomicU64,
}

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const RERUN: u8 = 2;

/// The kloop of one ring.
pub struct RingKloop {
    port: Arc<NmPort>,
    dir: Dir,
    idx: u32,
    csb: CsbRing,
    irq: Arc<dyn Interrupts>,
    vector: u32,
    mode: KloopMode,
    run: AtomicU8,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
    join: Mutex<Option<JoinHandle<()>>>,
    notes: Mutex<NotifyList>,
    /// Counters.
    pub stats: KloopStats,
    chaos: Option<Arc<Chaos>>,
    /// The ring's name for the chaos (`vale0:1 tx0`).
    at: String,
    /// Keeps the guest memory holding the CSB alive.
    _guest_mem: Arc<GuestMemory>,
    /// In `NetmapC` mode: netmap's kring and the ring's irqfd.
    c: OnceLock<(CKring, IrqFd)>,
}

/// Where a kloop finds its ring, its CSB entry and its interrupt.
pub struct KloopTarget {
    /// The passed-through port.
    pub port: Arc<NmPort>,
    /// Ring direction.
    pub dir: Dir,
    /// Ring index.
    pub idx: u32,
    /// The ring's CSB entries, translated from guest-physical addresses.
    pub csb: CsbRing,
    /// Guest memory the CSB lives in.
    pub guest_mem: Arc<GuestMemory>,
    /// The guest's interrupt controller.
    pub irq: Arc<dyn Interrupts>,
    /// MSI-X vector of the ring.
    pub vector: u32,
    /// A hostile host, if any.
    pub chaos: Option<Arc<Chaos>>,
}

impl Waker for RingKloop {
    fn wake(&self) {
        self.kick();
    }
}

impl RingKloop {
    /// Starts the kloop of a ring and hooks it to the ring's notifications.
    pub fn start(t: KloopTarget, mode: KloopMode) -> Arc<Self> {
        let at = format!("{} {}{}", t.port.name, t.dir, t.idx);
        let mut k = Arc::new(Self {
            port: t.port,
            dir: t.dir,
            idx: t.idx,
            csb: t.csb,
            irq: t.irq,
            vector: t.vector,
            mode,
            run: AtomicU8::new(IDLE),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
            join: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
            stats: KloopStats::default(),
            chaos: t.chaos,
            at: String::new(),
            _guest_mem: t.guest_mem,
            c: OnceLock::new(),
        });
        Arc::get_mut(&mut k).expect("not shared yet").at = at;
        if mode == KloopMode::NetmapC {
            k.c_start();
        }
        if mode != KloopMode::Direct {
            let me = k.clone();
            let name = format!("kloop-{}-{}{}", k.port.name, k.dir, k.idx);
            let h = std::thread::Builder::new().name(name).spawn(move || me.thread_main()).expect("spawn kloop thread");
            let _ = k.thread.set(h.thread().clone());
            *k.join.lock().unwrap() = Some(h);
        }
        k.ring().set_waker(Some(k.clone()));
        k
    }

    /// Stops the kloop: unhooks it from its ring and waits until it is
    /// not running anywhere.
    pub fn stop(&self) {
        self.ring().set_waker(None);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
        if let Some(h) = self.join.lock().unwrap().take() {
            let _ = h.join();
        }
        while self.run.load(Ordering::SeqCst) != IDLE {
            std::thread::yield_now();
        }
    }

    fn ring(&self) -> &HostRing {
        self.port.ring(self.dir, self.idx).expect("kloop ring exists")
    }

    /// The ring's CSB entry (what the host publishes and reads).
    pub fn csb(&self) -> &CsbRing {
        &self.csb
    }

    /// A guest kick or a backend notification.
    pub fn kick(&self) {
        match self.mode {
            KloopMode::Thread | KloopMode::NetmapC => {
                if let Some(t) = self.thread.get() {
                    t.unpark();
                }
            }
            KloopMode::Direct => self.run_direct(),
        }
    }

    fn thread_main(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            self.process();
            std::thread::park();
        }
    }

    /// Processes the ring in the calling thread; if another thread is
    /// already processing it, asks that thread for one more pass instead
    /// (so no wakeup is lost and the ring is never processed twice at once).
    fn run_direct(&self) {
        loop {
            match self.run.compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(RERUN) => return,
                Err(_) => {
                    if self.run.compare_exchange(RUNNING, RERUN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        return;
                    }
                }
            }
        }
        loop {
            self.process();
            if self.run.compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return;
            }
            self.run.store(RUNNING, Ordering::Release);
        }
    }

    fn process(&self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.chaos {
            c.stall(&self.at);
        }
        if let Some((kring, irq)) = self.c.get() {
            return self.c_process(kring, irq);
        }
        let mut notes = self.notes.lock().unwrap();
        match self.dir {
            Dir::Tx => self.process_tx(&mut notes),
            Dir::Rx => self.process_rx(&mut notes),
        }
    }

    /// `NetmapC`: netmap's kring for this ring, in the host's current
    /// state, and the irqfd (counted like this file's interrupts).
    fn c_start(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let irq = IrqFd(Box::new(move || {
            if let Some(k) = me.upgrade() {
                k.stats.irqs.fetch_add(1, Ordering::Relaxed);
                k.irq.raise(k.vector);
            }
        }));
        let ctx = Arc::as_ptr(self).cast_mut().cast::<core::ffi::c_void>();
        // The host's ring as it stands: netmap's kring starts from it.
        let hk = *self.ring().kring.lock().unwrap();
        // SAFETY: `ctx` is this kloop, which owns the kring: alive whenever
        // netmap's C calls `c_nm_sync`.
        let kring = unsafe { CKring::with_sync(hk.k.num_slots, Some(c_nm_sync), ctx) };
        kring.set(&Ptrs {
            rhead: hk.k.rhead,
            rcur: hk.k.rcur,
            rtail: hk.rtail,
            hwcur: hk.k.hwcur,
            hwtail: hk.k.hwtail,
            nointr: 0,
        });
        let _ = self.c.set((kring, irq));
    }

    /// One pass of netmap's C over the ring, then the notifications its
    /// `nm_sync` calls queued.
    fn c_process(&self, kring: &CKring, irq: &IrqFd) {
        let before = ptnet_netmapc::reinits();
        let (atok, ktoa) = self.csb.entries();
        // SAFETY: the CSB entries live in guest memory this kloop keeps
        // alive; `c_nm_sync` finds this kloop through the kring's ctx,
        // and the kloop outlives its kring (stop() waits for the pass).
        unsafe { kring.kloop(self.dir == Dir::Tx, atok, ktoa, Some(irq), false, false) };
        let refused = ptnet_netmapc::reinits() - before;
        self.stats.guest_errors.fetch_add(refused, Ordering::Relaxed);
        let mut notes = std::mem::take(&mut *self.notes.lock().unwrap());
        fire(&mut notes);
    }

    fn direct(&self) -> bool {
        self.mode == KloopMode::Direct
    }

    fn set_kick(&self, on: bool) {
        self.csb.store(Field::KernNeedKick, u32::from(on));
    }

    /// Interrupts the guest if it asked for it. The store-load barrier
    /// orders the pointers just published before the read of
    /// `appl_need_kick` (see `ptnet::csb`).
    fn interrupt_if_wanted(&self) -> bool {
        if kern_wants_interrupt(&self.csb) {
            self.stats.irqs.fetch_add(1, Ordering::Relaxed);
            match self.chaos.as_ref().map_or(IrqFate::Deliver, |c| c.irq(&self.at)) {
                IrqFate::Drop => {}
                IrqFate::Deliver => self.irq.raise(self.vector),
                IrqFate::Twice => {
                    self.irq.raise(self.vector);
                    self.irq.raise(self.vector);
                }
            }
            true
        } else {
            false
        }
    }

    /// A hostile host may overwrite what it just published.
    fn lie(&self, n: u32) {
        if let Some(c) = &self.chaos {
            c.csb(&self.at, &self.csb, n);
        }
    }

    fn guest_error(&self) {
        self.stats.guest_errors.fetch_add(1, Ordering::Relaxed);
        if !self.direct() {
            self.set_kick(true);
        }
    }

    fn process_tx(&self, notes: &mut NotifyList) {
        let ring = self.ring();
        if !self.direct() {
            self.set_kick(false);
        }
        let (mut head, mut cur, _) = kern_read(&self.csb);
        let mut more_space = false;
        loop {
            let hk = {
                let mut hk = ring.kring.lock().unwrap();
                let mut view = Kring { hwtail: hk.rtail, ..hk.k };
                if view.tx_prologue(head, cur).is_err() {
                    drop(hk);
                    self.guest_error();
                    break;
                }
                hk.k.rhead = view.rhead;
                hk.k.rcur = view.rcur;
                self.port.backend.txsync(&self.port, ring, &mut hk, notes);
                kern_write(&self.csb, hk.k.hwcur, hk.k.hwtail);
                self.lie(hk.k.num_slots);
                if hk.rtail != hk.k.hwtail {
                    hk.rtail = hk.k.hwtail;
                    more_space = true;
                }
                *hk
            };
            fire(notes);
            if more_space && self.interrupt_if_wanted() {
                more_space = false;
            }
            (head, cur, _) = kern_read(&self.csb);
            if head == hk.k.rhead {
                if self.direct() {
                    break;
                }
                // Going to sleep: re-enable kicks, then look once more.
                match kern_sleep_check(&self.csb, |h| h == hk.k.rhead) {
                    Some(fresh) => (head, cur) = fresh,
                    None => break,
                }
                continue;
            }
            if hk.k.rhead == hk.k.hwtail {
                // No free TX slot: the backend's notification resumes us.
                break;
            }
        }
        if more_space {
            self.interrupt_if_wanted();
        }
    }

    /// RX processing runs on every backend notification (a delivery) in
    /// both modes, which picks up the guest's released slots from the CSB;
    /// so in both modes the host suppresses RX kicks while it has room and
    /// asks for them (with the double check) only when the ring is full.
    /// In direct mode netmap leaves kicks always on; the protocol is the
    /// same, only this host needs fewer of them.
    fn process_rx(&self, notes: &mut NotifyList) {
        let ring = self.ring();
        self.set_kick(false);
        let (mut head, mut cur, _) = kern_read(&self.csb);
        let mut some_recvd = false;
        let mut dry_cycles = 0;
        loop {
            let hk: HostKring = {
                let mut hk = ring.kring.lock().unwrap();
                let mut view = hk.k;
                if view.rx_prologue(head, cur).is_err() {
                    drop(hk);
                    self.stats.guest_errors.fetch_add(1, Ordering::Relaxed);
                    self.set_kick(true);
                    break;
                }
                hk.k.rhead = view.rhead;
                hk.k.rcur = view.rcur;
                if let Some(c) = &self.chaos {
                    c.restore(ring);
                }
                self.port.backend.rxsync(&self.port, ring, &mut hk, notes);
                kern_write(&self.csb, hk.k.hwcur, hk.k.hwtail);
                self.lie(hk.k.num_slots);
                if hk.rtail != hk.k.hwtail {
                    if let Some(c) = &self.chaos {
                        let vnet = self.port.vnet_hdr_len.load(Ordering::Relaxed) > 0;
                        c.rx_slots(&self.at, ring, &self.port.mem, hk.rtail, hk.k.hwtail, vnet);
                    }
                    hk.rtail = hk.k.hwtail;
                    some_recvd = true;
                    dry_cycles = 0;
                } else {
                    dry_cycles += 1;
                }
                *hk
            };
            fire(notes);
            if some_recvd && self.interrupt_if_wanted() {
                some_recvd = false;
            }
            (head, cur, _) = kern_read(&self.csb);
            let n = hk.k.num_slots;
            let no_rx_slots = |head: u32| {
                let hwtail = ring.kring.lock().unwrap().k.hwtail;
                hwtail == prev(head, n)
            };
            if no_rx_slots(head) {
                // Ring full: sleep until the guest gives slots back.
                match kern_sleep_check(&self.csb, no_rx_slots) {
                    Some(fresh) => (head, cur) = fresh,
                    None => break,
                }
                continue;
            }
            let hwtail = ring.kring.lock().unwrap().k.hwtail;
            if hwtail == hk.k.rhead || dry_cycles >= 2 {
                // Nothing more from the backend: its notification resumes us.
                break;
            }
        }
        if some_recvd {
            self.interrupt_if_wanted();
        }
    }
}

/// The `nm_sync` of netmap's kring in `NetmapC` mode: the port's
/// txsync/rxsync on the host's kring, with the head and cur netmap's
/// prologue accepted, and the host's pointers handed back to netmap.
///
/// # Safety
/// Called by netmap's C with a kring made by `RingKloop::c_start`, whose
/// ctx is the live kloop.
unsafe extern "C" fn c_nm_sync(kring: *mut core::ffi::c_void, _flags: i32) -> i32 {
    // SAFETY: per the contract.
    let me = unsafe { &*CKring::ctx_of(kring).cast::<RingKloop>() };
    let Some((ck, _)) = me.c.get() else { return libc::EINVAL };
    let ring = me.ring();
    let p = ck.get();
    let mut notes = me.notes.lock().unwrap();
    let mut hk = ring.kring.lock().unwrap();
    hk.k.rhead = p.rhead;
    hk.k.rcur = p.rcur;
    hk.rtail = p.rtail;
    match me.dir {
        Dir::Tx => me.port.backend.txsync(&me.port, ring, &mut hk, &mut notes),
        Dir::Rx => me.port.backend.rxsync(&me.port, ring, &mut hk, &mut notes),
    }
    ck.set(&Ptrs { hwcur: hk.k.hwcur, hwtail: hk.k.hwtail, ..p });
    0
}
