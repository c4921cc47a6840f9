//! The guest's netmap layer over an attached ptnet device: registration,
//! the per-ring sync calls with netmap's prologue checks and finalisation,
//! `poll()` that sleeps until the ring's interrupt, and the view of the
//! rings an application gets from `mmap()`.
//!
//! On FreeBSD this layer is netmap itself, calling the driver's
//! `nm_register`/`nm_txsync`/`nm_rxsync`; here it is a small model of it
//! that drives the same core entry points. While an application has the
//! interface open in netmap mode, the network stack's datapath is
//! suspended, as with netmap's native mode.

use super::device::{NmError, PtnetIf};
use ptnet::abi::netmap::NetmapRing;
use ptnet::csb::SyncOpts;
use ptnet::kring::{cyclic_dist, Dir, Kring};
use ptnet::layout::{Buffers, RingLayout};
use ptnet::shmem::SharedRegion;
use ptnet::SyncError;
use std::mem::offset_of;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEAD: usize = offset_of!(NetmapRing, head);
const CUR: usize = offset_of!(NetmapRing, cur);
const TAIL: usize = offset_of!(NetmapRing, tail);

fn layout(ifp: &PtnetIf, dir: Dir, idx: u32) -> Option<RingLayout> {
    ifp.dev.layout().ring(dir, idx)
}

/// Shows the application the kernel's view of a ring: the tail, and with
/// `all` (registration, or a rejected update) also head and cur.
pub(crate) fn publish(ifp: &PtnetIf, dir: Dir, idx: u32, k: &Kring, all: bool) {
    if let Some(r) = layout(ifp, dir, idx) {
        if all {
            r.set_header_u32(HEAD, k.rhead);
            r.set_header_u32(CUR, k.rcur);
        }
        r.set_header_u32(TAIL, k.hwtail);
    }
}

impl PtnetIf {
    /// Opens the interface in netmap mode (`NETMAP_REQ_REGISTER`).
    pub fn open(self: &Arc<Self>) -> Result<NetmapPort, NmError> {
        let mut users = self.users.lock().unwrap();
        self.up(|l| l.publish_to_apps(self))?;
        users.netmap += 1;
        self.netmap_mode.store(true, Ordering::Release);
        Ok(NetmapPort { ifp: self.clone() })
    }

    fn close(&self) {
        let mut users = self.users.lock().unwrap();
        users.netmap -= 1;
        if users.netmap == 0 {
            self.netmap_mode.store(false, Ordering::Release);
            if users.if_up {
                // Back to the stack: interrupts on, and a look at whatever
                // arrived meanwhile.
                self.resume_stack();
            }
        }
        let _guard = self.lock_all();
        let _ = self.dev.down();
    }

    /// One netmap sync of a ring (`ioctl(NIOC*SYNC)`): prologue on the
    /// application's `head`/`cur`, the driver's sync, finalisation.
    fn nm_sync(&self, dir: Dir, idx: u32, k: &mut Kring) -> Result<(), NmError> {
        let r = layout(self, dir, idx).ok_or(NmError::NoRing)?;
        let head = r.header_u32(HEAD).unwrap_or(u32::MAX);
        let cur = r.header_u32(CUR).unwrap_or(u32::MAX);
        let checked = match dir {
            Dir::Tx => k.tx_prologue(head, cur),
            Dir::Rx => k.rx_prologue(head, cur),
        };
        if checked.is_err() {
            publish(self, dir, idx, k, true);
            return Err(NmError::Inval);
        }
        let opts = SyncOpts { want_intr: true, ..SyncOpts::default() };
        let res = match dir {
            Dir::Tx => self.dev.txsync(idx, k, opts),
            Dir::Rx => self.dev.rxsync(idx, k, opts),
        };
        r.set_header_u32(TAIL, k.hwtail);
        match res {
            // The driver refused the host's pointers, counted and logged
            // it; as netmap's ioctl, the application sees no progress, not
            // an error.
            Ok(()) | Err(SyncError::Host(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn with_kring<T>(&self, dir: Dir, idx: u32, f: impl FnOnce(&mut Kring) -> T) -> Option<T> {
        match dir {
            Dir::Tx => self.tx.get(idx as usize).map(|r| f(&mut r.lock().unwrap().kring)),
            Dir::Rx => self.rx.get(idx as usize).map(|r| f(&mut r.lock().unwrap().kring)),
        }
    }
}

/// An open netmap file descriptor on a ptnet interface.
pub struct NetmapPort {
    ifp: Arc<PtnetIf>,
}

impl Drop for NetmapPort {
    fn drop(&mut self) {
        self.ifp.close();
    }
}

impl NetmapPort {
    /// The interface.
    pub fn ifp(&self) -> &Arc<PtnetIf> {
        &self.ifp
    }

    /// The application's mapping of ring `idx` of direction `dir`.
    pub fn ring(&self, dir: Dir, idx: u32) -> Option<AppRing> {
        Some(AppRing { ring: layout(&self.ifp, dir, idx)?, bufs: self.ifp.dev.layout().buffers })
    }

    /// `ioctl(NIOCTXSYNC)` / `ioctl(NIOCRXSYNC)` on one ring.
    pub fn sync(&self, dir: Dir, idx: u32) -> Result<(), NmError> {
        self.ifp.with_kring(dir, idx, |k| self.ifp.nm_sync(dir, idx, k)).ok_or(NmError::NoRing)?
    }

    /// `poll()` on every ring of a direction: syncs them, and if none has
    /// anything for the application (no packets, or no free slots), sleeps
    /// until an interrupt of that direction or `timeout`. Returns whether a
    /// ring is ready.
    pub fn poll(&self, dir: Dir, timeout: Duration) -> Result<bool, NmError> {
        let deadline = Instant::now() + timeout;
        let wq = self.ifp.wait(dir);
        let n = match dir {
            Dir::Tx => self.ifp.tx.len(),
            Dir::Rx => self.ifp.rx.len(),
        } as u32;
        loop {
            let seen = wq.seq();
            let mut ready = false;
            for i in 0..n {
                let ok = self.ifp.with_kring(dir, i, |k| self.ifp.nm_sync(dir, i, k).map(|_| !k.would_block()));
                ready |= ok.ok_or(NmError::NoRing)??;
            }
            if ready {
                return Ok(true);
            }
            if !wq.wait(seen, deadline) {
                return Ok(false);
            }
        }
    }
}

/// A ring as an application sees it through `mmap()` (`netmap_user.h`).
#[derive(Clone, Copy)]
pub struct AppRing {
    ring: RingLayout,
    bufs: Buffers,
}

impl AppRing {
    /// Slots in the ring.
    pub fn num_slots(&self) -> u32 {
        self.ring.num_slots
    }

    /// `ring->head`.
    pub fn head(&self) -> u32 {
        self.ring.header_u32(HEAD).unwrap_or(0)
    }

    /// `ring->cur`.
    pub fn cur(&self) -> u32 {
        self.ring.header_u32(CUR).unwrap_or(0)
    }

    /// `ring->tail`.
    pub fn tail(&self) -> u32 {
        self.ring.header_u32(TAIL).unwrap_or(0)
    }

    /// Sets `ring->head` and `ring->cur` (hands slots to the kernel).
    pub fn advance(&self, to: u32) {
        self.set_head_cur(to, to);
    }

    /// Sets `ring->head` and `ring->cur` separately.
    pub fn set_head_cur(&self, head: u32, cur: u32) {
        self.ring.set_header_u32(CUR, cur);
        self.ring.set_header_u32(HEAD, head);
    }

    /// `nm_ring_space()`: slots between `cur` and `tail`.
    pub fn space(&self) -> u32 {
        cyclic_dist(self.cur(), self.tail(), self.ring.num_slots)
    }

    /// `nm_tx_pending()`: slots handed to the kernel and not yet completed.
    pub fn tx_pending(&self) -> bool {
        self.next(self.tail()) != self.head()
    }

    /// `nm_ring_next()`.
    pub fn next(&self, i: u32) -> u32 {
        ptnet::kring::next(i, self.ring.num_slots)
    }

    /// `slot[i].len`.
    pub fn len(&self, i: u32) -> u16 {
        self.ring.slot_len(i).unwrap_or(0)
    }

    /// `slot[i].flags`.
    pub fn flags(&self, i: u32) -> u16 {
        self.ring.slot_flags(i).unwrap_or(0)
    }

    /// Sets `slot[i].len` and `slot[i].flags`.
    pub fn set_len_flags(&self, i: u32, len: u16, flags: u16) {
        self.ring.set_slot(i, len, flags);
    }

    /// `NETMAP_BUF(ring, slot[i].buf_idx)`; `None` for an invalid index.
    pub fn buf(&self, i: u32) -> Option<SharedRegion> {
        self.bufs.get(self.ring.slot_buf_idx(i)?)
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> u32 {
        self.bufs.buf_size()
    }
}
