//! The engines stay sans-IO (STYLE §10.2): nothing under src/ike or src/ikev2 names a
//! socket, a clock, libc, OpenSSL outside `crypto/openssl.rs`, or a module of the daemon
//! around it. The shared, pure modules they may use are the timer wheel (`crate::timer`, a
//! data structure that is handed `now`), the configuration data (`crate::conf`) and the
//! debug-class log gate (`crate::log`); src/ikev2 may also use src/ike's shared pieces
//! (`crate::ike::`). Every other file outside src/sys.rs carries `#![forbid(unsafe_code)]`.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments (line comments and doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_engine_names_no_socket_clock_libc_or_daemon_module() {
    check_sans_io(
        "src/ike",
        10,
        &[
            "crate::ike",
            "crate::timer",
            "crate::conf",
            "crate::log",
            "crate::ike_debug",
        ],
    );
}

/// The IKEv2 engine under the same rules; it may use the IKEv1 engine's shared pieces
/// (wire cursor, crypto, timers) through `crate::ike`.
#[test]
fn the_ikev2_engine_names_no_socket_clock_libc_or_daemon_module() {
    check_sans_io(
        "src/ikev2",
        5,
        &[
            "crate::ikev2",
            "crate::ike::",
            "crate::timer",
            "crate::conf",
            "crate::log",
        ],
    );
}

fn check_sans_io(dir: &str, min_files: usize, allowed_crate: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join(dir), &mut files);
    assert!(
        files.len() >= min_files,
        "found the engine's files in {dir}"
    );
    let forbidden = [
        "UdpSocket",
        "TcpStream",
        "std::net::Udp",
        "Instant::now",
        "SystemTime::now",
        "std::time::Instant",
        "libc::",
        "std::fs::",
        "std::process",
        "std::thread",
    ];
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let text = code(&fs::read_to_string(f).unwrap());
        // Unit tests (last in each file) may read fixtures from disk.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for w in forbidden {
                if line.contains(w) {
                    bad.push(format!("{rel}:{}: names {w}", n + 1));
                }
            }
            // Our wrapper is `crypto::openssl` (reached as `self::openssl`, `super::crypto::
            // openssl` or, inside crypto/, `openssl::f`); the crate itself is `::openssl`
            // or `use openssl`.
            let crate_path = line
                .match_indices("::openssl::")
                .any(|(i, _)| !(line[..i].ends_with("crypto") || line[..i].ends_with("self")));
            if !rel.ends_with("crypto/openssl.rs")
                && (crate_path || line.trim_start().starts_with("use openssl"))
            {
                bad.push(format!("{rel}:{}: names the openssl crate", n + 1));
            }
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                let tail = &rest[i..];
                if !allowed_crate.iter().any(|a| tail.starts_with(a)) && !rest[..i].ends_with('$') {
                    bad.push(format!(
                        "{rel}:{}: reaches outside {dir}: {}",
                        n + 1,
                        tail.split(|c: char| !(c.is_alphanumeric() || c == ':' || c == '_'))
                            .next()
                            .unwrap_or(tail)
                    ));
                }
                rest = &rest[i + 7..];
            }
        }
        if !text.contains("forbid(unsafe_code)") && rel == format!("{dir}/mod.rs") {
            bad.push(format!("{rel}: no #![forbid(unsafe_code)]"));
        }
    }
    assert!(
        bad.is_empty(),
        "the engine reaches out:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_sys_rs_holds_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        if rel == "src/sys.rs" || rel == "src/main.rs" || rel == "src/lib.rs" {
            continue;
        }
        let text = code(&fs::read_to_string(f).unwrap());
        let top_level = rel.matches('/').count() == 1 || rel.ends_with("/mod.rs");
        if top_level && !text.contains("#![forbid(unsafe_code)]") && !rel.starts_with("src/ike/") {
            bad.push(format!("{rel}: no #![forbid(unsafe_code)]"));
        }
        if text.contains("unsafe {") || text.contains("unsafe fn") || text.contains("unsafe impl") {
            bad.push(format!("{rel}: unsafe code outside src/sys.rs"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
