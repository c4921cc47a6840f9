//! The ptnetmap-memdev device model: registers describing the host netmap
//! memory, and that memory itself mapped as BAR 1.

use super::{Mmio, PciFunction};
use crate::host::mem::HostMemory;
use ptnet::abi::regs::{memdev as reg, PCI_DEVICE_ID_MEMDEV, PCI_VENDOR_ID};
use std::sync::Arc;

/// The memdev exposing one host allocator.
pub struct MemdevDevice {
    mem: Arc<HostMemory>,
}

impl MemdevDevice {
    /// The PCI function of a memdev for `mem`.
    pub fn function(mem: Arc<HostMemory>) -> PciFunction {
        let bar = mem.region();
        PciFunction {
            vendor: PCI_VENDOR_ID,
            device: PCI_DEVICE_ID_MEMDEV,
            io: Arc::new(MemdevDevice { mem }),
            mem_bar: Some(bar),
            msix_vectors: 0,
        }
    }
}

impl Mmio for MemdevDevice {
    fn read32(&self, off: u32) -> u32 {
        let m = &self.mem;
        let size = m.region().len() as u64;
        match off {
            reg::MEMSIZE_LO => size as u32,
            reg::MEMSIZE_HI => (size >> 32) as u32,
            reg::MEMID => m.memid(),
            reg::IF_POOL_OFS => m.if_pool.ofs as u32,
            reg::IF_POOL_OBJNUM => m.if_pool.objnum,
            reg::IF_POOL_OBJSZ => m.if_pool.objsize,
            reg::RING_POOL_OFS => m.ring_pool.ofs as u32,
            reg::RING_POOL_OBJNUM => m.ring_pool.objnum,
            reg::RING_POOL_OBJSZ => m.ring_pool.objsize,
            reg::BUF_POOL_OFS => m.buf_pool.ofs as u32,
            reg::BUF_POOL_OBJNUM => m.buf_pool.objnum,
            reg::BUF_POOL_OBJSZ => m.buf_pool.objsize,
            _ => 0,
        }
    }

    fn write32(&self, _off: u32, _val: u32) {
        // Read-only registers.
    }
}
