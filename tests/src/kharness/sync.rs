//! The blocking primitives the harness kernel builds its locks, sleeps
//! and taskqueues on: POSIX mutexes and condition variables (on the
//! monotonic clock), locked and unlocked by separate calls as a kernel's
//! lock is, which Rust's guard-based locks do not allow.

use std::cell::UnsafeCell;
use std::time::Duration;

/// A mutex locked and unlocked by explicit calls.
pub struct RawLock(UnsafeCell<libc::pthread_mutex_t>);

/// A condition variable for [`RawLock`].
pub struct RawCond(UnsafeCell<libc::pthread_cond_t>);

// SAFETY: POSIX mutexes and condition variables are made to be shared
// between threads; they are boxed, so they never move after init.
unsafe impl Send for RawLock {}
// SAFETY: as above.
unsafe impl Sync for RawLock {}
// SAFETY: as above.
unsafe impl Send for RawCond {}
// SAFETY: as above.
unsafe impl Sync for RawCond {}

impl RawLock {
    /// A new, unlocked mutex (boxed: it must not move).
    pub fn new() -> Box<Self> {
        let l = Box::new(RawLock(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)));
        // SAFETY: the mutex is fresh and in place.
        unsafe { libc::pthread_mutex_init(l.0.get(), std::ptr::null()) };
        l
    }

    /// Blocks until the mutex is held.
    pub fn lock(&self) {
        // SAFETY: initialized in `new`.
        unsafe { libc::pthread_mutex_lock(self.0.get()) };
    }

    /// Takes the mutex if free.
    pub fn try_lock(&self) -> bool {
        // SAFETY: initialized in `new`.
        unsafe { libc::pthread_mutex_trylock(self.0.get()) == 0 }
    }

    /// Releases the mutex (held by the caller).
    pub fn unlock(&self) {
        // SAFETY: initialized in `new`; the kernel side only unlocks what
        // it locked (its own checks come first).
        unsafe { libc::pthread_mutex_unlock(self.0.get()) };
    }
}

impl Drop for RawLock {
    fn drop(&mut self) {
        // SAFETY: nobody holds a destroyed lock (the kernel side checks).
        unsafe { libc::pthread_mutex_destroy(self.0.get()) };
    }
}

impl RawCond {
    /// A new condition variable on the monotonic clock.
    pub fn new() -> Box<Self> {
        let c = Box::new(RawCond(UnsafeCell::new(libc::PTHREAD_COND_INITIALIZER)));
        // SAFETY: attribute and condition are initialized in place before use.
        unsafe {
            let mut attr: libc::pthread_condattr_t = std::mem::zeroed();
            libc::pthread_condattr_init(&mut attr);
            libc::pthread_condattr_setclock(&mut attr, libc::CLOCK_MONOTONIC);
            libc::pthread_cond_init(c.0.get(), &attr);
            libc::pthread_condattr_destroy(&mut attr);
        }
        c
    }

    /// Waits with `l` held (released meanwhile); `None`: no timeout.
    /// True on timeout.
    pub fn wait(&self, l: &RawLock, timeout: Option<Duration>) -> bool {
        match timeout {
            // SAFETY: both initialized; the caller holds `l`.
            None => unsafe { libc::pthread_cond_wait(self.0.get(), l.0.get()) == libc::ETIMEDOUT },
            Some(d) => {
                let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: `ts` is a valid out-pointer.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
                let ns = ts.tv_nsec as u128 + d.as_nanos().min(1 << 60);
                ts.tv_sec += (ns / 1_000_000_000) as libc::time_t;
                ts.tv_nsec = (ns % 1_000_000_000) as libc::c_long;
                // SAFETY: as above.
                unsafe { libc::pthread_cond_timedwait(self.0.get(), l.0.get(), &ts) == libc::ETIMEDOUT }
            }
        }
    }

    /// Wakes every waiter.
    pub fn broadcast(&self) {
        // SAFETY: initialized in `new`.
        unsafe { libc::pthread_cond_broadcast(self.0.get()) };
    }
}

impl Drop for RawCond {
    fn drop(&mut self) {
        // SAFETY: no waiter remains (the kernel frees after its threads).
        unsafe { libc::pthread_cond_destroy(self.0.get()) };
    }
}
