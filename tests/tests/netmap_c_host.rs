//! The driver against netmap's own host: the ptnet rings served by
//! netmap's C per-ring sync (`netmap_kloop.c`, crate `ptnet-netmapc`; the
//! `NetmapC` kloop mode) instead of the simulator's Rust kloop. The
//! native traffic tests run in this mode too (`traffic.rs`); here, TCP
//! with TSO and checksum offload through the virtio-net header, over IPv4
//! and IPv6.

use ptnet_host_sim::app::ifperf::{self, PeerKind};
use ptnet_host_sim::host::kloop::KloopMode;
use ptnet_host_sim::world::{World, WorldConfig};
use std::time::Duration;

fn world() -> World {
    let driver = ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true };
    World::new(WorldConfig { mode: KloopMode::NetmapC, driver, ..WorldConfig::default() }).unwrap()
}

#[test]
fn tso_bulk_runs_against_netmaps_own_host_sync() {
    let w = world();
    for ipv6 in [false, true] {
        let r = ifperf::bulk(&w, None, PeerKind::Guest, ipv6, Duration::from_millis(700), false).unwrap();
        // Verified byte for byte at the receiver; super-packets went
        // through as such (TSO), and arrived as such (LRO).
        assert!(r.bytes > 64 << 20, "{r:?}");
        assert!(r.tso_packets > 100 && r.tso_avg_bytes > 16_000.0, "{r:?}");
        assert!(r.rx_lro > 100, "{r:?}");
    }
    let faults = w.guest_faults();
    assert_eq!(faults.host_errors, 0, "the driver refused netmap's host: {faults:?}");
    // netmap's host raises every interrupt the driver asks for: the
    // receive watchdog never had to pick up frames.
    assert_eq!(faults.missed_irqs, 0, "{faults:?}");
    w.shutdown().unwrap();
}
