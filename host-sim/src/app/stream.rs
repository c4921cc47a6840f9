//! A deterministic byte stream for bulk transfers and its digest, so both
//! ends of a connection can check content without storing it.

/// The stream's bytes: a counter-based generator, cheap and position
/// addressable (byte `i` depends only on `i` and the seed).
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    seed: u64,
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pattern {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Fills `buf` with the stream's bytes starting at offset `at`.
    pub fn fill(&self, at: u64, buf: &mut [u8]) {
        let mut pos = at;
        let mut i = 0;
        while i < buf.len() {
            let word = mix(self.seed ^ (pos / 8)).to_le_bytes();
            let k = (pos % 8) as usize;
            let n = (8 - k).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&word[k..k + n]);
            i += n;
            pos += n as u64;
        }
    }

    /// Length of the common prefix of `buf` and the stream at `at`.
    pub fn matching(&self, at: u64, buf: &[u8]) -> usize {
        let mut want = [0u8; 4096];
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(want.len());
            self.fill(at + done as u64, &mut want[..n]);
            if let Some(d) = buf[done..done + n].iter().zip(&want[..n]).position(|(a, b)| a != b) {
                return done + d;
            }
            done += n;
        }
        buf.len()
    }
}

/// A running digest (FNV-1a, 64-bit) of the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Adds bytes.
    pub fn update(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_position_addressable() {
        let p = Pattern::new(7);
        let mut whole = vec![0u8; 100];
        p.fill(3, &mut whole);
        let mut part = vec![0u8; 40];
        p.fill(13, &mut part);
        assert_eq!(&whole[10..50], &part[..]);
        assert_eq!(p.matching(3, &whole), 100);
        whole[77] ^= 1;
        assert_eq!(p.matching(3, &whole), 77);
    }
}
