//! What the harness lends its kernel (`struct hk_host` in
//! `tests/harness/hk.h`): memory, guest-physical memory from the VM,
//! mbuf pages, locks and sleeps, kernel threads with their `%gs`, the
//! clock, the VM's interrupts, the console, the network stack's other
//! end, the kernel environment. One kernel per process: the state is a
//! process-wide singleton, as a kernel's is.

use super::elf::Image;
use super::pool::MbufPages;
use super::sync::{RawCond, RawLock};
use super::trap::PANIC_EXIT;
use ptnet::net::caps::CsumFlags;
use ptnet::net::frame::FrameInfo;
use ptnet_host_sim::guest::ifnet::RxFrame;
use ptnet_host_sim::guest::kernel::GuestKernel;
use ptnet_host_sim::guest_mem::GuestPages;
use ptnet_host_sim::hv::Mmio;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// `struct hk_pkt`: a packet's metadata between the stack and the kernel.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct HkPkt {
    /// `csum_flags`.
    pub csum_flags: u32,
    /// `csum_data`.
    pub csum_data: u32,
    /// `flowid`.
    pub flowid: u32,
    /// `tso_segsz` (the same field as `lro_nsegs` in FreeBSD).
    pub tso_segsz: u16,
    /// `lro_nsegs`.
    pub lro_nsegs: u16,
    /// `ether_vtag`.
    pub vtag: u16,
    /// `M_HASHTYPE_GET()`.
    pub hashtype: u8,
    /// `M_VLANTAG`.
    pub has_vlan: u8,
    /// mbufs in the chain.
    pub nsegs: u32,
}

/// A received frame and what its mbufs said.
#[derive(Debug, Clone)]
pub struct Received {
    /// The frame and its checksum state, as the stack uses it.
    pub frame: RxFrame,
    /// The mbuf metadata.
    pub meta: HkPkt,
}

/// A kernel thread's entry point.
pub type ThreadFn = extern "C" fn(*mut c_void);

/// The C side's thread-state constructor and destructor.
pub struct TdFns {
    /// `hk_td_create(name)`: the thread's `struct pcpu`.
    pub create: extern "C" fn(*const c_char) -> *mut c_void,
    /// `hk_td_destroy(pcpu)`.
    pub destroy: extern "C" fn(*mut c_void),
}

/// Failures to inject.
#[derive(Default)]
pub struct Faults {
    /// Fails the n-th `M_NOWAIT` allocation from now (0: the next one);
    /// negative: none.
    pub nowait_countdown: AtomicI64,
    /// `M_NOWAIT` allocations seen (to size a sweep).
    pub nowait_seen: AtomicU64,
    /// Every mbuf allocation fails.
    pub mbufs: AtomicBool,
}

/// Per interface: frames `if_input` delivered, waiting for the stack.
#[derive(Default)]
pub struct RxQueues {
    /// By interface name.
    pub frames: Mutex<HashMap<String, VecDeque<Received>>>,
    /// Signalled on each delivery.
    pub cv: Condvar,
    /// Deliveries so far (the idle token).
    pub seq: AtomicU64,
}

/// The process's kernel host.
pub struct Host {
    boot: Instant,
    /// The VM whose kernel this is.
    pub vm: Arc<GuestKernel>,
    ports: Vec<(u16, u16, Arc<dyn Mmio>)>,
    dma: Mutex<Vec<(u64, GuestPages)>>,
    /// mbuf and cluster pages.
    pub pool: MbufPages,
    /// The kernel and the loaded modules (symbolization, I/O exits).
    pub images: RwLock<Vec<Arc<Image>>>,
    dmesg: Mutex<(Vec<String>, String)>,
    echo: bool,
    /// The kernel environment (loader.conf tunables).
    pub kenv: Mutex<HashMap<String, i32>>,
    /// Failure injection.
    pub faults: Faults,
    /// What `if_input` delivered.
    pub rx: RxQueues,
    /// Packets BPF saw.
    pub bpf_taps: AtomicU64,
    /// Set once the kernel is loaded.
    pub td: OnceLock<TdFns>,
}

static STATE: OnceLock<Host> = OnceLock::new();

/// The host (after [`init`]).
pub fn state() -> &'static Host {
    STATE.get().expect("harness kernel booted")
}

/// Sets up the host for `vm`, its I/O BARs at `ports` (base, size, device).
pub fn init(vm: Arc<GuestKernel>, ports: Vec<(u16, u16, Arc<dyn Mmio>)>, echo: bool) -> &'static Host {
    let h = Host {
        boot: Instant::now(),
        vm,
        ports,
        dma: Mutex::default(),
        pool: MbufPages::default(),
        images: RwLock::default(),
        dmesg: Mutex::default(),
        echo,
        kenv: Mutex::default(),
        faults: Faults { nowait_countdown: AtomicI64::new(-1), ..Faults::default() },
        rx: RxQueues::default(),
        bpf_taps: AtomicU64::new(0),
        td: OnceLock::new(),
    };
    assert!(STATE.set(h).is_ok(), "one harness kernel per process");
    state()
}

impl Host {
    /// The console so far, line by line.
    pub fn dmesg(&self) -> Vec<String> {
        self.dmesg.lock().unwrap().0.clone()
    }

    /// Guest-physical allocations outstanding.
    pub fn dma_outstanding(&self) -> usize {
        self.dma.lock().unwrap().len()
    }

    /// Seconds since boot, as the kernel's uptime.
    pub fn uptime(&self) -> Duration {
        self.boot.elapsed()
    }
}

/// `function+0xoff (file)` for a code address, or the bare address.
pub fn symbolize(addr: u64) -> String {
    if let Some(h) = STATE.get() {
        if let Ok(imgs) = h.images.try_read() {
            for i in imgs.iter() {
                if let Some(s) = i.symbolize(addr) {
                    return format!("{s} ({})", i.name);
                }
            }
        }
    }
    format!("{addr:#x}")
}

/// Whether `rip` is in loaded kernel or module code.
pub fn in_kernel_code(rip: u64) -> bool {
    STATE.get().and_then(|h| h.images.try_read().ok()).is_some_and(|imgs| imgs.iter().any(|i| i.contains(rip)))
}

fn port_dev(port: u16) -> Option<(&'static Arc<dyn Mmio>, u32)> {
    let h = STATE.get()?;
    h.ports.iter().find(|(b, s, _)| (*b..b + s).contains(&port)).map(|(b, _, d)| (d, u32::from(port - b)))
}

/// An `in` of `size` bytes from `port` (0xff.. for no device, as a bus does).
pub fn port_read(port: u16, size: u32) -> u32 {
    let Some((dev, off)) = port_dev(port) else { return u32::MAX };
    let v = dev.read32(off & !3) >> ((off & 3) * 8);
    match size {
        1 => v & 0xff,
        2 => v & 0xffff,
        _ => v,
    }
}

/// An `out` of `size` bytes to `port` (only 32-bit registers exist).
pub fn port_write(port: u16, size: u32, val: u32) {
    if let Some((dev, off)) = port_dev(port) {
        if size == 4 && off & 3 == 0 {
            dev.write32(off, val);
        }
    }
}

/// Reads a word of this process's memory without faulting.
fn peek(addr: u64) -> Option<u64> {
    let mut v = 0u64;
    let local = libc::iovec { iov_base: (&mut v as *mut u64).cast(), iov_len: 8 };
    let remote = libc::iovec { iov_base: addr as *mut c_void, iov_len: 8 };
    // SAFETY: process_vm_readv on our own pid reports bad addresses as
    // EFAULT instead of faulting; both iovecs are valid.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == 8).then_some(v)
}

/// A kernel panic: the message, the thread, the frame-pointer backtrace
/// through kernel and module code, and the process exits.
pub fn die(msg: &str, mut rbp: u64) -> ! {
    let mut out = format!("panic: {msg}\n");
    out += &format!("cpuid = 0; thread {}\n", std::thread::current().name().unwrap_or("?"));
    out += "KDB: stack backtrace:\n";
    for _ in 0..24 {
        let (Some(next), Some(ret)) = (peek(rbp), peek(rbp.wrapping_add(8))) else { break };
        if !in_kernel_code(ret) {
            break;
        }
        out += &format!("#  {}\n", symbolize(ret));
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    let _ = std::io::stderr().write_all(out.as_bytes());
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends the process without running anything else (a
    // panicked kernel must not run its destructors).
    unsafe { libc::_exit(PANIC_EXIT) }
}

thread_local! {
    static TD: Cell<usize> = const { Cell::new(0) };
}

/// Gives the calling thread kernel thread state and points `%gs` at its
/// `struct pcpu`, once (curthread works from here on).
pub fn enter_thread(name: &str) {
    if TD.with(|t| t.get()) != 0 {
        return;
    }
    let td = state().td.get().expect("kernel loaded");
    let c = CString::new(name).unwrap_or_default();
    let pc = (td.create)(c.as_ptr());
    const ARCH_SET_GS: libc::c_long = 0x1001;
    // SAFETY: sets this thread's GS base to the pcpu the kernel allocated
    // (it lives until the thread ends); nothing else here uses GS.
    let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, pc as u64) };
    assert_eq!(rc, 0, "arch_prctl(ARCH_SET_GS)");
    TD.with(|t| t.set(pc as usize));
}

/// Ends what [`enter_thread`] began (a kernel thread's exit).
fn leave_thread() {
    let pc = TD.with(|t| t.replace(0));
    if pc != 0 {
        (state().td.get().expect("kernel loaded").destroy)(pc as *mut c_void);
    }
}

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the kernel passes NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

// ---- The table. ----

extern "C" fn h_console(buf: *const c_char, len: usize) {
    // SAFETY: the kernel passes `len` valid bytes.
    let s = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }).into_owned();
    let h = state();
    let mut g = h.dmesg.lock().unwrap();
    g.1 += &s;
    while let Some(i) = g.1.find('\n') {
        let line: String = g.1.drain(..=i).collect();
        let line = line.trim_end_matches('\n').to_string();
        if h.echo {
            eprintln!("[kernel] {line}");
        }
        g.0.push(line);
    }
}

extern "C" fn h_panic(msg: *const c_char, len: usize, caller: *const c_void, frame: *const c_void) {
    // SAFETY: as h_console.
    let m = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) }).into_owned();
    let at = if caller.is_null() { String::new() } else { format!("\ncaller {}", symbolize(caller as u64)) };
    die(&format!("{m}{at}"), frame as u64);
}

/// Whether an M_NOWAIT request made from `caller` fails: only the
/// module's own requests are counted and failed (the kernel's would
/// panic in places, as FreeBSD's ifmedia_add() does).
fn nowait_fails(caller: *const c_void) -> bool {
    if caller.is_null() {
        return false;
    }
    let h = state();
    let in_module = h.images.try_read().is_ok_and(|i| i.iter().skip(1).any(|m| m.contains(caller as u64)));
    if !in_module {
        return false;
    }
    h.faults.nowait_seen.fetch_add(1, Ordering::Relaxed);
    h.faults.nowait_countdown.fetch_sub(1, Ordering::AcqRel) == 0
}

extern "C" fn h_alloc(size: usize, nowait_caller: *const c_void) -> *mut c_void {
    if nowait_fails(nowait_caller) {
        return std::ptr::null_mut();
    }
    // SAFETY: calloc of a non-zero size; null only when memory is out.
    unsafe { libc::calloc(1, size.max(1)) }
}

extern "C" fn h_release(p: *mut c_void) {
    // SAFETY: `p` came from h_alloc (calloc).
    unsafe { libc::free(p) }
}

extern "C" fn h_dma_alloc(size: usize, align: usize, paddr: *mut u64, nowait_caller: *const c_void) -> *mut c_void {
    if nowait_fails(nowait_caller) {
        return std::ptr::null_mut();
    }
    let h = state();
    let Some(pages) = h.vm.mem.alloc(size, align) else { return std::ptr::null_mut() };
    let Some(region) = h.vm.mem.region(pages.gpa, pages.len) else { return std::ptr::null_mut() };
    let va = region.as_ptr() as u64;
    h.dma.lock().unwrap().push((va, pages));
    // SAFETY: the kernel passes a valid out-pointer.
    unsafe { *paddr = pages.gpa };
    va as *mut c_void
}

extern "C" fn h_dma_release(va: *mut c_void) -> c_int {
    let h = state();
    let mut d = h.dma.lock().unwrap();
    match d.iter().position(|(v, _)| *v == va as u64) {
        Some(i) => {
            let (_, pages) = d.swap_remove(i);
            h.vm.mem.free(pages);
            1
        }
        None => 0,
    }
}

extern "C" fn h_virt_to_phys(va: *const c_void) -> u64 {
    let a = va as u64;
    let d = state().dma.lock().unwrap();
    d.iter().find(|(v, p)| (*v..v + p.len as u64).contains(&a)).map_or(0, |(v, p)| p.gpa + (a - v))
}

extern "C" fn h_mbuf_alloc(size: usize) -> *mut c_void {
    let h = state();
    if h.faults.mbufs.load(Ordering::Relaxed) {
        return std::ptr::null_mut();
    }
    h.pool.alloc(size).cast()
}

extern "C" fn h_mbuf_release(p: *mut c_void, size: usize) {
    state().pool.release(p.cast(), size)
}

extern "C" fn h_lock_new() -> *mut c_void {
    Box::into_raw(RawLock::new()).cast()
}

extern "C" fn h_lock_free(l: *mut c_void) {
    // SAFETY: `l` came from h_lock_new and is freed once.
    drop(unsafe { Box::from_raw(l.cast::<RawLock>()) })
}

fn lock_ref<'a>(l: *mut c_void) -> &'a RawLock {
    // SAFETY: the kernel passes locks from h_lock_new, alive until freed.
    unsafe { &*l.cast::<RawLock>() }
}

extern "C" fn h_lock(l: *mut c_void) {
    lock_ref(l).lock()
}

extern "C" fn h_trylock(l: *mut c_void) -> c_int {
    c_int::from(lock_ref(l).try_lock())
}

extern "C" fn h_unlock(l: *mut c_void) {
    lock_ref(l).unlock()
}

extern "C" fn h_cond_new() -> *mut c_void {
    Box::into_raw(RawCond::new()).cast()
}

extern "C" fn h_cond_free(c: *mut c_void) {
    // SAFETY: `c` came from h_cond_new and is freed once.
    drop(unsafe { Box::from_raw(c.cast::<RawCond>()) })
}

extern "C" fn h_cond_wait(c: *mut c_void, l: *mut c_void, timeout_ns: u64) -> c_int {
    // SAFETY: from h_cond_new, alive until freed.
    let c = unsafe { &*c.cast::<RawCond>() };
    let t = (timeout_ns != 0).then(|| Duration::from_nanos(timeout_ns));
    c_int::from(c.wait(lock_ref(l), t))
}

extern "C" fn h_cond_broadcast(c: *mut c_void) {
    // SAFETY: as above.
    unsafe { &*c.cast::<RawCond>() }.broadcast()
}

extern "C" fn h_thread_spawn(f: ThreadFn, arg: *mut c_void, name: *const c_char) -> *mut c_void {
    let name = cstr(name);
    let arg = arg as usize;
    let t = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            enter_thread(&name);
            f(arg as *mut c_void);
            leave_thread();
        })
        .expect("kernel thread");
    Box::into_raw(Box::new(t)).cast()
}

extern "C" fn h_thread_join(t: *mut c_void) {
    // SAFETY: `t` came from h_thread_spawn and is joined once.
    let t = unsafe { Box::from_raw(t.cast::<std::thread::JoinHandle<()>>()) };
    let _ = t.join();
}

extern "C" fn h_uptime_ns() -> u64 {
    state().boot.elapsed().as_nanos() as u64
}

/// One MSI-X vector: an edge latched until the ithread takes it.
struct Irq {
    vector: u32,
    pending: Mutex<bool>,
    cv: Condvar,
}

extern "C" fn h_irq_open(_pci: u32, vector: u32) -> *mut c_void {
    let irq = Arc::new(Irq { vector, pending: Mutex::new(false), cv: Condvar::new() });
    let i2 = irq.clone();
    state().vm.irq.set_handler(
        vector,
        Some(Arc::new(move || {
            *i2.pending.lock().unwrap() = true;
            i2.cv.notify_all();
        })),
    );
    Box::into_raw(Box::new(irq)).cast()
}

fn irq_ref<'a>(p: *mut c_void) -> &'a Arc<Irq> {
    // SAFETY: from h_irq_open, alive until h_irq_close.
    unsafe { &*p.cast::<Arc<Irq>>() }
}

extern "C" fn h_irq_close(p: *mut c_void) {
    // SAFETY: from h_irq_open, closed once.
    let irq = unsafe { Box::from_raw(p.cast::<Arc<Irq>>()) };
    state().vm.irq.set_handler(irq.vector, None);
}

extern "C" fn h_irq_wait(p: *mut c_void, stop: *const c_int) -> c_int {
    let irq = irq_ref(p);
    let mut g = irq.pending.lock().unwrap();
    loop {
        // SAFETY: `stop` points into the kernel's interrupt record, alive
        // while its thread runs; the kernel writes it then kicks.
        if unsafe { std::ptr::read_volatile(stop) } != 0 {
            return 0;
        }
        if std::mem::take(&mut *g) {
            return 1;
        }
        g = irq.cv.wait(g).unwrap();
    }
}

extern "C" fn h_irq_kick(p: *mut c_void) {
    let irq = irq_ref(p);
    let _g = irq.pending.lock().unwrap();
    irq.cv.notify_all();
}

extern "C" fn h_if_input(ifname: *const c_char, meta: *const HkPkt, data: *const c_void, len: usize) {
    // SAFETY: the kernel passes a valid record and `len` bytes.
    let (meta, data) = unsafe { (*meta, std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec()) };
    let info = FrameInfo {
        csum_flags: CsumFlags::from_bits_truncate(meta.csum_flags),
        csum_data: meta.csum_data as u16,
        lro_segsz: 0,
        lro_nsegs: meta.lro_nsegs,
    };
    let h = state();
    h.rx.frames
        .lock()
        .unwrap()
        .entry(cstr(ifname))
        .or_default()
        .push_back(Received { frame: RxFrame { data, info }, meta });
    h.rx.seq.fetch_add(1, Ordering::AcqRel);
    h.rx.cv.notify_all();
}

extern "C" fn h_bpf_tap(_ifname: *const c_char, _len: usize) {
    state().bpf_taps.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn h_getenv_int(name: *const c_char, value: *mut c_int) -> c_int {
    match state().kenv.lock().unwrap().get(&cstr(name)) {
        Some(v) => {
            // SAFETY: the kernel passes a valid out-pointer.
            unsafe { *value = *v };
            1
        }
        None => 0,
    }
}

/// `struct hk_host`, field for field.
#[repr(C)]
pub struct HkHost {
    console: extern "C" fn(*const c_char, usize),
    panic: extern "C" fn(*const c_char, usize, *const c_void, *const c_void),
    alloc: extern "C" fn(usize, *const c_void) -> *mut c_void,
    release: extern "C" fn(*mut c_void),
    dma_alloc: extern "C" fn(usize, usize, *mut u64, *const c_void) -> *mut c_void,
    dma_release: extern "C" fn(*mut c_void) -> c_int,
    virt_to_phys: extern "C" fn(*const c_void) -> u64,
    mbuf_alloc: extern "C" fn(usize) -> *mut c_void,
    mbuf_release: extern "C" fn(*mut c_void, usize),
    lock_new: extern "C" fn() -> *mut c_void,
    lock_free: extern "C" fn(*mut c_void),
    lock: extern "C" fn(*mut c_void),
    trylock: extern "C" fn(*mut c_void) -> c_int,
    unlock: extern "C" fn(*mut c_void),
    cond_new: extern "C" fn() -> *mut c_void,
    cond_free: extern "C" fn(*mut c_void),
    cond_wait: extern "C" fn(*mut c_void, *mut c_void, u64) -> c_int,
    cond_broadcast: extern "C" fn(*mut c_void),
    thread_spawn: extern "C" fn(ThreadFn, *mut c_void, *const c_char) -> *mut c_void,
    thread_join: extern "C" fn(*mut c_void),
    uptime_ns: extern "C" fn() -> u64,
    irq_open: extern "C" fn(u32, u32) -> *mut c_void,
    irq_close: extern "C" fn(*mut c_void),
    irq_wait: extern "C" fn(*mut c_void, *const c_int) -> c_int,
    irq_kick: extern "C" fn(*mut c_void),
    if_input: extern "C" fn(*const c_char, *const HkPkt, *const c_void, usize),
    bpf_tap: extern "C" fn(*const c_char, usize),
    getenv_int: extern "C" fn(*const c_char, *mut c_int) -> c_int,
}

/// The table handed to `hk_set_host`.
pub static HOST_OPS: HkHost = HkHost {
    console: h_console,
    panic: h_panic,
    alloc: h_alloc,
    release: h_release,
    dma_alloc: h_dma_alloc,
    dma_release: h_dma_release,
    virt_to_phys: h_virt_to_phys,
    mbuf_alloc: h_mbuf_alloc,
    mbuf_release: h_mbuf_release,
    lock_new: h_lock_new,
    lock_free: h_lock_free,
    lock: h_lock,
    trylock: h_trylock,
    unlock: h_unlock,
    cond_new: h_cond_new,
    cond_free: h_cond_free,
    cond_wait: h_cond_wait,
    cond_broadcast: h_cond_broadcast,
    thread_spawn: h_thread_spawn,
    thread_join: h_thread_join,
    uptime_ns: h_uptime_ns,
    irq_open: h_irq_open,
    irq_close: h_irq_close,
    irq_wait: h_irq_wait,
    irq_kick: h_irq_kick,
    if_input: h_if_input,
    bpf_tap: h_bpf_tap,
    getenv_int: h_getenv_int,
};
