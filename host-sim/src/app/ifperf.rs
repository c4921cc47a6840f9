//! TCP bulk and request/response runs over the network interface, between
//! two guests through the switch or between a guest and a Linux socket
//! through the TAP device, and the Linux baselines they are compared with
//! (a veth pair between two namespaces, memcpy).

use super::meter::{Meter, Unit};
use super::stream::Pattern;
use super::tcp::{vm_addrs, vm_ipv4, vm_ipv6};
use crate::guest::bulktcp::{BulkTcp, Endpoint};
use crate::guest::nic::Nic;
use crate::guest::stack::Stack;
use crate::host::netns::Netns;
use crate::host::tap::TapBridge;
use crate::world::World;
use serde::Serialize;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who is at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    /// Another guest on the switch.
    Guest,
    /// A Linux socket behind the TAP device.
    Linux,
}

/// Outcome of a bulk run.
#[derive(Debug, Clone, Serialize)]
pub struct BulkReport {
    /// The peer.
    pub peer: PeerKind,
    /// IPv6 rather than IPv4.
    pub ipv6: bool,
    /// Bytes delivered and verified.
    pub bytes: u64,
    /// Seconds from first to last byte.
    pub seconds: f64,
    /// Goodput.
    pub gbps: f64,
    /// TSO super-packets the sender emitted.
    pub tso_packets: u64,
    /// Their average size.
    pub tso_avg_bytes: f64,
    /// Frames the receiving guest took as large-receive frames.
    pub rx_lro: u64,
    /// Retransmission episodes at the sender.
    pub retransmits: u64,
    /// Of which retransmission timeouts.
    pub timeouts: u64,
    /// Sends the sender's interface refused (queue full), retried.
    pub enobufs: u64,
    /// Per-second goodput.
    pub per_second: Vec<f64>,
}

/// Outcome of a request/response run.
#[derive(Debug, Clone, Serialize)]
pub struct RrReport {
    /// The peer.
    pub peer: PeerKind,
    /// Request size.
    pub request: usize,
    /// Response size.
    pub response: usize,
    /// Transactions completed.
    pub transactions: u64,
    /// Seconds.
    pub seconds: f64,
    /// Transactions per second.
    pub tps: f64,
    /// Median round trip (µs).
    pub p50_us: f64,
    /// 99th percentile round trip (µs).
    pub p99_us: f64,
    /// Per-second rates.
    pub per_second: Vec<f64>,
}

fn sockaddr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn guest_stack(w: &World, i: usize, tap: Option<&TapBridge>) -> Result<Stack, String> {
    let mut st = Stack::new(w.ifp(i).clone(), w.vms[i].mac, &vm_addrs(i)).map_err(|e| e.to_string())?;
    if tap.is_some() {
        st.add_default_routes(
            crate::host::tap::LINUX_IPV4.parse().unwrap(),
            crate::host::tap::LINUX_IPV6.parse().unwrap(),
        );
    }
    Ok(st)
}

/// Guest receivers of bulk transfers still running in `w`. Between
/// transfers none may be: one left behind would take the next transfer's
/// frames from its interface (as one did after a transfer under chaos
/// whose sender gave up).
pub fn bulk_receivers_running(w: &World) -> usize {
    w.bulk_receivers.load(Ordering::SeqCst)
}

/// Counts a receiver thread in [`bulk_receivers_running`] while alive.
struct ReceiverRunning(Arc<AtomicUsize>);

impl ReceiverRunning {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for ReceiverRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A sending end's port: a new one for every transfer, as a stack picks a
/// fresh ephemeral port for each connection. The bulk engine derives its
/// initial sequence number from the port, so a new connection never
/// shares its addresses, ports and sequence space with an earlier one
/// whose segments may still be in flight. After a hostile host some of
/// those are corrupted yet trusted (a host that overwrote a frame still
/// queued in a TX ring keeps its checksum-offload flags): with the same
/// ports and sequence numbers, the next transfer would take them as its
/// own data.
fn ephemeral_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    40001 + NEXT.fetch_add(1, Ordering::Relaxed) % 20000
}

/// A guest's endpoint: VM `i`'s addresses and `port`.
fn guest_end(w: &World, i: usize, ipv6: bool, port: u16) -> Endpoint {
    let ip = if ipv6 { IpAddr::V6(vm_ipv6(i)) } else { IpAddr::V4(vm_ipv4(i)) };
    Endpoint { mac: w.vms[i].mac, ip, port }
}

/// The Linux peer behind the TAP device, with static neighbour entries
/// both ways for VM `vm` (the bulk engine does not do ARP or neighbour
/// discovery).
fn linux_end(w: &World, vm: usize, tap: &TapBridge, ipv6: bool, port: u16) -> Result<Endpoint, String> {
    let mac = tap.mac().map_err(|e| e.to_string())?;
    for v6 in [false, true] {
        let guest = guest_end(w, vm, v6, 0);
        tap.add_neighbor(&guest.ip.to_string(), guest.mac).map_err(|e| e.to_string())?;
    }
    let ip: IpAddr = if ipv6 { tap.peer_ipv6() } else { tap.peer_ipv4() }.parse().map_err(|_| "bad address")?;
    Ok(Endpoint { mac, ip, port })
}

/// How long a transfer may go without finishing past its duration before
/// it is reported as stalled (a slow CI machine needs room).
pub const STALL: Duration = Duration::from_secs(60);

/// TCP bulk from VM 0 to the peer for `duration`, through the bulk engine
/// (TSO super-packets), content checked at the receiver.
pub fn bulk(
    w: &World,
    tap: Option<&TapBridge>,
    peer: PeerKind,
    ipv6: bool,
    duration: Duration,
    print: bool,
) -> Result<BulkReport, String> {
    bulk_within(w, tap, peer, ipv6, duration, STALL, print)
}

/// [`bulk`], reported as stalled `stall` after `duration`.
pub fn bulk_within(
    w: &World,
    tap: Option<&TapBridge>,
    peer: PeerKind,
    ipv6: bool,
    duration: Duration,
    stall: Duration,
    print: bool,
) -> Result<BulkReport, String> {
    let rx = match peer {
        PeerKind::Guest => Some((1, w.ifp(1).clone() as Arc<dyn Nic>)),
        PeerKind::Linux => None,
    };
    bulk_between(w, (0, w.ifp(0).clone()), rx, tap, ipv6, duration, stall, print)
}

/// A VM's interface as one end of a transfer: the VM's index (its
/// addresses) and the interface its stack uses.
pub type NicEnd = (usize, Arc<dyn Nic>);

/// TCP bulk from `tx` to `rx` (a guest), or to the Linux peer behind
/// `tap` when `rx` is `None`, for `duration`; content checked at the
/// receiver, reported as stalled `stall` after `duration`.
#[allow(clippy::too_many_arguments)]
pub fn bulk_between(
    w: &World,
    tx_end: NicEnd,
    rx_end: Option<NicEnd>,
    tap: Option<&TapBridge>,
    ipv6: bool,
    duration: Duration,
    stall: Duration,
    print: bool,
) -> Result<BulkReport, String> {
    let pattern = Pattern::new(0x5eed);
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // The sender gave up: the receiver stops too, before this returns (a
    // receiver left running would take the next transfer's frames).
    let aborted = Arc::new(AtomicBool::new(false));
    let local = guest_end(w, tx_end.0, ipv6, ephemeral_port());
    let peer = if rx_end.is_some() { PeerKind::Guest } else { PeerKind::Linux };
    type RxOut = Result<(u64, Option<u64>, f64, u64), String>;
    let (remote, rx): (Endpoint, std::thread::JoinHandle<RxOut>) = match rx_end {
        Some((vm, ifb)) => {
            let remote = guest_end(w, vm, ipv6, 5001);
            let (r2, d2, a2) = (received.clone(), done.clone(), aborted.clone());
            let running = ReceiverRunning::new(w.bulk_receivers.clone());
            let h = std::thread::Builder::new()
                .name("vm1-bulk-rx".into())
                .spawn(move || {
                    let _running = running;
                    let mut c = BulkTcp::listen(ifb, remote, local, pattern);
                    c.set_stall(stall);
                    let ok = c.run_with(duration + stall, |c| {
                        r2.store(c.received(), Ordering::Relaxed);
                        !a2.load(Ordering::Acquire)
                    });
                    d2.store(true, Ordering::Release);
                    let s = c.stats();
                    if !ok {
                        return Err(format!("receiving guest stalled at {} bytes: {}", s.bytes, c.debug_state()));
                    }
                    Ok((s.bytes, s.corrupt_at, s.seconds, s.lro_frames))
                })
                .map_err(|e| e.to_string())?;
            (remote, h)
        }
        None => {
            let tap = tap.ok_or("the Linux peer needs the TAP device")?;
            let remote = linux_end(w, tx_end.0, tap, ipv6, 5001)?;
            let addr = sockaddr(&remote.ip.to_string(), 5001);
            let l = tap
                .peer_netns()
                .run(move || TcpListener::bind(addr))
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let (r2, d2) = (received.clone(), done.clone());
            let h = std::thread::spawn(move || {
                let res = linux_receive(&l, pattern, &r2);
                d2.store(true, Ordering::Release);
                res.map(|(b, c, s)| (b, c, s, 0))
            });
            (remote, h)
        }
    };
    let mut tx = BulkTcp::connect(tx_end.1, local, remote, pattern, u64::MAX);
    tx.send_for(duration);
    tx.set_stall(stall);
    let rates = std::thread::scope(|sc| {
        let m = sc.spawn(|| Meter::new(&received, Unit::Bytes, print).run(|| !done.load(Ordering::Acquire)));
        let ok = tx.run(duration + stall);
        if !ok {
            aborted.store(true, Ordering::Release);
            done.store(true, Ordering::Release);
        }
        let rates = m.join().unwrap_or_default();
        if ok {
            Ok(rates)
        } else {
            Err(format!("sending guest stalled at {} bytes: {}", tx.stats().bytes, tx.debug_state()))
        }
    });
    let rates = match rates {
        // Linux's socket would wait for a FIN that will not come.
        Err(e) if peer == PeerKind::Linux => return Err(e),
        r => r,
    };
    let received = rx.join().map_err(|_| "receiver panicked")?;
    let rates = rates?;
    let (bytes, corrupt, seconds, lro) = received.map_err(|e| format!("{e} (sender: {})", tx.debug_state()))?;
    if let Some(at) = corrupt {
        return Err(format!("stream corrupted at byte {at}"));
    }
    let sent = tx.stats();
    if bytes != sent.bytes {
        return Err(format!("received {bytes} bytes of {}", sent.bytes));
    }
    Ok(BulkReport {
        peer,
        ipv6,
        bytes,
        seconds,
        gbps: bytes as f64 * 8.0 / seconds.max(1e-9) / 1e9,
        tso_packets: sent.tso_packets,
        tso_avg_bytes: sent.tso_bytes as f64 / sent.tso_packets.max(1) as f64,
        rx_lro: lro,
        retransmits: sent.retransmits,
        timeouts: sent.timeouts,
        enobufs: sent.enobufs,
        per_second: rates,
    })
}

/// Linux side of a bulk run: reads one connection to the end, checking
/// every byte against the pattern; returns (bytes, first bad offset,
/// seconds).
fn linux_receive(l: &TcpListener, pattern: Pattern, counter: &AtomicU64) -> Result<(u64, Option<u64>, f64), String> {
    let (mut c, _) = l.accept().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 18];
    let (mut got, mut bad) = (0u64, None);
    let mut start = None;
    loop {
        let n = c.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            let secs = start.map_or(0.0, |s: Instant| s.elapsed().as_secs_f64());
            return Ok((got, bad, secs));
        }
        start.get_or_insert_with(Instant::now);
        let ok = pattern.matching(got, &buf[..n]);
        if ok < n && bad.is_none() {
            bad = Some(got + ok as u64);
        }
        got += n as u64;
        counter.store(got, Ordering::Relaxed);
    }
}

/// Linux side of a bulk run as the sender, for `duration`; returns the
/// bytes sent.
fn linux_send(c: &mut TcpStream, pattern: Pattern, duration: Duration) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 18];
    let mut sent = 0u64;
    let end = Instant::now() + duration;
    while Instant::now() < end {
        pattern.fill(sent, &mut buf);
        c.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    Ok(sent)
}

fn rr_socket(st: &mut Stack) -> tcp::Socket<'static> {
    let _ = st;
    let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 1 << 16]), tcp::SocketBuffer::new(vec![0; 1 << 16]));
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    s
}

/// A guest answering `req`-byte requests with `resp`-byte responses.
struct RrServer {
    h: SocketHandle,
    req: usize,
    resp: usize,
    pending: usize,
}

impl RrServer {
    fn step(&mut self, st: &mut Stack) {
        let s = st.sockets.get_mut::<tcp::Socket>(self.h);
        while s.can_recv() {
            let (req, pending) = (self.req, &mut self.pending);
            let _ = s.recv(|b| {
                *pending += b.len();
                (b.len(), ())
            });
            while self.pending >= req {
                self.pending -= req;
                let _ = s.send_slice(&vec![0x5a; self.resp]);
            }
        }
        if !s.is_open() {
            let _ = s.listen(5002);
        }
    }
}

/// Request/response from VM 0 to the peer for `duration`: one request in
/// flight at a time, like netperf's TCP_RR.
pub fn rr(
    w: &World,
    tap: Option<&TapBridge>,
    peer: PeerKind,
    req: usize,
    resp: usize,
    duration: Duration,
    print: bool,
) -> Result<RrReport, String> {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let (to, server): (IpAddress, std::thread::JoinHandle<Result<(), String>>) = match peer {
        PeerKind::Guest => {
            let (ifb, mb, d2) = (w.ifp(1).clone(), w.vms[1].mac, done.clone());
            let h = std::thread::spawn(move || {
                let mut st = Stack::new(ifb, mb, &vm_addrs(1)).map_err(|e| e.to_string())?;
                let mut s = rr_socket(&mut st);
                s.listen(5002).map_err(|e| format!("{e:?}"))?;
                let mut srv = RrServer { h: st.sockets.add(s), req, resp, pending: 0 };
                st.run_until(Duration::from_secs(3600), |st| {
                    srv.step(st);
                    d2.load(Ordering::Acquire)
                });
                Ok(())
            });
            (IpAddress::Ipv4(vm_ipv4(1)), h)
        }
        PeerKind::Linux => {
            let tap = tap.ok_or("the Linux peer needs the TAP device")?;
            let addr = sockaddr(tap.peer_ipv4(), 5002);
            let l = tap
                .peer_netns()
                .run(move || TcpListener::bind(addr))
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let h = std::thread::spawn(move || linux_rr_server(&l, req, resp).map_err(|e| e.to_string()));
            (tap.peer_ipv4().parse().map_err(|_| "bad address")?, h)
        }
    };
    let mut st = guest_stack(w, 0, tap)?;
    let mut s = rr_socket(&mut st);
    s.connect(st.iface.context(), (to, 5002), 40002).map_err(|e| format!("{e:?}"))?;
    let h = st.sockets.add(s);
    let (mut outstanding, mut got) = (false, 0usize);
    let mut rtts = Vec::new();
    let mut sent_at = Instant::now();
    let end = Instant::now() + duration + Duration::from_millis(200);
    let mut start = None;
    let rates = std::thread::scope(|sc| {
        let (d3, c3) = (done.clone(), count.clone());
        let m = sc.spawn(move || Meter::new(&c3, Unit::Transactions, print).run(|| !d3.load(Ordering::Acquire)));
        st.run_until(duration + Duration::from_secs(30), |st| {
            let s = st.sockets.get_mut::<tcp::Socket>(h);
            if !s.may_send() {
                return false;
            }
            let t0 = *start.get_or_insert_with(Instant::now);
            while s.can_recv() {
                let _ = s.recv(|b| {
                    got += b.len();
                    (b.len(), ())
                });
            }
            if outstanding && got >= resp {
                got -= resp;
                outstanding = false;
                rtts.push(sent_at.elapsed());
                count.fetch_add(1, Ordering::Relaxed);
            }
            if !outstanding {
                if t0.elapsed() >= duration || Instant::now() >= end {
                    return true;
                }
                sent_at = Instant::now();
                let _ = s.send_slice(&vec![0xa5; req]);
                outstanding = true;
            }
            false
        });
        st.sockets.get_mut::<tcp::Socket>(h).close();
        st.run_until(Duration::from_millis(50), |_| false);
        done.store(true, Ordering::Release);
        m.join().unwrap_or_default()
    });
    server.join().map_err(|_| "server panicked")??;
    let seconds = start.map_or(0.0, |s| s.elapsed().as_secs_f64()).min(duration.as_secs_f64() + 1.0);
    let n = rtts.len() as u64;
    if n == 0 {
        return Err("no transaction completed".into());
    }
    rtts.sort();
    let us = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    Ok(RrReport {
        peer,
        request: req,
        response: resp,
        transactions: n,
        seconds,
        tps: n as f64 / seconds,
        p50_us: us(0.5),
        p99_us: us(0.99),
        per_second: rates,
    })
}

fn linux_rr_server(l: &TcpListener, req: usize, resp: usize) -> std::io::Result<()> {
    let (mut c, _) = l.accept()?;
    c.set_nodelay(true)?;
    let (mut inb, out) = (vec![0u8; req], vec![0x5a; resp]);
    loop {
        if c.read_exact(&mut inb).is_err() {
            return Ok(());
        }
        c.write_all(&out)?;
    }
}

/// Two namespaces joined by a veth pair, Linux TCP at both ends: the
/// baseline for bulk and request/response through the kernel.
pub struct Veth {
    a: Netns,
    b: Netns,
}

impl Veth {
    /// Creates the pair (10.2.0.1 in `a`, 10.2.0.2 in `b`), offloads on.
    pub fn create() -> std::io::Result<Self> {
        let a = Netns::create("ptnet-veth-a")?;
        let b = Netns::create("ptnet-veth-b")?;
        a.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &b.name])?;
        a.ip(&["addr", "add", "10.2.0.1/24", "dev", "v0"])?;
        b.ip(&["addr", "add", "10.2.0.2/24", "dev", "v1"])?;
        a.ip(&["link", "set", "v0", "up"])?;
        b.ip(&["link", "set", "v1", "up"])?;
        Ok(Self { a, b })
    }

    /// Bulk from `a` to `b` for `duration`, the same pattern generated and
    /// checked as in the guest runs; returns Gbps.
    pub fn bulk(&self, duration: Duration) -> Result<f64, String> {
        let pattern = Pattern::new(0x5eed);
        let l =
            self.b.run(|| TcpListener::bind("10.2.0.2:5001")).map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        let counter = Arc::new(AtomicU64::new(0));
        let c2 = counter.clone();
        let rx = std::thread::spawn(move || linux_receive(&l, pattern, &c2));
        let name = self.a.name.clone();
        let tx = std::thread::spawn(move || -> Result<u64, String> {
            let mut c = Netns::enter(&name, || TcpStream::connect("10.2.0.2:5001"))
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            linux_send(&mut c, pattern, duration).map_err(|e| e.to_string())
        });
        let sent = tx.join().map_err(|_| "sender panicked")??;
        let (got, bad, secs) = rx.join().map_err(|_| "receiver panicked")??;
        if bad.is_some() || got != sent {
            return Err("veth baseline stream corrupted".into());
        }
        Ok(got as f64 * 8.0 / secs.max(1e-9) / 1e9)
    }

    /// Request/response between `a` and `b`; returns transactions/s.
    pub fn rr(&self, req: usize, resp: usize, duration: Duration) -> Result<f64, String> {
        let l =
            self.b.run(|| TcpListener::bind("10.2.0.2:5002")).map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        let srv = std::thread::spawn(move || linux_rr_server(&l, req, resp));
        let name = self.a.name.clone();
        let n = std::thread::spawn(move || -> Result<(u64, f64), String> {
            let mut c = Netns::enter(&name, || TcpStream::connect("10.2.0.2:5002"))
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            c.set_nodelay(true).map_err(|e| e.to_string())?;
            let (out, mut inb) = (vec![0xa5; req], vec![0u8; resp]);
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < duration {
                c.write_all(&out).map_err(|e| e.to_string())?;
                c.read_exact(&mut inb).map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok((n, start.elapsed().as_secs_f64()))
        })
        .join()
        .map_err(|_| "client panicked")??;
        let _ = srv.join();
        Ok(n.0 as f64 / n.1)
    }
}

/// The machine's memory copy bandwidth (one thread, 64 MiB buffers), Gbps.
pub fn memcpy_gbps(duration: Duration) -> f64 {
    let src = vec![0x5au8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < duration {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        bytes += src.len() as u64;
    }
    bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
}

/// Linux to guest bulk through the TAP device for `duration`: Linux's GSO
/// packets arrive as large-receive frames, taken by the bulk engine.
pub fn bulk_from_linux(
    w: &World,
    tap: &TapBridge,
    ipv6: bool,
    duration: Duration,
    print: bool,
) -> Result<BulkReport, String> {
    bulk_from_linux_to(w, (0, w.ifp(0).clone()), tap, ipv6, duration, print)
}

/// [`bulk_from_linux`] into the guest end `to`.
pub fn bulk_from_linux_to(
    w: &World,
    to: NicEnd,
    tap: &TapBridge,
    ipv6: bool,
    duration: Duration,
    print: bool,
) -> Result<BulkReport, String> {
    let pattern = Pattern::new(0xface);
    let local = guest_end(w, to.0, ipv6, 5003);
    let remote = Endpoint { port: 0, ..linux_end(w, to.0, tap, ipv6, 0)? };
    let mut rx = BulkTcp::listen(to.1, local, remote, pattern);
    let ns = tap.peer_netns().name.clone();
    let dst = sockaddr(&local.ip.to_string(), 5003);
    let tx = std::thread::spawn(move || -> Result<u64, String> {
        let mut c =
            Netns::enter(&ns, || TcpStream::connect(dst)).map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        linux_send(&mut c, pattern, duration).map_err(|e| e.to_string())
    });
    let received = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let rates = std::thread::scope(|sc| {
        let m = sc.spawn(|| Meter::new(&received, Unit::Bytes, print).run(|| !done.load(Ordering::Acquire)));
        let ok = rx.run_with(duration + STALL, |c| {
            received.store(c.received(), Ordering::Relaxed);
            true
        });
        done.store(true, Ordering::Release);
        let rates = m.join().unwrap_or_default();
        if ok {
            Ok(rates)
        } else {
            Err(format!("guest receiver stalled: {}; {:?}; switch drops {}", rx.debug_state(), tap.stats, w.drops()))
        }
    })?;
    let sent = tx.join().map_err(|_| "sender panicked")??;
    let s = rx.stats();
    if s.corrupt_at.is_some() || s.bytes != sent {
        return Err("stream from Linux corrupted".into());
    }
    Ok(BulkReport {
        peer: PeerKind::Linux,
        ipv6,
        bytes: s.bytes,
        seconds: s.seconds,
        gbps: s.bytes as f64 * 8.0 / s.seconds.max(1e-9) / 1e9,
        tso_packets: 0,
        tso_avg_bytes: 0.0,
        rx_lro: s.lro_frames,
        retransmits: 0,
        timeouts: 0,
        enobufs: 0,
        per_second: rates,
    })
}
