//! Handshake cost: full Main Mode (PSK) + Quick Mode negotiations between two engines in
//! memory (no sockets, no kernel), for MODP2048 and ECP256 like the strongSwan figures in
//! the project notes. Prints milliseconds of CPU per handshake for both sides together,
//! and the responder's share; next to it, what a spoofed message 1 costs the responder
//! (Main Mode: parse, choose, answer, keep half-open; Aggressive Mode: that and a DH key
//! pair and g^xy), the figure behind tests/flood_daemon.rs. Beside the IKEv1 figures,
//! IKEv2's: IKE_SA_INIT + IKE_AUTH with a pre-shared key and the first CHILD_SA between
//! two IKEv2 engines, the same way. Run with `cargo bench --bench handshake`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use isakmpd::conf::Conf;
use isakmpd::ike::{Engine, EngineConfig, Request};
use isakmpd::timer::Time;

fn conf(me: &str, peer: &str, mm: &str, qm: &str) -> Conf {
    let text = format!(
        "[Phase 1]\n{peer}=peer\n[Phase 2]\nPassive-connections=conn\n\
         [peer]\nPhase=1\nAddress={peer}\nConfiguration=mm\nAuthentication=bench-key\n\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms={mm}\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n\
         [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites={qm}\n"
    );
    let _ = me;
    Conf::parse(&text).unwrap().conf
}

fn engine(me: &str, peer: &str, mm: &str, qm: &str, seed: u64) -> Engine {
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(seed),
            no_kernel: true,
            ..Default::default()
        },
        &conf(me, peer, mm, qm),
        Time(0),
        isakmpd::ike::crypto::random_source(Some(seed)),
    );
    let ip: std::net::IpAddr = me.parse().unwrap();
    e.set_route_lookup(Box::new(move |_| Some(ip)));
    e
}

/// What the handshake loop needs of an engine, IKEv1's or IKEv2's.
trait Side {
    fn transmit(&mut self, buf: &mut [u8]) -> Option<usize>;
    fn receive(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]);
}

impl Side for Engine {
    fn transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.poll_transmit(buf).map(|t| t.len)
    }
    fn receive(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.handle_datagram(Time(0), local, remote, data)
    }
}

impl Side for isakmpd::ikev2::engine::Engine {
    fn transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.poll_transmit(buf).map(|t| t.len)
    }
    fn receive(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.handle_datagram(Time(0), local, remote, data)
    }
}

/// Moves datagrams between initiator `w` (at `wa`) and responder `e` (at `ea`) until
/// neither has more to send; returns the responder's time.
fn shuttle(
    w: &mut impl Side,
    e: &mut impl Side,
    wa: SocketAddr,
    ea: SocketAddr,
    buf: &mut [u8],
) -> Duration {
    let mut resp = Duration::ZERO;
    loop {
        let mut moved = false;
        while let Some(n) = w.transmit(buf) {
            let d = buf[..n].to_vec();
            let s = Instant::now();
            e.receive(ea, wa, &d);
            resp += s.elapsed();
            moved = true;
        }
        while let Some(n) = e.transmit(buf) {
            let d = buf[..n].to_vec();
            w.receive(wa, ea, &d);
            moved = true;
        }
        if !moved {
            return resp;
        }
    }
}

fn run(label: &str, mm: &str, qm: &str, n: usize) {
    let wa: SocketAddr = "192.0.2.1:500".parse().unwrap();
    let ea: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let mut resp = Duration::ZERO;
    let t0 = Instant::now();
    let mut buf = vec![0u8; 65535];
    for i in 0..n {
        let mut w = engine("192.0.2.1", "192.0.2.2", mm, qm, 2 * i as u64 + 1);
        let mut e = engine("192.0.2.2", "192.0.2.1", mm, qm, 2 * i as u64 + 2);
        w.handle_command(Time(0), Request::Connect("conn".into()))
            .unwrap();
        resp += shuttle(&mut w, &mut e, wa, ea, &mut buf);
        assert_eq!(w.ipsec_sas().count(), 1, "handshake {i} completed");
    }
    let total = t0.elapsed();
    println!(
        "{label:<44} {:>8.3} ms/handshake (both sides), responder {:>7.3} ms  ({n} handshakes)",
        total.as_secs_f64() * 1000.0 / n as f64,
        resp.as_secs_f64() * 1000.0 / n as f64
    );
}

/// IKEv2: `n` IKE_SA_INIT + IKE_AUTH (PSK) handshakes with the first CHILD_SA
/// (AES-GCM-256) between two engines in memory, IKE SA suite AES-CBC-128 / HMAC-SHA2-256
/// / PRF-HMAC-SHA2-256 and `group`.
fn run_v2(label: &str, group: isakmpd::ikev2::wire::DhGroup, n: usize) {
    run_v2_auth(label, group, n, None);
}

/// The PEM private keys and certificates of two hosts (192.0.2.1, 192.0.2.2) and their
/// CA, RSA-2048 or ECDSA P-256, made with OpenSSL.
struct BenchPki {
    ca: Vec<u8>,
    hosts: [(Vec<u8>, Vec<u8>); 2],
}

fn bench_pki(ec: bool) -> BenchPki {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509Name, X509NameBuilder, X509};
    let key = || -> PKey<Private> {
        if ec {
            let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap()
        } else {
            PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
        }
    };
    let name = |cn: &str| -> X509Name {
        let mut b = X509NameBuilder::new().unwrap();
        b.append_entry_by_text("CN", cn).unwrap();
        b.build()
    };
    let cert = |cn: &str, k: &PKey<Private>, serial: u32| {
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let sn = BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap();
        b.set_serial_number(&sn).unwrap();
        b.set_subject_name(&name(cn)).unwrap();
        b.set_issuer_name(&name("bench ca")).unwrap();
        b.set_pubkey(k).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b
    };
    let ca_key = key();
    let mut b = cert("bench ca", &ca_key, 1);
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let ca = b.build();
    let host = |ip: &str, serial| {
        let k = key();
        let mut b = cert(ip, &k, serial);
        let san = SubjectAlternativeName::new()
            .ip(ip)
            .build(&b.x509v3_context(Some(&ca), None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&ca_key, MessageDigest::sha256()).unwrap();
        (
            k.private_key_to_pem_pkcs8().unwrap(),
            b.build().to_pem().unwrap(),
        )
    };
    BenchPki {
        ca: ca.to_pem().unwrap(),
        hosts: [host("192.0.2.1", 2), host("192.0.2.2", 3)],
    }
}

/// As [`run_v2`], authenticating with certificates of `pki` (signatures, RFC 7427).
fn run_v2_auth(
    label: &str,
    group: isakmpd::ikev2::wire::DhGroup,
    n: usize,
    pki: Option<&BenchPki>,
) {
    use isakmpd::ikev2::engine::{Engine as V2, IkeState};
    use isakmpd::ikev2::policy::{
        Config, EspProposal, Identity, IkeProposal, Peer, PeerAuth, Policy, Selector, SigMethod,
    };
    use isakmpd::ikev2::wire::{EncrId, IntegId, PrfId};
    let wa: SocketAddr = "192.0.2.1:500".parse().unwrap();
    let ea: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let peer = |me: SocketAddr, them: SocketAddr, l: &str, r: &str| Peer {
        name: "peer".into(),
        local: me,
        remote: them,
        auth: match pki {
            Some(_) => PeerAuth::Sig(SigMethod::Any),
            None => PeerAuth::psk(b"bench-key"),
        },
        local_id: Identity::addr(me.ip()),
        remote_id: Some(Identity::addr(them.ip())),
        ike: vec![IkeProposal {
            encr: EncrId::AES_CBC,
            key_bits: Some(128),
            integ: Some(IntegId::HMAC_SHA2_256_128),
            prf: PrfId::HMAC_SHA2_256,
            dh: group,
        }],
        esp: vec![EspProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            pfs: None,
        }],
        local_ts: vec![Selector::subnet(l.parse().unwrap(), 24)],
        remote_ts: vec![Selector::subnet(r.parse().unwrap(), 24)],
        ike_lifetime_secs: 0,
        child_lifetime_secs: 0,
        child_lifetime_bytes: 0,
        cp: Default::default(),
        flows: Vec::new(),
        transport: false,
    };
    let engine = |p: Peer, seed: u64| {
        let mut e = V2::new(
            Config::default(),
            Policy { peers: vec![p] },
            Time(0),
            isakmpd::ike::crypto::random_source(Some(seed)),
        );
        if let Some(pki) = pki {
            let (k, c) = &pki.hosts[(seed as usize + 1) % 2];
            let creds = isakmpd::ike::Credentials::load(
                Some(k),
                std::slice::from_ref(c),
                std::slice::from_ref(&pki.ca),
            );
            e.set_credentials(creds.unwrap());
        }
        e
    };
    let mut resp = Duration::ZERO;
    let t0 = Instant::now();
    let mut buf = vec![0u8; 65535];
    for i in 0..n {
        let mut w = engine(
            peer(wa, ea, "198.51.100.0", "203.0.113.0"),
            2 * i as u64 + 1,
        );
        let mut e = engine(
            peer(ea, wa, "203.0.113.0", "198.51.100.0"),
            2 * i as u64 + 2,
        );
        w.connect(Time(0), "peer").unwrap();
        resp += shuttle(&mut w, &mut e, wa, ea, &mut buf);
        assert!(
            w.ike_sas().any(|(_, sa)| sa.state == IkeState::Established)
                && w.child_sas().count() == 1,
            "IKEv2 handshake {i} completed"
        );
    }
    let total = t0.elapsed();
    println!(
        "{label:<44} {:>8.3} ms/handshake (both sides), responder {:>7.3} ms  ({n} handshakes)",
        total.as_secs_f64() * 1000.0 / n as f64,
        resp.as_secs_f64() * 1000.0 / n as f64
    );
}

/// The responder's CPU per spoofed message 1 (`exchange` ID_PROT or AGGRESSIVE) offering
/// `mm`: `n` copies of our initiator's message 1, each from another address of
/// 198.18.0.0/15 with another initiator cookie, 5,500 a second of engine time; `general`
/// goes into the responder's [General]. With `all`, every one is answered (checked).
fn flood(label: &str, exchange: &str, mm: &str, n: u32, general: &str, all: bool) {
    let text = |default: &str, peer: &str| {
        format!(
            "[General]\n{general}[Phase 1]\n{peer}=peer\n{default}[Phase 2]\nPassive-connections=conn\n\
             [peer]\nPhase=1\nAddress={peer}\nConfiguration=mm\nAuthentication=bench-key\n\
             [mm]\nEXCHANGE_TYPE={exchange}\nTransforms={mm}\n\
             [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n\
             [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-128-SHA2-256-SUITE\n"
        )
    };
    let with = |text: &str, me: &str, seed: u64| {
        let mut e = Engine::new(
            EngineConfig {
                seed: Some(seed),
                no_kernel: true,
                ..Default::default()
            },
            &Conf::parse(text).unwrap().conf,
            Time(0),
            isakmpd::ike::crypto::random_source(Some(seed)),
        );
        let ip: IpAddr = me.parse().unwrap();
        e.set_route_lookup(Box::new(move |_| Some(ip)));
        e
    };
    let mut buf = vec![0u8; 65535];
    // Message 1 as our initiator writes it.
    let mut i = with(&text("", "192.0.2.2"), "198.18.0.1", 1);
    i.handle_command(Time(0), Request::Connect("conn".into()))
        .unwrap();
    let t = i.poll_transmit(&mut buf).unwrap();
    let mut msg = buf[..t.len].to_vec();
    let mut r = with(&text("Default=peer\n", "192.0.2.1"), "192.0.2.2", 2);
    let ra: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let mut answered = 0u32;
    let t0 = Instant::now();
    for k in 0..n {
        let now = Time(u64::from(k) * 1000 / 5500);
        msg[..8].copy_from_slice(&(0xf100_0000_0000_0000u64 | u64::from(k)).to_be_bytes());
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(base + (k.wrapping_mul(40_503) & 0x1_ffff))),
            500,
        );
        r.handle_datagram(now, ra, from, &msg);
        r.handle_timeout(now);
        while r.poll_transmit(&mut buf).is_some() {
            answered += 1;
        }
    }
    let el = t0.elapsed();
    if all {
        assert_eq!(answered, n, "every message 1 answered");
    }
    println!(
        "{label:<44} {:>8.1} us/message 1 (responder alone), {:>6.0} a second on one core  ({n} messages, {answered} answered, {} half-open at the end)",
        el.as_secs_f64() * 1e6 / f64::from(n),
        f64::from(n) / el.as_secs_f64(),
        r.half_open_exchanges()
    );
}

fn main() {
    isakmpd::ike::crypto::init();
    run(
        "MM+QM PSK AES-128/SHA2-256 MODP2048",
        "AES-128-SHA2-256-GRP14",
        "QM-ESP-AES-128-SHA2-256-SUITE",
        200,
    );
    run(
        "MM+QM PSK AES-128/SHA2-256 ECP256",
        "AES-128-SHA2-256-GRP19",
        "QM-ESP-AES-128-SHA2-256-SUITE",
        500,
    );
    run(
        "MM+QM(PFS) PSK AES-128/SHA2-256 ECP256",
        "AES-128-SHA2-256-GRP19",
        "QM-ESP-AES-128-SHA2-256-PFS-GRP19-SUITE",
        500,
    );
    run_v2(
        "IKEv2 INIT+AUTH PSK AES-128/SHA2-256 MODP2048",
        isakmpd::ikev2::wire::DhGroup::MODP_2048,
        200,
    );
    run_v2(
        "IKEv2 INIT+AUTH PSK AES-128/SHA2-256 ECP256",
        isakmpd::ikev2::wire::DhGroup::ECP_256,
        500,
    );
    run_v2_auth(
        "IKEv2 INIT+AUTH RSA-2048 certs ECP256",
        isakmpd::ikev2::wire::DhGroup::ECP_256,
        200,
        Some(&bench_pki(false)),
    );
    run_v2_auth(
        "IKEv2 INIT+AUTH ECDSA-P256 certs ECP256",
        isakmpd::ikev2::wire::DhGroup::ECP_256,
        300,
        Some(&bench_pki(true)),
    );
    flood(
        "spoofed MM1 AES-128/SHA2-256 MODP2048",
        "ID_PROT",
        "AES-128-SHA2-256-GRP14",
        50_000,
        "",
        true,
    );
    flood(
        "spoofed MM1 AES-128/SHA2-256 ECP256",
        "ID_PROT",
        "AES-128-SHA2-256-GRP19",
        50_000,
        "",
        true,
    );
    // Aggressive Mode: each answer costs a DH key pair and g^xy. Answered without limit
    // (a rate above the flood's), then at the default Aggressive-default-rate (100 a
    // second for peers only Default matches: the rest are dropped).
    let unlimited = "Aggressive-default-rate=1000000\n";
    flood(
        "spoofed AM1 AES-128/SHA2-256 MODP2048",
        "AGGRESSIVE",
        "AES-128-SHA2-256-GRP14",
        1_000,
        unlimited,
        true,
    );
    flood(
        "spoofed AM1 AES-128/SHA2-256 ECP256",
        "AGGRESSIVE",
        "AES-128-SHA2-256-GRP19",
        5_000,
        unlimited,
        true,
    );
    flood(
        "spoofed AM1 MODP2048, default rate limit",
        "AGGRESSIVE",
        "AES-128-SHA2-256-GRP14",
        50_000,
        "",
        false,
    );
}
