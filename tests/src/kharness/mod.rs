//! A userspace FreeBSD kernel that loads the real `ptnrs.ko`.
//!
//! The kernel's services (`tests/harness/*.c`) are C compiled against
//! FreeBSD 15's headers with the module's own flags, so mbufs, ifnets,
//! locks, sysctl oids and netmap krings have FreeBSD's layouts; the
//! harness links them and the `.ko` below 2 GiB as the kld linker does
//! ([`elf`]), runs the module's SYSINITs (`DRIVER_MODULE` registers the
//! driver, which probes the simulated PCI functions), gives every thread
//! that runs kernel code a `struct pcpu` behind `%gs`, and turns the
//! module's port I/O into VM exits on the simulated ptnet device
//! ([`trap`]). The device is a VM of `ptnet_host_sim::world`: its
//! registers, its guest memory and its interrupts are the simulator's.
//!
//! A kernel panics the way FreeBSD's debugging kernels do (a KPI misused,
//! a lock order reversed, an mbuf used after it was freed): the process
//! prints `panic: ...` and the backtrace, and exits with
//! [`trap::PANIC_EXIT`]. Scenarios therefore run one per process (the
//! `kharness` binary).

pub mod elf;
pub mod host;
pub mod nic;
pub mod pool;
pub mod sync;
pub mod trap;

use elf::Image;
use host::{HkPkt, Host, TdFns};
use ptnet_host_sim::hv::{Mmio, PciFunction};
use ptnet_host_sim::world::Vm;
use std::ffi::{c_char, c_int, c_ulong, c_void, CString};
use std::path::Path;
use std::sync::Arc;

/// The harness kernel objects `tests/build.rs` builds: a stock GENERIC
/// kernel's netmap, and a kernel built with `WITH_PTNETMAP`.
pub const KERNEL_OBJECT: &str = env!("HK_KERNEL_OBJECT");
/// See [`KERNEL_OBJECT`].
pub const KERNEL_OBJECT_PTNETMAP: &str = env!("HK_KERNEL_OBJECT_PTNETMAP");

/// First I/O port of the PCI functions' BAR 0 (one 256-byte window each).
const IO_BASE: u16 = 0xc000;
const IO_SIZE: u16 = 0x100;

/// `struct hk_pci`.
#[repr(C)]
struct HkPci {
    vendor: u16,
    device: u16,
    io_port: u32,
    io_size: u32,
    mem_va: *mut c_void,
    mem_size: u64,
    mem_pa: u64,
    msix_va: *mut c_void,
    msix_vectors: u32,
}

// SAFETY: the pointers are the device's memory BAR and a guard page, owned
// by the VM for the process's life; the kernel only reads the record.
unsafe impl Send for HkPci {}
// SAFETY: as above.
unsafe impl Sync for HkPci {}

/// `struct hk_ifinfo`: what `ifconfig` shows.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IfInfo {
    /// `if_flags`.
    pub flags: i32,
    /// `if_drv_flags`.
    pub drv_flags: i32,
    /// `if_capabilities`.
    pub capabilities: i32,
    /// `if_capenable`.
    pub capenable: i32,
    /// `if_hwassist`.
    pub hwassist: u64,
    /// `if_baudrate`.
    pub baudrate: u64,
    /// `if_mtu`.
    pub mtu: u32,
    /// `if_hdrlen`.
    pub hdrlen: i32,
    /// The Ethernet address.
    pub lladdr: [u8; 6],
    /// `SIOCGIFMEDIA`: status, active, current, count.
    pub media_status: i32,
    /// Active media word.
    pub media_active: i32,
    /// Current media word.
    pub media_current: i32,
    /// Media entries.
    pub media_count: i32,
    /// `if_get_counter` for each `ift_counter`.
    pub counters: [u64; 12],
}

/// What the kernel's ledgers hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledgers {
    /// malloc(9) blocks of type "ptnrs".
    pub malloc_ptnrs: i64,
    /// Every malloc(9) block of the kernel's own types a driver uses
    /// (devbuf, ifnet, ifaddr, sysctloid, netmap).
    pub malloc_kernel: i64,
    /// Locks initialized and not destroyed.
    pub locks: i64,
    /// Interrupt handlers set up.
    pub intrs: i64,
    /// Taskqueues created by drivers.
    pub taskqueues: i64,
    /// Callouts pending.
    pub callouts: i64,
    /// mbufs and clusters alive.
    pub mbufs: i64,
    /// Clusters alive.
    pub clusters: i64,
    /// Interfaces allocated.
    pub ifnets: i64,
    /// netmap adapters.
    pub netmap: i64,
    /// Dynamic sysctl oids.
    pub sysctls: i64,
    /// Bus resources allocated.
    pub resources: i64,
    /// Guest-physical (contigmalloc) allocations.
    pub dma: i64,
}

macro_rules! kfns {
    ($($name:ident : fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The harness kernel's entry points.
        #[allow(non_snake_case)]
        struct KFns { $($name: extern "C" fn($($arg),*) $(-> $ret)?,)* }
        impl KFns {
            fn load(img: &Image) -> Result<Self, String> {
                Ok(Self { $($name: {
                    let a = *img.globals.get(stringify!($name)).ok_or(concat!("kernel lacks ", stringify!($name)))?;
                    // SAFETY: the symbol is the C function of this
                    // signature (tests/harness), loaded and relocated.
                    unsafe { std::mem::transmute::<u64, extern "C" fn($($arg),*) $(-> $ret)?>(a) }
                },)* })
            }
        }
    };
}

kfns! {
    hk_set_host: fn(*const host::HkHost);
    hk_td_create: fn(*const c_char) -> *mut c_void;
    hk_td_destroy: fn(*mut c_void);
    hk_boot: fn(u64, u64, u64, u64);
    hk_pci_add: fn(*mut HkPci);
    hk_bus_probe_all: fn();
    hk_kld_load: fn(c_int, *const c_char, u64, u64, u64, u64, u64, u64) -> c_int;
    hk_kld_unload: fn(c_int, u64, u64, u64, u64) -> c_int;
    hk_devctl_detach: fn(*const c_char) -> c_int;
    hk_devctl_attach: fn(u32) -> c_int;
    hk_devctl_power: fn(c_int) -> c_int;
    hk_devices: fn(*mut c_char, usize);
    hk_res_memattr: fn(u32) -> c_int;
    hk_res_live: fn() -> c_int;
    hk_intr_live: fn() -> i64;
    hk_malloc_stats: fn(*const c_char, *mut i64, *mut i64);
    hk_locks_live: fn() -> i64;
    hk_mbuf_live: fn(*mut i64, *mut i64);
    hk_taskq_live: fn(*mut i64, *mut i64);
    hk_taskq_shutdown: fn();
    hk_sysctl: fn(*const c_char, *mut c_void, *mut usize, *const c_void, usize) -> c_int;
    hk_sysctl_children: fn(*const c_char, *mut c_char, usize) -> c_int;
    hk_sysctl_live: fn() -> i64;
    hk_ifconfig_show: fn(*const c_char, *mut IfInfo) -> c_int;
    hk_ifconfig_updown: fn(*const c_char, c_int) -> c_int;
    hk_ifconfig_mtu: fn(*const c_char, c_int) -> c_int;
    hk_ifconfig_cap: fn(*const c_char, c_int) -> c_int;
    hk_ifconfig_media: fn(*const c_char, c_int) -> c_int;
    hk_ifconfig_ioctl: fn(*const c_char, c_ulong) -> c_int;
    hk_bpf_listen: fn(*const c_char, c_int) -> c_int;
    hk_if_output: fn(*const c_char, *const HkPkt, *const c_char, c_int, c_int, c_int) -> c_int;
    hk_ifnet_live: fn() -> i64;
    hk_nm_open: fn(*const c_char, c_int, *mut *mut c_void) -> c_int;
    hk_nm_close: fn(*mut c_void);
    hk_nm_ring: fn(*mut c_void, c_int, u32) -> *mut c_void;
    hk_nm_sync: fn(*mut c_void, c_int) -> c_int;
    hk_nm_poll: fn(*mut c_void, c_int, u64) -> c_int;
    hk_nm_virt_hdr_len: fn(*mut c_void) -> c_int;
    hk_nm_intr: fn(*mut c_void, c_int) -> c_int;
    hk_netmap_live: fn() -> i64;
}

/// How to boot.
#[derive(Debug, Clone, Default)]
pub struct BootConfig {
    /// Print the console as it is written.
    pub echo: bool,
    /// The ptnet function offers no MSI-X capability.
    pub no_msix: bool,
    /// The VM has no memdev.
    pub no_memdev: bool,
    /// loader.conf tunables.
    pub kenv: Vec<(String, i32)>,
    /// A kernel built with `WITH_PTNETMAP` (netmap's ptnetmap guest
    /// support: its memdev driver and guest allocator).
    pub ptnetmap: bool,
}

/// A loaded module.
struct Module {
    id: c_int,
    img: Arc<Image>,
}

/// The booted kernel of one VM.
pub struct Kernel {
    f: KFns,
    /// The host services (console, faults, received frames).
    pub host: &'static Host,
    modules: std::sync::Mutex<Vec<Module>>,
    next_id: std::sync::atomic::AtomicI32,
    /// The kernel keeps pointers to these records: boxed, they never move.
    #[allow(clippy::vec_box)]
    _pci: Vec<Box<HkPci>>,
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL in names")
}

/// A page no access may touch (the MSI-X table: the kernel programs it,
/// never the driver).
fn guard_page() -> *mut c_void {
    // SAFETY: an anonymous PROT_NONE mapping, never freed.
    unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) }
}

impl Kernel {
    /// Boots the kernel of `vm`: loads the kernel object, starts its
    /// threads, enumerates the VM's PCI functions (no driver yet). Once per
    /// process.
    pub fn boot(vm: &Vm, cfg: &BootConfig) -> Result<Kernel, String> {
        trap::install();
        let pci: Vec<&PciFunction> = vm.pci.iter().filter(|p| !(cfg.no_memdev && p.mem_bar.is_some())).collect();
        let ports: Vec<(u16, u16, Arc<dyn Mmio>)> =
            pci.iter().enumerate().map(|(i, p)| (IO_BASE + IO_SIZE * i as u16, IO_SIZE, p.io.clone())).collect();
        let host = host::init(vm.kernel.clone(), ports, cfg.echo);
        host.kenv.lock().unwrap().extend(cfg.kenv.iter().cloned());
        let obj = if cfg.ptnetmap { KERNEL_OBJECT_PTNETMAP } else { KERNEL_OBJECT };
        let bytes = std::fs::read(obj).map_err(|e| format!("{obj}: {e}"))?;
        let img = Arc::new(Image::load("kernel", &bytes, &|_| None)?);
        let f = KFns::load(&img)?;
        host.images.write().unwrap().push(img.clone());
        let _ = host.td.set(TdFns { create: f.hk_td_create, destroy: f.hk_td_destroy });
        (f.hk_set_host)(&host::HOST_OPS);
        host::enter_thread("swapper");
        let (oid, oid_end) = img.set("set_sysctl_set");
        let (si, si_end) = img.set("set_sysinit_set");
        (f.hk_boot)(oid, oid_end, si, si_end);
        let mut boxes = Vec::new();
        for (i, p) in pci.iter().enumerate() {
            let (mem_va, mem_size) =
                p.mem_bar.map_or((std::ptr::null_mut(), 0), |r| (r.as_ptr().cast(), r.len() as u64));
            let mut b = Box::new(HkPci {
                vendor: p.vendor,
                device: p.device,
                io_port: u32::from(IO_BASE + IO_SIZE * i as u16),
                io_size: u32::from(IO_SIZE),
                mem_va,
                mem_size,
                mem_pa: 0xe000_0000 + ((i as u64) << 28),
                msix_va: if p.msix_vectors > 0 { guard_page() } else { std::ptr::null_mut() },
                msix_vectors: if cfg.no_msix { 0 } else { p.msix_vectors },
            });
            (f.hk_pci_add)(&mut *b);
            boxes.push(b);
        }
        // The kernel's own drivers (a WITH_PTNETMAP kernel's memdev).
        (f.hk_bus_probe_all)();
        Ok(Kernel {
            f,
            host,
            modules: std::sync::Mutex::new(Vec::new()),
            next_id: std::sync::atomic::AtomicI32::new(2),
            _pci: boxes,
        })
    }

    /// Lets the calling thread run kernel code (its own `%gs`).
    pub fn enter(&self, name: &str) {
        host::enter_thread(name);
    }

    /// `kldload path`: the file id, or the errno and why.
    pub fn kldload(&self, path: &Path) -> Result<i32, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().map_or("module".into(), |n| n.to_string_lossy().into_owned());
        let kernel = self.host.images.read().unwrap()[0].clone();
        let img = Arc::new(Image::load(&name, &bytes, &|s| kernel.globals.get(s).copied())?);
        self.host.images.write().unwrap().push(img.clone());
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (md, md_end) = img.set("set_modmetadata_set");
        let (si, si_end) = img.set("set_sysinit_set");
        let (oid, oid_end) = img.set("set_sysctl_set");
        let cname = c(&name);
        let rc = (self.f.hk_kld_load)(id, cname.as_ptr(), md, md_end, si, si_end, oid, oid_end);
        if rc != 0 {
            self.host.images.write().unwrap().retain(|i| !Arc::ptr_eq(i, &img));
            return Err(format!("kldload: can't load {name}: error {rc}"));
        }
        self.modules.lock().unwrap().push(Module { id, img });
        Ok(id)
    }

    /// `kldunload`: the module's code is unmapped once it is gone.
    pub fn kldunload(&self, id: i32) -> Result<(), i32> {
        let img = {
            let m = self.modules.lock().unwrap();
            m.iter().find(|m| m.id == id).map(|m| m.img.clone()).ok_or(libc::ENOENT)?
        };
        let (su, su_end) = img.set("set_sysuninit_set");
        let (oid, oid_end) = img.set("set_sysctl_set");
        let rc = (self.f.hk_kld_unload)(id, su, su_end, oid, oid_end);
        if rc != 0 {
            return Err(rc);
        }
        self.modules.lock().unwrap().retain(|m| m.id != id);
        self.host.images.write().unwrap().retain(|i| !Arc::ptr_eq(i, &img));
        Ok(())
    }

    /// `devctl detach name`.
    pub fn devctl_detach(&self, name: &str) -> i32 {
        (self.f.hk_devctl_detach)(c(name).as_ptr())
    }

    /// `devctl attach` of PCI function `index`.
    pub fn devctl_attach(&self, index: u32) -> i32 {
        (self.f.hk_devctl_attach)(index)
    }

    /// DEVICE_SHUTDOWN (0), DEVICE_SUSPEND (1), DEVICE_RESUME (2) of every device.
    pub fn devctl_power(&self, what: i32) -> i32 {
        (self.f.hk_devctl_power)(what)
    }

    /// The attached devices' names.
    pub fn devices(&self) -> Vec<String> {
        let mut buf = vec![0u8; 512];
        (self.f.hk_devices)(buf.as_mut_ptr().cast(), buf.len());
        cstring(&buf).split_whitespace().map(String::from).collect()
    }

    /// The memory attribute PCI function `index`'s memory BAR was mapped with.
    pub fn memattr(&self, index: u32) -> i32 {
        (self.f.hk_res_memattr)(index)
    }

    /// `sysctl name`: the value's bytes.
    pub fn sysctl(&self, name: &str) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; 512];
        let mut len = buf.len();
        let rc = (self.f.hk_sysctl)(c(name).as_ptr(), buf.as_mut_ptr().cast(), &mut len, std::ptr::null(), 0);
        if rc != 0 {
            return Err(rc);
        }
        buf.truncate(len);
        Ok(buf)
    }

    /// `sysctl name` of an integer (4 or 8 bytes).
    pub fn sysctl_u64(&self, name: &str) -> Result<u64, i32> {
        let b = self.sysctl(name)?;
        match b.len() {
            4 => Ok(u64::from(u32::from_ne_bytes(b[..4].try_into().unwrap()))),
            8 => Ok(u64::from_ne_bytes(b[..8].try_into().unwrap())),
            _ => Err(libc::EINVAL),
        }
    }

    /// `sysctl name` of a string.
    pub fn sysctl_str(&self, name: &str) -> Result<String, i32> {
        Ok(cstring(&self.sysctl(name)?))
    }

    /// `sysctl name=value` of an int.
    pub fn sysctl_set_int(&self, name: &str, v: i32) -> Result<(), i32> {
        let rc = (self.f.hk_sysctl)(
            c(name).as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&v as *const i32).cast(),
            4,
        );
        if rc == 0 {
            Ok(())
        } else {
            Err(rc)
        }
    }

    /// The children of a sysctl node.
    pub fn sysctl_children(&self, name: &str) -> Result<Vec<String>, i32> {
        let mut buf = vec![0u8; 2048];
        let rc = (self.f.hk_sysctl_children)(c(name).as_ptr(), buf.as_mut_ptr().cast(), buf.len());
        if rc != 0 {
            return Err(rc);
        }
        Ok(cstring(&buf).split_whitespace().map(String::from).collect())
    }

    /// `ifconfig name`.
    pub fn ifconfig(&self, name: &str) -> Result<IfInfo, i32> {
        // SAFETY: IfInfo is plain data; zeroes are a valid value.
        let mut i: IfInfo = unsafe { std::mem::zeroed() };
        match (self.f.hk_ifconfig_show)(c(name).as_ptr(), &mut i) {
            0 => Ok(i),
            rc => Err(rc),
        }
    }

    /// `ifconfig name up` / `down`.
    pub fn ifconfig_updown(&self, name: &str, up: bool) -> i32 {
        (self.f.hk_ifconfig_updown)(c(name).as_ptr(), c_int::from(up))
    }

    /// `ifconfig name mtu N`.
    pub fn ifconfig_mtu(&self, name: &str, mtu: i32) -> i32 {
        (self.f.hk_ifconfig_mtu)(c(name).as_ptr(), mtu)
    }

    /// `ifconfig name` with capabilities: the whole requested word.
    pub fn ifconfig_cap(&self, name: &str, reqcap: i32) -> i32 {
        (self.f.hk_ifconfig_cap)(c(name).as_ptr(), reqcap)
    }

    /// `ifconfig name media M`.
    pub fn ifconfig_media(&self, name: &str, media: i32) -> i32 {
        (self.f.hk_ifconfig_media)(c(name).as_ptr(), media)
    }

    /// An ioctl the driver passes to ether_ioctl.
    pub fn ifconfig_ioctl(&self, name: &str, cmd: u64) -> i32 {
        (self.f.hk_ifconfig_ioctl)(c(name).as_ptr(), cmd as c_ulong)
    }

    /// `tcpdump -i name` on or off.
    pub fn bpf_listen(&self, name: &str, on: bool) -> i32 {
        (self.f.hk_bpf_listen)(c(name).as_ptr(), c_int::from(on))
    }

    /// The stack sends `frame` (headers `hdrlen` bytes in the first mbuf,
    /// the rest in clusters of `seglen`): `if_transmit`'s errno.
    pub fn if_output(&self, name: &str, frame: &[u8], meta: &HkPkt, hdrlen: usize, seglen: usize) -> i32 {
        (self.f.hk_if_output)(
            c(name).as_ptr(),
            meta,
            frame.as_ptr().cast(),
            frame.len() as c_int,
            hdrlen as c_int,
            seglen.max(1) as c_int,
        )
    }

    /// `open("/dev/netmap")` + register every NIC ring of `name`
    /// (`NR_REG_ALL_NIC`).
    pub fn netmap_open(&self, name: &str) -> Result<NetmapFd<'_>, i32> {
        self.netmap_open_ring(name, -1)
    }

    /// `open("/dev/netmap")` + register ring pair `ring` of `name`
    /// (`NR_REG_ONE_NIC`; every ring for a negative `ring`).
    pub fn netmap_open_ring(&self, name: &str, ring: i32) -> Result<NetmapFd<'_>, i32> {
        let mut p = std::ptr::null_mut();
        match (self.f.hk_nm_open)(c(name).as_ptr(), ring, &mut p) {
            0 => Ok(NetmapFd { k: self, p }),
            rc => Err(rc),
        }
    }

    /// The kernel's ledgers now.
    pub fn ledgers(&self) -> Ledgers {
        let stat = |n: &str| {
            let (mut b, mut s) = (0i64, 0i64);
            (self.f.hk_malloc_stats)(c(n).as_ptr(), &mut b, &mut s);
            b
        };
        let (mut m, mut cl, mut q, mut co) = (0, 0, 0, 0);
        (self.f.hk_mbuf_live)(&mut m, &mut cl);
        (self.f.hk_taskq_live)(&mut q, &mut co);
        Ledgers {
            malloc_ptnrs: stat("ptnrs"),
            malloc_kernel: ["devbuf", "ifnet", "ifaddr", "sysctloid", "netmap"].iter().map(|n| stat(n)).sum(),
            locks: (self.f.hk_locks_live)(),
            intrs: (self.f.hk_intr_live)(),
            taskqueues: q,
            callouts: co,
            mbufs: m,
            clusters: cl,
            ifnets: (self.f.hk_ifnet_live)(),
            netmap: (self.f.hk_netmap_live)(),
            sysctls: (self.f.hk_sysctl_live)(),
            resources: i64::from((self.f.hk_res_live)()),
            dma: self.host.dma_outstanding() as i64,
        }
    }

    /// Stops the kernel's own threads (the end of a scenario).
    pub fn halt(&self) {
        (self.f.hk_taskq_shutdown)();
    }
}

/// An open netmap file descriptor.
pub struct NetmapFd<'k> {
    k: &'k Kernel,
    p: *mut c_void,
}

impl NetmapFd<'_> {
    /// The application's view of ring `i` (`NETMAP_TXRING`/`NETMAP_RXRING`).
    pub fn ring(&self, tx: bool, i: u32) -> Option<nic::NmRing> {
        let r = (self.k.f.hk_nm_ring)(self.p, c_int::from(tx), i);
        // SAFETY: a ring of this open descriptor: it lives until close.
        (!r.is_null()).then(|| unsafe { nic::NmRing::new(r) })
    }

    /// The virtio-net header each slot starts with (the port's
    /// `virt_hdr_len`, as `NETMAP_REQ_PORT_HDR_GET` reports it).
    pub fn virt_hdr_len(&self) -> usize {
        (self.k.f.hk_nm_virt_hdr_len)(self.p) as usize
    }

    /// The rings' interrupts on or off (`nma_intr_enable`, what netmap's
    /// sync kloop does for a busy-polling client).
    pub fn intr(&self, on: bool) -> i32 {
        (self.k.f.hk_nm_intr)(self.p, c_int::from(on))
    }

    /// `ioctl(NIOCTXSYNC)` (tx) or `ioctl(NIOCRXSYNC)`.
    pub fn sync(&self, tx: bool) -> i32 {
        (self.k.f.hk_nm_sync)(self.p, c_int::from(tx))
    }

    /// `poll()` for POLLOUT (tx) or POLLIN: true when a ring is ready.
    pub fn poll(&self, tx: bool, timeout: std::time::Duration) -> Result<bool, i32> {
        match (self.k.f.hk_nm_poll)(self.p, c_int::from(tx), timeout.as_nanos() as u64) {
            r if r < 0 => Err(-r),
            r => Ok(r > 0),
        }
    }
}

impl Drop for NetmapFd<'_> {
    fn drop(&mut self) {
        (self.k.f.hk_nm_close)(self.p)
    }
}

fn cstring(b: &[u8]) -> String {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
