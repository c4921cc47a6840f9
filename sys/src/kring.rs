//! The guest's view of one ring's pointers ("kring"), the cyclic index
//! arithmetic behind it, and the checks that keep both the application's
//! and the host's updates consistent with it.
//!
//! A netmap ring of `n` slots is shared by two parties moving forward in
//! the same cyclic order. Starting from the kernel's `hwcur`:
//!
//! ```text
//!   hwcur <= head <= cur <= hwtail  (< hwcur + n)
//! ```
//!
//! `[hwcur, head)` is work handed to the kernel (packets to send, or slots
//! given back after reception), `[head, hwtail)` belongs to the application.
//! Every check below is an instance of "x lies on the cyclic path from a to
//! b", which [`cyclic_between`] answers without any arithmetic that could
//! overflow.

use core::fmt;

/// Distance going forward from `from` to `to` on a ring of `n` slots.
/// Both indexes must be below `n`.
#[inline]
pub fn cyclic_dist(from: u32, to: u32, n: u32) -> u32 {
    if to >= from {
        to.wrapping_sub(from)
    } else {
        n.wrapping_sub(from).wrapping_add(to)
    }
}

/// True when `x` lies on the forward path from `a` to `b`, both included.
#[inline]
pub fn cyclic_between(a: u32, x: u32, b: u32, n: u32) -> bool {
    x < n && cyclic_dist(a, x, n) <= cyclic_dist(a, b, n)
}

/// Index after `i` on a ring of `n` slots.
#[inline]
pub fn next(i: u32, n: u32) -> u32 {
    let j = i.wrapping_add(1);
    if j >= n {
        0
    } else {
        j
    }
}

/// Index before `i` on a ring of `n` slots.
#[inline]
pub fn prev(i: u32, n: u32) -> u32 {
    if i == 0 {
        n.wrapping_sub(1)
    } else {
        i.wrapping_sub(1)
    }
}

/// Index `i + k` on a ring of `n` slots (`k <= n`).
#[inline]
pub fn advance(i: u32, k: u32, n: u32) -> u32 {
    let room = n.wrapping_sub(i);
    if k >= room {
        k.wrapping_sub(room)
    } else {
        i.wrapping_add(k)
    }
}

/// Which way a ring moves packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Guest to host.
    Tx,
    /// Host to guest.
    Rx,
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::Tx => "tx",
            Dir::Rx => "rx",
        })
    }
}

/// An update that breaks the ring invariants, from the application (a bad
/// `head`/`cur`) or from the host (a bad `hwcur`/`hwtail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPointers {
    /// Proposed head (or hwcur, for host updates).
    pub a: u32,
    /// Proposed cur (or hwtail, for host updates).
    pub b: u32,
}

/// One ring's pointers as the guest kernel tracks them (netmap's
/// `netmap_kring`, reduced to what the sync protocol needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kring {
    /// Slots in the ring.
    pub num_slots: u32,
    /// First slot the host has not consumed.
    pub hwcur: u32,
    /// First slot the host still owns.
    pub hwtail: u32,
    /// Head as last handed over by the application.
    pub rhead: u32,
    /// Cur as last handed over by the application.
    pub rcur: u32,
}

impl Kring {
    /// A ring as netmap leaves it after registration when nothing is in
    /// flight: TX has `n - 1` free slots, RX has no packets.
    pub fn new(dir: Dir, num_slots: u32) -> Self {
        let hwtail = match dir {
            Dir::Tx => prev(0, num_slots),
            Dir::Rx => 0,
        };
        Self { num_slots, hwcur: 0, hwtail, rhead: 0, rcur: 0 }
    }

    /// The application has consumed everything it was given: it would
    /// block on its next sync (`nm_kr_wouldblock`).
    #[inline]
    pub fn would_block(&self) -> bool {
        self.rcur == self.hwtail
    }

    /// Slots the application may use: free slots on TX, packets on RX.
    #[inline]
    pub fn user_avail(&self) -> u32 {
        cyclic_dist(self.rhead, self.hwtail, self.num_slots)
    }

    /// Slots handed to the host that it has not consumed yet.
    #[inline]
    pub fn pending(&self) -> u32 {
        cyclic_dist(self.hwcur, self.rhead, self.num_slots)
    }

    /// Checks a transmit request's `head`/`cur` (netmap's
    /// `nm_txsync_prologue`) and records them: both must lie between the
    /// previous head and the tail, with `cur` not behind `head`.
    pub fn tx_prologue(&mut self, head: u32, cur: u32) -> Result<(), BadPointers> {
        let n = self.num_slots;
        if cyclic_between(self.rhead, head, self.hwtail, n) && cyclic_between(head, cur, self.hwtail, n) {
            self.rhead = head;
            self.rcur = cur;
            Ok(())
        } else {
            Err(BadPointers { a: head, b: cur })
        }
    }

    /// Checks a receive request's `head`/`cur` (netmap's
    /// `nm_rxsync_prologue`): `head` between `hwcur` and the tail, `cur`
    /// between `head` and the tail.
    pub fn rx_prologue(&mut self, head: u32, cur: u32) -> Result<(), BadPointers> {
        let n = self.num_slots;
        if cyclic_between(self.hwcur, head, self.hwtail, n) && cyclic_between(head, cur, self.hwtail, n) {
            self.rhead = head;
            self.rcur = cur;
            Ok(())
        } else {
            Err(BadPointers { a: head, b: cur })
        }
    }

    /// Checks the host's new `hwcur`/`hwtail` against what the host may
    /// legitimately do and applies them. The host may only consume what was
    /// handed over (`hwcur` moves forward up to `rhead`) and only give back
    /// slots behind its own cursor (`hwtail` moves forward, staying at least
    /// one slot behind `hwcur`). The checks hold for both directions and
    /// accept a `hwcur` newer than `hwtail`, which the lock-free CSB
    /// read can observe.
    pub fn host_update(&mut self, hwcur: u32, hwtail: u32) -> Result<(), BadPointers> {
        let n = self.num_slots;
        let ok =
            cyclic_between(self.hwcur, hwcur, self.rhead, n) && cyclic_between(self.hwtail, hwtail, prev(hwcur, n), n);
        if ok {
            self.hwcur = hwcur;
            self.hwtail = hwtail;
            Ok(())
        } else {
            Err(BadPointers { a: hwcur, b: hwtail })
        }
    }

    /// Checks a complete set of pointers read from a freshly initialised
    /// CSB (after `PTCTL` create): everything in range and in cyclic order
    /// `hwcur <= head <= cur <= hwtail`.
    pub fn from_host(num_slots: u32, hwcur: u32, hwtail: u32, head: u32, cur: u32) -> Result<Self, BadPointers> {
        let n = num_slots;
        let ok = n > 0
            && hwcur < n
            && hwtail < n
            && cyclic_between(hwcur, head, hwtail, n)
            && cyclic_between(head, cur, hwtail, n);
        if ok {
            Ok(Self { num_slots: n, hwcur, hwtail, rhead: head, rcur: cur })
        } else {
            Err(BadPointers { a: hwcur, b: hwtail })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyclic_helpers_wrap() {
        assert_eq!(cyclic_dist(3, 1, 8), 6);
        assert_eq!(cyclic_dist(1, 3, 8), 2);
        assert_eq!(cyclic_dist(5, 5, 8), 0);
        assert!(cyclic_between(6, 0, 2, 8));
        assert!(!cyclic_between(6, 3, 2, 8));
        assert!(!cyclic_between(0, 9, 7, 8), "out-of-range index is never between");
        assert_eq!((next(7, 8), prev(0, 8), advance(6, 3, 8), advance(2, 3, 8)), (0, 7, 1, 5));
    }

    #[test]
    fn tx_prologue_accepts_only_forward_moves_up_to_tail() {
        let mut k = Kring::new(Dir::Tx, 8);
        assert_eq!((k.hwtail, k.user_avail()), (7, 7));
        assert!(k.tx_prologue(3, 5).is_ok());
        assert_eq!((k.rhead, k.rcur), (3, 5));
        let before = k;
        assert!(k.tx_prologue(2, 3).is_err(), "head moving back");
        assert!(k.tx_prologue(4, 3).is_err(), "cur behind head");
        assert!(k.tx_prologue(3, 8).is_err(), "cur out of range");
        assert!(k.tx_prologue(u32::MAX, 0).is_err());
        assert_eq!(k, before, "a rejected prologue changes nothing");
    }

    #[test]
    fn rx_prologue_is_bounded_by_hwcur_and_tail() {
        let mut k = Kring { num_slots: 8, hwcur: 6, hwtail: 2, rhead: 6, rcur: 6 };
        assert!(k.rx_prologue(0, 1).is_ok());
        assert!(k.rx_prologue(3, 3).is_err(), "past the tail");
        assert!(k.rx_prologue(5, 5).is_err(), "behind hwcur");
    }

    #[test]
    fn host_updates_are_checked_against_what_was_handed_over() {
        // TX: 3 slots published, host consumed 2 and completed them.
        let mut k = Kring::new(Dir::Tx, 8);
        k.tx_prologue(3, 3).unwrap();
        assert!(k.host_update(2, 1).is_ok());
        assert_eq!(k.pending(), 1);
        let good = k;
        assert!(k.host_update(4, 1).is_err(), "hwcur beyond the published head");
        assert!(k.host_update(3, 3).is_err(), "hwtail reaching hwcur");
        assert!(k.host_update(1, 1).is_err(), "hwcur moving back");
        assert!(k.host_update(9, 0).is_err(), "out of range");
        assert_eq!(k, good);
        // A newer hwcur with an older hwtail is a legal torn read.
        assert!(k.host_update(3, 1).is_ok());
        // RX: host fills up to hwcur - 1 at most.
        let mut r = Kring::new(Dir::Rx, 8);
        assert!(r.host_update(0, 7).is_ok());
        assert!(!r.would_block() && r.user_avail() == 7);
    }

    #[test]
    fn fresh_csb_state_must_be_ordered() {
        assert!(Kring::from_host(8, 2, 6, 3, 4).is_ok());
        assert!(Kring::from_host(8, 2, 6, 7, 7).is_err(), "head past tail");
        assert!(Kring::from_host(8, 8, 0, 0, 0).is_err());
        assert!(Kring::from_host(0, 0, 0, 0, 0).is_err());
    }
}
