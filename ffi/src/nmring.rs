//! A netmap ring of the guest kernel's own netmap allocator, as the shim
//! hands it to a sync in copy mode (netmap's native mode on a stock
//! kernel): the ring in kernel memory and the allocator's lookup table of
//! buffers.

use core::ffi::c_void;
use core::ptr::NonNull;
use ptnet::kring::Dir;
use ptnet::layout::{RingLayout, FIRST_VALID_BUF};
use ptnet::nmcopy::BufferPool;
use ptnet::shmem::SharedRegion;

/// netmap's view of one ring (`kring->ring`) and of its allocator's
/// buffers (`na->na_lut`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PtnetRsNmRing {
    /// `kring->ring`: the `struct netmap_ring` with its slots.
    pub ring: *mut c_void,
    /// `kring->nkr_num_slots`.
    pub num_slots: u32,
    /// `sizeof(struct lut_entry)`: the lookup table's stride.
    pub lut_entry_size: u32,
    /// `na->na_lut.lut`: each entry starts with the buffer's kernel
    /// address (`vaddr`).
    pub lut: *const c_void,
    /// `na->na_lut.objtotal`: buffers in the table.
    pub objtotal: u32,
    /// `na->na_lut.objsize`: bytes per buffer.
    pub objsize: u32,
}

/// The guest allocator's buffers, found through its lookup table.
pub(crate) struct LutPool {
    lut: SharedRegion,
    stride: usize,
    count: u32,
    size: u32,
}

impl BufferPool for LutPool {
    fn buf(&self, idx: u32) -> Option<SharedRegion> {
        if !(FIRST_VALID_BUF..self.count).contains(&idx) {
            return None;
        }
        let vaddr = self.lut.load_u64((idx as usize).checked_mul(self.stride)?).ok()?;
        let base = NonNull::new(vaddr as usize as *mut u8)?;
        // SAFETY: netmap's allocator maps every buffer of its table, `size`
        // bytes each, for as long as the rings are registered, which spans
        // the sync this pool lives in.
        Some(unsafe { SharedRegion::new(base, self.size as usize) })
    }

    fn buf_size(&self) -> u32 {
        self.size
    }
}

impl PtnetRsNmRing {
    /// The ring and its buffers, or `None` for a descriptor that cannot
    /// be right.
    ///
    /// # Safety
    /// `ring` and `lut` point to netmap's ring of `num_slots` slots and to
    /// its lookup table of `objtotal` entries, valid during the call that
    /// passed the descriptor.
    pub(crate) unsafe fn view(&self, dir: Dir) -> Option<(RingLayout, LutPool)> {
        let stride = self.lut_entry_size as usize;
        if stride < 8 {
            return None;
        }
        let bytes = RingLayout::bytes(self.num_slots)?;
        let lut_bytes = (self.objtotal as usize).checked_mul(stride)?;
        let ring = NonNull::new(self.ring.cast::<u8>())?;
        let lut = NonNull::new(self.lut.cast_mut().cast::<u8>())?;
        // SAFETY: per the contract above.
        let region = unsafe { SharedRegion::new(ring, bytes) };
        // SAFETY: per the contract above.
        let lut = unsafe { SharedRegion::new(lut, lut_bytes) };
        let ring = RingLayout { dir, ofs: 0, region, num_slots: self.num_slots };
        Some((ring, LutPool { lut, stride, count: self.objtotal, size: self.objsize }))
    }
}
