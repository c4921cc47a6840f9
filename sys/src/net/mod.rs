//! What the network-interface datapath needs beyond the rings: packet
//! header parsing, Internet checksums, the virtio-net header offloads in
//! both directions, software segmentation, and the interface's capability
//! and MTU rules. Everything here works on bytes and small fixed buffers;
//! nothing allocates.

pub mod caps;
pub mod cksum;
pub mod frame;
pub mod gso;
pub mod hdr;
pub mod offload;
