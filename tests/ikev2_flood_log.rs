//! A garbage flood against the IKEv2 engine, with a logger that keeps what it is given:
//! datagrams that do not parse, messages for IKE SAs nobody has, IKE_SA_INIT requests
//! from unknown addresses and (spoofed) from the configured peer with proposals we do
//! not take. The log shows a few lines per ten seconds with the count held back, not a
//! line per datagram, and the unprotected NO_PROPOSAL_CHOSEN answers stay rate limited
//! (the daemon is neither a log flooder nor a reflector).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use isakmpd::ike::crypto::SeededRandom;
use isakmpd::ikev2::engine::Engine;
use isakmpd::ikev2::policy::{Config, EspProposal, Identity, IkeProposal, Peer, PeerAuth, Policy};
use isakmpd::ikev2::wire::{DhGroup, EncrId, IntegId, PrfId};
use isakmpd::timer::Time;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Keep;

impl log::Log for Keep {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LINES.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static KEEP: Keep = Keep;

/// An IKE_SA_INIT request offering 3DES/SHA-1/MODP-2048 only.
fn init_3des(spi: u32) -> Vec<u8> {
    let xf = |last: bool, ty: u8, id: u16| {
        let mut t = vec![if last { 0 } else { 3 }, 0, 0, 8, ty, 0];
        t.extend_from_slice(&id.to_be_bytes());
        t
    };
    let mut prop = vec![0, 0, 0, 0, 1, 1, 0, 4];
    for (i, (ty, id)) in [(1, 3), (2, 2), (3, 2), (4, 14)].into_iter().enumerate() {
        prop.extend(xf(i == 3, ty, id));
    }
    let n = prop.len() as u16;
    prop[2..4].copy_from_slice(&n.to_be_bytes());
    let mut ke = vec![0, 14, 0, 0];
    ke.extend([0x5a; 256]);
    let nonce = [0x4e; 32];
    let mut body = Vec::new();
    for (next, p) in [(34u8, &prop[..]), (40, &ke[..]), (0, &nonce[..])] {
        body.extend([next, 0]);
        body.extend(((p.len() + 4) as u16).to_be_bytes());
        body.extend_from_slice(p);
    }
    let mut m = Vec::new();
    m.extend(spi.to_be_bytes());
    m.extend([0x11; 4]);
    m.extend([0; 8]);
    m.extend([33, 0x20, 34, 0x08, 0, 0, 0, 0]);
    m.extend(((28 + body.len()) as u32).to_be_bytes());
    m.extend(body);
    m
}

#[test]
fn an_ikev2_garbage_flood_is_logged_in_a_few_lines_and_answered_at_a_bounded_rate() {
    log::set_logger(&KEEP).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let west: SocketAddr = "192.0.2.1:500".parse().unwrap();
    let me: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let peer = Peer {
        name: "peer".into(),
        local: me,
        remote: west,
        auth: PeerAuth::psk(b"k"),
        local_id: Identity::addr(me.ip()),
        remote_id: Some(Identity::addr(west.ip())),
        ike: vec![IkeProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(128),
            integ: None,
            prf: PrfId::HMAC_SHA2_256,
            dh: DhGroup::CURVE25519,
        }],
        esp: vec![EspProposal {
            encr: EncrId::AES_CBC,
            key_bits: Some(128),
            integ: Some(IntegId::HMAC_SHA2_256_128),
            pfs: None,
        }],
        local_ts: vec![],
        remote_ts: vec![],
        flows: Vec::new(),
        transport: false,
        ike_lifetime_secs: 0,
        child_lifetime_secs: 0,
        child_lifetime_bytes: 0,
        cp: Default::default(),
    };
    let mut e = Engine::new(
        Config::default(),
        Policy { peers: vec![peer] },
        Time(0),
        Box::new(SeededRandom::new(1)),
    );
    let mut buf = vec![0u8; 65535];
    let mut answers = 0u64;
    // 100,000 datagrams over 20 s.
    for i in 0..100_000u32 {
        let now = Time(u64::from(i / 5));
        let stranger = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)),
            500,
        );
        let (from, d) = match i % 4 {
            0 => (stranger, vec![0x20; 20]),
            1 => {
                // An INFORMATIONAL for SPIs nobody has.
                let mut d = init_3des(i);
                d[8..16].copy_from_slice(&[0x22; 8]);
                d[18] = 37;
                (stranger, d)
            }
            2 => (stranger, init_3des(i)),
            _ => (west, init_3des(i)),
        };
        e.handle_datagram(now, me, from, &d);
        e.handle_timeout(now);
        while e.poll_transmit(&mut buf).is_some() {
            answers += 1;
        }
    }
    let s = *e.stats();
    assert_eq!(s.datagrams_received, 100_000);
    assert_eq!(s.datagrams_dropped, 75_000, "{s:?}");
    assert_eq!(e.ike_sas().count(), 0, "nothing kept");
    let lines = LINES.lock().unwrap().clone();
    println!(
        "{} log lines and {answers} answers for 100,000 datagrams",
        lines.len()
    );
    // Five lines per ten seconds, the count of those held back in them.
    assert!(lines.len() <= 3 * 5, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("more not logged")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("no proposal chosen")),
        "{lines:#?}"
    );
    // NO_PROPOSAL_CHOSEN to the spoofed peer address: ten a second at most.
    assert!(
        answers > 0 && answers <= 10 * 21,
        "unprotected notifications: {answers}"
    );
}
