//! `kharness SCENARIO [--ko PATH] [--ptnetmap] [--echo] [--cycles N] [--seconds S]`:
//! boots the userspace FreeBSD kernel of `ptnet_tests::kharness` in a VM
//! of the simulator, loads the real `ptrns.ko` into it as kldload does,
//! and runs one scenario. Exit status 0 when the scenario held, 1 when a
//! check failed (the reason on stderr), 70 when the kernel panicked (a
//! KPI check fired: `panic: ...` and the backtrace on stderr), 2 for bad
//! arguments. `tests/tests/kharness.rs` runs each scenario in `make test`.

use ptnet::abi::regs::ptnet as ptreg;
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::net::offload::TxRequest;
use ptnet_host_sim::app::ifperf::{bulk_between, bulk_from_linux_to, BulkReport};
use ptnet_host_sim::guest::ifnet::{InputQueue, SimPacket};
use ptnet_host_sim::guest::nic::Nic;
use ptnet_host_sim::host::tap::Peer;
use ptnet_host_sim::hv::{Mmio, PciFunction};
use ptnet_host_sim::world::{vm_mac, World, WorldConfig};
use ptnet_tests::kharness::host::HkPkt;
use ptnet_tests::kharness::nic::HkIf;
use ptnet_tests::kharness::{BootConfig, Kernel, Ledgers, NetmapFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Res = Result<(), String>;

/// `if_get_counter` indices (net/if.h, ift_counter).
const IPACKETS: usize = 0;
const OPACKETS: usize = 2;
/// SIOCSIFADDR isn't the driver's: an ioctl it hands to ether_ioctl.
const SIOCGIFADDR: u64 = 0xc0206921;
/// net/if.h.
const IFF_UP: i32 = 0x1;
const IFF_DRV_RUNNING: i32 = 0x40;
const IFCAP_NETMAP: i32 = 0x100000;
/// net/if_media.h: IFM_ETHER | IFM_10G_T | IFM_FDX, IFM_AVALID, IFM_ACTIVE.
const MEDIA_10G_T_FDX: i32 = 0x20 | 26 | 0x0010_0000;
const IFM_AVALID: i32 = 1;
const IFM_ACTIVE: i32 = 2;
/// vm/vm.h (amd64): VM_MEMATTR_WRITE_BACK.
const VM_MEMATTR_WRITE_BACK: i32 = 6;
/// The virtio-net header the module negotiates (hw.ptnrs.vnet_hdr=1),
/// which netmap applications see in each slot (netmap's virt_hdr_len).
const VNET_HDR: usize = 12;
/// An Ethernet type for the harness's own frames (IEEE local experimental).
const ETHERTYPE_TEST: [u8; 2] = [0x88, 0xb5];

struct Args {
    scenario: String,
    ko: PathBuf,
    echo: bool,
    /// A kernel built with WITH_PTNETMAP, and the zero-copy module.
    ptnetmap: bool,
    cycles: u32,
    seconds: f64,
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Res {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// A world of `guests` VMs on the switch; VM 0 runs the harness kernel
/// (no driver attached by the simulator), the others the simulator's glue.
fn world(guests: usize, chaos: Option<u64>) -> Result<World, String> {
    world_rings(guests, 1, chaos)
}

/// [`world`] with `rings` ring pairs per port.
fn world_rings(guests: usize, rings: u32, chaos: Option<u64>) -> Result<World, String> {
    let mut w = World::boot(WorldConfig {
        guests,
        rings,
        slots: 1024,
        chaos,
        driver: ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: false },
        ..WorldConfig::default()
    });
    // A hostile host's PTFEAT lies now and then: attach again, as an
    // operator would (World::new does the same).
    for vm in w.vms.iter_mut().skip(1) {
        let mut tries = 0;
        while let Err(e) = vm.attach(ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: false }) {
            tries += 1;
            if chaos.is_none() || tries == 1000 {
                return Err(e.to_string());
            }
        }
    }
    Ok(w)
}

/// Boots VM 0's kernel (`--echo` and `--ptnetmap` from the command line).
fn boot(a: &Args, w: &World, cfg: BootConfig) -> Result<Arc<Kernel>, String> {
    Kernel::boot(&w.vms[0], &BootConfig { echo: a.echo, ptnetmap: a.ptnetmap, ..cfg }).map(Arc::new)
}

/// The module loaded in the kernel of VM 0 of `w` (booted with `cfg`,
/// the simulated guests up), with the ledgers as they were before.
struct Loaded {
    w: World,
    k: Arc<Kernel>,
    before: Ledgers,
    id: i32,
}

fn load(a: &Args, w: World, cfg: BootConfig) -> Result<Loaded, String> {
    for i in 1..w.vms.len() {
        w.ifp(i).if_up().map_err(|e| e.to_string())?;
    }
    let k = boot(a, &w, cfg)?;
    let before = k.ledgers();
    let id = k.kldload(&a.ko)?;
    Ok(Loaded { w, k, before, id })
}

/// `ifconfig ptnrs0 up`.
fn up(k: &Kernel) -> Res {
    check(k.ifconfig_updown("ptnrs0", true) == 0, || format!("ifconfig up:\n{}", show_dmesg(k)))
}

/// kldunload, then every ledger back where it was before the load.
fn unload(k: &Kernel, id: i32, before: &Ledgers, when: &str) -> Res {
    k.kldunload(id).map_err(|e| format!("kldunload {when}: error {e}"))?;
    ledgers_back(k, before, when)
}

fn dmesg_has(k: &Kernel, s: &str) -> bool {
    k.host.dmesg().iter().any(|l| l.contains(s))
}

fn show_dmesg(k: &Kernel) -> String {
    k.host.dmesg().join("\n")
}

/// The ledgers equal `before` (nothing the module took is left).
fn ledgers_back(k: &Kernel, before: &Ledgers, when: &str) -> Res {
    let now = k.ledgers();
    check(now == *before, || format!("{when}: the kernel's ledgers differ:\n before {before:?}\n after  {now:?}"))
}

/// An Ethernet frame of `len` bytes from `src` to `dst` carrying `seq`.
fn test_frame(dst: [u8; 6], src: [u8; 6], seq: u64, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE_TEST);
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u64 ^ seq) as u8);
    }
    f
}

fn frame_seq(f: &[u8]) -> Option<u64> {
    (f.len() >= 22 && f[12..14] == ETHERTYPE_TEST).then(|| u64::from_be_bytes(f[14..22].try_into().unwrap()))
}

/// A PCI function of another vendor's NIC (an e1000), which the module
/// must not claim.
struct OtherNic;

impl Mmio for OtherNic {
    fn read32(&self, _off: u32) -> u32 {
        0
    }
    fn write32(&self, _off: u32, _val: u32) {}
}

// ---- Scenarios. ----

/// kldload, probe (a ptnet NIC, its memdev, an e1000), attach with its
/// dmesg lines, detach and unload with every ledger back where it was.
fn lifecycle(a: &Args) -> Res {
    let mut w = world(1, None)?;
    w.vms[0].pci.push(PciFunction {
        vendor: 0x8086,
        device: 0x100e,
        io: Arc::new(OtherNic),
        mem_bar: None,
        msix_vectors: 0,
    });
    let k = boot(a, &w, BootConfig::default())?;
    let before = k.ledgers();
    let id = k.kldload(&a.ko)?;
    let devs = k.devices();
    check(devs == ["ptnrs0", "ptnrsmem0"], || format!("attached devices {devs:?}\n{}", show_dmesg(&k)))?;
    for line in [
        "ptnrs0: <ptnet (netmap passthrough) NIC, Rust driver> port 0xc000-0xc0ff",
        "ptnrs0: Ethernet address 02:00:00:00:00:01",
        "ptnrs0: netmap queues/slots: TX 1/1024, RX 1/1024",
        "ptnrsmem0: <ptnetmap memdev (netmap host memory)>",
        "ptnrsmem0: host memory 1,",
    ] {
        check(dmesg_has(&k, line), || format!("no dmesg line {line:?}:\n{}", show_dmesg(&k)))?;
    }
    check(k.memattr(1) == VM_MEMATTR_WRITE_BACK, || format!("memdev BAR mapped with memattr {}", k.memattr(1)))?;
    check(k.sysctl_str("dev.ptnrs.0.%desc").as_deref() == Ok("ptnet (netmap passthrough) NIC, Rust driver"), || {
        "dev.ptnrs.0.%desc".into()
    })?;
    // The host memory is lent at first use; then the memdev stays.
    up(&k)?;
    check(k.devctl_detach("ptnrsmem0") == libc::EBUSY, || "memdev detached under its NIC".into())?;
    check(k.devctl_detach("ptnrs0") == 0, || "devctl detach ptnrs0".into())?;
    check(k.devctl_attach(0) == 0, || format!("devctl attach: {}", show_dmesg(&k)))?;
    k.kldunload(id).map_err(|e| format!("kldunload: error {e}"))?;
    check(k.devices().is_empty(), || format!("devices after unload {:?}", k.devices()))?;
    let detached = k.host.dmesg().iter().filter(|l| *l == "ptnrs0: detached").count();
    check(detached == 2, || format!("\"ptnrs0: detached\" printed {detached} times for 2 detaches"))?;
    ledgers_back(&k, &before, "after kldunload")?;
    // The module loads again in the same kernel.
    let id = k.kldload(&a.ko)?;
    k.kldunload(id).map_err(|e| format!("second kldunload: error {e}"))?;
    ledgers_back(&k, &before, "after the second kldunload")
}

/// Attach failing at each step leaves nothing behind: no MSI-X, every
/// M_NOWAIT allocation of attach in turn; no memdev fails `ifconfig up`.
fn attach_failures(a: &Args) -> Res {
    let Loaded { w: _vm, k, before, id } = load(a, world(1, None)?, BootConfig::default())?;
    check(k.devctl_detach("ptnrs0") == 0, || "devctl detach".into())?;
    let detached = k.ledgers();
    let faults = &k.host.faults;
    let mut failures = 0;
    for n in 0.. {
        faults.nowait_seen.store(0, Ordering::Relaxed);
        faults.nowait_countdown.store(n, Ordering::Relaxed);
        let rc = k.devctl_attach(0);
        faults.nowait_countdown.store(-1, Ordering::Relaxed);
        if rc == 0 {
            let seen = faults.nowait_seen.load(Ordering::Relaxed);
            check(seen <= n as u64, || format!("allocation {n} failed and attach still succeeded"))?;
            break;
        }
        failures += 1;
        ledgers_back(&k, &detached, &format!("attach failing at allocation {n}"))?;
    }
    check(failures > 3, || format!("only {failures} allocations in attach"))?;
    println!("attach failed cleanly at each of its {failures} M_NOWAIT allocations");
    unload(&k, id, &before, "after kldunload")
}

fn attach_no_msix(a: &Args) -> Res {
    let Loaded { w: _vm, k, before, id } =
        load(a, world(1, None)?, BootConfig { no_msix: true, ..BootConfig::default() })?;
    check(k.devices() == ["ptnrsmem0"], || format!("devices {:?}", k.devices()))?;
    check(dmesg_has(&k, "ptnrs0: cannot allocate MSI-X vectors"), || show_dmesg(&k))?;
    check(dmesg_has(&k, "device_attach: ptnrs0 attach returned 6"), || show_dmesg(&k))?;
    unload(&k, id, &before, "after kldunload")
}

fn attach_no_memdev(a: &Args) -> Res {
    let Loaded { w: _vm, k, before, id } =
        load(a, world(1, None)?, BootConfig { no_memdev: true, ..BootConfig::default() })?;
    check(k.devices() == ["ptnrs0"], || format!("devices {:?}", k.devices()))?;
    let rc = k.ifconfig_updown("ptnrs0", true);
    check(rc != 0, || "ifconfig up without the host memory succeeded".into())?;
    let info = k.ifconfig("ptnrs0").map_err(|e| format!("ifconfig: {e}"))?;
    check(info.drv_flags & IFF_DRV_RUNNING == 0, || "running without host memory".into())?;
    println!("ifconfig up: error {rc}; dmesg:\n{}", show_dmesg(&k));
    unload(&k, id, &before, "after kldunload")
}

/// ifconfig and sysctl as a user sees them.
fn ifconfig(a: &Args) -> Res {
    let w = world(1, None)?;
    let k = boot(a, &w, BootConfig::default())?;
    let id = k.kldload(&a.ko)?;
    let i = k.ifconfig("ptnrs0").map_err(|e| format!("ifconfig: {e}"))?;
    let caps = IfCap::from_bits_truncate(i.capabilities as u32);
    let want = IfCap::RXCSUM | IfCap::TXCSUM | IfCap::TSO4 | IfCap::TSO6 | IfCap::LRO;
    check(caps.contains(want), || format!("capabilities {caps:?}"))?;
    check(i.capabilities & IFCAP_NETMAP != 0, || "no IFCAP_NETMAP".into())?;
    check(i.lladdr == vm_mac(0), || format!("lladdr {:?}", i.lladdr))?;
    check(i.baudrate == 10_000_000_000, || format!("baudrate {}", i.baudrate))?;
    check(i.media_current == MEDIA_10G_T_FDX && i.media_count == 1, || format!("media {i:?}"))?;
    check(i.media_status == IFM_AVALID, || format!("media status down {:#x}", i.media_status))?;
    let hw = CsumFlags::from_bits_truncate(i.hwassist as u32);
    check(hw.contains(CsumFlags::IP_TCP | CsumFlags::IP_TSO), || format!("hwassist {hw:?}"))?;
    // Up: running, media active.
    up(&k)?;
    let i = k.ifconfig("ptnrs0").unwrap();
    check(i.flags & IFF_UP != 0 && i.drv_flags & IFF_DRV_RUNNING != 0, || format!("flags {:#x}", i.drv_flags))?;
    check(i.media_status == IFM_AVALID | IFM_ACTIVE, || format!("media status up {:#x}", i.media_status))?;
    // -txcsum: hwassist follows, and TSO goes with it.
    let req = (i.capenable & !(IfCap::TXCSUM.bits() as i32)) & !IFCAP_NETMAP;
    check(k.ifconfig_cap("ptnrs0", req) == 0, || "ifconfig -txcsum".into())?;
    let j = k.ifconfig("ptnrs0").unwrap();
    let hw = CsumFlags::from_bits_truncate(j.hwassist as u32);
    check(!hw.intersects(CsumFlags::IP_TCP | CsumFlags::IP_UDP | CsumFlags::IP_TSO), || {
        format!("hwassist after -txcsum {hw:?}")
    })?;
    check(j.capenable & IfCap::TSO4.bits() as i32 == 0, || "tso4 on without txcsum".into())?;
    // Back on.
    check(k.ifconfig_cap("ptnrs0", i.capenable & !IFCAP_NETMAP) == 0, || "ifconfig txcsum tso".into())?;
    let j = k.ifconfig("ptnrs0").unwrap();
    check(j.capenable == i.capenable && j.hwassist == i.hwassist, || format!("caps not restored: {j:?}"))?;
    // IFCAP_NETMAP is netmap's to set: a request with it changes nothing.
    check(k.ifconfig_cap("ptnrs0", i.capenable | IFCAP_NETMAP) == 0, || "ifconfig with netmap".into())?;
    check(k.ifconfig("ptnrs0").unwrap().capenable & IFCAP_NETMAP == 0, || "SIOCSIFCAP set IFCAP_NETMAP".into())?;
    // A capability the interface lacks, the MTU limits, media, ioctls.
    check(k.ifconfig_cap("ptnrs0", i.capenable | 1 << 28) == libc::EINVAL, || "unsupported cap accepted".into())?;
    check(k.ifconfig_mtu("ptnrs0", 9000) == 0, || format!("mtu 9000: {}", show_dmesg(&k)))?;
    check(k.ifconfig("ptnrs0").unwrap().mtu == 9000, || "mtu not 9000".into())?;
    check(k.ifconfig_mtu("ptnrs0", 65536) != 0, || "mtu 65536 accepted".into())?;
    check(k.ifconfig_mtu("ptnrs0", 1500) == 0, || "mtu 1500".into())?;
    check(k.ifconfig_media("ptnrs0", MEDIA_10G_T_FDX) == 0, || "media 10Gbase-T".into())?;
    check(k.ifconfig_media("ptnrs0", 0x20 | 6) == libc::ENXIO, || "media 1000baseT accepted".into())?;
    check(k.ifconfig_ioctl("ptnrs0", SIOCGIFADDR) == 0, || "SIOCGIFADDR".into())?;
    // sysctl: the per-ring nodes, the tunable.
    let kids = k.sysctl_children("dev.ptnrs.0").map_err(|e| format!("sysctl dev.ptnrs.0: {e}"))?;
    check(kids.contains(&"txq0".into()) && kids.contains(&"rxq0".into()), || format!("dev.ptnrs.0: {kids:?}"))?;
    for f in ["packets", "bytes", "errors", "drops", "syncs", "kicks", "irqs", "host_errors", "watchdog"] {
        k.sysctl_u64(&format!("dev.ptnrs.0.txq0.{f}")).map_err(|e| format!("dev.ptnrs.0.txq0.{f}: {e}"))?;
    }
    check(k.sysctl_u64("hw.ptnrs.vnet_hdr") == Ok(1), || "hw.ptnrs.vnet_hdr".into())?;
    check(k.sysctl_set_int("hw.ptnrs.vnet_hdr", 0) == Err(libc::EPERM), || "hw.ptnrs.vnet_hdr writable".into())?;
    check(k.ifconfig_updown("ptnrs0", false) == 0, || "ifconfig down".into())?;
    check(k.ifconfig("ptnrs0").unwrap().drv_flags & IFF_DRV_RUNNING == 0, || "still running".into())?;
    k.kldunload(id).map_err(|e| format!("kldunload: error {e}"))?;
    // The tunable, set in loader.conf, before the module loads.
    check(k.sysctl("hw.ptnrs.vnet_hdr") == Err(libc::ENOENT), || "hw.ptnrs after unload".into())
}

fn tunable(a: &Args) -> Res {
    let w = world(1, None)?;
    let kenv = vec![("hw.ptnrs.vnet_hdr".to_string(), 0)];
    let k = boot(a, &w, BootConfig { kenv, ..BootConfig::default() })?;
    let id = k.kldload(&a.ko)?;
    check(k.sysctl_u64("hw.ptnrs.vnet_hdr") == Ok(0), || "the tunable was not fetched".into())?;
    let i = k.ifconfig("ptnrs0").map_err(|e| format!("ifconfig: {e}"))?;
    let caps = IfCap::from_bits_truncate(i.capabilities as u32);
    check(!caps.intersects(IfCap::TSO4 | IfCap::TXCSUM | IfCap::LRO), || {
        format!("offloads without vnet hdr {caps:?}")
    })?;
    k.kldunload(id).map_err(|e| format!("kldunload: error {e}"))
}

fn report(what: &str, r: &BulkReport) {
    println!(
        "{what}: {:.2} Gbps, {} MB, TSO packets {} (avg {:.0} B), LRO frames {}, retransmits {}",
        r.gbps,
        r.bytes >> 20,
        r.tso_packets,
        r.tso_avg_bytes,
        r.rx_lro,
        r.retransmits
    );
}

/// TCP both ways between the module's interface and a simulated guest,
/// with TSO and LRO, the mbufs checked by the stack.
fn traffic(a: &Args) -> Res {
    let Loaded { w, k, before, id } = load(a, world(2, None)?, BootConfig::default())?;
    let hkif = HkIf::new(k.clone(), "ptnrs0");
    let hk: Arc<dyn Nic> = hkif.clone();
    let sim: Arc<dyn Nic> = w.ifp(1).clone();
    let d = Duration::from_secs_f64(a.seconds);
    let stall = Duration::from_secs(30);
    for ipv6 in [false, true] {
        let out = bulk_between(&w, (0, hk.clone()), Some((1, sim.clone())), None, ipv6, d, stall, false)?;
        report(&format!("module -> guest (IPv{})", if ipv6 { 6 } else { 4 }), &out);
        check(out.tso_packets > 0 && out.rx_lro > 0, || "no TSO out of the module or no LRO at the guest".into())?;
        let back = bulk_between(&w, (1, sim.clone()), Some((0, hk.clone())), None, ipv6, d, stall, false)?;
        report(&format!("guest -> module (IPv{})", if ipv6 { 6 } else { 4 }), &back);
        check(back.rx_lro > 0, || "no LRO frames reached the stack through if_input".into())?;
    }
    let tso = k.sysctl_u64("dev.ptnrs.0.txq0.tso_lro").unwrap_or(0);
    let lro = k.sysctl_u64("dev.ptnrs.0.rxq0.tso_lro").unwrap_or(0);
    let i = k.ifconfig("ptnrs0").unwrap();
    println!(
        "dev.ptnrs.0: txq0.tso_lro {tso}, rxq0.tso_lro {lro}; ipackets {}, opackets {}",
        i.counters[IPACKETS], i.counters[OPACKETS]
    );
    check(tso > 0 && lro > 0, || "the sysctl counters did not count TSO and LRO".into())?;
    // The mbufs as FreeBSD's stack takes them: verified checksums as
    // CSUM_DATA_VALID | CSUM_PSEUDO_HDR with csum_data 0xffff, LRO frames
    // with lro_nsegs, large frames in cluster chains, a flow hash.
    let r = &hkif.rx;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "mbufs received: {} frames, {} with the checksum verified, {} LRO, {} chains",
        n(&r.frames),
        n(&r.csum_valid),
        n(&r.lro),
        n(&r.chains)
    );
    check(n(&r.csum_malformed) == 0 && n(&r.unhashed) == 0, || format!("malformed receive metadata: {r:?}"))?;
    check(n(&r.csum_valid) == n(&r.frames) && n(&r.lro) > 0 && n(&r.chains) > 0, || format!("{r:?}"))?;
    check(i.counters[IPACKETS] > 0 && i.counters[OPACKETS] > 0, || "if_get_counter counted nothing".into())?;
    unload(&k, id, &before, "after traffic and kldunload")
}

/// TCP both ways between the module's interface and Linux through TAP.
fn tap(a: &Args) -> Res {
    let Loaded { w, k, before, id } = load(a, world(1, None)?, BootConfig::default())?;
    let tap = w.attach_tap(1500, Peer::Routed).map_err(|e| format!("TAP: {e}"))?;
    let hk: Arc<dyn Nic> = HkIf::new(k.clone(), "ptnrs0");
    let d = Duration::from_secs_f64(a.seconds);
    for ipv6 in [false, true] {
        let out = bulk_between(&w, (0, hk.clone()), None, Some(&tap), ipv6, d, Duration::from_secs(30), false)?;
        report(&format!("module -> Linux (IPv{})", if ipv6 { 6 } else { 4 }), &out);
        check(out.tso_packets > 0, || "no TSO toward Linux".into())?;
        let back = bulk_from_linux_to(&w, (0, hk.clone()), &tap, ipv6, d, false)?;
        report(&format!("Linux -> module (IPv{})", if ipv6 { 6 } else { 4 }), &back);
    }
    drop(tap);
    unload(&k, id, &before, "after TAP traffic and kldunload")
}

/// Sends `n` numbered frames from the simulated guest to VM 0.
fn sim_send(w: &World, n: u64, from: u64) -> Res {
    sim_send_paced(w, n, from, None)
}

/// [`sim_send`], at most a ring's worth ahead of `taken` when given (the
/// switch drops what the receiver's ring cannot hold).
fn sim_send_paced(w: &World, n: u64, from: u64, taken: Option<&AtomicU64>) -> Res {
    let ifp = w.ifp(1);
    for seq in from..from + n {
        while taken.is_some_and(|t| seq - from >= t.load(Ordering::Acquire) + 512) {
            std::thread::yield_now();
        }
        let f = test_frame(vm_mac(0), vm_mac(1), seq, 60 + (seq % 1400) as usize);
        let mut tries = 0;
        while ifp.transmit(SimPacket::new(f.clone(), TxRequest::default())).is_err() {
            tries += 1;
            check(tries < 10_000, || format!("the simulated guest cannot send frame {seq}"))?;
            let mut q = InputQueue::new(16);
            ifp.service(&mut q, 64);
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    Ok(())
}

/// Receives numbered frames at the simulated guest until `n` or timeout.
fn sim_receive(w: &World, n: u64, timeout: Duration) -> Vec<u64> {
    sim_receive_counting(w, n, timeout, &AtomicU64::new(0))
}

/// [`sim_receive`], publishing how many arrived in `count`.
fn sim_receive_counting(w: &World, n: u64, timeout: Duration, count: &AtomicU64) -> Vec<u64> {
    let ifp = w.ifp(1);
    let mut q = InputQueue::new(4096);
    let mut got = Vec::new();
    let start = Instant::now();
    while (got.len() as u64) < n && start.elapsed() < timeout {
        let t = ifp.idle_token();
        ifp.service(&mut q, 256);
        let mut any = false;
        while let Some(f) = q.pop() {
            any = true;
            if let Some(s) = frame_seq(&f.data) {
                got.push(s);
            }
        }
        count.store(got.len() as u64, Ordering::Release);
        if !any {
            ifp.idle(t, Duration::from_millis(5));
        }
    }
    got
}

/// Sends frames `seqs` to the simulated guest through TX ring `ring` of
/// `fd`, as pkt-gen -f tx does (fill the free slots, sync, poll when
/// full); returns what the guest received. The switch drops what the
/// guest's ring cannot take, as VALE does, so the sender keeps at most a
/// ring's worth ahead of the receiver.
fn nm_transmit(w: &World, fd: &NetmapFd<'_>, ring: u32, seqs: std::ops::Range<u64>) -> Result<Vec<u64>, String> {
    let txr = fd.ring(true, ring).ok_or("no TX ring")?;
    let hdr = fd.virt_hdr_len();
    let n = seqs.end - seqs.start;
    let arrived = AtomicU64::new(0);
    std::thread::scope(|s| -> Result<Vec<u64>, String> {
        let rx = s.spawn(|| sim_receive_counting(w, n, Duration::from_secs(10), &arrived));
        let mut seq = seqs.start;
        let ahead = |seq: u64| seq - seqs.start < arrived.load(Ordering::Acquire) + 512;
        let deadline = Instant::now() + Duration::from_secs(10);
        while seq < seqs.end && Instant::now() < deadline {
            if !ahead(seq) {
                std::thread::yield_now();
                continue;
            }
            if txr.space() == 0 {
                fd.poll(true, Duration::from_millis(100)).map_err(|e| format!("poll: {e}"))?;
                continue;
            }
            let mut cur = txr.cur();
            while txr.space() > 0 && seq < seqs.end && ahead(seq) {
                // The port's virtio-net header first (zeroes: no
                // offload), as pkt-gen writes it on such a port.
                let f = test_frame(vm_mac(1), vm_mac(0), seq, 60);
                txr.write(cur, 0, &[0; VNET_HDR][..hdr]);
                txr.write(cur, hdr, &f);
                txr.set_len_flags(cur, (hdr + f.len()) as u16, 0);
                cur = txr.next(cur);
                txr.advance(cur);
                seq += 1;
            }
            fd.sync(true);
        }
        // Drain: the last slots completed.
        let t0 = Instant::now();
        while txr.tail() != (txr.head() + txr.num_slots() - 1) % txr.num_slots() && t0.elapsed().as_secs() < 10 {
            fd.sync(true);
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(rx.join().map_err(|_| "receiver panicked".to_string())?.into_iter().map(|x| x - seqs.start).collect())
    })
}

/// netmap's modes are per kring: two applications on different ring
/// pairs; when one leaves, the other keeps its rings.
fn netmap_rings(a: &Args) -> Res {
    let Loaded { w, k, before, id } = load(a, world_rings(2, 2, None)?, BootConfig::default())?;
    up(&k)?;
    {
        let fd0 = k.netmap_open_ring("ptnrs0", 0).map_err(|e| format!("netmap open ring 0: {e}"))?;
        let fd1 = k.netmap_open_ring("ptnrs0", 1).map_err(|e| format!("netmap open ring 1: {e}"))?;
        let got = nm_transmit(&w, &fd0, 0, 0..1000)?;
        check(got == (0..1000).collect::<Vec<_>>(), || format!("ring 0: the guest got {} of 1000", got.len()))?;
        drop(fd0);
        let got = nm_transmit(&w, &fd1, 1, 0..1000)?;
        check(got == (0..1000).collect::<Vec<_>>(), || {
            format!("ring 1: the guest got {} of 1000 after the ring 0 client left", got.len())
        })?;
    }
    unload(&k, id, &before, "after two netmap clients and kldunload")
}

/// A netmap application on the module's rings while the stack is idle:
/// pkt-gen-like transmit and receive, exactly once and in order, then the
/// rings go back to the stack.
fn netmap(a: &Args) -> Res {
    let Loaded { w, k, before, id } = load(a, world(2, None)?, BootConfig::default())?;
    up(&k)?;
    // The stack uses the rings first, so that netmap takes them over
    // mid-ring (the driver's pointers, not netmap's defaults, count).
    for s in 0..100 {
        let f = test_frame(vm_mac(1), vm_mac(0), 9_000_000 + s, 100);
        let _ = k.if_output("ptnrs0", &f, &HkPkt::default(), 14, 2048);
    }
    sim_send(&w, 100, 9_000_000)?;
    let stacked = sim_receive(&w, 100, Duration::from_secs(5));
    check(stacked.len() == 100, || format!("the guest got {} of 100 stack frames", stacked.len()))?;
    let t0 = Instant::now();
    let mut n = 0;
    while n < 100 && t0.elapsed().as_secs() < 5 {
        n += k.host.rx.frames.lock().unwrap().get_mut("ptnrs0").map_or(0, |q| q.drain(..).count());
        std::thread::sleep(Duration::from_millis(2));
    }
    check(n == 100, || format!("the stack got {n} of 100 frames"))?;
    const N: u64 = 20_000;
    {
        let fd = k.netmap_open("ptnrs0").map_err(|e| format!("netmap open: {e}"))?;
        let hdr = fd.virt_hdr_len();
        check(hdr == VNET_HDR, || format!("the port declares a {hdr}-byte virtio-net header"))?;
        let i = k.ifconfig("ptnrs0").unwrap();
        check(i.capenable & IFCAP_NETMAP != 0, || "IFCAP_NETMAP not enabled in netmap mode".into())?;
        check(k.devctl_detach("ptnrs0") == libc::EBUSY, || "detached under a netmap application".into())?;
        let start = Instant::now();
        let receiver = nm_transmit(&w, &fd, 0, 0..N)?;
        let secs = start.elapsed().as_secs_f64();
        check(receiver.len() as u64 == N && receiver.iter().enumerate().all(|(i, s)| *s == i as u64), || {
            format!(
                "the guest got {} of {N} frames (first bad at {:?})",
                receiver.len(),
                receiver.iter().enumerate().find(|(i, s)| **s != *i as u64)
            )
        })?;
        println!("netmap tx: {N} frames in order, {:.2} Mpps", N as f64 / secs / 1e6);
        // Receive, as pkt-gen -f rx.
        let rxr = fd.ring(false, 0).ok_or("no RX ring")?;
        let start = Instant::now();
        let taken = AtomicU64::new(0);
        let got = std::thread::scope(|s| -> Result<Vec<u64>, String> {
            let tx = s.spawn(|| sim_send_paced(&w, N, 1_000_000, Some(&taken)));
            let mut got = Vec::new();
            let t0 = Instant::now();
            while (got.len() as u64) < N && t0.elapsed().as_secs() < 30 {
                if !fd.poll(false, Duration::from_millis(100)).map_err(|e| format!("poll: {e}"))? {
                    continue;
                }
                let mut cur = rxr.cur();
                while rxr.space() > 0 {
                    let len = rxr.len(cur) as usize;
                    if let Some(s) = frame_seq(&rxr.read(cur, len)[hdr.min(len)..]) {
                        got.push(s - 1_000_000);
                    }
                    cur = rxr.next(cur);
                    rxr.advance(cur);
                }
                taken.store(got.len() as u64, Ordering::Release);
            }
            tx.join().map_err(|_| "sender panicked".to_string())??;
            Ok(got)
        })?;
        let secs = start.elapsed().as_secs_f64();
        check(got.len() as u64 == N && got.iter().enumerate().all(|(i, s)| *s == i as u64), || {
            format!("the application got {} of {N} frames", got.len())
        })?;
        println!("netmap rx: {N} frames in order, {:.2} Mpps", N as f64 / secs / 1e6);
        // A busy-polling client turns the interrupts off (nm_intr) and
        // syncs with NKR_NOINTR: frames arrive without an interrupt. (A
        // poll of the empty ring first: it leaves the interrupts on.)
        check(fd.poll(false, Duration::from_millis(20)) == Ok(false), || "frames left over".into())?;
        check(fd.intr(false) == 0, || "nm_intr(0)".into())?;
        let irqs = || k.sysctl_u64("dev.ptnrs.0.rxq0.irqs").unwrap_or(0);
        // An interrupt already on its way is counted before the snapshot.
        std::thread::sleep(Duration::from_millis(50));
        let before_irqs = irqs();
        sim_send(&w, 16, 3_000_000)?;
        std::thread::sleep(Duration::from_millis(50));
        let idle_irqs = irqs() - before_irqs;
        // Take the 16 frames, then one frame at a time: each sync that
        // releases finds the ring empty, where a sync allowed to use
        // interrupts arms them, and the next frame would raise one.
        let (mut polled, t0) = (0u64, Instant::now());
        for round in 0..8u64 {
            if round > 0 {
                sim_send(&w, 1, 3_000_100 + round)?;
            }
            let want = if round == 0 { 16 } else { 1 };
            let mut got = 0;
            while got < want && t0.elapsed().as_secs() < 10 {
                fd.sync(false);
                let mut cur = rxr.cur();
                while rxr.space() > 0 {
                    got += 1;
                    cur = rxr.next(cur);
                    rxr.advance(cur);
                }
            }
            polled += got;
            fd.sync(false);
            std::thread::sleep(Duration::from_millis(10));
        }
        let busy_irqs = irqs() - before_irqs - idle_irqs;
        println!("netmap busy poll: {polled} frames, {idle_irqs} interrupts idle, {busy_irqs} while polling");
        check(idle_irqs == 0, || format!("{idle_irqs} interrupts after nm_intr(0)"))?;
        check(polled == 23, || format!("busy polling got {polled} of 23 frames"))?;
        check(busy_irqs <= 2, || format!("{busy_irqs} interrupts while polling with NKR_NOINTR"))?;
        check(fd.intr(true) == 0, || "nm_intr(1)".into())?;
        // A second client on the same rings; the first leaves, the rings
        // stay in netmap mode for the second (netmap's modes are per kring).
        let fd2 = k.netmap_open("ptnrs0").map_err(|e| format!("second netmap open: {e}"))?;
        drop(fd);
        let rx2 = fd2.ring(false, 0).ok_or("no RX ring")?;
        sim_send(&w, 8, 2_000_000)?;
        let (mut got2, t0) = (Vec::new(), Instant::now());
        while got2.len() < 8 && t0.elapsed().as_secs() < 10 {
            if !fd2.poll(false, Duration::from_millis(100)).map_err(|e| format!("poll: {e}"))? {
                continue;
            }
            let mut cur = rx2.cur();
            while rx2.space() > 0 {
                let len = rx2.len(cur) as usize;
                got2.extend(frame_seq(&rx2.read(cur, len)[hdr.min(len)..]));
                cur = rx2.next(cur);
                rx2.advance(cur);
            }
            fd2.sync(false);
        }
        check(got2 == (2_000_000..2_000_008).collect::<Vec<_>>(), || {
            format!("the remaining client got {got2:?} after the first left")
        })?;
        check(k.ifconfig("ptnrs0").unwrap().capenable & IFCAP_NETMAP != 0, || {
            "netmap mode ended with a client left".into()
        })?;
    }
    // Closed: the stack has the rings again.
    let i = k.ifconfig("ptnrs0").unwrap();
    check(i.capenable & IFCAP_NETMAP == 0, || "IFCAP_NETMAP still enabled".into())?;
    let hk = HkIf::new(k.clone(), "ptnrs0");
    let early: Vec<u64> = hk.take_received().iter().filter_map(|r| frame_seq(&r.frame.data)).collect();
    check(early.is_empty(), || {
        format!("the stack got {} frames while netmap held the rings: {:?}", early.len(), &early[..early.len().min(20)])
    })?;
    sim_send(&w, 10, 5_000_000)?;
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 10 && t0.elapsed().as_secs() < 10 {
        seen.extend(hk.take_received().iter().filter_map(|r| frame_seq(&r.frame.data)));
        std::thread::sleep(Duration::from_millis(2));
    }
    check(seen == (5_000_000..5_000_010).collect::<Vec<_>>(), || {
        format!("the stack got {seen:?} after netmap closed")
    })?;
    unload(&k, id, &before, "after netmap and kldunload")
}

/// Detach and unload while the stack sends and receives.
fn detach_under_traffic(a: &Args) -> Res {
    let w = world(2, None)?;
    w.ifp(1).if_up().map_err(|e| e.to_string())?;
    let k = boot(a, &w, BootConfig::default())?;
    let before = k.ledgers();
    for round in 0..3 {
        let id = k.kldload(&a.ko)?;
        up(&k)?;
        let stop = AtomicBool::new(false);
        let sent = std::thread::scope(|s| -> Result<u64, String> {
            let tx = s.spawn(|| {
                k.enter("sender");
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let f = test_frame(vm_mac(1), vm_mac(0), n, 1000);
                    if k.if_output("ptnrs0", &f, &HkPkt::default(), 14, 2048) == 0 {
                        n += 1;
                    }
                }
                n
            });
            let rx = s.spawn(|| {
                let mut seq = 0;
                while !stop.load(Ordering::Acquire) {
                    let _ = sim_send(&w, 64, seq);
                    seq += 64;
                }
            });
            std::thread::sleep(Duration::from_millis(300));
            let rc = k.devctl_detach("ptnrs0");
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Release);
            let n = tx.join().map_err(|_| "sender panicked")?;
            rx.join().map_err(|_| "guest sender panicked")?;
            check(rc == 0, || format!("devctl detach under traffic: error {rc}"))?;
            Ok(n)
        })?;
        let _ = k.host.rx.frames.lock().unwrap().remove("ptnrs0");
        k.kldunload(id).map_err(|e| format!("kldunload: error {e}"))?;
        println!("round {round}: {sent} packets sent before the detach");
        ledgers_back(&k, &before, "after detach under traffic")?;
    }
    Ok(())
}

/// Load, attach, up, traffic, down, detach, unload, many times.
fn cycles(a: &Args) -> Res {
    let w = world(2, None)?;
    w.ifp(1).if_up().map_err(|e| e.to_string())?;
    let k = boot(a, &w, BootConfig::default())?;
    let before = k.ledgers();
    let start = Instant::now();
    let mut frames = 0;
    for c in 0..a.cycles {
        let id = k.kldload(&a.ko)?;
        check(k.ifconfig_updown("ptnrs0", true) == 0, || format!("cycle {c}: ifconfig up"))?;
        for s in 0..4 {
            let f = test_frame(vm_mac(1), vm_mac(0), s, 200);
            if k.if_output("ptnrs0", &f, &HkPkt::default(), 14, 2048) == 0 {
                frames += 1;
            }
        }
        sim_send(&w, 2, 0)?;
        if c % 2 == 0 {
            check(k.ifconfig_updown("ptnrs0", false) == 0, || format!("cycle {c}: ifconfig down"))?;
        }
        k.kldunload(id).map_err(|e| format!("cycle {c}: kldunload: error {e}"))?;
        let _ = k.host.rx.frames.lock().unwrap().remove("ptnrs0");
        ledgers_back(&k, &before, &format!("cycle {c}"))?;
    }
    let got = sim_receive(&w, frames, Duration::from_secs(5)).len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} load/attach/up/traffic/detach/unload cycles in {secs:.1} s ({:.1} ms each); {frames} frames sent, {got} received by the guest; ledgers back to boot values after each",
        a.cycles,
        secs * 1e3 / f64::from(a.cycles.max(1))
    );
    Ok(())
}

/// Everything a module does in a short life: load, up, traffic both
/// ways, netmap, down, detach, unload (for altered modules whose misuse
/// of a KPI the kernel must catch).
fn exercise(a: &Args) -> Res {
    let Loaded { w, k, before, id } = load(a, world(2, None)?, BootConfig::default())?;
    up(&k)?;
    k.bpf_listen("ptnrs0", true);
    for s in 0..64 {
        let f = test_frame(vm_mac(1), vm_mac(0), s, 1000);
        let _ = k.if_output("ptnrs0", &f, &HkPkt::default(), 14, 2048);
    }
    let taps = k.host.bpf_taps.load(Ordering::Relaxed);
    check(taps >= 64, || format!("tcpdump saw {taps} of 64 packets sent"))?;
    sim_send(&w, 64, 0)?;
    let got = sim_receive(&w, 64, Duration::from_secs(5)).len();
    let hk = HkIf::new(k.clone(), "ptnrs0");
    let t0 = Instant::now();
    let mut n = 0;
    while n < 64 && t0.elapsed().as_secs() < 5 {
        n += hk.take_received().len();
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("exercise: 64 frames out ({got} arrived), 64 in ({n} arrived)");
    drop(k.netmap_open("ptnrs0").map_err(|e| format!("netmap open: {e}"))?);
    std::thread::sleep(Duration::from_millis(1100));
    check(k.ifconfig_updown("ptnrs0", false) == 0, || "ifconfig down".into())?;
    up(&k)?;
    // DEVICE_SHUTDOWN (reboot): the host stops writing into guest memory.
    check(k.devctl_power(0) == 0, || "shutdown".into())?;
    check(w.vms[0].dev.kloops().is_empty(), || "the host still runs after shutdown".into())?;
    let csb: Vec<u32> = [ptreg::CSB_GH_BAH, ptreg::CSB_GH_BAL, ptreg::CSB_HG_BAH, ptreg::CSB_HG_BAL]
        .iter()
        .map(|r| w.vms[0].dev.read32(*r))
        .collect();
    check(csb.iter().all(|v| *v == 0), || format!("the CSB stays programmed after shutdown: {csb:x?}"))?;
    check(k.devctl_detach("ptnrs0") == 0, || "devctl detach".into())?;
    unload(&k, id, &before, "after exercise")
}

/// The hostile host: traffic both ways while it lies, then the module
/// detaches and unloads cleanly.
fn chaos(a: &Args) -> Res {
    let w = world(2, Some(0xc4a05))?;
    w.ifp(1).if_up().map_err(|e| e.to_string())?;
    let k = boot(a, &w, BootConfig::default())?;
    let before = k.ledgers();
    let id = k.kldload(&a.ko)?;
    let mut attach = 0;
    while !k.devices().contains(&"ptnrs0".to_string()) {
        attach += 1;
        check(attach < 1000 && k.devctl_attach(0) != libc::ENOENT, || "ptnrs0 never attached under chaos".into())?;
    }
    let mut up = 0;
    while k.ifconfig_updown("ptnrs0", true) != 0 {
        up += 1;
        check(up < 1000, || "ifconfig up never succeeded under chaos".into())?;
    }
    let hk = HkIf::new(k.clone(), "ptnrs0");
    let end = Instant::now() + Duration::from_secs_f64(a.seconds);
    let (mut sent, mut seq) = (0u64, 0u64);
    while Instant::now() < end {
        for _ in 0..64 {
            let f = test_frame(vm_mac(1), vm_mac(0), seq, 60 + (seq % 1400) as usize);
            seq += 1;
            let meta = HkPkt::default();
            if k.if_output("ptnrs0", &f, &meta, 14, 2048) == 0 {
                sent += 1;
            }
        }
        let _ = sim_send(&w, 16, seq);
        let _ = hk.take_received();
        let _ = sim_receive(&w, 0, Duration::ZERO);
    }
    if let Some(c) = &w.chaos {
        c.stop();
    }
    let herr = k.sysctl_u64("dev.ptnrs.0.rxq0.host_errors").unwrap_or(0)
        + k.sysctl_u64("dev.ptnrs.0.txq0.host_errors").unwrap_or(0);
    println!("chaos: {sent} packets accepted, {herr} host ring updates refused; dmesg {} lines", k.host.dmesg().len());
    let _ = k.host.rx.frames.lock().unwrap().remove("ptnrs0");
    unload(&k, id, &before, "after chaos and kldunload")
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let scenario =
        it.next().ok_or("usage: kharness SCENARIO [--ko PATH] [--ptnetmap] [--echo] [--cycles N] [--seconds S]")?;
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut a = Args { scenario, ko: PathBuf::new(), echo: false, ptnetmap: false, cycles: 1000, seconds: 1.0 };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--ko" => a.ko = it.next().ok_or("--ko PATH")?.into(),
            "--echo" => a.echo = true,
            "--ptnetmap" => a.ptnetmap = true,
            "--cycles" => a.cycles = it.next().and_then(|v| v.parse().ok()).ok_or("--cycles N")?,
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).ok_or("--seconds S")?,
            _ => return Err(format!("unknown argument {x}")),
        }
    }
    if a.ko.as_os_str().is_empty() {
        a.ko = top.join(if a.ptnetmap { "target/kmod/obj-ptnetmap/ptnrs.ko" } else { "target/kmod/obj/ptnrs.ko" });
    }
    Ok(a)
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let r = match a.scenario.as_str() {
        "lifecycle" => lifecycle(&a),
        "attach-failures" => attach_failures(&a),
        "attach-no-msix" => attach_no_msix(&a),
        "attach-no-memdev" => attach_no_memdev(&a),
        "ifconfig" => ifconfig(&a),
        "tunable" => tunable(&a),
        "traffic" => traffic(&a),
        "tap" => tap(&a),
        "netmap" => netmap(&a),
        "netmap-rings" => netmap_rings(&a),
        "detach-under-traffic" => detach_under_traffic(&a),
        "cycles" => cycles(&a),
        "chaos" => chaos(&a),
        "exercise" => exercise(&a),
        s => Err(format!("unknown scenario {s}")),
    };
    match r {
        Ok(()) => {
            println!("{}: ok", a.scenario);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: FAILED: {e}", a.scenario);
            ExitCode::from(1)
        }
    }
}
