//! The host: netmap memory, ports, the VALE-like switch, pipes, and the
//! sync kloops that serve passed-through rings.

pub mod kloop;
pub mod mem;
pub mod pipe;
pub mod port;
pub mod vale;
