//! Two `isakmpd` processes negotiate through their real UDP sockets: each in its own
//! network namespace (192.0.2.1 and 192.0.2.2 on a veth pair), configured only by
//! isakmpd.conf files, driven through the FIFO, with privilege separation on and `-n`.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{start_in, Daemon, Link};

fn conf(me: &str, peer: &str, lnet: &str, rnet: &str, connections: &str) -> String {
    format!(
        "[General]\nRetransmits=3\nExchange-max-time=30\nCheck-interval=5\n\
[Phase 1]\n{peer}=ISAKMP-peer\n\
[Phase 2]\n{connections}=IPsec-tunnel\n\
[ISAKMP-peer]\nPhase=1\nAddress={peer}\nLocal-address={me}\nConfiguration=mm\nAuthentication=two-daemon-test-key\n\
[mm]\nDOI=IPSEC\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-256-SHA2-256-GRP14\n\
[IPsec-tunnel]\nPhase=2\nISAKMP-peer=ISAKMP-peer\nConfiguration=qm\nLocal-ID=lnet\nRemote-ID=rnet\n\
[qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE\n\
[lnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={lnet}\nNetmask=255.255.255.0\n\
[rnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={rnet}\nNetmask=255.255.255.0\n"
    )
}

/// `S` through the FIFO; the result file's text.
fn sas(d: &Daemon) -> String {
    let res = d.run_file("isakmpd.result");
    let _ = fs::remove_file(&res);
    d.fifo_sync("S\n");
    fs::read_to_string(res).unwrap_or_default()
}

fn wait_until(d: &Daemon, what: &str, mut f: impl FnMut(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let s = sas(d);
        if f(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}; last S:\n{s}\n--- log ---\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn field<'a>(s: &'a str, name: &str) -> Vec<&'a str> {
    s.lines()
        .filter_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .collect()
}

/// What isakmpd's result file has, line by line, for each SA (sa.c `sa_dump_all`, and
/// what the C daemon wrote for the same tunnel: ../shared/reference/cisakmpd-outputs/
/// *.S.C.norm), by the label each line starts with.
const PHASE1_LINES: &[&str] = &[
    "SA name: ",
    "src: ",
    "Lifetime: ",
    "Soft timeout in ",
    "Hard timeout in ",
    "Flags 0x",
    "icookie ",
];
const PHASE2_LINES: &[&str] = &[
    "SA name: ",
    "src: ",
    "Lifetime: ",
    "Flags 0x",
    "SPI 0: ",
    "SPI 1: ",
    "Transform: IPsec ESP",
    "Encryption key length: ",
    "Authentication key length: ",
    "Encryption algorithm: ",
    "Authentication algorithm: ",
];

/// Each SA block of an `S` result file starts with isakmpd's lines in isakmpd's order
/// (ours may follow them), with its forms: `(Phase 2)` without a role, `Flags 0x%08x`
/// with READY set, and SPIs followed by a blank as report_spi writes them.
fn assert_isakmpd_layout(s: &str) {
    let blocks: Vec<Vec<&str>> = s
        .split("\n\n")
        .filter(|b| b.starts_with("SA name: "))
        .map(|b| b.lines().collect())
        .collect();
    assert!(!blocks.is_empty(), "{s}");
    for b in &blocks {
        let phase2 = b[0].ends_with("(Phase 2)");
        assert!(
            phase2
                || b[0].ends_with("(Phase 1/Initiator)")
                || b[0].ends_with("(Phase 1/Responder)"),
            "{s}"
        );
        let want = if phase2 { PHASE2_LINES } else { PHASE1_LINES };
        assert!(b.len() >= want.len(), "{s}");
        for (line, label) in b.iter().zip(want) {
            assert!(
                line.starts_with(label),
                "{line:?} where isakmpd has {label:?}:\n{s}"
            );
        }
        let flags = b
            .iter()
            .find_map(|l| l.strip_prefix("Flags 0x"))
            .unwrap_or_default();
        assert!(
            flags.len() == 8 && u32::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1),
            "{s}"
        );
        for l in b.iter().filter(|l| l.starts_with("SPI ")) {
            assert!(
                l.len() == "SPI 0: 01234567 ".len() && l.ends_with(' '),
                "{l:?}"
            );
        }
    }
}

/// The C daemon's outputs normalised as in tests/data/cisakmpd/README.md: addresses,
/// `0x` values, hex strings of 8 or more digits, numbers and a trailing blank become
/// placeholders.
fn normalise(line: &str) -> String {
    let mut out = String::new();
    let words: Vec<&str> = line.split(' ').collect();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let (core, tail) = match w.find([',', ':', ')', '/']) {
            Some(n) if n > 0 => (&w[..n], &w[n..]),
            _ => (*w, ""),
        };
        let hexdigits = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
        let norm = if core.parse::<std::net::Ipv4Addr>().is_ok() {
            "<addr>".to_string()
        } else if core.starts_with("0x") && core.len() > 2 && hexdigits(&core[2..]) {
            "<ptr>".to_string()
        } else if core.len() >= 8 && hexdigits(core) {
            "<hex>".to_string()
        } else if !core.is_empty() && core.chars().all(|c| c.is_ascii_digit()) {
            "<n>".to_string()
        } else {
            core.to_string()
        };
        out.push_str(&norm);
        // "(Phase 1/Initiator)": the number inside the parenthesis.
        let tail = tail
            .strip_prefix('/')
            .map(|t| format!("/{t}"))
            .unwrap_or_else(|| tail.to_string());
        out.push_str(&tail);
    }
    // A trailing blank, as report_spi writes it.
    if let Some(stripped) = out.strip_suffix(' ') {
        return format!("{stripped}<sp>");
    }
    out
}

/// The `S` blocks of a result file, normalised, each with its phase as the C file has it.
fn normalised_blocks(s: &str) -> Vec<Vec<String>> {
    s.split("\n\n")
        .filter(|b| b.starts_with("SA name: "))
        .map(|b| {
            let phase = if b.lines().next().is_some_and(|l| l.ends_with("(Phase 2)")) {
                "phase2"
            } else {
                "phase1"
            };
            b.lines()
                .map(|l| format!("{phase}| {}", normalise(l)))
                .collect()
        })
        .collect()
}

/// Golden files: for the tunnel the C daemon negotiated (tests/data/cisakmpd/), each SA of
/// our `S` result file starts with exactly the C daemon's lines, placeholders aside (ours
/// may follow them), and the `-v` lines of the completed phases read as the C daemon's.
#[test]
fn the_result_file_and_log_lines_read_as_the_c_daemons_for_the_same_tunnel() {
    let conf = |me: &str,
                peer: &str,
                mine: &str,
                theirs: &str,
                lnet: &str,
                rnet: &str,
                kind: &str| {
        format!(
            "[General]\nRetransmits=3\nExchange-max-time=30\nCheck-interval=5\n\
[Phase 1]\n{peer}=ISAKMP-peer-{theirs}\n\
[Phase 2]\n{kind}=IPsec-{mine}-{theirs}\n\
[ISAKMP-peer-{theirs}]\nPhase=1\nAddress={peer}\nLocal-address={me}\nConfiguration=mm\nAuthentication=golden-test-key\n\
[mm]\nDOI=IPSEC\nEXCHANGE_TYPE=ID_PROT\nTransforms=3DES-SHA\n\
[IPsec-{mine}-{theirs}]\nPhase=2\nISAKMP-peer=ISAKMP-peer-{theirs}\nConfiguration=qm\nLocal-ID=lnet\nRemote-ID=rnet\n\
[qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA-PFS-SUITE\n\
[lnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={lnet}\nNetmask=255.255.255.0\n\
[rnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={rnet}\nNetmask=255.255.255.0\n"
        )
    };
    // The normaliser, on the forms of each line.
    for (ours, c) in [
        ("SPI 0: 0a1b2c3d ", "SPI <n>: <hex><sp>"),
        ("Flags 0x00000003", "Flags <ptr>"),
        ("src: 192.0.2.1 dst: 192.0.2.2", "src: <addr> dst: <addr>"),
        (
            "SA name: P-east (Phase 1/Initiator)",
            "SA name: P-east (Phase <n>/Initiator)",
        ),
        (
            "icookie 0123456789abcdef rcookie fedcba9876543210",
            "icookie <hex> rcookie <hex>",
        ),
        (
            "Encryption algorithm: 3DES (CBC)",
            "Encryption algorithm: 3DES (CBC)",
        ),
    ] {
        assert_eq!(normalise(ours), c);
    }
    let link = Link::new("g");
    let east = start_in(
        "golden-east",
        &conf(
            "192.0.2.2",
            "192.0.2.1",
            "east",
            "west",
            "203.0.113.0",
            "198.51.100.0",
            "Passive-connections",
        ),
        &[],
        Some(&link.b),
    );
    let west = start_in(
        "golden-west",
        &conf(
            "192.0.2.1",
            "192.0.2.2",
            "west",
            "east",
            "198.51.100.0",
            "203.0.113.0",
            "Connections",
        ),
        &[],
        Some(&link.a),
    );
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cisakmpd");
    for (d, side) in [(&west, "initiator"), (&east, "responder")] {
        let ours = wait_until(d, "phase 2", |s| s.contains("(Phase 2)"));
        let c = fs::read_to_string(format!("{data}/{side}.S.C.norm")).unwrap();
        let ours_blocks = normalised_blocks(&ours);
        for phase in ["phase1", "phase2"] {
            let want: Vec<&str> = c.lines().filter(|l| l.starts_with(phase)).collect();
            let got = ours_blocks
                .iter()
                .find(|b| b[0].starts_with(phase))
                .unwrap_or_else(|| panic!("no {phase} SA in our S:\n{ours}"));
            assert!(
                got.len() >= want.len(),
                "{side} {phase}: {got:#?}\nC: {want:#?}"
            );
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    g,
                    w,
                    "{side} {phase}, ours:\n{}\nC's:\n{}",
                    got.join("\n"),
                    want.join("\n")
                );
            }
        }
        // FIFO `r`: the report in the log, `Report> sa_report:` lines as isakmpd's.
        d.fifo("r\n");
        let t0 = Instant::now();
        while !d.log().contains("Report> conf_report") {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no report:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = d.log();
        let ours: Vec<String> = log
            .lines()
            .filter_map(|l| l.split_once("Report> ").map(|(_, b)| b))
            .filter(|b| b.starts_with("sa_report") || (b.len() == 9 && b.ends_with(' ')))
            .map(normalise)
            .collect();
        let c = fs::read_to_string(format!("{data}/{side}.report.C.norm")).unwrap();
        let c: Vec<&str> = c.lines().collect();
        let starts = |v: &[&str]| -> Vec<usize> {
            (0..v.len())
                .filter(|&i| v[i].starts_with("sa_report: <ptr> "))
                .collect()
        };
        let ours_ref: Vec<&str> = ours.iter().map(String::as_str).collect();
        let (cs, os) = (starts(&c), starts(&ours_ref));
        for (n, &ci) in cs.iter().enumerate() {
            let cend = cs.get(n + 1).copied().unwrap_or(c.len());
            let want = &c[ci..cend];
            let oi = os
                .iter()
                .copied()
                .find(|&i| ours_ref[i] == want[0])
                .unwrap_or_else(|| {
                    panic!(
                        "{side}: no SA reported as C's {:?}:\n{}",
                        want[0],
                        ours.join("\n")
                    )
                });
            let got = &ours_ref[oi..(oi + want.len()).min(ours_ref.len())];
            assert_eq!(got.len(), want.len(), "{side}: {got:#?}\nC: {want:#?}");
            for (g, w) in got.iter().zip(want) {
                let same = match w.strip_prefix("~ ") {
                    Some(prefix) => g.starts_with(prefix),
                    None => g == w,
                };
                assert!(
                    same,
                    "{side} report: {g:?} where C has {w:?}\nours: {got:#?}\nC: {want:#?}"
                );
            }
        }
        let c = fs::read_to_string(format!("{data}/{side}.v.C.norm")).unwrap();
        for want in c.lines() {
            let body = want.trim_start_matches("<time> ");
            let found = log.lines().any(|l| {
                l.find("isakmpd: ")
                    .is_some_and(|i| normalise(&l[i..]) == body)
            });
            assert!(found, "{side}: no line reads as C's {want:?}:\n{log}");
        }
    }
}

#[test]
fn two_daemons_bring_up_and_tear_down_a_tunnel() {
    let link = Link::new("t");
    let east = start_in(
        "pair-east",
        &conf(
            "192.0.2.2",
            "192.0.2.1",
            "203.0.113.0",
            "198.51.100.0",
            "Passive-connections",
        ),
        &[],
        Some(&link.b),
    );
    let west = start_in(
        "pair-west",
        &conf(
            "192.0.2.1",
            "192.0.2.2",
            "198.51.100.0",
            "203.0.113.0",
            "Connections",
        ),
        &["-L"],
        Some(&link.a),
    );
    let w = wait_until(&west, "phase 2 on west", |s| s.contains("(Phase 2)"));
    let e = wait_until(&east, "phase 2 on east", |s| s.contains("(Phase 2)"));
    assert!(
        w.contains("SA name: ISAKMP-peer (Phase 1/Initiator)"),
        "{w}"
    );
    assert_isakmpd_layout(&w);
    assert_isakmpd_layout(&e);
    // isakmpd's flags: READY, and STAYALIVE on the initiator's SAs (the C daemon wrote
    // 0x00000003 and 0x00000001 for the same tunnel).
    assert!(w.contains("Flags 0x00000003"), "{w}");
    assert!(
        e.contains("Flags 0x00000001") && !e.contains("Flags 0x00000003"),
        "{e}"
    );
    assert!(
        e.contains("SA name: ISAKMP-peer (Phase 1/Responder)"),
        "{e}"
    );
    // The initiator's outbound SPI is the responder's inbound one and vice versa.
    assert_eq!(
        field(&w, "SPI 0:"),
        field(&e, "SPI 1:"),
        "west:\n{w}\neast:\n{e}"
    );
    assert_eq!(field(&w, "SPI 1:"), field(&e, "SPI 0:"));
    assert_eq!(field(&w, "icookie"), field(&e, "icookie"));
    assert!(w.contains("Encryption algorithm: AES (CBC)"), "{w}");
    assert!(w.contains("Authentication algorithm: HMAC-SHA2-256"), "{w}");
    assert!(
        west.log().contains("phase 1 done: initiator id"),
        "{}",
        west.log()
    );
    // isakmpd never writes "(as initiator)".
    assert!(!west.log().contains("(as initiator)"), "{}", west.log());
    // FIFO `r`: the report file, and the report in the log as isakmpd's Report> lines,
    // without the pre-shared key.
    west.fifo("r\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !west
        .log()
        .contains("Report> conf_report: dumping running configuration")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = west.log();
    for want in [
        " ISAKMP-peer phase 1 doi 1 flags 0x",
        " IPsec-tunnel phase 2 doi 1 flags 0x3",
        "Report> sa_report: icookie ",
        "Report> udp_report: fd ",
        "Report> connection_report: connection IPsec-tunnel",
        "Report> timer_report: event sa_hard_expire(0x",
        "Report> conf_report: dumping running configuration",
        "Report> [ISAKMP-peer]",
    ] {
        assert!(log.contains(want), "{want:?} not in the log:\n{log}");
    }
    assert!(!log.contains("two-daemon-test-key"), "{log}");
    assert!(
        east.log().contains("quick mode done (as responder)"),
        "{}",
        east.log()
    );

    // `t` on the initiator: the responder honours the DELETE.
    west.fifo("t quick IPsec-tunnel\n");
    wait_until(&east, "phase 2 deleted on east", |s| !s.contains("Phase 2"));
    wait_until(&west, "phase 2 deleted on west", |s| !s.contains("Phase 2"));
    // isakmpd's line for it, with the connection's client IDs (initiator's first).
    assert!(
        east.log().contains(
            "isakmpd: Peer 192.0.2.1 made us delete live SA IPsec-tunnel for proto 3, \
             initiator id: 198.51.100.0/255.255.255.0, responder id: 203.0.113.0/255.255.255.0"
        ),
        "{}",
        east.log()
    );
    // `t main` on the responder: phase 1 gone on both sides.
    east.fifo("t main 192.0.2.1\n");
    wait_until(&west, "phase 1 deleted on west", |s| !s.contains("Phase 1"));

    // `c` brings it up again over a new phase 1.
    west.fifo("c IPsec-tunnel\n");
    wait_until(&east, "phase 2 again", |s| s.contains("(Phase 2)"));

    // The capture file holds the cleartext messages; tshark decodes them as ISAKMP.
    let pcap = west.run_file("isakmpd.pcap");
    west.fifo("p off\n");
    std::thread::sleep(Duration::from_millis(300));
    if Command::new("tshark").arg("-v").output().is_ok() {
        let out = Command::new("tshark")
            .args(["-r"])
            .arg(&pcap)
            .args([
                "-T",
                "fields",
                "-e",
                "isakmp.exchangetype",
                "-e",
                "_ws.malformed",
                "-e",
                "isakmp.flags",
                "-e",
                "isakmp.nextpayload",
                "-e",
                "udp.checksum.status",
                "-e",
                "ip.src",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.len() >= 18,
            "two full negotiations and the deletes:\n{text}"
        );
        assert!(
            lines
                .iter()
                .all(|l| !l.contains("Malformed")
                    && l.split('\t').nth(1).is_none_or(|m| m.is_empty())),
            "{text}"
        );
        // As isakmpd's capture: what went or came encrypted is there decrypted (no
        // encryption flag, payloads listed), and the UDP checksums are right.
        for l in &lines {
            let f: Vec<&str> = l.split('\t').collect();
            let flags = f.get(2).map_or("", |v| v.trim_start_matches("0x"));
            assert!(
                u8::from_str_radix(flags, 16).is_ok_and(|v| v & 1 == 0),
                "encryption flag: {l}\n{text}"
            );
            assert!(
                f.get(3).is_some_and(|p| !p.is_empty() && *p != "0"),
                "payloads: {l}\n{text}"
            );
            assert_eq!(
                f.get(4).copied(),
                Some("2"),
                "UDP checksum good: {l}\n{text}"
            );
        }
        assert!(
            lines.iter().any(|l| l.starts_with("2")),
            "Main Mode: {text}"
        );
        // The responder's Main Mode message 6, decrypted: ID, HASH and INITIAL-CONTACT
        // (a Notification), as the C isakmpd sends it on a first contact.
        assert!(
            lines.iter().any(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                f.first() == Some(&"2")
                    && f.get(3) == Some(&"5,8,11,0")
                    && f.get(5) == Some(&"192.0.2.2")
            }),
            "message 6 with INITIAL-CONTACT: {text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("32")),
            "Quick Mode: {text}"
        );
    } else {
        panic!("tshark is not installed (scripts/setup.sh installs it)");
    }
}

/// Without -n, on this host whose kernel has XFRM but no ESP: the SPIs come from the
/// kernel (ALLOCSPI), the kernel refuses the SAs themselves, and so the exchange is
/// abandoned: no side claims a tunnel, and nothing is left in either kernel. (The VM test,
/// tests/vm, proves the installed SAs with traffic.)
#[test]
fn a_kernel_that_refuses_the_sas_leaves_no_tunnel_claimed() {
    let link = Link::new("k");
    let east = start_in(
        "xfrm-east",
        &conf(
            "192.0.2.2",
            "192.0.2.1",
            "203.0.113.0",
            "198.51.100.0",
            "Passive-connections",
        ),
        &["+kernel"],
        Some(&link.b),
    );
    let west = start_in(
        "xfrm-west",
        &conf(
            "192.0.2.1",
            "192.0.2.2",
            "198.51.100.0",
            "203.0.113.0",
            "Connections",
        ),
        &["+kernel"],
        Some(&link.a),
    );
    let ip = |ns: &str, what: &str| {
        let out = Command::new("ip")
            .args(["-n", ns, "xfrm", what])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let t0 = Instant::now();
    while !east.log().contains("exchange abandoned") && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = east.log();
    assert!(log.contains("kernel: XFRM netlink"), "{log}");
    assert!(
        log.contains("kernel: add SA 192.0.2.1->192.0.2.2 spi"),
        "the kernel refused the inbound SA:\n{log}"
    );
    assert!(log.contains("exchange abandoned"), "{log}");
    // West's SPI was reserved by its kernel: a larval state, no keys.
    let ws = ip(&link.a, "state");
    assert!(
        ws.contains("src 192.0.2.2 dst 192.0.2.1") && ws.contains("proto esp"),
        "{ws}"
    );
    // Neither side claims phase 2; east has taken back everything it asked for.
    assert!(!sas(&west).contains("Phase 2"), "{}", sas(&west));
    assert!(!sas(&east).contains("Phase 2"), "{}", sas(&east));
    assert!(
        !ip(&link.b, "state").contains("proto esp"),
        "{}",
        ip(&link.b, "state")
    );
    assert!(
        !ip(&link.b, "policy").contains("dir"),
        "{}",
        ip(&link.b, "policy")
    );
    assert!(
        !ip(&link.a, "policy").contains("dir"),
        "{}",
        ip(&link.a, "policy")
    );
    // West gives up at Exchange-max-time and gives that SPI back (the connection checker
    // then starts over with a new one).
    let spi = ws
        .split_whitespace()
        .skip_while(|w| *w != "spi")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(spi.starts_with("0x"), "{ws}");
    let t0 = Instant::now();
    while !west.log().contains("exchange timed out") && t0.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(west.log().contains("exchange timed out"), "{}", west.log());
    std::thread::sleep(Duration::from_millis(300));
    let ws = ip(&link.a, "state");
    assert!(!ws.contains(&spi), "{spi} released: {ws}");
}

/// A daemon that listens on a secondary address of its interface (Listen-on) starts its
/// exchanges from that address and names it in its phase 1 ID and its NAT-D hashes, not
/// the address the route picks: its peer sees the ID it expects and no NAT.
#[test]
fn an_initiator_speaks_from_its_listen_on_address() {
    let link = Link::new("l");
    let st = Command::new("ip")
        .args(["-n", &link.a, "addr", "add", "192.0.2.11/24", "dev", "vla"])
        .status()
        .unwrap();
    assert!(st.success());
    let east_conf = conf(
        "192.0.2.2",
        "192.0.2.11",
        "203.0.113.0",
        "198.51.100.0",
        "Passive-connections",
    )
    .replace(
        "Authentication=two-daemon-test-key\n",
        "Authentication=two-daemon-test-key\nRemote-ID=west-id\n",
    ) + "[west-id]\nID-type=IPV4_ADDR\nAddress=192.0.2.11\n";
    let east = start_in("listen-east", &east_conf, &[], Some(&link.b));
    let west = start_in(
        "listen-west",
        &conf(
            "192.0.2.11",
            "192.0.2.2",
            "198.51.100.0",
            "203.0.113.0",
            "Connections",
        )
        .replace("Local-address=192.0.2.11\n", "")
        .replace("[General]\n", "[General]\nListen-on=192.0.2.11\n"),
        &[],
        Some(&link.a),
    );
    wait_until(&east, "phase 2 on east", |s| s.contains("(Phase 2)"));
    let log = east.log();
    assert!(log.contains("initiator id 192.0.2.11"), "{log}");
    assert!(!log.contains("behind a NAT"), "{log}");
    assert!(!west.log().contains("behind a NAT"), "{}", west.log());
}
