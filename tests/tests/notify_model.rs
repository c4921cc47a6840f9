//! Model check of the notification protocol with loom: the real guest sync
//! code (`ptnet::csb::guest_txsync`/`guest_rxsync`) and the host's kloop
//! decisions (`kern_sleep_check`, `kern_wants_interrupt`) run against a CSB
//! made of loom atomics, and loom explores their interleavings and the
//! store-buffer reorderings that relaxed accesses allow. A lost wakeup
//! shows up as both sides parked forever, which loom reports as a
//! deadlock.
//!
//! The negative controls weaken the store-load barriers to release/acquire
//! ones (what a careless port to x86 would compile to nothing) and check
//! that loom then does find the lost wakeup, so a pass means something.

use loom::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use ptnet::csb::{
    guest_rxsync, guest_txsync, kern_read, kern_sleep_check, kern_wants_interrupt, kern_write, Barrier, CsbMem, Field,
    SyncOpts,
};
use ptnet::kring::{cyclic_dist, next, prev, Dir, Kring};

struct LoomCsb {
    f: [AtomicU32; 7],
    weak: bool,
}

impl LoomCsb {
    /// The CSB as the host initialises it at `PTCTL` create.
    fn new(dir: Dir, n: u32, weak: bool) -> Self {
        let k = Kring::new(dir, n);
        let c = Self { f: Default::default(), weak };
        c.store(Field::Hwcur, k.hwcur);
        c.store(Field::Hwtail, k.hwtail);
        c.store(Field::KernNeedKick, 1);
        c
    }
}

impl CsbMem for LoomCsb {
    fn load(&self, f: Field) -> u32 {
        self.f[f as usize].load(Ordering::Relaxed)
    }
    fn store(&self, f: Field, v: u32) {
        self.f[f as usize].store(v, Ordering::Relaxed)
    }
    fn fence(&self, b: Barrier) {
        match b {
            Barrier::StoreStore => fence(Ordering::Release),
            Barrier::LoadLoad => fence(Ordering::Acquire),
            Barrier::StoreLoad if self.weak => fence(Ordering::AcqRel),
            Barrier::StoreLoad => fence(Ordering::SeqCst),
        }
    }
}

/// The host signals the end of the scenario (outside the protocol), so
/// the guest can wait for it without blocking in `join`, which loom does
/// not let an unpark interrupt.
fn finish(done: &AtomicBool, guest: &thread::Thread) {
    done.store(true, Ordering::Release);
    guest.unpark();
}

fn wait_done(done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        thread::park();
    }
}

const OPTS: SyncOpts = SyncOpts { force_reclaim: false, want_intr: true, want_space: 0 };

/// Guest sends `total` packets on a TX ring of `n` slots; the host kloop
/// (thread mode) consumes them. Either side sleeps (parks) only as the
/// protocol allows; kicks and interrupts are unparks.
fn tx_model(n: u32, total: u32, weak: bool) {
    let csb = Arc::new(LoomCsb::new(Dir::Tx, n, weak));
    let guest = thread::current();
    let done = Arc::new(AtomicBool::new(false));
    let (hcsb, hdone) = (csb.clone(), done.clone());
    let host = thread::spawn(move || {
        let (mut hwcur, mut consumed) = (0u32, 0u32);
        loop {
            hcsb.store(Field::KernNeedKick, 0);
            let (mut head, _, _) = kern_read(&*hcsb);
            loop {
                if head != hwcur {
                    consumed += cyclic_dist(hwcur, head, n);
                    hwcur = head;
                    kern_write(&*hcsb, hwcur, prev(hwcur, n));
                    if kern_wants_interrupt(&*hcsb) {
                        guest.unpark();
                    }
                }
                if consumed == total {
                    finish(&hdone, &guest);
                    return;
                }
                (head, _, _) = kern_read(&*hcsb);
                if head == hwcur {
                    match kern_sleep_check(&*hcsb, |h| h == hwcur) {
                        Some((h, _)) => head = h,
                        None => break,
                    }
                }
            }
            thread::park();
        }
    });
    let mut k = Kring::new(Dir::Tx, n);
    let mut sent = 0;
    while sent < total {
        if k.user_avail() > 0 {
            let h = next(k.rhead, n);
            k.tx_prologue(h, h).unwrap();
            sent += 1;
        }
        if guest_txsync(&*csb, &mut k, OPTS).unwrap() {
            host.thread().unpark();
        }
        if k.would_block() {
            thread::park();
        }
    }
    wait_done(&done);
    host.join().unwrap();
}

/// The host delivers `total` packets into an RX ring of `n` slots; the
/// guest receives and releases them.
fn rx_model(n: u32, total: u32, weak: bool) {
    let csb = Arc::new(LoomCsb::new(Dir::Rx, n, weak));
    let guest = thread::current();
    let done = Arc::new(AtomicBool::new(false));
    let (hcsb, hdone) = (csb.clone(), done.clone());
    let host = thread::spawn(move || {
        let (mut hwtail, mut produced) = (0u32, 0u32);
        loop {
            hcsb.store(Field::KernNeedKick, 0);
            loop {
                // Slots before the guest's head are released.
                let (hwcur, _, _) = kern_read(&*hcsb);
                if produced < total && cyclic_dist(hwtail, prev(hwcur, n), n) > 0 {
                    hwtail = next(hwtail, n);
                    produced += 1;
                    kern_write(&*hcsb, hwcur, hwtail);
                    if kern_wants_interrupt(&*hcsb) {
                        guest.unpark();
                    }
                    continue;
                }
                if produced == total {
                    finish(&hdone, &guest);
                    return;
                }
                // Ring full: sleep until the guest releases a slot.
                if kern_sleep_check(&*hcsb, |h| prev(h, n) == hwtail).is_none() {
                    break;
                }
            }
            thread::park();
        }
    });
    let mut k = Kring::new(Dir::Rx, n);
    let mut got = 0;
    while got < total {
        if guest_rxsync(&*csb, &mut k, OPTS).unwrap() {
            host.thread().unpark();
        }
        if k.would_block() {
            thread::park();
        } else {
            got += k.user_avail();
            k.rx_prologue(k.hwtail, k.hwtail).unwrap();
        }
    }
    wait_done(&done);
    host.join().unwrap();
}

fn explore(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Runs the `#[ignore]`d test `name` in a child process (loom aborts the
/// process on a deadlock found while unwinding) and tells whether loom
/// reported a deadlock there.
fn finds_lost_wakeup(name: &str) -> bool {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", name, "--nocapture", "--test-threads=1"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the model in a child process");
    let stderr = String::from_utf8_lossy(&out.stderr);
    !out.status.success() && stderr.contains("deadlock")
}

#[test]
fn tx_direction_never_loses_a_wakeup() {
    explore(|| tx_model(2, 3, false));
}

#[test]
fn rx_direction_never_loses_a_wakeup() {
    explore(|| rx_model(2, 3, false));
}

#[test]
#[ignore = "negative control, run in a child process"]
fn weak_barriers_tx() {
    explore(|| tx_model(2, 3, true));
}

#[test]
#[ignore = "negative control, run in a child process"]
fn weak_barriers_rx() {
    explore(|| rx_model(2, 3, true));
}

#[test]
fn without_store_load_barriers_tx_loses_wakeups() {
    assert!(finds_lost_wakeup("weak_barriers_tx"));
}

#[test]
fn without_store_load_barriers_rx_loses_wakeups() {
    assert!(finds_lost_wakeup("weak_barriers_rx"));
}
