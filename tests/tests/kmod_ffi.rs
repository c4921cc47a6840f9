//! The kernel module's Rust archive (`ptnet-ffi`), entry point by entry
//! point, against the simulated hypervisor. This file plays the C shim:
//! its table of kernel services works over a simulated VM (registers,
//! memdev, guest-physical DMA memory, MSI-X) the way `kmod/ptnet_shim.c`
//! works over FreeBSD, with mbufs as boxed buffers. The peer is a second
//! VM running the simulator's own interface layer.

use ptnet::abi::regs::{memdev as mreg, PCI_DEVICE_ID_MEMDEV};
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::net::offload::TxRequest;
use ptnet::os::{DmaMemory, Kernel};
use ptnet_ffi::*;
use ptnet_host_sim::guest::ifnet::SimPacket;
use ptnet_host_sim::guest::kernel::{GuestKernel, GuestOs};
use ptnet_host_sim::hv::{Mmio, PciFunction};
use ptnet_host_sim::world::{vm_mac, World, WorldConfig};
use ptnet_tests::{l4_checksum_ok, receive, udp_frame};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

const EINVAL: c_int = 22;
const ENETDOWN: c_int = 50;
const EBUSY: c_int = 16;
const ENOMEM: c_int = 12;

/// Kernel allocators that fail while their bit is set (`FAIL_*`).
static FAIL: AtomicU32 = AtomicU32::new(0);
const FAIL_MBUF: u32 = 1;
const FAIL_DMA: u32 = 2;
const FAIL_MALLOC: u32 = 4;

fn failing(what: u32) -> bool {
    FAIL.load(Ordering::SeqCst) & what != 0
}

/// Live mbufs and `mem_alloc` blocks; the tests run one at a time (they
/// hold `SERIAL`), so each sees its own balance.
static MBUFS: AtomicI64 = AtomicI64::new(0);
static MEM_BLOCKS: AtomicI64 = AtomicI64::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

/// What the shim knows of one device.
struct Dev {
    kernel: Arc<GuestKernel>,
    os: GuestOs,
    pci: Vec<PciFunction>,
    dma: Mutex<HashMap<usize, DmaMemory>>,
    memdevs_held: AtomicI64,
    received: Mutex<Vec<(Vec<u8>, PtnetRsRxInfo)>>,
    /// Pending ring tasks (bit = ring number, TX first) and netmap wakeups.
    tasks: Mutex<u64>,
    kicked: Condvar,
    netmap_wakeups: AtomicU64,
}

impl Dev {
    /// The shim's view of `vm`'s ptnet device.
    fn new(vm: &ptnet_host_sim::world::Vm) -> Box<Self> {
        Box::new(Dev {
            kernel: vm.kernel.clone(),
            os: GuestOs::new(vm.kernel.clone(), "ptnet_rs0"),
            pci: vm.pci.clone(),
            dma: Mutex::default(),
            memdevs_held: AtomicI64::new(0),
            received: Mutex::default(),
            tasks: Mutex::new(0),
            kicked: Condvar::new(),
            netmap_wakeups: AtomicU64::new(0),
        })
    }
}

struct TestMbuf {
    data: Vec<u8>,
    info: PtnetRsPktInfo,
}

unsafe fn dev<'a>(d: *mut c_void) -> &'a Dev {
    unsafe { &*(d as *const Dev) }
}

fn ptnet_fn(d: &Dev) -> &PciFunction {
    &d.pci[0]
}

unsafe extern "C" fn bar_read4(d: *mut c_void, off: u32) -> u32 {
    ptnet_fn(unsafe { dev(d) }).io.read32(off)
}

unsafe extern "C" fn bar_write4(d: *mut c_void, off: u32, val: u32) {
    ptnet_fn(unsafe { dev(d) }).io.write32(off, val)
}

unsafe extern "C" fn memdev_find(d: *mut c_void, q: *const PtnetRsMemdevQuery, out: *mut PtnetRsMemdev) -> c_int {
    let d = unsafe { dev(d) };
    let q = unsafe { *q };
    assert_eq!((q.num_tx_rings, q.num_rx_rings), (1, 1), "the query carries the checked geometry");
    let memid = q.memid;
    let Some(f) = d.pci.iter().find(|f| f.device == PCI_DEVICE_ID_MEMDEV && f.io.read32(mreg::MEMID) == memid) else {
        return 6;
    };
    let Some(mem) = f.mem_bar else { return 6 };
    let handle: Box<Arc<dyn Mmio>> = Box::new(f.io.clone());
    d.memdevs_held.fetch_add(1, Ordering::SeqCst);
    unsafe {
        *out = PtnetRsMemdev { handle: Box::into_raw(handle).cast(), base: mem.as_ptr(), size: mem.len() as u64 }
    };
    0
}

unsafe extern "C" fn memdev_read4(h: *mut c_void, off: u32) -> u32 {
    unsafe { &*(h as *const Arc<dyn Mmio>) }.read32(off)
}

unsafe extern "C" fn memdev_release(d: *mut c_void, m: *const PtnetRsMemdev) {
    let d = unsafe { dev(d) };
    drop(unsafe { Box::from_raw((*m).handle as *mut Arc<dyn Mmio>) });
    d.memdevs_held.fetch_sub(1, Ordering::SeqCst);
}

unsafe extern "C" fn dma_alloc(d: *mut c_void, size: usize, align: usize, paddr: *mut u64) -> *mut c_void {
    let d = unsafe { dev(d) };
    if failing(FAIL_DMA) {
        return std::ptr::null_mut();
    }
    let Some(m) = d.os.alloc_dma(size, align) else { return std::ptr::null_mut() };
    unsafe { *paddr = m.paddr };
    d.dma.lock().unwrap().insert(m.region.as_ptr() as usize, m);
    m.region.as_ptr().cast()
}

unsafe extern "C" fn dma_free(d: *mut c_void, va: *mut c_void, _size: usize) {
    let d = unsafe { dev(d) };
    let m = d.dma.lock().unwrap().remove(&(va as usize)).expect("free of unknown DMA memory");
    d.os.free_dma(m);
}

unsafe extern "C" fn mem_alloc(size: usize) -> *mut c_void {
    if failing(FAIL_MALLOC) {
        return std::ptr::null_mut();
    }
    MEM_BLOCKS.fetch_add(1, Ordering::SeqCst);
    unsafe { libc::calloc(1, size) }
}

unsafe extern "C" fn mem_free(p: *mut c_void) {
    MEM_BLOCKS.fetch_sub(1, Ordering::SeqCst);
    unsafe { libc::free(p) }
}

unsafe extern "C" fn log(d: *mut c_void, _level: c_int, msg: *const u8, len: usize) {
    let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg, len) }).into_owned();
    if !d.is_null() {
        unsafe { dev(d) }.kernel.printf(format!("ptnet_rs0: {text}"));
    }
}

unsafe extern "C" fn shim_panic(msg: *const u8, len: usize) {
    panic!("{}", String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg, len) }));
}

unsafe extern "C" fn m_info(m: *mut Mbuf, out: *mut PtnetRsPktInfo) {
    unsafe { *out = (*(m as *mut TestMbuf)).info };
}

unsafe extern "C" fn m_copydata(m: *mut Mbuf, off: u32, len: u32, dst: *mut u8) -> c_int {
    let m = unsafe { &*(m as *mut TestMbuf) };
    match m.data.get(off as usize..(off + len) as usize) {
        Some(b) => {
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst, b.len()) };
            0
        }
        None => EINVAL,
    }
}

unsafe extern "C" fn m_free(m: *mut Mbuf) {
    drop(unsafe { Box::from_raw(m as *mut TestMbuf) });
    MBUFS.fetch_sub(1, Ordering::SeqCst);
}

fn mbuf(data: Vec<u8>, csum: CsumFlags) -> *mut Mbuf {
    MBUFS.fetch_add(1, Ordering::SeqCst);
    let info = PtnetRsPktInfo { len: data.len() as u32, csum_flags: csum.bits(), ..Default::default() };
    Box::into_raw(Box::new(TestMbuf { data, info })).cast()
}

unsafe extern "C" fn rx_alloc(_d: *mut c_void, len: u32) -> *mut Mbuf {
    if failing(FAIL_MBUF) {
        return std::ptr::null_mut();
    }
    mbuf(Vec::with_capacity(len as usize), CsumFlags::empty())
}

unsafe extern "C" fn rx_append(m: *mut Mbuf, src: *const u8, len: u32) -> c_int {
    let m = unsafe { &mut *(m as *mut TestMbuf) };
    m.data.extend_from_slice(unsafe { std::slice::from_raw_parts(src, len as usize) });
    0
}

unsafe extern "C" fn rx_input(d: *mut c_void, m: *mut Mbuf, info: *const PtnetRsRxInfo) {
    let b = unsafe { Box::from_raw(m as *mut TestMbuf) };
    MBUFS.fetch_sub(1, Ordering::SeqCst);
    unsafe { dev(d) }.received.lock().unwrap().push((b.data, unsafe { *info }));
}

static OPS: PtnetShimOps = PtnetShimOps {
    bar_read4: Some(bar_read4),
    bar_write4: Some(bar_write4),
    memdev_find: Some(memdev_find),
    memdev_read4: Some(memdev_read4),
    memdev_release: Some(memdev_release),
    dma_alloc: Some(dma_alloc),
    dma_free: Some(dma_free),
    mem_alloc: Some(mem_alloc),
    mem_free: Some(mem_free),
    log: Some(log),
    panic: Some(shim_panic),
    m_info: Some(m_info),
    m_copydata: Some(m_copydata),
    m_free: Some(m_free),
    rx_alloc: Some(rx_alloc),
    rx_append: Some(rx_append),
    rx_input: Some(rx_input),
};

fn init_module() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let mut incomplete = OPS;
        incomplete.rx_input = None;
        assert_eq!(unsafe { ptnet_rs_init(&incomplete) }, EINVAL, "a table with a hole is refused");
        assert_eq!(unsafe { ptnet_rs_init(std::ptr::null()) }, EINVAL);
        assert_eq!(unsafe { ptnet_rs_init(&OPS) }, 0);
    });
}

/// The softc pointer, shared with the interrupt handlers.
#[derive(Clone, Copy)]
struct Sc(*mut PtnetRsSoftc);
// SAFETY: the archive's entry points may be called from any thread (the
// kernel calls them from interrupt threads and taskqueues).
unsafe impl Send for Sc {}
unsafe impl Sync for Sc {}

/// VM 0 driven through the archive, VM 1 through the simulator's own
/// interface layer, on one switch.
struct Setup {
    world: World,
    dev: Box<Dev>,
    sc: Sc,
    /// Kernel memory blocks before attach.
    blocks: i64,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Setup {
    fn new() -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        init_module();
        let blocks = MEM_BLOCKS.load(Ordering::SeqCst);
        let driver = ptnet::Config { want_vnet_hdr: true, require_vnet_hdr: true };
        let mut world = World::boot(WorldConfig { driver, ..WorldConfig::default() });
        world.vms[1].attach(driver).unwrap();
        world.ifp(1).if_up().unwrap();
        let vm = &world.vms[0];
        let dev = Dev::new(vm);
        let mut sc = std::ptr::null_mut();
        let d = &*dev as *const Dev as *mut c_void;
        assert_eq!(unsafe { ptnet_rs_attach(d, vm.pci[0].msix_vectors, PTNET_RS_WANT_VNET_HDR, &mut sc) }, 0);
        let s = Setup { dev, sc: Sc(sc), world, blocks, _serial: serial };
        s.install_interrupts();
        s
    }

    fn install_interrupts(&self) {
        let sc = self.sc;
        let d = &*self.dev as *const Dev as usize;
        let mut info = PtnetRsInfo::default();
        assert_eq!(unsafe { ptnet_rs_info(sc.0, &mut info) }, 0);
        let ntx = info.num_tx_rings;
        for v in 0..info.num_tx_rings + info.num_rx_rings {
            self.world.vms[0].kernel.irq.set_handler(
                v,
                Some(Arc::new(move || {
                    let sc = sc;
                    // SAFETY: the device outlives its handlers (removed before detach).
                    let d = unsafe { &*(d as *const Dev) };
                    let (mut is_rx, mut ring) = (0, 0);
                    match unsafe { ptnet_rs_intr(sc.0, v, &mut is_rx, &mut ring) } {
                        PTNET_RS_INTR_TASK => {
                            let bit = if is_rx != 0 { ntx + ring } else { ring };
                            *d.tasks.lock().unwrap() |= 1 << bit;
                            d.kicked.notify_all();
                        }
                        PTNET_RS_INTR_NETMAP => {
                            d.netmap_wakeups.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                })),
            );
        }
    }

    fn info(&self) -> PtnetRsInfo {
        let mut info = PtnetRsInfo::default();
        assert_eq!(unsafe { ptnet_rs_info(self.sc.0, &mut info) }, 0);
        info
    }

    /// The taskqueue: runs pending ring tasks until `n` frames arrived.
    fn run_tasks_until(&self, n: usize) -> Vec<(Vec<u8>, PtnetRsRxInfo)> {
        let ntx = self.info().num_tx_rings;
        let end = Instant::now() + Duration::from_secs(5);
        while self.dev.received.lock().unwrap().len() < n && Instant::now() < end {
            let bits = {
                let g = self.dev.tasks.lock().unwrap();
                let (mut g, _) = self.dev.kicked.wait_timeout_while(g, Duration::from_millis(20), |b| *b == 0).unwrap();
                std::mem::take(&mut *g)
            };
            for bit in (0..64).filter(|b| bits & (1 << b) != 0) {
                if bit < ntx {
                    unsafe { ptnet_rs_tx_task(self.sc.0, bit) };
                } else {
                    while unsafe { ptnet_rs_rx_task(self.sc.0, bit - ntx, 64) } == 1 {}
                }
            }
        }
        std::mem::take(&mut *self.dev.received.lock().unwrap())
    }

    fn counters(&self) -> PtnetRsIfCounters {
        let mut c = PtnetRsIfCounters::default();
        assert_eq!(unsafe { ptnet_rs_counters(self.sc.0, &mut c) }, 0);
        c
    }

    /// Detaches and checks that nothing was left behind.
    fn detach(self) {
        let info = self.info();
        for v in 0..info.num_tx_rings + info.num_rx_rings {
            self.world.vms[0].kernel.irq.set_handler(v, None);
        }
        assert_eq!(unsafe { ptnet_rs_detach(self.sc.0) }, 0);
        assert_eq!(self.dev.os.dma_outstanding(), 0, "CSB memory leaked");
        assert!(self.dev.dma.lock().unwrap().is_empty());
        assert_eq!(self.dev.memdevs_held.load(Ordering::SeqCst), 0, "memdev not released");
        assert_eq!(MEM_BLOCKS.load(Ordering::SeqCst), self.blocks, "kernel memory leaked");
        assert!(self.dev.kernel.dmesg().iter().any(|l| l.contains("ptnet_rs0: detached")));
        self.world.shutdown().unwrap();
    }
}

fn payload(i: usize) -> Vec<u8> {
    (0..100 + i).map(|b| (b * 7 + i) as u8).collect()
}

#[test]
fn attach_transmit_receive_detach() {
    let s = Setup::new();
    let info = s.info();
    assert_eq!(info.mac, vm_mac(0));
    assert_eq!((info.num_tx_rings, info.num_rx_rings), (1, 1));
    assert!(info.vnet_hdr_len >= 10);
    let dmesg = s.dev.kernel.dmesg().join("\n");
    assert!(dmesg.contains("ptnet_rs0: Ethernet address 02:00:00:00:00:01"), "{dmesg}");
    assert_eq!(ptnet_rs_probe(0x1b36, 0x000d), 0);
    assert_ne!(ptnet_rs_probe(0x1b36, PCI_DEVICE_ID_MEMDEV), 0);

    let mut caps = PtnetRsCaps::default();
    assert_eq!(unsafe { ptnet_rs_caps(s.sc.0, &mut caps) }, 0);
    let supported = IfCap::from_bits_truncate(caps.supported);
    assert!(supported.contains(IfCap::TXCSUM | IfCap::TSO4 | IfCap::TSO6 | IfCap::LRO), "{supported:?}");
    assert!(CsumFlags::from_bits_truncate(caps.hwassist).contains(CsumFlags::IP_UDP));

    assert_eq!(unsafe { ptnet_rs_if_init(s.sc.0) }, 0);
    // Guest to peer: checksum offload requested, completed by the peer's path.
    let mbufs_before = MBUFS.load(Ordering::SeqCst);
    for i in 0..50 {
        let f = udp_frame(vm_mac(1), vm_mac(0), &payload(i));
        assert_eq!(unsafe { ptnet_rs_transmit(s.sc.0, mbuf(f, CsumFlags::IP_UDP)) }, 0);
    }
    let got = receive(s.world.ifp(1), 50);
    assert_eq!(got.len(), 50);
    for (i, f) in got.iter().enumerate() {
        assert!(f.data.ends_with(&payload(i)));
        let valid = f.info.csum_flags.contains(CsumFlags::L4_VALID) || l4_checksum_ok(&f.data);
        assert!(valid, "frame {i}: checksum neither offloaded nor right");
    }
    // Peer to guest: through the interrupt, the task and if_input.
    for i in 0..20 {
        let f = udp_frame(vm_mac(0), vm_mac(1), &payload(i));
        let req = TxRequest { csum_flags: CsumFlags::IP_UDP, ..TxRequest::default() };
        s.world.ifp(1).transmit(SimPacket::new(f, req)).unwrap();
    }
    let rx = s.run_tasks_until(20);
    assert_eq!(rx.len(), 20);
    for (i, (data, info)) in rx.iter().enumerate() {
        assert!(data.ends_with(&payload(i)));
        let flags = CsumFlags::from_bits_truncate(info.csum_flags);
        assert!(flags.contains(CsumFlags::L4_VALID) || l4_checksum_ok(data), "frame {i}: {flags:?}");
    }
    assert_eq!(MBUFS.load(Ordering::SeqCst), mbufs_before, "every mbuf was freed or handed up");
    let c = s.counters();
    assert_eq!((c.opackets, c.ipackets, c.oerrors, c.ierrors, c.oqdrops), (50, 20, 0, 0, 0));
    let mut q = PtnetRsQueueStats::default();
    assert_eq!(unsafe { ptnet_rs_queue_stats(s.sc.0, 0, 0, &mut q) }, 0);
    assert_eq!((q.packets, q.csum), (50, 50));
    assert!(q.syncs > 0 && q.kicks > 0);

    assert_eq!(unsafe { ptnet_rs_detach(s.sc.0) }, EBUSY, "the interface is up");
    assert_eq!(unsafe { ptnet_rs_if_stop(s.sc.0) }, 0);
    s.detach();
}

#[test]
fn netmap_clients_take_the_rings_from_the_stack() {
    let s = Setup::new();
    assert_eq!(unsafe { ptnet_rs_if_init(s.sc.0) }, 0);
    assert_eq!(unsafe { ptnet_rs_nm_register(s.sc.0, 1) }, 0);
    let mut k = PtnetRsKring::default();
    assert_eq!(unsafe { ptnet_rs_nm_kring(s.sc.0, 0, 0, &mut k) }, 0);
    assert_eq!(k.hwtail, (k.hwcur + k.num_slots - 1) % k.num_slots, "an empty TX ring: all slots but one free");

    // The stack's packets are refused and counted while netmap owns the rings.
    let f = udp_frame(vm_mac(1), vm_mac(0), &payload(0));
    assert_eq!(unsafe { ptnet_rs_transmit(s.sc.0, mbuf(f, CsumFlags::empty())) }, ENETDOWN);
    assert_eq!(s.counters().oqdrops, 1);

    // A frame from the peer wakes netmap, not the stack; an RX sync sees it.
    let mut rx = PtnetRsKring::default();
    assert_eq!(unsafe { ptnet_rs_nm_kring(s.sc.0, 1, 0, &mut rx) }, 0);
    let f = udp_frame(vm_mac(0), vm_mac(1), &payload(1));
    s.world.ifp(1).transmit(SimPacket::new(f, TxRequest::default())).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(unsafe { ptnet_rs_nm_sync(s.sc.0, 1, 0, &mut rx, 0) }, 0);
        if rx.hwtail != rx.hwcur || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!((rx.hwtail + rx.num_slots - rx.hwcur) % rx.num_slots, 1, "one frame for the netmap client");
    assert!(s.dev.netmap_wakeups.load(Ordering::SeqCst) > 0);
    assert!(s.dev.received.lock().unwrap().is_empty(), "nothing went to the stack");
    // A bad rhead from the application is refused.
    let mut bad = PtnetRsKring { rhead: rx.num_slots, ..rx };
    assert_eq!(unsafe { ptnet_rs_nm_sync(s.sc.0, 1, 0, &mut bad, 0) }, EINVAL);

    // Back to the stack.
    assert_eq!(unsafe { ptnet_rs_nm_register(s.sc.0, 0) }, 0);
    let f = udp_frame(vm_mac(1), vm_mac(0), &payload(2));
    assert_eq!(unsafe { ptnet_rs_transmit(s.sc.0, mbuf(f, CsumFlags::empty())) }, 0);
    assert_eq!(receive(s.world.ifp(1), 1).len(), 1);
    assert_eq!(unsafe { ptnet_rs_if_stop(s.sc.0) }, 0);
    s.detach();
}

#[test]
fn null_and_stale_arguments_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_module();
    let null = std::ptr::null_mut();
    unsafe {
        assert_eq!(ptnet_rs_if_init(null), EINVAL);
        assert_eq!(ptnet_rs_detach(null), EINVAL);
        assert_eq!(ptnet_rs_transmit(null, std::ptr::null_mut()), EINVAL);
        assert_eq!(ptnet_rs_attach(null.cast(), 2, 0, std::ptr::null_mut()), EINVAL);
        assert_eq!(ptnet_rs_rx_task(null, 0, 64), 0);
        ptnet_rs_qflush(null);
    }
    // A transmit with no device still frees the mbuf.
    let before = MBUFS.load(Ordering::SeqCst);
    let m = mbuf(vec![0; 60], CsumFlags::empty());
    assert_eq!(unsafe { ptnet_rs_transmit(null, m) }, EINVAL);
    assert_eq!(MBUFS.load(Ordering::SeqCst), before);
}

#[test]
fn attach_without_memory_fails_cleanly_and_works_once_memory_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_module();
    let world = World::boot(WorldConfig::default());
    let vm = &world.vms[0];
    let dev = Dev::new(vm);
    let d = &*dev as *const Dev as *mut c_void;
    let blocks = MEM_BLOCKS.load(Ordering::SeqCst);
    // The shim reports the errno; the core also names the CSB.
    for (what, says) in [(FAIL_DMA, Some("CSB")), (FAIL_MALLOC, None)] {
        FAIL.store(what, Ordering::SeqCst);
        let mut sc = std::ptr::null_mut();
        let err = unsafe { ptnet_rs_attach(d, vm.pci[0].msix_vectors, 0, &mut sc) };
        FAIL.store(0, Ordering::SeqCst);
        assert_eq!((err, sc.is_null()), (ENOMEM, true), "no memory: ENOMEM, no softc");
        assert_eq!(dev.os.dma_outstanding(), 0, "CSB memory leaked");
        assert_eq!(dev.memdevs_held.load(Ordering::SeqCst), 0, "memdev not released");
        assert_eq!(MEM_BLOCKS.load(Ordering::SeqCst), blocks, "kernel memory leaked");
        if let Some(says) = says {
            assert!(dev.kernel.dmesg().iter().any(|l| l.contains("attach failed") && l.contains(says)));
        }
    }
    // Memory is back: the same device attaches and detaches.
    let mut sc = std::ptr::null_mut();
    assert_eq!(unsafe { ptnet_rs_attach(d, vm.pci[0].msix_vectors, 0, &mut sc) }, 0);
    assert_eq!(unsafe { ptnet_rs_detach(sc) }, 0);
    assert_eq!((dev.os.dma_outstanding(), MEM_BLOCKS.load(Ordering::SeqCst)), (0, blocks));
}

#[test]
fn frames_without_mbufs_are_dropped_and_counted_and_reception_recovers() {
    let s = Setup::new();
    assert_eq!(unsafe { ptnet_rs_if_init(s.sc.0) }, 0);
    let send = |n: usize| {
        for i in 0..n {
            let f = udp_frame(vm_mac(0), vm_mac(1), &payload(i));
            s.world.ifp(1).transmit(SimPacket::new(f, TxRequest::default())).unwrap();
        }
    };
    FAIL.store(FAIL_MBUF, Ordering::SeqCst);
    send(30);
    let got = s.run_tasks_until(30);
    FAIL.store(0, Ordering::SeqCst);
    assert!(got.is_empty(), "no mbuf, no frame");
    let c = s.counters();
    assert_eq!((c.iqdrops, c.ipackets, c.ierrors), (30, 0, 0), "each frame dropped and counted");
    // Mbufs are back: the ring was released, frames flow again.
    send(20);
    let got = s.run_tasks_until(20);
    assert_eq!(got.len(), 20);
    assert!(got.iter().enumerate().all(|(i, (d, _))| d.ends_with(&payload(i))));
    assert_eq!(s.counters().ipackets, 20);
    assert_eq!(MBUFS.load(Ordering::SeqCst), 0, "no mbuf leaked");
    assert_eq!(unsafe { ptnet_rs_if_stop(s.sc.0) }, 0);
    s.detach();
}
