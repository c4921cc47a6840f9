//! The simulated guest kernel's side of the driver's C ABI: the table of
//! kernel services (`PtnetShimOps`) that `kmod/ptnet_shim.c` implements
//! over FreeBSD, implemented here over the simulated VM. The driver runs
//! exactly as the kernel module does: the archive's `ptnet_rs_*` entry
//! points (crate `ptnet-ffi`, the code that ships) call back through this
//! table for registers, memory, mutexes, mbufs, taps and tasks.
//!
//! mbufs are boxed [`SimMbuf`]s; a frame the driver hands up goes to the
//! input queue of the thread running the interface's task (the netisr it
//! would reach), [`with_input`].

use super::ifnet::{InputQueue, RxFrame, SimPacket};
use super::kernel::GuestOs;
use super::wait::Vcpu;
use crate::hv::{Mmio, PciFunction};
use lock_api::RawMutex as _;
use ptnet::abi::csb::{NmCsbAtok, NmCsbKtoa, CSB_ENTRY_SIZE};
use ptnet::abi::regs::{kick_reg, memdev as mreg, ptnet as reg, PCI_DEVICE_ID_MEMDEV, PCI_VENDOR_ID};
use ptnet::net::caps::CsumFlags;
use ptnet::net::frame::FrameInfo;
use ptnet::os::{DmaMemory, Kernel};
use ptnet_ffi::{Mbuf, PtnetRsMemdev, PtnetRsPktInfo, PtnetRsRxInfo, PtnetShimOps};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

/// Kernel allocators that fail while their bit is set in [`FAIL`]: the
/// tests' way of running the guest out of memory.
pub static FAIL: AtomicU32 = AtomicU32::new(0);
/// `m_getm2` fails.
pub const FAIL_MBUF: u32 = 1;
/// `contigmalloc` fails.
pub const FAIL_DMA: u32 = 2;
/// `malloc` fails.
pub const FAIL_MALLOC: u32 = 4;

fn failing(what: u32) -> bool {
    FAIL.load(Ordering::Relaxed) & what != 0
}

/// Kernel memory (`malloc`) blocks and bytes the driver holds, process
/// wide (`vmstat -m`).
static MALLOC_BLOCKS: AtomicI64 = AtomicI64::new(0);
static MALLOC_BYTES: AtomicI64 = AtomicI64::new(0);

/// Blocks and bytes of kernel memory the drivers hold now.
pub fn malloc_outstanding() -> (i64, i64) {
    (MALLOC_BLOCKS.load(Ordering::Relaxed), MALLOC_BYTES.load(Ordering::Relaxed))
}

/// mbufs alive (allocated and not freed), process wide: the packet ledger
/// (`vmstat -z | grep mbuf`).
static LIVE_MBUFS: AtomicI64 = AtomicI64::new(0);

/// mbufs alive now.
pub fn live_mbufs() -> i64 {
    LIVE_MBUFS.load(Ordering::Relaxed)
}

/// An mbuf chain: one buffer, its packet header, the packet list link.
pub struct SimMbuf {
    /// The bytes.
    pub data: Vec<u8>,
    /// On transmit: the stack's offload request and header fields.
    pub pkt: PtnetRsPktInfo,
    /// On receive: what the driver set before `if_input`.
    pub rx: PtnetRsRxInfo,
    next: *mut SimMbuf,
}

impl SimMbuf {
    fn boxed(data: Vec<u8>, pkt: PtnetRsPktInfo) -> *mut Mbuf {
        LIVE_MBUFS.fetch_add(1, Ordering::Relaxed);
        let m = Box::new(SimMbuf { data, pkt, rx: PtnetRsRxInfo::default(), next: std::ptr::null_mut() });
        Box::into_raw(m).cast()
    }

    /// A packet from the stack, as `if_transmit` gets it.
    pub fn from_packet(p: SimPacket) -> *mut Mbuf {
        let r = p.req;
        let pkt = PtnetRsPktInfo {
            len: p.data.len() as u32,
            csum_flags: r.csum_flags.bits(),
            mss: r.tso_segsz,
            vlan_tag: r.vlan.unwrap_or(0),
            has_vlan: u8::from(r.vlan.is_some()),
            has_flowid: u8::from(r.flowid.is_some()),
            flowid: r.flowid.unwrap_or(0),
        };
        Self::boxed(p.data, pkt)
    }

    /// # Safety
    /// `m` came from [`SimMbuf::boxed`] and is not used afterwards.
    unsafe fn free(m: *mut Mbuf) {
        if !m.is_null() {
            LIVE_MBUFS.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: per the contract above.
            drop(unsafe { Box::from_raw(m.cast::<SimMbuf>()) });
        }
    }
}

/// What the simulated kernel keeps for one ptnet device (the shim's
/// softc): its PCI functions, its memory ledgers, its task queue.
pub struct ShimDev {
    /// Interface name (`ptnet0`).
    pub name: String,
    /// Kernel services, with the DMA ledger.
    pub os: GuestOs,
    io: Arc<dyn Mmio>,
    pci: Vec<PciFunction>,
    /// Memdev references the driver holds.
    pub memdevs_held: AtomicI64,
    /// Rings (by number, TX first) whose task is pending.
    pub pending: AtomicU64,
    /// The guest CPU that runs the tasks.
    pub vcpu: Vcpu,
    /// Packets shown to BPF (`tcpdump` would see them).
    pub bpf_taps: AtomicU64,
    /// Frames handed up with no stack reading (dropped).
    pub no_stack: AtomicU64,
    num_tx_rings: AtomicU32,
}

impl ShimDev {
    /// The CSB entries of ring `id` (TX rings first), where the driver
    /// told the device they are (`CSB_GH_BA*`, `CSB_HG_BA*`).
    pub fn csb_entries(&self, id: u32) -> Option<(*mut NmCsbAtok, *mut NmCsbKtoa)> {
        let addr = |hi, lo| (u64::from(self.io.read32(hi)) << 32) | u64::from(self.io.read32(lo));
        let off = u64::from(id) * CSB_ENTRY_SIZE as u64;
        let mem = &self.os.kernel.mem;
        let atok = mem.region(addr(reg::CSB_GH_BAH, reg::CSB_GH_BAL) + off, CSB_ENTRY_SIZE)?;
        let ktoa = mem.region(addr(reg::CSB_HG_BAH, reg::CSB_HG_BAL) + off, CSB_ENTRY_SIZE)?;
        Some((atok.as_ptr().cast(), ktoa.as_ptr().cast()))
    }

    /// Kicks ring `id` (TX rings first) as the C driver's `ptnet_kick`
    /// does: a write to its kick register.
    pub fn kick(&self, id: u32) {
        if let Some(r) = kick_reg(id) {
            self.io.write32(r, 0);
        }
    }

    /// The shim's state for the ptnet function `nic` among `pci`.
    pub fn new(os: GuestOs, nic: &PciFunction, pci: &[PciFunction]) -> Box<Self> {
        Box::new(Self {
            name: os.dev.clone(),
            os,
            io: nic.io.clone(),
            pci: pci.to_vec(),
            memdevs_held: AtomicI64::new(0),
            pending: AtomicU64::new(0),
            vcpu: Vcpu::default(),
            bpf_taps: AtomicU64::new(0),
            no_stack: AtomicU64::new(0),
            num_tx_rings: AtomicU32::new(0),
        })
    }

    /// Rings of each direction, once attached (for task bits).
    pub fn set_tx_rings(&self, n: u32) {
        self.num_tx_rings.store(n, Ordering::Relaxed);
    }

    /// The handle the archive gets as `dev`.
    pub fn handle(&self) -> *mut c_void {
        (self as *const Self).cast_mut().cast()
    }

    /// Marks ring `id`'s task pending and wakes the guest CPU.
    pub fn schedule(&self, id: u32) {
        self.pending.fetch_or(1 << id, Ordering::AcqRel);
        self.vcpu.wake();
    }
}

/// # Safety
/// `d` is a [`ShimDev::handle`] of a live device.
unsafe fn dev<'a>(d: *mut c_void) -> &'a ShimDev {
    // SAFETY: per the contract above.
    unsafe { &*d.cast::<ShimDev>() }
}

thread_local! {
    /// The stack's input queue of the thread running an interface task.
    static INPUT: Cell<*mut InputQueue> = const { Cell::new(std::ptr::null_mut()) };
}

/// Runs `f` with `q` as the stack input of this thread: frames the driver
/// hands up during `f` land there.
pub fn with_input<R>(q: &mut InputQueue, f: impl FnOnce() -> R) -> R {
    let prev = INPUT.with(|c| c.replace(q));
    let r = f();
    INPUT.with(|c| c.set(prev));
    r
}

fn input_queue<'a>() -> Option<&'a mut InputQueue> {
    let p = INPUT.with(Cell::get);
    // SAFETY: set by `with_input` on this thread for the duration of a
    // call that holds the `&mut InputQueue`; cleared when it returns.
    unsafe { p.as_mut() }
}

unsafe extern "C" fn bar_read4(d: *mut c_void, off: u32) -> u32 {
    // SAFETY: the archive passes back our handle.
    unsafe { dev(d) }.io.read32(off)
}

unsafe extern "C" fn bar_write4(d: *mut c_void, off: u32, val: u32) {
    // SAFETY: as above.
    unsafe { dev(d) }.io.write32(off, val)
}

unsafe extern "C" fn memdev_find(d: *mut c_void, memid: u32, out: *mut PtnetRsMemdev) -> c_int {
    // SAFETY: as above.
    let d = unsafe { dev(d) };
    let found = d
        .pci
        .iter()
        .find(|f| f.vendor == PCI_VENDOR_ID && f.device == PCI_DEVICE_ID_MEMDEV && f.io.read32(mreg::MEMID) == memid);
    let Some((f, mem)) = found.and_then(|f| Some((f, f.mem_bar?))) else { return 6 };
    let handle: Box<Arc<dyn Mmio>> = Box::new(f.io.clone());
    d.memdevs_held.fetch_add(1, Ordering::Relaxed);
    let m = PtnetRsMemdev { handle: Box::into_raw(handle).cast(), base: mem.as_ptr(), size: mem.len() as u64 };
    // SAFETY: the archive passes a valid out-pointer.
    unsafe { out.write(m) };
    0
}

unsafe extern "C" fn memdev_read4(h: *mut c_void, off: u32) -> u32 {
    // SAFETY: `h` is a handle `memdev_find` made.
    unsafe { &*h.cast::<Arc<dyn Mmio>>() }.read32(off)
}

unsafe extern "C" fn memdev_release(d: *mut c_void, m: *const PtnetRsMemdev) {
    // SAFETY: our handle, and a memdev `memdev_find` returned, given back once.
    let d = unsafe { dev(d) };
    drop(unsafe { Box::from_raw((*m).handle.cast::<Arc<dyn Mmio>>()) });
    d.memdevs_held.fetch_sub(1, Ordering::Relaxed);
}

/// DMA memory handed out, by kernel address, to find it again at free.
static DMA: Mutex<Option<HashMap<usize, DmaMemory>>> = Mutex::new(None);

unsafe extern "C" fn dma_alloc(d: *mut c_void, size: usize, align: usize, paddr: *mut u64) -> *mut c_void {
    // SAFETY: our handle.
    let d = unsafe { dev(d) };
    if failing(FAIL_DMA) {
        return std::ptr::null_mut();
    }
    let Some(m) = d.os.alloc_dma(size, align) else { return std::ptr::null_mut() };
    // SAFETY: a valid out-pointer from the archive.
    unsafe { paddr.write(m.paddr) };
    DMA.lock().unwrap().get_or_insert_with(HashMap::new).insert(m.region.as_ptr() as usize, m);
    m.region.as_ptr().cast()
}

unsafe extern "C" fn dma_free(d: *mut c_void, va: *mut c_void, _size: usize) {
    // SAFETY: our handle.
    let d = unsafe { dev(d) };
    let m = DMA.lock().unwrap().as_mut().and_then(|t| t.remove(&(va as usize)));
    match m {
        Some(m) => d.os.free_dma(m),
        None => d.os.kernel.printf(format!("{}: free of unknown DMA memory {va:p}", d.name)),
    }
}

/// A `malloc` block's size lives in front of it.
const MALLOC_HDR: usize = 16;

unsafe extern "C" fn mem_alloc(size: usize) -> *mut c_void {
    if failing(FAIL_MALLOC) {
        return std::ptr::null_mut();
    }
    // SAFETY: calloc of a non-zero size; NULL is handled.
    let p = unsafe { libc::calloc(1, size + MALLOC_HDR) }.cast::<u8>();
    if p.is_null() {
        return std::ptr::null_mut();
    }
    MALLOC_BLOCKS.fetch_add(1, Ordering::Relaxed);
    MALLOC_BYTES.fetch_add(size as i64, Ordering::Relaxed);
    // SAFETY: the block is `size + MALLOC_HDR` bytes, 16-aligned.
    unsafe {
        p.cast::<usize>().write(size);
        p.add(MALLOC_HDR).cast()
    }
}

unsafe extern "C" fn mem_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: `p` came from `mem_alloc`, its header in front of it.
    unsafe {
        let base = p.cast::<u8>().sub(MALLOC_HDR);
        let size = base.cast::<usize>().read();
        MALLOC_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        MALLOC_BYTES.fetch_sub(size as i64, Ordering::Relaxed);
        libc::free(base.cast());
    }
}

/// A sleep mutex with its owner, so that releasing a mutex the thread
/// does not hold fails as WITNESS makes it fail (`kern_mutex.c`,
/// `__mtx_unlock_flags`: "mutex not owned"), instead of silently
/// releasing another thread's.
struct SimMtx {
    raw: parking_lot::RawMutex,
    owner: AtomicU64,
}

thread_local! {
    static TID: u64 = NEXT_TID.fetch_add(1, Ordering::Relaxed);
}
static NEXT_TID: AtomicU64 = AtomicU64::new(1);

fn tid() -> u64 {
    TID.with(|t| *t)
}

fn sim_mtx<'a>(m: *mut c_void) -> &'a SimMtx {
    // SAFETY: the archive passes mutexes from `mtx_new`, alive until
    // `mtx_free`.
    unsafe { &*m.cast::<SimMtx>() }
}

unsafe extern "C" fn mtx_new(_d: *mut c_void, _name: *const c_char) -> *mut c_void {
    if failing(FAIL_MALLOC) {
        return std::ptr::null_mut();
    }
    Box::into_raw(Box::new(SimMtx { raw: parking_lot::RawMutex::INIT, owner: AtomicU64::new(0) })).cast()
}

unsafe extern "C" fn mtx_free(m: *mut c_void) {
    assert_eq!(sim_mtx(m).owner.load(Ordering::Acquire), 0, "mtx_destroy of a held mutex");
    // SAFETY: from `mtx_new`, freed once, not held.
    drop(unsafe { Box::from_raw(m.cast::<SimMtx>()) });
}

unsafe extern "C" fn mtx_lock(m: *mut c_void) {
    let m = sim_mtx(m);
    assert_ne!(m.owner.load(Ordering::Acquire), tid(), "mtx_lock: recursed on a non-recursive mutex");
    m.raw.lock();
    m.owner.store(tid(), Ordering::Release);
}

unsafe extern "C" fn mtx_trylock(m: *mut c_void) -> c_int {
    let m = sim_mtx(m);
    let ok = m.raw.try_lock();
    if ok {
        m.owner.store(tid(), Ordering::Release);
    }
    c_int::from(ok)
}

unsafe extern "C" fn mtx_unlock(m: *mut c_void) {
    let m = sim_mtx(m);
    assert_eq!(m.owner.load(Ordering::Acquire), tid(), "mtx_unlock: mutex not owned");
    m.owner.store(0, Ordering::Release);
    // SAFETY: this thread holds it (checked above).
    unsafe { m.raw.unlock() };
}

unsafe extern "C" fn log(d: *mut c_void, level: c_int, msg: *const u8, len: usize) {
    // SAFETY: `msg` is valid for `len` bytes during the call.
    let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg, len) });
    let tag = ["error: ", "warning: ", ""].get(level as usize).copied().unwrap_or("error: ");
    if d.is_null() {
        eprintln!("ptnet: {tag}{text}");
    } else {
        // SAFETY: our handle.
        let d = unsafe { dev(d) };
        d.os.kernel.printf(format!("{}: {tag}{text}", d.name));
    }
}

unsafe extern "C" fn panic(msg: *const u8, len: usize) {
    // SAFETY: as in `log`.
    let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg, len) });
    panic!("guest kernel panic: {text}");
}

unsafe extern "C" fn m_info(m: *mut Mbuf, out: *mut PtnetRsPktInfo) {
    // SAFETY: a chain of ours; a valid out-pointer.
    unsafe { out.write((*m.cast::<SimMbuf>()).pkt) };
}

unsafe extern "C" fn m_copydata(m: *mut Mbuf, off: u32, len: u32, dst: *mut u8) -> c_int {
    // SAFETY: a chain of ours.
    let data = unsafe { &(*m.cast::<SimMbuf>()).data };
    match data.get(off as usize..off as usize + len as usize) {
        Some(src) => {
            // SAFETY: the archive provides `len` writable bytes at `dst`.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
            0
        }
        None => 22,
    }
}

unsafe extern "C" fn m_free(m: *mut Mbuf) {
    // SAFETY: the archive frees each chain once.
    unsafe { SimMbuf::free(m) };
}

unsafe extern "C" fn tx_tap(d: *mut c_void, _m: *mut Mbuf) {
    // SAFETY: our handle.
    unsafe { dev(d) }.bpf_taps.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn task_enqueue(d: *mut c_void, is_rx: u32, ring: u32) {
    // SAFETY: our handle.
    let d = unsafe { dev(d) };
    let base = if is_rx != 0 { d.num_tx_rings.load(Ordering::Relaxed) } else { 0 };
    d.schedule(base + ring);
}

unsafe extern "C" fn rx_alloc(_d: *mut c_void, len: u32) -> *mut Mbuf {
    let room = input_queue().is_some_and(|q| q.has_room());
    if failing(FAIL_MBUF) || !room {
        return std::ptr::null_mut();
    }
    SimMbuf::boxed(Vec::with_capacity(len as usize), PtnetRsPktInfo::default())
}

unsafe extern "C" fn rx_append(m: *mut Mbuf, src: *const u8, len: u32) -> c_int {
    // SAFETY: a chain of ours; `src` valid for `len` bytes.
    unsafe { (*m.cast::<SimMbuf>()).data.extend_from_slice(std::slice::from_raw_parts(src, len as usize)) };
    0
}

unsafe extern "C" fn rx_finish(_d: *mut c_void, m: *mut Mbuf, info: *const PtnetRsRxInfo, prev: *mut Mbuf) {
    // SAFETY: chains of ours; `info` valid for the call.
    unsafe {
        (*m.cast::<SimMbuf>()).rx = *info;
        if !prev.is_null() {
            (*prev.cast::<SimMbuf>()).next = m.cast();
        }
    }
}

unsafe extern "C" fn rx_input(d: *mut c_void, m: *mut Mbuf) {
    // SAFETY: our handle.
    let d = unsafe { dev(d) };
    let mut m = m.cast::<SimMbuf>();
    while !m.is_null() {
        // SAFETY: the list is ours, each frame freed once.
        let b = unsafe { Box::from_raw(m) };
        LIVE_MBUFS.fetch_sub(1, Ordering::Relaxed);
        m = b.next;
        let r = b.rx;
        let info = FrameInfo {
            csum_flags: CsumFlags::from_bits_truncate(r.csum_flags),
            csum_data: r.csum_value,
            lro_segsz: r.lro_mss,
            lro_nsegs: r.lro_segs,
        };
        match input_queue() {
            Some(q) => q.push(RxFrame { data: b.data, info }),
            None => {
                d.no_stack.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The table, registered with the archive once per process (module load).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ops = PtnetShimOps {
            bar_read4: Some(bar_read4),
            bar_write4: Some(bar_write4),
            memdev_find: Some(memdev_find),
            memdev_read4: Some(memdev_read4),
            memdev_release: Some(memdev_release),
            dma_alloc: Some(dma_alloc),
            dma_free: Some(dma_free),
            mem_alloc: Some(mem_alloc),
            mem_free: Some(mem_free),
            mtx_new: Some(mtx_new),
            mtx_free: Some(mtx_free),
            mtx_lock: Some(mtx_lock),
            mtx_trylock: Some(mtx_trylock),
            mtx_unlock: Some(mtx_unlock),
            log: Some(log),
            panic: Some(panic),
            m_info: Some(m_info),
            m_copydata: Some(m_copydata),
            m_free: Some(m_free),
            tx_tap: Some(tx_tap),
            task_enqueue: Some(task_enqueue),
            rx_alloc: Some(rx_alloc),
            rx_append: Some(rx_append),
            rx_finish: Some(rx_finish),
            rx_input: Some(rx_input),
        };
        // SAFETY: a complete table, valid for the call.
        let rc = unsafe { ptnet_ffi::ptnet_rs_init(&ops) };
        assert_eq!(rc, 0, "the archive refused the simulated kernel's services");
    });
}
