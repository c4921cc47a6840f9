//! The guest against real Linux stacks through a TAP device. The Linux
//! peer sits behind a Linux router whose egress has checksum and
//! segmentation offloads off ([`Peer::Routed`]), so Linux completes every
//! checksum and segments every GSO packet from the fields of the driver's
//! virtio-net headers: a wrong field corrupts the stream and the content
//! checks fail. Linux's own TSO packets reach the guest as GSO packets
//! through the TAP device.

use ptnet::net::caps::IfCap;
use ptnet_host_sim::app::stream::{Digest, Pattern};
use ptnet_host_sim::app::tcp::{vm_addrs, BulkReceiver, BulkSender};
use ptnet_host_sim::guest::stack::Stack;
use ptnet_host_sim::host::netns::Netns;
use ptnet_host_sim::host::tap::{Peer, TapBridge, LINUX_IPV4, LINUX_IPV6};
use ptnet_host_sim::world::{World, WorldConfig};
use ptnet_tests::world;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

const BULK: u64 = 64 << 20;

struct Setup {
    w: World,
    tap: TapBridge,
    st: Stack,
}

fn setup(offloads: bool) -> Setup {
    let cfg = WorldConfig {
        driver: ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true },
        slots: 2048,
        ..WorldConfig::default()
    };
    let w = world(cfg);
    let tap = w.attach_tap(1500, Peer::Routed).unwrap();
    let ifp = w.ifp(0).clone();
    if !offloads {
        ifp.set_capabilities(IfCap::VLAN_MTU | IfCap::JUMBO_MTU).unwrap();
    }
    let mut st = Stack::new(ifp, w.vms[0].mac, &vm_addrs(0)).unwrap();
    st.add_default_routes(LINUX_IPV4.parse().unwrap(), LINUX_IPV6.parse().unwrap());
    Setup { w, tap, st }
}

fn peer(s: &Setup, v6: bool) -> IpAddress {
    if v6 {
        s.tap.peer_ipv6().parse().unwrap()
    } else {
        s.tap.peer_ipv4().parse().unwrap()
    }
}

fn guest_addr(v6: bool) -> &'static str {
    if v6 {
        "fd00::1"
    } else {
        "10.0.0.1"
    }
}

fn sockaddr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Guest sends `total` bytes to a Linux receiver, which checks them.
fn guest_to_linux(s: &mut Setup, total: u64, v6: bool) {
    let pattern = Pattern::new(9 + v6 as u64);
    let addr = sockaddr(if v6 { s.tap.peer_ipv6() } else { s.tap.peer_ipv4() }, 5001 + v6 as u16);
    let l = s.tap.peer_netns().run(move || TcpListener::bind(addr)).unwrap().unwrap();
    let rx = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let (mut got, mut d, mut bad) = (0u64, Digest::default(), None);
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                return (got, d.value(), bad);
            }
            let ok = pattern.matching(got, &buf[..n]);
            if ok < n && bad.is_none() {
                bad = Some(got + ok as u64);
            }
            d.update(&buf[..n]);
            got += n as u64;
        }
    });
    let to = peer(s, v6);
    let mut snd = BulkSender::connect(&mut s.st, to, 5001 + v6 as u16, 41000 + v6 as u16, total, pattern);
    assert!(
        s.st.run_until(Duration::from_secs(180), |x| snd.step(x)),
        "guest sender stalled at {}",
        snd.result().bytes
    );
    let (got, digest, bad) = rx.join().unwrap();
    assert_eq!(bad, None, "Linux received corrupted data at this offset");
    assert_eq!((got, digest), (total, snd.result().digest));
}

/// Linux sends `total` bytes to the guest, which checks them.
fn linux_to_guest(s: &mut Setup, total: u64, v6: bool) {
    let pattern = Pattern::new(20 + v6 as u64);
    let port = 5101 + v6 as u16;
    let mut r = BulkReceiver::listen(&mut s.st, port, pattern);
    let dst = sockaddr(guest_addr(v6), port);
    let ns = s.tap.peer_netns().name.clone();
    let sender = std::thread::spawn(move || {
        let mut c = Netns::enter(&ns, move || TcpStream::connect(dst)).unwrap().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let (mut sent, mut d) = (0u64, Digest::default());
        while sent < total {
            let n = ((total - sent) as usize).min(buf.len());
            pattern.fill(sent, &mut buf[..n]);
            c.write_all(&buf[..n]).unwrap();
            d.update(&buf[..n]);
            sent += n as u64;
        }
        d.value()
    });
    assert!(s.st.run_until(Duration::from_secs(180), |x| r.step(x)), "guest receiver stalled at {}", r.result().bytes);
    let digest = sender.join().unwrap();
    assert_eq!(r.corrupt_at, None, "the guest received corrupted data");
    assert_eq!((r.result().bytes, r.result().digest), (total, digest));
}

fn tcp_both_ways(v6: bool) {
    let mut s = setup(true);
    guest_to_linux(&mut s, BULK, v6);
    let st = s.st.stats();
    assert!(st.tso_packets > 0 && st.tso_max_bytes >= 32 << 10, "no TSO super-packets: {st:?}");
    linux_to_guest(&mut s, BULK, v6);
    let c = s.w.ifp(0).if_counters();
    assert!(c.rx_lro > 0, "Linux's GSO packets did not arrive as LRO frames: {c:?}");
    assert_eq!((c.ierrors, c.oerrors, s.st.stats().rx_bad_csum), (0, 0, 0), "{c:?}");
}

#[test]
fn tcp_ipv4_both_ways_with_tso_and_lro() {
    tcp_both_ways(false);
}

#[test]
fn tcp_ipv6_both_ways_with_tso_and_lro() {
    tcp_both_ways(true);
}

#[test]
fn tcp_both_ways_with_every_offload_off() {
    let mut s = setup(false);
    for v6 in [false, true] {
        guest_to_linux(&mut s, BULK, v6);
        linux_to_guest(&mut s, BULK, v6);
    }
    let st = s.st.stats();
    assert_eq!((st.tso_packets, st.tx_csum_offload), (0, 0), "{st:?}");
    assert!(st.tx_sw_csum > 0 && st.rx_sw_verified > 0, "{st:?}");
    let c = s.w.ifp(0).if_counters();
    // Linux still sends GSO and partial checksums: the driver undoes them.
    assert!(c.rx_segmented > 0 && c.rx_lro == 0, "{c:?}");
    assert_eq!((c.tx_csum, c.tx_tso, c.ierrors), (0, 0, 0), "{c:?}");
}

fn udp_socket(st: &mut Stack, port: u16) -> SocketHandle {
    let meta = || vec![udp::PacketMetadata::EMPTY; 256];
    let mut u = udp::Socket::new(
        udp::PacketBuffer::new(meta(), vec![0; 1 << 20]),
        udp::PacketBuffer::new(meta(), vec![0; 1 << 20]),
    );
    u.bind(port).unwrap();
    st.sockets.add(u)
}

fn datagram(pattern: Pattern, seq: u64, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    d[..8].copy_from_slice(&seq.to_le_bytes());
    pattern.fill(seq * 4096, &mut d[8..]);
    d
}

/// Room for a burst of datagrams in the Linux socket (the default buffer
/// holds about a hundred of these), so losses could only be checksums.
fn big_rcvbuf(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a valid socket with an int argument.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUFFORCE needs root");
}

fn udp_both_ways(s: &mut Setup, v6: bool, rxcsum: bool) {
    let n = 200u64;
    let pattern = Pattern::new(77);
    let caps = s.w.ifp(0).enabled();
    let rx_caps = if v6 { IfCap::RXCSUM_IPV6 } else { IfCap::RXCSUM };
    s.w.ifp(0).set_capabilities(if rxcsum { caps | rx_caps } else { caps - rx_caps }).unwrap();
    // Guest to Linux: checksums offloaded, completed by the Linux router.
    let addr = sockaddr(if v6 { s.tap.peer_ipv6() } else { s.tap.peer_ipv4() }, 6000);
    let lin = s.tap.peer_netns().run(move || UdpSocket::bind(addr)).unwrap().unwrap();
    lin.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    big_rcvbuf(&lin);
    // Linux reads while the guest sends.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        while let Ok((len, _)) = lin.recv_from(&mut buf) {
            let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
            assert_eq!(&buf[..len], &datagram(pattern, seq, 1000 + seq as usize)[..], "datagram {seq} corrupted");
            got += 1;
            if got == n {
                break;
            }
        }
        got
    });
    let h = udp_socket(&mut s.st, 6001);
    let to = IpEndpoint::new(peer(s, v6), 6000);
    let mut sent = 0;
    s.st.run_until(Duration::from_secs(10), |st| {
        let u = st.sockets.get_mut::<udp::Socket>(h);
        while sent < n && u.can_send() {
            u.send_slice(&datagram(pattern, sent, 1000 + sent as usize), to).unwrap();
            sent += 1;
        }
        sent == n
    });
    // The guest keeps running (neighbour discovery, queued datagrams) until
    // Linux has everything or gives up.
    s.st.run_until(Duration::from_secs(10), |_| reader.is_finished());
    let got = reader.join().unwrap();
    if got != n {
        let snmp = std::process::Command::new("ip")
            .args(["netns", "exec", &s.tap.peer_netns().name, "cat", "/proc/net/snmp", "/proc/net/snmp6"])
            .output()
            .unwrap();
        eprintln!("{}\n{:?}\n{:?}", String::from_utf8_lossy(&snmp.stdout), s.tap.stats, s.w.ifp(0).if_counters());
    }
    assert_eq!(got, n, "Linux dropped datagrams (v6 {v6}, rxcsum {rxcsum})");
    // Linux to guest: Linux offloads the checksum, the guest checks it.
    let dst = sockaddr(guest_addr(v6), 6001);
    let ns = s.tap.peer_netns().name.clone();
    let sender = std::thread::spawn(move || {
        let u = Netns::enter(&ns, move || UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" })).unwrap().unwrap();
        for seq in 0..n {
            u.send_to(&datagram(pattern, seq, 1000 + seq as usize), &dst).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let mut seen = 0;
    s.st.run_until(Duration::from_secs(10), |st| {
        let u = st.sockets.get_mut::<udp::Socket>(h);
        while let Ok((d, _)) = u.recv() {
            let seq = u64::from_le_bytes(d[..8].try_into().unwrap());
            assert_eq!(d, &datagram(pattern, seq, 1000 + seq as usize)[..], "datagram {seq} corrupted");
            seen += 1;
        }
        seen == n
    });
    sender.join().unwrap();
    assert_eq!(seen, n, "the guest lost datagrams");
    s.st.sockets.remove(h);
}

#[test]
fn udp_checksum_offload_both_ways() {
    let mut s = setup(true);
    for v6 in [false, true] {
        udp_both_ways(&mut s, v6, true);
        udp_both_ways(&mut s, v6, false);
    }
    let c = s.w.ifp(0).if_counters();
    assert!(c.tx_csum >= 400, "{c:?}");
    assert!(c.rx_csum_completed > 0, "RXCSUM off: the driver completes Linux's partial checksums: {c:?}");
    assert_eq!(s.st.stats().rx_bad_csum, 0);
}
