//! iked's control socket (default /var/run/iked.sock, mode 0600, root's): ikectl(8)
//! connects, writes one command line (for `load`, the file's text follows the line),
//! closes its writing side, and reads the answer: a first line `ok` or `error: why`, then
//! the text. One connection at a time, with a short timeout, served from the event loop.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use crate::event::Daemon;
use crate::ikev2::engine::IkeRef;
use crate::timer::Time;

/// A request (command line and any file text) is at most this long.
const MAX_REQUEST: usize = 1 << 20;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served per wake-up.
const PER_WAKE: usize = 8;
/// The words of `show`.
const SHOW: [&str; 4] = ["sa", "flows", "stats", "certstore"];

/// Creates the control socket (replacing a stale one), mode 0600, listening and
/// non-blocking. Called by the privileged parent before the fork.
pub fn open(path: &str) -> Result<OwnedFd, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(format!("{path}: exists and is not a socket"));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{path}: another daemon is listening on it"));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|e| format!("{path}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{path}: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(OwnedFd::from(l))
}

/// The descriptor to poll.
pub fn fd(l: &OwnedFd) -> i32 {
    l.as_raw_fd()
}

/// A control request: its command line and the text after it (`load`'s file).
pub fn split_request(req: &[u8]) -> (String, String) {
    let (line, body) = match req.iter().position(|&b| b == b'\n') {
        Some(i) => (&req[..i], &req[i + 1..]),
        None => (req, &[][..]),
    };
    // Not trimmed: blanks may be part of `load`'s or `reset id`'s argument.
    let line = String::from_utf8_lossy(line).into_owned();
    (line, String::from_utf8_lossy(body).into_owned())
}

/// A control command, as ikectl(8) sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `show sa|flows|stats|certstore` (other words are refused by the caller).
    Show(&'a str),
    Reload,
    Load(&'a str),
    /// `reset ca|sa|policy|all|user`, `reset id ID`.
    Reset(&'a str, Option<&'a str>),
    Active,
    Passive,
    Couple,
    Decouple,
    /// `log verbose` (true) or `log brief`.
    Log(bool),
    Monitor,
}

/// Parses a command line. Keywords are separated by any blanks (a hand-written
/// client's `show  sa` is fine); the argument of `load FILE` and `reset id ID` is the
/// rest of the line after the one blank that follows the keyword, as ikectl(8) joins
/// its words with one space: a file name or an ID with blanks in it comes through whole.
pub fn parse_command(line: &str) -> Result<Command<'_>, String> {
    let unknown = || format!("unknown command '{}'", line.escape_debug());
    // The rest of `s` after `word` and one blank.
    fn after<'a>(s: &'a str, word: &str) -> Option<&'a str> {
        s.trim_start()
            .strip_prefix(word)?
            .strip_prefix([' ', '\t'])
            .filter(|r| !r.is_empty())
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["show", w] => Command::Show(w),
        ["reload"] => Command::Reload,
        ["load", ..] => Command::Load(after(line, "load").ok_or_else(unknown)?),
        ["reset", "id", ..] => {
            let rest = after(line, "reset").ok_or_else(unknown)?;
            Command::Reset("id", Some(after(rest, "id").ok_or_else(unknown)?))
        }
        ["reset", w] => Command::Reset(w, None),
        ["active"] => Command::Active,
        ["passive"] => Command::Passive,
        ["couple"] => Command::Couple,
        ["decouple"] => Command::Decouple,
        ["log", "verbose"] => Command::Log(true),
        ["log", "brief"] => Command::Log(false),
        ["monitor"] => Command::Monitor,
        _ => return Err(unknown()),
    })
}

impl Daemon {
    /// Serves the clients waiting on the control socket.
    pub(crate) fn serve_control(&mut self, now: Time) {
        for _ in 0..PER_WAKE {
            let Some(l) = self.v2.as_ref().and_then(|v| v.control.as_ref()) else {
                return;
            };
            let Ok(dup) = l.try_clone() else { return };
            let listener = UnixListener::from(dup);
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            self.serve_client(now, stream);
        }
    }

    fn serve_client(&mut self, now: Time, mut s: UnixStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
        let mut req = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) if req.len() + n <= MAX_REQUEST => req.extend_from_slice(&chunk[..n]),
                Ok(_) => {
                    let _ = s.write_all(b"error: request too long\n");
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // A client that stops talking gets no answer.
                    crate::log_warn!("control: client sent no complete request");
                    return;
                }
            }
        }
        let (line, body) = split_request(&req);
        if parse_command(&line) == Ok(Command::Monitor) {
            self.add_monitor(s, &line);
            return;
        }
        let answer = match self.control_command(now, &line, &body) {
            Ok(text) => format!("ok\n{text}"),
            Err(e) => {
                crate::log_warn!("control: {line}: {e}");
                format!("error: {e}\n")
            }
        };
        // What the command sent goes out with the loop's next flush.
        let _ = s.write_all(answer.as_bytes());
    }

    /// `ikectl monitor`: the other monitors hear of it (iked forwards the imsg), then
    /// the client gets `ok` and stays, or is refused when too many are connected.
    fn add_monitor(&mut self, s: UnixStream, line: &str) {
        let Some(v2) = self.v2.as_mut() else { return };
        crate::log_info!("control: monitor");
        v2.monitors.emit(&crate::iked::monitor_ctl::command_event(
            &Command::Monitor,
            line,
        ));
        if let Err(e) = v2.monitors.add(s, b"ok\n", &v2.engine) {
            crate::log_warn!("control: {e}");
        }
    }

    /// Adds the monitors' descriptors to `pfds` (POLLOUT when they have something
    /// waiting); returns where they are.
    pub(crate) fn monitor_poll_fds(&self, pfds: &mut Vec<libc::pollfd>) -> std::ops::Range<usize> {
        let first = pfds.len();
        if let Some(v2) = self.v2.as_ref() {
            for (fd, out) in v2.monitors.poll_fds() {
                pfds.push(libc::pollfd {
                    fd,
                    events: if out { libc::POLLOUT } else { 0 },
                    revents: 0,
                });
            }
        }
        first..pfds.len()
    }

    /// After poll (`polled`: the monitors' entries) and the wake-up's work: hung-up
    /// monitors go, and the others hear what changed in the engine's SAs.
    pub(crate) fn monitor_wakeup(&mut self, polled: &[libc::pollfd]) {
        let Some(v2) = self.v2.as_mut() else { return };
        if v2.monitors.is_empty() {
            return;
        }
        let revents: Vec<i16> = polled.iter().map(|p| p.revents).collect();
        v2.monitors.polled(&revents);
        v2.monitors.observe(&v2.engine);
    }

    /// One ikectl(8) command.
    fn control_command(&mut self, now: Time, line: &str, body: &str) -> Result<String, String> {
        let cmd = parse_command(line);
        let v2 = self.v2.as_mut().ok_or("not running as iked")?;
        crate::log_info!(
            "control: {}",
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let cmd = cmd?;
        if !matches!(cmd, Command::Show(w) if !SHOW.contains(&w)) {
            v2.monitors
                .emit(&crate::iked::monitor_ctl::command_event(&cmd, line));
        }
        match cmd {
            Command::Show("sa") => Ok(v2.show_sa(now)),
            Command::Show("flows") => Ok(v2.show_flows(now)),
            Command::Show("stats") => Ok(v2.show_stats()),
            Command::Show("certstore") => Ok(v2.certstore.show()),
            Command::Reload => self.reload_iked(now).map(|_| String::new()),
            Command::Load(path) => {
                let setup = self.parse_iked(now, body, path)?;
                self.apply_iked(now, setup, path, false);
                Ok(String::new())
            }
            // iked(8) reloads its CA store (and our key and certificate) on `reset ca`.
            Command::Reset("ca", None) => {
                self.load_credentials();
                Ok(String::new())
            }
            Command::Reset(what, id) => {
                let n = match (what, id) {
                    ("sa", None) => v2.delete_all(now),
                    ("policy", None) => {
                        // The users stay (iked: `reset user` drops them).
                        let users = v2.engine.eap_users().to_vec();
                        v2.apply(
                            now,
                            crate::iked::runtime::Setup {
                                dpd_secs: v2.setup.dpd_secs,
                                ..Default::default()
                            },
                        );
                        v2.engine.set_eap_users(users);
                        0
                    }
                    ("all", None) => {
                        let n = v2.delete_all(now);
                        v2.apply(now, crate::iked::runtime::Setup::default());
                        n
                    }
                    // iked(8): the users go until the next reload reads them again.
                    ("user", None) => {
                        let n = v2.engine.eap_users().len();
                        v2.engine.set_eap_users(Vec::new());
                        crate::log_info!("{n} EAP user(s) dropped");
                        0
                    }
                    ("id", Some(id)) => {
                        let names: Vec<String> = v2
                            .setup
                            .policy
                            .peers
                            .iter()
                            .filter(|p| {
                                p.remote_id
                                    .as_ref()
                                    .is_some_and(|r| r.data == id.as_bytes())
                            })
                            .map(|p| p.name.clone())
                            .collect();
                        names
                            .iter()
                            .map(|n| v2.engine.delete_ike(now, IkeRef::Peer(n)))
                            .sum()
                    }
                    _ => return Err(format!("reset {what}: unknown")),
                };
                Ok(format!("{n} IKE SA(s) deleted\n"))
            }
            Command::Active => {
                v2.passive = false;
                v2.start_policies(now);
                v2.sync_flows();
                Ok(String::new())
            }
            Command::Passive => {
                v2.passive = true;
                v2.sync_flows();
                Ok(String::new())
            }
            Command::Couple => {
                v2.set_decoupled(false);
                Ok(String::new())
            }
            Command::Decouple => {
                v2.set_decoupled(true);
                Ok(String::new())
            }
            Command::Log(verbose) => {
                crate::log::set_verbose(verbose);
                Ok(String::new())
            }
            // Taken by serve_client.
            Command::Monitor => Err("monitor: not here".into()),
            Command::Show(_) => Err(format!("unknown command '{line}'")),
        }
    }

    /// SIGHUP and `ikectl reload`: read iked.conf again through the monitor, and the key
    /// material of /etc/iked. A file that does not parse leaves the running policies (and
    /// credentials) in force.
    pub(crate) fn reload_iked(&mut self, now: Time) -> Result<(), String> {
        let path = self.opts.config.clone();
        let text = self.read_config();
        let r = text.and_then(|t| self.parse_iked(now, &t, &path));
        match r {
            Ok(setup) => {
                self.apply_iked(now, setup, &path, true);
                Ok(())
            }
            Err(e) => {
                self.counters.reload_failures += 1;
                crate::log_error!("reload failed, keeping the running configuration: {e}");
                Err(e)
            }
        }
    }

    fn parse_iked(
        &mut self,
        _now: Time,
        text: &str,
        path: &str,
    ) -> Result<crate::iked::runtime::Setup, String> {
        let macros = self
            .opts
            .iked
            .as_ref()
            .map(|i| i.macros.clone())
            .unwrap_or_default();
        let monitor = &self.monitor;
        crate::iked::runtime::from_text(text, path, &macros, &mut |p: &str| {
            let fd = monitor.open_include(p)?;
            let mut t = String::new();
            std::fs::File::from(fd)
                .read_to_string(&mut t)
                .map_err(|e| format!("{p}: {e}"))?;
            Ok(t)
        })
    }

    /// Puts a new configuration in force; with `credentials`, reads /etc/iked again too
    /// (else only warns about the new rules that cannot sign), before the active
    /// policies start.
    fn apply_iked(
        &mut self,
        now: Time,
        setup: crate::iked::runtime::Setup,
        path: &str,
        credentials: bool,
    ) {
        for w in &setup.warnings {
            crate::log_warn!("{path}: {w}");
        }
        if let Some(v2) = self.v2.as_mut() {
            v2.apply(now, setup);
            v2.monitors.policies(&v2.setup);
        }
        if credentials {
            self.load_credentials();
        } else if let Some(v2) = self.v2.as_ref() {
            v2.warn_signers();
        }
        if let Some(v2) = self.v2.as_mut() {
            v2.start_policies(now);
        }
        self.counters.reloads += 1;
        crate::log_info!("reloaded configuration from {path}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_blanks_come_through_whole() {
        // What ikectl sends for `ikectl reset id "asn1dn/C=ZZ/CN=two words"`.
        let (line, _) = split_request(b"reset id asn1dn/C=ZZ/CN=two words\n");
        assert_eq!(
            parse_command(&line),
            Ok(Command::Reset("id", Some("asn1dn/C=ZZ/CN=two words")))
        );
        let (line, body) = split_request(b"load /tmp/my iked.conf\nset passive\n");
        assert_eq!(parse_command(&line), Ok(Command::Load("/tmp/my iked.conf")));
        assert_eq!(body, "set passive\n");
        // A hand-written client's blanks around keywords are fine.
        assert_eq!(parse_command("  show \t sa \r"), Ok(Command::Show("sa")));
        assert_eq!(
            parse_command("reset  id x"),
            Ok(Command::Reset("id", Some("x")))
        );
        assert!(parse_command("load").is_err());
        assert!(parse_command("reset id").is_err());
        assert!(parse_command("reset id ").is_err());
        assert!(parse_command("").is_err());
    }
}
