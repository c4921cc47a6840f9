//! Builds a simulated setup: VMs, each with a ptnet device passing through
//! a port of a VALE-like switch (or one end of a netmap pipe), each running
//! the real driver in its guest kernel.

use crate::guest::device::{NmError, PtnetIf};
use crate::guest::kernel::GuestKernel;
use crate::guest::netmap::NmMode;
use crate::host::chaos::{Chaos, ChaosRecord};
use crate::host::kloop::KloopMode;
use crate::host::mem::{HostMemory, MemConfig};
use crate::host::pipe::pipe;
use crate::host::port::{NmPort, PortConfig};
use crate::host::vale::Vale;
use crate::hv::memdev::MemdevDevice;
use crate::hv::ptnet::PtnetDevice;
use crate::hv::PciFunction;
use ptnet::abi::regs::Features;
use std::sync::Arc;

/// What connects the VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Every VM on one port of a learning switch.
    Vale,
    /// Two VMs on the two ends of a netmap pipe (requires 2 guests).
    Pipe,
}

/// Parameters of a setup.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// Number of VMs.
    pub guests: usize,
    /// Ring pairs per port.
    pub rings: u32,
    /// Slots per ring.
    pub slots: u32,
    /// netmap buffer size.
    pub buf_size: u32,
    /// Host kloop mode.
    pub mode: KloopMode,
    /// Host offers the virtio-net header.
    pub host_vnet_hdr: bool,
    /// Driver configuration.
    pub driver: ptnet::Config,
    /// What connects the VMs.
    pub topology: Topology,
    /// Guest RAM per VM.
    pub guest_ram: usize,
    /// Print guest console lines as they appear.
    pub echo: bool,
    /// A hostile host, seeded (see [`Chaos`]).
    pub chaos: Option<u64>,
    /// A hostile host replaying a recorded run (see [`Chaos::replay`]);
    /// takes precedence over `chaos`.
    pub chaos_replay: Option<Arc<ChaosRecord>>,
    /// The guests' netmap allocator: a stock kernel's (copy) or a
    /// `WITH_PTNETMAP` kernel's (zero copy).
    pub netmap: NmMode,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            guests: 2,
            rings: 1,
            slots: 1024,
            buf_size: 2048,
            mode: KloopMode::Direct,
            host_vnet_hdr: true,
            driver: ptnet::Config { want_vnet_hdr: false, require_vnet_hdr: false },
            topology: Topology::Vale,
            guest_ram: 4 << 20,
            echo: false,
            chaos: None,
            chaos_replay: None,
            netmap: NmMode::Copy,
        }
    }
}

/// One VM: its kernel, its PCI functions, and (VMM side) its device model.
pub struct Vm {
    /// The guest kernel.
    pub kernel: Arc<GuestKernel>,
    /// The ptnet device model (the VMM's handle, for counters).
    pub dev: Arc<PtnetDevice>,
    /// The PCI functions the guest enumerates.
    pub pci: Vec<PciFunction>,
    /// The VM's MAC address.
    pub mac: [u8; 6],
    /// The attached interface, once attached.
    pub ifp: Option<Arc<PtnetIf>>,
    /// The final counters of every interface detached so far.
    pub retired: Vec<ptnet::ifnet::IfCounters>,
    netmap: NmMode,
}

impl Vm {
    /// Creates a VM whose ptnet device passes `port` through.
    pub fn boot(name: &str, port: Arc<NmPort>, mac: [u8; 6], cfg: &WorldConfig, chaos: Option<Arc<Chaos>>) -> Self {
        let kernel = GuestKernel::new(name, cfg.guest_ram, cfg.echo);
        let features = if cfg.host_vnet_hdr { Features::VNET_HDR } else { Features::empty() };
        let mem = port.mem.clone();
        let dev = PtnetDevice::new(port, mac, features, kernel.mem.clone(), kernel.irq.clone(), cfg.mode, chaos);
        let pci = vec![dev.function(), MemdevDevice::function(mem)];
        Self { kernel, dev, pci, mac, ifp: None, retired: Vec::new(), netmap: cfg.netmap }
    }

    /// Attaches the driver to the VM's ptnet device.
    pub fn attach(&mut self, cfg: ptnet::Config) -> Result<Arc<PtnetIf>, NmError> {
        let ifp = PtnetIf::attach(&self.kernel, &self.pci, 0, cfg, self.netmap)?;
        self.ifp = Some(ifp.clone());
        Ok(ifp)
    }

    /// Detaches the driver; fails if the interface is still in use. The
    /// final counters join [`Vm::retired`].
    pub fn detach(&mut self) -> Result<(), String> {
        if let Some(ifp) = self.ifp.take() {
            match ifp.detach() {
                Ok(c) => self.retired.push(c),
                Err(ifp) => {
                    let msg = format!("{} still in use", ifp.name);
                    self.ifp = Some(ifp);
                    return Err(msg);
                }
            }
        }
        Ok(())
    }

    /// The attached interface.
    pub fn ifp(&self) -> &Arc<PtnetIf> {
        self.ifp.as_ref().expect("driver attached")
    }
}

/// A complete setup.
pub struct World {
    /// The switch, for VALE setups.
    pub vale: Option<Arc<Vale>>,
    /// The VMs.
    pub vms: Vec<Vm>,
    /// The configuration it was built with.
    pub cfg: WorldConfig,
    /// The hostile host, when `cfg.chaos` is set.
    pub chaos: Option<Arc<Chaos>>,
    /// Attaches the driver refused (a hostile host's falsified `PTFEAT`).
    pub attach_refused: u64,
    /// Guest receivers of bulk transfers running (`app::ifperf`).
    pub bulk_receivers: Arc<std::sync::atomic::AtomicUsize>,
}

/// What the guests' drivers counted of a misbehaving host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GuestFaults {
    /// Attaches refused (features nobody asked for, or the header missing).
    pub attach_refused: u64,
    /// Ring pointer updates refused (`host_errors`).
    pub host_errors: u64,
    /// Frames dropped for bad slots or headers (`ierrors`).
    pub bad_frames: u64,
    /// Transmit watchdog timeouts.
    pub tx_watchdog: u64,
    /// Lost receive interrupts the watchdog recovered.
    pub missed_irqs: u64,
    /// Interrupts that arrived while the interface was down.
    pub stray_irqs: u64,
    /// Rings the ring watchdog found the host wedged on (host restarted).
    pub wedged: u64,
}

/// Attaches before giving up on a host whose `PTFEAT` keeps lying.
const ATTACH_TRIES: u32 = 1000;

/// The MAC address of VM `i`.
pub fn vm_mac(i: usize) -> [u8; 6] {
    [0x02, 0x00, 0x00, 0x00, (i >> 8) as u8, (i + 1) as u8]
}

impl World {
    /// Builds the setup and attaches the driver in every VM.
    /// With a hostile host, a refused attach is retried (as an operator
    /// would `devctl attach` again) and counted.
    pub fn new(cfg: WorldConfig) -> Result<Self, NmError> {
        let driver = cfg.driver;
        let tries = if cfg.chaos.is_some() || cfg.chaos_replay.is_some() { ATTACH_TRIES } else { 1 };
        let mut w = Self::boot(cfg);
        for vm in &mut w.vms {
            let mut left = tries;
            while let Err(e) = vm.attach(driver) {
                left -= 1;
                if left == 0 {
                    return Err(e);
                }
                w.attach_refused += 1;
            }
        }
        Ok(w)
    }

    /// What the drivers counted of host misbehaviour, over every VM.
    pub fn guest_faults(&self) -> GuestFaults {
        let mut f = GuestFaults { attach_refused: self.attach_refused, ..GuestFaults::default() };
        for vm in &self.vms {
            let ifp = vm.ifp();
            let c = ifp.if_counters();
            let t = ifp.total_counters();
            f.host_errors += t.host_errors;
            f.wedged += t.stuck;
            f.bad_frames += c.ierrors;
            f.tx_watchdog += c.tx_watchdog;
            f.missed_irqs += c.rx_missed_irqs;
            f.stray_irqs += u64::from(ifp.stray_irqs.load(std::sync::atomic::Ordering::Relaxed));
        }
        f
    }

    /// Builds the setup without attaching drivers.
    pub fn boot(cfg: WorldConfig) -> Self {
        let pcfg = PortConfig { rings: cfg.rings, slots: cfg.slots };
        let (vale, ports) = match cfg.topology {
            Topology::Vale => {
                let sw = Vale::new("vale0");
                let ports = (0..cfg.guests)
                    .map(|i| {
                        let mem = Arc::new(HostMemory::new(
                            i as u32 + 1,
                            MemConfig::for_ports(1, cfg.rings, cfg.slots, cfg.buf_size, 0),
                        ));
                        sw.attach(&format!("{}", i + 1), mem, pcfg)
                    })
                    .collect::<Vec<_>>();
                (Some(sw), ports)
            }
            Topology::Pipe => {
                assert_eq!(cfg.guests, 2, "a pipe connects two VMs");
                let mem = Arc::new(HostMemory::new(1, MemConfig::for_ports(2, cfg.rings, cfg.slots, cfg.buf_size, 0)));
                let (a, b) = pipe("pipe", 1, mem, pcfg);
                (None, vec![a, b])
            }
        };
        let chaos = match &cfg.chaos_replay {
            Some(r) => Some(Chaos::replay(r)),
            None => cfg.chaos.map(Chaos::new),
        };
        let vms = ports
            .into_iter()
            .enumerate()
            .map(|(i, p)| Vm::boot(&format!("vm{i}"), p, vm_mac(i), &cfg, chaos.clone()))
            .collect();
        Self { vale, vms, cfg, chaos, attach_refused: 0, bulk_receivers: Arc::default() }
    }

    /// Interface of VM `i`.
    pub fn ifp(&self, i: usize) -> &Arc<PtnetIf> {
        self.vms[i].ifp()
    }

    /// Packets the switch or pipe dropped.
    pub fn drops(&self) -> u64 {
        self.vms.iter().map(|vm| vm.dev.port().drops()).sum()
    }

    /// Attaches a Linux TAP device (in its own namespace) to the switch.
    pub fn attach_tap(&self, mtu: u32, peer: crate::host::tap::Peer) -> std::io::Result<crate::host::tap::TapBridge> {
        let sw = self.vale.as_ref().ok_or_else(|| std::io::Error::other("TAP needs the switch topology"))?;
        let cfg = PortConfig { rings: 1, slots: self.cfg.slots.max(1024) };
        crate::host::tap::TapBridge::attach(sw, cfg, mtu, peer)
    }

    /// Detaches every driver.
    pub fn shutdown(mut self) -> Result<(), String> {
        for vm in &mut self.vms {
            vm.detach()?;
        }
        Ok(())
    }
}
