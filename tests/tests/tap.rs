//! The guest against a real Linux TCP stack through a TAP device: Linux
//! judges the virtio-net headers the driver writes, and sends its own GSO
//! packets, which the guest receives as large-receive frames.

use ptnet_host_sim::app::stream::{Digest, Pattern};
use ptnet_host_sim::app::tcp::{vm_addrs, BulkReceiver, BulkSender};
use ptnet_host_sim::guest::stack::Stack;
use ptnet_host_sim::host::tap::{TapBridge, LINUX_IPV4, LINUX_IPV6};
use ptnet_host_sim::world::WorldConfig;
use ptnet_tests::world;
use smoltcp::wire::IpAddress;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Linux receives everything on `l` and returns (bytes, digest, first bad offset).
fn linux_receiver(
    l: TcpListener,
    pattern: Pattern,
) -> std::thread::JoinHandle<(u64, u64, Option<u64>)> {
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let (mut got, mut d, mut bad) = (0u64, Digest::default(), None);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return (got, d.0, bad);
            }
            let ok = pattern.matching(got, &buf[..n]);
            if ok < n && bad.is_none() {
                bad = Some(got + ok as u64);
            }
            d.update(&buf[..n]);
            got += n as u64;
        }
    })
}

fn guest_to_linux(tap: &TapBridge, st: &mut Stack, total: u64, v6: bool) {
    let pattern = Pattern::new(9);
    let addr = if v6 {
        format!("[{LINUX_IPV6}]:5001")
    } else {
        format!("{LINUX_IPV4}:5001")
    };
    let l = tap
        .netns
        .run(move || TcpListener::bind(addr))
        .unwrap()
        .unwrap();
    let rx = linux_receiver(l, pattern);
    let peer: IpAddress = if v6 {
        LINUX_IPV6.parse().unwrap()
    } else {
        LINUX_IPV4.parse().unwrap()
    };
    let mut s = BulkSender::connect(st, peer, 5001, 41000 + v6 as u16, total, pattern);
    assert!(
        st.run_until(Duration::from_secs(120), |x| s.step(x)),
        "guest sender stalled at {} bytes",
        s.result().bytes
    );
    let (got, digest, bad) = rx.join().unwrap();
    assert_eq!(bad, None, "Linux received corrupted data");
    assert_eq!((got, digest), (total, s.result().digest));
}

fn linux_to_guest(tap: &TapBridge, st: &mut Stack, total: u64, v6: bool) {
    let pattern = Pattern::new(10);
    let mut r = BulkReceiver::listen(st, 5002, pattern);
    let dst = if v6 {
        "[fd00::1]:5002".to_string()
    } else {
        "10.0.0.1:5002".to_string()
    };
    // Linux connects and sends from its own thread while the guest runs
    // (the guest must answer ARP and the handshake).
    let netns = tap.netns.name.clone();
    let sender = std::thread::spawn(move || {
        let mut c =
            ptnet_host_sim::host::netns::Netns::enter(&netns, move || TcpStream::connect(dst))
                .unwrap()
                .unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut sent = 0u64;
        let mut d = Digest::default();
        while sent < total {
            let n = ((total - sent) as usize).min(buf.len());
            pattern.fill(sent, &mut buf[..n]);
            c.write_all(&buf[..n]).unwrap();
            d.update(&buf[..n]);
            sent += n as u64;
        }
        d.0
    });
    assert!(
        st.run_until(Duration::from_secs(120), |s| r.step(s)),
        "guest receiver stalled at {} bytes",
        r.result().bytes
    );
    let digest = sender.join().unwrap();
    assert_eq!(r.corrupt_at, None, "guest received corrupted data");
    assert_eq!((r.result().bytes, r.result().digest), (total, digest));
}

#[test]
fn tcp_both_ways_with_a_linux_peer_and_tso() {
    let w = world(WorldConfig {
        driver: ptnet::Config {
            want_vnet_hdr: true,
            require_vnet_hdr: true,
        },
        slots: 2048,
        ..WorldConfig::default()
    });
    let tap = w.attach_tap(1500).unwrap();
    let mut st = Stack::new(w.ifp(0).clone(), w.vms[0].mac, &vm_addrs(0)).unwrap();
    guest_to_linux(&tap, &mut st, 64 << 20, false);
    eprintln!(
        "{:?} {:?} {:?}",
        st.stats(),
        w.ifp(0).if_counters(),
        tap.stats
    );
    linux_to_guest(&tap, &mut st, 64 << 20, false);
    eprintln!("{:?} {:?}", st.stats(), w.ifp(0).if_counters());
}
