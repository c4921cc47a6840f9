//! Guest applications and the baseline they are measured against.

pub mod baseline;
pub mod ifperf;
pub mod meter;
pub mod packet;
pub mod pktgen;
pub mod soak;
pub mod stream;
pub mod sweep;
pub mod tcp;
