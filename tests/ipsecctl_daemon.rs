//! `isakmpd -K` configured only through `ipsecctl -f`: the stream our ipsecctl writes to
//! the daemon's FIFO (`-i`, the daemon's private /var/run) makes the connections appear
//! in the daemon's report with the sections ike.c names, and `ipsecctl -d` removes them
//! again. Passive rules, so nothing is sent. Needs root (see tests/common).

mod common;

use std::process::Command;

use common::*;

const CONF: &str = "\
[General]
Retransmits=\t5
Listen-on=\t127.0.0.1
";

const RULES: &str = "\
NET=\"{ 10.1.1.0/24, 10.1.3.0/24 }\"
ike passive esp from $NET to 10.1.2.0/24 peer 192.0.2.2 \\
\tmain auth hmac-sha2-256 enc aes group modp2048 \\
\tquick enc aes-256 group none psk \"ipsecctl-test-psk\"
";

fn ipsecctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--ipsecctl")
        .args(args)
        .output()
        .expect("run ipsecctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ipsecctl_configures_and_unconfigures_a_daemon() {
    let d = start("ipsecctl", CONF, &["-K", "-T"]);
    let rules = d.scratch.write("ipsec.conf", RULES, 0o600);
    let fifo = d.run_file("isakmpd.fifo");
    let (st, out, err) = ipsecctl(&[
        "-i",
        fifo.to_str().unwrap_or_default(),
        "-f",
        rules.to_str().unwrap_or_default(),
    ]);
    assert_eq!(st, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    let c1 = "from-10.1.1.0/24-to-10.1.2.0/24";
    let c2 = "from-10.1.3.0/24-to-10.1.2.0/24";
    let rep = d.fifo_sync("");
    assert!(rep.contains(&format!("passive-connection: {c1}")), "{rep}");
    assert!(rep.contains(&format!("passive-connection: {c2}")), "{rep}");
    assert!(
        !rep.contains("ipsecctl-test-psk"),
        "the PSK stays hidden: {rep}"
    );
    assert_eq!(
        d.conf_get("[Phase 1]:192.0.2.2"),
        "peer-192.0.2.2\n",
        "{}",
        d.log()
    );
    assert_eq!(
        d.conf_get(&format!("[{c1}]:ISAKMP-peer")),
        "peer-192.0.2.2\n"
    );
    let xf = "phase1-transform-peer-192.0.2.2-PRE_SHARED-SHA2_256-AES128-MODP_2048";
    assert_eq!(
        d.conf_get("[phase1-peer-192.0.2.2]:Transforms"),
        format!("{xf}\n")
    );
    assert_eq!(
        d.conf_get(&format!("[{xf}]:GROUP_DESCRIPTION")),
        "MODP_2048\n"
    );
    assert_eq!(d.conf_get("[from-10.1.3.0/24]:Netmask"), "255.255.255.0\n");

    // The delete stream takes both connections away (ike.c removes the connection and
    // its phase2 section; the suites and transforms stay, as on OpenBSD).
    let (st, _, err) = ipsecctl(&[
        "-d",
        "-i",
        fifo.to_str().unwrap_or_default(),
        "-f",
        rules.to_str().unwrap_or_default(),
    ]);
    assert_eq!(st, 0, "{err}");
    let rep = d.fifo_sync("");
    assert!(!rep.contains("connection: "), "{rep}");
    assert!(
        !rep.contains(&format!("[{c1}]")) && !rep.contains(&format!("[phase2-{c2}]")),
        "{rep}"
    );
    assert_eq!(d.conf_get(&format!("[{c1}]:ISAKMP-peer")), "");
    assert!(d.alive(), "{}", d.log());
}

/// The OpenBSD administrator's everyday path: two `isakmpd -K` in two namespaces, each
/// given only an ipsec.conf through our ipsecctl, bring a tunnel up (-n: the kernel is
/// not touched; tests/vm carries ESP).
#[test]
fn two_daemons_configured_only_by_ipsecctl_bring_a_tunnel_up() {
    let link = Link::new("c");
    let conf = |me: &str| format!("[General]\nRetransmits=\t3\nListen-on=\t{me}\n");
    let east = start_in(
        "ictl-east",
        &conf("192.0.2.2"),
        &["-K", "-T", "-n"],
        Some(&link.b),
    );
    let west = start_in(
        "ictl-west",
        &conf("192.0.2.1"),
        &["-K", "-T", "-n"],
        Some(&link.a),
    );
    let rules = [
        (
            &east,
            "ike passive esp from 203.0.113.0/24 to 198.51.100.0/24 local 192.0.2.2 \
             peer 192.0.2.1 psk \"two-ipsecctl-psk\"\n",
        ),
        (
            &west,
            "ike esp from 198.51.100.0/24 to 203.0.113.0/24 local 192.0.2.1 \
             peer 192.0.2.2 psk \"two-ipsecctl-psk\"\n",
        ),
    ];
    for (d, text) in rules {
        let file = d.scratch.write("ipsec.conf", text, 0o600);
        let fifo = d.run_file("isakmpd.fifo");
        let (st, _, err) = ipsecctl(&[
            "-i",
            fifo.to_str().unwrap_or_default(),
            "-f",
            file.to_str().unwrap_or_default(),
        ]);
        assert_eq!(st, 0, "{err}");
    }
    let sas = |d: &Daemon| {
        let res = d.run_file("isakmpd.result");
        let _ = std::fs::remove_file(&res);
        d.fifo_sync("S\n");
        std::fs::read_to_string(res).unwrap_or_default()
    };
    let t0 = std::time::Instant::now();
    let (w, e) = loop {
        let (w, e) = (sas(&west), sas(&east));
        if w.contains("(Phase 2)") && e.contains("(Phase 2)") {
            break (w, e);
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no tunnel:\n{w}\n{e}\n--- west ---\n{}\n--- east ---\n{}",
            west.log(),
            east.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // The connection ike.c names, on both sides, with the quick mode defaults of
    // ipsec.conf(5) (AES, HMAC-SHA2-256).
    assert!(
        w.contains("SA name: from-198.51.100.0/24-to-203.0.113.0/24 (Phase 2)"),
        "{w}"
    );
    assert!(
        e.contains("SA name: from-203.0.113.0/24-to-198.51.100.0/24 (Phase 2)"),
        "{e}"
    );
    assert!(w.contains("Authentication algorithm: HMAC-SHA2-256"), "{w}");

    // `ipsecctl -s`: the daemons' SAs and flows in ipsecctl's words, asked over the FIFO.
    // West's outbound SPI is east's inbound one and the other way round.
    let spi = |text: &str, tag: &str| -> String {
        let v = text.lines().find_map(|l| l.strip_prefix(tag));
        v.unwrap_or_else(|| panic!("{tag}: {text}"))
            .split_whitespace()
            .collect()
    };
    let (w_out, w_in) = (spi(&w, "SPI 0: "), spi(&w, "SPI 1: "));
    assert_eq!(
        (spi(&e, "SPI 0: "), spi(&e, "SPI 1: ")),
        (w_in.clone(), w_out.clone())
    );
    let show = |d: &Daemon, what: &str| {
        let fifo = d.run_file("isakmpd.fifo");
        let (st, out, err) = ipsecctl(&["-i", fifo.to_str().unwrap_or_default(), "-s", what]);
        assert_eq!(st, 0, "{err}");
        out
    };
    let sa_out = format!(
        "esp tunnel from 192.0.2.1 to 192.0.2.2 spi 0x{w_out} auth hmac-sha2-256 enc aes\n"
    );
    let sa_in =
        format!("esp tunnel from 192.0.2.2 to 192.0.2.1 spi 0x{w_in} auth hmac-sha2-256 enc aes\n");
    let all = show(&west, "all");
    assert!(all.starts_with("FLOWS:\n"), "{all}");
    assert!(
        all.contains(
            "flow esp in from 203.0.113.0/24 to 198.51.100.0/24 peer 192.0.2.2 type use\n"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "flow esp out from 198.51.100.0/24 to 203.0.113.0/24 peer 192.0.2.2 type require\n"
        ),
        "{all}"
    );
    assert!(all.contains("\nSAD:\n"), "{all}");
    assert!(all.contains(&sa_out) && all.contains(&sa_in), "{all}");
    // -s sa: only the SAs, by SPI; east shows the same two.
    let sas = show(&east, "sa");
    let mut want = [sa_out, sa_in];
    want.sort_by_key(|l| l.split("spi 0x").nth(1).map(|v| v[..8].to_string()));
    assert_eq!(sas, want.concat());
    let flows = show(&east, "f");
    assert_eq!(
        flows,
        "flow esp in from 198.51.100.0/24 to 203.0.113.0/24 peer 192.0.2.1 type use\n\
         flow esp out from 203.0.113.0/24 to 198.51.100.0/24 peer 192.0.2.1 type require\n"
    );
    assert!(
        west.log().contains("quick mode done: src: 192.0.2.1"),
        "{}",
        west.log()
    );
}
