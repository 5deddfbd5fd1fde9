//! Handshake cost: full Main Mode (PSK) + Quick Mode negotiations between two engines in
//! memory (no sockets, no kernel), for MODP2048 and ECP256 like the strongSwan figures in
//! the project notes. Prints milliseconds of CPU per handshake for both sides together,
//! and the responder's share. Run with `cargo bench --bench handshake`.

use std::net::SocketAddr;
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
        loop {
            let mut moved = false;
            while let Some(t) = w.poll_transmit(&mut buf) {
                let d = buf[..t.len].to_vec();
                let s = Instant::now();
                e.handle_datagram(Time(0), ea, wa, &d);
                resp += s.elapsed();
                moved = true;
            }
            while let Some(t) = e.poll_transmit(&mut buf) {
                let d = buf[..t.len].to_vec();
                w.handle_datagram(Time(0), wa, ea, &d);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        assert_eq!(w.ipsec_sas().count(), 1, "handshake {i} completed");
    }
    let total = t0.elapsed();
    println!(
        "{label:<44} {:>8.3} ms/handshake (both sides), responder {:>7.3} ms  ({n} handshakes)",
        total.as_secs_f64() * 1000.0 / n as f64,
        resp.as_secs_f64() * 1000.0 / n as f64
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
}
