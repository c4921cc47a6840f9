//! The module build and its audit catch what would keep `ptnrs.ko` from
//! building or loading on FreeBSD: a KPI name FreeBSD does not have fails
//! the compilation (the kernel's warnings and -Werror), and a kernel
//! symbol nobody looked up fails the audit, naming it. Each is shown on
//! the real module: `make kmod` builds it, with FreeBSD 15's headers
//! assembled from ../shared/freebsd-sys, before these tests run.

use ptnet_tests::kmod_audit::{audit, SymbolList};
use std::path::{Path, PathBuf};
use std::process::Command;

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(rel: &str) -> Vec<u8> {
    let p = top().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run `make kmod` first)", p.display()))
}

fn symbols(rel: &str) -> SymbolList {
    SymbolList::parse(&String::from_utf8(read(rel)).unwrap()).unwrap()
}

#[test]
fn the_modules_pass_their_audit_with_their_own_lists() {
    let base = symbols("kmod/kernel-symbols");
    let r = audit(&read("target/kmod/obj/ptnrs.ko"), &base.names());
    assert!(r.ok(), "{r}");
    let mut pt = base.clone();
    pt.extend(symbols("kmod/kernel-symbols-ptnetmap"));
    let r = audit(&read("target/kmod/obj-ptnetmap/ptnrs.ko"), &pt.names());
    assert!(r.ok(), "{r}");
    // Every listed symbol names the FreeBSD file that exports it.
    for (sym, (file, _)) in base.entries.iter().chain(pt.entries.iter()) {
        assert!(file.starts_with("sys/"), "{sym}: {file} is not a FreeBSD source path");
    }
}

#[test]
fn an_unlisted_kernel_symbol_fails_the_audit_by_name() {
    let mut list = symbols("kmod/kernel-symbols");
    assert!(list.entries.remove("if_input").is_some());
    let r = audit(&read("target/kmod/obj/ptnrs.ko"), &list.names());
    assert!(!r.ok());
    assert!(r.violations.iter().any(|v| v.contains("undefined symbol if_input")), "{r}");
}

#[test]
fn the_stock_build_needs_nothing_that_only_ptnetmap_kernels_have() {
    // The zero-copy build against the stock list fails, naming netmap's
    // ptnetmap guest code: the list split is what keeps the default build
    // loadable on GENERIC.
    let r = audit(&read("target/kmod/obj-ptnetmap/ptnrs.ko"), &symbols("kmod/kernel-symbols").names());
    assert!(r.violations.iter().any(|v| v.contains("netmap_pt_guest_attach")), "{r}");
    let stock = String::from_utf8_lossy(&read("target/kmod/obj/ptnrs.ko")).into_owned();
    assert!(!stock.contains("netmap_pt_guest_attach"));
}

#[test]
fn a_wrong_kpi_name_does_not_compile() {
    // if_setget_counter() does not exist (FreeBSD's KPI is
    // if_setgetcounterfn()): with the kernel's flags and -Werror, the
    // implicit declaration stops the build.
    let dir = std::env::temp_dir().join(format!("ptnrs-kpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = String::from_utf8(read("kmod/ptnet_shim.c")).unwrap();
    assert!(src.contains("if_setgetcounterfn("));
    let bad = dir.join("ptnet_shim.c");
    std::fs::write(&bad, src.replace("if_setgetcounterfn(", "if_setget_counter(")).unwrap();
    let out = Command::new("make")
        .arg("-C")
        .arg(top().join("kmod"))
        .arg(format!("SYSDIR={}", top().join("target/freebsd-sys").display()))
        .arg(format!("SHIM_SRC={}", bad.display()))
        .arg(format!("OUT={}", dir.join("obj").display()))
        .arg(dir.join("obj/ptnet_shim.o"))
        .output()
        .expect("make");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a shim calling if_setget_counter() compiled");
    assert!(err.contains("if_setget_counter"), "{err}");
    // The unaltered shim compiles with the very same command (make kmod).
    assert!(top().join("target/kmod/obj/ptnet_shim.o").exists());
}
