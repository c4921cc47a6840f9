//! A hostile host (`--chaos <seed>`): while on, the hypervisor and host
//! netmap misbehave at random, the way a buggy or malicious host could,
//! and count what they did:
//!
//! - the CSB pointers a kloop publishes are overwritten with garbage
//!   (out of range, or in range but wrong) until its next publication;
//! - RX slots handed to the guest get a wrong length, flags or buffer
//!   index, and frames a corrupted virtio-net header; the host restores
//!   each buffer index when it takes the slot back, so that its own state
//!   stays sound (a host that lost its buffers would be broken for good);
//! - a kloop stalls for tens of milliseconds;
//! - interrupts are dropped or delivered twice;
//! - `PTFEAT` reads back features nobody asked for.
//!
//! Once [`Chaos::stop`] is called the host behaves again, and the guest
//! must pass traffic as if nothing had happened.

use super::port::HostRing;
use crate::host::mem::HostMemory;
use crate::rng::Rng;
use ptnet::csb::{kern_write, CsbRing};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the chaos did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChaosCounts {
    /// CSB publications overwritten.
    pub csb: u64,
    /// RX slots corrupted (length, flags or buffer index).
    pub slots: u64,
    /// virtio-net headers corrupted.
    pub headers: u64,
    /// Kloop stalls.
    pub stalls: u64,
    /// Interrupts dropped.
    pub irq_drops: u64,
    /// Interrupts delivered twice.
    pub irq_dups: u64,
    /// `PTFEAT` reads falsified.
    pub ptfeat: u64,
}

/// A seeded source of host misbehaviour.
pub struct Chaos {
    rng: Mutex<Rng>,
    on: AtomicBool,
    /// Buffer indexes of corrupted RX slots, by (ring address, slot).
    saved: Mutex<HashMap<(usize, u32), u32>>,
    counts: [AtomicU64; 7],
}

/// What to do with an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqFate {
    /// Lose it.
    Drop,
    /// Deliver it.
    Deliver,
    /// Deliver it twice.
    Twice,
}

impl Chaos {
    /// Chaos from `seed`, on.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(Rng::new(seed)),
            on: AtomicBool::new(true),
            saved: Mutex::default(),
            counts: Default::default(),
        })
    }

    /// The host behaves from now on.
    pub fn stop(&self) {
        self.on.store(false, Ordering::SeqCst);
    }

    /// Whether the chaos is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// What it did so far.
    pub fn counts(&self) -> ChaosCounts {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        ChaosCounts {
            csb: c(0),
            slots: c(1),
            headers: c(2),
            stalls: c(3),
            irq_drops: c(4),
            irq_dups: c(5),
            ptfeat: c(6),
        }
    }

    fn bump(&self, i: usize) {
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    fn next(&self) -> u64 {
        self.rng.lock().unwrap().next_u64()
    }

    /// True with probability `per_mille`/1000, while on.
    fn roll(&self, per_mille: u64) -> bool {
        self.is_on() && self.next() % 1000 < per_mille
    }

    /// A value for a ring pointer of `n` slots: usually out of range.
    fn bad_pointer(&self, n: u32) -> u32 {
        match self.next() % 3 {
            0 => self.next() as u32,
            1 => n + (self.next() % 8) as u32,
            _ => (self.next() % u64::from(n.max(1))) as u32,
        }
    }

    /// After a kloop published its pointers: maybe lie about them.
    pub fn csb(&self, csb: &CsbRing, n: u32) {
        if self.roll(20) {
            self.bump(0);
            kern_write(csb, self.bad_pointer(n), self.bad_pointer(n));
        }
    }

    /// Before a kloop runs: maybe stall it.
    pub fn stall(&self) {
        if self.roll(2) {
            self.bump(3);
            std::thread::sleep(Duration::from_millis(10 + self.next() % 40));
        }
    }

    /// The fate of an interrupt.
    pub fn irq(&self) -> IrqFate {
        if !self.roll(30) {
            return IrqFate::Deliver;
        }
        if self.next().is_multiple_of(2) {
            self.bump(4);
            IrqFate::Drop
        } else {
            self.bump(5);
            IrqFate::Twice
        }
    }

    /// A `PTFEAT` read of `granted`.
    pub fn ptfeat(&self, granted: u32) -> u32 {
        if self.roll(300) {
            self.bump(6);
            granted ^ (1 << (self.next() % 32))
        } else {
            granted
        }
    }

    /// RX slots `[from, to)` were just handed to the guest: maybe corrupt
    /// some, and the headers of the frames in them.
    pub fn rx_slots(&self, ring: &HostRing, mem: &HostMemory, from: u32, to: u32, vnet_hdr: bool) {
        let n = ring.ring.num_slots;
        let mut j = from;
        while j != to {
            if self.roll(10) {
                self.bump(1);
                match self.next() % 3 {
                    0 => {
                        let _ = ring.ring.set_slot(j, self.next() as u16, ring.ring.slot_flags(j).unwrap_or(0));
                    }
                    1 => {
                        let _ = ring.ring.set_slot(j, ring.ring.slot_len(j).unwrap_or(0), self.next() as u16);
                    }
                    _ => {
                        if let Some(orig) = ring.ring.slot_buf_idx(j) {
                            let key = (ring as *const HostRing as usize, j);
                            self.saved.lock().unwrap().entry(key).or_insert(orig);
                            let _ = ring.ring.set_slot_buf_idx(j, self.next() as u32);
                        }
                    }
                }
            } else if vnet_hdr && self.roll(10) {
                if let Some(buf) = ring.ring.slot_buf_idx(j).and_then(|b| mem.buffers().get(b)) {
                    self.bump(2);
                    let at = (self.next() % 10) as usize;
                    let _ = buf.write_bytes(at, &[self.next() as u8]);
                }
            }
            j = ptnet::kring::next(j, n);
        }
    }

    /// Before the host takes RX slots back: the buffer indexes it lent
    /// out corrupted are its own again.
    pub fn restore(&self, ring: &HostRing) {
        let key = ring as *const HostRing as usize;
        let mut saved = self.saved.lock().unwrap();
        if saved.is_empty() {
            return;
        }
        saved.retain(|&(r, slot), orig| {
            if r == key {
                let _ = ring.ring.set_slot_buf_idx(slot, *orig);
                false
            } else {
                true
            }
        });
    }
}
