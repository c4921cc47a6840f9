//! The CSB synchronisation protocol, guest side (and the host side's
//! barrier discipline, which the simulator reuses).
//!
//! Each ring has a guest-written `nm_csb_atok` entry and a host-written
//! `nm_csb_ktoa` entry. The protocol code is written against [`CsbMem`], a
//! minimal view of one ring's two entries (32-bit loads and stores plus
//! explicit barriers), so the very same functions run on the real CSB
//! pages ([`CsbRing`]) and inside the model checker in the tests, which
//! explores every interleaving and store-buffer reordering of them.
//!
//! Barrier discipline (both sides):
//! - a writer stores `cur` (`hwcur`), store-store barrier, then `head`
//!   (`hwtail`); a reader loads `head` (`hwtail`), load-load barrier, then
//!   `cur` (`hwcur`). The reader may see a newer `cur` than `head`, never
//!   the other way round.
//! - a side about to sleep sets its `need_kick`, issues a full (store-load)
//!   barrier, and reads the other side's pointers once more.
//! - a side that publishes work issues a store-load barrier before it reads
//!   the other side's `need_kick`. netmap's C guest and host omit this one;
//!   without it a store buffer can hold the new `head` while a stale
//!   `need_kick == 0` is read, and the peer, which just set `need_kick` and
//!   re-checked, goes to sleep on the old `head`. The loom model in
//!   `tests/tests/notify_model.rs` explores these reorderings: with the
//!   store-load barriers in place no wakeup is lost; weakened to
//!   release/acquire, it finds the lost wakeup in both directions.

use crate::abi::csb::{NmCsbAtok, NmCsbKtoa, CSB_ENTRY_SIZE};
use crate::kring::{BadPointers, Kring};
use crate::shmem::SharedRegion;
use core::mem::offset_of;
use core::sync::atomic::{fence, Ordering};

/// A 32-bit field of one ring's CSB entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `atok.head` (guest writes).
    Head,
    /// `atok.cur` (guest writes).
    Cur,
    /// `atok.appl_need_kick` (guest writes).
    ApplNeedKick,
    /// `atok.sync_flags` (guest writes).
    SyncFlags,
    /// `ktoa.hwcur` (host writes).
    Hwcur,
    /// `ktoa.hwtail` (host writes).
    Hwtail,
    /// `ktoa.kern_need_kick` (host writes).
    KernNeedKick,
}

impl Field {
    /// True for fields of the guest-to-host entry.
    pub const fn is_atok(self) -> bool {
        matches!(self, Field::Head | Field::Cur | Field::ApplNeedKick | Field::SyncFlags)
    }

    /// Byte offset of the field inside its entry.
    pub const fn offset(self) -> usize {
        match self {
            Field::Head => offset_of!(NmCsbAtok, head),
            Field::Cur => offset_of!(NmCsbAtok, cur),
            Field::ApplNeedKick => offset_of!(NmCsbAtok, appl_need_kick),
            Field::SyncFlags => offset_of!(NmCsbAtok, sync_flags),
            Field::Hwcur => offset_of!(NmCsbKtoa, hwcur),
            Field::Hwtail => offset_of!(NmCsbKtoa, hwtail),
            Field::KernNeedKick => offset_of!(NmCsbKtoa, kern_need_kick),
        }
    }
}

/// Memory barriers of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// Earlier stores become visible before later stores (`wmb`).
    StoreStore,
    /// Earlier loads complete before later loads (`rmb`).
    LoadLoad,
    /// Earlier stores become visible before later loads (`mb`).
    StoreLoad,
}

/// One ring's CSB entries as the protocol sees them.
pub trait CsbMem {
    /// Loads a field.
    fn load(&self, f: Field) -> u32;
    /// Stores a field.
    fn store(&self, f: Field, v: u32);
    /// Issues a barrier.
    fn fence(&self, b: Barrier);
}

/// The real CSB entries of one ring, in the DMA pages the guest allocated.
#[derive(Debug, Clone, Copy)]
pub struct CsbRing {
    atok: SharedRegion,
    ktoa: SharedRegion,
}

impl CsbRing {
    /// Wraps entry `ring` of the two CSB arrays; `None` when the arrays are
    /// too small.
    pub fn new(atok_array: &SharedRegion, ktoa_array: &SharedRegion, ring: usize) -> Option<Self> {
        let off = ring.checked_mul(CSB_ENTRY_SIZE)?;
        Some(Self { atok: atok_array.sub(off, CSB_ENTRY_SIZE).ok()?, ktoa: ktoa_array.sub(off, CSB_ENTRY_SIZE).ok()? })
    }

    /// The two entries' addresses (guest-to-host, host-to-guest), for a
    /// host written in C that takes `struct nm_csb_atok *` and
    /// `struct nm_csb_ktoa *`.
    pub fn entries(&self) -> (*mut NmCsbAtok, *mut NmCsbKtoa) {
        (self.atok.as_ptr().cast(), self.ktoa.as_ptr().cast())
    }

    fn entry(&self, f: Field) -> &SharedRegion {
        if f.is_atok() {
            &self.atok
        } else {
            &self.ktoa
        }
    }
}

impl CsbMem for CsbRing {
    #[inline]
    fn load(&self, f: Field) -> u32 {
        // Offsets are constants inside a 64-byte entry checked in `new`,
        // so the access cannot fail; 0 is never observed.
        self.entry(f).load_u32(f.offset()).unwrap_or(0)
    }

    #[inline]
    fn store(&self, f: Field, v: u32) {
        // Cannot fail, as in `load`.
        let _ = self.entry(f).store_u32(f.offset(), v);
    }

    #[inline]
    fn fence(&self, b: Barrier) {
        fence(match b {
            Barrier::StoreStore => Ordering::Release,
            Barrier::LoadLoad => Ordering::Acquire,
            Barrier::StoreLoad => Ordering::SeqCst,
        });
    }
}

/// Guest publishes `cur` then `head` (`nm_sync_kloop_appl_write`).
#[inline]
pub fn appl_write<M: CsbMem>(m: &M, cur: u32, head: u32) {
    m.fence(Barrier::StoreStore);
    m.store(Field::Cur, cur);
    m.fence(Barrier::StoreStore);
    m.store(Field::Head, head);
}

/// Guest reads `(hwtail, hwcur)` (`nm_sync_kloop_appl_read`).
#[inline]
pub fn appl_read<M: CsbMem>(m: &M) -> (u32, u32) {
    let hwtail = m.load(Field::Hwtail);
    m.fence(Barrier::LoadLoad);
    let hwcur = m.load(Field::Hwcur);
    m.fence(Barrier::LoadLoad);
    (hwtail, hwcur)
}

/// Host publishes `hwcur` then `hwtail`.
#[inline]
pub fn kern_write<M: CsbMem>(m: &M, hwcur: u32, hwtail: u32) {
    m.fence(Barrier::StoreStore);
    m.store(Field::Hwcur, hwcur);
    m.fence(Barrier::StoreStore);
    m.store(Field::Hwtail, hwtail);
}

/// Host reads `(head, cur, sync_flags)`.
#[inline]
pub fn kern_read<M: CsbMem>(m: &M) -> (u32, u32, u32) {
    let head = m.load(Field::Head);
    m.fence(Barrier::LoadLoad);
    let cur = m.load(Field::Cur);
    let flags = m.load(Field::SyncFlags);
    m.fence(Barrier::LoadLoad);
    (head, cur, flags)
}

/// Host, about to sleep: re-enables guest kicks, then (after a store-load
/// barrier) reads the guest's pointers once more. `idle(head)` tells
/// whether that head still leaves the host nothing to do. Returns `None`
/// when the host may sleep, or the fresh `(head, cur)` (kicks disabled
/// again) when work arrived in between.
pub fn kern_sleep_check<M: CsbMem>(m: &M, idle: impl Fn(u32) -> bool) -> Option<(u32, u32)> {
    m.store(Field::KernNeedKick, 1);
    m.fence(Barrier::StoreLoad);
    let (head, cur, _) = kern_read(m);
    if idle(head) {
        None
    } else {
        m.store(Field::KernNeedKick, 0);
        Some((head, cur))
    }
}

/// Host, having published new pointers: whether the guest asked for an
/// interrupt. The store-load barrier orders the publication before the
/// read of `appl_need_kick`.
pub fn kern_wants_interrupt<M: CsbMem>(m: &M) -> bool {
    m.fence(Barrier::StoreLoad);
    m.load(Field::ApplNeedKick) != 0
}

/// Options of one guest sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOpts {
    /// Ask the host to reclaim completed TX slots now (`NAF_FORCE_RECLAIM`).
    pub force_reclaim: bool,
    /// Enable the ring's interrupt if the caller would block.
    pub want_intr: bool,
    /// With `want_intr`: also enable it when fewer than this many slots
    /// are available (a transmitter waiting for room for a large packet).
    pub want_space: u32,
}

impl SyncOpts {
    /// Whether, after a sync, the caller has to wait for the host.
    fn must_wait(&self, k: &Kring) -> bool {
        k.would_block() || k.user_avail() < self.want_space
    }
}

/// `sync_flags` value that carries [`SyncOpts::force_reclaim`].
pub const NAF_FORCE_RECLAIM: u32 = 2;

/// Reads the host's pointers into `k`, checked against the ring invariants.
pub(crate) fn refresh<M: CsbMem>(m: &M, k: &mut Kring) -> Result<(), BadPointers> {
    let (hwtail, hwcur) = appl_read(m);
    k.host_update(hwcur, hwtail)
}

/// Interrupt enable with the double check: the guest is about to sleep, so
/// it asks for an interrupt, then looks once more, and withdraws the request
/// if the host made progress in between.
fn arm_interrupt<M: CsbMem>(m: &M, k: &mut Kring, opts: SyncOpts) -> Result<(), BadPointers> {
    m.store(Field::ApplNeedKick, 1);
    m.fence(Barrier::StoreLoad);
    refresh(m, k)?;
    if !opts.must_wait(k) {
        m.store(Field::ApplNeedKick, 0);
    }
    Ok(())
}

/// Decides whether the host must be kicked, after a store-load barrier that
/// orders the guest's published pointers before the read of the host's
/// `kern_need_kick`.
fn kick_needed<M: CsbMem>(m: &M, k: &Kring, opts: SyncOpts) -> bool {
    m.fence(Barrier::StoreLoad);
    let host_asleep = m.load(Field::KernNeedKick) != 0;
    let kick = ((k.rhead != k.hwcur || k.would_block()) && host_asleep) || opts.force_reclaim;
    if kick {
        m.store(Field::SyncFlags, if opts.force_reclaim { NAF_FORCE_RECLAIM } else { 0 });
    }
    kick
}

/// Guest TX sync (`netmap_pt_guest_txsync`): hands `[hwcur, rhead)` to the
/// host, reclaims completed slots, and arms the interrupt when the ring is
/// full. Returns whether the host must be kicked. On `Err` the host wrote
/// pointers that break the ring invariants; the kring keeps its last good
/// state.
pub fn guest_txsync<M: CsbMem>(m: &M, k: &mut Kring, opts: SyncOpts) -> Result<bool, BadPointers> {
    m.store(Field::ApplNeedKick, 0);
    appl_write(m, k.rcur, k.rhead);
    refresh(m, k)?;
    let kick = kick_needed(m, k, opts);
    if opts.want_intr && opts.must_wait(k) {
        arm_interrupt(m, k, opts)?;
    }
    Ok(kick)
}

/// Guest RX sync (`netmap_pt_guest_rxsync`): imports received slots, gives
/// back `[hwcur, rhead)`, and arms the interrupt when nothing is left to
/// read. Returns whether the host must be kicked.
pub fn guest_rxsync<M: CsbMem>(m: &M, k: &mut Kring, opts: SyncOpts) -> Result<bool, BadPointers> {
    m.store(Field::ApplNeedKick, 0);
    refresh(m, k)?;
    if k.rhead != k.hwcur {
        appl_write(m, k.rcur, k.rhead);
    }
    if opts.want_intr && opts.must_wait(k) {
        arm_interrupt(m, k, opts)?;
    }
    Ok(kick_needed(m, k, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kring::Dir;
    use core::cell::Cell;

    /// A CSB in plain cells, single-threaded: enough to check decisions.
    #[derive(Default)]
    struct Cells {
        v: [Cell<u32>; 7],
        fences: Cell<u32>,
    }

    impl CsbMem for Cells {
        fn load(&self, f: Field) -> u32 {
            self.v[f as usize].get()
        }
        fn store(&self, f: Field, v: u32) {
            self.v[f as usize].set(v)
        }
        fn fence(&self, b: Barrier) {
            if b == Barrier::StoreLoad {
                self.fences.set(self.fences.get() + 1);
            }
        }
    }

    fn host(m: &Cells, hwcur: u32, hwtail: u32, need_kick: bool) {
        kern_write(m, hwcur, hwtail);
        m.store(Field::KernNeedKick, u32::from(need_kick));
    }

    #[test]
    fn txsync_publishes_and_kicks_only_a_sleeping_host() {
        let m = Cells::default();
        let mut k = Kring::new(Dir::Tx, 8);
        host(&m, 0, 7, true);
        k.tx_prologue(3, 3).unwrap();
        let opts = SyncOpts { want_intr: true, ..SyncOpts::default() };
        assert_eq!(guest_txsync(&m, &mut k, opts), Ok(true));
        assert_eq!((m.load(Field::Head), m.load(Field::Cur)), (3, 3));
        assert_eq!(m.load(Field::ApplNeedKick), 0, "ring not full: no interrupt wanted");
        // Host running (kicks suppressed): no kick.
        m.store(Field::KernNeedKick, 0);
        k.tx_prologue(5, 5).unwrap();
        assert_eq!(guest_txsync(&m, &mut k, opts), Ok(false));
        // A forced reclaim always kicks and says so in sync_flags.
        let force = SyncOpts { force_reclaim: true, ..SyncOpts::default() };
        assert_eq!(guest_txsync(&m, &mut k, force), Ok(true));
        assert_eq!(m.load(Field::SyncFlags), NAF_FORCE_RECLAIM);
    }

    #[test]
    fn full_tx_ring_arms_the_interrupt_with_a_double_check() {
        let m = Cells::default();
        let mut k = Kring::new(Dir::Tx, 8);
        host(&m, 0, 7, false);
        k.tx_prologue(7, 7).unwrap();
        let opts = SyncOpts { want_intr: true, ..SyncOpts::default() };
        guest_txsync(&m, &mut k, opts).unwrap();
        assert!(k.would_block());
        assert_eq!(m.load(Field::ApplNeedKick), 1);
        // The arm is preceded by a store-load barrier (and the kick
        // decision by another one).
        assert!(m.fences.get() >= 2);
        // If the host completes slots before the re-check, the request is
        // withdrawn.
        let mut k2 = Kring::new(Dir::Tx, 8);
        host(&m, 0, 7, false);
        k2.tx_prologue(7, 7).unwrap();
        host(&m, 7, 6, false);
        guest_txsync(&m, &mut k2, opts).unwrap();
        assert!(!k2.would_block());
        assert_eq!(m.load(Field::ApplNeedKick), 0);
    }

    #[test]
    fn rxsync_imports_packets_releases_slots_and_arms_when_empty() {
        let m = Cells::default();
        let mut k = Kring::new(Dir::Rx, 8);
        host(&m, 0, 0, true);
        let opts = SyncOpts { want_intr: true, ..SyncOpts::default() };
        // Empty ring: arm the interrupt, kick (the host may pull more).
        assert_eq!(guest_rxsync(&m, &mut k, opts), Ok(true));
        assert_eq!(m.load(Field::ApplNeedKick), 1);
        // Three packets arrive.
        host(&m, 0, 3, false);
        assert_eq!(guest_rxsync(&m, &mut k, opts), Ok(false));
        assert_eq!((k.hwtail, m.load(Field::ApplNeedKick)), (3, 0));
        // The application consumes them; the release is published.
        k.rx_prologue(3, 3).unwrap();
        m.store(Field::KernNeedKick, 1);
        assert_eq!(guest_rxsync(&m, &mut k, opts), Ok(true));
        assert_eq!(m.load(Field::Head), 3);
    }

    #[test]
    fn inconsistent_host_pointers_are_refused() {
        let m = Cells::default();
        let mut k = Kring::new(Dir::Rx, 8);
        host(&m, 5, 2, true); // hwcur beyond anything released
        let before = k;
        assert!(guest_rxsync(&m, &mut k, SyncOpts::default()).is_err());
        assert_eq!(k, before);
        host(&m, 0, 100, true);
        assert!(guest_rxsync(&m, &mut k, SyncOpts::default()).is_err());
    }
}
