//! The TSO bulk engine (one 64 KiB super-packet per send, as FreeBSD's
//! `tcp_output` drives a TSO interface) between guests and with Linux,
//! every byte checked at the receiver; and its recovery when the switch
//! drops.

use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::tx::TxError;
use ptnet_host_sim::app::ifperf::{self, PeerKind};
use ptnet_host_sim::guest::device::PtnetIf;
use ptnet_host_sim::guest::ifnet::{InputQueue, SimPacket};
use ptnet_host_sim::guest::nic::Nic;
use ptnet_host_sim::host::tap::Peer;
use ptnet_host_sim::world::WorldConfig;
use ptnet_tests::world;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
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

/// The receiving guest's interface, losing the first `left` SYN-ACKs it
/// is asked to send (a full ring, a switch drop).
struct LosesSynAcks {
    inner: Arc<PtnetIf>,
    left: AtomicU32,
}

impl Nic for LosesSynAcks {
    fn if_up(&self) -> Result<(), String> {
        Nic::if_up(&*self.inner)
    }
    fn transmit(&self, p: SimPacket) -> Result<(), TxError> {
        // Ethernet + 20-byte IPv4 header: TCP flags at 14 + 20 + 13.
        let syn_ack = p.data.get(47).is_some_and(|f| f & 0x12 == 0x12);
        if syn_ack && self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Ok(());
        }
        Nic::transmit(&*self.inner, p)
    }
    fn service(&self, input: &mut InputQueue, budget: u32) -> bool {
        Nic::service(&*self.inner, input, budget)
    }
    fn mtu(&self) -> u32 {
        Nic::mtu(&*self.inner)
    }
    fn enabled(&self) -> IfCap {
        Nic::enabled(&*self.inner)
    }
    fn hwassist(&self) -> CsumFlags {
        Nic::hwassist(&*self.inner)
    }
    fn idle_token(&self) -> u64 {
        Nic::idle_token(&*self.inner)
    }
    fn idle(&self, token: u64, timeout: Duration) {
        Nic::idle(&*self.inner, token, timeout)
    }
}

#[test]
fn a_lost_syn_ack_is_sent_again() {
    // The sender's SYN goes unanswered, so it sends it again; the
    // receiver, already in SYN-RECEIVED, must answer with its SYN-ACK
    // again. (The bulk engine once answered with a bare ACK, which the
    // sender took as the end of its handshake without a SYN: both ends
    // then waited for ever, the "SynSent ... mss 536" after a chaos run.)
    let w = world(cfg(1024, 2048));
    let rx: Arc<dyn Nic> = Arc::new(LosesSynAcks { inner: w.ifp(1).clone(), left: AtomicU32::new(2) });
    let d = Duration::from_millis(300);
    let r =
        ifperf::bulk_between(&w, (0, w.ifp(0).clone()), Some((1, rx)), None, false, d, Duration::from_secs(3), false);
    let r = r.expect("the handshake recovers from lost SYN-ACKs");
    assert!(r.bytes > 1 << 20, "{r:?}");
}
