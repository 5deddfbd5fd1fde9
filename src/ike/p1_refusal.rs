//! Telling a peer that its phase 1 did not authenticate, once the exchange has its keys.
//!
//! RFC 2409 §5.7 wants notifications protected when keys exist, and a peer that has
//! them will not take a cleartext message for the exchange: C isakmpd drops one carrying
//! the exchange's cookies with INVALID-FLAGS (message.c `message_recv`: "cleartext phase
//! 1 message" once the exchange has a keystate). So a refusal after the KE exchange
//! (Main Mode messages 5 and 6, Aggressive Mode messages 2 and 3) goes out as:
//!
//! - an Informational exchange of its own under the exchange's keys (`HDR*, HASH(1), N`,
//!   a fresh message ID, the IV derived from the last phase 1 block, HASH(1) with
//!   SKEYID_a), the notification's SPI the exchange's cookies. strongSwan decrypts it in
//!   the middle of phase 1 as after it, and so do we;
//! - when the peer is still inside the exchange (we refused Main Mode message 5 or
//!   Aggressive Mode message 2), also as C isakmpd itself sends a refusal in that state
//!   (message.c `message_send_notification`: its ISAKMP SA is not ready, so
//!   `exchange_establish_p1` of an Informational exchange): unprotected, in a new ISAKMP
//!   exchange (a fresh initiator cookie, a zero responder cookie, message ID 0). A C
//!   initiator cannot decrypt the protected one then (its ISAKMP SA gets its keystate
//!   only when phase 1 is done: ipsec.c `ipsec_get_keystate` "no keystate in ISAKMP SA"),
//!   but takes this one as an Informational exchange of its own;
//! - when the peer already holds the ISAKMP SA (we refused Main Mode message 6 or
//!   Aggressive Mode message 3), a DELETE of it follows, under the same keys.

use std::net::SocketAddr;

use super::crypto::derive;
use super::exchange::{Exchange, Kind, P1Step, State};
use super::sa::{Handle, IsakmpSa};
use super::wire::{self, Header, NotifyType, Payload, PayloadType};
use super::{Drop, Engine};
use crate::timer::Time;

/// A phase 1 SA made of exchange `x`'s keys, to protect what is said about the exchange
/// before (or instead of) a real one; `None` before the exchange has its keys.
pub(crate) fn provisional_sa(x: &Exchange, now: Time) -> Option<IsakmpSa> {
    let c = x.choice()?;
    if x.ka.is_empty()
        || !matches!(
            x.state,
            State::Phase1(P1Step::AwaitAuth(_) | P1Step::Done(_))
        )
    {
        return None;
    }
    Some(IsakmpSa::of_exchange(x, c, now))
}

/// Whether the peer of exchange `x`, which refused the message it waited for, already
/// holds the ISAKMP SA: it sent the last message (Main Mode 6, Aggressive Mode 3).
fn peer_holds_sa(x: &Exchange) -> bool {
    matches!(
        (x.kind, x.initiator),
        (Kind::Main, true) | (Kind::Aggressive, false)
    )
}

impl Engine {
    /// Phase 1 exchange `h` refuses the peer's message with notification `ty`: the peer
    /// is told under the exchange's keys (see the module). Returns whether it was, i.e.
    /// whether the exchange had its keys; if not, the caller's unprotected notification
    /// applies.
    pub(crate) fn refuse_phase1(&mut self, now: Time, h: Handle, ty: NotifyType) -> bool {
        let Some(x) = self.exchanges.get(h) else {
            return false;
        };
        let Some(s) = provisional_sa(x, now) else {
            return false;
        };
        let holds = peer_holds_sa(x);
        crate::log_info!(
            "sending notification {ty} to {} (protected by the phase 1 keys)",
            s.remote
        );
        let cookies = (s.icookie, s.rcookie);
        super::informational::send_protected_info(
            &s,
            &mut self.io,
            &mut self.scratch,
            PayloadType::NOTIFY,
            &mut |w| super::informational::isakmp_notify(w, cookies, ty, &[]),
        );
        if holds {
            self.delete_unauthenticated(now, h);
        } else {
            self.notify_in_new_exchange(now, (s.local, s.remote), cookies, ty);
        }
        true
    }

    /// isakmpd's refusal while the peer's ISAKMP SA is not ready: an unprotected
    /// Informational exchange of its own (fresh initiator cookie, zero responder cookie,
    /// message ID 0), the notification's SPI the cookies of the exchange it is about.
    /// Rate limited with the other unprotected notifications.
    fn notify_in_new_exchange(
        &mut self,
        now: Time,
        (local, remote): (SocketAddr, SocketAddr),
        cookies: ([u8; 8], [u8; 8]),
        ty: NotifyType,
    ) {
        if self.notify_limit.allow(now).is_none() {
            self.io.stats.notifies_suppressed += 1;
            return;
        }
        let h = Header {
            icookie: self.io.new_cookie(),
            major: 1,
            exchange: wire::ExchangeType::INFO,
            ..Header::default()
        };
        let mut buf = [0u8; 128];
        let n = (|| {
            let mut b = wire::MessageBuilder::new(&mut buf, &h)?;
            b.payload(PayloadType::NOTIFY, |w| {
                super::informational::isakmp_notify(w, cookies, ty, &[])
            })?;
            b.finish()
        })();
        if let Ok(n) = n {
            self.io.capture(local, remote, &buf[..n]);
            self.io.send(local, remote, &buf[..n]);
        }
    }

    /// The phase 1 exchange with `remote` whose cookies these are (`rcookie` zero: any
    /// of that initiator cookie), if any.
    pub(crate) fn phase1_exchange_of(
        &self,
        remote: SocketAddr,
        icookie: [u8; 8],
        rcookie: [u8; 8],
    ) -> Option<Handle> {
        self.exchanges.find(|x| {
            x.kind != Kind::Quick
                && x.icookie == icookie
                && (x.rcookie == rcookie || rcookie == [0; 8])
                && x.remote.ip() == remote.ip()
        })
    }

    /// An encrypted Informational message for no ISAKMP SA: one about a phase 1
    /// exchange still in flight, under its keys (the peer refused our last message).
    /// Its notifications are logged; an error ends the exchange.
    pub(crate) fn info_during_phase1(
        &mut self,
        now: Time,
        (local, remote): (SocketAddr, SocketAddr),
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        let no_sa = Drop::Silent("encrypted informational for no known phase 1 SA");
        if hd.msgid == 0 {
            return Err(no_sa);
        }
        let h = self
            .phase1_exchange_of(remote, hd.icookie, hd.rcookie)
            .filter(|_| hd.rcookie != [0; 8])
            .ok_or(no_sa)?;
        let x = self.exchanges.get(h).ok_or(Drop::Silent("gone"))?;
        let s = provisional_sa(x, now).ok_or(Drop::Silent(
            "encrypted informational for a phase 1 exchange without keys",
        ))?;
        let name = x.name();
        let iv = derive::phase2_iv(s.hash, s.last_block(), hd.msgid, s.cipher.block_len());
        let mut clear = Vec::new();
        super::phase2::open_hash1_into(
            &s,
            &mut self.io,
            &mut clear,
            (&iv, hd.msgid),
            (local, remote),
            data,
        )?;
        let m = Self::parse(&clear, true)?;
        let mut refused = None;
        for p in &m.payloads {
            if let Payload::Notify(n) = p.payload {
                crate::log_warn!("{name} with {remote}: the peer refused it: {}", n.ty);
                if n.ty.0 < 8192 {
                    refused = Some(n.ty);
                }
            }
        }
        if let Some(ty) = refused {
            self.phase1_refused(now, h, ty);
        }
        Ok(())
    }
}
