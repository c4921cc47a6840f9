//! A guest network stack on the driver's interface: smoltcp (TCP, UDP,
//! ICMP over IPv4 and IPv6) behind a layer that behaves towards the driver
//! as FreeBSD's stack does:
//!
//! - transmit checksums: when the interface offloads them (`if_hwassist`)
//!   the stack leaves the pseudo-header sum, length included, in the
//!   checksum field and sets `CSUM_TCP`/`CSUM_UDP` (IPv6 alike), as
//!   `tcp_output()` (`sys/netinet/tcp_output.c`: `in_pseudo(src, dst,
//!   htons(sizeof(struct tcphdr) + IPPROTO_TCP + len + optlen))`, and
//!   `in6_cksum_pseudo()` for IPv6), `udp_output()`
//!   (`sys/netinet/udp_usrreq.c`) and `udp6_output()` do; otherwise it
//!   computes them;
//! - TSO: consecutive full-sized segments of one TCP flow that smoltcp
//!   emits in one pass are merged into a super-packet of up to 64 KiB with
//!   `CSUM_TCP | CSUM_TSO` and the segment size in `tso_segsz`, the way
//!   `tcp_output()` hands a TSO-capable driver one large segment: its
//!   checksum field seeded exactly as for any segment, the length of the
//!   whole super-packet included ("The TCP pseudo header checksum is
//!   always provided");
//! - receive checksums: a frame the driver marks `CSUM_DATA_VALID` is
//!   trusted, any other is verified in software and dropped if bad.
//!
//! smoltcp itself is told not to compute or verify TCP and UDP checksums,
//! since this layer does.

use super::device::PtnetIf;
use super::ifnet::{InputQueue, SimPacket};
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::net::cksum::{pseudo_v4, pseudo_v6, Csum, PROTO_TCP, PROTO_UDP};
use ptnet::net::hdr::{self, tcp_flags, Headers, L3, L4};
use ptnet::net::offload::TxRequest;
use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames the service routine takes per ring per pass.
const RX_BUDGET: u32 = 256;
/// Largest IP datagram.
const MAX_DATAGRAM: usize = 65535;

/// What the stack layer counted.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct StackStats {
    /// Received frames whose checksum the stack verified in software.
    pub rx_sw_verified: u64,
    /// Received frames dropped for a bad checksum.
    pub rx_bad_csum: u64,
    /// Sent frames whose checksum the stack computed in software.
    pub tx_sw_csum: u64,
    /// Sent frames whose checksum was offloaded.
    pub tx_csum_offload: u64,
    /// TSO super-packets sent.
    pub tso_packets: u64,
    /// Segments merged into them.
    pub tso_segments: u64,
    /// Largest super-packet sent (bytes).
    pub tso_max_bytes: u64,
    /// Frames the interface refused (queue full, down).
    pub tx_dropped: u64,
}

/// A TCP super-packet being assembled.
struct Super {
    frame: Vec<u8>,
    h: Headers,
    mss: usize,
    last_payload: usize,
    next_seq: u32,
    segs: u32,
}

/// The transmit side of the layer: offload decisions and TSO merging.
#[derive(Default)]
struct TxPath {
    pending: Option<Super>,
    /// Frames smoltcp emitted in the current pass. smoltcp dispatches one
    /// segment per socket per pass, so a super-packet grows over passes and
    /// is sent once a pass emits nothing (or something that cannot join).
    emitted: u32,
    stats: StackStats,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The pseudo-header sum of a frame's transport segment of `len` bytes.
fn pseudo(f: &[u8], h: &Headers, proto: u8, len: u32) -> Csum {
    let l3 = h.l3_off;
    match h.l3 {
        L3::V4 => {
            pseudo_v4(f[l3 + 12..l3 + 16].try_into().unwrap(), f[l3 + 16..l3 + 20].try_into().unwrap(), proto, len)
        }
        L3::V6 => {
            pseudo_v6(f[l3 + 8..l3 + 24].try_into().unwrap(), f[l3 + 24..l3 + 40].try_into().unwrap(), proto, len)
        }
    }
}

fn l4_proto(h: &Headers) -> Option<u8> {
    match h.l4 {
        L4::Tcp { .. } => Some(PROTO_TCP),
        L4::Udp => Some(PROTO_UDP),
        L4::Other(_) => None,
    }
}

/// Verifies a received frame's TCP or UDP checksum in software.
fn checksum_ok(f: &[u8]) -> bool {
    let Ok(h) = hdr::parse(&f[..f.len().min(hdr::MAX_HDR)], f.len()) else {
        return true;
    };
    let Some(proto) = l4_proto(&h) else {
        return true;
    };
    let seg = &f[h.l4_off..h.frame_end];
    if proto == PROTO_UDP && h.l3 == L3::V4 && seg.get(6..8) == Some(&[0, 0]) {
        return true; // no UDP checksum
    }
    let mut c = pseudo(f, &h, proto, seg.len() as u32);
    c.add(seg);
    c.finish() == 0
}

/// Stores into the checksum field either the pseudo-header sum with the
/// transport length (offload, TSO included, as FreeBSD's stack does) or
/// the complete checksum (software).
fn fill_checksum(f: &mut [u8], h: &Headers, offload: bool) {
    let Some(proto) = l4_proto(h) else { return };
    let Some(off) = h.csum_offset() else { return };
    let at = h.l4_off + usize::from(off);
    let len = (h.frame_end - h.l4_off) as u32;
    f[at..at + 2].copy_from_slice(&[0, 0]);
    let sum = if offload {
        pseudo(f, h, proto, len).fold()
    } else {
        let mut c = pseudo(f, h, proto, len);
        c.add(&f[h.l4_off..h.frame_end]);
        let v = c.finish();
        if v == 0 && proto == PROTO_UDP {
            0xffff
        } else {
            v
        }
    };
    f[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

impl TxPath {
    fn send(&mut self, ifp: &PtnetIf, mut frame: Vec<u8>) {
        self.emitted += 1;
        let parsed = hdr::parse(&frame[..frame.len().min(hdr::MAX_HDR)], frame.len());
        let Ok(h) = parsed else {
            self.flush(ifp);
            return self.out(ifp, frame, TxRequest::default());
        };
        let assist = ifp.hwassist();
        let (csum_flag, tso_flag) = match (h.l3, h.l4) {
            (L3::V4, L4::Tcp { .. }) => (CsumFlags::IP_TCP, CsumFlags::IP_TSO),
            (L3::V6, L4::Tcp { .. }) => (CsumFlags::IP6_TCP, CsumFlags::IP6_TSO),
            (L3::V4, L4::Udp) => (CsumFlags::IP_UDP, CsumFlags::empty()),
            (L3::V6, L4::Udp) => (CsumFlags::IP6_UDP, CsumFlags::empty()),
            _ => (CsumFlags::empty(), CsumFlags::empty()),
        };
        if !tso_flag.is_empty() && assist.contains(csum_flag | tso_flag) && self.merge(ifp, &frame, &h) {
            return;
        }
        self.flush(ifp);
        let offload = !csum_flag.is_empty() && assist.contains(csum_flag);
        fill_checksum(&mut frame, &h, offload);
        let req = if offload {
            self.stats.tx_csum_offload += 1;
            TxRequest { csum_flags: csum_flag, ..TxRequest::default() }
        } else {
            if !csum_flag.is_empty() {
                self.stats.tx_sw_csum += 1;
            }
            TxRequest::default()
        };
        frame.truncate(h.frame_end);
        self.out(ifp, frame, req);
    }

    /// Adds a TCP data segment to the super-packet under construction;
    /// false when it cannot be merged (then it is sent on its own).
    fn merge(&mut self, ifp: &PtnetIf, f: &[u8], h: &Headers) -> bool {
        let L4::Tcp { flags, .. } = h.l4 else {
            return false;
        };
        let payload = h.frame_end - h.hdr_end();
        let plain = flags & !(tcp_flags::PSH) == 0x10; // ACK, maybe PSH
        if payload == 0 || !plain {
            return false;
        }
        let seq = be32(f, h.l4_off + 4);
        if let Some(p) = &mut self.pending {
            let same_headers = p.h.hdr_end() == h.hdr_end()
                && p.h.l3 == h.l3
                // addresses, ports, ack, window and options all equal
                && match h.l3 {
                    L3::V4 => p.frame[h.l3_off + 12..h.l3_off + 20] == f[h.l3_off + 12..h.l3_off + 20],
                    L3::V6 => p.frame[h.l3_off + 8..h.l3_off + 40] == f[h.l3_off + 8..h.l3_off + 40],
                }
                && p.frame[h.l4_off..h.l4_off + 4] == f[h.l4_off..h.l4_off + 4]
                && p.frame[h.l4_off + 8..h.l4_off + 12] == f[h.l4_off + 8..h.l4_off + 12]
                && p.frame[h.l4_off + 14..h.l4_off + 16] == f[h.l4_off + 14..h.l4_off + 16]
                && p.frame[h.l4_off + 20..h.hdr_end()] == f[h.l4_off + 20..h.hdr_end()];
            let fits = p.frame.len() - p.h.l3_off + payload <= MAX_DATAGRAM;
            if same_headers && seq == p.next_seq && p.last_payload == p.mss && payload <= p.mss && fits {
                p.frame.extend_from_slice(&f[h.hdr_end()..h.frame_end]);
                p.frame[p.h.l4_off + 13] |= flags & tcp_flags::PSH;
                p.next_seq = seq.wrapping_add(payload as u32);
                p.last_payload = payload;
                p.segs += 1;
                p.h.frame_end = p.frame.len();
                return true;
            }
            self.flush(ifp);
        }
        self.pending = Some(Super {
            frame: f[..h.frame_end].to_vec(),
            h: *h,
            mss: payload,
            last_payload: payload,
            next_seq: seq.wrapping_add(payload as u32),
            segs: 1,
        });
        true
    }

    /// Sends the super-packet under construction, if any.
    fn flush(&mut self, ifp: &PtnetIf) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        let h = p.h;
        let l3 = h.l3_off;
        let f = &mut p.frame;
        match h.l3 {
            L3::V4 => {
                let total = (f.len() - l3) as u16;
                f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
                f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
                let mut c = Csum::new();
                c.add(&f[l3..h.l4_off]);
                let sum = c.finish();
                f[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
            }
            L3::V6 => {
                let plen = (f.len() - l3 - 40) as u16;
                f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
            }
        }
        let (csum, tso) = match h.l3 {
            L3::V4 => (CsumFlags::IP_TCP, CsumFlags::IP_TSO),
            L3::V6 => (CsumFlags::IP6_TCP, CsumFlags::IP6_TSO),
        };
        fill_checksum(f, &h, true);
        let req = if p.segs > 1 {
            self.stats.tso_packets += 1;
            self.stats.tso_segments += u64::from(p.segs);
            self.stats.tso_max_bytes = self.stats.tso_max_bytes.max(f.len() as u64);
            TxRequest { csum_flags: csum | tso, tso_segsz: p.mss as u16, ..TxRequest::default() }
        } else {
            self.stats.tx_csum_offload += 1;
            TxRequest { csum_flags: csum, ..TxRequest::default() }
        };
        self.out(ifp, p.frame, req);
    }

    fn out(&mut self, ifp: &PtnetIf, data: Vec<u8>, req: TxRequest) {
        if ifp.transmit(SimPacket::new(data, req)).is_err() {
            self.stats.tx_dropped += 1;
        }
    }
}

/// smoltcp's view of the interface.
struct SimDevice<'a> {
    ifp: &'a PtnetIf,
    input: &'a mut InputQueue,
    tx: &'a mut TxPath,
}

struct Rx(Vec<u8>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct Tx<'a> {
    ifp: &'a PtnetIf,
    path: &'a mut TxPath,
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.path.send(self.ifp, buf);
        r
    }
}

impl Device for SimDevice<'_> {
    type RxToken<'b>
        = Rx
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _t: SInstant) -> Option<(Rx, Tx<'_>)> {
        loop {
            let frame = self.input.pop()?;
            if !frame.info.csum_flags.contains(CsumFlags::L4_VALID) {
                self.tx.stats.rx_sw_verified += 1;
                if !checksum_ok(&frame.data) {
                    self.tx.stats.rx_bad_csum += 1;
                    continue;
                }
            }
            return Some((Rx(frame.data), Tx { ifp: self.ifp, path: self.tx }));
        }
    }

    fn transmit(&mut self, _t: SInstant) -> Option<Tx<'_>> {
        Some(Tx { ifp: self.ifp, path: self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.ifp.mtu() as usize + 14;
        let mut c = ChecksumCapabilities::default();
        c.tcp = Checksum::None;
        c.udp = Checksum::None;
        caps.checksum = c;
        caps
    }
}

/// A guest's stack on its ptnet interface.
pub struct Stack {
    /// The interface.
    pub ifp: Arc<PtnetIf>,
    /// smoltcp's interface.
    pub iface: Interface,
    /// Sockets.
    pub sockets: SocketSet<'static>,
    input: InputQueue,
    tx: TxPath,
    t0: Instant,
}

impl Stack {
    /// Brings `ifp` up and configures a stack with `addrs` on it.
    pub fn new(ifp: Arc<PtnetIf>, mac: [u8; 6], addrs: &[IpCidr]) -> Result<Self, super::device::NmError> {
        ifp.if_up()?;
        let mut input = InputQueue::new(4096);
        let mut tx = TxPath::default();
        let t0 = Instant::now();
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        let mut dev = SimDevice { ifp: &ifp, input: &mut input, tx: &mut tx };
        let mut iface = Interface::new(config, &mut dev, SInstant::from_micros(0));
        iface.update_ip_addrs(|a| {
            for c in addrs {
                let _ = a.push(*c);
            }
        });
        Ok(Self { ifp, iface, sockets: SocketSet::new(Vec::new()), input, tx, t0 })
    }

    /// Routes everything off the LAN through the given routers.
    pub fn add_default_routes(&mut self, v4: smoltcp::wire::Ipv4Address, v6: smoltcp::wire::Ipv6Address) {
        let r = self.iface.routes_mut();
        let _ = r.add_default_ipv4_route(v4);
        let _ = r.add_default_ipv6_route(v6);
    }

    /// smoltcp time.
    pub fn now(&self) -> SInstant {
        SInstant::from_micros(self.t0.elapsed().as_micros() as i64)
    }

    /// The stack layer's counters.
    pub fn stats(&self) -> StackStats {
        self.tx.stats
    }

    /// One pass: the interface's service routine, smoltcp, and the TSO
    /// flush. Returns whether something is left to do right away.
    pub fn poll(&mut self) -> bool {
        let more = self.ifp.service(&mut self.input, RX_BUDGET);
        let now = self.now();
        self.tx.emitted = 0;
        let mut dev = SimDevice { ifp: &self.ifp, input: &mut self.input, tx: &mut self.tx };
        let r = self.iface.poll(now, &mut dev, &mut self.sockets);
        if self.tx.emitted == 0 {
            self.tx.flush(&self.ifp);
        }
        more || r == PollResult::SocketStateChanged || !self.input.is_empty() || self.tx.pending.is_some()
    }

    /// Runs the stack until `done` says so or `timeout` passes, sleeping
    /// between interrupts and smoltcp's timers. Returns whether `done`
    /// became true.
    pub fn run_until(&mut self, timeout: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let token = self.ifp.idle_token();
            let busy = self.poll();
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            if !busy {
                let t = self.now();
                let delay = self
                    .iface
                    .poll_delay(t, &self.sockets)
                    .map_or(Duration::from_millis(50), |d| Duration::from_micros(d.total_micros()));
                let delay = delay.min(end - now).min(Duration::from_millis(50));
                if !delay.is_zero() {
                    self.ifp.idle(token, delay);
                }
            }
        }
    }

    /// Whether the stack may offload for `cap` (for tests and reports).
    pub fn offloads(&self, cap: IfCap) -> bool {
        self.ifp.enabled().contains(cap)
    }
}
