//! What the driver core needs from the operating system around it.
//!
//! The FreeBSD kernel (through the C shim) and the simulator's guest kernel
//! both implement these traits; nothing else about the OS leaks into the
//! core.

use crate::shmem::SharedRegion;
use core::fmt;

/// A device's 32-bit register window (an I/O BAR). On a VM every access is
/// a VM exit handled by the hypervisor's device model.
pub trait Registers {
    /// Reads the register at byte offset `off`.
    fn read32(&self, off: u32) -> u32;
    /// Writes `val` to the register at byte offset `off`.
    fn write32(&self, off: u32, val: u32);
}

/// Physically contiguous, zeroed memory the device may access by physical
/// address (FreeBSD's `contigmalloc` plus `vtophys`).
#[derive(Debug, Clone, Copy)]
pub struct DmaMemory {
    /// The kernel mapping of the memory.
    pub region: SharedRegion,
    /// Physical (guest-physical) address of the first byte.
    pub paddr: u64,
}

/// Severity of a kernel log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is off but the device keeps working.
    Warning,
    /// Normal lifecycle events (attach, detach).
    Info,
}

/// Kernel services used by the driver.
pub trait Kernel {
    /// Allocates `size` bytes of zeroed, physically contiguous memory
    /// aligned to `align`; `None` when the allocation fails.
    fn alloc_dma(&self, size: usize, align: usize) -> Option<DmaMemory>;
    /// Releases memory returned by [`Kernel::alloc_dma`].
    fn free_dma(&self, mem: DmaMemory);
    /// Prints a line on the console (`device_printf`).
    fn log(&self, level: LogLevel, args: fmt::Arguments<'_>);
}
