//! What the fuzz targets share: reading the fuzzer's bytes as a script of
//! host actions, and a device brought up against the fake host.

use ptnet::fake::{FakeKernel, FakeRegs, Fixture, Geometry, Pkt};
use ptnet::csb::kern_write;
use ptnet::kring::Dir;
use ptnet::rx::RxRing;
use ptnet::tx::TxRing;
use ptnet::{Config, Ptnet};

/// The fuzzer's bytes, consumed front to back; zeros once exhausted.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One TX and one RX ring of 8 slots, 256-byte buffers.
pub const GEOMETRY: Geometry = Geometry { tx: 1, rx: 1, slots: 8, bufs: 40, buf_size: 256 };

pub type Dev<'a> = Ptnet<&'a FakeKernel, &'a FakeRegs>;

/// The device attached with the virtio-net header and both rings up,
/// the host's TX ring empty (all slots free).
pub fn running(fx: &Fixture) -> (Dev<'_>, TxRing<Pkt, 4>, RxRing) {
    let dev = fx.attach(Config { want_vnet_hdr: true, require_vnet_hdr: false }).expect("a valid device attaches");
    let slots = fx.geometry.slots;
    let mut tx = TxRing::new(slots);
    let mut rx = RxRing::new(slots);
    kern_write(&fx.host_csb(0), 0, slots - 1);
    dev.up([&mut tx.kring, &mut rx.kring].into_iter()).expect("bring-up");
    (dev, tx, rx)
}

/// The ring pointers stay inside the ring whatever the host wrote.
pub fn check_kring(k: &ptnet::Kring, dir: Dir) {
    let n = k.num_slots;
    assert!(k.hwcur < n && k.hwtail < n && k.rhead < n && k.rcur < n, "{dir:?} ring pointers out of range: {k:?}");
}
