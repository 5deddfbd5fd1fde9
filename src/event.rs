//! The unprivileged child's event loop: one thread, one poll(2).
//!
//! Descriptors: the signal self-pipe, the monitor socket (to notice the parent dying), the
//! FIFO, and the UDP sockets (the kernel socket joins later). This is the only place that
//! reads the clock: each iteration takes one `now` and hands it to every handler. When no
//! timer is armed, poll waits forever, so an idle daemon uses no CPU at all.
//!
//! Order per wake-up (STYLE §10.5): signals, monitor, FIFO, sockets (bounded reads), timers,
//! then the engine's outputs.
//!
//! After startup the loop allocates nothing per datagram or per wake-up beyond what the
//! engine does: one receive and one transmit buffer are allocated with the daemon and
//! reused, as are the vectors that carry kernel answers and events (tests/alloc.rs counts
//! the engine's part, and the logger's).
//!
//! What the loop dispatches to lives elsewhere: FIFO commands and reloads in `admin`, key
//! material in `pki`, the report and result files in `report`.

#![forbid(unsafe_code)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use crate::admin::RateLimit;
use crate::args::Options;
use crate::conf::Conf;
use crate::fifo::Fifo;
use crate::ike::{Engine, EngineConfig};
use crate::log::DebugClass;
use crate::monitor::{Client, WriteKind};
use crate::pcap::Capture;
use crate::signal::SignalPipe;
use crate::sys;
use crate::timer::Time;
use crate::udp::{Transport, MAX_DATAGRAM};

/// How long a shutdown may wait for the engine's last messages.
const SHUTDOWN_GRACE_MS: u64 = 2000;

/// The receive buffer: a UDP datagram ([`MAX_DATAGRAM`]) or a kernel message relayed by
/// the parent, which reads those into 64 KiB.
const RX_BUF: usize = 65536;

/// Counts of what the daemon did, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub fifo_commands: u64,
    pub fifo_errors: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    pub reports: u64,
}

pub struct Daemon {
    pub(crate) opts: Options,
    pub(crate) conf: Conf,
    pub(crate) engine: Engine,
    pub(crate) monitor: Client,
    pub(crate) fifo: Option<Fifo>,
    pub(crate) transports: Vec<Transport>,
    signals: SignalPipe,
    start: Instant,
    pub(crate) capture: Option<Capture>,
    pub(crate) counters: Counters,
    pub(crate) limiter: RateLimit,
    pub(crate) quit: bool,
    /// The configuration changed: check the connections at once.
    pub(crate) reinit: bool,
    /// What talks to the kernel, unless -n.
    kernel: Option<crate::kernel::Kernel>,
    /// The interface chosen at startup (`None` with -n).
    pub(crate) dialect: Option<crate::kernel::Dialect>,
    /// The XFRM ACQUIRE/EXPIRE subscription, unless -n.
    /// The channel to the kernel through the parent (see monitor::Client::kernel_channel).
    kernel_chan: Option<std::os::fd::OwnedFd>,
    /// Datagrams and kernel messages are read into this, one at a time.
    rx: sys::PageBuf,
    /// The engine's datagrams are written into this, one at a time.
    tx: sys::PageBuf,
    /// Kernel answers and events, emptied after each use; kept for their capacity.
    kernel_done: Vec<(u32, crate::ike::sa::KernelReply)>,
    kernel_events: Vec<crate::kernel::Event>,
    /// /proc/self/smaps, opened before the jail: what startup, and later each burst of
    /// work, left mapped is released as the loop waits (see
    /// [`crate::daemon::poll_releasing_memory`]).
    smaps: Option<File>,
    /// Started as iked(8): the IKEv2 engine, its policies and the control socket.
    pub(crate) v2: Option<crate::iked::runtime::V2>,
    /// When to release: the first wait, then [`crate::daemon::RELEASE_AFTER_QUIET_MS`] after the last
    /// wake-up that had work.
    release_due: Option<Time>,
    /// isakmpd.policy in force (KeyNote), or why none is.
    pub(crate) keynote: Option<std::sync::Arc<crate::keynote::Enforced>>,
    pub(crate) keynote_off: String,
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
        let mut hash_key = [0u8; 16];
        crate::ike::crypto::random_source(None).fill(&mut hash_key);
        let engine = Engine::new(
            EngineConfig {
                hash_key,
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
            crate::ike::crypto::random_source(opts.seed),
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
            limiter: RateLimit::default(),
            quit: false,
            reinit: false,
            kernel: None,
            dialect,
            kernel_chan: None,
            // Mapped, not calloc'd: the pages no datagram has reached are never resident.
            rx: sys::PageBuf::new(RX_BUF),
            tx: sys::PageBuf::new(MAX_DATAGRAM),
            kernel_done: Vec::new(),
            kernel_events: Vec::new(),
            smaps: None,
            release_due: None,
            v2: None,
            keynote: None,
            keynote_off: crate::keynote::off_reason(true),
        }
    }

    /// Puts isakmpd.policy in force (`Some`), or takes it away, saying why (`off`).
    pub fn set_keynote(
        &mut self,
        k: Option<std::sync::Arc<crate::keynote::Enforced>>,
        off: String,
    ) {
        self.engine.set_proposal_policy(
            k.clone()
                .map(|k| k as std::sync::Arc<dyn crate::ike::policy::ProposalPolicy>),
        );
        self.engine.set_wall_clock(crate::keynote::wall_clock());
        self.keynote = k;
        self.keynote_off = off;
    }

    /// Reads isakmpd.policy again after the configuration (SIGHUP, FIFO `R`), as isakmpd's
    /// reinit calls policy_init. A file that cannot be read keeps the running policy.
    pub(crate) fn reload_policy(&mut self) {
        if self.opts.iked.is_some() {
            return;
        }
        let Some(path) = crate::keynote::policy_file(&self.conf, self.opts.no_keynote) else {
            if self.keynote.is_some() {
                crate::log_info!("keynote: off ([General]:Use-Keynote)");
            }
            self.set_keynote(None, crate::keynote::off_reason(self.opts.no_keynote));
            return;
        };
        match self
            .monitor
            .open_include(&path)
            .and_then(|fd| crate::keynote::file::read(fd, &path))
        {
            Ok(k) => {
                crate::log_info!(
                    "reloaded policy: {}",
                    crate::keynote::describe(Some(&k), "")
                );
                self.set_keynote(Some(std::sync::Arc::new(k)), String::new());
            }
            // Still no file where there was none at startup: KeyNote stays off.
            Err(e) if self.keynote.is_none() && e.contains("No such file") => {
                crate::log_warn!("{path}: no such file: KeyNote policy stays off");
                self.keynote_off = format!("{path} missing");
            }
            Err(e) => crate::log_error!("policy not reloaded, the running one stays: {e}"),
        }
    }

    /// Makes this daemon iked(8): IKEv2 datagrams go to an IKEv2 engine with `setup`'s
    /// policies, and ikectl's commands come through `control`.
    pub fn start_iked(
        &mut self,
        setup: crate::iked::runtime::Setup,
        control: std::os::fd::OwnedFd,
    ) {
        let now = self.now();
        self.v2 = Some(crate::iked::runtime::V2::new(
            setup,
            &self.opts,
            Some(control),
            self.dialect.is_some(),
            now,
        ));
    }

    /// Releases the memory only startup used once startup is over, and what a burst of work
    /// touched once it has been quiet for a while, through `smaps` (this process's
    /// /proc/self/smaps).
    pub fn release_idle_memory(&mut self, smaps: Option<File>) {
        self.release_due = smaps.as_ref().map(|_| Time(0));
        self.smaps = smaps;
    }

    fn now(&self) -> Time {
        Time(self.start.elapsed().as_millis() as u64)
    }

    /// Asks the monitor for the listening sockets: each address of [General]:Listen-on (or
    /// the wildcard of each enabled family), on the IKE port and, unless -T, the NAT-T port.
    pub fn open_transports(&mut self) -> Result<(), String> {
        // iked -t (or -p): NAT-T enforced, only the encapsulation port.
        let natt_only = self.opts.iked.as_ref().is_some_and(|i| i.natt_only);
        let mut ports = if natt_only {
            Vec::new()
        } else {
            vec![(self.opts.listen_port, false)]
        };
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
        // Sockets bound to Listen-on addresses: exchanges we start leave from one of
        // them, not from whatever address the route would pick.
        let bound: Vec<IpAddr> = self
            .transports
            .iter()
            .map(|t| t.local.ip())
            .filter(|ip| !ip.is_unspecified())
            .collect();
        if let Some(v2) = self.v2.as_mut() {
            let bound = bound.clone();
            v2.engine
                .set_route_lookup(Box::new(move |dst| source_for(&bound, dst)));
        }
        self.engine
            .set_route_lookup(Box::new(move |dst| source_for(&bound, dst)));
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
        let now = self.now();
        self.engine.start_connections(now);
        if let Some(v2) = self.v2.as_mut() {
            v2.sync_flows();
            v2.start_policies(now);
        }
        let mut next_check = self.now();
        let mut shutdown_deadline: Option<Time> = None;
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(4 + self.transports.len());
        loop {
            let now = self.now();
            if self.quit && shutdown_deadline.is_none() {
                self.engine.shutdown(now);
                if let Some(v2) = self.v2.as_mut() {
                    // Deletes sent once, the kernel's SAs and flows removed (iked does
                    // the same).
                    v2.unload_flows();
                    v2.engine.shutdown(now);
                }
                self.flush_transmit();
                shutdown_deadline = Some(now.add_millis(SHUTDOWN_GRACE_MS));
            }
            if let Some(d) = shutdown_deadline {
                let kernel_idle = self.kernel.as_ref().is_none_or(|k| k.idle());
                let v2_idle = self.v2.as_ref().is_none_or(|v| v.engine.is_drained());
                if (self.engine.is_drained() && kernel_idle && v2_idle) || now >= d {
                    break;
                }
            }
            if std::mem::take(&mut self.reinit) {
                next_check = now;
            }
            // isakmpd's connection checker: bring up configured connections that are down.
            if now >= next_check && shutdown_deadline.is_none() {
                self.engine.start_connections(now);
                if let Some(v2) = self.v2.as_mut() {
                    v2.start_policies(now);
                }
                // iked checks its active policies more often than isakmpd's default.
                let default = if self.v2.is_some() { 10 } else { 60 };
                let every = self
                    .conf
                    .get_num("General", "Check-interval", default)
                    .clamp(1, 86400);
                next_check = now.add_secs(every);
                self.flush_transmit();
            }
            // Due now: this wait releases (and must not wake at once for it).
            let release = self.release_due.is_some_and(|d| now >= d);
            if release {
                self.release_due = None;
            }
            let next = [
                self.engine.poll_timeout(),
                self.v2.as_mut().and_then(|v| v.engine.poll_timeout()),
                self.kernel.as_ref().and_then(|k| k.next_deadline()),
                shutdown_deadline,
                shutdown_deadline.is_none().then_some(next_check),
                self.release_due,
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
            let control_idx = self.v2.as_ref().and_then(|v| v.control.as_ref()).map(|l| {
                pfds.push(pfd(crate::iked::control::fd(l)));
                pfds.len() - 1
            });
            let monitors = self.monitor_poll_fds(&mut pfds);
            let first_sock = pfds.len();
            for t in &self.transports {
                pfds.push(pfd(t.fd()));
            }
            let polled = match self.smaps.as_mut() {
                Some(smaps) if release => {
                    crate::daemon::poll_releasing_memory(smaps, &mut pfds, timeout)
                }
                _ => sys::poll(&mut pfds, timeout),
            };
            if let Err(e) = polled {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("poll: {e}");
                    return 1;
                }
                continue;
            }
            let now = self.now();
            if self.keynote.is_some() {
                self.engine.set_wall_clock(crate::keynote::wall_clock());
            }
            // Work (a datagram, a command, a kernel message, a signal) maps code and fills
            // caches: release once it has been quiet for a while. Timers alone do not count,
            // or the periodic ones would keep the daemon releasing.
            if self.smaps.is_some() && matches!(polled, Ok(n) if n > 0) {
                self.release_due = Some(now.add_millis(crate::daemon::RELEASE_AFTER_QUIET_MS));
            }
            if pfds[0].revents != 0 {
                // A set of signal numbers rather than a list: no allocation, and a
                // signal sent twice before we woke is handled once (isakmpd's handlers
                // set a flag too).
                let mut pending = 0u64;
                self.signals.drain(|s| {
                    if (0..64).contains(&s) {
                        pending |= 1 << s;
                    }
                });
                for s in 0..64 {
                    if pending & (1 << s) != 0 {
                        self.handle_signal(now, s);
                    }
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
            if control_idx.is_some_and(|i| pfds[i].revents != 0) {
                self.serve_control(now);
            }
            for (k, t) in self.transports.iter().enumerate() {
                if pfds[first_sock + k].revents != 0 {
                    // Our address is the datagram's own destination (IP_PKTINFO), so the
                    // engine has no routing lookup to do per datagram.
                    let engine = &mut self.engine;
                    match self.v2.as_mut() {
                        // iked: IKEv2 only; nothing is taken in passive mode.
                        Some(v2) => t.recv_bounded(&mut self.rx, |local, from, data| {
                            // A higher major version goes to the engine too, which
                            // answers INVALID_MAJOR_VERSION (RFC 7296 §2.5).
                            match crate::iked::runtime::ike_major(data, t.encap) {
                                Some(v) if v >= 2 && !v2.passive => {
                                    v2.engine.handle_datagram(now, local, from, data)
                                }
                                Some(v) if v >= 2 => {}
                                _ => v2.v1_dropped += 1,
                            }
                        }),
                        None => t.recv_bounded(&mut self.rx, |local, from, data| {
                            engine.handle_datagram(now, local, from, data)
                        }),
                    }
                }
            }
            if let Some(k) = self.kernel.as_mut() {
                let mut done = std::mem::take(&mut self.kernel_done);
                k.expire(now, &mut done);
                for (ticket, reply) in done.drain(..) {
                    self.kernel_reply(now, ticket, reply);
                }
                self.kernel_done = done;
            }
            self.engine.handle_timeout(now);
            if let Some(v2) = self.v2.as_mut() {
                v2.engine.handle_timeout(now);
            }
            self.flush_transmit();
            self.monitor_wakeup(&pfds[monitors]);
        }
        self.stop_capture();
        self.monitor.shutdown();
        // isakmpd's last line (isakmpd.c `daemon_shutdown`), logged whether or not -v.
        crate::log::print(format_args!(
            "{}: exit",
            if self.v2.is_some() { "iked" } else { "isakmpd" }
        ));
        0
    }

    fn flush_transmit(&mut self) {
        // The kernel first: an exchange whose next message announces SAs holds it until
        // the kernel has confirmed them (see ike::sa::Part).
        let now = self.now();
        let mut done = std::mem::take(&mut self.kernel_done);
        loop {
            while let Some(op) = self.poll_kernel() {
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
            for (ticket, reply) in done.drain(..) {
                self.kernel_reply(now, ticket, reply);
            }
        }
        self.kernel_done = done;
        while let Some(t) = self.engine.poll_transmit(&mut self.tx) {
            send_datagram(&self.transports, &t, &self.tx[..t.len]);
        }
        if let Some(v2) = self.v2.as_mut() {
            while let Some(t) = v2.engine.poll_transmit(&mut self.tx) {
                // Passive (iked's sense): no packets are sent to peers.
                if !v2.passive {
                    send_datagram(&self.transports, &t, &self.tx[..t.len]);
                }
            }
        }
        let mut v2_capture = self.v2.as_mut().map(|v| &mut v.engine);
        let mut next = || match self.engine.poll_capture() {
            Some(c) => Some(c),
            None => v2_capture.as_mut().and_then(|e| e.poll_capture()),
        };
        while let Some(c) = next() {
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

    /// The next kernel request: the IKEv2 engine's when iked, else the IKEv1 engine's
    /// (one engine talks to the kernel, so tickets never mix).
    fn poll_kernel(&mut self) -> Option<crate::ike::sa::KernelOp> {
        match self.v2.as_mut() {
            Some(v2) => v2.engine.poll_kernel(),
            None => self.engine.poll_kernel(),
        }
    }

    /// The kernel's answer, to the engine that asked.
    fn kernel_reply(&mut self, now: Time, ticket: u32, reply: crate::ike::sa::KernelReply) {
        match self.v2.as_mut() {
            Some(v2) => v2.engine.kernel_reply(now, ticket, reply),
            None => self.engine.kernel_reply(now, ticket, reply),
        }
    }

    fn handle_signal(&mut self, now: Time, sig: libc::c_int) {
        match sig {
            libc::SIGHUP if self.v2.is_some() => {
                let _ = self.reload_iked(now);
            }
            libc::SIGHUP => self.reload(),
            libc::SIGUSR1 if self.v2.is_some() => {}
            libc::SIGUSR1 => self.write_report(now),
            libc::SIGTERM | libc::SIGINT => {
                log::info!("received signal {sig}, shutting down");
                self.quit = true;
            }
            _ => {}
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
        let (done, events) = (&mut self.kernel_done, &mut self.kernel_events);
        for _ in 0..64 {
            let n = match sys::recv(fd, &mut self.rx, 0) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            k.receive(now, &self.rx[..n], done, events);
        }
        let mut done = std::mem::take(&mut self.kernel_done);
        for (ticket, reply) in done.drain(..) {
            self.kernel_reply(now, ticket, reply);
        }
        self.kernel_done = done;
        if let Some(v2) = self.v2.as_mut() {
            // iked: an EXPIRE rekeys (soft) or deletes (hard) the CHILD_SA; an ACQUIRE
            // starts the policy whose flow it names.
            for ev in self.kernel_events.drain(..) {
                match ev {
                    crate::kernel::Event::Acquire {
                        flow: Some((src, dst)),
                        peer,
                    } => v2.acquire(now, src, dst, peer),
                    crate::kernel::Event::Expire {
                        dst,
                        spi,
                        proto: 50,
                        hard,
                    } => {
                        v2.engine
                            .handle_expire(now, dst, u32::from_be_bytes(spi), hard);
                    }
                    _ => crate::ike_debug!(
                        DebugClass::Sysdep,
                        10,
                        "kernel event ignored by iked: {ev:?}"
                    ),
                }
            }
        }
        for ev in self.kernel_events.drain(..) {
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

    /// Our key, certificates and CAs, read through the monitor (see `pki`): isakmpd's
    /// from the paths of isakmpd.conf, for RSA_SIG; iked's from /etc/iked, for the IKEv2
    /// engine's signatures (with a warning for each rule that cannot sign).
    pub fn load_credentials(&mut self) {
        if let Some(v2) = self.v2.as_mut() {
            v2.set_credentials(crate::pki::load_from(
                &self.monitor,
                &crate::pki::Paths::iked(),
            ));
            return;
        }
        if let Some(c) = crate::pki::load(&self.monitor, &self.conf) {
            self.engine.set_credentials(c);
        }
    }

    pub(crate) fn start_capture(&mut self, path: String) {
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
                if let Some(v2) = self.v2.as_mut() {
                    v2.engine.set_capture(true);
                }
            }
            Err(e) => log::error!("packet capture: {e}"),
        }
    }

    pub(crate) fn stop_capture(&mut self) {
        self.engine.set_capture(false);
        if let Some(v2) = self.v2.as_mut() {
            v2.engine.set_capture(false);
        }
        if let Some(c) = self.capture.take() {
            log::info!("packet capture to {} stopped", c.path);
        }
    }
}

/// Sends one datagram from the socket bound to its source address, else the wildcard
/// socket of its port and family, else any IKE socket of the family.
fn send_datagram(transports: &[Transport], t: &crate::ike::Transmit, data: &[u8]) {
    let family = |s: &&Transport| s.local.is_ipv4() == t.remote.is_ipv4();
    let sock = transports
        .iter()
        .find(|s| Some(s.local) == t.local)
        .or_else(|| {
            transports.iter().filter(family).find(|s| {
                s.local.ip().is_unspecified()
                    && t.local.map_or(!s.encap, |l| l.port() == s.local.port())
            })
        })
        .or_else(|| transports.iter().filter(family).find(|s| !s.encap));
    match sock {
        Some(s) => {
            if let Err(e) = s.send(t.local, t.remote, data) {
                log::warn!("send to {}: {e}", t.remote);
            }
        }
        None => log::warn!("no socket to send to {}", t.remote),
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

pub(crate) fn dialect_name(d: Option<crate::kernel::Dialect>) -> &'static str {
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

/// Our address towards `dst` for an exchange we start without a Local-address: the
/// route's source address, unless the daemon listens on given addresses of that family
/// (Listen-on) and the route's is not one of them: then the first of those (a Listen-on
/// address is often a secondary address of its interface, which the route never picks).
fn source_for(bound: &[IpAddr], dst: IpAddr) -> Option<IpAddr> {
    let mut ours = bound.iter().filter(|a| a.is_ipv4() == dst.is_ipv4());
    let first = ours.clone().next().copied();
    match route_lookup(dst) {
        Some(r) if first.is_none() || ours.any(|a| *a == r) => Some(r),
        r => first.or(r),
    }
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
