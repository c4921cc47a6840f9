//! Where everything lives in the host netmap memory, as exposed by the
//! ptnetmap-memdev BAR, and the checks that make it safe to use.
//!
//! The memdev registers describe three pools (netmap interfaces, rings,
//! buffers); the ptnet registers give the offset of this port's
//! `netmap_if`, whose `ring_ofs[]` locates each ring. All of these numbers
//! come from the host, so each is checked before it is trusted: offsets
//! inside the region and inside their pool, counts that agree between the
//! registers and the shared structures, rings that do not overlap each
//! other or the interface, buffers inside the buffer pool.

use crate::abi::netmap::{NetmapIf, NetmapRing, NetmapSlot};
use crate::abi::regs::memdev as mreg;
use crate::error::AttachError;
use crate::kring::Dir;
use crate::os::Registers;
use crate::shmem::SharedRegion;
use core::mem::{offset_of, size_of};

/// Most rings of one direction: the C driver's limit of one CSB page
/// (4096 / 64 entries) for both directions together.
pub const MAX_RINGS: usize = 64;
/// Most slots in a ring (netmap's `NM_MAX_SLOTS`-like bound).
pub const MAX_SLOTS: u32 = 16384;
/// Smallest sensible ring.
pub const MIN_SLOTS: u32 = 2;
/// Smallest and largest netmap buffer size the driver accepts.
pub const BUF_SIZE_RANGE: core::ops::RangeInclusive<u32> = 64..=65536;
/// Most host (software) rings a `netmap_if` may declare per direction.
pub const MAX_HOST_RINGS: u32 = 64;
/// Buffers 0 and 1 are reserved by netmap and never carry packets.
pub const FIRST_VALID_BUF: u32 = 2;

/// One pool of the host memory allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Offset from the start of the memdev region.
    pub ofs: usize,
    /// Number of objects.
    pub objnum: u32,
    /// Size of each object.
    pub objsize: u32,
}

impl Pool {
    fn read<R: Registers>(regs: &R, ofs: u32, num: u32, sz: u32) -> Self {
        Pool { ofs: regs.read32(ofs) as usize, objnum: regs.read32(num), objsize: regs.read32(sz) }
    }

    /// Total size, if it does not overflow.
    pub fn bytes(&self) -> Option<usize> {
        (self.objnum as usize).checked_mul(self.objsize as usize)
    }

    /// End offset, if it does not overflow.
    pub fn end(&self) -> Option<usize> {
        self.ofs.checked_add(self.bytes()?)
    }

    fn contains(&self, ofs: usize, len: usize) -> bool {
        match (ofs.checked_add(len), self.end()) {
            (Some(e), Some(pe)) => ofs >= self.ofs && e <= pe,
            _ => false,
        }
    }
}

/// The host memory as described by the memdev registers.
#[derive(Debug, Clone, Copy)]
pub struct Memdev {
    /// The whole netmap memory (checked against the BAR mapping).
    pub region: SharedRegion,
    /// Allocator id (`MEMID`), matched against the NIC's `HOSTMEMID`.
    pub memid: u32,
    /// `netmap_if` pool.
    pub if_pool: Pool,
    /// Ring pool.
    pub ring_pool: Pool,
    /// Buffer pool.
    pub buf_pool: Pool,
}

impl Memdev {
    /// Reads the memdev registers and checks them against the BAR mapping
    /// `bar` (which the OS mapped with its own, trusted, length).
    pub fn probe<R: Registers>(regs: &R, bar: SharedRegion) -> Result<Self, AttachError> {
        let memsize = u64::from(regs.read32(mreg::MEMSIZE_LO)) | (u64::from(regs.read32(mreg::MEMSIZE_HI)) << 32);
        let bar_len = bar.len();
        let size = usize::try_from(memsize)
            .ok()
            .filter(|&s| s > 0 && s <= bar_len)
            .ok_or(AttachError::BadMemSize { memsize, bar_len })?;
        let region = bar.sub(0, size).map_err(|_| AttachError::BadMemSize { memsize, bar_len })?;
        let if_pool = Pool::read(regs, mreg::IF_POOL_OFS, mreg::IF_POOL_OBJNUM, mreg::IF_POOL_OBJSZ);
        let ring_pool = Pool::read(regs, mreg::RING_POOL_OFS, mreg::RING_POOL_OBJNUM, mreg::RING_POOL_OBJSZ);
        let buf_pool = Pool::read(regs, mreg::BUF_POOL_OFS, mreg::BUF_POOL_OBJNUM, mreg::BUF_POOL_OBJSZ);
        for (name, pool) in [("if", if_pool), ("ring", ring_pool), ("buf", buf_pool)] {
            let fits = pool.end().is_some_and(|e| e <= size) && pool.objnum > 0;
            if !fits {
                return Err(AttachError::BadPool {
                    pool: name,
                    ofs: pool.ofs,
                    objnum: pool.objnum,
                    objsize: pool.objsize,
                });
            }
        }
        if !BUF_SIZE_RANGE.contains(&buf_pool.objsize) || buf_pool.objnum <= FIRST_VALID_BUF {
            return Err(AttachError::BadPool {
                pool: "buf",
                ofs: buf_pool.ofs,
                objnum: buf_pool.objnum,
                objsize: buf_pool.objsize,
            });
        }
        Ok(Self { region, memid: regs.read32(mreg::MEMID), if_pool, ring_pool, buf_pool })
    }
}

/// The buffer pool, through which slots' `buf_idx` become memory.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    region: SharedRegion,
    count: u32,
    size: u32,
}

impl Buffers {
    /// The pool of `count` buffers of `size` bytes starting at `region`.
    pub fn new(region: SharedRegion, count: u32, size: u32) -> Self {
        Self { region, count, size }
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> u32 {
        self.size
    }

    /// Number of buffers (including the two reserved ones).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The memory of buffer `idx`, or `None` for a reserved or out-of-pool
    /// index.
    #[inline]
    pub fn get(&self, idx: u32) -> Option<SharedRegion> {
        if !(FIRST_VALID_BUF..self.count).contains(&idx) {
            return None;
        }
        let ofs = (idx as usize).checked_mul(self.size as usize)?;
        self.region.sub(ofs, self.size as usize).ok()
    }
}

/// One validated ring inside the host memory.
#[derive(Debug, Clone, Copy)]
pub struct RingLayout {
    /// Direction.
    pub dir: Dir,
    /// Offset of the ring from the start of the memdev region.
    pub ofs: usize,
    /// The ring header and its slots.
    pub region: SharedRegion,
    /// Slots in the ring.
    pub num_slots: u32,
}

impl RingLayout {
    const SLOT: usize = size_of::<NetmapSlot>();

    fn slot_off(&self, i: u32, field: usize) -> usize {
        // `i < num_slots` is checked by the callers' `get`-style accesses
        // below through the region bounds: the region ends after the last
        // slot, so an index past it fails the access.
        NetmapRing::SLOTS_OFFSET.wrapping_add((i as usize).wrapping_mul(Self::SLOT)).wrapping_add(field)
    }

    /// Bytes covered by a ring of `num_slots` slots.
    pub fn bytes(num_slots: u32) -> Option<usize> {
        (num_slots as usize).checked_mul(Self::SLOT)?.checked_add(NetmapRing::SLOTS_OFFSET)
    }

    /// `slot[i].buf_idx`.
    #[inline]
    pub fn slot_buf_idx(&self, i: u32) -> Option<u32> {
        (i < self.num_slots).then_some(())?;
        self.region.load_u32(self.slot_off(i, offset_of!(NetmapSlot, buf_idx))).ok()
    }

    /// `slot[i].len`.
    #[inline]
    pub fn slot_len(&self, i: u32) -> Option<u16> {
        (i < self.num_slots).then_some(())?;
        self.region.load_u16(self.slot_off(i, offset_of!(NetmapSlot, len))).ok()
    }

    /// `slot[i].flags`.
    #[inline]
    pub fn slot_flags(&self, i: u32) -> Option<u16> {
        (i < self.num_slots).then_some(())?;
        self.region.load_u16(self.slot_off(i, offset_of!(NetmapSlot, flags))).ok()
    }

    /// Sets `slot[i].buf_idx` (buffer swaps by the host, and by
    /// applications that exchange buffers).
    #[inline]
    pub fn set_slot_buf_idx(&self, i: u32, buf_idx: u32) -> Option<()> {
        (i < self.num_slots).then_some(())?;
        self.region.store_u32(self.slot_off(i, offset_of!(NetmapSlot, buf_idx)), buf_idx).ok()
    }

    /// Sets `slot[i].len` and `slot[i].flags`.
    #[inline]
    pub fn set_slot(&self, i: u32, len: u16, flags: u16) -> Option<()> {
        (i < self.num_slots).then_some(())?;
        self.region.store_u16(self.slot_off(i, offset_of!(NetmapSlot, len)), len).ok()?;
        self.region.store_u16(self.slot_off(i, offset_of!(NetmapSlot, flags)), flags).ok()
    }

    /// A `u32` field of the ring header (`head`, `cur`, `tail`, ...).
    #[inline]
    pub fn header_u32(&self, field_offset: usize) -> Option<u32> {
        self.region.load_u32(field_offset).ok()
    }

    /// Writes a `u32` field of the ring header.
    #[inline]
    pub fn set_header_u32(&self, field_offset: usize, v: u32) -> Option<()> {
        self.region.store_u32(field_offset, v).ok()
    }
}

/// The validated layout of the passed-through port.
#[derive(Debug, Clone, Copy)]
pub struct NetmapLayout {
    /// The memory.
    pub memdev: Memdev,
    /// Offset of the `netmap_if`.
    pub nifp_ofs: usize,
    /// Offset of each validated ring, by ring number (TX rings first). A
    /// [`RingLayout`] is made from it on demand, so the layout stays small
    /// enough to live on a kernel stack.
    ring_ofs: [u32; MAX_RINGS],
    /// Number of TX rings.
    pub num_tx: u32,
    /// Number of RX rings.
    pub num_rx: u32,
    /// Slots per TX ring.
    tx_slots: u32,
    /// Slots per RX ring.
    rx_slots: u32,
    /// The buffer pool.
    pub buffers: Buffers,
}

/// What the NIC registers say the layout must be.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// `NIFP_OFS`.
    pub nifp_ofs: u32,
    /// `NUM_TX_RINGS`.
    pub num_tx: u32,
    /// `NUM_RX_RINGS`.
    pub num_rx: u32,
    /// `NUM_TX_SLOTS`.
    pub tx_slots: u32,
    /// `NUM_RX_SLOTS`.
    pub rx_slots: u32,
}

impl NetmapLayout {
    /// Locates and checks the `netmap_if` and every ring.
    pub fn locate(memdev: Memdev, exp: Expected) -> Result<Self, AttachError> {
        let mem = &memdev.region;
        let nifp_ofs = exp.nifp_ofs as usize;
        let bad_nifp = AttachError::BadNifpOffset { ofs: nifp_ofs };
        if !nifp_ofs.is_multiple_of(8) || !memdev.if_pool.contains(nifp_ofs, NetmapIf::RING_OFS_OFFSET) {
            return Err(bad_nifp);
        }
        let if_u32 = |field: usize| mem.load_u32(nifp_ofs.checked_add(field).ok_or(bad_nifp)?).map_err(|_| bad_nifp);
        let ni_tx = if_u32(offset_of!(NetmapIf, ni_tx_rings))?;
        let ni_rx = if_u32(offset_of!(NetmapIf, ni_rx_rings))?;
        let ni_host_tx = if_u32(offset_of!(NetmapIf, ni_host_tx_rings))?;
        let ni_host_rx = if_u32(offset_of!(NetmapIf, ni_host_rx_rings))?;
        for (what, got, expected) in [("ni_tx_rings", ni_tx, exp.num_tx), ("ni_rx_rings", ni_rx, exp.num_rx)] {
            if got != expected {
                return Err(AttachError::IfMismatch { what, got, expected });
            }
        }
        if ni_host_tx > MAX_HOST_RINGS || ni_host_rx > MAX_HOST_RINGS {
            return Err(AttachError::IfMismatch {
                what: "ni_host_*_rings",
                got: ni_host_tx.max(ni_host_rx),
                expected: MAX_HOST_RINGS,
            });
        }
        // The interface with its ring_ofs[] array must sit inside the
        // interface pool.
        let n_ofs =
            [ni_tx, ni_host_tx, ni_rx, ni_host_rx].iter().try_fold(0u32, |a, &b| a.checked_add(b)).ok_or(bad_nifp)?
                as usize;
        let if_bytes = n_ofs.checked_mul(8).and_then(|b| b.checked_add(NetmapIf::RING_OFS_OFFSET)).ok_or(bad_nifp)?;
        if !memdev.if_pool.contains(nifp_ofs, if_bytes) {
            return Err(bad_nifp);
        }

        let bufs = memdev.buf_pool;
        let buf_region = bufs.bytes().and_then(|len| mem.sub(bufs.ofs, len).ok()).ok_or(AttachError::BadPool {
            pool: "buf",
            ofs: bufs.ofs,
            objnum: bufs.objnum,
            objsize: bufs.objsize,
        })?;
        let buffers = Buffers { region: buf_region, count: bufs.objnum, size: bufs.objsize };

        let mut layout = NetmapLayout {
            memdev,
            nifp_ofs,
            ring_ofs: [0; MAX_RINGS],
            num_tx: ni_tx,
            num_rx: ni_rx,
            tx_slots: exp.tx_slots,
            rx_slots: exp.rx_slots,
            buffers,
        };
        // ring_ofs[] order: hw tx, host tx, hw rx, host rx.
        let rx_base = ni_tx.checked_add(ni_host_tx).ok_or(bad_nifp)?;
        for (dir, count, first, slots) in [(Dir::Tx, ni_tx, 0, exp.tx_slots), (Dir::Rx, ni_rx, rx_base, exp.rx_slots)] {
            for i in 0..count {
                let ring = layout.locate_ring(dir, i, first.wrapping_add(i), slots)?;
                let id = if dir == Dir::Tx { i } else { ni_tx.saturating_add(i) };
                let ofs = u32::try_from(ring.ofs).map_err(|_| AttachError::BadRingOffset {
                    dir,
                    ring: i,
                    ofs: ring.ofs as i64,
                })?;
                if let Some(entry) = layout.ring_ofs.get_mut(id as usize) {
                    *entry = ofs;
                }
            }
        }
        layout.check_overlaps(if_bytes)?;
        Ok(layout)
    }

    fn locate_ring(&self, dir: Dir, idx: u32, ofs_idx: u32, slots: u32) -> Result<RingLayout, AttachError> {
        let mem = &self.memdev.region;
        let bad = |ofs: i64| AttachError::BadRingOffset { dir, ring: idx, ofs };
        let entry = (ofs_idx as usize)
            .checked_mul(8)
            .and_then(|o| o.checked_add(NetmapIf::RING_OFS_OFFSET))
            .and_then(|o| o.checked_add(self.nifp_ofs))
            .ok_or(bad(-1))?;
        let rel = mem.load_u64(entry).map_err(|_| bad(-1))? as i64;
        let ofs = i64::try_from(self.nifp_ofs)
            .ok()
            .and_then(|n| n.checked_add(rel))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(bad(rel))?;
        let bytes = RingLayout::bytes(slots).ok_or(bad(rel))?;
        if !ofs.is_multiple_of(8) || !self.memdev.ring_pool.contains(ofs, bytes) {
            return Err(bad(rel));
        }
        let region = mem.sub(ofs, bytes).map_err(|_| bad(rel))?;
        let mismatch =
            |what, got: u64, expected: u64| AttachError::RingMismatch { dir, ring: idx, what, got, expected };
        let num_slots = region.load_u32(offset_of!(NetmapRing, num_slots)).map_err(|_| bad(rel))?;
        if num_slots != slots {
            return Err(mismatch("num_slots", num_slots.into(), slots.into()));
        }
        let buf_size = region.load_u32(offset_of!(NetmapRing, nr_buf_size)).map_err(|_| bad(rel))?;
        if buf_size != self.buffers.size {
            return Err(mismatch("nr_buf_size", buf_size.into(), self.buffers.size.into()));
        }
        let want_dir = match dir {
            Dir::Tx => NetmapRing::DIR_TX,
            Dir::Rx => NetmapRing::DIR_RX,
        };
        let got_dir = region.load_u16(offset_of!(NetmapRing, dir)).map_err(|_| bad(rel))?;
        if got_dir != want_dir {
            return Err(mismatch("dir", got_dir.into(), want_dir.into()));
        }
        // Buffers are addressed as ring + buf_ofs + idx * size: buf_ofs
        // must point exactly at the buffer pool.
        let buf_ofs = region.load_u64(offset_of!(NetmapRing, buf_ofs)).map_err(|_| bad(rel))? as i64;
        let want = (self.memdev.buf_pool.ofs as i64).wrapping_sub(ofs as i64);
        if buf_ofs != want {
            return Err(mismatch("buf_ofs", buf_ofs as u64, want as u64));
        }
        Ok(RingLayout { dir, ofs, region, num_slots })
    }

    fn check_overlaps(&self, if_bytes: usize) -> Result<(), AttachError> {
        let spans = self.rings().map(|r| (Some(r), r.ofs, r.region.len())).chain(core::iter::once((
            None,
            self.nifp_ofs,
            if_bytes,
        )));
        for (i, (ra, a, alen)) in spans.clone().enumerate() {
            for (rb, b, blen) in spans.clone().skip(i.wrapping_add(1)) {
                let disjoint = a.saturating_add(alen) <= b || b.saturating_add(blen) <= a;
                if !disjoint {
                    let name = |r: Option<RingLayout>| r.map(|r| (r.dir, r.ofs));
                    return Err(AttachError::RingsOverlap { a: name(ra), b: name(rb) });
                }
            }
        }
        Ok(())
    }

    /// All rings, TX first.
    pub fn rings(&self) -> impl Iterator<Item = RingLayout> + Clone + '_ {
        let tx = (0..self.num_tx).filter_map(|i| self.ring(Dir::Tx, i));
        tx.chain((0..self.num_rx).filter_map(|i| self.ring(Dir::Rx, i)))
    }

    /// Ring `idx` of direction `dir`.
    pub fn ring(&self, dir: Dir, idx: u32) -> Option<RingLayout> {
        let (id, num_slots, count) = match dir {
            Dir::Tx => (idx, self.tx_slots, self.num_tx),
            Dir::Rx => (self.num_tx.saturating_add(idx), self.rx_slots, self.num_rx),
        };
        if idx >= count {
            return None;
        }
        let ofs = *self.ring_ofs.get(id as usize)? as usize;
        let region = self.memdev.region.sub(ofs, RingLayout::bytes(num_slots)?).ok()?;
        Some(RingLayout { dir, ofs, region, num_slots })
    }
}
