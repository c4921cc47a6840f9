//! The Internet checksum (RFC 1071), summed incrementally over pieces of
//! any length and alignment, and the TCP/UDP pseudo-headers.

/// A running ones'-complement sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Csum {
    sum: u64,
    /// An odd number of bytes has been added: the next byte is the low
    /// half of a 16-bit word.
    odd: bool,
}

impl Csum {
    /// An empty sum.
    pub const fn new() -> Self {
        Self { sum: 0, odd: false }
    }

    /// Adds bytes that follow everything added so far.
    pub fn add(&mut self, mut b: &[u8]) {
        if self.odd {
            if let Some((&first, rest)) = b.split_first() {
                self.sum = self.sum.wrapping_add(u64::from(first));
                self.odd = false;
                b = rest;
            }
        }
        let mut words = b.chunks_exact(2);
        for w in &mut words {
            if let [hi, lo] = *w {
                self.sum = self.sum.wrapping_add(u64::from(u16::from_be_bytes([hi, lo])));
            }
        }
        if let [last] = *words.remainder() {
            self.sum = self.sum.wrapping_add(u64::from(last) << 8);
            self.odd = true;
        }
    }

    /// Adds one 16-bit word at an even position.
    pub fn add_u16(&mut self, w: u16) {
        self.sum = self.sum.wrapping_add(u64::from(w));
    }

    /// Adds a 32-bit value as two words.
    pub fn add_u32(&mut self, w: u32) {
        self.add_u16((w >> 16) as u16);
        self.add_u16(w as u16);
    }

    /// The folded 16-bit sum (not complemented).
    pub fn fold(&self) -> u16 {
        let mut s = self.sum;
        while s > 0xffff {
            s = (s & 0xffff).wrapping_add(s >> 16);
        }
        s as u16
    }

    /// The checksum to store: the complement of the folded sum.
    pub fn finish(&self) -> u16 {
        !self.fold()
    }
}

/// IP protocol numbers.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// The IPv4 pseudo-header sum for a transport segment of `len` bytes.
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u32) -> Csum {
    let mut c = Csum::new();
    c.add(&src);
    c.add(&dst);
    c.add_u16(u16::from(proto));
    c.add_u32(len);
    c
}

/// The IPv6 pseudo-header sum.
pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], proto: u8, len: u32) -> Csum {
    let mut c = Csum::new();
    c.add(&src);
    c.add(&dst);
    c.add_u32(len);
    c.add_u16(u16::from(proto));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_split_sums_agree() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let mut c = Csum::new();
        c.add(&data);
        assert_eq!(c.fold(), 0xddf2);
        // Any split, even an odd one, gives the same sum.
        for cut in 0..data.len() {
            let mut s = Csum::new();
            s.add(&data[..cut]);
            s.add(&data[cut..]);
            assert_eq!(s.fold(), 0xddf2, "split at {cut}");
        }
        let mut three = Csum::new();
        three.add(&data[..1]);
        three.add(&data[1..4]);
        three.add(&data[4..]);
        assert_eq!(three.fold(), 0xddf2);
    }

    #[test]
    fn an_ipv4_header_checksums_to_zero() {
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        let mut c = Csum::new();
        c.add(&hdr);
        assert_eq!(c.finish(), 0);
    }
}
