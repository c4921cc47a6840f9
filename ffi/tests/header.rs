//! `kmod/ptnet_rs.h` is what cbindgen makes of `ffi/src`: the C shim and
//! the Rust archive cannot drift apart silently. `make kmod-header`
//! rewrites it (`PTNET_UPDATE_HEADER=1`).

use std::path::PathBuf;

#[test]
fn header_matches_the_rust_declarations() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cfg = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new().with_crate(&dir).with_config(cfg).generate().expect("cbindgen");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("../kmod/ptnet_rs.h");
    if std::env::var_os("PTNET_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write kmod/ptnet_rs.h");
        return;
    }
    let text = String::from_utf8_lossy(&generated);
    for name in text.lines().filter_map(|l| l.strip_prefix("struct ")) {
        let name = name.trim_end_matches([' ', '{', ';']);
        let snake = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(
            snake && (name.starts_with("ptnet_") || name == "mbuf"),
            "struct {name}: every type of the header is ptnet_rs_<snake_case> (add it to cbindgen.toml's [export.rename])"
        );
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    if committed != generated {
        let (c, g) = (String::from_utf8_lossy(&committed), String::from_utf8_lossy(&generated));
        let first =
            c.lines().zip(g.lines()).position(|(a, b)| a != b).unwrap_or(c.lines().count().min(g.lines().count()));
        panic!(
            "kmod/ptnet_rs.h does not match ffi/src (first difference at line {}):\n  header: {:?}\n  rust:   {:?}\nrun `make kmod-header` and update the shim",
            first + 1,
            c.lines().nth(first).unwrap_or("<end>"),
            g.lines().nth(first).unwrap_or("<end>")
        );
    }
}
