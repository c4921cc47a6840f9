//! The virtio-net header prepended to each packet when the host grants
//! [`Features::VNET_HDR`](super::regs::Features::VNET_HDR). All fields are
//! little endian.

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

/// `struct virtio_net_hdr` (10 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers to replicate in each segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, relative to `csum_start`.
    pub csum_offset: u16,
}

/// `struct virtio_net_hdr_mrg_rxbuf` (12 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdrMrgRxbuf {
    /// The plain header.
    pub hdr: VirtioNetHdr,
    /// Number of merged receive buffers.
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// The header as the 12 little-endian bytes of the mergeable-buffers
    /// form (`num_buffers` 0); the 10-byte form is their prefix.
    pub fn to_le_bytes(&self) -> [u8; 12] {
        let [a, b] = self.hdr_len.to_le_bytes();
        let [c, d] = self.gso_size.to_le_bytes();
        let [e, f] = self.csum_start.to_le_bytes();
        let [g, h] = self.csum_offset.to_le_bytes();
        [self.flags, self.gso_type, a, b, c, d, e, f, g, h, 0, 0]
    }

    /// Decodes the first 10 of `b` (little endian); `num_buffers` is
    /// ignored (ptnet never merges buffers).
    pub fn from_le_bytes(b: &[u8; 12]) -> Self {
        let [flags, gso_type, h0, h1, g0, g1, s0, s1, o0, o1, _, _] = *b;
        Self {
            flags,
            gso_type,
            hdr_len: u16::from_le_bytes([h0, h1]),
            gso_size: u16::from_le_bytes([g0, g1]),
            csum_start: u16::from_le_bytes([s0, s1]),
            csum_offset: u16::from_le_bytes([o0, o1]),
        }
    }
}

/// `flags`: the checksum at `csum_start + csum_offset` must be completed.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was validated by the sender.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type`: not a GSO packet.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload.
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the TCP stream uses ECN (CWR set).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

const_assert_eq!(size_of::<VirtioNetHdr>(), 10);
const_assert_eq!(offset_of!(VirtioNetHdr, flags), 0);
const_assert_eq!(offset_of!(VirtioNetHdr, gso_type), 1);
const_assert_eq!(offset_of!(VirtioNetHdr, hdr_len), 2);
const_assert_eq!(offset_of!(VirtioNetHdr, gso_size), 4);
const_assert_eq!(offset_of!(VirtioNetHdr, csum_start), 6);
const_assert_eq!(offset_of!(VirtioNetHdr, csum_offset), 8);
const_assert_eq!(size_of::<VirtioNetHdrMrgRxbuf>(), 12);
const_assert_eq!(offset_of!(VirtioNetHdrMrgRxbuf, num_buffers), 10);
