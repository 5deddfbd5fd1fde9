//! The administrative interface of the running daemon: commands from the FIFO (or stdin
//! with `-f -`), as isakmpd's ui.c handles them, and the reload that SIGHUP and `R` share.
//!
//! Lines are read by `fifo.rs` and parsed by `fifo::parse_command`; here they are logged
//! (secrets masked, control characters escaped), counted, and carried out on the engine,
//! the configuration or the daemon. Garbled lines are warned about, a burst per second at
//! most, so that a flood of them cannot flood the log as well.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;

use crate::args::{DebugSelector, DEFAULT_PCAP};
use crate::conf::{Conf, ConfError, EditError};
use crate::event::Daemon;
use crate::fifo::{Command, ConfCmd, DebugCmd, Line};
use crate::ike::Request;
use crate::log::{self as ilog, DebugClass};
use crate::timer::Time;

/// FIFO reads per wake-up (4 KiB each).
const FIFO_READS_PER_WAKE: usize = 16;
/// Garbled-line warnings per second before they are summarised.
const WARN_BURST: u32 = 10;

/// Limits repeated warnings (garbled FIFO lines) to a burst per second.
#[derive(Default)]
pub(crate) struct RateLimit {
    window: u64,
    count: u32,
    suppressed: u64,
}

impl RateLimit {
    fn allow(&mut self, now: Time) -> bool {
        let w = now.millis() / 1000;
        if w != self.window {
            if self.suppressed > 0 {
                crate::log_warn!("{} further garbled FIFO lines not logged", self.suppressed);
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

impl Daemon {
    pub(crate) fn read_fifo(&mut self, now: Time) {
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
            crate::log_warn!("ui: ignoring command: {what}");
        }
    }

    pub fn handle_command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Quit => {
                crate::log_info!("ui: shutdown requested");
                self.quit = true;
            }
            Command::Reload => self.reload(),
            // Both isakmpd(8)s: the report file (the older manual) and the log (the
            // current one).
            Command::Report => {
                self.write_report(now);
                let transports: Vec<(i32, std::net::SocketAddr, bool)> = self
                    .transports
                    .iter()
                    .map(|t| (t.fd(), t.local, t.encap))
                    .collect();
                crate::report::log_report(&self.engine, now, &transports, &self.conf, |l| {
                    crate::log::report(l)
                });
            }
            Command::SaReport => {
                let mut out = String::new();
                crate::report::sa_report(&self.engine, now, &mut out);
                self.write_result(&out);
            }
            Command::Debug(DebugCmd::Toggle) => ilog::toggle_debug(),
            Command::Debug(DebugCmd::Set(sel, level)) => apply_debug(sel, level),
            Command::Passive(p) => {
                self.engine.set_passive(p);
                crate::log_info!(
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
            Ok(msg) => crate::log_info!("ui: {msg}"),
            Err(msg) => crate::log_warn!("ui: {msg}"),
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
            Err(e) => crate::log_warn!("ui: {what}: {e}"),
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
                    crate::log_warn!("{path}: {w}");
                }
                self.conf = p.conf;
                self.engine.configure(&self.conf);
                self.load_credentials();
                self.reload_policy();
                self.reinit = true;
                self.counters.reloads += 1;
                crate::log_info!("reloaded configuration from {path}");
            }
            Err(e) => {
                self.counters.reload_failures += 1;
                crate::log_error!("reload failed, keeping the running configuration: {e}");
            }
        }
    }

    pub(crate) fn read_config(&self) -> Result<String, String> {
        let fd = self.monitor.open_config()?;
        let mut f = File::from(fd);
        let mut text = String::new();
        f.read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", self.opts.config))?;
        Ok(text)
    }
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
