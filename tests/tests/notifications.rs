//! Notifications: at a low rate every packet reaches a sleeping receiver
//! through an interrupt (it does not busy-wait); at saturation kicks and
//! interrupts are a small fraction of packets.

use ptnet::kring::Dir;
use ptnet_host_sim::app::pktgen::{self, PktgenConfig};
use ptnet_host_sim::host::kloop::KloopMode;
use ptnet_host_sim::world::WorldConfig;
use ptnet_tests::world;
use std::time::Duration;

#[test]
fn low_rate_packets_arrive_by_interrupt_without_busy_waiting() {
    for mode in [KloopMode::Direct, KloopMode::Thread] {
        let w = world(WorldConfig { mode, ..WorldConfig::default() });
        let p = PktgenConfig { count: 300, rate: 1000.0, batch: 1, ..PktgenConfig::default() };
        let r = pktgen::run(&w, &p).unwrap();
        assert_eq!(r.rx_pkts, 300, "{r:?}");
        let rx = w.ifp(1).counters(Dir::Rx, 0);
        // Each packet finds the receiver asleep and wakes it once; on a
        // loaded 2-core machine a host thread descheduled for over a
        // millisecond now and then delivers two packets with one interrupt
        // (224 of 300 seen with a chaos sweep running beside the tests).
        // A receiver that polled instead would take next to none.
        assert!(rx.irqs >= 150 && rx.irqs <= 320, "{mode:?}: {} interrupts for 300 packets", rx.irqs);
        // A receiver that slept syncs about twice per packet (the wakeup
        // and the check before sleeping again); a busy-waiting one would
        // sync millions of times in the 0.6 s this takes.
        assert!(rx.syncs < 300 * 4, "{mode:?}: {} syncs for 300 packets", rx.syncs);
        w.shutdown().unwrap();
    }
}

#[test]
fn saturation_needs_few_notifications() {
    let w = world(WorldConfig::default());
    let p = PktgenConfig { duration: Duration::from_secs(1), ..PktgenConfig::default() };
    let r = pktgen::run(&w, &p).unwrap();
    let per_pkt = (r.kicks + r.irqs) as f64 / r.rx_pkts as f64;
    // The benchmark goal is 1/256; a loaded CI machine gets some slack.
    assert!(per_pkt < 1.0 / 64.0, "{per_pkt:.5} notifications per packet: {r:?}");
    assert!(r.rx_pkts > 100_000, "{r:?}");
    w.shutdown().unwrap();
}
