//! The C ABI boundary of the FreeBSD kernel module: the driver core behind
//! `extern "C"` entry points that the C shim in `kmod/` calls, and the
//! core's OS traits implemented over a table of functions the shim lends
//! ([`PtnetShimOps`]).
//!
//! The contract is `kmod/ptnet_rs.h`, generated from this crate by
//! cbindgen; a test fails when the committed header differs. The module
//! built from this crate has no undefined symbols besides the kernel's
//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp` (`make kmod-audit`
//! checks it).

#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::arithmetic_side_effects
    )
)]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

mod entry;
mod kbox;
mod klock;
mod mbuf;
mod nmring;
mod ops;
mod os;
#[cfg(target_os = "none")]
mod panic;
mod softc;

pub use entry::*;
pub use nmring::PtnetRsNmRing;
pub use ops::{Mbuf, PtnetRsMemdev, PtnetRsPktInfo, PtnetRsRxInfo, PtnetShimOps};
