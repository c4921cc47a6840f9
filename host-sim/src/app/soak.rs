//! `ptnet-sim soak`: mixed load for a long time, then the books are closed.
//!
//! Two worlds run side by side on the machine. In one, netmap applications
//! send pkt-gen traffic (direct kloops) while every guest gets `PTCTL`
//! delete/create at random intervals; each round must deliver every packet
//! in order and intact, except those the switch dropped and counted. In the
//! other, TCP bulk runs between two guests' network interfaces (kloop
//! threads) while their links flap and their hosts restart; every stream
//! must verify byte for byte. At the end, with traffic drained:
//!
//! - every kick a guest driver counted reached its device model;
//! - on each TCP direction, packets the sender put on the wire equal those
//!   the receiver took plus those counted lost (driver or switch drops);
//! - after detach, no CSB memory is left, every host buffer sits in
//!   exactly one slot, and no packet is alive.

use crate::app::ifperf::{self, PeerKind};
use crate::app::pktgen::{self, PktgenConfig};
use crate::guest::device::Footprint;
use crate::guest::ifnet::InputQueue;
use crate::guest::shim::live_mbufs;
use crate::host::kloop::KloopMode;
use crate::rng::Rng;
use crate::world::{World, WorldConfig};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct SoakConfig {
    /// How long to load the guests.
    pub duration: Duration,
    /// Seed of the restart and flap schedule.
    pub seed: u64,
    /// Print a line per round.
    pub print: bool,
}

/// What happened, and what was checked.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SoakReport {
    /// Wall time of the load.
    pub seconds: f64,
    /// pkt-gen rounds, and their packets.
    pub netmap_rounds: u64,
    /// Packets sent by netmap applications.
    pub netmap_sent: u64,
    /// Of which received, in order and intact.
    pub netmap_received: u64,
    /// Of which dropped by the switch (destination ring full), counted.
    pub netmap_switch_drops: u64,
    /// `PTCTL` delete/create pairs under traffic, both worlds.
    pub ptctl_restarts: u64,
    /// TCP bulk rounds, all verified.
    pub tcp_rounds: u64,
    /// Bytes they delivered and verified.
    pub tcp_bytes: u64,
    /// Their retransmission episodes.
    pub tcp_retransmits: u64,
    /// Interface down/up cycles under TCP.
    pub link_flaps: u64,
    /// Kicks the guests counted (all of which the device models saw).
    pub kicks: u64,
    /// TCP-world packets on the wire, each received or counted lost.
    pub tcp_world_packets: u64,
    /// What one interface held (the same at the end as at attach).
    pub footprint: Option<Footprint>,
}

/// Packets per pkt-gen round.
const ROUND_PKTS: u64 = 1_000_000;
/// The paced rounds' rate (packets per second).
const PACED_PPS: f64 = 2e6;
/// One TCP bulk transfer.
const TCP_ROUND: Duration = Duration::from_secs(2);

/// Runs the soak; `Err` names the first broken guarantee.
pub fn run(cfg: &SoakConfig) -> Result<SoakReport, String> {
    let attach = |c: WorldConfig| World::new(c).map_err(|e| format!("attach: {e}"));
    let nm = attach(WorldConfig { mode: KloopMode::Direct, ..WorldConfig::default() })?;
    let tcp_driver = ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: false };
    let tcp = attach(WorldConfig { mode: KloopMode::Thread, driver: tcp_driver, ..WorldConfig::default() })?;
    let report = Mutex::new(SoakReport::default());
    let (start, stop) = (Instant::now(), AtomicBool::new(false));
    let tcp_restarts = AtomicU64::new(0);
    let say = |s: String| {
        if cfg.print {
            println!("{:8.1}s {s}", start.elapsed().as_secs_f64());
        }
    };
    let results: [Result<(), String>; 3] = std::thread::scope(|s| {
        let netmap = s.spawn(|| {
            let mut rng = Rng::new(cfg.seed);
            let mut round = 0u64;
            while start.elapsed() < cfg.duration {
                round += 1;
                let every = Duration::from_millis(20 + rng.below(200));
                // Overload (the switch drops) and a rate the receiver keeps
                // up with, in turn.
                let rate = if round.is_multiple_of(2) { PACED_PPS } else { 0.0 };
                netmap_round(&nm, every, rate, &report, &say)?;
            }
            Ok(())
        });
        let bulk = s.spawn(|| {
            let mut round = 0u64;
            let res = loop {
                if start.elapsed() >= cfg.duration {
                    break Ok(());
                }
                round += 1;
                let v6 = round.is_multiple_of(2);
                match ifperf::bulk(&tcp, None, PeerKind::Guest, v6, TCP_ROUND, false) {
                    Ok(r) => {
                        say(format!(
                            "tcp round {round} ({}): {} bytes verified, {:.2} Gbps, {} retransmissions",
                            if v6 { "IPv6" } else { "IPv4" },
                            r.bytes,
                            r.gbps,
                            r.retransmits
                        ));
                        let mut rep = report.lock().unwrap();
                        rep.tcp_rounds += 1;
                        rep.tcp_bytes += r.bytes;
                        rep.tcp_retransmits += r.retransmits;
                    }
                    Err(e) => break Err(format!("tcp round {round}: {e}")),
                }
            };
            stop.store(true, Ordering::Release);
            res
        });
        let flaps = s.spawn(|| {
            let mut rng = Rng::new(cfg.seed ^ 0xf1a9);
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
                let ifp = tcp.ifp(rng.below(2) as usize);
                if rng.below(3) == 0 {
                    ifp.restart().map_err(|e| format!("restart: {e}"))?;
                    tcp_restarts.fetch_add(1, Ordering::Relaxed);
                } else {
                    ifp.if_down().map_err(|e| format!("down: {e}"))?;
                    std::thread::sleep(Duration::from_millis(1 + rng.below(5)));
                    ifp.if_up().map_err(|e| format!("up: {e}"))?;
                    report.lock().unwrap().link_flaps += 1;
                }
            }
            Ok(())
        });
        [netmap, bulk, flaps].map(|h| h.join().unwrap_or_else(|_| Err("a soak thread panicked".into())))
    });
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    let mut rep = report.into_inner().unwrap();
    rep.seconds = start.elapsed().as_secs_f64();
    rep.ptctl_restarts += tcp_restarts.load(Ordering::Relaxed);
    rep.tcp_world_packets = close_tcp_books(&tcp)?;
    rep.footprint = Some(tcp.ifp(0).footprint());
    rep.kicks = kicks_reached_the_host(&nm)? + kicks_reached_the_host(&tcp)?;
    for w in [nm, tcp] {
        close_memory_books(w)?;
    }
    if live_mbufs() != 0 {
        return Err(format!("{} packets neither sent nor freed", live_mbufs()));
    }
    Ok(rep)
}

/// One pkt-gen round with `PTCTL` restarts every `every`: every packet
/// arrives in order and intact, or was dropped by the switch and counted.
fn netmap_round(
    w: &World,
    every: Duration,
    rate: f64,
    report: &Mutex<SoakReport>,
    say: &impl Fn(String),
) -> Result<(), String> {
    let drops = w.vms[1].dev.port().drops();
    let p =
        PktgenConfig { count: ROUND_PKTS, rate, restart_every: Some(every), report: false, ..PktgenConfig::default() };
    let r = pktgen::run(w, &p).map_err(|e| format!("netmap round: {e}"))?;
    let dropped = w.vms[1].dev.port().drops() - drops;
    say(format!(
        "netmap round ({}): {} sent, {} received, {dropped} dropped by the switch, {} PTCTL restarts, {} dup/reordered, {} corrupt",
        if rate > 0.0 { "paced" } else { "overload" },
        r.tx_pkts,
        r.rx_pkts,
        r.restarts,
        r.dup_or_reordered,
        r.corrupt
    ));
    if r.tx_pkts != ROUND_PKTS || r.rx_pkts + dropped != ROUND_PKTS || r.dup_or_reordered != 0 || r.corrupt != 0 {
        return Err(format!("netmap round lost, duplicated or corrupted packets: {r:?}, switch drops {dropped}"));
    }
    let mut rep = report.lock().unwrap();
    rep.netmap_rounds += 1;
    rep.netmap_sent += r.tx_pkts;
    rep.netmap_received += r.rx_pkts;
    rep.netmap_switch_drops += dropped;
    rep.ptctl_restarts += r.restarts;
    Ok(())
}

/// Drains both TCP guests, then checks each direction: packets on the wire
/// = packets received + counted losses. Returns the packets accounted.
fn close_tcp_books(w: &World) -> Result<u64, String> {
    // Twice: each drain also sends what its queues still held.
    for _ in 0..2 {
        for i in 0..2 {
            w.ifp(i).drain(&mut InputQueue::new(1024), Duration::from_millis(200));
        }
    }
    let mut total = 0;
    for (a, b) in [(0, 1), (1, 0)] {
        let (tx, rx) = (w.ifp(a).if_counters(), w.ifp(b).if_counters());
        let port_drops = w.vms[b].dev.port().drops();
        let sent = tx.opackets - tx.tx_abandoned;
        let accounted = rx.ipackets + rx.ierrors + rx.iqdrops + port_drops;
        if sent != accounted {
            return Err(format!(
                "vm{a} -> vm{b}: {sent} packets on the wire, {} received, {} + {} dropped by the guest, {port_drops} by the switch",
                rx.ipackets, rx.ierrors, rx.iqdrops
            ));
        }
        total += sent;
    }
    Ok(total)
}

/// Every kick a guest's driver counted reached the device model.
fn kicks_reached_the_host(w: &World) -> Result<u64, String> {
    let mut total = 0;
    for vm in &w.vms {
        let guest = vm.ifp().total_counters().kicks;
        let host = vm.dev.stats.kicks.load(Ordering::Relaxed);
        if guest != host {
            return Err(format!("{}: the driver counted {guest} kicks, the device saw {host}", vm.kernel.name));
        }
        total += guest;
    }
    Ok(total)
}

/// Detaches every guest: no CSB memory left, every host buffer in one slot.
fn close_memory_books(mut w: World) -> Result<(), String> {
    for vm in &mut w.vms {
        vm.detach()?;
        if vm.kernel.mem.outstanding() != (0, 0) {
            return Err(format!("{}: guest memory left allocated after detach", vm.kernel.name));
        }
        vm.dev.port().buffers_intact()?;
    }
    Ok(())
}
