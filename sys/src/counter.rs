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

    /// Adds one; returns whether to log this occurrence ([`log_this`]).
    #[inline]
    pub fn inc_logged(&self, every: u64) -> bool {
        self.inc();
        log_this(self.get(), every)
    }
}

/// Whether the `nth` occurrence (counted from 1) of an event is logged:
/// the first four, then one in `every`, so that however often a host
/// misbehaves the console sees a bounded rate.
#[inline]
pub fn log_this(nth: u64, every: u64) -> bool {
    nth <= 4 || nth.is_multiple_of(every)
}
