//! Main Mode (identity protection, RFC 2409 §5 with pre-shared keys, §5.4), as initiator
//! and responder (isakmpd ike_main_mode.c and ike_phase_1.c):
//!
//! ```text
//!  1 I>R  HDR, SA                     4 R>I  HDR, KE, Nr
//!  2 R>I  HDR, SA                     5 I>R  HDR*, IDii, HASH_I [, N(INITIAL-CONTACT)]
//!  3 I>R  HDR, KE, Ni                 6 R>I  HDR*, IDir, HASH_R
//! ```
//!
//! The responder picks the first offered transform that one of the peer's configured
//! Transforms accepts (same algorithms and group, key length and lifetime inside the
//! configured ranges) and echoes it. Keys come from `crypto::derive`; HASH_I/HASH_R are
//! checked in constant time before any SA exists.
//!
//! Each step is a function of its exchange and a [`Cx`], the narrow context of a phase 1
//! step; `phase1.rs` routes a message to the step its exchange waits for, and makes the
//! ISAKMP SA when a step returns [`Next::Done`].

use std::net::SocketAddr;

use super::auth::{self, Authenticated};
use super::crypto::DhPrivate;
use super::exchange::{Exchange, Kind, P1Choice, P1Step};
use super::phase1::{
    choose, header, initiator_reply, ke_nonce, nat_d_payloads, offer_body, responder_exchange,
    write_sa_echo, Cx, Next, NONCE_LEN,
};
use super::policy::Peer;
use super::sa::Handle;
use super::wire::{
    self, AuthMethod, Doi, ExchangeType, Header, MessageBuilder, NotifyType, Payload, PayloadType,
    ProtocolId,
};
use super::{Drop, Engine};
use crate::timer::Time;

impl Engine {
    pub(crate) fn start_main_mode(
        &mut self,
        now: Time,
        peer: &Peer,
        remote: SocketAddr,
        connection: Option<String>,
    ) -> Result<Handle, String> {
        if peer.exchange == ExchangeType::AGGRESSIVE {
            return self.start_aggressive(now, peer, remote, connection);
        }
        let local = self.our_addr(peer, remote);
        let mut x = Exchange::new(Kind::Main, true, local, remote);
        x.icookie = self.io.new_cookie();
        x.peer = peer.name.clone();
        x.connection = connection;
        x.deadline = now.add_secs(self.policy.exchange_max_time.into());
        x.sai_b = offer_body(peer).map_err(|_| "proposal too large")?;
        let nat_t_on = self.nat_t_on();
        let h = header(&x, ExchangeType::ID_PROT);
        let mut buf = vec![0u8; 4096];
        let n = (|| {
            let mut b = MessageBuilder::new(&mut buf, &h)?;
            b.payload(PayloadType::SA, |w| w.bytes(&x.sai_b))?;
            for v in super::nat_t::phase1_vids(nat_t_on) {
                b.payload(PayloadType::VENDOR, |w| w.bytes(v))?;
            }
            b.finish()
        })()
        .map_err(|_| "message too large")?;
        buf.truncate(n);
        let handle = self.exchanges.insert(x).ok_or("exchange table full")?;
        crate::log_info!(
            "main mode with {remote} ({}) started as initiator",
            peer.name
        );
        self.send_step(now, handle, buf, true);
        Ok(handle)
    }

    /// Responder, message 1: the exchange is made, half-open, and message 2 sent only if
    /// the offer is acceptable.
    pub(crate) fn mm_r1(
        &mut self,
        now: Time,
        (local, remote): (SocketAddr, SocketAddr),
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        let (x, buf) = r1(&mut self.cx(now), (local, remote), hd, data)?;
        let peer = x.peer.clone();
        let handle = self.insert_half_open(now, x)?;
        self.io.capture(remote, local, data);
        crate::ike_debug!(
            crate::log::DebugClass::Exchange,
            10,
            "main mode with {remote} ({peer}): message 1 answered"
        );
        // isakmpd: the responder never retransmits message 2 on a timer (MSG_DONTRETRANSMIT).
        self.send_step(now, handle, buf, false);
        Ok(())
    }

    /// The peer finished phase 1 when it sent its last message (Main Mode 6, Aggressive
    /// Mode 3), but that message did not authenticate it to us: DELETE its ISAKMP SA
    /// under the exchange's keys, so that neither side keeps an SA.
    pub(crate) fn delete_unauthenticated(&mut self, now: Time, h: Handle) {
        let Some(sa) = self
            .exchanges
            .get(h)
            .and_then(|x| super::p1_refusal::provisional_sa(x, now))
        else {
            return;
        };
        let remote = sa.remote;
        if let Some(sh) = self.isakmp_sas.insert(sa) {
            crate::log_info!("telling {remote} to delete the phase 1 SA it holds");
            self.delete_isakmp_sa(now, sh, true);
        }
    }
}

/// Responder, message 1: pick a transform; the new exchange and message 2.
fn r1(
    cx: &mut Cx<'_>,
    (local, remote): (SocketAddr, SocketAddr),
    hd: &Header,
    data: &[u8],
) -> Result<(Exchange, Vec<u8>), Drop> {
    // With the table full, no DH work for a peer that could not be kept: message 1 goes
    // unanswered, and the peer's retransmission may find a free slot.
    cx.phase1_room()?;
    let m = Engine::parse(data, false)?;
    super::script::check(Kind::Main, 1, &m)?;
    let Some(Payload::Sa(sa)) = m.find(PayloadType::SA) else {
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "no SA payload in main mode message 1",
        ));
    };
    if sa.doi != Doi::IPSEC {
        return Err(Drop::Notify(
            NotifyType::DOI_NOT_SUPPORTED,
            "DOI is not IPSEC",
        ));
    }
    if sa.situation != wire::SIT_IDENTITY_ONLY {
        return Err(Drop::Notify(
            NotifyType::SITUATION_NOT_SUPPORTED,
            "situation not supported",
        ));
    }
    let peer = cx.policy.peer_for(remote.ip()).ok_or({
        Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "no [Phase 1] peer for this address",
        )
    })?;
    let Some((pnum, t, choice)) = choose(peer, sa, cx.creds.usable(), None) else {
        return Err(Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "no proposal chosen: none of the offered transforms matches the peer section",
        ));
    };
    if choice.auth == AuthMethod::PRE_SHARED && peer.psk.is_none() {
        return Err(Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "the [Phase 1] peer section has no Authentication (pre-shared key)",
        ));
    }
    let addrs = (local, remote);
    let mut x = responder_exchange(cx, Kind::Main, addrs, hd, &m, peer, (choice, sa), data);
    let nat_vids = x.nat_t.is_some();
    // Message 2: the chosen transform, echoed.
    let h = header(&x, ExchangeType::ID_PROT);
    let mut buf = vec![0u8; 2048];
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &h)?;
        b.payload(PayloadType::SA, |w| write_sa_echo(w, pnum, &t))?;
        for v in super::nat_t::phase1_vids(nat_vids) {
            b.payload(PayloadType::VENDOR, |w| w.bytes(v))?;
        }
        b.finish()
    })()
    .map_err(|_| Drop::Silent("message 2 too large"))?;
    buf.truncate(n);
    x.resend_on_dup = true;
    Ok((x, buf))
}

/// KE and nonce out (message 3 or 4), with NAT-D and, for signatures, CERT_REQs.
fn ke_message(
    cx: &Cx<'_>,
    x: &Exchange,
    c: P1Choice,
    which: &'static str,
) -> Result<Vec<u8>, Drop> {
    let (ke, nonce) = if x.initiator {
        (&x.gxi, &x.ni)
    } else {
        (&x.gxr, &x.nr)
    };
    let nat_d = nat_d_payloads(x, c.hash);
    let crs = if c.auth == AuthMethod::RSA_SIG {
        cx.creds.cert_requests()
    } else {
        Vec::new()
    };
    let mut buf = vec![0u8; 4096];
    let hh = header(x, ExchangeType::ID_PROT);
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &hh)?;
        b.payload(PayloadType::KE, |w| w.bytes(ke))?;
        b.payload(PayloadType::NONCE, |w| w.bytes(nonce))?;
        for (ty, d) in &nat_d {
            b.payload(*ty, |w| w.bytes(d.as_bytes()))?;
        }
        auth::write_cert_requests(&mut b, &crs)?;
        b.finish()
    })()
    .map_err(|_| Drop::Silent(which))?;
    buf.truncate(n);
    Ok(buf)
}

/// Initiator, message 2: check the chosen transform, send KE and Ni.
pub(crate) fn i2(
    x: &mut Exchange,
    h: Handle,
    cx: &mut Cx<'_>,
    hd: &Header,
    data: &[u8],
) -> Result<Next, Drop> {
    let m = Engine::parse(data, false)?;
    super::script::check(Kind::Main, 2, &m)?;
    let choice = initiator_reply(x, cx, &m, cx.creds.usable())?;
    let dh = DhPrivate::generate(choice.group, &mut *cx.io.rng)
        .map_err(|_| Drop::Silent("DH key generation failed"))?;
    x.ni = cx.io.random(NONCE_LEN);
    x.rcookie = hd.rcookie;
    x.set_p1(P1Step::AwaitKe(choice));
    x.gxi = dh.public_value().to_vec();
    x.dh = Some(dh);
    let buf = ke_message(cx, x, choice, "message 3 too large")?;
    cx.io.capture(x.remote, x.local, data);
    cx.io.send_step(cx.now, (h, x), None, buf, true);
    Ok(Next::Wait)
}

/// Responder, message 3: KE and Ni in, KE and Nr out, keys computed.
pub(crate) fn r3(
    x: &mut Exchange,
    h: Handle,
    cx: &mut Cx<'_>,
    c: P1Choice,
    data: &[u8],
) -> Result<Next, Drop> {
    let m = Engine::parse(data, false)?;
    let (ke, ni) = ke_nonce(Kind::Main, 3, &m, c.group)?;
    let dh = DhPrivate::generate(c.group, &mut *cx.io.rng)
        .map_err(|_| Drop::Silent("DH key generation failed"))?;
    x.nr = cx.io.random(NONCE_LEN);
    x.resend_on_dup = false;
    x.gxi = ke;
    x.ni = ni;
    x.gxr = dh.public_value().to_vec();
    x.dh = Some(dh);
    x.phase1_keys(cx.policy)?;
    x.nat_detect(&m, x.local, x.remote);
    let buf = ke_message(cx, x, c, "message 4 too large")?;
    x.p1_to(P1Step::AwaitAuth);
    cx.io.capture(x.remote, x.local, data);
    cx.io.send_step(cx.now, (h, x), None, buf, true);
    Ok(Next::Wait)
}

/// Initiator, message 4: keys, then message 5.
pub(crate) fn i4(
    x: &mut Exchange,
    h: Handle,
    cx: &mut Cx<'_>,
    c: P1Choice,
    data: &[u8],
) -> Result<Next, Drop> {
    cx.phase1_room()?;
    let m = Engine::parse(data, false)?;
    let (ke, nr) = ke_nonce(Kind::Main, 4, &m, c.group)?;
    x.gxr = ke;
    x.nr = nr;
    x.phase1_keys(cx.policy)?;
    x.nat_detect(&m, x.local, x.remote);
    cx.io.capture(x.remote, x.local, data);
    x.float_to_nat_t(cx.io.nat_port, "main mode");
    let initial_contact = cx.contacted.first(x.remote.ip());
    let (clear, msg) = auth_message(x, cx, c, initial_contact)?;
    x.p1_to(P1Step::AwaitAuth);
    cx.io.send_step(cx.now, (h, x), Some(&clear), msg, true);
    Ok(Next::Wait)
}

/// Responder, message 5: verify, answer with message 6; the SA follows.
pub(crate) fn r5(
    x: &mut Exchange,
    h: Handle,
    cx: &mut Cx<'_>,
    c: P1Choice,
    data: &[u8],
) -> Result<Next, Drop> {
    cx.phase1_room()?;
    let auth = auth::verify_auth_message(x, cx, c, data)?;
    cx.check_remote_id(x, &auth)?;
    // isakmpd's responder sends INITIAL-CONTACT in message 6 too (ike_main_mode.c).
    let initial_contact = cx.contacted.first(x.remote.ip());
    let (clear, msg) = auth_message(x, cx, c, initial_contact)?;
    x.p1_to(P1Step::Done);
    x.resend_on_dup = true;
    cx.io.send_step(cx.now, (h, x), Some(&clear), msg, false);
    Ok(Next::Done(auth))
}

/// Initiator, message 6: verify; the SA follows, and the connection.
pub(crate) fn i6(
    x: &mut Exchange,
    cx: &mut Cx<'_>,
    c: P1Choice,
    data: &[u8],
) -> Result<Next, Drop> {
    let auth: Authenticated = auth::verify_auth_message(x, cx, c, data)?;
    // As isakmpd: the responder's ID must be the peer section's Remote-ID, if it has one.
    cx.check_remote_id(x, &auth)?;
    x.p1_to(P1Step::Done);
    Ok(Next::Done(auth))
}

/// Builds and encrypts message 5 or 6 (ID, HASH or CERT and SIG [, INITIAL-CONTACT]):
/// the cleartext for the capture and the message.
fn auth_message(
    x: &mut Exchange,
    cx: &Cx<'_>,
    c: P1Choice,
    initial_contact: bool,
) -> Result<(Vec<u8>, Vec<u8>), Drop> {
    let id = cx.our_id(x);
    let ours = auth::OurAuth::new(x, cx.creds, c, &id)?;
    let mut buf = vec![0u8; 8192];
    let hh = header(x, ExchangeType::ID_PROT);
    let (ic, rc) = (x.icookie, x.rcookie);
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &hh)?;
        b.payload(PayloadType::ID, |w| w.bytes(&id))?;
        ours.write(&mut b)?;
        if initial_contact {
            b.payload(PayloadType::NOTIFY, |w| {
                w.u32(Doi::IPSEC.0)?;
                w.u8(ProtocolId::ISAKMP.0)?;
                w.u8(16)?;
                w.u16(NotifyType::INITIAL_CONTACT.0)?;
                w.bytes(&ic)?;
                w.bytes(&rc)
            })?;
        }
        b.finish()
    })()
    .map_err(|_| Drop::Silent("message too large"))?;
    buf.truncate(n);
    let clear = buf.clone();
    x.iv = Engine::encrypt(c.cipher, x.ka.as_bytes(), &x.iv, &mut buf)
        .map_err(|_| Drop::Silent("encryption failed"))?;
    Ok((clear, buf))
}
