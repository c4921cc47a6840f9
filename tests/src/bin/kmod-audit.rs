//! `kmod-audit OBJECT [--symbols LIST]... [ALLOWED_SYMBOL...]`: audits a
//! kernel module or the Rust object in it (see `ptnet_tests::kmod_audit`).
//! Undefined symbols must be the kernel's `memcpy` family, or named on
//! the command line, or in a `--symbols` list (`kmod/kernel-symbols`).
//! Exit status 1 when a rule is broken, 2 for bad arguments.

use ptnet_tests::kmod_audit::{audit, SymbolList};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: kmod-audit OBJECT [--symbols LIST]... [ALLOWED_UNDEFINED_SYMBOL...]");
        return ExitCode::from(2);
    };
    let mut list = SymbolList::default();
    let mut extra = Vec::new();
    while let Some(a) = args.next() {
        if a != "--symbols" {
            extra.push(a);
            continue;
        }
        let Some(file) = args.next() else {
            eprintln!("kmod-audit: --symbols needs a file");
            return ExitCode::from(2);
        };
        match std::fs::read_to_string(&file).map_err(|e| e.to_string()).and_then(|t| SymbolList::parse(&t)) {
            Ok(l) => list.extend(l),
            Err(e) => {
                eprintln!("kmod-audit: {file}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kmod-audit: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut allowed = list.names();
    allowed.extend(extra.iter().map(String::as_str));
    let report = audit(&data, &allowed);
    print!("{path}: {report}");
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
