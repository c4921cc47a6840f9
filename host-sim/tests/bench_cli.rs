//! `ptnet-sim bench native`, short: every row (the copy and zero-copy
//! Rust drivers, and FreeBSD's C driver sync on the same rings) moves
//! traffic with notifications, and the head-to-head figure is reported.
//! Figures are not judged here: performance goals live in the benchmark.

use serde_json::Value;
use std::process::Command;

#[test]
fn bench_native_reports_the_rust_and_c_guests_head_to_head() {
    let out = Command::new(env!("CARGO_BIN_EXE_ptnet-sim"))
        .args(["bench", "native", "-d", "0.3", "--repeat", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in ["copy", "zero_copy", "c_zero_copy"] {
        let r = &j[row];
        assert!(r["mpps"].as_f64().unwrap() > 0.0, "{row}: {j}");
        assert!(r["syncs_per_sec"].as_f64().unwrap() > 0.0, "{row}: {j}");
        assert!(r["kicks_per_pkt"].as_f64().unwrap() > 0.0, "{row}: {j}");
        assert!(r["irqs_per_pkt"].as_f64().unwrap() > 0.0, "{row}: {j}");
        assert_eq!(r["runs"][0]["corrupt"], 0, "{row}: {j}");
    }
    assert!(j["rust_vs_c"].as_f64().unwrap() > 0.0, "{j}");
}
