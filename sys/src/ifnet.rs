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
    /// Largest MTU: the protocol's until the host memory is mapped, then
    /// what its buffers carry ([`IfState::limit_to_buffers`]).
    max_mtu: AtomicU32,
}

impl IfState {
    /// The state of a fresh interface: every supported capability on, MTU
    /// 1500.
    pub fn new(vnet_hdr_len: u32) -> Self {
        let supported = caps::supported(vnet_hdr_len > 0);
        Self {
            supported,
            enabled: AtomicU32::new(supported.bits()),
            mtu: AtomicU32::new(caps::ETHER_MTU),
            max_mtu: AtomicU32::new(caps::MAX_IP_MTU),
        }
    }

    /// Lowers the largest MTU to what `buf_size`-byte buffers carry in one
    /// slot chain (and the MTU with it); returns the MTU if it had to drop.
    pub fn limit_to_buffers(&self, buf_size: u32, vnet_hdr_len: u32) -> Option<u32> {
        let max = caps::max_mtu(buf_size, MAX_FRAGS as u32, vnet_hdr_len);
        self.max_mtu.fetch_min(max, Ordering::Relaxed);
        let mtu = self.mtu();
        (mtu > max).then(|| {
            self.mtu.store(max, Ordering::Relaxed);
            max
        })
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
        self.max_mtu.load(Ordering::Relaxed)
    }

    /// `SIOCSIFCAP`: applies a request, returns what is now enabled.
    pub fn set_capabilities(&self, requested: IfCap) -> Result<IfCap, CapError> {
        let next = caps::apply(self.enabled(), requested, self.supported)?;
        // Without JUMBO_MTU a jumbo MTU cannot stay.
        if !next.contains(IfCap::JUMBO_MTU) && self.mtu() > caps::ETHER_MTU {
            self.mtu.store(caps::ETHER_MTU.min(self.max_mtu()), Ordering::Relaxed);
        }
        self.enabled.store(next.bits(), Ordering::Relaxed);
        Ok(next)
    }

    /// `SIOCSIFMTU`.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), MtuError> {
        if caps::mtu_ok(mtu, self.enabled(), self.max_mtu()) {
            self.mtu.store(mtu, Ordering::Relaxed);
            Ok(())
        } else {
            let max = if self.enabled().contains(IfCap::JUMBO_MTU) {
                self.max_mtu()
            } else {
                caps::ETHER_MTU.min(self.max_mtu())
            };
            Err(MtuError { mtu, min: caps::MIN_MTU, max })
        }
    }
}

/// Interface counters (`if_get_counter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfCounters {
    /// Frames received.
    pub ipackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Frames dropped for bad slots or headers.
    pub ierrors: u64,
    /// Frames dropped for lack of memory.
    pub iqdrops: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames refused (bad offload request, too large).
    pub oerrors: u64,
    /// Frames dropped: queue full, interface down, in netmap mode, or by
    /// the transmit watchdog.
    pub oqdrops: u64,
    /// Frames sent with checksum offload.
    pub tx_csum: u64,
    /// Frames sent with TSO.
    pub tx_tso: u64,
    /// Frames received as large-receive frames.
    pub rx_lro: u64,
    /// Checksums the driver completed on receive (RXCSUM off).
    pub rx_csum_completed: u64,
    /// Super-packets the driver segmented on receive (LRO off).
    pub rx_segmented: u64,
    /// Transmit watchdog timeouts.
    pub tx_watchdog: u64,
    /// Receive interrupts the host lost, found by the watchdog.
    pub rx_missed_irqs: u64,
    /// Packets sent into a ring that the host never took before detach.
    pub tx_abandoned: u64,
}

impl IfCounters {
    /// Adds a TX ring's counters.
    pub fn add_tx(&mut self, s: &crate::tx::TxStats) {
        let add = |c: &mut u64, v: u64| *c = c.saturating_add(v);
        add(&mut self.opackets, s.packets.get());
        add(&mut self.obytes, s.bytes.get());
        add(&mut self.oerrors, s.refused.get());
        add(&mut self.oqdrops, s.dropped());
        add(&mut self.tx_csum, s.csum.get());
        add(&mut self.tx_tso, s.tso.get());
        add(&mut self.tx_watchdog, s.watchdog.get());
        add(&mut self.tx_abandoned, s.abandoned.get());
    }

    /// Adds an RX ring's counters.
    pub fn add_rx(&mut self, s: &crate::rx::RxStats) {
        let add = |c: &mut u64, v: u64| *c = c.saturating_add(v);
        add(&mut self.ipackets, s.packets.get());
        add(&mut self.ibytes, s.bytes.get());
        add(&mut self.ierrors, s.errors.get());
        add(&mut self.iqdrops, s.no_memory.get());
        add(&mut self.rx_lro, s.lro.get());
        add(&mut self.rx_csum_completed, s.csum_completed.get());
        add(&mut self.rx_segmented, s.segmented.get());
        add(&mut self.rx_missed_irqs, s.missed_irqs.get());
    }
}
