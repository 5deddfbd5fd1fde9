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
    // A tcpmd5 rule parses (-n), but is not loaded (a socket option on Linux): refused
    // before the kernel is touched (tests/ipsecctl_kernel.rs loads flows and SAs).
    let (st, _, err) = run(
        None,
        &["-f", "-"],
        b"tcpmd5 from 1.1.1.1 to 2.2.2.2 spi 0x1000 authkey 0xabcd\n",
    );
    assert_eq!(st, 1);
    assert!(err.contains("stdin: 1: tcpmd5 SAs"), "{err}");
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
    // -s asks the daemon behind the FIFO; with nobody reading it, that fails at once.
    let (st, out, err) = run(
        None,
        &["-i", fifo.to_str().unwrap_or_default(), "-s", "sa"],
        b"",
    );
    assert_eq!(st, 1);
    assert!(out.is_empty());
    assert!(err.contains("is isakmpd running?"), "{err}");
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
    // Kernel rules too: flows, SAs with keys and bundles, tcpmd5.
    let kernel: &[u8] = b"flow esp out proto tcp from { 192.0.2.1 2001:db8::1 } port 22 to any \
peer 192.0.2.9 local 192.0.2.1 srcid a dstid b type require
esp transport from 192.0.2.1 to 192.0.2.2 spi 0x1000:0x1001 udpencap port 4500 enc aes \
auth hmac-sha1 authkey 0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:0xab \
enckey 0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee bundle x
ipcomp from 192.0.2.1 to 192.0.2.2 spi 4096 comp deflate bundle x
tcpmd5 from 192.0.2.1 to 192.0.2.2 spi 0x2000:0x2001 authkey 0xzz:0x
ah from 192.0.2.1 to 192.0.2.2 spi 0xffffffff:0x100000000 authkey file \"/nonexistent:/\"
";
    let mut bases: Vec<Vec<u8>> = pairs.iter().map(|p| p.1.clone()).collect();
    bases.push(kernel.to_vec());
    for input in &bases {
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

/// `flow`, `sa` and `tcpmd5` rules (parse.y flowrule/sarule/tcpmd5rule), printed as
/// ipsecctl.c's ipsecctl_print_flow/print_sa/print_sabundle do. Our own inputs; the
/// expected text follows the C: a flow without direction is added with its reverse, the
/// peer defaults to a host destination, deny/bypass flows carry neither peer nor ids,
/// ipcomp/ipip flows are `use`, SAs get their defaults (esp: aes + hmac-sha2-256, ah:
/// hmac-sha2-256, ipcomp: deflate), an `spi out:in` adds the reverse SA, keys only with
/// -k, and SAs of one bundle between the same hosts are grouped.
#[test]
fn flow_sa_and_tcpmd5_rules_print_as_ipsecctl() {
    let flows = b"\
flow esp from 192.0.2.1 to 198.51.100.7 srcid a.example dstid b@example.org
flow ah out proto tcp from 192.0.2.0/24 port ssh to 203.0.113.0/24 port 8080 local 192.0.2.1 peer 203.0.113.1 type acquire
flow in from any to 192.0.2.0/24 type deny
flow ipip from 2001:db8::1 to 2001:db8:1::/48 peer any srcid x.example
";
    let want = "\
flow esp out from 192.0.2.1 to 198.51.100.7 peer 198.51.100.7 srcid a.example dstid b@example.org type require
flow esp in from 198.51.100.7 to 192.0.2.1 peer 198.51.100.7 srcid a.example dstid b@example.org type require
flow ah out proto tcp from 192.0.2.0/24 port ssh to 203.0.113.0/24 port 8080 local 192.0.2.1 peer 203.0.113.1 type acquire
flow esp in from 0.0.0.0/0 to 192.0.2.0/24 type deny
flow ipip out from 2001:db8::1 to 2001:db8:1::/48 srcid x.example type use
flow ipip in from 2001:db8:1::/48 to 2001:db8::1 srcid x.example type use
";
    let (st, out, err) = run(None, &["-nvf", "-"], flows);
    assert_eq!(st, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), want);

    let a32 = "11".repeat(32);
    let e16 = "22".repeat(16);
    let sas = format!(
        "esp transport from 192.0.2.1 to 192.0.2.2 spi 0x1000:0x1001 authkey 0x{a32}:0x{a32} enckey 0x{e16}:0x{e16} bundle b1
ah from 192.0.2.1 to 192.0.2.2 spi 4097 auth hmac-sha1 authkey 0x{s} bundle b1
ipcomp transport from 192.0.2.1 to 192.0.2.2 spi 0x2000:0x2001
ipip from 2001:db8::1 to 2001:db8::2 spi 0x0badcafe
tcpmd5 from 192.0.2.1 to 192.0.2.9 spi 0x3000:0x3001 authkey 0xc0ffee:0xbeef
",
        s = "33".repeat(20)
    );
    let want_keys = format!(
        "esp transport from 192.0.2.1 to 192.0.2.2 spi 0x00001000 auth hmac-sha2-256 enc aes \\
\tauthkey 0x{a32} \\
\tenckey 0x{e16}
esp transport from 192.0.2.2 to 192.0.2.1 spi 0x00001001 auth hmac-sha2-256 enc aes \\
\tauthkey 0x{a32} \\
\tenckey 0x{e16}
ah tunnel from 192.0.2.1 to 192.0.2.2 spi 0x00001001 auth hmac-sha1 \\
\tauthkey 0x{s}
[bundle esp to 192.0.2.2 spi 0x00001000 with ah to 192.0.2.2 spi 0x00001001]
ipcomp transport from 192.0.2.1 to 192.0.2.2 spi 0x00002000 comp deflate
ipcomp transport from 192.0.2.2 to 192.0.2.1 spi 0x00002001 comp deflate
ipip from 2001:db8::1 to 2001:db8::2 spi 0x0badcafe
tcpmd5 from 192.0.2.1 to 192.0.2.9 spi 0x00003000 authkey 0xc0ffee
tcpmd5 from 192.0.2.9 to 192.0.2.1 spi 0x00003001 authkey 0xbeef
",
        s = "33".repeat(20)
    );
    let (st, out, err) = run(None, &["-nkvf", "-"], sas.as_bytes());
    assert_eq!(st, 0, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), want_keys);
    // Without -k the keys stay out; -vv numbers every rule, bundles too.
    let (st, out, _) = run(None, &["-nvvf", "-"], sas.as_bytes());
    assert_eq!(st, 0);
    let out = String::from_utf8_lossy(&out);
    assert!(!out.contains("authkey") && !out.contains("enckey"), "{out}");
    assert!(
        out.starts_with(
            "@0 esp transport from 192.0.2.1 to 192.0.2.2 spi 0x00001000 auth hmac-sha2-256 enc aes\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "\n@3 [bundle esp to 192.0.2.2 spi 0x00001000 with ah to 192.0.2.2 spi 0x00001001]\n"
        ),
        "{out}"
    );
}

/// validate_sa's and create_flow's refusals, each on its line, the parse going on with
/// the next line; messages come before the rules when stdout is a pipe (stdio buffers
/// it), as in the ipsecfail/safail regress files. Without -n such rules are not loaded.
#[test]
fn flow_and_sa_errors_name_their_line() {
    let conf = format!(
        "esp from 192.0.2.1 to 192.0.2.2 spi 0x1000 enc aes-128-gcm enckey 0x{k}
ah from 192.0.2.1 to 192.0.2.2 spi 0x1000 authkey 0x{k}
esp from 192.0.2.1 to 192.0.2.2 spi 0x1000 enc aes authkey 0x{a} enckey 0x{k}{k}
ipcomp from 192.0.2.1 to 192.0.2.2 spi 0x1000 auth hmac-sha1
esp from 192.0.2.1 to 192.0.2.2 spi 0x10 authkey 0x{a} enckey 0x{k}
flow from 192.0.2.1 to 198.51.100.0/24
flow from 192.0.2.1 port 53 to 198.51.100.1
flow from 192.0.2.1 to 198.51.100.1
",
        k = "ab".repeat(20),
        a = "cd".repeat(32)
    );
    let mut cmd = Command::new(BIN);
    let child = cmd
        .args(["--ipsecctl", "-nvf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // 2>&1 into one pipe, as the regress Makefile does.
    let (r, w) = std::io::pipe().expect("pipe");
    child.stdout(w.try_clone().expect("dup")).stderr(w);
    let mut p = child.spawn().expect("spawn");
    drop(cmd);
    if let Some(mut si) = p.stdin.take() {
        si.write_all(conf.as_bytes()).expect("stdin");
    }
    let mut text = String::new();
    use std::io::Read;
    let mut r = r;
    r.read_to_string(&mut text).expect("read");
    let st = p.wait().expect("wait");
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        text,
        "stdin: 1: aes-128-gcm is disallowed with static keys
stdin: 2: wrong authentication key length, needs to be 256 bits
stdin: 3: encryption key too long (320 bits), maximum 256 bits
stdin: 4: no encryption or authentication with ipcomp
stdin: 5: 16 within reserved spi range
stdin: 6: no peer specified for destination 198.51.100.0/24
stdin: 7: no protocol supplied with source/destination ports
ipsecctl: Syntax error in config file: ipsec rules not loaded
flow esp out from 192.0.2.1 to 198.51.100.1 peer 198.51.100.1 type require
flow esp in from 198.51.100.1 to 192.0.2.1 peer 198.51.100.1 type require
"
    );
    // Good rules, but an SA bundle has no XFRM form: refused with its line before
    // anything (the ike rule's stream included) is loaded.
    let (st, out, err) = run(
        None,
        &["-f", "-"],
        b"ike passive from 192.0.2.1 to 192.0.2.2\n\n\
ipip from 192.0.2.1 to 192.0.2.2 spi 0x1000 bundle b\n",
    );
    assert_eq!(st, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("stdin: 3: ipip SAs are not loaded here"),
        "{err}"
    );
    assert!(err.contains("nothing loaded"), "{err}");
}
