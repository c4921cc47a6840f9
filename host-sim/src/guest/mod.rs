//! The simulated guest: its kernel services, the attached ptnet device,
//! its netmap layer, the network interface, and a network stack on top.

pub mod bulktcp;
pub mod device;
pub mod ifnet;
pub mod kernel;
pub mod netmap;
pub mod nic;
pub mod shim;
pub mod stack;
pub mod wait;
