//! Native netmap traffic between guests: every packet delivered exactly
//! once, in order per ring, with its content intact, across ring
//! wraparound, several rings, both kloop modes, and `PTCTL` restarts in the
//! middle of the traffic.
//!
//! A netmap pipe pushes back on a full receiver, so there nothing may be
//! lost. A VALE switch drops what does not fit in the destination ring (as
//! netmap's does); there every packet is accounted for: received exactly
//! once, or counted as a switch drop.

use ptnet_host_sim::app::pktgen::{self, Function, PktgenConfig, Report};
use ptnet_host_sim::host::kloop::KloopMode;
use ptnet_host_sim::world::{Topology, World, WorldConfig};
use ptnet_tests::world;
use std::time::Duration;

fn run(w: WorldConfig, p: PktgenConfig) -> Report {
    let world = world(w);
    let r = pktgen::run(&world, &p).unwrap();
    world.shutdown().unwrap();
    r
}

fn pipe(mode: KloopMode, slots: u32, rings: u32) -> WorldConfig {
    WorldConfig { topology: Topology::Pipe, mode, slots, rings, ..WorldConfig::default() }
}

/// Nothing lost, duplicated, reordered or corrupted.
fn assert_exactly_once(r: &Report, expected: u64) {
    assert_eq!(r.tx_pkts, expected, "sender did not send everything: {r:?}");
    assert_eq!(r.rx_pkts, expected, "not everything arrived exactly once: {r:?}");
    assert_eq!((r.lost, r.dup_or_reordered, r.corrupt), (0, 0, 0), "{r:?}");
}

/// Everything sent is either received once, in order, intact, or dropped
/// by the switch.
fn assert_accounted(r: &Report) {
    assert_eq!((r.dup_or_reordered, r.corrupt), (0, 0), "{r:?}");
    assert_eq!(r.rx_pkts + r.switch_drops, r.tx_pkts, "{r:?}");
    assert!(r.lost <= r.switch_drops, "{r:?}");
}

fn count(n: u64) -> PktgenConfig {
    PktgenConfig { count: n, ..PktgenConfig::default() }
}

#[test]
fn pipe_delivers_exactly_once_in_direct_mode() {
    let r = run(pipe(KloopMode::Direct, 1024, 1), count(300_000));
    assert_exactly_once(&r, 300_000);
}

#[test]
fn pipe_delivers_exactly_once_in_kloop_mode() {
    let r = run(pipe(KloopMode::Thread, 1024, 1), count(200_000));
    assert_exactly_once(&r, 200_000);
}

#[test]
fn pipe_delivers_exactly_once_against_netmaps_own_host_sync() {
    // The host is netmap's C (netmap_kloop.c's per-ring sync, as QEMU's
    // ptnetmap backend runs it), not ours.
    let r = run(pipe(KloopMode::NetmapC, 1024, 1), count(200_000));
    assert_exactly_once(&r, 200_000);
    assert!(r.kicks > 0 && r.irqs > 0, "{r:?}");
}

#[test]
fn small_rings_wrap_around_thousands_of_times() {
    // 16 slots, 100k packets: each ring index is reused over 6000 times,
    // with full-ring back-pressure on every lap.
    for mode in [KloopMode::Direct, KloopMode::Thread, KloopMode::NetmapC] {
        let p = PktgenConfig { count: 100_000, batch: 7, size: 1514, ..PktgenConfig::default() };
        let r = run(pipe(mode, 16, 1), p);
        assert_exactly_once(&r, 100_000);
    }
}

#[test]
fn several_rings_keep_per_ring_order() {
    for mode in [KloopMode::Direct, KloopMode::Thread, KloopMode::NetmapC] {
        let p = PktgenConfig { count: 100_000, batch: 64, ..PktgenConfig::default() };
        let r = run(pipe(mode, 256, 4), p);
        // count is per sender and spread over its 4 rings.
        assert_exactly_once(&r, 100_000);
    }
}

#[test]
fn ptctl_delete_and_create_mid_traffic_lose_nothing() {
    for mode in [KloopMode::Direct, KloopMode::Thread, KloopMode::NetmapC] {
        // Paced, so that the run lasts at least 200 ms however fast the
        // machine: restarts every 3 ms land mid-traffic.
        let p = PktgenConfig {
            count: 400_000,
            batch: 128,
            rate: 2e6,
            restart_every: Some(Duration::from_millis(3)),
            ..PktgenConfig::default()
        };
        let r = run(pipe(mode, 512, 2), p);
        assert_exactly_once(&r, 400_000);
        assert!(r.restarts >= 5, "only {} restarts happened", r.restarts);
    }
}

#[test]
fn vale_switch_accounts_for_every_packet() {
    for mode in [KloopMode::Direct, KloopMode::Thread, KloopMode::NetmapC] {
        let r = run(WorldConfig { mode, ..WorldConfig::default() }, count(300_000));
        assert_accounted(&r);
        assert!(r.rx_pkts > 0);
    }
}

#[test]
fn vale_switch_is_lossless_below_saturation() {
    // 4096 slots at 100,000 packets/s: the receiver may be descheduled for
    // 40 ms (a loaded CI machine) before the switch has to drop.
    let p = PktgenConfig { count: 20_000, rate: 100_000.0, batch: 32, ..PktgenConfig::default() };
    let r = run(WorldConfig { slots: 4096, ..WorldConfig::default() }, p);
    assert_eq!(r.switch_drops, 0, "{r:?}");
    assert_exactly_once(&r, 20_000);
}

#[test]
fn three_guests_exchange_traffic_through_the_switch() {
    // Each ring pair gets 200,000 packets/s into 4096 slots: room for a
    // receiver descheduled for 20 ms.
    let w = WorldConfig { guests: 3, rings: 2, slots: 4096, ..WorldConfig::default() };
    let p =
        PktgenConfig { function: Function::Txrx, count: 50_000, rate: 400_000.0, batch: 64, ..PktgenConfig::default() };
    let r = run(w, p);
    assert_eq!(r.tx_pkts, 150_000);
    assert_accounted(&r);
    assert_eq!(r.switch_drops, 0, "{r:?}");
}

#[test]
fn ping_round_trips_through_the_switch() {
    for mode in [KloopMode::Direct, KloopMode::Thread, KloopMode::NetmapC] {
        let p = PktgenConfig { function: Function::Ping, count: 200, ..PktgenConfig::default() };
        let r = run(WorldConfig { mode, ..WorldConfig::default() }, p);
        let l = r.latency.expect("ping reports latency");
        assert_eq!(l.samples, 200);
        assert!(l.min_us > 0.0 && l.min_us <= l.p50_us && l.p50_us <= l.max_us);
    }
}

#[test]
fn each_new_application_on_the_same_rings_sees_each_packet_once() {
    // A receiver that stops at its count gives back what it read (a last
    // NIOCRXSYNC); the next one on the same rings starts after it.
    let w = World::new(WorldConfig::default()).unwrap();
    for round in 0..4 {
        let drops = w.vms[1].dev.port().drops();
        let p = PktgenConfig { count: 20_000, rate: 1e6, report: false, ..PktgenConfig::default() };
        let r = pktgen::run(&w, &p).unwrap();
        let dropped = w.vms[1].dev.port().drops() - drops;
        assert_eq!((r.rx_pkts + dropped, r.dup_or_reordered), (20_000, 0), "round {round}: {r:?}");
    }
    w.shutdown().unwrap();
}

#[test]
fn frames_an_application_consumed_are_not_given_to_the_stack_at_close() {
    // The application reads 8 frames, moves its head past them and exits
    // without a last NIOCRXSYNC (netmap does not sync at close): the
    // shim releases them (ptnrs_nm_release), so the stack, which has the
    // ring again, gets only what comes next.
    use ptnet::kring::Dir;
    use ptnet::net::offload::TxRequest;
    use ptnet_host_sim::guest::ifnet::SimPacket;
    use ptnet_host_sim::world::vm_mac;
    use ptnet_tests::{receive, udp_frame};

    let w = world(WorldConfig::default());
    let (a, b) = (w.ifp(0).clone(), w.ifp(1).clone());
    a.if_up().unwrap();
    b.if_up().unwrap();
    let send = |tag: u8| {
        let f = udp_frame(vm_mac(0), vm_mac(1), &[tag; 32]);
        b.transmit(SimPacket::new(f, TxRequest::default())).unwrap();
    };
    {
        let port = a.open().unwrap();
        for i in 0..8 {
            send(i);
        }
        let ring = port.ring(Dir::Rx, 0).unwrap();
        let mut seen = 0;
        while seen < 8 {
            assert!(port.poll(Dir::Rx, Duration::from_secs(5)).unwrap(), "only {seen} frames arrived");
            seen += ring.space();
            ring.advance(ring.tail());
        }
        assert_eq!(seen, 8);
    }
    send(0xee);
    let got = receive(&a, 1);
    assert_eq!(got.len(), 1, "the stack got {} frames", got.len());
    assert_eq!(got[0].data[got[0].data.len() - 1], 0xee, "the stack got a frame the application had");
    let mut q = ptnet_host_sim::guest::ifnet::InputQueue::new(64);
    let (mut extra, end) = (0, std::time::Instant::now() + Duration::from_millis(200));
    while std::time::Instant::now() < end {
        a.service(&mut q, 256);
        while q.pop().is_some() {
            extra += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(extra, 0, "frames the application had reached the stack");
    drop((a, b));
    w.shutdown().unwrap();
}
