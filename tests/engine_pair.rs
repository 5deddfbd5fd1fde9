//! Two engines negotiating in memory: a virtual clock that jumps to the next deadline,
//! seeded randomness, and a network between them that can lose, duplicate and reorder
//! datagrams. Both sides must end with matching SAs and keys; a wrong pre-shared key must
//! end with no SA on either side.

#[path = "common/pki.rs"]
mod pki;

use std::net::SocketAddr;

use isakmpd::conf::Conf;
use isakmpd::ike::sa::IpsecSa;
use isakmpd::ike::{Credentials, DropKind, Engine, EngineConfig, Request};
use isakmpd::timer::Time;

const WEST: &str = "192.0.2.1";

thread_local! {
    /// When set, every datagram the harness moves is written here (the seeded-wire
    /// fixture, see `seeded_wire_matches_the_recorded_fixture`).
    static WIRE: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Notes a datagram on the wire recorder, if one is running.
fn record(now: Time, from: SocketAddr, to: SocketAddr, d: &[u8]) {
    WIRE.with(|w| {
        if let Some(v) = w.borrow_mut().as_mut() {
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            v.push(format!("{} {from} > {to} {} {hex}", now.millis(), d.len()));
        }
    });
}
const EAST: &str = "192.0.2.2";

fn conf(me: &str, peer: &str, psk: &str, active: bool, mm: &str, qm: &str) -> Conf {
    conf_x(me, peer, psk, active, mm, qm, "ID_PROT")
}

fn conf_x(me: &str, peer: &str, psk: &str, active: bool, mm: &str, qm: &str, exch: &str) -> Conf {
    conf_g(me, peer, psk, active, mm, qm, exch, "")
}

#[allow(clippy::too_many_arguments)]
fn conf_g(
    me: &str,
    peer: &str,
    psk: &str,
    active: bool,
    mm: &str,
    qm: &str,
    exch: &str,
    general: &str,
) -> Conf {
    Conf::parse(&conf_g_text(me, peer, psk, active, mm, qm, exch, general))
        .unwrap()
        .conf
}

/// The text of [`conf_g`]'s configuration.
#[allow(clippy::too_many_arguments)]
fn conf_g_text(
    me: &str,
    peer: &str,
    psk: &str,
    active: bool,
    mm: &str,
    qm: &str,
    exch: &str,
    general: &str,
) -> String {
    let (lnet, rnet) = if me == WEST {
        ("198.51.100.0", "203.0.113.0")
    } else {
        ("203.0.113.0", "198.51.100.0")
    };
    format!(
        "[General]\nRetransmits=3\nExchange-max-time=60\n{general}\
         [Phase 1]\n{peer}=peer\n\
         [Phase 2]\n{}=conn\n\
         [peer]\nPhase=1\nAddress={peer}\nConfiguration=mm\nAuthentication={psk}\n\
         [mm]\nDOI=IPSEC\nEXCHANGE_TYPE={exch}\nTransforms={mm}\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\nLocal-ID=lnet\nRemote-ID=rnet\n\
         [qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites={qm}\n\
         [lnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={lnet}\nNetmask=255.255.255.0\n\
         [rnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={rnet}\nNetmask=255.255.255.0\n",
        if active {
            "Connections"
        } else {
            "Passive-connections"
        }
    )
}

struct Node {
    e: Engine,
    addr: SocketAddr,
    /// A kernel that answers the engine's requests (for a backend other than Record).
    kernel: Option<KernelSim>,
}

/// A kernel that answers: SPIs from a counter, installs accepted unless `refuse` says
/// otherwise. Answers come back after every step of `drive`, as they would from the
/// event loop a little later.
#[derive(Default)]
struct KernelSim {
    next_spi: u32,
    refuse: Option<fn(&isakmpd::ike::sa::KernelReq) -> bool>,
    log: Vec<String>,
}

impl KernelSim {
    fn new(first_spi: u32) -> KernelSim {
        KernelSim {
            next_spi: first_spi,
            ..Default::default()
        }
    }
}

/// Answers every request `n` has made of its kernel (and those the answers cause).
fn service(n: &mut Node, now: Time) {
    use isakmpd::ike::sa::{KernelReply, KernelReq};
    let Some(k) = n.kernel.as_mut() else {
        return;
    };
    loop {
        let mut answers = Vec::new();
        while let Some(op) = n.e.poll_kernel() {
            k.log.push(format!("{:?}", op.req));
            if op.ticket == 0 {
                continue;
            }
            let reply = if k.refuse.is_some_and(|f| f(&op.req)) {
                KernelReply::Failed("Invalid argument".into())
            } else if let KernelReq::GetSpi { .. } = op.req {
                k.next_spi += 1;
                KernelReply::Spi(k.next_spi.to_be_bytes())
            } else {
                KernelReply::Done
            };
            answers.push((op.ticket, reply));
        }
        if answers.is_empty() {
            return;
        }
        for (t, r) in answers {
            n.e.kernel_reply(now, t, r);
        }
    }
}

fn node(me: &str, c: &Conf, seed: u64) -> Node {
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
    Node {
        e,
        addr: SocketAddr::new(ip, 500),
        kernel: None,
    }
}

/// What the network does to each datagram: deliver, drop, duplicate, or hold back and
/// deliver after the next one (reorder).
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
    Delay,
}

/// Runs both engines until nothing is in flight and no timer is due within `limit`;
/// returns the final time. `fate(n)` decides for the n-th datagram.
fn drive(
    a: &mut Node,
    b: &mut Node,
    mut now: Time,
    limit: u64,
    fate: &mut dyn FnMut(usize) -> Fate,
) -> Time {
    let mut n = 0;
    let mut held: Vec<(bool, Vec<u8>)> = Vec::new();
    let end = now.add_secs(limit);
    for _ in 0..10_000 {
        let mut moved = false;
        service(a, now);
        service(b, now);
        for dir in [true, false] {
            let (from, to) = if dir {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            let mut buf = [0u8; 65535];
            let mut out = Vec::new();
            while let Some(t) = from.e.poll_transmit(&mut buf) {
                assert_eq!(t.remote, to.addr);
                record(now, from.addr, to.addr, &buf[..t.len]);
                out.push(buf[..t.len].to_vec());
            }
            for d in out {
                moved = true;
                n += 1;
                match fate(n) {
                    Fate::Deliver => to.e.handle_datagram(now, to.addr, from.addr, &d),
                    Fate::Drop => {}
                    Fate::Duplicate => {
                        to.e.handle_datagram(now, to.addr, from.addr, &d);
                        to.e.handle_datagram(now, to.addr, from.addr, &d);
                    }
                    Fate::Delay => held.push((dir, d)),
                }
                // Release held datagrams after a later one went through.
                if !held.is_empty() && fate(0) == Fate::Deliver {
                    for (hdir, hd) in held.drain(..) {
                        let (hf, ht) = if hdir {
                            (a.addr, &mut b.e)
                        } else {
                            (b.addr, &mut a.e)
                        };
                        let to_addr = if hdir {
                            SocketAddr::new(EAST.parse().unwrap(), 500)
                        } else {
                            SocketAddr::new(WEST.parse().unwrap(), 500)
                        };
                        ht.handle_datagram(now, to_addr, hf, &hd);
                    }
                    break;
                }
            }
            if moved {
                break;
            }
        }
        if moved {
            continue;
        }
        let next = [a.e.poll_timeout(), b.e.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= end => {
                now = now.max(t);
                a.e.handle_timeout(now);
                b.e.handle_timeout(now);
            }
            _ => return now,
        }
    }
    panic!("did not settle");
}

fn pair(mm: &str, qm: &str) -> (Node, Node) {
    let w = node(WEST, &conf(WEST, EAST, "mekmitasdigoat", true, mm, qm), 1);
    let e = node(EAST, &conf(EAST, WEST, "mekmitasdigoat", false, mm, qm), 2);
    (w, e)
}

fn check_matching(a: &Engine, b: &Engine) -> usize {
    let sa: Vec<&IpsecSa> = a.ipsec_sas().collect();
    let sb: Vec<&IpsecSa> = b.ipsec_sas().collect();
    assert!(!sa.is_empty(), "no IPsec SA");
    assert_eq!(sa.len(), sb.len());
    for x in &sa {
        let y = sb
            .iter()
            .find(|y| y.spi_in == x.spi_out && y.spi_out == x.spi_in)
            .expect("peer SA with swapped SPIs");
        assert_eq!(x.protocol, y.protocol);
        assert_eq!(
            x.keymat_in(),
            y.keymat_out(),
            "inbound key = peer's outbound key"
        );
        assert_eq!(x.keymat_out(), y.keymat_in());
        assert_ne!(x.keymat_in(), x.keymat_out());
        assert_eq!(x.keymat_in().len(), x.enc_key_len + x.auth_key_len);
    }
    assert_eq!(a.isakmp_sas().count(), 1);
    assert_eq!(b.isakmp_sas().count(), 1);
    sa.len()
}

#[test]
fn main_and_quick_mode_psk_with_and_without_pfs() {
    isakmpd::ike::crypto::init();
    let cases = [
        (
            "AES-SHA2-256-GRP14",
            "QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE",
            16 + 32,
        ),
        ("3DES-SHA", "QM-ESP-3DES-SHA-SUITE", 24 + 20),
        (
            "AES-256-SHA-GRP19",
            "QM-ESP-AES-256-SHA2-512-PFS-GRP19-SUITE",
            32 + 64,
        ),
        ("AES-128-SHA2-512-GRP5", "QM-AH-SHA2-256-SUITE", 32),
        ("AES-SHA2-384-GRP20", "QM-ESP-AESGCM-256-SUITE", 36),
    ];
    for (mm, qm, keylen) in cases {
        let (mut w, mut e) = pair(mm, qm);
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
        assert_eq!(check_matching(&w.e, &e.e), 1, "{mm} {qm}");
        let s = w.e.ipsec_sas().next().unwrap();
        assert_eq!(s.keymat_in().len(), keylen, "{qm}");
        assert_eq!(s.name, "conn");
        assert_eq!(w.e.stats().phase1_done, 1);
        assert_eq!(e.e.stats().phase2_done, 1);
        assert_eq!(w.e.exchanges_in_flight(), 0);
        assert_eq!(e.e.exchanges_in_flight(), 0);
        let mut kw = Vec::new();
        while let Some(r) = w.e.poll_kernel() {
            kw.push(format!("{:?}", r.req));
        }
        assert_eq!(kw.len(), 1, "one AddSa: {kw:?}");
        assert!(kw[0].starts_with("AddSa conn"));
    }
}

#[test]
fn survives_loss_duplication_and_reordering() {
    isakmpd::ike::crypto::init();
    // Every message of Main Mode and Quick Mode (1..=9), lost, duplicated, or delayed
    // behind the next one.
    for pattern in 0..27usize {
        let (mut w, mut e) = pair("AES-SHA", "QM-ESP-AES-SHA-PFS-SUITE");
        w.e.start_connections(Time(0));
        let target = pattern % 9 + 1;
        let what = [Fate::Drop, Fate::Duplicate, Fate::Delay][pattern / 9];
        let mut fate = move |n: usize| {
            if n == target {
                what
            } else {
                Fate::Deliver
            }
        };
        drive(&mut w, &mut e, Time(0), 100, &mut fate);
        eprintln!(
            "pattern {pattern}: west {} SAs, east {} SAs",
            w.e.ipsec_sas().count(),
            e.e.ipsec_sas().count()
        );
        check_matching(&w.e, &e.e);
    }
}

#[test]
fn wrong_psk_ends_with_no_sa_on_either_side() {
    isakmpd::ike::crypto::init();
    let mut w = node(
        WEST,
        &conf(
            WEST,
            EAST,
            "right-key",
            true,
            "AES-SHA",
            "QM-ESP-AES-SHA-SUITE",
        ),
        3,
    );
    let mut e = node(
        EAST,
        &conf(
            EAST,
            WEST,
            "wrong-key",
            false,
            "AES-SHA",
            "QM-ESP-AES-SHA-SUITE",
        ),
        4,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
    assert_eq!(w.e.isakmp_sas().count(), 0);
    assert_eq!(e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.ipsec_sas().count(), 0);
    assert_eq!(e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight(), 0, "initiator gave up");
    assert!(w.e.stats().failed >= 1);
}

#[test]
fn an_initiator_refuses_a_responder_whose_id_is_not_its_remote_id() {
    isakmpd::ike::crypto::init();
    // West's peer section names the responder's ID (Remote-ID); east identifies by its
    // address, which is not that ID: west refuses it after message 6 (Main Mode) or 2
    // (Aggressive Mode), as isakmpd does, and neither side keeps an SA.
    for (exch, seed) in [("ID_PROT", 30), ("AGGRESSIVE", 32)] {
        let text = conf_g_text(WEST, EAST, "k", true, "AES-SHA", "QM-ESP-AES-SHA-SUITE", exch, "")
            .replace(
                "[peer]\nPhase=1\n",
                "[peer]\nPhase=1\nRemote-ID=them\n[them]\nID-type=IPV4_ADDR\nAddress=192.0.2.99\n[peer]\n",
            );
        let wc = Conf::parse(&text).unwrap().conf;
        let ec = conf_x(
            EAST,
            WEST,
            "k",
            false,
            "AES-SHA",
            "QM-ESP-AES-SHA-SUITE",
            exch,
        );
        let mut w = node(WEST, &wc, seed);
        let mut e = node(EAST, &ec, seed + 1);
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
        assert_eq!(w.e.isakmp_sas().count(), 0, "{exch}: west refused east");
        assert_eq!(
            w.e.ipsec_sas().count() + e.e.ipsec_sas().count(),
            0,
            "{exch}"
        );
        assert!(w.e.stats().failed >= 1, "{exch}");
    }
}

#[test]
fn no_common_proposal_fails_cleanly() {
    isakmpd::ike::crypto::init();
    let mut w = node(
        WEST,
        &conf(WEST, EAST, "k", true, "AES-SHA", "QM-ESP-AES-SHA-SUITE"),
        5,
    );
    let mut e = node(
        EAST,
        &conf(EAST, WEST, "k", false, "3DES-MD5", "QM-ESP-AES-SHA-SUITE"),
        6,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
    assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    // Phase 2 mismatch: phase 1 comes up, phase 2 does not.
    let mut w = node(
        WEST,
        &conf(WEST, EAST, "k", true, "AES-SHA", "QM-ESP-AES-SHA-SUITE"),
        7,
    );
    let mut e = node(
        EAST,
        &conf(EAST, WEST, "k", false, "AES-SHA", "QM-ESP-3DES-MD5-SUITE"),
        8,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
    assert_eq!(w.e.isakmp_sas().count(), 1);
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
}

#[test]
fn teardown_deletes_on_both_sides() {
    isakmpd::ike::crypto::init();
    let (mut w, mut e) = pair("AES-SHA2-256", "QM-ESP-AES-SHA2-256-SUITE");
    w.e.start_connections(Time(0));
    let t = drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);
    // `t quick conn` on the responder: phase 2 DELETE to the initiator.
    let r = e.e.handle_command(
        t,
        Request::Teardown {
            phase: isakmpd::fifo::Phase::Quick,
            name: "conn".into(),
        },
    );
    assert!(r.is_ok(), "{r:?}");
    let t = drive(&mut w, &mut e, t, 5, &mut |_| Fate::Deliver);
    assert_eq!(w.e.ipsec_sas().count(), 0, "initiator honoured DELETE");
    assert_eq!(e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.isakmp_sas().count(), 1);
    // `t main <peer>` on the initiator: phase 1 DELETE.
    let r = w.e.handle_command(
        t,
        Request::Teardown {
            phase: isakmpd::fifo::Phase::Main,
            name: "peer".into(),
        },
    );
    assert!(r.is_ok(), "{r:?}");
    drive(&mut w, &mut e, t, 5, &mut |_| Fate::Deliver);
    assert_eq!(w.e.isakmp_sas().count(), 0);
    assert_eq!(
        e.e.isakmp_sas().count(),
        0,
        "responder honoured phase 1 DELETE"
    );
}

#[test]
fn seeded_runs_repeat_packet_for_packet() {
    isakmpd::ike::crypto::init();
    let run = || {
        let (mut w, mut e) = pair("AES-SHA", "QM-ESP-AES-SHA-PFS-SUITE");
        w.e.set_capture(true);
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
        let mut pkts = Vec::new();
        while let Some(c) = w.e.poll_capture() {
            pkts.push(c.data);
        }
        pkts
    };
    let a = run();
    assert!(a.len() >= 9, "captured {} messages", a.len());
    assert_eq!(a, run());
}

#[test]
fn aggressive_mode_psk_with_loss_and_wrong_key() {
    isakmpd::ike::crypto::init();
    let mk = |psk_e: &str, seed: u64| {
        let w = node(
            WEST,
            &conf_x(
                WEST,
                EAST,
                "am-key",
                true,
                "AES-SHA2-256-GRP14,3DES-SHA-GRP14",
                "QM-ESP-AES-SHA-PFS-GRP14-SUITE",
                "AGGRESSIVE",
            ),
            seed,
        );
        let e = node(
            EAST,
            &conf_x(
                EAST,
                WEST,
                psk_e,
                false,
                "3DES-SHA-GRP14",
                "QM-ESP-AES-SHA-PFS-GRP14-SUITE",
                "AGGRESSIVE",
            ),
            seed + 1,
        );
        (w, e)
    };
    for target in 0..=6usize {
        for what in [Fate::Drop, Fate::Duplicate, Fate::Delay] {
            let (mut w, mut e) = mk("am-key", 10);
            w.e.start_connections(Time(0));
            drive(&mut w, &mut e, Time(0), 100, &mut |n| {
                if n == target {
                    what
                } else {
                    Fate::Deliver
                }
            });
            eprintln!(
                "am target {target}: w {} e {}",
                w.e.ipsec_sas().count(),
                e.e.ipsec_sas().count()
            );
            check_matching(&w.e, &e.e);
            let s = w.e.isakmp_sas().next().unwrap();
            assert_eq!(
                s.cipher.name(),
                e.e.isakmp_sas().next().unwrap().cipher.name()
            );
        }
    }
    let (mut w, mut e) = mk("other-key", 20);
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
    assert_eq!(w.e.isakmp_sas().count(), 0, "initiator rejects HASH_R");
    assert_eq!(e.e.isakmp_sas().count(), 0, "responder never sees HASH_I");
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
}

fn creds(dir: &std::path::Path, host: &str, ca: &str) -> Credentials {
    let rd = |n: String| std::fs::read(dir.join(n)).unwrap();
    Credentials::load(
        Some(&rd(format!("{host}.key"))),
        &[rd(format!("{host}.crt"))],
        &[rd(format!("{ca}.crt"))],
    )
    .unwrap()
}

#[test]
fn main_mode_rsa_signatures_and_an_untrusted_certificate() {
    isakmpd::ike::crypto::init();
    let dir = std::env::temp_dir().join(format!("isakmpd-pki-{}", std::process::id()));
    pki::ca(&dir, "ca");
    pki::ca(&dir, "otherca");
    pki::host(&dir, "ca", "west", WEST);
    pki::host(&dir, "ca", "east", EAST);
    pki::host(&dir, "otherca", "mallory", EAST);
    let mk = |east_host: &str, east_ca: &str| {
        let mut w = node(
            WEST,
            &conf(
                WEST,
                EAST,
                "unused",
                true,
                "AES-SHA2-256-GRP14-RSA_SIG",
                "QM-ESP-AES-SHA2-256-SUITE",
            ),
            30,
        );
        let mut e = node(
            EAST,
            &conf(
                EAST,
                WEST,
                "unused",
                false,
                "AES-SHA2-256-GRP14-RSA_SIG",
                "QM-ESP-AES-SHA2-256-SUITE",
            ),
            31,
        );
        w.e.set_credentials(creds(&dir, "west", "ca"));
        e.e.set_credentials(creds(&dir, east_host, east_ca));
        (w, e)
    };
    let (mut w, mut e) = mk("east", "ca");
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);
    // East presents a certificate from a CA west does not trust.
    let (mut w, mut e) = mk("mallory", "ca");
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
    assert_eq!(
        w.e.isakmp_sas().count(),
        0,
        "initiator refused the untrusted certificate"
    );
    assert_eq!(
        e.e.isakmp_sas().count(),
        0,
        "and told the responder to delete its SA"
    );
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight(), 0);
    assert!(w.e.stats().failed >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Aggressive Mode with RSA signatures (RFC 2409 §5.1): CERT_REQ in messages 1 and 2, the
/// responder's certificate and SIG_R in message 2, the initiator's and SIG_I in message 3
/// (encrypted). A certificate from a CA the other side does not trust is refused by the
/// initiator (message 2) and by the responder (message 3), and neither side keeps an SA.
#[test]
fn aggressive_mode_rsa_signatures_and_untrusted_certificates_on_either_side() {
    isakmpd::ike::crypto::init();
    let dir = std::env::temp_dir().join(format!("isakmpd-am-pki-{}", std::process::id()));
    pki::ca(&dir, "ca");
    pki::ca(&dir, "otherca");
    pki::host(&dir, "ca", "west", WEST);
    pki::host(&dir, "ca", "east", EAST);
    pki::host(&dir, "otherca", "mallory", EAST);
    pki::host(&dir, "otherca", "mallet", WEST);
    let mk = |west_host: &str, east_host: &str, seed: u64| {
        let side = |me: &str, peer: &str, init: bool, host: &str, seed: u64| {
            let mut n = node(
                me,
                &conf_x(
                    me,
                    peer,
                    "unused",
                    init,
                    "AES-SHA2-256-GRP14-RSA_SIG",
                    "QM-ESP-AES-SHA2-256-SUITE",
                    "AGGRESSIVE",
                ),
                seed,
            );
            n.e.set_credentials(creds(&dir, host, "ca"));
            n
        };
        let mut w = side(WEST, EAST, true, west_host, seed);
        let mut e = side(EAST, WEST, false, east_host, seed + 1);
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
        (w, e)
    };
    let (w, e) = mk("west", "east", 50);
    check_matching(&w.e, &e.e);
    for n in [&w, &e] {
        let s = n.e.isakmp_sas().next().unwrap();
        assert_eq!(s.auth, isakmpd::ike::wire::AuthMethod::RSA_SIG);
    }
    // East's certificate is from a CA west does not trust: west refuses message 2.
    let (w, e) = mk("west", "mallory", 52);
    assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    assert!(w.e.stats().failed >= 1);
    // West's certificate is from a CA east does not trust: east refuses message 3.
    let (w, e) = mk("mallet", "east", 54);
    assert_eq!(
        w.e.isakmp_sas().count() + e.e.isakmp_sas().count(),
        0,
        "the responder refused message 3, and the initiator gave up its SA"
    );
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    assert!(e.e.stats().failed >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The log lines of this test process (engines log through the `log` crate).
fn log_lines() -> &'static std::sync::Mutex<Vec<String>> {
    static LINES: std::sync::OnceLock<std::sync::Mutex<Vec<String>>> = std::sync::OnceLock::new();
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            if let Some(l) = LINES.get() {
                l.lock().unwrap().push(r.args().to_string());
            }
        }
        fn flush(&self) {}
    }
    LINES.get_or_init(|| {
        static CAPTURE: Capture = Capture;
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Info);
        std::sync::Mutex::new(Vec::new())
    })
}

/// The responder refuses the initiator's certificate (Main Mode message 5) after the
/// keys exist: it says so in an Informational exchange under the exchange's keys, which
/// the initiator decrypts, logs and ends its exchange on at once; and, as C isakmpd says
/// it then (message.c `message_send_notification` while the SA is not ready), in an
/// unprotected Informational exchange of its own, fresh cookie and message ID 0, which a
/// C initiator takes (it drops a cleartext message with the exchange's cookies as
/// INVALID-FLAGS). Either alone ends the initiator's exchange.
#[test]
fn a_refused_certificate_is_told_under_the_phase_1_keys_and_as_isakmpd_tells_it() {
    isakmpd::ike::crypto::init();
    let lines = log_lines();
    let dir = std::env::temp_dir().join(format!("isakmpd-refusal-{}", std::process::id()));
    pki::ca(&dir, "ca");
    pki::ca(&dir, "otherca");
    pki::host(&dir, "ca", "east", EAST);
    pki::host(&dir, "otherca", "mallet", WEST);
    let run = |lose: usize, seed: u64| {
        let side = |me: &str, peer: &str, init: bool, host: &str, seed: u64| {
            let mut n = node(
                me,
                &conf(
                    me,
                    peer,
                    "unused",
                    init,
                    "AES-SHA2-256-GRP14-RSA_SIG",
                    "QM-ESP-AES-SHA2-256-SUITE",
                ),
                seed,
            );
            n.e.set_credentials(creds(&dir, host, "ca"));
            n
        };
        let mut w = side(WEST, EAST, true, "mallet", seed);
        let mut e = side(EAST, WEST, false, "east", seed + 1);
        WIRE.with(|r| *r.borrow_mut() = Some(Vec::new()));
        w.e.start_connections(Time(0));
        // Well inside Exchange-max-time and the retransmissions: only the refusal can
        // end the initiator's exchange.
        drive(&mut w, &mut e, Time(0), 5, &mut |n| {
            if n == lose {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        });
        let wire = WIRE.with(|r| r.borrow_mut().take()).unwrap();
        (w, e, wire)
    };
    let (w, e, wire) = run(0, 60);
    assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    assert!(w.e.stats().failed >= 1 && e.e.stats().failed >= 1);
    // What east sent after message 4: datagrams 6 and 7 on the wire.
    let from_east: Vec<Vec<u8>> = wire
        .iter()
        .filter(|l| l.split(' ').nth(1) == Some(&format!("{EAST}:500")[..]))
        .map(|l| {
            let h = l.rsplit(' ').next().unwrap();
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(from_east.len(), 4, "messages 2 and 4, and the two refusals");
    let cookies = &from_east[0][..16];
    let (protected, isakmpd) = (&from_east[2], &from_east[3]);
    // HDR*(the exchange's cookies, INFO, a message ID) carrying HASH(1).
    assert_eq!(&protected[..16], cookies);
    assert_eq!((protected[16], protected[18], protected[19]), (8, 5, 1));
    assert_ne!(&protected[20..24], &[0; 4]);
    // HDR(fresh cookie, no responder cookie, INFO, message ID 0, no flags), N(ISAKMP,
    // SPI = the exchange's cookies, INVALID-CERTIFICATE).
    assert_ne!(&isakmpd[..8], &cookies[..8]);
    assert_eq!(&isakmpd[8..16], &[0; 8]);
    assert_eq!((isakmpd[16], isakmpd[18], isakmpd[19]), (11, 5, 0));
    assert_eq!(&isakmpd[20..24], &[0; 4]);
    assert_eq!(
        &isakmpd[32..38],
        &[0, 0, 0, 1, 1, 16],
        "DOI IPSEC, ISAKMP, SPI of 16"
    );
    assert_eq!(&isakmpd[38..40], &20u16.to_be_bytes());
    assert_eq!(&isakmpd[40..56], cookies);
    // The initiator decrypted the protected one and logged the reason.
    let said = format!("with {EAST}:500: the peer refused it: INVALID_CERTIFICATE");
    assert!(
        lines.lock().unwrap().iter().any(|l| l.contains(&said)),
        "no line with {said:?}"
    );
    // Without the protected one (datagram 6 lost), isakmpd's form alone ends it.
    let (w, e, _) = run(6, 62);
    assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    let said = format!("peer {EAST}:500 says INVALID_CERTIFICATE (unprotected)");
    assert!(
        lines.lock().unwrap().iter().any(|l| l.contains(&said)),
        "no line with {said:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// isakmpd's crls/ directory: a peer certificate its CA has revoked is refused on either
/// side, and a CRL that revokes somebody else changes nothing.
#[test]
fn a_revoked_certificate_is_refused_by_the_crl_of_its_ca() {
    isakmpd::ike::crypto::init();
    let dir = std::env::temp_dir().join(format!("isakmpd-crl-{}", std::process::id()));
    pki::ca(&dir, "ca");
    pki::host(&dir, "ca", "west", WEST);
    pki::host(&dir, "ca", "east", EAST);
    pki::host(&dir, "ca", "carol", "192.0.2.99");
    let crl_of = |revoked: &[&str]| {
        let p = pki::crl(&dir, "ca", revoked);
        vec![("ca.crl".to_string(), std::fs::read(p).unwrap())]
    };
    let run = |west_crls: Vec<(String, Vec<u8>)>, east_crls: Vec<(String, Vec<u8>)>| {
        let node_with = |me: &str, peer: &str, init: bool, seed: u64| {
            node(
                me,
                &conf(
                    me,
                    peer,
                    "unused",
                    init,
                    "AES-SHA2-256-GRP14-RSA_SIG",
                    "QM-ESP-AES-SHA2-256-SUITE",
                ),
                seed,
            )
        };
        let mut w = node_with(WEST, EAST, true, 40);
        let mut e = node_with(EAST, WEST, false, 41);
        let mut cw = creds(&dir, "west", "ca");
        assert!(cw.add_crls(&west_crls).is_empty());
        let mut ce = creds(&dir, "east", "ca");
        assert!(ce.add_crls(&east_crls).is_empty());
        w.e.set_credentials(cw);
        e.e.set_credentials(ce);
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
        (w, e)
    };
    // Somebody else revoked: the tunnel comes up.
    let (w, e) = run(crl_of(&["carol"]), crl_of(&["carol"]));
    check_matching(&w.e, &e.e);
    // East revoked, in west's CRL: west (the initiator) refuses it.
    let (w, e) = run(crl_of(&["east"]), Vec::new());
    assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    // West revoked, in east's CRL: east (the responder) refuses it.
    let (w, e) = run(Vec::new(), crl_of(&["west"]));
    assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    // A CRL no CA here signed is not used, and says so.
    pki::ca(&dir, "otherca");
    let other = pki::crl(&dir, "otherca", &[]);
    let mut c = creds(&dir, "west", "ca");
    let warn = c.add_crls(&[("other.crl".to_string(), std::fs::read(other).unwrap())]);
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(warn[0].contains("signed by no CA here"), "{warn:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn responder_takes_the_first_suite_it_accepts_among_several() {
    isakmpd::ike::crypto::init();
    // West offers three suites (3 proposal numbers), east accepts only the third.
    let mut w = node(
        WEST,
        &conf(
            WEST,
            EAST,
            "k",
            true,
            "AES-SHA",
            "QM-ESP-3DES-MD5-SUITE,QM-AH-SHA-SUITE,QM-ESP-AES-256-SHA2-384-PFS-GRP5-SUITE",
        ),
        40,
    );
    let mut e = node(
        EAST,
        &conf(
            EAST,
            WEST,
            "k",
            false,
            "AES-SHA",
            "QM-ESP-AES-256-SHA2-384-PFS-GRP5-SUITE",
        ),
        41,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);
    let s = w.e.ipsec_sas().next().unwrap();
    assert_eq!(s.enc_key_len, 32);
    assert_eq!(s.auth_key_len, 48);
    assert!(s.pfs.is_some());
    // West sends a KE for its PFS suite; east picks the suite without PFS.
    let mut w = node(
        WEST,
        &conf(
            WEST,
            EAST,
            "k",
            true,
            "AES-SHA",
            "QM-ESP-AES-SHA-PFS-SUITE,QM-ESP-3DES-SHA-SUITE",
        ),
        42,
    );
    let mut e = node(
        EAST,
        &conf(EAST, WEST, "k", false, "AES-SHA", "QM-ESP-3DES-SHA-SUITE"),
        43,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);
    assert!(w.e.ipsec_sas().next().unwrap().pfs.is_none());
    assert_eq!(w.e.ipsec_sas().next().unwrap().enc_key_len, 24);
}

#[test]
fn main_mode_rsa_signatures_with_raw_public_keys() {
    isakmpd::ike::crypto::init();
    let dir = std::env::temp_dir().join(format!("isakmpd-raw-{}", std::process::id()));
    pki::raw_key(&dir, "west");
    pki::raw_key(&dir, "east");
    pki::raw_key(&dir, "other");
    let rd = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let run = |east_knows: &str| {
        let mut w = node(
            WEST,
            &conf(
                WEST,
                EAST,
                "unused",
                true,
                "3DES-SHA-RSA_SIG",
                "QM-ESP-3DES-SHA-SUITE",
            ),
            50,
        );
        let mut e = node(
            EAST,
            &conf(
                EAST,
                WEST,
                "unused",
                false,
                "3DES-SHA-RSA_SIG",
                "QM-ESP-3DES-SHA-SUITE",
            ),
            51,
        );
        let mut cw = Credentials::load(Some(&rd("west.key")), &[], &[]).unwrap();
        cw.add_pubkey("ipv4", EAST, &rd("east.pub")).unwrap();
        let mut ce = Credentials::load(Some(&rd("east.key")), &[], &[]).unwrap();
        ce.add_pubkey("ipv4", WEST, &rd(east_knows)).unwrap();
        w.e.set_credentials(cw);
        e.e.set_credentials(ce);
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 300, &mut |_| Fate::Deliver);
        (w, e)
    };
    let (w, e) = run("west.pub");
    check_matching(&w.e, &e.e);
    // East holds the wrong key for west: west's signature does not verify, no SA anywhere.
    let (w, e) = run("other.pub");
    assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn responder_lifetime_shortens_phase_2() {
    isakmpd::ike::crypto::init();
    let mut w = node(
        WEST,
        &conf(WEST, EAST, "k", true, "AES-SHA", "QM-ESP-AES-SHA-SUITE"),
        60,
    );
    let mut e = node(
        EAST,
        &conf_g(
            EAST,
            WEST,
            "k",
            false,
            "AES-SHA",
            "QM-ESP-AES-SHA-SUITE",
            "ID_PROT",
            "Default-phase-2-lifetime=300,60:600\n",
        ),
        61,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);
    assert_eq!(
        e.e.ipsec_sas().next().unwrap().lifetime,
        600,
        "responder caps the offered 1200 s"
    );
    assert_eq!(
        w.e.ipsec_sas().next().unwrap().lifetime,
        600,
        "initiator took RESPONDER-LIFETIME"
    );
    // Before 600 s the initiator renegotiates, and the first pair goes at its hard expiry.
    let first = w.e.ipsec_sas().next().unwrap().spi_in;
    drive(&mut w, &mut e, Time(0), 700, &mut |_| Fate::Deliver);
    assert!(w.e.ipsec_sas().all(|s| s.spi_in != first));
    assert_eq!(w.e.ipsec_sas().count(), 1);
    assert_eq!(w.e.ipsec_sas().next().unwrap().lifetime, 600);
}

#[test]
fn only_what_the_kernel_backend_installs_is_offered_or_accepted() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::Backend;
    let mk = |wb: Backend, eb: Backend, qw: &str, qe: &str| {
        let mut w = Engine::new(
            EngineConfig {
                seed: Some(70),
                no_kernel: true,
                backend: wb,
                ..Default::default()
            },
            &conf(WEST, EAST, "k", true, "AES-SHA", qw),
            Time(0),
            isakmpd::ike::crypto::random_source(Some(70)),
        );
        let mut e = Engine::new(
            EngineConfig {
                seed: Some(71),
                no_kernel: true,
                backend: eb,
                ..Default::default()
            },
            &conf(EAST, WEST, "k", false, "AES-SHA", qe),
            Time(0),
            isakmpd::ike::crypto::random_source(Some(71)),
        );
        let (wi, ei): (std::net::IpAddr, std::net::IpAddr) =
            (WEST.parse().unwrap(), EAST.parse().unwrap());
        w.set_route_lookup(Box::new(move |_| Some(wi)));
        e.set_route_lookup(Box::new(move |_| Some(ei)));
        let mut w = Node {
            e: w,
            addr: SocketAddr::new(wi, 500),
            kernel: Some(KernelSim::new(0x1000)),
        };
        let mut e = Node {
            e,
            addr: SocketAddr::new(ei, 500),
            kernel: Some(KernelSim::new(0x2000)),
        };
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 60, &mut |_| Fate::Deliver);
        (w, e)
    };
    // A PF_KEY responder on Linux refuses HMAC-SHA2 (its 96-bit ICV trap) and takes the
    // SHA1 suite the initiator also offers.
    let (w, e) = mk(
        Backend::Xfrm,
        Backend::PfkeyLinux,
        "QM-ESP-AES-SHA2-256-SUITE,QM-ESP-AES-SHA-SUITE",
        "QM-ESP-AES-SHA2-256-SUITE,QM-ESP-AES-SHA-SUITE",
    );
    check_matching(&w.e, &e.e);
    assert_eq!(e.e.ipsec_sas().next().unwrap().auth_key_len, 20);
    // A PF_KEY initiator does not even offer AES-GCM; with nothing else, no SA.
    let (w, e) = mk(
        Backend::PfkeyLinux,
        Backend::Xfrm,
        "QM-ESP-AESGCM-128-SUITE",
        "QM-ESP-AESGCM-128-SUITE",
    );
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    // XFRM installs AES-GCM.
    let (w, e) = mk(
        Backend::Xfrm,
        Backend::Xfrm,
        "QM-ESP-AESGCM-128-SUITE",
        "QM-ESP-AESGCM-128-SUITE",
    );
    check_matching(&w.e, &e.e);
}

#[test]
fn phase_2_is_rekeyed_before_it_expires_without_a_gap() {
    isakmpd::ike::crypto::init();
    let g = "Default-phase-2-lifetime=60,60:60\n";
    let mut w = node(
        WEST,
        &conf_g(
            WEST,
            EAST,
            "k",
            true,
            "AES-SHA",
            "QM-ESP-AES-SHA-PFS-SUITE",
            "ID_PROT",
            g,
        ),
        80,
    );
    let mut e = node(
        EAST,
        &conf_g(
            EAST,
            WEST,
            "k",
            false,
            "AES-SHA",
            "QM-ESP-AES-SHA-PFS-SUITE",
            "ID_PROT",
            g,
        ),
        81,
    );
    w.e.start_connections(Time(0));
    let mut now = drive(&mut w, &mut e, Time(0), 2, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);
    let first = w.e.ipsec_sas().next().unwrap().spi_in;
    // Walk 4 lifetimes in 1 s steps: there is always an SA pair on both sides.
    for _ in 0..240 {
        now = drive(&mut w, &mut e, now, 1, &mut |_| Fate::Deliver).max(now.add_secs(1));
        assert!(
            w.e.ipsec_sas().count() >= 1 && e.e.ipsec_sas().count() >= 1,
            "gap at {now}"
        );
        assert!(
            w.e.ipsec_sas().count() <= 2,
            "old SAs are removed at their hard expiry"
        );
    }
    assert!(
        w.e.stats().phase2_done >= 4,
        "rekeyed {} times",
        w.e.stats().phase2_done
    );
    assert!(
        w.e.ipsec_sas().all(|s| s.spi_in != first),
        "the first SA is gone"
    );
    // Whatever is in force matches on both sides.
    for x in w.e.ipsec_sas() {
        let y =
            e.e.ipsec_sas()
                .find(|y| y.spi_in == x.spi_out)
                .expect("peer has the pair");
        assert_eq!(x.keymat_in(), y.keymat_out());
    }
}

/// A node's kernel as far as SAs go: the SPIs it can decrypt and those it sends on.
#[derive(Default)]
struct KernelModel {
    inbound: std::collections::HashSet<[u8; 4]>,
    outbound: std::collections::HashSet<[u8; 4]>,
    log: Vec<String>,
}

/// Applies what `n` asked of its kernel, as the event loop does before it sends anything;
/// an outbound SA may only appear once the peer's kernel can decrypt it.
fn apply_kernel(n: &mut Node, k: &mut KernelModel, peer: &KernelModel) {
    use isakmpd::ike::sa::KernelReq;
    while let Some(op) = n.e.poll_kernel() {
        let r = op.req;
        k.log.push(format!("{r:?}"));
        match r {
            KernelReq::AddSa(sa, part) => {
                if part.inbound() {
                    k.inbound.insert(sa.spi_in);
                }
                if part.outbound() {
                    assert!(
                        peer.inbound.contains(&sa.spi_out),
                        "{} sends on {:02x?} before the peer can decrypt it",
                        n.addr,
                        sa.spi_out
                    );
                    k.outbound.insert(sa.spi_out);
                }
            }
            KernelReq::DeleteSa(sa, part, _) => {
                if part.inbound() {
                    k.inbound.remove(&sa.spi_in);
                }
                if part.outbound() {
                    k.outbound.remove(&sa.spi_out);
                }
            }
            KernelReq::GetSpi { .. }
            | KernelReq::DeleteSpi { .. }
            | KernelReq::UpdateSa(_)
            | KernelReq::MigrateSa(..)
            | KernelReq::AddFlows(_)
            | KernelReq::DeleteFlows(_) => {}
        }
    }
}

/// Delivers everything in flight, in order, applying kernel requests after every input.
fn settle(w: &mut Node, e: &mut Node, kw: &mut KernelModel, ke: &mut KernelModel, now: Time) {
    let mut buf = [0u8; 65535];
    for _ in 0..1000 {
        apply_kernel(w, kw, ke);
        apply_kernel(e, ke, kw);
        let mut moved = false;
        while let Some(t) = w.e.poll_transmit(&mut buf) {
            e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
            apply_kernel(e, ke, kw);
            moved = true;
        }
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
            apply_kernel(w, kw, ke);
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("did not settle");
}

#[test]
fn neither_side_sends_on_an_sa_its_peer_cannot_yet_decrypt() {
    isakmpd::ike::crypto::init();
    let g = "Default-phase-2-lifetime=60,60:60\n";
    let c = |me, peer, active| {
        conf_g(
            me,
            peer,
            "k",
            active,
            "AES-SHA",
            "QM-ESP-AES-SHA-PFS-SUITE",
            "ID_PROT",
            g,
        )
    };
    let mut w = node(WEST, &c(WEST, EAST, true), 90);
    let mut e = node(EAST, &c(EAST, WEST, false), 91);
    let (mut kw, mut ke) = (KernelModel::default(), KernelModel::default());
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    // The first negotiation and three rekeys, one second at a time.
    for _ in 0..200 {
        settle(&mut w, &mut e, &mut kw, &mut ke, now);
        now = now.add_secs(1);
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
    }
    assert!(w.e.stats().phase2_done >= 4, "{:?}", kw.log);
    assert!(
        ke.log.iter().any(|l| l.starts_with("AddSa conn Inbound")),
        "the responder installs its inbound half first: {:?}",
        ke.log
    );
    // What is left in the kernels pairs up.
    assert_eq!(kw.inbound, ke.outbound);
    assert_eq!(ke.inbound, kw.outbound);
}

#[test]
fn a_responder_that_never_gets_message_3_takes_its_inbound_sa_back() {
    isakmpd::ike::crypto::init();
    let (mut w, mut e) = pair("AES-SHA", "QM-ESP-AES-SHA-PFS-SUITE");
    w.e.start_connections(Time(0));
    // Main Mode is messages 1-6, Quick Mode 7-9: message 3 of Quick Mode is lost, and so
    // is everything after it (the responder's retransmissions of message 2 and the
    // initiator's answers).
    drive(&mut w, &mut e, Time(0), 120, &mut |n| {
        if n >= 9 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let mut log = Vec::new();
    while let Some(r) = e.e.poll_kernel() {
        log.push(format!("{:?}", r.req));
    }
    assert_eq!(e.e.ipsec_sas().count(), 0, "{log:?}");
    assert_eq!(e.e.exchanges_in_flight(), 0);
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with("AddSa conn Inbound"), "{log:?}");
    assert!(log[1].starts_with("DeleteSa conn Inbound"), "{log:?}");
    assert_eq!(log[0][18..], log[1][21..], "the same SA: {log:?}");
}

/// A node whose engine believes in an XFRM kernel, with `kernel` answering for it.
fn knode(me: &str, c: &Conf, seed: u64, kernel: Option<KernelSim>) -> Node {
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(seed),
            backend: isakmpd::ike::Backend::Xfrm,
            ..Default::default()
        },
        c,
        Time(0),
        isakmpd::ike::crypto::random_source(Some(seed)),
    );
    let ip: std::net::IpAddr = me.parse().unwrap();
    e.set_route_lookup(Box::new(move |_| Some(ip)));
    Node {
        e,
        addr: SocketAddr::new(ip, 500),
        kernel,
    }
}

fn kpair(wk: Option<KernelSim>, ek: Option<KernelSim>) -> (Node, Node) {
    let qm = "QM-ESP-AES-SHA-PFS-SUITE";
    let w = knode(WEST, &conf(WEST, EAST, "k", true, "AES-SHA", qm), 101, wk);
    let e = knode(EAST, &conf(EAST, WEST, "k", false, "AES-SHA", qm), 102, ek);
    (w, e)
}

#[test]
fn spis_come_from_the_kernel_and_sas_update_their_larval_states() {
    isakmpd::ike::crypto::init();
    let (mut w, mut e) = kpair(Some(KernelSim::new(0x1000)), Some(KernelSim::new(0x2000)));
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 60, &mut |_| Fate::Deliver);
    assert_eq!(check_matching(&w.e, &e.e), 1);
    let ws = w.e.ipsec_sas().next().unwrap();
    let es = e.e.ipsec_sas().next().unwrap();
    assert_eq!(
        ws.spi_in,
        0x1001u32.to_be_bytes(),
        "the initiator's kernel chose it"
    );
    assert_eq!(
        es.spi_in,
        0x2001u32.to_be_bytes(),
        "the responder's kernel chose it"
    );
    assert!(ws.spi_from_kernel && es.spi_from_kernel);
    let wl = &w.kernel.as_ref().unwrap().log;
    let el = &e.kernel.as_ref().unwrap().log;
    assert!(
        wl[0].starts_with("GetSpi IPSEC_ESP from 192.0.2.2 to 192.0.2.1"),
        "{wl:?}"
    );
    assert!(wl[1].starts_with("AddSa conn Both"), "{wl:?}");
    assert!(
        el[0].starts_with("GetSpi IPSEC_ESP from 192.0.2.1 to 192.0.2.2"),
        "{el:?}"
    );
    assert!(el[1].starts_with("AddSa conn Inbound"), "{el:?}");
    assert!(el[2].starts_with("AddSa conn Outbound"), "{el:?}");
    assert_eq!((wl.len(), el.len()), (2, 3), "{wl:?} {el:?}");
}

#[test]
fn an_exchange_waiting_on_a_silent_kernel_sends_nothing_and_ends() {
    isakmpd::ike::crypto::init();
    // The responder's kernel never answers its GETSPI: no message 2 ever leaves, the
    // initiator gives up, and the responder's exchange dies at Exchange-max-time.
    let (mut w, mut e) = kpair(Some(KernelSim::new(0x1000)), None);
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 400, &mut |_| Fate::Deliver);
    assert_eq!(w.e.stats().phase1_done, 1);
    assert!(
        w.e.stats().failed >= 1,
        "the initiator gave up on quick mode"
    );
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    let mut log = Vec::new();
    while let Some(op) = e.e.poll_kernel() {
        log.push(format!("{:?}", op.req));
    }
    assert!(log[0].starts_with("GetSpi"), "{log:?}");
    assert!(log.iter().all(|l| !l.starts_with("AddSa")), "{log:?}");
}

#[test]
fn a_kernel_that_refuses_the_inbound_sa_keeps_message_2_back() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::sa::{KernelReq, Part};
    let mut ek = KernelSim::new(0x2000);
    ek.refuse = Some(|r| matches!(r, KernelReq::AddSa(_, Part::Inbound)));
    let (mut w, mut e) = kpair(Some(KernelSim::new(0x1000)), Some(ek));
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 400, &mut |_| Fate::Deliver);
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    assert_eq!(w.e.stats().phase2_done + e.e.stats().phase2_done, 0);
    let wl = &w.kernel.as_ref().unwrap().log;
    // The initiator's reserved SPI goes back when its exchange gives up.
    assert!(
        wl.iter()
            .any(|l| l.starts_with("DeleteSpi IPSEC_ESP 00001001")),
        "{wl:?}"
    );
    assert!(wl.iter().all(|l| !l.starts_with("AddSa")), "{wl:?}");
}

#[test]
fn an_initiator_whose_kernel_refuses_sends_no_message_3() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::sa::{KernelReq, Part};
    let mut wk = KernelSim::new(0x1000);
    wk.refuse = Some(|r| matches!(r, KernelReq::AddSa(_, Part::Both)));
    let (mut w, mut e) = kpair(Some(wk), Some(KernelSim::new(0x2000)));
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 400, &mut |_| Fate::Deliver);
    assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
    let wl = &w.kernel.as_ref().unwrap().log;
    assert!(
        wl.iter().any(|l| l.starts_with("DeleteSa conn Both")),
        "{wl:?}"
    );
    // The responder never heard message 3 and took its inbound SA back.
    let el = &e.kernel.as_ref().unwrap().log;
    assert!(
        el.iter().any(|l| l.starts_with("AddSa conn Inbound")),
        "{el:?}"
    );
    assert!(
        el.iter().any(|l| l.starts_with("DeleteSa conn Inbound")),
        "{el:?}"
    );
    assert!(
        el.iter().all(|l| !l.starts_with("AddSa conn Outbound")),
        "{el:?}"
    );
}

/// Moves every datagram between the two (those from `e` only if `e_alive`), one second
/// of virtual time per call.
fn tick(w: &mut Node, e: &mut Node, now: Time, e_alive: bool) {
    let mut buf = [0u8; 65535];
    for _ in 0..100 {
        let mut moved = false;
        while let Some(t) = w.e.poll_transmit(&mut buf) {
            record(now, w.addr, t.remote, &buf[..t.len]);
            if e_alive {
                e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
            }
            moved = true;
        }
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            record(now, e.addr, t.remote, &buf[..t.len]);
            if e_alive {
                w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    w.e.handle_timeout(now);
    if e_alive {
        e.e.handle_timeout(now);
    }
}

#[test]
fn dead_peer_detection_keeps_a_live_peer_and_buries_a_silent_one() {
    isakmpd::ike::crypto::init();
    let qm = "QM-ESP-AES-SHA-PFS-SUITE";
    let g = "DPD-check-interval=10\n";
    let mut w = node(
        WEST,
        &conf_g(WEST, EAST, "k", true, "AES-SHA", qm, "ID_PROT", g),
        110,
    );
    // The responder has DPD off: it still answers R-U-THERE, and says it does.
    let mut e = node(EAST, &conf(EAST, WEST, "k", false, "AES-SHA", qm), 111);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..60 {
        tick(&mut w, &mut e, now, true);
        now = now.add_secs(1);
    }
    let s = w.e.stats();
    assert_eq!(check_matching(&w.e, &e.e), 1);
    assert!(s.dpd_sent >= 4, "one R-U-THERE per quiet interval: {s:?}");
    assert!(s.dpd_acked + 1 >= s.dpd_sent, "{s:?}");
    assert_eq!(e.e.stats().dpd_sent, 0, "DPD is off on the responder");
    // The responder falls silent: 10 s of quiet, then 5 R-U-THEREs 5 s apart, then the
    // verdict: its SAs go and the connection is tried again.
    let sent = s.dpd_sent;
    for _ in 0..45 {
        tick(&mut w, &mut e, now, false);
        now = now.add_secs(1);
    }
    let s = w.e.stats();
    assert_eq!(s.dpd_dead, 1, "{s:?}");
    assert!(s.dpd_sent >= sent + 5, "{s:?}");
    assert_eq!(w.e.ipsec_sas().count(), 0);
    assert_eq!(
        w.e.isakmp_sas().count(),
        0,
        "the dead peer's phase 1 SA is gone too"
    );
    assert_eq!(
        w.e.exchanges_in_flight(),
        1,
        "and the connection is being tried again"
    );
    let mut log = Vec::new();
    while let Some(op) = w.e.poll_kernel() {
        log.push(format!("{:?}", op.req));
    }
    assert!(
        log.iter().any(|l| l.starts_with("DeleteSa conn Both")),
        "{log:?}"
    );
}

#[test]
fn dead_peer_detection_both_ways_after_aggressive_mode() {
    isakmpd::ike::crypto::init();
    // Aggressive Mode announces DPD too; with the interval set on both sides both ask,
    // and both answer.
    let qm = "QM-ESP-AES-SHA-SUITE";
    let g = "DPD-check-interval=5\n";
    let c = |me, peer, active| conf_g(me, peer, "k", active, "AES-SHA", qm, "AGGRESSIVE", g);
    let mut w = node(WEST, &c(WEST, EAST, true), 120);
    let mut e = node(EAST, &c(EAST, WEST, false), 121);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..30 {
        tick(&mut w, &mut e, now, true);
        now = now.add_secs(1);
    }
    assert_eq!(check_matching(&w.e, &e.e), 1);
    let (ws, es) = (w.e.stats(), e.e.stats());
    assert!(ws.dpd_sent >= 3 && es.dpd_sent >= 3, "{ws:?} {es:?}");
    // The last R-U-THERE may still be on its way.
    assert!(ws.dpd_acked + 1 >= ws.dpd_sent && es.dpd_acked + 1 >= es.dpd_sent);
    assert_eq!((ws.dpd_dead, es.dpd_dead), (0, 0));
}

#[test]
fn passive_mode_and_delete_sas_no_leave_the_sas_in_place_at_shutdown() {
    isakmpd::ike::crypto::init();
    let qm = "QM-ESP-AES-SHA-SUITE";
    let mk = |g: &str| {
        let mut w = node(
            WEST,
            &conf_g(WEST, EAST, "k", true, "AES-SHA", qm, "ID_PROT", g),
            130,
        );
        let mut e = node(EAST, &conf(EAST, WEST, "k", false, "AES-SHA", qm), 131);
        w.e.start_connections(Time(0));
        drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
        assert_eq!(check_matching(&w.e, &e.e), 1);
        while w.e.poll_kernel().is_some() {}
        (w, e)
    };
    let drained = |w: &mut Node| {
        let mut buf = [0u8; 65535];
        let mut sent = 0;
        while w.e.poll_transmit(&mut buf).is_some() {
            sent += 1;
        }
        let mut kernel = Vec::new();
        while let Some(op) = w.e.poll_kernel() {
            kernel.push(format!("{:?}", op.req));
        }
        (sent, kernel)
    };
    // Active: DELETE for the phase 2 and the phase 1 SA, and the kernel cleared.
    let (mut w, _e) = mk("");
    w.e.shutdown(Time(1000));
    let (sent, kernel) = drained(&mut w);
    assert_eq!(sent, 2, "{kernel:?}");
    assert!(kernel[0].starts_with("DeleteSa conn Both"), "{kernel:?}");
    // `M passive` (or -S): nothing sent, nothing deleted; incoming traffic ignored.
    let (mut w, mut e) = mk("");
    w.e.set_passive(true);
    e.e.handle_command(Time(500), Request::TeardownAll).unwrap();
    let mut buf = [0u8; 65535];
    while let Some(t) = e.e.poll_transmit(&mut buf) {
        w.e.handle_datagram(Time(500), w.addr, e.addr, &buf[..t.len]);
    }
    assert_eq!(
        w.e.ipsec_sas().count(),
        1,
        "a passive daemon ignores the peer's DELETE"
    );
    w.e.shutdown(Time(1000));
    assert_eq!(drained(&mut w), (0, vec![]));
    assert_eq!(w.e.ipsec_sas().count(), 1);
    // [General] Delete-SAs=no, active: the same at shutdown.
    let (mut w, _e) = mk("Delete-SAs=no\n");
    w.e.shutdown(Time(1000));
    assert_eq!(drained(&mut w), (0, vec![]));
}

#[test]
fn phase_1_expires_and_is_negotiated_again_under_a_running_tunnel() {
    isakmpd::ike::crypto::init();
    // Phase 1 lives 30 s, phase 2 60 s: as in isakmpd, an expired ISAKMP SA is deleted
    // and the next phase 2 rekey negotiates a new one first; the IPsec SAs never lapse.
    let g = "Default-phase-1-lifetime=30,30:30\nDefault-phase-2-lifetime=60,60:60\n";
    let c = |me, peer, active| {
        conf_g(
            me,
            peer,
            "k",
            active,
            "AES-SHA",
            "QM-ESP-AES-SHA-PFS-SUITE",
            "ID_PROT",
            g,
        )
    };
    let mut w = node(WEST, &c(WEST, EAST, true), 140);
    let mut e = node(EAST, &c(EAST, WEST, false), 141);
    let (mut kw, mut ke) = (KernelModel::default(), KernelModel::default());
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..200 {
        settle(&mut w, &mut e, &mut kw, &mut ke, now);
        assert!(
            now < Time(5000) || !kw.outbound.is_empty(),
            "west has an SA to send on at {now:?}: {:?} {:?} {:?}",
            w.e.stats(),
            e.e.stats(),
            kw.log
        );
        now = now.add_secs(1);
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
    }
    let (ws, es) = (w.e.stats(), e.e.stats());
    assert!(ws.phase1_done >= 3, "phase 1 negotiated again: {ws:?}");
    assert!(ws.phase2_done >= 3, "{ws:?}");
    assert_eq!(ws.failed + es.failed, 0, "{ws:?} {es:?}");
    assert!(w.e.isakmp_sas().count() <= 1 && e.e.isakmp_sas().count() <= 1);
    assert_eq!(kw.inbound, ke.outbound);
    assert_eq!(ke.inbound, kw.outbound);
}

#[test]
fn phase_1_is_renegotiated_at_its_soft_timeout_before_it_expires() {
    isakmpd::ike::crypto::init();
    // isakmpd sa.c: at 85-95 % of its lifetime the initiator (STAYALIVE) negotiates a new
    // phase 1; the responder marks its copy FADING. The old SA stays until its hard
    // expiry, so the peers hold a phase 1 SA all along; the result file shows the soft
    // timeout while it is to come, as isakmpd's does.
    let g = "Default-phase-1-lifetime=100,100:100\nDefault-phase-2-lifetime=1000,1000:1000\n";
    let c = |me, peer, active| {
        conf_g(
            me,
            peer,
            "k",
            active,
            "AES-SHA",
            "QM-ESP-AES-SHA-PFS-SUITE",
            "ID_PROT",
            g,
        )
    };
    let mut w = node(WEST, &c(WEST, EAST, true), 150);
    let mut e = node(EAST, &c(EAST, WEST, false), 151);
    let (mut kw, mut ke) = (KernelModel::default(), KernelModel::default());
    w.e.start_connections(Time(0));
    let report = |n: &Node, now: Time| {
        let mut s = String::new();
        isakmpd::report::sa_report(&n.e, now, &mut s);
        s
    };
    let mut now = Time(0);
    let mut renegotiated_at = None;
    while now < Time::from_secs(130) {
        settle(&mut w, &mut e, &mut kw, &mut ke, now);
        let secs = now.millis() / 1000;
        let (wn, en) = (w.e.isakmp_sas().count(), e.e.isakmp_sas().count());
        assert!(
            secs < 5 || (wn >= 1 && en >= 1),
            "a phase 1 SA all along: {secs} s"
        );
        assert!(
            secs < 5 || !kw.outbound.is_empty(),
            "{secs} s: {:?}",
            kw.log
        );
        if secs == 80 {
            for r in [report(&w, now), report(&e, now)] {
                assert!(r.contains("Soft timeout in "), "{r}");
                assert!(r.contains("Hard timeout in 20 seconds"), "{r}");
            }
        }
        if renegotiated_at.is_none() && w.e.stats().phase1_done == 2 {
            renegotiated_at = Some(secs);
            assert_eq!(wn, 2, "the old SA stays until its hard expiry");
            assert!((85..=96).contains(&secs), "renegotiated at {secs} s");
        }
        if secs == 98 {
            // East's old SA is past its soft timeout (at most 95 s): FADING.
            let r = report(&e, now);
            let old = r
                .split("\n\n")
                .filter(|b| b.contains("(Phase 1/Responder)"))
                .find(|b| !b.contains("Soft timeout"))
                .unwrap_or_else(|| panic!("{r}"));
            let flags = old
                .lines()
                .find_map(|l| l.strip_prefix("Flags 0x"))
                .and_then(|f| u32::from_str_radix(f, 16).ok())
                .unwrap_or_default();
            assert_eq!(flags & 0x10, 0x10, "FADING:\n{r}");
        }
        now = now.add_secs(1);
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
    }
    assert!(renegotiated_at.is_some(), "{:?}", w.e.stats());
    let (ws, es) = (w.e.stats(), e.e.stats());
    assert_eq!((ws.phase1_done, es.phase1_done), (2, 2), "{ws:?} {es:?}");
    assert_eq!(ws.failed + es.failed, 0, "{ws:?} {es:?}");
    assert_eq!((w.e.isakmp_sas().count(), e.e.isakmp_sas().count()), (1, 1));
    assert_eq!(kw.inbound, ke.outbound);
    assert_eq!(ke.inbound, kw.outbound);
}

#[test]
fn kilobyte_lifetimes_are_negotiated_and_go_to_the_kernel() {
    isakmpd::ike::crypto::init();
    // A suite of our own whose transform carries LIFE_TYPE KILOBYTES; the responder
    // allows at most 500 KB and holds the initiator's 1000 to that.
    let sections = |max: u32, offer: u32| {
        format!(
            "[kb-suite]\nProtocols=kb-esp\n[kb-esp]\nPROTOCOL_ID=IPSEC_ESP\nTransforms=kb-xf\n\
             [kb-xf]\nTRANSFORM_ID=AES\nKEY_LENGTH=128,128:256\nENCAPSULATION_MODE=TUNNEL\n\
             AUTHENTICATION_ALGORITHM=HMAC_SHA\nLife=LIFE_KB,LIFE_S\n\
             [LIFE_KB]\nLIFE_TYPE=KILOBYTES\nLIFE_DURATION={offer},10:{max}\n\
             [LIFE_S]\nLIFE_TYPE=SECONDS\nLIFE_DURATION=3600,60:86400\n"
        )
    };
    let c = |me, peer, active, s: &str| {
        conf_g(me, peer, "k", active, "AES-SHA", "kb-suite", "ID_PROT", s)
    };
    let mut w = node(WEST, &c(WEST, EAST, true, &sections(100_000, 1000)), 150);
    let mut e = node(EAST, &c(EAST, WEST, false, &sections(500, 100)), 151);
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    assert_eq!(check_matching(&w.e, &e.e), 1);
    assert_eq!(w.e.ipsec_sas().next().unwrap().kbytes, 1000);
    assert_eq!(e.e.ipsec_sas().next().unwrap().kbytes, 500);
    assert_eq!(w.e.ipsec_sas().next().unwrap().lifetime, 3600);
}

/// The NAT in front of west: its public address, and its port mapping (port + 40000).
const NAT_IP: &str = "198.51.100.200";

/// One round of traffic through the NAT: west's datagrams leave with the NAT's address
/// and a mapped port, east's answers to that are mapped back; returns west's keepalives.
fn nat_tick(w: &mut Node, e: &mut Node, now: Time) -> usize {
    nat_tick_at(w, e, now, 40000).0
}

/// One step through the NAT, which maps west's port p to p + `offset`; what east sends
/// to a port the NAT does not map (any more) is lost. Returns (west's keepalives, east's
/// datagrams lost).
fn nat_tick_at(w: &mut Node, e: &mut Node, now: Time, offset: u16) -> (usize, usize) {
    let nat: std::net::IpAddr = NAT_IP.parse().unwrap();
    let mut keepalives = 0;
    let mut lost = 0;
    let mut buf = [0u8; 65535];
    for _ in 0..100 {
        let mut moved = false;
        while let Some(t) = w.e.poll_transmit(&mut buf) {
            let src = t.local.unwrap();
            record(now, src, t.remote, &buf[..t.len]);
            if t.len == 1 && buf[0] == 0xff {
                keepalives += 1;
            }
            let public = SocketAddr::new(nat, src.port() + offset);
            e.e.handle_datagram(now, t.remote, public, &buf[..t.len]);
            moved = true;
        }
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            record(now, t.local.unwrap(), t.remote, &buf[..t.len]);
            assert_eq!(t.remote.ip(), nat, "east answers the NAT");
            moved = true;
            let Some(port) = t
                .remote
                .port()
                .checked_sub(offset)
                .filter(|p| [500, 4500].contains(p))
            else {
                lost += 1;
                continue;
            };
            let inside = SocketAddr::new(w.addr.ip(), port);
            w.e.handle_datagram(now, inside, t.local.unwrap(), &buf[..t.len]);
        }
        if !moved {
            break;
        }
    }
    w.e.handle_timeout(now);
    e.e.handle_timeout(now);
    (keepalives, lost)
}

#[test]
fn nat_traversal_floats_to_4500_and_encapsulates() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::wire::EncapsulationMode;
    let qm = "QM-ESP-AES-SHA-PFS-SUITE";
    let mut w = node(WEST, &conf(WEST, EAST, "k", true, "AES-SHA", qm), 160);
    let mut e = node(EAST, &conf(EAST, NAT_IP, "k", false, "AES-SHA", qm), 161);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    let mut keepalives = 0;
    for _ in 0..45 {
        keepalives += nat_tick(&mut w, &mut e, now);
        now = now.add_secs(1);
    }
    assert_eq!(check_matching(&w.e, &e.e), 1);
    let ws = w.e.isakmp_sas().next().unwrap();
    let es = e.e.isakmp_sas().next().unwrap();
    let (wn, en) = (ws.nat_t.unwrap(), es.nat_t.unwrap());
    assert!(wn.rfc && wn.local_behind && !wn.peer_behind, "{wn:?}");
    assert!(en.rfc && !en.local_behind && en.peer_behind, "{en:?}");
    assert_eq!((ws.local.port(), ws.remote.port()), (4500, 4500));
    assert_eq!(es.remote, format!("{NAT_IP}:44500").parse().unwrap());
    let wi = w.e.ipsec_sas().next().unwrap();
    let ei = e.e.ipsec_sas().next().unwrap();
    assert_eq!(wi.encapsulation, EncapsulationMode::UDP_ENCAP_TUNNEL);
    assert_eq!(ei.encapsulation, EncapsulationMode::UDP_ENCAP_TUNNEL);
    assert_eq!(wi.encap, Some((4500, 4500)));
    assert_eq!(ei.encap, Some((4500, 44500)));
    assert!(
        keepalives >= 2,
        "west keeps the mapping alive every 20 s: {keepalives}"
    );
    assert_eq!(e.e.stats().datagrams_dropped, 0);
    // Without a NAT nothing floats and nothing is encapsulated.
    let (mut w, mut e) = pair("AES-SHA", qm);
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    let ws = w.e.isakmp_sas().next().unwrap();
    let n = ws.nat_t.unwrap();
    assert!(!n.detected(), "{n:?}");
    assert_eq!(ws.remote.port(), 500);
    assert_eq!(w.e.ipsec_sas().next().unwrap().encap, None);
}

/// A kernel as ESP sees it: the SPIs it decrypts, and the outbound SAs in the order they
/// went in (Linux sends on the newest). With `at_message_3` it stands for a peer that
/// installs a Quick Mode's SAs only when message 3 reaches it (charon, pluto, C
/// isakmpd): an inbound half becomes usable with the outbound one.
#[derive(Default)]
struct EspKernel {
    at_message_3: bool,
    inbound: std::collections::HashSet<[u8; 4]>,
    deferred: std::collections::HashSet<[u8; 4]>,
    outbound: Vec<[u8; 4]>,
}

impl EspKernel {
    fn apply(&mut self, n: &mut Node) {
        use isakmpd::ike::sa::KernelReq;
        while let Some(op) = n.e.poll_kernel() {
            match op.req {
                KernelReq::AddSa(sa, part) => {
                    if part.inbound() {
                        if self.at_message_3 && !part.outbound() {
                            self.deferred.insert(sa.spi_in);
                        } else {
                            self.inbound.insert(sa.spi_in);
                        }
                    }
                    if part.outbound() {
                        if self.deferred.remove(&sa.spi_in) {
                            self.inbound.insert(sa.spi_in);
                        }
                        self.outbound.push(sa.spi_out);
                    }
                }
                KernelReq::DeleteSa(sa, part, _) => {
                    if part.inbound() {
                        self.inbound.remove(&sa.spi_in);
                        self.deferred.remove(&sa.spi_in);
                    }
                    if part.outbound() {
                        self.outbound.retain(|s| *s != sa.spi_out);
                    }
                }
                KernelReq::GetSpi { .. }
                | KernelReq::DeleteSpi { .. }
                | KernelReq::UpdateSa(_)
                | KernelReq::MigrateSa(..)
                | KernelReq::AddFlows(_)
                | KernelReq::DeleteFlows(_) => {}
            }
        }
    }
}

/// The link of [`rekeys_over_a_slow_link`]: delays in ms each way, and how long each
/// daemon takes to get to an IKE message once it has arrived (ESP is the kernel's and
/// has no such wait).
struct SlowLink {
    one_way_ms: u64,
    /// Added to west's datagrams (IKE and ESP) once the first phase 2 is up.
    west_late_ms: u64,
    east_busy_ms: u64,
    east_at_message_3: bool,
}

enum OnLink {
    Ike(Vec<u8>),
    Esp([u8; 4]),
}

/// West rekeys a 10 s phase 2 for `seconds` over `link`, while both kernels send one ESP
/// packet every 100 ms on their newest outbound SA. After the first negotiation neither
/// side is ever without an SA to send on, and every ESP packet finds its SA at the other
/// end when it arrives. Returns how many times west negotiated phase 2.
fn rekeys_over_a_slow_link(link: SlowLink, seconds: u64, seed: u64) -> u64 {
    isakmpd::ike::crypto::init();
    let g = "Default-phase-2-lifetime=10,10:10\n";
    let c = |me, peer, active| {
        conf_g(
            me,
            peer,
            "k",
            active,
            "AES-SHA",
            "QM-ESP-AES-SHA-PFS-SUITE",
            "ID_PROT",
            g,
        )
    };
    let mut w = node(WEST, &c(WEST, EAST, true), seed);
    let mut e = node(EAST, &c(EAST, WEST, false), seed + 1);
    let mut kw = EspKernel::default();
    let mut ke = EspKernel {
        at_message_3: link.east_at_message_3,
        ..Default::default()
    };
    // (when it arrives, order sent, towards east, what)
    let mut wire: Vec<(Time, u64, bool, OnLink)> = Vec::new();
    let mut sent = 0u64;
    let mut flowing: Option<Time> = None;
    let mut buf = [0u8; 65535];
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    while now < Time::from_secs(seconds) {
        // Arrivals, in order.
        wire.sort_by_key(|(t, n, _, _)| (*t, *n));
        while wire.first().is_some_and(|(t, ..)| *t <= now) {
            let (_, n, to_east, what) = wire.remove(0);
            let from = if to_east { w.addr } else { e.addr };
            let (to, k) = if to_east {
                (&mut e, &mut ke)
            } else {
                (&mut w, &mut kw)
            };
            match what {
                OnLink::Ike(d) => {
                    to.e.handle_datagram(now, to.addr, from, &d);
                    k.apply(to);
                }
                OnLink::Esp(spi) => assert!(
                    k.inbound.contains(&spi),
                    "at {now}: ESP packet {n} to {} on spi {spi:02x?} found no SA",
                    to.addr
                ),
            }
        }
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
        kw.apply(&mut w);
        ke.apply(&mut e);
        let late = if flowing.is_some() {
            link.west_late_ms
        } else {
            0
        };
        let delay = |to_east: bool| {
            if to_east {
                link.one_way_ms + late
            } else {
                link.one_way_ms
            }
        };
        for to_east in [true, false] {
            let from = if to_east { &mut w } else { &mut e };
            while let Some(t) = from.e.poll_transmit(&mut buf) {
                let busy = if to_east { link.east_busy_ms } else { 0 };
                sent += 1;
                let at = now.add_millis(delay(to_east) + busy);
                wire.push((at, sent, to_east, OnLink::Ike(buf[..t.len].to_vec())));
            }
        }
        if flowing.is_none() && w.e.stats().phase2_done > 0 && e.e.stats().phase2_done > 0 {
            flowing = Some(now.add_secs(2));
        }
        if flowing.is_some_and(|t| t <= now) {
            for (to_east, k) in [(true, &kw), (false, &ke)] {
                let spi = *k
                    .outbound
                    .last()
                    .unwrap_or_else(|| panic!("at {now}: no outbound SA (to east: {to_east})"));
                sent += 1;
                wire.push((
                    now.add_millis(delay(to_east)),
                    sent,
                    to_east,
                    OnLink::Esp(spi),
                ));
            }
            assert!(
                w.e.ipsec_sas().count() <= 3 && e.e.ipsec_sas().count() <= 3,
                "at {now}: old SAs pile up"
            );
        }
        now = now.add_millis(100);
    }
    w.e.stats().phase2_done
}

#[test]
fn a_rekeying_initiator_keeps_sending_on_the_old_sa_until_the_responder_has_the_new_one() {
    // The responder installs at message 3 and gets to it 0.5 s after it arrived.
    let link = SlowLink {
        one_way_ms: 50,
        west_late_ms: 0,
        east_busy_ms: 500,
        east_at_message_3: true,
    };
    let n = rekeys_over_a_slow_link(link, 60, 92);
    assert!(n >= 5, "rekeyed {n} times");
}

#[test]
fn an_sa_outlives_its_hard_expiry_while_its_replacement_is_negotiated() {
    // 1.5 s each way: a Quick Mode started at 85-95 % of a 10 s lifetime ends after the
    // old SA's hard expiry.
    let link = SlowLink {
        one_way_ms: 1500,
        west_late_ms: 0,
        east_busy_ms: 0,
        east_at_message_3: false,
    };
    let n = rekeys_over_a_slow_link(link, 60, 94);
    assert!(n >= 4, "rekeyed {n} times");
}

#[test]
fn a_responder_keeps_its_sa_past_expiry_until_the_peer_has_rekeyed_it() {
    // West's datagrams reach east 4 s late once the tunnel is up: its rekeys' message 1
    // arrives after east's copy of the old SA has expired.
    let link = SlowLink {
        one_way_ms: 100,
        west_late_ms: 4000,
        east_busy_ms: 0,
        east_at_message_3: false,
    };
    let n = rekeys_over_a_slow_link(link, 60, 95);
    assert!(n >= 4, "rekeyed {n} times");
}

/// A configuration as [`conf_g`] writes it, edited: `peer_extra` goes into the peer
/// section, `conn_drop` names a tag the connection section loses, `sections` is appended.
fn conf_cfg(
    me: &str,
    peer: &str,
    active: bool,
    peer_extra: &str,
    conn_drop: &str,
    sections: &str,
) -> Conf {
    let (lnet, rnet) = if me == WEST {
        ("198.51.100.0", "203.0.113.0")
    } else {
        ("203.0.113.0", "198.51.100.0")
    };
    let conn = if conn_drop.is_empty() {
        "Local-ID=lnet\nRemote-ID=rnet\n".to_string()
    } else {
        "Local-ID=lnet\nRemote-ID=rnet\n".replace(&format!("{conn_drop}="), "#")
    };
    let text = format!(
        "[General]\nRetransmits=3\nExchange-max-time=60\n\
         [Phase 1]\n{peer}=peer\n\
         [Phase 2]\n{}=conn\n\
         [peer]\nPhase=1\nAddress={peer}\nConfiguration=mm\nAuthentication=k\n{peer_extra}\
         [mm]\nDOI=IPSEC\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-SHA\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n{conn}\
         [qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA-PFS-SUITE\n\
         [lnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={lnet}\nNetmask=255.255.255.0\n\
         [rnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={rnet}\nNetmask=255.255.255.0\n{sections}",
        if active {
            "Connections"
        } else {
            "Passive-connections"
        }
    );
    let conf = Conf::parse(&text).unwrap().conf;
    let errors = isakmpd::ike::policy::Policy::load(&conf).errors;
    assert!(errors.is_empty(), "{errors:?}");
    conf
}

#[test]
fn mode_config_request_reply_gives_the_client_the_address_its_quick_mode_uses() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::policy::OwnedId;
    // West is the client: it asks east (the server) for an address, and its connection,
    // which has no Local-ID, speaks for that address. East answers from [ipv4/<west>] and
    // its connection, without a Remote-ID, takes the address it gave.
    let wc = conf_cfg(
        WEST,
        EAST,
        true,
        "Flags=ikecfg\n",
        "Local-ID",
        "[ipv4/192.0.2.2]\nMode=REQUEST\nAttributes=Address,Netmask,Nameserver,Lifetime\n",
    );
    let ec = conf_cfg(
        EAST,
        WEST,
        false,
        "",
        "Remote-ID",
        "[ipv4/192.0.2.1]\nAddress=10.99.0.5\nNetmask=255.255.255.0\nNameserver=10.99.0.53\nWINS-server=10.99.0.54\n",
    );
    let (w, e) = negotiated(&wc, &ec, 170);
    let ws = w.e.isakmp_sas().next().expect("phase 1");
    assert_eq!(ws.cfg_address, Some("10.99.0.5".parse().unwrap()));
    let es = e.e.isakmp_sas().next().unwrap();
    assert_eq!(es.cfg_peer_address, Some("10.99.0.5".parse().unwrap()));
    let vip = OwnedId::address("10.99.0.5".parse().unwrap());
    assert_eq!(w.e.ipsec_sas().next().unwrap().local_id, vip);
    assert_eq!(e.e.ipsec_sas().next().unwrap().remote_id, vip);
}

/// West and east on a clean link for 30 s: one phase 2 pair that matches, nothing
/// dropped.
fn negotiated(wc: &Conf, ec: &Conf, seed: u64) -> (Node, Node) {
    let mut w = node(WEST, wc, seed);
    let mut e = node(EAST, ec, seed + 1);
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    assert_eq!(check_matching(&w.e, &e.e), 1);
    assert_eq!(
        w.e.stats().datagrams_dropped + e.e.stats().datagrams_dropped,
        0
    );
    (w, e)
}

#[test]
fn mode_config_set_pushes_the_section_and_the_client_acknowledges() {
    isakmpd::ike::crypto::init();
    // West is the server and pushes [ipv4/<east>]; east takes the address and ACKs;
    // west's connection starts after the ACK.
    let wc = conf_cfg(
        WEST,
        EAST,
        true,
        "Flags=ikecfg\n",
        "",
        "[ipv4/192.0.2.2]\nAddress=10.99.0.7\nNetmask=255.255.255.0\nWINS-server=10.99.0.9\nLifetime=600\n",
    );
    let ec = conf_cfg(EAST, WEST, false, "", "", "");
    let (w, e) = negotiated(&wc, &ec, 172);
    let es = e.e.isakmp_sas().next().expect("phase 1");
    assert_eq!(es.cfg_address, Some("10.99.0.7".parse().unwrap()));
    let ws = w.e.isakmp_sas().next().unwrap();
    assert_eq!(ws.cfg_peer_address, Some("10.99.0.7".parse().unwrap()));
}

#[test]
fn mode_config_unanswered_lets_the_connection_start_without_it() {
    isakmpd::ike::crypto::init();
    // The client's REQUEST never gets through (a peer that does not speak mode-config,
    // or a lossy path): after its retransmissions the connection starts anyway, with the
    // Local-ID it has.
    let wc = conf_cfg(
        WEST,
        EAST,
        true,
        "Flags=ikecfg\n",
        "",
        "[ipv4/192.0.2.2]\nMode=REQUEST\n",
    );
    let ec = conf_cfg(EAST, WEST, false, "", "", "");
    let mut w = node(WEST, &wc, 174);
    let mut e = node(EAST, &ec, 175);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    let mut buf = [0u8; 65535];
    let mut dropped = 0;
    for _ in 0..120 {
        for _ in 0..20 {
            let mut moved = false;
            while let Some(t) = w.e.poll_transmit(&mut buf) {
                // Exchange type is byte 18 of the ISAKMP header: 6 is TRANSACTION.
                if buf[18] == 6 {
                    dropped += 1;
                } else {
                    e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
                }
                moved = true;
            }
            while let Some(t) = e.e.poll_transmit(&mut buf) {
                w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        now = now.add_secs(1);
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
    }
    assert_eq!(dropped, 4, "the REQUEST and its 3 retransmissions");
    assert_eq!(w.e.stats().retransmits, 3, "counted");
    assert_eq!(w.e.isakmp_sas().next().unwrap().cfg_address, None);
    assert_eq!(check_matching(&w.e, &e.e), 1);
}

#[test]
fn nat_traversal_in_aggressive_mode() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::wire::EncapsulationMode;
    // As in Main Mode, but the NAT-D payloads ride in messages 2 and 3 and the initiator
    // floats to port 4500 for message 3 (RFC 3947 §3.2, §4).
    let qm = "QM-ESP-AES-SHA-SUITE";
    let am = "AGGRESSIVE";
    let mut w = node(WEST, &conf_x(WEST, EAST, "k", true, "AES-SHA", qm, am), 180);
    let mut e = node(
        EAST,
        &conf_x(EAST, NAT_IP, "k", false, "AES-SHA", qm, am),
        181,
    );
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    let mut keepalives = 0;
    for _ in 0..45 {
        keepalives += nat_tick(&mut w, &mut e, now);
        now = now.add_secs(1);
    }
    assert_eq!(check_matching(&w.e, &e.e), 1);
    let ws = w.e.isakmp_sas().next().unwrap();
    let es = e.e.isakmp_sas().next().unwrap();
    let (wn, en) = (ws.nat_t.unwrap(), es.nat_t.unwrap());
    assert!(wn.rfc && wn.local_behind && !wn.peer_behind, "{wn:?}");
    assert!(en.rfc && !en.local_behind && en.peer_behind, "{en:?}");
    assert_eq!((ws.local.port(), ws.remote.port()), (4500, 4500));
    assert_eq!(es.remote, format!("{NAT_IP}:44500").parse().unwrap());
    let wi = w.e.ipsec_sas().next().unwrap();
    let ei = e.e.ipsec_sas().next().unwrap();
    assert_eq!(wi.encapsulation, EncapsulationMode::UDP_ENCAP_TUNNEL);
    assert_eq!(ei.encap, Some((4500, 44500)));
    assert!(keepalives >= 2, "{keepalives}");
    assert_eq!(
        e.e.stats().datagrams_dropped + w.e.stats().datagrams_dropped,
        0
    );
    // Without a NAT, Aggressive Mode stays on port 500.
    let mut w = node(WEST, &conf_x(WEST, EAST, "k", true, "AES-SHA", qm, am), 182);
    let mut e = node(
        EAST,
        &conf_x(EAST, WEST, "k", false, "AES-SHA", qm, am),
        183,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    let ws = w.e.isakmp_sas().next().unwrap();
    assert!(!ws.nat_t.unwrap().detected());
    assert_eq!(ws.remote.port(), 500);
    assert_eq!(check_matching(&w.e, &e.e), 1);
}

#[test]
fn nat_oa_in_transport_mode_through_a_nat() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::wire::EncapsulationMode;
    // Transport mode through the NAT: UDP-encapsulated transport, and each side learns
    // the other's original address from its NAT-OA payloads (RFC 3947 §5.2): east learns
    // west's private address, west east's own.
    let qm = "QM-ESP-TRP-AES-SHA-SUITE";
    let mut w = node(WEST, &conf(WEST, EAST, "k", true, "AES-SHA", qm), 184);
    let mut e = node(EAST, &conf(EAST, NAT_IP, "k", false, "AES-SHA", qm), 185);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..30 {
        nat_tick(&mut w, &mut e, now);
        now = now.add_secs(1);
    }
    assert_eq!(check_matching(&w.e, &e.e), 1);
    let wi = w.e.ipsec_sas().next().unwrap();
    let ei = e.e.ipsec_sas().next().unwrap();
    assert_eq!(wi.encapsulation, EncapsulationMode::UDP_ENCAP_TRANSPORT);
    assert_eq!(ei.encapsulation, EncapsulationMode::UDP_ENCAP_TRANSPORT);
    assert_eq!(
        ei.peer_oa,
        Some(WEST.parse().unwrap()),
        "west's original address"
    );
    assert_eq!(
        wi.peer_oa,
        Some(EAST.parse().unwrap()),
        "east's own address"
    );
    assert_eq!(
        e.e.stats().datagrams_dropped + w.e.stats().datagrams_dropped,
        0
    );
    // Tunnel mode carries none.
    let qm = "QM-ESP-AES-SHA-SUITE";
    let mut w = node(WEST, &conf(WEST, EAST, "k", true, "AES-SHA", qm), 186);
    let mut e = node(EAST, &conf(EAST, NAT_IP, "k", false, "AES-SHA", qm), 187);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..30 {
        nat_tick(&mut w, &mut e, now);
        now = now.add_secs(1);
    }
    assert_eq!(check_matching(&w.e, &e.e), 1);
    assert_eq!(e.e.ipsec_sas().next().unwrap().peer_oa, None);
}

#[test]
fn a_nat_that_moves_the_peer_to_another_port_is_followed() {
    isakmpd::ike::crypto::init();
    use isakmpd::ike::sa::KernelReq;
    // West sits behind a NAT that, once the tunnel is up, maps it to another port (the
    // NAT rebooted, or its mapping timed out): east hears west's next authenticated
    // message (a DPD R-U-THERE) from the new port, and its IKE and its SAs' UDP
    // encapsulation follow (RFC 3947 §7).
    let qm = "QM-ESP-AES-SHA-SUITE";
    let g = "DPD-check-interval=5\n";
    let mut w = node(
        WEST,
        &conf_g(WEST, EAST, "k", true, "AES-SHA", qm, "ID_PROT", g),
        188,
    );
    // East only answers: whatever it sent to the old mapping on its own would be lost
    // until west spoke again, as with a real NAT.
    let mut e = node(
        EAST,
        &conf_g(EAST, NAT_IP, "k", false, "AES-SHA", qm, "ID_PROT", ""),
        189,
    );
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..20 {
        nat_tick_at(&mut w, &mut e, now, 40000);
        now = now.add_secs(1);
    }
    assert_eq!(check_matching(&w.e, &e.e), 1);
    assert_eq!(e.e.ipsec_sas().next().unwrap().encap, Some((4500, 44500)));
    let cookies = e.e.isakmp_sas().next().map(|s| (s.icookie, s.rcookie));
    let spi = e.e.ipsec_sas().next().map(|s| s.spi_in);
    while e.e.poll_kernel().is_some() {}
    let mut lost = 0;
    for _ in 0..40 {
        lost += nat_tick_at(&mut w, &mut e, now, 41000).1;
        now = now.add_secs(1);
    }
    let es = e.e.isakmp_sas().next().expect("phase 1 kept");
    assert_eq!(
        Some((es.icookie, es.rcookie)),
        cookies,
        "the same phase 1 SA"
    );
    assert_eq!(es.remote, format!("{NAT_IP}:45500").parse().unwrap());
    let ei = e.e.ipsec_sas().next().expect("phase 2 kept");
    assert_eq!(Some(ei.spi_in), spi, "the same phase 2 SA");
    assert_eq!(ei.encap, Some((4500, 45500)));
    assert_eq!(ei.remote, format!("{NAT_IP}:45500").parse().unwrap());
    let mut updated = 0;
    while let Some(op) = e.e.poll_kernel() {
        if let KernelReq::UpdateSa(sa) = op.req {
            assert_eq!(sa.encap, Some((4500, 45500)));
            updated += 1;
        }
    }
    assert_eq!(updated, 1, "east's kernel SA pair follows once");
    assert_eq!(lost, 0, "east never answers the old mapping");
    assert_eq!(check_matching(&w.e, &e.e), 1, "DPD keeps the tunnel");
    assert_eq!(
        e.e.stats().datagrams_dropped + w.e.stats().datagrams_dropped,
        0
    );
}

/// The refactoring safety net: seeded runs of the main scenarios (Main and Aggressive
/// Mode, PSK and RSA signatures, PFS, a kernel that answers, duplicates, loss, DPD, NAT-T,
/// mode-config, DELETE both phases) must put the same bytes on the wire as when
/// `tests/vectors/wire-seeded.txt` was recorded. `ISAKMPD_RECORD_WIRE=1` rewrites it
/// (only when the wire is meant to change).
#[test]
fn seeded_wire_matches_the_recorded_fixture() {
    isakmpd::ike::crypto::init();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/wire-seeded.txt");
    WIRE.with(|w| *w.borrow_mut() = Some(Vec::new()));
    let mark = |name: &str| {
        WIRE.with(|w| w.borrow_mut().as_mut().unwrap().push(format!("# {name}")));
    };

    mark("main mode PSK, quick mode with PFS, teardown of both phases");
    let (mut w, mut e) = pair("AES-SHA2-256-GRP14", "QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE");
    w.e.start_connections(Time(0));
    let t = drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);
    let quick = Request::Teardown {
        phase: isakmpd::fifo::Phase::Quick,
        name: "conn".into(),
    };
    e.e.handle_command(t, quick).unwrap();
    let t = drive(&mut w, &mut e, t, 5, &mut |_| Fate::Deliver);
    let main = Request::Teardown {
        phase: isakmpd::fifo::Phase::Main,
        name: "peer".into(),
    };
    w.e.handle_command(t, main).unwrap();
    drive(&mut w, &mut e, t, 5, &mut |_| Fate::Deliver);

    mark("main mode, duplicates of every datagram, message 4 lost once");
    let (mut w, mut e) = pair("3DES-SHA", "QM-ESP-3DES-SHA-SUITE");
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 60, &mut |n| match n {
        4 => Fate::Drop,
        _ => Fate::Duplicate,
    });
    check_matching(&w.e, &e.e);

    mark("aggressive mode PSK, message 2 lost once");
    let qm = "QM-ESP-AES-SHA-PFS-SUITE";
    let mut w = node(
        WEST,
        &conf_x(WEST, EAST, "k", true, "AES-SHA", qm, "AGGRESSIVE"),
        7,
    );
    let mut e = node(
        EAST,
        &conf_x(EAST, WEST, "k", false, "AES-SHA", qm, "AGGRESSIVE"),
        8,
    );
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 60, &mut |n| {
        if n == 2 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    check_matching(&w.e, &e.e);

    mark("main mode RSA signatures (raw public keys)");
    let vec = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/");
    let key = std::fs::read(format!("{vec}rsa-key.pem")).unwrap();
    let public = std::fs::read(format!("{vec}rsa-pub.pem")).unwrap();
    let rsa = |me: &str, peer: &str, active: bool, seed: u64| {
        let c = conf(
            me,
            peer,
            "unused",
            active,
            "3DES-SHA-RSA_SIG",
            "QM-ESP-3DES-SHA-SUITE",
        );
        let mut n = node(me, &c, seed);
        let mut cr = Credentials::load(Some(&key), &[], &[]).unwrap();
        cr.add_pubkey("ipv4", peer, &public).unwrap();
        n.e.set_credentials(cr);
        n
    };
    let (mut w, mut e) = (rsa(WEST, EAST, true, 9), rsa(EAST, WEST, false, 10));
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 60, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);

    mark("a kernel that answers: SPIs and installs");
    let (mut w, mut e) = kpair(Some(KernelSim::new(0x1000)), Some(KernelSim::new(0x2000)));
    w.e.start_connections(Time(0));
    drive(&mut w, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    check_matching(&w.e, &e.e);

    mark("DPD both ways after aggressive mode");
    let g = "DPD-check-interval=5\n";
    let c = |me, peer, active| {
        conf_g(
            me,
            peer,
            "k",
            active,
            "AES-SHA",
            "QM-ESP-AES-SHA-SUITE",
            "AGGRESSIVE",
            g,
        )
    };
    let mut w = node(WEST, &c(WEST, EAST, true), 120);
    let mut e = node(EAST, &c(EAST, WEST, false), 121);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..20 {
        tick(&mut w, &mut e, now, true);
        now = now.add_secs(1);
    }
    check_matching(&w.e, &e.e);

    mark("NAT-T: float to 4500, keepalives");
    let mut w = node(WEST, &conf(WEST, EAST, "k", true, "AES-SHA", qm), 160);
    let mut e = node(EAST, &conf(EAST, NAT_IP, "k", false, "AES-SHA", qm), 161);
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..45 {
        nat_tick(&mut w, &mut e, now);
        now = now.add_secs(1);
    }
    check_matching(&w.e, &e.e);

    mark("mode-config REQUEST/REPLY");
    let wc = conf_cfg(
        WEST,
        EAST,
        true,
        "Flags=ikecfg\n",
        "Local-ID",
        "[ipv4/192.0.2.2]\nMode=REQUEST\nAttributes=Address,Netmask,Nameserver,Lifetime\n",
    );
    let ec = conf_cfg(
        EAST,
        WEST,
        false,
        "",
        "Remote-ID",
        "[ipv4/192.0.2.1]\nAddress=10.99.0.5\nNetmask=255.255.255.0\nNameserver=10.99.0.53\n",
    );
    negotiated(&wc, &ec, 170);

    let got = WIRE.with(|w| w.borrow_mut().take().unwrap()).join("\n") + "\n";
    if std::env::var_os("ISAKMPD_RECORD_WIRE").is_some() {
        std::fs::write(path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path).expect("tests/vectors/wire-seeded.txt");
    if got != want {
        let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        let first = g
            .iter()
            .zip(&w)
            .position(|(a, b)| a != b)
            .unwrap_or(g.len().min(w.len()));
        panic!(
            "the wire changed at line {} of {path} ({} lines now, {} recorded):\n now: {}\n was: {}",
            first + 1,
            g.len(),
            w.len(),
            g.get(first).unwrap_or(&"(end)"),
            w.get(first).unwrap_or(&"(end)")
        );
    }
}

/// Deleting an SA disarms its timers: twenty tunnels brought up and torn down leave no
/// timer behind once the finished exchanges have lingered (a timer left armed would hold
/// its slot of the wheel for the SA's whole lifetime).
#[test]
fn deleted_sas_leave_no_timers_behind() {
    isakmpd::ike::crypto::init();
    let g = "DPD-check-interval=30\n";
    let qm = "QM-ESP-AES-SHA-PFS-SUITE";
    let mut w = node(
        WEST,
        &conf_g(WEST, EAST, "k", true, "AES-SHA", qm, "ID_PROT", g),
        200,
    );
    let mut e = node(
        EAST,
        &conf_g(EAST, WEST, "k", false, "AES-SHA", qm, "ID_PROT", g),
        201,
    );
    let mut now = Time(0);
    for round in 0..20 {
        w.e.handle_command(now, Request::Connect("conn".into()))
            .unwrap();
        now = drive(&mut w, &mut e, now, 5, &mut |_| Fate::Deliver);
        assert_eq!(check_matching(&w.e, &e.e), 1, "round {round}");
        w.e.handle_command(now, Request::TeardownAll).unwrap();
        let main = Request::Teardown {
            phase: isakmpd::fifo::Phase::Main,
            name: "peer".into(),
        };
        w.e.handle_command(now, main).unwrap();
        now = drive(&mut w, &mut e, now, 5, &mut |_| Fate::Deliver);
        assert_eq!(w.e.isakmp_sas().count() + e.e.isakmp_sas().count(), 0);
        assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    }
    // Past the finished exchanges' linger, well inside the SAs' lifetimes.
    now = now.add_secs(60);
    w.e.handle_timeout(now);
    e.e.handle_timeout(now);
    let (tw, te): (Vec<_>, Vec<_>) = (w.e.timers().collect(), e.e.timers().collect());
    assert!(tw.is_empty() && te.is_empty(), "west {tw:?}\neast {te:?}");
}

/// A responder whose ISAKMP SA table is full does not answer Main Mode message 5: no
/// peer believes in a phase 1 SA the responder dropped. Once a slot is free, the
/// initiator's retransmission gets through.
#[test]
fn a_full_isakmp_sa_table_answers_no_message_5_until_a_slot_is_free() {
    isakmpd::ike::crypto::init();
    let general = "Retransmits=5\nExchange-max-time=120\n";
    let responder = any_peer_responder(&format!("Max-phase1-SAs=16\n{general}"));
    let mut e = node(EAST, &responder, 300);
    let initiator = |_me: &str| initiator_to_east(general, "", "");
    let addr = |i: usize| format!("192.0.2.{}", 10 + i);
    let mut ws: Vec<Node> = (0..17)
        .map(|i| node(&addr(i), &initiator(&addr(i)), 310 + i as u64))
        .collect();
    let mut now = Time(0);
    let mut buf = vec![0u8; 65535];
    let mut run = |ws: &mut Vec<Node>, e: &mut Node, now: Time| {
        for _ in 0..50 {
            let mut moved = false;
            for w in ws.iter_mut() {
                while let Some(t) = w.e.poll_transmit(&mut buf) {
                    e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
                    moved = true;
                }
            }
            while let Some(t) = e.e.poll_transmit(&mut buf) {
                if let Some(w) = ws.iter_mut().find(|w| w.addr == t.remote) {
                    w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
                }
                moved = true;
            }
            if !moved {
                break;
            }
        }
        for w in ws.iter_mut() {
            w.e.handle_timeout(now);
        }
        e.e.handle_timeout(now);
    };
    for w in ws.iter_mut() {
        w.e.start_connections(now);
    }
    for _ in 0..5 {
        run(&mut ws, &mut e, now);
        now = now.add_secs(1);
    }
    let up = ws.iter().filter(|w| w.e.isakmp_sas().count() == 1).count();
    assert_eq!(e.e.isakmp_sas().count(), 16, "the table is full");
    assert_eq!(
        up, 16,
        "exactly the initiators the responder holds believe in phase 1"
    );
    let waiting = ws
        .iter()
        .position(|w| w.e.isakmp_sas().count() == 0)
        .unwrap();
    // One SA goes; the waiting initiator's next retransmission of message 5 gets in.
    let (ic, rc) = {
        let s = e.e.isakmp_sas().next().unwrap();
        (s.icookie, s.rcookie)
    };
    let del = Request::Delete {
        icookie: ic,
        rcookie: rc,
        msgid: None,
    };
    e.e.handle_command(now, del).unwrap();
    for _ in 0..30 {
        run(&mut ws, &mut e, now);
        now = now.add_secs(1);
    }
    assert_eq!(
        ws[waiting].e.isakmp_sas().count(),
        1,
        "through after a slot freed"
    );
    assert_eq!(e.e.isakmp_sas().count(), 16);
    // A newcomer while the table is full: its message 1 goes unanswered (no DH work for a
    // peer that could not be kept).
    let mut late = node(&addr(20), &initiator(&addr(20)), 330);
    late.e.start_connections(now);
    let t = late.e.poll_transmit(&mut buf).unwrap();
    e.e.handle_datagram(now, e.addr, late.addr, &buf[..t.len]);
    assert!(
        e.e.poll_transmit(&mut buf).is_none(),
        "message 1 unanswered"
    );
}

/// INITIAL-CONTACT clears what the sender itself held (its identity at its address and
/// port), not every SA of its IP address: two peers behind one NAT address, with their
/// own IDs and ports, do not evict each other; the same peer coming back does evict its
/// old SAs.
#[test]
fn initial_contact_clears_only_the_senders_own_sas() {
    isakmpd::ike::crypto::init();
    let mut e = node(EAST, &any_peer_responder(""), 400);
    let initiator = |name: &str, port: u16, seed: u64| {
        let id = format!("[me]\nID-type=FQDN\nName={name}.example\n");
        let conf = initiator_to_east("", "ID=me\n", &id);
        let mut en = Engine::new(
            EngineConfig {
                seed: Some(seed),
                no_kernel: true,
                port: Some(port),
                ..Default::default()
            },
            &conf,
            Time(0),
            isakmpd::ike::crypto::random_source(Some(seed)),
        );
        let ip: std::net::IpAddr = NAT_IP.parse().unwrap();
        en.set_route_lookup(Box::new(move |_| Some(ip)));
        Node {
            e: en,
            addr: SocketAddr::new(ip, port),
            kernel: None,
        }
    };
    let mut a = initiator("a", 40001, 401);
    let mut b = initiator("b", 40002, 402);
    a.e.start_connections(Time(0));
    let t = drive(&mut a, &mut e, Time(0), 30, &mut |_| Fate::Deliver);
    b.e.start_connections(t);
    let t = drive(&mut b, &mut e, t, 30, &mut |_| Fate::Deliver);
    assert_eq!(
        e.e.isakmp_sas().count(),
        2,
        "b's INITIAL-CONTACT left a's phase 1"
    );
    assert_eq!(e.e.ipsec_sas().count(), 2, "and a's phase 2");
    // A rebooted: same identity, address and port, no SAs; its INITIAL-CONTACT clears
    // what the responder held for the old a, and only that.
    let mut a2 = initiator("a", 40001, 403);
    a2.e.start_connections(t);
    drive(&mut a2, &mut e, t, 30, &mut |_| Fate::Deliver);
    assert_eq!(
        e.e.isakmp_sas().count(),
        2,
        "the old a's phase 1 replaced by the new"
    );
    assert_eq!(e.e.ipsec_sas().count(), 2);
    let a_remote: SocketAddr = format!("{NAT_IP}:40001").parse().unwrap();
    let old_gone =
        e.e.isakmp_sas()
            .filter(|s| s.remote == a_remote)
            .all(|s| a2.e.isakmp_sas().any(|n| n.icookie == s.icookie));
    assert!(old_gone, "only the new a's phase 1 remains at a's address");
}

/// Garbage that looks like ISAKMP is not answered at flood rate: unprotected
/// notifications (to senders that have proven nothing) go out at most ten a second.
#[test]
fn unprotected_notifications_are_rate_limited() {
    isakmpd::ike::crypto::init();
    let (mut w, mut e) = pair("AES-SHA", "QM-ESP-AES-SHA-SUITE");
    w.e.start_connections(Time(0));
    let m1 = {
        let mut buf = [0u8; 65535];
        let t = w.e.poll_transmit(&mut buf).unwrap();
        buf[..t.len].to_vec()
    };
    let mut buf = [0u8; 65535];
    let mut sent = 0;
    for i in 0..1000u32 {
        // Main Mode message 1 from a new cookie whose SA payload is cut short.
        let mut d = m1.clone();
        d[..4].copy_from_slice(&i.to_be_bytes());
        d[28 + 8..28 + 12].copy_from_slice(&[0, 0, 0, 0]);
        let from = SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                198,
                18,
                (i / 250) as u8,
                (i % 250) as u8,
            )),
            500,
        );
        e.e.handle_datagram(Time(u64::from(i)), e.addr, from, &d);
        while e.e.poll_transmit(&mut buf).is_some() {
            sent += 1;
        }
    }
    // 1000 datagrams over one second: one burst of ten.
    let s = e.e.stats();
    assert_eq!(s.datagrams_dropped, 1000, "{s:?}");
    assert_eq!(sent, 10, "{s:?}");
    assert_eq!(s.notifies_suppressed, 990);
    let _ = w;
}

/// A finished exchange gives its slot back at once (what answers a late duplicate moves
/// to a small cache): forty Quick Modes in a row over one phase 1 fit in a table of
/// sixteen exchanges, where each used to hold its slot for thirty seconds.
#[test]
fn finished_exchanges_free_their_slots_at_once() {
    isakmpd::ike::crypto::init();
    let g = "Max-exchanges=16\n";
    let qm = "QM-ESP-AES-SHA-SUITE";
    let mut w = node(
        WEST,
        &conf_g(WEST, EAST, "k", true, "AES-SHA", qm, "ID_PROT", g),
        500,
    );
    let mut e = node(
        EAST,
        &conf_g(EAST, WEST, "k", false, "AES-SHA", qm, "ID_PROT", g),
        501,
    );
    let mut now = Time(0);
    for round in 0..40 {
        w.e.handle_command(now, Request::Connect("conn".into()))
            .unwrap();
        now = drive(&mut w, &mut e, now, 5, &mut |_| Fate::Deliver);
        assert_eq!(check_matching(&w.e, &e.e), 1, "round {round}");
        let quick = Request::Teardown {
            phase: isakmpd::fifo::Phase::Quick,
            name: "conn".into(),
        };
        w.e.handle_command(now, quick).unwrap();
        now = drive(&mut w, &mut e, now, 5, &mut |_| Fate::Deliver);
        assert_eq!(w.e.ipsec_sas().count() + e.e.ipsec_sas().count(), 0);
    }
    assert!(
        now < Time(30_000),
        "all within the old linger time: {now:?}"
    );
    assert_eq!(w.e.stats().phase2_done, 40);
    assert_eq!(e.e.stats().phase2_done, 40);
    assert_eq!(w.e.exchanges_in_flight() + e.e.exchanges_in_flight(), 0);
}

/// Half-open responder exchanges only replace each other: during a flood of Main Mode
/// message 1 from 2,000 spoofed addresses (2,000 a second for 10 s, far more than the
/// exchange table holds), a real peer that answers our message 2 completes Main Mode and
/// Quick Mode within two seconds, and nothing of the flood is logged per datagram.
#[test]
fn a_message_1_flood_from_spoofed_addresses_does_not_lock_out_a_real_peer() {
    isakmpd::ike::crypto::init();
    let responder = any_peer_responder("");
    let initiator = initiator_to_east("", "", "");
    let mut e = node(EAST, &responder, 600);
    let mut w = node(WEST, &initiator, 601);
    // The flood's template: a real message 1 (from a throwaway initiator).
    let template = first_message(&initiator, 602);
    let mut buf = vec![0u8; 65535];
    let mut up_at = None;
    let mut flood = 0u32;
    for ms in 0..10_000u64 {
        let now = Time(ms);
        for _ in 0..2 {
            let mut d = template.clone();
            d[..4].copy_from_slice(&flood.to_be_bytes());
            let from = spoofed(flood % 2000);
            e.e.handle_datagram(now, e.addr, from, &d);
            flood += 1;
        }
        if ms == 2000 {
            w.e.start_connections(now);
        }
        while let Some(t) = w.e.poll_transmit(&mut buf) {
            e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
        }
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            if t.remote == w.addr {
                w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
            }
        }
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
        if up_at.is_none() && w.e.ipsec_sas().count() == 1 {
            up_at = Some(ms);
        }
        assert!(e.e.exchanges_in_flight() <= 512);
    }
    let up_at = up_at.expect("the real peer got through");
    assert!(up_at < 4000, "up {} ms after it started", up_at - 2000);
    let s = e.e.stats();
    assert!(s.half_open_evicted > 10_000, "{s:?}");
    assert_eq!(e.e.ipsec_sas().count(), 1);
}

/// The `i`th of 2,000 spoofed flood sources in 198.18.0.0/15.
fn spoofed(i: u32) -> SocketAddr {
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            198,
            18,
            (i / 200) as u8,
            (i % 200) as u8 + 1,
        )),
        500,
    )
}

/// Message 1 as a throwaway initiator with configuration `c` sends it: a flood's
/// template.
fn first_message(c: &Conf, seed: u64) -> Vec<u8> {
    let mut t = node("192.0.2.9", c, seed);
    t.e.start_connections(Time(0));
    let mut buf = vec![0u8; 65535];
    let n = t.e.poll_transmit(&mut buf).unwrap().len;
    buf[..n].to_vec()
}

/// A responder that takes any peer address ([Phase 1] Default) and a passive connection
/// without client IDs; `general` goes into [General].
fn any_peer_responder(general: &str) -> Conf {
    let text = format!(
        "[General]\n{general}[Phase 1]\nDefault=peer\n[Phase 2]\nPassive-connections=conn\n\
         [peer]\nPhase=1\nConfiguration=mm\nAuthentication=k\n\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-SHA\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n\
         [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA-SUITE\n"
    );
    Conf::parse(&text).unwrap().conf
}

/// An initiator of the connection `conn` to EAST (no client IDs): `general` goes into
/// [General], `peer_extra` into the peer section, `sections` after the rest.
fn initiator_to_east(general: &str, peer_extra: &str, sections: &str) -> Conf {
    let text = format!(
        "[General]\n{general}[Phase 1]\n{EAST}=peer\n[Phase 2]\nConnections=conn\n\
         [peer]\nPhase=1\nAddress={EAST}\nConfiguration=mm\nAuthentication=k\n{peer_extra}\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-SHA\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n\
         [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA-SUITE\n{sections}"
    );
    Conf::parse(&text).unwrap().conf
}

/// Aggressive Mode message 1 costs the responder a DH computation before the peer has
/// shown that it receives at its address. During a flood of it from spoofed addresses
/// that only the [Phase 1] Default section matches (5,000 a second for 3 s), the
/// responder does that work for at most Aggressive-default-rate of them a second, and a
/// peer its configuration names completes Aggressive Mode and Quick Mode at once.
#[test]
fn an_aggressive_mode_flood_from_unnamed_peers_is_rate_limited() {
    isakmpd::ike::crypto::init();
    let am = |c: Conf| {
        let mut c = c;
        c.set("mm", "EXCHANGE_TYPE", "AGGRESSIVE", true).unwrap();
        c
    };
    let mut responder = am(any_peer_responder("Aggressive-default-rate=50\n"));
    responder.set("Phase 1", WEST, "peer", false).unwrap();
    let initiator = am(initiator_to_east("", "", ""));
    let mut e = node(EAST, &responder, 700);
    let mut w = node(WEST, &initiator, 701);
    let template = first_message(&initiator, 702);
    let mut buf = vec![0u8; 65535];
    let (mut up_at, mut answered, mut flood) = (None, 0u32, 0u32);
    for ms in 0..3_000u64 {
        let now = Time(ms);
        for _ in 0..5 {
            let mut d = template.clone();
            d[..4].copy_from_slice(&flood.to_be_bytes());
            let from = spoofed(flood % 2000);
            e.e.handle_datagram(now, e.addr, from, &d);
            flood += 1;
        }
        if ms == 1000 {
            w.e.start_connections(now);
        }
        while let Some(t) = w.e.poll_transmit(&mut buf) {
            e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
        }
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            if t.remote == w.addr {
                w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
            } else {
                answered += 1;
            }
        }
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
        if up_at.is_none() && w.e.ipsec_sas().count() == 1 {
            up_at = Some(ms);
        }
    }
    let up_at = up_at.expect("the named peer got through");
    assert!(up_at <= 1001, "up {} ms after it started", up_at - 1000);
    // 50 a second, counted by the tenth of a second: 5 per 100 ms over 3 s.
    assert!(answered <= 150, "{answered} of {flood} answered");
    assert!(answered >= 100, "{answered} of {flood} answered");
    let s = e.e.stats();
    assert!(
        s.drops[DropKind::OverRate as usize] >= u64::from(flood - 200),
        "{s:?}"
    );
}

/// A responder that lost its half of Main Mode (a half-open exchange evicted by a flood,
/// or a restart) answers the initiator's message 3 with INVALID-COOKIE: the initiator
/// starts over at once (once), instead of waiting for the next Check-interval.
#[test]
fn an_initiator_whose_responder_lost_the_exchange_starts_over_at_once() {
    isakmpd::ike::crypto::init();
    let responder = any_peer_responder("");
    let initiator = initiator_to_east("", "", "");
    let mut e = node(EAST, &responder, 800);
    let mut w = node(WEST, &initiator, 801);
    let mut buf = vec![0u8; 65535];
    w.e.start_connections(Time(0));
    let t = w.e.poll_transmit(&mut buf).unwrap();
    e.e.handle_datagram(Time(1), e.addr, w.addr, &buf[..t.len]);
    let t = e.e.poll_transmit(&mut buf).unwrap();
    w.e.handle_datagram(Time(2), w.addr, e.addr, &buf[..t.len]);
    // Message 3 is on its way; the responder forgets everything.
    e = node(EAST, &responder, 802);
    let mut up_at = None;
    for ms in 3..2000u64 {
        let now = Time(ms);
        while let Some(t) = w.e.poll_transmit(&mut buf) {
            e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
        }
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
        }
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
        if up_at.is_none() && w.e.ipsec_sas().count() == 1 {
            up_at = Some(ms);
        }
    }
    let up_at = up_at.expect("the second try got through");
    assert!(up_at < 100, "up at {up_at} ms");
    assert_eq!(w.e.stats().failed, 1);
    assert_eq!(e.e.ipsec_sas().count(), 1);
}

/// A C isakmpd responder ignores a repeated message 1: when its message 2 is lost, the
/// initiator's retransmissions cannot bring it back. After them our initiator starts
/// over with new cookies at once (once), rather than at the next Check-interval (here an
/// hour, so only the restart can bring the tunnel up).
#[test]
fn an_initiator_whose_message_2_never_comes_starts_over_with_new_cookies() {
    isakmpd::ike::crypto::init();
    let responder = any_peer_responder("");
    let initiator = initiator_to_east("Check-interval=3600\nRetransmits=2\n", "", "");
    let mut e = node(EAST, &responder, 810);
    let mut w = node(WEST, &initiator, 811);
    let mut buf = vec![0u8; 65535];
    w.e.start_connections(Time(0));
    let mut first_icookie = None;
    let mut up_at = None;
    for s10 in 0..1200u64 {
        let now = Time(s10 * 100);
        while let Some(t) = w.e.poll_transmit(&mut buf) {
            let icookie = buf[..8].to_vec();
            first_icookie.get_or_insert(icookie);
            e.e.handle_datagram(now, e.addr, w.addr, &buf[..t.len]);
        }
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            // Everything east says in the first exchange is lost.
            if first_icookie.as_deref() == Some(&buf[..8]) {
                continue;
            }
            w.e.handle_datagram(now, w.addr, e.addr, &buf[..t.len]);
        }
        w.e.handle_timeout(now);
        e.e.handle_timeout(now);
        if up_at.is_none() && w.e.ipsec_sas().count() == 1 {
            up_at = Some(now);
        }
    }
    let up_at = up_at.expect("the second exchange, with new cookies, got through");
    // Message 1 and two retransmissions (7 s and 9 s apart), then 11 s for the last.
    assert!(up_at.millis() < 40_000, "up at {up_at}");
    assert_eq!(w.e.stats().failed, 1);
    assert_eq!(w.e.stats().phase1_done, 1);
    assert_eq!(e.e.ipsec_sas().count(), 1);
}

/// A half-open responder sends its Aggressive Mode message 2 twice at most (once, and one
/// retransmission for a lost message 3): a spoofed message 1 gets no more than that from
/// us, and its exchange goes quietly after the half-open time.
#[test]
fn a_spoofed_aggressive_mode_message_1_is_answered_twice_at_most() {
    isakmpd::ike::crypto::init();
    let mut responder = any_peer_responder("");
    responder
        .set("mm", "EXCHANGE_TYPE", "AGGRESSIVE", true)
        .unwrap();
    let mut initiator = initiator_to_east("", "", "");
    initiator
        .set("mm", "EXCHANGE_TYPE", "AGGRESSIVE", true)
        .unwrap();
    let mut e = node(EAST, &responder, 900);
    let m1 = first_message(&initiator, 901);
    let mut buf = vec![0u8; 65535];
    let spoofed = spoofed(0);
    e.e.handle_datagram(Time(0), e.addr, spoofed, &m1);
    let mut sent = 0;
    for ms in 0..60_000u64 {
        e.e.handle_timeout(Time(ms));
        while let Some(t) = e.e.poll_transmit(&mut buf) {
            assert_eq!(t.remote, spoofed);
            sent += 1;
        }
    }
    assert_eq!(sent, 2);
    assert_eq!(e.e.exchanges_in_flight(), 0);
    assert_eq!(
        e.e.stats().failed,
        0,
        "no failure logged for a spoofed peer"
    );
}
