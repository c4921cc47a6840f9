//! `ptnet-sim`: runs the ptnet driver core against a simulated hypervisor
//! and host netmap, and measures it.

use clap::{Parser, Subcommand};
use ptnet::net::caps::IfCap;
use ptnet_host_sim::app::baseline;
use ptnet_host_sim::app::ifperf::{self, PeerKind};
use ptnet_host_sim::app::pktgen::{self, Function, PktgenConfig};
use ptnet_host_sim::app::soak::{self, SoakConfig};
use ptnet_host_sim::app::sweep::{self, SweepConfig};
use ptnet_host_sim::guest::netmap::NmMode;
use ptnet_host_sim::host::chaos::{ChaosCounts, ChaosRecord};
use ptnet_host_sim::host::kloop::KloopMode;
use ptnet_host_sim::host::tap::{Peer, TapBridge};
use ptnet_host_sim::world::{GuestFaults, Topology, World, WorldConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "ptnet-sim", version, about = "ptnet driver core on a simulated hypervisor and host netmap")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the shared C structures' sizes and field offsets as JSON.
    Abi,
    /// Attach the driver in two VMs on a VALE switch and show what happens.
    Demo {
        /// Seconds of traffic.
        #[arg(short = 'd', long, default_value_t = 3.0)]
        duration: f64,
    },
    /// pkt-gen-like traffic between VMs on a VALE switch (or a pipe).
    Pktgen(PktgenArgs),
    /// TCP bulk over the network interface: guest to guest through the
    /// switch, or guest and a Linux socket through a TAP device.
    Tcp(TcpArgs),
    /// TCP request/response (one transaction in flight, like TCP_RR).
    Rr(RrArgs),
    /// Mixed load for a long time (netmap traffic with PTCTL restarts, TCP
    /// with link flaps and restarts), then checks that nothing the protocol
    /// guarantees was lost or duplicated and that the counters add up.
    Soak {
        /// Minutes of load (fractions allowed).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Seed of the restart and flap schedule.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Machine-readable report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// `tcp --chaos` and `pktgen --chaos` over many seeds, each run in its
    /// own process, under extra CPU load; keeps the replay file of every
    /// failing run. Exit status 1 if any failed.
    ChaosSweep {
        /// First seed.
        #[arg(long, default_value_t = 1)]
        first: u64,
        /// Seeds.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// Which runs: tcp, pktgen, or both.
        #[arg(long, value_delimiter = ',', default_value = "tcp,pktgen")]
        kinds: Vec<String>,
        /// Busy threads competing for the CPUs.
        #[arg(long, default_value_t = 2)]
        load: usize,
        /// Seconds of traffic per run.
        #[arg(short = 'd', long, default_value_t = 1.0)]
        duration: f64,
        /// Where the failing runs' replay files go.
        #[arg(long, default_value = "target/chaos-sweep")]
        out: PathBuf,
        /// Kloop mode of every run.
        #[arg(long, value_enum, default_value_t = KloopMode::Direct)]
        mode: KloopMode,
    },
    /// Benchmarks with same-run baselines.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(clap::Args, Clone)]
struct PktgenArgs {
    /// Function: tx, rx, txrx or ping.
    #[arg(short = 'f', long, value_enum, default_value_t = Function::Tx)]
    function: Function,
    /// Frame size in bytes.
    #[arg(short = 'l', long, default_value_t = 60)]
    size: usize,
    /// Batch: most packets per sync.
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: u32,
    /// Packets per sender (0: run for --duration).
    #[arg(short = 'n', long, default_value_t = 0)]
    count: u64,
    /// Rate in packets per second per sender (0: unlimited).
    #[arg(short = 'R', long, default_value_t = 0.0)]
    rate: f64,
    /// Ring pairs per port.
    #[arg(short = 'r', long, default_value_t = 1)]
    rings: u32,
    /// Slots per ring.
    #[arg(short = 's', long, default_value_t = 1024)]
    slots: u32,
    /// Host kloop mode.
    #[arg(long, value_enum, default_value_t = KloopMode::Direct)]
    mode: KloopMode,
    /// Number of VMs on the switch.
    #[arg(short = 'g', long, default_value_t = 2)]
    guests: usize,
    /// Seconds to run when --count is 0.
    #[arg(short = 'd', long, default_value_t = 3.0)]
    duration: f64,
    /// Connect two VMs with a netmap pipe instead of a switch.
    #[arg(long)]
    pipe: bool,
    /// The guests' netmap: `copy` (a stock FreeBSD kernel: netmap's own
    /// buffers, the driver copies) or `zero-copy` (a kernel built with
    /// WITH_PTNETMAP: applications use the host's rings).
    #[arg(long, value_enum, default_value_t = NmMode::Copy)]
    netmap: NmMode,
    /// Issue PTCTL delete/create in every VM every N milliseconds.
    #[arg(long)]
    restart_ms: Option<u64>,
    /// A hostile host, seeded: corrupts CSB pointers, slots and headers,
    /// stalls kloops, drops and doubles interrupts, flips PTFEAT; then
    /// behaves, and the same traffic must pass cleanly.
    #[arg(long, value_name = "SEED")]
    chaos: Option<u64>,
    #[command(flatten)]
    chaos_files: ChaosFiles,
    /// Print guest console lines.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Clone)]
struct NetArgs {
    /// The other end.
    #[arg(long, value_enum, default_value_t = PeerKind::Guest)]
    peer: PeerKind,
    /// Reach the Linux peer through a Linux router whose egress has
    /// offloads off (Linux then checks every header field).
    #[arg(long)]
    routed: bool,
    /// Seconds.
    #[arg(short = 'd', long, default_value_t = 3.0)]
    duration: f64,
    /// Slots per ring (1024 keeps a ring's buffers in a core's L2 cache).
    #[arg(short = 's', long, default_value_t = 1024)]
    slots: u32,
    /// Host kloop mode.
    #[arg(long, value_enum, default_value_t = KloopMode::Direct)]
    mode: KloopMode,
    /// netmap buffer size (netmap's `buf_size`).
    #[arg(long, default_value_t = 2048)]
    buf_size: u32,
    /// Print guest console lines.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
}

impl NetArgs {
    /// Two guests on the switch with the tool's defaults (the demo and the
    /// benchmark).
    fn guests(duration: f64, json: bool) -> Self {
        Self {
            peer: PeerKind::Guest,
            routed: false,
            duration,
            slots: 1024,
            mode: KloopMode::Direct,
            buf_size: 2048,
            verbose: false,
            json,
        }
    }
}

#[derive(clap::Args, Clone)]
struct TcpArgs {
    #[command(flatten)]
    net: NetArgs,
    /// IPv6.
    #[arg(short = '6', long)]
    ipv6: bool,
    /// Turn every offload off on the guests (software checksums, no TSO/LRO).
    #[arg(long)]
    no_offloads: bool,
    /// Linux sends to the guest instead (with --peer linux).
    #[arg(long)]
    reverse: bool,
    /// A hostile host, seeded (as for pktgen), guest to guest.
    #[arg(long, value_name = "SEED")]
    chaos: Option<u64>,
    #[command(flatten)]
    chaos_files: ChaosFiles,
}

/// Recording and replaying a hostile host's faults.
#[derive(clap::Args, Clone, Default)]
struct ChaosFiles {
    /// Replays the faults recorded in FILE (by --chaos-record) instead of
    /// drawing them from a seed.
    #[arg(long, value_name = "FILE")]
    chaos_replay: Option<PathBuf>,
    /// Writes the faults the hostile host injected to FILE (JSON), for
    /// --chaos-replay.
    #[arg(long, value_name = "FILE")]
    chaos_record: Option<PathBuf>,
}

impl ChaosFiles {
    /// The seed and the record to replay, if any: a replay wins.
    fn source(&self, seed: Option<u64>) -> Result<(Option<u64>, Option<Arc<ChaosRecord>>), String> {
        match &self.chaos_replay {
            Some(p) => {
                let r = ChaosRecord::load(p)?;
                Ok((Some(r.seed), Some(Arc::new(r))))
            }
            None => Ok((seed, None)),
        }
    }

    /// Writes what `world`'s hostile host did, when asked to.
    fn save(&self, world: &World) -> Result<(), String> {
        match (&self.chaos_record, &world.chaos) {
            (Some(p), Some(c)) => c.record().save(p),
            _ => Ok(()),
        }
    }
}

#[derive(clap::Args, Clone)]
struct RrArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Request bytes.
    #[arg(long, default_value_t = 1)]
    req: usize,
    /// Response bytes.
    #[arg(long, default_value_t = 1)]
    resp: usize,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Guest-to-guest 60-byte traffic through the switch vs an ideal SPSC copy.
    /// TCP over the network interface vs memcpy and a Linux veth pair.
    Ifnet {
        /// Seconds per measurement.
        #[arg(short = 'd', long, default_value_t = 3.0)]
        duration: f64,
        /// Machine-readable report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Guest-to-guest 60-byte traffic through the switch vs an ideal SPSC copy.
    Native {
        /// Seconds per measurement.
        #[arg(short = 'd', long, default_value_t = 3.0)]
        duration: f64,
        /// Measurements of each (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Slots per ring. At 1024 slots a 512-packet batch leaves room
        /// for two batches, and a receiver woken by an interrupt overflows
        /// the ring before it runs; 2048 absorbs that.
        #[arg(short = 's', long, default_value_t = 2048)]
        slots: u32,
        /// Batch.
        #[arg(short = 'b', long, default_value_t = 512)]
        batch: u32,
        /// The host's kloop: direct, kloop (a thread per ring), or
        /// netmap-c (netmap's own C per-ring sync, a thread per ring).
        #[arg(long, value_enum, default_value_t = KloopMode::Direct)]
        mode: KloopMode,
        /// Machine-readable report on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn world_config(a: &PktgenArgs) -> Result<WorldConfig, String> {
    let (chaos, chaos_replay) = a.chaos_files.source(a.chaos)?;
    Ok(WorldConfig {
        guests: if a.pipe { 2 } else { a.guests },
        rings: a.rings,
        slots: a.slots,
        mode: a.mode,
        topology: if a.pipe { Topology::Pipe } else { Topology::Vale },
        echo: a.verbose,
        chaos,
        chaos_replay,
        netmap: a.netmap,
        ..WorldConfig::default()
    })
}

fn pktgen_cmd(a: PktgenArgs) -> Result<(), String> {
    if a.guests < 2 {
        return Err("--guests must be at least 2".into());
    }
    let world = World::new(world_config(&a)?).map_err(|e| format!("attach failed: {e}"))?;
    let cfg = PktgenConfig {
        function: a.function,
        size: a.size,
        batch: a.batch,
        count: a.count,
        rate: a.rate,
        duration: Duration::from_secs_f64(a.duration),
        report: !a.json,
        restart_every: a.restart_ms.map(Duration::from_millis),
    };
    let r = pktgen::run(&world, &cfg)?;
    if world.chaos.is_some() {
        return pktgen_after_chaos(world, r, &a.chaos_files, a.json);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap());
    } else {
        print_summary(&r);
    }
    world.shutdown()
}

/// Packets sent once a hostile host behaves again.
const AFTER_CHAOS_PKTS: u64 = 200_000;

/// `pktgen --chaos`: what the host did and the guests counted, then the
/// host behaves and every packet must arrive, in order and intact.
fn pktgen_after_chaos(world: World, under: pktgen::Report, files: &ChaosFiles, json: bool) -> Result<(), String> {
    let chaos = world.chaos.clone().ok_or("no chaos")?;
    let counts = chaos.counts();
    chaos.stop();
    files.save(&world)?;
    let faults = world.guest_faults();
    let drops = world.drops();
    // At a rate the receiver keeps up with, so that what the switch
    // drops, if anything, is the exception.
    let cfg = PktgenConfig { count: AFTER_CHAOS_PKTS, rate: 1e6, report: false, ..PktgenConfig::default() };
    let after = pktgen::run(&world, &cfg)?;
    let dropped = world.drops() - drops;
    let clean = after.rx_pkts + dropped == AFTER_CHAOS_PKTS && after.dup_or_reordered == 0 && after.corrupt == 0;
    if json {
        let j = serde_json::json!({ "under_chaos": under, "chaos": counts, "guest_faults": faults, "after_chaos": after, "after_chaos_clean": clean });
        println!("{}", serde_json::to_string_pretty(&j).unwrap());
    } else {
        print_summary(&under);
        print_chaos(&counts, &faults);
        println!(
            "After the chaos: {} sent, {} received, {} dropped by the switch, {} dup/reordered, {} corrupt; {} of the run under chaos arrived late",
            AFTER_CHAOS_PKTS, after.rx_pkts, dropped, after.dup_or_reordered, after.corrupt, after.stale
        );
    }
    world.shutdown()?;
    if clean {
        Ok(())
    } else {
        Err("traffic did not recover once the host behaved".into())
    }
}

fn print_chaos(c: &ChaosCounts, f: &GuestFaults) {
    println!(
        "Chaos injected: {} CSB lies, {} corrupt slots, {} corrupt headers, {} kloop stalls, {} interrupts dropped, {} doubled, {} PTFEAT lies",
        c.csb, c.slots, c.headers, c.stalls, c.irq_drops, c.irq_dups, c.ptfeat
    );
    println!(
        "Guests counted: {} attaches refused, {} host pointer updates refused, {} bad frames dropped, {} TX watchdog timeouts, {} lost interrupts recovered, {} wedged rings restarted",
        f.attach_refused, f.host_errors, f.bad_frames, f.tx_watchdog, f.missed_irqs, f.wedged
    );
}

fn print_summary(r: &pktgen::Report) {
    println!(
        "Sent {} packets, received {} in {:.3} s: {:.3} Mpps {:.3} Gbps ({} bytes, batch {}, {} ring(s) x {} slots, {:?} mode)",
        r.tx_pkts, r.rx_pkts, r.seconds, r.mpps, r.gbps, r.size, r.batch, r.rings, r.slots, r.mode
    );
    println!(
        "Notifications: {} kicks ({:.5}/pkt), {} interrupts ({:.5}/pkt); switch drops {}; lost {} dup/reordered {} corrupt {} of an earlier run {}",
        r.kicks, r.kicks_per_pkt, r.irqs, r.irqs_per_pkt, r.switch_drops, r.lost, r.dup_or_reordered, r.corrupt, r.stale
    );
    if let Some(l) = &r.latency {
        println!(
            "Round trip over {} probes: min {:.1} us, avg {:.1} us, p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            l.samples, l.min_us, l.avg_us, l.p50_us, l.p99_us, l.max_us
        );
    }
}

fn demo(duration: f64) -> Result<(), String> {
    println!("== Two VMs, each with a ptnet device passing through a port of VALE switch vale0 ==");
    let cfg = WorldConfig { echo: true, ..WorldConfig::default() };
    let world = World::new(cfg).map_err(|e| format!("attach failed: {e}"))?;
    print_footprint(&world);
    println!("\n== pkt-gen: vm0 -> vm1, 60-byte frames, {duration} s ==");
    let tx = PktgenConfig { duration: Duration::from_secs_f64(duration), report: true, ..PktgenConfig::default() };
    let r = pktgen::run(&world, &tx)?;
    print_summary(&r);
    println!("\n== pkt-gen ping: vm0 <-> vm1, 1000 probes ==");
    let ping = PktgenConfig { function: Function::Ping, count: 1000, ..PktgenConfig::default() };
    let r = pktgen::run(&world, &ping)?;
    print_summary(&r);
    println!("\n== Detach ==");
    world.shutdown()?;
    println!("\n== Two VMs again, ptnet as their network interface (virtio-net header granted) ==");
    let net = NetArgs { verbose: true, ..NetArgs::guests(duration, false) };
    let (world, _) = net_world(&net)?;
    println!("\n== TCP bulk: vm0 -> vm1, TSO super-packets, every byte checked, {duration} s ==");
    print_bulk(&ifperf::bulk(&world, None, PeerKind::Guest, false, Duration::from_secs_f64(duration), true)?);
    println!("\n== TCP request/response: vm0 <-> vm1, 1 byte each way, 1 s ==");
    print_rr(&ifperf::rr(&world, None, PeerKind::Guest, 1, 1, Duration::from_secs(1), true)?);
    println!("\n== Detach ==");
    world.shutdown()
}

/// Per-interface memory: all of it fixed at attach.
fn print_footprint(w: &World) {
    let f = w.ifp(0).footprint();
    println!(
        "Memory per interface (bounded at attach): kernel memory {} B (softc, rings, queues, mutexes), CSB {} B; software queues at most {} packets ({:.1} MiB)",
        f.kernel_bytes,
        f.csb_bytes,
        f.txq_packets,
        f.txq_bytes_max as f64 / (1 << 20) as f64
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench_native(
    duration: f64,
    repeat: usize,
    slots: u32,
    batch: u32,
    mode: KloopMode,
    json: bool,
) -> Result<(), String> {
    let d = Duration::from_secs_f64(duration);
    // The rows, each measured in every run next to the baseline: the
    // default module on a stock kernel (netmap's own buffers, copied), the
    // zero-copy build on a WITH_PTNETMAP kernel, and the C driver's sync
    // (netmap's netmap_pt_guest_txsync/rxsync) on the same zero-copy
    // rings against the same host: the head-to-head.
    let rows = [("copy", NmMode::Copy), ("zero_copy", NmMode::ZeroCopy), ("c_zero_copy", NmMode::ZeroCopyC)];
    let mut baselines = Vec::new();
    let mut runs: Vec<Vec<pktgen::Report>> = vec![Vec::new(); rows.len()];
    for i in 0..repeat.max(1) {
        let b = baseline::run(60, batch, slots, 2048, d);
        let mut line = format!("run {}: baseline {:.3} Mpps", i + 1, b.mpps);
        for (k, (name, netmap)) in rows.iter().enumerate() {
            let world = World::new(WorldConfig { slots, netmap: *netmap, mode, ..WorldConfig::default() })
                .map_err(|e| e.to_string())?;
            let cfg = PktgenConfig { batch, duration: d, ..PktgenConfig::default() };
            let r = pktgen::run(&world, &cfg)?;
            world.shutdown()?;
            line += &format!(
                ", {name} {:.3} Mpps (ratio {:.3}, syncs/s {:.0}, kicks/pkt {:.5}, irqs/pkt {:.5}, drops {})",
                r.mpps,
                r.mpps / b.mpps,
                r.syncs_per_sec,
                r.kicks_per_pkt,
                r.irqs_per_pkt,
                r.switch_drops
            );
            runs[k].push(r);
        }
        if !json {
            println!("{line}");
        }
        baselines.push(b.mpps);
    }
    let baseline_mpps = median(baselines.clone());
    let row = |rs: &[pktgen::Report]| {
        let mpps = median(rs.iter().map(|r| r.mpps).collect());
        let kicks = median(rs.iter().map(|r| r.kicks_per_pkt).collect());
        let irqs = median(rs.iter().map(|r| r.irqs_per_pkt).collect());
        let syncs = median(rs.iter().map(|r| r.syncs_per_sec).collect());
        serde_json::json!({
            "mpps": mpps,
            "ratio": mpps / baseline_mpps,
            "syncs_per_sec": syncs,
            "kicks_per_pkt": kicks,
            "irqs_per_pkt": irqs,
            "notifications_per_pkt": kicks + irqs,
            "runs": rs.iter().map(|r| serde_json::json!({
                "mpps": r.mpps, "syncs_per_sec": r.syncs_per_sec,
                "kicks_per_pkt": r.kicks_per_pkt, "irqs_per_pkt": r.irqs_per_pkt,
                "switch_drops": r.switch_drops, "lost": r.lost, "corrupt": r.corrupt,
            })).collect::<Vec<_>>(),
        })
    };
    let mut report = serde_json::json!({
        "bench": "native",
        "size": 60,
        "batch": batch,
        "slots": slots,
        "mode": mode,
        "seconds_per_run": duration,
        "baseline_mpps": baseline_mpps,
        "baseline_runs": baselines,
        "goal": { "ratio_min": 0.5, "notifications_per_pkt_max": 1.0 / 256.0, "rust_vs_c_min": 0.95 },
    });
    for ((name, _), rs) in rows.iter().zip(&runs) {
        report[*name] = row(rs);
    }
    let copy_cost =
        report["copy"]["mpps"].as_f64().unwrap_or(0.0) / report["zero_copy"]["mpps"].as_f64().unwrap_or(1.0);
    report["copy_vs_zero_copy"] = serde_json::json!(copy_cost);
    // The Rust guest against the C guest (goal: at least 0.95).
    let rust_vs_c =
        report["zero_copy"]["mpps"].as_f64().unwrap_or(0.0) / report["c_zero_copy"]["mpps"].as_f64().unwrap_or(1.0);
    report["rust_vs_c"] = serde_json::json!(rust_vs_c);
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    } else {
        for (name, _) in rows {
            let r = &report[name];
            println!(
                "median {name}: {:.3} Mpps, baseline {:.3} Mpps, ratio {:.3}; notifications/pkt {:.5} (goal <= {:.5})",
                r["mpps"].as_f64().unwrap_or(0.0),
                baseline_mpps,
                r["ratio"].as_f64().unwrap_or(0.0),
                r["notifications_per_pkt"].as_f64().unwrap_or(0.0),
                1.0 / 256.0
            );
        }
        println!("copy mode runs at {copy_cost:.3} of zero copy");
        println!("the Rust guest runs at {rust_vs_c:.3} of the C guest (goal >= 0.95)");
    }
    Ok(())
}

/// The world of the interface commands: guests that want the virtio-net
/// header (and with `require`, refuse to attach without it).
fn net_config(a: &NetArgs, require: bool) -> WorldConfig {
    WorldConfig {
        slots: a.slots,
        mode: a.mode,
        buf_size: a.buf_size,
        echo: a.verbose,
        driver: ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: require },
        ..WorldConfig::default()
    }
}

/// Two guests with the virtio-net header on a switch, and with `--peer
/// linux` a TAP device.
fn net_world(a: &NetArgs) -> Result<(World, Option<TapBridge>), String> {
    let cfg = net_config(a, false);
    let world = World::new(cfg).map_err(|e| format!("attach failed: {e}"))?;
    let tap = match a.peer {
        PeerKind::Guest => None,
        PeerKind::Linux => {
            let peer = if a.routed { Peer::Routed } else { Peer::Local };
            Some(world.attach_tap(1500, peer).map_err(|e| format!("TAP device: {e}"))?)
        }
    };
    Ok((world, tap))
}

fn tcp_cmd(a: TcpArgs) -> Result<(), String> {
    if a.chaos.is_some() || a.chaos_files.chaos_replay.is_some() {
        return tcp_chaos(&a);
    }
    let (world, tap) = net_world(&a.net)?;
    if a.no_offloads {
        for vm in &world.vms {
            vm.ifp().set_capabilities(IfCap::VLAN_MTU | IfCap::JUMBO_MTU).map_err(|e| e.to_string())?;
        }
    }
    let d = Duration::from_secs_f64(a.net.duration);
    let r = if a.reverse {
        let tap = tap.as_ref().ok_or("--reverse needs --peer linux")?;
        ifperf::bulk_from_linux(&world, tap, a.ipv6, d, !a.net.json)?
    } else {
        ifperf::bulk(&world, tap.as_ref(), a.net.peer, a.ipv6, d, !a.net.json)?
    };
    if a.net.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap());
    } else {
        print_bulk(&r);
    }
    drop(tap);
    world.shutdown()
}

/// `tcp --chaos`: a guest-to-guest transfer under a hostile host (it may
/// fail: a host that corrupts payloads behind a DATA_VALID header is
/// trusted, as any virtio device is), then one that must pass cleanly once
/// the host behaves. The header is required, so that a falsified `PTFEAT`
/// makes attach refuse instead of framing every packet wrongly.
fn tcp_chaos(t: &TcpArgs) -> Result<(), String> {
    let a = &t.net;
    if a.peer != PeerKind::Guest {
        return Err("--chaos runs guest to guest".into());
    }
    let (chaos, chaos_replay) = t.chaos_files.source(t.chaos)?;
    let cfg = WorldConfig { chaos, chaos_replay, ..net_config(a, true) };
    let world = World::new(cfg).map_err(|e| format!("attach failed: {e}"))?;
    let chaos = world.chaos.clone().ok_or("no chaos")?;
    let d = Duration::from_secs_f64(a.duration);
    let under = ifperf::bulk_within(&world, None, PeerKind::Guest, false, d, CHAOS_STALL, !a.json);
    if ifperf::bulk_receivers_running(&world) != 0 {
        return Err("the receiver of the transfer under chaos is still running".into());
    }
    let (counts, faults) = (chaos.counts(), world.guest_faults());
    chaos.stop();
    t.chaos_files.save(&world)?;
    // The host behaves again: within a few watchdog periods every ring is
    // back (a wedged one restarted), so the transfer may not stall longer.
    let after = ifperf::bulk_within(&world, None, PeerKind::Guest, false, d, AFTER_CHAOS_STALL, !a.json);
    if a.json {
        let j = serde_json::json!({
            "under_chaos": under.as_ref().map_err(|e| e.clone()),
            "chaos": counts,
            "guest_faults": faults,
            "after_chaos": after.as_ref().map_err(|e| e.clone()),
        });
        println!("{}", serde_json::to_string_pretty(&j).unwrap());
    } else {
        match &under {
            Ok(r) => print_bulk(r),
            Err(e) => println!("Under chaos the transfer ended: {e}"),
        }
        print_chaos(&counts, &faults);
        if let Ok(r) = &after {
            print!("After the chaos: ");
            print_bulk(r);
        }
    }
    world.shutdown()?;
    after.map(drop).map_err(|e| format!("after the chaos: {e}"))
}

/// How long a transfer under chaos may make no progress before it ends.
const CHAOS_STALL: Duration = Duration::from_secs(3);

/// How long a transfer after the chaos may make no progress: a wedged
/// ring is restarted after the watchdog's timeout (5 s), then TCP's
/// retransmission timer resends (backed off by then).
const AFTER_CHAOS_STALL: Duration = Duration::from_secs(20);

fn chaos_sweep(cfg: SweepConfig) -> Result<(), String> {
    let r = sweep::run(&cfg)?;
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    if r.failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} chaos runs failed", r.failures.len(), r.runs))
    }
}

fn print_bulk(r: &ifperf::BulkReport) {
    println!(
        "{} bytes verified in {:.3} s: {:.3} Gbps; {} TSO super-packets (avg {:.0} bytes), {} LRO frames at the receiver; {} retransmissions ({} timeouts), {} ENOBUFS",
        r.bytes, r.seconds, r.gbps, r.tso_packets, r.tso_avg_bytes, r.rx_lro, r.retransmits, r.timeouts, r.enobufs
    );
}

fn print_rr(r: &ifperf::RrReport) {
    println!(
        "{} transactions ({} / {} bytes) in {:.3} s: {:.0} transactions/s, round trip p50 {:.1} us, p99 {:.1} us",
        r.transactions, r.request, r.response, r.seconds, r.tps, r.p50_us, r.p99_us
    );
}

fn rr_cmd(a: RrArgs) -> Result<(), String> {
    let (world, tap) = net_world(&a.net)?;
    let r = ifperf::rr(
        &world,
        tap.as_ref(),
        a.net.peer,
        a.req,
        a.resp,
        Duration::from_secs_f64(a.net.duration),
        !a.net.json,
    )?;
    if a.net.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap());
    } else {
        print_rr(&r);
    }
    drop(tap);
    world.shutdown()
}

fn soak_cmd(minutes: f64, seed: u64, json: bool) -> Result<(), String> {
    let duration = Duration::try_from_secs_f64(minutes * 60.0).map_err(|e| format!("--minutes: {e}"))?;
    let r = soak::run(&SoakConfig { duration, seed, print: !json })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap());
    } else {
        println!(
            "Soak passed: {:.1} min; netmap: {} rounds, {} packets sent, {} received in order and intact, {} dropped by the switch (counted); TCP: {} rounds, {} bytes verified, {} retransmissions; {} PTCTL restarts, {} link flaps; {} kicks all seen by the host; {} TCP-world packets each received or counted; no memory, buffer or packet leaked",
            r.seconds / 60.0,
            r.netmap_rounds,
            r.netmap_sent,
            r.netmap_received,
            r.netmap_switch_drops,
            r.tcp_rounds,
            r.tcp_bytes,
            r.tcp_retransmits,
            r.ptctl_restarts,
            r.link_flaps,
            r.kicks,
            r.tcp_world_packets
        );
    }
    Ok(())
}

fn bench_ifnet(duration: f64, json: bool) -> Result<(), String> {
    let d = Duration::from_secs_f64(duration);
    let say = |s: String| {
        if !json {
            println!("{s}");
        }
    };
    let memcpy = ifperf::memcpy_gbps(d.min(Duration::from_secs(1)));
    say(format!("memcpy: {memcpy:.1} Gbps"));
    let veth = ifperf::Veth::create().map_err(|e| format!("veth baseline: {e}"))?;
    let veth_gbps = veth.bulk(d)?;
    say(format!("veth TCP bulk (Linux both ends): {veth_gbps:.2} Gbps"));
    let veth_rr = veth.rr(1, 1, d)?;
    say(format!("veth TCP_RR 1/1: {veth_rr:.0} transactions/s"));
    drop(veth);
    let net = NetArgs::guests(duration, json);
    let (world, _) = net_world(&net)?;
    let tso_2k = ifperf::bulk(&world, None, PeerKind::Guest, false, d, false)?;
    say(format!(
        "guest to guest TCP with TSO, 1024 x 2 KiB buffers: {:.2} Gbps ({} super-packets)",
        tso_2k.gbps, tso_2k.tso_packets
    ));
    let rr = ifperf::rr(&world, None, PeerKind::Guest, 1, 1, d, false)?;
    say(format!("guest to guest TCP_RR 1/1: {:.0} transactions/s", rr.tps));
    world.shutdown()?;
    // The same 2 MiB rings in 8 KiB buffers: a quarter of the slots and
    // of the per-slot work for 64 KiB super-packets.
    let (world, _) = net_world(&NetArgs { slots: 256, buf_size: 8192, ..net.clone() })?;
    let tso = ifperf::bulk(&world, None, PeerKind::Guest, false, d, false)?;
    say(format!(
        "guest to guest TCP with TSO, 256 x 8 KiB buffers: {:.2} Gbps ({} super-packets)",
        tso.gbps, tso.tso_packets
    ));
    world.shutdown()?;
    let (world, tap) = net_world(&NetArgs { peer: PeerKind::Linux, ..net })?;
    let tap_bulk = ifperf::bulk(&world, tap.as_ref(), PeerKind::Linux, false, d, false)?;
    say(format!("guest to Linux through TAP: {:.2} Gbps", tap_bulk.gbps));
    let tap = tap.ok_or("no TAP device")?;
    let tap_rx = ifperf::bulk_from_linux(&world, &tap, false, d, false)?;
    say(format!("Linux to guest through TAP: {:.2} Gbps ({} LRO frames)", tap_rx.gbps, tap_rx.rx_lro));
    let tap_rr = ifperf::rr(&world, Some(&tap), PeerKind::Linux, 1, 1, d, false)?;
    say(format!("guest to Linux TCP_RR 1/1: {:.0} transactions/s", tap_rr.tps));
    drop(tap);
    world.shutdown()?;
    let report = serde_json::json!({
        "bench": "ifnet",
        "seconds_per_run": duration,
        "memcpy_gbps": memcpy,
        "tso_gbps": tso.gbps,
        "tso_vs_memcpy": tso.gbps / memcpy,
        "tso_buffers": "256 slots x 8192 bytes",
        "tso_gbps_2k_buffers": tso_2k.gbps,
        "tso_2k_vs_memcpy": tso_2k.gbps / memcpy,
        "tap_gbps": tap_bulk.gbps,
        "veth_gbps": veth_gbps,
        "tap_vs_veth": tap_bulk.gbps / veth_gbps,
        "tap_rx_gbps": tap_rx.gbps,
        "tap_rx_vs_veth": tap_rx.gbps / veth_gbps,
        "rr_tps": rr.tps,
        "tap_rr_tps": tap_rr.tps,
        "veth_rr_tps": veth_rr,
        "rr_vs_veth": rr.tps / veth_rr,
        "tap_rr_vs_veth": tap_rr.tps / veth_rr,
        "goal": { "tso_vs_memcpy_min": 0.25, "tap_vs_veth_min": 0.5, "rr_vs_veth_min": 0.5 },
        "tso_super_packets": tso.tso_packets,
        "rr_p50_us": rr.p50_us,
        "tap_rr_p50_us": tap_rr.p50_us,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    } else {
        println!(
            "ratios: TSO/memcpy {:.3} (goal >= 0.25), TAP/veth {:.3} (goal >= 0.5), RR/veth {:.3} guest-guest, {:.3} guest-Linux (goal >= 0.5)",
            tso.gbps / memcpy,
            tap_bulk.gbps / veth_gbps,
            rr.tps / veth_rr,
            tap_rr.tps / veth_rr
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Abi => {
            println!("{}", serde_json::to_string_pretty(&ptnet_host_sim::abi_json::abi()).unwrap());
            Ok(())
        }
        Cmd::Demo { duration } => demo(duration),
        Cmd::Pktgen(a) => pktgen_cmd(a),
        Cmd::Tcp(a) => tcp_cmd(a),
        Cmd::Rr(a) => rr_cmd(a),
        Cmd::Soak { minutes, seed, json } => soak_cmd(minutes, seed, json),
        Cmd::ChaosSweep { first, seeds, kinds, load, duration, out, mode } => chaos_sweep(SweepConfig {
            first,
            count: seeds,
            kinds,
            load,
            duration,
            extra: vec!["--mode".into(), format!("{mode:?}").to_lowercase()],
            out,
            timeout: Duration::from_secs(300),
        }),
        Cmd::Bench { which: BenchCmd::Ifnet { duration, json } } => bench_ifnet(duration, json),
        Cmd::Bench { which: BenchCmd::Native { duration, repeat, slots, batch, mode, json } } => {
            bench_native(duration, repeat, slots, batch, mode, json)
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ptnet-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
