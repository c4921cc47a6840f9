//! The real `ptnrs.ko`, as `make kmod` links it, loaded and run by the
//! userspace FreeBSD kernel of `ptnet_tests::kharness` against the
//! simulated ptnet device: each scenario of the `kharness` binary in its
//! own process (a kernel panic ends the process). Then the checks of the
//! harness kernel shown to fire on modules that misuse a KPI: the module
//! built from an altered copy of the shim must make the kernel panic,
//! naming what it did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn ko() -> PathBuf {
    let ko = top().join("target/kmod/obj/ptnrs.ko");
    assert!(ko.exists(), "{}: run `make kmod` first", ko.display());
    ko
}

/// Runs the `kharness` binary; a scenario that has not ended after five
/// minutes is killed (and fails: a hang is a finding too).
fn kharness(scenario: &str, ko: &Path, extra: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kharness"))
        .arg(scenario)
        .arg("--ko")
        .arg(ko)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kharness runs");
    let end = Instant::now() + Duration::from_secs(300);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("kharness output")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs a scenario on the real module; it must hold.
fn scenario(name: &str, extra: &[&str]) -> String {
    let o = kharness(name, &ko(), extra);
    let t = text(&o);
    assert!(o.status.success(), "kharness {name}: {:?}\n{t}", o.status);
    t
}

/// Runs a scenario with the zero-copy module in a kernel built with
/// WITH_PTNETMAP (netmap's memdev driver and guest allocator).
fn scenario_ptnetmap(name: &str, extra: &[&str]) -> String {
    let ko = top().join("target/kmod/obj-ptnetmap/ptnrs.ko");
    assert!(ko.exists(), "{}: run `make kmod` first", ko.display());
    let o = kharness(name, &ko, &[&["--ptnetmap"], extra].concat());
    let t = text(&o);
    assert!(o.status.success(), "kharness {name} --ptnetmap: {:?}\n{t}", o.status);
    t
}

#[test]
fn zero_copy_tcp_with_tso_and_lro_in_a_ptnetmap_kernel() {
    scenario_ptnetmap("traffic", &["--seconds", "1"]);
}

#[test]
fn zero_copy_netmap_applications_in_a_ptnetmap_kernel() {
    scenario_ptnetmap("netmap", &[]);
    scenario_ptnetmap("netmap-rings", &[]);
}

#[test]
fn zero_copy_module_life_in_a_ptnetmap_kernel() {
    scenario_ptnetmap("exercise", &[]);
    scenario_ptnetmap("cycles", &["--cycles", "200"]);
}

#[test]
fn kldload_probe_attach_detach_kldunload() {
    scenario("lifecycle", &[]);
}

#[test]
fn attach_fails_cleanly_at_each_allocation() {
    let t = scenario("attach-failures", &[]);
    assert!(t.contains("attach failed cleanly at each of its"), "{t}");
}

#[test]
fn attach_without_msix_fails_and_leaks_nothing() {
    scenario("attach-no-msix", &[]);
}

#[test]
fn without_the_memdev_ifconfig_up_fails_with_a_reason() {
    let t = scenario("attach-no-memdev", &[]);
    assert!(t.contains("cannot map the host memory"), "{t}");
}

#[test]
fn ifconfig_capabilities_media_mtu_and_sysctl() {
    scenario("ifconfig", &[]);
}

#[test]
fn the_vnet_hdr_tunable_is_read_at_load() {
    scenario("tunable", &[]);
}

#[test]
fn tcp_with_tso_and_lro_both_ways_between_the_module_and_a_guest() {
    scenario("traffic", &["--seconds", "1"]);
}

#[test]
fn tcp_with_tso_and_lro_both_ways_between_the_module_and_linux() {
    scenario("tap", &["--seconds", "1"]);
}

#[test]
fn a_netmap_application_takes_the_rings_and_gives_them_back() {
    scenario("netmap", &[]);
}

#[test]
fn netmap_clients_on_different_rings_come_and_go_independently() {
    scenario("netmap-rings", &[]);
}

#[test]
fn detach_and_unload_while_traffic_flows() {
    scenario("detach-under-traffic", &[]);
}

#[test]
fn a_thousand_load_attach_detach_unload_cycles_leak_nothing() {
    let t = scenario("cycles", &["--cycles", "1000"]);
    assert!(t.contains("1000 load/attach/up/traffic/detach/unload cycles"), "{t}");
}

#[test]
fn the_module_survives_a_hostile_host_and_unloads_cleanly() {
    scenario("chaos", &["--seconds", "3"]);
}

#[test]
fn the_zero_copy_build_does_not_load_on_a_stock_kernel() {
    // As on FreeBSD: GENERIC has no ptnetmap guest code, so kldload
    // fails naming the first symbol it cannot resolve.
    let pt = top().join("target/kmod/obj-ptnetmap/ptnrs.ko");
    let o = kharness("lifecycle", &pt, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("undefined symbol"), "{t}");
}

/// Builds the module from the shim with `from` replaced by `to` (each
/// must occur), with `make kmod`'s flags and Rust archive.
fn altered_ko(tag: &str, edits: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ptnrs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = std::fs::read_to_string(top().join("kmod/ptnet_shim.c")).unwrap();
    for (from, to) in edits {
        assert!(src.contains(from), "the shim no longer has {from:?}");
        src = src.replace(from, to);
    }
    let shim = dir.join("ptnet_shim.c");
    std::fs::write(&shim, src).unwrap();
    let o = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(top().join("kmod"))
        .arg(format!("SYSDIR={}", top().join("target/freebsd-sys").display()))
        .arg(format!("SHIM_SRC={}", shim.display()))
        .arg(format!("OUT={}", dir.join("obj").display()))
        .output()
        .expect("make");
    assert!(o.status.success(), "{}", text(&o));
    dir.join("obj/ptnrs.ko")
}

/// The altered module must panic the kernel with `message`.
fn panics_with(tag: &str, edits: &[(&str, &str)], message: &str) {
    let t = altered_run(tag, edits, "exercise", 70);
    assert!(t.contains("panic: ") && t.contains(message), "{t}");
    assert!(t.contains("(ptnrs.ko)"), "the backtrace does not reach the module:\n{t}");
}

/// Runs `scenario` on the altered module: it must end with `status`.
fn altered_run(tag: &str, edits: &[(&str, &str)], scenario: &str, status: i32) -> String {
    let _ = ko();
    let bad = altered_ko(tag, edits);
    let o = kharness(scenario, &bad, &[]);
    // KHARNESS_KEEP=1 keeps the altered module (its path on stderr).
    if std::env::var_os("KHARNESS_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(bad.parent().unwrap().parent().unwrap());
    } else {
        eprintln!("kept {}", bad.display());
    }
    let t = text(&o);
    assert_eq!(o.status.code(), Some(status), "kharness {scenario} on the altered module:\n{t}");
    t
}

/// The altered module must fail `scenario` (a check, not a panic) with
/// `message`: the scenario catches the defect the edit brings back.
fn fails_with(tag: &str, edits: &[(&str, &str)], scenario: &str, message: &str) {
    let t = altered_run(tag, edits, scenario, 1);
    assert!(t.contains(message), "{t}");
}

#[test]
fn an_mbuf_used_after_if_input_faults() {
    panics_with(
        "uaf",
        &[("\tif_input(sc->ifp, m);\n", "\tif_input(sc->ifp, m);\n\tm->m_pkthdr.rcvif = NULL;\n")],
        "use after m_freem() or if_input()",
    );
}

#[test]
fn sleeping_with_a_mutex_held_panics() {
    panics_with(
        "sleep",
        &[(
            "\tsc->queues = malloc(sizeof(*q) * sc->nqueues, M_PTNRS,\n\t    M_WAITOK | M_ZERO);\n",
            "\tmtx_lock(&ptnrsmem_mtx);\n\tsc->queues = malloc(sizeof(*q) * sc->nqueues, M_PTNRS,\n\t    M_WAITOK | M_ZERO);\n\tmtx_unlock(&ptnrsmem_mtx);\n",
        )],
        "sleeping with non-sleepable lock \"ptnrs memdev users\" held",
    );
}

#[test]
fn freeing_a_pending_callout_panics() {
    panics_with(
        "callout",
        &[("\tcallout_drain(&sc->tick);\n", "\t(void)0;\n")],
        "still pending (callout_drain() first)",
    );
}

#[test]
fn a_lock_order_reversal_is_reported() {
    // netmap calls nm_register with its global lock held, and the shim
    // takes the softc's lock inside: the order is established when the
    // application opens the rings. A detach taking them the other way is
    // a reversal.
    panics_with(
        "lor",
        &[(
            "\t\tif (sc->nm_attached) {\n\t\t\tNMG_LOCK();\n",
            "\t\tif (sc->nm_attached) {\n\t\t\tsx_xlock(&sc->lock);\n\t\t\tNMG_LOCK();\n\t\t\tsx_xunlock(&sc->lock);\n",
        )],
        "lock order reversal",
    );
}

// The defects of issue 11 that the shim once had, brought back one at a
// time: each is caught by the scenario that covers it.

#[test]
fn netmap_attached_before_ether_ifattach_is_caught() {
    panics_with(
        "nm-early",
        &[(
            "\tether_ifattach(sc->ifp, sc->info.mac);\n",
            "\t(void)ptnrs_netmap_attach(sc);\n\tether_ifattach(sc->ifp, sc->info.mac);\n",
        )],
        "netmap_attach() before ether_ifattach()",
    );
}

#[test]
fn netmap_rings_not_loaded_from_the_driver_are_caught() {
    fails_with(
        "nm-ring",
        &[("\tring->head = k->rhead;\n\tring->cur = k->rcur;\n\tring->tail = k->hwtail;\n", "\t(void)ring;\n")],
        "netmap",
        "FAILED",
    );
}

#[test]
fn an_undeclared_virtio_net_header_is_caught() {
    fails_with(
        "nm-hdr",
        &[("\tna.virt_hdr_len = sc->info.vnet_hdr_len;\n", "")],
        "netmap",
        "the port declares a 0-byte virtio-net header",
    );
}

#[test]
fn a_client_leaving_does_not_take_the_rings_from_the_others() {
    fails_with(
        "nm-last",
        &[("\t\t\t\tif (!nm_kring_pending_off(kring))\n\t\t\t\t\tcontinue;\n", "")],
        "netmap-rings",
        "after the ring 0 client left",
    );
}

#[test]
fn transmitted_packets_reach_bpf() {
    fails_with(
        "bpf",
        &[("\tETHER_BPF_MTAP(sc->ifp, m);\n", "\t(void)sc;\n\t(void)m;\n")],
        "exercise",
        "tcpdump saw 0 of 64",
    );
}

#[test]
fn shutdown_stops_the_host() {
    fails_with(
        "shutdown",
        &[("\tptnet_rs_shutdown(sc->rs);\n", "")],
        "exercise",
        "the CSB stays programmed after shutdown",
    );
}

#[test]
fn the_memdev_is_not_detached_while_its_memory_is_lent() {
    fails_with("memdev", &[("\t\tmsc->users++;\n", "")], "lifecycle", "memdev detached under its NIC");
}

#[test]
fn syncs_of_a_client_without_interrupts_leave_them_off() {
    fails_with("nointr", &[("\t\tf |= PTNET_RS_SYNC_NOINTR;\n", "")], "netmap", "while polling with NKR_NOINTR");
}

#[test]
fn nm_intr_turns_the_interrupts_off() {
    fails_with(
        "nmintr",
        &[("\tptnet_rs_nm_intr(ptnrs_na_softc(na)->rs, onoff);\n", "\t(void)na;\n\t(void)onoff;\n")],
        "netmap",
        "interrupts after nm_intr(0)",
    );
}
