//! Test packets: UDP over IPv4 frames like pkt-gen's, whose payload carries
//! the sender, the ring, a sequence number and a checksum of the whole
//! payload, so a receiver can tell lost, duplicated, reordered and
//! corrupted packets apart.
//!
//! Payload layout at offset 42 (after Ethernet, IPv4 and UDP headers):
//! `magic: u16, src: u8, ring: u8, seq: u64, csum: u32, fill...`, little
//! endian. `csum` covers every payload byte but itself. The top 16 bits of
//! `seq` are the run: packets of an earlier run still in the rings (a
//! restarted host may send them late, which is no loss) are told apart
//! from this run's.

/// Smallest frame (Ethernet minimum without FCS).
pub const MIN_SIZE: usize = 60;
const PAYLOAD: usize = 42;
const MAGIC_OFF: usize = PAYLOAD;
const SRC_OFF: usize = PAYLOAD + 2;
const RING_OFF: usize = PAYLOAD + 3;
const SEQ_OFF: usize = PAYLOAD + 4;
const CSUM_OFF: usize = PAYLOAD + 12;
const FILL_OFF: usize = PAYLOAD + 16;

/// Payload tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// One-way test traffic.
    Data = 0x7074,
    /// Latency probe.
    Ping = 0x7069,
    /// Latency probe answer.
    Pong = 0x706f,
}

/// What a received test packet says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketId {
    /// Payload tag.
    pub kind: Kind,
    /// Sending VM.
    pub src: u8,
    /// Sending TX ring.
    pub ring: u8,
    /// Per-(sender, ring) sequence number.
    pub seq: u64,
    /// The run that sent it.
    pub run: u16,
}

/// Bits of the sequence field below the run.
const SEQ_BITS: u32 = 48;
/// The sequence number's part of the field.
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Why a frame is not a valid test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Not one of ours (different EtherType, protocol, or magic).
    Foreign,
    /// Ours, but its checksum does not match: corrupted.
    Corrupt,
}

fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29)
}

/// Checksum of a payload (with the checksum field itself skipped).
fn payload_csum(p: &[u8]) -> u32 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut chunks = p.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap()));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = mix(h, u64::from_le_bytes(tail) ^ (p.len() as u64) << 56);
    (h ^ (h >> 32)) as u32
}

/// Checksum of the payload fields before `csum` (magic, src, ring, seq),
/// computed from their values so a sender never reads back the bytes it
/// just patched.
fn fields_csum(kind: u16, src: u8, ring: u8, seq: u64) -> u32 {
    let w0 = u64::from(kind) | u64::from(src) << 16 | u64::from(ring) << 24 | (seq & 0xffff_ffff) << 32;
    let h = mix(mix(0xcbf2_9ce4_8422_2325, w0), seq >> 32);
    h as u32
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A frame to send, patched per packet.
#[derive(Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Checksum of the fill, which never changes.
    fill_csum: u32,
    run: u16,
}

impl Template {
    /// A `size`-byte UDP frame from VM `src` to VM `dst` (addresses
    /// `src_mac`/`dst_mac`, 10.0.0.`src+1` to 10.0.0.`dst+1`).
    pub fn new(size: usize, src: u8, src_mac: [u8; 6], dst: u8, dst_mac: [u8; 6]) -> Self {
        let size = size.max(MIN_SIZE);
        let mut b = vec![0u8; size];
        b[0..6].copy_from_slice(&dst_mac);
        b[6..12].copy_from_slice(&src_mac);
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut b[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((size - 14) as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, src.wrapping_add(1)]);
        ip[16..20].copy_from_slice(&[10, 0, 0, dst.wrapping_add(1)]);
        let c = ip_checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        b[34..36].copy_from_slice(&1234u16.to_be_bytes());
        b[36..38].copy_from_slice(&4321u16.to_be_bytes());
        b[38..40].copy_from_slice(&((size - 34) as u16).to_be_bytes());
        for (i, x) in b[FILL_OFF..].iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        b[SRC_OFF] = src;
        let fill_csum = payload_csum(&b[FILL_OFF..]);
        Self { bytes: b, fill_csum, run: 0 }
    }

    /// Its packets tagged as sent by `run`.
    pub fn with_run(self, run: u16) -> Self {
        Self { run, ..self }
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: frames have at least [`MIN_SIZE`] bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The frame for `(kind, ring, seq)`.
    pub fn build(&mut self, kind: Kind, ring: u8, seq: u64) -> &[u8] {
        let seq = seq & SEQ_MASK | u64::from(self.run) << SEQ_BITS;
        let b = &mut self.bytes;
        b[MAGIC_OFF..MAGIC_OFF + 2].copy_from_slice(&(kind as u16).to_le_bytes());
        b[RING_OFF] = ring;
        b[SEQ_OFF..SEQ_OFF + 8].copy_from_slice(&seq.to_le_bytes());
        let c = fields_csum(kind as u16, b[SRC_OFF], ring, seq) ^ self.fill_csum;
        b[CSUM_OFF..CSUM_OFF + 4].copy_from_slice(&c.to_le_bytes());
        b
    }
}

/// Parses and verifies a received frame.
pub fn check(pkt: &[u8]) -> Result<PacketId, Bad> {
    if pkt.len() < MIN_SIZE || pkt[12..14] != [0x08, 0x00] || pkt[23] != 17 {
        return Err(Bad::Foreign);
    }
    let magic = u16::from_le_bytes([pkt[MAGIC_OFF], pkt[MAGIC_OFF + 1]]);
    let kind = match magic {
        0x7074 => Kind::Data,
        0x7069 => Kind::Ping,
        0x706f => Kind::Pong,
        _ => return Err(Bad::Foreign),
    };
    let field = u64::from_le_bytes(pkt[SEQ_OFF..SEQ_OFF + 8].try_into().unwrap());
    let id = PacketId {
        kind,
        src: pkt[SRC_OFF],
        ring: pkt[RING_OFF],
        seq: field & SEQ_MASK,
        run: (field >> SEQ_BITS) as u16,
    };
    let stored = u32::from_le_bytes(pkt[CSUM_OFF..CSUM_OFF + 4].try_into().unwrap());
    if stored != fields_csum(magic, id.src, id.ring, field) ^ payload_csum(&pkt[FILL_OFF..]) {
        return Err(Bad::Corrupt);
    }
    Ok(id)
}

/// Turns a received ping into its pong in place: swaps addresses, retags.
pub fn make_pong(pkt: &mut [u8]) {
    let (a, b) = pkt[..12].split_at_mut(6);
    a.swap_with_slice(b);
    let (s, d) = pkt[26..34].split_at_mut(4);
    s.swap_with_slice(d);
    pkt[MAGIC_OFF..MAGIC_OFF + 2].copy_from_slice(&(Kind::Pong as u16).to_le_bytes());
    let seq = u64::from_le_bytes(pkt[SEQ_OFF..SEQ_OFF + 8].try_into().unwrap());
    let c = fields_csum(Kind::Pong as u16, pkt[SRC_OFF], pkt[RING_OFF], seq) ^ payload_csum(&pkt[FILL_OFF..]);
    pkt[CSUM_OFF..CSUM_OFF + 4].copy_from_slice(&c.to_le_bytes());
}

/// A broadcast frame a receiver sends once so the switch learns its
/// address (as an ARP announcement would).
pub fn announce(src_mac: [u8; 6]) -> [u8; MIN_SIZE] {
    let mut b = [0u8; MIN_SIZE];
    b[0..6].copy_from_slice(&[0xff; 6]);
    b[6..12].copy_from_slice(&src_mac);
    b[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    b
}

/// Per-(sender, ring) sequence tracking at a receiver, for one run.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    run: u16,
    next: Vec<u64>,
    /// Packets in order.
    pub in_order: u64,
    /// Sequence numbers skipped (lost, or not yet arrived).
    pub lost: u64,
    /// Packets at or behind an already seen sequence number.
    pub dup_or_reordered: u64,
    /// Packets whose checksum failed.
    pub corrupt: u64,
    /// Frames that were not test packets.
    pub foreign: u64,
    /// Intact test packets of another run.
    pub stale: u64,
}

/// Most rings per sender a tracker follows.
pub const MAX_FLOW_RINGS: usize = 64;

impl SeqTracker {
    /// A tracker of the packets of `run`.
    pub fn for_run(run: u16) -> Self {
        Self { run, ..Self::default() }
    }

    /// Records one received frame; returns its id when it was a valid
    /// test packet of this run.
    pub fn record(&mut self, pkt: &[u8]) -> Option<PacketId> {
        match check(pkt) {
            Ok(id) if id.run != self.run => {
                self.stale += 1;
                None
            }
            Ok(id) => {
                let flow = id.src as usize * MAX_FLOW_RINGS + id.ring as usize % MAX_FLOW_RINGS;
                if self.next.len() <= flow {
                    self.next.resize(flow + 1, 0);
                }
                let exp = self.next[flow];
                if id.seq >= exp {
                    self.lost += id.seq - exp;
                    self.in_order += 1;
                    self.next[flow] = id.seq + 1;
                } else {
                    self.dup_or_reordered += 1;
                }
                Some(id)
            }
            Err(Bad::Corrupt) => {
                self.corrupt += 1;
                None
            }
            Err(Bad::Foreign) => {
                self.foreign += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let mut t = Template::new(60, 1, [2, 0, 0, 0, 0, 2], 2, [2, 0, 0, 0, 0, 3]);
        let pkt = t.build(Kind::Data, 3, 77).to_vec();
        let id = check(&pkt).unwrap();
        assert_eq!((id.src, id.ring, id.seq, id.kind), (1, 3, 77, Kind::Data));
        for i in PAYLOAD..pkt.len() {
            let mut bad = pkt.clone();
            bad[i] ^= 0x10;
            // A damaged magic makes the frame foreign; anything else corrupt.
            let want = if i < SRC_OFF { Bad::Foreign } else { Bad::Corrupt };
            assert_eq!(check(&bad), Err(want), "flip at byte {i} undetected");
        }
        let mut pong = pkt.clone();
        make_pong(&mut pong);
        assert_eq!(check(&pong).unwrap().kind, Kind::Pong);
        assert_eq!(pong[0..6], pkt[6..12]);
    }

    #[test]
    fn packets_of_another_run_are_stale_not_duplicates() {
        // A host restarted after a hostile spell sends what a previous
        // run left in a TX ring: high sequence numbers of that run must
        // not make this run's packets look reordered.
        let mut old = Template::new(60, 1, [2, 0, 0, 0, 0, 2], 2, [2, 0, 0, 0, 0, 3]).with_run(1);
        let mut new = Template::new(60, 1, [2, 0, 0, 0, 0, 2], 2, [2, 0, 0, 0, 0, 3]).with_run(2);
        let mut t = SeqTracker::for_run(2);
        assert!(t.record(new.build(Kind::Data, 0, 0)).is_some());
        assert!(t.record(old.build(Kind::Data, 0, 90_000)).is_none());
        assert_eq!(t.record(new.build(Kind::Data, 0, 1)).map(|id| (id.seq, id.run)), Some((1, 2)));
        assert_eq!((t.in_order, t.dup_or_reordered, t.stale, t.corrupt), (2, 0, 1, 0));
    }

    #[test]
    fn frames_of_any_length_are_refused_without_a_panic() {
        // A hostile host hands the application slots of any length (a
        // 5-byte frame once crashed pkt-gen's receiver): each truncation
        // of a good frame is foreign or corrupt, never a panic.
        let mut t = Template::new(60, 1, [2, 0, 0, 0, 0, 2], 2, [2, 0, 0, 0, 0, 3]);
        let pkt = t.build(Kind::Ping, 0, 9).to_vec();
        let mut tr = SeqTracker::default();
        for len in 0..pkt.len() {
            assert!(check(&pkt[..len]).is_err(), "a {len}-byte frame was accepted");
            assert_eq!(tr.record(&pkt[..len]), None);
        }
        assert_eq!(tr.in_order, 0);
    }

    #[test]
    fn tracker_counts_loss_and_duplicates() {
        let mut t = Template::new(128, 0, [2; 6], 1, [3; 6]);
        let mut tr = SeqTracker::default();
        for seq in [0u64, 1, 2, 5, 5, 3, 6] {
            let p = t.build(Kind::Data, 0, seq).to_vec();
            tr.record(&p);
        }
        assert_eq!((tr.in_order, tr.lost, tr.dup_or_reordered), (5, 2, 2));
    }
}
