//! Software fallbacks for offloads a receiver does not take: completing a
//! partial (`NEEDS_CSUM`) checksum, and cutting a TCP super-packet (TSO or
//! GSO) into MSS-sized segments with their own headers and checksums, as
//! the segments a sender without TSO would have sent.
//!
//! The driver uses them on receive when RXCSUM or LRO is off; the
//! simulated switch uses them between ports that disagree on the
//! virtio-net header, as netmap's VALE does.

use super::cksum::{pseudo_v4, pseudo_v6, Csum, PROTO_TCP};
use super::frame::{csum_range, FrameInfo, FrameSink, FrameSource};
use super::hdr::{tcp_flags, Headers, L3, L4, MAX_HDR};

/// Two bytes of a frame to replace while copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// Offset of the first byte.
    pub at: usize,
    /// The new bytes.
    pub bytes: [u8; 2],
}

/// Computes the checksum a `NEEDS_CSUM` frame still needs: the sum over
/// `[start, len)`, which includes the partial sum the sender left in the
/// field at `start + offset`. `None` when the range is outside the frame.
pub fn complete_csum<F: FrameSource + ?Sized>(f: &F, start: usize, offset: usize) -> Option<Patch> {
    let at = start.checked_add(offset)?;
    if at.checked_add(2)? > f.len() {
        return None;
    }
    let mut c = Csum::new();
    if !csum_range(f, start, f.len().checked_sub(start)?, &mut c) {
        return None;
    }
    Some(Patch { at, bytes: c.finish().to_be_bytes() })
}

/// Hands a whole frame to `sink`, with an optional patch applied on the
/// way. Returns false when the sink had no room (nothing was delivered).
pub fn emit_frame<F, S>(f: &F, sink: &mut S, info: &FrameInfo, patch: Option<Patch>) -> bool
where
    F: FrameSource + ?Sized,
    S: FrameSink,
{
    let len = f.len();
    if !sink.begin(len, info) {
        return false;
    }
    match patch {
        Some(p) if p.at.saturating_add(2) <= len => {
            f.emit(0, p.at, sink);
            sink.bytes(&p.bytes);
            f.emit(p.at.saturating_add(2), len.saturating_sub(p.at).saturating_sub(2), sink);
        }
        _ => {
            f.emit(0, len, sink);
        }
    }
    sink.end();
    true
}

/// Why a super-packet could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// Not TCP, or headers longer than the parser handles.
    NotTcp,
    /// A segment size below 64 bytes (or zero).
    BadMss,
    /// The frame could not be read.
    Short,
}

/// Smallest segment size accepted (a tiny MSS would turn one frame into
/// thousands).
pub const MIN_MSS: u16 = 64;

/// Outcome of a segmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segmented {
    /// Segments delivered.
    pub sent: u32,
    /// Segments the sink had no room for.
    pub dropped: u32,
}

/// Fixed-offset access to a header buffer that never panics: every offset
/// used below is inside the headers `parse` validated, and one that were
/// not would read as zero and write nowhere.
struct Hdr<'a>(&'a mut [u8]);

impl Hdr<'_> {
    fn get<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut v = [0u8; N];
        if let Some(s) = at.checked_add(N).and_then(|e| self.0.get(at..e)) {
            v.copy_from_slice(s);
        }
        v
    }

    fn put(&mut self, at: usize, v: &[u8]) {
        if let Some(d) = at.checked_add(v.len()).and_then(|e| self.0.get_mut(at..e)) {
            d.copy_from_slice(v);
        }
    }

    fn range(&self, from: usize, to: usize) -> &[u8] {
        self.0.get(from..to).unwrap_or(&[])
    }
}

/// Cuts the TCP frame `f` (headers `h`) into segments of at most `mss`
/// payload bytes, each with fixed-up IP length, IPv4 id and checksum, TCP
/// sequence number, flags (FIN and PSH only on the last segment, CWR only
/// on the first) and a complete TCP checksum.
pub fn segment_tcp<F, S>(f: &F, h: &Headers, mss: u16, info: &FrameInfo, sink: &mut S) -> Result<Segmented, GsoError>
where
    F: FrameSource + ?Sized,
    S: FrameSink,
{
    // Offsets below are bounded by MAX_HDR and lengths by the frame, at
    // most 64 KiB plus headers: none of this arithmetic can overflow.
    #![allow(clippy::arithmetic_side_effects)]
    let L4::Tcp { hdr_len: tcp_len, flags } = h.l4 else {
        return Err(GsoError::NotTcp);
    };
    let hdr_end = h.hdr_end();
    if hdr_end > MAX_HDR || h.frame_end > f.len() || h.l4_off < h.l3_off + 20 {
        return Err(GsoError::NotTcp);
    }
    if mss < MIN_MSS {
        return Err(GsoError::BadMss);
    }
    let mut buf = [0u8; MAX_HDR];
    let raw = buf.get_mut(..hdr_end).ok_or(GsoError::Short)?;
    if !f.read(0, raw) {
        return Err(GsoError::Short);
    }
    let mut hdr = Hdr(raw);
    let (l3, l4) = (h.l3_off, h.l4_off);
    let seq0 = u32::from_be_bytes(hdr.get(l4 + 4));
    let id0 = u16::from_be_bytes(hdr.get(l3 + 4));
    let payload = h.frame_end - hdr_end;
    let mss = usize::from(mss);
    let mut out = Segmented::default();
    let (mut off, mut i) = (0usize, 0u32);
    loop {
        let n = (payload - off).min(mss);
        let last = off + n >= payload;
        let tcp_seg_len = usize::from(tcp_len) + n;
        match h.l3 {
            L3::V4 => {
                hdr.put(l3 + 2, &((l4 - l3 + tcp_seg_len) as u16).to_be_bytes());
                hdr.put(l3 + 4, &id0.wrapping_add(i as u16).to_be_bytes());
                hdr.put(l3 + 10, &[0, 0]);
                let mut c = Csum::new();
                c.add(hdr.range(l3, l4));
                hdr.put(l3 + 10, &c.finish().to_be_bytes());
            }
            L3::V6 => hdr.put(l3 + 4, &((l4 - l3 - 40 + tcp_seg_len) as u16).to_be_bytes()),
        }
        hdr.put(l4 + 4, &seq0.wrapping_add(off as u32).to_be_bytes());
        let mut fl = flags;
        if !last {
            fl &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if i > 0 {
            fl &= !tcp_flags::CWR;
        }
        hdr.put(l4 + 13, &[fl]);
        hdr.put(l4 + 16, &[0, 0]);
        let len = tcp_seg_len as u32;
        let mut c = match h.l3 {
            L3::V4 => pseudo_v4(hdr.get(l3 + 12), hdr.get(l3 + 16), PROTO_TCP, len),
            L3::V6 => pseudo_v6(hdr.get(l3 + 8), hdr.get(l3 + 24), PROTO_TCP, len),
        };
        c.add(hdr.range(l4, hdr_end));
        if !csum_range(f, hdr_end + off, n, &mut c) {
            return Err(GsoError::Short);
        }
        hdr.put(l4 + 16, &c.finish().to_be_bytes());
        if sink.begin(hdr_end + n, info) {
            sink.bytes(hdr.range(0, hdr_end));
            f.emit(hdr_end + off, n, sink);
            sink.end();
            out.sent += 1;
        } else {
            out.dropped += 1;
        }
        off += n;
        i += 1;
        if last {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::hdr::{parse, tests::tcp4};
    extern crate std;
    use std::vec::Vec;

    /// Collects frames into vectors.
    #[derive(Default)]
    pub struct VecSink {
        pub frames: Vec<Vec<u8>>,
        pub refuse_after: Option<usize>,
    }

    impl FrameSink for VecSink {
        fn begin(&mut self, _len: usize, _info: &FrameInfo) -> bool {
            if self.refuse_after.is_some_and(|n| self.frames.len() >= n) {
                return false;
            }
            self.frames.push(Vec::new());
            true
        }
        fn bytes(&mut self, b: &[u8]) {
            self.frames.last_mut().unwrap().extend_from_slice(b);
        }
        fn shared(&mut self, r: &crate::shmem::SharedRegion, off: usize, len: usize) {
            let mut v = std::vec![0u8; len];
            r.read_bytes(off, &mut v).unwrap();
            self.bytes(&v);
        }
        fn end(&mut self) {}
    }

    fn tcp_csum_ok(f: &[u8]) -> bool {
        let h = parse(f, f.len()).unwrap();
        let seg = &f[h.l4_off..h.frame_end];
        let mut c = pseudo_v4(f[26..30].try_into().unwrap(), f[30..34].try_into().unwrap(), 6, seg.len() as u32);
        c.add(seg);
        let mut ip = Csum::new();
        ip.add(&f[h.l3_off..h.l4_off]);
        c.finish() == 0 && ip.finish() == 0
    }

    #[test]
    fn a_super_packet_becomes_mss_segments() {
        let mut f = tcp4(3000, false);
        f[47] |= tcp_flags::FIN | tcp_flags::CWR;
        let h = parse(&f, f.len()).unwrap();
        let mut sink = VecSink::default();
        let r = segment_tcp(f.as_slice(), &h, 1448, &FrameInfo::default(), &mut sink).unwrap();
        assert_eq!(r, Segmented { sent: 3, dropped: 0 });
        let lens: Vec<usize> = sink.frames.iter().map(|s| s.len()).collect();
        assert_eq!(lens, [54 + 1448, 54 + 1448, 54 + 104]);
        let mut payload = Vec::new();
        for (i, s) in sink.frames.iter().enumerate() {
            assert!(tcp_csum_ok(s), "segment {i} checksum");
            let seq = u32::from_be_bytes(s[38..42].try_into().unwrap());
            assert_eq!(seq, 100 + 1448 * i as u32);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 1 + i as u16, "IP id");
            let fl = s[47];
            assert_eq!(fl & tcp_flags::FIN != 0, i == 2);
            assert_eq!(fl & tcp_flags::CWR != 0, i == 0);
            payload.extend_from_slice(&s[54..]);
        }
        assert_eq!(payload, f[54..]);
    }

    #[test]
    fn refused_segments_are_counted_and_bad_mss_rejected() {
        let f = tcp4(3000, false);
        let h = parse(&f, f.len()).unwrap();
        let mut sink = VecSink { refuse_after: Some(1), ..VecSink::default() };
        let r = segment_tcp(f.as_slice(), &h, 1000, &FrameInfo::default(), &mut sink).unwrap();
        assert_eq!(r, Segmented { sent: 1, dropped: 2 });
        assert_eq!(segment_tcp(f.as_slice(), &h, 10, &FrameInfo::default(), &mut sink), Err(GsoError::BadMss));
    }

    #[test]
    fn partial_checksums_are_completed() {
        let mut f = tcp4(501, false);
        let h = parse(&f, f.len()).unwrap();
        // The sender leaves the pseudo-header sum in the field.
        let p = pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, (f.len() - 34) as u32).fold();
        f[50..52].copy_from_slice(&p.to_be_bytes());
        let patch = complete_csum(f.as_slice(), h.l4_off, 16).unwrap();
        let mut sink = VecSink::default();
        assert!(emit_frame(f.as_slice(), &mut sink, &FrameInfo::default(), Some(patch)));
        assert!(tcp_csum_ok(&sink.frames[0]));
        assert_eq!(complete_csum(f.as_slice(), f.len() - 1, 0), None);
    }
}
