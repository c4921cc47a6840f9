//! Driver core for ptnet, the paravirtualized NIC that passes a host netmap
//! port (a VALE port, a pipe, a NIC) straight into a virtual machine.
//!
//! The crate is `no_std` and allocation-free, and contains no code that can
//! panic: it runs inside the FreeBSD kernel (through `ffi/` and the C shim
//! in `kmod/`) and, unchanged, inside the userspace simulator in
//! `host-sim/`. Everything the host provides (registers, the CSB, the
//! netmap memory) is validated before it is used as an index, a length or
//! an offset.
//!
//! - [`abi`]: the C layouts shared with the host.
//! - [`shmem`]: bounds-checked access to shared memory.
//! - [`layout`]: locating and checking the host's netmap memory.
//! - [`kring`]: ring pointers and their invariants.
//! - [`csb`]: the guest side of the CSB synchronisation protocol.
//! - [`device`]: attach, bring-up, per-ring syncs, interrupts, detach.
//! - [`nmcopy`]: netmap mode on stock kernels, copying between the
//!   guest's netmap buffers and the host's.
//! - [`ifnet`], [`tx`], [`rx`]: the network interface: capabilities and
//!   MTU, the transmit and receive datapaths.
//! - [`net`]: headers, checksums, offloads and segmentation for the
//!   network-interface datapath.
//! - [`os`]: the traits through which the core uses its kernel.

#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::arithmetic_side_effects
    )
)]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

pub mod abi;
pub mod counter;
pub mod csb;
pub mod device;
pub mod error;
pub mod ifnet;
pub mod kring;
pub mod layout;
pub mod net;
pub mod nmcopy;
pub mod os;
pub mod rx;
pub mod shmem;
pub mod slots;
pub mod tx;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(test)]
mod tests;

pub use device::{Config, DeviceInfo, Ptnet, QueueCounters, RingWatch, SyncError};
pub use error::AttachError;
pub use kring::{Dir, Kring};
