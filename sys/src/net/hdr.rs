//! Parsing the headers of an Ethernet frame: 802.1Q, IPv4 (with options),
//! IPv6 (with its hop-by-hop, routing and destination-options extension
//! headers), TCP and UDP. Offload decisions are taken from the frame's own
//! headers, never from what the sender claims, so every field that becomes
//! an offset or a length is range-checked here.

use core::fmt;

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// 802.1Q tag length.
pub const VLAN_HLEN: usize = 4;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Bytes of headers the parser may need: Ethernet and a tag, IPv6 with a
/// few extension headers, and a TCP header with options.
pub const MAX_HDR: usize = 256;

/// Network layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP, with its header length and flags byte.
    Tcp {
        /// Header length in bytes (20..=60).
        hdr_len: u8,
        /// Flags (FIN 0x01 ... CWR 0x80).
        flags: u8,
    },
    /// UDP.
    Udp,
    /// Anything else, by protocol number.
    Other(u8),
}

/// TCP flags the segmentation code cares about.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// Where a frame's headers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// The 802.1Q tag control information, if the frame is tagged.
    pub vlan: Option<u16>,
    /// Offset of the IP header.
    pub l3_off: usize,
    /// IP version.
    pub l3: L3,
    /// Offset of the transport header.
    pub l4_off: usize,
    /// Transport protocol.
    pub l4: L4,
    /// Frame bytes covered by the IP datagram (`l3_off` + the IP length),
    /// which excludes Ethernet padding.
    pub frame_end: usize,
}

impl Headers {
    /// End of the transport header (start of the payload); for protocols
    /// other than TCP and UDP, the transport offset.
    pub fn hdr_end(&self) -> usize {
        let l4_len = match self.l4 {
            L4::Tcp { hdr_len, .. } => usize::from(hdr_len),
            L4::Udp => 8,
            L4::Other(_) => 0,
        };
        self.l4_off.saturating_add(l4_len)
    }

    /// Offset of the transport checksum field relative to `l4_off`
    /// (FreeBSD's `csum_data`), for TCP and UDP.
    pub fn csum_offset(&self) -> Option<u16> {
        match self.l4 {
            L4::Tcp { .. } => Some(16),
            L4::Udp => Some(6),
            L4::Other(_) => None,
        }
    }
}

/// Why a frame's headers could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its headers or than its IP length.
    Truncated,
    /// Not IPv4 or IPv6.
    NotIp(u16),
    /// An IP header with a bad version or length.
    BadIpHeader,
    /// An IP fragment (no transport header to offload).
    Fragment,
    /// An IPv6 extension header chain that is too long or unsupported.
    ExtensionHeaders,
    /// A TCP header with a bad data offset.
    BadTcpHeader,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("truncated headers"),
            ParseError::NotIp(t) => write!(f, "EtherType {t:#06x} is not IP"),
            ParseError::BadIpHeader => f.write_str("bad IP header"),
            ParseError::Fragment => f.write_str("IP fragment"),
            ParseError::ExtensionHeaders => f.write_str("unsupported IPv6 extension headers"),
            ParseError::BadTcpHeader => f.write_str("bad TCP header"),
        }
    }
}

fn be16(b: &[u8], at: usize) -> Result<u16, ParseError> {
    match b.get(at..at.wrapping_add(2)) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(ParseError::Truncated),
    }
}

fn byte(b: &[u8], at: usize) -> Result<u8, ParseError> {
    b.get(at).copied().ok_or(ParseError::Truncated)
}

/// Parses the headers in `prefix` (the first bytes of a frame of
/// `frame_len` bytes).
// Every operand below is a small offset (at most a few KiB: 16-bit length
// fields and at most four extension headers of 2 KiB) or a checked length:
// no sum comes near `usize::MAX`.
#[allow(clippy::arithmetic_side_effects)]
pub fn parse(prefix: &[u8], frame_len: usize) -> Result<Headers, ParseError> {
    let mut etype = be16(prefix, 12)?;
    let mut l3_off = ETH_HLEN;
    let mut vlan = None;
    if etype == ETHERTYPE_VLAN {
        vlan = Some(be16(prefix, 14)?);
        etype = be16(prefix, 16)?;
        l3_off = ETH_HLEN + VLAN_HLEN;
    }
    let (l3, l4_off, proto, ip_len) = match etype {
        ETHERTYPE_IPV4 => {
            let vihl = byte(prefix, l3_off)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(ParseError::BadIpHeader);
            }
            let total = usize::from(be16(prefix, l3_off + 2)?);
            if total < ihl {
                return Err(ParseError::BadIpHeader);
            }
            let frag = be16(prefix, l3_off + 6)?;
            if frag & 0x3fff != 0 {
                return Err(ParseError::Fragment);
            }
            (L3::V4, l3_off + ihl, byte(prefix, l3_off + 9)?, total)
        }
        ETHERTYPE_IPV6 => {
            if byte(prefix, l3_off)? >> 4 != 6 {
                return Err(ParseError::BadIpHeader);
            }
            let total = 40 + usize::from(be16(prefix, l3_off + 4)?);
            let mut next = byte(prefix, l3_off + 6)?;
            let mut off = l3_off + 40;
            let mut hops = 0;
            while matches!(next, 0 | 43 | 60) {
                hops += 1;
                if hops > 4 {
                    return Err(ParseError::ExtensionHeaders);
                }
                let len = (usize::from(byte(prefix, off + 1)?) + 1) * 8;
                next = byte(prefix, off)?;
                off += len;
            }
            if next == 44 {
                return Err(ParseError::Fragment);
            }
            if off - l3_off > total {
                return Err(ParseError::BadIpHeader);
            }
            (L3::V6, off, next, total)
        }
        other => return Err(ParseError::NotIp(other)),
    };
    let frame_end = l3_off + ip_len;
    if frame_end > frame_len {
        return Err(ParseError::Truncated);
    }
    let l4 = match proto {
        6 => {
            let doff = usize::from(byte(prefix, l4_off + 12)? >> 4) * 4;
            if doff < 20 || l4_off + doff > frame_end {
                return Err(ParseError::BadTcpHeader);
            }
            L4::Tcp { hdr_len: doff as u8, flags: byte(prefix, l4_off + 13)? }
        }
        17 => {
            if l4_off + 8 > frame_end {
                return Err(ParseError::Truncated);
            }
            L4::Udp
        }
        p => L4::Other(p),
    };
    // The transport header itself must be in the prefix.
    let hdrs = Headers { vlan, l3_off, l3, l4_off, l4, frame_end };
    if hdrs.hdr_end() > prefix.len() {
        return Err(ParseError::Truncated);
    }
    Ok(hdrs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// A TCP/IPv4 frame with `payload` bytes, optionally tagged.
    pub fn tcp4(payload: usize, vlan: bool) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + payload) as u16;
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50, 0, 0, 0, 100, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend((0..payload).map(|i| i as u8));
        let l3 = if vlan { 18 } else { 14 };
        let mut c = crate::net::cksum::Csum::new();
        c.add(&f[l3..l3 + 20]);
        let sum = c.finish().to_be_bytes();
        f[l3 + 10..l3 + 12].copy_from_slice(&sum);
        f
    }

    /// A UDP/IPv6 frame with a hop-by-hop header.
    pub fn udp6(payload: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]);
        let plen = (8 + 8 + payload) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, 0, 64]);
        f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, ((plen - 8) >> 8) as u8, (plen - 8) as u8, 0, 0]);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    #[test]
    fn tagged_tcp_over_ipv4() {
        let f = tcp4(100, true);
        let h = parse(&f, f.len()).unwrap();
        assert_eq!(h.vlan, Some(5));
        assert_eq!((h.l3, h.l3_off, h.l4_off, h.hdr_end(), h.frame_end), (L3::V4, 18, 38, 58, 158));
        assert_eq!(h.l4, L4::Tcp { hdr_len: 20, flags: 0x18 });
    }

    #[test]
    fn udp_over_ipv6_with_extension_header() {
        let f = udp6(10);
        let h = parse(&f, f.len()).unwrap();
        assert_eq!((h.l3, h.l4_off, h.l4), (L3::V6, 62, L4::Udp));
        assert_eq!(h.csum_offset(), Some(6));
    }

    #[test]
    fn broken_headers_are_refused() {
        let f = tcp4(10, false);
        assert_eq!(parse(&f[..30], 30), Err(ParseError::Truncated));
        assert_eq!(parse(&f, f.len() - 1), Err(ParseError::Truncated), "IP length beyond the frame");
        let mut g = f.clone();
        g[14] = 0x44;
        assert_eq!(parse(&g, g.len()), Err(ParseError::BadIpHeader));
        let mut g = f.clone();
        g[20] = 0x20; // MF
        assert_eq!(parse(&g, g.len()), Err(ParseError::Fragment));
        let mut g = f.clone();
        g[46] = 0x20; // data offset 8 bytes
        assert_eq!(parse(&g, g.len()), Err(ParseError::BadTcpHeader));
        let mut g = f;
        g[12] = 0x88;
        assert!(matches!(parse(&g, g.len()), Err(ParseError::NotIp(_))));
    }
}
