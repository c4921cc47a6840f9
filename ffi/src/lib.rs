//! C ABI boundary between the FreeBSD shim and the driver core (grown by the kmod work).
#![no_std]
pub use ptnet;
