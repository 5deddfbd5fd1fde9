//! Interop with strongSwan 5.9 (Debian's charon) in network namespaces: our daemon as
//! initiator and as responder, Main Mode with a pre-shared key, Quick Mode with and
//! without PFS, MODP2048 and ECP256, AES-CBC with SHA2; deletes both ways.
//!
//! This host kernel has no ESP, so charon runs its userspace ESP (kernel-libipsec). That
//! backend insists on UDP encapsulation, which needs NAT-T (not in this build yet): charon
//! completes every exchange, computes its keys and then fails to *install* the CHILD_SA
//! ("failed to create SAD entry"), after which it deletes it. The tests therefore check the
//! negotiation itself: both phase 1 SAs up, charon selecting our proposal, accepting our
//! HASH(1..3), and agreeing on the SPIs, and both sides honouring each other's DELETEs.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/pki.rs"]
mod pki;

#[path = "common/charon.rs"]
mod charon;

use charon::{Charon, PSK};

use common::{start_in, start_with_etc, Daemon, Link, Scratch};

fn our_conf(active: bool, mm: &str, qm: &str) -> String {
    our_conf_x(active, mm, qm, "ID_PROT")
}

fn our_conf_x(active: bool, mm: &str, qm: &str, exch: &str) -> String {
    format!(
        "[General]\nRetransmits=2\nExchange-max-time=30\nCheck-interval=3600\n\
[Phase 1]\n192.0.2.2=peer\n\
[Phase 2]\n{}=tun\n\
[peer]\nPhase=1\nAddress=192.0.2.2\nConfiguration=mm\nAuthentication={PSK}\n\
[mm]\nEXCHANGE_TYPE={exch}\nTransforms={mm}\n\
[tun]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\nLocal-ID=l\nRemote-ID=r\n\
[qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites={qm}\n\
[l]\nID-type=IPV4_ADDR_SUBNET\nNetwork=198.51.100.0\nNetmask=255.255.255.0\n\
[r]\nID-type=IPV4_ADDR_SUBNET\nNetwork=203.0.113.0\nNetmask=255.255.255.0\n",
        if active {
            "Connections"
        } else {
            "Passive-connections"
        }
    )
}

fn sas(d: &Daemon) -> String {
    let res = d.run_file("isakmpd.result");
    let _ = fs::remove_file(&res);
    d.fifo_sync("S\n");
    fs::read_to_string(res).unwrap_or_default()
}

fn wait_log(d: &Daemon, what: &str) {
    d.wait_for(|| d.log().contains(what), what);
}

fn tshark_clean(pcap: &Path) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-T",
            "fields",
            "-e",
            "isakmp.exchangetype",
            "-e",
            "_ws.malformed",
        ])
        .output()
        .expect("tshark (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() >= 9, "{text}");
    assert!(
        text.lines()
            .all(|l| l.split('\t').nth(1).is_none_or(str::is_empty)),
        "malformed: {text}"
    );
}

#[test]
fn we_initiate_main_and_quick_mode_with_pfs() {
    let link = Link::new("si");
    let charon = Charon::start(
        "swan-r",
        &link.b,
        "aes256-sha256-modp2048",
        "aes128-sha256-modp2048",
    );
    let ours = start_in(
        "swan-i",
        &our_conf(
            true,
            "AES-256-SHA2-256-GRP14",
            "QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE",
        ),
        &["-L"],
        Some(&link.a),
    );
    wait_log(&ours, "quick mode done: src:");
    let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
    assert!(
        log.contains(
            "IKE_SA v1[1] established between 192.0.2.2[192.0.2.2]...192.0.2.1[192.0.2.1]"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "selected proposal: IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048"
        ),
        "{log}"
    );
    assert!(
        log.contains("selected proposal: ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_2048"),
        "{log}"
    );
    assert!(
        log.contains("parsed QUICK_MODE request") && log.contains("[ HASH ]"),
        "charon took our HASH(3): {log}"
    );
    // charon's inbound SPI is our outbound one and the other way round.
    let ol = ours.log();
    let up = ol
        .lines()
        .find(|l| l.contains("phase 2 SA tun up:"))
        .expect("phase 2 up line");
    let words: Vec<&str> = up.split_whitespace().collect();
    let at = |w: &str| words[words.iter().position(|x| *x == w).unwrap() + 1];
    let (spi_in, spi_out) = (at("in"), at("out"));
    assert!(
        log.contains(&format!("SPI 0x{spi_out}, src 192.0.2.1 dst 192.0.2.2")),
        "SPI {spi_out} not in\n{log}"
    );
    assert!(
        log.contains(&format!("SPI 0x{spi_in}, src 192.0.2.2 dst 192.0.2.1")),
        "SPI {spi_in} not in\n{log}"
    );
    // We must honour its DELETE.
    ours.wait_for(
        || !sas(&ours).contains("Phase 2"),
        "phase 2 SA deleted by the peer's DELETE",
    );
    assert!(sas(&ours).contains("(Phase 1/Initiator)"));
    // Phase 1 DELETE from us.
    ours.fifo("t main 192.0.2.2\n");
    charon.wait_log("received DELETE for IKE_SA v1[1]");
    ours.fifo("p off\n");
    std::thread::sleep(Duration::from_millis(300));
    tshark_clean(&ours.run_file("isakmpd.pcap"));
}

#[test]
fn strongswan_initiates_ecp256_without_pfs() {
    let link = Link::new("sr");
    let charon = Charon::start("swan-i2", &link.b, "aes128-sha256-ecp256", "aes256-sha256");
    let ours = start_in(
        "swan-r2",
        &our_conf(
            false,
            "AES-128-SHA2-256-GRP19",
            "QM-ESP-AES-256-SHA2-256-SUITE",
        ),
        &[],
        Some(&link.a),
    );
    let out = charon.swanctl(&[
        "--initiate",
        "--ike",
        "v1",
        "--child",
        "net",
        "--timeout",
        "10",
    ]);
    wait_log(&ours, "phase 1 done (as responder)");
    let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
    assert!(log.contains("IKE_SA v1[1] established"), "{log}\n{out}");
    assert!(
        log.contains("selected proposal: ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ"),
        "charon took our HASH(2) and choice: {log}"
    );
    assert!(sas(&ours).contains("(Phase 1/Responder)"));
    // strongSwan deletes its IKE_SA: ours goes too.
    charon.swanctl(&["--terminate", "--ike", "v1", "--timeout", "5"]);
    ours.wait_for(
        || !sas(&ours).contains("Phase 1"),
        "phase 1 SA deleted by the peer's DELETE",
    );
    assert!(ours.log().contains("deletes phase 1 SA"), "{}", ours.log());
}

#[test]
fn aggressive_mode_both_ways() {
    // We initiate.
    let link = Link::new("sa");
    let charon = Charon::start_x(
        "swan-ar",
        &link.b,
        "aes128-sha1-modp2048",
        "aes128-sha1",
        true,
        None,
        0,
    );
    let ours = start_in(
        "swan-ai",
        &our_conf_x(
            true,
            "AES-128-SHA-GRP14",
            "QM-ESP-AES-128-SHA-SUITE",
            "AGGRESSIVE",
        ),
        &[],
        Some(&link.a),
    );
    wait_log(&ours, "quick mode done: src:");
    let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
    assert!(
        log.contains("parsed AGGRESSIVE request 0 [ SA KE No ID V V V V V ]"),
        "{log}"
    );
    assert!(log.contains("IKE_SA v1[1] established"), "{log}");
    // charon with kernel-libipsec always claims to be behind a NAT (to get UDP
    // encapsulation): NAT-D rides in messages 2 and 3, and message 3 already goes over
    // port 4500 (RFC 3947 §4).
    let ol = ours.log();
    assert!(
        ol.contains("NAT detected; aggressive mode with 192.0.2.2 continues on port 4500"),
        "{ol}"
    );
    assert!(
        log.contains("parsed AGGRESSIVE request 0 [ HASH NAT-D NAT-D ]")
            && log.contains("received packet: from 192.0.2.1[4500]"),
        "{log}"
    );
    drop(ours);
    drop(charon);
    drop(link);
    // strongSwan initiates.
    let link = Link::new("sb");
    let charon = Charon::start_x(
        "swan-ai2",
        &link.b,
        "aes256-sha256-modp2048",
        "aes128-sha256",
        true,
        None,
        0,
    );
    let ours = start_in(
        "swan-ar2",
        &our_conf_x(
            false,
            "AES-256-SHA2-256-GRP14",
            "QM-ESP-AES-128-SHA2-256-SUITE",
            "AGGRESSIVE",
        ),
        &[],
        Some(&link.a),
    );
    charon.swanctl(&[
        "--initiate",
        "--ike",
        "v1",
        "--child",
        "net",
        "--timeout",
        "10",
    ]);
    wait_log(&ours, "phase 1 done (as responder)");
    let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
    assert!(log.contains("parsed AGGRESSIVE response 0"), "{log}");
    assert!(sas(&ours).contains("(Phase 1/Responder)"));
    assert!(
        ours.log().contains("NAT-T: the peer is behind a NAT"),
        "{}",
        ours.log()
    );
}

/// A CA with certificates for west (us, 192.0.2.1) and east (charon, 192.0.2.2) in a
/// scratch directory, and beside them our /etc/isakmpd: the CA, west's certificate and
/// key. Returns (the directory, our etc).
fn west_and_east_pki(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let pkidir = std::env::temp_dir().join(format!("isakmpd-swan-{tag}-{}", std::process::id()));
    pki::ca(&pkidir, "ca");
    pki::host(&pkidir, "ca", "west", "192.0.2.1");
    pki::host(&pkidir, "ca", "east", "192.0.2.2");
    let etc = pkidir.join("etc");
    for d in ["ca", "certs", "private"] {
        fs::create_dir_all(etc.join(d)).unwrap();
    }
    fs::copy(pkidir.join("ca.crt"), etc.join("ca/ca.crt")).unwrap();
    fs::copy(pkidir.join("west.crt"), etc.join("certs/west.crt")).unwrap();
    fs::copy(pkidir.join("west.key"), etc.join("private/local.key")).unwrap();
    (pkidir, etc)
}

#[test]
fn main_mode_with_x509_certificates_both_ways() {
    x509_both_ways("ID_PROT", ["xi", "xr"]);
}

/// Aggressive Mode with RSA signatures (RFC 2409 §5.1) against charon's `aggressive =
/// yes`: certificates requested and sent both ways, each side's SIG verified.
#[test]
fn aggressive_mode_with_x509_certificates_both_ways() {
    let log = x509_both_ways("AGGRESSIVE", ["ai", "ar"]);
    // Our message 1 asks for a certificate, and our message 3 carries ours.
    assert!(
        log.contains("parsed AGGRESSIVE request 0 [ SA KE No ID CERTREQ"),
        "{log}"
    );
    assert!(
        log.contains("parsed AGGRESSIVE request 0 [ CERT SIG"),
        "{log}"
    );
}

/// A tunnel with RSA signatures in exchange `exch` with charon, we initiating (tag
/// `tags[0]`), then charon (`tags[1]`); returns charon's log of the first.
fn x509_both_ways(exch: &str, tags: [&str; 2]) -> String {
    let (pkidir, etc) = west_and_east_pki(tags[0]);
    let mut first = None;
    for (tag, we_start) in [(tags[0], true), (tags[1], false)] {
        let (_link, charon, ours) = cert_pair(tag, &pkidir, &etc, exch, we_start, |_| ());
        if !we_start {
            charon.swanctl(&[
                "--initiate",
                "--ike",
                "v1",
                "--child",
                "net",
                "--timeout",
                "10",
            ]);
        }
        wait_log(
            &ours,
            if we_start {
                "phase 1 done: initiator id"
            } else {
                "phase 1 done (as responder)"
            },
        );
        let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
        assert!(
            log.contains("authentication of '192.0.2.1' with RSA_EMSA_PKCS1_NULL successful"),
            "{log}"
        );
        assert!(log.contains("IKE_SA v1[1] established"), "{log}");
        let ol = ours.log();
        assert!(
            ol.contains("authenticated by certificate") && ol.contains("CN=east"),
            "{ol}"
        );
        assert!(
            ol.contains("x509: 1 CA certificate(s), our certificate:"),
            "{ol}"
        );
        first.get_or_insert(log);
    }
    let _ = fs::remove_dir_all(&pkidir);
    first.unwrap_or_default()
}

/// charon initiates with a certificate from a CA we do not trust: we refuse its Main
/// Mode message 5, or its Aggressive Mode message 3, and say so under the phase 1 keys,
/// which charon decrypts and reads (in Main Mode in the middle of its exchange).
/// (charon as an Aggressive Mode responder only queues an Informational exchange that
/// comes before its message 3, "as tasks still active": a refusal of its message 2 it
/// does not read before it gives up.)
#[test]
fn an_untrusted_charon_certificate_is_refused_in_a_notification_charon_reads() {
    refused_by_us("ut", "ID_PROT");
    refused_by_us("ua", "AGGRESSIVE");
}

fn refused_by_us(tag: &str, exch: &str) {
    let (pkidir, etc) = west_and_east_pki(tag);
    pki::ca(&pkidir, "otherca");
    fs::copy(pkidir.join("otherca.crt"), etc.join("ca/ca.crt")).unwrap();
    let (_link, charon, ours) = cert_pair(tag, &pkidir, &etc, exch, false, |_| ());
    charon.swanctl(&[
        "--initiate",
        "--ike",
        "v1",
        "--child",
        "net",
        "--timeout",
        "10",
    ]);
    wait_log(&ours, "authentication failed: certificate not trusted");
    let log = charon.wait_log("received INVALID_CERTIFICATE error notify");
    assert!(
        log.contains("parsed INFORMATIONAL_V1 request") && log.contains("[ HASH N(INVAL_CERT) ]"),
        "{log}"
    );
    if exch == "AGGRESSIVE" {
        // charon held the SA since our message 2; it is told to delete it.
        let log = charon.wait_log("received DELETE for IKE_SA v1[1]");
        assert!(log.contains("[ HASH D ]"), "{log}");
    } else {
        assert!(!log.contains("IKE_SA v1[1] established"), "{log}");
    }
    let ol = ours.log();
    assert!(
        ol.contains("sending notification INVALID_CERTIFICATE to 192.0.2.2:")
            && ol.contains("(protected by the phase 1 keys)"),
        "{ol}"
    );
    assert!(!sas(&ours).contains("Phase 1"));
    let _ = fs::remove_dir_all(&pkidir);
}

/// charon (`swan-<tag>c`) with east's certificate from `pkidir` on a new link, made
/// ready by `prepare`, then our daemon (`swan-<tag>o`, configuration from `etc`) with
/// RSA signatures in exchange `exch`, initiating if `we_start`.
fn cert_pair(
    tag: &str,
    pkidir: &Path,
    etc: &Path,
    exch: &str,
    we_start: bool,
    prepare: impl FnOnce(&Charon),
) -> (Link, Charon, Daemon) {
    let link = Link::new(tag);
    let charon = Charon::start_x(
        &format!("swan-{tag}c"),
        &link.b,
        "aes256-sha256-modp2048",
        "aes128-sha256",
        exch == "AGGRESSIVE",
        Some(pkidir),
        0,
    );
    prepare(&charon);
    let conf = our_conf_x(
        we_start,
        "AES-256-SHA2-256-GRP14-RSA_SIG",
        "QM-ESP-AES-128-SHA2-256-SUITE",
        exch,
    );
    let ours = start_with_etc(
        &format!("swan-{tag}o"),
        &conf,
        &[],
        Some(&link.a),
        Some(etc),
    );
    (link, charon, ours)
}

/// With a CRL of the CA that revokes charon's certificate in our crls/, we refuse charon
/// (the log names the CRL) and hold no phase 1 SA. (The other direction:
/// `charon_refuses_our_revoked_certificate`.)
#[test]
fn a_revoked_charon_certificate_is_refused() {
    let (pkidir, etc) = west_and_east_pki("crl");
    fs::create_dir_all(etc.join("crls")).unwrap();
    // East (charon) revoked in our CRL.
    let crl = pki::crl(&pkidir, "ca", &["east"]);
    fs::copy(&crl, etc.join("crls/ca.crl")).unwrap();
    fs::remove_file(&crl).unwrap();
    {
        let (_link, _charon, ours) = cert_pair("cr", &pkidir, &etc, "ID_PROT", true, |_| ());
        wait_log(&ours, "certificate revoked (CRL ca.crl)");
        let ol = ours.log();
        assert!(ol.contains("x509: CRL(s) in force: ca.crl"), "{ol}");
        assert!(!ol.contains("phase 1 done"), "{ol}");
        assert!(!sas(&ours).contains("Phase 1"));
    }
    let _ = fs::remove_dir_all(&pkidir);
}

/// With a CRL of the CA that revokes our certificate loaded into charon (swanctl's
/// x509crl/, `--load-creds`), charon finds the CRL by its authorityKeyIdentifier,
/// refuses our certificate as revoked and tells us AUTHENTICATION_FAILED; neither side
/// holds an SA and our daemon logs the refusal.
#[test]
fn charon_refuses_our_revoked_certificate() {
    let (pkidir, etc) = west_and_east_pki("crlw");
    // West (us) revoked in charon's CRL.
    let crl = pki::crl(&pkidir, "ca", &["west"]);
    {
        let (_link, charon, ours) =
            cert_pair("cw", &pkidir, &etc, "ID_PROT", true, |c| c.load_crl(&crl));
        wait_log(&ours, "the peer refused it: AUTHENTICATION_FAILED");
        let log = charon.wait_log("IKE_SA v1[1] state change: CONNECTING => DESTROYING");
        assert!(
            log.contains("checking certificate status of \"C=CH, O=isakmpd test, CN=west\"")
                && log.contains("crl correctly signed by \"C=CH, O=isakmpd test, CN=ca\"")
                && log.contains("certificate was revoked on")
                && log.contains("[ HASH N(AUTH_FAILED) ]"),
            "{log}"
        );
        assert!(
            !log.contains("certificate status is not available"),
            "{log}"
        );
        assert!(!log.contains("established"), "{log}");
        let sa = charon.swanctl(&["--list-sas"]);
        assert!(!sa.contains("v1:"), "{sa}");
        let ol = ours.log();
        assert!(!ol.contains("phase 1 done"), "{ol}");
        assert!(!sas(&ours).contains("Phase 1"));
    }
    let _ = fs::remove_file(&crl);
    let _ = fs::remove_dir_all(&pkidir);
}

/// Dead peer detection (RFC 3706) with charon: we answer its R-U-THEREs, it answers ours,
/// and when it is killed (no DELETE) we notice within DPD-check-interval + 5 x 5 s, drop
/// its SAs and start the connection again.
#[test]
fn dead_peer_detection_with_charon() {
    let link = Link::new("sd");
    let mut charon = Charon::start_x(
        "swan-dpd",
        &link.b,
        "aes256-sha256-modp2048",
        "aes128-sha256",
        false,
        None,
        1,
    );
    let conf = our_conf(true, "AES-256-SHA2-256-GRP14", "QM-ESP-AES-SHA2-256-SUITE").replace(
        "Check-interval=3600\n",
        "Check-interval=3600\nDPD-check-interval=3\n",
    );
    let ours = start_in("ours-dpd", &conf, &[], Some(&link.a));
    wait_log(&ours, "quick mode done: src:");
    // charon asks after 1 s of quiet; we answer.
    let log = charon.wait_log("[ HASH N(DPD_ACK) ]");
    assert!(
        log.lines()
            .any(|l| l.contains("parsed INFORMATIONAL_V1") && l.contains("N(DPD_ACK)")),
        "{log}"
    );
    // charon killed: no DELETE, no more answers.
    let _ = charon.child.kill();
    let _ = charon.child.wait();
    let t0 = Instant::now();
    while !ours.log().contains("did not answer 5 R-U-THERE") {
        assert!(
            t0.elapsed() < Duration::from_secs(45),
            "no DPD verdict:\n{}",
            ours.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let l = ours.log();
    assert!(l.contains("R-U-THERE"), "{l}");
    assert!(l.contains("phase 2 SA tun deleted"), "{l}");
    assert!(!sas(&ours).contains("Phase 2"), "{}", sas(&ours));
    // The connection is tried again.
    ours.wait_for(
        || {
            ours.log()
                .matches("main mode with 192.0.2.2:500 (peer) started as initiator")
                .count()
                >= 2
        },
        "a new main mode after the verdict",
    );
}

/// NAT traversal with charon: our daemon sits behind a masquerading NAT (nftables in the
/// namespace that owns 192.0.2.1), charon in front of it. Both must see the NAT from the
/// NAT-D hashes, move to port 4500 and agree on a UDP-encapsulated tunnel.
#[test]
fn nat_traversal_with_charon_through_a_masquerading_nat() {
    let link = Link::new("sn");
    let nat = link.nat_inside("sn");
    let inside = &nat.ns;
    let charon = Charon::start(
        "swan-nat",
        &link.b,
        "aes256-sha256-modp2048",
        "aes128-sha256",
    );
    let ours = start_in(
        "ours-nat",
        // charon knows us by the NAT's address: our phase 1 ID says so.
        &format!(
            "{}[natid]\nID-type=IPV4_ADDR\nAddress=192.0.2.1\n",
            our_conf(true, "AES-256-SHA2-256-GRP14", "QM-ESP-AES-SHA2-256-SUITE")
                .replace("[peer]\nPhase=1\n", "[peer]\nPhase=1\nID=natid\n")
        ),
        &[],
        Some(inside),
    );
    let t0 = Instant::now();
    while !ours.log().contains("quick mode done: src:") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no tunnel through the NAT:\n{}\n--- charon ---\n{}",
            ours.log(),
            charon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let l = ours.log();
    // charon with kernel-libipsec fakes its own NAT-D (it wants UDP encapsulation
    // anyway), so we see both sides behind a NAT.
    assert!(
        l.contains("NAT-T: we are behind a NAT")
            || l.contains("NAT-T: both sides are behind a NAT"),
        "{l}"
    );
    assert!(l.contains("continues on port 4500"), "{l}");
    let log = charon.wait_log("CHILD_SA net{1} state change: CREATED => INSTALLING");
    assert!(log.contains("remote host is behind NAT"), "{log}");
    assert!(
        log.contains("received packet: from 192.0.2.1[4500]"),
        "{log}"
    );
    assert!(
        log.contains(
            "IKE_SA v1[1] established between 192.0.2.2[192.0.2.2]...192.0.2.1[198.51.100.129]"
        ) || log.contains("IKE_SA v1[1] established between 192.0.2.2[192.0.2.2]...192.0.2.1["),
        "{log}"
    );
    assert!(
        log.contains("selected proposal: ESP:AES_CBC_128/HMAC_SHA2_256_128"),
        "{log}"
    );
}

/// charon's swanctl.conf for the mode-config tests: `conn` goes into the connection, its
/// child gets `child`; PSK with the IP addresses as IDs.
fn swanctl_cfg(conn: &str, child: &str, extra: &str) -> String {
    format!(
        "connections {{\n v1 {{\n  version = 1\n  local_addrs = 192.0.2.2\n  remote_addrs = 192.0.2.1\n  \
         proposals = aes128-sha256-modp2048\n  dpd_delay = 0\n{conn}\n  \
         local {{\n   auth = psk\n   id = 192.0.2.2\n  }}\n  remote {{\n   auth = psk\n   id = 192.0.2.1\n  }}\n  \
         children {{\n   net {{\n    mode = tunnel\n    esp_proposals = aes128-sha256\n{child}\n    start_action = none\n   }}\n  }}\n }}\n}}\n\
         secrets {{\n ike-v1 {{\n  id-1 = 192.0.2.2\n  id-2 = 192.0.2.1\n  secret = \"{PSK}\"\n }}\n}}\n{extra}"
    )
}

/// Our configuration for the mode-config tests: `peer_extra` in the peer section, the
/// connection's ID lines as given, `sections` appended.
fn our_cfg_conf(active: bool, peer_extra: &str, ids: &str, sections: &str) -> String {
    format!(
        "[General]\nRetransmits=2\nExchange-max-time=30\nCheck-interval=3600\n\
[Phase 1]\n192.0.2.2=peer\n\
[Phase 2]\n{}=tun\n\
[peer]\nPhase=1\nAddress=192.0.2.2\nConfiguration=mm\nAuthentication={PSK}\n{peer_extra}\
[mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-128-SHA2-256-GRP14\n\
[tun]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n{ids}\
[qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-128-SHA2-256-SUITE\n\
[l]\nID-type=IPV4_ADDR_SUBNET\nNetwork=198.51.100.0\nNetmask=255.255.255.0\n\
[r]\nID-type=IPV4_ADDR_SUBNET\nNetwork=203.0.113.0\nNetmask=255.255.255.0\n{sections}",
        if active {
            "Connections"
        } else {
            "Passive-connections"
        }
    )
}

#[test]
fn mode_config_hands_charon_an_address() {
    // charon is a client asking for a virtual IP (REQUEST); we answer from the section
    // named after its ID, and take its Quick Mode for that address.
    let (ours, log) = charon_client(
        "mc",
        "",
        "",
        "[ipv4/192.0.2.2]\nAddress=10.99.0.5\nNetmask=255.255.255.0\nNameserver=10.99.0.53\n",
    );
    let ol = ours.log();
    assert!(
        ol.contains("mode-config REPLY to 192.0.2.2:4500 ([ipv4/192.0.2.2]): address 10.99.0.5"),
        "{ol}"
    );
    assert!(
        log.contains("10.99.0.5/32 === 198.51.100.0/24"),
        "charon's Quick Mode is for its new address: {log}"
    );
}

/// charon in `link` as a mode-config client (a virtual IP, `conn_extra` more in its
/// connection) initiating to our passive responder (`peer_extra` in our peer section,
/// `sections` appended); returns our daemon and charon's log once both have the tunnel.
fn charon_client(
    tag: &str,
    conn_extra: &str,
    peer_extra: &str,
    sections: &str,
) -> (Daemon, String) {
    let link = Link::new(tag);
    let charon = Charon::launch(
        Scratch::new(&format!("swan-{tag}")),
        &swanctl_cfg(
            &format!("  vips = 0.0.0.0{conn_extra}"),
            "    remote_ts = 198.51.100.0/24",
            "",
        ),
        &link.b,
        None,
        // charon puts the virtual IP on an interface of its namespace, so that it can
        // route the tunnel's traffic from it.
        "install_virtual_ip = yes",
    );
    let ours = start_in(
        &format!("swan-{tag}r"),
        &our_cfg_conf(false, peer_extra, "Local-ID=l\n", sections),
        &[],
        Some(&link.a),
    );
    let out = charon.swanctl(&[
        "--initiate",
        "--ike",
        "v1",
        "--child",
        "net",
        "--timeout",
        "15",
    ]);
    wait_log(&ours, "quick mode done (as responder)");
    let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
    assert!(log.contains("CHILD_SA net{1} established"), "{log}\n{out}");
    drop(charon);
    drop(link);
    (ours, log)
}

#[test]
fn mode_config_takes_an_address_from_charon() {
    // We are the client: REQUEST to charon, which has a pool; our connection has no
    // Local-ID and speaks for the address charon gave.
    let link = Link::new("mt");
    let charon = Charon::launch(
        Scratch::new("swan-mt"),
        &swanctl_cfg(
            "  pools = p",
            "    local_ts = 203.0.113.0/24",
            "pools {\n p {\n  addrs = 10.88.0.0/24\n  dns = 10.88.0.53\n }\n}\n",
        ),
        &link.b,
        None,
        // charon puts the virtual IP on an interface of its namespace, so that it can
        // route the tunnel's traffic from it.
        "install_virtual_ip = yes",
    );
    let ours = start_in(
        "swan-mti",
        &our_cfg_conf(
            true,
            "Flags=ikecfg\n",
            "Remote-ID=r\n",
            "[ipv4/192.0.2.2]\nMode=REQUEST\nAttributes=Address,Netmask,Nameserver\n",
        ),
        &[],
        Some(&link.a),
    );
    wait_log(&ours, "quick mode done: src:");
    let ol = ours.log();
    assert!(
        ol.contains("mode-config REPLY from 192.0.2.2:4500: address 10.88.0.1"),
        "{ol}"
    );
    let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
    assert!(
        log.contains("assigning virtual IP 10.88.0.1"),
        "charon handed out the address: {log}"
    );
    assert!(
        log.contains("203.0.113.0/24 === 10.88.0.1/32"),
        "our Quick Mode is for the address charon gave: {log}"
    );
}

#[test]
fn mode_config_set_pushes_an_address_to_charon() {
    // charon is a client in push mode (pull = no): it waits for the server's SET. We
    // are the phase 1 responder with Flags=ikecfg and push [ipv4/<charon>].
    let (ours, log) = charon_client(
        "mp",
        "\n  pull = no",
        "Flags=ikecfg\n",
        "[ipv4/192.0.2.2]\nAddress=10.99.0.7\nNetmask=255.255.255.0\nWINS-server=10.99.0.9\n",
    );
    let ol = ours.log();
    assert!(
        ol.contains("mode-config SET to 192.0.2.2:4500 ([ipv4/192.0.2.2]): address 10.99.0.7")
            && ol.contains("mode-config ACK from 192.0.2.2:4500"),
        "{ol}"
    );
    assert!(
        log.contains("10.99.0.7/32 === 198.51.100.0/24"),
        "charon's Quick Mode is for the address we pushed: {log}"
    );
}

/// Our daemon configured only by an ipsec.conf(5) file: `isakmpd -K` and our ipsecctl
/// personality (`ipsecctl -f FILE` into the daemon's FIFO), as an OpenBSD administrator
/// does it; it brings a tunnel up with charon (Main Mode with a pre-shared key, Quick
/// Mode with PFS), and both sides hold the SAs.
#[test]
fn a_daemon_configured_only_by_ipsec_conf_brings_a_tunnel_up_with_charon() {
    let link = Link::new("ic");
    // An address of charon's subnet in its namespace, so that it can route the tunnel
    // and keep the CHILD_SA (else it deletes it: "no local address found in traffic
    // selector").
    let st = Command::new("ip")
        .args(["-n", &link.b, "addr", "add", "203.0.113.1/32", "dev", "lo"])
        .status()
        .expect("ip");
    assert!(st.success());
    let charon = Charon::start(
        "swan-icc",
        &link.b,
        "aes256-sha256-modp2048",
        "aes128-sha256-modp2048",
    );
    let ours = start_in(
        "swan-ico",
        "[General]\nRetransmits=\t3\nListen-on=\t192.0.2.1\n",
        &["-K"],
        Some(&link.a),
    );
    let rules = ours.scratch.write(
        "ipsec.conf",
        &format!(
            "ike esp from 198.51.100.0/24 to 203.0.113.0/24 local 192.0.2.1 peer 192.0.2.2 \\\n\
             \tmain auth hmac-sha2-256 enc aes-256 group modp2048 \\\n\
             \tquick auth hmac-sha2-256 enc aes-128 group modp2048 \\\n\
             \tpsk \"{PSK}\"\n"
        ),
        0o600,
    );
    let fifo = ours.run_file("isakmpd.fifo");
    let out = Command::new(common::BIN)
        .args(["--ipsecctl", "-i"])
        .arg(&fifo)
        .arg("-f")
        .arg(&rules)
        .output()
        .expect("run ipsecctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_log(&ours, "quick mode done: src:");
    let log = charon.wait_log("CHILD_SA net{1} state change: INSTALLING =>");
    assert!(
        log.contains(
            "IKE_SA v1[1] established between 192.0.2.2[192.0.2.2]...192.0.2.1[192.0.2.1]"
        ),
        "{log}"
    );
    assert!(
        log.contains("selected proposal: ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_2048"),
        "{log}"
    );
    let s = sas(&ours);
    assert!(
        s.contains("SA name: from-198.51.100.0/24-to-203.0.113.0/24 (Phase 2)"),
        "{s}\n{}\n{}",
        ours.log(),
        charon.log()
    );
    assert!(s.contains("(Phase 1/Initiator)"), "{s}");
    // charon holds the IKE SA and the CHILD_SA with our SPIs.
    let listed = charon.swanctl(&["--list-sas"]);
    assert!(
        listed.contains("v1: #1, ESTABLISHED, IKEv1") && listed.contains("net: #1"),
        "{listed}\n{log}"
    );
    let ol = ours.log();
    let up = ol
        .lines()
        .find(|l| l.contains("phase 2 SA from-198.51.100.0/24-to-203.0.113.0/24 up:"))
        .expect("phase 2 up line");
    let words: Vec<&str> = up.split_whitespace().collect();
    let at = |w: &str| words[words.iter().position(|x| *x == w).unwrap() + 1];
    let (spi_in, spi_out) = (at("in"), at("out"));
    assert!(
        listed.contains(&format!("in  {spi_out}")) && listed.contains(&format!("out {spi_in}")),
        "SPIs {spi_in}/{spi_out}:\n{listed}"
    );
}
