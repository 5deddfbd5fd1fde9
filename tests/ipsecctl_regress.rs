//! OpenBSD's regress/sbin/ipsecctl pairs, run as its Makefile runs them: the word DIR in
//! `ikeN.in` replaced by the test directory, the result fed to `ipsecctl -nvf -`
//! (`ikedelN.in` to `ipsecctl -dnvf -`), and standard output compared byte for byte with
//! `ikeN.ok`. The binary is started both with `--ipsecctl` and through a symbolic link
//! named ipsecctl. Also: garbled inputs must never make it panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_isakmpd");

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ipsecctl")
}

/// Runs the binary as ipsecctl with `args`, `input` on stdin: (status, stdout, stderr).
fn run(argv0: Option<&Path>, args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
    let mut cmd = match argv0 {
        Some(link) => Command::new(link),
        None => {
            let mut c = Command::new(BIN);
            c.arg("--ipsecctl");
            c
        }
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ipsecctl");
    if let Some(mut si) = child.stdin.take() {
        let _ = si.write_all(input);
    }
    let out = child.wait_with_output().expect("wait ipsecctl");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pairs present, as (name, input with DIR replaced, expected output).
fn pairs() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let dir = data_dir();
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).expect("tests/data/ipsecctl") {
        let p = e.expect("dir entry").path();
        if p.extension().and_then(|x| x.to_str()) != Some("in") {
            continue;
        }
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let input = std::fs::read_to_string(&p).expect("read .in");
        let input = input.replace("DIR", dir.to_str().expect("utf-8 path"));
        let ok = std::fs::read(p.with_extension("ok")).expect("read .ok");
        v.push((name, input.into_bytes(), ok));
    }
    v.sort();
    v
}

fn excerpt(got: &[u8], want: &[u8]) -> String {
    let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    for (i, (a, b)) in g.lines().zip(w.lines()).enumerate() {
        if a != b {
            return format!("line {}:\n  got:  {a}\n  want: {b}", i + 1);
        }
    }
    format!(
        "lengths differ: got {} lines, want {}",
        g.lines().count(),
        w.lines().count()
    )
}

fn check_all(argv0: Option<&Path>) {
    let pairs = pairs();
    assert!(pairs.len() >= 30, "only {} pairs", pairs.len());
    let mut bad = Vec::new();
    for (name, input, ok) in &pairs {
        let flags = if name.starts_with("ikedel") {
            "-dnvf"
        } else {
            "-nvf"
        };
        let (st, out, err) = run(argv0, &[flags, "-"], input);
        if &out != ok || st != 0 {
            bad.push(format!(
                "{name} (status {st}): {}\n  stderr: {err}",
                excerpt(&out, ok)
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} pairs differ:\n{}",
        bad.len(),
        pairs.len(),
        bad.join("\n")
    );
}

#[test]
fn every_regress_pair_matches_byte_for_byte() {
    check_all(None);
}

#[test]
fn every_regress_pair_matches_under_the_name_ipsecctl() {
    let dir = std::env::temp_dir().join(format!("ipsecctl-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let link = dir.join("ipsecctl");
    std::os::unix::fs::symlink(BIN, &link).expect("symlink");
    check_all(Some(&link));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_name_the_line_and_exit_1() {
    let (st, out, err) = run(
        None,
        &["-nvf", "-"],
        b"ike from 1.1.1.1 to 2.2.2.2\nike frm x\n",
    );
    assert_eq!(st, 1);
    assert!(err.contains("stdin: 2: syntax error"), "{err}");
    assert!(
        err.contains("Syntax error in config file: ipsec rules not loaded"),
        "{err}"
    );
    // The first rule was printed as it was read, as ipsecctl does.
    assert!(String::from_utf8_lossy(&out)
        .contains("C add [Phase 2]:Connections=from-1.1.1.1-to-2.2.2.2"));
    let (st, _, err) = run(
        None,
        &["-nf", "-"],
        b"flow esp from 1.1.1.1 to 2.2.2.2 peer 3.3.3.3\n",
    );
    assert_eq!(st, 1);
    assert!(
        err.contains("stdin: 1: flow rules are not supported"),
        "{err}"
    );
    let (st, _, err) = run(None, &["-x"], b"");
    assert_eq!(st, 1);
    assert!(err.contains("usage: ipsecctl"), "{err}");
}

#[test]
fn macros_from_the_command_line_win() {
    let conf = b"P = \"9.9.9.9\"\nike from 1.1.1.1 to 2.2.2.2 peer $P psk $K\n";
    let (st, out, err) = run(None, &["-D", "P=5.5.5.5", "-DK=secret", "-nvf", "-"], conf);
    assert_eq!(st, 0, "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("P = \"9.9.9.9\"\n"), "{out}");
    assert!(
        out.contains("C set [Phase 1]:5.5.5.5=peer-5.5.5.5 force"),
        "{out}"
    );
    assert!(
        out.contains("C set [peer-5.5.5.5]:Authentication=secret force"),
        "{out}"
    );
}

#[test]
fn include_and_secrecy() {
    let dir = std::env::temp_dir().join(format!("ipsecctl-inc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let inc = dir.join("inc.conf");
    std::fs::write(&inc, "ike from 1.1.1.1 to 2.2.2.2\n").expect("write");
    let top = dir.join("ipsec.conf");
    std::fs::write(
        &top,
        format!(
            "include \"{}\"\nike from 1.1.1.1 to 3.3.3.3\n",
            inc.display()
        ),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (st, out, err) = run(None, &["-nvf", top.to_str().unwrap_or_default()], b"");
    assert_eq!(st, 0, "{err}");
    let out = String::from_utf8_lossy(&out);
    let a = out.find("to-2.2.2.2 force").unwrap_or(usize::MAX);
    let b = out.find("to-3.3.3.3 force").unwrap_or(0);
    assert!(a < b, "{out}");
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (st, _, err) = run(None, &["-nvf", top.to_str().unwrap_or_default()], b"");
    assert_eq!(st, 1);
    assert!(
        err.contains("group writable or world read/writable"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_stream_goes_to_the_fifo_given_with_i() {
    let dir = std::env::temp_dir().join(format!("ipsecctl-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let fifo = dir.join("isakmpd.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).expect("read fifo"))
    };
    let (st, out, err) = run(
        None,
        &["-i", fifo.to_str().unwrap_or_default(), "-f", "-"],
        b"ike passive from 1.1.1.1 to 2.2.2.2\n",
    );
    assert_eq!(st, 0, "{err}");
    assert!(out.is_empty());
    let got = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    assert!(
        got.starts_with("C set [Phase 1]:2.2.2.2=peer-2.2.2.2 force\n"),
        "{got}"
    );
    assert!(
        got.ends_with("C add [Phase 2]:Passive-Connections=from-1.1.1.1-to-2.2.2.2\n"),
        "{got}"
    );
    // Not a FIFO: refused.
    let plain = dir.join("plain");
    std::fs::write(&plain, "").expect("write");
    let (st, _, err) = run(
        None,
        &["-i", plain.to_str().unwrap_or_default(), "-f", "-"],
        b"ike from 1.1.1.1 to 2.2.2.2\n",
    );
    assert_eq!(st, 1);
    assert!(err.contains("not a fifo"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Truncated and byte-flipped versions of every input, parsed in-process (without the
/// resolver, so that garbled names cost nothing): whatever the result, no panic. A few go
/// through the binary too, where a panic would be status 101.
#[test]
fn garbled_inputs_do_not_panic() {
    let pairs = pairs();
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let specials: &[u8] = b"{}()/,=\"'\\$#\n\t -:0123456789";
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for (_, input, _) in &pairs {
        for cut in 0..input.len() {
            inputs.push(input[..cut].to_vec());
        }
        for _ in 0..20 {
            let mut g = input.clone();
            for _ in 0..4 {
                if g.is_empty() {
                    break;
                }
                let i = (rnd() as usize) % g.len();
                g[i] = match rnd() % 3 {
                    0 => specials[(rnd() as usize) % specials.len()],
                    1 => (rnd() & 0xff) as u8,
                    _ => b' ',
                };
            }
            inputs.push(g);
        }
    }
    let odd: &[&[u8]] = &[
        b"A=\"$A $A\"\nike from $A to $A\n",
        b"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\n",
        b"ike from { { { 1.1.1.1 } } } to any peer any local\n",
        b"ike from 1.1.1.1/999 to 2.2.2.2\n",
        b"ike from \"1.1.1.1/x\" to 2.2.2.2 main lifetime \"9q\"\n",
        b"ike interface sec99999999999 peer 1.1.1.1\n",
        b"ike esp from 1.1.1.1 to 2.2.2.2 quick enc chacha group none\n",
        b"ike ah from 1.1.1.1 to 2.2.2.2 quick enc aes\n",
        b"ike ipcomp from 1.1.1.1 to 2.2.2.2\n",
        b"\"unterminated",
        b"-99999999999999999999999999 x\n",
        b"include \"/nonexistent\"\nike from 1.1.1.1 to 2.2.2.2\n",
    ];
    inputs.extend(odd.iter().map(|b| b.to_vec()));
    let host: std::rc::Rc<dyn Fn() -> String> = std::rc::Rc::new(|| "h".to_string());
    for input in &inputs {
        for delete in [false, true] {
            let opts = isakmpd::ipsecctl::Opts {
                delete,
                noaction: true,
                verbose: 2,
                no_dns: true,
                ..Default::default()
            };
            let _ =
                isakmpd::ipsecctl::parse_rules("stdin", Some(input.clone()), &opts, host.clone());
        }
    }
    for input in odd {
        let (st, _, err) = run(None, &["-nvvf", "-"], input);
        assert!(
            st == 0 || st == 1,
            "{:?}: status {st}\n{err}",
            String::from_utf8_lossy(input)
        );
    }
}
