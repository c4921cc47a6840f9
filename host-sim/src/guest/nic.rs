//! What a network stack needs of an interface, so the same stacks drive
//! the simulator's glue ([`PtnetIf`]) and the real module in the kernel
//! harness (`ptnet_tests::kharness`): `ifconfig up`, `if_transmit`, the
//! received frames, the MTU and offloads in effect, and a way to wait
//! for an interrupt.

use super::device::PtnetIf;
use super::ifnet::{InputQueue, SimPacket};
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::tx::TxError;
use std::time::Duration;

/// A network interface as a stack uses it.
pub trait Nic: Send + Sync {
    /// `ifconfig up`.
    fn if_up(&self) -> Result<(), String>;
    /// `if_transmit`.
    fn transmit(&self, p: SimPacket) -> Result<(), TxError>;
    /// Moves received frames (up to `budget` per ring) into `input`;
    /// true while more work is pending.
    fn service(&self, input: &mut InputQueue, budget: u32) -> bool;
    /// `if_mtu`.
    fn mtu(&self) -> u32;
    /// `if_capenable`.
    fn enabled(&self) -> IfCap;
    /// `if_hwassist`.
    fn hwassist(&self) -> CsumFlags;
    /// A token for [`Nic::idle`], taken before looking for work.
    fn idle_token(&self) -> u64;
    /// Waits for an interrupt after `token`, or `timeout`.
    fn idle(&self, token: u64, timeout: Duration);
}

impl Nic for PtnetIf {
    fn if_up(&self) -> Result<(), String> {
        PtnetIf::if_up(self).map_err(|e| e.to_string())
    }

    fn transmit(&self, p: SimPacket) -> Result<(), TxError> {
        PtnetIf::transmit(self, p)
    }

    fn service(&self, input: &mut InputQueue, budget: u32) -> bool {
        PtnetIf::service(self, input, budget)
    }

    fn mtu(&self) -> u32 {
        PtnetIf::mtu(self)
    }

    fn enabled(&self) -> IfCap {
        PtnetIf::enabled(self)
    }

    fn hwassist(&self) -> CsumFlags {
        PtnetIf::hwassist(self)
    }

    fn idle_token(&self) -> u64 {
        PtnetIf::idle_token(self)
    }

    fn idle(&self, token: u64, timeout: Duration) {
        PtnetIf::idle(self, token, timeout)
    }
}
