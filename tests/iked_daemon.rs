//! The binary as iked(8) and ikectl(8), started under those names (symbolic links):
//! `iked -n` checks a file, and two iked processes in two network namespaces, configured
//! only by iked.conf files, bring a tunnel up over IKEv2 that `ikectl show sa` shows on
//! both sides; `ikectl reset sa`, `passive`/`active`, `reload` and SIGHUP do what
//! ikectl(8) and iked(8) say. `-X` keeps the kernel's IPsec state untouched (the host
//! has no ESP). With certificates, the key material of /etc/iked (a tree of the test's,
//! mounted over it in the daemon's mount namespace) is read at startup and on reload.

mod common;

#[path = "common/iked.rs"]
mod iked;
#[path = "common/pki.rs"]
mod pki;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{require_root, Link, Scratch, BIN};
use iked::{links, Iked};

fn policy(mode: &str, me: &str, peer: &str, lnet: &str, rnet: &str, ids: (&str, &str)) -> String {
    format!(
        "# iked.conf of {me}\n\
         key = \"iked-daemon-test-key\"\n\
         set dpd_check_interval 30\n\
         ikev2 \"tun\" {mode} esp \\\n\
         \tfrom {lnet} to {rnet} \\\n\
         \tlocal {me} peer {peer} \\\n\
         \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
         \tchildsa enc aes-256-gcm \\\n\
         \tsrcid {} dstid {} \\\n\
         \tikelifetime 2h lifetime 30m \\\n\
         \tpsk $key\n",
        ids.0, ids.1
    )
}

fn west_conf() -> String {
    policy(
        "active",
        "192.0.2.1",
        "192.0.2.2",
        "198.51.100.0/24",
        "203.0.113.0/24",
        ("west.example", "east.example"),
    )
}

fn east_conf() -> String {
    policy(
        "passive",
        "192.0.2.2",
        "192.0.2.1",
        "203.0.113.0/24",
        "198.51.100.0/24",
        ("east.example", "west.example"),
    )
}

fn established(s: &str) -> bool {
    s.lines()
        .any(|l| l.starts_with("iked_sas:") && l.contains("ESTABLISHED"))
        && s.contains("sa_childsas:")
}

#[test]
fn configtest_checks_the_file_and_its_secrecy() {
    require_root();
    let scratch = Scratch::new("iked-n");
    let (iked, _) = links(&scratch.dir);
    let run = |conf: &Path, extra: &[&str]| {
        let out = Command::new(&iked)
            .args(extra)
            .arg("-n")
            .arg("-f")
            .arg(conf)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = scratch.write("good.conf", &west_conf(), 0o600);
    let (st, err) = run(&good, &[]);
    assert_eq!(st, 0, "{err}");
    assert!(err.contains("configuration OK"), "{err}");
    // A macro from the command line overrides the file's.
    let (st, err) = run(&good, &["-D", "key=other"]);
    assert_eq!(st, 0, "{err}");
    // Line 4 has the error.
    let bad = scratch.write(
        "bad.conf",
        "# a comment\nset passive\n\nikev2 \"x\" esp from 10.0.0.0/8 too 10.1.0.0/16\n",
        0o600,
    );
    let (st, err) = run(&bad, &[]);
    assert_eq!(st, 1, "{err}");
    assert!(err.contains("bad.conf:4"), "{err}");
    // Readable by others: refused, as iked refuses it.
    let open = scratch.write("open.conf", &west_conf(), 0o644);
    let (st, err) = run(&open, &[]);
    assert_eq!(st, 1, "{err}");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(run(&open, &[]).0, 0);
    // A rule that signs: -n says what the daemon would say at startup about
    // /etc/iked/private/local.key (here a tree of the test's own, mounted privately).
    let _etc = iked::EtcIked::take();
    let tree = scratch.dir.join("etc-iked");
    fs::create_dir_all(tree.join("private")).unwrap();
    let sig = scratch.write(
        "sig.conf",
        "ikev2 \"sig\" active esp from 198.51.100.0/24 to 203.0.113.0/24 \\\n         peer 192.0.2.2 dstid east.example rsa\n",
        0o600,
    );
    let run_etc = |conf: &Path| {
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/iked && shift && exec "$@""#)
            .arg("sh")
            .arg(&tree)
            .arg(&iked)
            .arg("-n")
            .arg("-f")
            .arg(conf)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (st, err) = run_etc(&sig);
    assert_eq!(st, 0, "{err}");
    assert!(
        err.contains(
            "policy \"sig\": rsa, but no private key is loaded (/etc/iked/private/local.key)"
        ),
        "{err}"
    );
    let key = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    assert!(key.status.success());
    fs::write(tree.join("private/local.key"), &key.stdout).unwrap();
    let (st, err) = run_etc(&sig);
    assert_eq!(st, 0, "{err}");
    assert!(
        err.contains("our private key is ECDSA P-256, not RSA"),
        "{err}"
    );
    let key = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .unwrap();
    fs::write(tree.join("private/local.key"), &key.stdout).unwrap();
    let (st, err) = run_etc(&sig);
    assert_eq!(st, 0, "{err}");
    assert!(!err.contains("IKE_AUTH will fail"), "{err}");
    // Flags iked does not have.
    let out = Command::new(&iked).arg("-K").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: iked"));
}

#[test]
fn two_ikeds_bring_up_a_tunnel_and_ikectl_drives_them() {
    let link = Link::new("k");
    let east = Iked::start("iked-east", &link.b, &east_conf());
    // West keeps a capture file (-L, ours): every message, decrypted.
    let west = Iked::start_with("iked-west", &link.a, &west_conf(), &["-L"]);
    // The active policy starts at once; both sides show the IKE SA and its CHILD SA.
    let w = west.wait_sa("west established", established);
    let e = east.wait_sa("east established", established);
    assert!(
        w.contains("192.0.2.1:500->192.0.2.2:500<FQDN/east.example>[] ESTABLISHED"),
        "{w}"
    );
    assert!(w.contains(" i nexti"), "west initiated: {w}");
    assert!(e.contains(" r nexti"), "east responded: {e}");
    assert!(w.contains("enc aes-256-gcm"), "{w}");
    // The lifetimes of iked.conf: the CHILD SA goes in 30 minutes (rekeyed 5-10 % before),
    // the IKE SA is rekeyed within 2 hours.
    let secs = |line: &str, what: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|x| *x == what).expect(what);
        words[i + 1].trim_end_matches('s').parse().unwrap()
    };
    let child = w.lines().find(|l| l.contains("sa_childsas: enc")).unwrap();
    assert!((1700..=1800).contains(&secs(child, "expires")), "{child}");
    assert!((1600..1800).contains(&secs(child, "rekey")), "{child}");
    let ike = w.lines().find(|l| l.contains("sa_policy:")).unwrap();
    assert!((6400..7200).contains(&secs(ike, "rekey")), "{ike}");
    assert!(
        w.contains("ESP out 198.51.100.0/24 -> 203.0.113.0/24"),
        "west's outbound flow: {w}"
    );
    assert!(
        e.contains("ESP out 203.0.113.0/24 -> 198.51.100.0/24"),
        "east's outbound flow: {e}"
    );
    // The SPIs match crosswise: west's outbound is east's inbound.
    let spi = |s: &str, dir: &str| -> String {
        s.lines()
            .find(|l| l.starts_with("iked_activesas:") && l.contains(&format!(" {dir} ")))
            .and_then(|l| l.split_whitespace().nth(3).map(String::from))
            .unwrap_or_default()
    };
    assert_eq!(spi(&w, "out"), spi(&e, "in"), "west:\n{w}\neast:\n{e}");
    assert_eq!(spi(&w, "in"), spi(&e, "out"), "west:\n{w}\neast:\n{e}");
    // The daemons see an empty /etc/iked of the test's, never the host's.
    for d in [&west, &east] {
        let (st, store, err) = d.ikectl(&["show", "certstore"]);
        assert_eq!(st, 0, "{err}");
        assert_eq!(
            store,
            "local: no certificate holding our private key\nkey: none (no private/local.key)\n"
        );
    }
    let (st, stats, _) = west.ikectl(&["show", "stats"]);
    assert_eq!(st, 0);
    assert!(stats.contains("IKE SAs established: 1"), "{stats}");
    capture_holds_the_exchanges_in_clear(&west.run_file("iked.pcap"));
    // No secret in what ikectl shows or the log says.
    for text in [&w, &e, &stats, &west.log(), &east.log()] {
        assert!(!text.contains("iked-daemon-test-key"), "{text}");
    }

    // reset sa: west deletes its SAs and tells east. (The active policy comes back by
    // itself at the next check, so what must go is this IKE SA, by its SPI.)
    let ispi = w
        .split_whitespace()
        .skip_while(|x| *x != "ispi")
        .nth(1)
        .unwrap()
        .to_string();
    let (st, out, err) = west.ikectl(&["reset", "sa"]);
    assert_eq!(st, 0, "{err}");
    assert!(out.contains("1 IKE SA(s) deleted"), "{out}");
    east.wait_sa("east's SA deleted by west", |s| !s.contains(&ispi));
    west.wait_sa("west's SA gone", |s| !s.contains(&ispi));

    // passive: nothing is sent (the Delete of a reset neither) and nothing started;
    // active: the policy comes up again.
    assert_eq!(west.ikectl(&["passive"]).0, 0);
    assert_eq!(west.ikectl(&["reset", "sa"]).0, 0);
    west.wait_sa("west without SAs", |s| !s.contains("iked_sas:"));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !west.show_sa().contains("iked_sas:"),
        "passive started nothing"
    );
    assert_eq!(west.ikectl(&["active"]).0, 0);
    west.wait_sa("west up again after active", established);
    east.wait_sa("east up again", established);

    // Unknown commands fail with a reason and status 1.
    let (st, _, err) = west.ikectl(&["show", "everything"]);
    assert_eq!(st, 1, "{err}");
    assert!(err.contains("usage: ikectl"), "{err}");

    // A reload with a syntax error keeps the running policies...
    fs::write(&east.conf, "ikev2 \"tun\" passive esp from\n").unwrap();
    let (st, _, err) = east.ikectl(&["reload"]);
    assert_eq!(st, 1, "a bad file must fail the reload");
    assert!(err.contains("iked.conf:1"), "{err}");
    assert!(established(&east.show_sa()));
    // ...and a good one without the policy deletes its SAs, on SIGHUP as with ikectl.
    fs::write(&east.conf, "set dpd_check_interval 30\n").unwrap();
    east.signal(libc::SIGHUP);
    east.wait_sa("east's SA gone with its policy", |s| {
        !s.contains("iked_sas:")
    });
    west.wait_sa("west told of the delete", |s| !s.contains("ESTABLISHED"));
    assert!(
        east.log().contains("reloaded configuration"),
        "{}",
        east.log()
    );

    // The SA's policy back through `ikectl load`.
    let again = east.scratch.write("again.conf", &east_conf(), 0o600);
    let (st, _, err) = east.ikectl(&["load", again.to_str().unwrap()]);
    assert_eq!(st, 0, "{err}");
    assert_eq!(west.ikectl(&["reset", "sa"]).0, 0);
    assert_eq!(west.ikectl(&["active"]).0, 0);
    west.wait_sa("west up after east's load", established);
    drop(west);
    drop(east);
    let _ = BIN;
}

/// The capture file of `-L`: tshark reads IKE_SA_INIT (34) and IKE_AUTH (35) both ways,
/// IKE_AUTH decrypted: no Encrypted payload (46), its payloads listed (IDi 35, AUTH 39,
/// SA 33, TSi 44, TSr 45, and IDr 36 in the answer), nothing malformed.
fn capture_holds_the_exchanges_in_clear(pcap: &std::path::Path) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-T",
            "fields",
            "-e",
            "isakmp.exchangetype",
            "-e",
            "isakmp.version",
            "-e",
            "isakmp.typepayload",
            "-e",
            "_ws.malformed",
            "-e",
            "ip.src",
        ])
        .output()
        .expect("tshark (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert!(lines.len() >= 4, "{text}");
    for f in &lines {
        assert_eq!(f.get(1).copied(), Some("0x20"), "IKEv2: {text}");
        assert!(f.get(3).is_none_or(|m| m.is_empty()), "malformed: {text}");
        assert!(
            !f[2].split(',').any(|p| p == "46"),
            "still encrypted: {text}"
        );
    }
    let has = |exch: &str, src: &str, payloads: &[&str]| {
        lines.iter().any(|f| {
            f[0] == exch
                && f.get(4) == Some(&src)
                && payloads.iter().all(|p| f[2].split(',').any(|x| x == *p))
        })
    };
    assert!(
        has("34", "192.0.2.1", &["33", "34", "40"]),
        "IKE_SA_INIT: {text}"
    );
    assert!(
        has("34", "192.0.2.2", &["33", "34", "40"]),
        "its answer: {text}"
    );
    assert!(
        has("35", "192.0.2.1", &["35", "39", "33", "44", "45"]),
        "IKE_AUTH: {text}"
    );
    assert!(
        has("35", "192.0.2.2", &["36", "39", "33", "44", "45"]),
        "its answer: {text}"
    );
}

/// Certificates read through the monitor from /etc/iked, at startup and on reload: west
/// starts without a private key (its rule without `psk` is loaded with a warning, and
/// its IKE_AUTH fails, logged), then `ikectl reload` reads the key, certificate and CA
/// that were put in its /etc/iked meanwhile, and the tunnel comes up; `ikectl show
/// certstore` says what was read, and `ikectl reset ca` reads it again.
#[test]
fn certificates_read_at_startup_and_on_reload() {
    require_root();
    let scratch = Scratch::new("iked-pki");
    let d = scratch.dir.join("pki");
    pki::ca(&d, "ca");
    pki::host(&d, "ca", "west.example", "192.0.2.1");
    pki::host_ec(&d, "ca", "east.example", "192.0.2.2", "P-256");
    // east's tree is complete; west's is empty for now.
    let etc = |who: &str| {
        let e = scratch.dir.join(format!("etc-{who}"));
        for sub in ["private", "certs", "ca", "crls", "pubkeys/fqdn"] {
            fs::create_dir_all(e.join(sub)).unwrap();
        }
        e
    };
    let put = |e: &Path, host: &str| {
        fs::copy(d.join(format!("{host}.key")), e.join("private/local.key")).unwrap();
        fs::set_permissions(
            e.join("private/local.key"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        fs::copy(d.join(format!("{host}.crt")), e.join("certs/local.crt")).unwrap();
        fs::copy(d.join("ca.crt"), e.join("ca/ca.crt")).unwrap();
    };
    let (west_etc, east_etc) = (etc("west"), etc("east"));
    put(&east_etc, "east.example");
    let conf = |mode: &str, me: &str, peer: &str, lnet: &str, rnet: &str, ids: (&str, &str)| {
        format!(
            "ikev2 \"tun\" {mode} esp from {lnet} to {rnet} local {me} peer {peer} \\\n\
             \tikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\\n\
             \tchildsa enc aes-256-gcm srcid {} dstid {}\n",
            ids.0, ids.1
        )
    };
    let link = Link::new("p");
    let east = Iked::start_with_etc(
        "iked-pki-east",
        &link.b,
        &conf(
            "passive",
            "192.0.2.2",
            "192.0.2.1",
            "203.0.113.0/24",
            "198.51.100.0/24",
            ("east.example", "west.example"),
        ),
        Some(&east_etc),
    );
    let west = Iked::start_with_etc(
        "iked-pki-west",
        &link.a,
        &conf(
            "active",
            "192.0.2.1",
            "192.0.2.2",
            "198.51.100.0/24",
            "203.0.113.0/24",
            ("west.example", "east.example"),
        ),
        Some(&west_etc),
    );
    let el = east.log();
    assert!(
        el.contains(
            "x509: 1 CA certificate(s), our certificate: \"C=CH, O=isakmpd test, \
             CN=east.example\"; private key: ECDSA P-256"
        ),
        "{el}"
    );
    assert!(!el.contains("IKE_AUTH will fail"), "{el}");
    // West: the rule is loaded, with a warning, and fails when negotiated.
    west.wait("the warning about west's rule", || {
        west.log().contains(
            "policy \"tun\": signature authentication, but no private key is loaded \
             (/etc/iked/private/local.key): its IKE_AUTH will fail",
        )
    });
    west.wait("west's IKE_AUTH failing", || {
        west.log()
            .contains("no private key for signature authentication")
    });
    let (st, out, err) = west.ikectl(&["show", "certstore"]);
    assert_eq!(st, 0, "{err}");
    assert_eq!(
        out,
        "local: no certificate holding our private key\nkey: none (no private/local.key)\n"
    );
    assert!(!established(&west.show_sa()));

    // The key material arrives; a reload reads it and starts the policy again.
    put(&west_etc, "west.example");
    let (st, _, err) = west.ikectl(&["reload"]);
    assert_eq!(st, 0, "{err}");
    let w = west.wait_sa("west established with certificates", established);
    east.wait_sa("east established", established);
    assert!(
        w.contains("192.0.2.1:500->192.0.2.2:500<FQDN/east.example>[] ESTABLISHED"),
        "{w}"
    );
    let wl = west.log();
    assert!(
        wl.contains(
            "x509: 1 CA certificate(s), our certificate: \"C=CH, O=isakmpd test, \
             CN=west.example\"; private key: RSA"
        ),
        "{wl}"
    );
    assert!(
        wl.contains("peer authenticated by certificate \"C=CH, O=isakmpd test, CN=east.example\""),
        "{wl}"
    );
    assert!(
        east.log().contains(
            "peer authenticated by certificate \"C=CH, O=isakmpd test, CN=west.example\""
        ),
        "{}",
        east.log()
    );
    assert_eq!(
        wl.matches("IKE_AUTH will fail").count(),
        1,
        "warned once, before the key came: {wl}"
    );
    let (st, out, err) = west.ikectl(&["show", "certstore"]);
    assert_eq!(st, 0, "{err}");
    assert_eq!(
        out,
        "ca: C=CH, O=isakmpd test, CN=ca\n\
         local: C=CH, O=isakmpd test, CN=west.example\n\
         local: subjectAltName IP:192.0.2.1, DNS:west.example\n\
         key: RSA\n"
    );
    // reset ca: the tree is read again (a raw public key added meanwhile shows up).
    fs::copy(
        d.join("east.example.crt"),
        west_etc.join("pubkeys/fqdn/not-a-key"),
    )
    .unwrap();
    let (st, _, err) = west.ikectl(&["reset", "ca"]);
    assert_eq!(st, 0, "{err}");
    west.wait("reset ca read the tree again", || {
        west.log().matches("x509: 1 CA certificate(s)").count() == 2
    });
    assert!(
        west.log().contains("pubkeys/fqdn/not-a-key:"),
        "a file that is no public key is named: {}",
        west.log()
    );
    // Private keys stay out of the log and of ikectl's answers.
    for text in [&west.log(), &east.log(), &out] {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}

/// A raw control client: sends `line` and returns the answer (no ikectl process, to make
/// many requests quickly).
fn control(sock: &Path, line: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut a = String::new();
    s.read_to_string(&mut a).unwrap();
    a
}

/// `ikectl monitor` on east prints, in ikectl's layout, the tunnel coming up, a reset
/// deleting it, the commands other clients send and a reload's policies; a monitor that
/// never reads does not hold the daemon up and is dropped once it falls behind; a ninth
/// monitor is refused.
#[test]
fn ikectl_monitor_follows_the_tunnel() {
    use std::io::Write;
    let link = Link::new("m");
    let east = Iked::start("iked-mon-east", &link.b, &east_conf());
    let out_path = east.scratch.dir.join("monitor.out");
    let mut mon = Command::new(&east.ikectl)
        .arg("-s")
        .arg(east.socket())
        .arg("monitor")
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = || fs::read_to_string(&out_path).unwrap_or_default();
    // A monitor that never reads.
    let mut stalled = std::os::unix::net::UnixStream::connect(east.socket()).unwrap();
    stalled.write_all(b"monitor\n").unwrap();
    stalled.shutdown(std::net::Shutdown::Write).unwrap();
    east.wait("both monitors connected", || {
        east.log().matches("control: monitor 2 connected").count() == 1
    });

    let west = Iked::start("iked-mon-west", &link.a, &west_conf());
    east.wait_sa("east established", established);
    east.wait("the monitor saw the tunnel come up", || {
        let o = out();
        o.contains("sa: ikesa established \"tun\" 192.0.2.2:500->192.0.2.1:500 ispi 0x")
            && o.contains("sa: childsa established \"tun\" spi in 0x")
    });
    let o = out();
    let first = o
        .lines()
        .find(|l| l.starts_with("show sa: imsg type 12 len 16 peerid 4096 pid 0"));
    assert!(first.is_some(), "{o}");
    assert!(o.contains("\n\ttimestamp: "), "{o}");

    // West resets its SAs: east's monitor sees them deleted.
    let (st, _, err) = west.ikectl(&["reset", "sa"]);
    assert_eq!(st, 0, "{err}");
    east.wait("the monitor saw the delete", || {
        let o = out();
        o.contains("sa: ikesa deleted \"tun\" ispi 0x") && o.contains("sa: childsa deleted \"tun\"")
    });
    // Commands of other clients, as iked forwards them, and the reload's policy.
    assert_eq!(east.ikectl(&["reload"]).0, 0);
    east.wait("the monitor saw the reload", || {
        let o = out();
        o.contains("reload: imsg type 5 len 16 peerid 0 pid 0\n")
            && o.contains("cfg policy: imsg type 18 len 16 peerid 0 pid 0\n")
            && o.contains("\tpolicy \"tun\" passive\n")
    });
    assert!(out().contains("\tcommand: show sa\n"), "{}", out());

    // The stalled monitor fills up and is dropped; show sa answers all along.
    let sock = east.socket();
    let mut n = 0;
    // (Which of the two connected first is not known: the other must stay.)
    let dropped = |l: &str| l.contains("does not read its events, dropped");
    while !east.log().lines().any(dropped) {
        for _ in 0..200 {
            assert!(control(&sock, "show sa").starts_with("ok\n"));
        }
        n += 200;
        assert!(n <= 20_000, "the stalled monitor was never dropped");
    }
    // (show_sa asserts ikectl's success.)
    east.show_sa();
    assert_eq!(east.log().lines().filter(|l| dropped(l)).count(), 1);
    // The reading monitor got every one of them.
    east.wait("the reading monitor kept up", || {
        out().matches("\tcommand: show sa\n").count() > n
    });

    // Up to eight at once: a ninth is refused with a reason.
    let mut more: Vec<_> = (0..7)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(east.socket()).unwrap();
            s.write_all(b"monitor\n").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            s
        })
        .collect();
    east.wait("eight monitors", || {
        east.log().contains("control: monitor 9 connected")
    });
    let (st, _, err) = east.ikectl(&["monitor"]);
    assert_eq!(st, 1);
    assert!(err.contains("too many monitors (8 connected)"), "{err}");
    more.clear();
    drop(stalled);

    // When the daemon goes, ikectl monitor ends as ikectl's does.
    drop(west);
    drop(east);
    let st = mon.wait().unwrap();
    assert_eq!(st.code(), Some(1));
}
