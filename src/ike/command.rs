//! Administrative requests (isakmpd's FIFO `c`, `t`, `T`, `D`) and the active
//! connections the engine keeps up: started at load, after `c`, and again whenever one
//! has neither an SA nor an exchange.

use std::net::IpAddr;

use super::sa::{hex, Handle};
use super::{Engine, Phase, Request};
use crate::timer::Time;

impl Engine {
    /// Starts every configured active connection that has no phase 2 SA or exchange.
    pub fn start_connections(&mut self, now: Time) {
        if self.io.passive {
            return;
        }
        for name in self.wanted.clone() {
            if !self.connection_busy(&name) {
                if let Err(e) = self.connect(now, &name) {
                    crate::log_warn!("connection {name}: {e}");
                }
            }
        }
    }

    /// Whether a connection is up or coming up: an IPsec SA that is not being replaced
    /// (one past its soft lifetime counts as gone), or an exchange for it.
    pub(crate) fn connection_busy(&self, name: &str) -> bool {
        self.ipsec_sas
            .iter()
            .any(|(_, s)| s.name == name && !s.rekeyed)
            || self
                .exchanges
                .iter()
                .any(|(_, x)| x.connection.as_deref() == Some(name))
    }

    /// A FIFO request. The answer is the line to log.
    pub fn handle_command(&mut self, now: Time, req: Request) -> Result<String, String> {
        match req {
            Request::Connect(name) => {
                if self.policy.connection(&name).is_none() {
                    if let Some((_, _, Some(why))) = self
                        .policy
                        .listed
                        .iter()
                        .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))
                    {
                        return Err(format!("connection {name}: cannot be started: {why}"));
                    }
                    return Err(format!("connection {name}: no such connection"));
                }
                if !self.wanted.iter().any(|w| w.eq_ignore_ascii_case(&name)) {
                    self.wanted.push(name.clone());
                }
                if self.connection_busy(&name) {
                    return Ok(format!("connection {name}: already up or being negotiated"));
                }
                self.connect(now, &name)
                    .map(|_| format!("connection {name}: negotiation started"))
                    .map_err(|e| format!("connection {name}: {e}"))
            }
            Request::Teardown { phase, name } => self.teardown(now, phase, &name),
            Request::TeardownAll => {
                let n = self.ipsec_sas.len();
                let all: Vec<Handle> = self.ipsec_sas.iter().map(|(h, _)| h).collect();
                for h in all {
                    self.delete_ipsec_sa(now, h, true);
                }
                Ok(format!("tore down {n} phase 2 SAs"))
            }
            Request::Delete {
                icookie,
                rcookie,
                msgid,
            } => {
                let sa = self.isakmp_sas.by_cookies(icookie, rcookie);
                match (sa, msgid) {
                    (Some(h), None) => {
                        self.delete_isakmp_sa(now, h, true);
                        Ok(format!(
                            "deleted phase 1 SA {}{}",
                            hex(&icookie),
                            hex(&rcookie)
                        ))
                    }
                    (Some(_), Some(_)) => {
                        let hs: Vec<Handle> = self
                            .ipsec_sas
                            .iter()
                            .filter(|(_, s)| s.icookie == icookie && s.rcookie == rcookie)
                            .map(|(h, _)| h)
                            .collect();
                        let n = hs.len();
                        for h in hs {
                            self.delete_ipsec_sa(now, h, true);
                        }
                        Ok(format!(
                            "deleted {n} phase 2 SAs of {}{}",
                            hex(&icookie),
                            hex(&rcookie)
                        ))
                    }
                    (None, _) => Err(format!(
                        "no such SA: {}{} {}",
                        hex(&icookie),
                        hex(&rcookie),
                        msgid.map_or("-".to_string(), |m| hex(&m))
                    )),
                }
            }
        }
    }

    fn teardown(&mut self, now: Time, phase: Phase, name: &str) -> Result<String, String> {
        match phase {
            Phase::Main => {
                let addr: Option<IpAddr> = name.parse().ok();
                let hs: Vec<Handle> = self
                    .isakmp_sas
                    .iter()
                    .filter(|(_, s)| {
                        s.peer.eq_ignore_ascii_case(name) || Some(s.remote.ip()) == addr
                    })
                    .map(|(h, _)| h)
                    .collect();
                if hs.is_empty() {
                    return Err(format!("no such phase 1 SA: {name}"));
                }
                for h in hs {
                    self.delete_isakmp_sa(now, h, true);
                }
                Ok(format!("phase 1 SA {name} torn down"))
            }
            _ => {
                let hs: Vec<Handle> = self
                    .ipsec_sas
                    .iter()
                    .filter(|(_, s)| s.name.eq_ignore_ascii_case(name))
                    .map(|(h, _)| h)
                    .collect();
                if hs.is_empty() {
                    return Err(format!("no such phase 2 SA: {name}"));
                }
                self.wanted.retain(|w| !w.eq_ignore_ascii_case(name));
                for h in hs {
                    self.delete_ipsec_sa(now, h, true);
                }
                Ok(format!("phase 2 SA {name} torn down"))
            }
        }
    }
}
