//! Lifecycle under traffic: a thousand attach/detach cycles and a thousand
//! down/up cycles of one guest while the other keeps sending to it and it
//! sends back, then the ledgers: no CSB memory left allocated, every host
//! buffer in exactly one slot, no packet alive, and every packet the stack
//! handed to a driver either sent or counted as dropped, and every packet
//! sent either received or counted where it was lost.

use ptnet::ifnet::IfCounters;
use ptnet_host_sim::guest::device::PtnetIf;
use ptnet_host_sim::guest::ifnet::{InputQueue, SimPacket};
use ptnet_host_sim::guest::shim::live_mbufs;
use ptnet_host_sim::host::kloop::KloopMode;
use ptnet_host_sim::world::{World, WorldConfig};
use ptnet_tests::udp_frame;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const CYCLES: usize = 1000;
/// Packets the cycling guest sends per cycle.
const BURST: u64 = 24;

/// The packet ledger is process wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// What one side did.
#[derive(Debug, Default, Clone, Copy)]
struct Side {
    /// Packets handed to the driver.
    handed: u64,
    /// Frames received.
    received: u64,
}

fn frame(dst: [u8; 6], src: [u8; 6], n: u64) -> SimPacket {
    SimPacket::new(udp_frame(dst, src, &n.to_be_bytes().repeat(8)), Default::default())
}

/// Sends `n` frames to `dst`, then receives what waits.
fn burst(ifp: &PtnetIf, dst: [u8; 6], n: u64, side: &mut Side, input: &mut InputQueue) {
    let src = ifp.info().mac;
    for i in 0..n {
        side.handed += 1;
        let _ = ifp.transmit(frame(dst, src, i));
    }
    receive(ifp, side, input);
}

fn receive(ifp: &PtnetIf, side: &mut Side, input: &mut InputQueue) {
    while ifp.service(input, 256) {}
    while input.pop().is_some() {
        side.received += 1;
    }
}

/// Receives until nothing arrived for a while.
fn drain(ifp: &PtnetIf, side: &mut Side, input: &mut InputQueue) {
    side.received += ifp.drain(input, Duration::from_millis(100));
}

/// The steady guest: sends to `dst` and receives until `stop`, counting
/// its bursts in `bursts`.
fn steady(ifp: &PtnetIf, dst: [u8; 6], stop: &AtomicBool, bursts: &AtomicU64) -> (Side, InputQueue) {
    let (mut side, mut input) = (Side::default(), InputQueue::new(1024));
    while !stop.load(Ordering::Acquire) {
        burst(ifp, dst, 16, &mut side, &mut input);
        bursts.fetch_add(1, Ordering::Release);
        std::thread::yield_now();
    }
    (side, input)
}

/// Waits until the steady guest sent another burst: each cycle of the
/// other one runs under its traffic.
fn under_traffic(bursts: &AtomicU64, since: u64) {
    while bursts.load(Ordering::Acquire) == since {
        std::thread::yield_now();
    }
}

/// Stops the steady guest when dropped, also when the cycling one panics
/// (a scope waits for its threads before passing the panic on).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn sum(cs: &[IfCounters], f: impl Fn(&IfCounters) -> u64) -> u64 {
    cs.iter().map(f).sum()
}

/// Every packet handed over was sent, refused or dropped, and counted.
fn handed_adds_up(side: Side, cs: &[IfCounters]) {
    let accounted = sum(cs, |c| c.opackets + c.oerrors + c.oqdrops);
    assert_eq!(side.handed, accounted, "packets handed to the driver vs sent+refused+dropped: {cs:?}");
}

/// Every packet a sender's driver put on the wire (minus what the host
/// never took) arrived, or was counted lost at the receiving port or
/// guest.
fn delivered_adds_up(sender: &[IfCounters], receiver: Side, rx: &[IfCounters], port_drops: u64) {
    let sent = sum(sender, |c| c.opackets - c.tx_abandoned);
    let accounted = receiver.received + sum(rx, |c| c.ierrors + c.iqdrops) + port_drops;
    assert_eq!(sent, accounted, "sent vs received+dropped (port drops {port_drops})");
}

fn two_guests() -> World {
    // Kloop threads: the host runs on its own, as it does in a VMM, so
    // that a detach finds work it has not done yet.
    let cfg = WorldConfig { slots: 256, mode: KloopMode::Thread, ..WorldConfig::default() };
    let w = World::new(cfg).unwrap();
    w.ifp(0).if_up().unwrap();
    w.ifp(1).if_up().unwrap();
    w
}

fn ledgers_close(w: &World) {
    for vm in &w.vms {
        assert_eq!(vm.kernel.mem.outstanding(), (0, 0), "CSB memory left allocated");
        let n = vm.dev.port().buffers_intact().unwrap();
        assert_eq!(n, 2 * 256, "every buffer in one slot");
    }
    assert_eq!(live_mbufs(), 0, "packets neither sent nor freed");
}

/// Runs `cycle` [`CYCLES`] times on VM 1 while VM 0 keeps sending to it
/// and receiving, each cycle lasting at least one burst of VM 0. Returns
/// VM 0's side (drained) and the cycler's side and input queue.
fn cycles_under_traffic(
    ifp0: &PtnetIf,
    mac1: [u8; 6],
    mut cycle: impl FnMut(&mut Side, &mut InputQueue),
) -> (Side, Side, InputQueue) {
    let (stop, bursts) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        let t = s.spawn(|| steady(ifp0, mac1, &stop, &bursts));
        let stopper = StopOnDrop(&stop);
        let (mut side, mut input) = (Side::default(), InputQueue::new(1024));
        for _ in 0..CYCLES {
            let seen = bursts.load(Ordering::Acquire);
            cycle(&mut side, &mut input);
            under_traffic(&bursts, seen);
        }
        drop(stopper);
        let (mut side0, mut input0) = t.join().unwrap();
        drain(ifp0, &mut side0, &mut input0);
        (side0, side, input)
    })
}

#[test]
fn a_thousand_attach_detach_cycles_under_traffic_leak_and_lose_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = two_guests();
    let (mac0, mac1) = (w.vms[0].mac, w.vms[1].mac);
    w.vms[1].detach().unwrap();
    let (ifp0, driver) = (w.ifp(0).clone(), w.cfg.driver);
    let vm1 = &mut w.vms[1];
    let (side0, side1, _) = cycles_under_traffic(&ifp0, mac1, |side, input| {
        let ifp = vm1.attach(driver).unwrap();
        ifp.if_up().unwrap();
        burst(&ifp, mac0, BURST, side, input);
        drop(ifp);
        // Detach right away: queued packets, and whatever the host has not
        // taken from the ring yet, go with the interface, counted.
        vm1.detach().unwrap();
    });
    drop(ifp0);
    w.vms[0].detach().unwrap();
    let (r0, r1) = (&w.vms[0].retired, &w.vms[1].retired);
    assert_eq!(r1.len(), CYCLES + 1);
    handed_adds_up(side0, r0);
    handed_adds_up(side1, &r1[1..]);
    assert!(side1.handed == CYCLES as u64 * BURST && side0.received > 0, "{side0:?} {side1:?}");
    delivered_adds_up(&r1[1..], side0, r0, w.vms[0].dev.port().drops());
    ledgers_close(&w);
}

#[test]
fn a_thousand_down_up_cycles_under_traffic_leak_and_lose_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = two_guests();
    let (mac0, mac1) = (w.vms[0].mac, w.vms[1].mac);
    let (ifp0, ifp1) = (w.ifp(0).clone(), w.ifp(1).clone());
    let (mut side0, mut side1, mut input1) = cycles_under_traffic(&ifp0, mac1, |side, input| {
        // Down with packets queued and in flight: queued ones are freed and
        // counted, those in the ring go out after the restart.
        ifp1.if_down().unwrap();
        ifp1.if_up().unwrap();
        burst(&ifp1, mac0, BURST, side, input);
    });
    // VM 1's drain sends what its queue still held; VM 0 takes it.
    drain(&ifp1, &mut side1, &mut input1);
    drain(&ifp0, &mut side0, &mut InputQueue::new(1024));
    drop((ifp0, ifp1));
    for vm in &mut w.vms {
        vm.detach().unwrap();
    }
    let (r0, r1) = (&w.vms[0].retired, &w.vms[1].retired);
    handed_adds_up(side0, r0);
    handed_adds_up(side1, r1);
    assert!(side0.received > 0 && side1.received > 0, "{side0:?} {side1:?}");
    delivered_adds_up(r1, side0, r0, w.vms[0].dev.port().drops());
    delivered_adds_up(r0, side1, r1, w.vms[1].dev.port().drops());
    assert_eq!(sum(r1, |c| c.tx_abandoned), 0, "down/up resumes the rings: nothing abandoned");
    ledgers_close(&w);
}
