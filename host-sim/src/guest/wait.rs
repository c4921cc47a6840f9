//! Sleeping and waking in the simulated guest kernel.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A sleep/wakeup channel (`selinfo`): a counter bumped by each wakeup.
#[derive(Default)]
pub struct WaitQueue {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl WaitQueue {
    /// The wakeup count, read before checking for work.
    pub fn seq(&self) -> u64 {
        *self.seq.lock().unwrap()
    }

    /// Wakes every sleeper.
    pub fn wake(&self) {
        *self.seq.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    /// Sleeps until a wakeup newer than `seen`; false on timeout.
    pub fn wait(&self, seen: u64, deadline: Instant) -> bool {
        let mut s = self.seq.lock().unwrap();
        while *s == seen {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self.cv.wait_timeout(s, deadline - now).unwrap().0;
        }
        true
    }
}

/// The guest CPU that runs the network stack: it sleeps when idle and is
/// woken by interrupts (an "event loop" of a one-vCPU VM).
#[derive(Default)]
pub struct Vcpu {
    q: WaitQueue,
}

impl Vcpu {
    /// Raises the CPU's attention (an interrupt was posted).
    pub fn wake(&self) {
        self.q.wake();
    }

    /// A token to pass to [`Vcpu::idle`]: take it before looking for work.
    pub fn token(&self) -> u64 {
        self.q.seq()
    }

    /// Halts until woken after `token` was taken, or `timeout`.
    pub fn idle(&self, token: u64, timeout: Duration) {
        self.q.wait(token, Instant::now() + timeout);
    }
}
