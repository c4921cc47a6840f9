//! A box in kernel memory (`malloc(9)` through the shim), for the driver's
//! per-device and per-ring state: allocation failure is an error, never a
//! panic.

use crate::ops::ops;
use core::mem::{size_of, MaybeUninit};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

/// An owned `T` in memory from the shim's `mem_alloc`.
pub(crate) struct KBox<T> {
    ptr: NonNull<T>,
}

impl<T> KBox<T> {
    /// Moves `value` into kernel memory; gives it back when there is none
    /// (or the shim is not registered). For small values: `value` lives on
    /// the stack first.
    pub fn new(value: T) -> Result<Self, T> {
        match KBox::uninit() {
            Some(b) => Ok(b.write(value)),
            None => Err(value),
        }
    }

    /// Memory for one `T`, or None.
    fn alloc() -> Option<NonNull<T>> {
        let o = ops()?;
        // SAFETY: the shim's `mem_alloc` returns NULL or `size` bytes of
        // zeroed memory that stay valid until `mem_free`.
        let raw = unsafe { (o.mem_alloc)(size_of::<T>().max(1)) };
        let ptr = NonNull::new(raw.cast::<T>())?;
        if !ptr.as_ptr().is_aligned() {
            Self::free(ptr);
            return None;
        }
        Some(ptr)
    }

    /// Returns memory from [`KBox::alloc`] without dropping its contents.
    fn free(ptr: NonNull<T>) {
        if let Some(o) = ops() {
            // SAFETY: the memory came from `mem_alloc` (ops, once
            // registered, never change) and is not used after this.
            unsafe { (o.mem_free)(ptr.as_ptr().cast()) };
        }
    }
}

impl<T> KBox<MaybeUninit<T>> {
    /// Uninitialised kernel memory for a `T`, to build it in place (large
    /// values never touch the 16 KiB kernel stack).
    pub fn uninit() -> Option<Self> {
        Self::alloc().map(|ptr| Self { ptr })
    }

    /// The box, its contents initialised.
    ///
    /// # Safety
    /// The contents are a valid `T`.
    pub unsafe fn assume_init(self) -> KBox<T> {
        KBox { ptr: NonNull::new(self.into_raw()).unwrap_or(NonNull::dangling()).cast() }
    }

    /// Writes `value` in and returns the initialised box.
    pub fn write(mut self, value: T) -> KBox<T> {
        (*self).write(value);
        // SAFETY: just written.
        unsafe { self.assume_init() }
    }
}

impl<T> KBox<T> {
    /// Gives up ownership: the pointer goes to C, back with `from_raw`.
    pub fn into_raw(self) -> *mut T {
        let p = self.ptr.as_ptr();
        core::mem::forget(self);
        p
    }

    /// Takes back a pointer from [`KBox::into_raw`].
    ///
    /// # Safety
    /// `p` came from `into_raw` and is not used elsewhere afterwards.
    pub unsafe fn from_raw(p: *mut T) -> Self {
        // SAFETY: `into_raw` pointers are never NULL.
        Self { ptr: unsafe { NonNull::new_unchecked(p) } }
    }

    /// Moves the value out and frees the memory.
    pub fn into_inner(self) -> T {
        let p = self.into_raw();
        // SAFETY: `p` holds an initialised `T` that nothing else owns now;
        // it is read once and its memory freed without dropping it again.
        let value = unsafe { p.read() };
        // SAFETY: `into_raw` pointers are never NULL.
        Self::free(unsafe { NonNull::new_unchecked(p) });
        value
    }
}

impl<T> Deref for KBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` holds an initialised `T` owned by this box.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for KBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for KBox<T> {
    fn drop(&mut self) {
        // SAFETY: the box owns an initialised `T`, dropped exactly once here.
        unsafe { self.ptr.as_ptr().drop_in_place() };
        Self::free(self.ptr);
    }
}

// SAFETY: a KBox owns its `T` like a `Box` does.
unsafe impl<T: Send> Send for KBox<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for KBox<T> {}
