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
//! Every fault is decided at a *point*: a site (which of the above) on
//! one ring or device, at the n-th time that point is reached. Each
//! point draws from its own random stream, derived from the seed and the
//! point's name, so that the faults a ring sees do not depend on how the
//! threads of other rings interleave. Every fault injected is recorded;
//! [`Chaos::record`] is the list, and a chaos built from it
//! ([`Chaos::replay`], `ptnet-sim ... --chaos-replay FILE`) injects the
//! same faults at the same points and nothing else: a failure found once
//! can be replayed.
//!
//! Once [`Chaos::stop`] is called the host behaves again, and the guest
//! must pass traffic as if nothing had happened.

use super::port::HostRing;
use crate::host::mem::HostMemory;
use crate::rng::Rng;
use ptnet::csb::{kern_write, CsbMem, CsbRing, Field};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the chaos did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Where in the protocol a fault may strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// After a kloop published its pointers.
    Csb,
    /// Before a kloop runs.
    Stall,
    /// An interrupt.
    Irq,
    /// An RX slot handed to the guest.
    RxSlot,
    /// A `PTFEAT` read.
    Ptfeat,
}

/// A fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The CSB says these host pointers.
    Csb {
        /// `hwcur` written.
        hwcur: u32,
        /// `hwtail` written.
        hwtail: u32,
    },
    /// The CSB says `hwtail` is `by` slots ahead of what the host just
    /// published (in range, plausible: the lie a guest cannot refuse, and
    /// the one that wedged a ring before the ring watchdog).
    CsbAhead {
        /// Slots.
        by: u32,
    },
    /// The kloop sleeps this long.
    Stall {
        /// Milliseconds.
        ms: u64,
    },
    /// The interrupt is lost.
    IrqDrop,
    /// The interrupt comes twice.
    IrqTwice,
    /// The slot's length.
    SlotLen {
        /// Written.
        len: u16,
    },
    /// The slot's flags.
    SlotFlags {
        /// Written.
        flags: u16,
    },
    /// The slot's buffer index (restored when the host takes it back).
    SlotBuf {
        /// Written.
        idx: u32,
    },
    /// A byte of the frame's virtio-net header.
    Header {
        /// Offset in the header.
        at: u8,
        /// Written.
        byte: u8,
    },
    /// A feature bit flipped.
    Ptfeat {
        /// The bit.
        bit: u8,
    },
}

/// One injected fault: at the `n`-th decision of point (`site`, `at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The site.
    pub site: Site,
    /// The ring or device (`vale0:1 tx0`).
    pub at: String,
    /// Which decision of that point (from 0).
    pub n: u64,
    /// What was done.
    pub action: Action,
}

/// A recorded chaos run (the `--chaos-replay` file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaosRecord {
    /// The seed it was drawn from (informative in a replay).
    pub seed: u64,
    /// The faults, in the order they were injected.
    pub faults: Vec<Fault>,
}

impl ChaosRecord {
    /// Reads a record written by [`ChaosRecord::save`].
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&s).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the record as JSON.
    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let s = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, s).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where the faults come from.
enum Source {
    /// Random, one stream per point (derived from the chaos's seed).
    Seeded,
    /// A recorded run, by point and decision.
    Replay(HashMap<(Site, String, u64), Action>),
}

/// A source of host misbehaviour.
pub struct Chaos {
    source: Source,
    seed: u64,
    on: AtomicBool,
    /// Per point: its stream and how many decisions it made.
    points: Mutex<HashMap<(Site, String), (Rng, u64)>>,
    record: Mutex<Vec<Fault>>,
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

/// A stream's seed: the run's seed and the point's name.
fn point_seed(seed: u64, site: Site, at: &str) -> u64 {
    // FNV-1a over the name, mixed with the seed.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ site as u64;
    for b in at.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A value for a ring pointer of `n` slots: usually out of range.
fn bad_pointer(r: &mut Rng, n: u32) -> u32 {
    match r.below(3) {
        0 => r.next_u64() as u32,
        1 => n + r.below(8) as u32,
        _ => r.below(u64::from(n.max(1))) as u32,
    }
}

impl Chaos {
    /// Chaos from `seed`, on.
    pub fn new(seed: u64) -> Arc<Self> {
        Self::with(Source::Seeded, seed)
    }

    /// Chaos that injects exactly the faults of `r`, on.
    pub fn replay(r: &ChaosRecord) -> Arc<Self> {
        let plan = r.faults.iter().map(|f| ((f.site, f.at.clone(), f.n), f.action)).collect();
        Self::with(Source::Replay(plan), r.seed)
    }

    fn with(source: Source, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            source,
            seed,
            on: AtomicBool::new(true),
            points: Mutex::default(),
            record: Mutex::default(),
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

    /// The faults injected so far, replayable.
    pub fn record(&self) -> ChaosRecord {
        ChaosRecord { seed: self.seed, faults: self.record.lock().unwrap().clone() }
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

    /// The decision of point (`site`, `at`): from its stream (`draw`), or
    /// from the replayed record; recorded when it is a fault.
    fn decide(&self, site: Site, at: &str, draw: impl FnOnce(&mut Rng) -> Option<Action>) -> Option<Action> {
        if !self.is_on() {
            return None;
        }
        let mut points = self.points.lock().unwrap();
        let (rng, n) =
            points.entry((site, at.to_string())).or_insert_with(|| (Rng::new(point_seed(self.seed, site, at)), 0));
        let k = *n;
        *n += 1;
        let action = match &self.source {
            Source::Seeded => draw(rng),
            Source::Replay(plan) => plan.get(&(site, at.to_string(), k)).copied(),
        };
        drop(points);
        if let Some(a) = action {
            self.record.lock().unwrap().push(Fault { site, at: at.to_string(), n: k, action: a });
        }
        action
    }

    /// After the kloop of `at` published its pointers: maybe lie about them.
    pub fn csb(&self, at: &str, csb: &CsbRing, n: u32) {
        let a = self.decide(Site::Csb, at, |r| {
            (r.below(1000) < 20).then(|| match r.below(4) {
                0 => Action::CsbAhead { by: 1 + r.below(u64::from(n.max(2) - 1)) as u32 },
                _ => Action::Csb { hwcur: bad_pointer(r, n), hwtail: bad_pointer(r, n) },
            })
        });
        match a {
            Some(Action::Csb { hwcur, hwtail }) => {
                self.bump(0);
                kern_write(csb, hwcur, hwtail);
            }
            Some(Action::CsbAhead { by }) => {
                self.bump(0);
                let hwtail = (csb.load(Field::Hwtail) % n.max(1) + by) % n.max(1);
                kern_write(csb, csb.load(Field::Hwcur), hwtail);
            }
            _ => {}
        }
    }

    /// Before the kloop of `at` runs: maybe stall it.
    pub fn stall(&self, at: &str) {
        let a = self.decide(Site::Stall, at, |r| (r.below(1000) < 2).then(|| Action::Stall { ms: 10 + r.below(40) }));
        if let Some(Action::Stall { ms }) = a {
            self.bump(3);
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    /// The fate of an interrupt of `at`.
    pub fn irq(&self, at: &str) -> IrqFate {
        let a = self.decide(Site::Irq, at, |r| {
            (r.below(1000) < 30).then(|| if r.below(2) == 0 { Action::IrqDrop } else { Action::IrqTwice })
        });
        match a {
            Some(Action::IrqDrop) => {
                self.bump(4);
                IrqFate::Drop
            }
            Some(Action::IrqTwice) => {
                self.bump(5);
                IrqFate::Twice
            }
            _ => IrqFate::Deliver,
        }
    }

    /// A `PTFEAT` read of `granted` on device `at`.
    pub fn ptfeat(&self, at: &str, granted: u32) -> u32 {
        match self
            .decide(Site::Ptfeat, at, |r| (r.below(1000) < 300).then(|| Action::Ptfeat { bit: r.below(32) as u8 }))
        {
            Some(Action::Ptfeat { bit }) => {
                self.bump(6);
                granted ^ (1 << (bit % 32))
            }
            _ => granted,
        }
    }

    /// RX slots `[from, to)` of `at` were just handed to the guest: maybe
    /// corrupt some, and the headers of the frames in them.
    pub fn rx_slots(&self, at: &str, ring: &HostRing, mem: &HostMemory, from: u32, to: u32, vnet_hdr: bool) {
        let n = ring.ring.num_slots;
        let mut j = from;
        while j != to {
            let a = self.decide(Site::RxSlot, at, |r| {
                if r.below(1000) < 10 {
                    Some(match r.below(3) {
                        0 => Action::SlotLen { len: r.next_u64() as u16 },
                        1 => Action::SlotFlags { flags: r.next_u64() as u16 },
                        _ => Action::SlotBuf { idx: r.next_u64() as u32 },
                    })
                } else if vnet_hdr && r.below(1000) < 10 {
                    Some(Action::Header { at: r.below(10) as u8, byte: r.next_u64() as u8 })
                } else {
                    None
                }
            });
            match a {
                Some(Action::SlotLen { len }) => {
                    self.bump(1);
                    let _ = ring.ring.set_slot(j, len, ring.ring.slot_flags(j).unwrap_or(0));
                }
                Some(Action::SlotFlags { flags }) => {
                    self.bump(1);
                    let _ = ring.ring.set_slot(j, ring.ring.slot_len(j).unwrap_or(0), flags);
                }
                Some(Action::SlotBuf { idx }) => {
                    if let Some(orig) = ring.ring.slot_buf_idx(j) {
                        self.bump(1);
                        let key = (ring as *const HostRing as usize, j);
                        self.saved.lock().unwrap().entry(key).or_insert(orig);
                        let _ = ring.ring.set_slot_buf_idx(j, idx);
                    }
                }
                Some(Action::Header { at, byte }) => {
                    if let Some(buf) = ring.ring.slot_buf_idx(j).and_then(|b| mem.buffers().get(b)) {
                        self.bump(2);
                        let _ = buf.write_bytes(usize::from(at), &[byte]);
                    }
                }
                _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_draws_the_same_faults_whatever_the_other_points_do() {
        // Two runs of the same seed; the second interleaves another
        // ring's decisions: ring A's faults are the same.
        let a = Chaos::new(7);
        for _ in 0..5000 {
            a.irq("vale0:1 rx0");
        }
        let b = Chaos::new(7);
        for _ in 0..5000 {
            b.irq("vale0:2 rx0");
            b.irq("vale0:1 rx0");
        }
        let only = |c: &Chaos| c.record().faults.into_iter().filter(|f| f.at == "vale0:1 rx0").collect::<Vec<_>>();
        assert!(!only(&a).is_empty());
        assert_eq!(only(&a), only(&b));
    }

    #[test]
    fn a_replay_injects_the_recorded_faults_and_nothing_else() {
        let a = Chaos::new(11);
        let fates: Vec<IrqFate> = (0..3000).map(|_| a.irq("vale0:1 tx0")).collect();
        let rec = a.record();
        let path = std::env::temp_dir().join(format!("chaos-replay-{}.json", std::process::id()));
        rec.save(&path).unwrap();
        let loaded = ChaosRecord::load(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(loaded, rec);
        let b = Chaos::replay(&loaded);
        let again: Vec<IrqFate> = (0..3000).map(|_| b.irq("vale0:1 tx0")).collect();
        assert_eq!(fates, again);
        assert_eq!(b.record(), rec);
        // Stopped, it injects nothing.
        b.stop();
        assert_eq!(b.irq("vale0:1 tx0"), IrqFate::Deliver);
    }
}
