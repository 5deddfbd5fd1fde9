//! The real daemon under a spoofed message 1 flood (issue 15): a responder `isakmpd` in a
//! network namespace takes Main Mode (or Aggressive Mode) message 1 at 5,500 datagrams a
//! second for six seconds, each from another address of 198.18.0.0/15 and with another
//! initiator cookie, each offering what the responder accepts (the message our own
//! initiator sends, cookie rewritten), so that the responder answers every one and keeps
//! it as a half-open exchange. Meanwhile a legitimate peer, another `isakmpd` or
//! strongSwan's charon, runs Main Mode + Quick Mode with it and must be done in under 2 s.
//! The responder's memory (VmRSS of the privileged parent and of the child) stays within
//! [`RSS_BOUND_KB`], and its log gets at most one line a second of the flood.
//!
//! The flood comes from a raw socket (IP_HDRINCL, our own IPv4 and UDP headers, UDP
//! checksum 0) opened by a thread that has joined the legitimate peer's namespace with
//! setns(2): the datagrams cross the veth pair like a real flood. The responder's route
//! to 198.18.0.0/15 points back at that peer, which does not forward: the answers die
//! there. Nothing of it can leave the host, as the two namespaces have no other link.
//!
//! The responder runs at the daemon's default log level (no -v). (With -v it used to log
//! an info line for every message 1 it answered; "started as responder" now comes once
//! the peer answers message 2.)
//! Under the Aggressive Mode flood the legitimate peer still uses Main Mode.
//!
//! Headroom: the unoptimized daemon of `cargo test` answers some 9,000-12,000 Main Mode
//! message 1 a second on this 2-core host (a release build about 37,000; the engine alone
//! 380,000, `cargo bench --bench handshake`), so two busy processes competing for the
//! cores can push it below 5,500 and make the Main Mode tests fail: then the socket buffer
//! drops the peer's messages as it drops the flood's.
//!
//! Runs as root (scripts/test.sh); the floods take turns (they measure time).

mod common;

#[path = "common/charon.rs"]
mod charon;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use charon::{Charon, PSK};
use common::{start_in, Daemon, Link, Scratch};
use isakmpd::conf::Conf;
use isakmpd::ike::{Engine, EngineConfig, Request};
use isakmpd::timer::Time;

/// Spoofed message 1 per second (ISAKMPD_FLOOD_RATE overrides it, to find where the
/// responder gives), and for how long.
const RATE: u64 = 5_500;
const FLOOD_SECS: u64 = 6;
/// The flood stops at this in any case.
const FLOOD_HARD_LIMIT: Duration = Duration::from_secs(10);
/// The legitimate peer starts this long into the flood (the half-open table is full and
/// turning over by then).
const LEGIT_AFTER: Duration = Duration::from_secs(2);
/// Main Mode + Quick Mode of the legitimate peer, under the flood.
const LEGIT_MAX: Duration = Duration::from_secs(2);
/// How long we wait for it at all (our initiator retransmits message 1 after 7 s,
/// charon after 4 s).
const LEGIT_WAIT: Duration = Duration::from_secs(10);
/// The responder's VmRSS, parent and child each, during and after the flood. The engine's
/// tables are allocated once for their limits (Max-exchanges 512, of which 256 may be
/// half-open, by default), so a flood can only fill them, not grow them: the bound is
/// the idle size plus 8 MB for the slots, buffers and the allocator's slack, and 32 MB
/// in all. Measured (debug build): parent 8.2 MB, unchanged; child 6.0 MB idle, 8.7 MB
/// under the Main Mode flood, 10.5 MB under the Aggressive Mode one (release: parent
/// 6.6 MB, child 4.6 -> 7.1 MB).
const RSS_GROWTH_KB: u64 = 8 * 1024;
const RSS_BOUND_KB: u64 = 32 * 1024;

const P1: &str = "AES-256-SHA2-256-GRP14";
const QM: &str = "QM-ESP-AES-128-SHA2-256-SUITE";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The subnet behind the side at `me` (192.0.2.1 owns 198.51.100.0/24, 192.0.2.2 owns
/// 203.0.113.0/24).
fn subnet(me: &str) -> &'static str {
    if me == "192.0.2.1" {
        "198.51.100.0"
    } else {
        "203.0.113.0"
    }
}

/// Our daemon at `me`: a responder to `peer` and to anybody else (Default), or the
/// initiator of `tun` towards `peer` (started from the FIFO with `c tun`).
fn conf(me: &str, peer: &str, exchange: &str, responder: bool) -> String {
    format!(
        "[General]\nRetransmits=3\nExchange-max-time=30\nCheck-interval=3600\n\
[Phase 1]\n{peer}=peer\n{default}\
[Phase 2]\nPassive-connections=tun\n\
[peer]\nPhase=1\nAddress={peer}\nLocal-address={me}\nConfiguration=p1\nAuthentication={PSK}\n\
[p1]\nDOI=IPSEC\nEXCHANGE_TYPE={exchange}\nTransforms={P1}\n\
[tun]\nPhase=2\nISAKMP-peer=peer\nConfiguration=qm\nLocal-ID=l\nRemote-ID=r\n\
[qm]\nDOI=IPSEC\nEXCHANGE_TYPE=QUICK_MODE\nSuites={QM}\n\
[l]\nID-type=IPV4_ADDR_SUBNET\nNetwork={}\nNetmask=255.255.255.0\n\
[r]\nID-type=IPV4_ADDR_SUBNET\nNetwork={}\nNetmask=255.255.255.0\n",
        subnet(me),
        subnet(peer),
        default = if responder { "Default=peer\n" } else { "" },
    )
}

/// Message 1 of Main Mode (`ID_PROT`) or Aggressive Mode as our initiator sends it to
/// `to` (SA with our transform, vendor IDs; in Aggressive Mode also KE, nonce and ID).
pub fn message1(exchange: &str, to: &str) -> Vec<u8> {
    let me = "198.18.0.1";
    let conf = Conf::parse(&conf(me, to, exchange, false)).unwrap().conf;
    let mut e = Engine::new(
        EngineConfig {
            seed: Some(15),
            no_kernel: true,
            ..Default::default()
        },
        &conf,
        Time(0),
        isakmpd::ike::crypto::random_source(Some(15)),
    );
    let ip: IpAddr = me.parse().unwrap();
    e.set_route_lookup(Box::new(move |_| Some(ip)));
    e.handle_command(Time(0), Request::Connect("tun".into()))
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let t = e.poll_transmit(&mut buf).expect("message 1");
    assert_eq!(t.remote, SocketAddr::new(to.parse().unwrap(), 500));
    buf.truncate(t.len);
    buf
}

fn rate() -> u64 {
    std::env::var("ISAKMPD_FLOOD_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(RATE)
}

struct FloodResult {
    sent: u64,
    elapsed: Duration,
}

/// Sends [`rate`] x `FLOOD_SECS` copies of `msg` to `dst`:500 from the network namespace
/// `netns`, each from another address of 198.18.0.0/15 (port 500) with another initiator
/// cookie. Stops early when `stop` is set, and at [`FLOOD_HARD_LIMIT`].
fn flood(
    netns: &str,
    dst: Ipv4Addr,
    msg: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<FloodResult> {
    let ns = fs::File::open(format!("/run/netns/{netns}")).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on a file we hold open; it moves only this thread.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        // SAFETY: a plain socket(2); IPPROTO_RAW implies IP_HDRINCL.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let rate = rate();
        let total = rate * FLOOD_SECS;
        let ulen = 8 + msg.len();
        let mut pkt = vec![0u8; 20 + ulen];
        pkt[0] = 0x45;
        pkt[2..4].copy_from_slice(&((20 + ulen) as u16).to_be_bytes());
        pkt[8] = 64;
        pkt[9] = libc::IPPROTO_UDP as u8;
        pkt[16..20].copy_from_slice(&dst.octets());
        pkt[20..22].copy_from_slice(&500u16.to_be_bytes());
        pkt[22..24].copy_from_slice(&500u16.to_be_bytes());
        pkt[24..26].copy_from_slice(&(ulen as u16).to_be_bytes());
        // UDP checksum 0: none (IPv4). The kernel fills in the IP checksum and ID.
        pkt[28..].copy_from_slice(&msg);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        let salt = (std::process::id() as u64) << 32;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        let t0 = Instant::now();
        let mut sent = 0u64;
        while sent < total && !stop.load(Ordering::Relaxed) && t0.elapsed() < FLOOD_HARD_LIMIT {
            let due = (t0.elapsed().as_micros() as u64 * rate / 1_000_000 + 1).min(total);
            while sent < due {
                // 131,072 addresses, visited in a scattered order (odd multiplier).
                let src = base + ((sent as u32).wrapping_mul(40_503) & 0x1_ffff);
                pkt[12..16].copy_from_slice(&src.to_be_bytes());
                // A new initiator cookie each time.
                pkt[28..36].copy_from_slice(&(salt | sent).to_be_bytes());
                // SAFETY: the buffer and address outlive the call.
                let n = unsafe {
                    libc::sendto(
                        fd,
                        pkt.as_ptr().cast(),
                        pkt.len(),
                        0,
                        (&sin as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                };
                assert_eq!(n, pkt.len() as isize, "{}", std::io::Error::last_os_error());
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let elapsed = t0.elapsed();
        // SAFETY: our socket.
        unsafe { libc::close(fd) };
        FloodResult { sent, elapsed }
    })
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn ns_read(netns: &str, path: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", path])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packets the interface `dev` in `netns` has sent.
fn tx_packets(netns: &str, dev: &str) -> u64 {
    ns_read(
        netns,
        &format!("/sys/class/net/{dev}/statistics/tx_packets"),
    )
    .trim()
    .parse()
    .unwrap()
}

/// A field of the Udp: lines of /proc/net/snmp in `netns`.
fn udp_stat(netns: &str, field: &str) -> u64 {
    let s = ns_read(netns, "/proc/net/snmp");
    let rows: Vec<Vec<&str>> = s
        .lines()
        .filter(|l| l.starts_with("Udp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let i = rows[0].iter().position(|f| *f == field).unwrap();
    rows[1][i].parse().unwrap()
}

/// A number from the daemon's report (`name: n`).
fn report_num(report: &str, name: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in report:\n{report}"))
}

/// The seconds of the day of a `-d` log line's stamp (`HHMMSS.uuuuuu `).
fn stamp(line: &str) -> f64 {
    let s = line.split_whitespace().next().unwrap();
    let (hms, frac) = s.split_once('.').unwrap();
    let n: u32 = hms.parse().unwrap();
    f64::from(n / 10000 * 3600 + n / 100 % 100 * 60 + n % 100) + frac.parse::<f64>().unwrap() / 1e6
}

/// The legitimate peer, started by [`Legit::start`] and done when [`Legit::done`].
enum Legit {
    Ours(Daemon),
    Charon(Charon),
}

impl Legit {
    fn start(&self) {
        match self {
            Legit::Ours(d) => d.fifo("c tun\n"),
            Legit::Charon(c) => {
                // In the background: swanctl waits for the CHILD_SA, which charon's
                // userspace ESP fails to install on this host (see interop_strongswan).
                let mut swanctl = Command::new("swanctl")
                    .args([
                        "--initiate",
                        "--ike",
                        "v1",
                        "--child",
                        "net",
                        "--timeout",
                        "10",
                    ])
                    .arg("--uri")
                    .arg(format!("unix://{}/charon.vici", c.dir.display()))
                    .env("SWANCTL_DIR", c.dir.join("swanctl"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                // Reaped when it ends (at its --timeout, or when charon goes).
                std::thread::spawn(move || swanctl.wait());
            }
        }
    }

    /// Main Mode and Quick Mode done: our initiator's log says so, or charon has taken
    /// our HASH(2) and goes on to install the CHILD_SA.
    fn done(&self) -> bool {
        match self {
            Legit::Ours(d) => d.log().contains("quick mode done: src:"),
            Legit::Charon(c) => {
                let l = c.log();
                l.contains("IKE_SA v1[1] established")
                    && l.contains("CHILD_SA net{1} state change: CREATED => INSTALLING")
            }
        }
    }

    /// From our initiator's log: message 1 sent to Quick Mode done, by the stamps.
    fn logged_secs(&self) -> Option<f64> {
        let Legit::Ours(d) = self else { return None };
        let log = d.log();
        let find = |what: &str| log.lines().find(|l| l.contains(what)).map(stamp);
        let (a, b) = (
            find("main mode with 192.0.2.2:500 (peer) started as initiator")?,
            find("quick mode done: src:")?,
        );
        Some(if b >= a { b - a } else { b + 86400.0 - a })
    }

    fn log(&self) -> String {
        match self {
            Legit::Ours(d) => d.log(),
            Legit::Charon(c) => c.log(),
        }
    }
}

/// One flood with one legitimate peer. `charon`: the peer is charon (and our responder
/// is 192.0.2.1), else another isakmpd (and our responder is 192.0.2.2).
/// `strict`: the peer must be done in [`LEGIT_MAX`]; else how long it took, if it got
/// through at all, is only reported.
fn run(tag: &str, flood_exchange: &str, with_charon: bool, strict: bool) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let link = Link::new(tag);
    // (responder's namespace, its address, its veth; the peer's namespace, address)
    let (rns, rip, rdev, pns, pip) = if with_charon {
        (
            &link.a,
            "192.0.2.1",
            format!("v{tag}a"),
            &link.b,
            "192.0.2.2",
        )
    } else {
        (
            &link.b,
            "192.0.2.2",
            format!("v{tag}b"),
            &link.a,
            "192.0.2.1",
        )
    };
    // The answers to the flood go to the peer's namespace, which does not forward.
    sh(&format!("ip -n {rns} route add 198.18.0.0/15 via {pip}"));
    sh(&format!(
        "ip netns exec {pns} sysctl -qw net.ipv4.ip_forward=0"
    ));
    let responder = start_in(
        &format!("flood-r-{tag}"),
        &conf(rip, pip, "ID_PROT", true),
        &["+quiet"],
        Some(rns),
    );
    let legit = if with_charon {
        Legit::Charon(Charon::launch(
            Scratch::new(&format!("flood-c-{tag}")),
            &format!(
                "connections {{\n v1 {{\n  version = 1\n  local_addrs = 192.0.2.2\n  remote_addrs = 192.0.2.1\n  \
                 proposals = aes256-sha256-modp2048\n  dpd_delay = 0\n  \
                 local {{\n   auth = psk\n   id = 192.0.2.2\n  }}\n  remote {{\n   auth = psk\n   id = 192.0.2.1\n  }}\n  \
                 children {{\n   net {{\n    mode = tunnel\n    esp_proposals = aes128-sha256\n    \
                 local_ts = 203.0.113.0/24\n    remote_ts = 198.51.100.0/24\n    start_action = none\n   }}\n  }}\n }}\n}}\n\
                 secrets {{\n ike-v1 {{\n  id-1 = 192.0.2.2\n  id-2 = 192.0.2.1\n  secret = \"{PSK}\"\n }}\n}}\n"
            ),
            pns,
            None,
            "",
        ))
    } else {
        Legit::Ours(start_in(
            &format!("flood-i-{tag}"),
            &conf(pip, rip, "ID_PROT", false),
            &[],
            Some(pns),
        ))
    };
    let msg = message1(flood_exchange, rip);

    let rss0 = responder.rss_kb();
    let log0 = responder.log().lines().count();
    let tx0 = tx_packets(rns, &rdev);
    let rcvbuf0 = udp_stat(rns, "RcvbufErrors");
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let flooder = flood(pns, rip.parse().unwrap(), msg, stop.clone());

    // Memory, sampled all along.
    let mut rss_max = rss0;
    let sample = |rss_max: &mut (u64, u64)| {
        let (p, c) = responder.rss_kb();
        *rss_max = (rss_max.0.max(p), rss_max.1.max(c));
    };
    while t0.elapsed() < LEGIT_AFTER {
        sample(&mut rss_max);
        std::thread::sleep(Duration::from_millis(20));
    }
    let half_open_at_start = report_num(&responder.fifo_sync(""), "half-open");
    let s0 = Instant::now();
    legit.start();
    let mut took = None;
    // Waits past LEGIT_MAX only to report how long it did take.
    while s0.elapsed() < LEGIT_WAIT {
        if legit.done() {
            took = Some(s0.elapsed());
            break;
        }
        sample(&mut rss_max);
        std::thread::sleep(Duration::from_millis(5));
    }
    let flood_running_at_done = !flooder.is_finished();
    while !flooder.is_finished() {
        sample(&mut rss_max);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let f = flooder.join().unwrap();
    let flood_secs = f.elapsed.as_secs_f64();
    // The log of the flood: what came while it ran and in the second after.
    std::thread::sleep(Duration::from_secs(1));
    sample(&mut rss_max);
    let tx = tx_packets(rns, &rdev) - tx0;
    let rcvbuf = udp_stat(rns, "RcvbufErrors") - rcvbuf0;
    let log = responder.log();
    // Lines about the legitimate peer (charon's NO_PROPOSAL_CHOSEN after it failed to
    // install its CHILD_SA, say) are not about the flood.
    let new_lines: Vec<&str> = log.lines().skip(log0).collect();
    let flood_lines: Vec<&str> = new_lines
        .iter()
        .copied()
        .filter(|l| !l.contains(pip))
        // The test's own FIFO `r` puts the report into the log (isakmpd's Report>
        // lines): asked for, not caused by the flood.
        .filter(|l| !l.contains(" Report> "))
        .collect();
    let report = responder.fifo_sync("");
    let rss1 = responder.rss_kb();
    let legit_log_secs = legit.logged_secs();

    println!(
        "[{tag}] flood of {flood_exchange} message 1: {} datagrams in {flood_secs:.2} s ({:.0}/s) from 198.18.0.0/15 to {}",
        f.sent,
        f.sent as f64 / flood_secs,
        common::daemon_bin()
    );
    println!(
        "[{tag}] legitimate peer ({}): main + quick mode in {} (log stamps: {}), flood still running: {flood_running_at_done}",
        if with_charon { "charon" } else { "isakmpd" },
        took.map_or("NOT DONE".into(), |d| format!("{} ms", d.as_millis())),
        legit_log_secs.map_or("-".into(), |s| format!("{:.0} ms", s * 1000.0)),
    );
    println!(
        "[{tag}] responder: datagrams-received {} dropped {} answered (veth tx) {tx}, UDP RcvbufErrors {rcvbuf}, \
         half-open {half_open_at_start} (at 2 s), evicted {} expired {}, phase1-done {} phase2-done {}",
        report_num(&report, "datagrams-received"),
        report_num(&report, "datagrams-dropped"),
        report_num(&report, "half-open-evicted"),
        report_num(&report, "half-open-expired"),
        report_num(&report, "phase1-done"),
        report_num(&report, "phase2-done"),
    );
    println!(
        "[{tag}] responder VmRSS kB (parent, child): idle {rss0:?}, max {rss_max:?}, after {rss1:?}"
    );
    println!(
        "[{tag}] responder log lines during the flood: {} ({} about the flood)\n{}",
        new_lines.len(),
        flood_lines.len(),
        new_lines.join("\n")
    );

    // The flood was a flood.
    assert!(
        f.sent as f64 / flood_secs >= 5000.0 && f.sent >= 5000 * FLOOD_SECS,
        "only {} datagrams in {flood_secs:.2} s",
        f.sent
    );
    assert!(
        flood_running_at_done || !strict,
        "the handshake ran during the flood"
    );
    // The responder answered it (one message 2 each, give or take what the socket buffer
    // dropped) and kept state.
    assert!(
        half_open_at_start >= 200,
        "half-open: {half_open_at_start}\n{report}"
    );
    if strict {
        let took = took.unwrap_or_else(|| {
            panic!(
                "[{tag}] the legitimate peer did not finish within {LEGIT_WAIT:?}\n--- peer ---\n{}\n--- responder ---\n{log}",
                legit.log()
            )
        });
        assert!(
            took < LEGIT_MAX,
            "[{tag}] main + quick mode took {took:?} under the flood\n--- peer ---\n{}",
            legit.log()
        );
        assert!(
            report_num(&report, "phase1-done") >= 1,
            "the responder counted the legitimate phase 1\n{report}"
        );
    } else if took.is_none() {
        println!(
            "[{tag}] the legitimate peer did not get through:\n--- peer ---\n{}",
            legit.log()
        );
    }
    for (what, idle, max) in [("parent", rss0.0, rss_max.0), ("child", rss0.1, rss_max.1)] {
        assert!(
            max <= idle + RSS_GROWTH_KB && max <= RSS_BOUND_KB,
            "[{tag}] {what} VmRSS {idle} -> {max} kB"
        );
    }
    let allowed = flood_secs.ceil() as usize + 1;
    assert!(
        flood_lines.len() <= allowed,
        "[{tag}] {} log lines in {flood_secs:.1} s of flood:\n{}",
        flood_lines.len(),
        flood_lines.join("\n")
    );
    assert!(
        !log.contains("panicked") && responder.alive(),
        "responder died\n{log}"
    );
}

#[test]
fn main_mode_flood_isakmpd_peer_gets_through() {
    run("fm", "ID_PROT", false, true);
}

#[test]
fn main_mode_flood_charon_peer_gets_through() {
    run("fc", "ID_PROT", true, true);
}

// Aggressive Mode message 1 carries KE: the responder makes a DH key pair and computes
// g^xy for each one it answers, 0.6 ms of CPU for MODP2048 in the bench. Unbounded, it
// answered only some 750-1,300 of the 5,500 a second, the socket's receive buffer dropped
// the rest (UDP RcvbufErrors 25,000-28,500 of 33,000), the legitimate peer's message 1
// among them, and the peer got through only on its retransmission (4-7 s) if at all.
// Now the flood's sources, which only [Phase 1] Default matches, get that work at most
// Aggressive-default-rate (100) times a second and the rest are dropped for some
// microseconds each; the legitimate peer has its own [Phase 1] line. Measured: 623
// answers in 6 s, RcvbufErrors 0, the peer done in 11-36 ms.

#[test]
fn aggressive_mode_flood_isakmpd_peer_gets_through() {
    run("am", "AGGRESSIVE", false, true);
}

#[test]
fn aggressive_mode_flood_charon_peer_gets_through() {
    run("ac", "AGGRESSIVE", true, true);
}
