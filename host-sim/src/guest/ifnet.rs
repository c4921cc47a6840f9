//! The network interface the driver gives the guest's stack (`ifnet`), as
//! the shim wires it: `ifconfig up`/`down` (`if_init`, stop),
//! `if_transmit`, the tasks the interrupts schedule (receive with a
//! budget, transmit restart), the once-a-second watchdog callout,
//! capabilities and MTU (`SIOCSIFCAP`, `SIOCSIFMTU`), counters. Every
//! call goes through the archive's entry points.

use super::device::{if_counters_of, NmError, PtnetIf};
use super::shim::{self, SimMbuf};
use ptnet::ifnet::{IfCounters, MtuError};
use ptnet::kring::Dir;
use ptnet::net::caps::{CapError, CsumFlags, IfCap};
use ptnet::net::frame::FrameInfo;
use ptnet::net::offload::TxRequest;
use ptnet::tx::TxError;
use ptnet_ffi::{PtnetRsCaps, PtnetRsIfCounters, PtnetRsQueueStats};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// An outgoing packet from the stack, before it becomes an mbuf.
#[derive(Debug)]
pub struct SimPacket {
    /// The frame.
    pub data: Vec<u8>,
    /// Offload requests and packet header fields.
    pub req: TxRequest,
}

impl SimPacket {
    /// A packet of `data` with offload request `req`.
    pub fn new(data: Vec<u8>, req: TxRequest) -> Self {
        Self { data, req }
    }
}

/// A received frame with what the driver knows about it.
#[derive(Debug, Clone)]
pub struct RxFrame {
    /// The frame.
    pub data: Vec<u8>,
    /// Checksum and large-receive state.
    pub info: FrameInfo,
}

/// The stack's input queue (netisr): bounded, so a flood runs the guest
/// out of mbufs and the driver counts drops instead of the queue growing.
pub struct InputQueue {
    frames: VecDeque<RxFrame>,
    limit: usize,
}

impl InputQueue {
    /// A queue of at most `limit` frames.
    pub fn new(limit: usize) -> Self {
        Self { frames: VecDeque::new(), limit }
    }

    /// The oldest frame.
    pub fn pop(&mut self) -> Option<RxFrame> {
        self.frames.pop_front()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether another frame fits (else `m_getm2` fails: no mbufs).
    pub fn has_room(&self) -> bool {
        self.frames.len() < self.limit
    }

    /// Queues a frame (the caller checked [`InputQueue::has_room`]).
    pub fn push(&mut self, f: RxFrame) {
        self.frames.push_back(f);
    }
}

impl PtnetIf {
    /// `ifconfig up`: the interface takes the rings (the host starts if
    /// nobody else uses them); the RX tasks run once for what arrived.
    pub fn if_up(&self) -> Result<(), NmError> {
        let _l = self.lock.lock().unwrap();
        if self.if_running.load(Ordering::Acquire) {
            return Ok(());
        }
        // SAFETY: the softc is attached.
        let rc = unsafe { ptnet_ffi::ptnet_rs_if_init(self.rs()) };
        if rc != 0 {
            return Err(self.failed(rc));
        }
        self.if_running.store(true, Ordering::Release);
        let info = self.info();
        for i in 0..info.num_rx_rings {
            self.shim.schedule(info.num_tx_rings + i);
        }
        Ok(())
    }

    /// `ifconfig down`: queued packets are freed and counted, the host
    /// stops if nobody else uses the rings.
    pub fn if_down(&self) -> Result<(), NmError> {
        let _l = self.lock.lock().unwrap();
        if !self.if_running.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // SAFETY: as above.
        match unsafe { ptnet_ffi::ptnet_rs_if_stop(self.rs()) } {
            0 => Ok(()),
            rc => Err(self.failed(rc)),
        }
    }

    /// True while the interface is up (`IFF_DRV_RUNNING`).
    pub fn is_up(&self) -> bool {
        self.if_running.load(Ordering::Acquire)
    }

    /// `if_transmit`.
    pub fn transmit(&self, p: SimPacket) -> Result<(), TxError> {
        let m = SimMbuf::from_packet(p);
        // SAFETY: the softc is attached; the chain is handed over.
        match unsafe { ptnet_ffi::ptnet_rs_transmit(self.rs(), m) } {
            0 => Ok(()),
            55 => Err(TxError::QueueFull),
            _ => Err(TxError::Down),
        }
    }

    /// The interface's tasks (what the taskqueue threads run): receives up
    /// to `budget` frames per pending RX ring into `input`, resumes
    /// pending TX rings, and the watchdog callout when it is due. Returns
    /// whether work is still pending.
    pub fn service(&self, input: &mut InputQueue, budget: u32) -> bool {
        let bits = self.shim.pending.swap(0, Ordering::AcqRel);
        let info = self.info();
        let ntx = info.num_tx_rings;
        shim::with_input(input, || {
            for i in 0..info.num_rx_rings {
                let bit = 1u64 << (ntx + i);
                // SAFETY: the softc is attached.
                if bits & bit != 0 && unsafe { ptnet_ffi::ptnet_rs_rx_task(self.rs(), i, budget) } == 1 {
                    self.shim.pending.fetch_or(bit, Ordering::AcqRel);
                }
            }
        });
        for i in 0..ntx {
            if bits & (1 << i) != 0 {
                // SAFETY: as above.
                unsafe { ptnet_ffi::ptnet_rs_tx_task(self.rs(), i) };
            }
        }
        self.watchdog_tick();
        self.shim.pending.load(Ordering::Acquire) != 0
    }

    /// Receives into `input` (popping what arrives) until nothing came for
    /// `quiet`; returns the frames taken. Servicing also sends what the
    /// software queues still hold.
    pub fn drain(&self, input: &mut InputQueue, quiet: std::time::Duration) -> u64 {
        let (mut got, mut last) = (0u64, std::time::Instant::now());
        while last.elapsed() < quiet {
            while self.service(input, 256) {}
            let before = got;
            while input.pop().is_some() {
                got += 1;
            }
            if got != before {
                last = std::time::Instant::now();
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        got
    }

    /// The once-a-second callout's task (run from the service routine,
    /// which every driver path reaches), as the shim's: the transmit
    /// watchdogs on the guest's clock, a restart of the host side when one
    /// fired, and the receive watchdogs.
    fn watchdog_tick(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.watchdog_last.load(Ordering::Relaxed);
        let timeout = self.tx_timeout_ms.load(Ordering::Relaxed);
        let period = (timeout / 5).clamp(1, 1000);
        if now < last + period
            || self.watchdog_last.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        // As the shim's tick task: skip a tick rather than wait for the lock.
        let Ok(_l) = self.lock.try_lock() else { return };
        if !self.is_up() {
            return;
        }
        // SAFETY: the softc is attached.
        if unsafe { ptnet_ffi::ptnet_rs_tick(self.rs(), now, timeout) } > 0 {
            // SAFETY: as above.
            unsafe { ptnet_ffi::ptnet_rs_restart(self.rs()) };
        }
        let info = self.info();
        for i in 0..info.num_rx_rings {
            // SAFETY: as above.
            if unsafe { ptnet_ffi::ptnet_rs_rx_watchdog(self.rs(), i) } == 1 {
                self.shim.schedule(info.num_tx_rings + i);
            }
        }
    }

    /// Sets the transmit watchdog's timeout (tests use short ones).
    pub fn set_tx_timeout(&self, d: std::time::Duration) {
        self.tx_timeout_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// A token for [`PtnetIf::idle`], taken before looking for work.
    pub fn idle_token(&self) -> u64 {
        self.shim.vcpu.token()
    }

    /// Halts the guest CPU until an interrupt (after `token`) or `timeout`.
    pub fn idle(&self, token: u64, timeout: std::time::Duration) {
        if self.shim.pending.load(Ordering::Acquire) == 0 {
            self.shim.vcpu.idle(token, timeout);
        }
    }

    fn caps(&self) -> PtnetRsCaps {
        let mut c = PtnetRsCaps::default();
        // SAFETY: the softc is attached; `c` is a valid out-pointer.
        unsafe { ptnet_ffi::ptnet_rs_caps(self.rs(), &mut c) };
        c
    }

    /// `SIOCSIFCAP`: what is enabled afterwards, or why not.
    pub fn set_capabilities(&self, requested: IfCap) -> Result<IfCap, CapError> {
        let _l = self.lock.lock().unwrap();
        // SAFETY: the softc is attached.
        match unsafe { ptnet_ffi::ptnet_rs_set_caps(self.rs(), requested.bits()) } {
            0 => Ok(self.enabled()),
            // The archive says EINVAL; the reason is the core's rule.
            _ => ptnet::net::caps::apply(self.enabled(), requested, self.capabilities())
                .and(Err(CapError::Unsupported(requested.difference(self.capabilities())))),
        }
    }

    /// Capabilities the interface has.
    pub fn capabilities(&self) -> IfCap {
        IfCap::from_bits_truncate(self.caps().supported)
    }

    /// Capabilities enabled.
    pub fn enabled(&self) -> IfCap {
        IfCap::from_bits_truncate(self.caps().enabled)
    }

    /// Offloads the stack may request (`if_hwassist`).
    pub fn hwassist(&self) -> CsumFlags {
        CsumFlags::from_bits_truncate(self.caps().hwassist)
    }

    /// `SIOCSIFMTU`.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), MtuError> {
        let _l = self.lock.lock().unwrap();
        // SAFETY: the softc is attached.
        match unsafe { ptnet_ffi::ptnet_rs_set_mtu(self.rs(), mtu) } {
            0 => Ok(()),
            _ => {
                let c = self.caps();
                let en = IfCap::from_bits_truncate(c.enabled);
                let max = if en.contains(IfCap::JUMBO_MTU) { c.max_mtu } else { c.max_mtu.min(1500) };
                Err(MtuError { mtu, min: ptnet::net::caps::MIN_MTU, max })
            }
        }
    }

    /// The MTU.
    pub fn mtu(&self) -> u32 {
        self.caps().mtu
    }

    /// Interface counters, summed over the rings (`if_get_counter`).
    pub fn if_counters(&self) -> IfCounters {
        let mut c = PtnetRsIfCounters::default();
        // SAFETY: the softc is attached; `c` is a valid out-pointer.
        unsafe { ptnet_ffi::ptnet_rs_counters(self.rs(), &mut c) };
        if_counters_of(&c)
    }

    /// One ring's counters (`sysctl dev.ptnrs.0.{tx,rx}q<N>`).
    pub fn queue_stats(&self, dir: Dir, idx: u32) -> PtnetRsQueueStats {
        let mut st = PtnetRsQueueStats::default();
        // SAFETY: the softc is attached; `st` is a valid out-pointer.
        unsafe { ptnet_ffi::ptnet_rs_queue_stats(self.rs(), u32::from(dir == Dir::Rx), idx, &mut st) };
        st
    }

    /// Packets shown to BPF listeners on transmit.
    pub fn bpf_taps(&self) -> u64 {
        self.shim.bpf_taps.load(Ordering::Relaxed)
    }
}
