//! `ptnet-sim pktgen|tcp --chaos <seed>`: the tool reports what the hostile
//! host did and what the guests counted, and fails unless traffic passes
//! cleanly once the host behaves.

use serde_json::Value;
use std::process::Command;

fn run(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ptnet-sim")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn total(v: &Value) -> u64 {
    v.as_object().unwrap().values().map(|x| x.as_u64().unwrap()).sum()
}

#[test]
fn pktgen_under_chaos_reports_and_recovers() {
    let j = run(&["pktgen", "--chaos", "21", "-d", "1", "--json"]);
    assert!(j["chaos"]["csb"].as_u64().unwrap() > 0 && j["chaos"]["slots"].as_u64().unwrap() > 0, "{j}");
    assert!(j["guest_faults"]["host_errors"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["after_chaos_clean"], true, "{j}");
    assert_eq!(j["after_chaos"]["corrupt"], 0);
}

#[test]
fn tcp_under_chaos_reports_and_recovers() {
    let j = run(&["tcp", "--chaos", "22", "-d", "1", "--json"]);
    assert!(total(&j["chaos"]) > 0 && total(&j["guest_faults"]) > 0, "{j}");
    let after = &j["after_chaos"]["Ok"];
    assert!(after["bytes"].as_u64().unwrap() > 1 << 20, "{j}");
}
