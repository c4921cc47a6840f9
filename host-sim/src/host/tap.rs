//! A Linux TAP device as a port of the switch, so a real Linux stack is a
//! peer of the guests: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, a 10-byte
//! virtio-net header (`TUNSETVNETHDRSZ`), and checksum and TSO offloads
//! (`TUNSETOFFLOAD`), inside a namespace with addresses on the Linux side.
//! Linux then judges the guests' headers: a wrong `csum_start`,
//! `csum_offset` or GSO field makes it drop or corrupt the traffic.
//!
//! Two host threads bridge the device and a switch port, as a host-side
//! netmap user would: one reads frames from the device into the port's TX
//! ring and forwards them; one writes what the switch delivers into the
//! port's RX ring to the device.

use super::mem::HostMemory;
use super::netns::Netns;
use super::port::{fire, NmPort, PortConfig, Waker};
use super::vale::Vale;
use ptnet::kring::next;
use ptnet::net::frame::{Frags, FrameSource};
use ptnet::slots::{slots_for, SlotWriter};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
/// Header length used on the device (and on its switch port).
pub const TAP_HDR: usize = 10;
/// Largest frame the device hands over (64 KiB GSO plus headers).
const MAX_READ: usize = 65536 + 64;

/// IPv4 address of the Linux end of the TAP device (the guests' LAN).
pub const LINUX_IPV4: &str = "10.0.0.254";
/// IPv6 address of the Linux end of the TAP device.
pub const LINUX_IPV6: &str = "fd00::fe";
/// IPv4 address of the far Linux host behind the router.
pub const FAR_IPV4: &str = "10.1.0.2";
/// IPv6 address of the far Linux host.
pub const FAR_IPV6: &str = "fd01::2";

/// Where the Linux peer sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// In the TAP device's namespace: Linux delivers locally, trusting
    /// partial checksums and taking GSO packets whole.
    Local,
    /// In a second namespace, reached through the first acting as a router
    /// whose egress veth has checksum and segmentation offloads off: Linux
    /// must complete every checksum and segment every GSO packet in
    /// software from the fields of our virtio-net headers, so a wrong
    /// `csum_start`, `csum_offset`, `hdr_len` or `gso_size` corrupts the
    /// stream and the far end's checks catch it.
    Routed,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ioctl_check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(())
    }
}

/// Opens a TAP device `name` in the calling thread's namespace.
fn open_tap(name: &str) -> io::Result<OwnedFd> {
    // SAFETY: a plain open of a device node; the fd is owned below.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("/dev/net/tun: {e}")));
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, _pad: [0; 22] };
    for (d, s) in req.name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as libc::c_char;
    }
    let hdr: libc::c_int = TAP_HDR as libc::c_int;
    // SAFETY: each ioctl gets the argument type the TUN driver expects
    // (struct ifreq, int, unsigned int) and a valid fd.
    unsafe {
        ioctl_check(libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req), "TUNSETIFF")?;
        ioctl_check(libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &hdr), "TUNSETVNETHDRSZ")?;
        let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        ioctl_check(libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads as libc::c_ulong), "TUNSETOFFLOAD")?;
    }
    Ok(fd)
}

/// Counters of the bridge.
#[derive(Debug, Default)]
pub struct TapStats {
    /// Frames from Linux into the switch.
    pub from_linux: AtomicU64,
    /// Frames from the switch to Linux.
    pub to_linux: AtomicU64,
    /// Frames Linux refused (write errors: a header it rejects).
    pub write_errors: AtomicU64,
    /// Frames from Linux dropped because the port's TX ring was full.
    pub tx_full: AtomicU64,
}

struct WriterWaker(OnceLock<Thread>);

impl Waker for WriterWaker {
    fn wake(&self) {
        if let Some(t) = self.0.get() {
            t.unpark();
        }
    }
}

/// A TAP device in its own namespace, bridged to a switch port.
pub struct TapBridge {
    /// The namespace holding the device.
    pub netns: Netns,
    /// The namespace of the far host, for [`Peer::Routed`].
    pub far: Option<Netns>,
    /// The switch port.
    pub port: Arc<NmPort>,
    /// Counters.
    pub stats: Arc<TapStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    fd: Arc<OwnedFd>,
}

impl TapBridge {
    /// Creates a namespace with a TAP device `tap0` (addresses
    /// [`LINUX_IPV4`]/24 and [`LINUX_IPV6`]/64, MTU `mtu`), for
    /// [`Peer::Routed`] a far namespace behind it, and attaches the device
    /// to `sw` as a port with a virtio-net header.
    pub fn attach(sw: &Arc<Vale>, cfg: PortConfig, mtu: u32, peer: Peer) -> io::Result<Self> {
        let netns = Netns::create("ptnet-tap")?;
        let fd = Arc::new(netns.run(|| open_tap("tap0"))??);
        netns.ip(&["link", "set", "tap0", "mtu", &mtu.to_string()])?;
        netns.ip(&["addr", "add", &format!("{LINUX_IPV4}/24"), "dev", "tap0"])?;
        netns.ip(&["-6", "addr", "add", &format!("{LINUX_IPV6}/64"), "dev", "tap0", "nodad"])?;
        netns.ip(&["link", "set", "tap0", "up"])?;
        let far = match peer {
            Peer::Local => None,
            Peer::Routed => Some(route_to_far(&netns)?),
        };
        let mem = Arc::new(HostMemory::new(100, super::mem::MemConfig::for_ports(1, cfg.rings, cfg.slots, 2048, 0)));
        let port = sw.attach("tap", mem, cfg);
        port.vnet_hdr_len.store(TAP_HDR as u32, Ordering::Relaxed);
        let stats = Arc::new(TapStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (port, fd, stats, stop) = (port.clone(), fd.clone(), stats.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("tap-rx".into())
                    .spawn(move || from_linux(&port, &fd, &stats, &stop))?,
            );
        }
        {
            let (p, fd, stats, stop) = (port.clone(), fd.clone(), stats.clone(), stop.clone());
            let h =
                std::thread::Builder::new().name("tap-tx".into()).spawn(move || to_linux(&p, &fd, &stats, &stop))?;
            let waker = Arc::new(WriterWaker(OnceLock::new()));
            let _ = waker.0.set(h.thread().clone());
            for r in &port.rx {
                r.set_waker(Some(waker.clone()));
            }
            threads.push(h);
        }
        Ok(Self { netns, far, port, stats, stop, threads, fd })
    }
}

/// Sets up the far namespace, the veth between it and `lan`, and routing
/// in `lan` with the veth's offloads off (see [`Peer::Routed`]).
fn route_to_far(lan: &Netns) -> io::Result<Netns> {
    let far = Netns::create("ptnet-far")?;
    lan.ip(&["link", "add", "veth-lan", "type", "veth", "peer", "name", "veth-far", "netns", &far.name])?;
    lan.ip(&["addr", "add", "10.1.0.1/24", "dev", "veth-lan"])?;
    lan.ip(&["-6", "addr", "add", "fd01::1/64", "dev", "veth-lan", "nodad"])?;
    lan.ip(&["link", "set", "veth-lan", "up"])?;
    far.ip(&["addr", "add", &format!("{FAR_IPV4}/24"), "dev", "veth-far"])?;
    far.ip(&["-6", "addr", "add", &format!("{FAR_IPV6}/64"), "dev", "veth-far", "nodad"])?;
    far.ip(&["link", "set", "veth-far", "up"])?;
    far.ip(&["route", "add", "default", "via", "10.1.0.1"])?;
    far.ip(&["-6", "route", "add", "default", "via", "fd01::1"])?;
    lan.sysctl("net/ipv4/ip_forward", "1")?;
    lan.sysctl("net/ipv6/conf/all/forwarding", "1")?;
    lan.exec(&["ethtool", "-K", "veth-lan", "tx", "off", "tso", "off", "gso", "off"])?;
    Ok(far)
}

impl TapBridge {
    /// The Ethernet address of the Linux end of the TAP device.
    pub fn mac(&self) -> io::Result<[u8; 6]> {
        let out =
            std::process::Command::new("ip").args(["-n", &self.netns.name, "-o", "link", "show", "tap0"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let s = text
            .split("link/ether ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| io::Error::other("no MAC address for tap0"))?;
        let mut mac = [0u8; 6];
        for (m, part) in mac.iter_mut().zip(s.split(':')) {
            *m = u8::from_str_radix(part, 16).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(mac)
    }

    /// Tells Linux the Ethernet address of a guest (a static neighbour
    /// entry), for peers that do not answer ARP or neighbour discovery.
    pub fn add_neighbor(&self, ip: &str, mac: [u8; 6]) -> io::Result<()> {
        let m = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        self.netns.ip(&["neigh", "replace", ip, "lladdr", &m, "dev", "tap0", "nud", "permanent"])
    }

    /// The namespace of the Linux peer.
    pub fn peer_netns(&self) -> &Netns {
        self.far.as_ref().unwrap_or(&self.netns)
    }

    /// The Linux peer's IPv4 address.
    pub fn peer_ipv4(&self) -> &'static str {
        if self.far.is_some() {
            FAR_IPV4
        } else {
            LINUX_IPV4
        }
    }

    /// The Linux peer's IPv6 address.
    pub fn peer_ipv6(&self) -> &'static str {
        if self.far.is_some() {
            FAR_IPV6
        } else {
            LINUX_IPV6
        }
    }
}

impl Drop for TapBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for r in &self.port.rx {
            r.set_waker(None);
        }
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = &self.fd;
    }
}

/// Waits up to `ms` for the fd to be readable.
fn readable(fd: &OwnedFd, ms: i32) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Linux to switch: frames read from the device go into the port's TX
/// ring and are forwarded, in batches.
fn from_linux(port: &Arc<NmPort>, fd: &OwnedFd, stats: &TapStats, stop: &AtomicBool) {
    let mut buf = vec![0u8; MAX_READ];
    let mut notes = Vec::new();
    let ring = &port.tx[0];
    let bufs = port.mem.buffers();
    while !stop.load(Ordering::Relaxed) {
        if !readable(fd, 50) {
            continue;
        }
        let mut hk = ring.kring.lock().unwrap();
        let mut queued = 0;
        while queued < 256 {
            // SAFETY: reading into a buffer we own, of the given length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let frame = &buf[..n as usize];
            let need = slots_for(frame.len(), bufs.buf_size()) as u32;
            if need > hk.k.user_avail() && queued > 0 {
                // Forward what is queued to make room (the switch drops,
                // and counts, only if the destination is full).
                port.backend.txsync(port, ring, &mut hk, &mut notes);
                hk.rtail = hk.k.hwtail;
                queued = 0;
            }
            let k = &mut hk.k;
            if need > k.user_avail().min(ptnet::net::frame::MAX_FRAGS as u32) {
                stats.tx_full.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut w = SlotWriter::new(&ring.ring, &bufs, k.rhead);
            w.bytes(frame);
            if let Some(used) = w.finish() {
                k.rhead = ptnet::kring::advance(k.rhead, used, k.num_slots);
                k.rcur = k.rhead;
                queued += 1;
                stats.from_linux.fetch_add(1, Ordering::Relaxed);
            }
            if !readable(fd, 0) {
                break;
            }
        }
        if queued > 0 {
            port.backend.txsync(port, ring, &mut hk, &mut notes);
            hk.rtail = hk.k.hwtail;
        }
        drop(hk);
        fire(&mut notes);
    }
}

/// Switch to Linux: frames the switch delivered into the port's RX ring
/// are written to the device, then the slots are released.
fn to_linux(port: &Arc<NmPort>, fd: &OwnedFd, stats: &TapStats, stop: &AtomicBool) {
    let ring = &port.rx[0];
    let bufs = port.mem.buffers();
    let mut out = vec![0u8; MAX_READ];
    let mut notes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (mut j, tail, n) = {
            let hk = ring.kring.lock().unwrap();
            (hk.k.rhead, hk.k.hwtail, hk.k.num_slots)
        };
        if j == tail {
            std::thread::park_timeout(Duration::from_millis(20));
            continue;
        }
        while j != tail {
            let mut frags = Frags::new(&bufs, 0);
            let mut k = j;
            loop {
                let (b, l) = (ring.ring.slot_buf_idx(k).unwrap_or(0), ring.ring.slot_len(k).unwrap_or(0));
                frags.push(b, l);
                let more = ring.ring.slot_flags(k).unwrap_or(0) & 0x20 != 0;
                k = next(k, n);
                if !more || k == tail {
                    break;
                }
            }
            let len = frags.len().min(out.len());
            if frags.read(0, &mut out[..len]) {
                // SAFETY: writing `len` bytes of a buffer we own.
                let w = unsafe { libc::write(fd.as_raw_fd(), out.as_ptr().cast(), len) };
                if w == len as isize {
                    stats.to_linux.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            j = k;
        }
        let mut hk = ring.kring.lock().unwrap();
        hk.k.rhead = j;
        hk.k.rcur = j;
        port.backend.rxsync(port, ring, &mut hk, &mut notes);
        drop(hk);
        fire(&mut notes);
    }
}
