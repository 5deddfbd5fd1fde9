//! What the engine allocates on its packet path, counted by a global allocator: after
//! setup, a retransmission, a NAT keepalive, a DPD exchange (R-U-THERE and its ACK), a
//! dropped malformed datagram and an answered duplicate allocate nothing; a whole Main
//! Mode + Quick Mode handshake allocates a bounded number of times, printed.
//!
//! The daemon's logger is installed (stderr, not verbose) and counted with the engine: the
//! malformed datagrams make the engine log its rate-limited drop warnings, and those too
//! must not allocate. Stderr goes to a file for the test, which checks that they were
//! written.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use isakmpd::conf::Conf;
use isakmpd::ike::{Engine, EngineConfig};
use isakmpd::timer::Time;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the counters are
// const-initialised thread locals (no allocation to reach them).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note(n);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

fn note(n: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            COUNT.with(|c| c.set(c.get() + 1));
            BYTES.with(|b| b.set(b.get() + n as u64));
        }
    });
}

#[global_allocator]
static A: Counting = Counting;

/// Allocations (count, bytes) made by `f`.
fn counted(f: impl FnOnce()) -> (u64, u64) {
    COUNT.with(|c| c.set(0));
    BYTES.with(|b| b.set(0));
    ON.with(|o| o.set(true));
    f();
    ON.with(|o| o.set(false));
    (COUNT.with(|c| c.get()), BYTES.with(|b| b.get()))
}

const WEST: &str = "192.0.2.1";
const EAST: &str = "192.0.2.2";
const NAT: &str = "198.51.100.200";

fn conf(me: &str, peer: &str, active: bool, general: &str) -> Conf {
    let (l, r) = if me == WEST {
        ("198.51.100.0", "203.0.113.0")
    } else {
        ("203.0.113.0", "198.51.100.0")
    };
    let text = format!(
        "[General]\nRetransmits=3\nExchange-max-time=60\n{general}\
         [Phase 1]\n{peer}=peer\n[Phase 2]\n{}=conn\n\
         [peer]\nPhase=1\nAddress={peer}\nConfiguration=mm\nAuthentication=k\n\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms=AES-SHA\n\
         [conn]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\nLocal-ID=l\nRemote-ID=r\n\
         [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-SHA-PFS-SUITE\n\
         [l]\nID-type=IPV4_ADDR_SUBNET\nNetwork={l}\nNetmask=255.255.255.0\n\
         [r]\nID-type=IPV4_ADDR_SUBNET\nNetwork={r}\nNetmask=255.255.255.0\n",
        if active {
            "Connections"
        } else {
            "Passive-connections"
        }
    );
    Conf::parse(&text).unwrap().conf
}

struct Node {
    e: Engine,
    addr: SocketAddr,
}

fn node(me: &str, peer: &str, active: bool, general: &str, seed: u64) -> Node {
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(seed),
            no_kernel: true,
            ..Default::default()
        },
        &conf(me, peer, active, general),
        Time(0),
        isakmpd::ike::crypto::random_source(Some(seed)),
    );
    let ip: std::net::IpAddr = me.parse().unwrap();
    e.set_route_lookup(Box::new(move |_| Some(ip)));
    Node {
        e,
        addr: SocketAddr::new(ip, 500),
    }
}

/// Moves every queued datagram across until both are quiet (west's datagrams appear to
/// east from `west_seen_as`, east's go to whatever west's port maps back to), then fires
/// the timers due at `now`. `buf` is the event loop's receive buffer. Returns datagrams
/// moved.
fn step(w: &mut Node, e: &mut Node, now: Time, buf: &mut [u8], nat: bool, lose: bool) -> usize {
    let mut n = 0;
    for _ in 0..50 {
        let mut moved = false;
        while let Some(t) = w.e.poll_transmit(buf) {
            n += 1;
            moved = true;
            let from = if nat {
                SocketAddr::new(NAT.parse().unwrap(), t.local.unwrap().port() + 40000)
            } else {
                t.local.unwrap()
            };
            if !lose {
                e.e.handle_datagram(now, t.remote, from, &buf[..t.len]);
            }
        }
        while let Some(t) = e.e.poll_transmit(buf) {
            n += 1;
            moved = true;
            let to = if nat {
                SocketAddr::new(w.addr.ip(), t.remote.port() - 40000)
            } else {
                t.remote
            };
            if !lose {
                w.e.handle_datagram(now, to, t.local.unwrap(), &buf[..t.len]);
            }
        }
        if !moved {
            break;
        }
    }
    w.e.handle_timeout(now);
    e.e.handle_timeout(now);
    n
}

/// A tunnel up after `secs` seconds of one-second steps.
fn up(w: &mut Node, e: &mut Node, buf: &mut [u8], nat: bool, secs: u64) -> Time {
    w.e.start_connections(Time(0));
    let mut now = Time(0);
    for _ in 0..secs {
        step(w, e, now, buf, nat, false);
        now = now.add_secs(1);
    }
    assert_eq!(w.e.ipsec_sas().count(), 1, "tunnel up");
    assert_eq!(e.e.ipsec_sas().count(), 1, "tunnel up");
    now
}

/// Stderr (fd 2) sent to a file until dropped; what was written can be read meanwhile.
struct StderrToFile {
    path: std::path::PathBuf,
    saved: i32,
}

impl StderrToFile {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("isakmpd-alloc-{}.log", std::process::id()));
        let f = File::create(&path).unwrap();
        // SAFETY: dup and dup2 on descriptors we own (f) or that the process always has
        // (2); the saved copy is restored and closed in drop.
        let saved = unsafe { libc::dup(2) };
        assert!(saved >= 0);
        assert!(unsafe { libc::dup2(f.as_raw_fd(), 2) } == 2);
        Self { path, saved }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }
}

impl Drop for StderrToFile {
    fn drop(&mut self) {
        // SAFETY: saved is the descriptor dup'ed in new, still open.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn the_packet_path_allocates_nothing_after_setup() {
    isakmpd::ike::crypto::init();
    // The logger can be installed once per process: here, before anything logs.
    let stderr = StderrToFile::new();
    isakmpd::log::init(false, false);
    let mut buf = vec![0u8; 65535];
    let mut report = Vec::new();

    // A whole handshake: bounded, reported.
    let mut w = node(WEST, EAST, true, "", 1);
    let mut e = node(EAST, WEST, false, "", 2);
    let (hs, hs_bytes) = counted(|| {
        up(&mut w, &mut e, &mut buf, false, 3);
    });
    report.push(format!(
        "Main Mode + Quick Mode (PFS), both sides: {hs} allocations, {hs_bytes} bytes"
    ));

    // Retransmission: west's message 1 goes unanswered; the timer resends it.
    let mut w = node(WEST, EAST, true, "", 3);
    let mut e = node(EAST, WEST, false, "", 4);
    w.e.start_connections(Time(0));
    step(&mut w, &mut e, Time(0), &mut buf, false, true);
    let (rt, _) = counted(|| {
        // The timer fires at the end of the first step; the second moves its datagram.
        let n = step(&mut w, &mut e, Time(7_000), &mut buf, false, true)
            + step(&mut w, &mut e, Time(7_000), &mut buf, false, true);
        assert_eq!(n, 1, "one retransmission");
    });
    report.push(format!("retransmission: {rt}"));

    // An answered duplicate: east receives a copy of west's message 1 again.
    let mut w = node(WEST, EAST, true, "", 5);
    let mut e = node(EAST, WEST, false, "", 6);
    w.e.start_connections(Time(0));
    let t = w.e.poll_transmit(&mut buf).unwrap();
    let m1 = buf[..t.len].to_vec();
    e.e.handle_datagram(Time(0), e.addr, w.addr, &m1);
    while e.e.poll_transmit(&mut buf).is_some() {}
    let (dup, _) = counted(|| {
        e.e.handle_datagram(Time(1), e.addr, w.addr, &m1);
        let t = e.e.poll_transmit(&mut buf);
        assert!(t.is_some(), "the duplicate is answered with message 2");
    });
    report.push(format!("answered duplicate: {dup}"));

    // Dropped malformed datagrams: short, bad header, bad payload chain.
    let mut junk = m1.clone();
    junk[28 + 2] = 0xff; // first payload's length beyond the message
    let mut bad_version = m1.clone();
    bad_version[17] = 0x30;
    let logged = stderr.text().lines().count();
    let (drop, _) = counted(|| {
        for d in [&[0u8; 10][..], &bad_version, &junk, &[0u8; 60][..]] {
            e.e.handle_datagram(Time(2), e.addr, w.addr, d);
        }
        while e.e.poll_transmit(&mut buf).is_some() {}
    });
    let text = stderr.text();
    let warnings: Vec<&str> = text.lines().skip(logged).collect();
    report.push(format!(
        "4 dropped malformed datagrams: {drop}, logging {} lines: {warnings:#?}",
        warnings.len()
    ));
    assert!(
        warnings.iter().filter(|l| l.contains("dropped")).count() >= 2,
        "the drops are logged: {warnings:#?}"
    );

    // DPD: a quiet tunnel, R-U-THERE after 10 s, answered, the ACK taken.
    let g = "DPD-check-interval=10\n";
    let mut w = node(WEST, EAST, true, g, 7);
    let mut e = node(EAST, WEST, false, g, 8);
    let mut now = up(&mut w, &mut e, &mut buf, false, 3);
    let sent = w.e.stats().dpd_sent;
    let (dpd, _) = counted(|| {
        for _ in 0..12 {
            step(&mut w, &mut e, now, &mut buf, false, false);
            now = now.add_secs(1);
        }
    });
    assert!(w.e.stats().dpd_sent > sent, "an R-U-THERE went out");
    assert_eq!(
        w.e.stats().dpd_acked,
        w.e.stats().dpd_sent,
        "and was answered"
    );
    report.push(format!("DPD exchange (12 s of a quiet tunnel): {dpd}"));

    // NAT keepalive: west behind a NAT sends one every 20 s.
    let mut w = node(WEST, EAST, true, "", 9);
    let mut e = node(EAST, NAT, false, "", 10);
    let mut now = up(&mut w, &mut e, &mut buf, true, 3);
    let (ka, _) = counted(|| {
        for _ in 0..25 {
            step(&mut w, &mut e, now, &mut buf, true, false);
            now = now.add_secs(1);
        }
    });
    report.push(format!("NAT keepalive (25 s behind a NAT): {ka}"));

    for l in &report {
        println!("{l}");
    }
    assert!(hs > 0, "the handshake is counted");
    assert_eq!(
        (rt, dup, drop, dpd, ka),
        (0, 0, 0, 0, 0),
        "allocations on the packet path: {report:#?}"
    );
}
