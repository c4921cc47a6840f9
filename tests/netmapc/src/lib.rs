//! netmap's own C in userspace: `netmap_kloop.c` (unmodified, see
//! `build.rs` and `c/netmapc.c`), which holds both ends of the ptnet sync
//! protocol as users run it: the host's per-ring sync kloop
//! (`netmap_sync_kloop_tx_ring`/`_rx_ring`, run by QEMU's and bhyve's
//! ptnetmap backends) and the guest sync of FreeBSD's C `if_ptnet.c`
//! (`netmap_pt_guest_txsync`/`_rxsync`, `ptnet_sync_tail`).
//!
//! [`CKring`] is a C `struct netmap_kring` driven from Rust; [`diff`]
//! compares the C guest sync with the Rust core's, decision for decision.

use core::ffi::c_void;
use ptnet::abi::csb::{NmCsbAtok, NmCsbKtoa};
use ptnet::csb::{Barrier, CsbMem, Field};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::UnsafeCell;

pub mod diff;

/// A kring's pointers as the C side sees them (`struct nmc_ptrs`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ptrs {
    /// `rhead`.
    pub rhead: u32,
    /// `rcur`.
    pub rcur: u32,
    /// `rtail`.
    pub rtail: u32,
    /// `nr_hwcur`.
    pub hwcur: u32,
    /// `nr_hwtail`.
    pub hwtail: u32,
    /// `NKR_NOINTR` set (no interrupts wanted).
    pub nointr: u32,
}

/// A kring's `nm_sync` callback: the C kloop's call into the port behind
/// the ring (netmap's `kring->nm_sync(kring, flags)`).
pub type SyncFn = unsafe extern "C" fn(kring: *mut c_void, flags: i32) -> i32;

extern "C" {
    fn nmc_kring_size() -> usize;
    fn nmc_kring_init(kr: *mut c_void, num_slots: u32, sync: Option<SyncFn>, ctx: *mut c_void);
    fn nmc_kring_get(kr: *const c_void, p: *mut Ptrs);
    fn nmc_kring_set(kr: *mut c_void, p: *const Ptrs);
    fn nmc_kring_ctx(k: *mut c_void) -> *mut c_void;
    fn nmc_guest_txsync(atok: *mut NmCsbAtok, ktoa: *mut NmCsbKtoa, kr: *mut c_void, flags: i32) -> bool;
    fn nmc_guest_rxsync(atok: *mut NmCsbAtok, ktoa: *mut NmCsbKtoa, kr: *mut c_void, flags: i32) -> bool;
    fn nmc_sync_tail(ktoa: *mut NmCsbKtoa, kr: *mut c_void);
    fn nmc_kloop_ring(
        kr: *mut c_void,
        tx: i32,
        atok: *mut NmCsbAtok,
        ktoa: *mut NmCsbKtoa,
        irq: *const c_void,
        busy: bool,
        direct: bool,
    );
    static nmc_reinits: core::sync::atomic::AtomicU64;
}

/// netmap's `NAF_FORCE_RECLAIM` (`netmap_kern.h`).
pub const NAF_FORCE_RECLAIM: i32 = 2;

/// Times netmap's host sync found the guest's pointers out of range and
/// reinitialised the ring (`netmap_ring_reinit`), in this process.
pub fn reinits() -> u64 {
    // SAFETY: a C `unsigned long` only ever updated atomically.
    unsafe { nmc_reinits.load(core::sync::atomic::Ordering::Relaxed) }
}

/// A C `struct netmap_kring` (with the adapter and ring header it points
/// to), owned by Rust.
pub struct CKring {
    mem: *mut c_void,
    layout: Layout,
}

// SAFETY: the C kring is plain memory; users serialise access as netmap
// does (one sync of a ring at a time, `nm_kr_tryget`).
unsafe impl Send for CKring {}
// SAFETY: as above; shared references only read through `&self` calls
// that the C code serialises with the kring's busy flag.
unsafe impl Sync for CKring {}

impl CKring {
    /// A kring of `num_slots`, all pointers 0, with no `nm_sync` (for
    /// the guest sync, which never calls it).
    pub fn new(num_slots: u32) -> Self {
        // SAFETY: no callback, so no context to keep alive.
        unsafe { Self::with_sync(num_slots, None, core::ptr::null_mut()) }
    }

    /// A kring of `num_slots` whose `nm_sync` is `sync`, called with the
    /// kring ([`CKring::ctx_of`] gives `ctx` back).
    ///
    /// # Safety
    /// `ctx` must stay valid for as long as `sync` may be called.
    pub unsafe fn with_sync(num_slots: u32, sync: Option<SyncFn>, ctx: *mut c_void) -> Self {
        // SAFETY: a C function without preconditions.
        let size = unsafe { nmc_kring_size() };
        let layout = Layout::from_size_align(size, 64).expect("kring layout");
        // SAFETY: the layout has a non-zero size.
        let mem = unsafe { alloc_zeroed(layout) }.cast::<c_void>();
        assert!(!mem.is_null(), "out of memory");
        // SAFETY: `mem` is `size` bytes, aligned for the struct; the C
        // side only stores `ctx`.
        unsafe { nmc_kring_init(mem, num_slots, sync, ctx) };
        Self { mem, layout }
    }

    /// The `ctx` of the kring that an `nm_sync` callback was called with.
    ///
    /// # Safety
    /// `kring` must be the pointer the C code passed to the callback.
    pub unsafe fn ctx_of(kring: *mut c_void) -> *mut c_void {
        // SAFETY: per the contract, `kring` heads a `struct nmc_kring`.
        unsafe { nmc_kring_ctx(kring) }
    }

    /// Its pointers.
    pub fn get(&self) -> Ptrs {
        let mut p = Ptrs::default();
        // SAFETY: `mem` is an initialised kring; `p` is writable.
        unsafe { nmc_kring_get(self.mem, &mut p) };
        p
    }

    /// Sets its pointers (and the ring header's head, cur, tail). From an
    /// `nm_sync` callback, or while no sync of the ring runs.
    pub fn set(&self, p: &Ptrs) {
        // SAFETY: as in `get`.
        unsafe { nmc_kring_set(self.mem, p) };
    }

    /// The raw kring, for C callbacks' identity checks.
    pub fn as_ptr(&self) -> *mut c_void {
        self.mem
    }

    /// `netmap_pt_guest_txsync`: whether to kick the host.
    pub fn guest_txsync(&mut self, csb: &Csb, flags: i32) -> bool {
        // SAFETY: the CSB entries live as long as `csb`; single caller.
        unsafe { self.guest_sync(true, csb.atok.get(), csb.ktoa.get(), flags) }
    }

    /// `netmap_pt_guest_rxsync`: whether to kick the host.
    pub fn guest_rxsync(&mut self, csb: &Csb, flags: i32) -> bool {
        // SAFETY: as in `guest_txsync`.
        unsafe { self.guest_sync(false, csb.atok.get(), csb.ktoa.get(), flags) }
    }

    /// `netmap_pt_guest_txsync` (`tx`) or `_rxsync` on the CSB entries at
    /// `atok`/`ktoa`: whether to kick the host.
    ///
    /// # Safety
    /// `atok` and `ktoa` must point to live CSB entries for the call; no
    /// other sync of this kring may run meanwhile.
    pub unsafe fn guest_sync(&self, tx: bool, atok: *mut NmCsbAtok, ktoa: *mut NmCsbKtoa, flags: i32) -> bool {
        // SAFETY: per the contract.
        unsafe {
            if tx {
                nmc_guest_txsync(atok, ktoa, self.mem, flags)
            } else {
                nmc_guest_rxsync(atok, ktoa, self.mem, flags)
            }
        }
    }

    /// `ptnet_sync_tail`: the host's pointers into the kring.
    pub fn sync_tail(&mut self, csb: &Csb) {
        // SAFETY: as in `guest_txsync`.
        unsafe { nmc_sync_tail(csb.ktoa.get(), self.mem) }
    }

    /// One pass of netmap's host kloop over this ring
    /// (`netmap_sync_kloop_tx_ring` or `_rx_ring`), on the CSB entries at
    /// `atok`/`ktoa`, interrupting through `irq` (`None`: no irqfd, as in
    /// direct mode).
    ///
    /// # Safety
    /// `atok` and `ktoa` must point to live CSB entries for the call; the
    /// kring's `nm_sync` callback must be sound to call from here.
    pub unsafe fn kloop(
        &self,
        tx: bool,
        atok: *mut NmCsbAtok,
        ktoa: *mut NmCsbKtoa,
        irq: Option<&IrqFd>,
        busy_wait: bool,
        direct: bool,
    ) {
        let irq = irq.map_or(core::ptr::null(), |i| (i as *const IrqFd).cast::<c_void>());
        // SAFETY: per the contract; `irq` outlives the call; the C code
        // serialises through the kring's busy flag.
        unsafe { nmc_kloop_ring(self.mem, i32::from(tx), atok, ktoa, irq, busy_wait, direct) }
    }
}

/// A ring's irqfd as netmap's kloop signals it (`NM_EVENTFD_SIGNAL`):
/// what raising the guest's interrupt means to whoever runs the kloop.
pub struct IrqFd(pub Box<dyn Fn() + Send + Sync>);

/// `NM_EVENTFD_SIGNAL(ctx)` of the C code (see `c/linux_poll.h`).
///
/// # Safety
/// `ctx` is the `IrqFd` passed to [`CKring::kloop`], alive for the call.
#[no_mangle]
pub unsafe extern "C" fn nmc_irq_signal(ctx: *const c_void) {
    // SAFETY: per the contract.
    if let Some(irq) = unsafe { ctx.cast::<IrqFd>().as_ref() } {
        (irq.0)();
    }
}

impl Drop for CKring {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.mem.cast(), self.layout) }
    }
}

/// One ring's CSB entries in plain memory, shared by the C code (through
/// raw pointers) and the Rust core (as [`CsbMem`]).
#[derive(Default)]
pub struct Csb {
    atok: UnsafeCell<NmCsbAtok>,
    ktoa: UnsafeCell<NmCsbKtoa>,
}

impl Csb {
    /// Entries with these fields.
    pub fn with(atok: (u32, u32, u32, u32), ktoa: (u32, u32, u32)) -> Self {
        let c = Self::default();
        for (f, v) in [
            (Field::Head, atok.0),
            (Field::Cur, atok.1),
            (Field::ApplNeedKick, atok.2),
            (Field::SyncFlags, atok.3),
            (Field::Hwcur, ktoa.0),
            (Field::Hwtail, ktoa.1),
            (Field::KernNeedKick, ktoa.2),
        ] {
            c.store(f, v);
        }
        c
    }

    /// Every field, in [`Field`] order (head, cur, appl_need_kick,
    /// sync_flags, hwcur, hwtail, kern_need_kick).
    pub fn fields(&self) -> [u32; 7] {
        [
            Field::Head,
            Field::Cur,
            Field::ApplNeedKick,
            Field::SyncFlags,
            Field::Hwcur,
            Field::Hwtail,
            Field::KernNeedKick,
        ]
        .map(|f| self.load(f))
    }

    fn ptr(&self, f: Field) -> *mut u32 {
        let base = if f.is_atok() { self.atok.get().cast::<u8>() } else { self.ktoa.get().cast::<u8>() };
        // SAFETY: the field's offset lies inside its 64-byte entry.
        unsafe { base.add(f.offset()).cast() }
    }
}

impl CsbMem for Csb {
    fn load(&self, f: Field) -> u32 {
        // SAFETY: an aligned u32 inside the entry; the C side writes it
        // only from this thread.
        unsafe { self.ptr(f).read_volatile() }
    }

    fn store(&self, f: Field, v: u32) {
        // SAFETY: as in `load`.
        unsafe { self.ptr(f).write_volatile(v) }
    }

    fn fence(&self, b: Barrier) {
        use core::sync::atomic::{fence, Ordering};
        fence(match b {
            Barrier::StoreStore => Ordering::Release,
            Barrier::LoadLoad => Ordering::Acquire,
            Barrier::StoreLoad => Ordering::SeqCst,
        });
    }
}
