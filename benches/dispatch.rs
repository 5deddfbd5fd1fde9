//! Dispatch cost against the number of established SAs: a responder holds 100, then
//! 10,000 phase 1 SAs (initiators at as many addresses of 198.18.0.0/15, Main Mode +
//! Quick Mode, PSK, ECP256), and is fed datagrams that name an established SA (an
//! informational and a Quick Mode message whose ciphertext is not whole blocks, dropped
//! after the lookup), or cookies nobody holds. The time per datagram must not grow with
//! the table. Prints ns per datagram; run with `cargo bench --bench dispatch`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use isakmpd::conf::Conf;
use isakmpd::ike::{Engine, EngineConfig, Request};
use isakmpd::timer::Time;

const RESPONDER: &str = "192.0.2.2";

fn engine(text: &str, me: IpAddr, seed: u64) -> Engine {
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(seed),
            no_kernel: true,
            hash_key: [0x5a; 16],
            ..Default::default()
        },
        &Conf::parse(text).unwrap().conf,
        Time(0),
        isakmpd::ike::crypto::random_source(Some(seed)),
    );
    e.set_route_lookup(Box::new(move |_| Some(me)));
    e
}

fn initiator_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// A responder with `n` established phase 1 SAs; returns it and their cookies.
fn responder_with(n: usize) -> (Engine, Vec<([u8; 8], [u8; 8], SocketAddr)>) {
    let ra: IpAddr = RESPONDER.parse().unwrap();
    let rs = SocketAddr::new(ra, 500);
    let limits = format!(
        "[General]\nMax-exchanges={}\nMax-phase1-SAs={}\nMax-phase2-SAs={}\n",
        4 * n + 64,
        n + 64,
        4 * n + 64
    );
    let mut r = engine(
        &format!(
            "{limits}[Phase 1]\nDefault=peer\n[Phase 2]\nPassive-connections=conn\n\
             [peer]\nPhase=1\nConfiguration=mm\nAuthentication=bench-key\n\
             [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-128-SHA2-256-GRP19\n\
             [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n\
             [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-128-SHA2-256-SUITE\n"
        ),
        ra,
        1,
    );
    let itext = format!(
        "[Phase 1]\n{RESPONDER}=peer\n[Phase 2]\nConnections=conn\n\
         [peer]\nPhase=1\nAddress={RESPONDER}\nConfiguration=mm\nAuthentication=bench-key\n\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-128-SHA2-256-GRP19\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\n\
         [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-128-SHA2-256-SUITE\n"
    );
    let mut buf = vec![0u8; 65535];
    for i in 0..n {
        let ia = initiator_addr(i);
        let is = SocketAddr::new(ia, 500);
        let mut w = engine(&itext, ia, 1000 + i as u64);
        w.handle_command(Time(0), Request::Connect("conn".into()))
            .unwrap();
        loop {
            let mut moved = false;
            while let Some(t) = w.poll_transmit(&mut buf) {
                let d = buf[..t.len].to_vec();
                r.handle_datagram(Time(0), rs, is, &d);
                moved = true;
            }
            while let Some(t) = r.poll_transmit(&mut buf) {
                let d = buf[..t.len].to_vec();
                w.handle_datagram(Time(0), is, rs, &d);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }
    // Finished exchanges linger to answer duplicates; let them go.
    r.handle_timeout(Time(120_000));
    let sas: Vec<_> = r
        .isakmp_sas()
        .map(|s| (s.icookie, s.rcookie, s.remote))
        .collect();
    assert_eq!(sas.len(), n, "{n} phase 1 SAs established");
    assert_eq!(r.ipsec_sas().count(), n, "and as many phase 2 SAs");
    (r, sas)
}

/// An encrypted message of `exchange` with these cookies whose body is not whole
/// cipher blocks: the responder finds the SA, then drops it.
fn datagram(icookie: [u8; 8], rcookie: [u8; 8], exchange: u8, msgid: u32) -> Vec<u8> {
    let mut d = vec![0u8; 28 + 13];
    d[..8].copy_from_slice(&icookie);
    d[8..16].copy_from_slice(&rcookie);
    d[16] = 8; // HASH
    d[17] = 0x10;
    d[18] = exchange;
    d[19] = 1; // encrypted
    d[20..24].copy_from_slice(&msgid.to_be_bytes());
    let len = d.len() as u32;
    d[24..28].copy_from_slice(&len.to_be_bytes());
    d
}

fn measure(label: &str, n: usize) {
    let t = Instant::now();
    let (mut r, sas) = responder_with(n);
    let setup = t.elapsed();
    let rs: SocketAddr = format!("{RESPONDER}:500").parse().unwrap();
    const N: usize = 200_000;
    let cases: [(&str, u8, bool); 3] = [
        ("informational, known SA", 5, true),
        ("quick mode, known SA", 32, true),
        ("informational, unknown cookies", 5, false),
    ];
    let mut buf = vec![0u8; 65535];
    for (what, exchange, known) in cases {
        let msgs: Vec<(Vec<u8>, SocketAddr)> = (0..1024)
            .map(|i| {
                let (ic, rc, remote) = sas[(i * 7919) % sas.len()];
                let rc = if known { rc } else { [0xee; 8] };
                (datagram(ic, rc, exchange, 0x1234_5678), remote)
            })
            .collect();
        let before = r.stats().datagrams_dropped;
        let t = Instant::now();
        for i in 0..N {
            let (d, remote) = &msgs[i % msgs.len()];
            r.handle_datagram(Time(120_000), rs, *remote, d);
            while r.poll_transmit(&mut buf).is_some() {}
        }
        let ns = t.elapsed().as_nanos() as f64 / N as f64;
        assert_eq!(
            r.stats().datagrams_dropped - before,
            N as u64,
            "all dropped"
        );
        black_box(&r);
        println!("{label:<26} {what:<32} {ns:>9.1} ns/datagram");
    }
    println!(
        "{label:<26} (setup: {n} handshakes in {:.1} s)",
        setup.as_secs_f64()
    );
}

fn main() {
    isakmpd::ike::crypto::init();
    measure("100 phase 1 SAs", 100);
    measure("10,000 phase 1 SAs", 10_000);
}
