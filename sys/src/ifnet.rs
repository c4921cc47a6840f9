//! The state of the network interface the driver presents: enabled
//! capabilities and MTU, changed by `ioctl` and read on every packet.

use crate::net::caps::{self, CapError, CsumFlags, IfCap};
use crate::net::frame::MAX_FRAGS;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

/// An MTU outside the interface's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtuError {
    /// The MTU asked for.
    pub mtu: u32,
    /// Smallest allowed.
    pub min: u32,
    /// Largest allowed with the capabilities enabled now.
    pub max: u32,
}

impl fmt::Display for MtuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MTU {} outside {}..={}", self.mtu, self.min, self.max)
    }
}

/// Capabilities and MTU. Updates are serialised by the OS (the interface
/// lock around `ioctl`); the datapath reads them without a lock.
#[derive(Debug)]
pub struct IfState {
    supported: IfCap,
    enabled: AtomicU32,
    mtu: AtomicU32,
    max_mtu: u32,
}

impl IfState {
    /// The state of a fresh interface: every supported capability on, MTU
    /// 1500 (or less if the buffers cannot carry it).
    pub fn new(vnet_hdr_len: u32, buf_size: u32) -> Self {
        let supported = caps::supported(vnet_hdr_len > 0);
        let max_mtu = caps::max_mtu(buf_size, MAX_FRAGS as u32, vnet_hdr_len);
        Self {
            supported,
            enabled: AtomicU32::new(supported.bits()),
            mtu: AtomicU32::new(caps::ETHER_MTU.min(max_mtu)),
            max_mtu,
        }
    }

    /// What the interface can do (`if_capabilities`).
    pub fn supported(&self) -> IfCap {
        self.supported
    }

    /// What is enabled (`if_capenable`).
    #[inline]
    pub fn enabled(&self) -> IfCap {
        IfCap::from_bits_truncate(self.enabled.load(Ordering::Relaxed))
    }

    /// The offloads the stack may request (`if_hwassist`).
    #[inline]
    pub fn hwassist(&self) -> CsumFlags {
        caps::hwassist(self.enabled())
    }

    /// The MTU.
    #[inline]
    pub fn mtu(&self) -> u32 {
        self.mtu.load(Ordering::Relaxed)
    }

    /// Largest MTU the buffers allow (with `JUMBO_MTU`).
    pub fn max_mtu(&self) -> u32 {
        self.max_mtu
    }

    /// `SIOCSIFCAP`: applies a request, returns what is now enabled.
    pub fn set_capabilities(&self, requested: IfCap) -> Result<IfCap, CapError> {
        let next = caps::apply(self.enabled(), requested, self.supported)?;
        // Without JUMBO_MTU a jumbo MTU cannot stay.
        if !next.contains(IfCap::JUMBO_MTU) && self.mtu() > caps::ETHER_MTU {
            self.mtu.store(caps::ETHER_MTU.min(self.max_mtu), Ordering::Relaxed);
        }
        self.enabled.store(next.bits(), Ordering::Relaxed);
        Ok(next)
    }

    /// `SIOCSIFMTU`.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), MtuError> {
        if caps::mtu_ok(mtu, self.enabled(), self.max_mtu) {
            self.mtu.store(mtu, Ordering::Relaxed);
            Ok(())
        } else {
            let max = if self.enabled().contains(IfCap::JUMBO_MTU) {
                self.max_mtu
            } else {
                caps::ETHER_MTU.min(self.max_mtu)
            };
            Err(MtuError { mtu, min: caps::MIN_MTU, max })
        }
    }
}
