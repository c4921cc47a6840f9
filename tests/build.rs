//! Builds the harness kernel (`tests/harness/`, see its GNUmakefile)
//! against FreeBSD 15's headers, assembled from ../shared/freebsd-sys
//! when missing, as `make kmod` does: a stock kernel (`HK_KERNEL_OBJECT`)
//! and one built with WITH_PTNETMAP (`HK_KERNEL_OBJECT_PTNETMAP`).

use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let top = manifest.parent().unwrap().to_path_buf();
    let sys = top.join("target/freebsd-sys");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("hk");
    // The top Makefile's rule lays the headers out once (and again when
    // the kit changes).
    run(Command::new("make").arg("-s").arg("-C").arg(&top).arg(sys.join(".assembled")));
    // A stock kernel, and one built with WITH_PTNETMAP.
    for (dir, var, pt) in [("hk", "HK_KERNEL_OBJECT", "0"), ("hk-ptnetmap", "HK_KERNEL_OBJECT_PTNETMAP", "1")] {
        let out = out.with_file_name(dir);
        run(Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(manifest.join("harness"))
            .arg(format!("SYSDIR={}", sys.display()))
            .arg(format!("OUT={}", out.display()))
            .arg(format!("WITH_PTNETMAP={pt}")));
        println!("cargo:rustc-env={var}={}", out.join("hk_kernel.o").display());
    }
    println!("cargo:rerun-if-changed=harness");
    println!("cargo:rerun-if-changed=../target/freebsd-sys/.assembled");
}
