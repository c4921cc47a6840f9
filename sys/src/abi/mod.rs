//! The binary interface shared with the hypervisor and host netmap.
//!
//! Every type here is `#[repr(C)]` and laid out exactly as its C
//! counterpart in netmap's `net/netmap.h` and `net/netmap_virt.h` (netmap
//! API 14) or in the virtio specification. The structs describe memory the
//! driver shares with the host; the driver never holds a Rust reference
//! into that memory, it reads and writes single fields at the offsets these
//! types define (see [`crate::shmem`]). Compile-time assertions pin sizes
//! and offsets so a layout change cannot go unnoticed.

pub mod csb;
pub mod netmap;
pub mod regs;
pub mod vnet;

pub use csb::{NmCsbAtok, NmCsbKtoa};
pub use netmap::{NetmapIf, NetmapRing, NetmapSlot, SlotFlags};
pub use vnet::{VirtioNetHdr, VirtioNetHdrMrgRxbuf};
