//! Host netmap memory, laid out as netmap's allocator lays it out: a pool
//! of `netmap_if` objects, a pool of rings, a pool of packet buffers, one
//! after the other in one contiguous region. This region is what the
//! ptnetmap-memdev device exposes to the guest through its memory BAR.

use ptnet::layout::{Buffers, Pool, FIRST_VALID_BUF};
use ptnet::shmem::SharedRegion;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Mutex;

const PAGE: usize = 4096;

/// Geometry of a host memory allocator.
#[derive(Debug, Clone, Copy)]
pub struct MemConfig {
    /// `netmap_if` objects.
    pub if_num: u32,
    /// Size of each `netmap_if` object.
    pub if_size: u32,
    /// Ring objects.
    pub ring_num: u32,
    /// Size of each ring object (header plus slots).
    pub ring_size: u32,
    /// Packet buffers (including netmap's two reserved ones).
    pub buf_num: u32,
    /// Size of each buffer.
    pub buf_size: u32,
}

impl MemConfig {
    /// Enough room for `ports` ports of `rings` ring pairs with `slots`
    /// slots each, plus `extra_bufs` spare buffers.
    pub fn for_ports(ports: u32, rings: u32, slots: u32, buf_size: u32, extra_bufs: u32) -> Self {
        let ring_bytes = ptnet::layout::RingLayout::bytes(slots).expect("ring size") as u32;
        Self {
            if_num: ports,
            if_size: 1024,
            ring_num: ports * rings * 2,
            ring_size: ring_bytes.next_multiple_of(128),
            buf_num: ports * rings * 2 * slots + extra_bufs + FIRST_VALID_BUF,
            buf_size,
        }
    }
}

/// One host allocator's memory region.
pub struct HostMemory {
    base: NonNull<u8>,
    layout: Layout,
    memid: u32,
    /// `netmap_if` pool.
    pub if_pool: Pool,
    /// Ring pool.
    pub ring_pool: Pool,
    /// Buffer pool.
    pub buf_pool: Pool,
    free: Mutex<FreeLists>,
}

struct FreeLists {
    ifs: Vec<u32>,
    rings: Vec<u32>,
    bufs: Vec<u32>,
}

// SAFETY: the region is only accessed through SharedRegion (atomics and
// byte copies); the free lists are behind a Mutex.
unsafe impl Send for HostMemory {}
// SAFETY: as above.
unsafe impl Sync for HostMemory {}

impl HostMemory {
    /// Creates allocator `memid` with geometry `cfg`.
    pub fn new(memid: u32, cfg: MemConfig) -> Self {
        let pool = |ofs: usize, num: u32, size: u32| Pool { ofs, objnum: num, objsize: size };
        let if_pool = pool(0, cfg.if_num, cfg.if_size);
        let ring_pool = pool(if_pool.end().unwrap().next_multiple_of(PAGE), cfg.ring_num, cfg.ring_size);
        let buf_pool = pool(ring_pool.end().unwrap().next_multiple_of(PAGE), cfg.buf_num, cfg.buf_size);
        let size = buf_pool.end().unwrap().next_multiple_of(PAGE);
        let layout = Layout::from_size_align(size, PAGE).expect("host memory layout");
        // SAFETY: non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("host memory allocation");
        Self {
            base,
            layout,
            memid,
            if_pool,
            ring_pool,
            buf_pool,
            free: Mutex::new(FreeLists {
                ifs: (0..cfg.if_num).rev().collect(),
                rings: (0..cfg.ring_num).rev().collect(),
                bufs: (FIRST_VALID_BUF..cfg.buf_num).rev().collect(),
            }),
        }
    }

    /// Allocator id (`MEMID`).
    pub fn memid(&self) -> u32 {
        self.memid
    }

    /// The whole region.
    pub fn region(&self) -> SharedRegion {
        // SAFETY: the allocation lives as long as self; every user of a
        // region derived from it holds an Arc to this HostMemory.
        unsafe { SharedRegion::new(self.base, self.layout.size()) }
    }

    /// The buffer pool.
    pub fn buffers(&self) -> Buffers {
        let b = self.buf_pool;
        let region = self.region().sub(b.ofs, b.bytes().unwrap()).expect("buffer pool inside memory");
        Buffers::new(region, b.objnum, b.objsize)
    }

    fn take(list: &mut Vec<u32>, pool: &Pool) -> Option<usize> {
        list.pop().map(|i| pool.ofs + i as usize * pool.objsize as usize)
    }

    /// Allocates a `netmap_if`; returns its offset.
    pub fn alloc_if(&self) -> Option<usize> {
        Self::take(&mut self.free.lock().unwrap().ifs, &self.if_pool)
    }

    /// Allocates a ring object; returns its offset.
    pub fn alloc_ring(&self) -> Option<usize> {
        Self::take(&mut self.free.lock().unwrap().rings, &self.ring_pool)
    }

    /// Allocates a buffer; returns its index.
    pub fn alloc_buf(&self) -> Option<u32> {
        self.free.lock().unwrap().bufs.pop()
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}
