//! The SA lifecycle (isakmpd sa.c, pf_key_v2.c `pf_key_v2_expire`/`_acquire`): soft
//! expiry and rekeying without a gap, hard expiry with the grace a replacement needs,
//! the switch of outbound traffic to a new SA, kernel ACQUIRE and EXPIRE, and deletion
//! (with a DELETE to the peer when asked).

use std::net::IpAddr;

use super::exchange::{self, Kind};
use super::sa::{hex, Handle, IpsecSa, KernelReq, Part, SaTimers};
use super::{wire, Engine, TimerKind, EXPIRY_GRACE_MS};
use crate::log::DebugClass;
use crate::timer::Time;

impl Engine {
    /// Arms an SA's timer `kind` at `at` and records it in the SA's slot for that kind
    /// (replacing what the slot held), so that removing the SA disarms it.
    pub(crate) fn arm_sa_timer(&mut self, at: Time, kind: TimerKind) {
        let handle = match self.io.timers.insert(at, kind) {
            Ok(t) => t,
            Err(_) => {
                crate::log_error!("timer table full; {kind:?} not armed");
                return;
            }
        };
        let slot = |k: TimerKind| match k {
            TimerKind::IsakmpExpire(_) | TimerKind::IsakmpSoft(_) | TimerKind::IpsecExpire(_) => 0,
            TimerKind::Dpd(_) | TimerKind::IpsecSoft(_) => 1,
            _ => 2,
        };
        let timers = match kind {
            TimerKind::IsakmpExpire(h)
            | TimerKind::IsakmpSoft(h)
            | TimerKind::Dpd(h)
            | TimerKind::Keepalive(h) => self.isakmp_sas.get_mut(h).map(|s| &mut s.timers),
            TimerKind::IpsecExpire(h) | TimerKind::IpsecSoft(h) | TimerKind::IpsecOutbound(h) => {
                self.ipsec_sas.get_mut(h).map(|s| &mut s.timers)
            }
            TimerKind::Exchange(_) => None,
        };
        let old = match timers {
            Some(t) => t.0[slot(kind)].replace(handle),
            None => {
                // No such SA (any more): the hint would only hold a slot.
                self.io.timers.cancel(handle);
                None
            }
        };
        if let Some(old) = old.filter(|&o| o != handle) {
            self.io.timers.cancel(old);
        }
    }

    /// Disarms the timers of an SA that has gone.
    pub(crate) fn disarm(&mut self, timers: SaTimers) {
        for t in timers.0.into_iter().flatten() {
            self.io.timers.cancel(t);
        }
    }

    /// Removes an IPsec SA, telling the kernel and (if `tell`) the peer. A replacement
    /// whose outbound half still waits gets it first, so that the flow always has an SA
    /// to leave by.
    pub(crate) fn delete_ipsec_sa(&mut self, now: Time, h: Handle, tell: bool) {
        let Some(sa) = self.ipsec_sas.remove(h) else {
            return;
        };
        self.disarm(sa.timers);
        let waiting: Vec<Handle> = self
            .ipsec_sas
            .same_flows(&sa)
            .filter(|(_, o)| o.outbound_pending)
            .map(|(oh, _)| oh)
            .collect();
        for oh in waiting {
            self.install_outbound(oh);
        }
        crate::log_info!("phase 2 SA {} deleted: {}", sa.name, sa.describe());
        let keep_flows = self.ipsec_sas.same_flows(&sa).next().is_some();
        self.io.kernel_req(KernelReq::DeleteSa(
            Box::new(sa.clone()),
            sa.installed(),
            keep_flows,
        ));
        if tell {
            if let Some(p1) = self.isakmp_sas.by_cookies(sa.icookie, sa.rcookie) {
                self.send_delete(now, p1, sa.protocol, &sa.spi_in);
            }
        }
    }

    /// A kernel ACQUIRE: traffic from `src` to `dst` hit a policy with no SA, towards the
    /// peer `peer`. Starts the configured connection (active or passive) whose client IDs
    /// include the two addresses (isakmpd pf_key_v2.c `pf_key_v2_acquire`).
    pub fn handle_acquire(&mut self, now: Time, flow: Option<(IpAddr, IpAddr)>, peer: IpAddr) {
        if self.io.passive {
            return;
        }
        // Without the flow (Linux PF_KEY names only the SA's endpoints), every
        // connection to that peer that is down is started.
        let found: Vec<String> = self
            .policy
            .connections
            .iter()
            .filter(|c| {
                let addr = self.policy.peer(&c.peer).and_then(|p| p.address);
                match flow {
                    Some((src, dst)) => {
                        addr.is_none_or(|a| a == peer)
                            && c.local_id.as_ref().is_some_and(|i| i.covers(src))
                            && c.remote_id.as_ref().is_some_and(|i| i.covers(dst))
                    }
                    None => addr == Some(peer),
                }
            })
            .map(|c| c.name.clone())
            .take(if flow.is_some() { 1 } else { usize::MAX })
            .collect();
        let what = match flow {
            Some((src, dst)) => format!("{src} -> {dst}"),
            None => format!("peer {peer}"),
        };
        if found.is_empty() {
            crate::log_warn!("kernel ACQUIRE for {what} (peer {peer}): no connection covers it");
            return;
        }
        for name in found {
            if self.connection_busy(&name) {
                continue;
            }
            crate::log_info!("kernel ACQUIRE for {what}: starting connection {name}");
            if let Err(e) = self.connect(now, &name) {
                crate::log_warn!("connection {name}: {e}");
            }
        }
    }

    /// A kernel EXPIRE for the state `spi` towards `dst` (IP protocol `proto`). Soft: the
    /// kernel's byte or time limit came before ours, rekey now. Hard: the kernel has removed
    /// that state; the pair goes, and the peer is told so that it does not keep sending on
    /// an SA that is gone here (isakmpd pf_key_v2.c `pf_key_v2_expire`).
    pub fn handle_expire(&mut self, now: Time, dst: IpAddr, spi: [u8; 4], proto: u8, hard: bool) {
        let ours = |sa: &IpsecSa| {
            let p = match sa.protocol {
                wire::ProtocolId::IPSEC_AH => 51,
                wire::ProtocolId::IPCOMP => 108,
                _ => 50,
            };
            p == proto
                && ((sa.spi_in == spi && sa.local.ip() == dst)
                    || (sa.spi_out == spi && sa.remote.ip() == dst))
        };
        let Some(h) = self.ipsec_sas.find(ours) else {
            crate::ike_debug!(
                DebugClass::Sysdep,
                10,
                "kernel EXPIRE for spi {} to {dst}: not ours",
                hex(&spi)
            );
            return;
        };
        let name = self
            .ipsec_sas
            .get(h)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        if hard {
            crate::log_info!(
                "phase 2 SA {name}: kernel hard expiry of spi {} to {dst}",
                hex(&spi)
            );
            self.delete_ipsec_sa(now, h, true);
        } else {
            crate::log_info!(
                "phase 2 SA {name}: kernel soft expiry of spi {} to {dst}",
                hex(&spi)
            );
            if let Some(sa) = self.ipsec_sas.get_mut(h) {
                sa.soft_expiry = Some(now);
            }
            self.rekey(now, h);
        }
    }

    /// Where an SA's soft timeout falls, in thousandths of its lifetime: isakmpd sa.c puts
    /// it at 85-95 %, random so that the two peers do not both renegotiate at once.
    pub(crate) fn soft_permille(&mut self) -> u64 {
        let mut r = [0u8; 2];
        self.io.rng.fill(&mut r);
        850 + u64::from(u16::from_be_bytes(r) % 100)
    }

    /// A phase 1 SA's soft timeout (isakmpd sa.c `sa_soft_expire`): the side that keeps
    /// it up (the initiator: STAYALIVE) negotiates a new phase 1 with the peer now; on
    /// either side the SA is FADING, so Quick Modes from now on start over the new one
    /// (or start a new one first). It stays, and carries what is under way, until its hard
    /// expiry.
    pub(crate) fn isakmp_soft_expire(&mut self, now: Time, h: Handle) {
        let Some(sa) = self.isakmp_sas.get(h) else {
            return;
        };
        if sa.soft_expiry.is_none_or(|t| t > now) {
            return;
        }
        let (hard, initiator, remote, name) =
            (sa.hard_expiry, sa.initiator, sa.remote, sa.peer.clone());
        let cookies = format!("{}{}", hex(&sa.icookie), hex(&sa.rcookie));
        if let Some(t) = hard {
            self.arm_sa_timer(t, TimerKind::IsakmpExpire(h));
        }
        if !initiator || self.io.passive {
            return;
        }
        // A newer phase 1 with the peer, done or under way, already replaces this one.
        let newer = self.isakmp_sas.iter().any(|(o, s)| {
            o != h && s.peer == name && s.remote == remote && s.soft_expiry.is_none_or(|t| t > now)
        }) || self
            .exchanges
            .iter()
            .any(|(_, x)| x.kind != Kind::Quick && x.peer == name);
        if newer {
            return;
        }
        let Some(peer) = self.policy.peer(&name).cloned() else {
            return;
        };
        crate::log_info!(
            "phase 1 SA {cookies} with {remote}: soft lifetime reached, renegotiating"
        );
        if let Err(e) = self.start_main_mode(now, &peer, remote, None) {
            crate::log_warn!("phase 1 with {remote}: renegotiation: {e}");
        }
    }

    /// Soft expiry of an IPsec SA: negotiate its replacement while it still carries
    /// traffic (isakmpd renegotiates connections it is configured to keep up; a SA we
    /// only accepted is left to its initiator). The old SA stays until its hard expiry,
    /// so there is no gap.
    pub(crate) fn rekey(&mut self, now: Time, h: Handle) {
        let Some(sa) = self.ipsec_sas.get_mut(h) else {
            return;
        };
        if sa.rekeyed || sa.soft_expiry.is_none_or(|t| t > now) {
            return;
        }
        sa.rekeyed = true;
        let name = sa.name.clone();
        let wanted = self.wanted.iter().any(|w| w.eq_ignore_ascii_case(&name));
        if !wanted || !sa.initiator || self.io.passive {
            return;
        }
        if self
            .exchanges
            .iter()
            .any(|(_, x)| x.connection.as_deref() == Some(name.as_str()))
        {
            return;
        }
        crate::log_info!("phase 2 SA {name}: soft lifetime reached, renegotiating");
        if let Err(e) = self.connect(now, &name) {
            crate::log_warn!("connection {name}: rekey: {e}");
        }
    }

    /// The hard expiry timer of an IPsec SA: it goes (and the peer is told) unless its
    /// replacement still needs it, see [`Self::expiry_deadline`].
    pub(crate) fn expire_ipsec_sa(&mut self, now: Time, h: Handle) {
        let Some(hard) = self.ipsec_sas.get(h).and_then(|sa| sa.hard_expiry) else {
            return;
        };
        if hard > now {
            return;
        }
        let deadline = self.expiry_deadline(h, hard);
        if deadline > now {
            crate::ike_debug!(
                DebugClass::Sa,
                10,
                "phase 2 SA past its hard expiry kept {} ms for its replacement",
                now.until(deadline)
            );
            self.arm_sa_timer(deadline, TimerKind::IpsecExpire(h));
            return;
        }
        if let Some(sa) = self.ipsec_sas.get(h) {
            crate::log_info!("phase 2 SA {} expired", sa.name);
        }
        self.delete_ipsec_sa(now, h, true);
    }

    /// When an IPsec SA past its hard expiry `hard` really goes. Both copies of an SA
    /// expire within a round trip of each other, and a replacement may still be on its
    /// way, so the SA stays a little longer (at most [`EXPIRY_GRACE_MS`]; the kernel's own
    /// hard limit is a minute later still):
    /// - an initiator keeps it while its Quick Mode for the flow is under way, or while
    ///   the replacement's outbound half waits for the responder;
    /// - a responder keeps it until the initiator, which decides when traffic moves to
    ///   the replacement, deletes it, or until the grace after its expiry or after the
    ///   replacement came, whichever is later.
    pub(crate) fn expiry_deadline(&self, h: Handle, hard: Time) -> Time {
        let Some(sa) = self.ipsec_sas.get(h) else {
            return hard;
        };
        let mut others = self.ipsec_sas.same_flows(sa).filter(|(oh, _)| *oh != h);
        if !sa.initiator {
            let latest = others.fold(hard, |t, (_, o)| t.max(o.established));
            return latest.add_millis(EXPIRY_GRACE_MS);
        }
        let negotiating = self.exchanges.iter().any(|(_, x)| {
            x.kind == exchange::Kind::Quick && x.connection.as_deref() == Some(sa.name.as_str())
        });
        if negotiating || others.any(|(_, o)| o.outbound_pending) {
            hard.add_millis(EXPIRY_GRACE_MS)
        } else {
            hard
        }
    }

    /// A rekeying initiator's pause is over: the replacement's outbound half goes in,
    /// and an SA it replaces that is past its hard expiry goes now.
    pub(crate) fn switch_outbound(&mut self, now: Time, h: Handle) {
        let Some(sa) = self.ipsec_sas.get(h) else {
            return;
        };
        if !sa.outbound_pending {
            return;
        }
        self.install_outbound(h);
        let Some(sa) = self.ipsec_sas.get(h) else {
            return;
        };
        let expired: Vec<Handle> = self
            .ipsec_sas
            .same_flows(sa)
            .filter(|(oh, o)| *oh != h && o.hard_expiry.is_some_and(|t| t <= now))
            .map(|(oh, _)| oh)
            .collect();
        for oh in expired {
            self.expire_ipsec_sa(now, oh);
        }
    }

    /// The waiting outbound half of an SA to the kernel.
    pub(crate) fn install_outbound(&mut self, h: Handle) {
        let Some(sa) = self.ipsec_sas.get_mut(h) else {
            return;
        };
        if !std::mem::take(&mut sa.outbound_pending) {
            return;
        }
        crate::ike_debug!(
            DebugClass::Sa,
            10,
            "phase 2 SA {}: outbound half in: {}",
            sa.name,
            sa.describe()
        );
        let req = KernelReq::AddSa(Box::new(sa.clone()), Part::Outbound);
        self.io.kernel_req(req);
    }

    /// Removes an ISAKMP SA (telling the peer if `tell`).
    pub(crate) fn delete_isakmp_sa(&mut self, now: Time, h: Handle, tell: bool) {
        let Some(sa) = self.isakmp_sas.get(h) else {
            return;
        };
        let mut cookies = [0u8; 16];
        cookies[..8].copy_from_slice(&sa.icookie);
        cookies[8..].copy_from_slice(&sa.rcookie);
        if tell {
            self.send_delete(now, h, wire::ProtocolId::ISAKMP, &cookies);
        }
        if let Some(sa) = self.isakmp_sas.remove(h) {
            self.disarm(sa.timers);
            crate::log_info!(
                "phase 1 SA {}{} with {} deleted",
                hex(&sa.icookie),
                hex(&sa.rcookie),
                sa.remote
            );
        }
    }
}
