//! The host: netmap memory, ports, the VALE-like switch, pipes, the sync
//! kloops that serve passed-through rings, and a TAP bridge to Linux.

pub mod chaos;
pub mod kloop;
pub mod mem;
pub mod netns;
pub mod pipe;
pub mod port;
pub mod tap;
pub mod vale;
