//! The ideal against which the ptnet path is measured: one producer and
//! one consumer thread exchanging the same packets through a shared-memory
//! single-producer/single-consumer ring of buffers, with no device, no
//! switch and no notifications (both sides spin). Packets are built and
//! verified exactly as pkt-gen's sender and receiver do, through the same
//! shared-memory accessors, so the difference is the cost of the path.

use super::packet::{Kind, SeqTracker, Template};
use ptnet::shmem::SharedRegion;
use serde::Serialize;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Outcome of a baseline run.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// Packets moved.
    pub pkts: u64,
    /// Wall time.
    pub seconds: f64,
    /// Rate (Mpps).
    pub mpps: f64,
    /// Packets the consumer found lost, reordered or corrupt (always 0
    /// unless the ring is broken).
    pub errors: u64,
}

#[repr(align(128))]
struct Padded(AtomicU32);

struct Spsc {
    base: NonNull<u8>,
    layout: Layout,
    slots: u32,
    buf_size: usize,
    lens: Vec<AtomicU32>,
    head: Padded,
    tail: Padded,
    stop: AtomicBool,
}

// SAFETY: the buffer memory is only accessed through SharedRegion (byte
// copies), and slot ownership is handed over with release/acquire on
// head and tail.
unsafe impl Send for Spsc {}
// SAFETY: as above.
unsafe impl Sync for Spsc {}

impl Spsc {
    fn new(slots: u32, buf_size: usize) -> Self {
        let layout = Layout::from_size_align(slots as usize * buf_size, 4096).unwrap();
        // SAFETY: non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
        Self {
            base,
            layout,
            slots,
            buf_size,
            lens: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            head: Padded(AtomicU32::new(0)),
            tail: Padded(AtomicU32::new(0)),
            stop: AtomicBool::new(false),
        }
    }

    fn region(&self) -> SharedRegion {
        // SAFETY: the allocation outlives every use (the struct owns it and
        // both threads hold an Arc).
        unsafe { SharedRegion::new(self.base, self.layout.size()) }
    }
}

impl Drop for Spsc {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// Moves `size`-byte packets for `duration` in batches of `batch` through a
/// ring of `slots` buffers.
pub fn run(size: usize, batch: u32, slots: u32, buf_size: usize, duration: Duration) -> BaselineReport {
    let q = Arc::new(Spsc::new(slots, buf_size));
    let p = q.clone();
    let producer = std::thread::Builder::new()
        .name("baseline-tx".into())
        .spawn(move || {
            let mut tmpl = Template::new(size, 0, [2, 0, 0, 0, 0, 1], 1, [2, 0, 0, 0, 0, 2]);
            let region = p.region();
            let n = p.slots;
            let mut seq = 0u64;
            let mut tail = 0u32;
            while !p.stop.load(Ordering::Relaxed) {
                let head = p.head.0.load(Ordering::Acquire);
                let free = n - 1 - ptnet::kring::cyclic_dist(head, tail, n);
                let k = free.min(batch);
                if k == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                for _ in 0..k {
                    let frame = tmpl.build(Kind::Data, 0, seq);
                    let _ = region.write_bytes(tail as usize * p.buf_size, frame);
                    p.lens[tail as usize].store(frame.len() as u32, Ordering::Relaxed);
                    seq += 1;
                    tail = ptnet::kring::next(tail, n);
                }
                p.tail.0.store(tail, Ordering::Release);
            }
            seq
        })
        .expect("spawn producer");
    let c = q.clone();
    let consumer = std::thread::Builder::new()
        .name("baseline-rx".into())
        .spawn(move || {
            let region = c.region();
            let n = c.slots;
            let mut scratch = vec![0u8; c.buf_size];
            let mut tracker = SeqTracker::default();
            let mut head = 0u32;
            let start = Instant::now();
            let mut got = 0u64;
            while !c.stop.load(Ordering::Relaxed) {
                let tail = c.tail.0.load(Ordering::Acquire);
                if tail == head {
                    std::hint::spin_loop();
                    continue;
                }
                while head != tail {
                    let len = c.lens[head as usize].load(Ordering::Relaxed) as usize;
                    let _ = region.read_bytes(head as usize * c.buf_size, &mut scratch[..len]);
                    tracker.record(&scratch[..len]);
                    got += 1;
                    head = ptnet::kring::next(head, n);
                }
                c.head.0.store(head, Ordering::Release);
            }
            (got, start.elapsed(), tracker)
        })
        .expect("spawn consumer");
    std::thread::sleep(duration);
    q.stop.store(true, Ordering::Relaxed);
    let _sent = producer.join().expect("producer");
    let (got, elapsed, t) = consumer.join().expect("consumer");
    let seconds = elapsed.as_secs_f64();
    BaselineReport {
        pkts: got,
        seconds,
        mpps: got as f64 / seconds / 1e6,
        errors: t.lost + t.dup_or_reordered + t.corrupt,
    }
}
