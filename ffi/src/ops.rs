//! The kernel services the C shim lends the driver: a table of function
//! pointers registered once, at module load.
//!
//! A table rather than `extern` declarations, so that the header generated
//! from this file states both directions of the contract and the C
//! compiler checks every function the shim puts in it.

use core::ffi::{c_char, c_int, c_void};
use spin::Once;

/// An mbuf chain, opaque to the driver (`struct mbuf`; not `repr(C)`, so
/// the header only declares it).
pub struct Mbuf {
    _opaque: [u8; 0],
}

/// The packet header fields of a transmitted mbuf the driver needs. Field
/// names stay clear of the macros `sys/mbuf.h` defines (`csum_data`,
/// `tso_segsz`, `lro_nsegs`, `ether_vtag`, ...), since the header is
/// compiled inside kernel units that include it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsPktInfo {
    /// `m_pkthdr.len`.
    pub len: u32,
    /// `m_pkthdr.csum_flags` (the `CSUM_*` bits).
    pub csum_flags: u32,
    /// `m_pkthdr.tso_segsz`: the MSS of a TSO packet.
    pub mss: u16,
    /// `m_pkthdr.ether_vtag`, meaningful when `has_vlan` is set (`M_VLANTAG`).
    pub vlan_tag: u16,
    /// 1 when `M_VLANTAG` is set.
    pub has_vlan: u8,
    /// 1 when the stack hashed the flow (`M_HASHTYPE_GET(m) != M_HASHTYPE_NONE`).
    pub has_flowid: u8,
    /// `m_pkthdr.flowid`.
    pub flowid: u32,
}

/// What the driver learned about a received frame, for the mbuf's packet
/// header before `if_input`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtnetRsRxInfo {
    /// `m_pkthdr.csum_flags` to set (`CSUM_DATA_VALID` ...).
    pub csum_flags: u32,
    /// `m_pkthdr.csum_data` to set (0xffff with `CSUM_PSEUDO_HDR`).
    pub csum_value: u16,
    /// For a large-receive frame: the segment size the host merged at
    /// (0 otherwise).
    pub lro_mss: u16,
    /// For a large-receive frame: segments merged (`m_pkthdr.lro_nsegs`).
    pub lro_segs: u16,
    /// The RX ring the frame came from (`flowid` and `M_HASHTYPE_OPAQUE`).
    pub ring: u16,
}

/// The ptnetmap-memdev the host memory lives behind, found by memory id.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PtnetRsMemdev {
    /// Handle passed back to `memdev_read4`.
    pub handle: *mut c_void,
    /// Kernel mapping of the memdev's memory BAR (the host netmap memory).
    pub base: *mut u8,
    /// Its size in bytes.
    pub size: u64,
}

/// The functions the shim provides. Every entry must be set; `dev` is the
/// shim's per-device handle given to `ptnet_rs_attach` (its softc).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PtnetShimOps {
    /// 32-bit read of the ptnet I/O BAR (`bus_read_4`).
    pub bar_read4: Option<unsafe extern "C" fn(dev: *mut c_void, off: u32) -> u32>,
    /// 32-bit write of the ptnet I/O BAR (`bus_write_4`).
    pub bar_write4: Option<unsafe extern "C" fn(dev: *mut c_void, off: u32, val: u32)>,
    /// Finds the ptnetmap-memdev exporting host memory `memid`, takes a
    /// reference on it (its detach is refused until `memdev_release`) and
    /// fills `*out` with its register handle and memory mapping; 0, or
    /// ENXIO when no such memdev is attached (yet).
    pub memdev_find: Option<unsafe extern "C" fn(dev: *mut c_void, memid: u32, out: *mut PtnetRsMemdev) -> c_int>,
    /// 32-bit read of a memdev's register BAR.
    pub memdev_read4: Option<unsafe extern "C" fn(handle: *mut c_void, off: u32) -> u32>,
    /// Releases what `memdev_find` acquired.
    pub memdev_release: Option<unsafe extern "C" fn(dev: *mut c_void, memdev: *const PtnetRsMemdev)>,
    /// Zeroed, physically contiguous memory (`contigmalloc`, M_NOWAIT |
    /// M_ZERO); its physical address (`vtophys`) in `*paddr`; NULL on failure.
    pub dma_alloc:
        Option<unsafe extern "C" fn(dev: *mut c_void, size: usize, align: usize, paddr: *mut u64) -> *mut c_void>,
    /// Releases `dma_alloc` memory (`contigfree`).
    pub dma_free: Option<unsafe extern "C" fn(dev: *mut c_void, va: *mut c_void, size: usize)>,
    /// Zeroed memory (`malloc`, M_DEVBUF, M_NOWAIT | M_ZERO); NULL on failure.
    pub mem_alloc: Option<unsafe extern "C" fn(size: usize) -> *mut c_void>,
    /// Releases `mem_alloc` memory.
    pub mem_free: Option<unsafe extern "C" fn(p: *mut c_void)>,
    /// A new sleep mutex (`mtx_init(9)`, `MTX_DEF`) named `name` (a static
    /// NUL-terminated string); NULL when out of memory.
    pub mtx_new: Option<unsafe extern "C" fn(dev: *mut c_void, name: *const c_char) -> *mut c_void>,
    /// Destroys and frees a mutex from `mtx_new` (`mtx_destroy`).
    pub mtx_free: Option<unsafe extern "C" fn(m: *mut c_void)>,
    /// `mtx_lock`.
    pub mtx_lock: Option<unsafe extern "C" fn(m: *mut c_void)>,
    /// `mtx_trylock`: 1 when taken.
    pub mtx_trylock: Option<unsafe extern "C" fn(m: *mut c_void) -> c_int>,
    /// `mtx_unlock`.
    pub mtx_unlock: Option<unsafe extern "C" fn(m: *mut c_void)>,
    /// Prints one line (`device_printf`; `level` 0 error, 1 warning, 2
    /// info); `msg` is not NUL-terminated. `dev` may be NULL.
    pub log: Option<unsafe extern "C" fn(dev: *mut c_void, level: c_int, msg: *const u8, len: usize)>,
    /// Reports a bug in the driver and does not return (`panic`).
    pub panic: Option<unsafe extern "C" fn(msg: *const u8, len: usize)>,
    /// Fills `*out` from the packet header of `m`.
    pub m_info: Option<unsafe extern "C" fn(m: *mut Mbuf, out: *mut PtnetRsPktInfo)>,
    /// Copies `len` bytes at offset `off` of the chain into `dst`
    /// (`m_copydata`); 0, or an errno when the chain is shorter.
    pub m_copydata: Option<unsafe extern "C" fn(m: *mut Mbuf, off: u32, len: u32, dst: *mut u8) -> c_int>,
    /// Frees a chain (`m_freem`).
    pub m_free: Option<unsafe extern "C" fn(m: *mut Mbuf)>,
    /// Shows a packet just put on a TX ring to BPF listeners
    /// (`ETHER_BPF_MTAP`); the driver still owns it.
    pub tx_tap: Option<unsafe extern "C" fn(dev: *mut c_void, m: *mut Mbuf)>,
    /// Schedules ring `ring`'s task (`taskqueue_enqueue`): a transmit that
    /// found the ring busy left its packet for the task.
    pub task_enqueue: Option<unsafe extern "C" fn(dev: *mut c_void, is_rx: u32, ring: u32)>,
    /// A packet header mbuf (a cluster chain) for `len` bytes; NULL when
    /// out of mbufs.
    pub rx_alloc: Option<unsafe extern "C" fn(dev: *mut c_void, len: u32) -> *mut Mbuf>,
    /// Appends bytes to a chain (`m_append`); 0, or an errno.
    pub rx_append: Option<unsafe extern "C" fn(m: *mut Mbuf, src: *const u8, len: u32) -> c_int>,
    /// A frame is complete: sets its packet header from `info` (receiving
    /// interface, checksum and LRO state, flow id), frees the clusters it
    /// did not need, and links it after `prev` (`m_nextpkt`) when `prev`
    /// is not NULL.
    pub rx_finish:
        Option<unsafe extern "C" fn(dev: *mut c_void, m: *mut Mbuf, info: *const PtnetRsRxInfo, prev: *mut Mbuf)>,
    /// Hands a chain of frames (linked by `m_nextpkt`) to the stack
    /// (`if_input`). Called with no driver lock held: the stack may
    /// transmit, or re-enter the driver, from here.
    pub rx_input: Option<unsafe extern "C" fn(dev: *mut c_void, m: *mut Mbuf)>,
}

/// The registered table, every entry present.
pub(crate) struct Ops {
    pub bar_read4: unsafe extern "C" fn(*mut c_void, u32) -> u32,
    pub bar_write4: unsafe extern "C" fn(*mut c_void, u32, u32),
    pub memdev_find: unsafe extern "C" fn(*mut c_void, u32, *mut PtnetRsMemdev) -> c_int,
    pub memdev_read4: unsafe extern "C" fn(*mut c_void, u32) -> u32,
    pub memdev_release: unsafe extern "C" fn(*mut c_void, *const PtnetRsMemdev),
    pub dma_alloc: unsafe extern "C" fn(*mut c_void, usize, usize, *mut u64) -> *mut c_void,
    pub dma_free: unsafe extern "C" fn(*mut c_void, *mut c_void, usize),
    pub mem_alloc: unsafe extern "C" fn(usize) -> *mut c_void,
    pub mem_free: unsafe extern "C" fn(*mut c_void),
    pub mtx_new: unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void,
    pub mtx_free: unsafe extern "C" fn(*mut c_void),
    pub mtx_lock: unsafe extern "C" fn(*mut c_void),
    pub mtx_trylock: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub mtx_unlock: unsafe extern "C" fn(*mut c_void),
    pub log: unsafe extern "C" fn(*mut c_void, c_int, *const u8, usize),
    // Only the kernel build has the panic handler that calls it.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    pub panic: unsafe extern "C" fn(*const u8, usize),
    pub m_info: unsafe extern "C" fn(*mut Mbuf, *mut PtnetRsPktInfo),
    pub m_copydata: unsafe extern "C" fn(*mut Mbuf, u32, u32, *mut u8) -> c_int,
    pub m_free: unsafe extern "C" fn(*mut Mbuf),
    pub tx_tap: unsafe extern "C" fn(*mut c_void, *mut Mbuf),
    pub task_enqueue: unsafe extern "C" fn(*mut c_void, u32, u32),
    pub rx_alloc: unsafe extern "C" fn(*mut c_void, u32) -> *mut Mbuf,
    pub rx_append: unsafe extern "C" fn(*mut Mbuf, *const u8, u32) -> c_int,
    pub rx_finish: unsafe extern "C" fn(*mut c_void, *mut Mbuf, *const PtnetRsRxInfo, *mut Mbuf),
    pub rx_input: unsafe extern "C" fn(*mut c_void, *mut Mbuf),
}

static OPS: Once<Ops> = Once::new();

/// Registers the shim's table; false if an entry is missing. The first
/// complete table stays (module load happens once).
pub(crate) fn register(t: &PtnetShimOps) -> bool {
    let ops = (|| {
        Some(Ops {
            bar_read4: t.bar_read4?,
            bar_write4: t.bar_write4?,
            memdev_find: t.memdev_find?,
            memdev_read4: t.memdev_read4?,
            memdev_release: t.memdev_release?,
            dma_alloc: t.dma_alloc?,
            dma_free: t.dma_free?,
            mem_alloc: t.mem_alloc?,
            mem_free: t.mem_free?,
            mtx_new: t.mtx_new?,
            mtx_free: t.mtx_free?,
            mtx_lock: t.mtx_lock?,
            mtx_trylock: t.mtx_trylock?,
            mtx_unlock: t.mtx_unlock?,
            log: t.log?,
            panic: t.panic?,
            m_info: t.m_info?,
            m_copydata: t.m_copydata?,
            m_free: t.m_free?,
            tx_tap: t.tx_tap?,
            task_enqueue: t.task_enqueue?,
            rx_alloc: t.rx_alloc?,
            rx_append: t.rx_append?,
            rx_finish: t.rx_finish?,
            rx_input: t.rx_input?,
        })
    })();
    match ops {
        Some(o) => {
            OPS.call_once(|| o);
            true
        }
        None => false,
    }
}

/// The registered table (`None` before `ptnet_rs_init`).
pub(crate) fn ops() -> Option<&'static Ops> {
    OPS.get()
}
