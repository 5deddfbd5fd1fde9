//! The IKEv1 protocol engine, sans-IO.
//!
//! Everything the engine knows arrives as an argument: datagrams with their addresses
//! ([`Engine::handle_datagram`]), administrative commands ([`Engine::handle_command`]) and
//! the time ([`Time`], from the event loop, the only place that reads a clock). What it
//! wants done leaves through `poll_*` calls: datagrams to send ([`Engine::poll_transmit`])
//! and the next deadline ([`Engine::poll_timeout`]). It never touches a socket, a clock or
//! the OS random generator, which keeps it deterministic under test and under `-r seed`.
//!
//! This is the foundation stage: the engine keeps its timer wheel and the configured
//! connections, counts and drops datagrams, and answers the SA commands with "no such SA".
//! Exchanges, SAs and their tables come with the wire format and exchange work.

#![forbid(unsafe_code)]

pub mod crypto;
pub mod wire;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::conf::Conf;
use crate::fifo::Phase;
use crate::timer::{Time, TimerWheel};

/// What the engine needs from the command line.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub passive: bool,
    pub seed: Option<u64>,
    pub no_kernel: bool,
    pub no_nat_t: bool,
    pub acquire_only: bool,
}

/// Administrative requests routed to the engine (from the FIFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect(String),
    Teardown {
        phase: Phase,
        name: String,
    },
    TeardownAll,
    Delete {
        icookie: [u8; 8],
        rcookie: [u8; 8],
        msgid: Option<[u8; 4]>,
    },
}

/// Engine timers. None are armed yet; the wheel is in place for the exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Retransmission of an exchange's last message.
    Retransmit(u32),
}

/// A datagram for the event loop to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub len: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_received: u64,
    pub datagrams_dropped: u64,
    pub bytes_received: u64,
}

/// Maximum number of armed timers.
pub const TIMER_CAPACITY: usize = 1024;

pub struct Engine {
    cfg: EngineConfig,
    timers: TimerWheel<TimerKind>,
    connections: Vec<String>,
    passive_connections: Vec<String>,
    outbox: VecDeque<(Transmit, Vec<u8>)>,
    stats: Stats,
}

/// The smallest ISAKMP message: the fixed header (RFC 2408 3.1).
pub const ISAKMP_HEADER_LEN: usize = 28;

impl Engine {
    pub fn new(cfg: EngineConfig, conf: &Conf, now: Time) -> Engine {
        let mut e = Engine {
            cfg,
            timers: TimerWheel::new(TIMER_CAPACITY, now),
            connections: Vec::new(),
            passive_connections: Vec::new(),
            outbox: VecDeque::new(),
            stats: Stats::default(),
        };
        e.configure(conf);
        e
    }

    /// Takes a new configuration (startup, SIGHUP, FIFO `R` and `C` edits).
    pub fn configure(&mut self, conf: &Conf) {
        self.connections = conf.get_list("Phase 2", "Connections");
        self.passive_connections = conf.get_list("Phase 2", "Passive-connections");
    }

    pub fn set_passive(&mut self, passive: bool) {
        self.cfg.passive = passive;
    }

    pub fn passive(&self) -> bool {
        self.cfg.passive
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// One received datagram. Without the exchange machinery every message is dropped;
    /// the header-length check already follows message.c (`len < 28` is dropped silently).
    pub fn handle_datagram(
        &mut self,
        _now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += data.len() as u64;
        self.stats.datagrams_dropped += 1;
        if data.len() < ISAKMP_HEADER_LEN {
            crate::ike_debug!(
                crate::log::DebugClass::Message,
                10,
                "drop {}-byte datagram from {remote} to {local}: shorter than an ISAKMP header",
                data.len()
            );
        } else {
            crate::ike_debug!(
                crate::log::DebugClass::Message,
                10,
                "drop {}-byte message from {remote} to {local}: no exchange handling yet",
                data.len()
            );
        }
    }

    /// A FIFO request. The answer is the line to log.
    pub fn handle_command(&mut self, _now: Time, req: Request) -> Result<String, String> {
        match req {
            Request::Connect(name) => {
                if self
                    .connections
                    .iter()
                    .chain(&self.passive_connections)
                    .any(|c| c == &name)
                {
                    Err(format!(
                        "connection {name}: cannot be started, no IKE exchanges in this build"
                    ))
                } else {
                    Err(format!("connection {name}: no such connection"))
                }
            }
            Request::Teardown { phase, name } => Err(format!(
                "no such {} SA: {name}",
                if phase == Phase::Main {
                    "phase 1"
                } else {
                    "phase 2"
                }
            )),
            Request::TeardownAll => Ok("no active connections to tear down".into()),
            Request::Delete {
                icookie,
                rcookie,
                msgid,
            } => Err(format!(
                "no such SA: {}{} {}",
                hex(&icookie),
                hex(&rcookie),
                msgid.map_or("-".to_string(), |m| hex(&m))
            )),
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.timers.expire(now, |_, kind| match kind {
            TimerKind::Retransmit(_) => {}
        });
    }

    /// The next datagram to send, copied into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.cfg.passive {
            // Passive mode (-S, `M passive`): nothing is sent.
            self.outbox.clear();
            return None;
        }
        let (mut t, data) = self.outbox.pop_front()?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        t.len = n;
        Some(t)
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next_deadline()
    }

    /// Starts a clean shutdown (DELETE for every SA unless passive, once SAs exist).
    pub fn shutdown(&mut self, _now: Time) {}

    /// True once nothing is left to send.
    pub fn is_drained(&self) -> bool {
        self.outbox.is_empty()
    }

    /// `S`: every SA, in isakmpd's result-file layout. No SAs yet, so nothing.
    pub fn sa_report(&self, _out: &mut String) {}

    /// The engine's part of the SIGUSR1 report.
    pub fn report(&self, now: Time, out: &mut String) {
        let s = &self.stats;
        let _ = writeln!(out, "datagrams-received: {}", s.datagrams_received);
        let _ = writeln!(out, "datagrams-dropped: {}", s.datagrams_dropped);
        let _ = writeln!(out, "bytes-received: {}", s.bytes_received);
        let _ = writeln!(out, "exchanges: 0");
        let _ = writeln!(out, "sas: 0");
        for c in &self.connections {
            let _ = writeln!(out, "connection: {c} (not established)");
        }
        for c in &self.passive_connections {
            let _ = writeln!(out, "passive-connection: {c}");
        }
        for (deadline, kind) in self.timers.iter() {
            let _ = writeln!(out, "timer: {kind:?} in {} ms", now.until(deadline));
        }
        let _ = writeln!(
            out,
            "random: {}",
            match self.cfg.seed {
                Some(s) => format!("deterministic (seed {s})"),
                None => "system".into(),
            }
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_and_drops_datagrams_and_answers_commands() {
        let conf = Conf::parse("[Phase 2]\nConnections=a,b\nPassive-connections=p\n")
            .unwrap()
            .conf;
        let mut e = Engine::new(EngineConfig::default(), &conf, Time(0));
        e.handle_datagram(
            Time(1),
            addr("192.0.2.1:500"),
            addr("192.0.2.2:500"),
            &[0; 10],
        );
        e.handle_datagram(
            Time(1),
            addr("192.0.2.1:500"),
            addr("192.0.2.2:500"),
            &[0; 60],
        );
        assert_eq!(
            e.stats(),
            Stats {
                datagrams_received: 2,
                datagrams_dropped: 2,
                bytes_received: 70
            }
        );
        let mut buf = [0u8; 1500];
        assert_eq!(e.poll_transmit(&mut buf), None);
        assert_eq!(e.poll_timeout(), None);
        assert!(e
            .handle_command(Time(2), Request::Connect("zz".into()))
            .unwrap_err()
            .contains("no such connection"));
        assert!(e
            .handle_command(Time(2), Request::Connect("b".into()))
            .unwrap_err()
            .contains("cannot be started"));
        let mut r = String::new();
        e.report(Time(3), &mut r);
        assert!(r.contains("connection: a"));
        assert!(r.contains("passive-connection: p"));
    }
}
