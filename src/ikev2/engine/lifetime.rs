#![forbid(unsafe_code)]

//! SA lifetimes (RFC 7296 §2.8; iked.conf(5) `ikelifetime` and `lifetime`): soft expiry
//! rekeys, hard expiry deletes.
//!
//! - A CHILD_SA's lifetime counts from its install: at its soft time, 5-10 % of the
//!   lifetime early (random, from the engine's RNG, so that two ends with the same
//!   lifetime rarely start the rekey together; when they do, §2.8.1 settles it, see
//!   child.rs), we rekey it (either side may, §2.8; iked rekeys at its soft lifetime).
//!   At its hard time it is deleted if it is still here: from the kernel at once, and at
//!   the peer with an INFORMATIONAL. A CHILD_SA whose rekey was refused with
//!   TEMPORARY_FAILURE is tried again 5-15 s later (collide.rs); one the peer no longer
//!   has (CHILD_SA_NOT_FOUND, §2.25) is deleted here and a new one made afresh
//!   (child.rs); one whose rekey failed otherwise is not (XXX), and goes at its hard time.
//! - Byte limits are the kernel's ([`ChildSa::ipsec_sa`]): its soft EXPIRE (at 90 %)
//!   and hard EXPIRE come in through [`Engine::handle_expire`] and do the same.
//! - An IKE SA with a lifetime (`ikelifetime`, 0 is none, iked's default) is rekeyed at
//!   its soft time likewise (§1.3.2), and deleted at its lifetime if still here (a
//!   Delete sent once, not waited for). The lifetime of the IKE SA a rekey makes counts
//!   from the rekey; the one it replaces is not rekeyed again.
//! - Timers: the IKE SA's one timer takes the earliest deadline of the IKE SA and of its
//!   CHILD_SAs ([`IkeSa::child_due`], kept by [`Engine::rearm`]).

use super::*;

impl Io {
    /// A lifetime of `secs` seconds from `now`: the soft time (5-10 % early, at random)
    /// and the hard one; neither for 0.
    pub(super) fn lifetime(&mut self, now: Time, secs: u64) -> (Option<Time>, Option<Time>) {
        if secs == 0 {
            return (None, None);
        }
        let ms = secs.saturating_mul(1000);
        let early = ms / 20;
        let jitter = u64::from_be_bytes(self.random::<8>()) % (early + 1);
        // early + jitter <= ms / 10, so this cannot go below zero.
        (
            Some(now.add_millis(ms - early - jitter)),
            Some(now.add_millis(ms)),
        )
    }
}

/// An IKE SA is established now (IKE_AUTH or a rekey): its lifetime starts.
pub(super) fn ike_lifetime_starts(io: &mut Io, sa: &mut IkeSa, peer: &Peer, now: Time) {
    let (soft, hard) = io.lifetime(now, peer.ike_lifetime_secs);
    sa.info.established = now;
    sa.info.rekey_at = soft;
    sa.info.expires_at = hard;
}

impl ChildSa {
    /// Its next rekey or expiry; a replaced one only expires.
    fn deadline(&self) -> Option<Time> {
        let soft = if self.rekeyed { None } else { self.rekey_at };
        [soft, self.expires_at].into_iter().flatten().min()
    }
}

impl Engine {
    /// A kernel EXPIRE for the state with `spi` toward `dst` (our address for an inbound
    /// state, the peer's for an outbound one): soft (a byte or time limit nearly reached)
    /// rekeys the CHILD_SA, unless it is replaced or being rekeyed already; hard deletes
    /// it (from the kernel, and at the peer). Returns whether the SPI was one of our
    /// CHILD_SAs'.
    pub fn handle_expire(&mut self, now: Time, dst: IpAddr, spi: u32, hard: bool) -> bool {
        let Some((h, spi_in)) = self
            .children
            .iter()
            .find(|(_, c)| {
                (c.spi_in == spi && c.local.ip() == dst)
                    || (c.spi_out == spi && c.remote.ip() == dst)
            })
            .map(|(_, c)| (c.ike, c.spi_in))
        else {
            log::debug!("ikev2: kernel: EXPIRE of {dst} {spi:08x}: no CHILD_SA of ours");
            return false;
        };
        if hard {
            self.child_hard(now, h, spi_in, "the kernel's hard limit");
        } else {
            self.child_soft(now, h, spi_in, "the kernel's soft limit");
        }
        self.rearm(h);
        true
    }

    /// Recomputes the earliest rekey or expiry of IKE SA `h`'s CHILD_SAs and rearms its
    /// timer.
    pub(super) fn rearm(&mut self, h: Handle) {
        let due = self
            .children
            .iter()
            .filter(|(_, c)| c.ike == h)
            .filter_map(|(_, c)| c.deadline())
            .min();
        if let Some(sa) = self.sas.get_mut(h) {
            sa.child_due = due;
            self.io.arm(h, sa);
        }
    }

    /// IKE SA `h`'s timer fired: its own lifetime, then its CHILD_SAs'.
    pub(super) fn lifetimes(&mut self, now: Time, h: Handle) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.info.expires_at.is_some_and(|t| t <= now) {
            return self.ike_hard(h);
        }
        if sa.info.rekey_at.is_some_and(|t| t <= now) {
            sa.info.rekey_at = None;
            let busy = sa.replaced
                || sa.rekeying.is_some()
                || sa.queued.contains(&Req::RekeyIke)
                || sa.request.as_ref().is_some_and(|r| r.what == Req::RekeyIke);
            // A CHILD_SA exchange under way either way (ours, or our answer to the
            // peer's waiting for the kernel) would cross the IKE SA rekey (the peer
            // would refuse it, §2.25, collide.rs): the rekey waits a second for it.
            let is_create = |r: &Req| matches!(r, Req::CreateChild(_));
            let children_busy = sa.creating.is_some()
                || sa.queued.iter().any(is_create)
                || sa.request.as_ref().is_some_and(|r| is_create(&r.what))
                || self.waits.iter().any(|w| w.ike == h);
            if !busy && children_busy {
                sa.info.rekey_at = Some(now.add_secs(1));
            } else if !busy {
                log::info!(
                    "ikev2: {} {}: IKE SA {}/{}: soft lifetime reached, rekeying",
                    sa.info.peer,
                    sa.info.remote,
                    hex(&sa.info.spi_i),
                    hex(&sa.info.spi_r)
                );
                self.start_request(now, h, Req::RekeyIke);
            }
        }
        let due: Vec<(u32, bool)> = self
            .children
            .iter()
            .filter(|(_, c)| c.ike == h)
            .filter_map(|(_, c)| {
                if c.expires_at.is_some_and(|t| t <= now) {
                    Some((c.spi_in, true))
                } else if !c.rekeyed && c.rekey_at.is_some_and(|t| t <= now) {
                    Some((c.spi_in, false))
                } else {
                    None
                }
            })
            .collect();
        for (spi_in, hard) in due {
            if hard {
                self.child_hard(now, h, spi_in, "its lifetime");
            } else {
                self.child_soft(now, h, spi_in, "its soft lifetime");
            }
        }
        self.rearm(h);
    }

    /// A CHILD_SA's soft expiry: its rekey starts (§2.8), unless it is replaced or its
    /// rekey is on the way already.
    fn child_soft(&mut self, now: Time, h: Handle, spi_in: u32, why: &str) {
        let Some(ch) = self
            .children
            .iter()
            .find(|(_, c)| c.ike == h && c.spi_in == spi_in)
            .map(|(ch, _)| ch)
        else {
            return;
        };
        let Some(c) = self.children.get_mut(ch) else {
            return;
        };
        c.rekey_at = None;
        if c.rekeyed {
            return;
        }
        let line = format!("{}: CHILD_SA {:08x}/{:08x}", c.peer, c.spi_in, c.spi_out);
        let Some(sa) = self.sas.get(h) else { return };
        let what = Req::CreateChild(Some(spi_in));
        let pending = sa.queued.contains(&what)
            || sa.request.as_ref().is_some_and(|r| r.what == what)
            || sa
                .creating
                .as_ref()
                .is_some_and(|cr| cr.rekey == Some(spi_in))
            || (self.waits.iter()).any(|w| w.ike == h && w.step.answers_rekey_of() == Some(spi_in));
        if !pending {
            log::info!("ikev2: {line}: {why} reached, rekeying");
            self.start_request(now, h, what);
        }
    }

    /// A CHILD_SA's hard expiry: it leaves the kernel now, and the peer is told with a
    /// Delete (§1.4.1) unless one of ours for it is on the way.
    fn child_hard(&mut self, now: Time, h: Handle, spi_in: u32, why: &str) {
        let gone = self.remove_children(|c| c.ike == h && c.spi_in == spi_in);
        let Some(sa) = self.sas.get(h) else { return };
        if gone == 0 {
            return;
        }
        self.io.stats.child_sas_expired += 1;
        log::info!(
            "ikev2: {} {}: CHILD_SA {spi_in:08x}: {why} reached, deleted",
            sa.info.peer,
            sa.info.remote
        );
        let deleting = |r: &Req| matches!(r, Req::DeleteChild(s) if s.contains(&spi_in));
        let pending = sa.queued.iter().any(deleting)
            || sa.request.as_ref().is_some_and(|r| deleting(&r.what))
            || sa
                .request
                .as_ref()
                .is_some_and(|r| r.what == Req::DeleteIke);
        if !pending {
            self.start_request(now, h, Req::DeleteChild(vec![spi_in]));
        }
    }

    /// An IKE SA's hard expiry: the peer is sent a Delete of it once, and it goes with
    /// its CHILD_SAs.
    fn ike_hard(&mut self, h: Handle) {
        self.io.stats.ike_sas_expired += 1;
        self.send_delete_ike_once(h);
        self.delete(h, "its lifetime reached");
    }

    /// Sends the peer of established IKE SA `h` a Delete of it, without waiting for the
    /// answer (shutdown, expiry). With a request of ours unanswered, the Delete takes its
    /// message ID: a peer that never got that request takes the Delete as the next one
    /// (§2.3: the window is 1); XXX one that did takes it for a repeat and answers from
    /// its cache, and the Delete is lost, as it would be on a lossy path.
    pub(super) fn send_delete_ike_once(&mut self, h: Handle) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.info.state != IkeState::Established {
            return;
        }
        let msgid = sa.request.as_ref().map_or(sa.next_msgid, |r| r.msgid);
        let m = build_protected(
            &mut self.io,
            sa,
            ExchangeType::INFORMATIONAL,
            msgid,
            false,
            |b| {
                let d = DeletePayload::new(ProtocolId::IKE, 0, &[]);
                b.add(PayloadType::DELETE, false, &Payload::Delete(d))
            },
        );
        if let Ok(m) = m {
            self.io.send(sa.info.local, sa.info.remote, &m);
        }
    }
}
