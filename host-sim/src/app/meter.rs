//! Per-second reporting of a running counter (bytes or transactions), the
//! way pkt-gen prints a line a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Samples a counter once a second while `running` says so.
pub struct Meter<'a> {
    counter: &'a AtomicU64,
    unit: Unit,
    print: bool,
}

/// What the counter counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Bytes, shown as Gbps.
    Bytes,
    /// Transactions, shown per second.
    Transactions,
}

impl<'a> Meter<'a> {
    /// A meter over `counter`; with `print`, a line per second on stdout.
    pub fn new(counter: &'a AtomicU64, unit: Unit, print: bool) -> Self {
        Self { counter, unit, print }
    }

    /// Samples until `running()` turns false; returns the per-second rates
    /// (Gbps or transactions per second).
    pub fn run(&self, mut running: impl FnMut() -> bool) -> Vec<f64> {
        let start = Instant::now();
        let (mut last_t, mut last_v) = (start, self.counter.load(Ordering::Relaxed));
        let mut rates = Vec::new();
        while running() {
            std::thread::sleep(Duration::from_millis(20));
            if last_t.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let (now, v) = (Instant::now(), self.counter.load(Ordering::Relaxed));
            let dt = (now - last_t).as_secs_f64();
            let rate = match self.unit {
                Unit::Bytes => (v - last_v) as f64 * 8.0 / dt / 1e9,
                Unit::Transactions => (v - last_v) as f64 / dt,
            };
            if self.print {
                match self.unit {
                    Unit::Bytes => println!(
                        "{:8.3}s {:9.3} Gbps ({} bytes in {} usec)",
                        (now - start).as_secs_f64(),
                        rate,
                        v - last_v,
                        (dt * 1e6) as u64
                    ),
                    Unit::Transactions => println!("{:8.3}s {:10.0} transactions/s", (now - start).as_secs_f64(), rate),
                }
            }
            rates.push(rate);
            (last_t, last_v) = (now, v);
        }
        rates
    }
}
