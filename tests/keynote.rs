//! isakmpd.policy enforced end to end: two engines in memory, the responder (east) with a
//! KeyNote policy, as isakmpd's check_policy asks it about each Quick Mode proposal.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use isakmpd::conf::Conf;
use isakmpd::ike::{Engine, EngineConfig};
use isakmpd::keynote::{Enforced, Policy};
use isakmpd::timer::Time;

const WEST: &str = "192.0.2.1";
const EAST: &str = "192.0.2.2";
const PSK: &str = "mekmitasdigoat";

/// Log lines, by the test thread that logged them.
struct Capture;

static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let t = std::thread::current().name().unwrap_or("").to_string();
        LINES.lock().unwrap().push((t, r.args().to_string()));
    }
    fn flush(&self) {}
}

fn my_lines() -> Vec<String> {
    let me = std::thread::current().name().unwrap_or("").to_string();
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t == me)
        .map(|(_, l)| l.clone())
        .collect()
}

fn capture_logs() {
    static C: Capture = Capture;
    if log::set_logger(&C).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

fn conf(me: &str, peer: &str, active: bool, qm: &str) -> Conf {
    conf_p1(me, peer, active, qm, "AES-SHA")
}

/// As [`conf`], with phase 1 transform `p1`.
fn conf_p1(me: &str, peer: &str, active: bool, qm: &str, p1: &str) -> Conf {
    let (lnet, rnet) = if me == WEST {
        ("198.51.100.0", "203.0.113.0")
    } else {
        ("203.0.113.0", "198.51.100.0")
    };
    let text = format!(
        "[General]\nRetransmits=3\nExchange-max-time=60\n\
         [Phase 1]\n{peer}=peer\n\
         [Phase 2]\n{}=conn\n\
         [peer]\nPhase=1\nAddress={peer}\nConfiguration=mm\nAuthentication={PSK}\n\
         [mm]\nDOI=IPSEC\nEXCHANGE_TYPE=ID_PROT\nTransforms={p1}\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\nLocal-ID=lnet\nRemote-ID=rnet\n\
         [qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites={qm}\n\
         [lnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={lnet}\nNetmask=255.255.255.0\n\
         [rnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={rnet}\nNetmask=255.255.255.0\n",
        if active {
            "Connections"
        } else {
            "Passive-connections"
        }
    );
    Conf::parse(&text).unwrap().conf
}

fn engine(me: &str, c: &Conf, seed: u64) -> (Engine, SocketAddr) {
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(seed),
            no_kernel: true,
            ..Default::default()
        },
        c,
        Time(0),
        isakmpd::ike::crypto::random_source(Some(seed)),
    );
    let ip: std::net::IpAddr = me.parse().unwrap();
    e.set_route_lookup(Box::new(move |_| Some(ip)));
    (e, SocketAddr::new(ip, 500))
}

/// Moves datagrams and fires timers until both engines are quiet (at most a minute).
fn drive(a: &mut (Engine, SocketAddr), b: &mut (Engine, SocketAddr)) {
    let mut now = Time(0);
    let end = now.add_secs(60);
    let mut buf = vec![0u8; 65535];
    for _ in 0..10_000 {
        let mut moved = false;
        for dir in [true, false] {
            let (from, to) = if dir {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            let mut out = Vec::new();
            while let Some(t) = from.0.poll_transmit(&mut buf) {
                out.push(buf[..t.len].to_vec());
            }
            for d in out {
                moved = true;
                to.0.handle_datagram(now, to.1, from.1, &d);
            }
        }
        if moved {
            continue;
        }
        match [a.0.poll_timeout(), b.0.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            Some(t) if t <= end => {
                now = now.max(t);
                a.0.handle_timeout(now);
                b.0.handle_timeout(now);
            }
            _ => return,
        }
    }
    panic!("did not settle");
}

/// West offers `west_qm`; east accepts `east_qm` under `policy` (None: -K). Returns the
/// ESP transform IDs of east's SAs.
fn run(west_qm: &str, east_qm: &str, policy: Option<&str>) -> Vec<u8> {
    run2(west_qm, east_qm, None, policy)
}

fn enforce(e: &mut Engine, text: &str) {
    let l = Policy::parse(text);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    e.set_proposal_policy(Some(Arc::new(Enforced {
        path: "test.policy".into(),
        policy: l.policy,
    })));
}

/// Like [`run`], with a policy on either side.
fn run2(west_qm: &str, east_qm: &str, west: Option<&str>, east: Option<&str>) -> Vec<u8> {
    capture_logs();
    let mut w = engine(WEST, &conf(WEST, EAST, true, west_qm), 1);
    let mut e = engine(EAST, &conf(EAST, WEST, false, east_qm), 2);
    if let Some(text) = west {
        enforce(&mut w.0, text);
    }
    if let Some(text) = east {
        enforce(&mut e.0, text);
    }
    w.0.start_connections(Time(0));
    drive(&mut w, &mut e);
    let west_sas = w.0.ipsec_sas().count();
    let east: Vec<u8> = e.0.ipsec_sas().map(|s| s.transform).collect();
    assert_eq!(west_sas, east.len(), "both sides agree");
    east
}

const AES_ONLY: &str = r#"KeyNote-Version: 2
Comment: ESP with AES only, for the right passphrase
Authorizer: "POLICY"
Licensees: "passphrase:mekmitasdigoat"
Conditions: app_domain == "IPsec policy" && esp_present == "yes" &&
            esp_enc_alg == "aes" -> "true";
"#;

const ESP_AES: u8 = 12;
const ESP_3DES: u8 = 3;
const BOTH: &str = "QM-ESP-3DES-SHA-SUITE,QM-ESP-AES-SHA-SUITE";

fn refused_with_no_proposal_chosen() -> bool {
    let l = my_lines();
    l.iter().any(|x| x.contains("refused by isakmpd.policy"))
        && l.iter().any(|x| x.contains("says NO_PROPOSAL_CHOSEN"))
}

#[test]
fn aes_only_policy_lets_aes_through() {
    let sas = run("QM-ESP-AES-SHA-SUITE", BOTH, Some(AES_ONLY));
    assert!(!sas.is_empty());
    assert!(sas.iter().all(|&t| t == ESP_AES), "{sas:?}");
}

#[test]
fn aes_only_policy_refuses_a_3des_only_peer() {
    let sas = run("QM-ESP-3DES-SHA-SUITE", BOTH, Some(AES_ONLY));
    assert!(sas.is_empty(), "{sas:?}");
    assert!(refused_with_no_proposal_chosen(), "{:#?}", my_lines());
}

#[test]
fn a_refused_proposal_is_passed_over_for_an_allowed_one() {
    // West offers 3DES first; the configuration alone would take it.
    let sas = run(BOTH, BOTH, None);
    assert!(!sas.is_empty());
    assert!(sas.iter().all(|&t| t == ESP_3DES), "{sas:?}");
    let sas = run(BOTH, BOTH, Some(AES_ONLY));
    assert!(!sas.is_empty());
    assert!(sas.iter().all(|&t| t == ESP_AES), "{sas:?}");
}

#[test]
fn the_initiator_puts_the_responders_choice_to_its_policy() {
    // East, without a policy, takes west's first proposal (3DES); west's policy refuses it
    // and tells east so.
    let sas = run2(BOTH, BOTH, Some(AES_ONLY), None);
    assert!(sas.is_empty(), "{sas:?}");
    let l = my_lines();
    assert!(
        l.iter().any(|x| x.contains("refused by isakmpd.policy")),
        "{l:#?}"
    );
    assert!(
        l.iter().any(|x| x.contains("says NO_PROPOSAL_CHOSEN")),
        "{l:#?}"
    );
}

#[test]
fn aes_with_pfs_policy_refuses_a_pfs_less_peer() {
    let policy = AES_ONLY.replace("-> \"true\"", "&& pfs == \"yes\" -> \"true\"");
    let east = "QM-ESP-AES-SHA-SUITE,QM-ESP-AES-SHA-PFS-SUITE";
    let sas = run("QM-ESP-AES-SHA-PFS-SUITE", east, Some(&policy));
    assert!(!sas.is_empty(), "{:#?}", my_lines());
    let sas = run("QM-ESP-AES-SHA-SUITE", east, Some(&policy));
    assert!(sas.is_empty(), "{sas:?}");
    assert!(refused_with_no_proposal_chosen(), "{:#?}", my_lines());
}

#[test]
fn licensees_naming_another_passphrase_refuse_the_peer() {
    let other = AES_ONLY.replace("passphrase:mekmitasdigoat", "passphrase:somebodyelse");
    let sas = run("QM-ESP-AES-SHA-SUITE", BOTH, Some(&other));
    assert!(sas.is_empty(), "{sas:?}");
    assert!(refused_with_no_proposal_chosen(), "{:#?}", my_lines());
}

#[test]
fn hashed_passphrase_principals_and_filters() {
    // The client IDs and addresses as isakmpd writes them; the principal as given.
    let p = r#"Authorizer: "POLICY"
Licensees: PRINCIPAL
Conditions: app_domain == "IPsec policy" && doi == "ipsec" && initiator == "no" &&
            phase_1 == "main" && pfs == "no" &&
            remote_filter_type == "IPv4 subnet" &&
            remote_filter == "198.051.100.000-198.051.100.255" &&
            local_filter_addr_lower == "203.000.113.000" &&
            remote_negotiation_address == "192.000.002.001" &&
            remote_id_type == "IPv4 address" && remote_id == "192.000.002.001" &&
            GMTTimeOfDay ~= "^19700101" -> "true";
"#;
    for principal in [
        // md5 and sha1 of "mekmitasdigoat".
        "\"passphrase-md5-hex:227f500abfe58f5f5d61e7f6053d8d85\"",
        "\"passphrase-sha1-hex:bf1091800d1221f9a35ec087a67e2d6209d6478e\"",
    ] {
        let ok = p.replace("PRINCIPAL", principal);
        let sas = run("QM-ESP-AES-SHA-SUITE", BOTH, Some(&ok));
        assert!(!sas.is_empty(), "{principal}: {:#?}", my_lines());
        // The same with a wrong filter: refused.
        let q = ok.replace("198.051.100.000-", "198.051.101.000-");
        assert!(run("QM-ESP-AES-SHA-SUITE", BOTH, Some(&q)).is_empty());
    }
}

// The daemon: the policy file read at start and on reload, the report's "keynote:" line.

const DAEMON_CONF: &str = "[General]\nListen-on=\t127.0.0.1\nPolicy-file=\tPOLICY\n\
[Phase 1]\n192.0.2.2=\tpeer-east\n\
[peer-east]\nPhase=\t1\nAddress=\t192.0.2.2\nAuthentication=\tverysecretpsk\n";

const ACCEPT_ALL: &str = "KeyNote-Version: 2\nAuthorizer: \"POLICY\"\n\
Conditions: app_domain == \"IPsec policy\" -> \"true\";\n";

#[test]
fn daemon_reads_the_policy_file_at_start_and_on_reload() {
    common::require_root();
    let files = common::Scratch::new("keynote-policy");
    let path = files.write("isakmpd.policy", AES_ONLY, 0o600);
    let conf = DAEMON_CONF.replace("POLICY", path.to_str().unwrap());
    let d = common::start("keynote-on", &conf, &["-p", "1500", "-T"]);
    let rep = d.fifo_sync("");
    let want = format!("keynote: on ({}, 1 assertion)\n", path.display());
    assert!(rep.contains(&want), "{rep}");
    fs::write(
        &path,
        format!("{AES_ONLY}\n{ACCEPT_ALL}\n# a comment\n\nnot an assertion\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for(|| d.log().contains("reloaded policy"), "policy reload");
    let rep = d.fifo_sync("");
    assert!(
        rep.contains(&format!("keynote: on ({}, 2 assertions)", path.display())),
        "{rep}"
    );
    assert!(
        d.log()
            .contains("isakmpd.policy: line 14: assertion ignored"),
        "{}",
        d.log()
    );
    // A file that became group-readable is refused; the running policy stays.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    d.fifo("R\n");
    d.wait_for(|| d.log().contains("policy not reloaded"), "refused reload");
    assert!(d.fifo_sync("").contains("2 assertions"));
}

#[test]
fn daemon_with_minus_k_or_use_keynote_no_reports_off() {
    common::require_root();
    let conf = DAEMON_CONF.replace("POLICY", "/nonexistent/isakmpd.policy");
    let d = common::start("keynote-k", &conf, &["-p", "1500", "-T", "-K"]);
    assert!(d.fifo_sync("").contains("keynote: off (-K)\n"));
    let conf = conf.replace("[General]\n", "[General]\nUse-Keynote=\tno\n");
    let d = common::start("keynote-no", &conf, &["-p", "1500", "-T"]);
    assert!(d
        .fifo_sync("")
        .contains("keynote: off ([General]:Use-Keynote)\n"));
    // A missing file: off, and said so (isakmpd would not start).
    let conf = DAEMON_CONF.replace("POLICY", "/nonexistent/isakmpd.policy");
    let d = common::start("keynote-missing", &conf, &["-p", "1500", "-T"]);
    let rep = d.fifo_sync("");
    assert!(
        rep.contains("keynote: off (/nonexistent/isakmpd.policy missing)\n"),
        "{rep}"
    );
    assert!(d.log().contains("KeyNote policy off"), "{}", d.log());
}

#[test]
fn daemon_refuses_a_group_readable_policy_file() {
    common::require_root();
    let s = common::Scratch::new("keynote-perm");
    let path = s.write("isakmpd.policy", ACCEPT_ALL, 0o644);
    let conf = s.write(
        "isakmpd.conf",
        &DAEMON_CONF.replace("POLICY", path.to_str().unwrap()),
        0o600,
    );
    let (mut child, log) = common::spawn(&s, &conf, &["-p", "1500"]);
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let log = fs::read_to_string(log).unwrap();
    assert!(log.contains("policy_init: cannot read"), "{log}");
    assert!(log.contains("bad permissions 0644"), "{log}");
}

/// A PKCS#1 public key of `key` (a PEM private key in `dir`), as openssl(1) writes it.
fn pkcs1(dir: &std::path::Path, key: &str) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in", key])
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    out.stdout
}

/// Main Mode with RSA signatures; east accepts what `policy` allows. Both sides trust both
/// CAs, so only the policy tells the peers apart. Returns east's ESP transforms.
fn run_sig(dir: &std::path::Path, west_host: &str, west_qm: &str, policy: &str) -> Vec<u8> {
    capture_logs();
    let rd = |n: &str| fs::read(dir.join(n)).unwrap();
    let creds = |host: &str| {
        isakmpd::ike::Credentials::load(
            Some(&rd(&format!("{host}.key"))),
            &[rd(&format!("{host}.crt"))],
            &[rd("ca.crt"), rd("otherca.crt")],
        )
        .unwrap()
    };
    let p1 = "AES-SHA2-256-GRP14-RSA_SIG";
    let mut w = engine(WEST, &conf_p1(WEST, EAST, true, west_qm, p1), 7);
    let mut e = engine(EAST, &conf_p1(EAST, WEST, false, BOTH, p1), 8);
    w.0.set_credentials(creds(west_host));
    e.0.set_credentials(creds("east"));
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    e.0.set_wall_clock(isakmpd::ike::policy::WallClock {
        unix,
        utc_offset: 0,
    });
    enforce(&mut e.0, policy);
    w.0.start_connections(Time(0));
    drive(&mut w, &mut e);
    assert_eq!(
        e.0.isakmp_sas().count(),
        1,
        "phase 1 is up: {:#?}",
        my_lines()
    );
    e.0.ipsec_sas().map(|s| s.transform).collect()
}

/// isakmpd's principals for a peer that signs (ike_quick_mode.c `check_policy`): its key
/// as `rsa-hex:` and its certificate's `DN:`, and the assertions x509_generate_kn makes
/// from its certificate (its CA's key and DN license its own), so a policy may name the
/// CA that certified a peer, or the peer's own key in any encoding.
#[test]
fn policies_naming_a_ca_or_a_peer_key_for_signature_peers() {
    isakmpd::ike::crypto::init();
    let dir = std::env::temp_dir().join(format!("isakmpd-kn-pki-{}", std::process::id()));
    pki::ca(&dir, "ca");
    pki::ca(&dir, "otherca");
    pki::host(&dir, "ca", "west", WEST);
    pki::host(&dir, "ca", "east", EAST);
    pki::host(&dir, "otherca", "mallory", WEST);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let aes_for = |who: &str| {
        format!(
            "Authorizer: \"POLICY\"\nLicensees: {who}\n\
             Conditions: app_domain == \"IPsec policy\" && esp_enc_alg == \"aes\" -> \"true\";\n"
        )
    };
    let by_ca_key = aes_for(&format!("\"rsa-hex:{}\"", hex(&pkcs1(&dir, "ca.key"))));
    // Certified by that CA, AES: allowed; 3DES only: refused.
    let sas = run_sig(&dir, "west", "QM-ESP-AES-SHA-SUITE", &by_ca_key);
    assert_eq!(sas, [ESP_AES], "{:#?}", my_lines());
    let sas = run_sig(&dir, "west", "QM-ESP-3DES-SHA-SUITE", &by_ca_key);
    assert!(sas.is_empty(), "{sas:?}");
    assert!(refused_with_no_proposal_chosen(), "{:#?}", my_lines());
    // A peer the other CA certified (trusted for phase 1) is not licensed.
    let sas = run_sig(&dir, "mallory", "QM-ESP-AES-SHA-SUITE", &by_ca_key);
    assert!(sas.is_empty(), "{sas:?}");
    assert!(refused_with_no_proposal_chosen(), "{:#?}", my_lines());
    // The CA by its DN.
    let by_ca_dn = aes_for("\"DN:/C=CH/O=isakmpd test/CN=ca\"");
    let sas = run_sig(&dir, "west", "QM-ESP-AES-SHA-SUITE", &by_ca_dn);
    assert_eq!(sas, [ESP_AES], "{:#?}", my_lines());
    let sas = run_sig(&dir, "mallory", "QM-ESP-AES-SHA-SUITE", &by_ca_dn);
    assert!(sas.is_empty(), "{sas:?}");
    // The peer's own key, in base64: keys compare as keys.
    let b64 = base64_of(&pkcs1(&dir, "mallory.key"));
    let by_key = aes_for(&format!("\"rsa-base64:{b64}\""));
    let sas = run_sig(&dir, "mallory", "QM-ESP-AES-SHA-SUITE", &by_key);
    assert_eq!(sas, [ESP_AES], "{:#?}", my_lines());
    let sas = run_sig(&dir, "west", "QM-ESP-AES-SHA-SUITE", &by_key);
    assert!(sas.is_empty(), "{sas:?}");
    let _ = fs::remove_dir_all(&dir);
}

/// Base64 by base64(1), one line.
fn base64_of(b: &[u8]) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64");
    c.stdin.take().unwrap().write_all(b).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

// KeyNote credentials for RSA signatures, no X.509 (ike_auth.c `rsa_sig_encode_hash` and
// `rsa_sig_decode_hash` with policy.c's KeyNote certificate handler): two daemons, each
// with `[KeyNote] Credential-directory/<its address>/{private_key,credentials}` made here
// with openssl(1), and an isakmpd.policy naming a key.

/// openssl(1) run in `dir`; its standard output.
fn openssl_out(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out.stdout
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An RSA key `name`.pem in `dir`; its PKCS#1 public key.
fn kn_key(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let pem = format!("{name}.pem");
    openssl_out(dir, &["genrsa", "-out", &pem, "2048"]);
    pkcs1(dir, &pem)
}

/// An assertion by key `by` (`by`.pem in `dir`) licensing `lic` for IPsec, signed as
/// libkeynote's `sig-rsa-sha1-hex` (PKCS#1 v1.5 over the SHA-1 of the text and the
/// algorithm name as a DER OCTET STRING), by `openssl dgst` and `openssl pkeyutl`.
fn kn_credential(dir: &std::path::Path, by: &str, lic: &[u8]) -> String {
    let alg = "sig-rsa-sha1-hex:";
    let body = format!(
        "KeyNote-Version: 2\nComment: made by tests/keynote.rs\n\
         Authorizer: \"rsa-hex:{}\"\nLicensees: \"rsa-hex:{}\"\n\
         Conditions: app_domain == \"IPsec policy\" -> \"true\";\nSignature: \"",
        hex(&pkcs1(dir, &format!("{by}.pem"))),
        hex(lic)
    );
    // The text up to the Signature keyword, then the algorithm's name.
    let upto = body.len() - "Signature: \"".len();
    fs::write(dir.join("signed.txt"), format!("{}{alg}", &body[..upto])).unwrap();
    let d = openssl_out(dir, &["dgst", "-sha1", "-binary", "signed.txt"]);
    let mut octets = vec![0x04, d.len() as u8];
    octets.extend_from_slice(&d);
    fs::write(dir.join("digest.der"), octets).unwrap();
    let inkey = format!("{by}.pem");
    let sig = openssl_out(
        dir,
        &[
            "pkeyutl",
            "-sign",
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-inkey",
            &inkey,
            "-in",
            "digest.der",
        ],
    );
    format!("{body}{alg}{}\"\n", hex(&sig))
}

/// One side's /etc/isakmpd: keynote/`ip`/private_key (`key`.pem as keynote-keygen writes
/// a private key: a quoted `private-rsa-hex:` string continued over lines),
/// keynote/`ip`/credentials, and isakmpd.policy letting the key `trusted` have ESP.
fn kn_etc(
    dir: &std::path::Path,
    ip: &str,
    key: &str,
    credentials: &str,
    trusted: &[u8],
) -> std::path::PathBuf {
    let etc = dir.join(format!("etc-{ip}"));
    let kd = etc.join("keynote").join(ip);
    fs::create_dir_all(&kd).unwrap();
    let der = openssl_out(
        dir,
        &[
            "rsa",
            "-outform",
            "DER",
            "-traditional",
            "-in",
            &format!("{key}.pem"),
        ],
    );
    let h = hex(&der);
    let lines: Vec<&str> = (0..h.len())
        .step_by(64)
        .map(|i| &h[i..(i + 64).min(h.len())])
        .collect();
    fs::write(
        kd.join("private_key"),
        format!("\"private-rsa-hex:{}\"\n", lines.join("\\\n  ")),
    )
    .unwrap();
    fs::set_permissions(kd.join("private_key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(kd.join("credentials"), credentials).unwrap();
    let policy = etc.join("isakmpd.policy");
    fs::write(
        &policy,
        format!(
            "KeyNote-Version: 2\nAuthorizer: \"POLICY\"\nLicensees: \"rsa-hex:{}\"\n\
             Conditions: app_domain == \"IPsec policy\" && esp_present == \"yes\" -> \"true\";\n",
            hex(trusted)
        ),
    )
    .unwrap();
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o600)).unwrap();
    etc
}

fn kn_conf(me: &str, peer: &str, lnet: &str, rnet: &str, connections: &str) -> String {
    format!(
        "[General]\nRetransmits=3\nExchange-max-time=30\nCheck-interval=5\n\
[Phase 1]\n{peer}=peer\n\
[Phase 2]\n{connections}=tun\n\
[peer]\nPhase=1\nAddress={peer}\nLocal-address={me}\nConfiguration=mm\n\
[mm]\nDOI=IPSEC\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-256-SHA2-256-GRP14-RSA_SIG\n\
[tun]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\nLocal-ID=lnet\nRemote-ID=rnet\n\
[qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE\n\
[lnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={lnet}\nNetmask=255.255.255.0\n\
[rnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={rnet}\nNetmask=255.255.255.0\n"
    )
}

/// `S` through the FIFO: the result file's text.
fn kn_sas(d: &common::Daemon) -> String {
    let res = d.run_file("isakmpd.result");
    let _ = fs::remove_file(&res);
    d.fifo_sync("S\n");
    fs::read_to_string(res).unwrap_or_default()
}

/// West (192.0.2.1, starting) and east (192.0.2.2). West's credentials: a CA's key
/// licenses west's key, signed by the CA, passed through `west_creds`; east's policy trusts
/// `east_trusts` (None: the CA's key). East's credentials: east's key licenses itself;
/// west's policy trusts east's key.
fn kn_pair(
    tag: &str,
    west_creds: impl Fn(String) -> String,
    east_trusts: Option<&[u8]>,
) -> (
    common::Link,
    common::Daemon,
    common::Daemon,
    std::path::PathBuf,
) {
    let dir = std::env::temp_dir().join(format!("isakmpd-kn-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let ca = kn_key(&dir, "ca");
    let west = kn_key(&dir, "west");
    let east = kn_key(&dir, "east");
    let w_etc = kn_etc(
        &dir,
        "192.0.2.1",
        "west",
        &west_creds(kn_credential(&dir, "ca", &west)),
        &east,
    );
    let e_etc = kn_etc(
        &dir,
        "192.0.2.2",
        "east",
        &kn_credential(&dir, "east", &east),
        east_trusts.unwrap_or(&ca),
    );
    let link = common::Link::new(tag);
    let e = common::start_with_etc(
        &format!("kn-{tag}-east"),
        &kn_conf(
            "192.0.2.2",
            "192.0.2.1",
            "203.0.113.0",
            "198.51.100.0",
            "Passive-connections",
        ),
        &[],
        Some(&link.b),
        Some(&e_etc),
    );
    let w = common::start_with_etc(
        &format!("kn-{tag}-west"),
        &kn_conf(
            "192.0.2.1",
            "192.0.2.2",
            "198.51.100.0",
            "203.0.113.0",
            "Connections",
        ),
        &[],
        Some(&link.a),
        Some(&w_etc),
    );
    (link, w, e, dir)
}

#[test]
fn daemons_authenticate_by_keynote_credentials_and_policy_admits_them() {
    let (_link, w, e, dir) = kn_pair("kn", |c| c, None);
    let t0 = std::time::Instant::now();
    while !(kn_sas(&w).contains("(Phase 2)") && kn_sas(&e).contains("(Phase 2)")) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no tunnel\n--- west ---\n{}\n--- east ---\n{}",
            w.log(),
            e.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (wl, el) = (w.log(), e.log());
    // Each read its own directory and signed with its KeyNote key.
    for l in [&wl, &el] {
        assert!(l.contains("private key: RSA, credentials:"), "{l}");
        assert!(
            l.contains("authenticated by its KeyNote credentials (1 assertion(s))"),
            "{l}"
        );
    }
    assert!(el.contains("keynote: local ID 192.0.2.2"), "{el}");
    assert!(
        wl.contains("peer 192.0.2.2:500 authenticated by its KeyNote"),
        "{wl}"
    );
    assert!(
        el.contains("peer 192.0.2.1:500 authenticated by its KeyNote"),
        "{el}"
    );
    assert!(!el.contains("refused by isakmpd.policy"), "{el}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_credential_with_a_bad_signature_is_refused() {
    // One character of the signed text changed after signing.
    let (_link, w, e, dir) = kn_pair("kb", |c| c.replace("IPsec policy", "IPsec pólicy"), None);
    e.wait_for(
        || e.log().contains("KeyNote credentials refused"),
        "east refusing west's credentials",
    );
    let el = e.log();
    assert!(
        el.contains("signed assertion refused: the signature does not verify"),
        "{el}"
    );
    assert!(!el.contains("authenticated by its KeyNote"), "{el}");
    assert!(!kn_sas(&e).contains("Phase 2"));
    assert!(!kn_sas(&w).contains("Phase 2"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_peer_whose_key_the_policy_does_not_trust_gets_no_tunnel() {
    // East trusts a key that is neither west's nor its CA's.
    let other = tempkey();
    let (_link, w, e, dir) = kn_pair("ku", |c| c, Some(&other));
    e.wait_for(
        || e.log().contains("refused by isakmpd.policy"),
        "east refusing west's Quick Mode",
    );
    let el = e.log();
    // Phase 1 passed (the credentials are good); the policy said no.
    assert!(
        el.contains("peer 192.0.2.1:500 authenticated by its KeyNote"),
        "{el}"
    );
    assert!(!kn_sas(&e).contains("(Phase 2)"));
    assert!(!kn_sas(&w).contains("(Phase 2)"));
    let _ = fs::remove_dir_all(&dir);
}

/// A key of nobody in the test.
fn tempkey() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("isakmpd-kn-other-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let k = kn_key(&dir, "other");
    let _ = fs::remove_dir_all(&dir);
    k
}
