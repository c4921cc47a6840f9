//! A userspace simulator of everything on the other side of a ptnet
//! device, running the real `ptnet` driver core as its guest.
//!
//! - [`guest_mem`]: guest physical memory, shared between guest and host
//!   as a VM's RAM is.
//! - [`hv`]: the hypervisor's device models (ptnet, ptnetmap-memdev).
//! - [`host`]: host netmap: memory, ports, VALE switch, pipes, kloops.
//! - [`guest`]: the simulated guest kernel and its netmap layer.
//! - [`world`]: builds VMs on a switch or a pipe.
//! - [`app`]: guest applications: pkt-gen-like traffic, the SPSC baseline.
//! - [`abi_json`]: the C layouts as JSON (`ptnet-sim abi`).
//! - [`rng`]: a seeded generator for reproducible chaos and soak runs.

pub mod abi_json;
pub mod app;
pub mod guest;
pub mod guest_mem;
pub mod host;
pub mod hv;
pub mod rng;
pub mod world;
