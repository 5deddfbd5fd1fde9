//! The binary as iked(8), configured only by an iked.conf file, against strongSwan's
//! charon configured by its own swanctl.conf, in two network namespaces (documentation
//! addresses only): our active policy brings the tunnel up with charon as responder, and
//! charon's `swanctl --initiate` brings it up against our passive policy. Both sides must
//! show the same SPIs (`ikectl show sa`, `swanctl --list-sas`), and `ikectl reset sa`
//! must delete charon's SAs too. charon uses its userspace ESP (kernel-libipsec), which
//! fakes a NAT, so IKE_AUTH runs on port 4500; `-X` keeps our kernel state untouched.
//!
//! With a pre-shared key, and with certificates both ways (RSA, and ECDSA P-256 with
//! `ecdsa256` and `rfc7427`): our key, certificate and CA in /etc/iked (a tree of the
//! test's mounted over it in our daemon's mount namespace), charon's in its swanctl
//! directories.

mod common;

#[path = "common/charon.rs"]
mod charon;
#[path = "common/iked.rs"]
mod iked;
#[path = "common/pki.rs"]
mod pki;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use charon::{Charon, PSK};
use common::{Link, Scratch};
use iked::Iked;

/// Our rule: `auth` is its authentication clause (`psk "..."`, `ecdsa256`, or nothing:
/// iked's default, any signature), `ids` our srcid and dstid.
fn iked_conf_with(mode: &str, ids: (&str, &str), auth: &str) -> String {
    format!(
        "ikev2 \"to-charon\" {mode} esp \\\n\
         \tfrom 198.51.100.0/24 to 203.0.113.0/24 \\\n\
         \tlocal 192.0.2.1 peer 192.0.2.2 \\\n\
         \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
         \tchildsa enc aes-256-gcm \\\n\
         \tsrcid {} dstid {} {auth}\n",
        ids.0, ids.1
    )
}

fn iked_conf(mode: &str) -> String {
    iked_conf_with(
        mode,
        ("west.example", "east.example"),
        &format!("\\\n\tpsk \"{PSK}\""),
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

/// charon's swanctl.conf: connection `v2` with the contents of its `local` and `remote`
/// blocks, and the `secrets` section's.
fn swanctl_conf(local: &str, remote: &str, secrets: &str) -> String {
    swanctl_conf_with(local, remote, secrets, "")
}

/// [`swanctl_conf`] with `conn` lines in the connection (e.g. `vips = 0.0.0.0`).
fn swanctl_conf_with(local: &str, remote: &str, secrets: &str, conn: &str) -> String {
    format!(
        "connections {{\n v2 {{\n  version = 2\n  local_addrs = 192.0.2.2\n  remote_addrs = 192.0.2.1\n  {conn}\
         proposals = aes256-sha256-ecp256\n  \
         local {{\n{local}  }}\n  remote {{\n{remote}  }}\n  \
         children {{\n   net {{\n    mode = tunnel\n    esp_proposals = aes256gcm16\n    local_ts = 203.0.113.0/24\n    remote_ts = 198.51.100.0/24\n    start_action = none\n   }}\n  }}\n }}\n}}\n\
         secrets {{\n{secrets}}}\n"
    )
}

fn charon(name: &str, netns: &str) -> Charon {
    let swanctl = swanctl_conf(
        "   auth = psk\n   id = east.example\n",
        "   auth = psk\n   id = west.example\n",
        &format!(
            " ike-1 {{\n  id-1 = east.example\n  id-2 = west.example\n  secret = \"{PSK}\"\n }}\n"
        ),
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
fn our_iked_behind_a_masquerading_nat_reaches_charon() {
    // We sit behind a real NAT (nftables masquerade in front of 198.51.100.129), charon
    // sees us as the NAT's 192.0.2.1. Our NAT_DETECTION_DESTINATION_IP hash from charon
    // names the NAT's address, not ours: we are behind a NAT (RFC 7296 §2.23), move to
    // port 4500 and send keepalives; charon sees the NAT from our source hash.
    let link = link("n");
    let nat = link.nat_inside("n");
    let c = charon("ikedc-charon-nat", &link.b);
    let conf = iked_conf("active").replace("local 192.0.2.1", "local 198.51.100.129");
    let us = Iked::start("ikedc-us-nat", &nat.ns, &conf);
    let ours = us.wait_sa("our IKE SA with charon through the NAT", established);
    let theirs = charon_sas(&c, "CHILD_SA installed", |s| s.contains("INSTALLED"));
    assert!(
        ours.contains("198.51.100.129:4500->192.0.2.2:4500<FQDN/east.example>"),
        "{ours}"
    );
    check_same_sas(&ours, &theirs);
    // charon: the remote end is the NAT's address, on port 4500 (masquerade kept ours).
    assert!(
        theirs.contains("remote 'west.example' @ 192.0.2.1[4500]"),
        "{theirs}"
    );
    let log = c.log();
    assert!(log.contains("remote host is behind NAT"), "{log}");
    // charon with kernel-libipsec fakes its own source hash as well: "both sides".
    let l = us.log();
    assert!(
        l.contains("NAT detected: we are behind a NAT")
            || l.contains("NAT detected: both sides are behind a NAT"),
        "{l}"
    );
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

/// One CA's certificates for west (us: 192.0.2.1, west.example) and east (charon:
/// 192.0.2.2, east.example), each naming its address and FQDN in subjectAltName, with
/// RSA or ECDSA P-256 host keys: laid out as our /etc/iked (`etc`: private/local.key,
/// certs/, ca/) and as the files `Charon::launch` puts in charon's swanctl directories
/// (`charon`: ca.crt, east.crt, east.key).
struct Certs {
    _dir: Scratch,
    etc: PathBuf,
    charon: PathBuf,
}

fn certs(name: &str, ec: bool) -> Certs {
    let dir = Scratch::new(name);
    let d = dir.dir.join("pki");
    pki::ca(&d, "ca");
    for (host, ip) in [("west.example", "192.0.2.1"), ("east.example", "192.0.2.2")] {
        if ec {
            pki::host_ec(&d, "ca", host, ip, "P-256");
        } else {
            pki::host(&d, "ca", host, ip);
        }
    }
    let etc = dir.dir.join("etc");
    for sub in ["private", "certs", "ca", "crls", "pubkeys"] {
        fs::create_dir_all(etc.join(sub)).unwrap();
    }
    fs::copy(d.join("west.example.key"), etc.join("private/local.key")).unwrap();
    fs::copy(d.join("west.example.crt"), etc.join("certs/west.crt")).unwrap();
    fs::copy(d.join("ca.crt"), etc.join("ca/ca.crt")).unwrap();
    let charon = dir.dir.join("charon");
    fs::create_dir_all(&charon).unwrap();
    for (from, to) in [
        ("ca.crt", "ca.crt"),
        ("east.example.crt", "east.crt"),
        ("east.example.key", "east.key"),
    ] {
        fs::copy(d.join(from), charon.join(to)).unwrap();
    }
    Certs {
        _dir: dir,
        etc,
        charon,
    }
}

/// charon authenticating with its certificate and key (`auth = pubkey`), taking ours
/// if it chains to the CA; `ids` are charon's and ours. `extra` goes into
/// strongswan.conf's charon section.
fn charon_certs(name: &str, netns: &str, c: &Certs, ids: (&str, &str), extra: &str) -> Charon {
    let swanctl = swanctl_conf(
        &format!("   auth = pubkey\n   certs = east.crt\n   id = {}\n", ids.0),
        &format!("   auth = pubkey\n   id = {}\n   cacerts = ca.crt\n", ids.1),
        "",
    );
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        Some(&c.charon),
        &format!("install_routes = no\n {extra}"),
    )
}

/// What our log and charon's say once the tunnel is up with certificates: both loaded
/// and checked the other's, named by its ID, with the AUTH methods `methods` (charon's as
/// we name it, ours as charon names it).
fn check_cert_auth(us: &Iked, c: &Charon, our_id: &str, key: &str, methods: (&str, &str)) {
    let ol = us.log();
    assert!(
        ol.contains(&format!(
            "x509: 1 CA certificate(s), our certificate: \"C=CH, O=isakmpd test, CN=west.example\"; private key: {key}"
        )),
        "{ol}"
    );
    assert!(
        ol.contains(&format!(
            "peer authenticated by certificate \"C=CH, O=isakmpd test, CN=east.example\", AUTH method {}",
            methods.0
        )),
        "{ol}"
    );
    assert!(!ol.contains("IKE_AUTH will fail"), "{ol}");
    let cl = c.log();
    assert!(
        cl.contains(&format!(
            "authentication of '{our_id}' with {} successful",
            methods.1
        )),
        "{cl}"
    );
    assert!(
        cl.contains("CN=west.example"),
        "charon had our certificate: {cl}"
    );
    // ikectl show certstore: the CA, our certificate and key.
    let (st, out, err) = us.ikectl(&["show", "certstore"]);
    assert_eq!(st, 0, "{err}");
    assert!(
        out.contains("ca: C=CH, O=isakmpd test, CN=ca\n")
            && out.contains("local: C=CH, O=isakmpd test, CN=west.example\n")
            && out.contains("local: subjectAltName IP:192.0.2.1, DNS:west.example\n")
            && out.contains(&format!("key: {key}\n")),
        "{out}"
    );
}

/// Our active policy with certificates, charon responding; then charon initiating to our
/// passive one. `auth`: our rules' clause for each (nothing: any signature); `extra`:
/// charon's strongswan.conf lines for each; `methods`: the AUTH methods each way for
/// each (see [`check_cert_auth`]).
fn certificates_both_ways(
    tag: &str,
    ec: bool,
    ids: (&str, &str),
    auth: [&str; 2],
    extra: [&str; 2],
    methods: [(&str, &str); 2],
) {
    let c = certs(&format!("ikedc-pki-{tag}"), ec);
    let key = if ec { "ECDSA P-256" } else { "RSA" };
    let (ours, theirs) = (ids.0, ids.1);
    {
        let link = link(&format!("{tag}i"));
        let ch = charon_certs(
            &format!("ikedc-{tag}-charon-r"),
            &link.b,
            &c,
            (theirs, ours),
            extra[0],
        );
        let us = Iked::start_with_etc(
            &format!("ikedc-{tag}-us-i"),
            &link.a,
            &iked_conf_with("active", ids, auth[0]),
            Some(&c.etc),
        );
        let mine = us.wait_sa("our IKE SA with charon", established);
        let sas = charon_sas(&ch, "CHILD_SA installed", |s| s.contains("INSTALLED"));
        assert!(sas.contains("ESTABLISHED"), "{sas}");
        assert!(mine.contains(" i natt nexti"), "{mine}");
        check_same_sas(&mine, &sas);
        check_cert_auth(&us, &ch, ours, key, methods[0]);
    }
    {
        let link = link(&format!("{tag}r"));
        let us = Iked::start_with_etc(
            &format!("ikedc-{tag}-us-r"),
            &link.a,
            &iked_conf_with("passive", ids, auth[1]),
            Some(&c.etc),
        );
        let ch = charon_certs(
            &format!("ikedc-{tag}-charon-i"),
            &link.b,
            &c,
            (theirs, ours),
            extra[1],
        );
        let out = ch.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
        assert!(
            out.contains("initiate completed successfully"),
            "{out}\n{}",
            us.log()
        );
        let mine = us.wait_sa("our responder SA", established);
        assert!(mine.contains(" r natt nexti"), "{mine}");
        let sas = charon_sas(&ch, "CHILD_SA installed", |s| s.contains("INSTALLED"));
        check_same_sas(&mine, &sas);
        check_cert_auth(&us, &ch, ours, key, methods[1]);
    }
}

/// RSA certificates, IDs the FQDNs of the certificates, our rules without `psk` (iked's
/// default: any signature; we sign as RFC 7427 asks when charon announces its hashes).
#[test]
fn rsa_certificates_both_ways() {
    certificates_both_ways(
        "rs",
        false,
        ("west.example", "east.example"),
        ["", ""],
        ["", ""],
        [("Digital Signature", "RSA_EMSA_PKCS1_SHA2_256"); 2],
    );
}

/// ECDSA P-256 certificates, IDs the addresses: `ecdsa256` (AUTH method 9, so charon
/// must not use RFC 7427 signatures) when we initiate, `rfc7427` (method 14) when charon
/// does.
#[test]
fn ecdsa_p256_certificates_both_ways() {
    certificates_both_ways(
        "ec",
        true,
        ("192.0.2.1", "192.0.2.2"),
        ["ecdsa256", "rfc7427"],
        ["signature_authentication = no", ""],
        [
            ("ECDSA with SHA-256 on P-256", "ECDSA-256 signature"),
            ("Digital Signature", "ECDSA_WITH_SHA256_DER"),
        ],
    );
}

// ----- EAP-MSCHAPv2 road warrior (RFC 7296 §2.16) -----

/// Our passive rule for road warriors: we sign with west's certificate, the peer
/// authenticates with EAP-MSCHAPv2 as one of the `user`s; `extra`: more clauses.
fn iked_conf_eap(users: &str, extra: &str) -> String {
    format!(
        "{users}\
         ikev2 \"rw\" passive esp \\\n\
         \tfrom 198.51.100.0/24 to 203.0.113.0/24 \\\n\
         \tlocal 192.0.2.1 peer 192.0.2.2 \\\n\
         \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
         \tchildsa enc aes-256-gcm \\\n\
         \tsrcid west.example eap \"mschap-v2\" {extra}\n"
    )
}

/// charon as the EAP-MSCHAPv2 client `user` with `password` (its eap-mschapv2 plugin;
/// MD4 and DES from its openssl plugin, i.e. OpenSSL's legacy provider), checking our
/// certificate against the CA.
fn charon_eap(name: &str, netns: &str, c: &Certs, user: &str, password: &str) -> Charon {
    charon_eap_with(name, netns, c, (user, password), "")
}

/// [`charon_eap`] with `conn` lines in its connection.
fn charon_eap_with(
    name: &str,
    netns: &str,
    c: &Certs,
    (user, password): (&str, &str),
    conn: &str,
) -> Charon {
    let swanctl = swanctl_conf_with(
        &format!("   auth = eap-mschapv2\n   eap_id = {user}\n   id = {user}\n"),
        "   auth = pubkey\n   id = west.example\n   cacerts = ca.crt\n",
        &format!(" eap-1 {{\n  id = {user}\n  secret = \"{password}\"\n }}\n"),
        conn,
    );
    Charon::launch(
        Scratch::new(name),
        &swanctl,
        netns,
        Some(&c.charon),
        "install_routes = no",
    )
}

/// charon's `swanctl --initiate`: whether it completed, and what it said.
fn initiate(c: &Charon) -> (bool, String) {
    let out = c.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
    (out.contains("initiate completed successfully"), out)
}

/// Certificates, the link and our daemon with [`iked_conf_eap`] (`users`, `extra`).
fn eap_gateway(tag: &str, users: &str, extra: &str) -> (Certs, Link, Iked) {
    let c = certs(&format!("ikedc-pki-{tag}"), false);
    let link = link(tag);
    let us = Iked::start_with_etc(
        &format!("ikedc-{tag}-us"),
        &link.a,
        &iked_conf_eap(users, extra),
        Some(&c.etc),
    );
    (c, link, us)
}

/// charon initiates, the tunnel comes up and both sides show the same SAs: charon's
/// `--list-sas`.
fn eap_up(us: &Iked, ch: &Charon) -> String {
    let (ok, out) = initiate(ch);
    assert!(ok, "{out}\n{}\n{}", us.log(), ch.log());
    let mine = us.wait_sa("our responder SA", established);
    let sas = charon_sas(ch, "CHILD_SA installed", |s| s.contains("INSTALLED"));
    check_same_sas(&mine, &sas);
    sas
}

#[test]
fn charon_road_warrior_with_eap_mschapv2() {
    let (c, link, us) = eap_gateway(
        "eap",
        "user \"bob\" \"builder\"\nuser \"alice\" \"wonder land\"\n",
        "",
    );
    // The right password: the tunnel comes up, our SAs are charon's.
    {
        let ch = charon_eap("ikedc-eap-ok", &link.b, &c, "alice", "wonder land");
        eap_up(&us, &ch);
        // show sa names the EAP user.
        let mine = us.show_sa();
        assert!(
            mine.contains("  sa_policy: \"rw\" eapid \"alice\" age "),
            "{mine}"
        );
        assert!(
            us.log()
                .contains("EAP-MSCHAPv2: user \"alice\" authenticated"),
            "{}",
            us.log()
        );
        let cl = ch.log();
        assert!(
            cl.contains("EAP method EAP_MSCHAPV2 succeeded, MSK established"),
            "{cl}"
        );
        assert!(cl.contains("authentication of 'west.example' with"), "{cl}");
        let out = ch.swanctl(&["--terminate", "--ike", "v2", "--timeout", "20"]);
        assert!(out.contains("terminate completed successfully"), "{out}");
        us.wait_sa("our SA deleted by charon", |s| !s.contains("iked_sas:"));
    }
    // A wrong password: EAP Failure, nothing up on either side, a line in each log.
    {
        let ch = charon_eap("ikedc-eap-bad", &link.b, &c, "alice", "wonderland");
        let (ok, out) = initiate(&ch);
        assert!(!ok, "{out}");
        us.wait("the refusal logged", || {
            us.log()
                .contains("user \"alice\": wrong password; EAP Failure")
        });
        assert!(ch.log().contains("received EAP_FAILURE"), "{}", ch.log());
        assert!(!us.show_sa().contains("iked_sas:"), "{}", us.show_sa());
        assert!(!charon_sas(&ch, "nothing", |_| true).contains("ESTABLISHED"));
        assert!(!us.log().contains("wonder"), "no password in our log");
    }
    // `ikectl reset user` drops the users: alice is refused; a reload reads them again.
    {
        let (st, _, err) = us.ikectl(&["reset", "user"]);
        assert_eq!(st, 0, "{err}");
        let ch = charon_eap("ikedc-eap-reset", &link.b, &c, "alice", "wonder land");
        let (ok, out) = initiate(&ch);
        assert!(!ok, "{out}");
        assert!(
            us.log().contains("no EAP users are configured"),
            "{}",
            us.log()
        );
        let (st, _, err) = us.ikectl(&["reload"]);
        assert_eq!(st, 0, "{err}");
        let (ok, out) = initiate(&ch);
        assert!(ok, "{out}\n{}", us.log());
        us.wait_sa("our responder SA after the reload", established);
    }
}

/// The road warrior as Windows and Android are: it asks for an address, and gets one
/// from our pool after EAP; its side of the CHILD_SA is that address.
#[test]
fn charon_road_warrior_with_eap_mschapv2_gets_a_pool_address() {
    let (c, link, us) = eap_gateway(
        "eapcp",
        "user \"alice\" \"wonder land\"\n",
        "config address 203.0.113.128/28",
    );
    let ch = charon_eap_with(
        "ikedc-eapcp-charon",
        &link.b,
        &c,
        ("alice", "wonder land"),
        "vips = 0.0.0.0\n  ",
    );
    // What charon's install_virtual_ip would do (the harness keeps it off): the address
    // it will be given, for kernel-libipsec's source.
    let st = std::process::Command::new("ip")
        .args([
            "-n",
            &link.b,
            "addr",
            "add",
            "203.0.113.129/32",
            "dev",
            "lo",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let sas = eap_up(&us, &ch);
    // Our show sa: the leased address where iked prints it, and the EAP user.
    let mine = us.show_sa();
    assert!(mine.contains("[203.0.113.129] ESTABLISHED"), "{mine}");
    assert!(mine.contains("sa_policy: \"rw\" eapid \"alice\""), "{mine}");
    assert!(
        us.log().contains("address 203.0.113.129 from the pool"),
        "{}",
        us.log()
    );
    assert!(
        sas.contains("[203.0.113.129]") && sas.contains("local  203.0.113.129/32"),
        "{sas}"
    );
    let cl = ch.log();
    assert!(
        cl.contains("EAP method EAP_MSCHAPV2 succeeded, MSK established"),
        "{cl}"
    );
}
