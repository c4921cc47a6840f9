//! Guest physical memory, shared by the simulated guest kernel (which
//! allocates DMA-able pages from it) and the hypervisor (which translates
//! the guest-physical addresses the guest hands to the device).
//!
//! This is the only way host code reaches guest memory, exactly as a
//! hypervisor maps a guest-physical address through its memory map; an
//! address outside guest RAM is refused.

use ptnet::shmem::SharedRegion;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Mutex;

/// Page size of the simulated machine.
pub const PAGE: usize = 4096;

/// Guest RAM starts at 4 GiB, so physical addresses use the high half of
/// 64-bit address registers (as the CSB BAH/BAL pairs must handle).
pub const GUEST_RAM_BASE: u64 = 0x1_0000_0000;

/// Guest RAM and its page allocator.
pub struct GuestMemory {
    base: NonNull<u8>,
    layout: Layout,
    pages: Mutex<PageMap>,
}

struct PageMap {
    used: Vec<bool>,
    /// Outstanding allocations (the ledger the lifecycle tests check).
    live_allocs: usize,
    live_pages: usize,
}

// SAFETY: the backing allocation is only accessed through SharedRegion
// (atomics and byte copies); the page map is behind a Mutex.
unsafe impl Send for GuestMemory {}
// SAFETY: as above.
unsafe impl Sync for GuestMemory {}

/// A block of guest pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPages {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: usize,
}

impl GuestMemory {
    /// Guest RAM of `bytes` (rounded up to pages).
    pub fn new(bytes: usize) -> Self {
        let npages = bytes.div_ceil(PAGE).max(1);
        let layout = Layout::from_size_align(npages * PAGE, PAGE).expect("guest RAM layout");
        // SAFETY: the layout has non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("guest RAM allocation");
        Self { base, layout, pages: Mutex::new(PageMap { used: vec![false; npages], live_allocs: 0, live_pages: 0 }) }
    }

    /// Allocates zeroed, physically contiguous pages aligned to `align`
    /// (`contigmalloc`). `None` when RAM is exhausted.
    pub fn alloc(&self, len: usize, align: usize) -> Option<GuestPages> {
        let n = len.div_ceil(PAGE).max(1);
        let step = (align / PAGE).max(1);
        let mut map = self.pages.lock().unwrap();
        let total = map.used.len();
        let start = (0..total).step_by(step).find(|&s| s + n <= total && map.used[s..s + n].iter().all(|u| !u))?;
        map.used[start..start + n].iter_mut().for_each(|u| *u = true);
        map.live_allocs += 1;
        map.live_pages += n;
        drop(map);
        let pages = GuestPages { gpa: GUEST_RAM_BASE + (start * PAGE) as u64, len: n * PAGE };
        self.region(pages.gpa, pages.len).expect("fresh pages in RAM").zero(0, pages.len).ok()?;
        Some(pages)
    }

    /// Frees pages returned by [`GuestMemory::alloc`].
    pub fn free(&self, pages: GuestPages) {
        let start = ((pages.gpa - GUEST_RAM_BASE) as usize) / PAGE;
        let n = pages.len / PAGE;
        let mut map = self.pages.lock().unwrap();
        assert!(map.used[start..start + n].iter().all(|u| *u), "double free of guest pages");
        map.used[start..start + n].iter_mut().for_each(|u| *u = false);
        map.live_allocs -= 1;
        map.live_pages -= n;
    }

    /// `(allocations, pages)` currently outstanding.
    pub fn outstanding(&self) -> (usize, usize) {
        let map = self.pages.lock().unwrap();
        (map.live_allocs, map.live_pages)
    }

    /// Translates `gpa..gpa + len` to host memory, as the hypervisor's
    /// memory map does; `None` outside guest RAM.
    pub fn region(&self, gpa: u64, len: usize) -> Option<SharedRegion> {
        let off = usize::try_from(gpa.checked_sub(GUEST_RAM_BASE)?).ok()?;
        // SAFETY: the allocation lives as long as self; regions handed out
        // are only used while the VM (which owns this memory) exists, and
        // all accesses are atomics or byte copies.
        let all = unsafe { SharedRegion::new(self.base, self.layout.size()) };
        all.sub(off, len).ok()
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}
