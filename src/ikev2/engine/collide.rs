#![forbid(unsafe_code)]

//! Exchange collisions around an IKE SA rekey (RFC 7296 §2.25, §2.8.2), as strongSwan
//! and iked handle them:
//!
//! - A request to rekey the IKE SA while a CHILD_SA exchange of ours is under way on it
//!   (a CREATE_CHILD_SA or a Delete of CHILD_SAs, or a CHILD_SA waiting for the kernel),
//!   or once it is replaced or being deleted, is answered with TEMPORARY_FAILURE
//!   (§2.25.2). In particular, once our rekey of it is done and the Delete of the old IKE
//!   SA is on its way, a crossing rekey of the peer's that comes late is refused: the
//!   Delete has committed us to ours (the peer, seeing the Delete, takes ours too).
//! - A CREATE_CHILD_SA (new or rekey) on an IKE SA we are rekeying, that is replaced or
//!   being deleted is answered with TEMPORARY_FAILURE: its CHILD_SAs are moving to the
//!   new IKE SA, where the peer asks again.
//! - TEMPORARY_FAILURE in answer to our CHILD_SA or IKE SA rekey: tried again after 5 to
//!   15 seconds (at random, strongSwan's interval), on the IKE SA the CHILD_SA is on by
//!   then.
//! - A Delete of the IKE SA while our rekey of it is in flight and the peer's crossing
//!   rekey was answered (§2.8.2; the Delete overtook the answer to ours, or the peer
//!   never saw our request before it decided): the peer's new IKE SA takes the
//!   CHILD_SAs, and the old one is kept, empty, until our rekey is answered (or given
//!   up, which is no failure), so that a new IKE SA the answer makes is deleted by us, its
//!   maker, rather than left behind at the peer (§2.25.2: answer as usual, forget our
//!   rekey).

use super::*;

/// TEMPORARY_FAILURE: the earliest retry, and the spread after it (seconds).
const RETRY_SECS: u64 = 5;
const RETRY_JITTER_SECS: u64 = 10;

impl Io {
    /// When to try again after TEMPORARY_FAILURE (§2.25: not at once).
    fn retry_at(&mut self, now: Time) -> Time {
        let ms = RETRY_JITTER_SECS * 1000;
        let jitter = u64::from_be_bytes(self.random::<8>()) % (ms + 1);
        now.add_millis(RETRY_SECS * 1000 + jitter)
    }
}

impl Engine {
    /// Whether the IKE SA is being deleted by us (our Delete sent or queued), or was
    /// deleted by the peer while our rekey of it was in flight.
    fn closing(&self, h: Handle) -> bool {
        self.sas.get(h).is_some_and(|sa| {
            sa.deleted_by_peer
                || sa.queued.contains(&Req::DeleteIke)
                || sa
                    .request
                    .as_ref()
                    .is_some_and(|r| r.what == Req::DeleteIke)
        })
    }

    /// Why the peer's rekey of IKE SA `h` must wait (§2.25.2), if it must.
    pub(super) fn ike_rekey_collides(&self, h: Handle) -> Option<&'static str> {
        let sa = self.sas.get(h)?;
        let child_exchange = |r: &Req| matches!(r, Req::CreateChild(_) | Req::DeleteChild(_));
        if sa.replaced {
            Some("the IKE SA is replaced already")
        } else if self.closing(h) {
            Some("the IKE SA is being deleted")
        } else if sa.creating.is_some()
            || sa.request.as_ref().is_some_and(|r| child_exchange(&r.what))
            || self.waits.iter().any(|w| w.ike == h)
        {
            Some("a CHILD_SA exchange is under way")
        } else {
            None
        }
    }

    /// Why the peer's CREATE_CHILD_SA on IKE SA `h` must wait (§2.25.2), if it must.
    pub(super) fn child_request_collides(&self, h: Handle) -> Option<&'static str> {
        let sa = self.sas.get(h)?;
        if sa.rekeying.is_some() {
            Some("the IKE SA is being rekeyed")
        } else if sa.replaced {
            Some("the IKE SA was rekeyed")
        } else if self.closing(h) {
            Some("the IKE SA is being deleted")
        } else {
            None
        }
    }

    /// Answers the peer's CREATE_CHILD_SA request `msgid` on `h` with TEMPORARY_FAILURE.
    pub(super) fn refuse_for_now(&mut self, h: Handle, msgid: u32, what: &str, why: &str) {
        let Engine {
            sas, io, policy, ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        sa.peer_msgid = msgid.wrapping_add(1);
        let name = &policy.peers[sa.peer].name;
        let n = (NotifyType::TEMPORARY_FAILURE, Vec::new());
        if let Some(m) = refusal(io, sa, name, msgid, what, why, n) {
            io.respond(sa, msgid, m);
        }
    }

    /// TEMPORARY_FAILURE in answer to our rekey of the CHILD_SA with inbound SPI `old`:
    /// its rekey is due again a little later, wherever it is by then.
    pub(super) fn retry_child_rekey(&mut self, now: Time, old: u32) {
        let at = self.io.retry_at(now);
        let ch = self
            .children
            .iter()
            .find(|(_, c)| c.spi_in == old && !c.rekeyed)
            .map(|(ch, _)| ch);
        let Some(c) = ch.and_then(|ch| self.children.get_mut(ch)) else {
            return;
        };
        log::info!(
            "ikev2: {}: CHILD_SA {:08x}/{:08x}: rekey refused for now, tried again later",
            c.peer,
            c.spi_in,
            c.spi_out
        );
        c.rekey_at = Some(c.rekey_at.map_or(at, |t| t.min(at)));
        let h = c.ike;
        self.rearm(h);
    }

    /// TEMPORARY_FAILURE in answer to our rekey of IKE SA `h`: due again a little later.
    pub(super) fn retry_ike_rekey(&mut self, now: Time, h: Handle) {
        let at = self.io.retry_at(now);
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.replaced {
            return;
        }
        log::info!(
            "ikev2: {}: IKE SA rekey refused for now, tried again later",
            sa.info.peer
        );
        sa.info.rekey_at = Some(at);
        self.io.arm(h, sa);
    }

    /// A Delete of IKE SA `h` from the peer: when our rekey of it is in flight and the
    /// peer's crossing rekey was answered (§2.8.2), the peer's new IKE SA takes the
    /// CHILD_SAs and `h` stays, empty, for our rekey's answer (returns true); otherwise
    /// `h` goes with its CHILD_SAs (false).
    pub(super) fn deleted_while_rekeying(&mut self, now: Time, h: Handle) -> bool {
        let Some(sa) = self.sas.get_mut(h) else {
            return false;
        };
        if sa.rekeying.is_none() {
            return false;
        }
        let Some((b, _)) = sa.crossed_ike.take() else {
            return false;
        };
        sa.deleted_by_peer = true;
        sa.queued.clear();
        log::info!(
            "ikev2: {}: simultaneous IKE SA rekey: the peer deleted the old IKE SA, its rekey survives",
            sa.info.peer
        );
        self.hand_over(now, h, b);
        true
    }

    /// The answer to our rekey of IKE SA `h`, which the peer deleted meanwhile
    /// ([`Self::deleted_while_rekeying`]): a new IKE SA it made is redundant, and is
    /// deleted; `h` goes.
    pub(super) fn rekeyed_after_delete(&mut self, now: Time, h: Handle, new: Option<IkeSa>) {
        if let Some(a) = new.and_then(|n| self.adopt(now, n)) {
            log::info!(
                "ikev2: {}: simultaneous IKE SA rekey: ours is redundant",
                self.sas.get(a).map_or("", |sa| sa.info.peer.as_str())
            );
            self.start_request(now, a, Req::DeleteIke);
        }
        self.delete(h, "deleted by the peer");
    }
}
