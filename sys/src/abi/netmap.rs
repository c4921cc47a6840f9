//! netmap memory objects (`net/netmap.h`, API 14): `netmap_if`,
//! `netmap_ring` and `netmap_slot`.

use core::mem::{align_of, offset_of, size_of};
use static_assertions::const_assert_eq;

/// The netmap API version these layouts follow.
pub const NETMAP_API: u32 = 14;
/// Cache alignment of the ring's `sem` field (`NM_CACHE_ALIGN`).
pub const NM_CACHE_ALIGN: usize = 128;
/// Length of an interface name (`IFNAMSIZ`).
pub const IFNAMSIZ: usize = 16;
/// Largest number of slots one packet may span (`NETMAP_MAX_FRAGS`).
pub const NETMAP_MAX_FRAGS: usize = 64;

/// One slot of a netmap ring (`struct netmap_slot`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetmapSlot {
    /// Index of the buffer in the buffer pool.
    pub buf_idx: u32,
    /// Bytes of the packet (fragment) in the buffer.
    pub len: u16,
    /// [`SlotFlags`].
    pub flags: u16,
    /// Indirect buffer pointer or offset; unused by ptnet.
    pub ptr: u64,
}

const_assert_eq!(size_of::<NetmapSlot>(), 16);
const_assert_eq!(offset_of!(NetmapSlot, buf_idx), 0);
const_assert_eq!(offset_of!(NetmapSlot, len), 4);
const_assert_eq!(offset_of!(NetmapSlot, flags), 6);
const_assert_eq!(offset_of!(NetmapSlot, ptr), 8);

bitflags::bitflags! {
    /// Flags of a [`NetmapSlot`] (`NS_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct SlotFlags: u16 {
        /// The buffer index changed: the kernel must reload its mapping.
        const BUF_CHANGED = 0x0001;
        /// Ask for a report when the slot is transmitted.
        const REPORT = 0x0002;
        /// Pass the packet to the other endpoint (host stack or NIC).
        const FORWARD = 0x0004;
        /// Do not learn the source address on a VALE switch.
        const NO_LEARN = 0x0008;
        /// The buffer is in user space (`ptr`); not supported by ptnet.
        const INDIRECT = 0x0010;
        /// More slots of the same packet follow.
        const MOREFRAG = 0x0020;
        /// Transmit-monitor copy.
        const TXMON = 0x0040;
    }
}

/// `struct timeval` as in the 64-bit FreeBSD and Linux ABIs.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeval {
    /// Seconds.
    pub tv_sec: i64,
    /// Microseconds.
    pub tv_usec: i64,
}

/// The ring's opaque, cache-aligned `sem[128]` area.
#[repr(C, align(128))]
#[derive(Debug, Clone, Copy)]
pub struct RingSem(pub [u8; 128]);

/// Header of a netmap ring (`struct netmap_ring`); `num_slots`
/// [`NetmapSlot`]s follow it at [`NetmapRing::SLOTS_OFFSET`].
///
/// The `sem` field is 128-byte aligned in C, so the header is not packed:
/// the slots start at byte 256, not right after `buf_align`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NetmapRing {
    /// Offset of the buffer pool from the start of this ring.
    pub buf_ofs: i64,
    /// Slots in the ring.
    pub num_slots: u32,
    /// Size of each buffer.
    pub nr_buf_size: u32,
    /// Ring index within its direction.
    pub ringid: u16,
    /// 0: TX, 1: RX.
    pub dir: u16,
    /// First slot owned by the application.
    pub head: u32,
    /// Wakeup point.
    pub cur: u32,
    /// First slot owned by the kernel.
    pub tail: u32,
    /// `NR_*` flags.
    pub flags: u32,
    /// Time of the last sync.
    pub ts: Timeval,
    /// Mask of the `ptr` bits used as buffer offset (0 without offsets).
    pub offset_mask: u64,
    /// Alignment required for packets inside buffers.
    pub buf_align: u64,
    /// Opaque room for a lock.
    pub sem: RingSem,
}

impl NetmapRing {
    /// Offset of `slot[0]` from the start of the ring.
    pub const SLOTS_OFFSET: usize = size_of::<NetmapRing>();
    /// Value of [`NetmapRing::dir`] for TX rings.
    pub const DIR_TX: u16 = 0;
    /// Value of [`NetmapRing::dir`] for RX rings.
    pub const DIR_RX: u16 = 1;
}

const_assert_eq!(size_of::<Timeval>(), 16);
const_assert_eq!(offset_of!(NetmapRing, buf_ofs), 0);
const_assert_eq!(offset_of!(NetmapRing, num_slots), 8);
const_assert_eq!(offset_of!(NetmapRing, nr_buf_size), 12);
const_assert_eq!(offset_of!(NetmapRing, ringid), 16);
const_assert_eq!(offset_of!(NetmapRing, dir), 18);
const_assert_eq!(offset_of!(NetmapRing, head), 20);
const_assert_eq!(offset_of!(NetmapRing, cur), 24);
const_assert_eq!(offset_of!(NetmapRing, tail), 28);
const_assert_eq!(offset_of!(NetmapRing, flags), 32);
const_assert_eq!(offset_of!(NetmapRing, ts), 40);
const_assert_eq!(offset_of!(NetmapRing, offset_mask), 56);
const_assert_eq!(offset_of!(NetmapRing, buf_align), 64);
const_assert_eq!(offset_of!(NetmapRing, sem), 128);
const_assert_eq!(size_of::<NetmapRing>(), 256);
const_assert_eq!(align_of::<NetmapRing>(), NM_CACHE_ALIGN);

/// Header of a `netmap_if`; the `ring_ofs[]` array (signed 64-bit offsets
/// of each ring relative to this struct) follows at
/// [`NetmapIf::RING_OFS_OFFSET`], in the order: hardware TX rings, host TX
/// rings, hardware RX rings, host RX rings.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NetmapIf {
    /// Interface name.
    pub ni_name: [u8; IFNAMSIZ],
    /// API version (unused by netmap).
    pub ni_version: u32,
    /// `NI_*` flags.
    pub ni_flags: u32,
    /// Hardware TX rings.
    pub ni_tx_rings: u32,
    /// Hardware RX rings.
    pub ni_rx_rings: u32,
    /// Head of the extra buffers list.
    pub ni_bufs_head: u32,
    /// Host (software) TX rings.
    pub ni_host_tx_rings: u32,
    /// Host (software) RX rings.
    pub ni_host_rx_rings: u32,
    /// Spare.
    pub ni_spare1: [u32; 3],
    /// Start of the flexible `ring_ofs[]` array.
    pub ring_ofs: [i64; 0],
}

impl NetmapIf {
    /// Offset of `ring_ofs[0]`.
    pub const RING_OFS_OFFSET: usize = offset_of!(NetmapIf, ring_ofs);
}

const_assert_eq!(offset_of!(NetmapIf, ni_name), 0);
const_assert_eq!(offset_of!(NetmapIf, ni_version), 16);
const_assert_eq!(offset_of!(NetmapIf, ni_flags), 20);
const_assert_eq!(offset_of!(NetmapIf, ni_tx_rings), 24);
const_assert_eq!(offset_of!(NetmapIf, ni_rx_rings), 28);
const_assert_eq!(offset_of!(NetmapIf, ni_bufs_head), 32);
const_assert_eq!(offset_of!(NetmapIf, ni_host_tx_rings), 36);
const_assert_eq!(offset_of!(NetmapIf, ni_host_rx_rings), 40);
const_assert_eq!(offset_of!(NetmapIf, ni_spare1), 44);
const_assert_eq!(offset_of!(NetmapIf, ring_ofs), 56);
const_assert_eq!(size_of::<NetmapIf>(), 56);
