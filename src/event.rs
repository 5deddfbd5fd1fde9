//! The unprivileged child's event loop: one thread, one poll(2).
//!
//! Descriptors: the signal self-pipe, the monitor socket (to notice the parent dying), the
//! FIFO, and the UDP sockets (the kernel socket joins later). This is the only place that
//! reads the clock: each iteration takes one `now` and hands it to every handler. When no
//! timer is armed, poll waits forever, so an idle daemon uses no CPU at all.
//!
//! Order per wake-up (STYLE §10.5): signals, monitor, FIFO, sockets (bounded reads), timers,
//! then the engine's outputs.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use crate::args::{DebugSelector, Options, DEFAULT_PCAP, RESULT_FILE};
use crate::conf::{Conf, ConfError, EditError};
use crate::fifo::{Command, ConfCmd, DebugCmd, Fifo, Line};
use crate::ike::{Engine, EngineConfig, Request};
use crate::log::{self as ilog, DebugClass};
use crate::monitor::{Client, WriteKind};
use crate::pcap::Capture;
use crate::signal::SignalPipe;
use crate::sys;
use crate::timer::Time;
use crate::udp::{Transport, MAX_DATAGRAM};

/// FIFO reads per wake-up (4 KiB each).
const FIFO_READS_PER_WAKE: usize = 16;
/// Garbled-line warnings per second before they are summarised.
const WARN_BURST: u32 = 10;
/// How long a shutdown may wait for the engine's last messages.
const SHUTDOWN_GRACE_MS: u64 = 2000;

/// Counts of what the daemon did, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub fifo_commands: u64,
    pub fifo_errors: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    pub reports: u64,
}

/// Limits repeated warnings (garbled FIFO lines) to a burst per second.
struct RateLimit {
    window: u64,
    count: u32,
    suppressed: u64,
}

impl RateLimit {
    fn allow(&mut self, now: Time) -> bool {
        let w = now.millis() / 1000;
        if w != self.window {
            if self.suppressed > 0 {
                log::warn!("{} further garbled FIFO lines not logged", self.suppressed);
            }
            self.window = w;
            self.count = 0;
            self.suppressed = 0;
        }
        self.count += 1;
        if self.count <= WARN_BURST {
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

pub struct Daemon {
    opts: Options,
    conf: Conf,
    engine: Engine,
    monitor: Client,
    fifo: Option<Fifo>,
    transports: Vec<Transport>,
    signals: SignalPipe,
    start: Instant,
    capture: Option<Capture>,
    counters: Counters,
    limiter: RateLimit,
    quit: bool,
    /// The configuration changed: check the connections at once.
    reinit: bool,
    /// What talks to the kernel, unless -n.
    kernel: Option<crate::kernel::Kernel>,
    /// The interface chosen at startup (`None` with -n).
    dialect: Option<crate::kernel::Dialect>,
    /// The XFRM ACQUIRE/EXPIRE subscription, unless -n.
    /// The channel to the kernel through the parent (see monitor::Client::kernel_channel).
    kernel_chan: Option<std::os::fd::OwnedFd>,
    buf: Box<[u8; MAX_DATAGRAM]>,
}

impl Daemon {
    pub fn new(
        opts: Options,
        conf: Conf,
        monitor: Client,
        fifo: Option<Fifo>,
        signals: SignalPipe,
    ) -> Daemon {
        let start = Instant::now();
        let dialect = choose_kernel(&conf, opts.no_kernel);
        let engine = Engine::new(
            EngineConfig {
                passive: opts.passive,
                keep_sas_at_exit: opts.passive,
                seed: opts.seed,
                no_kernel: opts.no_kernel,
                no_nat_t: opts.no_nat_t,
                acquire_only: opts.acquire_only,
                port: Some(opts.listen_port),
                nat_t_port: Some(opts.udpencap_port),
                backend: match dialect {
                    None => crate::ike::Backend::Record,
                    Some(crate::kernel::Dialect::Xfrm) => crate::ike::Backend::Xfrm,
                    Some(crate::kernel::Dialect::Pfkey(crate::kernel::pfkey::Platform::Linux)) => {
                        crate::ike::Backend::PfkeyLinux
                    }
                    Some(crate::kernel::Dialect::Pfkey(
                        crate::kernel::pfkey::Platform::OpenBsd,
                    )) => crate::ike::Backend::PfkeyOpenBsd,
                },
            },
            &conf,
            Time(0),
        );
        Daemon {
            opts,
            conf,
            engine,
            monitor,
            fifo,
            transports: Vec::new(),
            signals,
            start,
            capture: None,
            counters: Counters::default(),
            limiter: RateLimit {
                window: 0,
                count: 0,
                suppressed: 0,
            },
            quit: false,
            reinit: false,
            kernel: None,
            dialect,
            kernel_chan: None,
            buf: Box::new([0; MAX_DATAGRAM]),
        }
    }

    fn now(&self) -> Time {
        Time(self.start.elapsed().as_millis() as u64)
    }

    /// Asks the monitor for the listening sockets: each address of [General]:Listen-on (or
    /// the wildcard of each enabled family), on the IKE port and, unless -T, the NAT-T port.
    pub fn open_transports(&mut self) -> Result<(), String> {
        let mut ports = vec![(self.opts.listen_port, false)];
        if !self.opts.no_nat_t && self.opts.udpencap_port != self.opts.listen_port {
            ports.push((self.opts.udpencap_port, true));
        }
        let listen_on = self.conf.get_list("General", "Listen-on");
        let mut addrs: Vec<(IpAddr, bool)> = Vec::new(); // (address, explicitly asked for)
        if listen_on.is_empty() {
            if self.opts.families.inet {
                addrs.push((
                    Ipv4Addr::UNSPECIFIED.into(),
                    self.opts.families.inet && !self.opts.families.inet6,
                ));
            }
            if self.opts.families.inet6 {
                addrs.push((Ipv6Addr::UNSPECIFIED.into(), !self.opts.families.inet));
            }
        } else {
            for a in &listen_on {
                match a.parse::<IpAddr>() {
                    Ok(ip)
                        if (ip.is_ipv4() && self.opts.families.inet)
                            || (ip.is_ipv6() && self.opts.families.inet6) =>
                    {
                        addrs.push((ip, true))
                    }
                    Ok(ip) => {
                        log::warn!("Listen-on {ip}: address family disabled by -4/-6, skipped")
                    }
                    Err(_) => {
                        log::warn!("Listen-on {a}: interface names are not supported yet, skipped")
                    }
                }
            }
        }
        for (ip, required) in addrs {
            for &(port, encap) in &ports {
                let sa = SocketAddr::new(ip, port);
                match self
                    .monitor
                    .bind(sa)
                    .and_then(|fd| Transport::from_fd(fd, encap).map_err(|e| e.to_string()))
                {
                    Ok(t) => {
                        crate::ike_debug!(
                            DebugClass::Transport,
                            10,
                            "listening on udp {}",
                            t.local
                        );
                        self.transports.push(t);
                    }
                    // A host without IPv6 is common; the wildcard v6 socket is optional
                    // unless -6 alone asked for it.
                    Err(e) if !required && ip.is_ipv6() => log::warn!("{e}"),
                    Err(e) => return Err(e),
                }
            }
        }
        if self.transports.is_empty() {
            return Err("no address to listen on".into());
        }
        Ok(())
    }

    /// Runs until shutdown; returns the exit status.
    pub fn run(mut self) -> i32 {
        if let Some(path) = self.opts.pcap.clone() {
            self.start_capture(path);
        }
        self.engine.set_route_lookup(Box::new(route_lookup));
        self.load_credentials();
        if let Some(dialect) = self.dialect {
            log::info!(
                "kernel: {}{}",
                dialect_name(Some(dialect)),
                if self.opts.acquire_only {
                    " (-a: no flows)"
                } else {
                    ""
                }
            );
            self.kernel = Some(crate::kernel::Kernel::new(!self.opts.acquire_only, dialect));
            let pfkey = matches!(dialect, crate::kernel::Dialect::Pfkey(_));
            match self.monitor.kernel_channel(pfkey) {
                Ok(fd) => {
                    use std::os::fd::AsRawFd;
                    sys::set_nonblocking(fd.as_raw_fd());
                    self.kernel_chan = Some(fd);
                }
                Err(e) => {
                    log::error!("kernel: no channel to the kernel, nothing will be installed: {e}")
                }
            }
        }
        self.engine.start_connections(self.now());
        let mut next_check = self.now();
        let mut shutdown_deadline: Option<Time> = None;
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(4 + self.transports.len());
        loop {
            let now = self.now();
            if self.quit && shutdown_deadline.is_none() {
                self.engine.shutdown(now);
                self.flush_transmit();
                shutdown_deadline = Some(now.add_millis(SHUTDOWN_GRACE_MS));
            }
            if let Some(d) = shutdown_deadline {
                let kernel_idle = self.kernel.as_ref().map_or(true, |k| k.idle());
                if (self.engine.is_drained() && kernel_idle) || now >= d {
                    break;
                }
            }
            if std::mem::take(&mut self.reinit) {
                next_check = now;
            }
            // isakmpd's connection checker: bring up configured connections that are down.
            if now >= next_check && shutdown_deadline.is_none() {
                self.engine.start_connections(now);
                let every = self
                    .conf
                    .get_num("General", "Check-interval", 60)
                    .clamp(1, 86400);
                next_check = now.add_secs(every);
                self.flush_transmit();
            }
            let next = [
                self.engine.poll_timeout(),
                self.kernel.as_ref().and_then(|k| k.next_deadline()),
                shutdown_deadline,
                shutdown_deadline.is_none().then_some(next_check),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout: libc::c_int = match next {
                // Round up so that a deadline never wakes us a millisecond early.
                Some(t) => now.until(t).min(i32::MAX as u64) as libc::c_int,
                None => -1,
            };
            pfds.clear();
            let pfd = |fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            pfds.push(pfd(self.signals.fd()));
            pfds.push(pfd(self.monitor.fd()));
            let fifo_idx = match &self.fifo {
                Some(f) if f.open => {
                    pfds.push(pfd(f.fd));
                    Some(pfds.len() - 1)
                }
                _ => None,
            };
            let events_idx = self.kernel_chan.as_ref().map(|f| {
                use std::os::fd::AsRawFd;
                pfds.push(pfd(f.as_raw_fd()));
                pfds.len() - 1
            });
            let first_sock = pfds.len();
            for t in &self.transports {
                pfds.push(pfd(t.fd()));
            }
            if let Err(e) = sys::poll(&mut pfds, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("poll: {e}");
                    return 1;
                }
                continue;
            }
            let now = self.now();
            if pfds[0].revents != 0 {
                let mut sigs = Vec::new();
                self.signals.drain(|s| sigs.push(s));
                for s in sigs {
                    self.handle_signal(now, s);
                }
            }
            if pfds[1].revents != 0 {
                log::error!("privileged process went away, exiting");
                return 1;
            }
            if let Some(i) = fifo_idx {
                if pfds[i].revents != 0 {
                    self.read_fifo(now);
                }
            }
            if events_idx.is_some_and(|i| pfds[i].revents != 0) {
                self.read_kernel(now);
            }
            for (k, t) in self.transports.iter().enumerate() {
                if pfds[first_sock + k].revents != 0 {
                    // Our address is the datagram's own destination (IP_PKTINFO), so the
                    // engine has no routing lookup to do per datagram.
                    let engine = &mut self.engine;
                    t.recv_bounded(&mut self.buf[..], |local, from, data| {
                        engine.handle_datagram(now, local, from, data)
                    });
                }
            }
            if let Some(k) = self.kernel.as_mut() {
                let mut done = Vec::new();
                k.expire(now, &mut done);
                for (ticket, reply) in done {
                    self.engine.kernel_reply(now, ticket, reply);
                }
            }
            self.engine.handle_timeout(now);
            self.flush_transmit();
        }
        self.stop_capture();
        self.monitor.shutdown();
        log::info!("isakmpd: exiting");
        0
    }

    fn flush_transmit(&mut self) {
        // The kernel first: an exchange whose next message announces SAs holds it until
        // the kernel has confirmed them (see ike::sa::Part).
        let now = self.now();
        let mut done = Vec::new();
        loop {
            while let Some(op) = self.engine.poll_kernel() {
                match (self.kernel.as_mut(), self.kernel_chan.as_ref()) {
                    (Some(k), Some(chan)) => {
                        use std::os::fd::AsRawFd;
                        let fd = chan.as_raw_fd();
                        k.submit(now, &op, &mut |b| send_to_parent(fd, b), &mut done);
                    }
                    (Some(_), None) => {
                        log::error!("kernel: no channel, not installed: {:?}", op.req);
                        if op.ticket != 0 {
                            done.push((
                                op.ticket,
                                crate::ike::sa::KernelReply::Failed("no kernel channel".into()),
                            ));
                        }
                    }
                    (None, _) if self.opts.no_kernel => {
                        crate::ike_debug!(
                            DebugClass::Sysdep,
                            10,
                            "kernel (-n, not installed): {:?}",
                            op.req
                        );
                    }
                    (None, _) => log::warn!("kernel: no backend, not installed: {:?}", op.req),
                }
            }
            if done.is_empty() {
                break;
            }
            for (ticket, reply) in std::mem::take(&mut done) {
                self.engine.kernel_reply(now, ticket, reply);
            }
        }
        let mut out = [0u8; MAX_DATAGRAM];
        while let Some(t) = self.engine.poll_transmit(&mut out) {
            // The socket bound to the message's source address, else the wildcard socket
            // of its port and family, else any IKE socket of the family.
            let family = |s: &&Transport| s.local.is_ipv4() == t.remote.is_ipv4();
            let sock = self
                .transports
                .iter()
                .find(|s| Some(s.local) == t.local)
                .or_else(|| {
                    self.transports.iter().filter(family).find(|s| {
                        s.local.ip().is_unspecified()
                            && t.local.map_or(!s.encap, |l| l.port() == s.local.port())
                    })
                })
                .or_else(|| self.transports.iter().filter(family).find(|s| !s.encap));
            match sock {
                Some(s) => {
                    if let Err(e) = s.send(t.local, t.remote, &out[..t.len]) {
                        log::warn!("send to {}: {e}", t.remote);
                    }
                }
                None => log::warn!("no socket to send to {}", t.remote),
            }
        }
        while let Some(c) = self.engine.poll_capture() {
            if let Some(cap) = self.capture.as_mut() {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                if let Err(e) = cap.record(
                    (wall.as_secs() as u32, wall.subsec_micros()),
                    c.src,
                    c.dst,
                    &c.data,
                ) {
                    log::error!("packet capture: {e}");
                }
            }
        }
    }

    fn handle_signal(&mut self, now: Time, sig: libc::c_int) {
        match sig {
            libc::SIGHUP => self.reload(),
            libc::SIGUSR1 => self.write_report(now),
            libc::SIGTERM | libc::SIGINT => {
                log::info!("received signal {sig}, shutting down");
                self.quit = true;
            }
            _ => {}
        }
    }

    fn read_fifo(&mut self, now: Time) {
        let Some(mut fifo) = self.fifo.take() else {
            return;
        };
        let mut lines: Vec<Result<String, &'static str>> = Vec::new();
        fifo.read_lines(FIFO_READS_PER_WAKE, |l| match l {
            Line::Text(t) => lines.push(Ok(t.to_owned())),
            Line::Garbled(g) => lines.push(Err(g)),
        });
        if !fifo.open {
            crate::ike_debug!(DebugClass::Ui, 10, "end of command input");
        }
        self.fifo = Some(fifo);
        for l in lines {
            match l {
                Ok(text) => match crate::fifo::parse_command(&text) {
                    Ok(Some(cmd)) => {
                        self.counters.fifo_commands += 1;
                        crate::ike_debug!(DebugClass::Ui, 30, "command: {}", redact(&text));
                        self.handle_command(now, cmd);
                    }
                    Ok(None) => {}
                    Err(e) => self.garbled(now, &format!("{e}: \"{}\"", printable(&redact(&text)))),
                },
                Err(reason) => self.garbled(now, reason),
            }
        }
    }

    fn garbled(&mut self, now: Time, what: &str) {
        self.counters.fifo_errors += 1;
        if self.limiter.allow(now) {
            log::warn!("ui: ignoring command: {what}");
        }
    }

    pub fn handle_command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Quit => {
                log::info!("ui: shutdown requested");
                self.quit = true;
            }
            Command::Reload => self.reload(),
            Command::Report => self.write_report(now),
            Command::SaReport => {
                let mut out = String::new();
                self.engine.sa_report(now, &mut out);
                self.write_result(&out);
            }
            Command::Debug(DebugCmd::Toggle) => ilog::toggle_debug(),
            Command::Debug(DebugCmd::Set(sel, level)) => apply_debug(sel, level),
            Command::Passive(p) => {
                self.engine.set_passive(p);
                log::info!(
                    "ui: switched to {} mode",
                    if p { "passive" } else { "active" }
                );
            }
            Command::Capture(None) => self.stop_capture(),
            Command::Capture(Some(path)) => {
                self.stop_capture();
                self.start_capture(path.unwrap_or_else(|| DEFAULT_PCAP.to_string()));
            }
            Command::Conf(c) => self.conf_command(c),
            Command::Connect(name) => self.engine_request(now, Request::Connect(name)),
            Command::Teardown { phase, name } => {
                self.engine_request(now, Request::Teardown { phase, name })
            }
            Command::TeardownAll => self.engine_request(now, Request::TeardownAll),
            Command::Delete {
                icookie,
                rcookie,
                msgid,
            } => self.engine_request(
                now,
                Request::Delete {
                    icookie,
                    rcookie,
                    msgid,
                },
            ),
        }
    }

    fn engine_request(&mut self, now: Time, r: Request) {
        match self.engine.handle_command(now, r) {
            Ok(msg) => log::info!("ui: {msg}"),
            Err(msg) => log::warn!("ui: {msg}"),
        }
    }

    fn conf_command(&mut self, c: ConfCmd) {
        let r: Result<(), EditError> = match &c {
            ConfCmd::Get { section, tag } => {
                let v = self.conf.get(section, tag).map(|v| v.into_owned());
                match v {
                    Some(v) => {
                        self.write_result(&format!("{v}\n"));
                        Ok(())
                    }
                    None => {
                        self.write_result("");
                        Err(EditError::NoSuchTag)
                    }
                }
            }
            ConfCmd::Set {
                section,
                tag,
                value,
                force,
            } => self.conf.set(section, tag, value, *force),
            ConfCmd::Add {
                section,
                tag,
                value,
            } => self.conf.add(section, tag, value),
            ConfCmd::Rmv {
                section,
                tag,
                value,
            } => self.conf.rmv(section, tag, value),
            ConfCmd::Rm { section, tag } => self.conf.rm(section, tag),
            ConfCmd::Rms { section } => self.conf.rms(section),
        };
        let what = describe_conf_cmd(&c);
        match r {
            Ok(()) => {
                crate::ike_debug!(DebugClass::Ui, 10, "ui: {what}: done");
                if !matches!(c, ConfCmd::Get { .. }) {
                    self.engine.configure(&self.conf);
                    self.reinit = true;
                }
            }
            Err(e) => log::warn!("ui: {what}: {e}"),
        }
    }

    /// SIGHUP and FIFO `R`: read the file again through the monitor. All or nothing: a file
    /// that does not parse leaves the running configuration (and FIFO edits) in force.
    pub fn reload(&mut self) {
        let path = self.opts.config.clone();
        match self
            .read_config()
            .and_then(|text| Conf::parse(&text).map_err(|e: ConfError| format!("{path}: {e}")))
        {
            Ok(p) => {
                for w in &p.warnings {
                    log::warn!("{path}: {w}");
                }
                self.conf = p.conf;
                self.engine.configure(&self.conf);
                self.load_credentials();
                self.reinit = true;
                self.counters.reloads += 1;
                log::info!("reloaded configuration from {path}");
            }
            Err(e) => {
                self.counters.reload_failures += 1;
                log::error!("reload failed, keeping the running configuration: {e}");
            }
        }
    }

    /// What the kernel said, through the parent: answers resume exchanges, ACQUIREs start
    /// negotiations, EXPIREs rekey or delete; a bounded number of datagrams per wake-up.
    fn read_kernel(&mut self, now: Time) {
        use std::os::fd::AsRawFd;
        let Some(fd) = self.kernel_chan.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let Some(k) = self.kernel.as_mut() else {
            return;
        };
        let mut buf = vec![0u8; 65536];
        let (mut done, mut events) = (Vec::new(), Vec::new());
        for _ in 0..64 {
            let n = match sys::recv(fd, &mut buf, 0) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            k.receive(&buf[..n], &mut done, &mut events);
        }
        for (ticket, reply) in done {
            self.engine.kernel_reply(now, ticket, reply);
        }
        for ev in events {
            match ev {
                crate::kernel::Event::Acquire { flow, peer } => {
                    self.engine.handle_acquire(now, flow, peer)
                }
                crate::kernel::Event::Expire {
                    dst,
                    spi,
                    proto,
                    hard,
                } => self.engine.handle_expire(now, dst, spi, proto, hard),
            }
        }
    }

    /// Reads our private key, our certificates and the CA certificates through the
    /// monitor ([X509-certificates] Private-key, Cert-directory, CA-directory; all under
    /// /etc/isakmpd) and hands them to the engine for RSA_SIG authentication.
    pub fn load_credentials(&mut self) {
        let get = |tag: &str, default: &str| {
            self.conf
                .get("X509-certificates", tag)
                .map_or(default.to_string(), |v| v.trim().to_string())
        };
        let key_path = get("Private-key", "/etc/isakmpd/private/local.key");
        let read = |path: &str| -> Result<Vec<u8>, String> {
            let fd = self.monitor.open_pki(path)?;
            let mut b = Vec::new();
            File::from(fd)
                .read_to_end(&mut b)
                .map_err(|e| format!("{path}: {e}"))?;
            Ok(b)
        };
        let read_dir = |dir: &str| -> Vec<Vec<u8>> {
            let dir = dir.trim_end_matches('/');
            match self.monitor.list_pki(dir) {
                Ok(names) => names
                    .iter()
                    .filter_map(|n| match read(&format!("{dir}/{n}")) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            log::warn!("x509: {e}");
                            None
                        }
                    })
                    .collect(),
                Err(e) => {
                    crate::ike_debug!(DebugClass::Crypto, 10, "x509: {e}");
                    Vec::new()
                }
            }
        };
        let key = match read(&key_path) {
            Ok(k) => Some(k),
            Err(e) => {
                crate::ike_debug!(DebugClass::Crypto, 10, "x509: no private key: {e}");
                None
            }
        };
        let certs = read_dir(&get("Cert-directory", "/etc/isakmpd/certs/"));
        let cas = read_dir(&get("CA-directory", "/etc/isakmpd/ca/"));
        let pubdir = self
            .conf
            .get("General", "Pubkey-directory")
            .map_or("/etc/isakmpd/pubkeys".to_string(), |v| {
                v.trim().trim_end_matches('/').to_string()
            });
        let mut pubkeys = Vec::new();
        for kind in ["ipv4", "ipv6", "fqdn", "ufqdn"] {
            let dir = format!("{pubdir}/{kind}");
            if let Ok(names) = self.monitor.list_pki(&dir) {
                for n in names {
                    match read(&format!("{dir}/{n}")) {
                        Ok(b) => pubkeys.push((kind, n, b)),
                        Err(e) => log::warn!("pubkeys: {e}"),
                    }
                }
            }
        }
        match crate::ike::Credentials::load(key.as_deref(), &certs, &cas) {
            Ok(mut c) => {
                for (kind, n, b) in &pubkeys {
                    if let Err(e) = c.add_pubkey(kind, n, b) {
                        log::warn!("{e}");
                    }
                }
                if !pubkeys.is_empty() {
                    log::info!("pubkeys: {} raw public key(s) of peers", c.pubkeys.len());
                }
                if key.is_some() || !certs.is_empty() || !cas.is_empty() {
                    log::info!(
                        "x509: {} CA certificate(s), our certificate: {}",
                        c.cas.len(),
                        c.cert.as_ref().map_or_else(
                            || "none matching the private key".to_string(),
                            |c| format!("\"{}\"", c.subject())
                        )
                    );
                }
                self.engine.set_credentials(c);
            }
            Err(e) => log::error!("x509: {e}; RSA signature authentication disabled"),
        }
    }

    fn read_config(&self) -> Result<String, String> {
        let fd = self.monitor.open_config()?;
        let mut f = File::from(fd);
        let mut text = String::new();
        f.read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", self.opts.config))?;
        Ok(text)
    }

    fn write_result(&mut self, text: &str) {
        match self.monitor.open_write(WriteKind::Result, RESULT_FILE) {
            Ok(fd) => {
                if let Err(e) = File::from(fd).write_all(text.as_bytes()) {
                    log::error!("{RESULT_FILE}: {e}");
                }
            }
            Err(e) => log::error!("{e}"),
        }
    }

    fn write_report(&mut self, now: Time) {
        let text = self.report(now);
        let path = self.opts.report_file.clone();
        match self.monitor.open_write(WriteKind::Report, &path) {
            Ok(fd) => match File::from(fd).write_all(text.as_bytes()) {
                Ok(()) => {
                    self.counters.reports += 1;
                    log::info!("report written to {path}");
                }
                Err(e) => log::error!("{path}: {e}"),
            },
            Err(e) => log::error!("{e}"),
        }
    }

    /// The report text (SIGUSR1, `r`).
    pub fn report(&self, now: Time) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "isakmpd {} report", env!("CARGO_PKG_VERSION"));
        crate::report::heading(&mut o, "daemon");
        let _ = writeln!(o, "pid: {}", sys::getpid());
        let _ = writeln!(o, "uptime: {} s", now.millis() / 1000);
        let _ = writeln!(
            o,
            "mode: {}",
            if self.engine.passive() {
                "passive"
            } else {
                "active"
            }
        );
        let _ = writeln!(o, "config: {}", self.opts.config);
        let _ = writeln!(o, "kernel: {}", dialect_name(self.dialect));
        let _ = writeln!(
            o,
            "flows: {}",
            if self.opts.acquire_only {
                "manual (-a)"
            } else {
                "automatic"
            }
        );
        let _ = writeln!(
            o,
            "keynote: {}",
            if self.opts.no_keynote {
                "off (-K)"
            } else {
                "on"
            }
        );
        let _ = writeln!(
            o,
            "nat-t: {}",
            if self.opts.no_nat_t {
                "off (-T)".to_string()
            } else {
                format!("port {}", self.opts.udpencap_port)
            }
        );
        let _ = writeln!(
            o,
            "capture: {}",
            self.capture.as_ref().map_or("off", |c| c.path.as_str())
        );
        let _ = writeln!(o, "verbose: {}", if ilog::verbose() { "yes" } else { "no" });
        let levels: Vec<String> = DebugClass::ALL
            .iter()
            .map(|c| format!("{}={}", *c as u8, ilog::debug_level(*c)))
            .collect();
        let _ = writeln!(o, "debug: {}", levels.join(" "));
        for t in &self.transports {
            let _ = writeln!(
                o,
                "listen: udp {}{}",
                t.local,
                if t.encap { " (nat-t)" } else { "" }
            );
        }
        crate::report::heading(&mut o, "counters");
        let c = self.counters;
        let _ = writeln!(o, "fifo-commands: {}", c.fifo_commands);
        let _ = writeln!(o, "fifo-errors: {}", c.fifo_errors);
        let _ = writeln!(o, "reloads: {}", c.reloads);
        let _ = writeln!(o, "reload-failures: {}", c.reload_failures);
        crate::report::heading(&mut o, "engine");
        self.engine.report(now, &mut o);
        crate::report::heading(&mut o, "configuration");
        crate::report::conf_dump(&self.conf, &mut o);
        o
    }

    fn start_capture(&mut self, path: String) {
        let r = self
            .monitor
            .open_write(WriteKind::Capture, &path)
            .and_then(|fd| {
                Capture::start(File::from(fd), path.clone()).map_err(|e| format!("{path}: {e}"))
            });
        match r {
            Ok(c) => {
                log::info!("packet capture to {path} started");
                self.capture = Some(c);
                self.engine.set_capture(true);
            }
            Err(e) => log::error!("packet capture: {e}"),
        }
    }

    fn stop_capture(&mut self) {
        self.engine.set_capture(false);
        if let Some(c) = self.capture.take() {
            log::info!("packet capture to {} stopped", c.path);
        }
    }
}

/// The kernel interface: `[General] Kernel-interface` (XFRM or PF_KEY) if set, else XFRM
/// netlink on Linux when the kernel has it (PF_KEY otherwise) and PF_KEY on OpenBSD;
/// none with -n.
fn choose_kernel(conf: &Conf, no_kernel: bool) -> Option<crate::kernel::Dialect> {
    use crate::kernel::Dialect;
    if no_kernel {
        return None;
    }
    #[cfg(target_os = "openbsd")]
    let (native, pfkey) = (
        Dialect::Pfkey(crate::kernel::pfkey::Platform::OpenBsd),
        Dialect::Pfkey(crate::kernel::pfkey::Platform::OpenBsd),
    );
    #[cfg(not(target_os = "openbsd"))]
    let (native, pfkey) = (
        Dialect::Xfrm,
        Dialect::Pfkey(crate::kernel::pfkey::Platform::Linux),
    );
    match conf.get("General", "Kernel-interface").as_deref() {
        Some(v) if v.eq_ignore_ascii_case("XFRM") && native == Dialect::Xfrm => {
            return Some(Dialect::Xfrm)
        }
        Some(v) if v.eq_ignore_ascii_case("PF_KEY") || v.eq_ignore_ascii_case("PFKEY") => {
            return Some(pfkey)
        }
        Some(v) => log::warn!(
            "[General]:Kernel-interface={v}: not XFRM or PF_KEY (or not on this system); \
             using {}",
            dialect_name(Some(native))
        ),
        None => {}
    }
    if native == Dialect::Xfrm && !xfrm_present() {
        log::warn!("kernel: no XFRM netlink here, using PF_KEY");
        return Some(pfkey);
    }
    Some(native)
}

/// Whether the kernel speaks XFRM netlink (creating the socket needs no privilege).
fn xfrm_present() -> bool {
    crate::monitor::open_xfrm().is_ok()
}

fn dialect_name(d: Option<crate::kernel::Dialect>) -> &'static str {
    match d {
        None => "none (SAs are recorded, not installed)",
        Some(crate::kernel::Dialect::Xfrm) => "XFRM netlink",
        Some(crate::kernel::Dialect::Pfkey(crate::kernel::pfkey::Platform::Linux)) => {
            "PF_KEY v2 (Linux)"
        }
        Some(crate::kernel::Dialect::Pfkey(crate::kernel::pfkey::Platform::OpenBsd)) => "PF_KEY v2",
    }
}

/// Writes one kernel request to the parent. The channel holds only a few messages (a
/// socketpair's datagram queue); when it is full the parent is busy relaying, so we wait
/// for room, a second at most.
fn send_to_parent(fd: std::os::fd::RawFd, msg: &[u8]) -> Result<(), String> {
    for _ in 0..2 {
        match sys::send(fd, msg, libc::MSG_NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                return Err(format!("kernel channel: {e}"))
            }
            Err(_) => {}
        }
        let mut pfd = [libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        }];
        let _ = sys::poll(&mut pfd, 1000);
    }
    Err("kernel channel: the privileged process does not take requests".into())
}

/// Which local address the kernel would use towards `dst`: a connected UDP socket tells
/// without sending anything. The engine asks when it starts an exchange without a
/// Local-address; received datagrams bring their own (IP_PKTINFO, see udp.rs).
fn route_lookup(dst: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = if dst.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((dst, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

pub fn apply_debug(sel: DebugSelector, level: u8) {
    match sel {
        DebugSelector::All => ilog::set_all_debug_levels(level),
        DebugSelector::One(c) => ilog::set_debug_level(c, level),
    }
}

fn describe_conf_cmd(c: &ConfCmd) -> String {
    match c {
        ConfCmd::Set {
            section,
            tag,
            force,
            ..
        } => {
            format!(
                "C set [{section}]:{tag}{}",
                if *force { " force" } else { "" }
            )
        }
        ConfCmd::Add {
            section,
            tag,
            value,
        } => format!("C add [{section}]:{tag}={value}"),
        ConfCmd::Rmv {
            section,
            tag,
            value,
        } => format!("C rmv [{section}]:{tag}={value}"),
        ConfCmd::Rm { section, tag } => format!("C rm [{section}]:{tag}"),
        ConfCmd::Rms { section } => format!("C rms [{section}]"),
        ConfCmd::Get { section, tag } => format!("C get [{section}]:{tag}"),
    }
}

/// Masks the value of `C set/add [..]:Authentication=...` before a line is logged.
fn redact(line: &str) -> String {
    if let Some(i) = line.find(':') {
        let tail = &line[i + 1..];
        let tag = tail.split('=').next().unwrap_or("");
        if tail.contains('=') && crate::report::is_secret(tag.trim()) {
            return format!("{}:{}={}", &line[..i], tag, crate::report::MASK);
        }
    }
    line.to_string()
}

/// Escapes control characters so a garbled line cannot forge log lines.
fn printable(s: &str) -> String {
    let mut o = String::with_capacity(s.len().min(200));
    for ch in s.chars().take(200) {
        if ch.is_control() {
            let _ = write!(o, "\\x{:02x}", ch as u32);
        } else {
            o.push(ch);
        }
    }
    if s.chars().count() > 200 {
        o.push_str("...");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_and_escaping() {
        assert_eq!(
            redact("C set [peer]:Authentication=secret force"),
            "C set [peer]:Authentication=<hidden>"
        );
        assert_eq!(
            redact("C set [peer]:Address=192.0.2.1"),
            "C set [peer]:Address=192.0.2.1"
        );
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\x1b[2Jb");
    }

    #[test]
    fn rate_limit() {
        let mut r = RateLimit {
            window: 0,
            count: 0,
            suppressed: 0,
        };
        let allowed = (0..100).filter(|_| r.allow(Time(500))).count();
        assert_eq!(allowed, WARN_BURST as usize);
        assert!(r.allow(Time(1500)));
    }
}
