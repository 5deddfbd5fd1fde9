//! The IKEv1 engine (src/ike: Main, Aggressive and Quick Mode, informational) fed
//! hostile datagrams (fuzz target `ikev1_engine`), in the `ikev2_engine` target's
//! manner: two engines with a pre-shared key, a virtual clock, the real messages of a
//! deterministic pair as seeds.
//!
//! An input is a setup byte and records `[ctl][len: u16 BE][len bytes]`. Setups:
//! - 0: a lone responder (east), nothing negotiated;
//! - 1: west has sent Main Mode message 1 (held back): datagrams aimed at west;
//! - 2: Main Mode and Quick Mode done: datagrams aimed at east;
//! - 3: Aggressive Mode and Quick Mode done: datagrams aimed at west.
//!
//! `ctl & 1`: the cookies of the target's first ISAKMP SA are written over the first 16
//! bytes; `ctl & 2`: the clock moves one second first; `ctl & 4`: from a third party's
//! address; `ctl & 8`: to port 4500 behind the non-ESP marker.
//!
//! After each record the engine's half-open count agrees with its exchanges and both
//! stay within the configured limits. After the last one the engines talk and the clock
//! runs ten minutes (past every retransmission and `Exchange-max-time`, short of any SA
//! lifetime): then no exchange is left in flight and nothing is half-open.

use std::net::SocketAddr;

use crate::conf::Conf;
use crate::ike::{Engine, EngineConfig};
use crate::timer::Time;

use super::engine::{input, record};

const WEST: &str = "192.0.2.1";
const EAST: &str = "192.0.2.2";
const STRANGER: &str = "203.0.113.9:500";
const MAX_RECORDS: usize = 64;
/// The configured limits (clamped by the engine to at least 16 exchanges).
const MAX_EXCHANGES: usize = 16;
const MAX_HALF_OPEN: usize = 4;

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("a literal address"), port)
}

fn conf(west: bool, aggressive: bool) -> Conf {
    let (me, peer, lnet, rnet) = if west {
        (WEST, EAST, "198.51.100.0", "203.0.113.0")
    } else {
        (EAST, WEST, "203.0.113.0", "198.51.100.0")
    };
    let _ = me;
    let exch = if aggressive { "AGGRESSIVE" } else { "ID_PROT" };
    let conns = if west {
        "Connections"
    } else {
        "Passive-connections"
    };
    let text = format!(
        "[General]\nRetransmits=3\nExchange-max-time=60\n\
         Max-exchanges={MAX_EXCHANGES}\nMax-half-open={MAX_HALF_OPEN}\n\
         [Phase 1]\n{peer}=peer\n\
         [Phase 2]\n{conns}=conn\n\
         [peer]\nPhase=1\nAddress={peer}\nConfiguration=mm\nAuthentication=fuzz\n\
         [mm]\nDOI=IPSEC\nEXCHANGE_TYPE={exch}\nTransforms=AES-SHA2-256-GRP14\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\nLocal-ID=lnet\nRemote-ID=rnet\n\
         [qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA2-256-SUITE\n\
         [lnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={lnet}\nNetmask=255.255.255.0\n\
         [rnet]\nID-type=IPV4_ADDR_SUBNET\nNetwork={rnet}\nNetmask=255.255.255.0\n"
    );
    Conf::parse(&text)
        .expect("the harness's configuration")
        .conf
}

fn engine(west: bool, aggressive: bool) -> Engine {
    let seed = if west { 1 } else { 2 };
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(seed),
            no_kernel: true,
            ..Default::default()
        },
        &conf(west, aggressive),
        Time(0),
        crate::ike::crypto::random_source(Some(seed)),
    );
    let ip: std::net::IpAddr = (if west { WEST } else { EAST }).parse().expect("literal");
    e.set_route_lookup(Box::new(move |_| Some(ip)));
    e
}

/// A datagram in flight: from west?, bytes.
type Datagram = (bool, Vec<u8>);

struct Pair {
    now: Time,
    /// [west, east].
    sides: [Engine; 2],
    wire: Vec<Datagram>,
    /// Every datagram sent, in order.
    log: Vec<Datagram>,
    buf: Vec<u8>,
}

impl Pair {
    fn new(aggressive: bool) -> Pair {
        crate::ike::crypto::init();
        Pair {
            now: Time(0),
            sides: [engine(true, aggressive), engine(false, aggressive)],
            wire: Vec::new(),
            log: Vec::new(),
            buf: vec![0u8; 65536],
        }
    }

    /// Takes what the engines sent onto the wire; kernel requests are dropped (no
    /// kernel: nothing waits for them).
    fn collect(&mut self) {
        for (i, e) in self.sides.iter_mut().enumerate() {
            while let Some(t) = e.poll_transmit(&mut self.buf) {
                let d = self.buf[..t.len].to_vec();
                self.log.push((i == 0, d.clone()));
                self.wire.push((i == 0, d));
            }
            while e.poll_kernel().is_some() {}
        }
    }

    fn deliver_all(&mut self) {
        for _ in 0..100 {
            self.collect();
            if self.wire.is_empty() {
                return;
            }
            for (from_west, d) in std::mem::take(&mut self.wire) {
                let (to, dst, src) = if from_west {
                    (1, sock(EAST, 500), sock(WEST, 500))
                } else {
                    (0, sock(WEST, 500), sock(EAST, 500))
                };
                self.sides[to].handle_datagram(self.now, dst, src, &d);
            }
        }
    }

    /// The engines talk, the clock running to each deadline, for `secs` of virtual time.
    fn run_for(&mut self, secs: u64) {
        let end = self.now.add_secs(secs);
        for _ in 0..10_000 {
            self.deliver_all();
            let next = self.sides.iter_mut().filter_map(|e| e.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for e in &mut self.sides {
                        e.handle_timeout(self.now);
                    }
                }
                _ => return,
            }
        }
        panic!("the engines never went quiet");
    }
}

/// The half-open count agrees with the exchanges, and both are within the limits.
fn check_tables(e: &Engine) {
    let half = e.exchanges.iter().filter(|(_, x)| x.half_open).count();
    assert_eq!(e.half_open_count, half, "half-open counter");
    assert!(half <= MAX_HALF_OPEN, "{half} half-open exchanges");
    assert!(
        e.exchanges.len() <= MAX_EXCHANGES,
        "{} exchanges",
        e.exchanges.len()
    );
}

/// Builds the setup: the pair, the side datagrams go to, and the datagrams held back.
fn setup(mode: u8) -> (Pair, usize, Vec<Datagram>) {
    let mut p = Pair::new(mode == 3);
    match mode {
        0 => (p, 1, Vec::new()),
        1 => {
            p.sides[0].start_connections(p.now);
            p.collect();
            let held = std::mem::take(&mut p.wire);
            (p, 0, held)
        }
        _ => {
            p.sides[0].start_connections(p.now);
            p.run_for(30);
            assert_eq!(
                p.sides[1].ipsec_sas().count(),
                1,
                "the pair did not come up"
            );
            (p, if mode == 2 { 1 } else { 0 }, Vec::new())
        }
    }
}

/// What the inputs of this thread reached (for the campaign's report and the seeds'
/// test): the target engine's counters after the records, summed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reached {
    pub inputs: u64,
    pub received: u64,
    pub dropped: u64,
    pub phase1_done: u64,
    pub phase2_done: u64,
    pub failed: u64,
}

thread_local! {
    static REACHED: std::cell::Cell<Reached> = std::cell::Cell::new(Reached::default());
}

/// The sums so far; see [`Reached`].
pub fn reached() -> Reached {
    REACHED.with(|r| r.get())
}

/// The fuzz target: see the module's documentation.
pub fn ikev1_engine(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mode = mode % 4;
    let (mut p, to, held) = setup(mode);
    let (local, remote) = if to == 1 {
        (sock(EAST, 500), sock(WEST, 500))
    } else {
        (sock(WEST, 500), sock(EAST, 500))
    };
    for _ in 0..MAX_RECORDS {
        let Some((&ctl, r)) = rest.split_first() else {
            break;
        };
        let len = match r.get(..2) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => r.len(),
        };
        let body = r.get(2..).unwrap_or(&[]);
        let n = len.min(body.len());
        let (data, next) = body.split_at(n);
        rest = next;
        p.collect();
        p.wire.clear();
        if ctl & 2 != 0 {
            p.now = p.now.add_secs(1);
            for e in &mut p.sides {
                e.handle_timeout(p.now);
            }
        }
        let mut d = data.to_vec();
        if ctl & 1 != 0 && d.len() >= 16 {
            if let Some(sa) = p.sides[to].isakmp_sas().next() {
                d[..8].copy_from_slice(&sa.icookie);
                d[8..16].copy_from_slice(&sa.rcookie);
            }
        }
        let src = if ctl & 4 != 0 {
            STRANGER.parse().expect("literal")
        } else {
            remote
        };
        let mut dst = local;
        if ctl & 8 != 0 {
            dst.set_port(4500);
            d.splice(0..0, [0u8; 4]);
        }
        p.sides[to].handle_datagram(p.now, dst, src, &d);
        p.collect();
        p.wire.clear();
        check_tables(&p.sides[to]);
    }
    let st = p.sides[to].stats();
    REACHED.with(|r| {
        let mut v = r.get();
        v.inputs += 1;
        v.received += st.datagrams_received;
        v.dropped += st.datagrams_dropped;
        v.phase1_done += st.phase1_done;
        v.phase2_done += st.phase2_done;
        v.failed += st.failed;
        r.set(v);
    });
    p.wire.extend(held);
    p.run_for(600);
    for e in &p.sides {
        check_tables(e);
        assert_eq!(e.exchanges.len(), 0, "exchanges left after ten minutes");
        assert_eq!(e.half_open_count, 0, "half-open left");
    }
}

/// Seeds for `ikev1_engine`: the real messages of Main, Aggressive and Quick Mode,
/// replayed to the lone responder, the waiting initiator and the established pairs:
/// (target, name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for aggressive in [false, true] {
        let x = if aggressive { "am" } else { "mm" };
        let mut p = Pair::new(aggressive);
        p.sides[0].start_connections(p.now);
        p.run_for(30);
        let log = p.log.clone();
        // Main Mode 1 (or Aggressive 1) to a lone responder, also from a stranger.
        if let Some((_, first)) = log.first() {
            out.push((
                "ikev1_engine",
                format!("lone_{x}_1"),
                input(0, &[record(0, first)]),
            ));
            let recs = [record(0, first), record(4, first), record(2 | 8, first)];
            out.push((
                "ikev1_engine",
                format!("lone_{x}_1_thrice"),
                input(0, &recs),
            ));
        }
        // The responder's messages to the initiator waiting for Main Mode 2.
        if !aggressive {
            let from_east: Vec<Vec<u8>> = log
                .iter()
                .filter(|(w, _)| !w)
                .map(|(_, d)| record(0, d))
                .collect();
            out.push(("ikev1_engine", "initiator_mm".into(), input(1, &from_east)));
        }
        // Every message replayed to the established pair.
        let mode = if aggressive { 3 } else { 2 };
        for (i, (from_west, d)) in log.iter().enumerate() {
            // Setup 2 takes datagrams at east (west's), setup 3 at west (east's).
            if *from_west != (mode == 2) {
                continue;
            }
            out.push((
                "ikev1_engine",
                format!("{x}_replay_{i}"),
                input(mode, &[record(0, d)]),
            ));
            let mut spoof = d.clone();
            if spoof.len() > 40 {
                spoof[40] ^= 0x55;
            }
            let recs = [record(1, &spoof), record(2, d)];
            out.push(("ikev1_engine", format!("{x}_spoof_{i}"), input(mode, &recs)));
        }
    }
    out
}
