//! The receive path over whatever the host puts in the RX ring: slot
//! buffer indexes, lengths and flags, buffer contents (virtio-net headers
//! and frames), and ring pointers, with the interface's capabilities
//! changing in between. Frames handed up are never longer than a frame
//! can be, and the ring pointers stay in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptnet::csb::kern_write;
use ptnet::fake::{Fixture, Sink};
use ptnet::kring::Dir;
use ptnet::net::caps::IfCap;
use ptnet::rx::MAX_FRAME;
use ptnet_fuzz::{check_kring, running, Input, GEOMETRY};

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let fx = Fixture::new(GEOMETRY);
    let (dev, _tx, mut rx) = running(&fx);
    let ring = fx.ring(Dir::Rx, 0);
    let n = GEOMETRY.slots;
    let mut sink = Sink::default();
    let mut tail = 0u32;
    while !inp.is_empty() {
        match inp.u8() % 7 {
            0 => {
                let j = u32::from(inp.u8()) % n;
                let _ = ring.set_slot_buf_idx(j, u32::from(inp.u8()) | u32::from(inp.u8() & 0x80) << 24);
                let _ = ring.set_slot(j, inp.u16(), inp.u16());
            }
            1 => {
                let idx = u32::from(inp.u8()) % GEOMETRY.bufs;
                let off = usize::from(inp.u8());
                let len = usize::from(inp.u8() % 64);
                if let Some(b) = fx.buffer(idx) {
                    let _ = b.write_bytes(off, inp.bytes(len));
                }
            }
            2 => kern_write(&fx.host_csb(1), inp.u32(), inp.u32()),
            3 => {
                // A well-formed publication: the next slot, short of the head.
                tail = (tail + 1 + u32::from(inp.u8() % 3)) % n;
                kern_write(&fx.host_csb(1), 0, tail);
            }
            4 => {
                let rep = dev.receive(0, &mut rx, u32::from(inp.u8() % 16), &mut sink);
                assert!(rep.frames as usize <= sink.frames.len());
                for (f, _) in sink.frames.drain(..) {
                    assert!(f.len() <= MAX_FRAME);
                }
            }
            5 => {
                let _ = dev.ifstate().set_capabilities(IfCap::from_bits_truncate(inp.u32()));
            }
            _ => sink.full = inp.bool(),
        }
        check_kring(&rx.kring, Dir::Rx);
    }
});
