//! Load generator: our sans-IO engine as the *initiator* of many Main Mode + Quick Mode
//! negotiations (PSK, AES-128 / SHA2-256, MODP2048 or ECP256) over a real UDP socket,
//! from many source addresses in 198.18.0.0/15 towards one responder (our daemon,
//! strongSwan's charon, ...), with a bounded number in flight at a time.
//!
//! Run as root in a network namespace where 198.18.0.0/15 is local (AnyIP:
//! `ip route add local 198.18.0.0/15 dev lo`) and the responder is reachable;
//! `scripts/load-bench.sh` sets that up and runs both responders side by side:
//!
//! ```text
//! cargo bench --bench load -- --target 192.0.2.1 --count 2000 --concurrency 16 \
//!     --group ecp256 --responder-pid 1234
//! ```
//!
//! Without `--target` (as under a plain `cargo bench`), or when not root, it prints its
//! usage and exits 0: nothing is sent. Everything is bounded: `--count` handshakes at
//! most, `--max-time` seconds of wall time at most (default 60).
//!
//! One ISAKMP peer section and one IPsec connection per handshake, spread over engines
//! ("shards") of at most `--shard` connections each, because the configuration lookups
//! are linear and 10,000 peers in one configuration would cost seconds per reload. All
//! shards share one socket bound to 0.0.0.0:`--port`; a datagram goes to the shard that
//! owns its destination address, and each transmit leaves from the address the engine
//! asks for (IP_PKTINFO). The engine installs nothing (`no_kernel`) and announces no
//! NAT traversal (`no_nat_t`: there is no socket on port 4500).
//!
//! Reported: phase 2 completions per second, failures, retransmits (datagrams the engines
//! sent again byte for byte), duplicates received (the responder's retransmits), peak
//! concurrent tunnels (IPsec SAs held by the generator), and, with `--responder-pid`,
//! the responder's CPU (utime + stime of the process and its descendants, from
//! /proc/<pid>/stat) per completed handshake and its memory (VmRSS and Pss, from
//! /proc/<pid>/status and /proc/<pid>/smaps_rollup). The last line of output is
//! `LOADBENCH key=value ...` for scripts.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isakmpd::conf::Conf;
use isakmpd::ike::{Engine, EngineConfig, Request};
use isakmpd::sys;
use isakmpd::timer::Time;

const USAGE: &str = "\
usage: cargo bench --bench load -- --target ADDR [options]   (as root)
  --target ADDR          responder (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 only)
  --count N              handshakes (default 2000, at most 200000)
  --concurrency N        negotiations in flight at a time (default 16)
  --group G              modp2048 | ecp256 (default modp2048)
  --sources N            source addresses, from --source-base (default: --count)
  --source-base A        first source address (default 198.18.0.1; 198.18.0.0/15 only)
  --port P               our and the responder's IKE port (default 500)
  --psk S                pre-shared key (default load-bench-psk)
  --max-time S           wall time limit for the negotiations, seconds (default 60)
  --hs-timeout S         one negotiation's limit, seconds (default 30)
  --responder-pid PID    measure the CPU and memory of PID and its descendants
  --label NAME           responder name for the LOADBENCH line (default responder)
  --linger S             after the last handshake, seconds to stay and answer (default 1)
  --no-teardown          leave without sending DELETEs (default: delete every SA)
  --delete-rate N        DELETE datagrams per second when leaving (default 2000)
  --shard N              connections per engine (default 1024)
  --verbose              print the engines' warnings (else only the first 10)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    Modp2048,
    Ecp256,
}

impl Group {
    fn transform(self) -> &'static str {
        match self {
            Group::Modp2048 => "AES-128-SHA2-256-GRP14",
            Group::Ecp256 => "AES-128-SHA2-256-GRP19",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Group::Modp2048 => "MODP2048",
            Group::Ecp256 => "ECP256",
        }
    }
}

struct Opts {
    target: Option<Ipv4Addr>,
    count: usize,
    concurrency: usize,
    group: Group,
    sources: Option<usize>,
    source_base: Ipv4Addr,
    port: u16,
    psk: String,
    max_time: Duration,
    hs_timeout: Duration,
    responder_pid: Option<i32>,
    label: String,
    linger: Duration,
    teardown: bool,
    delete_rate: usize,
    shard: usize,
    verbose: bool,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        target: None,
        count: 2000,
        concurrency: 16,
        group: Group::Modp2048,
        sources: None,
        source_base: Ipv4Addr::new(198, 18, 0, 1),
        port: 500,
        psk: "load-bench-psk".into(),
        max_time: Duration::from_secs(60),
        hs_timeout: Duration::from_secs(30),
        responder_pid: None,
        label: "responder".into(),
        linger: Duration::from_secs(1),
        teardown: true,
        delete_rate: 2000,
        shard: 1024,
        verbose: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |what: &str| args.next().ok_or(format!("{what} needs a value"));
        fn num<T: std::str::FromStr>(s: String, what: &str) -> Result<T, String> {
            s.parse().map_err(|_| format!("{what}: bad number {s}"))
        }
        match a.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--target" => o.target = Some(num(val(&a)?, &a)?),
            "--count" => o.count = num(val(&a)?, &a)?,
            "--concurrency" => o.concurrency = num(val(&a)?, &a)?,
            "--group" => {
                o.group = match val(&a)?.to_ascii_lowercase().as_str() {
                    "modp2048" | "grp14" | "14" => Group::Modp2048,
                    "ecp256" | "grp19" | "19" => Group::Ecp256,
                    g => return Err(format!("unknown group {g}")),
                }
            }
            "--sources" => o.sources = Some(num(val(&a)?, &a)?),
            "--source-base" => o.source_base = num(val(&a)?, &a)?,
            "--port" => o.port = num(val(&a)?, &a)?,
            "--psk" => o.psk = val(&a)?,
            "--max-time" => o.max_time = Duration::from_secs_f64(num(val(&a)?, &a)?),
            "--hs-timeout" => o.hs_timeout = Duration::from_secs_f64(num(val(&a)?, &a)?),
            "--responder-pid" => o.responder_pid = Some(num(val(&a)?, &a)?),
            "--label" => o.label = val(&a)?,
            "--linger" => o.linger = Duration::from_secs_f64(num(val(&a)?, &a)?),
            "--no-teardown" => o.teardown = false,
            "--delete-rate" => o.delete_rate = num(val(&a)?, &a)?,
            "--shard" => o.shard = num(val(&a)?, &a)?,
            "--verbose" => o.verbose = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => {} // a bench name filter from `cargo bench NAME`
        }
    }
    if o.count == 0 || o.count > 200_000 {
        return Err("--count must be 1..=200000".into());
    }
    if o.concurrency == 0 || o.concurrency > 4096 {
        return Err("--concurrency must be 1..=4096".into());
    }
    if o.shard < 16 {
        return Err("--shard must be at least 16".into());
    }
    if o.max_time > Duration::from_secs(3600) || o.linger > Duration::from_secs(60) {
        return Err("--max-time is at most 3600 s, --linger at most 60 s".into());
    }
    if let Some(t) = o.target {
        let [a, b, c, _] = t.octets();
        let doc = matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113));
        if !doc {
            return Err(format!(
                "--target {t}: only documentation addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)"
            ));
        }
    }
    let n = o.sources.unwrap_or(o.count);
    if n == 0 {
        return Err("--sources must be at least 1".into());
    }
    let first = u32::from(o.source_base);
    let last = first as u64 + n as u64 - 1;
    let net = u32::from(Ipv4Addr::new(198, 18, 0, 0)) as u64;
    if (first as u64) < net || last >= net + (1 << 17) {
        return Err(format!(
            "sources {}..+{n} leave 198.18.0.0/15",
            o.source_base
        ));
    }
    Ok(o)
}

/// Counts the engines' warnings (a full table, a refused proposal) and prints the first
/// ones, or all of them with --verbose.
struct Warn {
    verbose: std::sync::atomic::AtomicBool,
}

static WARNINGS: AtomicU64 = AtomicU64::new(0);
static LOGGER: Warn = Warn {
    verbose: std::sync::atomic::AtomicBool::new(false),
};

impl log::Log for Warn {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let n = WARNINGS.fetch_add(1, Ordering::Relaxed);
            if n < 10 || self.verbose.load(Ordering::Relaxed) {
                eprintln!("generator engine: {}", r.args());
            }
        }
    }
    fn flush(&self) {}
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Pending,
    Flying(Instant),
    Done,
    Failed,
}

/// One engine and the source addresses it owns.
struct Shard {
    engine: Engine,
    /// Handshakes in flight by source address index.
    flying: HashMap<usize, VecDeque<usize>>,
    /// The engine's next deadline, None once a call into the engine may have changed
    /// it: `poll_timeout` walks the timer wheel, which costs in proportion to the
    /// timers armed (see LOADBENCH-RESULTS.md), so it is asked only when needed.
    deadline: Option<Option<Time>>,
}

impl Shard {
    fn next_deadline(&mut self) -> Option<Time> {
        *self
            .deadline
            .get_or_insert_with(|| self.engine.poll_timeout())
    }
}

fn conn_name(i: usize) -> String {
    format!("c{i}")
}

/// The configuration of one shard: handshakes `ids`, handshake i from `addr(i)`.
fn shard_conf(o: &Opts, ids: &[usize], addr: impl Fn(usize) -> Ipv4Addr) -> Conf {
    let target = o.target.expect("target");
    let room = ids.len() + 16;
    let mut t = String::with_capacity(ids.len() * 200 + 512);
    let _ = write!(
        t,
        "[General]\nMax-exchanges={}\nMax-phase1-SAs={room}\nMax-phase2-SAs={room}\n\
         Retransmits=3\nExchange-max-time={}\n\
         [mm]\nEXCHANGE_TYPE=ID_PROT\nTransforms={}\n\
         [qm]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-AES-128-SHA2-256-SUITE\n[Phase 2]\nConnections=",
        2 * room,
        o.hs_timeout.as_secs().max(1),
        o.group.transform()
    );
    // Listed as active connections would start all at once at the first
    // `start_connections`, which we never call: `Connect` starts them one by one.
    for (k, &i) in ids.iter().enumerate() {
        if k > 0 {
            t.push(',');
        }
        t.push_str(&conn_name(i));
    }
    t.push('\n');
    for &i in ids {
        let _ = write!(
            t,
            "[p{i}]\nPhase=1\nAddress={target}\nLocal-address={}\nPort={}\nConfiguration=mm\nAuthentication={}\n\
             [c{i}]\nPhase=2\nISAKMP-peer=p{i}\nConfiguration=qm\n",
            addr(i),
            o.port,
            o.psk
        );
    }
    let parsed = Conf::parse(&t).expect("generated configuration parses");
    parsed.conf
}

/// FNV-1a, to recognise a datagram sent or received again byte for byte.
fn fnv(d: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in d {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The last few datagram hashes of one address and direction.
#[derive(Clone, Copy, Default)]
struct Recent {
    h: [u64; 4],
    next: usize,
}

impl Recent {
    /// True if `h` was seen; remembers it.
    fn seen(&mut self, h: u64) -> bool {
        if self.h.contains(&h) {
            return true;
        }
        self.h[self.next % 4] = h;
        self.next += 1;
        false
    }
}

/// A process and its descendants (found once: isakmpd forks its unprivileged child
/// at startup, charon is one process).
fn proc_tree(root: i32) -> Vec<i32> {
    let mut parent: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Some(f) = stat_fields(pid) {
                if let Some(pp) = f.get(1).and_then(|s| s.parse::<i32>().ok()) {
                    parent.push((pid, pp));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut k = 0;
    while k < tree.len() {
        let p = tree[k];
        tree.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        k += 1;
    }
    tree
}

/// The fields of /proc/<pid>/stat after the command name: [0] is the state, [1] the
/// parent, [11] utime, [12] stime.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU milliseconds (user + system) of `pids`.
fn cpu_ms(pids: &[i32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut ticks = 0u64;
    for &p in pids {
        if let Some(f) = stat_fields(p) {
            let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            ticks += n(11) + n(12);
        }
    }
    ticks as f64 * 1000.0 / hz
}

/// (VmRSS, Pss) of `pids` together, in kB.
fn mem_kb(pids: &[i32]) -> (u64, u64) {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (mut rss, mut pss) = (0, 0);
    for &p in pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            rss += field(&s, "VmRSS:");
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            pss += field(&s, "Pss:");
        }
    }
    (rss, pss)
}

/// Our own CPU milliseconds.
fn self_cpu_ms() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[derive(Default)]
struct Counts {
    started: usize,
    done: usize,
    failed: usize,
    sent: u64,
    send_errors: u64,
    retransmits: u64,
    received: u64,
    dup_received: u64,
    peak_tunnels: usize,
    /// Phase 1 SAs (charon deletes each CHILD_SA it cannot install, not the IKE_SA).
    peak_p1: usize,
    peak_flying: usize,
    first_done: Option<Instant>,
    last_done: Option<Instant>,
    /// Handshake latency, ms, of the completed ones.
    latency: Vec<f64>,
}

struct Gen<'a> {
    o: &'a Opts,
    shards: Vec<Shard>,
    states: Vec<St>,
    sock: UdpSocket,
    base: u32,
    sources: usize,
    buf: Vec<u8>,
    tx: Vec<Recent>,
    rx: Vec<Recent>,
    c: Counts,
    flying: usize,
    t0: Instant,
}

impl Gen<'_> {
    fn now(&self) -> Time {
        Time(self.t0.elapsed().as_millis() as u64)
    }

    fn addr_index(&self, ip: IpAddr) -> Option<usize> {
        let IpAddr::V4(v4) = ip else { return None };
        let k = u32::from(v4).checked_sub(self.base)? as usize;
        (k < self.sources).then_some(k)
    }

    fn finish(&mut self, shard: usize, a: usize, ok: bool) {
        let Some(q) = self.shards[shard].flying.get_mut(&a) else {
            return;
        };
        let Some(i) = q.pop_front() else { return };
        if q.is_empty() {
            self.shards[shard].flying.remove(&a);
        }
        self.settle(i, ok);
    }

    fn settle(&mut self, i: usize, ok: bool) {
        if let St::Flying(t) = self.states[i] {
            self.flying -= 1;
            if ok {
                let now = Instant::now();
                self.states[i] = St::Done;
                self.c.done += 1;
                self.c.first_done.get_or_insert(now);
                self.c.last_done = Some(now);
                self.c.latency.push(t.elapsed().as_secs_f64() * 1000.0);
            } else {
                self.states[i] = St::Failed;
                self.c.failed += 1;
            }
        }
    }

    fn flush(&mut self) {
        let fd = self.sock.as_raw_fd();
        for s in 0..self.shards.len() {
            while let Some(t) = self.shards[s].engine.poll_transmit(&mut self.buf) {
                let data = &self.buf[..t.len];
                let Some(local) = t.local else {
                    self.c.send_errors += 1;
                    continue;
                };
                if let Some(a) = self.addr_index(local.ip()) {
                    if self.tx[a].seen(fnv(data)) {
                        self.c.retransmits += 1;
                    }
                }
                // Never anywhere but the responder.
                if Some(t.remote.ip()) != self.o.target.map(IpAddr::V4) {
                    self.c.send_errors += 1;
                    continue;
                }
                match sys::sendmsg_from(fd, data, t.remote, local.ip(), 0) {
                    Ok(_) => self.c.sent += 1,
                    Err(e) => {
                        if self.c.send_errors < 5 {
                            eprintln!("send {} -> {}: {e}", local.ip(), t.remote);
                        }
                        self.c.send_errors += 1;
                    }
                }
            }
        }
    }

    fn receive(&mut self) {
        let fd = self.sock.as_raw_fd();
        let mut rbuf = vec![0u8; 65535];
        for _ in 0..4096 {
            let r = match sys::recvmsg_pktinfo(fd, &mut rbuf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            self.c.received += 1;
            let Some((dst, _)) = r.dst else { continue };
            let Some(a) = self.addr_index(dst) else {
                continue;
            };
            let data = &rbuf[..r.len];
            if self.rx[a].seen(fnv(data)) {
                self.c.dup_received += 1;
            }
            let s = a / self.o.shard;
            let now = self.now();
            let e = &mut self.shards[s].engine;
            let before = e.stats();
            e.handle_datagram(now, SocketAddr::new(dst, self.o.port), r.from, data);
            self.shards[s].deadline = None;
            let e = &self.shards[s].engine;
            let after = e.stats();
            for _ in before.phase2_done..after.phase2_done {
                self.finish(s, a, true);
            }
            for _ in before.failed..after.failed {
                self.finish(s, a, false);
            }
        }
    }

    /// In-flight handshakes of shard `s` with no exchange left: done if their SA is there
    /// (a completion we did not see), else failed; and those past --hs-timeout.
    fn sweep(&mut self, s: usize) {
        let names: std::collections::HashSet<String> = self.shards[s]
            .engine
            .exchanges()
            .filter_map(|x| x.connection.clone())
            .collect();
        let mut gone = Vec::new();
        for (&a, q) in &self.shards[s].flying {
            for &i in q {
                let late =
                    matches!(self.states[i], St::Flying(t) if t.elapsed() > self.o.hs_timeout);
                if late || !names.contains(&conn_name(i)) {
                    gone.push((a, i));
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        let up: std::collections::HashSet<String> = self.shards[s]
            .engine
            .ipsec_sas()
            .filter(|x| x.initiator)
            .map(|x| x.name.clone())
            .collect();
        for (a, i) in gone {
            if let Some(q) = self.shards[s].flying.get_mut(&a) {
                q.retain(|&j| j != i);
                if q.is_empty() {
                    self.shards[s].flying.remove(&a);
                }
            }
            self.settle(i, up.contains(&conn_name(i)));
        }
    }

    fn timers(&mut self, force_sweep: bool) {
        let now = self.now();
        for s in 0..self.shards.len() {
            let due = self.shards[s].next_deadline().is_some_and(|t| t <= now);
            let e = &mut self.shards[s].engine;
            let before = e.stats().failed;
            if due {
                e.handle_timeout(now);
                self.shards[s].deadline = None;
            }
            let e = &self.shards[s].engine;
            if force_sweep || e.stats().failed != before {
                self.sweep(s);
            }
        }
    }

    fn wait(&mut self, max: Duration) {
        let now = self.now();
        let mut ms = max.as_millis() as u64;
        for s in &mut self.shards {
            if let Some(t) = s.next_deadline() {
                ms = ms.min(now.until(t));
            }
        }
        let mut pfd = [libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let _ = sys::poll(&mut pfd, ms as i32);
    }

    fn tunnels(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.engine.ipsec_sas().count())
            .sum()
    }

    fn phase1_sas(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.engine.isakmp_sas().count())
            .sum()
    }
}

fn main() {
    // `cargo test --all-targets` runs benches as tests with libtest's flags
    // (--test-threads, --show-output, --bench): without --target there is nothing to do.
    if !std::env::args().any(|a| a == "--target" || a.starts_with("--target=")) {
        println!("load: no --target given, nothing to do (see scripts/load-bench.sh)");
        return;
    }
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("load: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let Some(target) = o.target else {
        println!("load: no --target given, nothing to do (see scripts/load-bench.sh)\n{USAGE}");
        return;
    };
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("load: not root, nothing to do (binding the IKE port and sending from 198.18.0.0/15 need root)");
        return;
    }
    LOGGER.verbose.store(o.verbose, Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Warn);
    isakmpd::ike::crypto::init();

    let sources = o.sources.unwrap_or(o.count);
    let base = u32::from(o.source_base);
    let addr = |i: usize| Ipv4Addr::from(base + (i % sources) as u32);

    // The socket: wildcard address, destination of each datagram via IP_PKTINFO, any
    // source address on send (AnyIP route or IP_FREEBIND), big buffers.
    let sock = match UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), o.port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("load: bind 0.0.0.0:{}: {e}", o.port);
            std::process::exit(1);
        }
    };
    sock.set_nonblocking(true).expect("nonblocking");
    let fd = sock.as_raw_fd();
    let _ = sys::setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
    let _ = sys::setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_FREEBIND, 1);
    let _ = sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
    let _ = sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20);

    // The shards.
    let t_conf = Instant::now();
    let nshards = sources.div_ceil(o.shard);
    let mut ids: Vec<Vec<usize>> = vec![Vec::new(); nshards];
    for i in 0..o.count {
        ids[(i % sources) / o.shard].push(i);
    }
    let shards: Vec<Shard> = ids
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| {
            let conf = shard_conf(&o, v, addr);
            let e = Engine::new(
                EngineConfig {
                    no_kernel: true,
                    // No NAT-T vendor IDs or NAT-D: charon with kernel-libipsec fakes a
                    // NAT to get UDP encapsulation, and we have no socket on 4500.
                    no_nat_t: true,
                    port: Some(o.port),
                    ..Default::default()
                },
                &conf,
                Time(0),
                isakmpd::ike::crypto::random_source(None),
            );
            Shard {
                engine: e,
                flying: HashMap::new(),
                deadline: None,
            }
        })
        .collect();
    assert_eq!(shards.len(), nshards, "every shard has connections");
    println!(
        "load: {} handshakes ({} MM+QM PSK AES-128/SHA2-256) from {} sources {}.. to {target}:{}, {} in flight at most, {} engines configured in {:.2} s",
        o.count,
        o.group.name(),
        sources,
        o.source_base,
        o.port,
        o.concurrency,
        nshards,
        t_conf.elapsed().as_secs_f64()
    );

    let tree = o.responder_pid.map(proc_tree).unwrap_or_default();
    if let Some(p) = o.responder_pid {
        if tree.is_empty() || stat_fields(p).is_none() {
            eprintln!("load: responder pid {p} not found; no CPU or memory figures");
        }
    }
    let (rss0, pss0) = mem_kb(&tree);
    let cpu0 = cpu_ms(&tree);
    let self0 = self_cpu_ms();

    let mut g = Gen {
        o: &o,
        shards,
        states: vec![St::Pending; o.count],
        sock,
        base,
        sources,
        buf: vec![0u8; 65535],
        tx: vec![Recent::default(); sources],
        rx: vec![Recent::default(); sources],
        c: Counts::default(),
        flying: 0,
        t0: Instant::now(),
    };
    let deadline = g.t0 + o.max_time;
    let mut next = 0usize;
    let mut last_sample = Instant::now();
    let mut last_print = Instant::now();
    let (mut peak_rss, mut peak_pss) = (rss0, pss0);
    let mut cpu_end = cpu0;
    let mut self_end = self0;
    let (mut cpu_at_print, mut done_at_print) = (cpu0, 0usize);
    loop {
        let now_i = Instant::now();
        if now_i >= deadline {
            break;
        }
        // Start negotiations as slots free up.
        while g.flying < o.concurrency && next < o.count {
            let i = next;
            next += 1;
            let a = i % sources;
            let s = a / o.shard;
            let now = g.now();
            let r = g.shards[s]
                .engine
                .handle_command(now, Request::Connect(conn_name(i)));
            g.shards[s].deadline = None;
            match r {
                Ok(_) => {
                    g.states[i] = St::Flying(Instant::now());
                    g.flying += 1;
                    g.c.started += 1;
                    g.shards[s].flying.entry(a).or_default().push_back(i);
                }
                Err(e) => {
                    if g.c.failed < 5 {
                        eprintln!("load: connect c{i}: {e}");
                    }
                    g.states[i] = St::Failed;
                    g.c.failed += 1;
                }
            }
            g.c.peak_flying = g.c.peak_flying.max(g.flying);
        }
        g.flush();
        if next >= o.count && g.flying == 0 {
            break;
        }
        g.wait(Duration::from_millis(20));
        g.receive();
        let sweep = last_sample.elapsed() >= Duration::from_millis(250);
        g.timers(sweep);
        g.flush();
        if sweep {
            last_sample = Instant::now();
            g.c.peak_tunnels = g.c.peak_tunnels.max(g.tunnels());
            g.c.peak_p1 = g.c.peak_p1.max(g.phase1_sas());
            let (r, p) = mem_kb(&tree);
            peak_rss = peak_rss.max(r);
            peak_pss = peak_pss.max(p);
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            // The responder's CPU per handshake over the last interval: it should not
            // grow with the number of SAs it holds.
            let cpu = cpu_ms(&tree);
            let interval = if tree.is_empty() || g.c.done == done_at_print {
                String::new()
            } else {
                format!(
                    ", responder {:.3} ms/handshake in the last 5 s",
                    (cpu - cpu_at_print) / (g.c.done - done_at_print) as f64
                )
            };
            println!(
                "load: {:5.1} s: {} started, {} done, {} failed, {} in flight, {} retransmits, {} tunnels{interval}",
                g.t0.elapsed().as_secs_f64(),
                g.c.started,
                g.c.done,
                g.c.failed,
                g.flying,
                g.c.retransmits,
                g.tunnels()
            );
            cpu_at_print = cpu;
            done_at_print = g.c.done;
        }
        if g.c.done + g.c.failed == o.count {
            break;
        }
    }
    let timed_out = g.flying + (o.count - next);
    if g.c.done + g.c.failed > 0 {
        cpu_end = cpu_ms(&tree);
        self_end = self_cpu_ms();
    }
    let wall_end = g.t0.elapsed();
    g.c.peak_tunnels = g.c.peak_tunnels.max(g.tunnels());
    g.c.peak_p1 = g.c.peak_p1.max(g.phase1_sas());
    let tunnels_end = g.tunnels();
    let (rss_end, pss_end) = mem_kb(&tree);
    peak_rss = peak_rss.max(rss_end);
    peak_pss = peak_pss.max(pss_end);

    // Leave: DELETE every SA (or not), then answer for --linger.
    let mut deletes = 0u64;
    if o.teardown {
        let now = g.now();
        for s in &mut g.shards {
            s.engine.shutdown(now);
            s.deadline = None;
        }
        let sent0 = g.c.sent;
        // Paced at --delete-rate: the responder's socket buffer is finite, and a DELETE
        // lost there leaves an SA behind that is not the responder's fault.
        let fd = g.sock.as_raw_fd();
        let per_tick = (o.delete_rate / 100).max(1);
        let stop = Instant::now() + Duration::from_secs(30);
        let mut s = 0;
        while s < g.shards.len() && Instant::now() < stop {
            let tick = Instant::now();
            let mut k = 0;
            while k < per_tick {
                let Some(t) = g.shards[s].engine.poll_transmit(&mut g.buf) else {
                    s += 1;
                    if s == g.shards.len() {
                        break;
                    }
                    continue;
                };
                if let Some(local) = t.local {
                    if Some(t.remote.ip()) == o.target.map(IpAddr::V4)
                        && sys::sendmsg_from(fd, &g.buf[..t.len], t.remote, local.ip(), 0).is_ok()
                    {
                        g.c.sent += 1;
                    }
                }
                k += 1;
            }
            g.receive();
            std::thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
        }
        deletes = g.c.sent - sent0;
    }
    let linger_end = Instant::now() + o.linger;
    while Instant::now() < linger_end {
        g.wait(Duration::from_millis(20));
        g.receive();
        g.timers(false);
        g.flush();
    }
    let (rss_after, pss_after) = mem_kb(&tree);

    // Report.
    let n_ok = g.c.done;
    let span = match (g.c.first_done, g.c.last_done) {
        (Some(_), Some(l)) => l.duration_since(g.t0).as_secs_f64(),
        _ => wall_end.as_secs_f64(),
    };
    let rate = if span > 0.0 { n_ok as f64 / span } else { 0.0 };
    let per = |ms: f64| {
        if n_ok > 0 {
            ms / n_ok as f64
        } else {
            f64::NAN
        }
    };
    let resp_ms = per(cpu_end - cpu0);
    let gen_ms = per(self_end - self0);
    let mut lat = g.c.latency.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() - 1) as f64 * q) as usize]
        }
    };
    let s: Vec<_> = g.shards.iter().map(|s| s.engine.stats()).collect();
    let p1: u64 = s.iter().map(|x| x.phase1_done).sum();
    let dropped: u64 = s.iter().map(|x| x.datagrams_dropped).sum();
    println!("load: {} ({})", o.label, o.group.name());
    println!(
        "  phase 2 done {n_ok} of {} ({} phase 1), failed {}, unfinished at the limit {timed_out}, in {:.2} s: {rate:.1} handshakes/s",
        o.count,
        p1,
        g.c.failed,
        span
    );
    println!(
        "  latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  datagrams sent {} (retransmits {}, send errors {}), received {} (duplicates {}), dropped by the generator {dropped}, warnings {}",
        g.c.sent,
        g.c.retransmits,
        g.c.send_errors,
        g.c.received,
        g.c.dup_received,
        WARNINGS.load(Ordering::Relaxed)
    );
    println!(
        "  peak tunnels {} (at the end {tunnels_end}), peak phase 1 SAs {}, peak in flight {}, DELETEs sent {deletes}",
        g.c.peak_tunnels, g.c.peak_p1, g.c.peak_flying
    );
    println!("  generator CPU {gen_ms:.3} ms per handshake");
    // What each tunnel costs the responder: the growth of its resident memory from
    // start to peak over the most peers it held at once (phase 1 SAs: a responder
    // without ESP, as charon here, may keep those and drop the phase 2 ones).
    let per_tunnel_b = (peak_rss.saturating_sub(rss0) * 1024)
        .checked_div(g.c.peak_tunnels.max(g.c.peak_p1) as u64)
        .unwrap_or(0);
    if !tree.is_empty() {
        println!(
            "  responder pids {tree:?}: CPU {resp_ms:.3} ms per handshake; VmRSS kB start {rss0} peak {peak_rss} end {rss_end} after {rss_after} ({per_tunnel_b} B per tunnel); Pss kB start {pss0} peak {peak_pss} end {pss_end} after {pss_after}"
        );
    }
    println!(
        "LOADBENCH label={} group={} count={} done={n_ok} failed={} unfinished={timed_out} secs={span:.3} rate={rate:.1} \
         retransmits={} dup_received={} peak_tunnels={} peak_p1={} tunnels_end={tunnels_end} resp_cpu_ms={resp_ms:.3} gen_cpu_ms={gen_ms:.3} \
         rss0_kb={rss0} rss_peak_kb={peak_rss} rss_end_kb={rss_end} rss_after_kb={rss_after} per_tunnel_b={per_tunnel_b} pss0_kb={pss0} pss_peak_kb={peak_pss} pss_end_kb={pss_end} \
         lat_p50_ms={:.1} lat_p99_ms={:.1} deletes={deletes} send_errors={}",
        o.label,
        o.group.name(),
        o.count,
        g.c.failed,
        g.c.retransmits,
        g.c.dup_received,
        g.c.peak_tunnels,
        g.c.peak_p1,
        pct(0.5),
        pct(0.99),
        g.c.send_errors
    );
}
