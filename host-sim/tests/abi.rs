//! `ptnet-sim abi` against the C headers: FreeBSD's own `net/netmap.h` and
//! `net/netmap_virt.h` (from the `ziglang` PyPI package, which ships
//! FreeBSD's installed headers) and Linux's `linux/virtio_net.h`. The JSON
//! the tool prints becomes a C file of `_Static_assert`s that only compiles
//! if every size and offset agrees; register offsets and PCI ids are
//! checked the same way.

use ptnet::abi::regs::{self, memdev, ptnet as reg};
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;
use std::process::Command;

fn zig_cc(target: &str, src: &str, name: &str) -> Result<(), String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = Command::new("python3")
        .args(["-m", "ziglang", "cc", "-target", target, "-c", "-o"])
        .arg(dir.join(format!("{name}.o")))
        .arg(&c)
        .output()
        .expect("python3 must be installed");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn require_zig() {
    let ok = Command::new("python3").args(["-c", "import ziglang"]).status().is_ok_and(|s| s.success());
    assert!(ok, "this test needs the ziglang PyPI package: `pip install ziglang` (make test installs it)");
}

fn abi_json() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ptnet-sim")).arg("abi").output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("ptnet-sim abi prints JSON")
}

fn asserts(abi: &Value, structs: &[&str]) -> String {
    let mut c = String::new();
    for name in structs {
        let s = &abi[*name];
        let size = s["size"].as_u64().unwrap_or_else(|| panic!("{name} missing from ptnet-sim abi"));
        writeln!(c, "_Static_assert(sizeof(struct {name}) == {size}, \"{name} size\");").unwrap();
        for (field, ofs) in s["fields"].as_object().unwrap() {
            let ofs = ofs.as_u64().unwrap();
            writeln!(c, "_Static_assert(offsetof(struct {name}, {field}) == {ofs}, \"{name}.{field}\");").unwrap();
        }
    }
    c
}

#[test]
fn netmap_structures_match_freebsd_headers() {
    require_zig();
    let abi = abi_json();
    let mut c = String::from(
        "#include <sys/types.h>\n#include <net/if.h>\n#include <net/netmap.h>\n#include <net/netmap_virt.h>\n#include <stddef.h>\n",
    );
    c += &asserts(&abi, &["netmap_slot", "netmap_ring", "netmap_if", "nm_csb_atok", "nm_csb_ktoa"]);
    let consts: &[(&str, u32)] = &[
        ("PTNETMAP_PCI_VENDOR_ID", regs::PCI_VENDOR_ID.into()),
        ("PTNETMAP_PCI_DEVICE_ID", regs::PCI_DEVICE_ID_MEMDEV.into()),
        ("PTNETMAP_PCI_NETIF_ID", regs::PCI_DEVICE_ID_PTNET.into()),
        ("PTNETMAP_IO_PCI_BAR", regs::IO_PCI_BAR.into()),
        ("PTNETMAP_MEM_PCI_BAR", regs::MEM_PCI_BAR.into()),
        ("PTNETMAP_MSIX_PCI_BAR", regs::MSIX_PCI_BAR.into()),
        ("PTNETMAP_F_VNET_HDR", regs::Features::VNET_HDR.bits()),
        ("PTNETMAP_PTCTL_CREATE", regs::PtctlCmd::Create as u32),
        ("PTNETMAP_PTCTL_DELETE", regs::PtctlCmd::Delete as u32),
        ("PTNET_IO_PTFEAT", reg::PTFEAT),
        ("PTNET_IO_PTCTL", reg::PTCTL),
        ("PTNET_IO_MAC_LO", reg::MAC_LO),
        ("PTNET_IO_MAC_HI", reg::MAC_HI),
        ("PTNET_IO_CSBBAH", reg::CSBBAH),
        ("PTNET_IO_CSBBAL", reg::CSBBAL),
        ("PTNET_IO_NIFP_OFS", reg::NIFP_OFS),
        ("PTNET_IO_NUM_TX_RINGS", reg::NUM_TX_RINGS),
        ("PTNET_IO_NUM_RX_RINGS", reg::NUM_RX_RINGS),
        ("PTNET_IO_NUM_TX_SLOTS", reg::NUM_TX_SLOTS),
        ("PTNET_IO_NUM_RX_SLOTS", reg::NUM_RX_SLOTS),
        ("PTNET_IO_VNET_HDR_LEN", reg::VNET_HDR_LEN),
        ("PTNET_IO_HOSTMEMID", reg::HOSTMEMID),
        ("PTNET_IO_CSB_GH_BAH", reg::CSB_GH_BAH),
        ("PTNET_IO_CSB_GH_BAL", reg::CSB_GH_BAL),
        ("PTNET_IO_CSB_HG_BAH", reg::CSB_HG_BAH),
        ("PTNET_IO_CSB_HG_BAL", reg::CSB_HG_BAL),
        ("PTNET_IO_END", reg::END),
        ("PTNET_IO_KICK_BASE", reg::KICK_BASE),
        ("PTNET_MDEV_IO_MEMSIZE_LO", memdev::MEMSIZE_LO),
        ("PTNET_MDEV_IO_MEMSIZE_HI", memdev::MEMSIZE_HI),
        ("PTNET_MDEV_IO_MEMID", memdev::MEMID),
        ("PTNET_MDEV_IO_IF_POOL_OFS", memdev::IF_POOL_OFS),
        ("PTNET_MDEV_IO_IF_POOL_OBJNUM", memdev::IF_POOL_OBJNUM),
        ("PTNET_MDEV_IO_IF_POOL_OBJSZ", memdev::IF_POOL_OBJSZ),
        ("PTNET_MDEV_IO_RING_POOL_OFS", memdev::RING_POOL_OFS),
        ("PTNET_MDEV_IO_RING_POOL_OBJNUM", memdev::RING_POOL_OBJNUM),
        ("PTNET_MDEV_IO_RING_POOL_OBJSZ", memdev::RING_POOL_OBJSZ),
        ("PTNET_MDEV_IO_BUF_POOL_OFS", memdev::BUF_POOL_OFS),
        ("PTNET_MDEV_IO_BUF_POOL_OBJNUM", memdev::BUF_POOL_OBJNUM),
        ("PTNET_MDEV_IO_BUF_POOL_OBJSZ", memdev::BUF_POOL_OBJSZ),
        ("PTNET_MDEV_IO_END", memdev::END),
        ("NS_MOREFRAG", ptnet::abi::SlotFlags::MOREFRAG.bits().into()),
        ("NS_BUF_CHANGED", ptnet::abi::SlotFlags::BUF_CHANGED.bits().into()),
        ("NETMAP_API", ptnet::abi::netmap::NETMAP_API),
    ];
    for (name, v) in consts {
        writeln!(c, "_Static_assert({name} == {v}, \"{name}\");").unwrap();
    }
    if let Err(e) = zig_cc("x86_64-freebsd", &c, "netmap_abi") {
        panic!("our layouts disagree with FreeBSD's headers:\n{e}");
    }
}

#[test]
fn virtio_net_header_matches_linux_headers() {
    require_zig();
    let abi = abi_json();
    let mut c = String::from("#include <linux/virtio_net.h>\n#include <stddef.h>\n");
    c += &asserts(&abi, &["virtio_net_hdr", "virtio_net_hdr_mrg_rxbuf"]);
    use ptnet::abi::vnet::*;
    for (name, v) in [
        ("VIRTIO_NET_HDR_F_NEEDS_CSUM", VIRTIO_NET_HDR_F_NEEDS_CSUM),
        ("VIRTIO_NET_HDR_F_DATA_VALID", VIRTIO_NET_HDR_F_DATA_VALID),
        ("VIRTIO_NET_HDR_GSO_NONE", VIRTIO_NET_HDR_GSO_NONE),
        ("VIRTIO_NET_HDR_GSO_TCPV4", VIRTIO_NET_HDR_GSO_TCPV4),
        ("VIRTIO_NET_HDR_GSO_UDP", VIRTIO_NET_HDR_GSO_UDP),
        ("VIRTIO_NET_HDR_GSO_TCPV6", VIRTIO_NET_HDR_GSO_TCPV6),
        ("VIRTIO_NET_HDR_GSO_ECN", VIRTIO_NET_HDR_GSO_ECN),
    ] {
        writeln!(c, "_Static_assert({name} == {v}, \"{name}\");").unwrap();
    }
    if let Err(e) = zig_cc("x86_64-linux-gnu", &c, "vnet_abi") {
        panic!("our virtio-net header disagrees with Linux's:\n{e}");
    }
}

#[test]
fn the_check_catches_a_wrong_offset() {
    require_zig();
    let mut abi = abi_json();
    abi["netmap_ring"]["fields"]["tail"] = 32.into();
    let c = String::from("#include <sys/types.h>\n#include <net/if.h>\n#include <net/netmap.h>\n#include <stddef.h>\n")
        + &asserts(&abi, &["netmap_ring"]);
    let err = zig_cc("x86_64-freebsd", &c, "negative").expect_err("a wrong offset must not compile");
    assert!(err.contains("netmap_ring.tail"), "{err}");
}
