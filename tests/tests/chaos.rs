//! A hostile host (`ptnet_host_sim::host::chaos`): CSB pointers that lie,
//! corrupted RX slots and virtio-net headers, stalled kloops, lost and
//! doubled interrupts, `PTFEAT` that grants what nobody asked. The guest
//! refuses and counts, never panics or hangs, and once the host behaves
//! again, passes traffic as if nothing had happened.

use ptnet::kring::Dir;
use ptnet_host_sim::app::ifperf::{self, PeerKind};
use ptnet_host_sim::app::pktgen::{self, PktgenConfig};
use ptnet_host_sim::world::{World, WorldConfig};
use std::time::Duration;

fn host_errors(w: &World) -> u64 {
    (0..2).map(|i| w.ifp(i).total_counters().host_errors).sum()
}

#[test]
fn netmap_traffic_survives_a_hostile_host_and_recovers() {
    let cfg = WorldConfig { chaos: Some(7), slots: 256, ..WorldConfig::default() };
    let w = World::new(cfg).expect("attach, retried while PTFEAT lies");
    let chaos = w.chaos.clone().unwrap();

    // Under chaos: whatever arrives, nothing panics or hangs.
    let p = PktgenConfig { duration: Duration::from_millis(1500), ..PktgenConfig::default() };
    let r = pktgen::run(&w, &p).expect("pktgen under chaos");
    let c = chaos.counts();
    assert!(c.csb > 0 && c.slots > 0 && c.irq_drops > 0 && c.irq_dups > 0 && c.stalls > 0, "{c:?}");
    assert!(host_errors(&w) > 0, "lying CSB pointers must be refused and counted");
    assert!(r.rx_pkts > 0, "{r:?}");

    // The host behaves again: every packet arrives, in order, intact.
    chaos.stop();
    let drops_before = w.drops();
    let p = PktgenConfig { count: 200_000, ..PktgenConfig::default() };
    let r = pktgen::run(&w, &p).expect("pktgen after chaos");
    let dropped = w.drops() - drops_before;
    assert_eq!(r.rx_pkts + dropped, 200_000, "losses only where the switch dropped: {r:?}");
    assert_eq!((r.dup_or_reordered, r.corrupt), (0, 0), "{r:?}");
    w.shutdown().unwrap();
}

#[test]
fn tcp_through_the_interface_survives_a_hostile_host_and_recovers() {
    let driver = ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true };
    let cfg = WorldConfig { chaos: Some(11), driver, ..WorldConfig::default() };
    let w = World::new(cfg).expect("attach, retried while PTFEAT lies");
    let chaos = w.chaos.clone().unwrap();
    for i in 0..2 {
        w.ifp(i).set_tx_timeout(Duration::from_millis(300));
    }

    // Under chaos the transfer may stall, fail or even verify wrong data
    // (a host that flips a header's DATA_VALID bit is trusted, as with
    // any virtio device); it must end.
    let _ = ifperf::bulk_within(
        &w,
        None,
        PeerKind::Guest,
        false,
        Duration::from_millis(1500),
        Duration::from_secs(3),
        false,
    );
    let rx = w.ifp(1).if_counters();
    let c = chaos.counts();
    assert!(
        c.headers + c.slots > 0 && rx.ierrors > 0,
        "corrupt slots and headers are dropped and counted: {c:?} {rx:?}"
    );
    assert!(w.attach_refused > 0 || c.ptfeat == 0, "a falsified PTFEAT makes attach refuse");

    chaos.stop();
    let r = ifperf::bulk(&w, None, PeerKind::Guest, false, Duration::from_millis(700), false).expect("TCP after chaos");
    assert!(r.bytes > 16 << 20, "{r:?}");
    let rx = w.ifp(1).counters(Dir::Rx, 0);
    assert!(rx.irqs > 0);
    w.shutdown().unwrap();
}
