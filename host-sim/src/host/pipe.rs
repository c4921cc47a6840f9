//! netmap pipes: two ports in the same memory whose rings mirror each
//! other. TX ring `r` of one end and RX ring `r` of the other share slot
//! positions and buffers, so a packet moves by copying its slot descriptor
//! (zero copy), and the sender gets its slots back only when the receiver
//! releases them: unlike VALE, a pipe never drops, it pushes back.

use super::mem::HostMemory;
use super::port::{Backend, HostKring, HostRing, NmPort, NotifyList, PortConfig};
use ptnet::abi::netmap::SlotFlags;
use ptnet::kring::{next, prev, Dir};
use std::sync::{Arc, OnceLock, Weak};

struct PipeEnd {
    peer: Arc<OnceLock<Weak<NmPort>>>,
}

/// Creates the two ends `name{N` and `name}N` of pipe `N`, in `mem`.
pub fn pipe(name: &str, id: u32, mem: Arc<HostMemory>, cfg: PortConfig) -> (Arc<NmPort>, Arc<NmPort>) {
    let (a_peer, b_peer) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let a_end = Box::new(PipeEnd { peer: a_peer.clone() });
    let b_end = Box::new(PipeEnd { peer: b_peer.clone() });
    let a = NmPort::create(&format!("{name}{{{id}"), mem.clone(), cfg, None, a_end);
    let b = NmPort::create(&format!("{name}}}{id}"), mem, cfg, Some(&a), b_end);
    let _ = a_peer.set(Arc::downgrade(&b));
    let _ = b_peer.set(Arc::downgrade(&a));
    (a, b)
}

impl PipeEnd {
    fn peer(&self) -> Option<Arc<NmPort>> {
        self.peer.get()?.upgrade()
    }
}

fn copy_slot(from: &HostRing, to: &HostRing, j: u32) -> u16 {
    let (f, t) = (&from.ring, &to.ring);
    let flags = f.slot_flags(j).unwrap_or(0);
    let _ = t.set_slot_buf_idx(j, f.slot_buf_idx(j).unwrap_or(0));
    let _ = t.set_slot(j, f.slot_len(j).unwrap_or(0), flags & !SlotFlags::BUF_CHANGED.bits());
    flags
}

impl Backend for PipeEnd {
    fn txsync(&self, _port: &Arc<NmPort>, ring: &HostRing, k: &mut HostKring, notify: &mut NotifyList) {
        let Some(peer) = self.peer() else { return };
        let Some(rx) = peer.ring(Dir::Rx, ring.idx) else {
            return;
        };
        let n = k.k.num_slots;
        let mut rk = rx.kring.lock().unwrap();
        let mut j = k.k.hwcur;
        let mut complete_end = None;
        while j != k.k.rhead {
            let flags = copy_slot(ring, rx, j);
            j = next(j, n);
            if flags & SlotFlags::MOREFRAG.bits() == 0 {
                complete_end = Some(j);
            }
        }
        k.k.hwcur = j;
        // Slots come back only as the peer releases them.
        k.k.hwtail = prev(rk.k.hwcur, n);
        if let Some(end) = complete_end {
            rk.k.hwtail = end;
            drop(rk);
            notify.push((peer.clone(), Dir::Rx, ring.idx));
        }
    }

    fn rxsync(&self, _port: &Arc<NmPort>, ring: &HostRing, k: &mut HostKring, notify: &mut NotifyList) {
        let Some(peer) = self.peer() else { return };
        let Some(tx) = peer.ring(Dir::Tx, ring.idx) else {
            return;
        };
        let n = k.k.num_slots;
        let mut j = k.k.hwcur;
        while j != k.k.rhead {
            // A receiver that swapped a buffer hands the new one back.
            if ring.ring.slot_flags(j).unwrap_or(0) & SlotFlags::BUF_CHANGED.bits() != 0 {
                copy_slot(ring, tx, j);
            }
            j = next(j, n);
        }
        if k.k.hwcur != j {
            k.k.hwcur = j;
            // The sender's TX sync picks up the freed slots.
            notify.push((peer.clone(), Dir::Tx, ring.idx));
        }
    }
}
