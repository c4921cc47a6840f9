//! The transmit header path over arbitrary packets and offload requests:
//! header parsing, the virtio-net header the driver would write, and the
//! whole transmit into the ring. An accepted request always yields a
//! header that points inside the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptnet::abi::vnet::{VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE};
use ptnet::fake::{Fixture, Pkt};
use ptnet::kring::Dir;
use ptnet::net::caps::CsumFlags;
use ptnet::net::hdr::{self, MAX_HDR};
use ptnet::net::offload::{tx_header, TxRequest};
use ptnet_fuzz::{check_kring, running, Input, GEOMETRY};

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let req = TxRequest {
        csum_flags: CsumFlags::from_bits_truncate(inp.u32()) & CsumFlags::TX_OFFLOADS,
        tso_segsz: inp.u16(),
        vlan: inp.bool().then(|| inp.u16()),
        flowid: None,
    };
    let assist = CsumFlags::from_bits_truncate(inp.u32());
    let frame = inp.0.to_vec();
    if let Ok(h) = hdr::parse(&frame[..frame.len().min(MAX_HDR)], frame.len()) {
        if let Ok(v) = tx_header(&h, &req, assist) {
            let len = frame.len() + if req.vlan.is_some() { 4 } else { 0 };
            if v.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                let end = usize::from(v.csum_start) + usize::from(v.csum_offset) + 2;
                assert!(end <= len, "checksum field outside the packet: {v:?}");
            }
            if v.gso_type != VIRTIO_NET_HDR_GSO_NONE {
                assert!(usize::from(v.hdr_len) <= len && v.gso_size > 0, "bad GSO header: {v:?}");
            }
        }
    }
    let fx = Fixture::new(GEOMETRY);
    let (dev, mut tx, _rx) = running(&fx);
    let _ = dev.transmit(0, &mut tx, Some(Pkt(frame, req)), drop);
    check_kring(&tx.kring, Dir::Tx);
});
