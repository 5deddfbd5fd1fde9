#![forbid(unsafe_code)]

//! EAP in IKE_AUTH (RFC 7296 §2.16) with EAP-MSCHAPv2 (RFC 3748, RFC 2759,
//! draft-kamath-pppext-eap-mschapv2), as OpenBSD iked serves road warriors:
//!
//! 1. The initiator's IKE_AUTH has IDi, SA, TSi, TSr (and CP) but no AUTH.
//! 2. We answer IDr, CERT, our signature AUTH and an EAP Request/Identity.
//! 3. Its Response/Identity: an MS-CHAPv2 Challenge (16 random bytes, our name "iked").
//! 4. Its Response: the user's NT-Response is checked against the user database
//!    (`Engine::set_eap_users`); a right one gets the Success request with the
//!    authenticator response ("S=..."), anything else an EAP Failure, and the IKE SA
//!    goes (with a rate-limited log line).
//! 5. Its Success response: EAP Success. The MSK is known to both sides now.
//! 6. Its IKE_AUTH with AUTH keyed with the MSK (over IDi of message 1): we answer AUTH
//!    keyed the same way, and the CHILD_SA of message 1 (SA, TSi, TSr, CP).
//!
//! The client side ([`PeerAuth::EapClient`]) does the other half. A conversation has at
//! most [`MAX_ROUNDS`] requests, and a responder's runs within the half-open time.
//! Passwords are not here at all (the daemon gives NT hashes); the MSK is wiped with
//! the conversation and never logged.

use super::*;
use crate::ikev2::mschap::{self, EapUser, Msk};

/// Requests in one EAP conversation, at most (a normal one has four).
const MAX_ROUNDS: u8 = 8;
/// The name in our Challenge (iked's IKED_USER).
const SERVER_NAME: &[u8] = b"iked";
/// Log lines about failed EAP conversations per minute, at most.
const LOG_BURST: u32 = 10;

const CODE_REQUEST: u8 = 1;
const CODE_RESPONSE: u8 = 2;
const CODE_SUCCESS: u8 = 3;
const CODE_FAILURE: u8 = 4;
const TYPE_IDENTITY: u8 = 1;
const TYPE_NAK: u8 = 3;
const TYPE_MSCHAPV2: u8 = 26;
const OP_CHALLENGE: u8 = 1;
const OP_RESPONSE: u8 = 2;
const OP_SUCCESS: u8 = 3;
const OP_FAILURE: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Server: Identity asked. Client: nothing seen yet.
    Identity,
    /// Challenge sent (server) or answered (client).
    Challenge,
    /// Success request sent (server) or the server's authenticator checked (client).
    Success,
    /// EAP Success: the AUTHs are keyed with the MSK now.
    Done,
}

/// An IKE SA's EAP conversation.
pub(super) struct Eap {
    stage: Stage,
    /// The Identifier of the last request (ours as server, the peer's as client).
    id: u8,
    rounds: u8,
    /// Server: the first IKE_AUTH request's payloads, encoded again, for the CHILD_SA
    /// at the end.
    first: Option<(PayloadType, Vec<u8>)>,
    /// The body of the peer's ID payload (its final AUTH covers it).
    peer_id: Vec<u8>,
    challenge: [u8; 16],
    /// Server: the user name the peer gave (for the log).
    user: String,
    /// Client: the authenticator response the server must show.
    expect: [u8; 42],
    msk: Option<Msk>,
}

impl Eap {
    fn new() -> Eap {
        Eap {
            stage: Stage::Identity,
            id: 0,
            rounds: 0,
            first: None,
            peer_id: Vec::new(),
            challenge: [0; 16],
            user: String::new(),
            expect: [0; 42],
            msk: None,
        }
    }
}

/// What [`Engine::eap_server`] and [`Engine::eap_client`] made of an IKE_AUTH message.
pub(super) enum EapTurn {
    /// Not an EAP exchange, or its last message: the usual IKE_AUTH handling goes on.
    Off,
    /// Answered, or the IKE SA is gone.
    Handled,
    /// Server: the final AUTH verified with the MSK; the CHILD_SA of the first message,
    /// or why there is none.
    Final(Result<ChildChoice, NotifyType>),
}

/// A few lines a minute (a brute force of passwords must not fill the log).
#[derive(Debug, Default)]
pub(super) struct LogGate {
    minute: u64,
    count: u32,
    held: u64,
}

impl LogGate {
    /// Some(lines held back before this one), or None: hold this one back.
    fn allow(&mut self, now: Time) -> Option<u64> {
        let m = now.millis() / 60_000;
        if m != self.minute {
            self.minute = m;
            self.count = 0;
        }
        if self.count >= LOG_BURST {
            self.held += 1;
            return None;
        }
        self.count += 1;
        Some(std::mem::take(&mut self.held))
    }
}

fn warn(io: &mut Io, now: Time, sa: &IkeSa, what: std::fmt::Arguments<'_>) {
    if let Some(held) = io.eap_log.allow(now) {
        let more = if held > 0 {
            format!(" ({held} such lines held back)")
        } else {
            String::new()
        };
        log::warn!(
            "ikev2: {} {}: EAP: {what}{more}",
            sa.info.peer,
            sa.info.remote
        );
    }
}

/// A name from the peer, fit for the log: lossy UTF-8, escaped, at most 64 characters.
fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .take(64)
        .flat_map(char::escape_debug)
        .collect()
}

/// An EAP packet (RFC 3748 §4): code, Identifier, and for requests and responses the
/// type and its data.
struct Packet<'a> {
    code: u8,
    id: u8,
    ty: u8,
    data: &'a [u8],
}

fn parse(b: &[u8]) -> Result<Packet<'_>, &'static str> {
    let Some(&[code, id, l0, l1]) = b.get(..4) else {
        return Err("EAP packet shorter than its header");
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    // Octets past the Length are padding (§4); a Length past the payload is not.
    let Some(b) = b.get(..len).filter(|_| len >= 4) else {
        return Err("EAP Length does not fit the payload");
    };
    match code {
        CODE_REQUEST | CODE_RESPONSE => match b[4..].split_first() {
            Some((&ty, data)) => Ok(Packet { code, id, ty, data }),
            None => Err("EAP request or response without a type"),
        },
        CODE_SUCCESS | CODE_FAILURE => Ok(Packet {
            code,
            id,
            ty: 0,
            data: &[],
        }),
        _ => Err("unknown EAP code"),
    }
}

/// An EAP packet: `ty` and `parts` for a request or response.
fn packet(code: u8, id: u8, ty: Option<u8>, parts: &[&[u8]]) -> Vec<u8> {
    let len = 4 + usize::from(ty.is_some()) + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&[code, id]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend(ty);
    for x in parts {
        p.extend_from_slice(x);
    }
    p
}

/// An EAP-MSCHAPv2 request or response: OpCode, MS-CHAPv2-ID (the EAP Identifier),
/// MS-Length (from the OpCode on), then `parts`.
fn mschap(code: u8, id: u8, op: u8, parts: &[&[u8]]) -> Vec<u8> {
    let ms_len = 4 + parts.iter().map(|p| p.len()).sum::<usize>();
    let head = [op, id, (ms_len >> 8) as u8, ms_len as u8];
    let mut all: Vec<&[u8]> = vec![&head];
    all.extend_from_slice(parts);
    packet(code, id, Some(TYPE_MSCHAPV2), &all)
}

/// The MS-CHAPv2 part of a packet: OpCode and what follows the 4-byte header.
fn ms_op(data: &[u8]) -> Result<(u8, &[u8]), &'static str> {
    match data {
        [op, _, _, _, rest @ ..] => Ok((*op, rest)),
        [op] => Ok((*op, &[])),
        _ => Err("short EAP-MSCHAPv2 packet"),
    }
}

/// The payloads of a message, encoded again as a chain (generic headers and bodies),
/// to be parsed later: the first payload's type and the bytes.
fn keep(inner: &Payloads<'_>) -> (PayloadType, Vec<u8>) {
    let list: Vec<_> = inner.iter().collect();
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let next = list.get(i + 1).map_or(0, |n| n.ty.0);
        out.extend_from_slice(&[next, if e.critical { 0x80 } else { 0 }]);
        out.extend_from_slice(&((4 + e.body.len()) as u16).to_be_bytes());
        out.extend_from_slice(e.body);
    }
    (list.first().map_or(PayloadType(0), |e| e.ty), out)
}

/// The MSK once EAP succeeded: both AUTHs of the last IKE_AUTH are keyed with it.
pub(super) fn eap_msk(sa: &IkeSa) -> Option<&Msk> {
    sa.eap
        .as_deref()
        .filter(|e| e.stage == Stage::Done)
        .and_then(|e| e.msk.as_ref())
}

/// The peer's AUTH of the last IKE_AUTH (§2.16): the shared-key MIC with the MSK as key,
/// over its ID of the first.
pub(super) fn check_msk_auth(sa: &IkeSa, inner: &Payloads<'_>) -> Result<(), &'static str> {
    let (Some(keys), Some(suite), Some(e)) = (sa.keys.as_ref(), sa.info.suite, sa.eap.as_deref())
    else {
        return Err("no keys");
    };
    let Some(msk) = eap_msk(sa) else {
        return Err("EAP has not succeeded");
    };
    let Some(Payload::Auth(auth)) = inner.find(PayloadType::AUTH) else {
        return Err("no AUTH payload after EAP");
    };
    if auth.method != AuthMethod::SHARED_KEY_MIC {
        return Err("AUTH after EAP is not a shared-key MIC");
    }
    let (msg, nonce, skp) = if sa.info.initiator {
        (&sa.init_r, &sa.ni, &keys.pr)
    } else {
        (&sa.init_i, &sa.nr, &keys.pi)
    };
    let o = SignedOctets::new(suite.prf, msg, nonce, skp.as_bytes(), &e.peer_id);
    verify_psk_auth(suite.prf, msk.as_bytes(), &o, auth.data)
        .map_err(|_| "AUTH does not verify with the EAP MSK")
}

/// The user `name` (or without its domain) in `users`.
fn lookup<'u>(users: &'u [EapUser], name: &[u8]) -> Option<&'u EapUser> {
    let bare = mschap::bare_user(name);
    users
        .iter()
        .find(|u| u.name.as_bytes() == name)
        .or_else(|| users.iter().find(|u| u.name.as_bytes() == bare))
}

impl Engine {
    /// The users EAP-MSCHAPv2 peers authenticate as (iked.conf `user`; `ikectl reset
    /// user` empties them). A conversation past its Challenge keeps what it found.
    pub fn set_eap_users(&mut self, users: Vec<EapUser>) {
        self.eap_users = users;
    }

    /// The users of [`Self::set_eap_users`].
    pub fn eap_users(&self) -> &[EapUser] {
        &self.eap_users
    }

    /// Responder: IKE_AUTH under an `eap` policy ([`PeerAuth::EapServer`]).
    pub(super) fn eap_server(
        &mut self,
        now: Time,
        h: Handle,
        msgid: u32,
        inner: &Payloads<'_>,
    ) -> EapTurn {
        let Some(sa) = self.sas.get(h) else {
            return EapTurn::Handled;
        };
        if !matches!(self.policy.peers[sa.peer].auth, PeerAuth::EapServer(_)) {
            return EapTurn::Off;
        }
        let r = match sa.eap.as_deref().map(|e| e.stage) {
            None => self.eap_begin(now, h, msgid, inner),
            Some(Stage::Done) => return self.eap_final(now, h, msgid, inner),
            Some(_) => self.eap_step(now, h, msgid, inner),
        };
        if let Err(why) = r {
            self.fail(h, why);
        }
        EapTurn::Handled
    }

    /// Server, message 1: IDr, CERT, our signature and EAP Request/Identity.
    fn eap_begin(
        &mut self,
        now: Time,
        h: Handle,
        msgid: u32,
        inner: &Payloads<'_>,
    ) -> Result<(), &'static str> {
        let Engine {
            sas,
            io,
            policy,
            creds,
            eap_users,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Err("IKE SA gone");
        };
        let peer = &policy.peers[sa.peer];
        sa.peer_msgid = msgid.wrapping_add(1);
        let id = inner.iter().find_map(|e| match e.payload {
            Payload::Id(id) if e.ty == PayloadType::IDI => Some((id, e.body)),
            _ => None,
        });
        let why = match id {
            _ if inner.find(PayloadType::AUTH).is_some() => {
                Some("the peer sent AUTH where the policy wants EAP-MSCHAPv2")
            }
            None => Some("no IDi payload"),
            Some((id, _))
                if peer
                    .remote_id
                    .as_ref()
                    .is_some_and(|w| id.ty != w.ty || *id.data != w.data[..]) =>
            {
                Some("peer identity does not match the policy")
            }
            _ if eap_users.is_empty() => Some("no EAP users are configured"),
            _ => None,
        };
        if let Some(why) = why {
            warn(io, now, sa, format_args!("IKE_AUTH: {why}"));
            answer_auth_failed(io, sa, msgid);
            return Err("authentication failed");
        }
        let mut e = Eap::new();
        e.peer_id = id.map(|(_, b)| b.to_vec()).unwrap_or_default();
        e.first = Some(keep(inner));
        e.id = io.random::<1>()[0];
        let req = packet(CODE_REQUEST, e.id, Some(TYPE_IDENTITY), &[]);
        sa.eap = Some(Box::new(e));
        let idr = peer.local_id.body();
        let cert = own_cert(peer, creds);
        let (method, auth) = own_auth(sa, peer, creds, &idr).map_err(|f| f.0)?;
        let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
            b.payload(PayloadType::IDR, |w| w.bytes(&idr))?;
            add_own_cert(b, &cert)?;
            add_auth(b, method, &auth)?;
            b.add(PayloadType::EAP, false, &Payload::Eap(&req))
        })
        .map_err(|f| f.0)?;
        io.respond(sa, msgid, m);
        log::info!(
            "ikev2: {} {}: IKE_AUTH without AUTH: EAP-MSCHAPv2, identity asked",
            peer.name,
            sa.info.remote
        );
        Ok(())
    }

    /// Server, messages 3-5: the peer's EAP responses.
    fn eap_step(
        &mut self,
        now: Time,
        h: Handle,
        msgid: u32,
        inner: &Payloads<'_>,
    ) -> Result<(), &'static str> {
        let Engine {
            sas, io, eap_users, ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Err("IKE SA gone");
        };
        sa.peer_msgid = msgid.wrapping_add(1);
        let Some(mut e) = sa.eap.take() else {
            return Err("no EAP conversation");
        };
        let r = server_answer(io, eap_users, &mut e, inner);
        let (out, done) = match r {
            Ok(x) => (x, Ok(())),
            Err(why) => {
                warn(
                    io,
                    now,
                    sa,
                    format_args!("user \"{}\": {why}; EAP Failure", e.user),
                );
                (
                    packet(CODE_FAILURE, e.id, None, &[]),
                    Err("EAP authentication failed"),
                )
            }
        };
        let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
            b.add(PayloadType::EAP, false, &Payload::Eap(&out))
        });
        if let Ok(m) = m {
            io.respond(sa, msgid, m);
        }
        if done.is_ok() && e.stage == Stage::Done {
            log::info!(
                "ikev2: {} {}: EAP-MSCHAPv2: user \"{}\" authenticated",
                sa.info.peer,
                sa.info.remote,
                e.user
            );
            sa.info.eap_id = Some(e.user.clone());
        }
        sa.eap = Some(e);
        done
    }

    /// Server, message 6: AUTH with the MSK, then the CHILD_SA message 1 asked for.
    fn eap_final(&mut self, now: Time, h: Handle, msgid: u32, inner: &Payloads<'_>) -> EapTurn {
        let Engine {
            sas,
            io,
            policy,
            leases,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return EapTurn::Handled;
        };
        sa.peer_msgid = msgid.wrapping_add(1);
        let first = sa.eap.as_mut().and_then(|e| e.first.take());
        let checked = check_msk_auth(sa, inner);
        let first = first.as_ref().map(|(ty, b)| parse_payloads(*ty, b));
        let (Ok(()), Some(Ok(first))) = (checked, first) else {
            let why = checked
                .err()
                .unwrap_or("the first IKE_AUTH request is lost");
            warn(io, now, sa, format_args!("IKE_AUTH: {why}"));
            answer_auth_failed(io, sa, msgid);
            self.fail(h, "authentication failed");
            return EapTurn::Handled;
        };
        let peer = &policy.peers[sa.peer];
        EapTurn::Final(child_choice(io, sa, peer, leases, &first))
    }

    /// Client: the IKE_AUTH responses of an EAP conversation (all but the last).
    pub(super) fn eap_client(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) -> EapTurn {
        let Engine {
            sas,
            io,
            policy,
            config,
            creds,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return EapTurn::Handled;
        };
        let peer = &policy.peers[sa.peer];
        let PeerAuth::EapClient(_, user) = &peer.auth else {
            return EapTurn::Off;
        };
        let stage = sa.eap.as_deref().map(|e| e.stage);
        if matches!(stage, None | Some(Stage::Done))
            || inner.notify(NotifyType::AUTHENTICATION_FAILED).is_some()
        {
            return EapTurn::Off;
        }
        let r = client_answer(io, sa, peer, creds, user, inner);
        let sent = r.and_then(|out| {
            let msgid = sa.next_msgid;
            // After EAP Success: our AUTH with the MSK, over IDi of the first request.
            let auth = match out {
                Some(_) => None,
                None => Some(own_auth(sa, peer, creds, &peer.local_id.body()).map_err(|f| f.0)?),
            };
            let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, false, |b| {
                match (&out, &auth) {
                    (Some(eap), _) => b.add(PayloadType::EAP, false, &Payload::Eap(eap)),
                    (None, Some((method, a))) => add_auth(b, *method, a),
                    (None, None) => Ok(()),
                }
            })
            .map_err(|f| f.0.to_string())?;
            io.request(now, config, h, sa, (msgid, m), Req::Auth);
            sa.next_msgid = msgid.wrapping_add(1);
            Ok(())
        });
        if let Err(why) = sent {
            warn(io, now, sa, format_args!("{why}"));
            self.fail(h, "EAP authentication failed");
        }
        EapTurn::Handled
    }
}

/// Server: the answer to the peer's EAP response in `inner`; Err: why the peer fails.
fn server_answer(
    io: &mut Io,
    users: &[EapUser],
    e: &mut Eap,
    inner: &Payloads<'_>,
) -> Result<Vec<u8>, String> {
    e.rounds += 1;
    if e.rounds > MAX_ROUNDS {
        return Err("too many EAP rounds".into());
    }
    let Some(Payload::Eap(b)) = inner.find(PayloadType::EAP) else {
        return Err("IKE_AUTH without an EAP payload".into());
    };
    let p = parse(b)?;
    if p.code != CODE_RESPONSE || p.id != e.id {
        return Err(format!(
            "EAP code {} Identifier {} where a response to {} was due",
            p.code, p.id, e.id
        ));
    }
    match (e.stage, p.ty) {
        (_, TYPE_NAK) => Err("the peer refuses EAP-MSCHAPv2 (Nak)".into()),
        (Stage::Identity, TYPE_IDENTITY) => {
            if p.data.is_empty() || p.data.len() > 255 {
                return Err("empty or overlong EAP identity".into());
            }
            e.user = shown(p.data);
            e.challenge = io.random::<16>();
            e.id = e.id.wrapping_add(1);
            e.stage = Stage::Challenge;
            let vs = [16u8];
            Ok(mschap(
                CODE_REQUEST,
                e.id,
                OP_CHALLENGE,
                &[&vs, &e.challenge, SERVER_NAME],
            ))
        }
        (Stage::Challenge, TYPE_MSCHAPV2) => {
            let (op, rest) = ms_op(p.data)?;
            // Value-Size 49: Peer-Challenge 16, Reserved 8, NT-Response 24, Flags 1.
            let (OP_RESPONSE, [49, v @ ..]) = (op, rest) else {
                return Err("not an MS-CHAPv2 Response".into());
            };
            if v.len() < 49 {
                return Err("short MS-CHAPv2 Response".into());
            }
            let peer_ch: [u8; 16] = v[..16].try_into().map_err(|_| "short")?;
            let nt: [u8; 24] = v[24..48].try_into().map_err(|_| "short")?;
            let name = &v[49..];
            if !name.is_empty() {
                e.user = shown(name);
            }
            let name = if name.is_empty() {
                e.user.as_bytes()
            } else {
                name
            };
            // An unknown user costs the same computation as a wrong password, so that the
            // time of the answer does not tell which names exist.
            let user = lookup(users, name);
            let zero = [0; 16];
            let hash = user.map_or(&zero, |u| &u.nt_hash);
            let want = mschap::nt_response(&e.challenge, &peer_ch, name, hash)
                .map_err(|x| x.to_string())?;
            let right = constant_time_eq(&want, &nt);
            let Some(u) = user else {
                return Err("unknown user".into());
            };
            if !right {
                return Err("wrong password".into());
            }
            let s =
                mschap::authenticator_response(&u.nt_hash_hash, &nt, &peer_ch, &e.challenge, name);
            e.msk = Some(mschap::msk(&u.nt_hash_hash, &nt));
            e.id = e.id.wrapping_add(1);
            e.stage = Stage::Success;
            Ok(mschap(CODE_REQUEST, e.id, OP_SUCCESS, &[&s, b" M=Welcome"]))
        }
        (Stage::Success, TYPE_MSCHAPV2) => match ms_op(p.data)? {
            (OP_SUCCESS, _) => {
                e.stage = Stage::Done;
                Ok(packet(CODE_SUCCESS, e.id, None, &[]))
            }
            _ => Err("no MS-CHAPv2 Success response".into()),
        },
        (_, t) => Err(format!("unexpected EAP type {t}")),
    }
}

/// Client: our answer to the server's EAP packet in `inner`: an EAP response, or None
/// for the AUTH with the MSK after EAP Success. Err: why we give up (logged).
fn client_answer(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
    creds: &Credentials,
    user: &EapUser,
    inner: &Payloads<'_>,
) -> Result<Option<Vec<u8>>, String> {
    if sa.eap.as_deref().is_some_and(|e| e.peer_id.is_empty()) {
        // The first answer: the server's signature.
        check_auth(sa, peer, creds, inner, PayloadType::IDR)?;
        let idr = inner
            .iter()
            .find(|e| e.ty == PayloadType::IDR)
            .map(|e| e.body);
        if let Some(e) = sa.eap.as_deref_mut() {
            e.peer_id = idr.unwrap_or_default().to_vec();
        }
    }
    let Some(e) = sa.eap.as_deref_mut() else {
        return Err("no EAP conversation".into());
    };
    e.rounds += 1;
    if e.rounds > MAX_ROUNDS {
        return Err("too many EAP rounds".into());
    }
    let Some(Payload::Eap(b)) = inner.find(PayloadType::EAP) else {
        return Err("IKE_AUTH response without an EAP payload".into());
    };
    let p = parse(b)?;
    let name = user.name.as_bytes();
    match (p.code, p.ty) {
        (CODE_REQUEST, TYPE_IDENTITY) => {
            e.id = p.id;
            Ok(Some(packet(
                CODE_RESPONSE,
                p.id,
                Some(TYPE_IDENTITY),
                &[name],
            )))
        }
        (CODE_REQUEST, TYPE_MSCHAPV2) => match ms_op(p.data)? {
            (OP_CHALLENGE, [16, rest @ ..]) if rest.len() >= 16 && e.stage == Stage::Identity => {
                e.id = p.id;
                e.challenge.copy_from_slice(&rest[..16]);
                let peer_ch = io.random::<16>();
                let nt = mschap::nt_response(&e.challenge, &peer_ch, name, &user.nt_hash)
                    .map_err(|x| x.to_string())?;
                e.expect = mschap::authenticator_response(
                    &user.nt_hash_hash,
                    &nt,
                    &peer_ch,
                    &e.challenge,
                    name,
                );
                e.msk = Some(mschap::msk(&user.nt_hash_hash, &nt));
                e.stage = Stage::Challenge;
                let (vs, reserved, flags) = ([49u8], [0u8; 8], [0u8]);
                Ok(Some(mschap(
                    CODE_RESPONSE,
                    p.id,
                    OP_RESPONSE,
                    &[&vs, &peer_ch, &reserved, &nt, &flags, name],
                )))
            }
            (OP_SUCCESS, msg) if e.stage == Stage::Challenge => {
                if !msg
                    .get(..42)
                    .is_some_and(|s| constant_time_eq(s, &e.expect))
                {
                    return Err("the server's authenticator response is wrong".into());
                }
                e.id = p.id;
                e.stage = Stage::Success;
                Ok(Some(packet(
                    CODE_RESPONSE,
                    p.id,
                    Some(TYPE_MSCHAPV2),
                    &[&[OP_SUCCESS]],
                )))
            }
            (OP_FAILURE, msg) => Err(format!("MS-CHAPv2 Failure \"{}\"", shown(msg))),
            (op, _) => Err(format!("unexpected MS-CHAPv2 OpCode {op}")),
        },
        (CODE_SUCCESS, _) if e.stage == Stage::Success => {
            e.stage = Stage::Done;
            Ok(None)
        }
        (CODE_FAILURE, _) => Err("the server refused us (EAP Failure)".into()),
        (c, t) => Err(format!("unexpected EAP code {c} type {t}")),
    }
}

/// Client: IKE_AUTH starts a conversation (no AUTH in it).
pub(super) fn eap_client_starts(sa: &mut IkeSa, peer: &Peer) -> bool {
    if !matches!(peer.auth, PeerAuth::EapClient(..)) {
        return false;
    }
    sa.eap = Some(Box::new(Eap::new()));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::SeededRandom;

    #[test]
    fn packets_round_trip_and_garbage_is_refused_without_panic() {
        let p = mschap(
            CODE_REQUEST,
            7,
            OP_CHALLENGE,
            &[&[16], &[1; 16], SERVER_NAME],
        );
        let q = parse(&p).unwrap();
        assert_eq!((q.code, q.id, q.ty), (CODE_REQUEST, 7, TYPE_MSCHAPV2));
        let (op, rest) = ms_op(q.data).unwrap();
        assert_eq!((op, rest.len()), (OP_CHALLENGE, 1 + 16 + 4));
        assert_eq!(
            u16::from_be_bytes([q.data[2], q.data[3]]) as usize,
            q.data.len()
        );
        // Padding after the Length is ignored; a Length past the data is refused.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 3]);
        assert_eq!(parse(&padded).unwrap().data, q.data);
        assert!(parse(&p[..p.len() - 1]).is_err());
        let s = packet(CODE_SUCCESS, 9, None, &[]);
        assert_eq!(s, [3, 9, 0, 4]);
        assert!(parse(&[1, 0, 0, 4]).is_err(), "a request without a type");
        assert!(parse(&[9, 0, 0, 4]).is_err(), "an unknown code");
        assert!(parse(&[1, 0, 0, 3, 1]).is_err(), "a Length under 4");
        // Every prefix, and random bytes with plausible headers: errors, never a panic.
        for n in 0..p.len() {
            let _ = parse(&p[..n]).map(|q| ms_op(q.data));
        }
        let mut rng = SeededRandom::new(3);
        for _ in 0..20_000 {
            let mut b = [0u8; 24];
            rng.fill(&mut b);
            b[0] = 1 + b[0] % 4;
            b[2] = 0;
            b[3] %= 28;
            b[4] = if b[4] & 1 == 0 { TYPE_MSCHAPV2 } else { b[4] };
            if let Ok(q) = parse(&b) {
                let _ = ms_op(q.data);
            }
        }
    }

    fn io() -> Io {
        Io {
            outbox: Outbox::new(),
            timers: TimerWheel::new(4, Time(0)),
            rng: Box::new(SeededRandom::new(5)),
            stats: Stats::default(),
            nat_port: 4500,
            kernel_answers: false,
            kernel: VecDeque::new(),
            ticket: 0,
            fragment_size: 0,
            keepalive_secs: 0,
            capture_on: false,
            capture: VecDeque::new(),
            eap_log: LogGate::default(),
            now: Time(0),
            drop_log: crate::ike::LogLimit::new(5, 10_000),
            notify_limit: crate::ike::LogLimit::default(),
        }
    }

    /// `server_answer` for the EAP packet `eap` in an IKE_AUTH request.
    fn answer(io: &mut Io, users: &[EapUser], e: &mut Eap, eap: &[u8]) -> Result<Vec<u8>, String> {
        let mut chain = vec![0, 0];
        chain.extend_from_slice(&((4 + eap.len()) as u16).to_be_bytes());
        chain.extend_from_slice(eap);
        let inner = parse_payloads(PayloadType::EAP, &chain).map_err(|e| e.reason.to_string())?;
        server_answer(io, users, e, &inner)
    }

    fn alice() -> EapUser {
        // RFC 2759 §9.2's password hashes.
        EapUser {
            name: "alice".into(),
            nt_hash: [
                0x44, 0xEB, 0xBA, 0x8D, 0x53, 0x12, 0xB8, 0xD6, 0x11, 0x47, 0x44, 0x11, 0xF5, 0x69,
                0x89, 0xAE,
            ],
            nt_hash_hash: [
                0x41, 0xC0, 0x0C, 0x58, 0x4B, 0xD2, 0xD9, 0x1C, 0x40, 0x17, 0xA2, 0xA1, 0x2F, 0xA5,
                0x9F, 0x3F,
            ],
        }
    }

    /// A server waiting for the MS-CHAPv2 Response to Identifier 5.
    fn challenged() -> Eap {
        let mut e = Eap::new();
        e.stage = Stage::Challenge;
        e.id = 5;
        e.challenge = [7; 16];
        e.user = "alice".into();
        e
    }

    fn response(id: u8, ms_id: u8, peer_ch: [u8; 16], nt: [u8; 24], name: &[u8]) -> Vec<u8> {
        let mut p = mschap(
            CODE_RESPONSE,
            id,
            OP_RESPONSE,
            &[&[49], &peer_ch, &[0; 8], &nt, &[0], name],
        );
        p[6] = ms_id;
        p
    }

    #[test]
    fn the_server_refuses_bad_responses_and_takes_the_right_one() {
        crate::ike::crypto::init();
        let (mut io, users) = (io(), [alice()]);
        let peer_ch = [9u8; 16];
        let Ok(nt) = mschap::nt_response(&[7; 16], &peer_ch, b"alice", &users[0].nt_hash) else {
            eprintln!("DES unavailable here (no legacy provider): skipped");
            return;
        };
        let good = response(5, 5, peer_ch, nt, b"alice");
        let mut wrong = nt;
        wrong[23] ^= 1;
        for (eap, why) in [
            (
                response(4, 4, peer_ch, nt, b"alice"),
                "Identifier 4 where a response to 5",
            ),
            (response(5, 5, peer_ch, wrong, b"alice"), "wrong password"),
            (response(5, 5, peer_ch, nt, b"bob"), "unknown user"),
            (good[..good.len() - 9].to_vec(), "EAP Length does not fit"),
            (packet(CODE_RESPONSE, 5, Some(TYPE_NAK), &[&[26]]), "Nak"),
            (
                packet(CODE_RESPONSE, 5, Some(TYPE_IDENTITY), &[b"x"]),
                "unexpected EAP type 1",
            ),
            (packet(CODE_SUCCESS, 5, None, &[]), "EAP code 3"),
            (
                mschap(CODE_RESPONSE, 5, OP_RESPONSE, &[&[48]]),
                "not an MS-CHAPv2 Response",
            ),
            (
                mschap(CODE_RESPONSE, 5, OP_RESPONSE, &[&[49], &[0; 20]]),
                "short MS-CHAPv2",
            ),
            (
                packet(CODE_RESPONSE, 5, Some(TYPE_MSCHAPV2), &[&[2, 5]]),
                "short EAP-MSCHAPv2",
            ),
        ] {
            let mut e = challenged();
            let r = answer(&mut io, &users, &mut e, &eap);
            assert!(r.as_ref().is_err_and(|x| x.contains(why)), "{why}: {r:?}");
            assert!(e.msk.is_none());
        }
        // The right one, with a domain in front of the name: the Success request with
        // the authenticator response, and the MSK.
        let mut e = challenged();
        let out = answer(
            &mut io,
            &users,
            &mut e,
            &response(5, 5, peer_ch, nt, b"DOM\\alice"),
        );
        let out = out.unwrap();
        let p = parse(&out).unwrap();
        assert_eq!(
            (p.code, p.id, p.ty, e.stage),
            (CODE_REQUEST, 6, TYPE_MSCHAPV2, Stage::Success)
        );
        let (op, msg) = ms_op(p.data).unwrap();
        let s = mschap::authenticator_response(
            &users[0].nt_hash_hash,
            &nt,
            &peer_ch,
            &[7; 16],
            b"alice",
        );
        assert_eq!((op, &msg[..42]), (OP_SUCCESS, &s[..]));
        assert!(e.msk.is_some());
        // Random packets at every stage: refused, never a panic, and no more than
        // MAX_ROUNDS answers in one conversation.
        let mut rng = SeededRandom::new(11);
        for stage in [Stage::Identity, Stage::Challenge, Stage::Success] {
            for _ in 0..3000 {
                let mut e = challenged();
                e.stage = stage;
                let mut b = [0u8; 80];
                rng.fill(&mut b);
                let n = usize::from(b[79] % 80);
                b[0] = CODE_RESPONSE;
                b[1] = 5;
                b[2] = 0;
                b[3] %= 90;
                b[4] = [TYPE_IDENTITY, TYPE_MSCHAPV2, b[4]][usize::from(b[5] % 3)];
                let _ = answer(&mut io, &users, &mut e, &b[..n.max(1)]);
            }
        }
        let mut e = Eap::new();
        let id = packet(CODE_RESPONSE, 0, Some(TYPE_IDENTITY), &[b"alice"]);
        assert!(answer(&mut io, &users, &mut e, &id).is_ok());
        e.rounds = MAX_ROUNDS;
        e.stage = Stage::Identity;
        let r = answer(&mut io, &users, &mut e, &id);
        assert!(r.is_err_and(|x| x.contains("too many EAP rounds")));
    }
}
