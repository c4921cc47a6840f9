//! A deterministic byte stream for bulk transfers and its digest, so both
//! ends of a connection can check content without storing it. Both work a
//! 64-bit word at a time (and vectorise), so checking costs about what a
//! copy does and does not hide the datapath's cost.

/// The stream's bytes: word `i` (bytes `8i..8i+8`) mixes `i` into every
/// 16-bit lane with shifts and xors (which vectorise on any x86-64) and
/// the seed, so each word is distinct for the first 2^32 words and any
/// range can be generated on its own.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    seed: u64,
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn word(seed: u64, i: u64) -> u64 {
    i ^ (i << 16) ^ (i << 32) ^ (i << 48) ^ seed
}

/// Writes words `base..base + n` to `dst`.
///
/// # Safety
/// `dst` must be valid for `8 * n` bytes of writes.
#[inline(always)]
unsafe fn put_words(seed: u64, base: u64, dst: *mut u8, n: usize) {
    for i in 0..n {
        // SAFETY: i < n, so the 8 bytes at dst + 8i are in range.
        unsafe { dst.add(8 * i).cast::<u64>().write_unaligned(word(seed, base + i as u64).to_le()) };
    }
}

/// [`put_words`] compiled for AVX2 (four words per instruction).
///
/// # Safety
/// As [`put_words`], and the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn put_words_avx2(seed: u64, base: u64, dst: *mut u8, n: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { put_words(seed, base, dst, n) }
}

/// The xor of every word of `src` with the stream's words from `base`:
/// zero exactly when they all match.
#[inline(always)]
fn diff_words(seed: u64, base: u64, src: &[u8]) -> u64 {
    // A plain loop (no closure), so it inlines into the AVX2 copy below.
    let mut acc = 0;
    for (i, w) in (base..).zip(src.chunks_exact(8)) {
        let got = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        acc |= got ^ word(seed, i);
    }
    acc
}

/// [`diff_words`] compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn diff_words_avx2(seed: u64, base: u64, src: &[u8]) -> u64 {
    diff_words(seed, base, src)
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Pattern {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed: seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1 }
    }

    fn word(&self, i: u64) -> [u8; 8] {
        word(self.seed, i).to_le_bytes()
    }

    /// Writes `n` bytes of the stream from offset `at` to `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for `n` bytes of writes.
    unsafe fn write(&self, at: u64, dst: *mut u8, n: usize) {
        let head = (((8 - at % 8) % 8) as usize).min(n);
        let k = (at % 8) as usize;
        let words = (n - head) / 8;
        let base = (at + head as u64) / 8;
        let first = self.word(at / 8);
        let last = self.word(base + words as u64);
        // SAFETY: head + 8 * words + (n - done) == n bytes are written,
        // all within `dst`'s n bytes; `first[k..]` has at least `head`
        // bytes (head <= 8 - k) and `last` at least n - done (< 8).
        unsafe {
            std::ptr::copy_nonoverlapping(first[k..].as_ptr(), dst, head);
            let body = dst.add(head);
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                put_words_avx2(self.seed, base, body, words);
            } else {
                put_words(self.seed, base, body, words);
            }
            #[cfg(not(target_arch = "x86_64"))]
            put_words(self.seed, base, body, words);
            let done = head + 8 * words;
            std::ptr::copy_nonoverlapping(last.as_ptr(), dst.add(done), n - done);
        }
    }

    /// Fills `buf` with the stream's bytes starting at offset `at`.
    pub fn fill(&self, at: u64, buf: &mut [u8]) {
        // SAFETY: `buf` is valid for its length.
        unsafe { self.write(at, buf.as_mut_ptr(), buf.len()) }
    }

    /// Appends `n` bytes of the stream from offset `at` to `v`, writing
    /// them once (no zeroing pass first).
    pub fn extend(&self, at: u64, n: usize, v: &mut Vec<u8>) {
        v.reserve(n);
        let len = v.len();
        // SAFETY: `reserve` made room for `n` more bytes, `write` fills all
        // of them, then they become part of the vector.
        unsafe {
            self.write(at, v.as_mut_ptr().add(len), n);
            v.set_len(len + n);
        }
    }

    /// Length of the common prefix of `buf` and the stream at `at`.
    pub fn matching(&self, at: u64, buf: &[u8]) -> usize {
        // Whole words are compared in blocks without branching; only a
        // block with a difference is searched byte by byte.
        let head = (((8 - at % 8) % 8) as usize).min(buf.len());
        let mut want = [0u8; 8];
        if head > 0 {
            self.fill(at, &mut want[..head]);
            if buf[..head] != want[..head] {
                return buf[..head].iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            }
        }
        let base = (at + head as u64) / 8;
        let body = &buf[head..];
        let fast = avx2();
        for (bi, block) in body.chunks(4096).enumerate() {
            let first = base + (bi * 512) as u64;
            let whole = block.len() / 8 * 8;
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only called when the CPU has AVX2.
            let diff = if fast {
                unsafe { diff_words_avx2(self.seed, first, &block[..whole]) }
            } else {
                diff_words(self.seed, first, &block[..whole])
            };
            #[cfg(not(target_arch = "x86_64"))]
            let diff = {
                let _ = fast;
                diff_words(self.seed, first, &block[..whole])
            };
            let tail = &block[whole..];
            let bad = diff != 0 || (!tail.is_empty() && tail != &self.word(first + (whole / 8) as u64)[..tail.len()]);
            if bad {
                let off = head + bi * 4096;
                let mut exp = vec![0u8; block.len()];
                self.fill(at + off as u64, &mut exp);
                return off + block.iter().zip(&exp).position(|(a, b)| a != b).unwrap_or(0);
            }
        }
        buf.len()
    }
}

/// A running digest of the bytes seen so far: four lanes of
/// multiply-rotate over 64-bit words, fed in stream order whatever the
/// chunking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    lanes: [u64; 4],
    pending: [u8; 32],
    npending: usize,
    len: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Self { lanes: [1, 2, 3, 4], pending: [0; 32], npending: 0, len: 0 }
    }
}

impl Digest {
    #[inline]
    fn block(&mut self, b: &[u8]) {
        for (l, w) in self.lanes.iter_mut().zip(b.chunks_exact(8)) {
            let w = u64::from_le_bytes(w.try_into().unwrap());
            *l = (*l ^ w).wrapping_mul(K).rotate_left(31);
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, mut b: &[u8]) {
        self.len += b.len() as u64;
        if self.npending > 0 {
            let n = (32 - self.npending).min(b.len());
            self.pending[self.npending..self.npending + n].copy_from_slice(&b[..n]);
            self.npending += n;
            b = &b[n..];
            if self.npending < 32 {
                return;
            }
            let p = self.pending;
            self.block(&p);
            self.npending = 0;
        }
        let mut blocks = b.chunks_exact(32);
        for blk in &mut blocks {
            self.block(blk);
        }
        let r = blocks.remainder();
        self.pending[..r.len()].copy_from_slice(r);
        self.npending = r.len();
    }

    /// The digest value.
    pub fn value(&self) -> u64 {
        let mut tail = [0u8; 32];
        tail[..self.npending].copy_from_slice(&self.pending[..self.npending]);
        let mut d = *self;
        d.block(&tail);
        d.lanes.iter().fold(d.len, |h, &l| (h ^ l).wrapping_mul(K).rotate_left(17))
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
        for (from, len) in [(13, 40), (0, 5), (7, 1), (11, 89)] {
            let mut part = vec![0u8; len];
            p.fill(3 + from as u64, &mut part);
            assert_eq!(&whole[from..from + len], &part[..]);
        }
        assert_eq!(p.matching(3, &whole), 100);
        let mut v = vec![9u8];
        p.extend(3, 100, &mut v);
        assert_eq!(&v[1..], &whole[..]);
        for bad in [0, 4, 5, 77, 99] {
            let mut w = whole.clone();
            w[bad] ^= 1;
            assert_eq!(p.matching(3, &w), bad);
        }
        let mut big = vec![0u8; 5000];
        p.fill(11, &mut big);
        big[4321] ^= 0x80;
        assert_eq!(p.matching(11, &big), 4321);
    }

    #[test]
    fn the_digest_ignores_chunking_and_sees_every_byte() {
        let p = Pattern::new(1);
        let mut data = vec![0u8; 1000];
        p.fill(0, &mut data);
        let mut a = Digest::default();
        a.update(&data);
        let mut b = Digest::default();
        for c in data.chunks(7) {
            b.update(c);
        }
        assert_eq!(a.value(), b.value());
        data[999] ^= 1;
        let mut c = Digest::default();
        c.update(&data);
        assert_ne!(a.value(), c.value());
        let mut d = Digest::default();
        d.update(&data[..999]);
        assert_ne!(a.value(), d.value(), "length matters");
    }
}
