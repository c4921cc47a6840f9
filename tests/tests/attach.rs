//! Attach and detach through the simulated hypervisor, including devices
//! that lie: each lie is refused with a clear console line, nothing stays
//! allocated in the guest, and the device is never touched out of bounds
//! (every shared-memory access is bounds-checked by construction, so a lie
//! that got through would show up as a wrong value, not a crash).

use ptnet::abi::netmap::NetmapIf;
use ptnet::abi::regs::ptnet as reg;
use ptnet_host_sim::guest::device::NmError;
use ptnet_host_sim::hv::Mmio;
use ptnet_host_sim::world::{Vm, World, WorldConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// A register window that answers some reads with lies.
struct Lying {
    inner: Arc<dyn Mmio>,
    lies: HashMap<u32, u32>,
}

impl Mmio for Lying {
    fn read32(&self, off: u32) -> u32 {
        self.lies.get(&off).copied().unwrap_or_else(|| self.inner.read32(off))
    }
    fn write32(&self, off: u32, val: u32) {
        self.inner.write32(off, val)
    }
}

fn lie(vm: &mut Vm, lies: &[(u32, u32)]) {
    let inner = vm.pci[0].io.clone();
    vm.pci[0].io = Arc::new(Lying { inner, lies: lies.iter().copied().collect() });
}

/// Attach must fail with the console line `ptnet0: error: attach failed:
/// <why>`, leaving no guest memory allocated.
fn refused(vm: &mut Vm, cfg: ptnet::Config, why: &str) {
    match vm.attach(cfg) {
        Err(NmError::Failed { errno: 6, why: w }) => assert!(w.contains(why), "unexpected reason: {w}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("attach to a lying device succeeded"),
    }
    assert_eq!(vm.kernel.mem.outstanding(), (0, 0), "attach failure leaked guest memory");
    let dmesg = vm.kernel.dmesg();
    let line = "ptnet0: error: attach failed: ";
    assert!(dmesg.iter().any(|l| l.starts_with(line) && l.contains(why)), "{dmesg:?}");
}

/// The host memory is checked when the rings are first needed: the
/// interface attaches, but `ifconfig up` fails with the console line
/// `ptnet0: error: cannot map the host memory: <why>`, holding no memdev
/// reference, and detach frees everything.
fn memory_refused(vm: &mut Vm, why: &str) {
    let ifp = vm.attach(ptnet::Config::default()).expect("the NIC's registers are fine");
    match ifp.if_up() {
        Err(NmError::Failed { why: w, .. }) => assert!(w.contains(why), "unexpected reason: {w}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(()) => panic!("a lying host memory was accepted"),
    }
    assert!(ifp.open().is_err(), "netmap cannot use it either");
    assert_eq!(ifp.memdevs_held(), 0, "a refused memdev stays referenced");
    let dmesg = vm.kernel.dmesg();
    assert!(
        dmesg.iter().any(|l| l.starts_with("ptnet0: error: cannot map the host memory: ") && l.contains(why)),
        "{dmesg:?}"
    );
    drop(ifp);
    vm.detach().unwrap();
    assert_eq!(vm.kernel.mem.outstanding(), (0, 0), "detach left guest memory");
}

fn booted() -> World {
    World::boot(WorldConfig::default())
}

#[test]
fn attach_reports_the_device_and_detach_frees_everything() {
    let mut w = booted();
    let vm = &mut w.vms[0];
    let ifp = vm.attach(ptnet::Config::default()).unwrap();
    let info = ifp.info();
    assert_eq!(info.mac, vm.mac);
    assert_eq!((info.num_tx_rings, info.num_rx_rings, info.num_tx_slots), (1, 1, 1024));
    assert_eq!(vm.kernel.mem.outstanding(), (1, 2), "the CSB: one allocation of two pages");
    let line = &vm.kernel.dmesg()[0];
    assert!(line.contains("ptnet0: Ethernet address 02:00:00:00:00:01, 1 tx/1 rx rings, 1024/1024 slots"), "{line}");
    assert!(line.contains("features <VNET_HDR>"), "{line}");
    drop(ifp);
    vm.detach().unwrap();
    assert_eq!(vm.kernel.mem.outstanding(), (0, 0));
    assert_eq!(vm.kernel.dmesg().last().unwrap(), "ptnet0: detached");
}

#[test]
fn attach_detach_cycles_leak_nothing() {
    let mut w = booted();
    let vm = &mut w.vms[0];
    for _ in 0..200 {
        let ifp = vm.attach(ptnet::Config::default()).unwrap();
        let port = ifp.open().unwrap();
        drop(port);
        drop(ifp);
        vm.detach().unwrap();
    }
    assert_eq!(vm.kernel.mem.outstanding(), (0, 0));
    assert_eq!(vm.dev.stats.creates.load(std::sync::atomic::Ordering::Relaxed), 200);
}

#[test]
fn detach_while_open_is_refused_then_works() {
    let mut w = booted();
    let vm = &mut w.vms[0];
    let ifp = vm.attach(ptnet::Config::default()).unwrap();
    let port = ifp.open().unwrap();
    drop(ifp);
    assert!(vm.detach().is_err(), "an open interface must not go away");
    drop(port);
    vm.detach().unwrap();
    assert_eq!(vm.kernel.mem.outstanding(), (0, 0));
}

#[test]
fn zero_and_huge_ring_counts_are_refused() {
    for (r, v) in
        [(reg::NUM_TX_RINGS, 0), (reg::NUM_RX_RINGS, 0), (reg::NUM_TX_RINGS, 4096), (reg::NUM_RX_RINGS, u32::MAX)]
    {
        let mut w = booted();
        lie(&mut w.vms[0], &[(r, v)]);
        refused(&mut w.vms[0], ptnet::Config::default(), "unusable ring counts");
    }
}

#[test]
fn zero_and_huge_slot_counts_are_refused() {
    for (r, v) in [(reg::NUM_TX_SLOTS, 0), (reg::NUM_RX_SLOTS, 1 << 24)] {
        let mut w = booted();
        lie(&mut w.vms[0], &[(r, v)]);
        refused(&mut w.vms[0], ptnet::Config::default(), "slot count");
    }
    // A count in range that the rings in memory do not have.
    let mut w = booted();
    lie(&mut w.vms[0], &[(reg::NUM_TX_SLOTS, 2048)]);
    memory_refused(&mut w.vms[0], "tx ring 0");
}

#[test]
fn nifp_offset_outside_memory_is_refused() {
    for ofs in [u32::MAX - 3, 1 << 30, 4] {
        let mut w = booted();
        lie(&mut w.vms[0], &[(reg::NIFP_OFS, ofs)]);
        memory_refused(&mut w.vms[0], "netmap_if offset");
    }
}

fn set_ring_ofs(w: &World, vm: usize, i: usize, rel: i64) {
    let port = w.vms[vm].dev.port();
    let at = port.nifp_ofs + NetmapIf::RING_OFS_OFFSET + 8 * i;
    port.mem.region().store_u64(at, rel as u64).unwrap();
}

#[test]
fn ring_offsets_outside_memory_are_refused() {
    for rel in [i64::MIN, -4096, 1 << 40, 12345] {
        let mut w = booted();
        set_ring_ofs(&w, 0, 1, rel);
        memory_refused(&mut w.vms[0], "is outside the ring pool or misaligned");
    }
}

#[test]
fn overlapping_rings_are_refused() {
    let mut w = World::boot(WorldConfig { rings: 2, ..WorldConfig::default() });
    let port = w.vms[0].dev.port().clone();
    // RX ring 1 aliases RX ring 0 (ring_ofs order: tx0 tx1 rx0 rx1).
    let rx0 = port.rx[0].ring.ofs as i64 - port.nifp_ofs as i64;
    set_ring_ofs(&w, 0, 3, rx0);
    memory_refused(&mut w.vms[0], "overlaps");
}

#[test]
fn memory_id_mismatch_is_refused() {
    let mut w = booted();
    lie(&mut w.vms[0], &[(reg::HOSTMEMID, 99)]);
    memory_refused(&mut w.vms[0], "no ptnetmap-memdev for host memory 99");
}

#[test]
fn feature_not_granted_is_refused_when_required() {
    let mut w = World::boot(WorldConfig { host_vnet_hdr: false, ..WorldConfig::default() });
    let cfg = ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true };
    refused(&mut w.vms[0], cfg, "not granted by the host");
    // Without the requirement the same device attaches, without offloads.
    let ifp = w.vms[0].attach(ptnet::Config::default()).unwrap();
    assert!(ifp.info().features.is_empty());
    assert_eq!(ifp.info().vnet_hdr_len, 0);
}

#[test]
fn features_beyond_the_request_are_refused() {
    let mut w = booted();
    lie(&mut w.vms[0], &[(reg::PTFEAT, 0x8001)]);
    refused(&mut w.vms[0], ptnet::Config::default(), "more than the 0x1 requested");
}

#[test]
fn a_failed_ptctl_create_is_reported_and_retried() {
    let mut w = booted();
    lie(&mut w.vms[0], &[(reg::PTCTL, 22)]);
    let ifp = w.vms[0].attach(ptnet::Config::default()).unwrap();
    let err = ifp.open().err().expect("open must fail when PTCTL create fails");
    assert!(err.to_string().contains("PTCTL command 1 failed with error 22"), "{err}");
    drop(ifp);
    w.vms[0].detach().unwrap();
    assert_eq!(w.vms[0].kernel.mem.outstanding(), (0, 0));
}
