//! Attach, bring-up and detach against a fake device: every lie a device
//! can tell at attach is refused with its own error, leaving nothing
//! allocated and nothing programmed.

extern crate std;

use crate::abi::netmap::NetmapRing;
use crate::abi::regs::{memdev as mreg, ptnet as reg};
use crate::csb::{kern_write, CsbMem, Field, SyncOpts};
use crate::device::{Config, Ptnet, CSB_PAGE};
use crate::error::AttachError;
use crate::fake::{FakeKernel, FakeRegs, Fixture as Setup, Geometry, FAKE_PADDR, GEOMETRY};
use crate::kring::Dir;
use crate::{Kring, SyncError};
use core::mem::offset_of;
use std::vec::Vec;

impl Setup {
    /// Attach must fail with `want`, leaving no memory and no CSB address.
    fn refused(&self, want: impl Fn(&AttachError) -> bool) {
        let err = self.attach(Config::default()).err().expect("attach must fail");
        assert!(want(&err), "unexpected error: {err:?}");
        assert_eq!(self.kernel.live.get(), 0, "attach failure leaked DMA memory");
        assert!(self.nic.wrote(reg::CSB_GH_BAL).last().is_none_or(|v| *v == 0), "CSB left programmed on failure");
        assert!(self.kernel.logs.borrow().iter().any(|l| l.contains("attach failed")));
    }
}

#[test]
fn attach_reads_validates_and_programs_the_csb() {
    let s = Setup::new(GEOMETRY);
    let dev = s.attach(Config::default()).unwrap();
    let i = *dev.info();
    assert_eq!(i.mac, [0, 2, 0, 0, 0, 0x42]);
    assert_eq!((i.num_tx_rings, i.num_rx_rings, i.num_tx_slots, i.memid), (1, 1, 4, 7));
    assert_eq!(dev.layout().map(|l| l.buffers.buf_size()), Some(64));
    assert_eq!(i.features.bits(), 1);
    // The 12-byte header FreeBSD's and Linux's C drivers use is asked for.
    assert_eq!(s.nic.wrote(reg::VNET_HDR_LEN), [12]);
    assert_eq!(i.vnet_hdr_len, 12);
    assert_eq!(s.nic.wrote(reg::CSB_GH_BAH), [(FAKE_PADDR >> 32) as u32]);
    assert_eq!(s.nic.wrote(reg::CSB_GH_BAL), [FAKE_PADDR as u32]);
    assert_eq!(s.nic.wrote(reg::CSB_HG_BAL), [(FAKE_PADDR + CSB_PAGE as u64) as u32]);
    assert!(s.kernel.logs.borrow()[0].contains("00:02:00:00:00:42, 1 tx/1 rx rings"));
    let (_, _) = dev.detach();
    assert_eq!(s.kernel.live.get(), 0);
    assert_eq!(s.nic.wrote(reg::CSB_GH_BAL).last(), Some(&0));
}

#[test]
fn lying_ring_and_slot_counts_are_refused() {
    for (r, v) in
        [(reg::NUM_TX_RINGS, 0), (reg::NUM_RX_RINGS, 0), (reg::NUM_TX_RINGS, 1000), (reg::NUM_RX_RINGS, u32::MAX)]
    {
        let s = Setup::new(GEOMETRY);
        s.nic.set(r, v);
        s.refused(|e| matches!(e, AttachError::BadRingCount { .. } | AttachError::NotEnoughVectors { .. }));
    }
    for v in [0, 1, 1 << 20] {
        let s = Setup::new(GEOMETRY);
        s.nic.set(reg::NUM_RX_SLOTS, v);
        s.refused(|e| matches!(e, AttachError::BadSlotCount { dir: Dir::Rx, .. }));
    }
    // A slot count the rings do not have.
    let s = Setup::new(GEOMETRY);
    s.nic.set(reg::NUM_TX_SLOTS, 8);
    s.refused(|e| matches!(e, AttachError::RingMismatch { what: "num_slots", .. } | AttachError::BadRingOffset { .. }));
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
    s.refused(|e| matches!(e, AttachError::MemIdMismatch { nic: 9, memdev: 7 }));
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
    s.refused(|e| matches!(e, AttachError::RingsOverlap { .. } | AttachError::RingMismatch { what: "dir", .. }));

    // Two RX rings sharing memory, each header otherwise valid.
    let s = Setup::new(Geometry { rx: 2, ..GEOMETRY });
    let rx0 = s.layout.ring_ofs[1] as i64;
    s.layout.set_ring_ofs(2, rx0);
    s.refused(|e| matches!(e, AttachError::RingsOverlap { .. }));
}

#[test]
fn ring_headers_must_match_the_pools() {
    let s = Setup::new(GEOMETRY);
    s.layout.ring_field_u32(Dir::Tx, 0, offset_of!(NetmapRing, nr_buf_size), 2048);
    s.refused(|e| matches!(e, AttachError::RingMismatch { what: "nr_buf_size", .. }));

    let s = Setup::new(GEOMETRY);
    s.layout.ring_field_u64(Dir::Rx, 0, offset_of!(NetmapRing, buf_ofs), 0);
    s.refused(|e| matches!(e, AttachError::RingMismatch { what: "buf_ofs", .. }));
}

#[test]
fn feature_negotiation_is_checked() {
    // The host grants something the driver did not ask for.
    let s = Setup::new(GEOMETRY);
    s.nic.ptfeat_lie.set(Some(0x3));
    let err = s.attach(Config { want_vnet_hdr: false, require_vnet_hdr: false }).err();
    assert!(matches!(err, Some(AttachError::UnrequestedFeatures { .. })));

    // The header is required but not granted.
    let mut s = Setup::new(GEOMETRY);
    s.nic.host_features = 0;
    let err = s.attach(Config { want_vnet_hdr: true, require_vnet_hdr: true }).err();
    assert!(matches!(err, Some(AttachError::FeatureNotGranted { .. })));
    assert_eq!(s.kernel.live.get(), 0);

    // Not granted and not required: attach without offloads.
    let mut s = Setup::new(GEOMETRY);
    s.nic.host_features = 0;
    let dev = s.attach(Config::default()).unwrap();
    assert_eq!((dev.info().features.bits(), dev.info().vnet_hdr_len), (0, 0));
    dev.detach();
}

#[test]
fn csb_allocation_failure_is_clean() {
    let s = Setup::new(GEOMETRY);
    s.kernel.fail_alloc.set(true);
    s.refused(|e| *e == AttachError::CsbAlloc);
}

/// The host side of a ring, written straight into the CSB pages.

#[test]
fn bring_up_sync_and_restart() {
    let s = Setup::new(GEOMETRY);
    let dev = s.attach(Config::default()).unwrap();
    let tx = s.host_csb(0);
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
    assert!(matches!(dev.txsync(0, &mut k, SyncOpts::default()), Err(SyncError::Host(_))));
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
fn a_host_that_registered_the_port_anew_is_adopted_not_refused() {
    let s = Setup::new(GEOMETRY);
    let dev = s.attach(Config::default()).unwrap();
    let tx = s.host_csb(0);
    dev.start().unwrap();
    kern_write(&tx, 0, 3);
    let mut k = dev.adopt_ring(Dir::Tx, 0).unwrap();
    k.tx_prologue(2, 2).unwrap();
    dev.txsync(0, &mut k, SyncOpts::default()).unwrap();
    kern_write(&tx, 2, 1);
    dev.txsync(0, &mut k, SyncOpts::default()).unwrap();
    assert_eq!((k.hwcur, k.hwtail, k.rhead), (2, 1, 2));

    // The hypervisor re-registers the port: netmap rewrites the CSB from
    // fresh krings (hwcur 0, hwtail 3, head and cur 0), which do not
    // continue the guest's state. The C driver adopts them on every
    // create; so does this one, counting the reset, instead of refusing
    // every later sync.
    dev.stop().unwrap();
    kern_write(&tx, 0, 3);
    tx.store(Field::Head, 0);
    tx.store(Field::Cur, 0);
    dev.start().unwrap();
    assert_eq!(dev.resume_ring(Dir::Tx, 0, &mut k), Ok(false));
    assert_eq!((k.hwcur, k.hwtail, k.rhead, k.rcur), (0, 3, 0, 0));
    assert_eq!(dev.stats(Dir::Tx, 0).unwrap().snapshot().host_resets, 1);
    assert!(s.kernel.logs.borrow().iter().any(|l| l.contains("ring state was reset")));
    // Syncs work again at once.
    k.tx_prologue(1, 1).unwrap();
    dev.txsync(0, &mut k, SyncOpts::default()).unwrap();
    assert_eq!(tx.load(Field::Head), 1);
    dev.detach();
}

#[test]
fn shutdown_stops_the_host_and_withdraws_the_csb() {
    let s = Setup::new(GEOMETRY);
    let dev = s.attach(Config::default()).unwrap();
    dev.start().unwrap();
    dev.shutdown();
    assert_eq!(s.nic.wrote(reg::PTCTL), [1, 2]);
    for r in [reg::CSB_GH_BAH, reg::CSB_GH_BAL, reg::CSB_HG_BAH, reg::CSB_HG_BAL] {
        assert_eq!(s.nic.wrote(r).last(), Some(&0), "CSB address register {r} not cleared");
    }
    dev.detach();
    assert_eq!(s.kernel.live.get(), 0);
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

mod datapath {
    //! The interface datapath against the fake device: the test plays the
    //! host by reading TX slots and writing RX slots and the CSB.

    use super::*;
    use crate::abi::vnet::*;
    use crate::kring::next;
    use crate::net::caps::{CsumFlags, IfCap};
    use crate::net::hdr::tests::tcp4;
    use crate::net::offload::TxRequest;
    use crate::rx::RxRing;
    use crate::tx::{TxError, TxRing};
    use std::vec;

    const G: Geometry = Geometry { tx: 1, rx: 1, slots: 8, bufs: 20, buf_size: 256 };

    use crate::fake::{Pkt, Sink};

    /// Attached, started, both rings adopted from a fresh host state.
    fn running(s: &Setup) -> (Ptnet<&FakeKernel, &FakeRegs>, TxRing<Pkt, 4>, RxRing) {
        let dev = s.attach(Config::default()).unwrap();
        let mut tx = TxRing::new(G.slots);
        let mut rx = RxRing::new(G.slots);
        let csb = s.host_csb(0);
        kern_write(&csb, 0, G.slots - 1);
        dev.up([&mut tx.kring, &mut rx.kring].into_iter()).unwrap();
        (dev, tx, rx)
    }

    /// The frame the host sees in TX slots `[from, ..)`: header and bytes.
    fn host_reads(s: &Setup, from: u32) -> (Vec<u8>, u32) {
        let r = s.ring(Dir::Tx, 0);
        let (mut out, mut j, mut n) = (Vec::new(), from, 0);
        loop {
            let len = r.slot_len(j).unwrap() as usize;
            let mut b = vec![0u8; len];
            s.buf(&r, j).read_bytes(0, &mut b).unwrap();
            out.extend_from_slice(&b);
            n += 1;
            if r.slot_flags(j).unwrap() & 0x20 == 0 {
                return (out, n);
            }
            j = next(j, G.slots);
        }
    }

    #[test]
    fn transmit_writes_header_and_frame_across_slots() {
        let s = Setup::new(G);
        let (dev, mut tx, _rx) = running(&s);
        let f = tcp4(400, false);
        let req = TxRequest { csum_flags: CsumFlags::IP_TCP | CsumFlags::IP_TSO, tso_segsz: 200, ..Default::default() };
        let mut freed = 0;
        dev.transmit(0, &mut tx, Some(Pkt(f.clone(), req)), |_| freed += 1).unwrap();
        assert_eq!(freed, 1, "copied packets are freed at once");
        let (wire, slots) = host_reads(&s, 0);
        assert_eq!(slots, 2, "12 + 454 bytes over 256-byte buffers");
        // The frame exactly as the stack gave it, its checksum seed
        // included: FreeBSD's tcp_output() already puts the pseudo-header
        // sum with the length there, which is what virtio-net wants.
        assert_eq!(&wire[12..], &f[..]);
        assert_eq!(wire[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(wire[1], VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([wire[4], wire[5]]), 200, "gso_size");
        assert_eq!(u16::from_le_bytes([wire[6], wire[7]]), 34, "csum_start");
        assert_eq!((tx.kring.rhead, tx.stats.tso.get(), tx.stats.packets.get()), (2, 1, 1));
        assert_eq!(s.host_csb(0).load(Field::Head), 2, "published to the host");
    }

    #[test]
    fn vlan_tags_are_inserted_and_offsets_follow() {
        let s = Setup::new(G);
        let (dev, mut tx, _rx) = running(&s);
        let f = tcp4(20, false);
        let req = TxRequest { csum_flags: CsumFlags::IP_TCP, vlan: Some(0x0123), ..Default::default() };
        dev.transmit(0, &mut tx, Some(Pkt(f.clone(), req)), drop).unwrap();
        let (wire, _) = host_reads(&s, 0);
        assert_eq!(&wire[24..28], &[0x81, 0x00, 0x01, 0x23]);
        assert_eq!(&wire[28..], &f[12..]);
        assert_eq!(u16::from_le_bytes([wire[6], wire[7]]), 38, "csum_start after the tag");
    }

    #[test]
    fn a_full_ring_queues_arms_the_interrupt_and_resumes() {
        let s = Setup::new(G);
        let (dev, mut tx, _rx) = running(&s);
        let big = || Pkt(tcp4(600, false), TxRequest::default()); // 3 slots each
        for _ in 0..2 {
            dev.transmit(0, &mut tx, Some(big()), drop).unwrap();
        }
        // 7 usable slots: the third packet waits, the interrupt is armed.
        dev.transmit(0, &mut tx, Some(big()), drop).unwrap();
        assert_eq!(tx.queued(), 1);
        let csb = s.host_csb(0);
        assert_eq!(csb.load(Field::ApplNeedKick), 1);
        // Queue capacity 4: beyond it packets are dropped and counted.
        for _ in 0..3 {
            dev.transmit(0, &mut tx, Some(big()), drop).unwrap();
        }
        assert_eq!(dev.transmit(0, &mut tx, Some(big()), drop), Err(TxError::QueueFull));
        assert_eq!(tx.stats.queue_drops.get(), 1);
        // The host completes everything; the interrupt task resumes.
        kern_write(&csb, 6, 5);
        dev.transmit(0, &mut tx, None, drop).unwrap();
        assert_eq!(tx.queued(), 2);
        assert_eq!(tx.stats.packets.get(), 4);
        let mut freed = 0;
        assert_eq!(tx.flush(|_| freed += 1), 2);
        assert_eq!(freed, 2);
    }

    #[test]
    fn the_watchdog_frees_what_a_stalled_host_never_takes() {
        let s = Setup::new(G);
        let (dev, mut tx, _rx) = running(&s);
        let big = || Pkt(tcp4(600, false), TxRequest::default()); // 3 slots each
        for _ in 0..4 {
            dev.transmit(0, &mut tx, Some(big()), drop).unwrap();
        }
        assert_eq!(tx.queued(), 2, "the ring holds two, two wait");
        // The host takes nothing: the clock starts, then runs out.
        assert!(!dev.tx_watchdog(0, &mut tx, 1_000, 5_000, drop));
        assert!(!dev.tx_watchdog(0, &mut tx, 5_999, 5_000, drop));
        let mut freed = 0;
        assert!(dev.tx_watchdog(0, &mut tx, 6_000, 5_000, |_| freed += 1));
        assert_eq!((freed, tx.queued()), (2, 0));
        assert_eq!((tx.stats.watchdog.get(), tx.stats.watchdog_drops.get()), (1, 2));
        assert!(s.kernel.logs.borrow().iter().any(|l| l.contains("watchdog")));
        // A host that makes progress restarts the clock and the queue moves.
        for _ in 0..2 {
            dev.transmit(0, &mut tx, Some(big()), drop).unwrap();
        }
        assert!(!dev.tx_watchdog(0, &mut tx, 7_000, 5_000, drop));
        kern_write(&s.host_csb(0), 6, 5);
        assert!(!dev.tx_watchdog(0, &mut tx, 20_000, 5_000, drop), "progress is not a stall");
        assert_eq!((tx.queued(), tx.stats.packets.get()), (0, 4));
        assert!(!dev.tx_watchdog(0, &mut tx, 40_000, 5_000, drop), "nothing waits");
    }

    #[test]
    fn the_ring_watchdog_finds_a_host_wedged_by_garbage_it_never_corrects() {
        use crate::RingWatch;
        let s = Setup::new(G);
        let (dev, tx, rx) = running(&s);
        let (mut wt, mut wr) = (RingWatch::default(), RingWatch::default());
        // Idle and healthy: never.
        for t in [0, 10_000, 60_000] {
            assert!(!dev.ring_watchdog(Dir::Tx, 0, &tx.kring, &mut wt, t, 5_000));
            assert!(!dev.ring_watchdog(Dir::Rx, 0, &rx.kring, &mut wr, t, 5_000));
        }
        // The host left garbage in the CSB and never corrects it: the
        // clock starts at the first look, and the timeout trips it.
        kern_write(&s.host_csb(1), 999, 12345);
        assert!(!dev.ring_watchdog(Dir::Rx, 0, &rx.kring, &mut wr, 100_000, 5_000));
        assert!(!dev.ring_watchdog(Dir::Rx, 0, &rx.kring, &mut wr, 104_999, 5_000));
        assert!(dev.ring_watchdog(Dir::Rx, 0, &rx.kring, &mut wr, 105_000, 5_000));
        assert_eq!(dev.stats(Dir::Rx, 0).unwrap().snapshot().stuck, 1);
        assert!(s.kernel.logs.borrow().iter().any(|l| l.contains("host wedged (its pointers refused")));
        // Corrected in between: not wedged.
        assert!(!dev.ring_watchdog(Dir::Rx, 0, &rx.kring, &mut wr, 200_000, 5_000));
        kern_write(&s.host_csb(1), 0, 0);
        assert!(!dev.ring_watchdog(Dir::Rx, 0, &rx.kring, &mut wr, 206_000, 5_000));
        assert!(!dev.ring_watchdog(Dir::Rx, 0, &rx.kring, &mut wr, 212_000, 5_000));
    }

    #[test]
    fn the_ring_watchdog_kicks_a_host_that_ignores_published_work_then_restarts_it() {
        use crate::RingWatch;
        let s = Setup::new(G);
        let (dev, mut tx, _rx) = running(&s);
        let mut w = RingWatch::default();
        dev.transmit(0, &mut tx, Some(Pkt(tcp4(100, false), TxRequest::default())), drop).unwrap();
        assert_eq!(tx.kring.rhead, 1);
        let kicks = || s.nic.wrote(reg::KICK_BASE).len();
        let before = kicks();
        // Unacknowledged: each look kicks the host; a host that moves is
        // not wedged.
        assert!(!dev.ring_watchdog(Dir::Tx, 0, &tx.kring, &mut w, 0, 5_000));
        assert_eq!(kicks(), before + 1);
        kern_write(&s.host_csb(0), 1, 0);
        assert!(!dev.ring_watchdog(Dir::Tx, 0, &tx.kring, &mut w, 9_000, 5_000), "acknowledged");
        // A host that never takes it: wedged after the timeout.
        dev.transmit(0, &mut tx, Some(Pkt(tcp4(100, false), TxRequest::default())), drop).unwrap();
        assert!(!dev.ring_watchdog(Dir::Tx, 0, &tx.kring, &mut w, 10_000, 5_000));
        assert!(!dev.ring_watchdog(Dir::Tx, 0, &tx.kring, &mut w, 14_000, 5_000));
        assert!(dev.ring_watchdog(Dir::Tx, 0, &tx.kring, &mut w, 15_000, 5_000));
        assert!(s.kernel.logs.borrow().iter().any(|l| l.contains("published work unacknowledged")));
    }

    #[test]
    fn detach_counts_what_the_host_never_took() {
        let s = Setup::new(G);
        let (dev, mut tx, _rx) = running(&s);
        let big = || Pkt(tcp4(600, false), TxRequest::default()); // 3 slots each
        for _ in 0..2 {
            dev.transmit(0, &mut tx, Some(big()), drop).unwrap();
        }
        // The host took the first packet's slots, then stopped.
        kern_write(&s.host_csb(0), 3, 2);
        dev.stop().unwrap();
        assert_eq!(dev.tx_abandon(0, &mut tx), 1);
        assert_eq!((tx.stats.packets.get(), tx.stats.abandoned.get()), (2, 1));
        assert!(s.kernel.logs.borrow().iter().any(|l| l.contains("1 packets the host never took")));
    }

    #[test]
    fn bad_offload_requests_are_refused_and_counted() {
        let s = Setup::new(G);
        let (dev, mut tx, _rx) = running(&s);
        let req = TxRequest { csum_flags: CsumFlags::IP_UDP, ..Default::default() };
        dev.transmit(0, &mut tx, Some(Pkt(tcp4(10, false), req)), drop).unwrap();
        let junk = TxRequest { csum_flags: CsumFlags::IP_TCP, ..Default::default() };
        dev.transmit(0, &mut tx, Some(Pkt(vec![0u8; 60], junk)), drop).unwrap();
        assert_eq!((tx.stats.refused.get(), tx.stats.packets.get(), tx.kring.rhead), (2, 0, 0));
        // With TXCSUM just turned off the stack stops asking, but a packet
        // it built before still goes out with its offload.
        dev.ifstate().set_capabilities(dev.ifstate().enabled() - IfCap::TXCSUM).unwrap();
        assert!(!dev.ifstate().hwassist().contains(CsumFlags::IP_TCP));
        let req = TxRequest { csum_flags: CsumFlags::IP_TCP, ..Default::default() };
        dev.transmit(0, &mut tx, Some(Pkt(tcp4(10, false), req)), drop).unwrap();
        assert_eq!((tx.stats.refused.get(), tx.stats.csum.get()), (2, 1));
    }

    #[test]
    fn without_the_header_offload_requests_are_refused() {
        let mut s = Setup::new(G);
        s.nic.host_features = 0;
        let (dev, mut tx, _rx) = running(&s);
        assert_eq!(dev.info().vnet_hdr_len, 0);
        let req = TxRequest { csum_flags: CsumFlags::IP_TCP, ..Default::default() };
        dev.transmit(0, &mut tx, Some(Pkt(tcp4(10, false), req)), drop).unwrap();
        dev.transmit(0, &mut tx, Some(Pkt(tcp4(10, false), TxRequest::default())), drop).unwrap();
        assert_eq!((tx.stats.refused.get(), tx.stats.packets.get()), (1, 1));
        let (wire, _) = host_reads(&s, 0);
        assert_eq!(wire, tcp4(10, false), "no header in front of the frame");
    }

    /// The host delivers `frame` behind header `h` in RX slots from `at`.
    fn host_delivers(s: &Setup, at: u32, h: [u8; 12], frame: &[u8]) -> u32 {
        let r = s.ring(Dir::Rx, 0);
        let mut bytes = h.to_vec();
        bytes.extend_from_slice(frame);
        let mut j = at;
        let chunks: Vec<&[u8]> = bytes.chunks(G.buf_size as usize).collect();
        for (i, c) in chunks.iter().enumerate() {
            s.buf(&r, j).write_bytes(0, c).unwrap();
            r.set_slot(j, c.len() as u16, if i + 1 < chunks.len() { 0x20 } else { 0 }).unwrap();
            j = next(j, G.slots);
        }
        let csb = s.host_csb(1);
        kern_write(&csb, csb.load(Field::Head), j);
        j
    }

    /// A `virtio_net_hdr_mrg_rxbuf` (`num_buffers` 0).
    fn hdr(flags: u8, gso: u8, gso_size: u16, start: u16, off: u16) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0] = flags;
        h[1] = gso;
        h[4..6].copy_from_slice(&gso_size.to_le_bytes());
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&off.to_le_bytes());
        h
    }

    #[test]
    fn receive_hands_up_frames_with_checksum_and_lro_state() {
        let s = Setup::new(G);
        let (dev, _tx, mut rx) = running(&s);
        let f = tcp4(300, false);
        let t = host_delivers(&s, 0, hdr(VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0), &f);
        let g = tcp4(400, false);
        host_delivers(&s, t, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 200, 34, 16), &g);
        let mut sink = Sink::default();
        let rep = dev.receive(0, &mut rx, 64, &mut sink);
        assert_eq!(rep.frames, 2);
        assert!(!rep.more);
        assert_eq!(sink.frames[0].0, f);
        assert_eq!(sink.frames[0].1.csum_flags, CsumFlags::L4_CALC | CsumFlags::L4_VALID);
        assert_eq!(sink.frames[1].0, g);
        assert_eq!((sink.frames[1].1.lro_segsz, sink.frames[1].1.lro_nsegs), (200, 2));
        assert_eq!((rx.stats.packets.get(), rx.stats.lro.get()), (2, 1));
        // All slots released, interrupt re-armed for the empty ring.
        let csb = s.host_csb(1);
        assert_eq!(csb.load(Field::Head), rx.kring.hwtail);
        assert_eq!(csb.load(Field::ApplNeedKick), 1);
    }

    #[test]
    fn the_rx_watchdog_receives_what_a_lost_interrupt_left_waiting() {
        let s = Setup::new(G);
        let (dev, _tx, mut rx) = running(&s);
        assert!(!dev.rx_watchdog(0, &mut rx), "nothing waits");
        // A frame arrives and its interrupt is lost.
        let t = host_delivers(&s, 0, hdr(0, 0, 0, 0, 0), &tcp4(100, false));
        assert!(!dev.rx_watchdog(0, &mut rx), "it may still be on its way");
        assert!(dev.rx_watchdog(0, &mut rx), "a whole period later it is lost");
        assert_eq!(rx.stats.missed_irqs.get(), 1);
        assert!(s.kernel.logs.borrow().iter().any(|l| l.contains("without an interrupt")));
        let mut sink = Sink::default();
        assert_eq!(dev.receive(0, &mut rx, 64, &mut sink).frames, 1);
        // Frames the receive task is working through are not lost ones.
        host_delivers(&s, t, hdr(0, 0, 0, 0, 0), &tcp4(100, false));
        assert!(!dev.rx_watchdog(0, &mut rx));
        dev.receive(0, &mut rx, 64, &mut sink);
        assert!(!dev.rx_watchdog(0, &mut rx));
        assert_eq!((sink.frames.len(), rx.stats.missed_irqs.get()), (2, 1));
    }

    #[test]
    fn the_rx_watchdog_is_not_fooled_by_a_ring_that_went_round_a_whole_lap() {
        // A busy ring: frames wait at each watchdog run, and between two
        // runs the receive task went through exactly one lap, so the
        // first waiting slot is the same slot again. That is progress, not
        // a lost interrupt (the watchdog once compared slot indexes, and
        // fired on a healthy host about once per 1,024 runs of a busy
        // 1,024-slot ring).
        let s = Setup::new(G);
        let (dev, _tx, mut rx) = running(&s);
        let mut sink = Sink::default();
        let mut t = host_delivers(&s, 0, hdr(0, 0, 0, 0, 0), &tcp4(100, false));
        assert!(!dev.rx_watchdog(0, &mut rx));
        for _ in 0..G.slots {
            assert_eq!(dev.receive(0, &mut rx, 1, &mut sink).frames, 1);
            t = host_delivers(&s, t, hdr(0, 0, 0, 0, 0), &tcp4(100, false));
        }
        assert_eq!(rx.kring.rcur, 0, "a whole lap later, the same slot waits");
        assert!(!dev.rx_watchdog(0, &mut rx), "a lap of frames was received since");
        assert_eq!(rx.stats.missed_irqs.get(), 0);
    }

    #[test]
    fn receive_undoes_offloads_that_are_off() {
        let s = Setup::new(G);
        let (dev, _tx, mut rx) = running(&s);
        dev.ifstate().set_capabilities(dev.ifstate().enabled() - IfCap::LRO - IfCap::RXCSUM).unwrap();
        let g = tcp4(400, false);
        host_delivers(&s, 0, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 200, 34, 16), &g);
        let mut sink = Sink::default();
        assert_eq!(dev.receive(0, &mut rx, 64, &mut sink).frames, 2, "segmented in two");
        assert!(sink.frames.iter().all(|(b, i)| b.len() == 254 && i.csum_flags.is_empty()));
        assert_eq!(rx.stats.segmented.get(), 1);
    }

    #[test]
    fn malformed_headers_and_slots_are_dropped_and_counted() {
        let s = Setup::new(G);
        let (dev, _tx, mut rx) = running(&s);
        let f = tcp4(50, false);
        let mut t = host_delivers(&s, 0, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 200, 16), &f);
        t = host_delivers(&s, t, hdr(0, 0x33, 10, 0, 0), &f);
        t = host_delivers(&s, t, hdr(0, 0, 0, 0, 0), &f);
        // A slot with a buffer index outside the pool.
        let r = s.ring(Dir::Rx, 0);
        r.set_slot_buf_idx(t, 9999).unwrap();
        r.set_slot(t, 60, 0).unwrap();
        let csb = s.host_csb(1);
        kern_write(&csb, 0, next(t, G.slots));
        let mut sink = Sink::default();
        let rep = dev.receive(0, &mut rx, 64, &mut sink);
        assert_eq!(rep.frames, 1, "only the good frame");
        assert_eq!(sink.frames[0].0, f);
        assert_eq!(rx.stats.errors.get(), 3);
        // The device keeps working: the next frame goes through.
        let _ = r.set_slot_buf_idx(t, 2 + G.slots + t);
        let u = host_delivers(&s, next(t, G.slots), hdr(0, 0, 0, 0, 0), &f);
        let _ = u;
        assert_eq!(dev.receive(0, &mut rx, 64, &mut sink).frames, 1);
    }

    #[test]
    fn the_budget_bounds_a_pass_and_no_memory_is_counted() {
        let s = Setup::new(G);
        let (dev, _tx, mut rx) = running(&s);
        let f = tcp4(20, false);
        let mut t = 0;
        for _ in 0..3 {
            t = host_delivers(&s, t, hdr(0, 0, 0, 0, 0), &f);
        }
        let mut sink = Sink::default();
        let rep = dev.receive(0, &mut rx, 2, &mut sink);
        assert_eq!(rep, crate::rx::RxReport { frames: 2, more: true });
        sink.full = true;
        let rep = dev.receive(0, &mut rx, 2, &mut sink);
        assert_eq!((rep.frames, rx.stats.no_memory.get()), (0, 1));
        assert!(!rep.more);
    }

    #[test]
    fn flows_keep_to_one_ring() {
        use crate::tx::flow_ring;
        let a = tcp4(100, false);
        let mut b = a.clone();
        b[14 + 20 + 1] ^= 1; // another source port: another flow
        let rings: Vec<u32> = (0..64u8)
            .map(|i| {
                let mut f = b.clone();
                f[14 + 20 + 1] = i;
                flow_ring(&Pkt(f, TxRequest::default()), 4)
            })
            .collect();
        // The same flow always lands on the same ring; flows spread.
        assert_eq!(
            flow_ring(&Pkt(a.clone(), TxRequest::default()), 4),
            flow_ring(&Pkt(a.clone(), TxRequest::default()), 4)
        );
        assert!((0..4).all(|r| rings.contains(&r)), "{rings:?}");
        // The stack's flow id wins; garbage goes to ring 0; no rings, no panic.
        assert_eq!(flow_ring(&Pkt(a.clone(), TxRequest { flowid: Some(7), ..TxRequest::default() }), 4), 3);
        assert_eq!(flow_ring(&Pkt(vec![0xff; 20], TxRequest::default()), 4), 0);
        assert_eq!(flow_ring(&Pkt(a, TxRequest::default()), 0), 0);
    }
}

mod nm_copy {
    //! netmap mode on a stock kernel: the application's rings and buffers
    //! are the guest allocator's, and slots are copied to and from the
    //! host's rings at the same indexes.

    use super::*;
    use crate::abi::netmap::NetmapSlot;
    use crate::fake::Arena;
    use crate::layout::{Buffers, RingLayout};
    use crate::nmcopy::BufferPool;
    use crate::shmem::SharedRegion;

    const G: Geometry = Geometry { tx: 1, rx: 1, slots: 8, bufs: 24, buf_size: 256 };

    /// A guest netmap ring of `G.slots` slots, slot `i` on buffer `10 + i`
    /// of a pool of `bufs` buffers of `size` bytes.
    struct GuestRing {
        _mem: (Arena, Arena),
        ring: RingLayout,
        bufs: Buffers,
    }

    impl GuestRing {
        fn new(dir: Dir, size: u32) -> Self {
            let bytes = RingLayout::bytes(G.slots).unwrap();
            let (r, b) = (Arena::new(bytes), Arena::new(32 * size as usize));
            let ring = RingLayout { dir, ofs: 0, region: r.region(), num_slots: G.slots };
            for i in 0..G.slots {
                ring.set_slot_buf_idx(i, 10 + i).unwrap();
            }
            let bufs = Buffers::new(b.region(), 32, size);
            Self { _mem: (r, b), ring, bufs }
        }

        fn buf(&self, i: u32) -> SharedRegion {
            self.bufs.buf(self.ring.slot_buf_idx(i).unwrap()).unwrap()
        }
    }

    #[test]
    fn transmit_copies_the_application_slots_into_the_host_ring() {
        let s = Setup::new(G);
        let dev = s.attach(Config::default()).unwrap();
        let g = GuestRing::new(Dir::Tx, 256);
        g.buf(0).write_bytes(0, &[1; 200]).unwrap();
        g.ring.set_slot(0, 200, 0x20 | 0x01).unwrap(); // MOREFRAG | BUF_CHANGED
        g.buf(1).write_bytes(0, &[2; 60]).unwrap();
        g.ring.set_slot(1, 60, 0x08).unwrap(); // NO_LEARN
        g.ring.set_slot_buf_idx(2, 999).unwrap();
        g.ring.set_slot(2, 60, 0).unwrap();
        assert_eq!(dev.copy_to_host(0, &g.ring, &g.bufs, 0, 3), 1, "one slot with a bad buffer");
        let host = s.ring(Dir::Tx, 0);
        let mut b = [0u8; 200];
        s.buf(&host, 0).read_bytes(0, &mut b).unwrap();
        assert_eq!(b, [1; 200]);
        assert_eq!((host.slot_len(0), host.slot_flags(0)), (Some(200), Some(0x20)), "BUF_CHANGED stays behind");
        assert_eq!((host.slot_len(1), host.slot_flags(1)), (Some(60), Some(0x08)));
        assert_eq!(host.slot_len(2), Some(0), "the bad slot goes empty");
        assert_eq!(core::mem::size_of::<NetmapSlot>(), 16);
        dev.detach();
    }

    #[test]
    fn receive_copies_host_slots_and_refuses_what_does_not_fit() {
        let s = Setup::new(G);
        let dev = s.attach(Config::default()).unwrap();
        let host = s.ring(Dir::Rx, 0);
        s.buf(&host, 5).write_bytes(0, &[7; 256]).unwrap();
        host.set_slot(5, 256, 0x20).unwrap();
        s.buf(&host, 6).write_bytes(0, &[8; 10]).unwrap();
        host.set_slot(6, 10, 0x04).unwrap(); // FORWARD means nothing on RX
        host.set_slot(7, 300, 0).unwrap(); // longer than any buffer
        let g = GuestRing::new(Dir::Rx, 256);
        assert_eq!(dev.copy_from_host(0, &g.ring, &g.bufs, 5, 0), 1);
        let mut b = [0u8; 256];
        g.buf(5).read_bytes(0, &mut b).unwrap();
        assert_eq!(b, [7; 256]);
        assert_eq!((g.ring.slot_len(5), g.ring.slot_flags(5)), (Some(256), Some(0x20)));
        assert_eq!((g.ring.slot_len(6), g.ring.slot_flags(6)), (Some(10), Some(0)));
        assert_eq!(g.ring.slot_len(7), Some(0));
        // Guest buffers smaller than the host's: what does not fit is
        // refused, never cut.
        let small = GuestRing::new(Dir::Rx, 128);
        assert_eq!(dev.copy_from_host(0, &small.ring, &small.bufs, 5, 7), 1);
        assert_eq!((small.ring.slot_len(5), small.ring.slot_len(6)), (Some(0), Some(10)));
        dev.detach();
    }
}
