//! The simulated guest: its kernel services and its netmap layer, running
//! the real `ptnet` driver core.

pub mod kernel;
pub mod netmap;
