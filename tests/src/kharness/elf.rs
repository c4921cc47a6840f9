//! The kernel linker's part for a relocatable amd64 object, as
//! `sys/kern/link_elf_obj.c` does it for a `.ko`: each allocated section
//! placed (here in one mapping below 2 GiB, so that the kernel code
//! model's sign-extended 32-bit addresses reach it), `SHT_NOBITS` zeroed,
//! the RELA relocations applied with the types `sys/amd64/amd64/elf_machdep.c`
//! handles (NONE, 64, PC32, PLT32, 32S), undefined symbols resolved
//! against what is already loaded, and the linker sets (`set_X` sections)
//! found by name with their `__start_set_X`/`__stop_set_X` bounds.

use object::elf;
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionKind, SymbolSection};
use std::collections::HashMap;

/// A loaded object: its mapping, symbols and linker sets.
pub struct Image {
    /// The file's name (for messages).
    pub name: String,
    base: *mut u8,
    size: usize,
    /// Global symbols defined by the object.
    pub globals: HashMap<String, u64>,
    /// Every function and object symbol, by address (symbolization).
    pub symbols: Vec<(u64, u64, String)>,
    /// Linker sets: `set_X` -> (start, end).
    pub sets: HashMap<String, (u64, u64)>,
}

// SAFETY: the mapping is owned by the image and only its address range is
// shared (read by the fault handler for symbolization).
unsafe impl Send for Image {}
// SAFETY: as above.
unsafe impl Sync for Image {}

impl Image {
    /// Maps, relocates and links `bytes`; undefined symbols come from
    /// `resolve`. An unresolved or unsupported reference fails the load
    /// naming it, as kldload(8) reports "undefined symbol".
    pub fn load(name: &str, bytes: &[u8], resolve: &dyn Fn(&str) -> Option<u64>) -> Result<Image, String> {
        let file = object::File::parse(bytes).map_err(|e| format!("{name}: {e}"))?;
        if file.architecture() != object::Architecture::X86_64 || file.kind() != object::ObjectKind::Relocatable {
            return Err(format!("{name}: not an amd64 relocatable object"));
        }
        // Layout of the allocated sections.
        let mut place: HashMap<usize, u64> = HashMap::new();
        let mut size = 0u64;
        for s in file.sections() {
            if !is_alloc(&s) {
                continue;
            }
            let align = s.align().max(1);
            size = size.next_multiple_of(align);
            place.insert(s.index().0, size);
            size += s.size();
        }
        let size = (size as usize).max(1).next_multiple_of(4096);
        let base = map_low(size).ok_or_else(|| format!("{name}: no memory below 2 GiB for {size} bytes"))?;
        let mut img = Image {
            name: name.to_string(),
            base,
            size,
            globals: HashMap::new(),
            symbols: Vec::new(),
            sets: HashMap::new(),
        };
        for s in file.sections() {
            let Some(&off) = place.get(&s.index().0) else { continue };
            if s.kind() != SectionKind::UninitializedData && s.kind() != SectionKind::UninitializedTls {
                let data = s.data().map_err(|e| format!("{name}: {e}"))?;
                // SAFETY: `off + data.len()` lies inside the fresh mapping
                // (the layout above reserved `s.size()` bytes there).
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(off as usize), data.len()) };
            }
            if let Ok(n) = s.name() {
                if n.starts_with("set_") {
                    let start = base as u64 + off;
                    img.sets.insert(n.to_string(), (start, start + s.size()));
                }
            }
        }
        // Symbol values.
        let mut addr: HashMap<usize, u64> = HashMap::new();
        for sym in file.symbols() {
            let v = match sym.section() {
                SymbolSection::Section(i) => match place.get(&i.0) {
                    Some(off) => base as u64 + off + sym.address(),
                    None => continue,
                },
                SymbolSection::Absolute => sym.address(),
                _ => continue,
            };
            addr.insert(sym.index().0, v);
            let n = sym.name().unwrap_or("").to_string();
            if matches!(sym.kind(), object::SymbolKind::Text | object::SymbolKind::Data) && !n.is_empty() {
                img.symbols.push((v, sym.size(), n.clone()));
            }
            if sym.is_global() && !n.is_empty() {
                img.globals.insert(n, v);
            }
        }
        img.symbols.sort();
        // Relocations.
        for s in file.sections() {
            let Some(&off) = place.get(&s.index().0) else { continue };
            for (r_off, rel) in s.relocations() {
                let RelocationFlags::Elf { r_type } = rel.flags() else {
                    return Err(format!("{name}: not an ELF relocation"));
                };
                if r_type == elf::R_X86_64_NONE {
                    continue;
                }
                let sym_val = match rel.target() {
                    RelocationTarget::Symbol(i) => match addr.get(&i.0) {
                        Some(&v) => v,
                        None => {
                            let sym = file.symbol_by_index(i).map_err(|e| format!("{name}: {e}"))?;
                            let n = sym.name().unwrap_or("");
                            img.undefined(n, resolve, sym.is_weak())?
                        }
                    },
                    RelocationTarget::Section(i) => match place.get(&i.0) {
                        Some(o) => base as u64 + o,
                        None => return Err(format!("{name}: relocation against a section not loaded")),
                    },
                    _ => return Err(format!("{name}: unsupported relocation target")),
                };
                let p = base as u64 + off + r_off;
                let v = sym_val.wrapping_add(rel.addend() as u64);
                let at = p as *mut u8;
                match r_type {
                    elf::R_X86_64_64 => {
                        // SAFETY: `p` is inside the mapping (a relocation of
                        // a loaded section, at most its size).
                        unsafe { (at as *mut u64).write_unaligned(v) }
                    }
                    elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 => {
                        let d = v.wrapping_sub(p) as i64;
                        let d32 = i32::try_from(d).map_err(|_| format!("{name}: PC32 out of range at {p:#x}"))?;
                        // SAFETY: as above.
                        unsafe { (at as *mut i32).write_unaligned(d32) }
                    }
                    elf::R_X86_64_32S => {
                        let d32 = i32::try_from(v as i64).map_err(|_| format!("{name}: 32S out of range ({v:#x})"))?;
                        // SAFETY: as above.
                        unsafe { (at as *mut i32).write_unaligned(d32) }
                    }
                    t => return Err(format!("{name}: relocation type {t} not handled by the amd64 kld loader")),
                }
            }
        }
        Ok(img)
    }

    /// An undefined symbol: a linker-set bound of this object, the
    /// kernel's, or (weak) 0.
    fn undefined(&self, n: &str, resolve: &dyn Fn(&str) -> Option<u64>, weak: bool) -> Result<u64, String> {
        for (prefix, end) in [("__start_", false), ("__stop_", true)] {
            if let Some(set) = n.strip_prefix(prefix) {
                if let Some(&(s, e)) = self.sets.get(set) {
                    return Ok(if end { e } else { s });
                }
                if weak {
                    return Ok(0);
                }
            }
        }
        match resolve(n) {
            Some(v) => Ok(v),
            None if weak => Ok(0),
            None => Err(format!("{}: undefined symbol {n}", self.name)),
        }
    }

    /// A linker set's pointers, as a slice of addresses.
    pub fn set(&self, name: &str) -> (u64, u64) {
        self.sets.get(name).copied().unwrap_or((0, 0))
    }

    /// Whether `addr` lies in this image.
    pub fn contains(&self, addr: u64) -> bool {
        (self.base as u64..self.base as u64 + self.size as u64).contains(&addr)
    }

    /// `function+0xoff` for an address inside the image.
    pub fn symbolize(&self, addr: u64) -> Option<String> {
        if !self.contains(addr) {
            return None;
        }
        let i = self.symbols.partition_point(|s| s.0 <= addr);
        let (start, _, n) = self.symbols.get(i.checked_sub(1)?)?;
        Some(format!("{n}+{:#x}", addr - start))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map_low` with this size and is
        // not used after the image (kldunload) is gone: a stale pointer
        // into it faults, which the harness reports.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

fn is_alloc(s: &object::Section<'_, '_>) -> bool {
    matches!(s.flags(), object::SectionFlags::Elf { sh_flags } if sh_flags & u64::from(elf::SHF_ALLOC) != 0)
}

/// Read-write-execute memory below 2 GiB.
fn map_low(size: usize) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED && (p as u64) + (size as u64) < (1 << 31)).then_some(p.cast())
}
