//! The network interface the driver gives the guest's stack (`ifnet`):
//! up and down, `if_transmit`, the service routine that the interrupts
//! schedule (receive with a budget, transmit restart), capabilities and
//! MTU, counters. Packets are modelled as mbufs holding one buffer.

use super::device::{NmError, PtnetIf};
use ptnet::device::QueueCounters;
use ptnet::ifnet::{IfCounters, MtuError};
use ptnet::kring::Dir;
use ptnet::net::caps::{CapError, CsumFlags, IfCap};
use ptnet::net::frame::{FrameInfo, FrameSink};
use ptnet::net::offload::TxRequest;
use ptnet::shmem::SharedRegion;
use ptnet::tx::{flow_ring, TxError, TxPacket};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};

/// An outgoing packet (an mbuf chain with its packet header).
#[derive(Debug)]
pub struct SimPacket {
    /// The frame.
    pub data: Vec<u8>,
    /// Offload requests and packet header fields.
    pub req: TxRequest,
    _mbuf: Mbuf,
}

impl SimPacket {
    /// A packet of `data` with offload request `req` (`m_gethdr`).
    pub fn new(data: Vec<u8>, req: TxRequest) -> Self {
        LIVE_MBUFS.fetch_add(1, Ordering::Relaxed);
        Self { data, req, _mbuf: Mbuf }
    }
}

/// Packets allocated by the simulated guests and not yet freed, process
/// wide: the lifecycle tests' packet ledger (`vmstat -z | grep mbuf`).
static LIVE_MBUFS: AtomicI64 = AtomicI64::new(0);

/// Outgoing packets alive now (allocated and not freed).
pub fn live_mbufs() -> i64 {
    LIVE_MBUFS.load(Ordering::Relaxed)
}

/// A packet's share of [`LIVE_MBUFS`], given back when it is freed.
#[derive(Debug)]
struct Mbuf;

impl Drop for Mbuf {
    fn drop(&mut self) {
        LIVE_MBUFS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TxPacket for SimPacket {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn request(&self) -> TxRequest {
        self.req
    }

    fn peek(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.data.len());
        dst[..n].copy_from_slice(&self.data[..n]);
        n
    }

    fn copy_to(&self, off: usize, len: usize, dst: &SharedRegion, dst_off: usize) -> bool {
        self.data.get(off..off + len).is_some_and(|b| dst.write_bytes(dst_off, b).is_ok())
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
/// out of "mbufs" and the driver counts drops instead of the queue growing.
pub struct InputQueue {
    frames: VecDeque<RxFrame>,
    limit: usize,
    building: Option<RxFrame>,
}

impl InputQueue {
    /// A queue of at most `limit` frames.
    pub fn new(limit: usize) -> Self {
        Self { frames: VecDeque::new(), limit, building: None }
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
}

impl FrameSink for InputQueue {
    fn begin(&mut self, len: usize, info: &FrameInfo) -> bool {
        if self.frames.len() >= self.limit {
            return false;
        }
        self.building = Some(RxFrame { data: Vec::with_capacity(len), info: *info });
        true
    }

    fn bytes(&mut self, b: &[u8]) {
        if let Some(f) = &mut self.building {
            f.data.extend_from_slice(b);
        }
    }

    fn shared(&mut self, r: &SharedRegion, off: usize, len: usize) {
        if let Some(f) = &mut self.building {
            // Copy straight into the frame's spare capacity: one pass.
            if off.checked_add(len).is_some_and(|e| e <= r.len()) {
                f.data.reserve(len);
                let at = f.data.len();
                // SAFETY: `off + len` is inside the region (checked), the
                // destination has `len` bytes of spare capacity (reserved),
                // and the two do not overlap (guest heap vs shared memory).
                unsafe {
                    std::ptr::copy_nonoverlapping(r.as_ptr().add(off), f.data.as_mut_ptr().add(at), len);
                    f.data.set_len(at + len);
                }
            }
        }
    }

    fn end(&mut self) {
        if let Some(f) = self.building.take() {
            self.frames.push_back(f);
        }
    }
}

impl PtnetIf {
    /// `ifconfig up`: the interface takes the rings (the host starts if
    /// nobody else uses them).
    pub fn if_up(&self) -> Result<(), NmError> {
        let mut users = self.users.lock().unwrap();
        if users.if_up {
            return Ok(());
        }
        self.up(|_| {})?;
        users.if_up = true;
        self.if_running.store(true, Ordering::Release);
        if users.netmap == 0 {
            self.resume_stack();
        }
        Ok(())
    }

    /// `ifconfig down`: queued packets are freed and counted, the host
    /// stops if nobody else uses the rings.
    pub fn if_down(&self) -> Result<(), NmError> {
        let mut users = self.users.lock().unwrap();
        if !users.if_up {
            return Ok(());
        }
        users.if_up = false;
        self.if_running.store(false, Ordering::Release);
        let l = self.lock_all();
        for mut r in l.tx {
            let n = r.flush(drop);
            r.stats.down_drops.add(n as u64);
        }
        self.dev.down()?;
        Ok(())
    }

    /// True while the interface is up.
    pub fn is_up(&self) -> bool {
        self.if_running.load(Ordering::Acquire)
    }

    /// Gives the rings back to the stack: RX interrupts on, and a service
    /// pass over every ring for what arrived meanwhile.
    pub(crate) fn resume_stack(&self) {
        let ntx = self.tx.len();
        for i in 0..self.rx.len() {
            self.dev.set_interrupt(Dir::Rx, i as u32, true);
            self.pending.fetch_or(1 << (ntx + i), Ordering::AcqRel);
        }
        self.vcpu.wake();
    }

    /// `if_transmit`.
    pub fn transmit(&self, p: SimPacket) -> Result<(), TxError> {
        if self.netmap_mode.load(Ordering::Acquire) {
            self.netmap_drops.fetch_add(1, Ordering::Relaxed);
            return Err(TxError::Down);
        }
        let i = flow_ring(&p, self.tx.len() as u32) as usize;
        let mut ring = self.tx[i].lock().unwrap();
        self.dev.transmit(i as u32, &mut ring, Some(p), drop)
    }

    /// The service routine (interrupt task): receives up to `budget`
    /// frames per pending RX ring into `input`, restarts pending TX rings.
    /// Returns whether work is still pending (more frames than the budget).
    pub fn service(&self, input: &mut InputQueue, budget: u32) -> bool {
        let bits = self.pending.swap(0, Ordering::AcqRel);
        let ntx = self.tx.len();
        for (i, ring) in self.rx.iter().enumerate() {
            let bit = 1u64 << (ntx + i);
            if bits & bit != 0 {
                let rep = self.dev.receive(i as u32, &mut ring.lock().unwrap(), budget, input);
                if rep.more {
                    self.pending.fetch_or(bit, Ordering::AcqRel);
                }
            }
        }
        for (i, ring) in self.tx.iter().enumerate() {
            if bits & (1 << i) != 0 {
                let _ = self.dev.transmit(i as u32, &mut ring.lock().unwrap(), None, drop);
            }
        }
        self.watchdog_tick();
        self.pending.load(Ordering::Acquire) != 0
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

    /// The once-a-second callout: the transmit and receive watchdogs of
    /// every ring (run from the service routine, which every driver path
    /// reaches). A transmit watchdog that fired restarts the host side; a
    /// receive watchdog that finds a lost interrupt schedules its ring's
    /// service.
    fn watchdog_tick(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.watchdog_last.load(Ordering::Relaxed);
        let period = (self.tx_timeout_ms.load(Ordering::Relaxed) / 5).clamp(1, 1000);
        if now < last + period
            || self.watchdog_last.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        let timeout = self.tx_timeout_ms.load(Ordering::Relaxed);
        let mut fired = false;
        for (i, ring) in self.tx.iter().enumerate() {
            fired |= self.dev.tx_watchdog(i as u32, &mut ring.lock().unwrap(), now, timeout, drop);
        }
        if fired {
            // As the shim does: a host that took nothing gets restarted.
            let _ = self.restart();
        }
        let ntx = self.tx.len();
        for (i, ring) in self.rx.iter().enumerate() {
            if self.dev.rx_watchdog(i as u32, &mut ring.lock().unwrap()) {
                self.pending.fetch_or(1 << (ntx + i), Ordering::AcqRel);
            }
        }
    }

    /// Sets the transmit watchdog's timeout (tests use short ones).
    pub fn set_tx_timeout(&self, d: std::time::Duration) {
        self.tx_timeout_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// A token for [`PtnetIf::idle`], taken before looking for work.
    pub fn idle_token(&self) -> u64 {
        self.vcpu.token()
    }

    /// Halts the guest CPU until an interrupt (after `token`) or `timeout`.
    pub fn idle(&self, token: u64, timeout: std::time::Duration) {
        if self.pending.load(Ordering::Acquire) == 0 {
            self.vcpu.idle(token, timeout);
        }
    }

    /// `SIOCSIFCAP`.
    pub fn set_capabilities(&self, requested: IfCap) -> Result<IfCap, CapError> {
        let _users = self.users.lock().unwrap();
        self.dev.ifstate().set_capabilities(requested)
    }

    /// Capabilities the interface has.
    pub fn capabilities(&self) -> IfCap {
        self.dev.ifstate().supported()
    }

    /// Capabilities enabled.
    pub fn enabled(&self) -> IfCap {
        self.dev.ifstate().enabled()
    }

    /// Offloads the stack may request.
    pub fn hwassist(&self) -> CsumFlags {
        self.dev.ifstate().hwassist()
    }

    /// `SIOCSIFMTU`.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), MtuError> {
        let _users = self.users.lock().unwrap();
        self.dev.ifstate().set_mtu(mtu)
    }

    /// The MTU.
    pub fn mtu(&self) -> u32 {
        self.dev.ifstate().mtu()
    }

    /// Interface counters, summed over the rings.
    pub fn if_counters(&self) -> IfCounters {
        let mut c = IfCounters { oqdrops: self.netmap_drops.load(Ordering::Relaxed), ..IfCounters::default() };
        for r in &self.tx {
            c.add_tx(&r.lock().unwrap().stats);
        }
        for r in &self.rx {
            c.add_rx(&r.lock().unwrap().stats);
        }
        c
    }

    /// Driver counters (syncs, kicks, interrupts) of all rings.
    pub fn ring_counters(&self) -> QueueCounters {
        self.total_counters()
    }
}
