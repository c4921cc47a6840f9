//! The synchronisation protocol over arbitrary CSB values from the host
//! (hwcur, hwtail, need_kick) and arbitrary application moves, with
//! restarts, interrupts and watchdog runs in between: the driver's ring
//! pointers stay in range and its view of the ring stays consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptnet::csb::{kern_write, CsbMem, Field, SyncOpts};
use ptnet::fake::Fixture;
use ptnet::kring::Dir;
use ptnet_fuzz::{check_kring, running, Input, GEOMETRY};

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let fx = Fixture::new(GEOMETRY);
    let (dev, mut tx, mut rx) = running(&fx);
    while !inp.is_empty() {
        let opts = SyncOpts { force_reclaim: inp.bool(), want_intr: inp.bool(), want_space: u32::from(inp.u8() % 4) };
        match inp.u8() % 8 {
            0 => {
                let (head, cur) = (u32::from(inp.u8()), u32::from(inp.u8()));
                if tx.kring.tx_prologue(head, cur).is_ok() {
                    let _ = dev.txsync(0, &mut tx.kring, opts);
                }
            }
            1 => {
                let (head, cur) = (u32::from(inp.u8()), u32::from(inp.u8()));
                if rx.kring.rx_prologue(head, cur).is_ok() {
                    let _ = dev.rxsync(0, &mut rx.kring, opts);
                }
            }
            2 => {
                let ring = usize::from(inp.u8() % 2);
                kern_write(&fx.host_csb(ring), inp.u32(), inp.u32());
            }
            3 => fx.host_csb(usize::from(inp.u8() % 2)).store(Field::KernNeedKick, inp.u32()),
            4 => {
                let _ = dev.interrupt(inp.u32());
            }
            5 => {
                let _ = dev.restart([&mut tx.kring, &mut rx.kring].into_iter());
            }
            6 => {
                let now = u64::from(inp.u32());
                let _ = dev.tx_watchdog(0, &mut tx, now, u64::from(inp.u8()), drop);
                let _ = dev.rx_watchdog(0, &mut rx);
                let _ = dev.tx_abandon(0, &mut tx);
            }
            _ => {
                let _ = dev.txsync(0, &mut tx.kring, opts);
                let _ = dev.rxsync(0, &mut rx.kring, opts);
            }
        }
        check_kring(&tx.kring, Dir::Tx);
        check_kring(&rx.kring, Dir::Rx);
    }
});
