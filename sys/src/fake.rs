//! Test doubles for the core's unit tests and fuzz targets (feature
//! `fake`): a register file, a kernel with a small DMA arena, a builder of
//! netmap memory layouts, and a fixture that plays the host. Everything
//! is small so the tests run quickly under Miri.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

extern crate std;

use crate::abi::netmap::{NetmapIf, NetmapRing};
use crate::abi::regs::{memdev as mreg, ptnet as reg};
use crate::csb::CsbRing;
use crate::device::{Config, Ptnet, CSB_PAGE};
use crate::error::AttachError;
use crate::kring::Dir;
use crate::layout::RingLayout;
use crate::net::frame::{FrameInfo, FrameSink};
use crate::net::offload::TxRequest;
use crate::os::{DmaMemory, Kernel, LogLevel, Registers};
use crate::shmem::SharedRegion;
use crate::tx::TxPacket;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::mem::offset_of;
use core::ptr::NonNull;
use std::collections::BTreeMap;
use std::string::String;
use std::vec;
use std::vec::Vec;

/// 8-aligned backing memory, reachable only through raw pointers (as
/// device memory is), freed on drop.
pub struct Arena {
    base: NonNull<u64>,
    words: usize,
}

impl Arena {
    pub fn new(bytes: usize) -> Self {
        let words = bytes.div_ceil(8);
        let raw = std::boxed::Box::into_raw(vec![0u64; words].into_boxed_slice());
        Self { base: NonNull::new(raw.cast::<u64>()).unwrap(), words }
    }

    pub fn region(&self) -> SharedRegion {
        // SAFETY: the arena outlives every test that uses the region and is
        // only accessed through regions.
        unsafe { SharedRegion::new(self.base.cast::<u8>(), self.words * 8) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let slice = core::ptr::slice_from_raw_parts_mut(self.base.as_ptr(), self.words);
        // SAFETY: allocated by `Box::into_raw` in `new` with this length.
        drop(unsafe { std::boxed::Box::from_raw(slice) });
    }
}

/// A register file: reads return what was last written or preset; a NIC's
/// also has PTFEAT masking and the PTCTL result.
pub struct FakeRegs {
    pub nic: bool,
    pub values: RefCell<BTreeMap<u32, u32>>,
    pub writes: RefCell<Vec<(u32, u32)>>,
    pub host_features: u32,
    /// A PTFEAT value to read back regardless of what was asked (a lie).
    pub ptfeat_lie: Cell<Option<u32>>,
    pub ptctl_result: Cell<u32>,
}

impl FakeRegs {
    pub fn new(nic: bool, values: &[(u32, u32)]) -> Self {
        Self {
            nic,
            values: RefCell::new(values.iter().copied().collect()),
            writes: RefCell::new(Vec::new()),
            host_features: 1,
            ptfeat_lie: Cell::new(None),
            ptctl_result: Cell::new(0),
        }
    }

    pub fn set(&self, off: u32, v: u32) {
        self.values.borrow_mut().insert(off, v);
    }

    pub fn wrote(&self, off: u32) -> Vec<u32> {
        self.writes.borrow().iter().filter(|(o, _)| *o == off).map(|(_, v)| *v).collect()
    }
}

impl Registers for FakeRegs {
    fn read32(&self, off: u32) -> u32 {
        if self.nic && off == reg::PTCTL {
            return self.ptctl_result.get();
        }
        if let (true, reg::PTFEAT, Some(v)) = (self.nic, off, self.ptfeat_lie.get()) {
            return v;
        }
        self.values.borrow().get(&off).copied().unwrap_or(0)
    }

    fn write32(&self, off: u32, val: u32) {
        self.writes.borrow_mut().push((off, val));
        let v = if self.nic && off == reg::PTFEAT { val & self.host_features } else { val };
        self.values.borrow_mut().insert(off, v);
    }
}

impl Registers for &FakeRegs {
    fn read32(&self, off: u32) -> u32 {
        (*self).read32(off)
    }

    fn write32(&self, off: u32, val: u32) {
        (*self).write32(off, val)
    }
}

/// A kernel whose DMA memory comes from one arena, handed out once.
pub struct FakeKernel {
    pub arena: RefCell<Arena>,
    pub live: Cell<usize>,
    pub fail_alloc: Cell<bool>,
    pub logs: RefCell<Vec<String>>,
}

/// Guest-physical address the fake kernel reports for its arena.
pub const FAKE_PADDR: u64 = 0x1_2345_6000;

impl Default for FakeKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeKernel {
    pub fn new() -> Self {
        Self {
            arena: RefCell::new(Arena::new(2 * 4096)),
            live: Cell::new(0),
            fail_alloc: Cell::new(false),
            logs: RefCell::new(Vec::new()),
        }
    }
}

impl Kernel for &FakeKernel {
    fn alloc_dma(&self, size: usize, _align: usize) -> Option<DmaMemory> {
        if self.fail_alloc.get() || self.live.get() > 0 {
            return None;
        }
        let region = self.arena.borrow().region().sub(0, size).ok()?;
        region.zero(0, size).ok()?;
        self.live.set(1);
        Some(DmaMemory { region, paddr: FAKE_PADDR })
    }

    fn free_dma(&self, mem: DmaMemory) {
        assert_eq!(mem.paddr, FAKE_PADDR);
        assert_eq!(self.live.get(), 1, "double free");
        self.live.set(0);
    }

    fn log(&self, _level: LogLevel, args: fmt::Arguments<'_>) {
        self.logs.borrow_mut().push(std::format!("{args}"));
    }
}

/// Geometry of a synthetic netmap memory.
#[derive(Clone, Copy)]
pub struct Geometry {
    pub tx: u32,
    pub rx: u32,
    pub slots: u32,
    pub bufs: u32,
    pub buf_size: u32,
}

pub const GEOMETRY: Geometry = Geometry { tx: 1, rx: 1, slots: 4, bufs: 16, buf_size: 64 };

/// A netmap memory laid out as the host would, plus the register values
/// describing it.
pub struct Layout {
    pub arena: Arena,
    pub nifp_ofs: usize,
    pub ring_ofs: Vec<usize>,
    pub nic: Vec<(u32, u32)>,
    pub memdev: Vec<(u32, u32)>,
}

impl Layout {
    pub fn new(g: Geometry) -> Self {
        let if_size = 512usize;
        let ring_size = RingLayout::bytes(g.slots).unwrap().next_multiple_of(128);
        let nrings = (g.tx + g.rx) as usize;
        let ring_pool = if_size;
        let buf_pool = ring_pool + nrings * ring_size;
        let total = buf_pool + (g.bufs * g.buf_size) as usize;
        let arena = Arena::new(total);
        let mem = arena.region();
        let nifp = 0usize;
        mem.store_u32(nifp + offset_of!(NetmapIf, ni_tx_rings), g.tx).unwrap();
        mem.store_u32(nifp + offset_of!(NetmapIf, ni_rx_rings), g.rx).unwrap();
        let mut ring_ofs = Vec::new();
        for i in 0..nrings {
            let ofs = ring_pool + i * ring_size;
            ring_ofs.push(ofs);
            let dir = if (i as u32) < g.tx { NetmapRing::DIR_TX } else { NetmapRing::DIR_RX };
            mem.store_u64(ofs + offset_of!(NetmapRing, buf_ofs), (buf_pool as i64 - ofs as i64) as u64).unwrap();
            mem.store_u32(ofs + offset_of!(NetmapRing, num_slots), g.slots).unwrap();
            mem.store_u32(ofs + offset_of!(NetmapRing, nr_buf_size), g.buf_size).unwrap();
            mem.store_u16(ofs + offset_of!(NetmapRing, dir), dir).unwrap();
            mem.store_u64(nifp + NetmapIf::RING_OFS_OFFSET + 8 * i, (ofs - nifp) as u64).unwrap();
            let region = mem.sub(ofs, RingLayout::bytes(g.slots).unwrap()).unwrap();
            let ring = RingLayout { dir: Dir::Tx, ofs, region, num_slots: g.slots };
            for j in 0..g.slots {
                // Buffers 0 and 1 are reserved; hand out the rest in order.
                let b = 2 + i as u32 * g.slots + j;
                if b < g.bufs {
                    ring.set_slot_buf_idx(j, b).unwrap();
                }
            }
        }
        let nic = vec![
            (reg::NUM_TX_RINGS, g.tx),
            (reg::NUM_RX_RINGS, g.rx),
            (reg::NUM_TX_SLOTS, g.slots),
            (reg::NUM_RX_SLOTS, g.slots),
            (reg::NIFP_OFS, nifp as u32),
            (reg::HOSTMEMID, 7),
            (reg::MAC_HI, 0x0002),
            (reg::MAC_LO, 0x0000_0042),
        ];
        let memdev = vec![
            (mreg::MEMSIZE_LO, total as u32),
            (mreg::MEMSIZE_HI, 0),
            (mreg::MEMID, 7),
            (mreg::IF_POOL_OFS, 0),
            (mreg::IF_POOL_OBJNUM, 1),
            (mreg::IF_POOL_OBJSZ, if_size as u32),
            (mreg::RING_POOL_OFS, ring_pool as u32),
            (mreg::RING_POOL_OBJNUM, nrings as u32),
            (mreg::RING_POOL_OBJSZ, ring_size as u32),
            (mreg::BUF_POOL_OFS, buf_pool as u32),
            (mreg::BUF_POOL_OBJNUM, g.bufs),
            (mreg::BUF_POOL_OBJSZ, g.buf_size),
        ];
        Self { arena, nifp_ofs: nifp, ring_ofs, nic, memdev }
    }

    pub fn region(&self) -> SharedRegion {
        self.arena.region()
    }

    /// Rewrites `ring_ofs[i]` (relative to the netmap_if).
    pub fn set_ring_ofs(&self, i: usize, rel: i64) {
        let ofs = self.nifp_ofs + NetmapIf::RING_OFS_OFFSET + 8 * i;
        self.region().store_u64(ofs, rel as u64).unwrap();
    }

    pub fn ring_ofs_of(&self, dir: Dir, i: usize) -> usize {
        let idx = if dir == Dir::Tx { i } else { self.nic[0].1 as usize + i };
        self.ring_ofs[idx]
    }

    pub fn ring_field_u32(&self, dir: Dir, i: usize, field: usize, v: u32) {
        self.region().store_u32(self.ring_ofs_of(dir, i) + field, v).unwrap();
    }

    pub fn ring_field_u64(&self, dir: Dir, i: usize, field: usize, v: u64) {
        self.region().store_u64(self.ring_ofs_of(dir, i) + field, v).unwrap();
    }
}

/// A fake device (kernel, NIC and memdev registers, netmap memory) with
/// the host's side of the rings and the CSB.
pub struct Fixture {
    pub kernel: FakeKernel,
    pub nic: FakeRegs,
    pub memdev: FakeRegs,
    pub layout: Layout,
    pub geometry: Geometry,
}

impl Fixture {
    pub fn new(g: Geometry) -> Self {
        let layout = Layout::new(g);
        Self {
            kernel: FakeKernel::new(),
            nic: FakeRegs::new(true, &layout.nic),
            memdev: FakeRegs::new(false, &layout.memdev),
            layout,
            geometry: g,
        }
    }

    /// Attaches the core with as many vectors as the NIC registers claim
    /// rings, and maps the memory as a first `up` would; a device whose
    /// memory is refused is detached again.
    pub fn attach(&self, cfg: Config) -> Result<Ptnet<&FakeKernel, &FakeRegs>, AttachError> {
        let count = |off| self.nic.values.borrow().get(&off).copied().unwrap_or(0u32);
        let vectors = count(reg::NUM_TX_RINGS).saturating_add(count(reg::NUM_RX_RINGS));
        let dev = Ptnet::attach(&self.kernel, &self.nic, vectors, cfg).map_err(|(_, _, e)| e)?;
        if let Err(e) = dev.map_memory(&self.memdev, self.layout.region()) {
            crate::os::Kernel::log(&&self.kernel, crate::os::LogLevel::Error, format_args!("attach failed: {e}"));
            dev.detach();
            return Err(e);
        }
        Ok(dev)
    }

    /// The host's view of ring `id`'s CSB entry: the fake kernel's one
    /// DMA allocation is the CSB.
    pub fn host_csb(&self, id: usize) -> CsbRing {
        let base = self.kernel.arena.borrow().region();
        CsbRing::new(&base.sub(0, CSB_PAGE).unwrap(), &base.sub(CSB_PAGE, CSB_PAGE).unwrap(), id).unwrap()
    }

    /// Ring `i` of direction `dir`.
    pub fn ring(&self, dir: Dir, i: usize) -> RingLayout {
        let ofs = self.layout.ring_ofs_of(dir, i);
        let region = self.layout.region().sub(ofs, RingLayout::bytes(self.geometry.slots).unwrap()).unwrap();
        RingLayout { dir, ofs, region, num_slots: self.geometry.slots }
    }

    /// The buffer slot `slot` of ring `r` points to.
    pub fn buf(&self, r: &RingLayout, slot: u32) -> SharedRegion {
        self.buffer(r.slot_buf_idx(slot).unwrap()).unwrap()
    }

    /// Buffer `idx`, if it exists.
    pub fn buffer(&self, idx: u32) -> Option<SharedRegion> {
        let base = self.layout.memdev.iter().find(|(o, _)| *o == mreg::BUF_POOL_OFS)?.1 as usize;
        let size = self.geometry.buf_size as usize;
        (idx < self.geometry.bufs).then(|| self.layout.region().sub(base + idx as usize * size, size).unwrap())
    }
}

/// A packet from the stack: its bytes and offload request.
pub struct Pkt(pub Vec<u8>, pub TxRequest);

impl TxPacket for Pkt {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn request(&self) -> TxRequest {
        self.1
    }
    fn peek(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.0.len());
        dst[..n].copy_from_slice(&self.0[..n]);
        n
    }
    fn copy_to(&self, off: usize, len: usize, dst: &SharedRegion, dst_off: usize) -> bool {
        self.0.get(off..off + len).is_some_and(|b| dst.write_bytes(dst_off, b).is_ok())
    }
}

/// Frames handed to the stack; `full` refuses new ones (no mbufs).
#[derive(Default)]
pub struct Sink {
    pub frames: Vec<(Vec<u8>, FrameInfo)>,
    pub full: bool,
}

impl FrameSink for Sink {
    fn begin(&mut self, _len: usize, info: &FrameInfo) -> bool {
        if self.full {
            return false;
        }
        self.frames.push((Vec::new(), *info));
        true
    }
    fn bytes(&mut self, b: &[u8]) {
        self.frames.last_mut().unwrap().0.extend_from_slice(b);
    }
    fn shared(&mut self, r: &SharedRegion, off: usize, len: usize) {
        let mut v = vec![0u8; len];
        r.read_bytes(off, &mut v).unwrap();
        self.bytes(&v);
    }
    fn end(&mut self) {}
}
