//! The hypervisor: the PCI functions a VM sees (ptnet and
//! ptnetmap-memdev) and the interface between VM and host.
//!
//! A guest reaches the host only through what a real VM has: register
//! accesses ([`Mmio`], each one a VM exit into a device model), guest
//! physical memory (which the device model reaches through the
//! hypervisor's memory map, [`crate::guest_mem::GuestMemory`]), the memdev
//! memory BAR, and interrupts ([`Interrupts`], the guest's interrupt
//! controller). No other object crosses.

pub mod memdev;
pub mod ptnet;

use ::ptnet::shmem::SharedRegion;
use std::sync::Arc;

/// A device's register BAR; every access is a VM exit.
pub trait Mmio: Send + Sync {
    /// Guest reads a 32-bit register.
    fn read32(&self, off: u32) -> u32;
    /// Guest writes a 32-bit register.
    fn write32(&self, off: u32, val: u32);
}

/// The guest's interrupt controller: MSI-X messages land here.
pub trait Interrupts: Send + Sync {
    /// Delivers MSI-X vector `vector` of the device.
    fn raise(&self, vector: u32);
}

/// A PCI function as the guest enumerates it.
#[derive(Clone)]
pub struct PciFunction {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// BAR 0 (I/O registers).
    pub io: Arc<dyn Mmio>,
    /// BAR 1 mapped into the guest (the memdev's netmap memory).
    pub mem_bar: Option<SharedRegion>,
    /// MSI-X vectors (BAR 2).
    pub msix_vectors: u32,
}
