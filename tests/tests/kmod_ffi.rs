//! The kernel module's C ABI (crate `ptnet-ffi`, what ships in `ptnrs.ko`)
//! at its edges, through the simulated guest kernel's implementation of
//! the shim's table: probes, arguments a buggy caller might pass, the
//! kernel running out of memory, DMA memory or mbufs, the BPF tap, and
//! netmap taking rings from the stack. Every test here holds `SERIAL`:
//! the allocator failure switches are process wide.

use ptnet::kring::Dir;
use ptnet::net::caps::{CsumFlags, IfCap};
use ptnet::net::offload::TxRequest;
use ptnet_ffi::*;
use ptnet_host_sim::guest::device::NmError;
use ptnet_host_sim::guest::ifnet::{InputQueue, SimPacket};
use ptnet_host_sim::guest::shim::{live_mbufs, malloc_outstanding, SimMbuf, FAIL, FAIL_DMA, FAIL_MALLOC, FAIL_MBUF};
use ptnet_host_sim::world::{vm_mac, World, WorldConfig};
use ptnet_tests::{receive, udp_frame};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn payload(i: usize) -> Vec<u8> {
    (0..100 + i).map(|b| (b * 7 + i) as u8).collect()
}

fn send_from(w: &World, vm: usize, to: usize, n: usize, req: TxRequest) {
    for i in 0..n {
        let f = udp_frame(vm_mac(to), vm_mac(vm), &payload(i));
        w.ifp(vm).transmit(SimPacket::new(f, req)).unwrap();
    }
}

fn booted() -> World {
    ptnet_tests::world(WorldConfig { driver: ptnet::Config::default(), ..WorldConfig::default() })
}

#[test]
fn probes_capabilities_counters_and_the_bpf_tap() {
    let _s = serial();
    assert_eq!(ptnet_rs_probe(0x1b36, 0x000d), 0);
    assert_ne!(ptnet_rs_probe(0x1b36, 0x000c), 0);
    assert_eq!(ptnet_rs_probe_memdev(0x1b36, 0x000c), 0);
    assert_ne!(ptnet_rs_probe_memdev(0x8086, 0x000c), 0);
    let w = booted();
    let ifp = w.ifp(0);
    assert!(ifp.capabilities().contains(IfCap::TXCSUM | IfCap::TSO4 | IfCap::TSO6 | IfCap::LRO));
    assert!(ifp.hwassist().contains(CsumFlags::IP_UDP));
    for i in 0..2 {
        w.ifp(i).if_up().unwrap();
    }
    let mbufs = live_mbufs();
    send_from(&w, 0, 1, 50, TxRequest { csum_flags: CsumFlags::IP_UDP, ..TxRequest::default() });
    assert_eq!(receive(w.ifp(1), 50).len(), 50);
    assert_eq!(ifp.bpf_taps(), 50, "tcpdump sees every packet sent");
    let c = ifp.if_counters();
    assert_eq!((c.opackets, c.oerrors, c.oqdrops, c.tx_csum), (50, 0, 0, 50));
    let q = ifp.queue_stats(Dir::Tx, 0);
    assert_eq!((q.packets, q.csum), (50, 50));
    assert!(q.syncs > 0 && q.kicks > 0);
    assert_eq!(live_mbufs(), mbufs, "every mbuf was freed or handed up");
    w.shutdown().unwrap();
}

#[test]
fn null_and_stale_arguments_are_refused() {
    let _s = serial();
    ptnet_host_sim::guest::shim::register();
    let null = std::ptr::null_mut();
    // SAFETY: every entry point takes NULL for its softc and refuses it.
    unsafe {
        assert_eq!(ptnet_rs_if_init(null), 22);
        assert_eq!(ptnet_rs_detach(null, null.cast()), 22);
        assert_eq!(ptnet_rs_attach(null.cast(), 2, 0, std::ptr::null_mut()), 22);
        assert_eq!(ptnet_rs_rx_task(null, 0, 64), 0);
        assert_eq!(ptnet_rs_nm_sync(null, 0, 0, std::ptr::null_mut(), 0, std::ptr::null()), 22);
        ptnet_rs_qflush(null);
    }
    // A transmit with no device still frees the mbuf it was given.
    let before = live_mbufs();
    let m = SimMbuf::from_packet(SimPacket::new(vec![0; 60], TxRequest::default()));
    // SAFETY: `m` is a chain the call takes over.
    assert_eq!(unsafe { ptnet_rs_transmit(null, m) }, 22);
    assert_eq!(live_mbufs(), before);
}

#[test]
fn attach_without_memory_fails_cleanly_and_works_once_memory_returns() {
    let _s = serial();
    let mut w = World::boot(WorldConfig::default());
    let blocks = malloc_outstanding();
    for (what, says) in [(FAIL_DMA, "CSB"), (FAIL_MALLOC, "")] {
        FAIL.store(what, Ordering::SeqCst);
        let res = w.vms[0].attach(ptnet::Config::default());
        FAIL.store(0, Ordering::SeqCst);
        let Err(NmError::Failed { errno, why }) = res else { panic!("attach without memory must fail") };
        assert_eq!(errno, 12, "ENOMEM");
        assert!(why.contains(says), "{why}");
        assert_eq!(w.vms[0].kernel.mem.outstanding(), (0, 0), "CSB memory leaked");
        assert_eq!(malloc_outstanding(), blocks, "kernel memory leaked");
    }
    // Memory is back: the same device attaches and detaches.
    let ifp = w.vms[0].attach(ptnet::Config::default()).unwrap();
    drop(ifp);
    w.vms[0].detach().unwrap();
    assert_eq!((w.vms[0].kernel.mem.outstanding(), malloc_outstanding()), ((0, 0), blocks));
}

#[test]
fn frames_without_mbufs_are_dropped_and_counted_and_reception_recovers() {
    let _s = serial();
    let w = booted();
    for i in 0..2 {
        w.ifp(i).if_up().unwrap();
    }
    FAIL.store(FAIL_MBUF, Ordering::SeqCst);
    send_from(&w, 1, 0, 30, TxRequest::default());
    let end = Instant::now() + Duration::from_secs(5);
    while w.ifp(0).if_counters().iqdrops < 30 && Instant::now() < end {
        let mut q = InputQueue::new(1000);
        w.ifp(0).service(&mut q, 64);
        assert!(q.is_empty(), "no mbuf, no frame");
        std::thread::sleep(Duration::from_millis(1));
    }
    FAIL.store(0, Ordering::SeqCst);
    let c = w.ifp(0).if_counters();
    assert_eq!((c.iqdrops, c.ipackets, c.ierrors), (30, 0, 0), "each frame dropped and counted");
    // mbufs are back: the ring was released, frames flow again.
    send_from(&w, 1, 0, 20, TxRequest::default());
    let got = receive(w.ifp(0), 20);
    assert!(got.iter().enumerate().all(|(i, f)| f.data.ends_with(&payload(i))));
    assert_eq!(w.ifp(0).if_counters().ipackets, 20);
    w.shutdown().unwrap();
}

#[test]
fn netmap_clients_take_the_rings_from_the_stack_and_give_them_back() {
    let _s = serial();
    let w = booted();
    for i in 0..2 {
        w.ifp(i).if_up().unwrap();
    }
    let port = w.ifp(0).open().unwrap();
    // The stack's packets are refused and counted while netmap holds the
    // rings (on FreeBSD, netmap takes if_transmit over meanwhile).
    let f = udp_frame(vm_mac(1), vm_mac(0), &payload(0));
    assert!(w.ifp(0).transmit(SimPacket::new(f, TxRequest::default())).is_err());
    assert_eq!(w.ifp(0).if_counters().oqdrops, 1);
    // A frame from the peer wakes netmap, not the stack.
    send_from(&w, 1, 0, 1, TxRequest::default());
    assert!(port.poll(Dir::Rx, Duration::from_secs(5)).unwrap(), "the frame reaches the netmap client");
    let ring = port.ring(Dir::Rx, 0).unwrap();
    assert_eq!(ring.space(), 1);
    let mut q = InputQueue::new(100);
    w.ifp(0).service(&mut q, 64);
    assert!(q.is_empty(), "nothing went to the stack");
    ring.advance(ring.next(ring.cur()));
    port.sync(Dir::Rx, 0).unwrap();
    // Back to the stack.
    drop(port);
    send_from(&w, 0, 1, 1, TxRequest::default());
    assert_eq!(receive(w.ifp(1), 1).len(), 1);
    w.shutdown().unwrap();
}

#[test]
fn concurrent_transmits_on_one_ring_never_release_the_holders_mutex() {
    // Two stack threads on one ring: one holds the ring's mutex while the
    // other's try-lock fails and hands its packet off. A failed try-lock
    // once released the holder's mutex (the guard was built, then
    // dropped); the simulator's mutexes now fail "mutex not owned" as
    // WITNESS does, and every packet must still arrive.
    let _s = serial();
    let w = booted();
    let (a, b) = (w.ifp(0).clone(), w.ifp(1).clone());
    a.if_up().unwrap();
    b.if_up().unwrap();
    const PER_THREAD: usize = 20_000;
    let sent = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (a, sent) = (&a, &sent);
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let f = udp_frame(vm_mac(1), vm_mac(0), &payload((t * PER_THREAD + i) % 1000));
                    while a.transmit(SimPacket::new(f.clone(), TxRequest::default())).is_err() {
                        std::thread::yield_now();
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // The receiver keeps the switch from dropping.
        let mut q = InputQueue::new(1 << 16);
        let (mut got, end) = (0, Instant::now() + Duration::from_secs(60));
        while got + (w.drops() as usize) < 2 * PER_THREAD && Instant::now() < end {
            let t = b.idle_token();
            b.service(&mut q, 256);
            a.service(&mut InputQueue::new(16), 64);
            while q.pop().is_some() {
                got += 1;
            }
            b.idle(t, Duration::from_millis(1));
        }
        let dropped = w.drops() as usize;
        assert_eq!(got + dropped, 2 * PER_THREAD, "received {got}, switch drops {dropped}");
    });
    drop((a, b));
    w.shutdown().unwrap();
}
