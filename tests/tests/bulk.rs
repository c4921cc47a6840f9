//! The TSO bulk engine (one 64 KiB super-packet per send, as FreeBSD's
//! `tcp_output` drives a TSO interface) between guests and with Linux,
//! every byte checked at the receiver; and its recovery when the switch
//! drops.

use ptnet_host_sim::app::ifperf::{self, PeerKind};
use ptnet_host_sim::host::tap::Peer;
use ptnet_host_sim::world::WorldConfig;
use ptnet_tests::world;
use std::time::Duration;

fn cfg(slots: u32, buf_size: u32) -> WorldConfig {
    WorldConfig {
        slots,
        buf_size,
        driver: ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true },
        ..WorldConfig::default()
    }
}

#[test]
fn guest_to_guest_at_speed_both_families() {
    let w = world(cfg(1024, 2048));
    for v6 in [false, true] {
        let r = ifperf::bulk(&w, None, PeerKind::Guest, v6, Duration::from_millis(700), false).unwrap();
        assert!(r.bytes > 64 << 20, "{r:?}");
        assert!(r.tso_packets > 0 && r.tso_avg_bytes > 32_000.0, "{r:?}");
        assert!(r.rx_lro > 0, "{r:?}");
    }
    let c = w.ifp(1).if_counters();
    assert_eq!((c.ierrors, c.iqdrops), (0, 0), "{c:?}");
    // A healthy host: no interrupt was lost, so the receive watchdog never
    // had to receive, and no ring was restarted.
    let f = w.guest_faults();
    assert_eq!((f.missed_irqs, f.wedged, f.host_errors), (0, 0, 0), "{f:?}");
}

#[test]
fn with_linux_both_ways_through_the_router() {
    let w = world(cfg(1024, 2048));
    let tap = w.attach_tap(1500, Peer::Routed).unwrap();
    for v6 in [false, true] {
        // Linux segments every super-packet in software from our header.
        let r = ifperf::bulk(&w, Some(&tap), PeerKind::Linux, v6, Duration::from_millis(700), false).unwrap();
        assert!(r.bytes > 16 << 20 && r.tso_packets > 0, "{r:?}");
        let r = ifperf::bulk_from_linux(&w, &tap, v6, Duration::from_millis(700), false).unwrap();
        assert!(r.bytes > 16 << 20 && r.rx_lro > 0, "{r:?}");
    }
}

#[test]
fn recovers_from_switch_drops() {
    // 64-slot rings hold one super-packet: the switch drops, TCP
    // retransmits, the stream still verifies byte for byte.
    let w = world(cfg(64, 2048));
    let r = ifperf::bulk(&w, None, PeerKind::Guest, false, Duration::from_millis(700), false).unwrap();
    assert!(r.bytes > 1 << 20, "{r:?}");
    assert!(r.retransmits > 0 && w.drops() > 0, "the switch was expected to drop: {r:?}");
}
