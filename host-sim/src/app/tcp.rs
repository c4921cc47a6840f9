//! TCP bulk transfers and request/response between guest stacks (and, with
//! the TAP backend, a Linux peer), with the content checked end to end.

use super::stream::{Digest, Pattern};
use crate::guest::stack::Stack;
use serde::Serialize;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;
use std::time::{Duration, Instant};

/// Socket buffer sizes for bulk transfers (the window they allow).
pub const BULK_BUF: usize = 1 << 20;

/// Guest IPv4 address of VM `i` on the simulated LAN.
pub fn vm_ipv4(i: usize) -> smoltcp::wire::Ipv4Address {
    smoltcp::wire::Ipv4Address::new(10, 0, 0, (i + 1) as u8)
}

/// Guest IPv6 address of VM `i`.
pub fn vm_ipv6(i: usize) -> smoltcp::wire::Ipv6Address {
    smoltcp::wire::Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, (i + 1) as u16)
}

/// The addresses VM `i` configures.
pub fn vm_addrs(i: usize) -> Vec<smoltcp::wire::IpCidr> {
    vec![
        smoltcp::wire::IpCidr::new(IpAddress::Ipv4(vm_ipv4(i)), 24),
        smoltcp::wire::IpCidr::new(IpAddress::Ipv6(vm_ipv6(i)), 64),
    ]
}

/// One side's view of a finished bulk transfer.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct BulkSide {
    /// Bytes moved.
    pub bytes: u64,
    /// Seconds from the first to the last byte.
    pub seconds: f64,
    /// Digest of the bytes.
    pub digest: u64,
}

fn sock(bufsize: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; bufsize]), tcp::SocketBuffer::new(vec![0; bufsize]));
    s.set_nagle_enabled(false);
    s
}

/// The sending half of a bulk transfer on a guest stack.
pub struct BulkSender {
    h: SocketHandle,
    pattern: Pattern,
    total: u64,
    sent: u64,
    digest: Digest,
    start: Option<Instant>,
    closed: bool,
    deadline: Option<Instant>,
}

impl BulkSender {
    /// Connects to `peer:port` and will send `total` bytes of `pattern`.
    pub fn connect(st: &mut Stack, peer: IpAddress, port: u16, local_port: u16, total: u64, pattern: Pattern) -> Self {
        let mut s = sock(BULK_BUF);
        s.connect(st.iface.context(), (peer, port), local_port).expect("connect");
        let h = st.sockets.add(s);
        Self { h, pattern, total, sent: 0, digest: Digest::default(), start: None, closed: false, deadline: None }
    }

    /// Stops the stream at whatever was sent by `t` (a timed transfer).
    pub fn stop_at(&mut self, t: Instant) {
        self.deadline = Some(t);
    }

    /// Bytes handed to the socket so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Queues what the send buffer takes. Returns true when everything
    /// was sent and acknowledged (the connection is closing).
    pub fn step(&mut self, st: &mut Stack) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.total = self.sent;
        }
        let s = st.sockets.get_mut::<tcp::Socket>(self.h);
        if s.can_send() && self.sent < self.total {
            let start = *self.start.get_or_insert_with(Instant::now);
            let _ = start;
            let (pattern, sent, total, digest) = (&self.pattern, &mut self.sent, self.total, &mut self.digest);
            let _ = s.send(|buf| {
                let n = ((total - *sent) as usize).min(buf.len());
                pattern.fill(*sent, &mut buf[..n]);
                digest.update(&buf[..n]);
                *sent += n as u64;
                (n, ())
            });
        }
        if self.sent == self.total && !self.closed && s.send_queue() == 0 {
            s.close();
            self.closed = true;
        }
        self.closed
            && matches!(
                s.state(),
                tcp::State::FinWait2
                    | tcp::State::TimeWait
                    | tcp::State::Closed
                    | tcp::State::Closing
                    | tcp::State::LastAck
            )
    }

    /// What was sent.
    pub fn result(&self) -> BulkSide {
        let seconds = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        BulkSide { bytes: self.sent, seconds, digest: self.digest.value() }
    }
}

/// The receiving half, checking every byte against the pattern.
pub struct BulkReceiver {
    h: SocketHandle,
    pattern: Pattern,
    got: u64,
    digest: Digest,
    start: Option<Instant>,
    /// Offset of the first byte that did not match, if any.
    pub corrupt_at: Option<u64>,
}

impl BulkReceiver {
    /// Listens on `port`.
    pub fn listen(st: &mut Stack, port: u16, pattern: Pattern) -> Self {
        let mut s = sock(BULK_BUF);
        s.listen(port).expect("listen");
        let h = st.sockets.add(s);
        Self { h, pattern, got: 0, digest: Digest::default(), start: None, corrupt_at: None }
    }

    /// Drains the receive buffer. Returns true once the peer closed and
    /// everything was read.
    pub fn step(&mut self, st: &mut Stack) -> bool {
        let s = st.sockets.get_mut::<tcp::Socket>(self.h);
        while s.can_recv() {
            let (pattern, got, digest, corrupt) =
                (&self.pattern, &mut self.got, &mut self.digest, &mut self.corrupt_at);
            self.start.get_or_insert_with(Instant::now);
            let _ = s.recv(|buf| {
                let ok = pattern.matching(*got, buf);
                if ok < buf.len() && corrupt.is_none() {
                    *corrupt = Some(*got + ok as u64);
                }
                digest.update(buf);
                *got += buf.len() as u64;
                (buf.len(), ())
            });
        }
        if !s.may_recv() && self.got > 0 {
            s.close();
            return true;
        }
        false
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.got
    }

    /// What was received.
    pub fn result(&self) -> BulkSide {
        let seconds = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        BulkSide { bytes: self.got, seconds, digest: self.digest.value() }
    }
}

/// Runs `step` on `st` until it returns true or `timeout` passes.
pub fn drive(st: &mut Stack, timeout: Duration, mut step: impl FnMut(&mut Stack) -> bool) -> bool {
    st.run_until(timeout, |s| step(s))
}
