//! The network interface between two guests through the switch: TCP bulk
//! with TSO and LRO, and with offloads off.

use ptnet_host_sim::app::stream::Pattern;
use ptnet_host_sim::app::tcp::{vm_addrs, vm_ipv4, BulkReceiver, BulkSender};
use ptnet_host_sim::guest::stack::Stack;
use ptnet_host_sim::world::WorldConfig;
use ptnet_tests::world;
use smoltcp::wire::IpAddress;
use std::time::Duration;

#[test]
fn tcp_bulk_between_guests_with_tso() {
    let cfg =
        WorldConfig { driver: ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true }, ..WorldConfig::default() };
    let w = world(cfg);
    let total = 16u64 << 20;
    let pattern = Pattern::new(1);
    let (ifa, ifb) = (w.ifp(0).clone(), w.ifp(1).clone());
    let (ma, mb) = (w.vms[0].mac, w.vms[1].mac);
    let rx = std::thread::spawn(move || {
        let mut st = Stack::new(ifb, mb, &vm_addrs(1)).unwrap();
        let mut r = BulkReceiver::listen(&mut st, 5001, pattern);
        assert!(st.run_until(Duration::from_secs(60), |s| r.step(s)), "receiver timed out at {}", r.result().bytes);
        (r.result(), r.corrupt_at, st.stats())
    });
    let mut st = Stack::new(ifa, ma, &vm_addrs(0)).unwrap();
    let mut s = BulkSender::connect(&mut st, IpAddress::Ipv4(vm_ipv4(1)), 5001, 40000, total, pattern);
    assert!(st.run_until(Duration::from_secs(60), |x| s.step(x)), "sender timed out at {}", s.result().bytes);
    // Keep answering until the receiver is done.
    let res = loop {
        st.run_until(Duration::from_millis(20), |_| false);
        if rx.is_finished() {
            break rx.join().unwrap();
        }
    };
    let (got, corrupt, rstats) = res;
    assert_eq!(corrupt, None);
    assert_eq!(got.bytes, total);
    assert_eq!(got.digest, s.result().digest);
    let sst = st.stats();
    eprintln!("sender {sst:?}\nreceiver {rstats:?}\nA {:?}\nB {:?}", w.ifp(0).if_counters(), w.ifp(1).if_counters());
    assert!(sst.tso_packets > 0 && sst.tso_max_bytes >= 32 << 10, "{sst:?}");
    assert!(w.ifp(1).if_counters().rx_lro > 0);
}

/// Runs a TCP bulk transfer of `total` bytes from VM `a` to VM `b` over
/// IPv4 or IPv6; returns (sender stats, receiver stats).
fn bulk(
    w: &ptnet_host_sim::world::World,
    a: usize,
    b: usize,
    total: u64,
    v6: bool,
) -> (ptnet_host_sim::guest::stack::StackStats, ptnet_host_sim::guest::stack::StackStats) {
    use ptnet_host_sim::app::tcp::vm_ipv6;
    let pattern = Pattern::new(a as u64 * 31 + b as u64);
    let (ifa, ifb) = (w.ifp(a).clone(), w.ifp(b).clone());
    let (ma, mb) = (w.vms[a].mac, w.vms[b].mac);
    let rx = std::thread::spawn(move || {
        let mut st = Stack::new(ifb, mb, &vm_addrs(b)).unwrap();
        let mut r = BulkReceiver::listen(&mut st, 5001, pattern);
        let ok = st.run_until(Duration::from_secs(60), |s| r.step(s));
        assert!(ok, "receiver timed out at {}", r.result().bytes);
        (r.result(), r.corrupt_at, st.stats())
    });
    let mut st = Stack::new(ifa, ma, &vm_addrs(a)).unwrap();
    let peer = if v6 { IpAddress::Ipv6(vm_ipv6(b)) } else { IpAddress::Ipv4(vm_ipv4(b)) };
    let mut s = BulkSender::connect(&mut st, peer, 5001, 40000, total, pattern);
    assert!(st.run_until(Duration::from_secs(60), |x| s.step(x)), "sender timed out at {}", s.result().bytes);
    let (got, corrupt, rstats) = loop {
        st.run_until(Duration::from_millis(20), |_| false);
        if rx.is_finished() {
            break rx.join().unwrap();
        }
    };
    assert_eq!(corrupt, None, "content corrupted");
    assert_eq!((got.bytes, got.digest), (total, s.result().digest));
    (st.stats(), rstats)
}

#[test]
fn mixed_header_ports_are_bridged_by_the_switch() {
    use ptnet_host_sim::world::World;
    let mut w = World::boot(WorldConfig::default());
    w.vms[0].attach(ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true }).unwrap();
    w.vms[1].attach(ptnet::Config { want_vnet_hdr: false, require_vnet_hdr: false }).unwrap();
    assert_eq!(w.ifp(1).info().vnet_hdr_len, 0);
    for v6 in [false, true] {
        // With the header, TSO super-packets; the switch segments them
        // for the port without it.
        let (tx, _) = bulk(&w, 0, 1, 8 << 20, v6);
        assert!(tx.tso_packets > 0, "{tx:?}");
        // Without it, software checksums; the switch adds a zero header.
        let (tx, rx) = bulk(&w, 1, 0, 4 << 20, v6);
        assert_eq!((tx.tso_packets, tx.tx_csum_offload), (0, 0), "{tx:?}");
        assert!(tx.tx_sw_csum > 0 && rx.rx_sw_verified > 0);
    }
    assert_eq!(w.ifp(1).if_counters().ierrors, 0);
}
