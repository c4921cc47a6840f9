//! The audit of the kernel module (`make kmod-audit`): the linked
//! `ptnrs.ko` (the C shim and the Rust archive), and the Rust object alone,
//! must be something FreeBSD's amd64 kld loader can load and the kernel
//! can run.
//!
//! - ELF64 x86-64, relocatable (`ET_REL`, as amd64 modules are);
//! - relocations only of the types `sys/amd64/amd64/elf_machdep.c`
//!   handles: NONE, 64, PC32, PLT32, 32S, GLOB_DAT, JMP_SLOT, RELATIVE,
//!   IRELATIVE (no GOTPCREL of any kind, no 32, no TLS);
//! - no SSE, AVX, MMX or x87 instruction (the kernel does not save the
//!   FPU state for it);
//! - no `.init_array`/`.ctors`/`.fini_array`/`.dtors`, no TLS sections;
//! - undefined symbols only from an allowed list: the kernel's `memcpy`
//!   family for the Rust object, `kmod/kernel-symbols` (each symbol with
//!   the FreeBSD source file that exports it) for the module; the linker
//!   set bounds `__start_set_X`/`__stop_set_X`, which the kld linker
//!   defines for a module's own `set_X` section, only when that section
//!   exists;
//! - no stack frame above a limit, measured from the compiler's
//!   `.stack_sizes` records, and every function must have one (a function
//!   without a record fails the audit rather than being skipped).

use iced_x86::{CpuidFeature, Decoder, DecoderOptions, Instruction, OpKind};
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, RelocationTarget, SymbolKind};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Relocation types the amd64 kld loader applies.
pub const ALLOWED_RELOCATIONS: &[(u32, &str)] = &[
    (elf::R_X86_64_NONE, "NONE"),
    (elf::R_X86_64_64, "64"),
    (elf::R_X86_64_PC32, "PC32"),
    (elf::R_X86_64_PLT32, "PLT32"),
    (elf::R_X86_64_32S, "32S"),
    (elf::R_X86_64_GLOB_DAT, "GLOB_DAT"),
    (elf::R_X86_64_JUMP_SLOT, "JMP_SLOT"),
    (elf::R_X86_64_RELATIVE, "RELATIVE"),
    (elf::R_X86_64_IRELATIVE, "IRELATIVE"),
];

/// The kernel functions the Rust object may call.
pub const KERNEL_SYMBOLS: &[&str] = &["memcpy", "memmove", "memset", "memcmp", "bcmp"];

/// Largest stack frame allowed (FreeBSD amd64 kernel stacks are 16 KiB).
pub const MAX_FRAME: u64 = 2048;

/// What the audit found.
#[derive(Debug, Default)]
pub struct Report {
    /// Size of the object file.
    pub file_bytes: usize,
    /// Bytes of executable code.
    pub text_bytes: u64,
    /// Functions defined.
    pub functions: usize,
    /// Relocations by type name.
    pub relocations: BTreeMap<String, usize>,
    /// Undefined symbols.
    pub undefined: BTreeSet<String>,
    /// The largest stack frames: (bytes, function), largest first.
    pub largest_frames: Vec<(u64, String)>,
    /// Instructions decoded.
    pub instructions: usize,
    /// Every rule broken, one line each.
    pub violations: Vec<String>,
}

impl Report {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "object: {} bytes, {} bytes of code, {} functions, {} instructions",
            self.file_bytes, self.text_bytes, self.functions, self.instructions
        )?;
        let relocs: Vec<String> = self.relocations.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        writeln!(f, "relocations: {}", relocs.join(", "))?;
        let undef: Vec<&str> = self.undefined.iter().map(String::as_str).collect();
        writeln!(f, "undefined symbols: {}", if undef.is_empty() { "none".into() } else { undef.join(", ") })?;
        for (size, name) in self.largest_frames.iter().take(3) {
            writeln!(f, "stack frame: {size} bytes in {name}")?;
        }
        if self.ok() {
            writeln!(f, "audit passed")
        } else {
            for v in &self.violations {
                writeln!(f, "VIOLATION: {v}")?;
            }
            writeln!(f, "audit FAILED ({} violations)", self.violations.len())
        }
    }
}

/// The kernel symbols a module may use: `kmod/kernel-symbols` and its
/// like, one symbol a line, then the FreeBSD source file that exports it,
/// then a note (`#` starts a comment line).
#[derive(Debug, Default, Clone)]
pub struct SymbolList {
    /// Symbol to (source file, note).
    pub entries: BTreeMap<String, (String, String)>,
}

impl SymbolList {
    /// Parses a list; every entry must name its source file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(sym), Some(file)) = (words.next(), words.next()) else {
                return Err(format!("line {}: `{line}` names no source file", n + 1));
            };
            let note = words.collect::<Vec<_>>().join(" ");
            if entries.insert(sym.to_string(), (file.to_string(), note)).is_some() {
                return Err(format!("line {}: {sym} listed twice", n + 1));
            }
        }
        Ok(Self { entries })
    }

    /// Adds another list's entries (a build's own list on top of the common one).
    pub fn extend(&mut self, other: SymbolList) {
        self.entries.extend(other.entries);
    }

    /// The names, as the audit takes them.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }
}

/// Audits the object in `data`, allowing `extra_undefined` besides the
/// kernel's `memcpy` family.
pub fn audit(data: &[u8], extra_undefined: &[&str]) -> Report {
    let mut r = Report { file_bytes: data.len(), ..Report::default() };
    let file = match ElfFile64::<Endianness>::parse(data) {
        Ok(f) => f,
        Err(e) => {
            r.violations.push(format!("not an ELF64 object: {e}"));
            return r;
        }
    };
    let hdr = file.elf_header();
    let e = file.endian();
    if hdr.e_type(e) != elf::ET_REL {
        r.violations.push(format!("ELF type {} is not ET_REL (a relocatable object)", hdr.e_type(e)));
    }
    if hdr.e_machine(e) != elf::EM_X86_64 {
        r.violations.push(format!("machine {} is not x86-64", hdr.e_machine(e)));
    }
    check_sections(&file, &mut r);
    check_relocations(&file, &mut r);
    check_symbols(&file, extra_undefined, &mut r);
    check_instructions(&file, &mut r);
    check_frames(&file, &mut r);
    r
}

fn check_sections(file: &ElfFile64<'_, Endianness>, r: &mut Report) {
    const FORBIDDEN: &[&str] = &[".init_array", ".fini_array", ".preinit_array", ".ctors", ".dtors", ".tdata", ".tbss"];
    let e = file.endian();
    for s in file.sections() {
        let name = s.name().unwrap_or("?");
        let flags = s.elf_section_header().sh_flags(e);
        if FORBIDDEN.iter().any(|f| name == *f || name.starts_with(&format!("{f}."))) {
            r.violations.push(format!("section {name} (constructors or TLS are not run by the kld loader)"));
        } else if flags & u64::from(elf::SHF_TLS) != 0 {
            r.violations.push(format!("section {name} is thread-local"));
        }
        if flags & u64::from(elf::SHF_EXECINSTR) != 0 {
            r.text_bytes += s.size();
        }
    }
}

fn check_relocations(file: &ElfFile64<'_, Endianness>, r: &mut Report) {
    let e = file.endian();
    // Only sections the loader loads are relocated (debug sections are
    // not, and use 32-bit DWARF offsets).
    let loaded = |s: &object::read::elf::ElfSection64<'_, '_, Endianness>| {
        s.elf_section_header().sh_flags(e) & u64::from(elf::SHF_ALLOC) != 0
    };
    for s in file.sections().filter(loaded) {
        for (_, rel) in s.relocations() {
            let object::RelocationFlags::Elf { r_type } = rel.flags() else { continue };
            let name = ALLOWED_RELOCATIONS.iter().find(|(t, _)| *t == r_type).map(|(_, n)| n.to_string());
            match name {
                Some(n) => *r.relocations.entry(n).or_default() += 1,
                None => {
                    let key = format!("type {r_type}");
                    let n = r.relocations.entry(key.clone()).or_default();
                    if *n == 0 {
                        r.violations.push(format!(
                            "relocation {key} ({}) in {} is not handled by the amd64 kld loader",
                            relocation_name(r_type),
                            s.name().unwrap_or("?")
                        ));
                    }
                    *n += 1;
                }
            }
        }
    }
}

fn relocation_name(t: u32) -> &'static str {
    match t {
        elf::R_X86_64_32 => "R_X86_64_32",
        elf::R_X86_64_GOTPCREL => "R_X86_64_GOTPCREL",
        elf::R_X86_64_GOTPCRELX => "R_X86_64_GOTPCRELX",
        elf::R_X86_64_REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX",
        elf::R_X86_64_GOT32 => "R_X86_64_GOT32",
        elf::R_X86_64_GOTPC32 => "R_X86_64_GOTPC32",
        elf::R_X86_64_TPOFF32 | elf::R_X86_64_TPOFF64 | elf::R_X86_64_DTPOFF32 | elf::R_X86_64_DTPOFF64 => "TLS",
        elf::R_X86_64_TLSGD | elf::R_X86_64_TLSLD | elf::R_X86_64_GOTTPOFF => "TLS",
        _ => "unknown",
    }
}

fn check_symbols(file: &ElfFile64<'_, Endianness>, extra: &[&str], r: &mut Report) {
    let sections: BTreeSet<&str> = file.sections().filter_map(|s| s.name().ok()).collect();
    // The kld linker resolves a symbol when a relocation of a loaded
    // section needs it; a declaration nothing uses (sys/pcpu.h's
    // __GLOBL(__start_set_pcpu) in every kernel unit) is never looked up.
    let e = file.endian();
    let used: BTreeSet<usize> = file
        .sections()
        .filter(|s| s.elf_section_header().sh_flags(e) & u64::from(elf::SHF_ALLOC) != 0)
        .flat_map(|s| s.relocations().collect::<Vec<_>>())
        .filter_map(|(_, rel)| match rel.target() {
            RelocationTarget::Symbol(i) => Some(i.0),
            _ => None,
        })
        .collect();
    for sym in file.symbols() {
        if sym.is_undefined() && sym.index().0 != 0 {
            let name = sym.name().unwrap_or("?").to_string();
            if name.is_empty() || !used.contains(&sym.index().0) {
                continue;
            }
            let set = name.strip_prefix("__start_").or_else(|| name.strip_prefix("__stop_"));
            let allowed = match set {
                // The kld linker bounds a linker set of the module itself.
                Some(set) if set.starts_with("set_") => sections.contains(set),
                _ => KERNEL_SYMBOLS.contains(&name.as_str()) || extra.contains(&name.as_str()),
            };
            if !allowed {
                let why = match set {
                    Some(set) => format!("no section {set} in the module for the kld linker to bound"),
                    None => {
                        "not on the list of kernel symbols: find the FreeBSD source file that exports it and list it"
                            .to_string()
                    }
                };
                r.violations.push(format!("undefined symbol {name}: {why}"));
            }
            r.undefined.insert(name);
        } else if sym.kind() == SymbolKind::Tls {
            r.violations.push(format!("thread-local symbol {}", sym.name().unwrap_or("?")));
        }
        if sym.kind() == SymbolKind::Text && sym.is_definition() {
            r.functions += 1;
        }
    }
}

/// An instruction that touches FPU, MMX, SSE or AVX state.
fn fpu_instruction(i: &Instruction) -> Option<String> {
    let uses_vector_reg = (0..i.op_count()).any(|n| {
        i.op_kind(n) == OpKind::Register && {
            let reg = i.op_register(n);
            reg.is_xmm() || reg.is_ymm() || reg.is_zmm() || reg.is_mm() || reg.is_st() || reg.is_k()
        }
    });
    let fpu_feature = i.cpuid_features().iter().any(|f| {
        matches!(
            f,
            CpuidFeature::FPU
                | CpuidFeature::FPU287
                | CpuidFeature::FPU387
                | CpuidFeature::MMX
                | CpuidFeature::SSE
                | CpuidFeature::SSE2
                | CpuidFeature::SSE3
                | CpuidFeature::SSSE3
                | CpuidFeature::SSE4_1
                | CpuidFeature::SSE4_2
                | CpuidFeature::SSE4A
                | CpuidFeature::AVX
                | CpuidFeature::AVX2
                | CpuidFeature::AVX512F
                | CpuidFeature::FMA
                | CpuidFeature::F16C
        )
    });
    (uses_vector_reg || fpu_feature).then(|| format!("{i}"))
}

fn check_instructions(file: &ElfFile64<'_, Endianness>, r: &mut Report) {
    let e = file.endian();
    for s in file.sections() {
        if s.elf_section_header().sh_flags(e) & u64::from(elf::SHF_EXECINSTR) == 0 {
            continue;
        }
        let Ok(code) = s.data() else { continue };
        let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
        let mut i = Instruction::default();
        let mut found = 0;
        while d.can_decode() {
            d.decode_out(&mut i);
            r.instructions += 1;
            if i.is_invalid() {
                continue;
            }
            if let Some(text) = fpu_instruction(&i) {
                found += 1;
                if found <= 3 {
                    r.violations.push(format!(
                        "FPU/SIMD instruction `{text}` at {}+{:#x}",
                        s.name().unwrap_or("?"),
                        i.ip()
                    ));
                }
            }
        }
    }
}

fn read_uleb(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The function each `.stack_sizes` entry names: its address field is
/// relocated against the function's symbol, or its section's symbol plus
/// the function's offset.
fn check_frames(file: &ElfFile64<'_, Endianness>, r: &mut Report) {
    let funcs: BTreeMap<(usize, u64), String> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .filter_map(|s| Some(((s.section_index()?.0, s.address()), s.name().ok()?.to_string())))
        .collect();
    let mut sized: BTreeMap<String, u64> = BTreeMap::new();
    for s in file.sections().filter(|s| s.name() == Ok(".stack_sizes")) {
        let Ok(data) = s.data() else { continue };
        let relocs: BTreeMap<u64, (RelocationTarget, i64)> =
            s.relocations().map(|(off, rel)| (off, (rel.target(), rel.addend()))).collect();
        let mut at = 0usize;
        while at + 8 <= data.len() {
            let entry = at as u64;
            at += 8;
            let Some(size) = read_uleb(data, &mut at) else {
                r.violations.push("truncated .stack_sizes record".into());
                break;
            };
            let func = match relocs.get(&entry) {
                Some((RelocationTarget::Symbol(idx), addend)) => file.symbol_by_index(*idx).ok().and_then(|sym| {
                    if sym.kind() == SymbolKind::Section {
                        funcs.get(&(sym.section_index()?.0, *addend as u64)).cloned()
                    } else {
                        sym.name().ok().map(str::to_string)
                    }
                }),
                _ => None,
            };
            match func {
                Some(name) => {
                    let e = sized.entry(name).or_default();
                    *e = (*e).max(size);
                }
                None => r.violations.push(format!(".stack_sizes record at {entry:#x} names no function")),
            }
        }
    }
    for name in funcs.values() {
        if !sized.contains_key(name) {
            r.violations.push(format!(
                "no stack size recorded for {name} (build Rust with -Z emit-stack-sizes, C with -fstack-size-section)"
            ));
        }
    }
    let mut frames: Vec<(u64, String)> = sized.into_iter().map(|(n, s)| (s, n)).collect();
    frames.sort_by(|a, b| b.cmp(a));
    for (size, name) in frames.iter().filter(|(s, _)| *s > MAX_FRAME) {
        r.violations.push(format!("stack frame of {size} bytes in {name} (limit {MAX_FRAME})"));
    }
    r.largest_frames = frames;
}
