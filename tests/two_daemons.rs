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
    let w = wait_until(&west, "phase 2 on west", |s| {
        s.contains("(Phase 2/Initiator)")
    });
    let e = wait_until(&east, "phase 2 on east", |s| {
        s.contains("(Phase 2/Responder)")
    });
    assert!(
        w.contains("SA name: ISAKMP-peer (Phase 1/Initiator)"),
        "{w}"
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
        west.log().contains("phase 1 done (as initiator)"),
        "{}",
        west.log()
    );
    assert!(
        east.log().contains("quick mode done (as responder)"),
        "{}",
        east.log()
    );

    // `t` on the initiator: the responder honours the DELETE.
    west.fifo("t quick IPsec-tunnel\n");
    wait_until(&east, "phase 2 deleted on east", |s| !s.contains("Phase 2"));
    wait_until(&west, "phase 2 deleted on west", |s| !s.contains("Phase 2"));
    // `t main` on the responder: phase 1 gone on both sides.
    east.fifo("t main 192.0.2.1\n");
    wait_until(&west, "phase 1 deleted on west", |s| !s.contains("Phase 1"));

    // `c` brings it up again over a new phase 1.
    west.fifo("c IPsec-tunnel\n");
    wait_until(&east, "phase 2 again", |s| {
        s.contains("(Phase 2/Responder)")
    });

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
                    && l.split('\t').nth(1).map_or(true, |m| m.is_empty())),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("2")),
            "Main Mode: {text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("32")),
            "Quick Mode: {text}"
        );
    } else {
        panic!("tshark is not installed (scripts/setup.sh installs it)");
    }
}

/// Without -n: the daemons install their flows through XFRM netlink from the unprivileged
/// child. This host kernel has no ESP, so the states themselves are refused (and logged);
/// the VM test (tests/vm) proves them with traffic.
#[test]
fn flows_go_to_the_kernel_through_xfrm() {
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
    wait_until(&west, "phase 2 on west", |s| {
        s.contains("(Phase 2/Initiator)")
    });
    wait_until(&east, "phase 2 on east", |s| {
        s.contains("(Phase 2/Responder)")
    });
    let policies = |ns: &str| {
        let out = Command::new("ip")
            .args(["-n", ns, "xfrm", "policy"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let t0 = Instant::now();
    let mut p = policies(&link.a);
    while p.matches("dir ").count() < 3 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        p = policies(&link.a);
    }
    assert!(
        p.contains("src 198.51.100.0/24 dst 203.0.113.0/24"),
        "{p}\n{}",
        west.log()
    );
    assert!(
        p.contains("dir out") && p.contains("dir in") && p.contains("dir fwd"),
        "{p}"
    );
    assert!(
        p.contains("tmpl src 192.0.2.1 dst 192.0.2.2") && p.contains("mode tunnel"),
        "{p}"
    );
    let e = policies(&link.b);
    assert!(
        e.contains("src 203.0.113.0/24 dst 198.51.100.0/24") && e.contains("dir out"),
        "{e}"
    );
    assert!(
        west.log().contains("kernel: XFRM netlink"),
        "{}",
        west.log()
    );
    // Teardown removes the flows again.
    west.fifo("t quick IPsec-tunnel\n");
    let t0 = Instant::now();
    while (policies(&link.a).contains("dir") || policies(&link.b).contains("dir"))
        && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!policies(&link.a).contains("dir"), "{}", policies(&link.a));
    assert!(!policies(&link.b).contains("dir"), "{}", policies(&link.b));
}
