//! Aggressive Mode (RFC 2409 §5, isakmpd ike_aggressive.c), with pre-shared keys or RSA
//! signatures (§5.1):
//!
//! ```text
//!  1 I>R  HDR, SA, KE, Ni, IDii [, CERT_REQ]
//!  2 R>I  HDR, SA, KE, Nr, IDir, HASH_R       | [CERT_REQ,] [CERT,] SIG_R
//!  3 I>R  HDR*, HASH_I                        | [CERT,] SIG_I
//! ```
//!
//! The authentication payloads and their checks are Main Mode's (`auth.rs`): the peer's
//! certificate must chain to our CAs, pass our CRLs and name the ID it sent in message 1
//! or 2. The initiator asks for certificates (CERT_REQ) when one of its transforms uses
//! signatures, the responder when the one it chose does.
//!
//! The KE goes out with the offer, so every offered transform must use the group of the
//! first one, and the responder may only choose a transform of that group. Message 3 is
//! sent encrypted (as isakmpd, strongSwan and most vendors do); a cleartext message 3, as
//! the RFC's figure shows it, is accepted too.
//!
//! As in `main_mode.rs`, each step is a function of its exchange and a [`Cx`].

use std::net::SocketAddr;

use super::auth::{self, check_peer, script_auth, OurAuth};
use super::crypto::{DhPrivate, Group};
use super::exchange::{Exchange, Kind, P1Choice, P1Step};
use super::phase1::{
    choose, header, initiator_reply, nat_d_payloads, offer_body, our_id, responder_exchange,
    write_sa_echo, Cx, Next, NONCE_LEN,
};
use super::policy::Peer;
use super::sa::Handle;
use super::wire::{
    self, Doi, ExchangeType, Header, MessageBuilder, NotifyType, Payload, PayloadType,
};
use super::{Drop, Engine};
use crate::timer::Time;

fn id_body(p: &Payload<'_>) -> Option<Vec<u8>> {
    match p {
        Payload::Id(id) => Some(id.body()),
        _ => None,
    }
}

impl Engine {
    pub(crate) fn start_aggressive(
        &mut self,
        now: Time,
        peer: &Peer,
        remote: SocketAddr,
        connection: Option<String>,
    ) -> Result<Handle, String> {
        let first = peer.transforms.first().ok_or("no transforms")?;
        let group = Group::from_ike(first.group).ok_or("group not supported")?;
        if peer.transforms.iter().any(|t| t.group != first.group) {
            return Err("aggressive mode: all Transforms must use the same group".into());
        }
        let local = self.our_addr(peer, remote);
        let mut x = Exchange::new(Kind::Aggressive, true, local, remote);
        x.icookie = self.io.new_cookie();
        x.peer = peer.name.clone();
        x.connection = connection;
        x.deadline = now.add_secs(self.policy.exchange_max_time.into());
        x.sai_b = offer_body(peer).map_err(|_| "proposal too large")?;
        let dh = DhPrivate::generate(group, &mut *self.io.rng).map_err(|e| e.to_string())?;
        x.gxi = dh.public_value().to_vec();
        x.dh = Some(dh);
        x.ni = self.io.random(NONCE_LEN);
        let id = our_id(&self.policy, &x);
        let crs = if self.creds.usable()
            && peer
                .transforms
                .iter()
                .any(|t| t.auth == wire::AuthMethod::RSA_SIG)
        {
            self.creds.cert_requests()
        } else {
            Vec::new()
        };
        let nat_t_on = self.nat_t_on();
        let h = header(&x, ExchangeType::AGGRESSIVE);
        let mut buf = vec![0u8; 8192];
        let n = (|| {
            let mut b = MessageBuilder::new(&mut buf, &h)?;
            b.payload(PayloadType::SA, |w| w.bytes(&x.sai_b))?;
            b.payload(PayloadType::KE, |w| w.bytes(&x.gxi))?;
            b.payload(PayloadType::NONCE, |w| w.bytes(&x.ni))?;
            b.payload(PayloadType::ID, |w| w.bytes(&id))?;
            auth::write_cert_requests(&mut b, &crs)?;
            for v in super::nat_t::phase1_vids(nat_t_on) {
                b.payload(PayloadType::VENDOR, |w| w.bytes(v))?;
            }
            b.finish()
        })()
        .map_err(|_| "message too large")?;
        buf.truncate(n);
        let handle = self.exchanges.insert(x).ok_or("exchange table full")?;
        crate::log_info!(
            "aggressive mode with {remote} ({}) started as initiator",
            peer.name
        );
        self.send_step(now, handle, buf, true);
        Ok(handle)
    }

    /// Responder, message 1: choose, compute the keys, answer with message 2; the
    /// exchange starts half-open.
    pub(crate) fn am_r1(
        &mut self,
        now: Time,
        (local, remote): (SocketAddr, SocketAddr),
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        // Message 1 costs a DH computation before the peer has shown that it receives at
        // its address: for peers the configuration does not name, only so many a second,
        // so that a flood from spoofed addresses cannot starve the named ones.
        if !self.policy.names(remote.ip()) && self.aggressive_default.allow(now).is_none() {
            return Err(Drop::Silent(super::OVER_RATE));
        }
        let (x, buf) = r1(&mut self.cx(now), (local, remote), hd, data)?;
        let peer = x.peer.clone();
        let handle = self.insert_half_open(now, x)?;
        self.io.capture(remote, local, data);
        crate::ike_debug!(
            crate::log::DebugClass::Exchange,
            10,
            "aggressive mode with {remote} ({peer}): message 1 answered"
        );
        // Unlike Main Mode's message 2, this one is retransmitted: it is the only message
        // that can make a lost message 3 be sent again, and the DH work is already done.
        self.send_step(now, handle, buf, true);
        Ok(())
    }
}

/// Responder, message 1: choose a transform of the KE's group, compute the keys; the
/// new exchange and message 2.
fn r1(
    cx: &mut Cx<'_>,
    (local, remote): (SocketAddr, SocketAddr),
    hd: &Header,
    data: &[u8],
) -> Result<(Exchange, Vec<u8>), Drop> {
    cx.phase1_room()?;
    let m = Engine::parse(data, false)?;
    super::script::check(Kind::Aggressive, 1, &m)?;
    let Some(Payload::Sa(sa)) = m.find(PayloadType::SA) else {
        return Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no SA payload"));
    };
    let (Some(Payload::Ke(ke)), Some(Payload::Nonce(ni))) =
        (m.find(PayloadType::KE), m.find(PayloadType::NONCE))
    else {
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "no KE or NONCE payload",
        ));
    };
    let idii = m
        .find(PayloadType::ID)
        .and_then(id_body)
        .ok_or(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no ID payload"))?;
    if sa.doi != Doi::IPSEC {
        return Err(Drop::Notify(
            NotifyType::DOI_NOT_SUPPORTED,
            "DOI is not IPSEC",
        ));
    }
    if ni.len() < 8 || ni.len() > 256 {
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "nonce length outside 8-256",
        ));
    }
    let peer = cx.policy.peer_for(remote.ip()).ok_or({
        Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "no [Phase 1] peer for this address",
        )
    })?;
    let Some((pnum, t, choice)) = choose(peer, sa, cx.creds.usable(), Some(ke.len())) else {
        return Err(Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "no proposal chosen: no offered transform of the KE's group matches the peer section",
        ));
    };
    if choice.auth == wire::AuthMethod::PRE_SHARED && peer.psk.is_none() {
        return Err(Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "the [Phase 1] peer section has no Authentication (pre-shared key)",
        ));
    }
    let dh = DhPrivate::generate(choice.group, &mut *cx.io.rng)
        .map_err(|_| Drop::Silent("DH key generation failed"))?;
    let addrs = (local, remote);
    let mut x = responder_exchange(
        cx,
        Kind::Aggressive,
        addrs,
        hd,
        &m,
        peer,
        (choice, sa),
        data,
    );
    x.gxi = ke.to_vec();
    x.ni = ni.to_vec();
    x.gxr = dh.public_value().to_vec();
    x.dh = Some(dh);
    x.nr = cx.io.random(NONCE_LEN);
    x.peer_id = idii;
    x.phase1_keys(cx.policy)?;
    let id = cx.our_id(&x);
    let ours = OurAuth::new(&x, cx.creds, choice, &id)?;
    let crs = match ours {
        OurAuth::Sig { .. } => cx.creds.cert_requests(),
        OurAuth::Hash(_) => Vec::new(),
    };
    // RFC 3947 §3.2: in Aggressive Mode the NAT-D payloads are in messages 2 and 3.
    let nat_vids = x.nat_t.is_some();
    let nat_d = nat_d_payloads(&x, choice.hash);
    let h = header(&x, ExchangeType::AGGRESSIVE);
    let mut buf = vec![0u8; 8192];
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &h)?;
        b.payload(PayloadType::SA, |w| write_sa_echo(w, pnum, &t))?;
        b.payload(PayloadType::KE, |w| w.bytes(&x.gxr))?;
        b.payload(PayloadType::NONCE, |w| w.bytes(&x.nr))?;
        b.payload(PayloadType::ID, |w| w.bytes(&id))?;
        auth::write_cert_requests(&mut b, &crs)?;
        ours.write(&mut b)?;
        for v in super::nat_t::phase1_vids(nat_vids) {
            b.payload(PayloadType::VENDOR, |w| w.bytes(v))?;
        }
        for (ty, d) in &nat_d {
            b.payload(*ty, |w| w.bytes(d.as_bytes()))?;
        }
        b.finish()
    })()
    .map_err(|_| Drop::Silent("message 2 too large"))?;
    buf.truncate(n);
    x.p1_to(P1Step::AwaitAuth);
    x.resend_on_dup = true;
    Ok((x, buf))
}

/// Initiator, message 2: keys, verify HASH_R, send HASH_I; done.
pub(crate) fn i2(
    x: &mut Exchange,
    h: Handle,
    cx: &mut Cx<'_>,
    hd: &Header,
    data: &[u8],
) -> Result<Next, Drop> {
    cx.phase1_room()?;
    let m = Engine::parse(data, false)?;
    let choice = initiator_reply(x, cx, &m, cx.creds.usable())?;
    super::script::check_auth(Kind::Aggressive, 2, script_auth(choice), &m)?;
    let (Some(Payload::Ke(ke)), Some(Payload::Nonce(nr))) =
        (m.find(PayloadType::KE), m.find(PayloadType::NONCE))
    else {
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "no KE or NONCE payload",
        ));
    };
    let idir = m
        .find(PayloadType::ID)
        .and_then(id_body)
        .ok_or(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no ID payload"))?;
    if ke.len() != choice.group.public_len() {
        return Err(Drop::Notify(
            NotifyType::INVALID_KEY_INFORMATION,
            "KE length does not match the group",
        ));
    }
    if x.dh.as_ref().map(|d| d.group()) != Some(choice.group) {
        return Err(Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "responder chose another group than our KE's",
        ));
    }
    x.rcookie = hd.rcookie;
    x.set_p1(P1Step::AwaitAuth(choice));
    x.gxr = ke.to_vec();
    x.nr = nr.to_vec();
    x.phase1_keys(cx.policy)?;
    let auth = check_peer(x, cx.creds, choice, &m, idir, false)?;
    // As isakmpd: the responder's ID must be the peer section's Remote-ID, if it has one.
    cx.check_remote_id(x, &auth)?;
    cx.io.capture(x.remote, x.local, data);
    x.nat_detect(&m, x.local, x.remote);
    // Message 3 already goes over the NAT-T port.
    x.float_to_nat_t(cx.io.nat_port, "aggressive mode");
    let id = cx.our_id(x);
    let nat_d = nat_d_payloads(x, choice.hash);
    let ours = OurAuth::new(x, cx.creds, choice, &id)?;
    let hh = header(x, ExchangeType::AGGRESSIVE);
    let mut buf = vec![0u8; 8192];
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &hh)?;
        ours.write(&mut b)?;
        for (ty, d) in &nat_d {
            b.payload(*ty, |w| w.bytes(d.as_bytes()))?;
        }
        b.finish()
    })()
    .map_err(|_| Drop::Silent("message 3 too large"))?;
    buf.truncate(n);
    let clear = buf.clone();
    x.iv = Engine::encrypt(choice.cipher, x.ka.as_bytes(), &x.iv, &mut buf)
        .map_err(|_| Drop::Silent("encryption failed"))?;
    x.set_p1(P1Step::Done(choice));
    x.resend_on_dup = true;
    cx.io.send_step(cx.now, (h, x), Some(&clear), buf, false);
    Ok(Next::Done(auth))
}

/// Responder, message 3: verify HASH_I; done.
pub(crate) fn r3(
    x: &mut Exchange,
    cx: &mut Cx<'_>,
    c: P1Choice,
    (local, remote): (SocketAddr, SocketAddr),
    data: &[u8],
) -> Result<Next, Drop> {
    let mut buf = data.to_vec();
    let encrypted = buf[19] & wire::FLAG_ENCRYPTION != 0;
    let next_iv = if encrypted {
        Some(Engine::decrypt(c.cipher, x.ka.as_bytes(), &x.iv, &mut buf)?)
    } else {
        None
    };
    let m = Engine::parse(&buf, encrypted).map_err(|_| {
        Drop::Silent("message 3 does not decrypt to a valid message (wrong pre-shared key?)")
    })?;
    super::script::check_auth(Kind::Aggressive, 3, script_auth(c), &m)?;
    // It decrypted to a well-formed message: the CBC chain moves on even if it does not
    // authenticate (the refusal goes out under these keys, as the initiator has them).
    if let Some(iv) = next_iv {
        x.iv = iv;
    }
    let idii = std::mem::take(&mut x.peer_id);
    let auth = check_peer(x, cx.creds, c, &m, idii, false)?;
    x.p1_to(P1Step::Done);
    x.resend_on_dup = false;
    x.last_sent.clear();
    // NAT-D rides in this message; the initiator may have floated already.
    x.nat_detect(&m, local, remote);
    if x.nat_t.is_some_and(|n| n.detected()) && local.port() == cx.io.nat_port {
        // The NAT may have mapped the initiator's port to any of its own.
        x.local = local;
        x.remote = remote;
    }
    cx.io.capture(x.remote, x.local, &buf);
    cx.check_remote_id(x, &auth)?;
    Ok(Next::Done(auth))
}
