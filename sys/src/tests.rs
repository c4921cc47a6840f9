//! Attach, bring-up and detach against a fake device: every lie a device
//! can tell at attach is refused with its own error, leaving nothing
//! allocated and nothing programmed.

extern crate std;

use crate::abi::netmap::NetmapRing;
use crate::abi::regs::{memdev as mreg, ptnet as reg};
use crate::csb::{kern_write, CsbMem, CsbRing, Field, SyncOpts};
use crate::device::{Config, Ptnet, CSB_PAGE};
use crate::error::AttachError;
use crate::fake::{FakeKernel, FakeRegs, Geometry, Layout, FAKE_PADDR, GEOMETRY};
use crate::kring::Dir;
use crate::{Kring, SyncError};
use core::mem::offset_of;
use std::vec::Vec;

struct Setup {
    kernel: FakeKernel,
    nic: FakeRegs,
    memdev: FakeRegs,
    layout: Layout,
}

impl Setup {
    fn new(g: Geometry) -> Self {
        let layout = Layout::new(g);
        Self {
            kernel: FakeKernel::new(),
            nic: FakeRegs::new(true, &layout.nic),
            memdev: FakeRegs::new(false, &layout.memdev),
            layout,
        }
    }

    fn attach(&self, cfg: Config) -> Result<Ptnet<&FakeKernel, &FakeRegs>, AttachError> {
        let bar = self.layout.region();
        let memdev = &self.memdev;
        let vectors = self
            .nic
            .read32_raw(reg::NUM_TX_RINGS)
            .saturating_add(self.nic.read32_raw(reg::NUM_RX_RINGS));
        Ptnet::attach(&self.kernel, &self.nic, vectors, cfg, |id| {
            (id == 7).then_some((memdev, bar))
        })
        .map_err(|(_, _, e)| e)
    }

    /// Attach must fail with `want`, leaving no memory and no CSB address.
    fn refused(&self, want: impl Fn(&AttachError) -> bool) {
        let err = self
            .attach(Config::default())
            .err()
            .expect("attach must fail");
        assert!(want(&err), "unexpected error: {err:?}");
        assert_eq!(
            self.kernel.live.get(),
            0,
            "attach failure leaked DMA memory"
        );
        assert!(
            self.nic.wrote(reg::CSB_GH_BAL).is_empty(),
            "CSB programmed on failure"
        );
        assert!(self
            .kernel
            .logs
            .borrow()
            .iter()
            .any(|l| l.contains("attach failed")));
    }
}

impl FakeRegs {
    fn read32_raw(&self, off: u32) -> u32 {
        self.values.borrow().get(&off).copied().unwrap_or(0)
    }
}

#[test]
fn attach_reads_validates_and_programs_the_csb() {
    let s = Setup::new(GEOMETRY);
    let dev = s.attach(Config::default()).unwrap();
    let i = *dev.info();
    assert_eq!(i.mac, [0, 2, 0, 0, 0, 0x42]);
    assert_eq!(
        (i.num_tx_rings, i.num_rx_rings, i.num_tx_slots, i.buf_size),
        (1, 1, 4, 64)
    );
    assert_eq!(i.features.bits(), 1);
    assert_eq!(i.vnet_hdr_len, 10);
    assert_eq!(s.nic.wrote(reg::CSB_GH_BAH), [(FAKE_PADDR >> 32) as u32]);
    assert_eq!(s.nic.wrote(reg::CSB_GH_BAL), [FAKE_PADDR as u32]);
    assert_eq!(
        s.nic.wrote(reg::CSB_HG_BAL),
        [(FAKE_PADDR + CSB_PAGE as u64) as u32]
    );
    assert!(s.kernel.logs.borrow()[0].contains("00:02:00:00:00:42, 1 tx/1 rx rings"));
    let (_, _) = dev.detach();
    assert_eq!(s.kernel.live.get(), 0);
    assert_eq!(s.nic.wrote(reg::CSB_GH_BAL).last(), Some(&0));
}

#[test]
fn lying_ring_and_slot_counts_are_refused() {
    for (r, v) in [
        (reg::NUM_TX_RINGS, 0),
        (reg::NUM_RX_RINGS, 0),
        (reg::NUM_TX_RINGS, 1000),
        (reg::NUM_RX_RINGS, u32::MAX),
    ] {
        let s = Setup::new(GEOMETRY);
        s.nic.set(r, v);
        s.refused(|e| {
            matches!(
                e,
                AttachError::BadRingCount { .. } | AttachError::NotEnoughVectors { .. }
            )
        });
    }
    for v in [0, 1, 1 << 20] {
        let s = Setup::new(GEOMETRY);
        s.nic.set(reg::NUM_RX_SLOTS, v);
        s.refused(|e| matches!(e, AttachError::BadSlotCount { dir: Dir::Rx, .. }));
    }
    // A slot count the rings do not have.
    let s = Setup::new(GEOMETRY);
    s.nic.set(reg::NUM_TX_SLOTS, 8);
    s.refused(|e| {
        matches!(
            e,
            AttachError::RingMismatch {
                what: "num_slots",
                ..
            } | AttachError::BadRingOffset { .. }
        )
    });
}

#[test]
fn memory_geometry_lies_are_refused() {
    let s = Setup::new(GEOMETRY);
    s.memdev.set(mreg::MEMSIZE_HI, 1);
    s.refused(|e| matches!(e, AttachError::BadMemSize { .. }));

    let s = Setup::new(GEOMETRY);
    s.memdev.set(mreg::BUF_POOL_OBJNUM, 1 << 30);
    s.refused(|e| matches!(e, AttachError::BadPool { pool: "buf", .. }));

    let s = Setup::new(GEOMETRY);
    s.memdev.set(mreg::MEMID, 8);
    s.refused(|e| matches!(e, AttachError::MemIdMismatch { .. }));

    let s = Setup::new(GEOMETRY);
    s.nic.set(reg::HOSTMEMID, 9);
    s.refused(|e| matches!(e, AttachError::NoMemdev { memid: 9 }));
}

#[test]
fn offsets_outside_memory_and_overlapping_rings_are_refused() {
    let s = Setup::new(GEOMETRY);
    s.nic.set(reg::NIFP_OFS, 1 << 20);
    s.refused(|e| matches!(e, AttachError::BadNifpOffset { .. }));

    for rel in [-64i64, 1 << 40, 3, i64::MIN] {
        let s = Setup::new(GEOMETRY);
        s.layout.set_ring_ofs(1, rel);
        s.refused(|e| matches!(e, AttachError::BadRingOffset { dir: Dir::Rx, .. }));
    }

    // RX ring 0 pointed at TX ring 0: same memory twice.
    let s = Setup::new(GEOMETRY);
    let tx0 = s.layout.ring_ofs[0] as i64;
    s.layout.set_ring_ofs(1, tx0);
    s.refused(|e| {
        matches!(
            e,
            AttachError::RingsOverlap { .. } | AttachError::RingMismatch { what: "dir", .. }
        )
    });

    // Two RX rings sharing memory, each header otherwise valid.
    let s = Setup::new(Geometry { rx: 2, ..GEOMETRY });
    let rx0 = s.layout.ring_ofs[1] as i64;
    s.layout.set_ring_ofs(2, rx0);
    s.refused(|e| matches!(e, AttachError::RingsOverlap { .. }));
}

#[test]
fn ring_headers_must_match_the_pools() {
    let s = Setup::new(GEOMETRY);
    s.layout
        .ring_field_u32(Dir::Tx, 0, offset_of!(NetmapRing, nr_buf_size), 2048);
    s.refused(|e| {
        matches!(
            e,
            AttachError::RingMismatch {
                what: "nr_buf_size",
                ..
            }
        )
    });

    let s = Setup::new(GEOMETRY);
    s.layout
        .ring_field_u64(Dir::Rx, 0, offset_of!(NetmapRing, buf_ofs), 0);
    s.refused(|e| {
        matches!(
            e,
            AttachError::RingMismatch {
                what: "buf_ofs",
                ..
            }
        )
    });
}

#[test]
fn feature_negotiation_is_checked() {
    // The host grants something the driver did not ask for.
    let s = Setup::new(GEOMETRY);
    s.nic.ptfeat_lie.set(Some(0x3));
    let err = s
        .attach(Config {
            want_vnet_hdr: false,
            require_vnet_hdr: false,
        })
        .err();
    assert!(matches!(err, Some(AttachError::UnrequestedFeatures { .. })));

    // The header is required but not granted.
    let mut s = Setup::new(GEOMETRY);
    s.nic.host_features = 0;
    let err = s
        .attach(Config {
            want_vnet_hdr: true,
            require_vnet_hdr: true,
        })
        .err();
    assert!(matches!(err, Some(AttachError::FeatureNotGranted { .. })));
    assert_eq!(s.kernel.live.get(), 0);

    // Not granted and not required: attach without offloads.
    let mut s = Setup::new(GEOMETRY);
    s.nic.host_features = 0;
    let dev = s.attach(Config::default()).unwrap();
    assert_eq!(
        (dev.info().features.bits(), dev.info().vnet_hdr_len),
        (0, 0)
    );
    dev.detach();
}

#[test]
fn csb_allocation_failure_is_clean() {
    let s = Setup::new(GEOMETRY);
    s.kernel.fail_alloc.set(true);
    s.refused(|e| *e == AttachError::CsbAlloc);
}

/// The host side of a ring, written straight into the CSB pages.
fn host_csb(dev: &Ptnet<&FakeKernel, &FakeRegs>, ring: usize) -> CsbRing {
    let _ = dev;
    // The fake kernel's arena is the CSB: rebuild a view of entry `ring`.
    let base = dev.csb_region_for_tests();
    CsbRing::new(
        &base.sub(0, CSB_PAGE).unwrap(),
        &base.sub(CSB_PAGE, CSB_PAGE).unwrap(),
        ring,
    )
    .unwrap()
}

#[test]
fn bring_up_sync_and_restart() {
    let s = Setup::new(GEOMETRY);
    let dev = s.attach(Config::default()).unwrap();
    let tx = host_csb(&dev, 0);
    // PTCTL create: the host initialises the CSB from its rings.
    dev.start().unwrap();
    assert_eq!(s.nic.wrote(reg::PTCTL), [1]);
    kern_write(&tx, 0, 3);
    tx.store(Field::KernNeedKick, 1);
    let mut k = dev.adopt_ring(Dir::Tx, 0).unwrap();
    assert_eq!((k.hwcur, k.hwtail), (0, 3));

    // Two packets; the host sleeps, so the guest kicks ring 0.
    k.tx_prologue(2, 2).unwrap();
    dev.txsync(0, &mut k, SyncOpts::default()).unwrap();
    assert_eq!(s.nic.wrote(reg::KICK_BASE).len(), 1);
    assert_eq!(dev.stats(Dir::Tx, 0).unwrap().snapshot().kicks, 1);

    // Delete and create: the host kept its state (consumed nothing), the
    // guest hands its head back and kicks for the pending slots.
    dev.stop().unwrap();
    dev.start().unwrap();
    assert_eq!(dev.resume_ring(Dir::Tx, 0, &mut k), Ok(true));
    assert_eq!(tx.load(Field::Head), 2);
    assert_eq!(s.nic.wrote(reg::KICK_BASE).len(), 2);

    // A host that lies about hwcur is refused and counted.
    kern_write(&tx, 3, 2);
    let before: Kring = k;
    assert!(matches!(
        dev.txsync(0, &mut k, SyncOpts::default()),
        Err(SyncError::Host(_))
    ));
    assert_eq!(k, before);
    assert_eq!(dev.stats(Dir::Tx, 0).unwrap().snapshot().host_errors, 1);

    // Interrupt vectors map to rings, TX first.
    assert_eq!(dev.interrupt(1), Some((Dir::Rx, 0)));
    assert_eq!(dev.interrupt(2), None);
    dev.detach();
    assert_eq!(s.nic.wrote(reg::PTCTL), [1, 2, 1, 2]);
    assert_eq!(s.kernel.live.get(), 0);
    let _ = Vec::<u8>::new();
}

#[test]
fn ptctl_failure_is_reported() {
    let s = Setup::new(GEOMETRY);
    let dev = s.attach(Config::default()).unwrap();
    s.nic.ptctl_result.set(22);
    assert_eq!(dev.start(), Err(AttachError::Ptctl { cmd: 1, err: 22 }));
    assert!(!dev.is_running());
    dev.detach();
}
