//! Attach over arbitrary register values and netmap memory contents: a
//! valid device description with the fuzzer's lies written over it.
//! Attach either refuses cleanly (nothing allocated) or succeeds, and
//! then the rings come up and go down, and detach frees everything.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptnet::abi::regs::{memdev as mreg, ptnet as reg};
use ptnet::fake::{Fixture, Geometry};
use ptnet::kring::{Dir, Kring};
use ptnet::Config;
use ptnet_fuzz::Input;

const NIC: &[u32] = &[
    reg::PTFEAT,
    reg::NUM_TX_RINGS,
    reg::NUM_RX_RINGS,
    reg::NUM_TX_SLOTS,
    reg::NUM_RX_SLOTS,
    reg::NIFP_OFS,
    reg::HOSTMEMID,
    reg::VNET_HDR_LEN,
    reg::MAC_HI,
    reg::MAC_LO,
];
const MEMDEV: &[u32] = &[
    mreg::MEMSIZE_LO,
    mreg::MEMSIZE_HI,
    mreg::MEMID,
    mreg::IF_POOL_OFS,
    mreg::IF_POOL_OBJNUM,
    mreg::IF_POOL_OBJSZ,
    mreg::RING_POOL_OFS,
    mreg::RING_POOL_OBJNUM,
    mreg::RING_POOL_OBJSZ,
    mreg::BUF_POOL_OFS,
    mreg::BUF_POOL_OBJNUM,
    mreg::BUF_POOL_OBJSZ,
];

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let g = Geometry { tx: 1 + u32::from(inp.u8() % 3), rx: 1 + u32::from(inp.u8() % 3), slots: 4, bufs: 32, buf_size: 64 };
    let mut fx = Fixture::new(g);
    fx.nic.host_features = u32::from(inp.u8());
    for _ in 0..inp.u8() % 8 {
        let r = NIC[usize::from(inp.u8()) % NIC.len()];
        fx.nic.set(r, inp.u32());
    }
    for _ in 0..inp.u8() % 8 {
        let r = MEMDEV[usize::from(inp.u8()) % MEMDEV.len()];
        fx.memdev.set(r, inp.u32());
    }
    if inp.bool() {
        fx.nic.ptfeat_lie.set(Some(inp.u32()));
    }
    fx.nic.ptctl_result.set(u32::from(inp.u8() % 4 == 0));
    let mem = fx.layout.region();
    for _ in 0..inp.u8() % 16 {
        let off = usize::from(inp.u16()) % mem.len() & !7;
        let _ = mem.store_u64(off, u64::from(inp.u32()) | u64::from(inp.u32()) << 32);
    }
    let cfg = Config { want_vnet_hdr: inp.bool(), require_vnet_hdr: inp.bool() };
    match fx.attach(cfg) {
        Ok(dev) => {
            let info = *dev.info();
            let mut krings: Vec<Kring> = (0..info.num_tx_rings)
                .map(|_| Kring::new(Dir::Tx, info.num_tx_slots))
                .chain((0..info.num_rx_rings).map(|_| Kring::new(Dir::Rx, info.num_rx_slots)))
                .collect();
            if dev.up(krings.iter_mut()).is_ok() {
                let _ = dev.down();
            }
            dev.detach();
        }
        Err(_) => assert!(
            fx.nic.wrote(reg::CSB_GH_BAL).last().is_none_or(|v| *v == 0),
            "a refused device left its CSB programmed"
        ),
    }
    assert_eq!(fx.kernel.live.get(), 0, "DMA memory leaked");
});
