//! PCI identifiers and the register files of the ptnet NIC and of the
//! ptnetmap-memdev device (`net/netmap_virt.h`).
//!
//! All registers are 32 bits wide and addressed by byte offset in BAR 0.

/// PCI vendor of both functions (the QEMU virtual devices vendor).
pub const PCI_VENDOR_ID: u16 = 0x1b36;
/// PCI device id of ptnetmap-memdev, which exposes the host netmap memory.
pub const PCI_DEVICE_ID_MEMDEV: u16 = 0x000c;
/// PCI device id of the ptnet network interface.
pub const PCI_DEVICE_ID_PTNET: u16 = 0x000d;

/// BAR holding the I/O registers (both functions).
pub const IO_PCI_BAR: u8 = 0;
/// BAR of the memdev that maps the host netmap memory.
pub const MEM_PCI_BAR: u8 = 1;
/// BAR holding the MSI-X table of the ptnet function.
pub const MSIX_PCI_BAR: u8 = 2;

/// ptnet register offsets.
pub mod ptnet {
    /// Features: the guest writes what it wants, reads back what it got.
    pub const PTFEAT: u32 = 0;
    /// Control: the guest writes a command, reads back 0 or an errno.
    pub const PTCTL: u32 = 4;
    /// Low 32 bits of the MAC address (bytes 2..6, big endian).
    pub const MAC_LO: u32 = 8;
    /// High 16 bits of the MAC address (bytes 0..2).
    pub const MAC_HI: u32 = 12;
    /// Deprecated single-CSB address, high half.
    pub const CSBBAH: u32 = 16;
    /// Deprecated single-CSB address, low half.
    pub const CSBBAL: u32 = 20;
    /// Offset of the `netmap_if` inside the memdev region.
    pub const NIFP_OFS: u32 = 24;
    /// Number of hardware TX rings of the passed-through port.
    pub const NUM_TX_RINGS: u32 = 28;
    /// Number of hardware RX rings.
    pub const NUM_RX_RINGS: u32 = 32;
    /// Slots per TX ring.
    pub const NUM_TX_SLOTS: u32 = 36;
    /// Slots per RX ring.
    pub const NUM_RX_SLOTS: u32 = 40;
    /// virtio-net header length: written with the wanted length, read back
    /// with the length the host port uses.
    pub const VNET_HDR_LEN: u32 = 44;
    /// Identifier of the host memory allocator (must match the memdev's).
    pub const HOSTMEMID: u32 = 48;
    /// Guest-to-host CSB (`nm_csb_atok` array) physical address, high half.
    pub const CSB_GH_BAH: u32 = 52;
    /// Guest-to-host CSB physical address, low half (written last).
    pub const CSB_GH_BAL: u32 = 56;
    /// Host-to-guest CSB (`nm_csb_ktoa` array) physical address, high half.
    pub const CSB_HG_BAH: u32 = 60;
    /// Host-to-guest CSB physical address, low half (written last).
    pub const CSB_HG_BAL: u32 = 64;
    /// First offset past the configuration registers.
    pub const END: u32 = 68;
    /// First kick register; ring `i` (TX rings first) kicks at
    /// `KICK_BASE + 4 * i`.
    pub const KICK_BASE: u32 = 128;
}

/// ptnetmap-memdev register offsets.
pub mod memdev {
    /// Size of the netmap memory region, low half.
    pub const MEMSIZE_LO: u32 = 0;
    /// Size of the netmap memory region, high half.
    pub const MEMSIZE_HI: u32 = 4;
    /// Identifier of the host memory allocator.
    pub const MEMID: u32 = 8;
    /// Offset of the `netmap_if` pool.
    pub const IF_POOL_OFS: u32 = 64;
    /// Number of objects in the `netmap_if` pool.
    pub const IF_POOL_OBJNUM: u32 = 68;
    /// Size of one `netmap_if` pool object.
    pub const IF_POOL_OBJSZ: u32 = 72;
    /// Offset of the ring pool.
    pub const RING_POOL_OFS: u32 = 76;
    /// Number of objects in the ring pool.
    pub const RING_POOL_OBJNUM: u32 = 80;
    /// Size of one ring pool object.
    pub const RING_POOL_OBJSZ: u32 = 84;
    /// Offset of the buffer pool.
    pub const BUF_POOL_OFS: u32 = 88;
    /// Number of buffers.
    pub const BUF_POOL_OBJNUM: u32 = 92;
    /// Size of one buffer (`nr_buf_size`).
    pub const BUF_POOL_OBJSZ: u32 = 96;
    /// First offset past the registers.
    pub const END: u32 = 100;
}

bitflags::bitflags! {
    /// ptnetmap features negotiated through `PTFEAT`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Features: u32 {
        /// Packets carry a virtio-net header (checksum and TSO offloads).
        const VNET_HDR = 1;
    }
}

/// Commands written to `PTCTL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PtctlCmd {
    /// Start the host sync kloops (the passed-through port goes live).
    Create = 1,
    /// Stop the host sync kloops.
    Delete = 2,
}

impl PtctlCmd {
    /// Decode a value written to `PTCTL`.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Create),
            2 => Some(Self::Delete),
            _ => None,
        }
    }
}

/// Offset of ring `ring`'s kick register (ring numbering: TX rings first).
pub fn kick_reg(ring: u32) -> Option<u32> {
    ring.checked_mul(4)?.checked_add(ptnet::KICK_BASE)
}
