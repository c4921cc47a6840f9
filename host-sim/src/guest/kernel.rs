//! The simulated guest kernel: what the driver core needs from FreeBSD
//! (DMA memory, console, register access), an interrupt controller that
//! dispatches MSI-X vectors to handlers, and a `dmesg` buffer.

use crate::guest_mem::{GuestMemory, GuestPages};
use crate::hv::{Interrupts, Mmio};
use ptnet::os::{DmaMemory, Kernel, LogLevel, Registers};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// An interrupt handler.
pub type Handler = Arc<dyn Fn() + Send + Sync>;

/// The guest's interrupt controller: one handler slot per vector.
#[derive(Default)]
pub struct IrqController {
    handlers: RwLock<Vec<Option<Handler>>>,
    /// Interrupts delivered with no handler installed.
    pub stray: AtomicU64,
}

impl IrqController {
    /// Installs (or, with `None`, removes) the handler of `vector`; a
    /// removal returns once no call of the old handler runs.
    pub fn set_handler(&self, vector: u32, h: Option<Handler>) {
        let mut hs = self.handlers.write().unwrap();
        let v = vector as usize;
        if hs.len() <= v {
            hs.resize(v + 1, None);
        }
        hs[v] = h;
    }
}

impl Interrupts for IrqController {
    /// Runs the handler holding the table's read lock, so that removing
    /// a handler waits for its running calls, as `bus_teardown_intr` does.
    fn raise(&self, vector: u32) {
        let hs = self.handlers.read().unwrap();
        match hs.get(vector as usize) {
            Some(Some(h)) => h(),
            _ => {
                self.stray.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One guest's kernel.
pub struct GuestKernel {
    /// Host name of the guest (for output).
    pub name: String,
    /// Guest RAM.
    pub mem: Arc<GuestMemory>,
    /// Interrupt controller.
    pub irq: Arc<IrqController>,
    dmesg: Mutex<Vec<String>>,
    echo: bool,
}

impl GuestKernel {
    /// A guest with `ram` bytes of memory; with `echo`, console lines are
    /// also printed to stderr as they are logged.
    pub fn new(name: &str, ram: usize, echo: bool) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            mem: Arc::new(GuestMemory::new(ram)),
            irq: Arc::new(IrqController::default()),
            dmesg: Mutex::new(Vec::new()),
            echo,
        })
    }

    /// Appends a console line.
    pub fn printf(&self, line: String) {
        if self.echo {
            eprintln!("[{}] {line}", self.name);
        }
        self.dmesg.lock().unwrap().push(line);
    }

    /// The console so far.
    pub fn dmesg(&self) -> Vec<String> {
        self.dmesg.lock().unwrap().clone()
    }
}

/// The kernel services handed to one device's driver instance; log lines
/// are prefixed with the device name, as `device_printf` does.
#[derive(Clone)]
pub struct GuestOs {
    /// The kernel.
    pub kernel: Arc<GuestKernel>,
    /// Device name (`ptnet0`).
    pub dev: String,
    dma: Arc<Mutex<Vec<GuestPages>>>,
}

impl GuestOs {
    /// Services for device `dev`.
    pub fn new(kernel: Arc<GuestKernel>, dev: &str) -> Self {
        Self { kernel, dev: dev.to_string(), dma: Arc::default() }
    }

    /// DMA allocations this device holds.
    pub fn dma_outstanding(&self) -> usize {
        self.dma.lock().unwrap().len()
    }

    /// Bytes of DMA memory this device holds.
    pub fn dma_bytes(&self) -> usize {
        self.dma.lock().unwrap().iter().map(|p| p.len).sum()
    }
}

impl Kernel for GuestOs {
    fn alloc_dma(&self, size: usize, align: usize) -> Option<DmaMemory> {
        let pages = self.kernel.mem.alloc(size, align)?;
        let region = self.kernel.mem.region(pages.gpa, pages.len)?;
        self.dma.lock().unwrap().push(pages);
        Some(DmaMemory { region, paddr: pages.gpa })
    }

    fn free_dma(&self, mem: DmaMemory) {
        let mut dma = self.dma.lock().unwrap();
        if let Some(i) = dma.iter().position(|p| p.gpa == mem.paddr) {
            let pages = dma.swap_remove(i);
            self.kernel.mem.free(pages);
        } else {
            self.kernel.printf(format!("{}: free of unknown DMA memory {:#x}", self.dev, mem.paddr));
        }
    }

    fn log(&self, level: LogLevel, args: fmt::Arguments<'_>) {
        let tag = match level {
            LogLevel::Error => "error: ",
            LogLevel::Warning => "warning: ",
            LogLevel::Info => "",
        };
        self.kernel.printf(format!("{}: {tag}{args}", self.dev));
    }
}

/// A register BAR as the guest driver uses it.
#[derive(Clone)]
pub struct PciBar(pub Arc<dyn Mmio>);

impl Registers for PciBar {
    #[inline]
    fn read32(&self, off: u32) -> u32 {
        self.0.read32(off)
    }

    #[inline]
    fn write32(&self, off: u32, val: u32) {
        self.0.write32(off, val)
    }
}
