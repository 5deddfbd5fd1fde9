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

use std::net::SocketAddr;

use super::crypto::Key;
use super::crypto::{derive, CipherAlg, DhPrivate, Group, HashAlg};
use super::exchange::{retransmit_delay_secs, Exchange, Kind, P1Choice};
use super::policy::{OwnedId, P1Transform, Peer};
use super::sa::{hex, Handle, IsakmpSa};
use super::wire::{
    self, AuthMethod, CertEncoding, Doi, EncryptionAlgorithm, ExchangeType, GroupDescription,
    HashAlgorithm, Header, IkeAttr, LifeType, MessageBuilder, NotifyType, Payload, PayloadType,
    ProtocolId, SaPayload, Transform, Writer,
};
use super::{Drop, Engine, TimerKind};
use crate::timer::Time;

/// Nonce length we send (RFC 2409 allows 8-256 bytes).
pub const NONCE_LEN: usize = 32;
const KEY_IKE: u8 = 1;

/// Writes one data attribute: TV when the value fits 16 bits, TLV otherwise.
pub(crate) fn attr(w: &mut Writer<'_>, ty: u16, v: u64) -> Result<(), wire::NoRoom> {
    if v <= 0xffff {
        w.u16(0x8000 | ty)?;
        w.u16(v as u16)
    } else {
        w.u16(ty)?;
        w.u16(4)?;
        w.u32(v.min(u64::from(u32::MAX)) as u32)
    }
}

/// The SA body of an offer (DOI, situation, one ISAKMP proposal with our transforms).
pub(crate) fn offer_body(peer: &Peer) -> Result<Vec<u8>, wire::NoRoom> {
    let mut buf = vec![0u8; 4096];
    let mut w = Writer::new(&mut buf);
    w.u32(Doi::IPSEC.0)?;
    w.u32(wire::SIT_IDENTITY_ONLY)?;
    let pstart = w.pos();
    w.u8(0)?;
    w.u8(0)?;
    w.u16(0)?;
    w.u8(1)?;
    w.u8(ProtocolId::ISAKMP.0)?;
    w.u8(0)?;
    w.u8(u8::try_from(peer.transforms.len()).map_err(|_| wire::NoRoom)?)?;
    for (i, t) in peer.transforms.iter().enumerate() {
        let ts = w.pos();
        w.u8(if i + 1 < peer.transforms.len() {
            PayloadType::TRANSFORM.0
        } else {
            0
        })?;
        w.u8(0)?;
        w.u16(0)?;
        w.u8(i as u8 + 1)?;
        w.u8(KEY_IKE)?;
        w.u16(0)?;
        attr(
            &mut w,
            IkeAttr::ENCRYPTION_ALGORITHM.0,
            t.encryption.0.into(),
        )?;
        attr(&mut w, IkeAttr::HASH_ALGORITHM.0, t.hash.0.into())?;
        attr(&mut w, IkeAttr::AUTHENTICATION_METHOD.0, t.auth.0.into())?;
        attr(&mut w, IkeAttr::GROUP_DESCRIPTION.0, t.group.0.into())?;
        for l in &t.lives {
            attr(&mut w, IkeAttr::LIFE_TYPE.0, l.ty.0.into())?;
            attr(&mut w, IkeAttr::LIFE_DURATION.0, l.duration.offer)?;
        }
        if let Some(k) = t.key_length {
            attr(&mut w, IkeAttr::KEY_LENGTH.0, k.offer)?;
        }
        let len = (w.pos() - ts) as u16;
        w.patch_u16(ts + 2, len)?;
    }
    let len = (w.pos() - pstart) as u16;
    w.patch_u16(pstart + 2, len)?;
    let n = w.pos();
    buf.truncate(n);
    Ok(buf)
}

/// Does one of our transforms accept the offered one? Returns the choice.
pub(crate) fn accept_transform(
    ours: &[P1Transform],
    t: &Transform<'_>,
    rsa_ok: bool,
) -> Option<P1Choice> {
    if t.id != KEY_IKE {
        return None;
    }
    let a = &t.attributes;
    let get = |ty: IkeAttr| a.get(ty.0).and_then(|x| x.as_u64());
    let enc = EncryptionAlgorithm(get(IkeAttr::ENCRYPTION_ALGORITHM)? as u16);
    let hash = HashAlgorithm(get(IkeAttr::HASH_ALGORITHM)? as u16);
    let auth = AuthMethod(get(IkeAttr::AUTHENTICATION_METHOD)? as u16);
    let group = GroupDescription(get(IkeAttr::GROUP_DESCRIPTION)? as u16);
    let key_bits = get(IkeAttr::KEY_LENGTH);
    // Attributes isakmpd rejects: custom groups and the PRF attribute.
    for x in a.iter() {
        let ok = matches!(
            IkeAttr(x.ty),
            IkeAttr::ENCRYPTION_ALGORITHM
                | IkeAttr::HASH_ALGORITHM
                | IkeAttr::AUTHENTICATION_METHOD
                | IkeAttr::GROUP_DESCRIPTION
                | IkeAttr::LIFE_TYPE
                | IkeAttr::LIFE_DURATION
                | IkeAttr::KEY_LENGTH
        );
        if !ok {
            return None;
        }
    }
    let mut life_secs = None;
    let mut pending_type = None;
    for x in a.iter() {
        match IkeAttr(x.ty) {
            IkeAttr::LIFE_TYPE => pending_type = x.as_u64(),
            IkeAttr::LIFE_DURATION => {
                if pending_type == Some(u64::from(LifeType::SECONDS.0)) {
                    life_secs = x.as_u64();
                }
            }
            _ => {}
        }
    }
    for o in ours {
        if o.encryption != enc || o.hash != hash || o.auth != auth || o.group != group {
            continue;
        }
        match (o.key_length, key_bits) {
            (Some(r), Some(k)) if !r.accepts(k) => continue,
            (None, Some(_)) => continue,
            _ => {}
        }
        if let (Some(s), Some(l)) = (
            life_secs,
            o.lives.iter().find(|l| l.ty == LifeType::SECONDS),
        ) {
            if !l.duration.accepts(s) {
                continue;
            }
        }
        let kb = key_bits
            .map(|k| k as u16)
            .or(o.key_length.map(|r| r.offer as u16));
        let cipher = CipherAlg::from_ike(enc, kb)?;
        let hash = HashAlg::from_ike(hash)?;
        let group = Group::from_ike(group)?;
        if auth != AuthMethod::PRE_SHARED && !(auth == AuthMethod::RSA_SIG && rsa_ok) {
            // DSS and the encryption methods are compiled out in isakmpd too; RSA_SIG
            // needs our key and certificate.
            continue;
        }
        return Some(P1Choice {
            cipher,
            hash,
            auth,
            group,
            lifetime: life_secs.unwrap_or(0),
        });
    }
    None
}

/// The SA body of an SA payload, as hashed (DOI | situation | proposals).
pub(crate) fn sa_body(sa: &SaPayload<'_>) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + sa.raw_proposals().len());
    b.extend_from_slice(&sa.doi.0.to_be_bytes());
    b.extend_from_slice(&sa.situation.to_be_bytes());
    b.extend_from_slice(sa.raw_proposals());
    b
}

pub(crate) fn header(x: &Exchange, exchange: ExchangeType) -> Header {
    Header {
        icookie: x.icookie,
        rcookie: x.rcookie,
        major: 1,
        minor: 0,
        exchange,
        msgid: x.msgid,
        ..Header::default()
    }
}

impl Engine {
    /// Starts a connection: Quick Mode over an existing ISAKMP SA with its peer, else Main
    /// Mode first (the connection follows when phase 1 is done).
    pub(crate) fn connect(&mut self, now: Time, name: &str) -> Result<(), String> {
        let c = self
            .policy
            .connection(name)
            .ok_or("no such connection")?
            .clone();
        let peer = self
            .policy
            .peer(&c.peer)
            .ok_or_else(|| format!("ISAKMP-peer {} not configured", c.peer))?
            .clone();
        let remote = self
            .peer_addr(&peer)
            .ok_or_else(|| format!("[{}] has no Address", peer.name))?;
        if let Some(sa) = self
            .isakmp_sas
            .find(|s| s.remote.ip() == remote.ip() && s.peer == peer.name)
        {
            return self.start_quick_mode(now, sa, &c.name);
        }
        if self
            .exchanges
            .iter()
            .any(|(_, x)| !x.done && x.kind != Kind::Quick && x.peer == peer.name)
        {
            return Ok(()); // phase 1 in progress; the connection starts when it is done
        }
        self.start_main_mode(now, &peer, remote, Some(c.name.clone()))
    }

    fn start_main_mode(
        &mut self,
        now: Time,
        peer: &Peer,
        remote: SocketAddr,
        connection: Option<String>,
    ) -> Result<(), String> {
        if peer.exchange == ExchangeType::AGGRESSIVE {
            return self.start_aggressive(now, peer, remote, connection);
        }
        let local = self.our_addr(peer, remote);
        let mut x = Exchange::new(Kind::Main, true, local, remote);
        x.icookie = self.new_cookie();
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
            b.payload(PayloadType::VENDOR, |w| w.bytes(&wire::VID_DPD))?;
            if nat_t_on {
                for v in &super::nat_t::OUR_VIDS {
                    b.payload(PayloadType::VENDOR, |w| w.bytes(v))?;
                }
            }
            b.finish()
        })()
        .map_err(|_| "message too large")?;
        buf.truncate(n);
        x.step = 1;
        let handle = self.exchanges.insert(x).ok_or("exchange table full")?;
        log::info!(
            "main mode with {remote} ({}) started as initiator",
            peer.name
        );
        self.send_step(now, handle, buf, true);
        Ok(())
    }

    /// Sends a cleartext or already-encrypted message of an exchange, remembering it for
    /// retransmission. `clear` is the capture copy when the message went out encrypted.
    pub(crate) fn send_step(&mut self, now: Time, h: Handle, msg: Vec<u8>, retransmit: bool) {
        self.send_step_captured(now, h, msg.clone(), msg, retransmit);
    }

    pub(crate) fn send_step_captured(
        &mut self,
        now: Time,
        h: Handle,
        clear: Vec<u8>,
        msg: Vec<u8>,
        retransmit: bool,
    ) {
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        let (local, remote) = (x.local, x.remote);
        x.xmits = 0;
        x.next_retransmit = retransmit.then(|| now.add_secs(retransmit_delay_secs(0)));
        self.capture_msg(local, remote, &clear);
        self.send_raw(local, remote, &msg);
        if let Some(x) = self.exchanges.get_mut(h) {
            x.last_sent = msg;
        }
        self.arm(h);
    }

    /// Finds the exchange a message belongs to and handles exact duplicates: `Ok(None)`
    /// when the message was a duplicate (answered with our last message) or stale.
    pub(crate) fn lookup_exchange(
        &mut self,
        kind: Kind,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Option<Result<Handle, ()>> {
        let h = self.exchanges.find_by(&(hd.icookie, hd.msgid), |x| {
            x.kind == kind
                && (x.rcookie == hd.rcookie
                    || (x.initiator && x.rcookie == [0; 8])
                    // a repeated message 1: the responder's exchange already exists
                    || (!x.initiator && hd.rcookie == [0; 8] && x.remote == remote))
        })?;
        let x = self.exchanges.get(h)?;
        if x.last_recv == data {
            // message.c `message_check_duplicate`: a repeat of the message our final
            // message answered means that message was lost: send it again. Any other
            // repeat is dropped; our retransmission timer covers the rest. (Answering
            // every repeat would let two peers echo each other forever.)
            if x.resend_on_dup && !x.last_sent.is_empty() {
                crate::ike_debug!(
                    crate::log::DebugClass::Message,
                    20,
                    "duplicate from {remote}: resending our last message"
                );
                let prefix = self.tx_prefix(x.local);
                if !self.cfg.passive {
                    self.outbox.push(x.local, remote, prefix, &x.last_sent);
                }
            }
            return Some(Err(()));
        }
        if x.done {
            return Some(Err(()));
        }
        Some(Ok(h))
    }

    pub(crate) fn main_mode_input(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        if hd.msgid != 0 {
            return Err(Drop::Notify(
                NotifyType::INVALID_MESSAGE_ID,
                "main mode message with a message ID".into(),
            ));
        }
        let nat_port = self.nat_port();
        match self.lookup_exchange(Kind::Main, remote, hd, data) {
            Some(Err(())) => return Ok(()),
            Some(Ok(h)) => {
                let x = self
                    .exchanges
                    .get_mut(h)
                    .ok_or(Drop::Silent("gone".into()))?;
                if x.remote.ip() != remote.ip() {
                    return Err(Drop::Silent(
                        "message for an exchange with another peer".into(),
                    ));
                }
                if x.nat_t.is_some_and(|n| n.detected()) && local.port() == nat_port {
                    // The initiator floated to the NAT-T port (the NAT may have mapped it
                    // to any port of its own).
                    x.local = local;
                    x.remote = remote;
                }
                x.last_recv.clear();
                x.last_recv.extend_from_slice(data);
                let (initiator, step) = (x.initiator, x.step);
                let r = match (initiator, step) {
                    (true, 1) => self.mm_i2(now, h, hd, data),
                    (false, 2) => self.mm_r3(now, h, data),
                    (true, 3) => self.mm_i4(now, h, data),
                    (false, 4) => self.mm_r5(now, h, data),
                    (true, 5) => {
                        let r = self.mm_i6(now, h, data);
                        if let Err(Drop::Notify(n, _)) = &r {
                            if *n != NotifyType::PAYLOAD_MALFORMED {
                                self.delete_unauthenticated(now, h);
                            }
                        }
                        r
                    }
                    _ => Err(Drop::Silent("unexpected message at this step")),
                };
                if let Err(e) = &r {
                    // A message that fails after the exchange accepted it ends the
                    // exchange (bad hash, no proposal); others (garbage) leave it waiting.
                    if let Drop::Notify(n, why) = e {
                        if *n != NotifyType::PAYLOAD_MALFORMED {
                            if let Some(x) = self.exchanges.get(h) {
                                log::warn!("{} with {remote}: {why}", x.name());
                            }
                            self.stats.failed += 1;
                            self.free_exchange(h);
                        }
                    }
                    if let Some(x) = self.exchanges.get_mut(h) {
                        x.last_recv.clear();
                    }
                }
                r
            }
            None => {
                if hd.rcookie != [0; 8] {
                    return Err(Drop::Notify(
                        NotifyType::INVALID_COOKIE,
                        "main mode message for no known exchange".into(),
                    ));
                }
                self.mm_r1(now, local, remote, hd, data)
            }
        }
    }

    /// Responder, message 1: pick a transform, answer with message 2.
    fn mm_r1(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        let m = Self::parse(data, false)?;
        let Some(Payload::Sa(sa)) = m.find(PayloadType::SA) else {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "no SA payload in main mode message 1".into(),
            ));
        };
        if sa.doi != Doi::IPSEC {
            return Err(Drop::Notify(
                NotifyType::DOI_NOT_SUPPORTED,
                "DOI is not IPSEC".into(),
            ));
        }
        if sa.situation != wire::SIT_IDENTITY_ONLY {
            return Err(Drop::Notify(
                NotifyType::SITUATION_NOT_SUPPORTED,
                "situation not supported".into(),
            ));
        }
        let peer = self.policy.peer_for(remote.ip()).cloned().ok_or_else(|| {
            Drop::Notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                "no [Phase 1] peer for this address",
            )
        })?;
        let mut chosen = None;
        'outer: for p in sa.proposals() {
            if p.protocol != ProtocolId::ISAKMP {
                continue;
            }
            for t in p.transforms() {
                if let Some(c) = accept_transform(&peer.transforms, &t, self.creds.usable()) {
                    chosen = Some((p.number, t, c));
                    break 'outer;
                }
            }
        }
        let Some((pnum, t, choice)) = chosen else {
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
        let mut x = Exchange::new(Kind::Main, false, local, remote);
        x.icookie = hd.icookie;
        x.rcookie = self.new_cookie();
        x.peer = peer.name.clone();
        x.p1 = Some(choice);
        x.sai_b = sa_body(&sa);
        x.deadline = now.add_secs(self.policy.exchange_max_time.into());
        x.last_recv.clear();
        x.last_recv.extend_from_slice(data);
        x.peer_dpd = super::dpd::offers_dpd(&m);
        if self.nat_t_on() {
            x.nat_t = super::nat_t::announced(&m).map(|rfc| super::nat_t::NatT {
                rfc,
                ..Default::default()
            });
        }
        let nat_vid = x.nat_t.map(|n| super::nat_t::answer_vid(n.rfc));
        // Message 2: the chosen transform, echoed.
        let h = header(&x, ExchangeType::ID_PROT);
        let mut buf = vec![0u8; 2048];
        let n = (|| {
            let mut b = MessageBuilder::new(&mut buf, &h)?;
            b.payload(PayloadType::SA, |w| {
                w.u32(Doi::IPSEC.0)?;
                w.u32(wire::SIT_IDENTITY_ONLY)?;
                let ps = w.pos();
                w.u8(0)?;
                w.u8(0)?;
                w.u16(0)?;
                w.u8(pnum)?;
                w.u8(ProtocolId::ISAKMP.0)?;
                w.u8(0)?;
                w.u8(1)?;
                w.u8(0)?;
                w.u8(0)?;
                w.u16((8 + t.attributes.raw().len()) as u16)?;
                w.u8(t.number)?;
                w.u8(t.id)?;
                w.u16(0)?;
                w.bytes(t.attributes.raw())?;
                let len = (w.pos() - ps) as u16;
                w.patch_u16(ps + 2, len)
            })?;
            b.payload(PayloadType::VENDOR, |w| w.bytes(&wire::VID_DPD))?;
            if let Some(v) = &nat_vid {
                b.payload(PayloadType::VENDOR, |w| w.bytes(v))?;
            }
            b.finish()
        })()
        .map_err(|_| Drop::Silent("message 2 too large".into()))?;
        buf.truncate(n);
        x.step = 2;
        x.resend_on_dup = true;
        let handle = self
            .exchanges
            .insert(x)
            .ok_or(Drop::Silent("exchange table full".into()))?;
        self.capture_msg(remote, local, data);
        log::info!(
            "main mode with {remote} ({}) started as responder",
            peer.name
        );
        // isakmpd: the responder never retransmits message 2 on a timer (MSG_DONTRETRANSMIT).
        self.send_step(now, handle, buf, false);
        Ok(())
    }

    /// Initiator, message 2: check the chosen transform, send KE and Ni.
    fn mm_i2(&mut self, now: Time, h: Handle, hd: &Header, data: &[u8]) -> Result<(), Drop> {
        let m = Self::parse(data, false)?;
        let nat_t_on = self.nat_t_on();
        if let Some(x) = self.exchanges.get_mut(h) {
            x.peer_dpd = super::dpd::offers_dpd(&m);
            if nat_t_on {
                x.nat_t = super::nat_t::announced(&m).map(|rfc| super::nat_t::NatT {
                    rfc,
                    ..Default::default()
                });
            }
        }
        let peer = {
            let x = self.exchanges.get(h).ok_or(Drop::Silent("gone".into()))?;
            self.policy
                .peer(&x.peer)
                .cloned()
                .ok_or(Drop::Silent("peer section gone".into()))?
        };
        let Some(Payload::Sa(sa)) = m.find(PayloadType::SA) else {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "no SA payload in main mode message 2".into(),
            ));
        };
        let mut props = sa.proposals();
        let (Some(p), None) = (props.next(), props.next()) else {
            return Err(Drop::Notify(
                NotifyType::BAD_PROPOSAL_SYNTAX,
                "responder must choose exactly one proposal".into(),
            ));
        };
        let mut ts = p.transforms();
        let (Some(t), None) = (ts.next(), ts.next()) else {
            return Err(Drop::Notify(
                NotifyType::BAD_PROPOSAL_SYNTAX,
                "responder must choose exactly one transform".into(),
            ));
        };
        let choice =
            accept_transform(&peer.transforms, &t, self.creds.usable()).ok_or(Drop::Notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                "responder chose a transform we did not offer".into(),
            ))?;
        let dh = DhPrivate::generate(choice.group, &mut *self.rng)
            .map_err(|_| Drop::Silent("DH key generation failed"))?;
        let ni = self.random(NONCE_LEN);
        let crs = self.creds.cert_requests();
        let x = self
            .exchanges
            .get_mut(h)
            .ok_or(Drop::Silent("gone".into()))?;
        x.rcookie = hd.rcookie;
        x.p1 = Some(choice);
        x.gxi = dh.public_value().to_vec();
        x.dh = Some(dh);
        x.ni = ni;
        let nat_d = nat_d_payloads(x, choice.hash);
        let mut buf = vec![0u8; 2048];
        let hh = header(x, ExchangeType::ID_PROT);
        let n = (|| {
            let mut b = MessageBuilder::new(&mut buf, &hh)?;
            b.payload(PayloadType::KE, |w| w.bytes(&x.gxi))?;
            b.payload(PayloadType::NONCE, |w| w.bytes(&x.ni))?;
            for (ty, d) in &nat_d {
                b.payload(*ty, |w| w.bytes(d.as_bytes()))?;
            }
            if choice.auth == AuthMethod::RSA_SIG {
                for ca in &crs {
                    b.payload(PayloadType::CERT_REQ, |w| {
                        w.u8(CertEncoding::X509_SIG.0)?;
                        w.bytes(ca)
                    })?;
                }
            }
            b.finish()
        })()
        .map_err(|_| Drop::Silent("message 3 too large".into()))?;
        buf.truncate(n);
        x.step = 3;
        let (local, remote) = (x.local, x.remote);
        self.capture_msg(remote, local, data);
        self.send_step(now, h, buf, true);
        Ok(())
    }

    /// KE and nonce of message 3 or 4.
    pub(crate) fn ke_nonce(&self, data: &[u8], group: Group) -> Result<(Vec<u8>, Vec<u8>), Drop> {
        let m = Self::parse(data, false)?;
        let Some(Payload::Ke(ke)) = m.find(PayloadType::KE) else {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "no KE payload".into(),
            ));
        };
        let Some(Payload::Nonce(n)) = m.find(PayloadType::NONCE) else {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "no NONCE payload".into(),
            ));
        };
        if ke.len() != group.public_len() {
            return Err(Drop::Notify(
                NotifyType::INVALID_KEY_INFORMATION,
                "KE of the wrong size for the group",
            ));
        }
        if n.len() < 8 || n.len() > 256 {
            return Err(Drop::Notify(
                NotifyType::PAYLOAD_MALFORMED,
                "nonce length outside 8-256".into(),
            ));
        }
        Ok((ke.to_vec(), n.to_vec()))
    }

    /// Computes g^xy, SKEYID and its children, Ka and the first IV.
    pub(crate) fn phase1_keys(&mut self, h: Handle) -> Result<(), Drop> {
        let x = self
            .exchanges
            .get_mut(h)
            .ok_or(Drop::Silent("gone".into()))?;
        let c = x.p1.ok_or(Drop::Silent("no transform".into()))?;
        let peer_ke = if x.initiator { &x.gxr } else { &x.gxi };
        let dh = x.dh.as_ref().ok_or(Drop::Silent("no DH".into()))?;
        let gxy = dh.shared_secret(peer_ke).map_err(|_| {
            Drop::Notify(
                NotifyType::INVALID_KEY_INFORMATION,
                "peer's KE is not a valid public value",
            )
        })?;
        x.skeyid = if c.auth == AuthMethod::RSA_SIG {
            // RFC 2409 §5.1: SKEYID = prf(Ni_b | Nr_b, g^xy) for signatures.
            derive::skeyid_sig(c.hash, &x.ni, &x.nr, gxy.as_bytes())
        } else {
            let psk = self
                .policy
                .peer(&x.peer)
                .and_then(|p| p.psk.clone())
                .ok_or(Drop::Silent("no pre-shared key".into()))?;
            derive::skeyid_psk(c.hash, &psk, &x.ni, &x.nr)
        };
        let k = derive::phase1_keys(
            c.hash,
            x.skeyid.as_bytes(),
            gxy.as_bytes(),
            &x.icookie,
            &x.rcookie,
        );
        x.ka = derive::encryption_key(c.hash, k.e.as_bytes(), c.cipher.key_len());
        x.skeyid_d = k.d;
        x.skeyid_a = k.a;
        x.iv = derive::phase1_iv(c.hash, &x.gxi, &x.gxr, c.cipher.block_len());
        x.dh = None;
        Ok(())
    }

    /// Responder, message 3: KE and Ni in, KE and Nr out, keys computed.
    fn mm_r3(&mut self, now: Time, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let group = self
            .exchanges
            .get(h)
            .and_then(|x| x.p1)
            .ok_or(Drop::Silent("gone".into()))?
            .group;
        let (ke, ni) = self.ke_nonce(data, group)?;
        let dh = DhPrivate::generate(group, &mut *self.rng)
            .map_err(|_| Drop::Silent("DH key generation failed"))?;
        let nr = self.random(NONCE_LEN);
        {
            let x = self
                .exchanges
                .get_mut(h)
                .ok_or(Drop::Silent("gone".into()))?;
            x.resend_on_dup = false;
            x.gxi = ke;
            x.ni = ni;
            x.gxr = dh.public_value().to_vec();
            x.dh = Some(dh);
            x.nr = nr;
        }
        self.phase1_keys(h)?;
        self.nat_detect(h, data)?;
        let crs = self.creds.cert_requests();
        let x = self
            .exchanges
            .get_mut(h)
            .ok_or(Drop::Silent("gone".into()))?;
        let rsa = x.p1.map(|c| c.auth) == Some(AuthMethod::RSA_SIG);
        let nat_d = match x.p1 {
            Some(c) => nat_d_payloads(x, c.hash),
            None => Vec::new(),
        };
        let mut buf = vec![0u8; 4096];
        let hh = header(x, ExchangeType::ID_PROT);
        let n = (|| {
            let mut b = MessageBuilder::new(&mut buf, &hh)?;
            b.payload(PayloadType::KE, |w| w.bytes(&x.gxr))?;
            b.payload(PayloadType::NONCE, |w| w.bytes(&x.nr))?;
            for (ty, d) in &nat_d {
                b.payload(*ty, |w| w.bytes(d.as_bytes()))?;
            }
            if rsa {
                for ca in &crs {
                    b.payload(PayloadType::CERT_REQ, |w| {
                        w.u8(CertEncoding::X509_SIG.0)?;
                        w.bytes(ca)
                    })?;
                }
            }
            b.finish()
        })()
        .map_err(|_| Drop::Silent("message 4 too large".into()))?;
        buf.truncate(n);
        x.step = 4;
        let (local, remote) = (x.local, x.remote);
        self.capture_msg(remote, local, data);
        self.send_step(now, h, buf, true);
        Ok(())
    }

    pub(crate) fn our_id(&self, x: &Exchange) -> Vec<u8> {
        self.policy
            .peer(&x.peer)
            .and_then(|p| p.id.clone())
            .unwrap_or_else(|| OwnedId::address(x.local.ip()))
            .body()
    }

    /// Builds and encrypts message 5 or 6 (ID, HASH [, INITIAL-CONTACT]).
    fn mm_auth_message(
        &mut self,
        h: Handle,
        initial_contact: bool,
    ) -> Result<(Vec<u8>, Vec<u8>), Drop> {
        let id = {
            let x = self.exchanges.get(h).ok_or(Drop::Silent("gone".into()))?;
            self.our_id(x)
        };
        let x = self
            .exchanges
            .get_mut(h)
            .ok_or(Drop::Silent("gone".into()))?;
        let c = x.p1.ok_or(Drop::Silent("no transform".into()))?;
        let hash = if x.initiator {
            derive::hash_i(
                c.hash,
                x.skeyid.as_bytes(),
                &x.gxi,
                &x.gxr,
                &x.icookie,
                &x.rcookie,
                &x.sai_b,
                &id,
            )
        } else {
            derive::hash_r(
                c.hash,
                x.skeyid.as_bytes(),
                &x.gxi,
                &x.gxr,
                &x.icookie,
                &x.rcookie,
                &x.sai_b,
                &id,
            )
        };
        // RSA_SIG: our certificate and SIG = the hash, PKCS#1-padded and signed.
        let rsa = c.auth == AuthMethod::RSA_SIG;
        let mut sig = vec![0u8; 1024];
        let mut cert = Vec::new();
        if rsa {
            let key = self
                .creds
                .key
                .as_ref()
                .ok_or(Drop::Silent("no private key".into()))?;
            let n = key
                .sign_raw(hash.as_bytes(), &mut sig)
                .map_err(|_| Drop::Silent("signing failed"))?;
            sig.truncate(n);
            cert = self
                .creds
                .cert
                .as_ref()
                .and_then(|c| c.der().ok())
                .unwrap_or_default();
        }
        let x = self
            .exchanges
            .get_mut(h)
            .ok_or(Drop::Silent("gone".into()))?;
        let mut buf = vec![0u8; 8192];
        let hh = header(x, ExchangeType::ID_PROT);
        let (ic, rc) = (x.icookie, x.rcookie);
        let n = (|| {
            let mut b = MessageBuilder::new(&mut buf, &hh)?;
            b.payload(PayloadType::ID, |w| w.bytes(&id))?;
            if rsa {
                if !cert.is_empty() {
                    b.payload(PayloadType::CERT, |w| {
                        w.u8(CertEncoding::X509_SIG.0)?;
                        w.bytes(&cert)
                    })?;
                }
                b.payload(PayloadType::SIG, |w| w.bytes(&sig))?;
            } else {
                b.payload(PayloadType::HASH, |w| w.bytes(hash.as_bytes()))?;
            }
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
        .map_err(|_| Drop::Silent("message too large".into()))?;
        buf.truncate(n);
        let clear = buf.clone();
        x.iv = Self::encrypt(c.cipher, &x.ka, &x.iv, &mut buf)
            .map_err(|_| Drop::Silent("encryption failed"))?;
        Ok((clear, buf))
    }

    /// Initiator, message 4: keys, then message 5.
    fn mm_i4(&mut self, now: Time, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let group = self
            .exchanges
            .get(h)
            .and_then(|x| x.p1)
            .ok_or(Drop::Silent("gone".into()))?
            .group;
        let (ke, nr) = self.ke_nonce(data, group)?;
        {
            let x = self
                .exchanges
                .get_mut(h)
                .ok_or(Drop::Silent("gone".into()))?;
            x.gxr = ke;
            x.nr = nr;
        }
        self.phase1_keys(h)?;
        self.nat_detect(h, data)?;
        let (local, remote) = {
            let x = self.exchanges.get(h).ok_or(Drop::Silent("gone".into()))?;
            (x.local, x.remote)
        };
        self.capture_msg(remote, local, data);
        self.float_to_nat_t(h, "main mode");
        let initial_contact = !self
            .isakmp_sas
            .iter()
            .any(|(_, s)| s.remote.ip() == remote.ip());
        let (clear, msg) = self.mm_auth_message(h, initial_contact)?;
        if let Some(x) = self.exchanges.get_mut(h) {
            x.step = 5;
        }
        self.send_step_captured(now, h, clear, msg, true);
        Ok(())
    }

    /// Responder, message 5: verify, answer with message 6, create the SA.
    fn mm_r5(&mut self, now: Time, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let auth = self.verify_auth_message(h, data)?;
        if let Some(want) = self
            .exchanges
            .get(h)
            .and_then(|x| self.policy.peer(&x.peer))
            .and_then(|p| p.remote_id.clone())
        {
            if want.body() != auth.peer_id {
                return Err(Drop::Notify(
                    NotifyType::INVALID_ID_INFORMATION,
                    "peer's ID differs from its configured Remote-ID".into(),
                ));
            }
        }
        let (clear, msg) = self.mm_auth_message(h, false)?;
        if let Some(x) = self.exchanges.get_mut(h) {
            x.step = 6;
            x.resend_on_dup = true;
        }
        self.send_step_captured(now, h, clear, msg, false);
        self.phase1_done(now, h, auth);
        Ok(())
    }

    /// Initiator, message 6: verify, create the SA, start the connection.
    fn mm_i6(&mut self, now: Time, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let auth = self.verify_auth_message(h, data)?;
        if let Some(x) = self.exchanges.get_mut(h) {
            x.step = 6;
        }
        self.phase1_done(now, h, auth);
        Ok(())
    }

    /// The responder finished phase 1 when it sent message 6, but message 6 did not
    /// authenticate it to us: DELETE its ISAKMP SA under the exchange's keys, so that
    /// neither side keeps an SA.
    fn delete_unauthenticated(&mut self, now: Time, h: Handle) {
        let Some(x) = self.exchanges.get(h) else {
            return;
        };
        let Some(c) = x.p1 else {
            return;
        };
        let sa = IsakmpSa {
            icookie: x.icookie,
            rcookie: x.rcookie,
            initiator: true,
            local: x.local,
            remote: x.remote,
            peer: x.peer.clone(),
            hash: c.hash,
            cipher: c.cipher,
            group: c.group,
            auth: c.auth,
            skeyid_d: x.skeyid_d.clone(),
            skeyid_a: x.skeyid_a.clone(),
            ka: x.ka.clone(),
            last_block: x.iv.clone(),
            id_local: Vec::new(),
            id_remote: Vec::new(),
            established: now,
            lifetime: 0,
            hard_expiry: None,
            dpd: Default::default(),
            nat_t: None,
            cfg_address: None,
            cfg_peer_address: None,
        };
        if let Some(sh) = self.isakmp_sas.insert(sa) {
            log::info!("telling {} to delete the phase 1 SA it holds", x.remote);
            self.delete_isakmp_sa(now, sh, true);
        }
    }

    pub(crate) fn phase1_done(&mut self, now: Time, h: Handle, auth: super::auth::Authenticated) {
        let super::auth::Authenticated {
            peer_id,
            initial_contact,
            ..
        } = auth;
        let Some(x) = self.exchanges.get(h) else {
            return;
        };
        let Some(c) = x.p1 else {
            return;
        };
        let id_local = self.our_id(x);
        let lifetime = c.lifetime;
        let sa = IsakmpSa {
            icookie: x.icookie,
            rcookie: x.rcookie,
            initiator: x.initiator,
            local: x.local,
            remote: x.remote,
            peer: x.peer.clone(),
            hash: c.hash,
            cipher: c.cipher,
            group: c.group,
            auth: c.auth,
            skeyid_d: x.skeyid_d.clone(),
            skeyid_a: x.skeyid_a.clone(),
            ka: x.ka.clone(),
            last_block: x.iv.clone(),
            id_local: id_local.clone(),
            id_remote: peer_id.clone(),
            established: now,
            lifetime,
            hard_expiry: (lifetime > 0).then(|| now.add_secs(lifetime)),
            dpd: super::sa::Dpd {
                peer: x.peer_dpd,
                heard: now,
                ..Default::default()
            },
            nat_t: x.nat_t,
            cfg_address: None,
            cfg_peer_address: None,
        };
        let (initiator, local, remote, connection, peer) = (
            x.initiator,
            x.local,
            x.remote,
            x.connection.clone(),
            x.peer.clone(),
        );
        if initial_contact {
            // RFC 2407 §4.6.3.3: the peer rebooted; what we hold with it is stale.
            let old: Vec<Handle> = self
                .isakmp_sas
                .iter()
                .filter(|(_, s)| s.remote.ip() == remote.ip())
                .map(|(h, _)| h)
                .collect();
            for o in old {
                self.delete_isakmp_sa(now, o, false);
            }
            let old: Vec<Handle> = self
                .ipsec_sas
                .iter()
                .filter(|(_, s)| s.remote.ip() == remote.ip())
                .map(|(h, _)| h)
                .collect();
            for o in old {
                self.delete_ipsec_sa(now, o, false);
            }
        }
        let hard = sa.hard_expiry;
        let Some(sh) = self.isakmp_sas.insert(sa) else {
            log::error!("ISAKMP SA table full: phase 1 with {remote} dropped");
            self.free_exchange(h);
            return;
        };
        if let Some(t) = hard {
            let _ = self.timers.insert(t, TimerKind::IsakmpExpire(sh));
        }
        self.dpd_start(now, sh);
        if self
            .isakmp_sas
            .get(sh)
            .is_some_and(|s| s.nat_t.is_some_and(|n| n.local_behind))
        {
            let every = self.policy.nat_t_keepalive;
            if every > 0 {
                let _ = self
                    .timers
                    .insert(now.add_secs(every), TimerKind::Keepalive(sh));
            }
        }
        self.stats.phase1_done += 1;
        let show = |b: &[u8]| {
            wire::IdPayload::parse(b)
                .ok()
                .and_then(|p| p.identity().ok().map(|i| i.to_string()))
                .unwrap_or_else(|| hex(b))
        };
        let (iid, rid) = if initiator {
            (show(&id_local), show(&peer_id))
        } else {
            (show(&peer_id), show(&id_local))
        };
        let line = format!(
            "isakmpd: phase 1 done (as {}): initiator id {iid}, responder id {rid}, src: {} dst: {}",
            if initiator { "initiator" } else { "responder" },
            local.ip(),
            remote.ip()
        );
        if crate::log::verbose() {
            log::info!("{line}");
        } else {
            crate::ike_debug!(crate::log::DebugClass::Exchange, 10, "{line}");
        }
        self.finish_exchange(now, h);
        // Start the connection that asked for this phase 1, and any other wanted
        // connection to the same peer; after mode-config if the peer is flagged for it.
        let mut names: Vec<String> = Vec::new();
        if initiator {
            names.extend(connection);
            for c in &self.policy.connections {
                if !c.passive
                    && c.peer == peer
                    && !names.contains(&c.name)
                    && self.wanted.contains(&c.name)
                {
                    names.push(c.name.clone());
                }
            }
        }
        if self.policy.peer(&peer).is_some_and(|p| p.ikecfg) {
            match self.start_transaction(now, sh, names) {
                Some(back) => names = back,
                None => return,
            }
        }
        self.start_after_cfg(now, sh, names);
    }
}

/// Our NAT-D payloads for a message of exchange `x`: the hash of where it goes, then of
/// where it comes from (none unless both sides announced NAT-T).
pub(crate) fn nat_d_payloads(x: &Exchange, h: HashAlg) -> Vec<(PayloadType, Key)> {
    let Some(n) = x.nat_t else {
        return Vec::new();
    };
    let ty = n.nat_d_type();
    vec![
        (ty, super::nat_t::nat_d(h, &x.icookie, &x.rcookie, x.remote)),
        (ty, super::nat_t::nat_d(h, &x.icookie, &x.rcookie, x.local)),
    ]
}

impl Engine {
    /// RFC 3947 §4: through a NAT, the initiator sends the rest of the exchange (and all
    /// after it) from the NAT-T port to port 4500.
    pub(crate) fn float_to_nat_t(&mut self, h: Handle, exchange: &str) {
        let nat_port = self.nat_port();
        if let Some(x) = self.exchanges.get_mut(h) {
            if x.nat_t.is_some_and(|n| n.detected()) {
                x.local.set_port(nat_port);
                x.remote.set_port(4500);
                log::info!(
                    "NAT detected; {exchange} with {} continues on port 4500",
                    x.remote.ip()
                );
            }
        }
    }

    /// The peer's NAT-D payloads in message 3 or 4: who is behind a NAT.
    pub(crate) fn nat_detect(&mut self, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let Some(x) = self.exchanges.get(h) else {
            return Ok(());
        };
        let (local, remote) = (x.local, x.remote);
        let m = Self::parse(data, false)?;
        self.nat_detect_in(h, &m, local, remote);
        Ok(())
    }

    /// The NAT-D payloads of message `m`, which came from `remote` to `local`: who is
    /// behind a NAT (no NAT-D after announcing NAT-T: no NAT-T after all).
    pub(crate) fn nat_detect_in(
        &mut self,
        h: Handle,
        m: &super::wire::Message<'_>,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        let (Some(mut n), Some(c)) = (x.nat_t, x.p1) else {
            return;
        };
        match super::nat_t::detect(m, c.hash, &x.icookie, &x.rcookie, local, remote) {
            Some((local_behind, peer_behind)) => {
                n.local_behind = local_behind;
                n.peer_behind = peer_behind;
                x.nat_t = Some(n);
                if n.detected() {
                    log::info!(
                        "NAT-T: {} behind a NAT",
                        match (local_behind, peer_behind) {
                            (true, true) => "both sides are",
                            (true, false) => "we are",
                            _ => "the peer is",
                        }
                    );
                }
            }
            None => x.nat_t = None,
        }
    }
}
