//! Phase 1, the part Main Mode and Aggressive Mode share (isakmpd ike_phase_1.c): the
//! offer and the choice of a transform, the responder's echo of it, the keys (SKEYID and
//! its three children, RFC 2409 §5), HASH_I/HASH_R, NAT-T detection (RFC 3947 §3), and the
//! ISAKMP SA that comes of an authenticated exchange. The two modes are short lists of
//! steps over these: `main_mode.rs` and `aggressive.rs`.

use std::net::SocketAddr;

use super::auth::{Authenticated, Credentials};
use super::crypto::{derive, CipherAlg, Group, HashAlg, Key};
use super::exchange::{Exchange, Kind, P1Choice, P1Step, State};
use super::io::Io;
use super::policy::Policy;
use super::policy::{OwnedId, P1Transform, Peer};
use super::router::Table;
use super::sa::{hex, Handle, IsakmpSa};
use super::wire::{
    self, AuthMethod, Doi, EncryptionAlgorithm, ExchangeType, GroupDescription, HashAlgorithm,
    Header, IkeAttr, LifeType, Message, NotifyType, Payload, PayloadType, ProtocolId, SaPayload,
    Transform, Writer,
};
use super::{aggressive, main_mode, Drop, Engine, TimerKind};
use crate::timer::Time;
use P1Step::{AwaitAuth, AwaitKe, AwaitSa};

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
            IkeAttr::LIFE_DURATION if pending_type == Some(u64::from(LifeType::SECONDS.0)) => {
                life_secs = x.as_u64();
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

/// Responder: the first offered ISAKMP transform that one of the peer's Transforms
/// accepts (RFC 2409 §5: the responder picks one and echoes it); with `ke_len`
/// (Aggressive Mode, whose message 1 already carries KE) only a transform of that group.
pub(crate) fn choose<'a>(
    peer: &Peer,
    sa: &SaPayload<'a>,
    rsa_ok: bool,
    ke_len: Option<usize>,
) -> Option<(u8, Transform<'a>, P1Choice)> {
    for p in sa.proposals() {
        if p.protocol != ProtocolId::ISAKMP {
            continue;
        }
        for t in p.transforms() {
            if let Some(c) = accept_transform(&peer.transforms, &t, rsa_ok) {
                if ke_len.is_none_or(|l| c.group.public_len() == l) {
                    return Some((p.number, t, c));
                }
            }
        }
    }
    None
}

/// Initiator: the responder's SA must hold exactly one proposal with exactly one
/// transform, and that one must be one we offered.
pub(crate) fn accepted(peer: &Peer, m: &Message<'_>, rsa_ok: bool) -> Result<P1Choice, Drop> {
    let Some(Payload::Sa(sa)) = m.find(PayloadType::SA) else {
        return Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no SA payload"));
    };
    let mut props = sa.proposals();
    let (Some(p), None) = (props.next(), props.next()) else {
        return Err(Drop::Notify(
            NotifyType::BAD_PROPOSAL_SYNTAX,
            "responder must choose exactly one proposal",
        ));
    };
    let mut ts = p.transforms();
    let (Some(t), None) = (ts.next(), ts.next()) else {
        return Err(Drop::Notify(
            NotifyType::BAD_PROPOSAL_SYNTAX,
            "responder must choose exactly one transform",
        ));
    };
    accept_transform(&peer.transforms, &t, rsa_ok).ok_or(Drop::Notify(
        NotifyType::NO_PROPOSAL_CHOSEN,
        "responder chose a transform we did not offer",
    ))
}

/// The body of the responder's SA payload: the chosen proposal with the chosen
/// transform, its attributes copied as received.
pub(crate) fn write_sa_echo(
    w: &mut Writer<'_>,
    pnum: u8,
    t: &Transform<'_>,
) -> Result<(), wire::NoRoom> {
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
}

/// What a phase 1 step may use besides its own exchange: the queues out, the policy,
/// our credentials, and the ISAKMP SAs to read. The tables are the router's: a step
/// neither finds nor frees exchanges, and the ISAKMP SA that comes of it is made by the
/// router when the step returns [`Next::Done`].
pub(crate) struct Cx<'a> {
    pub now: Time,
    pub io: &'a mut Io,
    pub policy: &'a Policy,
    pub creds: &'a Credentials,
    pub sas: &'a Table<IsakmpSa, ([u8; 8], [u8; 8])>,
    pub nat_t_on: bool,
    /// The peer addresses we have sent INITIAL-CONTACT (isakmpd's contact list).
    pub contacted: &'a mut Contacts,
}

/// isakmpd's contact list (ipsec.c `ipsec_contacted`/`ipsec_add_contact`): the peer
/// addresses this daemon has completed a phase 1 with since it started. The last phase 1
/// message we send to an address not on it, initiator's or responder's, carries
/// INITIAL-CONTACT. Bounded by the ISAKMP SA table's size (past it, first contacts are
/// not remembered, so such peers get INITIAL-CONTACT again: harmless).
pub(crate) struct Contacts {
    seen: std::collections::HashSet<std::net::IpAddr, super::router::Keyed>,
    cap: usize,
}

impl Contacts {
    pub(crate) fn new(cap: usize, key: super::router::Keyed) -> Contacts {
        Contacts {
            seen: std::collections::HashSet::with_hasher(key),
            cap,
        }
    }

    /// Whether `a` is a first contact; it is one no more.
    pub(crate) fn first(&mut self, a: std::net::IpAddr) -> bool {
        if self.seen.contains(&a) {
            return false;
        }
        if self.seen.len() < self.cap {
            self.seen.insert(a);
        }
        true
    }
}

/// Builds the [`Cx`] of engine `$e` from its fields, so that it can be had beside a
/// borrowed exchange.
macro_rules! cx {
    ($e:ident, $now:expr) => {
        Cx {
            now: $now,
            io: &mut $e.io,
            policy: &$e.policy,
            creds: &$e.creds,
            sas: &$e.isakmp_sas,
            nat_t_on: !$e.cfg.no_nat_t,
            contacted: &mut $e.contacted,
        }
    };
}

/// Where a phase 1 step leaves its exchange.
pub(crate) enum Next {
    /// Waiting for the peer's next message.
    Wait,
    /// The peer is authenticated: the ISAKMP SA is to be made.
    Done(Authenticated),
}

impl Cx<'_> {
    /// Room for one more ISAKMP SA. Checked before the message that makes the peer
    /// believe in phase 1 (Main Mode 5 and 6, Aggressive Mode 2 and 3), and before
    /// anything of the message it answers is taken in: with the table full the message
    /// goes unanswered, the peer retransmits it, and a slot freed meanwhile lets it
    /// through; the peer never holds a phase 1 SA we dropped.
    pub(crate) fn phase1_room(&self) -> Result<(), Drop> {
        if self.sas.len() < self.sas.capacity() {
            return Ok(());
        }
        Err(Drop::Silent(
            "ISAKMP SA table full (Max-phase1-SAs): not answered",
        ))
    }

    /// Our ID payload body for exchange `x`.
    pub(crate) fn our_id(&self, x: &Exchange) -> Vec<u8> {
        our_id(self.policy, x)
    }

    /// The authenticated peer's ID must be its section's Remote-ID, where one is set.
    pub(crate) fn check_remote_id(&self, x: &Exchange, auth: &Authenticated) -> Result<(), Drop> {
        match self.policy.peer(&x.peer).and_then(|p| p.remote_id.as_ref()) {
            Some(want) if want.body() != auth.peer_id => Err(Drop::Notify(
                NotifyType::INVALID_ID_INFORMATION,
                "peer's ID differs from its configured Remote-ID",
            )),
            _ => Ok(()),
        }
    }
}

/// Our ID payload body for exchange `x`: the peer section's ID, else our address.
pub(crate) fn our_id(policy: &Policy, x: &Exchange) -> Vec<u8> {
    policy
        .peer(&x.peer)
        .and_then(|p| p.id.clone())
        .unwrap_or_else(|| OwnedId::address(x.local.ip()))
        .body()
}

/// Initiator, the responder's first answer `m`: what its vendor IDs announce, and the
/// transform it chose.
pub(crate) fn initiator_reply(
    x: &mut Exchange,
    cx: &Cx<'_>,
    m: &Message<'_>,
    rsa_ok: bool,
) -> Result<P1Choice, Drop> {
    x.note_peer_features(m, cx.nat_t_on);
    let peer = cx
        .policy
        .peer(&x.peer)
        .ok_or(Drop::Silent("peer section gone"))?;
    accepted(peer, m, rsa_ok)
}

/// A responder's exchange from the peer's message 1 `data` (parsed: `m`), with the
/// transform it chose from the offer `sa`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn responder_exchange(
    cx: &mut Cx<'_>,
    kind: Kind,
    (local, remote): (SocketAddr, SocketAddr),
    hd: &Header,
    m: &Message<'_>,
    peer: &Peer,
    (choice, sa): (P1Choice, &SaPayload<'_>),
    data: &[u8],
) -> Exchange {
    let mut x = Exchange::new(kind, false, local, remote);
    x.note_peer_features(m, cx.nat_t_on);
    x.icookie = hd.icookie;
    x.rcookie = cx.io.new_cookie();
    x.peer = peer.name.clone();
    x.set_p1(P1Step::AwaitKe(choice));
    x.sai_b = sa_body(sa);
    x.deadline = cx.now.add_secs(cx.policy.exchange_max_time.into());
    x.last_recv.clear();
    x.last_recv.extend_from_slice(data);
    x
}

/// KE and nonce of Main Mode message 3 or 4 (`n`).
pub(crate) fn ke_nonce(
    kind: Kind,
    n: u8,
    m: &Message<'_>,
    group: Group,
) -> Result<(Vec<u8>, Vec<u8>), Drop> {
    super::script::check(kind, n, m)?;
    let Some(Payload::Ke(ke)) = m.find(PayloadType::KE) else {
        return Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no KE payload"));
    };
    let Some(Payload::Nonce(n)) = m.find(PayloadType::NONCE) else {
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "no NONCE payload",
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
            "nonce length outside 8-256",
        ));
    }
    Ok((ke.to_vec(), n.to_vec()))
}

impl Exchange {
    /// Computes g^xy, SKEYID and its children, Ka and the first IV (the pre-shared key
    /// from the peer's section in `policy`).
    pub(crate) fn phase1_keys(&mut self, policy: &Policy) -> Result<(), Drop> {
        let c = self.choice().ok_or(Drop::Silent("no transform"))?;
        let peer_ke = if self.initiator { &self.gxr } else { &self.gxi };
        let dh = self.dh.as_ref().ok_or(Drop::Silent("no DH"))?;
        let gxy = dh.shared_secret(peer_ke).map_err(|_| {
            Drop::Notify(
                NotifyType::INVALID_KEY_INFORMATION,
                "peer's KE is not a valid public value",
            )
        })?;
        self.skeyid = if c.auth == AuthMethod::RSA_SIG {
            // RFC 2409 §5.1: SKEYID = prf(Ni_b | Nr_b, g^xy) for signatures.
            derive::skeyid_sig(c.hash, &self.ni, &self.nr, gxy.as_bytes())
        } else {
            let psk = policy
                .peer(&self.peer)
                .and_then(|p| p.psk.as_ref())
                .ok_or(Drop::Silent("no pre-shared key"))?;
            derive::skeyid_psk(c.hash, psk, &self.ni, &self.nr)
        };
        let k = derive::phase1_keys(
            c.hash,
            self.skeyid.as_bytes(),
            gxy.as_bytes(),
            &self.icookie,
            &self.rcookie,
        );
        self.ka = derive::encryption_key(c.hash, k.e.as_bytes(), c.cipher.key_len());
        self.skeyid_d = k.d;
        self.skeyid_a = k.a;
        self.iv = derive::phase1_iv(c.hash, &self.gxi, &self.gxr, c.cipher.block_len());
        self.dh = None;
        Ok(())
    }

    /// RFC 3947 §4: through a NAT, the initiator sends the rest of the exchange (and all
    /// after it) from the NAT-T port to port 4500.
    pub(crate) fn float_to_nat_t(&mut self, nat_port: u16, exchange: &str) {
        if self.nat_t.is_some_and(|n| n.detected()) {
            self.local.set_port(nat_port);
            self.remote.set_port(4500);
            crate::log_info!(
                "NAT detected; {exchange} with {} continues on port 4500",
                self.remote.ip()
            );
        }
    }

    /// The NAT-D payloads of message `m`, which came from `remote` to `local`: who is
    /// behind a NAT (no NAT-D after announcing NAT-T: no NAT-T after all).
    pub(crate) fn nat_detect(&mut self, m: &Message<'_>, local: SocketAddr, remote: SocketAddr) {
        let (Some(mut n), Some(c)) = (self.nat_t, self.choice()) else {
            return;
        };
        match super::nat_t::detect(m, c.hash, &self.icookie, &self.rcookie, local, remote) {
            Some((local_behind, peer_behind)) => {
                n.local_behind = local_behind;
                n.peer_behind = peer_behind;
                self.nat_t = Some(n);
                if n.detected() {
                    crate::log_info!(
                        "NAT-T: {} behind a NAT",
                        match (local_behind, peer_behind) {
                            (true, true) => "both sides are",
                            (true, false) => "we are",
                            _ => "the peer is",
                        }
                    );
                }
            }
            None => self.nat_t = None,
        }
    }
}

impl Exchange {
    /// HASH_I (`of_initiator`) or HASH_R over the ID payload body `id` (RFC 2409 §5).
    pub(crate) fn auth_hash(&self, of_initiator: bool, id: &[u8]) -> Key {
        let (hash, skeyid) = (
            self.choice().map_or(HashAlg::Sha1, |c| c.hash),
            self.skeyid.as_bytes(),
        );
        let f = if of_initiator {
            derive::hash_i
        } else {
            derive::hash_r
        };
        f(
            hash,
            skeyid,
            &self.gxi,
            &self.gxr,
            &self.icookie,
            &self.rcookie,
            &self.sai_b,
            id,
        )
    }

    /// What the peer's vendor IDs announce: DPD (RFC 3706) and NAT-T (RFC 3947), the
    /// latter only when we do NAT-T.
    pub(crate) fn note_peer_features(&mut self, m: &Message<'_>, nat_t_on: bool) {
        self.peer_dpd = super::dpd::offers_dpd(m);
        if nat_t_on {
            self.nat_t = super::nat_t::announced(m).map(|rfc| super::nat_t::NatT {
                rfc,
                ..Default::default()
            });
        }
    }
}

impl Engine {
    /// Stores a responder's new exchange as half-open: it expires in
    /// [`HALF_OPEN_SECS`], and when the half-open exchanges of its source address, or all
    /// of them, or the whole exchange table are at their limit, the oldest half-open one
    /// (of that address, else of all) makes room. A flood of message 1 from spoofed
    /// addresses thus only ever replaces itself, and cannot lock out a peer that
    /// answers our message 2.
    pub(crate) fn insert_half_open(&mut self, now: Time, mut x: Exchange) -> Result<Handle, Drop> {
        let limits = self.policy.limits;
        let ip = x.remote.ip();
        let (mut from_source, mut oldest_of_source) = (0, None);
        for &h in &self.half_open {
            if let Some(e) = self.exchanges.get(h) {
                if e.half_open && e.remote.ip() == ip {
                    from_source += 1;
                    oldest_of_source.get_or_insert(h);
                }
            }
        }
        let victim = if from_source >= limits.half_open_per_source {
            oldest_of_source
        } else if self.half_open_count >= limits.half_open
            || self.exchanges.len() == self.exchanges.capacity()
        {
            self.oldest_half_open()
        } else {
            None
        };
        if let Some(v) = victim {
            self.io.stats.half_open_evicted += 1;
            self.free_exchange(v);
        }
        // The queue keeps room: stale entries go first, a live one at its head is the
        // oldest half-open exchange and goes too.
        while self.half_open.len() >= self.half_open.capacity() {
            match self.half_open.pop_front() {
                Some(h) if self.exchanges.get(h).is_some_and(|e| e.half_open) => {
                    self.io.stats.half_open_evicted += 1;
                    self.free_exchange(h);
                }
                Some(_) => {}
                None => break,
            }
        }
        x.half_open = true;
        x.deadline = now.add_secs(super::exchange::HALF_OPEN_SECS);
        let h = self
            .exchanges
            .insert(x)
            .ok_or(Drop::Silent("exchange table full"))?;
        self.half_open_count += 1;
        self.half_open.push_back(h);
        Ok(h)
    }

    /// Takes the oldest live half-open exchange off the queue.
    fn oldest_half_open(&mut self) -> Option<Handle> {
        while let Some(h) = self.half_open.pop_front() {
            if self.exchanges.get(h).is_some_and(|e| e.half_open) {
                return Some(h);
            }
        }
        None
    }

    /// A Main Mode or Aggressive Mode message (isakmpd exchange.c `exchange_run` over
    /// the two scripts): its exchange, or a new one for a message 1; then the step the
    /// exchange has reached. A message that fails after the exchange accepted it ends
    /// the exchange (bad hash, no proposal); garbage leaves it waiting.
    pub(crate) fn phase1_input(
        &mut self,
        kind: Kind,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        if hd.msgid != 0 {
            return Err(Drop::Notify(
                NotifyType::INVALID_MESSAGE_ID,
                "phase 1 message with a message ID",
            ));
        }
        let nat_port = self.nat_port();
        let h = match self.lookup_exchange(now, kind, remote, hd, data) {
            Some(Err(())) => return Ok(()),
            Some(Ok(h)) => h,
            None if hd.rcookie != [0; 8] => {
                return Err(Drop::Notify(
                    NotifyType::INVALID_COOKIE,
                    "phase 1 message for no known exchange",
                ))
            }
            None if kind == Kind::Main => return self.mm_r1(now, (local, remote), hd, data),
            None => return self.am_r1(now, (local, remote), hd, data),
        };
        let Some((x, mut cx)) = self.split(now, h) else {
            return Err(Drop::Silent("gone"));
        };
        if x.remote.ip() != remote.ip() {
            return Err(Drop::Silent("message for an exchange with another peer"));
        }
        if x.nat_t.is_some_and(|n| n.detected()) && local.port() == nat_port {
            // The initiator floated to the NAT-T port (the NAT may have mapped it to any
            // port of its own).
            x.local = local;
            x.remote = remote;
        }
        x.last_recv.clear();
        x.last_recv.extend_from_slice(data);
        // The steps: Main Mode (RFC 2409 §5, six messages), Aggressive Mode (three).
        let cx = &mut cx;
        let step = (kind, x.initiator, x.state);
        let was_half_open = x.half_open;
        let r = match step {
            (Kind::Main, true, State::Phase1(AwaitSa)) => main_mode::i2(x, h, cx, hd, data),
            (Kind::Main, false, State::Phase1(AwaitKe(c))) => main_mode::r3(x, h, cx, c, data),
            (Kind::Main, true, State::Phase1(AwaitKe(c))) => main_mode::i4(x, h, cx, c, data),
            (Kind::Main, false, State::Phase1(AwaitAuth(c))) => main_mode::r5(x, h, cx, c, data),
            (Kind::Main, true, State::Phase1(AwaitAuth(c))) => main_mode::i6(x, cx, c, data),
            (Kind::Aggressive, true, State::Phase1(AwaitSa)) => aggressive::i2(x, h, cx, hd, data),
            (Kind::Aggressive, false, State::Phase1(AwaitAuth(c))) => {
                aggressive::r3(x, cx, c, (local, remote), data)
            }
            _ => Err(Drop::Silent("unexpected message at this step")),
        };
        let r = match r {
            Ok(Next::Wait) => Ok(()),
            Ok(Next::Done(auth)) => {
                if was_half_open {
                    self.log_opened(kind, h);
                }
                self.phase1_done(now, h, auth);
                Ok(())
            }
            // A refusal once the exchange has its keys is told under them (and a peer
            // that believes phase 1 done is told to forget it): `p1_refusal.rs`.
            Err(Drop::Notify(n, why))
                if n != NotifyType::PAYLOAD_MALFORMED && self.refuse_phase1(now, h, n) =>
            {
                Err(Drop::Told(n, why))
            }
            Err(e) => Err(e),
        };
        if r.is_ok() && self.exchanges.get(h).is_some_and(|x| x.half_open) {
            // The peer answered our message 2 with our cookie: no longer half-open.
            self.log_opened(kind, h);
            let max = self.policy.exchange_max_time.into();
            if let Some(x) = self.exchanges.get_mut(h) {
                x.half_open = false;
                x.deadline = now.add_secs(max);
                self.half_open_count -= 1;
                self.arm(h);
            }
        }
        if let Err(e) = &r {
            if let Drop::Notify(n, why) | Drop::Told(n, why) = e {
                if *n != NotifyType::PAYLOAD_MALFORMED {
                    if let Some(x) = self.exchanges.get(h) {
                        crate::log_warn!("{} with {remote}: {why}", x.name());
                    }
                    self.io.stats.failed += 1;
                    self.free_exchange(h);
                }
            }
            if let Some(x) = self.exchanges.get_mut(h) {
                x.last_recv.clear();
            }
        }
        r
    }

    /// A responder's exchange is worth a log line once the peer has answered our message
    /// 2 (before, it may be anybody's spoofed message 1).
    fn log_opened(&self, kind: Kind, h: Handle) {
        if let Some(x) = self.exchanges.get(h) {
            crate::log_info!(
                "{} with {} ({}) started as responder",
                exchange_kind_name(kind),
                x.remote,
                x.peer
            );
        }
    }

    /// The narrow context of a phase 1 step, without an exchange (message 1).
    pub(crate) fn cx(&mut self, now: Time) -> Cx<'_> {
        cx!(self, now)
    }

    /// Exchange `h` and the narrow context its step runs in.
    pub(crate) fn split(&mut self, now: Time, h: Handle) -> Option<(&mut Exchange, Cx<'_>)> {
        let x = self.exchanges.get_mut(h)?;
        Some((x, cx!(self, now)))
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
        // Not over a FADING SA (past its soft timeout): a new phase 1 first, as isakmpd
        // renegotiates a fading SA on use.
        if let Some(sa) = self.isakmp_sas.find(|s| {
            s.remote.ip() == remote.ip()
                && s.peer == peer.name
                && s.soft_expiry.is_none_or(|t| t > now)
        }) {
            return self.start_quick_mode(now, sa, &c.name);
        }
        if self
            .exchanges
            .iter()
            .any(|(_, x)| x.kind != Kind::Quick && x.peer == peer.name && x.initiator)
        {
            return Ok(()); // our phase 1 in progress; the connection starts when it is done
        }
        self.start_main_mode(now, &peer, remote, Some(c.name.clone()))
            .map(|_| ())
    }

    pub(crate) fn phase1_done(&mut self, now: Time, h: Handle, auth: super::auth::Authenticated) {
        let super::auth::Authenticated {
            peer_id,
            initial_contact,
            peer_creds,
            ..
        } = auth;
        let permille = self.soft_permille();
        let Some(x) = self.exchanges.get(h) else {
            return;
        };
        let Some(c) = x.choice() else {
            return;
        };
        let id_local = our_id(&self.policy, x);
        let lifetime = c.lifetime;
        let sa = IsakmpSa {
            id_local: id_local.clone(),
            id_remote: peer_id.clone(),
            lifetime,
            hard_expiry: (lifetime > 0).then(|| now.add_secs(lifetime)),
            soft_expiry: (lifetime > 0).then(|| now.add_millis(lifetime.saturating_mul(permille))),
            dpd: super::sa::Dpd {
                peer: x.peer_dpd,
                heard: now,
                ..Default::default()
            },
            nat_t: x.nat_t,
            peer_creds,
            ..IsakmpSa::of_exchange(x, c, now)
        };
        let (initiator, local, remote, connection, peer) = (
            x.initiator,
            x.local,
            x.remote,
            x.connection.clone(),
            x.peer.clone(),
        );
        if initial_contact {
            // RFC 2407 §4.6.3.3: the peer rebooted; what we hold with it is stale. "It"
            // is this identity at this address and port: other peers behind the same
            // NAT address, or other identities of one host, keep their SAs.
            let old: Vec<Handle> = self
                .isakmp_sas
                .iter()
                .filter(|(_, s)| s.remote == remote && s.id_remote == peer_id)
                .map(|(h, _)| h)
                .collect();
            let cookies: Vec<([u8; 8], [u8; 8])> = old
                .iter()
                .filter_map(|&o| self.isakmp_sas.get(o).map(|s| (s.icookie, s.rcookie)))
                .collect();
            for o in old {
                self.delete_isakmp_sa(now, o, false);
            }
            // Its phase 2 SAs: those of the phase 1 SAs just gone, and those at the same
            // address and port whose phase 1 SA had already expired.
            let stale: Vec<Handle> = self
                .ipsec_sas
                .iter()
                .filter(|(_, s)| {
                    cookies.contains(&(s.icookie, s.rcookie))
                        || (s.remote == remote
                            && self.isakmp_sas.by_cookies(s.icookie, s.rcookie).is_none())
                })
                .map(|(h, _)| h)
                .collect();
            for o in stale {
                self.delete_ipsec_sa(now, o, false);
            }
        }
        let (hard, soft) = (sa.hard_expiry, sa.soft_expiry);
        let Some(sh) = self.isakmp_sas.insert(sa) else {
            crate::log_error!("ISAKMP SA table full: phase 1 with {remote} dropped");
            self.free_exchange(h);
            return;
        };
        if let Some(t) = soft {
            self.arm_sa_timer(t, TimerKind::IsakmpSoft(sh));
        } else if let Some(t) = hard {
            self.arm_sa_timer(t, TimerKind::IsakmpExpire(sh));
        }
        self.dpd_start(now, sh);
        if self
            .isakmp_sas
            .get(sh)
            .is_some_and(|s| s.nat_t.is_some_and(|n| n.local_behind))
        {
            let every = self.policy.nat_t_keepalive;
            if every > 0 {
                self.arm_sa_timer(now.add_secs(every), TimerKind::Keepalive(sh));
            }
        }
        self.io.stats.phase1_done += 1;
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
        // isakmpd's wording (ipsec.c): the initiator's line names no role.
        super::log_done(format_args!(
            "isakmpd: phase 1 done{}: initiator id {iid}, responder id {rid}, src: {} dst: {}",
            if initiator { "" } else { " (as responder)" },
            local.ip(),
            remote.ip()
        ));
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

/// "main mode" or "aggressive mode", for log lines.
fn exchange_kind_name(kind: Kind) -> &'static str {
    if kind == Kind::Main {
        "main mode"
    } else {
        "aggressive mode"
    }
}
