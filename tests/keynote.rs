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
