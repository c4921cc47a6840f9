//! Cross-crate scenarios live in `tests/`; this library only holds what
//! several of them share.

pub mod kharness;
pub mod kmod_audit;

use ptnet::net::cksum::{pseudo_v4, Csum};
use ptnet_host_sim::guest::device::PtnetIf;
use ptnet_host_sim::guest::ifnet::{InputQueue, RxFrame};
use ptnet_host_sim::world::{World, WorldConfig};
use std::time::{Duration, Instant};

/// Builds a setup with `cfg`, panicking with the attach error if it fails.
pub fn world(cfg: WorldConfig) -> World {
    World::new(cfg).unwrap_or_else(|e| panic!("attach failed: {e}"))
}

/// A UDP/IPv4 frame (10.0.0.1:5000 to 10.0.0.2:5001) with `payload`
/// bytes, the checksum field holding the pseudo-header sum (as the stack
/// leaves it for offload).
pub fn udp_frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 7, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    let mut c = Csum::new();
    c.add(&ip);
    let s = c.finish().to_be_bytes();
    ip[10..12].copy_from_slice(&s);
    f.extend_from_slice(&ip);
    let ulen = (8 + payload.len()) as u16;
    let seed = pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, u32::from(ulen)).fold();
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, (ulen >> 8) as u8, ulen as u8]);
    f.extend_from_slice(&seed.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Runs `ifp`'s service routine until `n` frames arrived (or 5 s).
pub fn receive(ifp: &PtnetIf, n: usize) -> Vec<RxFrame> {
    let mut q = InputQueue::new(100_000);
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while out.len() < n && Instant::now() < end {
        let t = ifp.idle_token();
        ifp.service(&mut q, 256);
        while let Some(f) = q.pop() {
            out.push(f);
        }
        ifp.idle(t, Duration::from_millis(10));
    }
    out
}

/// True when a (possibly tagged) UDP or TCP frame's checksum verifies.
pub fn l4_checksum_ok(f: &[u8]) -> bool {
    ptnet::net::hdr::parse(&f[..f.len().min(256)], f.len())
        .is_ok_and(|h| ptnet_host_sim::guest::bulktcp::l4_checksum_ok(f, &h))
}
