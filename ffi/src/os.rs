//! The core's OS traits over the shim: registers through `bus_read_4` /
//! `bus_write_4`, DMA memory through `contigmalloc`, logging through
//! `device_printf`.

use crate::ops::{ops, PtnetRsMemdev};
use core::ffi::{c_int, c_void};
use core::fmt::{self, Write};
use core::ptr::NonNull;
use ptnet::os::{DmaMemory, Kernel, LogLevel, Registers};
use ptnet::shmem::SharedRegion;

/// The shim's per-device handle (its softc), as given to attach.
#[derive(Clone, Copy)]
pub(crate) struct ShimDev(pub *mut c_void);

// SAFETY: the handle is an opaque token passed back to the shim, whose
// functions may be called from any kernel thread.
unsafe impl Send for ShimDev {}
// SAFETY: as above.
unsafe impl Sync for ShimDev {}

/// Kernel services for one device.
pub(crate) struct ShimKernel {
    pub dev: ShimDev,
}

impl Kernel for ShimKernel {
    fn alloc_dma(&self, size: usize, align: usize) -> Option<DmaMemory> {
        let o = ops()?;
        let mut paddr = 0u64;
        // SAFETY: `paddr` is a valid out-pointer; the shim returns NULL or
        // `size` zeroed bytes mapped until `dma_free`.
        let va = unsafe { (o.dma_alloc)(self.dev.0, size, align, &mut paddr) };
        let base = NonNull::new(va.cast::<u8>())?;
        // SAFETY: the memory stays valid until `free_dma`, which the core
        // calls only once it no longer uses the region.
        let region = unsafe { SharedRegion::new(base, size) };
        Some(DmaMemory { region, paddr })
    }

    fn free_dma(&self, mem: DmaMemory) {
        if let Some(o) = ops() {
            // SAFETY: the region came from `alloc_dma` with this size.
            unsafe { (o.dma_free)(self.dev.0, mem.region.as_ptr().cast(), mem.region.len()) };
        }
    }

    fn log(&self, level: LogLevel, args: fmt::Arguments<'_>) {
        log(self.dev.0, level, args);
    }
}

/// Prints a line through the shim, cut at 200 bytes.
pub(crate) fn log(dev: *mut c_void, level: LogLevel, args: fmt::Arguments<'_>) {
    let Some(o) = ops() else { return };
    let mut line = Line::default();
    let _ = line.write_fmt(args);
    let level: c_int = match level {
        LogLevel::Error => 0,
        LogLevel::Warning => 1,
        LogLevel::Info => 2,
    };
    let text = line.as_bytes();
    // SAFETY: `text` is valid for `len` bytes during the call; `dev` is the
    // shim's own handle or NULL.
    unsafe { (o.log)(dev, level, text.as_ptr(), text.len()) };
}

/// A fixed buffer for one log line; what does not fit is dropped.
pub(crate) struct Line {
    buf: [u8; 200],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self { buf: [0; 200], len: 0 }
    }
}

impl Line {
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().saturating_sub(self.len);
        let n = s.len().min(room);
        let end = self.len.saturating_add(n);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..end), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.len = end;
        }
        Ok(())
    }
}

/// The ptnet I/O BAR.
pub(crate) struct Bar0(pub ShimDev);

impl Registers for Bar0 {
    fn read32(&self, off: u32) -> u32 {
        // SAFETY: the shim's accessor takes any offset its BAR decodes; a
        // read of the device's register window has no memory effects here.
        ops().map_or(u32::MAX, |o| unsafe { (o.bar_read4)(self.0 .0, off) })
    }

    fn write32(&self, off: u32, val: u32) {
        if let Some(o) = ops() {
            // SAFETY: as in `read32`.
            unsafe { (o.bar_write4)(self.0 .0, off, val) };
        }
    }
}

/// A memdev's register BAR.
pub(crate) struct MemdevRegs(pub PtnetRsMemdev);

impl Registers for MemdevRegs {
    fn read32(&self, off: u32) -> u32 {
        // SAFETY: `handle` is what the shim's `memdev_find` returned.
        ops().map_or(u32::MAX, |o| unsafe { (o.memdev_read4)(self.0.handle, off) })
    }

    fn write32(&self, _off: u32, _val: u32) {
        // The memdev's registers are read-only.
    }
}
