//! The IKEv2 engine, sans-IO (STYLE §10.2): IKE_SA_INIT and IKE_AUTH with a pre-shared
//! key or signatures, both roles, and the first CHILD_SA (RFC 7296 §1.2, §2.9, §2.15, §2.17).
//!
//! Inputs are [`Engine::handle_datagram`], [`Engine::handle_timeout`],
//! [`Engine::kernel_reply`], [`Engine::handle_expire`] and [`Engine::connect`], each with
//! the time; outputs are [`Engine::poll_transmit`], [`Engine::poll_kernel`] and
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
//!   in [`Engine::child_sas`] once the kernel holds the CHILD_SA.
//! - The kernel (kernel.rs): our inbound SPIs are reserved by the kernel before we send
//!   them, and a CHILD_SA is installed before the message that announces it goes out
//!   (responder) or before it counts as made (initiator); a refusal abandons it. The
//!   requests are the IKEv1 engine's (`crate::ike::sa::KernelReq`), so that the daemon
//!   drives both engines alike.
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
//! - Lifetimes (lifetime.rs, §2.8): a CHILD_SA is rekeyed by us at its soft time (5-10 %
//!   before its lifetime, at random) and deleted at its lifetime if still here; an IKE
//!   SA with an `ikelifetime` likewise. Byte limits are the kernel's; its EXPIREs come in
//!   through [`Engine::handle_expire`].
//! - INVALID_KE_PAYLOAD in answer to our CREATE_CHILD_SA: asked once more with the
//!   group it names, when one of our PFS suites has it.
//! - Simultaneous IKE SA rekeys (§2.8.2): the peer's rekey that comes while ours is in
//!   flight waits for our answer; the new IKE SA whose exchange has the lowest nonce is
//!   deleted by its maker, the other takes the CHILD_SAs and its initiator deletes the
//!   old one. Collisions (collide.rs, §2.25): a crossing rekey that comes once our
//!   Delete of the old IKE SA is on its way, an IKE SA rekey while a CHILD_SA exchange is
//!   under way, and a CREATE_CHILD_SA on an IKE SA being rekeyed are answered with
//!   TEMPORARY_FAILURE, and we try again 5-15 s after one; a Delete of the old IKE SA
//!   that overtakes the answer to our crossing rekey hands the CHILD_SAs to the peer's.
//! - Not yet: a second try of a lifetime rekey that failed otherwise.
//!
//! - Signatures (sig.rs, RFC 7296 §2.15, RFC 4754, RFC 7427): with [`PeerAuth::Sig`]
//!   we announce SIGNATURE_HASH_ALGORITHMS and name our CAs in CERTREQ (IKE_SA_INIT
//!   response, IKE_AUTH request), send our certificate and sign with our key (RSA or
//!   ECDSA, method 1, 9-11 or 14); the peer's first CERT must chain to our CAs (CRLs
//!   checked), name its ID and verify its AUTH, or without one its key comes from
//!   pubkeys/.
//! - Fragmentation (RFC 7383, [`Config::fragmentation`]): announced in IKE_SA_INIT;
//!   when both sides did, protected messages longer than iked's 548/1232 bytes go as
//!   SKF fragments, and the peer's (authenticated) fragments are reassembled.
//! - Capture ([`Engine::poll_capture`]): every message sent and received, protected ones
//!   in clear (the SK payload replaced by its inner payloads).
//!
//! - NAT-keepalives (RFC 3948 §2.3): behind a NAT, one 0xFF byte on port 4500 every
//!   [`Config::nat_keepalive_secs`] while the IKE SA lives.
//! - Configuration payloads (§2.19): an address from the policy's pool, and what else
//!   it serves, for a peer that asks; the address the peer gives, when we ask.
//!
//! - EAP (eap.rs, §2.16): a responder under `eap "mschap-v2"` signs and has the peer
//!   authenticate with EAP-MSCHAPv2 inside IKE_AUTH, the last AUTHs keyed with the MSK;
//!   the client side too ([`PeerAuth::EapClient`]).
//!
//! - Restarts and moves (mobike.rs): INITIAL_CONTACT both ways (§2.4), NAT rebinding
//!   (§2.23) and MOBIKE as responder (RFC 4555).
//!
//! `crate::ike::io::Io` is the IKEv1 engine's (its timer kinds, kernel tickets and
//! exchange bookkeeping are IKEv1's), so this file has a small sibling, `Io` here, over
//! the shared pieces: the outbox, the kernel queue, the timer wheel, the random source.

#![forbid(unsafe_code)]

mod auth;
mod child;
mod collide;
mod cookie;
mod eap;
mod frag;
mod ike_rekey;
mod info;
mod init;
mod io;
mod kernel;
mod lifetime;
mod mobike;
mod probe;
mod sa;
mod timeout;
mod window;

use self::auth::*;
use self::child::*;
use self::cookie::*;
use self::eap::*;
use self::frag::*;
use self::ike_rekey::*;
use self::init::*;
use self::io::*;
pub use self::kernel::KERNEL_TICKET_BIT;
use self::kernel::*;
use self::lifetime::*;
use self::mobike::*;
pub use self::probe::Occupancy;
use self::sa::*;
pub use self::sa::{ChildRef, ChildSa, IkeRef, IkeSaInfo, IkeState};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use crate::ike::crypto::{
    constant_time_eq, hash, prf, DhPrivate, Group, HashAlg, Key, Random, SharedSecret,
};
use crate::ike::outbox::Outbox;
use crate::ike::router::{Keyed, Table};
use crate::ike::sa::{hex, Handle, IpsecSa, KernelOp, KernelReply, KernelReq, Part, Slab};
use crate::ike::wire::GroupDescription;
use crate::ike::Credentials;
use crate::ike::{Captured, Transmit};
use crate::timer::{Time, TimerHandle, TimerWheel};

use super::keys::{
    psk_auth, rekey_skeyseed, skeyseed, verify_psk_auth, ChildKeys, Encr, IkeKeys, Integ, KeyError,
    SignedOctets, Suite,
};
use super::policy::{narrow, Config, EspProposal, IkeProposal, Peer, PeerAuth, Policy, Selector};
use super::sig;
use super::sk::{Progress, Reassembly, ReassemblyError, SkError, SkKeys};
use super::wire::ts::emit_ts;
use super::wire::Error as WireError;
use super::wire::{
    parse_payloads, AuthMethod, AuthPayload, CertEncoding, CertPayload, CfgAttrType, CfgType,
    CpAttribute, DeletePayload, DhGroup, ExchangeType, Header, KePayload, Message, MessageBuilder,
    NoRoom, NotifyPayload, NotifyType, Payload, PayloadType, Payloads, ProposalRepr, ProtocolId,
    SaPayload, TrafficSelector, TsPayload, FLAG_INITIATOR, FLAG_RESPONSE, HEADER_LEN,
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

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_received: u64,
    pub datagrams_dropped: u64,
    /// Requests answered again from the kept response.
    pub responses_resent: u64,
    /// IKE fragments (RFC 7383) sent and authenticated ones received.
    pub fragments_sent: u64,
    pub fragments_received: u64,
    /// Reassemblies given up for newer ones ([`REASSEMBLIES_MAX`]).
    pub reassemblies_evicted: u64,
    /// NAT-keepalives sent (RFC 3948 §2.3).
    pub nat_keepalives: u64,
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
    /// CHILD_SAs abandoned because the kernel refused an SPI or an install.
    pub kernel_refused: u64,
    /// CHILD_SAs deleted at their hard lifetime (ours, or the kernel's hard EXPIRE).
    pub child_sas_expired: u64,
    /// IKE SAs deleted at their lifetime.
    pub ike_sas_expired: u64,
    /// IKE SAs dropped because their peer came back with INITIAL_CONTACT (§2.4).
    pub initial_contacts: u64,
    /// IKE SAs moved to new addresses with their CHILD_SAs (NAT rebinding, MOBIKE).
    pub peer_moves: u64,
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
    /// Steps parked until the kernel answers.
    waits: Vec<Wait>,
    /// The policies whose flows are in the kernel without an SA (iked's flows at
    /// startup, [`Engine::load_flows`]), as installed.
    loaded_flows: Vec<crate::ike::sa::FlowSet>,
    /// When a kernel ACQUIRE last started something for a policy ([`Engine::acquire`]).
    acquired: Vec<(String, Time)>,
    /// iked's `decouple`: CHILD_SAs and their flows stay out of the kernel
    /// ([`Engine::set_coupled`]); our inbound SPIs are still reserved.
    decoupled: bool,
    /// Decoupled: the CHILD_SAs (our inbound SPIs) taken out of the kernel, whose
    /// reserved SPIs went with them.
    decoupled_gone: Vec<u32>,
    io: Io,
    /// Scratch for decrypting in place.
    rx: Vec<u8>,
    /// IKE SAs with a reassembly under way ([`REASSEMBLIES_MAX`]).
    reassemblies: usize,
    /// Addresses our pools gave to peers (`CpConfig::pool`), while an IKE SA holds them.
    leases: std::collections::BTreeSet<IpAddr>,
    fired: Vec<Handle>,
    /// Our address toward a peer, for a policy whose local address is unspecified
    /// (iked.conf without `local`): the host's routing lookup.
    route: Option<RouteLookup>,
    /// Our private key and certificate, the CAs and CRLs, the peers' raw public keys:
    /// for peers that authenticate with signatures ([`PeerAuth::Sig`]).
    creds: Credentials,
    /// The EAP-MSCHAPv2 users (iked.conf `user`) for [`PeerAuth::EapServer`] policies.
    eap_users: Vec<crate::ikev2::mschap::EapUser>,
}

/// The host's routing lookup: our source address toward a destination.
pub type RouteLookup = Box<dyn FnMut(IpAddr) -> Option<IpAddr>>;

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
            waits: Vec::new(),
            loaded_flows: Vec::new(),
            acquired: Vec::new(),
            decoupled: false,
            decoupled_gone: Vec::new(),
            io: Io {
                outbox: Outbox::new(),
                timers: TimerWheel::new(2 * n, now),
                rng,
                stats: Stats::default(),
                nat_port: config.nat_port,
                kernel_answers: config.kernel_answers,
                kernel: VecDeque::new(),
                ticket: 0,
                fragment_size: config.fragment_size,
                keepalive_secs: config.nat_keepalive_secs,
                capture_on: false,
                capture: VecDeque::new(),
                now,
                drop_log: crate::ike::LogLimit::new(5, 10_000),
                notify_limit: crate::ike::LogLimit::default(),
                eap_log: Default::default(),
            },
            rx: Vec::with_capacity(65535),
            reassemblies: 0,
            leases: Default::default(),
            fired: Vec::new(),
            route: None,
            creds: Credentials::default(),
            eap_users: Vec::new(),
            config,
            policy,
        }
    }

    /// Turns the capture of messages in clear on or off ([`Self::poll_capture`]).
    pub fn set_capture(&mut self, on: bool) {
        self.io.capture_on = on;
        if !on {
            self.io.capture.clear();
        }
    }

    /// The next message for the capture file: IKE_SA_INIT as on the wire, the others
    /// decrypted, the SK payload replaced by its inner payloads (RFC 7383 fragments
    /// once, reassembled); sent and received.
    pub fn poll_capture(&mut self) -> Option<Captured> {
        self.io.capture.pop_front()
    }

    /// Our key, certificates and trusted CAs for signature authentication (iked(8):
    /// /etc/iked/private/local.key, certs/, ca/, crls/, pubkeys/, read by the daemon).
    pub fn set_credentials(&mut self, c: Credentials) {
        self.creds = c;
    }

    pub fn stats(&self) -> &Stats {
        &self.io.stats
    }

    /// Sets the routing lookup that picks our address toward a peer whose policy leaves
    /// the local address unspecified.
    pub fn set_route_lookup(&mut self, f: RouteLookup) {
        self.route = Some(f);
    }

    /// The peers, as configured.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Takes new peers (a reload). IKE SAs keep running under the peer of the same name,
    /// with its new settings; those whose peer is gone are deleted: an established one
    /// with a Delete sent once (no retransmission: nothing is left to answer it). Returns
    /// how many were deleted.
    pub fn set_policy(&mut self, now: Time, policy: Policy) -> usize {
        let gone: Vec<Handle> = self
            .sas
            .iter()
            .filter(|(_, sa)| !policy.peers.iter().any(|p| p.name == sa.info.peer))
            .map(|(h, _)| h)
            .collect();
        for &h in &gone {
            self.delete_ike(now, IkeRef::Handle(h));
            self.delete(h, "its policy was removed");
        }
        let remap: Vec<(Handle, usize)> = self
            .sas
            .iter()
            .filter_map(|(h, sa)| {
                let p = policy.peers.iter().position(|p| p.name == sa.info.peer)?;
                Some((h, p))
            })
            .collect();
        for (h, p) in remap {
            if let Some(sa) = self.sas.get_mut(h) {
                sa.peer = p;
            }
        }
        self.policy = policy;
        gone.len()
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
        if peer.remote.ip().is_unspecified() {
            return Err(ConnectError::Local(
                "the peer's address is not known (peer any)",
            ));
        }
        let local = if peer.local.ip().is_unspecified() {
            let ip = self
                .route
                .as_mut()
                .and_then(|r| r(peer.remote.ip()))
                .ok_or(ConnectError::Local("no route to the peer"))?;
            SocketAddr::new(ip, peer.local.port())
        } else {
            peer.local
        };
        let spi_i = self.io.spi();
        let info = IkeSaInfo {
            peer: peer.name.clone(),
            initiator: true,
            spi_i,
            spi_r: [0; 8],
            local,
            remote: peer.remote,
            state: IkeState::InitSent,
            suite: None,
            nat_local: false,
            nat_remote: false,
            established: now,
            rekey_at: None,
            expires_at: None,
            peer_vip: None,
            own_vip: None,
            eap_id: None,
        };
        let mut sa = IkeSa::new(info, p);
        sa.mob = self.new_contact(p);
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

    pub fn handle_datagram(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.io.now = now;
        self.io.stats.datagrams_received += 1;
        let data = if local.port() == self.config.nat_port {
            // RFC 3948 §2.2: IKE after the non-ESP marker; a lone 0xff is a keepalive,
            // which only keeps the peer's NAT mapping open (§2.3): nothing to do.
            if data == [0xff] {
                return;
            }
            match data.strip_prefix(&[0u8; 4][..]) {
                Some(d) => d,
                None => return self.dropped(remote, "no non-ESP marker"),
            }
        } else {
            data
        };
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => return self.unparsed(now, (local, remote), data, &e),
        };
        let hd = msg.header;
        if hd.exchange == ExchangeType::IKE_SA_INIT {
            self.io.capture(remote, local, data);
        }
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
                && (sa.info.remote.ip() == remote.ip() || sa.may_move_to(remote))
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
                    self.io
                        .capture_clear((remote, local), &hd, o.first, &rx[o.plain.clone()]);
                    if hd.response() {
                        self.response(now, h, &hd, &inner);
                    } else {
                        self.request(now, h, &hd, &inner, (local, remote));
                    }
                    self.heard_from(now, h);
                }
                Err(e) => self.answer_error(h, &hd, (local, remote), &e),
            },
            Ok(o) => {
                let (first, plain) = (o.first, o.plain.clone());
                let (number, total) = o.fragment.unwrap_or((1, 1));
                self.fragment(
                    now,
                    h,
                    &hd,
                    (local, remote),
                    (number, total),
                    first,
                    &rx[plain],
                );
            }
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
        if sa.reassembly.take().is_some() {
            self.reassemblies = self.reassemblies.saturating_sub(1);
        }
        // A pool address goes back once no IKE SA holds it (a rekey's new one does).
        if let Some(a) = sa.info.peer_vip {
            if !self.sas.iter().any(|(_, o)| o.info.peer_vip == Some(a)) {
                self.leases.remove(&a);
            }
        }
        // SPIs the kernel reserved for CHILD_SAs that will not come now.
        let (local, remote) = (sa.info.local, sa.info.remote);
        self.io.release_spi(local, remote, sa.child_spi);
        if let Some(cr) = &sa.creating {
            self.io.release_spi(local, remote, cr.spi_in);
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

    fn fail(&mut self, h: Handle, why: &str) {
        self.io.stats.failed += 1;
        self.delete(h, why);
    }

    fn add_child(&mut self, c: ChildSa) {
        let flows: Vec<String> = c
            .flows
            .iter()
            .map(|(l, r)| {
                let t = super::policy::selector_text;
                format!("{} -> {}", t(l), t(r))
            })
            .collect();
        log::info!(
            "ikev2: {}: CHILD_SA established, SPIs in {:08x} out {:08x}, flows {}",
            c.peer,
            c.spi_in,
            c.spi_out,
            flows.join(", ")
        );
        let h = c.ike;
        if self.children.insert(c).is_some() {
            self.io.stats.child_sas_established += 1;
        } else {
            log::error!("ikev2: CHILD_SA table full");
        }
        self.rearm(h);
    }
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
    // Only the inner payloads are per caller; the keys and the encryption are two
    // functions for all.
    let sk = sender_keys(sa)?;
    let mut plain = vec![0u8; BUILD_MAX];
    let mut ib = MessageBuilder::inner(&mut plain);
    inner(&mut ib)?;
    let first = ib.first();
    let pn = ib.finish()?;
    seal_protected(io, sa, &sk, exchange, msgid, response, first, &plain[..pn])
}

/// Our SK_e and SK_a for `sa`'s messages.
fn sender_keys(sa: &IkeSa) -> Result<SkKeys, Fail> {
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err(Fail("no keys"));
    };
    Ok(SkKeys::for_sender(&suite, keys, sa.info.initiator)?)
}

/// The message around the inner payloads `plain` (the first of type `first`).
#[allow(clippy::too_many_arguments)]
fn seal_protected(
    io: &mut Io,
    sa: &mut IkeSa,
    sk: &SkKeys,
    exchange: ExchangeType,
    msgid: u32,
    response: bool,
    first: PayloadType,
    plain: &[u8],
) -> Result<Vec<u8>, Fail> {
    let pn = plain.len();
    let hdr = sa.header(exchange, msgid, response);
    io.capture_clear((sa.info.local, sa.info.remote), &hdr, first, plain);
    let whole = HEADER_LEN + 4 + sk.body_len(pn);
    let limit = fragment_limit(io, sa);
    if sa.frag && whole > limit {
        return seal_fragments(io, sa, sk, &hdr, first, plain, limit);
    }
    let iv = io.iv(sa, sk);
    let mut out = vec![0u8; whole];
    let mut b = MessageBuilder::new(&mut out, &hdr)?;
    b.encrypted(first, None, |w| {
        sk.write_body(w, plain, &iv).map_err(|_| NoRoom)
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
