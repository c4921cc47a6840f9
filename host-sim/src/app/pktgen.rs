//! A pkt-gen-like guest application: each VM runs one thread that opens
//! its ptnet interface in netmap mode and transmits, receives, or both,
//! through the rings exactly as a netmap program does (`cur`/`tail`,
//! buffers, `ioctl(NIOC*SYNC)` and `poll()`).

use super::packet::{announce, make_pong, Kind, SeqTracker, Template};
use crate::guest::device::{NmError, PtnetIf};
use crate::guest::netmap::{AppRing, NetmapPort};
use crate::world::World;
use ptnet::kring::Dir;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// What the run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// VM 0 transmits to VM 1 (reported from the sender's side).
    Tx,
    /// VM 0 transmits to VM 1 (reported from the receiver's side).
    Rx,
    /// Every VM transmits to the next one and receives.
    Txrx,
    /// VM 0 pings VM 1, which answers; round-trip latency.
    Ping,
}

/// Parameters of a run.
#[derive(Debug, Clone)]
pub struct PktgenConfig {
    /// What to measure.
    pub function: Function,
    /// Frame size in bytes.
    pub size: usize,
    /// Most packets per sync.
    pub batch: u32,
    /// Packets per sender (0: until `duration`).
    pub count: u64,
    /// Packets per second per sender (0: as fast as possible).
    pub rate: f64,
    /// Run time when `count` is 0.
    pub duration: Duration,
    /// Print a line per second.
    pub report: bool,
    /// Issue `PTCTL` delete and create in every VM at this interval while
    /// traffic flows.
    pub restart_every: Option<Duration>,
}

impl Default for PktgenConfig {
    fn default() -> Self {
        Self {
            function: Function::Tx,
            size: 60,
            batch: 512,
            count: 0,
            rate: 0.0,
            duration: Duration::from_secs(3),
            report: false,
            restart_every: None,
        }
    }
}

/// Round-trip latency figures.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    /// Probes answered.
    pub samples: usize,
    /// Fastest round trip (µs).
    pub min_us: f64,
    /// Mean (µs).
    pub avg_us: f64,
    /// Median (µs).
    pub p50_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// Slowest (µs).
    pub max_us: f64,
}

/// One per-second line.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since start.
    pub t: f64,
    /// Transmit rate in the interval (Mpps).
    pub tx_mpps: f64,
    /// Receive rate in the interval (Mpps).
    pub rx_mpps: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was measured.
    pub function: Function,
    /// Host kloop mode.
    pub mode: crate::host::kloop::KloopMode,
    /// VMs.
    pub guests: usize,
    /// Ring pairs per VM.
    pub rings: u32,
    /// Slots per ring.
    pub slots: u32,
    /// Frame size.
    pub size: usize,
    /// Batch.
    pub batch: u32,
    /// Wall time of the traffic phase.
    pub seconds: f64,
    /// Packets transmitted.
    pub tx_pkts: u64,
    /// Test packets received.
    pub rx_pkts: u64,
    /// Transmit rate (Mpps).
    pub tx_mpps: f64,
    /// Receive rate (Mpps): the headline figure.
    pub mpps: f64,
    /// Received bit rate (frame bytes, no preamble or FCS).
    pub gbps: f64,
    /// Kicks written by all drivers.
    pub kicks: u64,
    /// Interrupts taken by all drivers.
    pub irqs: u64,
    /// Kicks per received packet.
    pub kicks_per_pkt: f64,
    /// Ring syncs of all drivers per second (netmap txsync/rxsync).
    pub syncs_per_sec: f64,
    /// Interrupts per received packet.
    pub irqs_per_pkt: f64,
    /// Packets dropped by the switch (full destination ring).
    pub switch_drops: u64,
    /// Sequence numbers never received.
    pub lost: u64,
    /// Duplicated or reordered packets.
    pub dup_or_reordered: u64,
    /// Corrupted packets.
    pub corrupt: u64,
    /// Intact packets of an earlier run received (left in the rings, or
    /// sent late by a restarted host): not this run's, not counted in it.
    pub stale: u64,
    /// `PTCTL` restarts done during the run.
    pub restarts: u64,
    /// Round-trip latency (ping).
    pub latency: Option<Latency>,
    /// Per-second figures.
    pub per_second: Vec<Sample>,
}

#[derive(Default)]
struct VmCounters {
    tx: AtomicU64,
    rx: AtomicU64,
}

struct Shared {
    /// Every VM thread has announced its address (the switch has learned
    /// them all) before traffic starts.
    ready: Barrier,
    t0: Instant,
    /// Nanoseconds from `t0` to the last packet sent or received: the end
    /// of the traffic phase (threads linger a little to catch stragglers).
    last_activity: AtomicU64,
    stop: AtomicBool,
    senders_left: AtomicUsize,
    vms: Vec<VmCounters>,
    trackers: Mutex<Vec<SeqTracker>>,
    rtts: Mutex<Vec<Duration>>,
    /// This run's tag in its packets (see `packet`).
    run: u16,
}

/// A new tag for each run in this process.
fn next_run() -> u16 {
    static RUNS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    RUNS.fetch_add(1, Ordering::Relaxed)
}

/// What one VM's thread does.
#[derive(Clone, Copy)]
struct Role {
    vm: usize,
    send_to: Option<usize>,
    receive: bool,
    expect: u64,
}

fn fill_burst(ring: &AppRing, tmpl: &mut Template, ring_id: u8, seq: &mut u64, max: u64) -> u32 {
    let n = u64::from(ring.space()).min(max) as u32;
    let mut cur = ring.cur();
    for _ in 0..n {
        let frame = tmpl.build(Kind::Data, ring_id, *seq);
        if let Some(b) = ring.buf(cur) {
            let _ = b.write_bytes(0, frame);
        }
        ring.set_len_flags(cur, frame.len() as u16, 0);
        *seq += 1;
        cur = ring.next(cur);
    }
    ring.advance(cur);
    n
}

/// Consumes every packet waiting in `ring`, calling `f` on each frame.
/// Room for the largest frame a chain of slots may carry.
const SCRATCH: usize = 65536;

fn drain(ring: &AppRing, scratch: &mut [u8], mut f: impl FnMut(&mut [u8])) -> u64 {
    let mut cur = ring.cur();
    let tail = ring.tail();
    let mut n = 0;
    while cur != tail {
        let len = (ring.len(cur) as usize).min(scratch.len());
        if let Some(b) = ring.buf(cur) {
            if b.read_bytes(0, &mut scratch[..len]).is_ok() {
                f(&mut scratch[..len]);
            }
        }
        n += 1;
        cur = ring.next(cur);
    }
    ring.advance(cur);
    n
}

fn send_one(port: &NetmapPort, frame: &[u8]) -> Result<bool, NmError> {
    let ring = port.ring(Dir::Tx, 0).ok_or(NmError::NoRing)?;
    if ring.space() == 0 {
        port.sync(Dir::Tx, 0)?;
        if ring.space() == 0 {
            return Ok(false);
        }
    }
    let cur = ring.cur();
    if let Some(b) = ring.buf(cur) {
        let _ = b.write_bytes(0, frame);
    }
    ring.set_len_flags(cur, frame.len() as u16, 0);
    ring.advance(ring.next(cur));
    port.sync(Dir::Tx, 0)?;
    Ok(true)
}

/// Opens the port and announces the VM, then waits for every other VM to
/// have done the same (even when this one failed, so none waits forever).
fn joined(sh: &Shared, setup: impl FnOnce() -> Result<NetmapPort, NmError>) -> Result<NetmapPort, NmError> {
    let port = setup();
    sh.ready.wait();
    port
}

/// Waits until the host has taken every packet handed to it, as pkt-gen
/// does before it exits: closing the port stops the host kloops, and a
/// packet still in a TX ring then would never leave.
fn drain_tx(port: &NetmapPort, rings: u32) -> Result<(), NmError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0..rings {
        let ring = port.ring(Dir::Tx, i).ok_or(NmError::NoRing)?;
        while ring.tx_pending() && Instant::now() < deadline {
            port.sync(Dir::Tx, i)?;
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(())
}

struct Pacer {
    start: Instant,
    rate: f64,
}

impl Shared {
    fn active(&self) {
        self.last_activity.fetch_max(self.t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

impl Pacer {
    /// Waits until `sent` packets are due.
    fn wait(&self, sent: u64, stop: &AtomicBool) {
        if self.rate <= 0.0 {
            return;
        }
        let due = self.start + Duration::from_secs_f64(sent as f64 / self.rate);
        loop {
            let now = Instant::now();
            if now >= due || stop.load(Ordering::Relaxed) {
                return;
            }
            let left = due - now;
            if left > Duration::from_micros(200) {
                std::thread::sleep(left - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

fn vm_thread(
    ifp: Arc<PtnetIf>,
    world_macs: Vec<[u8; 6]>,
    role: Role,
    cfg: PktgenConfig,
    sh: Arc<Shared>,
) -> Result<(), NmError> {
    let me = role.vm;
    let port = joined(&sh, || {
        let port = ifp.open()?;
        // Let the switch learn our address.
        send_one(&port, &announce(world_macs[me]))?;
        Ok(port)
    })?;
    let info = ifp.info();
    let mut scratch = vec![0u8; SCRATCH];
    let mut tracker = SeqTracker::for_run(sh.run);
    let mut tmpl = role
        .send_to
        .map(|d| Template::new(cfg.size, me as u8, world_macs[me], d as u8, world_macs[d]).with_run(sh.run));
    let mut seqs = vec![0u64; info.num_tx_rings as usize];
    let mut sent = 0u64;
    let pacer = Pacer { start: Instant::now(), rate: cfg.rate };
    let mut sending = tmpl.is_some();
    let mut idle_since: Option<Instant> = None;
    let publish =
        |tracker: &SeqTracker| sh.vms[me].rx.store(tracker.in_order + tracker.dup_or_reordered, Ordering::Relaxed);
    loop {
        if sending {
            let stop = sh.stop.load(Ordering::Relaxed) || (cfg.count > 0 && sent >= cfg.count);
            if stop {
                drain_tx(&port, info.num_tx_rings)?;
                sending = false;
                sh.senders_left.fetch_sub(1, Ordering::AcqRel);
            } else {
                pacer.wait(sent, &sh.stop);
                let mut progress = 0;
                for (i, seq) in seqs.iter_mut().enumerate() {
                    let ring = port.ring(Dir::Tx, i as u32).ok_or(NmError::NoRing)?;
                    let left = if cfg.count > 0 { cfg.count - sent } else { u64::MAX };
                    let max = u64::from(cfg.batch).min(left);
                    let tmpl = tmpl.as_mut().expect("sender has a template");
                    let n = fill_burst(&ring, tmpl, i as u8, seq, max);
                    sent += u64::from(n);
                    progress += n;
                }
                sh.vms[me].tx.store(sent, Ordering::Relaxed);
                if progress > 0 {
                    sh.active();
                }
                // As pkt-gen's sender: poll() hands the filled slots over
                // and waits for room (a sender that also receives only
                // syncs: it must not sleep on TX).
                let wait = if progress == 0 && !role.receive { Duration::from_millis(10) } else { Duration::ZERO };
                port.poll(Dir::Tx, wait)?;
            }
        }
        if role.receive {
            let ready = if sending {
                (0..info.num_rx_rings).try_for_each(|i| port.sync(Dir::Rx, i))?;
                true
            } else {
                port.poll(Dir::Rx, Duration::from_millis(20))?
            };
            let mut got = 0;
            if ready {
                for i in 0..info.num_rx_rings {
                    let ring = port.ring(Dir::Rx, i).ok_or(NmError::NoRing)?;
                    got += drain(&ring, &mut scratch, |p| {
                        // Only frames for us: before the switch has learned
                        // every address, some traffic is flooded.
                        if p.starts_with(&world_macs[me]) {
                            tracker.record(p);
                        }
                    });
                }
                publish(&tracker);
                if got > 0 {
                    sh.active();
                }
            }
            let counted = tracker.in_order + tracker.dup_or_reordered + tracker.corrupt;
            let senders_done = sh.senders_left.load(Ordering::Acquire) == 0;
            if role.expect > 0 && counted >= role.expect && !sending {
                break;
            }
            if got == 0 && senders_done && !sending {
                let t = *idle_since.get_or_insert_with(Instant::now);
                if t.elapsed() > Duration::from_millis(300) {
                    break;
                }
            } else {
                idle_since = None;
            }
        } else if !sending {
            break;
        }
    }
    if role.receive {
        // A last NIOCRXSYNC gives back the slots read since the previous
        // one: the next application on these rings must not see them again.
        (0..info.num_rx_rings).try_for_each(|i| port.sync(Dir::Rx, i))?;
    }
    publish(&tracker);
    sh.trackers.lock().unwrap().push(tracker);
    Ok(())
}

fn pinger(ifp: Arc<PtnetIf>, macs: Vec<[u8; 6]>, cfg: PktgenConfig, sh: Arc<Shared>) -> Result<(), NmError> {
    let port = joined(&sh, || {
        let port = ifp.open()?;
        send_one(&port, &announce(macs[0]))?;
        Ok(port)
    })?;
    let mut tmpl = Template::new(cfg.size, 0, macs[0], 1, macs[1]).with_run(sh.run);
    let mut scratch = vec![0u8; SCRATCH];
    let pacer = Pacer { start: Instant::now(), rate: cfg.rate };
    let mut seq = 0u64;
    let mut rtts = Vec::new();
    while !sh.stop.load(Ordering::Relaxed) && (cfg.count == 0 || seq < cfg.count) {
        pacer.wait(seq, &sh.stop);
        let t0 = Instant::now();
        if !send_one(&port, tmpl.build(Kind::Ping, 0, seq))? {
            continue;
        }
        sh.vms[0].tx.fetch_add(1, Ordering::Relaxed);
        let mut answered = false;
        while !answered && t0.elapsed() < Duration::from_secs(1) {
            if !port.poll(Dir::Rx, Duration::from_millis(100))? {
                continue;
            }
            let ring = port.ring(Dir::Rx, 0).ok_or(NmError::NoRing)?;
            drain(&ring, &mut scratch, |p| {
                if let Ok(id) = super::packet::check(p) {
                    if id.kind == Kind::Pong && id.seq == seq && id.run == sh.run {
                        answered = true;
                    }
                }
            });
        }
        if answered {
            sh.active();
            rtts.push(t0.elapsed());
            sh.vms[0].rx.fetch_add(1, Ordering::Relaxed);
        }
        seq += 1;
    }
    *sh.rtts.lock().unwrap() = rtts;
    sh.senders_left.store(0, Ordering::Release);
    Ok(())
}

fn ponger(ifp: Arc<PtnetIf>, macs: Vec<[u8; 6]>, sh: Arc<Shared>) -> Result<(), NmError> {
    let port = joined(&sh, || {
        let port = ifp.open()?;
        send_one(&port, &announce(macs[1]))?;
        Ok(port)
    })?;
    let mut scratch = vec![0u8; SCRATCH];
    while sh.senders_left.load(Ordering::Acquire) > 0 {
        if !port.poll(Dir::Rx, Duration::from_millis(20))? {
            continue;
        }
        let ring = port.ring(Dir::Rx, 0).ok_or(NmError::NoRing)?;
        let mut replies = Vec::new();
        drain(&ring, &mut scratch, |p| {
            if super::packet::check(p).is_ok_and(|id| id.kind == Kind::Ping) {
                make_pong(p);
                replies.push(p.to_vec());
            }
        });
        for r in replies {
            send_one(&port, &r)?;
        }
    }
    Ok(())
}

/// Kicks, interrupts and syncs of every driver so far.
fn counters(world: &World) -> (u64, u64, u64) {
    world.vms.iter().filter_map(|vm| vm.ifp.as_ref()).fold((0, 0, 0), |(k, i, s), ifp| {
        let c = ifp.total_counters();
        (k + c.kicks, i + c.irqs, s + c.syncs)
    })
}

fn latency(mut rtts: Vec<Duration>) -> Option<Latency> {
    if rtts.is_empty() {
        return None;
    }
    rtts.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pick = |q: f64| us(rtts[((rtts.len() - 1) as f64 * q).round() as usize]);
    Some(Latency {
        samples: rtts.len(),
        min_us: us(rtts[0]),
        avg_us: rtts.iter().map(|d| us(*d)).sum::<f64>() / rtts.len() as f64,
        p50_us: pick(0.5),
        p99_us: pick(0.99),
        max_us: us(*rtts.last().unwrap()),
    })
}

/// Runs traffic on `world` and reports.
pub fn run(world: &World, cfg: &PktgenConfig) -> Result<Report, String> {
    let n = world.vms.len();
    if n < 2 {
        return Err("pktgen needs at least two VMs".into());
    }
    let macs: Vec<[u8; 6]> = world.vms.iter().map(|vm| vm.mac).collect();
    let roles: Vec<Role> = match cfg.function {
        Function::Tx | Function::Rx => vec![
            Role { vm: 0, send_to: Some(1), receive: false, expect: 0 },
            Role { vm: 1, send_to: None, receive: true, expect: cfg.count },
        ],
        Function::Txrx => {
            (0..n).map(|i| Role { vm: i, send_to: Some((i + 1) % n), receive: true, expect: cfg.count }).collect()
        }
        Function::Ping => Vec::new(),
    };
    let senders = match cfg.function {
        Function::Ping => 1,
        _ => roles.iter().filter(|r| r.send_to.is_some()).count(),
    };
    let threads = if cfg.function == Function::Ping { 2 } else { roles.len() };
    let sh = Arc::new(Shared {
        ready: Barrier::new(threads),
        t0: Instant::now(),
        last_activity: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        senders_left: AtomicUsize::new(senders),
        vms: (0..n).map(|_| VmCounters::default()).collect(),
        trackers: Mutex::new(Vec::new()),
        rtts: Mutex::new(Vec::new()),
        run: next_run(),
    });
    let (k0, i0, s0) = counters(world);
    let start = Instant::now();
    let mut handles = Vec::new();
    let spawn = |name: String, f: Box<dyn FnOnce() -> Result<(), NmError> + Send>| {
        std::thread::Builder::new().name(name).spawn(f).expect("spawn guest thread")
    };
    if cfg.function == Function::Ping {
        let (a, b) = (world.ifp(0).clone(), world.ifp(1).clone());
        let (m1, m2, s1, s2, c) = (macs.clone(), macs.clone(), sh.clone(), sh.clone(), cfg.clone());
        handles.push(spawn("vm1-pong".into(), Box::new(move || ponger(b, m2, s2))));
        handles.push(spawn("vm0-ping".into(), Box::new(move || pinger(a, m1, c, s1))));
    } else {
        for role in roles {
            let (ifp, m, c, s) = (world.ifp(role.vm).clone(), macs.clone(), cfg.clone(), sh.clone());
            handles.push(spawn(format!("vm{}-app", role.vm), Box::new(move || vm_thread(ifp, m, role, c, s))));
        }
    }

    let mut per_second = Vec::new();
    let (mut last_t, mut last_tx, mut last_rx) = (start, 0u64, 0u64);
    let mut restarts = 0;
    let mut last_restart = Instant::now();
    let tick = Duration::from_millis(if cfg.restart_every.is_some() { 10 } else { 100 });
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(tick);
        if cfg.count == 0 && start.elapsed() >= cfg.duration {
            sh.stop.store(true, Ordering::Relaxed);
        }
        if let Some(every) = cfg.restart_every {
            if last_restart.elapsed() >= every && sh.senders_left.load(Ordering::Acquire) > 0 {
                for vm in &world.vms {
                    vm.ifp().restart().map_err(|e| format!("restart: {e}"))?;
                }
                restarts += 1;
                last_restart = Instant::now();
            }
        }
        if last_t.elapsed() >= Duration::from_secs(1) {
            let now = Instant::now();
            let tx: u64 = sh.vms.iter().map(|v| v.tx.load(Ordering::Relaxed)).sum();
            let rx: u64 = sh.vms.iter().map(|v| v.rx.load(Ordering::Relaxed)).sum();
            let dt = (now - last_t).as_secs_f64();
            let s = Sample {
                t: (now - start).as_secs_f64(),
                tx_mpps: (tx - last_tx) as f64 / dt / 1e6,
                rx_mpps: (rx - last_rx) as f64 / dt / 1e6,
            };
            if cfg.report {
                let (k, i, _) = counters(world);
                let pk = (rx.max(1)) as f64;
                println!(
                    "{:8.3}s {:8.3} Mpps tx {:8.3} Mpps rx ({:.3} Gbps in {} usec) kicks/pkt {:.5} irqs/pkt {:.5} drops {}",
                    s.t,
                    s.tx_mpps,
                    s.rx_mpps,
                    s.rx_mpps * 1e6 * (cfg.size * 8) as f64 / 1e9,
                    (dt * 1e6) as u64,
                    (k - k0) as f64 / pk,
                    (i - i0) as f64 / pk,
                    world.drops()
                );
            }
            per_second.push(s);
            (last_t, last_tx, last_rx) = (now, tx, rx);
        }
    }
    for h in handles {
        match h.join() {
            Ok(r) => r.map_err(|e| format!("guest application failed: {e}"))?,
            Err(_) => return Err("guest application panicked".into()),
        }
    }
    let seconds = (sh.last_activity.load(Ordering::Relaxed) as f64 / 1e9).max(1e-9);
    let (k1, i1, s1) = counters(world);
    let trackers = sh.trackers.lock().unwrap().clone();
    let sum = |f: fn(&SeqTracker) -> u64| trackers.iter().map(f).sum::<u64>();
    let tx_pkts: u64 = sh.vms.iter().map(|v| v.tx.load(Ordering::Relaxed)).sum();
    let rx_pkts: u64 = sh.vms.iter().map(|v| v.rx.load(Ordering::Relaxed)).sum();
    let (kicks, irqs, syncs) = (k1 - k0, i1 - i0, s1 - s0);
    let per = |x: u64| x as f64 / rx_pkts.max(1) as f64;
    let rtts = std::mem::take(&mut *sh.rtts.lock().unwrap());
    Ok(Report {
        function: cfg.function,
        mode: world.cfg.mode,
        guests: n,
        rings: world.cfg.rings,
        slots: world.cfg.slots,
        size: cfg.size,
        batch: cfg.batch,
        seconds,
        tx_pkts,
        rx_pkts,
        tx_mpps: tx_pkts as f64 / seconds / 1e6,
        mpps: rx_pkts as f64 / seconds / 1e6,
        gbps: rx_pkts as f64 * (cfg.size * 8) as f64 / seconds / 1e9,
        kicks,
        irqs,
        kicks_per_pkt: per(kicks),
        syncs_per_sec: syncs as f64 / seconds,
        irqs_per_pkt: per(irqs),
        switch_drops: world.drops(),
        lost: sum(|t| t.lost),
        dup_or_reordered: sum(|t| t.dup_or_reordered),
        corrupt: sum(|t| t.corrupt),
        stale: sum(|t| t.stale),
        restarts,
        latency: latency(rtts),
        per_second,
    })
}
