//! The Communication Status Block: one 64-byte entry per ring in each
//! direction (`struct nm_csb_atok` and `struct nm_csb_ktoa`).

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

/// Application (guest) to kernel (host) entry of one ring.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmCsbAtok {
    /// Head of the guest's ring: slots before it are handed to the host.
    pub head: u32,
    /// Cur of the guest's ring: where the guest wants to be woken.
    pub cur: u32,
    /// The guest wants an interrupt when the host makes progress.
    pub appl_need_kick: u32,
    /// Flags of the guest's sync (e.g. force reclaim).
    pub sync_flags: u32,
    /// Padding to a cache line.
    pub pad: [u32; 12],
}

/// Kernel (host) to application (guest) entry of one ring.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmCsbKtoa {
    /// First slot the host has not processed yet.
    pub hwcur: u32,
    /// First slot the host still owns.
    pub hwtail: u32,
    /// The host wants a kick when the guest publishes work.
    pub kern_need_kick: u32,
    /// Padding to a cache line.
    pub pad: [u32; 13],
}

/// Size of one CSB entry (a cache line).
pub const CSB_ENTRY_SIZE: usize = 64;

const_assert_eq!(size_of::<NmCsbAtok>(), CSB_ENTRY_SIZE);
const_assert_eq!(size_of::<NmCsbKtoa>(), CSB_ENTRY_SIZE);
const_assert_eq!(offset_of!(NmCsbAtok, head), 0);
const_assert_eq!(offset_of!(NmCsbAtok, cur), 4);
const_assert_eq!(offset_of!(NmCsbAtok, appl_need_kick), 8);
const_assert_eq!(offset_of!(NmCsbAtok, sync_flags), 12);
const_assert_eq!(offset_of!(NmCsbAtok, pad), 16);
const_assert_eq!(offset_of!(NmCsbKtoa, hwcur), 0);
const_assert_eq!(offset_of!(NmCsbKtoa, hwtail), 4);
const_assert_eq!(offset_of!(NmCsbKtoa, kern_need_kick), 8);
const_assert_eq!(offset_of!(NmCsbKtoa, pad), 12);
