//! Statistics counters that the owner of a ring updates under the ring's
//! lock and anyone (sysctl, `if_get_counter`) may read at any time.

use core::sync::atomic::{AtomicU64, Ordering};

/// A counter with a single writer at a time (the holder of the lock that
/// protects its ring), so an increment is a plain load and store: no
/// locked read-modify-write on the datapath. Readers see a recent value.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (callers hold the lock that serialises writers).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
