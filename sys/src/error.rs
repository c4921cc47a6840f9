//! Errors the driver reports, each with enough detail for a useful
//! console line.

use crate::abi::regs::Features;
use crate::kring::Dir;
use core::fmt;

/// Why attaching to a device failed. Every variant names the value the
/// device gave and what was expected, because these errors are read by a
/// person looking at `dmesg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    /// The host granted features the driver did not ask for.
    UnrequestedFeatures {
        /// What the driver asked for.
        wanted: Features,
        /// What the host granted (raw register value).
        granted: u32,
    },
    /// A feature the configuration requires was not granted.
    FeatureNotGranted {
        /// The missing features.
        missing: Features,
    },
    /// Zero rings, or more than the CSB can hold.
    BadRingCount {
        /// `NUM_TX_RINGS`.
        tx: u32,
        /// `NUM_RX_RINGS`.
        rx: u32,
    },
    /// A slot count outside the supported range.
    BadSlotCount {
        /// Direction.
        dir: Dir,
        /// The register value.
        slots: u32,
    },
    /// Fewer MSI-X vectors than rings.
    NotEnoughVectors {
        /// Vectors available.
        have: u32,
        /// Vectors needed (one per ring).
        need: u32,
    },
    /// No ptnetmap-memdev exposes the host memory the NIC uses.
    NoMemdev {
        /// `HOSTMEMID` of the NIC.
        memid: u32,
    },
    /// The memdev exposes a different host memory than the NIC uses.
    MemIdMismatch {
        /// `HOSTMEMID` of the NIC.
        nic: u32,
        /// `MEMID` of the memdev.
        memdev: u32,
    },
    /// The memory size register is zero or larger than the BAR.
    BadMemSize {
        /// `MEMSIZE`.
        memsize: u64,
        /// Length of the BAR mapping.
        bar_len: usize,
    },
    /// A memory pool outside the memory, or with unusable geometry.
    BadPool {
        /// Pool name.
        pool: &'static str,
        /// Offset.
        ofs: usize,
        /// Object count.
        objnum: u32,
        /// Object size.
        objsize: u32,
    },
    /// `NIFP_OFS` does not locate a `netmap_if` inside the interface pool.
    BadNifpOffset {
        /// The offset.
        ofs: usize,
    },
    /// A `netmap_if` field disagrees with the NIC registers.
    IfMismatch {
        /// Field name.
        what: &'static str,
        /// Value in memory.
        got: u32,
        /// Value expected.
        expected: u32,
    },
    /// A ring offset points outside the ring pool or is misaligned.
    BadRingOffset {
        /// Direction.
        dir: Dir,
        /// Ring index.
        ring: u32,
        /// `ring_ofs[]` entry (-1 when it could not be read).
        ofs: i64,
    },
    /// A ring header field disagrees with the registers or the pools.
    RingMismatch {
        /// Direction.
        dir: Dir,
        /// Ring index.
        ring: u32,
        /// Field name.
        what: &'static str,
        /// Value in memory.
        got: u64,
        /// Value expected.
        expected: u64,
    },
    /// Two rings, or a ring and the `netmap_if`, share memory.
    RingsOverlap {
        /// First ring (`None`: the `netmap_if`).
        a: Option<(Dir, usize)>,
        /// Second ring.
        b: Option<(Dir, usize)>,
    },
    /// `VNET_HDR_LEN` reads back a length the driver cannot use.
    BadVnetHdrLen {
        /// The register value.
        len: u32,
    },
    /// The CSB could not be allocated.
    CsbAlloc,
    /// `PTCTL` returned an error.
    Ptctl {
        /// The command.
        cmd: u32,
        /// The errno read back.
        err: u32,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AttachError::*;
        match *self {
            UnrequestedFeatures { wanted, granted } => {
                write!(f, "host granted features {granted:#x}, more than the {:#x} requested", wanted.bits())
            }
            FeatureNotGranted { missing } => {
                write!(f, "required features {:#x} not granted by the host", missing.bits())
            }
            BadRingCount { tx, rx } => {
                write!(f, "unusable ring counts: {tx} tx, {rx} rx (need at least 1 each, at most 64 in all)")
            }
            BadSlotCount { dir, slots } => {
                write!(f, "unusable {dir} slot count {slots}")
            }
            NotEnoughVectors { have, need } => {
                write!(f, "{have} MSI-X vectors, {need} needed (one per ring)")
            }
            NoMemdev { memid } => write!(f, "no ptnetmap-memdev for host memory {memid}"),
            MemIdMismatch { nic, memdev } => {
                write!(f, "NIC uses host memory {nic} but the memdev exposes memory {memdev}")
            }
            BadMemSize { memsize, bar_len } => {
                write!(f, "netmap memory size {memsize:#x} does not fit the {bar_len:#x}-byte BAR")
            }
            BadPool { pool, ofs, objnum, objsize } => write!(
                f,
                "{pool} pool at {ofs:#x} ({objnum} x {objsize} bytes) is outside the netmap memory or unusable"
            ),
            BadNifpOffset { ofs } => {
                write!(f, "netmap_if offset {ofs:#x} is not inside the interface pool")
            }
            IfMismatch { what, got, expected } => {
                write!(f, "netmap_if {what} is {got}, expected {expected}")
            }
            BadRingOffset { dir, ring, ofs } => {
                write!(f, "{dir} ring {ring}: offset {ofs} is outside the ring pool or misaligned")
            }
            RingMismatch { dir, ring, what, got, expected } => {
                write!(f, "{dir} ring {ring}: {what} is {got:#x}, expected {expected:#x}")
            }
            RingsOverlap { a, b } => {
                let name = |r: Option<(Dir, usize)>, f: &mut fmt::Formatter<'_>| match r {
                    Some((d, o)) => write!(f, "{d} ring at {o:#x}"),
                    None => f.write_str("netmap_if"),
                };
                name(a, f)?;
                f.write_str(" overlaps ")?;
                name(b, f)
            }
            BadVnetHdrLen { len } => write!(f, "unusable virtio-net header length {len}"),
            CsbAlloc => f.write_str("cannot allocate the CSB (2 contiguous pages)"),
            Ptctl { cmd, err } => write!(f, "PTCTL command {cmd} failed with error {err}"),
        }
    }
}
