//! The report (SIGUSR1, FIFO `r`) and result (`S`, `C get`) files.
//!
//! The report is plain text in a fixed layout: `== part ==` headings, then `key: value`
//! lines, then the running configuration as isakmpd.conf text. Tests and people read the
//! same file. Secrets never appear: pre-shared keys (`Authentication` tags) are masked.
//! Both files are opened by the privileged parent (monitor.rs `open_run_file`).

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;

use crate::args::RESULT_FILE;
use crate::conf::defaults;
use crate::conf::Conf;
use crate::event::{dialect_name, Daemon};
use crate::ike::sa::hex;
use crate::ike::wire::EncapsulationMode;
use crate::ike::Engine;
use crate::log::{self as ilog, DebugClass};
use crate::monitor::WriteKind;
use crate::sys;
use crate::timer::Time;

/// Tags whose values are secrets and are masked in reports.
const SECRET_TAGS: &[&str] = &["Authentication"];

pub const MASK: &str = "<hidden>";

pub fn is_secret(tag: &str) -> bool {
    SECRET_TAGS.iter().any(|s| s.eq_ignore_ascii_case(tag))
}

pub fn heading(out: &mut String, name: &str) {
    let _ = writeln!(out, "== {name} ==");
}

/// The running configuration in isakmpd.conf syntax, secrets masked.
pub fn conf_dump(conf: &Conf, out: &mut String) {
    for s in conf.sections() {
        let _ = writeln!(out, "[{}]", s.name);
        for b in &s.bindings {
            let v = if is_secret(&b.tag) {
                MASK
            } else {
                b.value.as_str()
            };
            let _ = writeln!(out, "{}=\t{}", b.tag, v);
        }
        out.push('\n');
    }
    let (mm, qm) = defaults::generated_counts();
    let _ = writeln!(
        out,
        "# plus isakmpd's generated defaults ({mm} main mode transforms, {qm} quick mode suites), resolved on demand"
    );
}

impl Daemon {
    pub(crate) fn write_result(&mut self, text: &str) {
        match self.monitor.open_write(WriteKind::Result, RESULT_FILE) {
            Ok(fd) => {
                if let Err(e) = File::from(fd).write_all(text.as_bytes()) {
                    crate::log_error!("{RESULT_FILE}: {e}");
                }
            }
            Err(e) => crate::log_error!("{e}"),
        }
    }

    pub(crate) fn write_report(&mut self, now: Time) {
        let text = self.report(now);
        let path = self.opts.report_file.clone();
        match self.monitor.open_write(WriteKind::Report, &path) {
            Ok(fd) => match File::from(fd).write_all(text.as_bytes()) {
                Ok(()) => {
                    self.counters.reports += 1;
                    crate::log_info!("report written to {path}");
                }
                Err(e) => crate::log_error!("{path}: {e}"),
            },
            Err(e) => crate::log_error!("{e}"),
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
            crate::keynote::describe(self.keynote.as_deref(), &self.keynote_off)
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
        engine_report(&self.engine, now, &mut o);
        crate::report::heading(&mut o, "configuration");
        crate::report::conf_dump(&self.conf, &mut o);
        o
    }
}

/// isakmpd's SA flags (sa.h), as the result file shows them.
const SA_FLAG_READY: u32 = 0x01;
const SA_FLAG_STAYALIVE: u32 = 0x02;
const SA_FLAG_REPLACED: u32 = 0x08;
const SA_FLAG_FADING: u32 = 0x10;
const SA_FLAG_DPD: u32 = 0x80;
const SA_FLAG_NAT_T_ENABLE: u32 = 0x100;
const SA_FLAG_NAT_T_KEEPALIVE: u32 = 0x200;

/// isakmpd's flags of a phase 1 SA: READY, STAYALIVE on ours (we keep it up), FADING
/// past the soft timeout on the side that does not renegotiate it (sa.c
/// `sa_soft_expire`), DPD, NAT_T_ENABLE and NAT_T_KEEPALIVE (we are the one behind the NAT).
fn isakmp_flags(s: &crate::ike::sa::IsakmpSa, now: Time) -> u32 {
    let mut flags = SA_FLAG_READY;
    if s.initiator {
        flags |= SA_FLAG_STAYALIVE;
    } else if s.soft_expiry.is_some_and(|t| t <= now) {
        flags |= SA_FLAG_FADING;
    }
    if s.dpd.peer {
        flags |= SA_FLAG_DPD;
    }
    if let Some(n) = s.nat_t.filter(|n| n.detected()) {
        flags |= SA_FLAG_NAT_T_ENABLE;
        if n.local_behind {
            flags |= SA_FLAG_NAT_T_KEEPALIVE;
        }
    }
    flags
}

/// isakmpd's flags of a phase 2 SA: READY, STAYALIVE on ours, REPLACED after a rekey,
/// FADING past the soft lifetime (at `now`), NAT_T_ENABLE when UDP-encapsulated.
fn ipsec_flags(s: &crate::ike::sa::IpsecSa, now: Time) -> u32 {
    let mut flags = SA_FLAG_READY;
    if s.initiator {
        flags |= SA_FLAG_STAYALIVE;
    }
    if s.rekeyed {
        flags |= SA_FLAG_REPLACED;
    }
    if s.soft_expiry.is_some_and(|t| t <= now) {
        flags |= SA_FLAG_FADING;
    }
    if s.encap.is_some() {
        flags |= SA_FLAG_NAT_T_ENABLE;
    }
    flags
}

/// A phase 2 ID as an address, `address/prefix` or `first-last`, then ` proto N` and
/// ` port N` when it has them; `?` for an ID that is not an address.
pub fn id_text(id: &crate::ike::policy::OwnedId) -> String {
    use crate::ike::wire::IdType;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = |b: &[u8]| -> Option<IpAddr> {
        match b.len() {
            4 => <[u8; 4]>::try_from(b)
                .ok()
                .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            16 => <[u8; 16]>::try_from(b)
                .ok()
                .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            _ => None,
        }
    };
    let d = &id.data;
    let h = d.len() / 2;
    let text = match id.ty {
        IdType::IPV4_ADDR | IdType::IPV6_ADDR => ip(d).map(|a| a.to_string()),
        IdType::IPV4_ADDR_SUBNET | IdType::IPV6_ADDR_SUBNET => ip(&d[..h]).map(|a| {
            let bits: u32 = d[h..].iter().map(|b| b.count_ones()).sum();
            format!("{a}/{bits}")
        }),
        IdType::IPV4_ADDR_RANGE | IdType::IPV6_ADDR_RANGE => match (ip(&d[..h]), ip(&d[h..])) {
            (Some(a), Some(b)) => Some(format!("{a}-{b}")),
            _ => None,
        },
        _ => None,
    };
    let mut t = text.unwrap_or_else(|| "?".into());
    if id.protocol != 0 {
        let _ = write!(t, " proto {}", id.protocol);
    }
    if id.port != 0 {
        let _ = write!(t, " port {}", id.port);
    }
    t
}

/// `S`: every SA, in isakmpd's result-file layout (sa.c `sa_dump_all`): its lines in its
/// order, then what we add (after them, never instead). isakmpd leaves a phase 2 SA's
/// timeouts to the kernel, so ours follow its algorithm lines.
pub fn sa_report(e: &Engine, now: Time, out: &mut String) {
    let left = |t: Time| now.until(t) / 1000;
    for s in e.isakmp_sas() {
        let _ = writeln!(
            out,
            "SA name: {} (Phase 1/{})",
            s.peer,
            if s.initiator {
                "Initiator"
            } else {
                "Responder"
            }
        );
        let _ = writeln!(out, "src: {} dst: {}", s.local.ip(), s.remote.ip());
        if s.lifetime > 0 {
            let _ = writeln!(out, "Lifetime: {} seconds", s.lifetime);
        }
        // sa.c: the soft timeout's line while it is still to come.
        if let Some(t) = s.soft_expiry.filter(|&t| t > now) {
            let _ = writeln!(out, "Soft timeout in {} seconds", left(t));
        }
        if let Some(t) = s.hard_expiry {
            let _ = writeln!(out, "Hard timeout in {} seconds", left(t));
        }
        let _ = writeln!(out, "Flags 0x{:08x}", isakmp_flags(s, now));
        let _ = writeln!(
            out,
            "icookie {} rcookie {}",
            hex(&s.icookie),
            hex(&s.rcookie)
        );
        // Ours.
        let _ = writeln!(
            out,
            "Transform: {} {} group {}",
            s.cipher.name(),
            s.hash.name(),
            s.group.number()
        );
        let _ = writeln!(out, "Established: {} s", s.established.millis() / 1000);
        let _ = writeln!(out);
    }
    for s in e.ipsec_sas() {
        let _ = writeln!(out, "SA name: {} (Phase 2)", s.name);
        let _ = writeln!(out, "src: {} dst: {}", s.local.ip(), s.remote.ip());
        if s.lifetime > 0 {
            let _ = writeln!(out, "Lifetime: {} seconds", s.lifetime);
        }
        if s.kbytes > 0 {
            let _ = writeln!(out, "Lifetime: {} kilobytes", s.kbytes);
        }
        let _ = writeln!(out, "Flags 0x{:08x}", ipsec_flags(s, now));
        // isakmpd's report_spi: groups of four bytes, each followed by a blank.
        let _ = writeln!(out, "SPI 0: {} ", hex(&s.spi_out));
        let _ = writeln!(out, "SPI 1: {} ", hex(&s.spi_in));
        if s.protocol == crate::ike::wire::ProtocolId::IPSEC_AH {
            let _ = writeln!(out, "Transform: IPsec AH");
            let _ = writeln!(out, "Encryption not used.");
            let _ = writeln!(out, "Authentication key length: {}", s.auth_key_len);
        } else {
            let _ = writeln!(out, "Transform: IPsec ESP");
            let _ = writeln!(out, "Encryption key length: {}", s.enc_key_len);
            let _ = writeln!(out, "Authentication key length: {}", s.auth_key_len);
            let _ = writeln!(
                out,
                "Encryption algorithm: {}",
                crate::ike::ipsec_alg::cipher_name(s.protocol, s.transform)
            );
        }
        let _ = writeln!(
            out,
            "Authentication algorithm: {}",
            s.auth.map_or("none", crate::ike::ipsec_alg::integrity_name)
        );
        // Ours. The mode and the traffic selectors, for `ipsecctl -s` (show.rs).
        let tunnel = matches!(
            s.encapsulation,
            EncapsulationMode::TUNNEL
                | EncapsulationMode::UDP_ENCAP_TUNNEL
                | EncapsulationMode::UDP_ENCAP_TUNNEL_DRAFT
        );
        let _ = writeln!(out, "Mode: {}", if tunnel { "tunnel" } else { "transport" });
        let _ = writeln!(out, "Local-ID: {}", id_text(&s.local_id));
        let _ = writeln!(out, "Remote-ID: {}", id_text(&s.remote_id));
        if let Some(t) = s.soft_expiry.filter(|&t| t > now) {
            let _ = writeln!(out, "Soft timeout in {} seconds", left(t));
        }
        if let Some(t) = s.hard_expiry {
            let _ = writeln!(out, "Hard timeout in {} seconds", left(t));
        }
        let _ = writeln!(
            out,
            "icookie {} rcookie {}",
            hex(&s.icookie),
            hex(&s.rcookie)
        );
        let _ = writeln!(out);
    }
}

/// FIFO `r` as the current isakmpd(8) does it: the report into the log as `Report>`
/// lines (ui.c `ui_report`: sa_report, exchange_report, transport_report,
/// connection_report, timer_report, conf_report), each line shaped as isakmpd's. Where isakmpd prints
/// a pointer, the line has the slot's handle; the configuration is dumped with its
/// secrets masked (isakmpd's dump shows pre-shared keys).
pub fn log_report(
    e: &Engine,
    now: Time,
    transports: &[(i32, std::net::SocketAddr, bool)],
    conf: &Conf,
    mut line: impl FnMut(std::fmt::Arguments<'_>),
) {
    let id = |h: crate::ike::sa::Handle| (u64::from(h.gen) << 32) | u64::from(h.idx);
    for (h, s) in e.isakmp_sa_handles() {
        let flags = isakmp_flags(s, now);
        line(format_args!(
            "sa_report: 0x{:x} {} phase 1 doi 1 flags 0x{flags:x}",
            id(h),
            s.peer
        ));
        line(format_args!(
            "sa_report: icookie {} rcookie {}",
            hex(&s.icookie),
            hex(&s.rcookie)
        ));
        line(format_args!("sa_report: msgid 00000000"));
        line(format_args!("sa_report: life secs {} kb 0", s.lifetime));
        line(format_args!("sa_report: suite 1 proto 1"));
        line(format_args!(
            "sa_report: src: {} dst: {}",
            s.local.ip(),
            s.remote.ip()
        ));
    }
    for (h, s) in e.ipsec_sa_handles() {
        line(format_args!(
            "sa_report: 0x{:x} {} phase 2 doi 1 flags 0x{:x}",
            id(h),
            s.name,
            ipsec_flags(s, now)
        ));
        line(format_args!(
            "sa_report: icookie {} rcookie {}",
            hex(&s.icookie),
            hex(&s.rcookie)
        ));
        line(format_args!(
            "sa_report: life secs {} kb {}",
            s.lifetime, s.kbytes
        ));
        line(format_args!("sa_report: suite 1 proto {}", s.protocol.0));
        line(format_args!(
            "sa_report: src: {} dst: {}",
            s.local.ip(),
            s.remote.ip()
        ));
        for (i, spi) in [s.spi_out, s.spi_in].iter().enumerate() {
            line(format_args!("sa_report: spi[{i}]:"));
            line(format_args!("{} ", hex(spi)));
        }
    }
    for (h, x) in e.exchange_handles() {
        let (name, policy) = match (&x.connection, x.kind) {
            (Some(c), _) => (c.as_str(), "quick-mode"),
            (None, crate::ike::exchange::Kind::Quick) => (x.peer.as_str(), "quick-mode"),
            (None, crate::ike::exchange::Kind::Aggressive) => (x.peer.as_str(), "aggressive-mode"),
            (None, crate::ike::exchange::Kind::Transaction) => (x.peer.as_str(), "mode-config"),
            (None, crate::ike::exchange::Kind::Main) => (x.peer.as_str(), "main-mode"),
        };
        let (phase, ty) = match x.kind {
            crate::ike::exchange::Kind::Main => (1, 2),
            crate::ike::exchange::Kind::Aggressive => (1, 4),
            crate::ike::exchange::Kind::Quick => (2, 32),
            crate::ike::exchange::Kind::Transaction => (2, 6),
        };
        line(format_args!(
            "exchange_report: 0x{:x} {name} {policy} policy {} phase {phase} doi 1 exchange {ty} step {}",
            id(h),
            if x.initiator {
                "initiator"
            } else {
                "responder"
            },
            x.message()
        ));
        line(format_args!(
            "exchange_report: icookie {} rcookie {}",
            hex(&x.icookie),
            hex(&x.rcookie)
        ));
        line(format_args!("exchange_report: msgid {:08x} ", x.msgid));
    }
    for (fd, local, encap) in transports {
        line(format_args!(
            "transport_report: transport {fd} flags 1 refcnt 1"
        ));
        line(format_args!(
            "{}: fd {fd} src {local} dst <none>:0",
            if *encap {
                "udp_encap_report"
            } else {
                "udp_report"
            }
        ));
    }
    for (name, passive, _) in e.listed_connections() {
        line(format_args!(
            "connection_report: {}connection {name}",
            if *passive { "passive " } else { "" }
        ));
    }
    // timer_report, with the names of isakmpd's events where it has one.
    for (deadline, kind) in e.timers() {
        use crate::ike::TimerKind as K;
        let (name, h) = match kind {
            K::Exchange(h) => ("message_send_expire", h),
            K::IsakmpExpire(h) | K::IpsecExpire(h) => ("sa_hard_expire", h),
            K::IsakmpSoft(h) | K::IpsecSoft(h) => ("sa_soft_expire", h),
            K::IpsecOutbound(h) => ("ipsec_outbound_switch", h),
            K::Dpd(h) => ("dpd_check_event", h),
            K::Keepalive(h) => ("nat_t_send_keepalive", h),
        };
        line(format_args!(
            "timer_report: event {name}(0x{:x}) scheduled in {} seconds",
            id(h),
            now.until(deadline) / 1000
        ));
    }
    line(format_args!("conf_report: dumping running configuration"));
    let mut dump = String::new();
    conf_dump(conf, &mut dump);
    for l in dump.lines() {
        line(format_args!("{l}"));
    }
}

/// The engine's part of the SIGUSR1 report.
pub fn engine_report(e: &Engine, now: Time, out: &mut String) {
    let s = e.stats();
    let _ = writeln!(out, "datagrams-received: {}", s.datagrams_received);
    let _ = writeln!(out, "datagrams-dropped: {}", s.datagrams_dropped);
    let _ = writeln!(out, "bytes-received: {}", s.bytes_received);
    let _ = writeln!(out, "phase1-done: {}", s.phase1_done);
    let _ = writeln!(out, "phase2-done: {}", s.phase2_done);
    let _ = writeln!(out, "exchanges-failed: {}", s.failed);
    let _ = writeln!(out, "retransmits: {}", s.retransmits);
    let _ = writeln!(out, "half-open: {}", e.half_open_exchanges());
    let _ = writeln!(out, "half-open-evicted: {}", s.half_open_evicted);
    let _ = writeln!(out, "half-open-expired: {}", s.half_open_expired);
    let _ = writeln!(out, "notifies-suppressed: {}", s.notifies_suppressed);
    for (k, n) in crate::ike::DropKind::ALL.iter().zip(s.drops) {
        let _ = writeln!(out, "dropped-{}: {n}", k.name().replace(' ', "-"));
    }
    let _ = writeln!(out, "exchanges: {}", e.exchanges().count());
    for x in e.exchanges() {
        let _ = writeln!(
            out,
            "exchange: {} {} step {} peer {}",
            x.name(),
            if x.initiator {
                "initiator"
            } else {
                "responder"
            },
            x.message(),
            x.remote,
        );
    }
    let _ = writeln!(
        out,
        "sas: {}",
        e.isakmp_sas().count() + e.ipsec_sas().count()
    );
    for sa in e.isakmp_sas() {
        let _ = writeln!(
            out,
            "sa: phase 1 {} icookie {} rcookie {} peer {} life {} s",
            sa.peer,
            hex(&sa.icookie),
            hex(&sa.rcookie),
            sa.remote,
            sa.hard_expiry.map_or(0, |t| now.until(t) / 1000)
        );
    }
    for sa in e.ipsec_sas() {
        let _ = writeln!(
            out,
            "sa: phase 2 {} {} spi in {} out {} peer {} life {} s",
            sa.name,
            sa.protocol,
            hex(&sa.spi_in),
            hex(&sa.spi_out),
            sa.remote,
            sa.hard_expiry.map_or(0, |t| now.until(t) / 1000)
        );
    }
    for (name, passive, why) in e.listed_connections() {
        let up = e.ipsec_sas().any(|s| &s.name == name);
        let state = match why {
            Some(w) => format!("not usable: {w}"),
            None if up => "established".into(),
            None => "not established".into(),
        };
        let _ = writeln!(
            out,
            "{}connection: {name} ({state})",
            if *passive { "passive-" } else { "" },
        );
    }
    for (deadline, kind) in e.timers() {
        let _ = writeln!(out, "timer: {kind:?} in {} ms", now.until(deadline));
    }
    let _ = writeln!(
        out,
        "random: {}",
        match e.seed() {
            Some(s) => format!("deterministic (seed {s})"),
            None => "system".into(),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let c = Conf::parse("[peer]\nAuthentication=s3cret\nAddress=192.0.2.1\n")
            .unwrap()
            .conf;
        let mut out = String::new();
        conf_dump(&c, &mut out);
        assert!(!out.contains("s3cret"));
        assert!(out.contains("Authentication=\t<hidden>"));
        assert!(out.contains("Address=\t192.0.2.1"));
    }
}
