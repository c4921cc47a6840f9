//! Interface semantics between two guests: tagged traffic, MTU and
//! capability changes in the middle of a TCP stream, and malformed
//! virtio-net headers from the host.

use ptnet::abi::vnet::*;
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::net::offload::TxRequest;
use ptnet_host_sim::app::stream::Pattern;
use ptnet_host_sim::app::tcp::{vm_addrs, vm_ipv4, BulkReceiver, BulkSender};
use ptnet_host_sim::guest::device::PtnetIf;
use ptnet_host_sim::guest::ifnet::SimPacket;
use ptnet_host_sim::guest::stack::Stack;
use ptnet_host_sim::world::{World, WorldConfig};
use ptnet_tests::{l4_checksum_ok, receive, world};
use smoltcp::wire::IpAddress;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn two_guests() -> World {
    world(WorldConfig {
        driver: ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true },
        ..WorldConfig::default()
    })
}

fn udp_frame(w: &World, payload: &[u8]) -> Vec<u8> {
    ptnet_tests::udp_frame(w.vms[1].mac, w.vms[0].mac, payload)
}

#[test]
fn vlan_tags_are_inserted_and_offloads_follow_the_tag() {
    let w = two_guests();
    let (a, b) = (w.ifp(0), w.ifp(1));
    a.if_up().unwrap();
    b.if_up().unwrap();
    for rxcsum in [true, false] {
        let en = b.enabled();
        b.set_capabilities(if rxcsum { en | IfCap::RXCSUM } else { en - IfCap::RXCSUM }).unwrap();
        let payload: Vec<u8> = (0..700u32).map(|i| (i * 7) as u8).collect();
        let req = TxRequest { csum_flags: CsumFlags::IP_UDP, vlan: Some(100), ..TxRequest::default() };
        for _ in 0..10 {
            a.transmit(SimPacket::new(udp_frame(&w, &payload), req)).unwrap();
        }
        let got = receive(b, 10);
        assert_eq!(got.len(), 10);
        for f in got {
            assert_eq!(&f.data[12..16], &[0x81, 0x00, 0x00, 100], "802.1Q tag for VLAN 100");
            assert_eq!(&f.data[f.data.len() - 700..], &payload[..]);
            if rxcsum {
                assert!(f.info.csum_flags.contains(CsumFlags::L4_VALID));
            } else {
                // The receiving driver completed the checksum at the
                // offsets the sender's driver computed behind the tag.
                assert!(f.info.csum_flags.is_empty());
                assert!(l4_checksum_ok(&f.data), "checksum wrong behind the tag");
            }
        }
    }
    assert_eq!(b.if_counters().rx_csum_completed, 10);
}

/// A TCP bulk transfer from VM 0 to VM 1 while `meddle` runs every few
/// milliseconds on both interfaces.
fn bulk_while(w: &World, total: u64, meddle: impl Fn(&PtnetIf, u32) + Send + Sync + 'static) {
    let stop = Arc::new(AtomicBool::new(false));
    let ifs = (w.ifp(0).clone(), w.ifp(1).clone());
    let s2 = stop.clone();
    let meddler = std::thread::spawn(move || {
        let mut i = 0u32;
        while !s2.load(Ordering::Relaxed) {
            meddle(&ifs.0, i);
            meddle(&ifs.1, i.wrapping_mul(7));
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        i
    });
    let pattern = Pattern::new(5);
    let (ifb, mb) = (w.ifp(1).clone(), w.vms[1].mac);
    let rx = std::thread::spawn(move || {
        let mut st = Stack::new(ifb, mb, &vm_addrs(1)).unwrap();
        let mut r = BulkReceiver::listen(&mut st, 5001, pattern);
        assert!(st.run_until(Duration::from_secs(120), |s| r.step(s)), "receiver stalled at {}", r.result().bytes);
        (r.result(), r.corrupt_at, st.stats())
    });
    let mut st = Stack::new(w.ifp(0).clone(), w.vms[0].mac, &vm_addrs(0)).unwrap();
    let mut s = BulkSender::connect(&mut st, IpAddress::Ipv4(vm_ipv4(1)), 5001, 40000, total, pattern);
    assert!(st.run_until(Duration::from_secs(120), |x| s.step(x)), "sender stalled at {}", s.result().bytes);
    let (got, corrupt, rstats) = loop {
        st.run_until(Duration::from_millis(20), |_| false);
        if rx.is_finished() {
            break rx.join().unwrap();
        }
    };
    stop.store(true, Ordering::Relaxed);
    let changes = meddler.join().unwrap();
    assert!(changes > 10, "only {changes} changes happened during the transfer");
    assert_eq!(corrupt, None);
    assert_eq!((got.bytes, got.digest), (total, s.result().digest));
    assert_eq!(rstats.rx_bad_csum + st.stats().rx_bad_csum, 0, "a checksum went wrong");
}

#[test]
fn mtu_changes_mid_stream() {
    let w = two_guests();
    let ifp = w.ifp(0);
    assert!(ifp.set_mtu(70000).is_err() && ifp.set_mtu(60).is_err());
    ifp.set_capabilities(ifp.enabled() - IfCap::JUMBO_MTU).unwrap();
    assert!(ifp.set_mtu(9000).is_err(), "no jumbo MTU without JUMBO_MTU");
    ifp.set_capabilities(ifp.enabled() | IfCap::JUMBO_MTU).unwrap();
    bulk_while(&w, 16 << 20, |ifp, i| {
        let mtu = [1500, 9000, 1280, 65535, 4000][i as usize % 5];
        ifp.set_mtu(mtu).unwrap();
        assert_eq!(ifp.mtu(), mtu);
    });
}

#[test]
fn capability_toggles_mid_stream() {
    let w = two_guests();
    let toggles = [IfCap::TXCSUM, IfCap::TSO4, IfCap::RXCSUM, IfCap::LRO, IfCap::TXCSUM_IPV6, IfCap::TSO6];
    bulk_while(&w, 24 << 20, move |ifp, i| {
        let mut want = ifp.capabilities();
        for (k, c) in toggles.iter().enumerate() {
            if (i >> k) & 1 == 1 {
                want -= *c;
            }
        }
        // TSO needs its checksum offload: a request that breaks the rule is
        // refused; the interface keeps its previous state.
        match ifp.set_capabilities(want) {
            Ok(now) => {
                assert_eq!(ifp.hwassist(), ptnet::net::caps::hwassist(now), "hwassist follows");
                assert!(!now.contains(IfCap::TSO4) || now.contains(IfCap::TXCSUM));
            }
            Err(e) => assert!(e.to_string().contains("txcsum"), "{e}"),
        }
    });
    let c = w.ifp(0).if_counters();
    assert!(c.tx_tso > 0 && c.opackets > c.tx_tso, "both offloaded and plain frames were sent: {c:?}");
}

/// The 12-byte header (`virtio_net_hdr_mrg_rxbuf`, `num_buffers` 0) the
/// driver negotiates.
fn vnet(flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, start: u16, off: u16) -> Vec<u8> {
    VirtioNetHdr { flags, gso_type, hdr_len, gso_size, csum_start: start, csum_offset: off }.to_le_bytes().to_vec()
}

#[test]
fn malformed_headers_from_the_host_are_dropped_and_counted() {
    let w = two_guests();
    let b = w.ifp(1);
    b.if_up().unwrap();
    let good = udp_frame(&w, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let with = |h: Vec<u8>, f: &[u8]| [h, f.to_vec()].concat();
    let n = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    let bad = vec![
        with(vnet(n, 0, 0, 0, 500, 6), &good),  // csum_start beyond the frame
        with(vnet(n, 0, 0, 0, 34, 100), &good), // csum_offset beyond the frame
        with(vnet(n, VIRTIO_NET_HDR_GSO_TCPV4, 9000, 1000, 34, 16), &good), // hdr_len beyond the frame
        with(vnet(0, 0x33, 0, 1000, 0, 0), &good), // unknown GSO type
        with(vnet(0, VIRTIO_NET_HDR_GSO_UDP, 0, 1000, 0, 0), &good), // UFO: unsupported
        with(vnet(n, VIRTIO_NET_HDR_GSO_TCPV4, 42, 0, 34, 16), &good), // zero gso_size
        with(vnet(n, VIRTIO_NET_HDR_GSO_TCPV6, 42, 1000, 34, 16), &good), // GSO TCP on a UDP/IPv4 frame
        with(vnet(0x80, 0, 0, 0, 0, 0), &good), // unknown flag
        with(vnet(0, 0, 0, 0, 0, 0), &good[..8]), // shorter than an Ethernet header
        vnet(0, 0, 0, 0, 0, 0)[..6].to_vec(),   // shorter than the header itself
    ];
    let port = w.vms[1].dev.port().clone();
    assert_eq!(port.inject(0, &bad), bad.len());
    assert_eq!(port.inject(0, &[with(vnet(0, 0, 0, 0, 0, 0), &good)]), 1);
    let got = receive(b, 1);
    assert_eq!(got.len(), 1, "only the good frame goes up");
    assert_eq!(got[0].data, good);
    let c = b.if_counters();
    assert_eq!(c.ierrors, bad.len() as u64, "{c:?}");
    // The interface keeps working: a TCP transfer goes through.
    bulk_while(&w, 4 << 20, |_, _| {});
}
