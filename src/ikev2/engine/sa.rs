#![forbid(unsafe_code)]

//! The SA records: an IKE SA as the API shows it ([`IkeSaInfo`], [`IkeState`]) and as
//! the engine keeps it (`IkeSa`: keys, message IDs, the request in flight and the
//! exchanges under way, its one timer), a CHILD_SA ([`ChildSa`]), and the references by
//! which the API names them ([`ChildRef`], [`IkeRef`]).

use super::*;

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
    /// When it was established (by IKE_AUTH or a rekey); before that, when it was begun.
    pub established: Time,
    /// When we rekey it (`Peer::ike_lifetime_secs`, 5-10 % early); None without a
    /// lifetime, once the rekey has started, or once it is replaced.
    pub rekey_at: Option<Time>,
    /// When it is deleted if still here (its lifetime); None without one.
    pub expires_at: Option<Time>,
    /// The address our pool gave the peer (§2.19), kept across rekeys.
    pub peer_vip: Option<IpAddr>,
    /// The address the peer gave us in its CFG_REPLY.
    pub own_vip: Option<IpAddr>,
    /// The user an EAP peer authenticated as (iked's `sa_eapid`), as fit for the log;
    /// kept across rekeys.
    pub eap_id: Option<String>,
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
    /// Made by a rekey the peer asked for: our inbound SPI of the CHILD_SA it replaces.
    pub replaces: Option<u32>,
    /// Made by a rekey the peer asked for, and only its inbound half is in the kernel:
    /// the outbound half goes in when the CHILD_SA it replaces goes. The kernel sends on
    /// the newest outbound SA at once, and the peer installs its inbound half only when
    /// our response reaches it; it deletes the old CHILD_SA only after that, so until
    /// then we keep sending under the old one (charon does the same).
    pub outbound_pending: bool,
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
    /// Its kernel flows, (ours, the peer's): the policy's pairs narrowed to the
    /// selectors above ([`crate::ikev2::policy::flow_pairs`]), set when it goes to the
    /// kernel.
    pub flows: Vec<(Selector, Selector)>,
    /// Transport mode (USE_TRANSPORT_MODE, its policy's `transport`), set with `flows`.
    pub transport: bool,
    /// The IKE SA's addresses when it was made: the tunnel's endpoints.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// UDP encapsulation (RFC 3948), our port and the peer's: a NAT was detected (§2.23).
    pub encap: Option<(u16, u16)>,
    /// The PFS group of the CREATE_CHILD_SA that made it.
    pub pfs: Option<DhGroup>,
    /// When it went to the kernel (its lifetime counts from there).
    pub established: Time,
    /// When we rekey it (`Peer::child_lifetime_secs`, 5-10 % early); None without a
    /// lifetime and once its rekey has started.
    pub rekey_at: Option<Time>,
    /// When it is deleted if still here (its lifetime); None without one.
    pub expires_at: Option<Time>,
    /// The kernel's traffic limit in bytes (`Peer::child_lifetime_bytes`, 0: none); the
    /// kernel's soft EXPIRE at 90 % of it rekeys, its hard one deletes
    /// ([`Engine::handle_expire`]).
    pub lifetime_bytes: u64,
}

/// What a request of ours is, for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Req {
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
    /// INFORMATIONAL with UPDATE_SA_ADDRESSES: we moved (RFC 4555 §3.5).
    UpdateAddresses,
}

impl Req {
    /// The exchange it is made in: a response of another is not its answer.
    pub(super) fn exchange(&self) -> ExchangeType {
        match self {
            Req::Init => ExchangeType::IKE_SA_INIT,
            Req::Auth => ExchangeType::IKE_AUTH,
            Req::CreateChild(_) | Req::RekeyIke => ExchangeType::CREATE_CHILD_SA,
            Req::DeleteChild(_) | Req::DeleteIke | Req::Liveness | Req::UpdateAddresses => {
                ExchangeType::INFORMATIONAL
            }
        }
    }
}

/// Our IKE SA rekey in flight: the new IKE SA's SPI (ours), Ni and DH value.
pub(super) struct IkeRekey {
    pub(super) spi: [u8; 8],
    pub(super) ni: Vec<u8>,
    pub(super) dh: DhPrivate,
}

/// Our CREATE_CHILD_SA in flight.
pub(super) struct Creating {
    /// Rekey: our inbound SPI of the CHILD_SA being replaced.
    pub(super) rekey: Option<u32>,
    pub(super) spi_in: u32,
    pub(super) ni: Vec<u8>,
    /// PFS: our DH value.
    pub(super) dh: Option<DhPrivate>,
    pub(super) ts_local: Vec<Selector>,
    pub(super) ts_remote: Vec<Selector>,
    /// The peer rekeyed the same CHILD_SA meanwhile (§2.8.1): the lower nonce of its
    /// exchange.
    pub(super) crossed: Option<Vec<u8>>,
    /// Sent again with the group the peer's INVALID_KE_PAYLOAD named (once).
    pub(super) ke_retried: bool,
}

/// The request we wait an answer for.
pub(super) struct Pending {
    pub(super) msgid: u32,
    pub(super) data: Vec<u8>,
    pub(super) xmits: u32,
    pub(super) at: Time,
    pub(super) what: Req,
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

pub(super) struct IkeSa {
    pub(super) info: IkeSaInfo,
    /// Index of the peer in the policy.
    pub(super) peer: usize,
    pub(super) keys: Option<IkeKeys>,
    pub(super) dh: Option<DhPrivate>,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    /// The IKE_SA_INIT request and response as sent (RealMessage1/2 of §2.15).
    pub(super) init_i: Vec<u8>,
    pub(super) init_r: Vec<u8>,
    /// Initiator: retries of IKE_SA_INIT, and the COOKIE to return.
    pub(super) init_retries: u8,
    pub(super) cookie: Option<Vec<u8>>,
    /// Initiator: our inbound ESP SPI, offered in IKE_AUTH; 0 while the kernel reserves
    /// it and once the CHILD_SA took it (or it went back).
    pub(super) child_spi: u32,
    /// Our next request's message ID, and the next request's we expect.
    pub(super) next_msgid: u32,
    pub(super) peer_msgid: u32,
    /// The last response we sent, for a repeated request.
    pub(super) response: Option<(u32, Vec<u8>)>,
    pub(super) request: Option<Pending>,
    /// Requests of ours waiting for the one in flight to be answered (window 1, §2.3).
    pub(super) queued: Vec<Req>,
    /// A half-open responder SA goes at this time.
    pub(super) expires: Option<Time>,
    /// An established SA's liveness check is due at this time.
    pub(super) idle: Option<Time>,
    /// Behind a NAT: the next NAT-keepalive.
    pub(super) keepalive_at: Option<Time>,
    pub(super) timer: Option<TimerHandle>,
    /// Responder: the (SPIi, address) index entry.
    pub(super) init_index: Option<Handle>,
    /// AEAD IVs: a counter, unique per key (RFC 5282 §3).
    pub(super) iv_counter: u64,
    /// Our CREATE_CHILD_SA in flight.
    pub(super) creating: Option<Creating>,
    /// Our IKE SA rekey in flight.
    pub(super) rekeying: Option<IkeRekey>,
    /// Replaced by a rekey (§1.3.2): not rekeyed again, and gone once deleted.
    pub(super) replaced: bool,
    /// The earliest rekey or expiry of its CHILD_SAs ([`Engine::rearm`]).
    pub(super) child_due: Option<Time>,
    /// The hashes of the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4), a bit each
    /// (`sig::hash_set`).
    pub(super) peer_hashes: u8,
    /// Both sides announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3).
    pub(super) frag: bool,
    /// §2.8.2: the peer's rekey of this IKE SA that came while ours was in flight (its
    /// new IKE SA, the lower nonce of its exchange), and ours once done (the same).
    pub(super) crossed_ike: Option<(Handle, Vec<u8>)>,
    /// The peer deleted it while our rekey of it was in flight (collide.rs): kept, empty,
    /// until that rekey is answered.
    pub(super) deleted_by_peer: bool,
    /// Responder: the CFG_REPLY attributes of our IKE_AUTH answer (§3.15).
    pub(super) cp_reply: Vec<(CfgAttrType, Vec<u8>)>,
    /// The fragments of the peer's message being reassembled: its message ID, whether it
    /// is a response, what came so far (allocated for the first fragment, gone with the
    /// message).
    pub(super) reassembly: Option<Reassembling>,
    /// The EAP conversation of IKE_AUTH (§2.16), while it runs.
    pub(super) eap: Option<Box<Eap>>,
    /// The peer's identity, INITIAL_CONTACT and MOBIKE (mobike.rs).
    pub(super) mob: Mobility,
}

impl IkeSa {
    /// An IKE SA with the peer at index `peer` of the policy, before anything is
    /// negotiated (the caller sets what it already knows).
    #[inline(never)]
    pub(super) fn new(info: IkeSaInfo, peer: usize) -> IkeSa {
        IkeSa {
            info,
            peer,
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
            keepalive_at: None,
            timer: None,
            init_index: None,
            iv_counter: 0,
            creating: None,
            rekeying: None,
            replaced: false,
            child_due: None,
            peer_hashes: 0,
            frag: false,
            cp_reply: Vec::new(),
            crossed_ike: None,
            deleted_by_peer: false,
            reassembly: None,
            eap: None,
            mob: Mobility::default(),
        }
    }

    pub(super) fn our_spi(&self) -> [u8; 8] {
        if self.info.initiator {
            self.info.spi_i
        } else {
            self.info.spi_r
        }
    }

    pub(super) fn header(&self, exchange: ExchangeType, msgid: u32, response: bool) -> Header {
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

    /// Earliest deadline: retransmission, half-open expiry, liveness check, the IKE
    /// SA's rekey or expiry, or one of its CHILD_SAs'. One timer per IKE SA.
    pub(super) fn deadline(&self) -> Option<Time> {
        [
            self.request.as_ref().map(|r| r.at),
            self.expires,
            self.idle,
            self.keepalive_at,
            self.info.rekey_at,
            self.info.expires_at,
            self.child_due,
            self.reassembly.as_ref().map(Reassembling::due),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// A responder SA's IKE_SA_INIT: the initiator's SPI and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct InitKey(pub(super) [u8; 8], pub(super) SocketAddr);
