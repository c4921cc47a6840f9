//! Cross-crate scenarios live in `tests/`; this library only holds what
//! several of them share.

use ptnet_host_sim::world::{World, WorldConfig};

/// Builds a setup with `cfg`, panicking with the attach error if it fails.
pub fn world(cfg: WorldConfig) -> World {
    World::new(cfg).unwrap_or_else(|e| panic!("attach failed: {e}"))
}
