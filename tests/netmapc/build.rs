//! Compiles netmap's own C (`netmap_kloop.c`, unmodified, from
//! `../shared/reference/netmap`) for userspace, against FreeBSD 15's
//! kernel headers as a kernel built with WITH_PTNETMAP compiles it, with
//! the definitions around it in `c/` (see `c/netmapc.c`): one static
//! library linked into this crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let top = manifest.join("../..").canonicalize().unwrap();
    let sys = top.join("target/freebsd-sys");
    let reference = std::env::var_os("NETMAP_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| top.join("../shared/reference/netmap"));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // The top Makefile's rule lays FreeBSD's headers out (once).
    run(Command::new("make").arg("-s").arg("-C").arg(&top).arg(sys.join(".assembled")));
    // What a module build generates: <machine/...> and the option header.
    for (link, to) in [("machine", "amd64/include"), ("x86", "x86/include")] {
        let l = out.join(link);
        let _ = std::fs::remove_file(&l);
        std::os::unix::fs::symlink(sys.join(to), &l).unwrap();
    }
    std::fs::write(out.join("opt_global.h"), "").unwrap();
    let inc = |p: &Path| format!("-I{}", p.display());
    let kernel_obj = out.join("netmapc.o");
    run(Command::new("clang")
        .args(["--target=x86_64-unknown-freebsd15.0", "-O2", "-g", "-fno-strict-aliasing", "-std=gnu99", "-nostdinc"])
        .args([inc(&out), inc(&sys), inc(&sys.join("contrib/ck/include")), inc(&reference)])
        .arg(inc(&manifest.join("../harness")))
        .args(["-D_KERNEL", "-DKLD_MODULE", "-DHAVE_KERNEL_OPTION_HEADERS", "-DWITH_PTNETMAP"])
        .arg("-include")
        .arg(out.join("opt_global.h"))
        // Userspace code generation: position independent, the red zone
        // and the C library's memset/memcpy are fine.
        .args(["-fPIC", "-ffreestanding", "-fno-stack-protector", "-Wall", "-Werror"])
        // The headers' own warnings (netmap_kern.h's atomics on int, the
        // unchecked suword32 of CSB_WRITE) are netmap's, not ours.
        .args(["-Wno-pointer-sign", "-Wno-unused-result"])
        .arg("-c")
        .arg(manifest.join("c/netmapc.c"))
        .arg("-o")
        .arg(&kernel_obj));
    let stubs_obj = out.join("stubs.o");
    run(Command::new("clang")
        .args(["-O2", "-fPIC", "-Wall", "-Werror", "-c"])
        .arg(manifest.join("c/stubs.c"))
        .arg("-o")
        .arg(&stubs_obj));
    let lib = out.join("libnetmapc.a");
    let _ = std::fs::remove_file(&lib);
    run(Command::new("ar").arg("crs").arg(&lib).arg(&kernel_obj).arg(&stubs_obj));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=netmapc");
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-changed=../harness/nm_prologue.h");
    println!("cargo:rerun-if-changed={}", reference.join("netmap_kloop.c").display());
    println!("cargo:rerun-if-env-changed=NETMAP_REFERENCE");
}
