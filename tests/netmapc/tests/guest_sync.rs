//! The C guest sync of netmap (as FreeBSD's `if_ptnet.c` runs it) and the
//! Rust core's make the same decisions on every input, except where the
//! Rust core refuses a host that breaks the ring's invariants (see
//! `ptnet_netmapc::diff` for the designed differences).

use ptnet::kring::{Dir, Kring};
use ptnet_netmapc::diff::{self, compare, Case, Gen, Verdict};

#[test]
fn the_c_and_rust_guest_syncs_decide_the_same_on_random_states() {
    let mut g = Gen::new(1);
    let (mut same, mut refused) = (0, 0);
    for _ in 0..200_000 {
        let c = diff::case(&mut g, 10);
        match compare(&c) {
            Ok(Verdict::Same) => same += 1,
            Ok(Verdict::Refused) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // Both kinds of input were met, many times.
    assert!(same > 150_000 && refused > 10_000, "{same} same, {refused} refused");
}

#[test]
fn the_c_and_rust_guest_syncs_decide_the_same_along_sequences() {
    let mut g = Gen::new(2);
    let mut refused = 0;
    for _ in 0..2_000 {
        refused += diff::sequence(&mut g, 200, 2).unwrap();
    }
    assert!(refused > 0);
}

#[test]
fn the_comparison_sees_a_wrong_kick_decision() {
    // The comparison is not vacuous: on a full TX ring with a sleeping
    // host, C kicks; a case where Rust would have to differ is reported.
    // A host that consumed nothing and freed nothing, a guest that filled
    // the ring: both kick (the ring would block, the host sleeps).
    let k = Kring { num_slots: 8, hwcur: 0, rhead: 7, rcur: 7, hwtail: 7 };
    let c = Case { dir: Dir::Tx, kring: k, host: (0, 7, 1), atok: (0, 0, 0, 0), force_reclaim: false, nointr: false };
    assert_eq!(compare(&c), Ok(Verdict::Same));
    // The host moved hwcur past what it was handed: C takes it, Rust
    // refuses, and the comparison says which.
    let lie = Case { host: (3, 7, 1), kring: Kring { rhead: 2, rcur: 2, ..k }, ..c };
    assert_eq!(compare(&lie), Ok(Verdict::Refused));
}
