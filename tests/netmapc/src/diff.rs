//! The C guest sync (`netmap_pt_guest_txsync`, `netmap_pt_guest_rxsync`,
//! `ptnet_sync_tail` of netmap's C, as FreeBSD's `if_ptnet.c` runs them)
//! and the Rust core's (`ptnet::csb::guest_txsync`/`guest_rxsync`, the
//! host-pointer import of `ptnet::Kring::host_update`), fed the same ring
//! state and the same CSB, must decide the same: the pointers published
//! to the host, kick or no kick, the interrupt re-enabled or not, the
//! `nr_hwcur`/`nr_hwtail` the application then sees.
//!
//! Where they differ by design, [`compare`] says so instead of failing:
//! - [`Verdict::Refused`]: the host's `hwcur`/`hwtail` break the ring's
//!   invariants (the host consumed slots it was not given, or gave back
//!   slots it does not own). C adopts them unchecked; the Rust core
//!   refuses them and keeps its last good state (a hostile or buggy host
//!   must not make the guest hand out slots twice).
//! - Eager reclaim on TX: the C txsync reads the host's `hwtail` only
//!   when the ring would block (or on `NAF_FORCE_RECLAIM`); the Rust core
//!   reads it on every sync, so an application sees freed slots one sync
//!   earlier. C's decisions are compared on the kring it would have had
//!   with that read done (its `nr_hwtail` set to the host's), and its
//!   unchanged lazy `nr_hwtail` is checked to be the old one or the
//!   host's.
//! - RX never passes `NAF_FORCE_RECLAIM` (netmap's rxsync has no such
//!   kick; the Rust core's option is for TX).

use crate::{CKring, Csb, Ptrs, NAF_FORCE_RECLAIM};
use ptnet::csb::{guest_rxsync, guest_txsync, SyncOpts};
use ptnet::kring::{cyclic_between, cyclic_dist, prev, Dir, Kring};

/// One sync: the guest's kring before it, what the CSB holds, the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Which sync.
    pub dir: Dir,
    /// The guest's kring (consistent: `hwcur <= rhead <= rcur <= hwtail`
    /// in ring order).
    pub kring: Kring,
    /// The host's `hwcur`, `hwtail`, `kern_need_kick`.
    pub host: (u32, u32, u32),
    /// What the guest's entry held: `head`, `cur`, `appl_need_kick`,
    /// `sync_flags`.
    pub atok: (u32, u32, u32, u32),
    /// `NAF_FORCE_RECLAIM` (TX).
    pub force_reclaim: bool,
    /// `NKR_NOINTR`: the caller polls, no interrupt.
    pub nointr: bool,
}

/// How the two compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same decisions.
    Same,
    /// The host's pointers were inconsistent: C took them, Rust refused.
    Refused,
}

/// What a sync decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Kick the host.
    pub kick: bool,
    /// The CSB afterwards (see [`Csb::fields`]).
    pub csb: [u32; 7],
    /// The kring's `hwcur`, `hwtail` afterwards.
    pub hw: (u32, u32),
}

/// Whether the host may have moved from `k`'s view to `hwcur`/`hwtail`
/// (netmap's ring invariants, stated here apart from the core's check):
/// it consumes only what it was handed, `[k.hwcur, k.rhead)`, and gives
/// back only slots behind its cursor, keeping one slot between.
pub fn host_consistent(k: &Kring, hwcur: u32, hwtail: u32) -> bool {
    let n = k.num_slots;
    hwcur < n
        && hwtail < n
        && cyclic_dist(k.hwcur, hwcur, n) <= cyclic_dist(k.hwcur, k.rhead, n)
        && cyclic_dist(k.hwtail, hwtail, n) <= cyclic_dist(k.hwtail, prev(hwcur, n), n)
}

fn c_ptrs(k: &Kring, nointr: bool) -> Ptrs {
    Ptrs { rhead: k.rhead, rcur: k.rcur, rtail: k.hwtail, hwcur: k.hwcur, hwtail: k.hwtail, nointr: u32::from(nointr) }
}

fn csb_of(c: &Case) -> Csb {
    Csb::with(c.atok, c.host)
}

/// The C guest sync on `c`, with its kring's `nr_hwtail` set to `hwtail`.
fn run_c(c: &Case, hwtail: u32) -> Outcome {
    let csb = csb_of(c);
    let mut k = CKring::new(c.kring.num_slots);
    k.set(&Ptrs { hwtail, ..c_ptrs(&c.kring, c.nointr) });
    let kick = match c.dir {
        Dir::Tx => k.guest_txsync(&csb, if c.force_reclaim { NAF_FORCE_RECLAIM } else { 0 }),
        Dir::Rx => k.guest_rxsync(&csb, 0),
    };
    let p = k.get();
    Outcome { kick, csb: csb.fields(), hw: (p.hwcur, p.hwtail) }
}

/// The Rust core's sync on `c`; `None` when it refused the host.
fn run_rust(c: &Case) -> Option<Outcome> {
    let csb = csb_of(c);
    let mut k = c.kring;
    let opts = SyncOpts { force_reclaim: c.force_reclaim, want_intr: !c.nointr, want_space: 0 };
    let r = match c.dir {
        Dir::Tx => guest_txsync(&csb, &mut k, opts),
        Dir::Rx => guest_rxsync(&csb, &mut k, opts),
    };
    match r {
        Ok(kick) => Some(Outcome { kick, csb: csb.fields(), hw: (k.hwcur, k.hwtail) }),
        Err(_) => {
            assert_eq!((k.hwcur, k.hwtail), (c.kring.hwcur, c.kring.hwtail), "a refused update changed the kring");
            None
        }
    }
}

/// Runs both syncs on `c` and compares them; `Err` describes a
/// difference that is not one of the designed ones.
pub fn compare(c: &Case) -> Result<Verdict, String> {
    if c.dir == Dir::Rx && c.force_reclaim {
        return Err("RX with NAF_FORCE_RECLAIM is not a case".into());
    }
    let (hwcur, hwtail, _) = c.host;
    let consistent = host_consistent(&c.kring, hwcur, hwtail);
    let rust = run_rust(c);
    // ptnet_sync_tail against the core's import of the same pointers.
    let mut tail = CKring::new(c.kring.num_slots);
    tail.set(&c_ptrs(&c.kring, c.nointr));
    tail.sync_tail(&csb_of(c));
    let t = tail.get();
    let mut imported = c.kring;
    match (imported.host_update(hwcur, hwtail), consistent) {
        (Ok(()), true) => {
            if (t.hwcur, t.hwtail, t.rtail) != (imported.hwcur, imported.hwtail, imported.hwtail) {
                return Err(format!("ptnet_sync_tail {t:?}, Rust {imported:?}"));
            }
        }
        (Err(_), false) => {}
        (r, _) => return Err(format!("host ({hwcur}, {hwtail}) consistent {consistent}, Rust import {r:?}")),
    }
    let Some(rust) = rust else {
        return if consistent {
            Err(format!("Rust refused consistent host pointers: {c:?}"))
        } else {
            Ok(Verdict::Refused)
        };
    };
    if !consistent {
        return Err(format!("Rust accepted inconsistent host pointers: {c:?} -> {rust:?}"));
    }
    let c_out = match c.dir {
        Dir::Rx => run_c(c, c.kring.hwtail),
        Dir::Tx => {
            // C as written: its lazy nr_hwtail is the old one or the host's.
            let lazy = run_c(c, c.kring.hwtail);
            if lazy.hw.1 != c.kring.hwtail && lazy.hw.1 != hwtail {
                return Err(format!("C txsync left nr_hwtail {} (old {}, host {hwtail})", lazy.hw.1, c.kring.hwtail));
            }
            // C with the host's hwtail read, as the Rust core always does.
            run_c(c, hwtail)
        }
    };
    if c_out == rust {
        Ok(Verdict::Same)
    } else {
        Err(format!("C {c_out:?} Rust {rust:?} on {c:?}"))
    }
}

/// A small deterministic generator (xorshift64*), so that the property
/// test and the fuzz target need no dependency.
pub struct Gen(u64);

impl Gen {
    /// From a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next draw.
    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..=max`.
    pub fn upto(&mut self, max: u32) -> u32 {
        (self.draw() % (u64::from(max) + 1)) as u32
    }

    /// True with probability `p` percent.
    pub fn pct(&mut self, p: u32) -> bool {
        self.upto(99) < p
    }
}

/// Ring sizes: the smallest (where every pointer is an edge case), odd
/// ones, powers of two up to a real ring.
const SIZES: [u32; 7] = [2, 3, 4, 7, 16, 255, 1024];

/// A consistent kring of `dir` with `n` slots.
pub fn kring(g: &mut Gen, n: u32) -> Kring {
    let hwcur = g.upto(n - 1);
    let d1 = g.upto(n - 1);
    let d2 = g.upto(n - 1 - d1);
    let d3 = g.upto(n - 1 - d1 - d2);
    let at = |d: u32| (hwcur + d) % n;
    Kring { num_slots: n, hwcur, rhead: at(d1), rcur: at(d1 + d2), hwtail: at(d1 + d2 + d3) }
}

/// What a host publishes for `k`: usually a legal move, sometimes
/// anything (`lie_pct` percent).
pub fn host(g: &mut Gen, k: &Kring, lie_pct: u32) -> (u32, u32, u32) {
    let n = k.num_slots;
    let kick = u32::from(g.pct(50));
    if g.pct(lie_pct) {
        return (g.upto(n + 1), g.upto(n + 1), kick);
    }
    let hwcur = (k.hwcur + g.upto(cyclic_dist(k.hwcur, k.rhead, n))) % n;
    let room = cyclic_dist(k.hwtail, prev(hwcur, n), n);
    let hwtail = (k.hwtail + g.upto(room)) % n;
    (hwcur, hwtail, kick)
}

/// A case from the generator: random ring, state, host and call.
pub fn case(g: &mut Gen, lie_pct: u32) -> Case {
    let n = SIZES[g.upto(SIZES.len() as u32 - 1) as usize];
    let dir = if g.pct(50) { Dir::Tx } else { Dir::Rx };
    let k = kring(g, n);
    let host = host(g, &k, lie_pct);
    let atok = (k.hwcur, k.hwcur, g.upto(1), if g.pct(20) { 2 } else { 0 });
    Case { dir, kring: k, host, atok, force_reclaim: dir == Dir::Tx && g.pct(20), nointr: g.pct(20) }
}

/// A case from a fuzzer's bytes: every field drawn from them, host
/// pointers anywhere in (and just past) the ring. `None` when too short.
pub fn case_from(bytes: &[u8]) -> Option<Case> {
    let mut it = bytes.chunks_exact(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])));
    let mut take = || it.next();
    let flags = take()?;
    let n = 2 + take()? % 1023;
    let hwcur = take()? % n;
    let d1 = take()? % n;
    let d2 = take()? % (n - d1);
    let d3 = take()? % (n - d1 - d2);
    let at = |d: u32| (hwcur + d) % n;
    let kring = Kring { num_slots: n, hwcur, rhead: at(d1), rcur: at(d1 + d2), hwtail: at(d1 + d2 + d3) };
    let host = (take()? % (n + 2), take()? % (n + 2), flags & 1);
    let atok = (take()? % n, take()? % n, flags >> 1 & 1, flags >> 2 & 2);
    let dir = if flags & 8 != 0 { Dir::Tx } else { Dir::Rx };
    Some(Case { dir, kring, host, atok, force_reclaim: dir == Dir::Tx && flags & 16 != 0, nointr: flags & 32 != 0 })
}

/// A sequence: an application that moves its pointers as netmap
/// applications do (takes some of what it may, releases some of what it
/// took), a host that moves within the protocol (and, `lie_pct` percent
/// of the time, lies), one sync per step, compared at every step; the
/// ring goes on from the Rust core's state. Returns how many steps the C
/// side adopted a lie that the Rust side refused.
pub fn sequence(g: &mut Gen, steps: u32, lie_pct: u32) -> Result<u32, String> {
    let n = SIZES[g.upto(SIZES.len() as u32 - 1) as usize];
    let dir = if g.pct(50) { Dir::Tx } else { Dir::Rx };
    let mut k = Kring::new(dir, n);
    let mut ktoa = (k.hwcur, k.hwtail, 1);
    let mut atok = (0, 0, 0, 0);
    let mut refused = 0;
    for step in 0..steps {
        // The application: head and cur forward within what it holds.
        let avail = cyclic_dist(k.rhead, k.hwtail, n);
        let head = (k.rhead + g.upto(avail)) % n;
        let cur = (head + g.upto(cyclic_dist(head, k.hwtail, n))) % n;
        let moved = match dir {
            Dir::Tx => k.tx_prologue(head, cur),
            Dir::Rx => k.rx_prologue(head, cur),
        };
        moved.map_err(|e| format!("step {step}: the application's move {e:?} refused"))?;
        // The host, from its own last state.
        if g.pct(60) {
            let (hwcur, hwtail, kick) = host(g, &k, lie_pct);
            ktoa = (hwcur, hwtail, kick);
        } else {
            ktoa.2 = u32::from(g.pct(50));
        }
        let c = Case { dir, kring: k, host: ktoa, atok, force_reclaim: dir == Dir::Tx && g.pct(10), nointr: g.pct(10) };
        if compare(&c).map_err(|e| format!("step {step}: {e}"))? == Verdict::Refused {
            refused += 1;
            // The host behaves again from the guest's last good view.
            ktoa = (k.hwcur, k.hwtail, ktoa.2);
        }
        let csb = Csb::with(atok, ktoa);
        let opts = SyncOpts { force_reclaim: c.force_reclaim, want_intr: !c.nointr, want_space: 0 };
        let _ = match dir {
            Dir::Tx => guest_txsync(&csb, &mut k, opts),
            Dir::Rx => guest_rxsync(&csb, &mut k, opts),
        };
        let f = csb.fields();
        atok = (f[0], f[1], f[2], f[3]);
        debug_assert!(cyclic_between(k.hwcur, k.rhead, k.hwtail, n));
    }
    Ok(refused)
}
