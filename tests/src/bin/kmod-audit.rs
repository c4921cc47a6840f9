//! `kmod-audit OBJECT [ALLOWED_SYMBOL...]`: audits the kernel module's
//! Rust object (see `ptnet_tests::kmod_audit`); exit status 1 when a rule
//! is broken.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: kmod-audit OBJECT [ALLOWED_UNDEFINED_SYMBOL...]");
        return ExitCode::from(2);
    };
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kmod-audit: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let extra: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let report = ptnet_tests::kmod_audit::audit(&data, &extra);
    print!("{path}: {report}");
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
