//! The kernel object audit catches what the kld loader or the kernel
//! cannot take: each rule is shown failing on a small object made for it,
//! next to a clean object that passes.

use object::write::{Object, Relocation, Symbol, SymbolSection};
use object::{
    elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};
use ptnet_tests::kmod_audit::{audit, Report, MAX_FRAME};

/// `push rbp; mov rbp, rsp; call <rel32>; pop rbp; ret`
const CALL: &[u8] = &[0x55, 0x48, 0x89, 0xe5, 0xe8, 0, 0, 0, 0, 0x5d, 0xc3];
/// `movaps xmm0, xmm1; ret`
const SSE: &[u8] = &[0x0f, 0x28, 0xc1, 0xc3];
/// `fld st(1); ret`
const X87: &[u8] = &[0xd9, 0xc1, 0xc3];

struct Builder {
    obj: Object<'static>,
}

impl Builder {
    fn new() -> Self {
        Self { obj: Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little) }
    }

    /// A global function `name` with `code`, and a `.stack_sizes` record
    /// of `frame` bytes unless `None`.
    fn function(&mut self, name: &str, code: &[u8], frame: Option<u64>) -> object::write::SectionId {
        let text = self.obj.add_section(Vec::new(), format!(".text.{name}").into_bytes(), SectionKind::Text);
        let off = self.obj.append_section_data(text, code, 16);
        let sym = self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: off,
            size: code.len() as u64,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
        if let Some(frame) = frame {
            let ss = self.obj.add_section(Vec::new(), b".stack_sizes".to_vec(), SectionKind::Other);
            let mut rec = vec![0u8; 8];
            let mut v = frame;
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                rec.push(if v == 0 { b } else { b | 0x80 });
                if v == 0 {
                    break;
                }
            }
            let at = self.obj.append_section_data(ss, &rec, 1);
            self.reloc(ss, at, sym, 0, elf::R_X86_64_64);
        }
        text
    }

    fn undefined(&mut self, name: &str) -> object::write::SymbolId {
        self.obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        })
    }

    fn reloc(
        &mut self,
        section: object::write::SectionId,
        offset: u64,
        symbol: object::write::SymbolId,
        addend: i64,
        r_type: u32,
    ) {
        let flags = RelocationFlags::Elf { r_type };
        self.obj.add_relocation(section, Relocation { offset, symbol, addend, flags }).unwrap();
    }

    /// A function calling `callee` through a relocation of `r_type`.
    fn caller(&mut self, name: &str, callee: &str, r_type: u32) {
        let target = self.undefined(callee);
        let text = self.function(name, CALL, Some(16));
        self.reloc(text, 5, target, -4, r_type);
    }

    fn audit(self) -> Report {
        audit(&self.obj.write().unwrap(), &[])
    }
}

fn violations_mention(r: &Report, what: &str) -> bool {
    r.violations.iter().any(|v| v.contains(what))
}

#[test]
fn a_clean_object_passes() {
    let mut b = Builder::new();
    b.caller("ptnet_rs_probe", "memcpy", elf::R_X86_64_PLT32);
    b.function("helper", &[0xc3], Some(MAX_FRAME));
    let r = b.audit();
    assert!(r.ok(), "{r}");
    assert_eq!(r.functions, 2);
    assert!(r.undefined.contains("memcpy"));
}

#[test]
fn got_relocations_are_refused() {
    for t in [elf::R_X86_64_GOTPCREL, elf::R_X86_64_REX_GOTPCRELX, elf::R_X86_64_32, elf::R_X86_64_TPOFF32] {
        let mut b = Builder::new();
        b.caller("f", "memset", t);
        let r = b.audit();
        assert!(!r.ok() && violations_mention(&r, "not handled by the amd64 kld loader"), "type {t}: {r}");
    }
}

#[test]
fn fpu_and_simd_instructions_are_refused() {
    for code in [SSE, X87] {
        let mut b = Builder::new();
        b.function("f", code, Some(8));
        let r = b.audit();
        assert!(violations_mention(&r, "FPU/SIMD instruction"), "{r}");
    }
}

#[test]
fn constructors_and_tls_are_refused() {
    for name in [".init_array", ".ctors", ".tdata"] {
        let mut b = Builder::new();
        b.function("f", &[0xc3], Some(8));
        let s = b.obj.add_section(Vec::new(), name.as_bytes().to_vec(), SectionKind::Data);
        b.obj.append_section_data(s, &[0; 8], 8);
        let r = b.audit();
        assert!(violations_mention(&r, name), "{name}: {r}");
    }
}

#[test]
fn foreign_undefined_symbols_are_refused() {
    let mut b = Builder::new();
    b.caller("f", "printf", elf::R_X86_64_PLT32);
    let r = b.audit();
    assert!(violations_mention(&r, "undefined symbol printf"), "{r}");
    // Unless the caller allows it (the shim's API, if it had one).
    let mut b = Builder::new();
    b.caller("f", "printf", elf::R_X86_64_PLT32);
    assert!(audit(&b.obj.write().unwrap(), &["printf"]).ok());
}

#[test]
fn big_or_unmeasured_frames_are_refused() {
    let mut b = Builder::new();
    b.function("big", &[0xc3], Some(MAX_FRAME + 8));
    let r = b.audit();
    assert!(violations_mention(&r, "stack frame of 2056 bytes in big"), "{r}");

    let mut b = Builder::new();
    b.function("unmeasured", &[0xc3], None);
    let r = b.audit();
    assert!(violations_mention(&r, "no stack size recorded for unmeasured"), "{r}");
}

#[test]
fn an_executable_is_not_a_module() {
    let r = audit(b"\x7fELF not really", &[]);
    assert!(!r.ok());
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let r = audit(&exe, &[]);
    assert!(violations_mention(&r, "not ET_REL"), "{r}");
}
