//! netmap's C guest sync against the Rust core's
//! (`ptnet_netmapc::diff::compare`): any ring state, any CSB, any call;
//! the two decide the same, or the Rust core refused a host whose
//! pointers break the ring's invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ptnet_netmapc::diff::{case_from, compare};

fuzz_target!(|data: &[u8]| {
    if let Some(c) = case_from(data) {
        if let Err(e) = compare(&c) {
            panic!("{e}");
        }
    }
});
