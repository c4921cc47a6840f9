//! The kernel's sleep mutexes (`mtx(9)`, through the shim) around the
//! driver's state: what WITNESS sees and checks, and what the scheduler
//! knows about. A spin lock here could spin forever on a one-CPU guest
//! while its holder is preempted.

use crate::ops::ops;
use crate::os::ShimDev;
use core::cell::UnsafeCell;
use core::ffi::{c_void, CStr};
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::ptr::{addr_of_mut, NonNull};

/// A `T` behind a kernel mutex.
pub(crate) struct KLock<T> {
    mtx: NonNull<c_void>,
    data: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, which holds the
// kernel mutex; the mutex handle may be used from any thread.
unsafe impl<T: Send> Send for KLock<T> {}
// SAFETY: as above: the mutex serialises every access to `data`.
unsafe impl<T: Send> Sync for KLock<T> {}

impl<T> KLock<T> {
    /// `value` behind a new mutex named `name`; the value back when the
    /// kernel has no memory for the mutex.
    pub fn new(dev: ShimDev, name: &'static CStr, value: T) -> Result<Self, T> {
        let Some(o) = ops() else { return Err(value) };
        // SAFETY: `name` is a static NUL-terminated string; the shim
        // returns NULL or a mutex valid until `mtx_free`.
        match NonNull::new(unsafe { (o.mtx_new)(dev.0, name.as_ptr()) }) {
            Some(mtx) => Ok(Self { mtx, data: UnsafeCell::new(value) }),
            None => Err(value),
        }
    }

    /// [`KLock::new`] in place: the mutex, then the value built by `init`
    /// where it is to live (per-ring state is several KiB: never on the
    /// kernel stack). False, with nothing allocated and `slot` left
    /// uninitialised, when the kernel has no memory for the mutex.
    pub fn init_in(
        slot: &mut MaybeUninit<Self>,
        dev: ShimDev,
        name: &'static CStr,
        init: impl FnOnce(&mut MaybeUninit<T>),
    ) -> bool {
        let Some(o) = ops() else { return false };
        // SAFETY: as in `new`.
        let Some(mtx) = NonNull::new(unsafe { (o.mtx_new)(dev.0, name.as_ptr()) }) else { return false };
        let p = slot.as_mut_ptr();
        // SAFETY: both fields of `*p` are written once through raw
        // pointers: the handle, then the value through a `MaybeUninit`
        // (`UnsafeCell<T>` has `T`'s layout), which `init` initialises.
        unsafe {
            addr_of_mut!((*p).mtx).write(mtx);
            init(&mut *addr_of_mut!((*p).data).cast::<MaybeUninit<T>>());
        }
        true
    }

    /// Takes the mutex (sleeping if it is held).
    pub fn lock(&self) -> KGuard<'_, T> {
        if let Some(o) = ops() {
            // SAFETY: `mtx` came from `mtx_new` and lives as long as `self`.
            unsafe { (o.mtx_lock)(self.mtx.as_ptr()) };
        }
        KGuard { lock: self }
    }

    /// Takes the mutex if nobody holds it.
    pub fn try_lock(&self) -> Option<KGuard<'_, T>> {
        let o = ops()?;
        // SAFETY: as in `lock`.
        let taken = unsafe { (o.mtx_trylock)(self.mtx.as_ptr()) } != 0;
        // The guard only once the mutex is ours: dropping a guard unlocks
        // (`then_some(KGuard ..)` built one either way, and a failed try
        // released the holder's mutex).
        #[allow(clippy::unnecessary_lazy_evaluations)]
        taken.then(|| KGuard { lock: self })
    }
}

impl<T> Drop for KLock<T> {
    fn drop(&mut self) {
        if let Some(o) = ops() {
            // SAFETY: nobody holds the mutex (`&mut self`); it is freed once.
            unsafe { (o.mtx_free)(self.mtx.as_ptr()) };
        }
    }
}

/// The value of a held [`KLock`]; dropping it releases the mutex.
pub(crate) struct KGuard<'a, T> {
    lock: &'a KLock<T>,
}

impl<T> Deref for KGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex, so no other reference exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for KGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this one unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for KGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(o) = ops() {
            // SAFETY: this guard took the mutex and releases it once.
            unsafe { (o.mtx_unlock)(self.lock.mtx.as_ptr()) };
        }
    }
}
