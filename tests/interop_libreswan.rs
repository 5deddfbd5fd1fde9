//! Interop with libreswan 4.10 (Debian's pluto) as a third peer, in network namespaces
//! with documentation addresses only: IKEv2 with our iked (both directions, pre-shared
//! key and RSA certificates) and IKEv1 Main Mode + Quick Mode with our isakmpd (both
//! directions, with and without PFS), each ending with a DELETE from one side that the
//! other honours. Each case compares the ESP SPIs of both sides' views: ours (`ikectl
//! show sa`, the FIFO's `S` result) against pluto's `whack --showstates`.
//!
//! pluto is unpacked from Debian's package into a private directory (it conflicts with
//! strongSwan's packages; scripts/fetch-libreswan.sh, run by scripts/setup.sh or here on
//! first use). This kernel has no ESP, so an LD_PRELOAD shim acknowledges pluto's ESP SA
//! installs instead of the kernel (tests/common/pluto.rs says what exactly is faked);
//! without it pluto would negotiate everything and then refuse the CHILD SA for lack of
//! a kernel SA. Our daemons run without the kernel (`-X`, `-n`). When the packages
//! cannot be fetched at all, each test prints why and returns.

mod common;

#[path = "common/iked.rs"]
mod iked;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/pluto.rs"]
mod pluto;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::{start_in, Daemon, Link, Scratch};
use iked::Iked;
use pluto::{Libreswan, Pluto};

const PSK: &str = "libreswan-interop-psk-0123";

/// libreswan, or `None` after printing why the test cannot run.
fn lsw() -> Option<&'static Libreswan> {
    common::require_root();
    match pluto::libreswan() {
        Ok(l) => Some(l),
        Err(why) => {
            println!("SKIPPED: libreswan is not available: {why}");
            None
        }
    }
}

/// A pluto `conn` for the tunnel 203.0.113.0/24 (pluto) <-> 198.51.100.0/24 (us), with
/// more `key=value` lines in `extra`.
fn conn(name: &str, extra: &str) -> String {
    format!(
        "conn {name}\n\tleft=192.0.2.2\n\tleftsubnet=203.0.113.0/24\n\tright=192.0.2.1\n\
         \trightsubnet=198.51.100.0/24\n\tleftupdown=/bin/true\n\tauto=add\n{extra}"
    )
}

// ---- IKEv2: our iked ------------------------------------------------------------------

fn v2_conn(auth: &str) -> String {
    conn(
        "v2",
        &format!("\tikev2=insist\n\tike=aes256-sha2_256;dh19\n\tesp=aes_gcm256\n{auth}"),
    )
}

fn v2_psk_pluto(lsw: &'static Libreswan, name: &str, netns: &str) -> Pluto {
    Pluto::start(
        lsw,
        name,
        netns,
        &v2_conn("\tauthby=secret\n\tleftid=@east.example\n\trightid=@west.example\n"),
        &format!("@east.example @west.example : PSK \"{PSK}\"\n"),
        None,
    )
}

/// Our rule; `auth`: its authentication clause (empty: any signature).
fn iked_conf(mode: &str, auth: &str) -> String {
    format!(
        "ikev2 \"to-pluto\" {mode} esp from 198.51.100.0/24 to 203.0.113.0/24 \\\n\
         \tlocal 192.0.2.1 peer 192.0.2.2 \\\n\
         \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
         \tchildsa enc aes-256-gcm srcid west.example dstid east.example {auth}\n"
    )
}

fn psk_clause() -> String {
    format!("psk \"{PSK}\"")
}

fn iked_established(s: &str) -> bool {
    s.lines()
        .any(|l| l.starts_with("iked_sas:") && l.contains("ESTABLISHED"))
        && s.lines()
            .filter(|l| l.starts_with("iked_activesas:"))
            .count()
            == 2
}

/// (inbound, outbound) ESP SPI of `ikectl show sa`.
fn iked_spis(s: &str) -> (String, String) {
    let spi = |dir: &str| {
        s.lines()
            .filter(|l| l.starts_with("iked_activesas:"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.get(4) == Some(&dir))
            .and_then(|w| w.get(3).map(|x| x.trim_start_matches("0x").to_string()))
            .unwrap_or_else(|| panic!("no {dir} SA in\n{s}"))
    };
    (spi("in"), spi("out"))
}

/// Both sides hold the same ESP SAs: our inbound SPI is pluto's SA to us, our outbound
/// its SA to itself; the shim saw pluto install both; pluto's log names the SPIs and
/// `xfrm` (the negotiated transform, and what follows it in pluto's line).
fn same_esp_sas(p: &Pluto, ours: (String, String), xfrm: &str) {
    same_esp_sas_at(p, ours, xfrm, ("192.0.2.1", "192.0.2.2"));
}

/// [`same_esp_sas`] with our address and pluto's.
fn same_esp_sas_at(p: &Pluto, ours: (String, String), xfrm: &str, addrs: (&str, &str)) {
    let num = |x: &str| u32::from_str_radix(x, 16).unwrap_or_else(|_| panic!("SPI {x}"));
    let (spi_in, spi_out) = (num(&ours.0), num(&ours.1));
    let theirs = p.wait_until(
        "whack --showstates",
        "two ESP SAs",
        || p.states(),
        |s| pluto::esp_sas(s).len() == 2,
    );
    let sas = pluto::esp_sas(&theirs);
    assert!(
        sas.contains(&(spi_in, addrs.0.into())) && sas.contains(&(spi_out, addrs.1.into())),
        "ours in {spi_in:08x} out {spi_out:08x}, pluto's:\n{theirs}"
    );
    let shim = p.shim_log();
    for spi in [spi_in, spi_out] {
        assert!(
            shim.contains(&format!("SA spi 0x{spi:08x} acknowledged")),
            "{shim}"
        );
    }
    let log = p.log();
    assert!(
        log.contains(&format!("=>0x{spi_in:08x} <0x{spi_out:08x} xfrm={xfrm}")),
        "{log}"
    );
}

#[test]
fn iked_initiates_to_pluto_and_deletes() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Li");
    let p = v2_psk_pluto(lsw, "lsw-v2r", &link.b);
    let us = Iked::start("lsw-iked-i", &link.a, &iked_conf("active", &psk_clause()));
    let ours = us.wait_sa("our IKE SA with pluto", iked_established);
    assert!(
        ours.contains("192.0.2.1:500->192.0.2.2:500<FQDN/east.example>"),
        "{ours}"
    );
    p.wait_log("responder established Child SA using #1");
    let log = p.log();
    assert!(
        log.contains(
            "responder established IKE SA; authenticated peer using authby=secret and ID_FQDN '@west.example'"
        ),
        "{log}"
    );
    same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");

    // Our Delete (ikectl reset sa, the rule passive first) ends pluto's SAs too.
    let passive = us
        .scratch
        .write("passive.conf", &iked_conf("passive", &psk_clause()), 0o600);
    let (st, _, err) = us.ikectl(&["load", passive.to_str().unwrap()]);
    assert_eq!(st, 0, "{err}");
    let (st, out, err) = us.ikectl(&["reset", "sa"]);
    assert_eq!(st, 0, "{err}");
    assert!(out.contains("1 IKE SA(s) deleted"), "{out}");
    p.wait_until(
        "whack --showstates",
        "no states",
        || p.states(),
        |s| !s.contains("STATE_V2"),
    );
    us.wait_sa("our SA gone", |s| !s.contains("iked_sas:"));
}

#[test]
fn pluto_initiates_to_iked_and_deletes() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lr");
    let us = Iked::start("lsw-iked-r", &link.a, &iked_conf("passive", &psk_clause()));
    let p = v2_psk_pluto(lsw, "lsw-v2i", &link.b);
    let out = p.whack(&["--name", "v2", "--initiate"]);
    assert!(
        out.contains("initiator established Child SA using #1"),
        "{out}\n{}",
        us.log()
    );
    let ours = us.wait_sa("our responder SA", iked_established);
    assert!(ours.contains(" ESTABLISHED r "), "{ours}");
    same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");
    // pluto's Delete ends ours.
    let out = p.whack(&["--name", "v2", "--terminate"]);
    assert!(out.contains("sending notification"), "{out}");
    us.wait_sa("our SA deleted by pluto", |s| !s.contains("iked_sas:"));
    assert!(
        us.log().contains("deleted: ended by the peer"),
        "{}",
        us.log()
    );
}

/// pluto rekeys the CHILD SA (CREATE_CHILD_SA with PFS: pluto's default, on ECP256 as
/// its IKE SA; our rule asks for the same) and then the IKE SA; both sides end with the
/// same new SAs and the old ones gone.
#[test]
fn pluto_rekeys_child_and_ike_sa() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lk");
    let conf = iked_conf("passive", &psk_clause()).replace(
        "childsa enc aes-256-gcm",
        "childsa enc aes-256-gcm group ecp256",
    );
    let us = Iked::start("lsw-iked-k", &link.a, &conf);
    let p = v2_psk_pluto(lsw, "lsw-v2k", &link.b);
    let out = p.whack(&["--name", "v2", "--initiate"]);
    assert!(
        out.contains("initiator established Child SA using #1"),
        "{out}"
    );
    let ours = us.wait_sa("our responder SA", iked_established);
    let (first, first_ike) = (iked_spis(&ours), ike_spis(&ours));

    let out = p.whack(&["--name", "v2", "--rekey-ipsec"]);
    assert!(
        out.contains("initiator rekeyed Child SA #2 using #1") && out.contains("-DH19 "),
        "a rekey with PFS: {out}\n{}",
        us.log()
    );
    let ours = us.wait_sa("the new CHILD SA alone", |s| {
        iked_established(s) && iked_spis(s) != first
    });
    let second = iked_spis(&ours);
    same_esp_sas(&p, second.clone(), "AES_GCM_16_256-NONE-DH19");
    p.wait_until(
        "whack --showstates",
        "the old CHILD SA gone",
        || p.states(),
        |s| !s.contains("#2:"),
    );

    let out = p.whack(&["--name", "v2", "--rekey-ike"]);
    assert!(
        out.contains("initiator rekeyed IKE SA #1"),
        "{out}\n{}",
        us.log()
    );
    let ours = us.wait_sa("one IKE SA again", |s| {
        s.lines().filter(|l| l.starts_with("iked_sas:")).count() == 1
            && iked_established(s)
            && ike_spis(s) != first_ike
    });
    p.wait_until(
        "whack --showstates",
        "the old IKE SA gone",
        || p.states(),
        |s| !s.contains("#1:"),
    );
    // The CHILD SA moved to the new IKE SA unchanged.
    assert_eq!(iked_spis(&ours), second);
    assert!(p.states().contains("IKE SA #4"), "{}", p.states());
}

/// Our iked rekeys: the CHILD SA (`lifetime 5`: rekeyed 5-10 % early, with PFS on
/// ECP256), then, with another daemon, the IKE SA (`ikelifetime 5`); pluto follows both.
#[test]
fn iked_rekeys_child_and_ike_sa() {
    let Some(lsw) = lsw() else { return };
    let pfs = |life: &str| {
        iked_conf("active", &format!("{life} {}", psk_clause())).replace(
            "childsa enc aes-256-gcm",
            "childsa enc aes-256-gcm group ecp256",
        )
    };
    {
        let link = Link::new("Lx");
        let p = v2_psk_pluto(lsw, "lsw-v2x", &link.b);
        let us = Iked::start("lsw-iked-x", &link.a, &pfs("lifetime 5"));
        let first = iked_spis(&us.wait_sa("our IKE SA with pluto", iked_established));
        let ours = us.wait_sa("the CHILD SA rekeyed", |s| {
            iked_established(s) && iked_spis(s) != first
        });
        p.wait_log("responder rekeyed Child SA #2 using #1");
        same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE-DH19");
    }
    let link = Link::new("Ly");
    let p = v2_psk_pluto(lsw, "lsw-v2y", &link.b);
    let us = Iked::start("lsw-iked-y", &link.a, &pfs("ikelifetime 5"));
    let ours = us.wait_sa("our IKE SA with pluto", iked_established);
    let (child, first_ike) = (iked_spis(&ours), ike_spis(&ours));
    let ours = us.wait_sa("the IKE SA rekeyed", |s| {
        s.lines().filter(|l| l.starts_with("iked_sas:")).count() == 1
            && iked_established(s)
            && ike_spis(s) != first_ike
    });
    p.wait_log("responder rekeyed IKE SA #1");
    p.wait_until(
        "whack --showstates",
        "the old IKE SA gone",
        || p.states(),
        |s| !s.contains("#1:"),
    );
    assert_eq!(iked_spis(&ours), child);
    same_esp_sas(&p, child, "AES_GCM_16_256-NONE");
}

/// Both sides with their default proposals (no `ikesa`/`childsa`, no `ike=`/`esp=`),
/// each direction: they meet on AES-GCM-256 and Curve25519, which pluto as initiator
/// reaches through our INVALID_KE_PAYLOAD (its first guess is MODP2048).
#[test]
fn default_proposals_both_ways() {
    let Some(lsw) = lsw() else { return };
    let conf = |mode: &str| {
        format!(
            "ikev2 \"to-pluto\" {mode} esp from 198.51.100.0/24 to 203.0.113.0/24 \\\n\
             \tlocal 192.0.2.1 peer 192.0.2.2 srcid west.example dstid east.example {}\n",
            psk_clause()
        )
    };
    let pluto_conn = conn(
        "v2",
        "\tikev2=insist\n\tauthby=secret\n\tleftid=@east.example\n\trightid=@west.example\n",
    );
    let secrets = format!("@east.example @west.example : PSK \"{PSK}\"\n");
    for we_start in [true, false] {
        let link = Link::new(if we_start { "Lp" } else { "Lq" });
        let mode = if we_start { "active" } else { "passive" };
        let us = Iked::start(&format!("lsw-def-{mode}"), &link.a, &conf(mode));
        let p = Pluto::start(
            lsw,
            &format!("lsw-def-p{mode}"),
            &link.b,
            &pluto_conn,
            &secrets,
            None,
        );
        if !we_start {
            let out = p.whack(&["--name", "v2", "--initiate"]);
            assert!(out.contains("established Child SA"), "{out}\n{}", us.log());
        }
        let ours = us.wait_sa("our SA with pluto", iked_established);
        let log = p.wait_log("established Child SA");
        assert!(
            log.contains("{cipher=AES_GCM_16_256 integ=n/a prf=HMAC_SHA2_256 group=DH31}"),
            "{log}"
        );
        assert_eq!(
            log.contains("Received unauthenticated INVALID_KE_PAYLOAD response to DH MODP2048; resending with suggested DH DH31"),
            !we_start,
            "{log}"
        );
        assert!(ours.contains("enc aes-256-gcm auth none"), "{ours}");
        same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");
    }
}

/// (initiator, responder) IKE SPI of our one IKE SA in `ikectl show sa`.
fn ike_spis(s: &str) -> (String, String) {
    let w: Vec<&str> = s
        .lines()
        .find(|l| l.starts_with("iked_sas:"))
        .unwrap_or_else(|| panic!("no IKE SA in\n{s}"))
        .split_whitespace()
        .collect();
    let at = |k: &str| w[w.iter().position(|x| *x == k).unwrap() + 1].to_string();
    (at("ispi"), at("rspi"))
}

// ---- IKEv1: our isakmpd ---------------------------------------------------------------

/// Our isakmpd.conf: Main Mode with `mm` (a transform name), Quick Mode with `qm` (a
/// suite name), the tunnel a Connection (`active`) or a Passive-connection.
fn isakmpd_conf(active: bool, mm: &str, qm: &str) -> String {
    let list = if active {
        "Connections"
    } else {
        "Passive-connections"
    };
    let net = |n: &str, a: &str| {
        format!("[{n}]\nID-type=IPV4_ADDR_SUBNET\nNetwork={a}\nNetmask=255.255.255.0\n")
    };
    format!(
        "[General]\nRetransmits=2\nExchange-max-time=30\nCheck-interval=3600\n\
         [Phase 1]\n192.0.2.2=pluto\n[Phase 2]\n{list}=tun\n\
         [pluto]\nPhase=1\nAddress=192.0.2.2\nConfiguration=mm\nAuthentication={PSK}\n\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms={mm}\n\
         [tun]\nPhase=2\nISAKMP-peer=pluto\nConfiguration=qm\nLocal-ID=ours\nRemote-ID=theirs\n\
         [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites={qm}\n{}{}",
        net("ours", "198.51.100.0"),
        net("theirs", "203.0.113.0"),
    )
}

fn v1_pluto(lsw: &'static Libreswan, name: &str, netns: &str, algs: &str) -> Pluto {
    Pluto::start(
        lsw,
        name,
        netns,
        &conn("v1", &format!("\tikev2=no\n\tauthby=secret\n{algs}")),
        &format!("192.0.2.2 192.0.2.1 : PSK \"{PSK}\"\n"),
        None,
    )
}

/// Our FIFO `S` result.
fn isakmpd_sas(d: &Daemon) -> String {
    let res = d.run_file("isakmpd.result");
    let _ = fs::remove_file(&res);
    d.fifo_sync("S\n");
    fs::read_to_string(res).unwrap_or_default()
}

/// (inbound, outbound) SPI of our phase 2 SA in the `S` result ("SPI 0" is the outbound
/// one, to the peer; "SPI 1" the inbound one).
fn isakmpd_spis(s: &str) -> (String, String) {
    let spi = |n: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("SPI {n}: ")))
            .map(|x| x.trim().to_string())
            .unwrap_or_else(|| panic!("no SPI {n} in\n{s}"))
    };
    (spi("1"), spi("0"))
}

fn wait_log(d: &Daemon, what: &str) {
    d.wait_for(|| d.log().contains(what), what);
}

#[test]
fn isakmpd_main_mode_initiates_to_pluto_with_pfs() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lm");
    let p = v1_pluto(
        lsw,
        "lsw-v1r",
        &link.b,
        "\tike=aes256-sha2_256;modp2048\n\tesp=aes128-sha2_256;modp2048\n\tpfs=yes\n",
    );
    let us = start_in(
        "lsw-isakmpd-i",
        &isakmpd_conf(
            true,
            "AES-256-SHA2-256-GRP14",
            "QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE",
        ),
        &[],
        Some(&link.a),
    );
    wait_log(&us, "quick mode done: src:");
    let log = p.wait_log("IPsec SA established tunnel mode");
    assert!(
        log.contains(
            "IKE SA established {auth=PRESHARED_KEY cipher=AES_CBC_256 integ=HMAC_SHA2_256 group=MODP2048}"
        ),
        "{log}"
    );
    let sas = isakmpd_sas(&us);
    assert!(sas.contains("(Phase 1/Initiator)"), "{sas}");
    assert!(
        sas.contains("Transform: AES-256-CBC SHA2-256 group 14"),
        "{sas}"
    );
    let (spi_in, spi_out) = isakmpd_spis(&sas);
    same_esp_sas(
        &p,
        (spi_in.clone(), spi_out),
        "AES_CBC_128-HMAC_SHA2_256_128",
    );
    let spi_in = u32::from_str_radix(&spi_in, 16).unwrap();
    assert!(
        log.contains("responding to Quick Mode proposal"),
        "pluto took our HASH(1) and PFS KE: {log}"
    );

    // Our DELETE of the phase 2 SA: pluto drops it (naming our inbound SPI, its
    // outbound). pluto then deletes its now idle ISAKMP SA, which we honour.
    us.fifo("t quick tun\n");
    p.wait_log(&format!("received Delete SA(0x{spi_in:08x}) payload"));
    p.wait_until(
        "whack --showstates",
        "no IPsec SA",
        || p.states(),
        |s| !s.contains("STATE_QUICK"),
    );
    us.wait_for(
        || !isakmpd_sas(&us).contains("Phase 1"),
        "phase 1 SA deleted by pluto's DELETE",
    );
    assert!(us.log().contains("deletes phase 1 SA"), "{}", us.log());
}

#[test]
fn pluto_main_mode_initiates_to_isakmpd_without_pfs() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Ln");
    let us = start_in(
        "lsw-isakmpd-r",
        &isakmpd_conf(
            false,
            "AES-128-SHA2-256-GRP19",
            "QM-ESP-AES-256-SHA2-256-SUITE",
        ),
        &[],
        Some(&link.a),
    );
    let p = v1_pluto(
        lsw,
        "lsw-v1i",
        &link.b,
        "\tike=aes128-sha2_256;dh19\n\tesp=aes256-sha2_256\n\tpfs=no\n",
    );
    let out = p.whack(&["--name", "v1", "--initiate"]);
    assert!(
        out.contains("IPsec SA established tunnel mode"),
        "{out}\n{}",
        us.log()
    );
    assert!(
        out.contains("cipher=AES_CBC_128 integ=HMAC_SHA2_256 group=DH19"),
        "{out}"
    );
    wait_log(&us, "phase 1 done (as responder)");
    // pluto is done once it has sent Quick Mode's third message; we once we have it.
    wait_log(&us, "quick mode done (as responder)");
    let sas = isakmpd_sas(&us);
    assert!(sas.contains("(Phase 1/Responder)"), "{sas}");
    let spis = isakmpd_spis(&sas);
    same_esp_sas(&p, spis, "AES_CBC_256-HMAC_SHA2_256_128");
    // pluto's DELETEs end ours.
    let out = p.whack(&["--name", "v1", "--terminate"]);
    assert!(out.contains("sending notification"), "{out}");
    us.wait_for(
        || !isakmpd_sas(&us).contains("Phase"),
        "SAs deleted by pluto's DELETEs",
    );
    assert!(us.log().contains("deletes phase 1 SA"), "{}", us.log());
}

// ---- IKEv2 with RSA certificates -------------------------------------------------------

/// One CA's RSA certificates for west (us: 192.0.2.1, west.example) and east (pluto:
/// 192.0.2.2, east.example): ours laid out as /etc/iked (`etc`), pluto's key and
/// certificate as a PKCS#12 file (`p12`, no password) with the CA certificate (`ca`).
struct Certs {
    dir: Scratch,
    etc: PathBuf,
}

impl Certs {
    fn new(name: &str) -> Certs {
        Certs::with_bits(name, 2048)
    }

    /// With host keys of `bits` bits.
    fn with_bits(name: &str, bits: u32) -> Certs {
        let dir = Scratch::new(name);
        let d = dir.dir.join("pki");
        pki::ca(&d, "ca");
        for (host, ip) in [("west.example", "192.0.2.1"), ("east.example", "192.0.2.2")] {
            if bits == 2048 {
                pki::host(&d, "ca", host, ip);
            } else {
                pki::host_rsa(&d, "ca", host, ip, bits);
            }
        }
        let etc = dir.dir.join("etc");
        for sub in ["private", "certs", "ca", "crls", "pubkeys"] {
            fs::create_dir_all(etc.join(sub)).unwrap();
        }
        for (from, to) in [
            ("west.example.key", "private/local.key"),
            ("west.example.crt", "certs/west.crt"),
            ("ca.crt", "ca/ca.crt"),
        ] {
            fs::copy(d.join(from), etc.join(to)).unwrap();
        }
        let st = Command::new("openssl")
            .args(["pkcs12", "-export", "-inkey", "east.example.key"])
            .args([
                "-in",
                "east.example.crt",
                "-name",
                "east",
                "-out",
                "east.p12",
            ])
            .args(["-passout", "pass:"])
            .current_dir(&d)
            .status()
            .unwrap();
        assert!(st.success(), "openssl pkcs12");
        Certs { dir, etc }
    }

    /// pluto with `conn` authenticating by its certificate.
    fn pluto_with(&self, lsw: &'static Libreswan, name: &str, netns: &str, conn: &str) -> Pluto {
        let d = self.dir.dir.join("pki");
        Pluto::start(
            lsw,
            name,
            netns,
            conn,
            "",
            Some((&d.join("east.p12"), &d.join("ca.crt"))),
        )
    }

    fn pluto(&self, lsw: &'static Libreswan, name: &str, netns: &str) -> Pluto {
        self.pluto_with(
            lsw,
            name,
            netns,
            &v2_conn(
                "\tauthby=rsasig\n\tleftcert=east\n\tleftid=@east.example\n\
                 \trightid=@west.example\n\trightca=%same\n",
            ),
        )
    }
}

/// What pluto's log and ours say once the tunnel is up with certificates.
fn check_cert_auth(us: &Iked, p: &Pluto) {
    let ol = us.log();
    assert!(
        ol.contains("peer authenticated by certificate \"C=CH, O=isakmpd test, CN=east.example\""),
        "{ol}"
    );
    // pluto checked our signature (RFC 7427, PKCS#1 v1.5 with SHA-256) with our
    // certificate, chained to the CA.
    let log = p.log();
    assert!(
        log.contains(
            "authenticated peer '2048-bit PKCS#1 1.5 RSA with SHA2_256' digital signature using peer certificate '@west.example' issued by CA 'C=CH, O=isakmpd test, CN=ca'"
        ),
        "{log}"
    );
}

#[test]
fn rsa_certificates_both_ways() {
    let Some(lsw) = lsw() else { return };
    let c = Certs::new("lsw-pki");
    {
        let link = Link::new("Lc");
        let p = c.pluto(lsw, "lsw-cert-r", &link.b);
        let us = Iked::start_with_etc(
            "lsw-cert-i",
            &link.a,
            &iked_conf("active", ""),
            Some(&c.etc),
        );
        let ours = us.wait_sa("our IKE SA with pluto", iked_established);
        p.wait_log("responder established Child SA");
        same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");
        check_cert_auth(&us, &p);
    }
    {
        let link = Link::new("Ld");
        let us = Iked::start_with_etc(
            "lsw-cert-r",
            &link.a,
            &iked_conf("passive", ""),
            Some(&c.etc),
        );
        let p = c.pluto(lsw, "lsw-cert-i", &link.b);
        let out = p.whack(&["--name", "v2", "--initiate"]);
        assert!(
            out.contains("initiator established Child SA"),
            "{out}\n{}",
            us.log()
        );
        let ours = us.wait_sa("our responder SA", iked_established);
        same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");
        check_cert_auth(&us, &p);
    }
}

/// Our capture (`-L`: decrypted) as (source, exchange type, notify type) per message,
/// after checking that tshark finds nothing malformed.
fn capture(us: &Daemon) -> Vec<(String, String, String)> {
    us.fifo_sync("p off\n");
    let out = Command::new("tshark")
        .arg("-r")
        .arg(us.run_file("isakmpd.pcap"))
        .args(["-T", "fields", "-e", "ip.src", "-e", "isakmp.exchangetype"])
        .args(["-e", "isakmp.notify.msgtype", "-e", "_ws.malformed"])
        .output()
        .expect("tshark (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.get(3).is_none_or(|m| m.is_empty()), "malformed: {text}");
            let g = |i: usize| f.get(i).unwrap_or(&"").to_string();
            (g(0), g(1), g(2))
        })
        .collect()
}

/// How many R-U-THERE (36136) from `from` were acknowledged (36137) by the other side.
fn dpd_pairs(cap: &[(String, String, String)], from: &str) -> usize {
    cap.windows(2)
        .filter(|w| w[0].0 == from && w[0].2 == "36136" && w[1].0 != from && w[1].2 == "36137")
        .count()
}

/// Dead peer detection (RFC 3706) both ways, seen in our capture: pluto's R-U-THEREs
/// (`dpddelay=1`: one a second) that we acknowledge, then ours (`DPD-check-interval=1`:
/// the first after a second of silence, the next 5 s after an answer) that pluto
/// acknowledges; the SAs stay up on both sides.
#[test]
fn ikev1_dpd_both_ways() {
    let Some(lsw) = lsw() else { return };
    for (tag, ours, theirs) in [
        ("Lv", "", "\tdpddelay=1\n\tdpdtimeout=10\n"),
        ("Lw", "DPD-check-interval=1\n", ""),
    ] {
        let link = Link::new(tag);
        let conf = isakmpd_conf(true, "AES-256-SHA2-256-GRP14", "QM-ESP-AES-SHA2-256-SUITE")
            .replace("[Phase 1]", &format!("{ours}[Phase 1]"));
        let p = v1_pluto(
            lsw,
            &format!("lsw-dpd-{tag}p"),
            &link.b,
            &format!("\tike=aes256-sha2_256;modp2048\n\tesp=aes128-sha2_256\n\tpfs=no\n{theirs}\tdpdaction=clear\n"),
        );
        let us = start_in(&format!("lsw-dpd-{tag}"), &conf, &["-L"], Some(&link.a));
        wait_log(&us, "quick mode done: src:");
        p.wait_log("IPsec SA established tunnel mode");
        std::thread::sleep(std::time::Duration::from_millis(3500));
        let cap = capture(&us);
        let (asker, answerer, least) = if ours.is_empty() {
            ("192.0.2.2", "us", 2)
        } else {
            ("192.0.2.1", "pluto", 1)
        };
        assert!(
            dpd_pairs(&cap, asker) >= least,
            "R-U-THEREs from {asker} acknowledged by {answerer}: {cap:?}"
        );
        assert!(p.states().contains("STATE_QUICK_R2"), "{}", p.states());
        assert!(isakmpd_sas(&us).contains("Phase 2"));
    }
}

/// Main Mode with RSA signatures and the same certificates (IDs the addresses, in the
/// certificates' subjectAltName), each side starting once; our /etc/isakmpd has the
/// layout of /etc/iked.
#[test]
fn ikev1_rsa_certificates_both_ways() {
    let Some(lsw) = lsw() else { return };
    let c = Certs::new("lsw-pki1");
    let pluto_conn = conn(
        "v1",
        "\tikev2=no\n\tauthby=rsasig\n\tleftcert=east\n\tleftid=192.0.2.2\n\
         \trightid=192.0.2.1\n\trightca=%same\n\tike=aes256-sha2_256;modp2048\n\
         \tesp=aes128-sha2_256\n\tpfs=no\n",
    );
    for we_start in [true, false] {
        let link = Link::new(if we_start { "Le" } else { "Lf" });
        let p = c.pluto_with(lsw, &format!("lsw-cert1-p{we_start}"), &link.b, &pluto_conn);
        let us = common::start_with_etc(
            &format!("lsw-cert1-{we_start}"),
            &isakmpd_conf(
                we_start,
                "AES-256-SHA2-256-GRP14-RSA_SIG",
                "QM-ESP-AES-SHA2-256-SUITE",
            ),
            &[],
            Some(&link.a),
            Some(&c.etc),
        );
        if !we_start {
            let out = p.whack(&["--name", "v1", "--initiate"]);
            assert!(out.contains("IPsec SA established"), "{out}\n{}", us.log());
        }
        p.wait_log("IPsec SA established tunnel mode");
        wait_log(&us, "phase 2 SA tun up");
        let log = p.log();
        assert!(
            log.contains(
                "authenticated peer '2048-bit RSA with SHA1' signature using peer certificate '192.0.2.1' issued by CA 'C=CH, O=isakmpd test, CN=ca'"
            ) && log.contains("IKE SA established {auth=RSA_SIG cipher=AES_CBC_256"),
            "{log}"
        );
        let ol = us.log();
        assert!(
            ol.contains("authenticated by certificate") && ol.contains("CN=east.example"),
            "{ol}"
        );
        same_esp_sas(
            &p,
            isakmpd_spis(&isakmpd_sas(&us)),
            "AES_CBC_128-HMAC_SHA2_256_128",
        );
    }
}

/// pluto with `encapsulation=yes` (it claims to be behind a NAT, RFC 3947/7296 NAT-D):
/// IKEv2 both ways moves to port 4500 with UDP-encapsulated ESP; then pluto deletes the
/// CHILD SA alone and our IKE SA stays.
#[test]
fn ikev2_forced_nat_traversal_and_child_delete() {
    let Some(lsw) = lsw() else { return };
    let pluto_conn = v2_conn(
        "\tauthby=secret\n\tleftid=@east.example\n\trightid=@west.example\n\tencapsulation=yes\n",
    );
    let secrets = format!("@east.example @west.example : PSK \"{PSK}\"\n");
    for we_start in [true, false] {
        let link = Link::new(if we_start { "Na" } else { "Nb" });
        let mode = if we_start { "active" } else { "passive" };
        let us = Iked::start(
            &format!("lsw-nat-{mode}"),
            &link.a,
            &iked_conf(mode, &psk_clause()),
        );
        let p = Pluto::start(
            lsw,
            &format!("lsw-natp-{mode}"),
            &link.b,
            &pluto_conn,
            &secrets,
            None,
        );
        if !we_start {
            let out = p.whack(&["--name", "v2", "--initiate"]);
            assert!(out.contains("established Child SA"), "{out}\n{}", us.log());
        }
        let ours = us.wait_sa("our SA with pluto", iked_established);
        assert!(
            ours.contains("192.0.2.1:4500->192.0.2.2:4500<FQDN/east.example>")
                && ours.contains(if we_start { " i natt " } else { " r natt " }),
            "{ours}"
        );
        p.wait_log("established Child SA");
        same_esp_sas(
            &p,
            iked_spis(&ours),
            "AES_GCM_16_256-NONE NATD=192.0.2.1:4500",
        );
        assert!(p.log().contains("{ESPinUDP=>"), "{}", p.log());
        if !we_start {
            // The CHILD SA alone (pluto's state #2).
            let out = p.whack(&["--deletestate", "2"]);
            assert!(
                out.contains("deleting established Child SA using IKE SA #1"),
                "{out}"
            );
            let ours = us.wait_sa("our CHILD SA deleted", |s| !s.contains("iked_activesas:"));
            assert!(ours.contains("ESTABLISHED"), "the IKE SA stays: {ours}");
            assert!(
                p.states().contains("STATE_V2_ESTABLISHED_IKE_SA"),
                "{}",
                p.states()
            );
        }
    }
}

/// IKEv1 with pluto's `encapsulation=yes`, both ways: NAT-D in Main Mode (RFC 3947),
/// phase 1 moves to port 4500, Quick Mode negotiates UDP-encapsulated tunnel mode.
#[test]
fn ikev1_forced_nat_traversal_both_ways() {
    let Some(lsw) = lsw() else { return };
    for we_start in [true, false] {
        let link = Link::new(if we_start { "Nc" } else { "Nd" });
        let p = v1_pluto(
            lsw,
            &format!("lsw-nat1p-{we_start}"),
            &link.b,
            "\tike=aes256-sha2_256;modp2048\n\tesp=aes128-sha2_256\n\tpfs=no\n\tencapsulation=yes\n",
        );
        let us = start_in(
            &format!("lsw-nat1-{we_start}"),
            &isakmpd_conf(
                we_start,
                "AES-256-SHA2-256-GRP14",
                "QM-ESP-AES-SHA2-256-SUITE",
            ),
            &[],
            Some(&link.a),
        );
        if !we_start {
            let out = p.whack(&["--name", "v1", "--initiate"]);
            assert!(out.contains("IPsec SA established"), "{out}\n{}", us.log());
        }
        p.wait_log("IPsec SA established tunnel mode");
        wait_log(&us, "phase 2 SA tun up");
        let ol = us.log();
        assert!(
            ol.contains("phase 2 SA tun up: IPSEC_ESP spi in ")
                && ol.contains(" with 192.0.2.2:4500"),
            "{ol}"
        );
        if we_start {
            assert!(
                ol.contains("NAT detected; main mode with 192.0.2.2 continues on port 4500"),
                "{ol}"
            );
        }
        same_esp_sas(
            &p,
            isakmpd_spis(&isakmpd_sas(&us)),
            "AES_CBC_128-HMAC_SHA2_256_128 NATD=192.0.2.1:4500",
        );
        assert!(
            p.states().contains("\"v1\":4500 STATE_QUICK_"),
            "{}",
            p.states()
        );
    }
}

/// dumpcap capturing UDP on `iface` in `netns` into a file, until [`Wire::stop`].
struct Wire {
    child: std::process::Child,
    file: PathBuf,
}

impl Wire {
    fn start(netns: &str, iface: &str, file: PathBuf) -> Wire {
        let _ = fs::remove_file(&file);
        let child = Command::new("ip")
            .args([
                "netns", "exec", netns, "dumpcap", "-q", "-i", iface, "-f", "udp", "-w",
            ])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dumpcap (tshark's, scripts/setup.sh installs it)");
        // Capturing once the file has its header.
        let t0 = std::time::Instant::now();
        while fs::metadata(&file).map_or(true, |m| m.len() == 0) {
            assert!(t0.elapsed().as_secs() < 10, "dumpcap did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Wire { child, file }
    }

    /// Stops the capture; per IKE message: (source, exchange type, first payload,
    /// fragment number, total fragments) (the last two empty for unfragmented ones).
    fn stop(mut self) -> Vec<[String; 5]> {
        // What the kernel has queued for dumpcap is read before it stops.
        std::thread::sleep(std::time::Duration::from_millis(500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let t0 = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if t0.elapsed().as_secs() > 5 {
                let _ = self.child.kill();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args(["-T", "fields", "-e", "ip.src", "-e", "isakmp.exchangetype"])
            .args(["-e", "isakmp.nextpayload", "-e", "isakmp.frag.number"])
            .args(["-e", "isakmp.frag.total"])
            .output()
            .unwrap();
        let _ = fs::remove_file(&self.file);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let g = |i: usize| f.get(i).unwrap_or(&"").to_string();
                let first = g(2).split(',').next().unwrap_or("").to_string();
                [g(0), g(1), first, g(3), g(4)]
            })
            .collect()
    }
}

/// IKE fragmentation (RFC 7383) both ways: with 4096-bit RSA certificates IKE_AUTH does
/// not fit the 1500-byte link; with `set fragmentation` (and pluto's default
/// `fragmentation=yes`) each side's IKE_AUTH travels as SKF fragments, which the other
/// reassembles (seen on the wire).
#[test]
fn ikev2_fragmentation_both_ways() {
    let Some(lsw) = lsw() else { return };
    let c = Certs::with_bits("lsw-pki4k", 4096);
    for we_start in [true, false] {
        let tag = if we_start { "Fa" } else { "Fb" };
        let link = Link::new(tag);
        let mode = if we_start { "active" } else { "passive" };
        let wire = Wire::start(
            &link.b,
            &format!("v{tag}b"),
            c.dir.dir.join(format!("{tag}.pcap")),
        );
        let p = c.pluto(lsw, &format!("lsw-frag-p{mode}"), &link.b);
        let conf = format!("set fragmentation\n{}", iked_conf(mode, ""));
        let us = Iked::start_with_etc(&format!("lsw-frag-{mode}"), &link.a, &conf, Some(&c.etc));
        if !we_start {
            let out = p.whack(&["--name", "v2", "--initiate"]);
            assert!(out.contains("established Child SA"), "{out}\n{}", us.log());
        }
        let ours = us.wait_sa("our SA with pluto", iked_established);
        p.wait_log("established Child SA");
        same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");
        let msgs = wire.stop();
        for who in ["192.0.2.1", "192.0.2.2"] {
            let auth: Vec<_> = msgs
                .iter()
                .filter(|m| m[0] == who && m[1] == "35")
                .collect();
            assert!(
                auth.len() >= 2
                    && auth
                        .iter()
                        .all(|m| m[2] == "53" && m[4] == auth.len().to_string()),
                "IKE_AUTH from {who} in SKF fragments: {msgs:?}"
            );
        }
    }
}

/// Traffic selector narrowing (RFC 7296 §2.9) both ways: pluto asks for less than our
/// passive rule allows (203.0.113.64/26 <-> 198.51.100.0/25) and gets it; our active rule
/// asks for 198.51.100.0/24 and pluto (`narrowing=yes`, its own side /25) narrows it.
/// Our flows are the narrowed ones.
#[test]
fn traffic_selector_narrowing_both_ways() {
    let Some(lsw) = lsw() else { return };
    let secrets = format!("@east.example @west.example : PSK \"{PSK}\"\n");
    let base = v2_conn("\tauthby=secret\n\tleftid=@east.example\n\trightid=@west.example\n")
        .replace("rightsubnet=198.51.100.0/24", "rightsubnet=198.51.100.0/25");
    let flows = |s: &str, ours: &str, theirs: &str| {
        s.contains(&format!("iked_flows: 0x100000 ESP out {ours} -> {theirs} "))
            && s.contains(&format!("iked_flows: 0x100000 ESP in {theirs} -> {ours} "))
    };
    {
        let link = Link::new("Ta");
        let us = Iked::start("lsw-ts-r", &link.a, &iked_conf("passive", &psk_clause()));
        let conn = base.replace("leftsubnet=203.0.113.0/24", "leftsubnet=203.0.113.64/26");
        let p = Pluto::start(lsw, "lsw-ts-pi", &link.b, &conn, &secrets, None);
        let out = p.whack(&["--name", "v2", "--initiate"]);
        assert!(
            out.contains("IPsec tunnel [203.0.113.64-203.0.113.127:0-65535 0] -> [198.51.100.0-198.51.100.127:0-65535 0]"),
            "{out}\n{}",
            us.log()
        );
        let ours = us.wait_sa("our SA", iked_established);
        assert!(flows(&ours, "198.51.100.0/25", "203.0.113.64/26"), "{ours}");
        same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");
    }
    let link = Link::new("Tb");
    let p = Pluto::start(
        lsw,
        "lsw-ts-pr",
        &link.b,
        &format!("{base}\tnarrowing=yes\n"),
        &secrets,
        None,
    );
    let us = Iked::start("lsw-ts-i", &link.a, &iked_conf("active", &psk_clause()));
    let ours = us.wait_sa("our SA", iked_established);
    assert!(flows(&ours, "198.51.100.0/25", "203.0.113.0/24"), "{ours}");
    p.wait_log("IPsec tunnel [203.0.113.0-203.0.113.255:0-65535 0] -> [198.51.100.0-198.51.100.127:0-65535 0]");
    same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE");
}

/// pluto's IKEv2 liveness checks (`dpddelay=1`, `dpdtimeout=3`: empty INFORMATIONAL
/// requests) are answered: after 5 s its SAs are still there, and the wire shows its
/// requests and our responses.
#[test]
fn ikev2_liveness_answered() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lz");
    let wire = Wire::start(
        &link.b,
        "vLzb",
        std::env::temp_dir().join(format!("lsw-live-{}.pcap", std::process::id())),
    );
    let us = Iked::start("lsw-live", &link.a, &iked_conf("passive", &psk_clause()));
    let conn = v2_conn(
        "\tauthby=secret\n\tleftid=@east.example\n\trightid=@west.example\n\tdpddelay=1\n\tdpdtimeout=3\n\tdpdaction=clear\n",
    );
    let secrets = format!("@east.example @west.example : PSK \"{PSK}\"\n");
    let p = Pluto::start(lsw, "lsw-live-p", &link.b, &conn, &secrets, None);
    let out = p.whack(&["--name", "v2", "--initiate"]);
    assert!(out.contains("DPD=active"), "{out}");
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(
        p.states().contains("STATE_V2_ESTABLISHED_CHILD_SA"),
        "{}\n{}",
        p.states(),
        p.log()
    );
    assert!(iked_established(&us.show_sa()));
    let msgs = wire.stop();
    let informational = |who: &str| msgs.iter().filter(|m| m[0] == who && m[1] == "37").count();
    assert!(
        informational("192.0.2.2") >= 3 && informational("192.0.2.1") >= 3,
        "liveness requests and answers: {msgs:?}"
    );
}

/// Over IPv6 (2001:db8::1 us, 2001:db8::2 pluto; selectors 2001:db8:1::/64 and
/// 2001:db8:2::/64): IKEv2 from our iked, then IKEv1 Main + Quick Mode from our
/// isakmpd.
#[test]
fn ipv6_ikev2_and_ikev1() {
    let Some(lsw) = lsw() else { return };
    let l = Link::new("L6");
    for (ns, dev, a) in [
        (&l.a, "vL6a", "2001:db8::1/64"),
        (&l.b, "vL6b", "2001:db8::2/64"),
    ] {
        let st = Command::new("ip")
            .args(["-n", ns, "addr", "add", a, "dev", dev, "nodad"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let conn = |name: &str, extra: &str| {
        format!(
            "conn {name}\n\tleft=2001:db8::2\n\tleftsubnet=2001:db8:2::/64\n\tright=2001:db8::1\n\
             \trightsubnet=2001:db8:1::/64\n\tleftupdown=/bin/true\n\tauto=add\n\tauthby=secret\n{extra}"
        )
    };
    {
        let p = Pluto::start(
            lsw,
            "lsw-v6-p2",
            &l.b,
            &conn(
                "v6",
                "\tikev2=insist\n\tleftid=@east.example\n\trightid=@west.example\n",
            ),
            &format!("@east.example @west.example : PSK \"{PSK}\"\n"),
            None,
        );
        let conf = iked_conf("active", &psk_clause())
            .replace(
                "esp from 198.51.100.0/24 to 203.0.113.0/24",
                "esp inet6 from 2001:db8:1::/64 to 2001:db8:2::/64",
            )
            .replace(
                "local 192.0.2.1 peer 192.0.2.2",
                "local 2001:db8::1 peer 2001:db8::2",
            );
        let us = Iked::start("lsw-v6-2", &l.a, &conf);
        let ours = us.wait_sa("our SA over IPv6", iked_established);
        assert!(
            ours.contains("[2001:db8::1]:500->[2001:db8::2]:500<FQDN/east.example>")
                && ours
                    .contains("iked_flows: 0x100000 ESP out 2001:db8:1::/64 -> 2001:db8:2::/64 "),
            "{ours}"
        );
        p.wait_log("responder established Child SA");
        same_esp_sas_at(
            &p,
            iked_spis(&ours),
            "AES_GCM_16_256-NONE",
            ("2001:db8::1", "2001:db8::2"),
        );
    }
    let p = Pluto::start(
        lsw,
        "lsw-v6-p1",
        &l.b,
        &conn("v16", "\tikev2=no\n\tesp=aes128-sha2_256\n\tpfs=no\n"),
        &format!("2001:db8::2 2001:db8::1 : PSK \"{PSK}\"\n"),
        None,
    );
    let conf = isakmpd_conf(true, "AES-256-SHA2-256-GRP14", "QM-ESP-AES-SHA2-256-SUITE")
        .replace("192.0.2.2", "2001:db8::2")
        .replace("IPV4_ADDR_SUBNET", "IPV6_ADDR_SUBNET")
        .replace("Network=198.51.100.0", "Network=2001:db8:1::")
        .replace("Network=203.0.113.0", "Network=2001:db8:2::")
        .replace("Netmask=255.255.255.0", "Netmask=ffff:ffff:ffff:ffff::");
    let us = start_in("lsw-v6-1", &conf, &[], Some(&l.a));
    wait_log(&us, "quick mode done: src: 2001:db8::1 dst: 2001:db8::2");
    let log = p.wait_log("IPsec SA established tunnel mode");
    assert!(
        log.contains("the peer proposed: 2001:db8:2::/64 -<all>-> 2001:db8:1::/64"),
        "{log}"
    );
    same_esp_sas_at(
        &p,
        isakmpd_spis(&isakmpd_sas(&us)),
        "AES_CBC_128-HMAC_SHA2_256_128",
        ("2001:db8::1", "2001:db8::2"),
    );
}

/// Our phase 2 SA with an 8 s lifetime: at its soft expiry (85-95 %) isakmpd runs a new
/// Quick Mode with pluto, and at the hard expiry both sides drop the old SA; the new
/// one is the same on both sides.
#[test]
fn isakmpd_renews_phase_2_before_expiry() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lq");
    let p = v1_pluto(
        lsw,
        "lsw-renew-p",
        &link.b,
        "\tike=aes256-sha2_256;modp2048\n\tesp=aes128-sha2_256\n\tpfs=no\n",
    );
    let conf = isakmpd_conf(true, "AES-256-SHA2-256-GRP14", "QM-SHORT")
        + "[QM-SHORT]\nProtocols=QM-SHORT-P\n[QM-SHORT-P]\nPROTOCOL_ID=IPSEC_ESP\nTransforms=QM-SHORT-X\n\
           [QM-SHORT-X]\nTRANSFORM_ID=AES\nKEY_LENGTH=128\nENCAPSULATION_MODE=TUNNEL\n\
           AUTHENTICATION_ALGORITHM=HMAC_SHA2_256\nLife=LIFE_SHORT\n\
           [LIFE_SHORT]\nLIFE_TYPE=SECONDS\nLIFE_DURATION=8\n";
    let us = start_in("lsw-renew", &conf, &[], Some(&link.a));
    wait_log(&us, "quick mode done: src:");
    let (old_in, old_out) = isakmpd_spis(&isakmpd_sas(&us));
    wait_log(&us, "phase 2 SA tun: soft lifetime reached, renegotiating");
    wait_log(
        &us,
        &format!("phase 2 SA tun deleted: IPSEC_ESP spi in {old_in} out {old_out}"),
    );
    let sas = isakmpd_sas(&us);
    assert_eq!(sas.matches("(Phase 2)").count(), 1, "{sas}");
    let new = isakmpd_spis(&sas);
    assert_ne!(new.0, old_in);
    p.wait_until(
        "whack --showstates",
        "the old IPsec SA gone",
        || p.states(),
        |s| !s.contains("#2:"),
    );
    same_esp_sas(&p, new, "AES_CBC_128-HMAC_SHA2_256_128");
    assert_eq!(
        p.log().matches("responding to Quick Mode proposal").count(),
        2,
        "{}",
        p.log()
    );
}

/// pluto's IKEv1 defaults as initiator (no `ike=`/`esp=`): its Quick Mode proposal is
/// numbered 0 and offers AES-128-SHA1 and 3DES-SHA1 with MODP2048 PFS; we pick AES.
#[test]
fn pluto_ikev1_default_proposals() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lo");
    let us = start_in(
        "lsw-v1def",
        &isakmpd_conf(
            false,
            "AES-256-SHA2-256-GRP14,AES-128-SHA-GRP14",
            "QM-ESP-AES-SHA-PFS-GRP14-SUITE",
        ),
        &[],
        Some(&link.a),
    );
    let p = v1_pluto(lsw, "lsw-v1def-p", &link.b, "");
    let out = p.whack(&["--name", "v1", "--initiate"]);
    assert!(
        out.contains("proposal=defaults pfsgroup=MODP2048") && out.contains("IPsec SA established"),
        "{out}\n{}",
        us.log()
    );
    wait_log(&us, "quick mode done (as responder)");
    same_esp_sas(
        &p,
        isakmpd_spis(&isakmpd_sas(&us)),
        "AES_CBC_128-HMAC_SHA1_96",
    );
}

/// pluto starts the IKE SA; our iked, its responder, rekeys it (`ikelifetime 5`: the new
/// IKE SA is ours as initiator) and then the CHILD SA under the new IKE SA (`lifetime
/// 7`, PFS); pluto follows both.
#[test]
fn iked_as_responder_rekeys_ike_sa_then_child() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lj");
    let conf = iked_conf(
        "passive",
        &format!("ikelifetime 5 lifetime 7 {}", psk_clause()),
    )
    .replace(
        "childsa enc aes-256-gcm",
        "childsa enc aes-256-gcm group ecp256",
    );
    let us = Iked::start("lsw-rr", &link.a, &conf);
    let p = v2_psk_pluto(lsw, "lsw-rr-p", &link.b);
    let out = p.whack(&["--name", "v2", "--initiate"]);
    assert!(
        out.contains("initiator established Child SA using #1"),
        "{out}"
    );
    let ours = us.wait_sa("our responder SA", iked_established);
    assert!(ours.contains(" ESTABLISHED r "), "{ours}");
    let (child, ike) = (iked_spis(&ours), ike_spis(&ours));
    let ours = us.wait_sa("the IKE SA rekeyed by us", |s| {
        s.lines().filter(|l| l.starts_with("iked_sas:")).count() == 1
            && s.contains(" ESTABLISHED i ")
            && ike_spis(s) != ike
    });
    assert_eq!(iked_spis(&ours), child, "the CHILD SA moved over: {ours}");
    p.wait_log("#3: responder rekeyed IKE SA #1");
    let ours = us.wait_sa("the CHILD SA rekeyed", |s| {
        iked_established(s) && iked_spis(s) != child
    });
    p.wait_log("#4: responder rekeyed Child SA #2 using #3");
    p.wait_until(
        "whack --showstates",
        "only the new SAs",
        || p.states(),
        |s| !s.contains("#1:") && !s.contains("#2:"),
    );
    same_esp_sas(&p, iked_spis(&ours), "AES_GCM_16_256-NONE-DH19");
}

/// pluto renews its phase 2 SA early (`salifetime=30s`, `rekeymargin=27s`: a new Quick
/// Mode after 3 s) while the old one lives on: we answer the second Quick Mode of the
/// same connection as responder and both sides then hold the same two SAs.
#[test]
fn pluto_renews_phase_2_with_isakmpd() {
    let Some(lsw) = lsw() else { return };
    let link = Link::new("Lr2");
    let us = start_in(
        "lsw-prenew",
        &isakmpd_conf(false, "AES-256-SHA2-256-GRP14", "QM-ESP-AES-SHA2-256-SUITE"),
        &[],
        Some(&link.a),
    );
    let p = v1_pluto(
        lsw,
        "lsw-prenew-p",
        &link.b,
        "\tike=aes256-sha2_256;modp2048\n\tesp=aes128-sha2_256\n\tpfs=no\n\
         \tsalifetime=30s\n\trekeymargin=27s\n\trekeyfuzz=0%\n",
    );
    let out = p.whack(&["--name", "v1", "--initiate"]);
    assert!(out.contains("IPsec SA established"), "{out}\n{}", us.log());
    let log = p.wait_log("#3: IPsec SA established tunnel mode");
    assert!(
        log.contains("#3: initiating Quick Mode") && log.contains("to replace #2"),
        "{log}"
    );
    us.wait_for(
        || us.log().matches("quick mode done (as responder)").count() == 2,
        "our second Quick Mode as responder",
    );
    let sas = isakmpd_sas(&us);
    let ours: Vec<(u32, u32)> = sas
        .split("\n\n")
        .filter(|b| b.contains("(Phase 2)"))
        .map(|b| {
            let (i, o) = isakmpd_spis(b);
            (
                u32::from_str_radix(&i, 16).unwrap(),
                u32::from_str_radix(&o, 16).unwrap(),
            )
        })
        .collect();
    assert_eq!(ours.len(), 2, "{sas}");
    let theirs = pluto::esp_sas(&p.states());
    for (i, o) in ours {
        assert!(
            theirs.contains(&(i, "192.0.2.1".into())) && theirs.contains(&(o, "192.0.2.2".into())),
            "ours {i:08x}/{o:08x}, pluto's {theirs:?}\n{sas}"
        );
    }
    assert_eq!(theirs.len(), 4, "{theirs:?}");
}
