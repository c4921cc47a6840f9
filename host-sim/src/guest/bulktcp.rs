//! A lean TCP for bulk transfers, the way FreeBSD's `tcp_output` drives a
//! TSO-capable interface: it hands the driver one segment of up to 64 KiB
//! per send, with `CSUM_TSO` and the MSS, and takes large-receive frames
//! whole. smoltcp (see [`super::stack`]) builds every MSS-sized segment
//! itself; this engine exists so the driver's TSO and LRO paths can be
//! measured at the speed a kernel stack would drive them.
//!
//! One connection, one direction of data. The payload is a
//! position-addressable [`Pattern`], so the sender keeps no send buffer
//! (retransmissions regenerate it) and the receiver checks every byte
//! against it as it arrives.
//! Enough of TCP for Linux as a peer: SYN with MSS, window scale and
//! SACK-permitted, sliding window, NewReno fast retransmit and recovery
//! (one super-packet per hole: the switch drops whole frames) with a
//! congestion window halved on loss, go-back-N after a timeout, FIN. The receiver keeps what arrives beyond a
//! hole (checked on arrival, so only its range is kept) and reports it in
//! SACK blocks, so one lost frame costs a Linux sender one round trip
//! rather than its whole window. Neighbours are configured statically by
//! the caller.

use super::ifnet::{InputQueue, SimPacket};
use super::nic::Nic;
use crate::app::stream::Pattern;
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::net::cksum::{pseudo_v4, pseudo_v6, Csum, PROTO_TCP};
use ptnet::net::hdr::{self, L3, L4};
use ptnet::net::offload::TxRequest;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// Our window scale (the 4 MiB window below fits 16 bits scaled).
const WSCALE: u8 = 7;
const RCV_WND: u32 = 4 << 20;
/// Largest segment handed to the driver (an IP datagram's limit).
const MAX_SUPER: usize = 65535 - 60 - 60;
const RTO: Duration = Duration::from_millis(200);
/// Most bytes in flight: what a 1024-slot ring of 2 KiB buffers holds,
/// with room to spare (more only fills the switch's destination ring).
const MAX_FLIGHT: u32 = 1 << 20;
/// The congestion window never shrinks below two super-packets.
const MIN_CWND: u32 = 2 * MAX_SUPER as u32;

/// One end of the connection.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// Ethernet address.
    pub mac: [u8; 6],
    /// IP address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Listen,
    SynSent,
    SynReceived,
    Established,
    Closed,
}

/// What a finished transfer saw.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct BulkStats {
    /// Payload bytes sent (first transmissions) or received in order.
    pub bytes: u64,
    /// Seconds from the first to the last data byte.
    pub seconds: f64,
    /// Offset of the first byte that did not match the pattern.
    pub corrupt_at: Option<u64>,
    /// Segments handed to the driver.
    pub segments: u64,
    /// Of which TSO super-packets.
    pub tso_packets: u64,
    /// Their payload bytes.
    pub tso_bytes: u64,
    /// Largest segment handed to the driver (bytes).
    pub max_segment: u64,
    /// Frames received larger than one MSS (large receive).
    pub lro_frames: u64,
    /// Retransmission episodes (timeouts and triple duplicate ACKs).
    pub retransmits: u64,
    /// Of which timeouts.
    pub timeouts: u64,
    /// Frames dropped for a bad checksum.
    pub bad_csum: u64,
    /// Sends the interface refused (`ENOBUFS`: its queue was full).
    pub enobufs: u64,
}

/// A bulk TCP connection on a guest interface.
pub struct BulkTcp {
    ifp: Arc<dyn Nic>,
    local: Endpoint,
    remote: Endpoint,
    state: State,
    input: InputQueue,
    ip_id: u16,
    // Send side.
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    snd_max: u32,
    snd_wnd: u32,
    snd_shift: u8,
    mss: u16,
    /// Congestion window: halved on loss, grown by one MSS per window.
    cwnd: u32,
    /// In fast recovery until `snd_una` reaches this (NewReno `recover`).
    recover: Option<u32>,
    /// Where the peer's first hole ends, from its last SACK blocks.
    hole_end: Option<u32>,
    /// Stream offset of `snd_una` (after the handshake, `snd_una` is the
    /// first unacknowledged payload byte).
    una_off: u64,
    total: u64,
    /// How long to send for, once established.
    send_for: Option<Duration>,
    deadline: Option<Instant>,
    last_progress: Instant,
    dupacks: u32,
    // Receive side.
    rcv_nxt: u32,
    /// Stream ranges `[start, end)` received beyond a hole, sorted and
    /// disjoint; `stats.bytes` is where the in-order stream ends.
    ooo: Vec<(u64, u64)>,
    /// The peer takes SACK blocks.
    sack_ok: bool,
    fin_received: bool,
    unacked: u32,
    // Data.
    pattern: Pattern,
    first_byte: Option<Instant>,
    last_byte: Option<Instant>,
    stats: BulkStats,
    /// No progress for this long ends a run (stalled).
    stall: Option<Duration>,
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl BulkTcp {
    fn new(ifp: Arc<dyn Nic>, local: Endpoint, remote: Endpoint, pattern: Pattern, state: State) -> Self {
        ifp.if_up().expect("interface up");
        let iss = 0x1000_0000 ^ u32::from(local.port) << 8;
        Self {
            ifp,
            local,
            remote,
            state,
            input: InputQueue::new(8192),
            ip_id: 1,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_shift: 0,
            mss: 536,
            cwnd: MAX_FLIGHT,
            recover: None,
            hole_end: None,
            una_off: 0,
            total: 0,
            send_for: None,
            deadline: None,
            last_progress: Instant::now(),
            dupacks: 0,
            rcv_nxt: 0,
            ooo: Vec::new(),
            sack_ok: false,
            fin_received: false,
            unacked: 0,
            pattern,
            first_byte: None,
            last_byte: None,
            stats: BulkStats::default(),
            stall: None,
        }
    }

    /// Connects to `remote` and will send `total` bytes of `pattern` (or
    /// for [`BulkTcp::send_for`]).
    pub fn connect(ifp: Arc<dyn Nic>, local: Endpoint, remote: Endpoint, pattern: Pattern, total: u64) -> Self {
        let mut c = Self::new(ifp, local, remote, pattern, State::SynSent);
        c.total = total;
        c.send_syn(false);
        c
    }

    /// Waits for `remote` to connect (from any port if its port is 0) and
    /// receives its data.
    pub fn listen(ifp: Arc<dyn Nic>, local: Endpoint, remote: Endpoint, pattern: Pattern) -> Self {
        Self::new(ifp, local, remote, pattern, State::Listen)
    }

    /// Ends the stream at whatever was sent `d` after the handshake.
    pub fn send_for(&mut self, d: Duration) {
        self.send_for = Some(d);
    }

    /// The handshake is over: payload offsets start at `snd_una`.
    fn establish(&mut self, ack: u32) {
        self.state = State::Established;
        self.snd_una = ack;
        self.deadline = self.send_for.map(|d| Instant::now() + d);
    }

    /// Bytes received in order so far.
    pub fn received(&self) -> u64 {
        self.stats.bytes
    }

    /// The outcome so far.
    pub fn stats(&self) -> BulkStats {
        let mut s = self.stats;
        s.seconds = match (self.first_byte, self.last_byte) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        s
    }

    /// The connection's sequence state, for diagnostics.
    pub fn debug_state(&self) -> String {
        format!(
            "{:?} una {} nxt {} max {} wnd {} shift {} mss {} off {} total {} retransmits {} rcv_nxt {} fin_received {} received {} remote port {}",
            self.state, self.snd_una, self.snd_nxt, self.snd_max, self.snd_wnd, self.snd_shift, self.mss,
            self.una_off, self.total, self.stats.retransmits, self.rcv_nxt, self.fin_received, self.stats.bytes, self.remote.port
        )
    }

    /// True once the transfer is over: for a sender, all data and the FIN
    /// acknowledged; for a receiver, the peer's FIN received.
    pub fn done(&self) -> bool {
        self.state == State::Closed
            || (self.ending() && self.offset(self.snd_una) > self.total)
            || (self.fin_received && self.total == 0)
    }

    fn v6(&self) -> bool {
        self.remote.ip.is_ipv6()
    }

    /// Builds the Ethernet, IP and TCP headers for a segment of `payload`
    /// bytes with `flags` and `options`; returns the headers (the caller
    /// appends the payload) and where everything is.
    fn headers(&mut self, seq: u32, flags: u8, options: &[u8], payload: usize) -> (Vec<u8>, hdr::Headers) {
        let tcp_len = 20 + options.len();
        let l3 = 14;
        let ip_len = if self.v6() { 40 } else { 20 };
        let mut f = Vec::with_capacity(l3 + ip_len + tcp_len + payload);
        f.resize(l3 + ip_len + tcp_len, 0);
        f[0..6].copy_from_slice(&self.remote.mac);
        f[6..12].copy_from_slice(&self.local.mac);
        let l4 = l3 + ip_len;
        match (self.local.ip, self.remote.ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f[12..14].copy_from_slice(&[0x08, 0x00]);
                let ip = &mut f[l3..l4];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((ip_len + tcp_len + payload) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
                ip[6] = 0x40;
                ip[8] = 64;
                ip[9] = PROTO_TCP;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let mut c = Csum::new();
                c.add(ip);
                let sum = c.finish().to_be_bytes();
                ip[10..12].copy_from_slice(&sum);
                self.ip_id = self.ip_id.wrapping_add(1);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                let ip = &mut f[l3..l4];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&((tcp_len + payload) as u16).to_be_bytes());
                ip[6] = PROTO_TCP;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
            }
            _ => unreachable!("endpoints of one family"),
        }
        let t = &mut f[l4..l4 + tcp_len];
        t[0..2].copy_from_slice(&self.local.port.to_be_bytes());
        t[2..4].copy_from_slice(&self.remote.port.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&self.rcv_nxt.to_be_bytes());
        t[12] = ((tcp_len / 4) as u8) << 4;
        t[13] = flags;
        let wnd = if flags & SYN != 0 { RCV_WND.min(65535) } else { RCV_WND >> WSCALE };
        t[14..16].copy_from_slice(&(wnd as u16).to_be_bytes());
        t[20..].copy_from_slice(options);
        let h = hdr::Headers {
            vlan: None,
            l3_off: l3,
            l3: if self.v6() { L3::V6 } else { L3::V4 },
            l4_off: l4,
            l4: L4::Tcp { hdr_len: tcp_len as u8, flags },
            frame_end: f.len() + payload,
        };
        (f, h)
    }

    /// Sends a finished frame, with checksum offload or a software
    /// checksum as the interface allows, and TSO when `tso_mss` is set.
    /// False if the interface refused it (its queue is full).
    fn emit(&mut self, mut f: Vec<u8>, h: &hdr::Headers, tso_mss: Option<u16>) -> bool {
        let (csum_flag, tso_flag) =
            if self.v6() { (CsumFlags::IP6_TCP, CsumFlags::IP6_TSO) } else { (CsumFlags::IP_TCP, CsumFlags::IP_TSO) };
        let offload = self.ifp.hwassist().contains(csum_flag);
        let len = (f.len() - h.l4_off) as u32;
        let pseudo = |f: &[u8], len: u32| match (self.local.ip, self.remote.ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_v4(s.octets(), d.octets(), PROTO_TCP, len),
            (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_v6(s.octets(), d.octets(), PROTO_TCP, len),
            _ => {
                let _ = f;
                Csum::new()
            }
        };
        let at = h.l4_off + 16;
        let mut req = TxRequest::default();
        if let Some(mss) = tso_mss {
            // tcp_output() (sys/netinet/tcp_output.c) seeds a TSO segment
            // as any other: the pseudo-header sum with the TCP length of
            // the whole segment ("The TCP pseudo header checksum is always
            // provided").
            let seed = pseudo(&f, len).fold();
            f[at..at + 2].copy_from_slice(&seed.to_be_bytes());
            req.csum_flags = csum_flag | tso_flag;
            req.tso_segsz = mss;
        } else if offload {
            let seed = pseudo(&f, len).fold();
            f[at..at + 2].copy_from_slice(&seed.to_be_bytes());
            req.csum_flags = csum_flag;
        } else {
            let mut c = pseudo(&f, len);
            c.add(&f[h.l4_off..]);
            let sum = c.finish().to_be_bytes();
            f[at..at + 2].copy_from_slice(&sum);
        }
        let payload = (f.len() - h.hdr_end()) as u64;
        if self.ifp.transmit(SimPacket::new(f, req)).is_err() {
            self.stats.enobufs += 1;
            return false;
        }
        self.stats.segments += 1;
        if tso_mss.is_some() {
            self.stats.tso_packets += 1;
            self.stats.tso_bytes += payload;
        }
        self.stats.max_segment = self.stats.max_segment.max(payload);
        true
    }

    fn send_syn(&mut self, ack: bool) {
        let mss = (self.ifp.mtu() - if self.v6() { 60 } else { 40 }) as u16;
        let m = mss.to_be_bytes();
        let opts = [2, 4, m[0], m[1], 1, 3, 3, WSCALE, 1, 1, 4, 2];
        let flags = if ack { SYN | ACK } else { SYN };
        let (f, h) = self.headers(self.iss, flags, &opts, 0);
        self.emit(f, &h, None);
        self.snd_nxt = self.iss.wrapping_add(1);
        self.snd_max = self.snd_nxt;
        self.last_progress = Instant::now();
    }

    fn send_ack(&mut self, flags: u8) {
        let sack = self.sack_blocks(None);
        let (f, h) = self.headers(self.snd_nxt, ACK | flags, &sack, 0);
        if self.emit(f, &h, None) {
            self.unacked = 0;
        }
    }

    /// The SACK option for the ranges held beyond the hole, the one
    /// holding stream offset `recent` first (RFC 2018), at most four.
    fn sack_blocks(&self, recent: Option<u64>) -> Vec<u8> {
        if !self.sack_ok || self.ooo.is_empty() {
            return Vec::new();
        }
        let first = recent.and_then(|r| self.ooo.iter().position(|&(a, b)| a <= r && r < b)).unwrap_or(0);
        let order = std::iter::once(first).chain((0..self.ooo.len()).filter(|&i| i != first)).take(4);
        let seq = |off: u64| self.rcv_nxt.wrapping_add((off - self.stats.bytes) as u32);
        let n = order.clone().count();
        let mut o = vec![1, 1, 5, (2 + 8 * n) as u8];
        for i in order {
            let (a, b) = self.ooo[i];
            o.extend_from_slice(&seq(a).to_be_bytes());
            o.extend_from_slice(&seq(b).to_be_bytes());
        }
        o
    }

    /// Takes the payload of a segment starting at `seq`: checks it against
    /// the pattern, moves the in-order stream on or keeps its range.
    fn receive(&mut self, seq: u32, payload: &[u8]) {
        let delta = i64::from(seq.wrapping_sub(self.rcv_nxt) as i32);
        let head = self.stats.bytes;
        let Some(start) = head.checked_add_signed(delta) else { return self.send_ack(0) };
        let end = start + payload.len() as u64;
        if end <= head || start > head + u64::from(RCV_WND) {
            return self.send_ack(0); // a duplicate, or beyond the window
        }
        let from = start.max(head);
        let data = &payload[(from - start) as usize..];
        let ok = self.pattern.matching(from, data);
        if ok < data.len() {
            let at = from + ok as u64;
            self.stats.corrupt_at = Some(self.stats.corrupt_at.map_or(at, |c| c.min(at)));
        }
        self.first_byte.get_or_insert_with(Instant::now);
        self.last_byte = Some(Instant::now());
        if payload.len() > usize::from(self.mss) {
            self.stats.lro_frames += 1;
        }
        // Insert [from, end) and merge what it touches.
        let i = self.ooo.partition_point(|&(_, b)| b < from);
        let j = self.ooo.partition_point(|&(a, _)| a <= end);
        let merged = self.ooo[i..j].iter().fold((from, end), |(a, b), &(c, d)| (a.min(c), b.max(d)));
        self.ooo.splice(i..j, [merged]);
        if self.ooo[0].0 > head {
            // Beyond a hole: tell the sender at once (a duplicate ACK).
            let sack = self.sack_blocks(Some(from));
            let (f, h) = self.headers(self.snd_nxt, ACK, &sack, 0);
            self.emit(f, &h, None);
            return;
        }
        let (_, new_head) = self.ooo.remove(0);
        self.rcv_nxt = self.rcv_nxt.wrapping_add((new_head - head) as u32);
        self.stats.bytes = new_head;
        self.unacked += (new_head - head) as u32;
        if j > i || !self.ooo.is_empty() {
            self.send_ack(0); // a hole (partly) filled: acknowledge at once
        }
    }

    /// Payload offset of sequence number `seq` (within the window around
    /// `snd_una`; 64-bit, so streams may pass 4 GiB).
    fn offset(&self, seq: u32) -> u64 {
        let delta = seq.wrapping_sub(self.snd_una) as i32;
        self.una_off.saturating_add_signed(i64::from(delta))
    }

    /// Most payload per segment: a super-packet when the interface does
    /// TSO, else one MSS.
    fn chunk(&self) -> usize {
        let mss = usize::from(self.mss);
        let tso_cap = if self.v6() { IfCap::TSO6 } else { IfCap::TSO4 };
        if self.ifp.enabled().contains(tso_cap) {
            MAX_SUPER / mss * mss
        } else {
            mss
        }
    }

    /// Sends `n` payload bytes from `seq`; false if the interface refused.
    fn send_data(&mut self, seq: u32, n: usize, last: bool) -> bool {
        let (mut f, h) = self.headers(seq, ACK | if last { PSH } else { 0 }, &[], n);
        self.pattern.extend(self.offset(seq), n, &mut f);
        if !self.emit(f, &h, (n > usize::from(self.mss)).then_some(self.mss)) {
            return false;
        }
        // Only bytes past snd_max are new (the rest is retransmitted).
        let end = seq.wrapping_add(n as u32);
        if seq_lt(self.snd_max, end) {
            let resent = if seq_lt(seq, self.snd_max) { self.snd_max.wrapping_sub(seq) } else { 0 };
            self.stats.bytes += u64::from(end.wrapping_sub(seq) - resent);
            self.first_byte.get_or_insert_with(Instant::now);
            self.last_byte = Some(Instant::now());
            self.snd_max = end;
        }
        self.unacked = 0;
        true
    }

    /// Reads the SACK blocks of an ACK for `ack`: where the receiver's
    /// first hole ends. Returns whether the first block reports a
    /// duplicate (D-SACK, RFC 2883: data we resent that had arrived), so
    /// that the ACK is not taken for a sign of loss.
    fn read_sack(&mut self, options: &[u8], ack: u32) -> bool {
        // Left edges of the blocks, in the order sent.
        let starts = || {
            tcp_options(options)
                .filter(|&(kind, _)| kind == 5)
                .flat_map(|(_, d)| d.chunks_exact(8))
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let dsack = starts().next().is_some_and(|start| seq_lt(start, ack));
        self.hole_end = starts().filter(|&start| seq_lt(ack, start)).min_by_key(|&start| start.wrapping_sub(ack));
        dsack
    }

    /// Fast retransmit: the hole at `seq`, up to what the receiver holds
    /// beyond it (its SACK blocks), at most one super-packet.
    fn resend(&mut self, seq: u32) {
        let data_max = self.data_max();
        if !seq_lt(seq, data_max) {
            return; // only the FIN is missing: the retransmission timer resends it
        }
        let hole = self.hole_end.filter(|&e| seq_lt(seq, e)).map_or(u32::MAX, |e| e.wrapping_sub(seq));
        let n = (data_max.wrapping_sub(seq).min(hole) as usize).min(self.chunk());
        if n > 0 && self.send_data(seq, n, false) {
            self.last_progress = Instant::now();
        }
    }

    /// The sequence number just past the last data byte sent: once the
    /// FIN is out, `snd_max` counts it too, and resending it as a data
    /// byte would hand the receiver one byte more than the stream holds
    /// (the soak caught that: the receiver then never saw the FIN).
    fn data_max(&self) -> u32 {
        if self.ending() && self.offset(self.snd_max) > self.total {
            self.snd_max.wrapping_sub(1)
        } else {
            self.snd_max
        }
    }

    /// A loss: half the flight becomes the window.
    fn halve(&mut self) {
        self.cwnd = (self.snd_max.wrapping_sub(self.snd_una) / 2).clamp(MIN_CWND, MAX_FLIGHT);
        self.stats.retransmits += 1;
    }

    /// Sends as much data as the window allows, in TSO super-packets when
    /// the interface does TSO, else in MSS-sized segments.
    fn output(&mut self) {
        if !matches!(self.state, State::Established) {
            return;
        }
        if let Some(d) = self.deadline {
            if self.total == u64::MAX && Instant::now() >= d {
                self.total = self.offset(self.snd_max);
            }
        }
        let mss = usize::from(self.mss);
        loop {
            let left = self.total.saturating_sub(self.offset(self.snd_nxt)) as usize;
            let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
            let room = self.snd_wnd.min(self.cwnd).saturating_sub(inflight) as usize;
            let n = left.min(room).min(self.chunk());
            if n == 0 || (n < left && n < mss) {
                break; // all sent, or wait for a full segment's room
            }
            let seq = self.snd_nxt;
            if !self.send_data(seq, n, n == left) {
                // As `tcp_output` on ENOBUFS: the segment was not sent,
                // snd_nxt stays; the next pass (after a completion) retries.
                break;
            }
            self.snd_nxt = seq.wrapping_add(n as u32);
        }
        // The FIN follows the last byte, the first time and again after a
        // go-back-N rewinds past it.
        if self.ending() && self.offset(self.snd_nxt) == self.total {
            let (f, h) = self.headers(self.snd_nxt, ACK | FIN, &[], 0);
            if !self.emit(f, &h, None) {
                return;
            }
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            if seq_lt(self.snd_max, self.snd_nxt) {
                self.snd_max = self.snd_nxt;
            }
        }
    }

    /// Handles one received frame.
    fn input(&mut self, frame: &[u8], valid: bool) {
        let Ok(h) = hdr::parse(&frame[..frame.len().min(hdr::MAX_HDR)], frame.len()) else { return };
        let L4::Tcp { flags, hdr_len } = h.l4 else { return };
        let t = &frame[h.l4_off..];
        let sport = u16::from_be_bytes([t[0], t[1]]);
        if self.state == State::Listen && self.remote.port == 0 && flags & SYN != 0 {
            self.remote.port = sport; // a listener for any source port
        }
        if u16::from_be_bytes([t[2], t[3]]) != self.local.port || sport != self.remote.port {
            return;
        }
        if !valid && !l4_checksum_ok(frame, &h) {
            self.stats.bad_csum += 1;
            return;
        }
        let seq = u32::from_be_bytes(t[4..8].try_into().unwrap());
        let ack = u32::from_be_bytes(t[8..12].try_into().unwrap());
        let wnd = u32::from(u16::from_be_bytes([t[14], t[15]]));
        let payload = &frame[h.hdr_end()..h.frame_end];
        if flags & RST != 0 {
            self.state = State::Closed;
            return;
        }
        if flags & SYN != 0 {
            self.syn_options(&t[20..usize::from(hdr_len)]);
            self.rcv_nxt = seq.wrapping_add(1);
            match self.state {
                // A SYN, or the same SYN again: its SYN-ACK was lost.
                State::Listen | State::SynReceived => {
                    self.state = State::SynReceived;
                    self.send_syn(true);
                }
                State::SynSent if flags & ACK != 0 && ack == self.snd_nxt => {
                    self.establish(ack);
                    self.snd_wnd = wnd; // not scaled in a SYN
                    self.send_ack(0);
                }
                _ => self.send_ack(0),
            }
            return;
        }
        if self.state == State::SynSent {
            // Without a SYN, nothing here concerns a connection not yet
            // open (tcp_input.c drops it): an ACK of the SYN alone (the
            // peer's answer to a retransmitted SYN) must not count as one.
            return;
        }
        if flags & ACK != 0 {
            let dsack = self.read_sack(&t[20..usize::from(hdr_len)], ack);
            if self.state == State::SynReceived && ack == self.snd_nxt {
                self.establish(ack);
            }
            self.snd_wnd = wnd << self.snd_shift;
            if seq_lt(self.snd_una, ack) && !seq_lt(self.snd_max, ack) {
                let acked = ack.wrapping_sub(self.snd_una);
                self.una_off = self.offset(ack);
                self.snd_una = ack;
                // After a go-back-N, the originals may be acknowledged
                // before their retransmissions are sent: skip those.
                if seq_lt(self.snd_nxt, ack) {
                    self.snd_nxt = ack;
                }
                self.dupacks = 0;
                self.last_progress = Instant::now();
                match self.recover {
                    // A partial ACK: the receiver holds data up to the
                    // next hole, which is resent at once.
                    Some(r) if seq_lt(ack, r) => self.resend(ack),
                    Some(_) => self.recover = None,
                    None => {
                        let grow = (u64::from(acked) * u64::from(self.mss) / u64::from(self.cwnd)).max(1);
                        self.cwnd = (self.cwnd + grow as u32).min(MAX_FLIGHT);
                    }
                }
            } else if ack == self.snd_una && payload.is_empty() && self.snd_una != self.snd_max && !dsack {
                self.dupacks += 1;
                if self.dupacks == 3 && self.recover.is_none() {
                    self.recover = Some(self.snd_max);
                    self.halve();
                    self.resend(ack);
                }
            }
        }
        if !payload.is_empty() {
            self.receive(seq, payload);
        }
        if flags & FIN != 0 && seq.wrapping_add(payload.len() as u32) == self.rcv_nxt {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.fin_received = true;
            self.send_ack(0);
        }
    }

    fn syn_options(&mut self, o: &[u8]) {
        self.snd_shift = 0;
        self.sack_ok = false;
        for (kind, data) in tcp_options(o) {
            match (kind, data) {
                (2, &[a, b]) => self.mss = u16::from_be_bytes([a, b]).max(64),
                (3, &[s]) => self.snd_shift = s.min(14),
                (4, &[]) => self.sack_ok = true,
                _ => {}
            }
        }
        let ours = (self.ifp.mtu() - if self.v6() { 60 } else { 40 }) as u16;
        self.mss = self.mss.min(ours);
    }

    /// Retransmission timeout: go back to the first unacknowledged byte.
    fn timeout(&mut self) {
        self.halve();
        self.stats.timeouts += 1;
        self.recover = None;
        self.snd_nxt = self.snd_una;
        self.last_progress = Instant::now();
    }

    /// The sender knows where its stream ends (it has a FIN to send).
    fn ending(&self) -> bool {
        self.total != u64::MAX && self.total > 0
    }

    /// One pass: receive, process, send. Returns whether anything happened.
    pub fn poll(&mut self) -> bool {
        let more = self.ifp.service(&mut self.input, 256);
        let mut got = false;
        while let Some(f) = self.input.pop() {
            got = true;
            self.input(&f.data, f.info.csum_flags.contains(CsumFlags::L4_VALID));
        }
        if self.unacked > 0 {
            self.send_ack(0);
        }
        let before = self.snd_nxt;
        self.output();
        let stalled = self.snd_una != self.snd_max && self.last_progress.elapsed() > RTO;
        if stalled || (self.state == State::SynSent && self.last_progress.elapsed() > RTO) {
            // The handshake's segments are retransmitted as such.
            match self.state {
                State::SynSent => self.send_syn(false),
                State::SynReceived => self.send_syn(true),
                _ => self.timeout(),
            }
        }
        more || got || before != self.snd_nxt
    }

    /// Ends [`BulkTcp::run`] early, as stalled, when no byte was
    /// delivered (sent and acknowledged, or received) for `d`.
    pub fn set_stall(&mut self, d: Duration) {
        self.stall = Some(d);
    }

    /// Runs until the transfer is over or `timeout` (or a stall, see
    /// [`BulkTcp::set_stall`]); true if it finished.
    pub fn run(&mut self, timeout: Duration) -> bool {
        self.run_with(timeout, |_| true)
    }

    /// [`BulkTcp::run`], calling `progress` after every pass; ends it, as
    /// not finished, when that returns false (the other end gave up).
    pub fn run_with(&mut self, timeout: Duration, mut progress: impl FnMut(&Self) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut last = (self.stats().bytes, self.received(), Instant::now());
        while !self.done() {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            let moved = (self.stats().bytes, self.received());
            if moved != (last.0, last.1) {
                last = (moved.0, moved.1, now);
            } else if self.stall.is_some_and(|d| now.duration_since(last.2) > d) {
                return false;
            }
            let t = self.ifp.idle_token();
            if !self.poll() {
                self.ifp.idle(t, Duration::from_millis(5));
            }
            if !progress(self) {
                return false;
            }
        }
        // Answer the peer's last segments for a moment (its FIN, our ACK).
        let linger = Instant::now() + Duration::from_millis(20);
        while Instant::now() < linger {
            self.poll();
        }
        true
    }
}

/// The options of a TCP header as (kind, data) pairs, up to the end of
/// the list or the first malformed one.
fn tcp_options(mut o: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || loop {
        match *o {
            [1, ref rest @ ..] => o = rest,
            [kind, len, ..] if kind != 0 => {
                let data = o.get(2..usize::from(len))?;
                o = &o[usize::from(len)..];
                return Some((kind, data));
            }
            _ => return None,
        }
    })
}

/// Whether the TCP or UDP checksum of frame `f` (headers `h`) verifies.
pub fn l4_checksum_ok(f: &[u8], h: &hdr::Headers) -> bool {
    let proto = match h.l4 {
        L4::Tcp { .. } => PROTO_TCP,
        L4::Udp => ptnet::net::cksum::PROTO_UDP,
        L4::Other(_) => return false,
    };
    let Some(seg) = f.get(h.l4_off..h.frame_end) else { return false };
    let (l3, len) = (h.l3_off, seg.len() as u32);
    let addr = |at: usize, n: usize| f.get(l3 + at..l3 + at + n);
    let mut c = match h.l3 {
        L3::V4 => match (addr(12, 4), addr(16, 4)) {
            (Some(s), Some(d)) => pseudo_v4(s.try_into().unwrap(), d.try_into().unwrap(), proto, len),
            _ => return false,
        },
        L3::V6 => match (addr(8, 16), addr(24, 16)) {
            (Some(s), Some(d)) => pseudo_v6(s.try_into().unwrap(), d.try_into().unwrap(), proto, len),
            _ => return false,
        },
    };
    c.add(seg);
    c.finish() == 0
}
