//! Startup: checks, configuration, daemonising, pid file, FIFO, privilege separation.
//!
//! Everything that can be wrong with the installation is found here, before the fork, and
//! reported on stderr (as well as the log) with exit status 1: a bad configuration file or
//! its permissions, a missing privsep user or jail, a pid file of a running daemon, a path
//! in the FIFO's place that is not a FIFO.

#![forbid(unsafe_code)]

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::admin::apply_debug;
use crate::args::Options;
use crate::conf::Conf;
use crate::event::Daemon;
use crate::fifo::Fifo;
use crate::monitor::{self, Client, Server, PRIVSEP_DIR, PRIVSEP_USER};
use crate::signal::{self, SignalPipe};
use crate::sys;

fn fatal(msg: &str) -> i32 {
    crate::log_error!("{msg}");
    // Under syslog the message would be invisible to whoever ran the command.
    if !crate::log_to_stderr() {
        eprintln!("{}: {msg}", program());
    }
    1
}

/// The program's name in messages: isakmpd, or iked when started as iked(8).
fn program() -> &'static str {
    if IKED.load(std::sync::atomic::Ordering::Relaxed) {
        "iked"
    } else {
        "isakmpd"
    }
}

static IKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What iked(8) sets up before the fork: its policies and its control socket.
pub struct IkedStart {
    pub setup: crate::iked::runtime::Setup,
    pub control: OwnedFd,
}

/// Reads and parses the configuration at startup. A missing file means isakmpd's defaults
/// alone (as conf.c does); a file with bad permissions or syntax stops the daemon.
pub fn load_config(path: &str) -> Result<Conf, String> {
    let fd = match monitor::open_config(path) {
        Ok(fd) => fd,
        Err(e) if !std::path::Path::new(path).exists() => {
            crate::log_warn!("{e}; running with the default configuration");
            return Ok(Conf::new());
        }
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(|e| format!("{path}: {e}"))?;
    let parsed = Conf::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    for w in &parsed.warnings {
        crate::log_warn!("{path}: {w}");
    }
    Ok(parsed.conf)
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s}: path contains NUL"))
}

/// Refuses to start over a running daemon's pid file, then writes ours.
fn write_pid_file(path: &str) -> Result<(), String> {
    if let Ok(old) = std::fs::read_to_string(path) {
        if let Ok(pid) = old.trim().parse::<i32>() {
            // Signal 0 only checks for existence.
            if pid > 0 && sys::kill(pid, 0).is_ok() && pid != sys::getpid() {
                return Err(format!("{path}: isakmpd already running as pid {pid}"));
            }
        }
    }
    let pid = sys::getpid();
    std::fs::write(path, format!("{pid}\n")).map_err(|e| format!("{path}: {e}"))
}

/// Creates (or reuses) the FIFO, mode 0600, and opens it read-write and non-blocking so
/// that it never reports end of file when a writer goes away.
fn open_fifo(path: &str) -> Result<OwnedFd, String> {
    let c = cstring(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            if !m.file_type().is_fifo() {
                return Err(format!("{path}: exists and is not a FIFO"));
            }
        }
        Err(_) => {
            if let Err(e) = sys::mkfifo(&c, 0o600) {
                return Err(format!("{path}: mkfifo: {e}"));
            }
        }
    }
    let fd = sys::open(&c, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC, 0)
        .map_err(|e| format!("{path}: {e}"))?;
    // Make the mode exact whatever the umask or an old FIFO said.
    let _ = sys::fchmod(fd.as_raw_fd(), 0o600);
    Ok(fd)
}

/// Runs the daemon; returns the exit status.
pub fn run(opts: Options) -> i32 {
    crate::set_log_to_stderr(opts.foreground);
    crate::log::init(!opts.foreground, opts.verbose);
    for &(sel, level) in &opts.debug {
        apply_debug(sel, level);
    }
    if sys::geteuid() != 0 {
        return fatal("need root privileges");
    }
    // The monitor enforces this for every bind; checking here too reports it before
    // daemonising, where the user can see it.
    for (flag, port, used) in [
        ("-p", opts.listen_port, true),
        ("-N", opts.udpencap_port, !opts.no_nat_t),
    ] {
        if used && !monitor::port_allowed(port) {
            return fatal(&format!(
                "{flag} {port}: only port 500, 4500 or ports above 1024 are allowed"
            ));
        }
    }
    IKED.store(opts.iked.is_some(), std::sync::atomic::Ordering::Relaxed);
    // iked reads iked.conf(5); isakmpd's own configuration stays empty then.
    let (conf, setup) = match &opts.iked {
        Some(i) => match crate::iked::runtime::load(&opts.config, &i.macros) {
            Ok(s) => {
                for w in &s.warnings {
                    crate::log_warn!("{}: {w}", opts.config);
                }
                (Conf::new(), Some(s))
            }
            Err(e) => return fatal(&e),
        },
        None => match load_config(&opts.config) {
            Ok(c) => (c, None),
            Err(e) => return fatal(&e),
        },
    };
    // isakmpd.policy (policy.c policy_init), read before the jail as isakmpd.conf is.
    let policy_path = match &opts.iked {
        Some(_) => None,
        None => crate::keynote::policy_file(&conf, opts.no_keynote),
    };
    let keynote = match &policy_path {
        None if opts.iked.is_some() => (None, "iked".to_string()),
        None => (None, crate::keynote::off_reason(opts.no_keynote)),
        // isakmpd stops here (log_fatal); without a file we run as with -K, and say so
        // in the log and the report, so that daemons set up without a policy still start.
        Some(p) if !std::path::Path::new(p).exists() => {
            crate::log_warn!(
                "{p}: no such file: KeyNote policy off, as with -K (isakmpd would not start)"
            );
            (None, format!("{p} missing"))
        }
        Some(p) => match crate::keynote::load(p) {
            Ok(k) => {
                crate::log_info!("policy: {}", crate::keynote::describe(Some(&k), ""));
                (Some(std::sync::Arc::new(k)), String::new())
            }
            Err(e) => return fatal(&format!("policy_init: cannot read {e}")),
        },
    };
    // iked's user, else isakmpd's (one binary may serve both).
    let privsep_user = match &opts.iked {
        Some(_) if monitor::lookup_user(crate::iked::PRIVSEP_USER).is_ok() => {
            crate::iked::PRIVSEP_USER
        }
        _ => PRIVSEP_USER,
    };
    let user = match monitor::lookup_user(privsep_user)
        .and_then(|u| monitor::check_jail(PRIVSEP_DIR).map(|_| u))
    {
        Ok(u) => u,
        Err(e) => return fatal(&e),
    };
    if !opts.foreground {
        // daemon(3) forks and detaches; nothing else runs yet.
        if let Err(e) = sys::daemon() {
            return fatal(&format!("daemon: {e}"));
        }
    }
    if !opts.pid_file.is_empty() {
        if let Err(e) = write_pid_file(&opts.pid_file) {
            return fatal(&e);
        }
    }
    let iked = match (setup, &opts.iked) {
        (Some(setup), Some(i)) => match crate::iked::control::open(&i.socket) {
            Ok(control) => Some(IkedStart { setup, control }),
            Err(e) => return fatal(&e),
        },
        _ => None,
    };
    // iked has its control socket instead; `-f -` reads commands from stdin.
    let fifo_fd = if opts.iked.is_some() || opts.fifo == "-" {
        None
    } else {
        match open_fifo(&opts.fifo) {
            Ok(fd) => Some(fd),
            Err(e) => {
                let _ = std::fs::remove_file(&opts.pid_file);
                return fatal(&e);
            }
        }
    };
    let cleanup = |opts: &Options| {
        if let Some(i) = &opts.iked {
            let _ = std::fs::remove_file(&i.socket);
        } else if opts.fifo != "-" {
            let _ = std::fs::remove_file(&opts.fifo);
        }
        if !opts.pid_file.is_empty() {
            let _ = std::fs::remove_file(&opts.pid_file);
        }
    };
    let (parent_end, child_end) = match monitor::socketpair() {
        Ok(p) => p,
        Err(e) => {
            cleanup(&opts);
            return fatal(&format!("socketpair: {e}"));
        }
    };
    let forwarded = [
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGCHLD,
    ];
    let parent_signals = match SignalPipe::install(&forwarded) {
        Ok(s) => s,
        Err(e) => {
            cleanup(&opts);
            return fatal(&format!("signals: {e}"));
        }
    };
    // Single-threaded at this point; the child continues with its own copy.
    let pid = match sys::fork() {
        Ok(sys::Forked::Parent(pid)) => pid,
        Ok(sys::Forked::Child) => 0,
        Err(e) => {
            cleanup(&opts);
            return fatal(&format!("fork: {e}"));
        }
    };
    if pid == 0 {
        drop(parent_end);
        drop(parent_signals);
        for s in forwarded {
            signal::reset(s);
        }
        std::process::exit(child_main(
            opts,
            conf,
            Client::new(child_end),
            fifo_fd,
            user,
            iked,
            keynote,
        ));
    }
    drop(child_end);
    drop(fifo_fd);
    let mut includes = iked.map(|i| i.setup.includes.clone()).unwrap_or_default();
    // The policy file is read again on reload, through the monitor.
    includes.extend(policy_path);
    let server = Server {
        sock: parent_end,
        config_path: opts.config.clone(),
        includes,
        report_path: opts.report_file.clone(),
        // iked(8) reads its key material from /etc/iked, isakmpd from /etc/isakmpd.
        pki_root: if opts.iked.is_some() {
            monitor::IKED_PKI_ROOT
        } else {
            monitor::ISAKMPD_PKI_ROOT
        },
        relay: std::cell::RefCell::new(None),
    };
    // Released once the child's requests at startup are served (the parent never runs
    // OpenSSL, nor most of the binary, again), and after later work.
    let smaps = std::fs::File::open("/proc/self/smaps").ok();
    let status = parent_loop(&server, &parent_signals, pid, smaps);
    cleanup(&opts);
    status
}

fn child_main(
    opts: Options,
    conf: Conf,
    client: Client,
    fifo_fd: Option<OwnedFd>,
    user: monitor::PrivsepUser,
    iked: Option<IkedStart>,
    keynote: (Option<std::sync::Arc<crate::keynote::Enforced>>, String),
) -> i32 {
    let signals =
        match SignalPipe::install(&[libc::SIGHUP, libc::SIGUSR1, libc::SIGTERM, libc::SIGINT]) {
            Ok(s) => s,
            Err(e) => return fatal(&format!("signals: {e}")),
        };
    // OpenSSL loads its providers from disk: do it before the jail, and say which phase 1
    // ciphers this build of OpenSSL cannot do. Only the child uses OpenSSL: the parent never
    // touches libcrypto beyond what the dynamic loader does, so none of its pages (nor its
    // providers' heap) are the parent's.
    let missing: Vec<&str> = crate::ike::crypto::init()
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(c, _)| c.name())
        .collect();
    if !missing.is_empty() {
        crate::log_warn!(
            "unavailable in the linked OpenSSL, never offered or accepted: {}",
            missing.join(", ")
        );
    }
    // Kept for after startup (see poll_releasing_memory): /proc is outside the jail.
    let smaps = std::fs::File::open("/proc/self/smaps").ok();
    if let Err(e) = monitor::drop_privileges(user, PRIVSEP_DIR) {
        return fatal(&e);
    }
    let fifo = match fifo_fd {
        Some(fd) => Some(Fifo::new(fd.into_raw())),
        None if iked.is_some() => None,
        None => {
            // -f -: commands come from stdin.
            sys::set_nonblocking(0);
            Some(Fifo::new(0))
        }
    };
    let mut d = Daemon::new(opts, conf, client, fifo, signals);
    d.set_keynote(keynote.0, keynote.1);
    if let Some(i) = iked {
        d.start_iked(i.setup, i.control);
    }
    if let Err(e) = d.open_transports() {
        return fatal(&e);
    }
    crate::log_info!("{} started", program());
    d.release_idle_memory(smaps);
    d.run()
}

/// Startup ran code that an idle daemon does not run again (OpenSSL's initialisation and
/// provider loading, the configuration parser, the engine's set-up) and the dynamic loader
/// read the libraries' symbol tables; a negotiation runs much of OpenSSL. The kernel keeps
/// all those file pages mapped (and the folio or 64 kB around each one touched), counted
/// in the process's resident set and in its share of the libraries. This gives the heap's
/// free pages back and unmaps those file pages (they stay in the page cache; what the
/// daemon runs later is mapped again on first use, a minor fault), then waits in poll(2)
/// like [`sys::poll`]. `smaps` is the process's /proc/self/smaps. Called when startup is
/// over, and after work once it has been quiet for [`RELEASE_AFTER_QUIET_MS`].
pub(crate) fn poll_releasing_memory(
    smaps: &mut std::fs::File,
    fds: &mut [libc::pollfd],
    timeout_ms: i32,
) -> std::io::Result<usize> {
    let (released, polled) = sys::poll_after_releasing_file_pages(smaps, fds, timeout_ms);
    match released {
        Ok(kb) => log::debug!("released {kb} kB of file pages mapped while working"),
        Err(e) => log::debug!("/proc/self/smaps: {e}"),
    }
    polled
}

/// How long the parent waits without a request before it counts startup as over.
const PARENT_SETTLE_MS: i32 = 500;

/// How long a process must have had no work before it releases the memory that the work
/// left mapped (see [`poll_releasing_memory`]).
pub(crate) const RELEASE_AFTER_QUIET_MS: u64 = 10_000;

trait IntoRaw {
    fn into_raw(self) -> i32;
}

impl IntoRaw for OwnedFd {
    fn into_raw(self) -> i32 {
        use std::os::fd::IntoRawFd;
        self.into_raw_fd()
    }
}

/// The privileged parent: serve the child, forward signals, and leave when it does.
fn parent_loop(
    server: &Server,
    signals: &SignalPipe,
    child: libc::pid_t,
    mut smaps: Option<std::fs::File>,
) -> i32 {
    // A quiet spell this long (ms) releases: PARENT_SETTLE_MS at startup, then
    // RELEASE_AFTER_QUIET_MS after work; none while nothing happened since the last release.
    let mut quiet_for: Option<i32> = smaps.as_ref().map(|_| PARENT_SETTLE_MS);
    let mut release_now = false;
    let pfd = |fd, events| libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // A fixed array: the parent wakes for every kernel message and allocates nothing.
        let mut all = [pfd(-1, 0); 4];
        all[0] = pfd(server.sock.as_raw_fd(), libc::POLLIN);
        all[1] = pfd(signals.fd(), libc::POLLIN);
        let relay = server.relay_fds();
        if let Some((chan, writing, sock)) = relay {
            let out = if writing { libc::POLLOUT } else { 0 };
            all[2] = pfd(chan, libc::POLLIN | out);
            all[3] = pfd(sock, libc::POLLIN);
        }
        let fds = &mut all[..if relay.is_some() { 4 } else { 2 }];
        // Wake once after a quiet spell that follows work, to release what the work left
        // mapped; otherwise only for work.
        let polled = match smaps.as_mut() {
            Some(f) if release_now => {
                release_now = false;
                poll_releasing_memory(f, fds, -1)
            }
            _ => sys::poll(fds, quiet_for.unwrap_or(-1)),
        };
        match polled {
            Ok(0) if quiet_for.is_some() => {
                quiet_for = None;
                release_now = true;
                continue;
            }
            Ok(_) => {
                if smaps.is_some() && quiet_for.is_none() {
                    quiet_for = Some(RELEASE_AFTER_QUIET_MS as i32);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if relay.is_some() {
            // The kernel traffic first: a child that is exiting has sent its last
            // deletions before it closes the monitor socket.
            if fds[2].revents & libc::POLLIN != 0 {
                server.relay_from_child();
            }
            if fds[2].revents & libc::POLLOUT != 0 {
                server.flush_pending();
            }
            if fds[3].revents != 0 {
                server.relay_from_kernel();
            }
        }
        if fds[1].revents != 0 {
            let mut exited = false;
            signals.drain(|s| {
                if s == libc::SIGCHLD {
                    exited = true;
                } else {
                    let _ = sys::kill(child, s);
                }
            });
            if exited {
                if let Some(status) = reap(child) {
                    return status;
                }
            }
        }
        if fds[0].revents != 0 {
            match server.serve_one() {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    // The child closed its end: it is exiting (or gone).
                    server.relay_from_child();
                    return wait_child(child);
                }
            }
        }
    }
    wait_child(child)
}

fn reap(child: libc::pid_t) -> Option<i32> {
    match sys::waitpid(child, libc::WNOHANG) {
        Ok((r, st)) if r == child => Some(exit_status(st)),
        _ => None,
    }
}

fn wait_child(child: libc::pid_t) -> i32 {
    loop {
        match sys::waitpid(child, 0) {
            Ok((r, st)) if r == child => return exit_status(st),
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => return 1,
            _ => {}
        }
    }
}

fn exit_status(st: i32) -> i32 {
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        crate::log_error!("unprivileged child died of signal {}", libc::WTERMSIG(st));
        1
    }
}
