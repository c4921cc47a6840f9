//! The virtio-net header in both directions: what the driver writes for a
//! packet the stack asked to offload (checksum, TSO), and what a header the
//! host wrote means for the stack (checksum state, large receive), with
//! every field checked against the frame it describes.

use super::caps::{CsumFlags, IfCap};
use super::frame::FrameInfo;
use super::hdr::{tcp_flags, Headers, L3, L4};
use crate::abi::vnet::*;
use core::fmt;

/// What the stack asks of the driver for one packet (`m_pkthdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxRequest {
    /// `csum_flags`: the offloads requested.
    pub csum_flags: CsumFlags,
    /// `tso_segsz`: the MSS for TSO.
    pub tso_segsz: u16,
    /// `ether_vtag` when `M_VLANTAG` is set: a tag for the driver to insert.
    pub vlan: Option<u16>,
    /// `flowid`, when the stack hashed the flow.
    pub flowid: Option<u32>,
}

impl TxRequest {
    /// True when the packet needs the virtio-net header to carry offloads.
    pub fn offloads(&self) -> bool {
        self.csum_flags.intersects(CsumFlags::TX_OFFLOADS)
    }
}

/// Why a transmit offload request was refused (the packet is dropped and
/// counted: sending it without the offload would put a wrong checksum or
/// an oversized frame on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxRefusal {
    /// The headers do not parse.
    Headers(super::hdr::ParseError),
    /// The request does not match the packet (e.g. TCP offload on UDP, or
    /// IPv6 flags on IPv4).
    ProtoMismatch,
    /// TSO on something that is not TCP.
    TsoNotTcp,
    /// TSO without the checksum offload it implies.
    TsoWithoutCsum,
    /// TSO with a zero segment size.
    TsoBadMss,
    /// An offload the interface does not have enabled.
    NotEnabled,
}

impl fmt::Display for TxRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxRefusal::Headers(e) => write!(f, "{e}"),
            TxRefusal::ProtoMismatch => f.write_str("offload flags do not match the packet"),
            TxRefusal::TsoNotTcp => f.write_str("TSO on a non-TCP packet"),
            TxRefusal::TsoWithoutCsum => f.write_str("TSO without checksum offload"),
            TxRefusal::TsoBadMss => f.write_str("TSO with a zero MSS"),
            TxRefusal::NotEnabled => f.write_str("offload not enabled"),
        }
    }
}

/// Builds the header for a frame with headers `h` (as it will be sent,
/// tag included), under the enabled transmit offloads `assist`.
pub fn tx_header(h: &Headers, req: &TxRequest, assist: CsumFlags) -> Result<VirtioNetHdr, TxRefusal> {
    let want = req.csum_flags & CsumFlags::TX_OFFLOADS;
    if !assist.contains(want) {
        return Err(TxRefusal::NotEnabled);
    }
    let mut hdr = VirtioNetHdr::default();
    let csum = want & (CsumFlags::V4_L4 | CsumFlags::V6_L4);
    if !csum.is_empty() {
        let ok = match (h.l3, h.l4) {
            (L3::V4, L4::Tcp { .. }) => csum == CsumFlags::IP_TCP,
            (L3::V4, L4::Udp) => csum == CsumFlags::IP_UDP,
            (L3::V6, L4::Tcp { .. }) => csum == CsumFlags::IP6_TCP,
            (L3::V6, L4::Udp) => csum == CsumFlags::IP6_UDP,
            _ => false,
        };
        let offset = h.csum_offset().ok_or(TxRefusal::ProtoMismatch)?;
        let start = u16::try_from(h.l4_off).map_err(|_| TxRefusal::ProtoMismatch)?;
        if !ok {
            return Err(TxRefusal::ProtoMismatch);
        }
        hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        hdr.csum_start = start.to_le();
        hdr.csum_offset = offset.to_le();
    }
    let tso = want & CsumFlags::TSO;
    if !tso.is_empty() {
        let L4::Tcp { flags, .. } = h.l4 else {
            return Err(TxRefusal::TsoNotTcp);
        };
        let gso = match (h.l3, tso) {
            (L3::V4, CsumFlags::IP_TSO) => VIRTIO_NET_HDR_GSO_TCPV4,
            (L3::V6, CsumFlags::IP6_TSO) => VIRTIO_NET_HDR_GSO_TCPV6,
            _ => return Err(TxRefusal::ProtoMismatch),
        };
        if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
            return Err(TxRefusal::TsoWithoutCsum);
        }
        if req.tso_segsz == 0 {
            return Err(TxRefusal::TsoBadMss);
        }
        let ecn = if flags & tcp_flags::CWR != 0 { VIRTIO_NET_HDR_GSO_ECN } else { 0 };
        hdr.gso_type = gso | ecn;
        hdr.gso_size = req.tso_segsz.to_le();
        hdr.hdr_len = u16::try_from(h.hdr_end()).map_err(|_| TxRefusal::ProtoMismatch)?.to_le();
    }
    Ok(hdr)
}

/// A header from the host that does not describe its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxBad {
    /// Unknown flag bits.
    Flags(u8),
    /// Unknown or unsupported GSO type.
    GsoType(u8),
    /// `csum_start + csum_offset` outside the frame.
    CsumRange,
    /// `hdr_len` beyond the frame.
    HdrLen,
    /// GSO with a zero segment size.
    GsoSize,
    /// The frame is shorter than the header says, or its headers do not
    /// parse as the GSO type says.
    Frame,
}

impl fmt::Display for RxBad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RxBad::Flags(x) => write!(f, "unknown header flags {x:#x}"),
            RxBad::GsoType(x) => write!(f, "unsupported GSO type {x:#x}"),
            RxBad::CsumRange => f.write_str("csum_start/csum_offset beyond the frame"),
            RxBad::HdrLen => f.write_str("hdr_len beyond the frame"),
            RxBad::GsoSize => f.write_str("zero gso_size"),
            RxBad::Frame => f.write_str("frame does not match its header"),
        }
    }
}

/// Checksum state a received header conveys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxCsum {
    /// Nothing known: the stack verifies.
    Unknown,
    /// The host validated the checksum (`DATA_VALID`).
    Valid,
    /// The checksum is partial (`NEEDS_CSUM`): the packet comes from the
    /// host's own stack, its data is intact, the field holds the
    /// pseudo-header sum and the real sum is still to be computed.
    Partial {
        /// Where summing starts.
        start: usize,
        /// Where the checksum goes, relative to `start`.
        offset: usize,
    },
}

/// A received GSO super-packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxGso {
    /// IP version the GSO type announces.
    pub l3: L3,
    /// Segment size.
    pub mss: u16,
}

/// What a received header says about its frame of `frame_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxOffload {
    /// Checksum state.
    pub csum: RxCsum,
    /// GSO (large receive) information.
    pub gso: Option<RxGso>,
}

/// Interprets and checks a header read from the host.
pub fn rx_interpret(hdr: &VirtioNetHdr, frame_len: usize) -> Result<RxOffload, RxBad> {
    let flags = hdr.flags;
    if flags & !(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID) != 0 {
        return Err(RxBad::Flags(flags));
    }
    let csum = if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        let start = usize::from(u16::from_le(hdr.csum_start));
        let offset = usize::from(u16::from_le(hdr.csum_offset));
        if start.saturating_add(offset).saturating_add(2) > frame_len {
            return Err(RxBad::CsumRange);
        }
        RxCsum::Partial { start, offset }
    } else if flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
        RxCsum::Valid
    } else {
        RxCsum::Unknown
    };
    let gso = match hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_NONE if hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE => None,
        t @ (VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6) => {
            let mss = u16::from_le(hdr.gso_size);
            if mss == 0 {
                return Err(RxBad::GsoSize);
            }
            if usize::from(u16::from_le(hdr.hdr_len)) > frame_len {
                return Err(RxBad::HdrLen);
            }
            let l3 = if t == VIRTIO_NET_HDR_GSO_TCPV4 { L3::V4 } else { L3::V6 };
            Some(RxGso { l3, mss })
        }
        _ => return Err(RxBad::GsoType(hdr.gso_type)),
    };
    Ok(RxOffload { csum, gso })
}

/// What the driver does with a received frame's offload state, given the
/// enabled receive capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxAction {
    /// Hand the frame up as it is, with this packet header information.
    Deliver(FrameInfo),
    /// Complete the partial checksum in software, then hand it up with no
    /// checksum claims (RXCSUM is off, so the stack verifies).
    CompleteCsum {
        /// Where summing starts.
        start: usize,
        /// Where the checksum goes, relative to `start`.
        offset: usize,
    },
    /// Segment the super-packet in software (LRO is off).
    Segment(RxGso),
}

/// Decides how to hand up a frame with headers `h` (`None` when they do not
/// parse) and offload state `o`, under capabilities `en`, the way
/// `if_vtnet` hands checksum state to FreeBSD's stack.
pub fn rx_action(o: &RxOffload, h: Option<&Headers>, en: IfCap) -> Result<RxAction, RxBad> {
    let rxcsum_on = match h.map(|h| h.l3) {
        Some(L3::V4) => en.contains(IfCap::RXCSUM),
        Some(L3::V6) => en.contains(IfCap::RXCSUM_IPV6),
        None => false,
    };
    if let Some(g) = o.gso {
        // A super-packet must really be TCP over the announced IP version.
        let h = h.ok_or(RxBad::Frame)?;
        if h.l3 != g.l3 || !matches!(h.l4, L4::Tcp { .. }) {
            return Err(RxBad::Frame);
        }
        if !en.contains(IfCap::LRO) {
            return Ok(RxAction::Segment(g));
        }
    }
    let good = match o.csum {
        RxCsum::Unknown => false,
        RxCsum::Valid => true,
        RxCsum::Partial { start, offset } => {
            if !rxcsum_on {
                return Ok(RxAction::CompleteCsum { start, offset });
            }
            true
        }
    };
    let mut info = FrameInfo::default();
    if good && rxcsum_on {
        info.csum_flags = CsumFlags::L4_CALC | CsumFlags::L4_VALID;
        info.csum_data = 0xffff;
    }
    if let (Some(g), Some(h)) = (o.gso, h) {
        let payload = h.frame_end.saturating_sub(h.hdr_end());
        info.csum_flags |= CsumFlags::COALESCED;
        info.lro_segsz = g.mss;
        info.lro_nsegs = u16::try_from(payload.div_ceil(usize::from(g.mss.max(1)))).unwrap_or(u16::MAX);
    }
    Ok(RxAction::Deliver(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::caps::{hwassist, supported};
    use crate::net::hdr::{
        parse,
        tests::{tcp4, udp6},
    };

    fn all() -> IfCap {
        supported(true)
    }

    #[test]
    fn checksum_and_tso_requests_become_headers() {
        let f = tcp4(3000, true);
        let h = parse(&f, f.len()).unwrap();
        let req =
            TxRequest { csum_flags: CsumFlags::IP_TCP | CsumFlags::IP_TSO, tso_segsz: 1448, ..Default::default() };
        let v = tx_header(&h, &req, hwassist(all())).unwrap();
        assert_eq!(v.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!((v.csum_start, v.csum_offset), (38, 16), "after the 802.1Q tag");
        assert_eq!((v.gso_type, v.gso_size, v.hdr_len), (VIRTIO_NET_HDR_GSO_TCPV4, 1448, 58));
        let u = udp6(100);
        let hu = parse(&u, u.len()).unwrap();
        let v = tx_header(&hu, &TxRequest { csum_flags: CsumFlags::IP6_UDP, ..Default::default() }, hwassist(all()))
            .unwrap();
        assert_eq!((v.csum_start, v.csum_offset, v.gso_type), (62, 6, 0));
        assert_eq!(tx_header(&h, &TxRequest::default(), CsumFlags::empty()), Ok(VirtioNetHdr::default()));
    }

    #[test]
    fn bad_transmit_requests_are_refused() {
        let f = tcp4(100, false);
        let h = parse(&f, f.len()).unwrap();
        let a = hwassist(all());
        let req = |c| TxRequest { csum_flags: c, tso_segsz: 1000, ..Default::default() };
        assert_eq!(tx_header(&h, &req(CsumFlags::IP_UDP), a), Err(TxRefusal::ProtoMismatch));
        assert_eq!(tx_header(&h, &req(CsumFlags::IP6_TCP), a), Err(TxRefusal::ProtoMismatch));
        assert_eq!(tx_header(&h, &req(CsumFlags::IP_TSO), a), Err(TxRefusal::TsoWithoutCsum));
        assert_eq!(tx_header(&h, &req(CsumFlags::IP_TCP), CsumFlags::empty()), Err(TxRefusal::NotEnabled));
        let mut zero = req(CsumFlags::IP_TCP | CsumFlags::IP_TSO);
        zero.tso_segsz = 0;
        assert_eq!(tx_header(&h, &zero, a), Err(TxRefusal::TsoBadMss));
        let u = udp6(10);
        let hu = parse(&u, u.len()).unwrap();
        assert_eq!(tx_header(&hu, &req(CsumFlags::IP6_UDP | CsumFlags::IP6_TSO), a), Err(TxRefusal::TsoNotTcp));
    }

    #[test]
    fn cwr_sets_the_ecn_bit() {
        let mut f = tcp4(3000, false);
        f[47] |= tcp_flags::CWR;
        let h = parse(&f, f.len()).unwrap();
        let req =
            TxRequest { csum_flags: CsumFlags::IP_TCP | CsumFlags::IP_TSO, tso_segsz: 1000, ..Default::default() };
        assert_eq!(
            tx_header(&h, &req, hwassist(all())).unwrap().gso_type,
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN
        );
    }

    #[test]
    fn received_headers_are_checked() {
        let ok = |h: VirtioNetHdr, len| rx_interpret(&h, len);
        let n = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        assert_eq!(ok(VirtioNetHdr { flags: 4, ..Default::default() }, 100), Err(RxBad::Flags(4)));
        assert_eq!(
            ok(VirtioNetHdr { flags: n, csum_start: 90, csum_offset: 16, ..Default::default() }, 100),
            Err(RxBad::CsumRange)
        );
        assert_eq!(ok(VirtioNetHdr { gso_type: 3, gso_size: 100, ..Default::default() }, 100), Err(RxBad::GsoType(3)));
        assert_eq!(ok(VirtioNetHdr { gso_type: 9, ..Default::default() }, 100), Err(RxBad::GsoType(9)));
        assert_eq!(ok(VirtioNetHdr { gso_type: 1, gso_size: 0, ..Default::default() }, 100), Err(RxBad::GsoSize));
        assert_eq!(
            ok(VirtioNetHdr { gso_type: 1, gso_size: 10, hdr_len: 200, ..Default::default() }, 100),
            Err(RxBad::HdrLen)
        );
        assert_eq!(ok(VirtioNetHdr { gso_type: 0x80, ..Default::default() }, 100), Err(RxBad::GsoType(0x80)));
    }

    #[test]
    fn receive_actions_follow_the_capabilities() {
        let f = tcp4(3000, false);
        let h = parse(&f, f.len()).unwrap();
        let partial = RxOffload { csum: RxCsum::Partial { start: 34, offset: 16 }, gso: None };
        let Ok(RxAction::Deliver(i)) = rx_action(&partial, Some(&h), all()) else { panic!() };
        assert_eq!((i.csum_flags, i.csum_data), (CsumFlags::L4_CALC | CsumFlags::L4_VALID, 0xffff));
        assert_eq!(
            rx_action(&partial, Some(&h), all() - IfCap::RXCSUM),
            Ok(RxAction::CompleteCsum { start: 34, offset: 16 })
        );
        let valid = RxOffload { csum: RxCsum::Valid, gso: None };
        let Ok(RxAction::Deliver(i)) = rx_action(&valid, Some(&h), all() - IfCap::RXCSUM) else { panic!() };
        assert!(i.csum_flags.is_empty(), "RXCSUM off: no claims");
        let g = RxGso { l3: L3::V4, mss: 1000 };
        let lro = RxOffload { csum: RxCsum::Partial { start: 34, offset: 16 }, gso: Some(g) };
        let Ok(RxAction::Deliver(i)) = rx_action(&lro, Some(&h), all()) else { panic!() };
        assert_eq!((i.lro_segsz, i.lro_nsegs), (1000, 3));
        assert!(i.csum_flags.contains(CsumFlags::COALESCED));
        assert_eq!(rx_action(&lro, Some(&h), all() - IfCap::LRO), Ok(RxAction::Segment(g)));
        let v6 = RxOffload { csum: RxCsum::Valid, gso: Some(RxGso { l3: L3::V6, mss: 1000 }) };
        assert_eq!(rx_action(&v6, Some(&h), all()), Err(RxBad::Frame));
        assert_eq!(rx_action(&lro, None, all()), Err(RxBad::Frame));
    }
}
