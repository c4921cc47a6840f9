//! Pages for mbufs and clusters. A freed one is quarantined: unmapped
//! (`PROT_NONE`) until thousands of later frees have passed, so that a
//! driver touching an mbuf after `m_freem()` or `if_input()` faults at
//! once, and the fault handler can say what the address was.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

const PAGE: usize = 4096;
/// Pages kept unmapped before reuse (64 MiB).
const QUARANTINE_PAGES: usize = 16384;

#[derive(Default)]
struct Inner {
    free: HashMap<usize, Vec<usize>>,
    quarantine: VecDeque<(usize, usize)>,
    quarantined_pages: usize,
    /// Every quarantined page, for the fault handler.
    pages: HashSet<usize>,
}

/// The pool.
#[derive(Default)]
pub struct MbufPages {
    inner: Mutex<Inner>,
}

fn pages_of(size: usize) -> usize {
    size.div_ceil(PAGE).max(1)
}

impl MbufPages {
    /// `size` bytes on pages of their own; null when memory is exhausted.
    pub fn alloc(&self, size: usize) -> *mut u8 {
        let n = pages_of(size);
        if let Some(p) = self.inner.lock().unwrap().free.get_mut(&n).and_then(|v| v.pop()) {
            return p as *mut u8;
        }
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    /// Returns pages from [`MbufPages::alloc`]: quarantined, and the
    /// oldest quarantined pages become reusable.
    pub fn release(&self, p: *mut u8, size: usize) {
        let n = pages_of(size);
        let addr = p as usize;
        // SAFETY: `p..p + n pages` is a mapping of this pool (the kernel
        // side only returns what it was given).
        unsafe { libc::mprotect(p.cast(), n * PAGE, libc::PROT_NONE) };
        let mut g = self.inner.lock().unwrap();
        g.quarantine.push_back((addr, n));
        g.quarantined_pages += n;
        g.pages.extend((0..n).map(|i| addr + i * PAGE));
        while g.quarantined_pages > QUARANTINE_PAGES {
            let Some((a, k)) = g.quarantine.pop_front() else { break };
            g.quarantined_pages -= k;
            for i in 0..k {
                g.pages.remove(&(a + i * PAGE));
            }
            // SAFETY: as above, a mapping of this pool.
            unsafe { libc::mprotect(a as *mut libc::c_void, k * PAGE, libc::PROT_READ | libc::PROT_WRITE) };
            g.free.entry(k).or_default().push(a);
        }
    }

    /// Whether `addr` is in a quarantined (freed) page; `None` if the pool
    /// is busy (the fault handler must not wait for it).
    pub fn is_freed(&self, addr: usize) -> Option<bool> {
        let g = self.inner.try_lock().ok()?;
        Some(g.pages.contains(&(addr & !(PAGE - 1))))
    }
}
