//! The ptnet device model: the register file the guest driver programs,
//! kick registers that wake the host kloops, and MSI-X interrupts the
//! kloops raise. It behaves as the hypervisor side of ptnet does: `PTFEAT`
//! grants the subset of requested features the host supports, `PTCTL`
//! executes a command and reads back 0 or an errno, the CSB address is
//! taken when its low half is written and translated through the guest
//! memory map at `PTCTL` create, which also initialises the CSB from the
//! host's ring state (as netmap does when a CSB is registered).

use super::{Interrupts, Mmio, PciFunction};
use crate::guest_mem::GuestMemory;
use crate::host::chaos::Chaos;
use crate::host::kloop::{KloopMode, KloopTarget, RingKloop};
use crate::host::port::NmPort;
use ptnet::abi::csb::CSB_ENTRY_SIZE;
use ptnet::abi::regs::{ptnet as reg, Features, PtctlCmd, PCI_DEVICE_ID_PTNET, PCI_VENDOR_ID};
use ptnet::csb::{CsbMem, CsbRing, Field};
use ptnet::kring::Dir;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// errno values `PTCTL` reads back.
const EINVAL: u32 = 22;
const EFAULT: u32 = 14;
const EBUSY: u32 = 16;

/// Device-side counters.
#[derive(Debug, Default)]
pub struct DevStats {
    /// Kick register writes.
    pub kicks: AtomicU64,
    /// Successful `PTCTL` creates.
    pub creates: AtomicU64,
    /// `PTCTL` deletes of a running device.
    pub deletes: AtomicU64,
}

#[derive(Default)]
struct RegState {
    granted: u32,
    ptctl_result: u32,
    csb_gh: [u32; 2],
    csb_hg: [u32; 2],
}

/// The ptnet function of one VM, passing `port` through.
pub struct PtnetDevice {
    port: Arc<NmPort>,
    mac: [u8; 6],
    host_features: Features,
    guest_mem: Arc<GuestMemory>,
    irq: Arc<dyn Interrupts>,
    mode: KloopMode,
    /// A hostile host, if any.
    chaos: Option<Arc<Chaos>>,
    regs: Mutex<RegState>,
    kloops: RwLock<Vec<Arc<RingKloop>>>,
    /// Counters.
    pub stats: DevStats,
}

impl PtnetDevice {
    /// A ptnet function passing `port` through to the VM with memory
    /// `guest_mem` and interrupt controller `irq`.
    pub fn new(
        port: Arc<NmPort>,
        mac: [u8; 6],
        host_features: Features,
        guest_mem: Arc<GuestMemory>,
        irq: Arc<dyn Interrupts>,
        mode: KloopMode,
        chaos: Option<Arc<Chaos>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            port,
            mac,
            host_features,
            guest_mem,
            irq,
            mode,
            chaos,
            regs: Mutex::new(RegState::default()),
            kloops: RwLock::new(Vec::new()),
            stats: DevStats::default(),
        })
    }

    /// The PCI function the guest sees.
    pub fn function(self: &Arc<Self>) -> PciFunction {
        PciFunction {
            vendor: PCI_VENDOR_ID,
            device: PCI_DEVICE_ID_PTNET,
            io: self.clone(),
            mem_bar: None,
            msix_vectors: self.num_rings(),
        }
    }

    /// The passed-through port.
    pub fn port(&self) -> &Arc<NmPort> {
        &self.port
    }

    /// The running kloops (empty when the guest has not issued create).
    pub fn kloops(&self) -> Vec<Arc<RingKloop>> {
        self.kloops.read().unwrap().clone()
    }

    fn num_rings(&self) -> u32 {
        (self.port.tx.len() + self.port.rx.len()) as u32
    }

    fn gpa(pair: [u32; 2]) -> u64 {
        (u64::from(pair[0]) << 32) | u64::from(pair[1])
    }

    fn create(&self, st: &RegState) -> u32 {
        let mut kloops = self.kloops.write().unwrap();
        if !kloops.is_empty() {
            return EBUSY;
        }
        let n = self.num_rings() as usize;
        let (gh, hg) = (Self::gpa(st.csb_gh), Self::gpa(st.csb_hg));
        let len = n * CSB_ENTRY_SIZE;
        let (Some(atok), Some(ktoa)) = (self.guest_mem.region(gh, len), self.guest_mem.region(hg, len)) else {
            return EFAULT;
        };
        let rings: Vec<(Dir, u32)> = (0..self.port.tx.len() as u32)
            .map(|i| (Dir::Tx, i))
            .chain((0..self.port.rx.len() as u32).map(|i| (Dir::Rx, i)))
            .collect();
        for (id, &(dir, idx)) in rings.iter().enumerate() {
            let Some(csb) = CsbRing::new(&atok, &ktoa, id) else {
                return EFAULT;
            };
            let hk = *self.port.ring(dir, idx).expect("ring").kring.lock().unwrap();
            csb.store(Field::Head, hk.k.rhead);
            csb.store(Field::Cur, hk.k.rcur);
            csb.store(Field::ApplNeedKick, 1);
            csb.store(Field::SyncFlags, 1);
            csb.store(Field::Hwcur, hk.k.hwcur);
            csb.store(Field::Hwtail, hk.k.hwtail);
            csb.store(Field::KernNeedKick, 1);
        }
        for (id, &(dir, idx)) in rings.iter().enumerate() {
            let csb = CsbRing::new(&atok, &ktoa, id).expect("checked above");
            let target = KloopTarget {
                port: self.port.clone(),
                dir,
                idx,
                csb,
                guest_mem: self.guest_mem.clone(),
                irq: self.irq.clone(),
                vector: id as u32,
                chaos: self.chaos.clone(),
            };
            kloops.push(RingKloop::start(target, self.mode));
        }
        self.stats.creates.fetch_add(1, Ordering::Relaxed);
        0
    }

    fn delete(&self) -> u32 {
        let kloops = std::mem::take(&mut *self.kloops.write().unwrap());
        if !kloops.is_empty() {
            self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        }
        for k in kloops {
            k.stop();
        }
        0
    }

    fn kick(&self, ring: u32) {
        self.stats.kicks.fetch_add(1, Ordering::Relaxed);
        let k = self.kloops.read().unwrap().get(ring as usize).cloned();
        if let Some(k) = k {
            k.kick();
        }
    }
}

impl Mmio for PtnetDevice {
    fn read32(&self, off: u32) -> u32 {
        let st = self.regs.lock().unwrap();
        let m = &self.mac;
        match off {
            reg::PTFEAT => self.chaos.as_ref().map_or(st.granted, |c| c.ptfeat(&self.port.name, st.granted)),
            reg::PTCTL => st.ptctl_result,
            reg::MAC_LO => u32::from_be_bytes([m[2], m[3], m[4], m[5]]),
            reg::MAC_HI => u32::from_be_bytes([0, 0, m[0], m[1]]),
            reg::NIFP_OFS => self.port.nifp_ofs as u32,
            reg::NUM_TX_RINGS => self.port.tx.len() as u32,
            reg::NUM_RX_RINGS => self.port.rx.len() as u32,
            reg::NUM_TX_SLOTS => self.port.num_slots(Dir::Tx),
            reg::NUM_RX_SLOTS => self.port.num_slots(Dir::Rx),
            reg::VNET_HDR_LEN => self.port.vnet_hdr_len.load(Ordering::Relaxed),
            reg::HOSTMEMID => self.port.mem.memid(),
            reg::CSB_GH_BAH => st.csb_gh[0],
            reg::CSB_GH_BAL => st.csb_gh[1],
            reg::CSB_HG_BAH => st.csb_hg[0],
            reg::CSB_HG_BAL => st.csb_hg[1],
            _ => 0,
        }
    }

    fn write32(&self, off: u32, val: u32) {
        if off >= reg::KICK_BASE {
            self.kick((off - reg::KICK_BASE) / 4);
            return;
        }
        let mut st = self.regs.lock().unwrap();
        match off {
            reg::PTFEAT => st.granted = val & self.host_features.bits(),
            reg::PTCTL => {
                st.ptctl_result = match PtctlCmd::from_u32(val) {
                    Some(PtctlCmd::Create) => self.create(&st),
                    Some(PtctlCmd::Delete) => self.delete(),
                    None => EINVAL,
                }
            }
            reg::VNET_HDR_LEN => {
                let granted = st.granted & Features::VNET_HDR.bits() != 0;
                if val == 0 || (granted && (val == 10 || val == 12)) {
                    self.port.vnet_hdr_len.store(val, Ordering::Relaxed);
                }
            }
            reg::CSB_GH_BAH => st.csb_gh[0] = val,
            reg::CSB_GH_BAL => st.csb_gh[1] = val,
            reg::CSB_HG_BAH => st.csb_hg[0] = val,
            reg::CSB_HG_BAL => st.csb_hg[1] = val,
            _ => {}
        }
    }
}
