//! The IKEv2 engine, sans-IO (STYLE §10.2): IKE_SA_INIT and IKE_AUTH with a pre-shared
//! key, both roles, and the first CHILD_SA (RFC 7296 §1.2, §2.9, §2.15, §2.17).
//!
//! Inputs are [`Engine::handle_datagram`], [`Engine::handle_timeout`] and
//! [`Engine::connect`], each with the time; outputs are [`Engine::poll_transmit`] and
//! [`Engine::poll_timeout`]. Nothing here reads a clock or touches a socket.
//!
//! - IKE_SA_INIT: the initiator offers its IKE suites, a KE for the first suite's group,
//!   a nonce and the NAT_DETECTION_* notifies (§2.23: SHA-1 of SPIi | SPIr | address |
//!   port). The responder picks the first offered proposal that matches one of its
//!   suites; a KE for another group is answered with INVALID_KE_PAYLOAD naming the chosen
//!   group (the initiator retries with it, §1.2), no match with NO_PROPOSAL_CHOSEN. Both
//!   answers are stateless. A COOKIE notify is returned with the next request (§2.6).
//! - IKE_AUTH: IDi, AUTH (shared key, method 2), the ESP SA with the initiator's SPI, TSi
//!   and TSr in an SK payload; the responder checks AUTH (constant time), picks an ESP
//!   suite, intersects the selectors (§2.9, simply: the answer is what both allow) and
//!   answers IDr, AUTH, SA, TSi, TSr. A wrong AUTH is AUTHENTICATION_FAILED in the
//!   protected response and the IKE SA is gone on both sides (§2.21.2). The CHILD_SA's
//!   KEYMAT comes from the IKE_SA_INIT nonces (§2.17); SPIs, keys and selectors are kept
//!   in [`Engine::child_sas`]. Nothing is installed in a kernel yet.
//! - Message IDs (§2.1-§2.3, window 1): only the initiator of an exchange retransmits, on
//!   a timer with exponential back-off and a bounded count; a responder answers a repeated
//!   request from the response it kept; duplicate responses and requests outside the
//!   window are dropped silently, as are messages whose ICV does not verify (§2.21.2).
//! - Half-open responder SAs are bounded ([`Config::max_half_open`]) and expire. From
//!   [`Config::cookie_threshold`] on, an IKE_SA_INIT must return our COOKIE (§2.6): one
//!   without (or with a stale one) is answered with a COOKIE notify only, and nothing is
//!   kept. The cookie is a version byte and a truncated HMAC-SHA-256 of Ni, the source
//!   address and SPIi under a secret that changes every [`Config::cookie_secret_secs`]
//!   (the one before stays good). The initiator resends with the cookie first and its Ni
//!   and KE unchanged.
//!
//! - INFORMATIONAL (§1.4): [`Engine::delete_child`] sends a Delete of our inbound ESP
//!   SPIs and the CHILD_SAs go when the peer answers with a Delete of its halves
//!   (§1.4.1); [`Engine::delete_ike`] sends a Delete of the IKE SA, which goes with its
//!   CHILD_SAs on the answer or when the retransmissions run out. As responder, the same
//!   the other way round; crossed CHILD_SA deletes are left out of the answer. Our
//!   requests wait for the one in flight (window 1).
//! - Liveness (iked's dpd): when nothing authenticated has come from the peer of an
//!   established SA for [`Config::liveness_secs`], an empty INFORMATIONAL request asks;
//!   if its retransmissions go unanswered, the IKE SA and its CHILD_SAs are deleted.
//!   Only IKE messages count as signs of life (no ESP counters from a kernel yet).
//!
//! - CREATE_CHILD_SA (§1.3.1, §1.3.3, §2.8): [`Engine::create_child`] adds a CHILD_SA,
//!   [`Engine::rekey_child`] replaces one (N(REKEY_SA) with our inbound SPI), both with
//!   PFS when the ESP suite names a group ([`EspProposal::pfs`]: KEi/KEr, KEYMAT from
//!   g^ir too, keys of the exchange's initiator first). After a rekey its initiator
//!   deletes the old CHILD_SA with an INFORMATIONAL; the responder keeps it until then.
//!   Simultaneous rekeys of one CHILD_SA (§2.8.1): the new CHILD_SA of the exchange with
//!   the lowest of the four nonces is deleted by its creator, the old one by the other.
//! - IKE SA rekey (§1.3.2, §2.18): [`Engine::rekey_ike`] sends a CREATE_CHILD_SA with
//!   our IKE suites under a new SPI, Ni and KEi; SKEYSEED comes from the old SK_d, the
//!   rekey's initiator is the new IKE SA's, message IDs start over, the CHILD_SAs move
//!   to the new IKE SA and the initiator deletes the old one with an INFORMATIONAL.
//! - Not yet: soft or hard lifetimes that start rekeys; INVALID_KE_PAYLOAD retries in
//!   CREATE_CHILD_SA; simultaneous IKE SA rekeys (§2.8.2) and a CHILD_SA rekey crossing
//!   an IKE SA rekey.
//!
//! TODO (issue 16): SA lifetimes, the kernel interface (SPIs from the kernel, nothing
//! announced before it is installed), certificates and signatures, NAT-T (the move to
//! port 4500; detection is done), fragmentation, the capture file.
//!
//! `crate::ike::io::Io` is the IKEv1 engine's (its timer kinds, kernel tickets and
//! exchange bookkeeping are IKEv1's), so this file has a small sibling, `Io` here, over
//! the shared pieces: the outbox, the timer wheel, the random source.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

use crate::ike::crypto::{constant_time_eq, hash, prf, DhPrivate, Group, HashAlg, Key, Random};
use crate::ike::outbox::Outbox;
use crate::ike::router::{Keyed, Table};
use crate::ike::sa::{hex, Handle, Slab};
use crate::ike::wire::GroupDescription;
use crate::ike::Transmit;
use crate::timer::{Time, TimerHandle, TimerWheel};

use super::keys::{
    psk_auth, rekey_skeyseed, skeyseed, verify_psk_auth, ChildKeys, Encr, IkeKeys, Integ, KeyError,
    SignedOctets, Suite,
};
use super::policy::{narrow, Config, EspProposal, IkeProposal, Peer, Policy, Selector};
use super::sk::{SkError, SkKeys};
use super::wire::ts::emit_ts;
use super::wire::{
    parse_payloads, AuthMethod, AuthPayload, DeletePayload, DhGroup, ExchangeType, Header,
    KePayload, Message, MessageBuilder, NoRoom, NotifyPayload, NotifyType, Payload, PayloadType,
    Payloads, ProposalRepr, ProtocolId, SaPayload, TrafficSelector, TsPayload, FLAG_INITIATOR,
    FLAG_RESPONSE, HEADER_LEN,
};

/// The peer's NAT-T port (RFC 3948).
const NAT_T_PORT: u16 = 4500;
/// Nonce length we send (§2.10: at least half the PRF key size, and 16 bytes).
const NONCE_LEN: usize = 32;
/// IKE_SA_INIT retries after INVALID_KE_PAYLOAD or COOKIE before giving up.
const INIT_RETRIES: u8 = 3;
/// Largest message we build (a MODP-8192 KE is 1 KiB).
const BUILD_MAX: usize = 8192;
/// Our COOKIE (§2.6): a version byte naming the secret, then this much of
/// HMAC-SHA-256(secret, Ni | IPi | SPIi).
const COOKIE_HASH_LEN: usize = 16;
const COOKIE_LEN: usize = 1 + COOKIE_HASH_LEN;

/// Where an IKE SA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeState {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, IKE_AUTH awaited.
    HalfOpen,
    /// Both AUTHs verified.
    Established,
}

/// What a test or a report may see of an IKE SA.
#[derive(Debug, Clone)]
pub struct IkeSaInfo {
    pub peer: String,
    pub initiator: bool,
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: IkeState,
    pub suite: Option<Suite>,
    /// NAT detection (§2.23): our address or the peer's is not what the other side saw.
    pub nat_local: bool,
    pub nat_remote: bool,
}

/// A negotiated CHILD_SA (ESP, tunnel mode) with its keys; `in` is what we receive
/// (under `spi_in`, our SPI), `out` what we send (under the peer's `spi_out`).
#[derive(Debug, Clone)]
pub struct ChildSa {
    pub ike: Handle,
    pub peer: String,
    /// We initiated the exchange that made it (IKE_AUTH or CREATE_CHILD_SA); its KEYMAT
    /// has that side's keys first (§2.17).
    pub initiator: bool,
    /// Replaced by a rekey (§2.8): its Delete is on the way, and it is not rekeyed again.
    pub rekeyed: bool,
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub encr_in: Key,
    pub integ_in: Key,
    pub encr_out: Key,
    pub integ_out: Key,
    pub ts_local: Vec<Selector>,
    pub ts_remote: Vec<Selector>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_received: u64,
    pub datagrams_dropped: u64,
    /// Requests answered again from the kept response.
    pub responses_resent: u64,
    pub retransmits: u64,
    pub ike_sas_established: u64,
    pub child_sas_established: u64,
    pub failed: u64,
    pub half_open_refused: u64,
    pub half_open_expired: u64,
    /// IKE_SA_INIT requests answered with a COOKIE challenge and nothing else (§2.6).
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests whose COOKIE did not verify (answered with a new one).
    pub cookies_invalid: u64,
    /// CHILD_SAs removed: deleted by either side, or with their IKE SA.
    pub child_sas_deleted: u64,
    /// Empty INFORMATIONAL requests sent to an idle peer.
    pub liveness_checks: u64,
    /// IKE SAs deleted because a liveness check went unanswered.
    pub dead_peers: u64,
    /// CHILD_SAs replaced by a rekey, either side's (§2.8).
    pub child_sas_rekeyed: u64,
    /// IKE SAs replaced by a rekey, either side's (§1.3.2).
    pub ike_sas_rekeyed: u64,
}

/// Why a connect failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    UnknownPeer,
    TableFull,
    Local(&'static str),
}

/// A local failure while building or deriving: our bug or bad configuration, never the
/// peer's doing (those are notifies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fail(&'static str);

impl From<NoRoom> for Fail {
    fn from(_: NoRoom) -> Fail {
        Fail("message does not fit the buffer")
    }
}

impl From<SkError> for Fail {
    fn from(_: SkError) -> Fail {
        Fail("SK protection failed")
    }
}

impl From<KeyError> for Fail {
    fn from(_: KeyError) -> Fail {
        Fail("key derivation failed")
    }
}

/// What a request of ours is, for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Init,
    Auth,
    /// INFORMATIONAL with a Delete of these CHILD_SAs (our inbound SPIs).
    DeleteChild(Vec<u32>),
    /// INFORMATIONAL with a Delete of the IKE SA.
    DeleteIke,
    /// An empty INFORMATIONAL: is the peer alive?
    Liveness,
    /// CREATE_CHILD_SA (§1.3): a new CHILD_SA, or the rekey of the one with our inbound
    /// SPI.
    CreateChild(Option<u32>),
    /// CREATE_CHILD_SA rekeying the IKE SA (§1.3.2).
    RekeyIke,
}

/// Our IKE SA rekey in flight: the new IKE SA's SPI (ours), Ni and DH value.
struct IkeRekey {
    spi: [u8; 8],
    ni: Vec<u8>,
    dh: DhPrivate,
}

/// Our CREATE_CHILD_SA in flight.
struct Creating {
    /// Rekey: our inbound SPI of the CHILD_SA being replaced.
    rekey: Option<u32>,
    spi_in: u32,
    ni: Vec<u8>,
    /// PFS: our DH value.
    dh: Option<DhPrivate>,
    ts_local: Vec<Selector>,
    ts_remote: Vec<Selector>,
    /// The peer rekeyed the same CHILD_SA meanwhile (§2.8.1): its new CHILD_SA's inbound
    /// SPI (ours) and the lower nonce of its exchange.
    crossed: Option<(u32, Vec<u8>)>,
}

/// The request we wait an answer for.
struct Pending {
    msgid: u32,
    data: Vec<u8>,
    xmits: u32,
    at: Time,
    what: Req,
}

/// Which CHILD_SAs [`Engine::delete_child`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildRef<'a> {
    /// All of a peer's.
    Peer(&'a str),
    /// The one with this SPI, ours (inbound) or the peer's (outbound).
    Spi(u32),
}

/// Which IKE SAs [`Engine::delete_ike`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeRef<'a> {
    /// All of a peer's.
    Peer(&'a str),
    Handle(Handle),
}

struct IkeSa {
    info: IkeSaInfo,
    /// Index of the peer in the policy.
    peer: usize,
    keys: Option<IkeKeys>,
    dh: Option<DhPrivate>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The IKE_SA_INIT request and response as sent (RealMessage1/2 of §2.15).
    init_i: Vec<u8>,
    init_r: Vec<u8>,
    /// Initiator: retries of IKE_SA_INIT, and the COOKIE to return.
    init_retries: u8,
    cookie: Option<Vec<u8>>,
    /// Initiator: our inbound ESP SPI, offered in IKE_AUTH.
    child_spi: u32,
    /// Our next request's message ID, and the next request's we expect.
    next_msgid: u32,
    peer_msgid: u32,
    /// The last response we sent, for a repeated request.
    response: Option<(u32, Vec<u8>)>,
    request: Option<Pending>,
    /// Requests of ours waiting for the one in flight to be answered (window 1, §2.3).
    queued: Vec<Req>,
    /// A half-open responder SA goes at this time.
    expires: Option<Time>,
    /// An established SA's liveness check is due at this time.
    idle: Option<Time>,
    timer: Option<TimerHandle>,
    /// Responder: the (SPIi, address) index entry.
    init_index: Option<Handle>,
    /// AEAD IVs: a counter, unique per key (RFC 5282 §3).
    iv_counter: u64,
    /// Our CREATE_CHILD_SA in flight.
    creating: Option<Creating>,
    /// Our IKE SA rekey in flight.
    rekeying: Option<IkeRekey>,
}

impl IkeSa {
    fn our_spi(&self) -> [u8; 8] {
        if self.info.initiator {
            self.info.spi_i
        } else {
            self.info.spi_r
        }
    }

    fn header(&self, exchange: ExchangeType, msgid: u32, response: bool) -> Header {
        Header {
            spi_i: self.info.spi_i,
            spi_r: self.info.spi_r,
            exchange,
            flags: if self.info.initiator {
                FLAG_INITIATOR
            } else {
                0
            } | if response { FLAG_RESPONSE } else { 0 },
            msgid,
            ..Header::default()
        }
    }

    /// Earliest deadline: retransmission, half-open expiry or liveness check.
    fn deadline(&self) -> Option<Time> {
        [self.request.as_ref().map(|r| r.at), self.expires, self.idle]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The shared pieces a handler touches beside the SA it holds (the IKEv2 sibling of
/// `crate::ike::io::Io`).
struct Io {
    outbox: Outbox,
    timers: TimerWheel<Handle>,
    rng: Box<dyn Random>,
    stats: Stats,
    nat_port: u16,
}

impl Io {
    fn send(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let prefix: &[u8] = if local.port() == self.nat_port {
            &[0; 4]
        } else {
            &[]
        };
        self.outbox.push(local, remote, prefix, data);
    }

    fn dropped(&mut self, remote: SocketAddr, why: &str) {
        self.stats.datagrams_dropped += 1;
        log::debug!("ikev2: {remote}: dropped: {why}");
    }

    fn random<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.fill(&mut b);
        b
    }

    fn spi(&mut self) -> [u8; 8] {
        loop {
            let s = self.random::<8>();
            if s != [0; 8] {
                return s;
            }
        }
    }

    /// An ESP SPI outside the reserved 0-255 (RFC 4303 §2.1).
    fn esp_spi(&mut self) -> u32 {
        loop {
            let s = u32::from_be_bytes(self.random::<4>());
            if s > 255 {
                return s;
            }
        }
    }

    fn arm(&mut self, h: Handle, sa: &mut IkeSa) {
        if let Some(t) = sa.timer.take() {
            self.timers.cancel(t);
        }
        if let Some(d) = sa.deadline() {
            match self.timers.insert(d, h) {
                Ok(t) => sa.timer = Some(t),
                Err(_) => log::error!("ikev2: timer table full; IKE SA has no timer"),
            }
        }
    }

    /// Sends a request and keeps it for retransmission.
    fn request(
        &mut self,
        now: Time,
        cfg: &Config,
        h: Handle,
        sa: &mut IkeSa,
        (msgid, data): (u32, Vec<u8>),
        what: Req,
    ) {
        self.send(sa.info.local, sa.info.remote, &data);
        sa.request = Some(Pending {
            msgid,
            data,
            xmits: 0,
            at: now.add_millis(cfg.retransmit_ms),
            what,
        });
        self.arm(h, sa);
    }

    /// Sends a response and keeps it for a repeated request.
    fn respond(&mut self, sa: &mut IkeSa, msgid: u32, data: Vec<u8>) {
        self.send(sa.info.local, sa.info.remote, &data);
        sa.response = Some((msgid, data));
    }

    /// The IV of the next SK payload: random for CBC, a counter for AEAD.
    fn iv(&mut self, sa: &mut IkeSa, sk: &SkKeys) -> Vec<u8> {
        let mut iv = vec![0u8; sk.iv_len()];
        if sk.iv_len() == 8 {
            sa.iv_counter += 1;
            iv.copy_from_slice(&sa.iv_counter.to_be_bytes());
        } else {
            self.rng.fill(&mut iv);
        }
        iv
    }
}

/// The COOKIE secrets (§2.6): the current one and, for cookies handed out just before a
/// change, the one before it. The secret changes every `Config::cookie_secret_secs`; the
/// clock is looked at whenever a cookie is made or checked rather than on a timer of its
/// own, which would keep the engine from ever going idle.
struct CookieSecrets {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
    version: u8,
    change_at: Time,
}

impl CookieSecrets {
    fn new(rng: &mut dyn Random, now: Time, secs: u64) -> CookieSecrets {
        let mut current = [0u8; 32];
        rng.fill(&mut current);
        CookieSecrets {
            current,
            previous: None,
            version: 0,
            change_at: now.add_secs(secs),
        }
    }

    /// A new secret when the current one's time is up; after two periods without one,
    /// the old one is not kept either.
    fn rotate(&mut self, rng: &mut dyn Random, now: Time, secs: u64) {
        if now < self.change_at {
            return;
        }
        self.previous = (now < self.change_at.add_secs(secs)).then_some(self.current);
        rng.fill(&mut self.current);
        self.version = self.version.wrapping_add(1);
        self.change_at = now.add_secs(secs);
    }

    fn make(
        secret: &[u8; 32],
        version: u8,
        ni: &[u8],
        ip: IpAddr,
        spi_i: &[u8; 8],
    ) -> [u8; COOKIE_LEN] {
        let ip = match ip {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        };
        let mac = prf(HashAlg::Sha256, secret, &[ni, &ip, spi_i]);
        let mut c = [0u8; COOKIE_LEN];
        c[0] = version;
        c[1..].copy_from_slice(&mac.as_bytes()[..COOKIE_HASH_LEN]);
        c
    }

    fn cookie(&self, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> [u8; COOKIE_LEN] {
        CookieSecrets::make(&self.current, self.version, ni, ip, spi_i)
    }

    /// Whether `c` is a cookie we made, with the current secret or the one before, for
    /// this Ni, address and SPIi.
    fn valid(&self, c: &[u8], ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> bool {
        let secret = match c.first() {
            Some(&v) if v == self.version => &self.current,
            Some(&v) if v == self.version.wrapping_sub(1) => match &self.previous {
                Some(p) => p,
                None => return false,
            },
            _ => return false,
        };
        let want = CookieSecrets::make(secret, c[0], ni, ip, spi_i);
        constant_time_eq(c, &want)
    }
}

/// A responder SA's IKE_SA_INIT: the initiator's SPI and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct InitKey([u8; 8], SocketAddr);

/// The IKEv2 engine.
pub struct Engine {
    config: Config,
    policy: Policy,
    /// IKE SAs by our SPI.
    sas: Table<IkeSa, [u8; 8]>,
    /// Responder SAs by (SPIi, peer address), to tell a repeated IKE_SA_INIT (§2.1).
    by_init: Table<(InitKey, Handle), InitKey>,
    half_open: usize,
    cookies: CookieSecrets,
    children: Slab<ChildSa>,
    io: Io,
    /// Scratch for decrypting in place.
    rx: Vec<u8>,
    fired: Vec<Handle>,
}

impl Engine {
    pub fn new(config: Config, policy: Policy, now: Time, mut rng: Box<dyn Random>) -> Engine {
        let mut key = [0u8; 16];
        rng.fill(&mut key);
        let n = config.max_ike_sas.max(1);
        Engine {
            sas: Table::with_capacity(n, IkeSa::our_spi, Keyed(key)),
            by_init: Table::with_capacity(n, |e| e.0, Keyed(key)),
            half_open: 0,
            cookies: CookieSecrets::new(rng.as_mut(), now, config.cookie_secret_secs),
            children: Slab::with_capacity(2 * n),
            io: Io {
                outbox: Outbox::new(),
                timers: TimerWheel::new(2 * n, now),
                rng,
                stats: Stats::default(),
                nat_port: config.nat_port,
            },
            rx: Vec::with_capacity(65535),
            fired: Vec::new(),
            config,
            policy,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.io.stats
    }

    /// The IKE SAs, in any state.
    pub fn ike_sas(&self) -> impl Iterator<Item = (Handle, &IkeSaInfo)> {
        self.sas.iter().map(|(h, sa)| (h, &sa.info))
    }

    pub fn child_sas(&self) -> impl Iterator<Item = &ChildSa> {
        self.children.iter().map(|(_, c)| c)
    }

    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        self.io.outbox.pop(buf)
    }

    pub fn poll_timeout(&mut self) -> Option<Time> {
        self.io.timers.next_deadline()
    }

    /// Starts an IKE SA with the peer named `name`.
    pub fn connect(&mut self, now: Time, name: &str) -> Result<(), ConnectError> {
        let p = self
            .policy
            .peers
            .iter()
            .position(|p| p.name == name)
            .ok_or(ConnectError::UnknownPeer)?;
        let peer = &self.policy.peers[p];
        let first = *peer
            .ike
            .first()
            .ok_or(ConnectError::Local("no IKE proposal"))?;
        let spi_i = self.io.spi();
        let sa = IkeSa {
            info: IkeSaInfo {
                peer: peer.name.clone(),
                initiator: true,
                spi_i,
                spi_r: [0; 8],
                local: peer.local,
                remote: peer.remote,
                state: IkeState::InitSent,
                suite: None,
                nat_local: false,
                nat_remote: false,
            },
            peer: p,
            keys: None,
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_i: Vec::new(),
            init_r: Vec::new(),
            init_retries: 0,
            cookie: None,
            child_spi: 0,
            next_msgid: 0,
            peer_msgid: 0,
            response: None,
            request: None,
            queued: Vec::new(),
            expires: None,
            idle: None,
            timer: None,
            init_index: None,
            iv_counter: 0,
            creating: None,
            rekeying: None,
        };
        let h = self.sas.insert(sa).ok_or(ConnectError::TableFull)?;
        let Engine {
            sas,
            io,
            policy,
            config,
            ..
        } = self;
        let peer = &policy.peers[p];
        let res = match sas.get_mut(h) {
            Some(sa) => send_init(io, config, now, h, sa, peer, first.dh),
            None => Err(Fail("IKE SA table")),
        };
        if let Err(Fail(why)) = res {
            self.delete(h, why);
            return Err(ConnectError::Local(why));
        }
        log::info!(
            "ikev2: {} {}: IKE_SA_INIT sent, SPIi {}",
            peer.name,
            peer.remote,
            hex(&spi_i)
        );
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Time) {
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.io.timers.expire(now, |_, h| fired.push(h));
        for &h in &fired {
            let Some(sa) = self.sas.get_mut(h) else {
                continue;
            };
            sa.timer = None;
            if sa.expires.is_some_and(|t| t <= now) {
                self.io.stats.half_open_expired += 1;
                self.delete(h, "no IKE_AUTH in time");
                continue;
            }
            if sa.idle.is_some_and(|t| t <= now) {
                // Nothing from the peer for a while: ask, unless a request of ours is
                // already waiting for an answer (which asks the same).
                sa.idle = None;
                if sa.request.is_none() && sa.queued.is_empty() {
                    self.io.stats.liveness_checks += 1;
                    log::debug!("ikev2: {} {}: liveness check", sa.info.peer, sa.info.remote);
                    self.start_request(now, h, Req::Liveness);
                    continue;
                }
            }
            if let Some(r) = sa.request.as_mut().filter(|r| r.at <= now) {
                if r.xmits >= self.config.retransmits {
                    self.io.stats.failed += 1;
                    if r.what == Req::Liveness {
                        self.io.stats.dead_peers += 1;
                    }
                    self.delete(h, "no answer from the peer");
                    continue;
                }
                r.xmits += 1;
                let delay = self
                    .config
                    .retransmit_ms
                    .saturating_mul(1 << r.xmits.min(16));
                r.at = now.add_millis(delay);
                self.io.stats.retransmits += 1;
                let (local, remote) = (sa.info.local, sa.info.remote);
                let data = std::mem::take(&mut r.data);
                self.io.send(local, remote, &data);
                r.data = data;
            }
            self.io.arm(h, sa);
        }
        self.fired = fired;
    }

    pub fn handle_datagram(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.io.stats.datagrams_received += 1;
        let data = if local.port() == self.config.nat_port {
            // RFC 3948 §2.2: IKE after the non-ESP marker; a lone 0xff is a keepalive.
            match data.strip_prefix(&[0u8; 4][..]) {
                Some(d) => d,
                None => return self.dropped(remote, "no non-ESP marker"),
            }
        } else {
            data
        };
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => return self.dropped(remote, e.reason),
        };
        let hd = msg.header;
        if hd.exchange == ExchangeType::IKE_SA_INIT && !hd.response() {
            if hd.spi_r != [0; 8] || hd.msgid != 0 || !hd.initiator() {
                return self.dropped(remote, "IKE_SA_INIT request with a responder SPI");
            }
            return self.init_request(now, local, remote, data, &msg);
        }
        // The I flag says who sent it: the original initiator's messages are for our
        // responder SAs, keyed by SPIr (§2.6).
        let ours = if hd.initiator() { hd.spi_r } else { hd.spi_i };
        let Some(h) = self.sas.find_by(&ours, |sa| {
            sa.info.initiator != hd.initiator()
                && sa.info.remote.ip() == remote.ip()
                && (sa.info.state == IkeState::InitSent
                    || (if hd.initiator() {
                        sa.info.spi_i
                    } else {
                        sa.info.spi_r
                    }) == (if hd.initiator() { hd.spi_i } else { hd.spi_r }))
        }) else {
            return self.dropped(remote, "no IKE SA for its SPIs");
        };
        if hd.exchange == ExchangeType::IKE_SA_INIT {
            return self.init_response(now, h, data, &msg);
        }
        // Everything after IKE_SA_INIT is in an SK payload; one that does not verify is
        // dropped before anything else looks at it (§2.21.2).
        let Some(sa) = self.sas.get(h) else { return };
        let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
            return self.dropped(remote, "encrypted message before the keys");
        };
        let Ok(sk) = SkKeys::for_sender(&suite, keys, hd.initiator()) else {
            return;
        };
        let mut rx = std::mem::take(&mut self.rx);
        rx.clear();
        rx.extend_from_slice(data);
        match sk.open(&mut rx) {
            Ok(o) if o.fragment.is_none() => match parse_payloads(o.first, &rx[o.plain.clone()]) {
                Ok(inner) => {
                    if hd.response() {
                        self.response(now, h, &hd, &inner);
                    } else {
                        self.request(now, h, &hd, &inner, (local, remote));
                    }
                    self.heard_from(now, h);
                }
                Err(e) => self.dropped(remote, e.reason),
            },
            // XXX: fragments (RFC 7383) are not reassembled yet.
            Ok(_) => self.dropped(remote, "IKE fragment"),
            Err(e) => {
                log::debug!("ikev2: {remote}: dropped: {e}");
                self.io.stats.datagrams_dropped += 1;
            }
        }
        self.rx = rx;
    }

    fn dropped(&mut self, remote: SocketAddr, why: &str) {
        self.io.dropped(remote, why);
    }

    /// An authenticated message came: the liveness check of an established SA moves.
    fn heard_from(&mut self, now: Time, h: Handle) {
        let secs = self.config.liveness_secs;
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if secs > 0 && sa.info.state == IkeState::Established {
            sa.idle = Some(now.add_secs(secs));
            self.io.arm(h, sa);
        }
    }

    /// Removes an IKE SA with its CHILD_SAs and timer.
    fn delete(&mut self, h: Handle, why: &str) {
        let Some(mut sa) = self.sas.remove(h) else {
            return;
        };
        if let Some(t) = sa.timer.take() {
            self.io.timers.cancel(t);
        }
        if let Some(i) = sa.init_index.take() {
            self.by_init.remove(i);
        }
        if sa.info.state == IkeState::HalfOpen {
            self.half_open = self.half_open.saturating_sub(1);
        }
        self.remove_children(|c| c.ike == h);
        let level = if sa.info.state == IkeState::Established {
            log::Level::Info
        } else {
            log::Level::Warn
        };
        log::log!(
            level,
            "ikev2: {} {}: IKE SA {}/{} deleted: {why}",
            sa.info.peer,
            sa.info.remote,
            hex(&sa.info.spi_i),
            hex(&sa.info.spi_r)
        );
    }

    /// Responder: an IKE_SA_INIT request (§1.2).
    fn init_request(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message<'_>,
    ) {
        let hd = msg.header;
        if let Some(i) = self.by_init.find_by(&InitKey(hd.spi_i, remote), |_| true) {
            // A repeated request: answer from the kept response while half-open, drop
            // once IKE_AUTH has been answered.
            let h = self.by_init.get(i).map(|e| e.1);
            if let Some(sa) = h.and_then(|h| self.sas.get_mut(h)) {
                if sa.info.state == IkeState::HalfOpen {
                    if let Some((0, r)) = &sa.response {
                        self.io.send(local, remote, r);
                        self.io.stats.responses_resent += 1;
                        return;
                    }
                }
            }
            return self.dropped(remote, "repeated IKE_SA_INIT");
        }
        let Some(p) = self
            .policy
            .peers
            .iter()
            .position(|p| p.remote.ip() == remote.ip())
        else {
            return self.dropped(remote, "IKE_SA_INIT from an unknown peer");
        };
        let pl = &msg.payloads;
        let (Some(Payload::Sa(offer)), Some(Payload::Ke(ke)), Some(Payload::Nonce(ni))) = (
            pl.find(PayloadType::SA),
            pl.find(PayloadType::KE),
            pl.find(PayloadType::NONCE),
        ) else {
            return self.dropped(remote, "IKE_SA_INIT without SA, KE or Nonce");
        };
        let reply = |io: &mut Io, ty: NotifyType, data: &[u8]| {
            let hdr = Header {
                spi_i: hd.spi_i,
                flags: FLAG_RESPONSE,
                ..Header::default()
            };
            let mut buf = [0u8; 128];
            let n = MessageBuilder::new(&mut buf, &hdr).and_then(|mut b| {
                b.notify(ty, data)?;
                b.finish()
            });
            if let Ok(n) = n {
                io.send(local, remote, &buf[..n]);
            }
        };
        if self.half_open >= self.config.cookie_threshold {
            // §2.6: under load, only a request that returns our COOKIE goes on; the
            // others get a COOKIE and nothing is kept.
            self.cookies
                .rotate(self.io.rng.as_mut(), now, self.config.cookie_secret_secs);
            let ip = remote.ip();
            match pl.notify(NotifyType::COOKIE) {
                Some(c) if self.cookies.valid(c.data, ni, ip, &hd.spi_i) => {}
                got => {
                    if got.is_some() {
                        self.io.stats.cookies_invalid += 1;
                    }
                    self.io.stats.cookies_sent += 1;
                    log::debug!("ikev2: {remote}: IKE_SA_INIT answered with a COOKIE");
                    let c = self.cookies.cookie(ni, ip, &hd.spi_i);
                    return reply(&mut self.io, NotifyType::COOKIE, &c);
                }
            }
        }
        if self.half_open >= self.config.max_half_open {
            self.io.stats.half_open_refused += 1;
            return self.dropped(remote, "too many half-open IKE SAs");
        }
        let peer = &self.policy.peers[p];
        let Some((chosen, number)) = choose_ike(offer, &peer.ike) else {
            log::warn!(
                "ikev2: {} {remote}: IKE_SA_INIT: no proposal chosen",
                peer.name
            );
            self.io.stats.failed += 1;
            return reply(&mut self.io, NotifyType::NO_PROPOSAL_CHOSEN, &[]);
        };
        if ke.group != chosen.dh {
            log::info!(
                "ikev2: {} {remote}: KE for {}, asking for {} (INVALID_KE_PAYLOAD)",
                peer.name,
                ke.group,
                chosen.dh
            );
            return reply(
                &mut self.io,
                NotifyType::INVALID_KE_PAYLOAD,
                &chosen.dh.0.to_be_bytes(),
            );
        }
        let spi_r = self.io.spi();
        let nr = self.io.random::<NONCE_LEN>().to_vec();
        let mut sa = IkeSa {
            info: IkeSaInfo {
                peer: peer.name.clone(),
                initiator: false,
                spi_i: hd.spi_i,
                spi_r,
                local,
                remote,
                state: IkeState::HalfOpen,
                suite: None,
                nat_local: false,
                nat_remote: false,
            },
            peer: p,
            keys: None,
            dh: None,
            ni: ni.to_vec(),
            nr,
            init_i: data.to_vec(),
            init_r: Vec::new(),
            init_retries: 0,
            cookie: None,
            child_spi: 0,
            next_msgid: 0,
            peer_msgid: 1,
            response: None,
            request: None,
            queued: Vec::new(),
            expires: Some(now.add_secs(self.config.half_open_secs)),
            idle: None,
            timer: None,
            init_index: None,
            iv_counter: 0,
            creating: None,
            rekeying: None,
        };
        nat_detect(&mut sa, &msg.payloads);
        let res = derive_ike(&mut self.io, &mut sa, &chosen, ke)
            .and_then(|dh| build_init_response(&sa, &chosen, number, &dh));
        let resp = match res {
            Ok(r) => r,
            Err(Fail(why)) => {
                log::warn!("ikev2: {} {remote}: IKE_SA_INIT: {why}", peer.name);
                self.io.stats.failed += 1;
                return reply(&mut self.io, NotifyType::INVALID_SYNTAX, &[]);
            }
        };
        sa.init_r = resp.clone();
        let Some(h) = self.sas.insert(sa) else {
            return self.dropped(remote, "IKE SA table full");
        };
        self.half_open += 1;
        let idx = self.by_init.insert((InitKey(hd.spi_i, remote), h));
        if let Some(sa) = self.sas.get_mut(h) {
            sa.init_index = idx;
            self.io.respond(sa, 0, resp);
            self.io.arm(h, sa);
            log::info!(
                "ikev2: {} {remote}: IKE_SA_INIT answered, SPIs {}/{}",
                sa.info.peer,
                hex(&sa.info.spi_i),
                hex(&sa.info.spi_r)
            );
        }
    }

    /// Initiator: the answer to IKE_SA_INIT.
    fn init_response(&mut self, now: Time, h: Handle, data: &[u8], msg: &Message<'_>) {
        if let Err(why) = self.init_response_inner(now, h, data, msg) {
            self.fail(h, why);
        }
    }

    fn init_response_inner(
        &mut self,
        now: Time,
        h: Handle,
        data: &[u8],
        msg: &Message<'_>,
    ) -> Result<(), &'static str> {
        let Engine {
            sas,
            io,
            policy,
            config,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Ok(());
        };
        let remote = sa.info.remote;
        if sa.info.state != IkeState::InitSent || sa.request.as_ref().map(|r| r.msgid) != Some(0) {
            io.dropped(remote, "unexpected IKE_SA_INIT response");
            return Ok(());
        }
        let peer = &policy.peers[sa.peer];
        let pl = &msg.payloads;
        // INVALID_KE_PAYLOAD and COOKIE: try again, as the responder asks (§1.2, §2.6).
        let mut retry = None;
        if let Some(n) = pl.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let g =
                (n.data.len() == 2).then(|| DhGroup(u16::from_be_bytes([n.data[0], n.data[1]])));
            let g = g
                .filter(|g| peer.ike.iter().any(|p| p.dh == *g))
                .ok_or("INVALID_KE_PAYLOAD for a group we did not offer")?;
            log::info!("ikev2: {} {remote}: the peer wants group {g}", peer.name);
            retry = Some(g);
        } else if let Some(n) = pl.notify(NotifyType::COOKIE) {
            sa.cookie = Some(n.data.to_vec());
            retry = sa.dh.as_ref().map(|d| DhGroup(d.group().number()));
        }
        if let Some(g) = retry {
            if sa.init_retries >= INIT_RETRIES {
                return Err("too many IKE_SA_INIT retries");
            }
            sa.init_retries += 1;
            return send_init(io, config, now, h, sa, peer, g).map_err(|Fail(why)| why);
        }
        if let Some(n) = pl.notifies().find(|n| n.ty.is_error()) {
            log::warn!(
                "ikev2: {} {remote}: IKE_SA_INIT refused: {}",
                peer.name,
                n.ty
            );
            return Err("IKE_SA_INIT refused");
        }
        let (Some(Payload::Sa(answer)), Some(Payload::Ke(ke)), Some(Payload::Nonce(nr))) = (
            pl.find(PayloadType::SA),
            pl.find(PayloadType::KE),
            pl.find(PayloadType::NONCE),
        ) else {
            return Err("IKE_SA_INIT response without SA, KE or Nonce");
        };
        let mut props = answer.proposals();
        let chosen = match (props.next(), props.next()) {
            (Some(p), None) => peer.ike.iter().find(|o| o.is(&p)).copied(),
            _ => None,
        }
        .ok_or("the responder chose a proposal we did not offer")?;
        if msg.header.spi_r == [0; 8] {
            return Err("zero responder SPI");
        }
        sa.info.spi_r = msg.header.spi_r;
        sa.nr = nr.to_vec();
        sa.init_r = data.to_vec();
        nat_detect(sa, pl);
        if (sa.info.nat_local || sa.info.nat_remote) && sa.info.local.port() != config.nat_port {
            // §2.23: behind a NAT, the initiator moves to port 4500 for IKE_AUTH. XXX: the
            // CHILD_SA is not yet marked for UDP encapsulation.
            sa.info.local.set_port(config.nat_port);
            sa.info.remote.set_port(NAT_T_PORT);
        }
        let dh = sa.dh.take().ok_or("no DH value")?;
        if ke.group != chosen.dh || dh.group().number() != chosen.dh.0 {
            return Err("KE group differs from the chosen one");
        }
        keys_from(sa, &chosen, &dh, ke.data).map_err(|Fail(why)| why)?;
        sa.request = None;
        sa.info.state = IkeState::AuthSent;
        sa.child_spi = io.esp_spi();
        let msgid = sa.next_msgid;
        let m = build_auth_request(io, sa, peer).map_err(|Fail(why)| why)?;
        io.request(now, config, h, sa, (msgid, m), Req::Auth);
        sa.next_msgid = msgid.wrapping_add(1);
        Ok(())
    }

    fn fail(&mut self, h: Handle, why: &str) {
        self.io.stats.failed += 1;
        self.delete(h, why);
    }

    /// A request on an SA: check the window, answer a repeat from the kept response.
    fn request(
        &mut self,
        now: Time,
        h: Handle,
        hd: &Header,
        inner: &Payloads<'_>,
        (local, remote): (SocketAddr, SocketAddr),
    ) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        // A response goes back where its (authenticated) request came from (§2.11): the
        // initiator may have moved to port 4500 after IKE_SA_INIT (§2.23). Only a new
        // request moves the SA; a repeated one is answered where it came from.
        if hd.msgid != sa.peer_msgid {
            match &sa.response {
                Some((m, r)) if *m == hd.msgid => {
                    self.io.send(local, remote, r);
                    self.io.stats.responses_resent += 1;
                }
                _ => self.io.dropped(remote, "request outside the window"),
            }
            return;
        }
        sa.info.local = local;
        sa.info.remote = remote;
        match (sa.info.state, hd.exchange) {
            (IkeState::HalfOpen, ExchangeType::IKE_AUTH) => self.auth_request(now, h, hd, inner),
            (IkeState::Established, ExchangeType::INFORMATIONAL) => {
                self.informational(now, h, hd, inner)
            }
            (IkeState::Established, ExchangeType::CREATE_CHILD_SA) => {
                let ike = match inner.find(PayloadType::SA) {
                    Some(Payload::Sa(o)) => o.proposals().any(|p| p.protocol == ProtocolId::IKE),
                    _ => false,
                };
                if ike {
                    self.rekey_ike_request(now, h, hd, inner)
                } else {
                    self.create_child_request(now, h, hd, inner)
                }
            }
            _ => self.io.dropped(remote, "request not handled in this state"),
        }
    }

    fn response(&mut self, now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        let Some(req) = sa.request.take_if(|r| r.msgid == hd.msgid) else {
            return self
                .io
                .dropped(sa.info.remote, "response to no request of ours");
        };
        self.io.arm(h, sa);
        match (req.what, hd.exchange) {
            (Req::Auth, ExchangeType::IKE_AUTH) if sa.info.state == IkeState::AuthSent => {
                self.auth_response(now, h, inner)
            }
            (Req::DeleteChild(spis), ExchangeType::INFORMATIONAL) => {
                // Ours go now; the peer's Delete names its halves of the same pairs
                // (§1.4.1), or nothing for those it had deleted itself.
                let gone = self.remove_children(|c| c.ike == h && spis.contains(&c.spi_in));
                log::info!(
                    "ikev2: {}: {gone} CHILD_SA(s) deleted",
                    self.sas.get(h).map_or("?", |sa| sa.info.peer.as_str())
                );
            }
            (Req::DeleteIke, ExchangeType::INFORMATIONAL) => {
                return self.delete(h, "deleted by us");
            }
            (Req::Liveness, ExchangeType::INFORMATIONAL) => {}
            (Req::CreateChild(_), ExchangeType::CREATE_CHILD_SA) => {
                self.create_child_response(now, h, inner)
            }
            (Req::RekeyIke, ExchangeType::CREATE_CHILD_SA) => {
                return self.rekey_ike_response(now, h, inner);
            }
            (_, x) => {
                let remote = sa.info.remote;
                return self.io.dropped(remote, &format!("unexpected {x} response"));
            }
        }
        self.next_request(now, h);
    }

    /// Deletes CHILD_SAs (RFC 7296 §1.4.1): an INFORMATIONAL with a Delete of our inbound
    /// SPIs to each IKE SA's peer; the CHILD_SAs go when the peer answers (or with the
    /// IKE SA if it never does). Returns how many are being deleted.
    pub fn delete_child(&mut self, now: Time, which: ChildRef<'_>) -> usize {
        let mut by_ike: Vec<(Handle, Vec<u32>)> = Vec::new();
        for (_, c) in self.children.iter() {
            let hit = match which {
                ChildRef::Peer(p) => c.peer == p,
                ChildRef::Spi(s) => c.spi_in == s || c.spi_out == s,
            };
            if !hit {
                continue;
            }
            match by_ike.iter_mut().find(|(h, _)| *h == c.ike) {
                Some((_, v)) => v.push(c.spi_in),
                None => by_ike.push((c.ike, vec![c.spi_in])),
            }
        }
        let n = by_ike.iter().map(|(_, v)| v.len()).sum();
        for (h, spis) in by_ike {
            self.start_request(now, h, Req::DeleteChild(spis));
        }
        n
    }

    /// Deletes IKE SAs with their CHILD_SAs: an established one with an INFORMATIONAL
    /// holding a Delete of the IKE SA (§1.4.1), gone when the peer answers or the
    /// retransmissions run out; one still being set up at once. Returns how many.
    pub fn delete_ike(&mut self, now: Time, which: IkeRef<'_>) -> usize {
        let picked: Vec<(Handle, bool)> = self
            .sas
            .iter()
            .filter(|(h, sa)| match which {
                IkeRef::Peer(p) => sa.info.peer == p,
                IkeRef::Handle(x) => *h == x,
            })
            .map(|(h, sa)| (h, sa.info.state == IkeState::Established))
            .collect();
        for &(h, established) in &picked {
            if established {
                self.start_request(now, h, Req::DeleteIke);
            } else {
                self.delete(h, "deleted before it was established");
            }
        }
        picked.len()
    }

    /// Rekeys CHILD_SAs (§1.3.3, §2.8): a CREATE_CHILD_SA with N(REKEY_SA) naming our
    /// inbound SPI, the same selectors, our ESP suites (with KEi when the first one has a
    /// PFS group); when the answer comes, the new CHILD_SA is added and the old one
    /// deleted with an INFORMATIONAL. CHILD_SAs already replaced are left alone. Returns
    /// how many rekeys were started or queued.
    pub fn rekey_child(&mut self, now: Time, which: ChildRef<'_>) -> usize {
        let picked: Vec<(Handle, u32)> = self
            .children
            .iter()
            .filter(|(_, c)| !c.rekeyed)
            .filter(|(_, c)| match which {
                ChildRef::Peer(p) => c.peer == p,
                ChildRef::Spi(s) => c.spi_in == s || c.spi_out == s,
            })
            .map(|(_, c)| (c.ike, c.spi_in))
            .collect();
        for &(h, spi) in &picked {
            self.start_request(now, h, Req::CreateChild(Some(spi)));
        }
        picked.len()
    }

    /// Another CHILD_SA with the peer named `peer`, for its selectors, on its first
    /// established IKE SA (§1.3.1). Returns whether one was started or queued.
    pub fn create_child(&mut self, now: Time, peer: &str) -> bool {
        let h = self
            .sas
            .iter()
            .find(|(_, sa)| sa.info.peer == peer && sa.info.state == IkeState::Established)
            .map(|(h, _)| h);
        if let Some(h) = h {
            self.start_request(now, h, Req::CreateChild(None));
        }
        h.is_some()
    }

    /// Responder: CREATE_CHILD_SA for a CHILD_SA (§1.3.1, §1.3.3): with N(REKEY_SA) the
    /// CHILD_SA it names (by the peer's inbound SPI, our outbound one) is replaced and
    /// stays until the peer deletes it; with PFS, KEi must be for our group
    /// (INVALID_KE_PAYLOAD otherwise). A rekey of a CHILD_SA we are rekeying ourselves
    /// is answered too, and remembered for §2.8.1 when our answer comes.
    fn create_child_request(&mut self, _now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        let Engine {
            sas,
            io,
            policy,
            children,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        sa.peer_msgid = hd.msgid.wrapping_add(1);
        let peer = &policy.peers[sa.peer];
        let mut notify: (NotifyType, Vec<u8>) = (NotifyType::INVALID_SYNTAX, Vec::new());
        let mut made = None;
        let res = (|| -> Result<Vec<u8>, Fail> {
            let old = match inner.notify(NotifyType::REKEY_SA) {
                Some(n) if n.protocol == ProtocolId::ESP && n.spi.len() == 4 => {
                    let spi = u32::from_be_bytes([n.spi[0], n.spi[1], n.spi[2], n.spi[3]]);
                    let Some((ch, c)) = children
                        .iter()
                        .find(|(_, c)| c.ike == h && c.spi_out == spi)
                    else {
                        notify.0 = NotifyType::CHILD_SA_NOT_FOUND;
                        return Err(Fail("rekey of an unknown CHILD_SA"));
                    };
                    if c.rekeyed {
                        notify.0 = NotifyType::TEMPORARY_FAILURE;
                        return Err(Fail("rekey of a CHILD_SA already replaced"));
                    }
                    Some((ch, c.spi_in))
                }
                Some(_) => return Err(Fail("REKEY_SA not for an ESP SPI")),
                None => None,
            };
            let c = choose_child(io, peer, inner, true).map_err(|n| {
                notify.0 = n;
                Fail("no acceptable CHILD_SA")
            })?;
            let Some(Payload::Nonce(ni)) = inner.find(PayloadType::NONCE) else {
                return Err(Fail("no Ni"));
            };
            let (dh, gir) = match c.esp.pfs {
                Some(g) => {
                    let ke = match inner.find(PayloadType::KE) {
                        Some(Payload::Ke(ke)) if ke.group == g => ke,
                        _ => {
                            notify = (NotifyType::INVALID_KE_PAYLOAD, g.0.to_be_bytes().to_vec());
                            return Err(Fail("KEi missing or for another group"));
                        }
                    };
                    let dh = new_dh(io, g)?;
                    let gir = dh
                        .shared_secret(ke.data)
                        .map_err(|_| Fail("invalid KE public value"))?;
                    (Some(dh), Some(gir))
                }
                None => (None, None),
            };
            let nr = io.random::<NONCE_LEN>().to_vec();
            let t = c.esp.transforms_pfs();
            let m = build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, hd.msgid, true, |b| {
                b.sa(&[ProposalRepr {
                    number: c.number,
                    protocol: ProtocolId::ESP,
                    spi: &c.spi_in.to_be_bytes(),
                    transforms: &t,
                }])?;
                b.add(PayloadType::NONCE, false, &Payload::Nonce(&nr))?;
                if let Some(dh) = &dh {
                    b.add(
                        PayloadType::KE,
                        false,
                        &Payload::Ke(KePayload {
                            group: DhGroup(dh.group().number()),
                            data: dh.public_value(),
                        }),
                    )?;
                }
                ts_payload(b, PayloadType::TSI, &c.tsi)?;
                ts_payload(b, PayloadType::TSR, &c.tsr)
            })?;
            let mut child = bare_child(sa, h, &c.esp, c.spi_in, c.spi_out, c.tsr, c.tsi);
            child.initiator = false;
            set_keys(sa, &mut child, gir.as_ref().map(|g| g.as_bytes()), ni, &nr)?;
            made = Some((child, old, (*ni).min(&nr[..]).to_vec()));
            Ok(m)
        })();
        let m = match res {
            Ok(m) => m,
            Err(Fail(why)) => {
                log::warn!(
                    "ikev2: {} {}: CREATE_CHILD_SA refused: {why} ({})",
                    peer.name,
                    sa.info.remote,
                    notify.0
                );
                let (ty, data) = notify;
                match build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, hd.msgid, true, |b| {
                    b.notify(ty, &data)
                }) {
                    Ok(m) => m,
                    Err(_) => return,
                }
            }
        };
        io.respond(sa, hd.msgid, m);
        let Some((child, old, low)) = made else {
            return;
        };
        if let Some((ch, old_in)) = old {
            if let Some(c) = children.get_mut(ch) {
                c.rekeyed = true;
            }
            io.stats.child_sas_rekeyed += 1;
            if let Some(cr) = sa.creating.as_mut().filter(|cr| cr.rekey == Some(old_in)) {
                cr.crossed = Some((child.spi_in, low));
            }
        }
        self.add_child(child);
    }

    /// Initiator: the answer to our CREATE_CHILD_SA. The new CHILD_SA is added; after a
    /// rekey the old one is deleted, or, when the peer rekeyed it at the same time
    /// (§2.8.1), whichever new CHILD_SA came from the exchange with the lowest of the
    /// four nonces is deleted by its creator and the old one by the other's creator.
    fn create_child_response(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) {
        let Engine {
            sas,
            policy,
            children,
            io,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        let Some(cr) = sa.creating.take() else { return };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        let res = (|| -> Result<ChildSa, String> {
            let (esp, spi_out, tsi, tsr) = accept_child(peer, inner, true)?;
            let Some(Payload::Nonce(nr)) = inner.find(PayloadType::NONCE) else {
                return Err("no Nr".into());
            };
            if !tsi.iter().all(|g| cr.ts_local.iter().any(|o| g.within(o)))
                || !tsr.iter().all(|g| cr.ts_remote.iter().any(|o| g.within(o)))
            {
                return Err("traffic selectors wider than proposed".into());
            }
            let gir = match esp.pfs {
                Some(g) => {
                    let Some(Payload::Ke(ke)) = inner.find(PayloadType::KE) else {
                        return Err("no KEr".into());
                    };
                    let dh = cr
                        .dh
                        .as_ref()
                        .filter(|d| d.group().number() == g.0 && ke.group == g)
                        .ok_or("KEr for another group than our KEi")?;
                    Some(
                        dh.shared_secret(ke.data)
                            .map_err(|_| "invalid KE public value")?,
                    )
                }
                None => None,
            };
            let mut c = bare_child(sa, h, &esp, cr.spi_in, spi_out, tsi, tsr);
            c.initiator = true;
            set_keys(sa, &mut c, gir.as_ref().map(|g| g.as_bytes()), &cr.ni, nr)
                .map_err(|Fail(why)| why)?;
            Ok(c)
        })();
        let mut c = match res {
            Ok(c) => c,
            // XXX: an answer we cannot accept should get its CHILD_SA deleted.
            Err(why) => {
                log::warn!("ikev2: {} {remote}: CREATE_CHILD_SA: {why}", peer.name);
                return;
            }
        };
        let mut delete = Vec::new();
        if let Some(old) = cr.rekey {
            let ours_low = match inner.find(PayloadType::NONCE) {
                Some(Payload::Nonce(nr)) => cr.ni.as_slice().min(nr).to_vec(),
                _ => cr.ni.clone(),
            };
            match &cr.crossed {
                Some((_, theirs_low)) if ours_low < *theirs_low => {
                    log::info!(
                        "ikev2: {}: simultaneous rekey: ours is redundant, deleted",
                        peer.name
                    );
                    c.rekeyed = true;
                    delete.push(c.spi_in);
                }
                crossed => {
                    let ch = children
                        .iter()
                        .find(|(_, c)| c.ike == h && c.spi_in == old)
                        .map(|(ch, _)| ch);
                    if let Some(c) = ch.and_then(|ch| children.get_mut(ch)) {
                        if !c.rekeyed {
                            io.stats.child_sas_rekeyed += 1;
                        }
                        c.rekeyed = true;
                        delete.push(old);
                    }
                    if crossed.is_some() {
                        log::info!(
                            "ikev2: {}: simultaneous rekey: the peer's is redundant",
                            peer.name
                        );
                    }
                }
            }
        }
        self.add_child(c);
        if !delete.is_empty() {
            self.start_request(now, h, Req::DeleteChild(delete));
        }
    }

    /// Rekeys IKE SAs (§1.3.2, §2.18): a CREATE_CHILD_SA with our IKE suites, a new
    /// SPI, Ni and KEi for the first suite's group; on the answer the new IKE SA takes
    /// over the CHILD_SAs and the old one is deleted with an INFORMATIONAL. Returns how
    /// many rekeys were started or queued.
    pub fn rekey_ike(&mut self, now: Time, which: IkeRef<'_>) -> usize {
        let picked: Vec<Handle> = self
            .sas
            .iter()
            .filter(|(h, sa)| match which {
                IkeRef::Peer(p) => sa.info.peer == p,
                IkeRef::Handle(x) => *h == x,
            })
            .filter(|(_, sa)| sa.info.state == IkeState::Established)
            .map(|(h, _)| h)
            .collect();
        for &h in &picked {
            self.start_request(now, h, Req::RekeyIke);
        }
        picked.len()
    }

    /// Responder: an IKE SA rekey (§1.3.2): the first offered suite we have, a KEi for
    /// its group (INVALID_KE_PAYLOAD otherwise), SKEYSEED from the old SK_d (§2.18); the
    /// new IKE SA (the peer its initiator) takes the CHILD_SAs; the old one stays until
    /// the peer deletes it.
    fn rekey_ike_request(&mut self, now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        let Engine {
            sas, io, policy, ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        sa.peer_msgid = hd.msgid.wrapping_add(1);
        let peer = &policy.peers[sa.peer];
        let mut notify: (NotifyType, Vec<u8>) = (NotifyType::INVALID_SYNTAX, Vec::new());
        let mut made = None;
        let res = (|| -> Result<Vec<u8>, Fail> {
            let Some(Payload::Sa(offer)) = inner.find(PayloadType::SA) else {
                return Err(Fail("no SA"));
            };
            let Some((chosen, number, spi_i)) = offer.proposals().find_map(|p| {
                let o = peer
                    .ike
                    .iter()
                    .find(|o| o.offered_in_rekey(&p) && o.suite().is_ok())?;
                let spi: [u8; 8] = p.spi.try_into().ok()?;
                (spi != [0; 8]).then_some((*o, p.number, spi))
            }) else {
                notify.0 = NotifyType::NO_PROPOSAL_CHOSEN;
                return Err(Fail("no IKE proposal chosen"));
            };
            let ke = match inner.find(PayloadType::KE) {
                Some(Payload::Ke(ke)) if ke.group == chosen.dh => ke,
                _ => {
                    notify = (
                        NotifyType::INVALID_KE_PAYLOAD,
                        chosen.dh.0.to_be_bytes().to_vec(),
                    );
                    return Err(Fail("KEi missing or for another group"));
                }
            };
            let Some(Payload::Nonce(ni)) = inner.find(PayloadType::NONCE) else {
                return Err(Fail("no Ni"));
            };
            let dh = new_dh(io, chosen.dh)?;
            let gir = dh
                .shared_secret(ke.data)
                .map_err(|_| Fail("invalid KE public value"))?;
            let spi_r = io.spi();
            let nr = io.random::<NONCE_LEN>().to_vec();
            let new = rekeyed_sa(sa, &chosen, gir.as_bytes(), (spi_i, spi_r), ni, &nr, false)?;
            let t = chosen.transforms();
            let m = build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, hd.msgid, true, |b| {
                b.sa(&[ProposalRepr {
                    number,
                    protocol: ProtocolId::IKE,
                    spi: &spi_r,
                    transforms: &t,
                }])?;
                b.add(PayloadType::NONCE, false, &Payload::Nonce(&nr))?;
                b.add(
                    PayloadType::KE,
                    false,
                    &Payload::Ke(KePayload {
                        group: chosen.dh,
                        data: dh.public_value(),
                    }),
                )
            })?;
            made = Some(new);
            Ok(m)
        })();
        let m = match res {
            Ok(m) => m,
            Err(Fail(why)) => {
                log::warn!(
                    "ikev2: {} {}: IKE SA rekey refused: {why} ({})",
                    peer.name,
                    sa.info.remote,
                    notify.0
                );
                let (ty, data) = notify;
                match build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, hd.msgid, true, |b| {
                    b.notify(ty, &data)
                }) {
                    Ok(m) => m,
                    Err(_) => return,
                }
            }
        };
        io.respond(sa, hd.msgid, m);
        if let Some(new) = made {
            self.take_over(now, h, new);
        }
    }

    /// Initiator: the answer to our IKE SA rekey; the new IKE SA takes the CHILD_SAs and
    /// the old one is deleted.
    fn rekey_ike_response(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) {
        let Engine { sas, policy, .. } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        let Some(r) = sa.rekeying.take() else { return };
        let peer = &policy.peers[sa.peer];
        let res = (|| -> Result<IkeSa, &'static str> {
            if let Some(n) = inner.notifies().find(|n| n.ty.is_error()) {
                log::warn!("ikev2: {}: IKE SA rekey refused: {}", peer.name, n.ty);
                return Err("refused");
            }
            let Some(Payload::Sa(answer)) = inner.find(PayloadType::SA) else {
                return Err("no SA payload");
            };
            let mut props = answer.proposals();
            let (Some(p), None) = (props.next(), props.next()) else {
                return Err("not one proposal");
            };
            let chosen = peer
                .ike
                .iter()
                .find(|o| o.is_rekey(&p))
                .copied()
                .ok_or("a proposal we did not offer")?;
            let spi_r: [u8; 8] = p.spi.try_into().map_err(|_| "bad SPI")?;
            if spi_r == [0; 8] {
                return Err("zero SPI");
            }
            let (Some(Payload::Nonce(nr)), Some(Payload::Ke(ke))) =
                (inner.find(PayloadType::NONCE), inner.find(PayloadType::KE))
            else {
                return Err("no Nr or KEr");
            };
            if ke.group != chosen.dh || r.dh.group().number() != chosen.dh.0 {
                return Err("KEr for another group than our KEi");
            }
            let gir =
                r.dh.shared_secret(ke.data)
                    .map_err(|_| "invalid KE public value")?;
            rekeyed_sa(sa, &chosen, gir.as_bytes(), (r.spi, spi_r), &r.ni, nr, true)
                .map_err(|Fail(why)| why)
        })();
        match res {
            Ok(new) => {
                self.take_over(now, h, new);
                self.start_request(now, h, Req::DeleteIke);
            }
            // XXX: an answer we cannot take should get its IKE SA deleted.
            Err(why) => {
                log::warn!("ikev2: {}: IKE SA rekey: {why}", peer.name);
                self.next_request(now, h);
            }
        }
    }

    /// The new IKE SA of a rekey goes in the table and takes the old one's CHILD_SAs.
    fn take_over(&mut self, now: Time, old: Handle, new: IkeSa) {
        let (spi_i, spi_r, name) = (new.info.spi_i, new.info.spi_r, new.info.peer.clone());
        let Some(nh) = self.sas.insert(new) else {
            log::error!("ikev2: {name}: IKE SA table full; rekey dropped");
            return;
        };
        let moving: Vec<Handle> = self
            .children
            .iter()
            .filter(|(_, c)| c.ike == old)
            .map(|(ch, _)| ch)
            .collect();
        for ch in moving {
            if let Some(c) = self.children.get_mut(ch) {
                c.ike = nh;
            }
        }
        self.io.stats.ike_sas_rekeyed += 1;
        log::info!(
            "ikev2: {name}: IKE SA rekeyed, new SPIs {}/{}",
            hex(&spi_i),
            hex(&spi_r)
        );
        self.heard_from(now, nh);
    }

    /// Sends a request of ours on an established SA, or queues it behind the one in
    /// flight.
    fn start_request(&mut self, now: Time, h: Handle, what: Req) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.request.is_some() {
            if !sa.queued.contains(&what) {
                sa.queued.push(what);
            }
            return;
        }
        let msgid = sa.next_msgid;
        if what == Req::RekeyIke {
            let Engine {
                sas,
                io,
                policy,
                config,
                ..
            } = self;
            let Some(sa) = sas.get_mut(h) else { return };
            let peer = &policy.peers[sa.peer];
            let m = new_ike_rekey(io, peer).and_then(|r| {
                let m = build_rekey_ike(io, sa, peer, msgid, &r)?;
                sa.rekeying = Some(r);
                Ok(m)
            });
            match m {
                Ok(m) => {
                    io.request(now, config, h, sa, (msgid, m), what);
                    sa.next_msgid = msgid.wrapping_add(1);
                }
                Err(Fail(why)) => log::error!("ikev2: {}: IKE SA rekey: {why}", peer.name),
            }
            return;
        }
        if let Req::CreateChild(old) = what {
            let Engine {
                sas,
                io,
                policy,
                children,
                config,
                ..
            } = self;
            let Some(sa) = sas.get_mut(h) else { return };
            let peer = &policy.peers[sa.peer];
            let ts = match old {
                Some(spi) => children
                    .iter()
                    .find(|(_, c)| c.ike == h && c.spi_in == spi && !c.rekeyed)
                    .map(|(_, c)| (c.ts_local.clone(), c.ts_remote.clone())),
                None => Some((peer.local_ts.clone(), peer.remote_ts.clone())),
            };
            let Some((ts_local, ts_remote)) = ts else {
                log::info!("ikev2: {}: no CHILD_SA to rekey", peer.name);
                return;
            };
            let m = new_creating(io, peer, old, ts_local, ts_remote).and_then(|c| {
                let m = build_create_child(io, sa, peer, msgid, &c)?;
                sa.creating = Some(c);
                Ok(m)
            });
            match m {
                Ok(m) => {
                    io.request(now, config, h, sa, (msgid, m), what);
                    sa.next_msgid = msgid.wrapping_add(1);
                }
                Err(Fail(why)) => log::error!("ikev2: {}: CREATE_CHILD_SA: {why}", peer.name),
            }
            return;
        }
        let mut spis = Vec::new();
        let m = build_protected(
            &mut self.io,
            sa,
            ExchangeType::INFORMATIONAL,
            msgid,
            false,
            |b| match &what {
                Req::DeleteChild(s) => {
                    spis.extend(s.iter().flat_map(|s| s.to_be_bytes()));
                    let d = DeletePayload::new(ProtocolId::ESP, 4, &spis);
                    b.add(PayloadType::DELETE, false, &Payload::Delete(d))
                }
                Req::DeleteIke => {
                    let d = DeletePayload::new(ProtocolId::IKE, 0, &[]);
                    b.add(PayloadType::DELETE, false, &Payload::Delete(d))
                }
                Req::Init | Req::Auth | Req::Liveness | Req::CreateChild(_) | Req::RekeyIke => {
                    Ok(())
                }
            },
        );
        match m {
            Ok(m) => {
                self.io.request(now, &self.config, h, sa, (msgid, m), what);
                sa.next_msgid = msgid.wrapping_add(1);
            }
            Err(Fail(why)) => log::error!("ikev2: {}: INFORMATIONAL: {why}", sa.info.peer),
        }
    }

    /// The next queued request, once the one in flight is answered.
    fn next_request(&mut self, now: Time, h: Handle) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.request.is_none() && !sa.queued.is_empty() {
            let what = sa.queued.remove(0);
            self.start_request(now, h, what);
        }
    }

    /// Removes the CHILD_SAs `pick` chooses; returns how many.
    fn remove_children(&mut self, pick: impl Fn(&ChildSa) -> bool) -> usize {
        let gone: Vec<Handle> = self
            .children
            .iter()
            .filter(|(_, c)| pick(c))
            .map(|(ch, _)| ch)
            .collect();
        for &ch in &gone {
            if let Some(c) = self.children.remove(ch) {
                log::info!(
                    "ikev2: {}: CHILD_SA deleted, SPIs in {:08x} out {:08x}",
                    c.peer,
                    c.spi_in,
                    c.spi_out
                );
            }
        }
        self.io.stats.child_sas_deleted += gone.len() as u64;
        gone.len()
    }

    /// Responder: IKE_AUTH (§1.2, §2.15).
    fn auth_request(&mut self, now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        match self.auth_request_inner(now, h, hd, inner) {
            Ok(Some(c)) => self.add_child(c),
            Ok(None) => {}
            Err(why) => self.fail(h, why),
        }
    }

    fn auth_request_inner(
        &mut self,
        _now: Time,
        h: Handle,
        hd: &Header,
        inner: &Payloads<'_>,
    ) -> Result<Option<ChildSa>, &'static str> {
        let Engine {
            sas,
            io,
            policy,
            half_open,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Ok(None);
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        let msgid = hd.msgid;
        sa.peer_msgid = msgid.wrapping_add(1);
        if let Err(why) = check_auth(sa, peer, inner, PayloadType::IDI) {
            log::warn!("ikev2: {} {remote}: IKE_AUTH: {why}", peer.name);
            let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
                b.notify(NotifyType::AUTHENTICATION_FAILED, &[])
            });
            if let Ok(m) = m {
                io.respond(sa, msgid, m);
            }
            return Err("authentication failed");
        }
        // The CHILD_SA: an ESP suite and the selectors both sides allow.
        let child = choose_child(io, peer, inner, false);
        let idr = peer.local_id.body();
        let auth = own_auth(sa, peer, &idr);
        let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
            b.payload(PayloadType::IDR, |w| w.bytes(&idr))?;
            b.add(
                PayloadType::AUTH,
                false,
                &Payload::Auth(AuthPayload {
                    method: AuthMethod::SHARED_KEY_MIC,
                    data: auth.as_bytes(),
                }),
            )?;
            match &child {
                Ok(c) => {
                    let t = c.esp.transforms();
                    b.sa(&[ProposalRepr {
                        number: c.number,
                        protocol: ProtocolId::ESP,
                        spi: &c.spi_in.to_be_bytes(),
                        transforms: &t,
                    }])?;
                    ts_payload(b, PayloadType::TSI, &c.tsi)?;
                    ts_payload(b, PayloadType::TSR, &c.tsr)
                }
                Err(n) => b.notify(*n, &[]),
            }
        })
        .map_err(|Fail(why)| why)?;
        io.respond(sa, msgid, m);
        sa.info.state = IkeState::Established;
        sa.expires = None;
        *half_open = half_open.saturating_sub(1);
        io.arm(h, sa);
        io.stats.ike_sas_established += 1;
        log::info!(
            "ikev2: {} {remote}: IKE SA {}/{} established (responder)",
            peer.name,
            hex(&sa.info.spi_i),
            hex(&sa.info.spi_r)
        );
        match child {
            // TSi is the initiator's side, our remote one.
            Ok(c) => Ok(Some(child_sa(
                sa, h, &c.esp, c.spi_in, c.spi_out, c.tsr, c.tsi,
            ))),
            Err(n) => {
                log::warn!("ikev2: {} {remote}: no CHILD_SA: {n}", peer.name);
                Ok(None)
            }
        }
    }

    /// Initiator: the IKE_AUTH response.
    fn auth_response(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) {
        match self.auth_response_inner(now, h, inner) {
            Ok(Some(c)) => self.add_child(c),
            Ok(None) => {}
            Err(why) => self.fail(h, why),
        }
    }

    fn auth_response_inner(
        &mut self,
        _now: Time,
        h: Handle,
        inner: &Payloads<'_>,
    ) -> Result<Option<ChildSa>, &'static str> {
        let Engine {
            sas, io, policy, ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Ok(None);
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        if inner.notify(NotifyType::AUTHENTICATION_FAILED).is_some() {
            log::warn!("ikev2: {} {remote}: the peer refused our AUTH", peer.name);
            return Err("AUTHENTICATION_FAILED from the peer");
        }
        if let Err(why) = check_auth(sa, peer, inner, PayloadType::IDR) {
            log::warn!("ikev2: {} {remote}: IKE_AUTH response: {why}", peer.name);
            // §2.21.2: tell the responder in an INFORMATIONAL of its own; we do not wait.
            let msgid = sa.next_msgid;
            let m = build_protected(io, sa, ExchangeType::INFORMATIONAL, msgid, false, |b| {
                b.notify(NotifyType::AUTHENTICATION_FAILED, &[])
            });
            if let Ok(m) = m {
                io.send(sa.info.local, remote, &m);
            }
            return Err("authentication failed");
        }
        sa.info.state = IkeState::Established;
        io.stats.ike_sas_established += 1;
        log::info!(
            "ikev2: {} {remote}: IKE SA {}/{} established (initiator)",
            peer.name,
            hex(&sa.info.spi_i),
            hex(&sa.info.spi_r)
        );
        match accept_child(peer, inner, false) {
            Ok((esp, spi_out, tsi, tsr)) => {
                Ok(Some(child_sa(sa, h, &esp, sa.child_spi, spi_out, tsi, tsr)))
            }
            // XXX: a CHILD_SA we cannot accept should be deleted with an INFORMATIONAL.
            Err(why) => {
                log::warn!("ikev2: {} {remote}: no CHILD_SA: {why}", peer.name);
                Ok(None)
            }
        }
    }

    fn add_child(&mut self, c: ChildSa) {
        log::info!(
            "ikev2: {}: CHILD_SA established, SPIs in {:08x} out {:08x}",
            c.peer,
            c.spi_in,
            c.spi_out
        );
        if self.children.insert(c).is_some() {
            self.io.stats.child_sas_established += 1;
        } else {
            log::error!("ikev2: CHILD_SA table full");
        }
    }

    /// An INFORMATIONAL request (§1.4): AUTHENTICATION_FAILED or a Delete of the IKE SA
    /// ends it (an empty answer, then nothing is left); a Delete of CHILD_SAs names the
    /// peer's inbound SPIs, our outbound ones, and is answered with a Delete of our
    /// halves of those pairs (§1.4.1), leaving out the ones we are deleting ourselves
    /// (crossed requests); SPIs we do not know are ignored (§3.11); anything else
    /// (liveness) gets an empty answer.
    fn informational(&mut self, _now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        sa.peer_msgid = hd.msgid.wrapping_add(1);
        let ends = inner.notify(NotifyType::AUTHENTICATION_FAILED).is_some()
            || inner
                .iter()
                .any(|e| matches!(e.payload, Payload::Delete(d) if d.protocol == ProtocolId::IKE));
        let deleting: &[u32] = match sa.request.as_ref().map(|r| &r.what) {
            Some(Req::DeleteChild(s)) => s,
            _ => &[],
        };
        let mut theirs = Vec::new();
        let mut ours = Vec::new();
        if !ends {
            for e in inner.iter() {
                let Payload::Delete(d) = e.payload else {
                    continue;
                };
                if d.protocol != ProtocolId::ESP || d.spi_size != 4 {
                    continue;
                }
                for spi in d.spis() {
                    let spi = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]);
                    if let Some((_, c)) = self
                        .children
                        .iter()
                        .find(|(_, c)| c.ike == h && c.spi_out == spi)
                    {
                        theirs.push(spi);
                        if !deleting.contains(&c.spi_in) {
                            ours.extend(c.spi_in.to_be_bytes());
                        }
                    }
                }
            }
        }
        let m = build_protected(
            &mut self.io,
            sa,
            ExchangeType::INFORMATIONAL,
            hd.msgid,
            true,
            |b| {
                if ours.is_empty() {
                    return Ok(());
                }
                let d = DeletePayload::new(ProtocolId::ESP, 4, &ours);
                b.add(PayloadType::DELETE, false, &Payload::Delete(d))
            },
        );
        if let Ok(m) = m {
            self.io.respond(sa, hd.msgid, m);
        }
        if ends {
            return self.delete(h, "ended by the peer");
        }
        if !theirs.is_empty() {
            self.remove_children(|c| c.ike == h && theirs.contains(&c.spi_out));
        }
    }
}

/// NAT_DETECTION_*_IP data (§2.23): SHA-1(SPIi | SPIr | IP address | port).
fn natd(spi_i: &[u8; 8], spi_r: &[u8; 8], a: SocketAddr) -> [u8; 20] {
    let ip = match a.ip() {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let k = hash(HashAlg::Sha1, &[spi_i, spi_r, &ip, &a.port().to_be_bytes()]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&k.as_bytes()[..20]);
    out
}

/// Compares the peer's NAT-D notifies with our addresses: its DESTINATION with ours,
/// its SOURCE(s) with its address as we see it. No notifies, no finding.
fn nat_detect(sa: &mut IkeSa, pl: &Payloads<'_>) {
    let (i, r) = (&sa.info.spi_i, &sa.info.spi_r);
    let r = if sa.info.initiator { r } else { &[0u8; 8] };
    if let Some(d) = pl.notify(NotifyType::NAT_DETECTION_DESTINATION_IP) {
        sa.info.nat_local = d.data != natd(i, r, sa.info.local);
    }
    let mut sources = pl
        .notifies()
        .filter(|n| n.ty == NotifyType::NAT_DETECTION_SOURCE_IP)
        .peekable();
    if sources.peek().is_some() {
        let want = natd(i, r, sa.info.remote);
        sa.info.nat_remote = !sources.any(|n| n.data == want);
    }
}

/// Initiator: builds and sends IKE_SA_INIT with a fresh DH value for `group` (also the
/// retry after INVALID_KE_PAYLOAD or COOKIE, §1.2: same SPIi, message ID 0).
fn send_init(
    io: &mut Io,
    cfg: &Config,
    now: Time,
    h: Handle,
    sa: &mut IkeSa,
    peer: &Peer,
    group: DhGroup,
) -> Result<(), Fail> {
    // A retry after COOKIE keeps Ni and the KE (§2.6: "all other payloads unchanged";
    // the cookie covers Ni); after INVALID_KE_PAYLOAD only the KE is new.
    let dh = match sa.dh.take() {
        Some(d) if d.group().number() == group.0 => d,
        _ => {
            let g = Group::from_ike(GroupDescription(group.0))
                .ok_or(Fail("DH group not implemented"))?;
            DhPrivate::generate(g, io.rng.as_mut()).map_err(|_| Fail("DH generation"))?
        }
    };
    if sa.ni.is_empty() {
        sa.ni = io.random::<NONCE_LEN>().to_vec();
    }
    // The proposals: those for `group` first, since our KE is for it.
    let mut order: Vec<&IkeProposal> = peer.ike.iter().filter(|p| p.dh == group).collect();
    order.extend(peer.ike.iter().filter(|p| p.dh != group));
    let trs: Vec<_> = order.iter().map(|p| p.transforms()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::IKE,
            spi: &[],
            transforms: t,
        })
        .collect();
    let hdr = sa.header(ExchangeType::IKE_SA_INIT, 0, false);
    let mut buf = vec![0u8; BUILD_MAX];
    let mut b = MessageBuilder::new(&mut buf, &hdr)?;
    if let Some(c) = &sa.cookie {
        // §2.6: the COOKIE notify comes first.
        b.notify(NotifyType::COOKIE, c)?;
    }
    b.sa(&props)?;
    b.add(
        PayloadType::KE,
        false,
        &Payload::Ke(KePayload {
            group,
            data: dh.public_value(),
        }),
    )?;
    b.add(PayloadType::NONCE, false, &Payload::Nonce(&sa.ni))?;
    let (i, r) = (sa.info.spi_i, [0u8; 8]);
    b.notify(
        NotifyType::NAT_DETECTION_SOURCE_IP,
        &natd(&i, &r, sa.info.local),
    )?;
    b.notify(
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        &natd(&i, &r, sa.info.remote),
    )?;
    let n = b.finish()?;
    buf.truncate(n);
    sa.dh = Some(dh);
    sa.init_i = buf.clone();
    io.request(now, cfg, h, sa, (0, buf), Req::Init);
    sa.next_msgid = 1;
    Ok(())
}

/// Responder: the first offered proposal one of our suites matches (§2.7), with its
/// number.
fn choose_ike(offer: &SaPayload<'_>, ours: &[IkeProposal]) -> Option<(IkeProposal, u8)> {
    offer.proposals().find_map(|p| {
        ours.iter()
            .find(|o| o.offered_in(&p) && o.suite().is_ok())
            .map(|o| (*o, p.number))
    })
}

/// Responder: our DH value, g^ir and the keys from the initiator's KE.
fn derive_ike(
    io: &mut Io,
    sa: &mut IkeSa,
    chosen: &IkeProposal,
    ke: &KePayload<'_>,
) -> Result<DhPrivate, Fail> {
    let g =
        Group::from_ike(GroupDescription(chosen.dh.0)).ok_or(Fail("DH group not implemented"))?;
    let dh = DhPrivate::generate(g, io.rng.as_mut()).map_err(|_| Fail("DH generation"))?;
    keys_from(sa, chosen, &dh, ke.data)?;
    Ok(dh)
}

/// SKEYSEED and the seven keys (§2.14) once both nonces, both SPIs and g^ir are known.
fn keys_from(
    sa: &mut IkeSa,
    chosen: &IkeProposal,
    dh: &DhPrivate,
    peer_ke: &[u8],
) -> Result<(), Fail> {
    let suite = chosen.suite()?;
    let gir = dh
        .shared_secret(peer_ke)
        .map_err(|_| Fail("invalid KE public value"))?;
    let seed = skeyseed(suite.prf, &sa.ni, &sa.nr, gir.as_bytes())?;
    let keys = IkeKeys::derive(
        &suite,
        seed.as_bytes(),
        &sa.ni,
        &sa.nr,
        &sa.info.spi_i,
        &sa.info.spi_r,
    )?;
    sa.keys = Some(keys);
    sa.info.suite = Some(suite);
    Ok(())
}

fn build_init_response(
    sa: &IkeSa,
    chosen: &IkeProposal,
    number: u8,
    dh: &DhPrivate,
) -> Result<Vec<u8>, Fail> {
    let hdr = sa.header(ExchangeType::IKE_SA_INIT, 0, true);
    let mut buf = vec![0u8; BUILD_MAX];
    let mut b = MessageBuilder::new(&mut buf, &hdr)?;
    let t = chosen.transforms();
    b.sa(&[ProposalRepr {
        number,
        protocol: ProtocolId::IKE,
        spi: &[],
        transforms: &t,
    }])?;
    b.add(
        PayloadType::KE,
        false,
        &Payload::Ke(KePayload {
            group: chosen.dh,
            data: dh.public_value(),
        }),
    )?;
    b.add(PayloadType::NONCE, false, &Payload::Nonce(&sa.nr))?;
    let (i, r) = (sa.info.spi_i, sa.info.spi_r);
    b.notify(
        NotifyType::NAT_DETECTION_SOURCE_IP,
        &natd(&i, &r, sa.info.local),
    )?;
    b.notify(
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        &natd(&i, &r, sa.info.remote),
    )?;
    let n = b.finish()?;
    buf.truncate(n);
    Ok(buf)
}

/// A message whose payloads `inner` writes into an SK payload (§3.14).
fn build_protected(
    io: &mut Io,
    sa: &mut IkeSa,
    exchange: ExchangeType,
    msgid: u32,
    response: bool,
    inner: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), NoRoom>,
) -> Result<Vec<u8>, Fail> {
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err(Fail("no keys"));
    };
    let sk = SkKeys::for_sender(&suite, keys, sa.info.initiator)?;
    let mut plain = vec![0u8; BUILD_MAX];
    let mut ib = MessageBuilder::inner(&mut plain);
    inner(&mut ib)?;
    let first = ib.first();
    let pn = ib.finish()?;
    let iv = io.iv(sa, &sk);
    let hdr = sa.header(exchange, msgid, response);
    let mut out = vec![0u8; HEADER_LEN + 4 + sk.body_len(pn)];
    let mut b = MessageBuilder::new(&mut out, &hdr)?;
    b.encrypted(first, None, |w| {
        sk.write_body(w, &plain[..pn], &iv).map_err(|_| NoRoom)
    })?;
    let n = b.finish()?;
    out.truncate(n);
    sk.seal(&mut out)?;
    Ok(out)
}

fn ts_payload(b: &mut MessageBuilder<'_>, ty: PayloadType, ts: &[Selector]) -> Result<(), NoRoom> {
    let wire: Vec<TrafficSelector<'static>> = ts.iter().map(Selector::to_wire).collect();
    b.payload(ty, |w| emit_ts(w, &wire))
}

/// Our AUTH (§2.15): over our IKE_SA_INIT message, the peer's nonce and prf(SK_px, our
/// ID payload body).
fn own_auth(sa: &IkeSa, peer: &Peer, id_body: &[u8]) -> Key {
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Key::new();
    };
    let (msg, nonce, skp) = if sa.info.initiator {
        (&sa.init_i, &sa.nr, &keys.pi)
    } else {
        (&sa.init_r, &sa.ni, &keys.pr)
    };
    let o = SignedOctets::new(suite.prf, msg, nonce, skp.as_bytes(), id_body);
    psk_auth(suite.prf, &peer.psk, &o)
}

/// Checks the peer's ID payload (`id_ty`, IDi or IDr) against the policy and its AUTH.
fn check_auth(
    sa: &IkeSa,
    peer: &Peer,
    inner: &Payloads<'_>,
    id_ty: PayloadType,
) -> Result<(), &'static str> {
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err("no keys");
    };
    let Some((id, body)) = inner.iter().find_map(|e| match e.payload {
        Payload::Id(id) if e.ty == id_ty => Some((id, e.body)),
        _ => None,
    }) else {
        return Err("no ID payload");
    };
    let Some(Payload::Auth(auth)) = inner.find(PayloadType::AUTH) else {
        return Err("no AUTH payload");
    };
    if auth.method != AuthMethod::SHARED_KEY_MIC {
        return Err("AUTH method is not a shared key");
    }
    if let Some(want) = &peer.remote_id {
        if id.ty != want.ty || *id.data != want.data[..] {
            return Err("peer identity does not match the policy");
        }
    }
    // The peer's octets: its IKE_SA_INIT message, our nonce, its SK_px.
    let (msg, nonce, skp) = if sa.info.initiator {
        (&sa.init_r, &sa.ni, &keys.pr)
    } else {
        (&sa.init_i, &sa.nr, &keys.pi)
    };
    let o = SignedOctets::new(suite.prf, msg, nonce, skp.as_bytes(), body);
    verify_psk_auth(suite.prf, &peer.psk, &o, auth.data).map_err(|_| "AUTH does not verify")
}

/// The responder's CHILD_SA: suite, the proposal's number, SPIs, narrowed selectors.
struct ChildChoice {
    esp: EspProposal,
    number: u8,
    spi_in: u32,
    spi_out: u32,
    tsi: Vec<Selector>,
    tsr: Vec<Selector>,
}

/// Responder: the ESP suite (first offered proposal we accept) and the narrowed
/// selectors, or the notify that says why there is no CHILD_SA. In CREATE_CHILD_SA
/// (`create`), the proposal's DH transform must be our PFS group, or absent without one.
fn choose_child(
    io: &mut Io,
    peer: &Peer,
    inner: &Payloads<'_>,
    create: bool,
) -> Result<ChildChoice, NotifyType> {
    let Some(Payload::Sa(offer)) = inner.find(PayloadType::SA) else {
        return Err(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let Some((esp, number, spi_out)) = offer.proposals().find_map(|p| {
        peer.esp
            .iter()
            .find(|o| o.offered_in(&p) && (!create || o.pfs_in(&p)) && o.algorithms().is_some())
            .map(|o| {
                (
                    *o,
                    p.number,
                    u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]),
                )
            })
    }) else {
        return Err(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let (Some(tsi), Some(tsr)) = (
        selectors(inner, PayloadType::TSI),
        selectors(inner, PayloadType::TSR),
    ) else {
        return Err(NotifyType::TS_UNACCEPTABLE);
    };
    // TSi is the initiator's side: our remote selectors; TSr ours.
    let tsi = narrow(&tsi, &peer.remote_ts);
    let tsr = narrow(&tsr, &peer.local_ts);
    if tsi.is_empty() || tsr.is_empty() {
        return Err(NotifyType::TS_UNACCEPTABLE);
    }
    Ok(ChildChoice {
        esp,
        number,
        spi_in: io.esp_spi(),
        spi_out,
        tsi,
        tsr,
    })
}

fn selectors(inner: &Payloads<'_>, ty: PayloadType) -> Option<Vec<Selector>> {
    let ts: &TsPayload<'_> = inner.iter().find_map(|e| match &e.payload {
        Payload::Ts(t) if e.ty == ty => Some(t),
        _ => None,
    })?;
    let v: Vec<Selector> = ts
        .selectors()
        .filter_map(|t| Selector::from_wire(&t))
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Initiator: the responder's CHILD_SA answer must be one of our suites (with its PFS
/// group in CREATE_CHILD_SA, `create`), and its selectors within what we proposed.
fn accept_child(
    peer: &Peer,
    inner: &Payloads<'_>,
    create: bool,
) -> Result<(EspProposal, u32, Vec<Selector>, Vec<Selector>), String> {
    if let Some(n) = inner.notifies().find(|n| n.ty.is_error()) {
        return Err(format!("{}", n.ty));
    }
    let Some(Payload::Sa(answer)) = inner.find(PayloadType::SA) else {
        return Err("no SA payload".into());
    };
    let mut props = answer.proposals();
    let (Some(p), None) = (props.next(), props.next()) else {
        return Err("not one proposal".into());
    };
    let Some(esp) = peer
        .esp
        .iter()
        .find(|o| if create { o.is_pfs(&p) } else { o.is(&p) })
        .copied()
    else {
        return Err("a proposal we did not offer".into());
    };
    let spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
    let (Some(tsi), Some(tsr)) = (
        selectors(inner, PayloadType::TSI),
        selectors(inner, PayloadType::TSR),
    ) else {
        return Err("no traffic selectors".into());
    };
    let inside =
        |got: &[Selector], ours: &[Selector]| got.iter().all(|g| ours.iter().any(|o| g.within(o)));
    if !inside(&tsi, &peer.local_ts) || !inside(&tsr, &peer.remote_ts) {
        return Err("traffic selectors wider than proposed".into());
    }
    Ok((esp, spi, tsi, tsr))
}

/// The CHILD_SA of IKE_AUTH with its KEYMAT (§2.17: from SK_d and the IKE_SA_INIT
/// nonces, initiator-to-responder keys first).
fn child_sa(
    sa: &IkeSa,
    h: Handle,
    esp: &EspProposal,
    spi_in: u32,
    spi_out: u32,
    ts_local: Vec<Selector>,
    ts_remote: Vec<Selector>,
) -> ChildSa {
    let mut c = bare_child(sa, h, esp, spi_in, spi_out, ts_local, ts_remote);
    if set_keys(sa, &mut c, None, &sa.ni, &sa.nr).is_err() {
        log::error!("ikev2: {}: CHILD_SA KEYMAT failed", sa.info.peer);
    }
    c
}

/// A CHILD_SA record without keys yet, made by the IKE SA's initiator.
fn bare_child(
    sa: &IkeSa,
    h: Handle,
    esp: &EspProposal,
    spi_in: u32,
    spi_out: u32,
    ts_local: Vec<Selector>,
    ts_remote: Vec<Selector>,
) -> ChildSa {
    let (encr, integ) = esp.algorithms().unwrap_or((Encr::AesCbc(16), None));
    ChildSa {
        ike: h,
        peer: sa.info.peer.clone(),
        initiator: sa.info.initiator,
        rekeyed: false,
        spi_in,
        spi_out,
        encr,
        integ,
        encr_in: Key::new(),
        integ_in: Key::new(),
        encr_out: Key::new(),
        integ_out: Key::new(),
        ts_local,
        ts_remote,
    }
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17) with the nonces of the exchange
/// that made `c`; the keys of that exchange's initiator (`c.initiator`) come first.
fn set_keys(
    sa: &IkeSa,
    c: &mut ChildSa,
    gir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
) -> Result<(), Fail> {
    let (Some(k), Some(s)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err(Fail("no keys"));
    };
    let keys = ChildKeys::derive(s.prf, k.d.as_bytes(), gir, ni, nr, c.encr, c.integ)?;
    let (ei, ai, er, ar) = (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r);
    (c.encr_in, c.integ_in, c.encr_out, c.integ_out) = if c.initiator {
        (er, ar, ei, ai)
    } else {
        (ei, ai, er, ar)
    };
    Ok(())
}

/// The IKE SA that replaces `old` after a rekey (§1.3.2, §2.18): SKEYSEED =
/// prf(SK_d (old), g^ir (new) | Ni | Nr), then the seven keys with the new SPIs; the
/// rekey's initiator is the new SA's; message IDs start over.
fn rekeyed_sa(
    old: &IkeSa,
    chosen: &IkeProposal,
    gir: &[u8],
    (spi_i, spi_r): ([u8; 8], [u8; 8]),
    ni: &[u8],
    nr: &[u8],
    initiator: bool,
) -> Result<IkeSa, Fail> {
    let (Some(k), Some(s)) = (old.keys.as_ref(), old.info.suite) else {
        return Err(Fail("no keys"));
    };
    let suite = chosen.suite()?;
    let seed = rekey_skeyseed(s.prf, k.d.as_bytes(), gir, ni, nr)?;
    let keys = IkeKeys::derive(&suite, seed.as_bytes(), ni, nr, &spi_i, &spi_r)?;
    Ok(IkeSa {
        info: IkeSaInfo {
            initiator,
            spi_i,
            spi_r,
            suite: Some(suite),
            ..old.info.clone()
        },
        peer: old.peer,
        keys: Some(keys),
        dh: None,
        ni: ni.to_vec(),
        nr: nr.to_vec(),
        init_i: Vec::new(),
        init_r: Vec::new(),
        init_retries: 0,
        cookie: None,
        child_spi: 0,
        next_msgid: 0,
        peer_msgid: 0,
        response: None,
        request: None,
        queued: Vec::new(),
        expires: None,
        idle: None,
        timer: None,
        init_index: None,
        iv_counter: 0,
        creating: None,
        rekeying: None,
    })
}

/// Initiator: the state of an IKE SA rekey: our new SPI, Ni, a DH value for the first
/// suite's group.
fn new_ike_rekey(io: &mut Io, peer: &Peer) -> Result<IkeRekey, Fail> {
    let first = peer.ike.first().ok_or(Fail("no IKE proposal"))?;
    Ok(IkeRekey {
        spi: io.spi(),
        ni: io.random::<NONCE_LEN>().to_vec(),
        dh: new_dh(io, first.dh)?,
    })
}

/// Initiator: CREATE_CHILD_SA rekeying the IKE SA (§1.3.2): SA (our IKE suites with
/// our new SPI; those for the KE's group first), Ni, KEi.
fn build_rekey_ike(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
    msgid: u32,
    r: &IkeRekey,
) -> Result<Vec<u8>, Fail> {
    let group = DhGroup(r.dh.group().number());
    let mut order: Vec<&IkeProposal> = peer.ike.iter().filter(|p| p.dh == group).collect();
    order.extend(peer.ike.iter().filter(|p| p.dh != group));
    let trs: Vec<_> = order.iter().map(|p| p.transforms()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::IKE,
            spi: &r.spi,
            transforms: t,
        })
        .collect();
    build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, msgid, false, |b| {
        b.sa(&props)?;
        b.add(PayloadType::NONCE, false, &Payload::Nonce(&r.ni))?;
        b.add(
            PayloadType::KE,
            false,
            &Payload::Ke(KePayload {
                group,
                data: r.dh.public_value(),
            }),
        )
    })
}

fn new_dh(io: &mut Io, g: DhGroup) -> Result<DhPrivate, Fail> {
    let g = Group::from_ike(GroupDescription(g.0)).ok_or(Fail("DH group not implemented"))?;
    DhPrivate::generate(g, io.rng.as_mut()).map_err(|_| Fail("DH generation"))
}

/// Initiator: the state of a CREATE_CHILD_SA: a new inbound SPI, Ni, and a DH value
/// for the first suite's PFS group.
fn new_creating(
    io: &mut Io,
    peer: &Peer,
    rekey: Option<u32>,
    ts_local: Vec<Selector>,
    ts_remote: Vec<Selector>,
) -> Result<Creating, Fail> {
    let dh = match peer.esp.first().and_then(|e| e.pfs) {
        Some(g) => Some(new_dh(io, g)?),
        None => None,
    };
    Ok(Creating {
        rekey,
        spi_in: io.esp_spi(),
        ni: io.random::<NONCE_LEN>().to_vec(),
        dh,
        ts_local,
        ts_remote,
        crossed: None,
    })
}

/// Initiator: CREATE_CHILD_SA (§1.3.1, §1.3.3): [N(REKEY_SA)], SA (ESP, our new SPI,
/// with the PFS group), Ni, [KEi], TSi, TSr.
fn build_create_child(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
    msgid: u32,
    c: &Creating,
) -> Result<Vec<u8>, Fail> {
    let spi = c.spi_in.to_be_bytes();
    let trs: Vec<_> = peer.esp.iter().map(|p| p.transforms_pfs()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::ESP,
            spi: &spi,
            transforms: t,
        })
        .collect();
    build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, msgid, false, |b| {
        if let Some(old) = c.rekey {
            let old = old.to_be_bytes();
            let n = Payload::Notify(NotifyPayload {
                protocol: ProtocolId::ESP,
                ty: NotifyType::REKEY_SA,
                spi: &old,
                data: &[],
            });
            b.add(PayloadType::NOTIFY, false, &n)?;
        }
        b.sa(&props)?;
        b.add(PayloadType::NONCE, false, &Payload::Nonce(&c.ni))?;
        if let Some(dh) = &c.dh {
            b.add(
                PayloadType::KE,
                false,
                &Payload::Ke(KePayload {
                    group: DhGroup(dh.group().number()),
                    data: dh.public_value(),
                }),
            )?;
        }
        ts_payload(b, PayloadType::TSI, &c.ts_local)?;
        ts_payload(b, PayloadType::TSR, &c.ts_remote)
    })
}

/// Initiator: IKE_AUTH (§1.2): IDi, AUTH, SA (ESP, our SPI), TSi, TSr.
fn build_auth_request(io: &mut Io, sa: &mut IkeSa, peer: &Peer) -> Result<Vec<u8>, Fail> {
    let idi = peer.local_id.body();
    let auth = own_auth(sa, peer, &idi);
    let spi = sa.child_spi.to_be_bytes();
    let trs: Vec<_> = peer.esp.iter().map(|p| p.transforms()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::ESP,
            spi: &spi,
            transforms: t,
        })
        .collect();
    let msgid = sa.next_msgid;
    build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, false, |b| {
        b.payload(PayloadType::IDI, |w| w.bytes(&idi))?;
        b.add(
            PayloadType::AUTH,
            false,
            &Payload::Auth(AuthPayload {
                method: AuthMethod::SHARED_KEY_MIC,
                data: auth.as_bytes(),
            }),
        )?;
        b.sa(&props)?;
        ts_payload(b, PayloadType::TSI, &peer.local_ts)?;
        ts_payload(b, PayloadType::TSR, &peer.remote_ts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::SeededRandom;

    #[test]
    fn cookies_are_bound_to_ni_address_and_spi_and_outlive_one_secret_change() {
        let mut rng = SeededRandom::new(7);
        let mut c = CookieSecrets::new(&mut rng, Time(0), 300);
        let (ni, ip, spi) = ([1u8; 32], "192.0.2.1".parse().unwrap(), [2u8; 8]);
        let k = c.cookie(&ni, ip, &spi);
        assert!(c.valid(&k, &ni, ip, &spi));
        assert!(!c.valid(&k, &[3u8; 32], ip, &spi), "another Ni");
        assert!(
            !c.valid(&k, &ni, "192.0.2.9".parse().unwrap(), &spi),
            "another address"
        );
        assert!(!c.valid(&k, &ni, ip, &[9u8; 8]), "another SPIi");
        assert!(!c.valid(&k[..16], &ni, ip, &spi), "truncated");
        let mut bad = k;
        bad[5] ^= 1;
        assert!(!c.valid(&bad, &ni, ip, &spi));
        // Before its time the secret stays; after it, the old cookie is still good once.
        c.rotate(&mut rng, Time(0).add_secs(299), 300);
        assert_eq!(c.cookie(&ni, ip, &spi), k);
        c.rotate(&mut rng, Time(0).add_secs(300), 300);
        assert_ne!(c.cookie(&ni, ip, &spi), k);
        assert!(
            c.valid(&k, &ni, ip, &spi),
            "the previous secret is accepted"
        );
        c.rotate(&mut rng, Time(0).add_secs(600), 300);
        assert!(!c.valid(&k, &ni, ip, &spi), "two changes later it is not");
        // A long idle time changes both.
        let k2 = c.cookie(&ni, ip, &spi);
        c.rotate(&mut rng, Time(0).add_secs(10_000), 300);
        assert!(!c.valid(&k2, &ni, ip, &spi));
    }
}
