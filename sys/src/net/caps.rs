//! Interface capabilities (`ifconfig` options), the checksum flags the
//! stack and the driver exchange on packets, and the MTU range, with the
//! rules that tie them together. Values are FreeBSD's (`net/if.h`,
//! `sys/mbuf.h`), checked against its headers in the tests.

use core::fmt;

bitflags::bitflags! {
    /// `IFCAP_*` capabilities ptnet may offer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct IfCap: u32 {
        /// Receive checksum offload (IPv4).
        const RXCSUM = 1 << 0;
        /// Transmit checksum offload (IPv4).
        const TXCSUM = 1 << 1;
        /// 802.1Q frames of a full 1500-byte MTU.
        const VLAN_MTU = 1 << 3;
        /// The driver inserts the 802.1Q tag.
        const VLAN_HWTAGGING = 1 << 4;
        /// MTU above 1500.
        const JUMBO_MTU = 1 << 5;
        /// Checksum offload on tagged frames.
        const VLAN_HWCSUM = 1 << 7;
        /// TCP segmentation offload (IPv4).
        const TSO4 = 1 << 8;
        /// TCP segmentation offload (IPv6).
        const TSO6 = 1 << 9;
        /// Large receive offload.
        const LRO = 1 << 10;
        /// Segmentation offload on tagged frames.
        const VLAN_HWTSO = 1 << 18;
        /// Receive checksum offload (IPv6).
        const RXCSUM_IPV6 = 1 << 21;
        /// Transmit checksum offload (IPv6).
        const TXCSUM_IPV6 = 1 << 22;
    }
}

bitflags::bitflags! {
    /// `CSUM_*` flags of a packet header (`m_pkthdr.csum_flags`): offload
    /// requests on transmit, checksum state on receive.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct CsumFlags: u32 {
        /// IPv4 header checksum (never offered: virtio has no such offload).
        const IP = 0x1;
        /// UDP over IPv4.
        const IP_UDP = 0x2;
        /// TCP over IPv4.
        const IP_TCP = 0x4;
        /// TSO over IPv4.
        const IP_TSO = 0x10;
        /// UDP over IPv6.
        const IP6_UDP = 0x200;
        /// TCP over IPv6.
        const IP6_TCP = 0x400;
        /// TSO over IPv6.
        const IP6_TSO = 0x1000;
        /// Receive: layer 3 checksum was checked (`CSUM_IP_CHECKED`).
        const L3_CALC = 0x0100_0000;
        /// Receive: layer 3 checksum is correct (`CSUM_IP_VALID`).
        const L3_VALID = 0x0200_0000;
        /// Receive: `csum_data` holds the pseudo-header sum (`CSUM_PSEUDO_HDR`).
        const L4_CALC = 0x0400_0000;
        /// Receive: layer 4 checksum is correct (`CSUM_DATA_VALID`).
        const L4_VALID = 0x0800_0000;
        /// Receive: the packet merges several segments (LRO).
        const COALESCED = 0x4000_0000;
    }
}

impl CsumFlags {
    /// Checksum requests for IPv4 transports.
    pub const V4_L4: CsumFlags = CsumFlags::IP_TCP.union(CsumFlags::IP_UDP);
    /// Checksum requests for IPv6 transports.
    pub const V6_L4: CsumFlags = CsumFlags::IP6_TCP.union(CsumFlags::IP6_UDP);
    /// Segmentation requests.
    pub const TSO: CsumFlags = CsumFlags::IP_TSO.union(CsumFlags::IP6_TSO);
    /// Every transmit offload request.
    pub const TX_OFFLOADS: CsumFlags = Self::V4_L4.union(Self::V6_L4).union(Self::TSO);
}

/// What the device can offer: everything that needs the virtio-net header
/// only when the host granted it.
pub fn supported(vnet_hdr: bool) -> IfCap {
    let base = IfCap::VLAN_MTU | IfCap::JUMBO_MTU;
    if vnet_hdr {
        base | IfCap::all()
    } else {
        base
    }
}

/// The transmit offloads the stack may request (`if_hwassist`) under the
/// enabled capabilities.
pub fn hwassist(enabled: IfCap) -> CsumFlags {
    let mut a = CsumFlags::empty();
    if enabled.contains(IfCap::TXCSUM) {
        a |= CsumFlags::V4_L4;
    }
    if enabled.contains(IfCap::TXCSUM_IPV6) {
        a |= CsumFlags::V6_L4;
    }
    if enabled.contains(IfCap::TSO4) {
        a |= CsumFlags::IP_TSO;
    }
    if enabled.contains(IfCap::TSO6) {
        a |= CsumFlags::IP6_TSO;
    }
    a
}

/// A capability change that cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapError {
    /// The device cannot do these (e.g. no virtio-net header).
    Unsupported(IfCap),
    /// TSO needs the matching transmit checksum offload enabled first.
    TsoNeedsTxcsum(IfCap),
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::Unsupported(c) => write!(f, "capabilities {:#x} not supported", c.bits()),
            CapError::TsoNeedsTxcsum(c) => {
                write!(f, "enable txcsum first (needed by {:#x})", c.bits())
            }
        }
    }
}

/// Applies a capability request (`SIOCSIFCAP`): turning a checksum offload
/// off also turns off the segmentation offload that depends on it (as
/// FreeBSD drivers do, "tso4 disabled due to -txcsum"); turning TSO on
/// without its checksum offload is refused.
pub fn apply(current: IfCap, requested: IfCap, supported: IfCap) -> Result<IfCap, CapError> {
    let extra = requested.difference(supported);
    if !extra.is_empty() {
        return Err(CapError::Unsupported(extra));
    }
    let mut next = requested;
    for (tso, csum) in [(IfCap::TSO4, IfCap::TXCSUM), (IfCap::TSO6, IfCap::TXCSUM_IPV6)] {
        if next.contains(tso) && !next.contains(csum) {
            if !current.intersects(tso | csum) {
                return Err(CapError::TsoNeedsTxcsum(tso));
            }
            next.remove(tso);
        }
    }
    Ok(next)
}

/// Smallest MTU (the IPv4 minimum datagram).
pub const MIN_MTU: u32 = 68;
/// The standard Ethernet MTU, the limit without `JUMBO_MTU`.
pub const ETHER_MTU: u32 = 1500;
/// Ethernet plus 802.1Q header bytes outside the MTU.
const FRAME_OVERHEAD: u32 = 18;
/// The largest MTU an IP datagram allows, whatever the buffers.
pub const MAX_IP_MTU: u32 = 65535;

/// Largest MTU: an IP datagram of 64 KiB, or what `max_frags` buffers of
/// `buf_size` bytes can carry after the virtio-net header.
pub fn max_mtu(buf_size: u32, max_frags: u32, vnet_hdr_len: u32) -> u32 {
    let frame = buf_size.saturating_mul(max_frags).saturating_sub(vnet_hdr_len);
    frame.saturating_sub(FRAME_OVERHEAD).min(MAX_IP_MTU)
}

/// Whether `mtu` is acceptable with capabilities `enabled`.
pub fn mtu_ok(mtu: u32, enabled: IfCap, max: u32) -> bool {
    let top = if enabled.contains(IfCap::JUMBO_MTU) { max } else { ETHER_MTU.min(max) };
    (MIN_MTU..=top).contains(&mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_header_only_mtu_capabilities_remain() {
        assert_eq!(supported(false), IfCap::VLAN_MTU | IfCap::JUMBO_MTU);
        assert!(supported(true).contains(IfCap::TSO4 | IfCap::LRO | IfCap::RXCSUM_IPV6));
        let all = supported(true);
        assert_eq!(hwassist(all), CsumFlags::TX_OFFLOADS);
        assert_eq!(apply(all, all, supported(false)), Err(CapError::Unsupported(all - supported(false))));
    }

    #[test]
    fn tso_follows_its_checksum_offload() {
        let all = supported(true);
        // -txcsum drops tso4 with it, leaves tso6.
        let next = apply(all, all - IfCap::TXCSUM, all).unwrap();
        assert!(!next.contains(IfCap::TSO4) && next.contains(IfCap::TSO6));
        assert!(!hwassist(next).intersects(CsumFlags::IP_TSO | CsumFlags::IP_TCP));
        // +tso4 while txcsum is off is refused...
        assert_eq!(apply(next, next | IfCap::TSO4, all), Err(CapError::TsoNeedsTxcsum(IfCap::TSO4)));
        // ...and works together with +txcsum.
        assert_eq!(apply(next, next | IfCap::TSO4 | IfCap::TXCSUM, all), Ok(all));
    }

    #[test]
    fn mtu_limits() {
        let max = max_mtu(2048, 64, 10);
        assert_eq!(max, 65535);
        assert_eq!(max_mtu(2048, 1, 10), 2048 - 10 - 18);
        assert!(mtu_ok(1500, IfCap::empty(), max));
        assert!(!mtu_ok(9000, IfCap::empty(), max));
        assert!(mtu_ok(9000, IfCap::JUMBO_MTU, max));
        assert!(!mtu_ok(67, IfCap::JUMBO_MTU, max));
        assert!(!mtu_ok(65536, IfCap::JUMBO_MTU, max));
    }
}
