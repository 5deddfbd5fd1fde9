//! The binary as iked(8), configured only by an iked.conf file, against strongSwan's
//! charon configured by its own swanctl.conf, in two network namespaces (documentation
//! addresses only): our active policy brings the tunnel up with charon as responder, and
//! charon's `swanctl --initiate` brings it up against our passive policy. Both sides must
//! show the same SPIs (`ikectl show sa`, `swanctl --list-sas`), and `ikectl reset sa`
//! must delete charon's SAs too. charon uses its userspace ESP (kernel-libipsec), which
//! fakes a NAT, so IKE_AUTH runs on port 4500; `-X` keeps our kernel state untouched.

mod common;

#[path = "common/charon.rs"]
mod charon;
#[path = "common/iked.rs"]
mod iked;

use std::time::{Duration, Instant};

use charon::{Charon, PSK};
use common::{Link, Scratch};
use iked::Iked;

fn iked_conf(mode: &str) -> String {
    format!(
        "ikev2 \"to-charon\" {mode} esp \\\n\
         \tfrom 198.51.100.0/24 to 203.0.113.0/24 \\\n\
         \tlocal 192.0.2.1 peer 192.0.2.2 \\\n\
         \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
         \tchildsa enc aes-256-gcm \\\n\
         \tsrcid west.example dstid east.example \\\n\
         \tpsk \"{PSK}\"\n"
    )
}

/// The link, with the selectors' own ends on loopback so that kernel-libipsec has source
/// addresses.
fn link(tag: &str) -> Link {
    common::require_root();
    let l = Link::new(tag);
    for (ns, a) in [(&l.a, "198.51.100.1/32"), (&l.b, "203.0.113.1/32")] {
        let st = std::process::Command::new("ip")
            .args(["-n", ns, "addr", "add", a, "dev", "lo"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    l
}

fn charon(name: &str, netns: &str) -> Charon {
    let swanctl = format!(
        "connections {{\n v2 {{\n  version = 2\n  local_addrs = 192.0.2.2\n  remote_addrs = 192.0.2.1\n  \
         proposals = aes256-sha256-ecp256\n  \
         local {{\n   auth = psk\n   id = east.example\n  }}\n  remote {{\n   auth = psk\n   id = west.example\n  }}\n  \
         children {{\n   net {{\n    mode = tunnel\n    esp_proposals = aes256gcm16\n    local_ts = 203.0.113.0/24\n    remote_ts = 198.51.100.0/24\n    start_action = none\n   }}\n  }}\n }}\n}}\n\
         secrets {{\n ike-1 {{\n  id-1 = east.example\n  id-2 = west.example\n  secret = \"{PSK}\"\n }}\n}}\n"
    );
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        None,
        "install_routes = no",
    )
}

/// charon's `--list-sas` once `done` holds for it.
fn charon_sas(c: &Charon, what: &str, done: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let s = c.swanctl(&["--list-sas"]);
        if done(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "charon: timed out waiting for {what}:\n{s}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn established(s: &str) -> bool {
    s.lines()
        .any(|l| l.starts_with("iked_sas:") && l.contains("ESTABLISHED"))
        && s.contains("iked_activesas:")
}

/// Our (inbound, outbound) ESP SPIs from `ikectl show sa`.
fn our_spis(s: &str) -> (String, String) {
    let spi = |dir: &str| {
        s.lines()
            .find(|l| l.starts_with("iked_activesas:") && l.contains(&format!(" {dir} ")))
            .and_then(|l| l.split_whitespace().nth(3))
            .map(|x| x.trim_start_matches("0x").to_string())
            .unwrap_or_default()
    };
    (spi("in"), spi("out"))
}

fn check_same_sas(ours: &str, theirs: &str) {
    let (spi_in, spi_out) = our_spis(ours);
    assert!(!spi_in.is_empty(), "{ours}");
    // charon prints "in c1234567" and "out c7654321": its inbound is our outbound.
    assert!(
        theirs.contains(&format!("in  {spi_out}")) || theirs.contains(&format!("in {spi_out}")),
        "charon's inbound SPI is our outbound {spi_out}:\n{theirs}\nours:\n{ours}"
    );
    assert!(
        theirs.contains(&spi_in),
        "charon's outbound SPI is our inbound {spi_in}:\n{theirs}"
    );
    assert!(theirs.contains("AES_GCM_16-256"), "{theirs}");
}

#[test]
fn our_iked_initiates_to_charon_and_resets() {
    let link = link("c");
    let c = charon("ikedc-charon-r", &link.b);
    let us = Iked::start("ikedc-us-i", &link.a, &iked_conf("active"));
    let ours = us.wait_sa("our IKE SA with charon", established);
    let theirs = charon_sas(&c, "CHILD_SA installed", |s| s.contains("INSTALLED"));
    assert!(theirs.contains("ESTABLISHED"), "{theirs}");
    assert!(ours.contains(" i natt nexti"), "charon fakes a NAT: {ours}");
    assert!(
        ours.contains("192.0.2.1:4500->192.0.2.2:4500<FQDN/east.example>"),
        "{ours}"
    );
    check_same_sas(&ours, &theirs);

    // ikectl reset sa: our Delete takes charon's SAs away too. The policy is made passive
    // first (ikectl load), or our next check would start it again.
    let passive = us
        .scratch
        .write("passive.conf", &iked_conf("passive"), 0o600);
    let (st, _, err) = us.ikectl(&["load", passive.to_str().unwrap()]);
    assert_eq!(st, 0, "{err}");
    let (st, out, err) = us.ikectl(&["reset", "sa"]);
    assert_eq!(st, 0, "{err}");
    assert!(out.contains("1 IKE SA(s) deleted"), "{out}");
    charon_sas(&c, "SAs deleted by our Delete", |s| {
        !s.contains("ESTABLISHED")
    });
    us.wait_sa("our SA gone", |s| !s.contains("iked_sas:"));
}

#[test]
fn charon_initiates_to_our_passive_policy() {
    let link = link("d");
    let us = Iked::start("ikedc-us-r", &link.a, &iked_conf("passive"));
    let c = charon("ikedc-charon-i", &link.b);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !us.show_sa().contains("iked_sas:"),
        "a passive policy starts nothing"
    );
    let out = c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
    assert!(
        out.contains("initiate completed successfully"),
        "{out}\n{}",
        us.log()
    );
    let ours = us.wait_sa("our responder SA", established);
    assert!(ours.contains(" r natt nexti"), "{ours}");
    let theirs = charon_sas(&c, "CHILD_SA installed", |s| s.contains("INSTALLED"));
    check_same_sas(&ours, &theirs);
    // charon's delete ends ours.
    let out = c.swanctl(&["--terminate", "--ike", "v2", "--timeout", "20"]);
    assert!(out.contains("terminate completed successfully"), "{out}");
    us.wait_sa("our SA deleted by charon", |s| !s.contains("iked_sas:"));
}
