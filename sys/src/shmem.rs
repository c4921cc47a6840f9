//! Bounds-checked access to memory shared with the host.
//!
//! The host (hypervisor and host netmap) can write this memory at any time,
//! and a buggy or hostile host can put anything in it. So the driver never
//! forms a Rust reference into it: every access goes through a
//! [`SharedRegion`], which checks the offset, length and alignment against
//! the region and then performs a single atomic (for scalar fields) or a
//! byte copy (for packet payload). A bad offset becomes an
//! [`OutOfBounds`] error, never an access outside the region.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

/// An access that would fall outside its region (or be misaligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    /// Offset of the attempted access within the region.
    pub offset: usize,
    /// Length of the attempted access.
    pub len: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "access of {} bytes at offset {:#x} outside shared memory", self.len, self.offset)
    }
}

/// A window of host-shared memory: the memdev BAR mapping, a ring inside
/// it, a packet buffer, or the CSB pages.
///
/// Copies of a region alias the same memory; that is the point of shared
/// memory, and all accesses are atomic or byte copies, so aliasing is sound.
#[derive(Clone, Copy, Debug)]
pub struct SharedRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a SharedRegion only performs atomic accesses and byte copies on
// memory that the creator of the region guaranteed to stay valid; none of
// them rely on thread affinity.
unsafe impl Send for SharedRegion {}
// SAFETY: as above; concurrent use from several threads goes through
// atomics or through byte copies of data owned by the caller's ring slot.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Wraps `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base + len` must be valid for reads and writes for as long as
    /// this region or any copy or sub-region of it is used, and nothing may
    /// hold a Rust reference into that memory while it is.
    pub const unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Self { base, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address, for diagnostics and for handing the mapping to
    /// applications (it is never dereferenced by the caller's Rust code).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The sub-region `offset..offset + len`.
    pub fn sub(&self, offset: usize, len: usize) -> Result<SharedRegion, OutOfBounds> {
        let ptr = self.check(offset, len, 1)?;
        // SAFETY: `check` proved the sub-range lies inside this region,
        // whose validity the creator guaranteed.
        Ok(unsafe { SharedRegion::new(ptr, len) })
    }

    /// Checks `offset..offset + len` and alignment `align`, and returns the
    /// address of the access.
    #[inline]
    fn check(&self, offset: usize, len: usize, align: usize) -> Result<NonNull<u8>, OutOfBounds> {
        let oob = OutOfBounds { offset, len };
        let end = offset.checked_add(len).ok_or(oob)?;
        if end > self.len {
            return Err(oob);
        }
        // `offset <= self.len`, so the addition stays inside the region.
        let addr = self.base.as_ptr().wrapping_add(offset);
        if (addr as usize) & (align.wrapping_sub(1)) != 0 {
            return Err(oob);
        }
        NonNull::new(addr).ok_or(oob)
    }

    /// Loads a 32-bit field.
    #[inline]
    pub fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        let p = self.check(offset, 4, 4)?.cast::<u32>();
        // SAFETY: `p` is in bounds and 4-aligned (checked), the memory is
        // valid (constructor contract) and only accessed atomically.
        Ok(unsafe { AtomicU32::from_ptr(p.as_ptr()) }.load(Ordering::Relaxed))
    }

    /// Stores a 32-bit field.
    #[inline]
    pub fn store_u32(&self, offset: usize, v: u32) -> Result<(), OutOfBounds> {
        let p = self.check(offset, 4, 4)?.cast::<u32>();
        // SAFETY: as in `load_u32`.
        unsafe { AtomicU32::from_ptr(p.as_ptr()) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Loads a 16-bit field.
    #[inline]
    pub fn load_u16(&self, offset: usize) -> Result<u16, OutOfBounds> {
        let p = self.check(offset, 2, 2)?.cast::<u16>();
        // SAFETY: in bounds, 2-aligned, valid, accessed atomically only.
        Ok(unsafe { AtomicU16::from_ptr(p.as_ptr()) }.load(Ordering::Relaxed))
    }

    /// Stores a 16-bit field.
    #[inline]
    pub fn store_u16(&self, offset: usize, v: u16) -> Result<(), OutOfBounds> {
        let p = self.check(offset, 2, 2)?.cast::<u16>();
        // SAFETY: in bounds, 2-aligned, valid, accessed atomically only.
        unsafe { AtomicU16::from_ptr(p.as_ptr()) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Loads a 64-bit field.
    #[inline]
    pub fn load_u64(&self, offset: usize) -> Result<u64, OutOfBounds> {
        let p = self.check(offset, 8, 8)?.cast::<u64>();
        // SAFETY: in bounds, 8-aligned, valid, accessed atomically only.
        Ok(unsafe { AtomicU64::from_ptr(p.as_ptr()) }.load(Ordering::Relaxed))
    }

    /// Stores a 64-bit field.
    #[inline]
    pub fn store_u64(&self, offset: usize, v: u64) -> Result<(), OutOfBounds> {
        let p = self.check(offset, 8, 8)?.cast::<u64>();
        // SAFETY: in bounds, 8-aligned, valid, accessed atomically only.
        unsafe { AtomicU64::from_ptr(p.as_ptr()) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Copies `dst.len()` bytes starting at `offset` out of the region.
    ///
    /// Payload bytes are plain data: whatever the host left there is
    /// copied, and the caller validates it like any other input.
    #[inline]
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let p = self.check(offset, dst.len(), 1)?;
        // SAFETY: the source range is in bounds (checked) and valid; `dst`
        // is a distinct Rust buffer, so the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the region at `offset`.
    #[inline]
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let p = self.check(offset, src.len(), 1)?;
        // SAFETY: the destination range is in bounds and valid; `src` is a
        // distinct Rust buffer.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr(), src.len()) };
        Ok(())
    }

    /// Copies `len` bytes from `src` at `src_off` into this region at
    /// `dst_off` (the two regions may alias; overlapping copies are handled).
    #[inline]
    pub fn copy_from_region(
        &self,
        dst_off: usize,
        src: &SharedRegion,
        src_off: usize,
        len: usize,
    ) -> Result<(), OutOfBounds> {
        let d = self.check(dst_off, len, 1)?;
        let s = src.check(src_off, len, 1)?;
        // SAFETY: both ranges are in bounds of valid regions; `copy`
        // tolerates overlap.
        unsafe { core::ptr::copy(s.as_ptr(), d.as_ptr(), len) };
        Ok(())
    }

    /// Fills `offset..offset + len` with zeroes.
    pub fn zero(&self, offset: usize, len: usize) -> Result<(), OutOfBounds> {
        let p = self.check(offset, len, 1)?;
        // SAFETY: the range is in bounds of a valid region.
        unsafe { core::ptr::write_bytes(p.as_ptr(), 0, len) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_region<R>(len: usize, f: impl FnOnce(SharedRegion) -> R) -> R {
        let mut backing = [0u64; 32];
        assert!(len <= core::mem::size_of_val(&backing));
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` outlives the region and is not referenced while
        // the closure runs.
        f(unsafe { SharedRegion::new(base, len) })
    }

    #[test]
    fn scalar_accesses_round_trip_and_respect_bounds() {
        with_region(64, |r| {
            r.store_u32(60, 0xdead_beef).unwrap();
            assert_eq!(r.load_u32(60), Ok(0xdead_beef));
            assert!(r.load_u32(61).is_err(), "misaligned access must fail");
            assert!(r.load_u32(64).is_err());
            assert!(r.load_u64(usize::MAX - 3).is_err());
            r.store_u16(2, 0xabcd).unwrap();
            assert_eq!(r.load_u16(2), Ok(0xabcd));
            r.store_u64(8, u64::MAX).unwrap();
            assert_eq!(r.load_u64(8), Ok(u64::MAX));
        });
    }

    #[test]
    fn byte_copies_and_subregions_are_bounded() {
        with_region(64, |r| {
            r.write_bytes(10, &[1, 2, 3]).unwrap();
            let mut out = [0u8; 3];
            r.read_bytes(10, &mut out).unwrap();
            assert_eq!(out, [1, 2, 3]);
            assert!(r.write_bytes(62, &[0; 3]).is_err());
            let sub = r.sub(8, 8).unwrap();
            assert_eq!(sub.load_u16(2), Ok(u16::from_ne_bytes([1, 2])));
            assert!(sub.load_u32(8).is_err());
            assert!(r.sub(60, 8).is_err());
            r.copy_from_region(0, &sub, 2, 3).unwrap();
            r.read_bytes(0, &mut out).unwrap();
            assert_eq!(out, [1, 2, 3]);
            r.zero(0, 64).unwrap();
            assert_eq!(r.load_u64(8), Ok(0));
        });
    }
}
