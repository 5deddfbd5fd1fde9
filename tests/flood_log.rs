//! A garbage flood against the engine, with a logger that keeps what it is given: the
//! log shows a few lines per reason and a summary every ten seconds, not a line per
//! datagram, and unprotected notifications stay rate limited (the daemon is neither a
//! log flooder nor a reflector).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use isakmpd::conf::Conf;
use isakmpd::ike::{DropKind, Engine, EngineConfig};
use isakmpd::timer::Time;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Keep;

impl log::Log for Keep {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LINES.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static KEEP: Keep = Keep;

#[test]
fn a_garbage_flood_is_summed_up_not_logged_line_by_line() {
    isakmpd::ike::crypto::init();
    log::set_logger(&KEEP).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let conf = Conf::parse(
        "[Phase 1]\nDefault=peer\n[peer]\nPhase=1\nConfiguration=mm\nAuthentication=k\n\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-SHA\n",
    )
    .unwrap()
    .conf;
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(1),
            no_kernel: true,
            ..Default::default()
        },
        &conf,
        Time(0),
        isakmpd::ike::crypto::random_source(Some(1)),
    );
    let me: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let mut buf = vec![0u8; 65535];
    let mut answers = 0u64;
    // 100,000 datagrams over 20 s: a third too short to be ISAKMP, a third ISAKMP
    // headers whose length lies, a third Main Mode message 1 whose SA payload is cut.
    for i in 0..100_000u32 {
        let now = Time(u64::from(i / 5));
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)),
            500,
        );
        let mut d = vec![0u8; 28 + 12];
        d[..4].copy_from_slice(&i.to_be_bytes());
        d[16] = 1; // SA
        d[17] = 0x10;
        d[18] = 2; // ID_PROT
        let len = d.len() as u32;
        d[24..28].copy_from_slice(&len.to_be_bytes());
        d[28 + 2..28 + 4].copy_from_slice(&12u16.to_be_bytes());
        match i % 3 {
            0 => d.truncate(20),
            1 => d[27] = 0xff,
            _ => {}
        }
        e.handle_datagram(now, me, from, &d);
        e.handle_timeout(now);
        while e.poll_transmit(&mut buf).is_some() {
            answers += 1;
        }
    }
    e.handle_timeout(Time(20_000));
    let s = e.stats();
    assert_eq!(s.datagrams_dropped, 100_000, "{s:?}");
    assert!(s.drops[DropKind::NotIsakmp as usize] > 30_000, "{s:?}");
    assert!(s.drops[DropKind::BadHeader as usize] > 30_000, "{s:?}");
    assert!(s.drops[DropKind::Malformed as usize] > 30_000, "{s:?}");
    let lines = LINES.lock().unwrap().clone();
    let summaries = lines
        .iter()
        .filter(|l| l.contains("datagrams dropped in the last 10 s"))
        .count();
    println!(
        "{} log lines ({summaries} summaries) and {answers} answers for 100,000 datagrams",
        lines.len()
    );
    // Five per reason per ten seconds, and a summary every ten seconds.
    assert!(lines.len() <= 2 * 2 * 5 + 3, "{lines:#?}");
    assert!(summaries >= 1, "{lines:#?}");
    assert!(answers <= 10 * 20, "unprotected notifications: {answers}");
}
