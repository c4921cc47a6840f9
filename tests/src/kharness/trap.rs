//! VM exits: the module's `bus_read_4`/`bus_write_4` on an I/O BAR are
//! `in`/`out` instructions, which fault in userspace (#GP, delivered as
//! SIGSEGV). The handler decodes the instruction at the faulting address
//! (iced-x86), performs the access on the simulated device's registers
//! and resumes after it, as a hypervisor does on an I/O exit. Any other
//! fault is a kernel panic: the handler names the address (a freed
//! mbuf's page, an unloaded module), the faulting function and the
//! frame-pointer backtrace, and the process exits.

use super::host;
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

/// Exit status of a harness process whose kernel panicked.
pub const PANIC_EXIT: i32 = 70;

/// Installs the handler (once per process).
pub fn install() {
    // SAFETY: a plain sigaction with SA_SIGINFO; the handler only reads
    // the faulting context and state that outlives the process.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_fault as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid ucontext and siginfo to an
    // SA_SIGINFO handler.
    let (uc, addr) = unsafe { (&mut *(ctx as *mut libc::ucontext_t), (*info).si_addr() as u64) };
    let g = &mut uc.uc_mcontext.gregs;
    let rip = g[libc::REG_RIP as usize] as u64;
    if let Some(len) = emulate_io(rip, g) {
        g[libc::REG_RIP as usize] += len as i64;
        return;
    }
    let what = match host::state().pool.is_freed(addr as usize) {
        Some(true) => " (an mbuf or cluster already freed: use after m_freem() or if_input())",
        _ if addr < 4096 => " (NULL pointer dereference)",
        _ => "",
    };
    let kind = if sig == libc::SIGBUS { "bus error" } else { "page fault" };
    let msg = format!("{kind}: fault virtual address {addr:#x}{what}\ninstruction pointer {}", host::symbolize(rip));
    host::die(&msg, g[libc::REG_RBP as usize] as u64);
}

/// An `in` or `out` at `rip` inside loaded kernel code: performed on the
/// device owning the port; returns the instruction's length.
fn emulate_io(rip: u64, g: &mut [libc::greg_t; 23]) -> Option<usize> {
    if !host::in_kernel_code(rip) {
        return None;
    }
    // SAFETY: `rip` lies in a mapped, executable image; x86 instructions
    // are at most 15 bytes and the image's mapping is page-rounded, so
    // reading 15 bytes stays in it (or in its last page).
    let bytes = unsafe { std::slice::from_raw_parts(rip as *const u8, 15) };
    let ins = Decoder::with_ip(64, bytes, rip, DecoderOptions::NONE).decode();
    let (port_op, data_op) = match ins.mnemonic() {
        Mnemonic::In => (1, 0),
        Mnemonic::Out => (0, 1),
        _ => return None,
    };
    let port = match ins.op_kind(port_op) {
        OpKind::Immediate8 => u16::from(ins.immediate8()),
        OpKind::Register if ins.op_register(port_op) == Register::DX => g[libc::REG_RDX as usize] as u16,
        _ => return None,
    };
    let size = match ins.op_register(data_op) {
        Register::AL => 1,
        Register::AX => 2,
        Register::EAX => 4,
        _ => return None,
    };
    let rax = &mut g[libc::REG_RAX as usize];
    if ins.mnemonic() == Mnemonic::In {
        let v = u64::from(host::port_read(port, size));
        *rax = match size {
            4 => v as i64,
            2 => ((*rax as u64 & !0xffff) | (v & 0xffff)) as i64,
            _ => ((*rax as u64 & !0xff) | (v & 0xff)) as i64,
        };
    } else {
        host::port_write(port, size, *rax as u32);
    }
    Some(ins.len())
}
