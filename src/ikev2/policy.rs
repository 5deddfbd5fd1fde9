//! What the IKEv2 engine is told to negotiate: the peers, with their addresses, shared
//! keys, identities, IKE and ESP proposals and traffic selectors, as plain Rust values.
//! Reading them from iked.conf(5) is issue 17; this module is what that parser will fill.
//!
//! It also holds the matching rules that only depend on the policy: whether a received
//! proposal (RFC 7296 §3.3) carries the transforms of one of ours (§2.7: "the responder
//! MUST choose a single suite"), and traffic selector intersection for the simple
//! narrowing of §2.9 (answer with what both sides allow, or TS_UNACCEPTABLE).

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use heapless::Vec as HVec;

use super::keys::{Encr, Integ, KeyError, Prf, Suite};
use super::mschap::EapUser;
use super::wire::{
    CfgAttrType, DhGroup, EncrId, EsnId, IdType, IntegId, PrfId, Proposal, ProtocolId,
    TrafficSelector, TransformRepr, TransformType,
};

/// The engine's settings (not per peer).
#[derive(Debug, Clone)]
pub struct Config {
    /// IKE SAs held at most, half-open ones included; a full table drops new requests.
    pub max_ike_sas: usize,
    /// Responder SAs between IKE_SA_INIT and IKE_AUTH held at most (§2.6's concern);
    /// an IKE_SA_INIT beyond it is dropped and counted.
    pub max_half_open: usize,
    /// With this many half-open responder SAs or more, an IKE_SA_INIT without a valid
    /// COOKIE is answered with a COOKIE challenge only, and no state is kept (§2.6).
    pub cookie_threshold: usize,
    /// The COOKIE secret is replaced after this long; cookies made with the one before
    /// are still accepted.
    pub cookie_secret_secs: u64,
    /// How long a half-open responder SA waits for IKE_AUTH.
    pub half_open_secs: u64,
    /// The first retransmission of a request after this long, then twice as long each
    /// time (§2.1 "the retransmission policy ... exponential back-off").
    pub retransmit_ms: u64,
    /// Retransmissions of a request before the IKE SA is given up.
    pub retransmits: u32,
    /// Our NAT-T port: datagrams to and from it carry the non-ESP marker.
    pub nat_port: u16,
    /// An established IKE SA from whose peer nothing authenticated has come for this
    /// long is checked with an empty INFORMATIONAL request (iked's dpd_check_interval);
    /// when its retransmissions go unanswered, the IKE SA and its CHILD_SAs are deleted.
    /// 0 turns the check off (the default here; the daemon's configuration sets it).
    pub liveness_secs: u64,
    /// A kernel answers the engine's requests (`Engine::poll_kernel`): our inbound SPIs
    /// are reserved with GetSpi, and a CHILD_SA waits for its install before it is
    /// announced or counted as made. Without one (the default here, and the daemon's -n)
    /// SPIs come from the random source and installs count as done at once.
    pub kernel_answers: bool,
    /// IKE fragmentation (RFC 7383; iked.conf `set fragmentation`): announced in
    /// IKE_SA_INIT, and when the peer announces it too, protected messages longer than
    /// [`Config::fragment_size`] go as SKF fragments; the peer's are reassembled.
    pub fragmentation: bool,
    /// The longest IKE message in a fragment, UDP header and non-ESP marker left out; 0
    /// takes iked's: 576 - 28 bytes to an IPv4 peer, 1280 - 48 to an IPv6 one (RFC 7383
    /// §2.5.1), 4 less on port 4500.
    pub fragment_size: usize,
    /// Behind a NAT (§2.23), an established IKE SA sends a NAT-keepalive (RFC 3948 §2.3)
    /// on port 4500 this often, as iked does every 20 s; 0 sends none.
    pub nat_keepalive_secs: u64,
    /// MOBIKE (RFC 4555; iked.conf `set mobike`, the default): a peer that announces
    /// MOBIKE_SUPPORTED in IKE_AUTH is answered with it, and may move its IKE SA and
    /// CHILD_SAs with UPDATE_SA_ADDRESSES.
    pub mobike: bool,
    /// With [`Config::mobike`], announce MOBIKE_SUPPORTED in our own IKE_AUTH requests
    /// too, which [`crate::ikev2::engine::Engine::update_addresses`] needs to move an IKE
    /// SA we initiated. iked does not (the daemon leaves it off): a responder that sees
    /// it moves the IKE SA to port 4500 (RFC 4555 §3.3; iked then turns on UDP
    /// encapsulation, strongSwan floats), which an initiator that does not move its own
    /// addresses has no use for.
    pub mobike_offer: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_ike_sas: 1024,
            max_half_open: 64,
            cookie_threshold: 32,
            cookie_secret_secs: 300,
            half_open_secs: 30,
            retransmit_ms: 2000,
            retransmits: 5,
            nat_port: 4500,
            liveness_secs: 0,
            kernel_answers: false,
            fragmentation: false,
            fragment_size: 0,
            nat_keepalive_secs: 20,
            mobike: true,
            mobike_offer: true,
        }
    }
}

/// The peers.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub peers: Vec<Peer>,
}

/// One peer: where it is, how both sides authenticate, what to propose and accept.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    /// Our address and port for this peer, and the peer's. A responder takes a request
    /// from the peer whose address is the datagram's source address.
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    /// How both sides authenticate (iked.conf's `ikeauth`).
    pub auth: PeerAuth,
    pub local_id: Identity,
    /// The identity the peer must show in IDi/IDr; any, when None.
    pub remote_id: Option<Identity>,
    /// IKE SA suites, most preferred first. The initiator's KE is for the first one's
    /// group.
    pub ike: Vec<IkeProposal>,
    /// CHILD_SA (ESP, tunnel mode) suites, most preferred first.
    pub esp: Vec<EspProposal>,
    pub local_ts: Vec<Selector>,
    pub remote_ts: Vec<Selector>,
    /// The flows as iked.conf pairs them (`from A to B from C to D`): (ours, the
    /// peer's). One CHILD_SA negotiates the sides' unions above; the kernel gets a flow
    /// per pair (narrowed to what was negotiated, [`flow_pairs`]). Empty: every
    /// `local_ts` with every `remote_ts`.
    pub flows: Vec<(Selector, Selector)>,
    /// `transport`: CHILD_SAs in transport mode (USE_TRANSPORT_MODE, RFC 7296 §1.3.1).
    pub transport: bool,
    /// iked.conf's `ikelifetime`: the IKE SA is rekeyed 5-10 % before this many seconds
    /// and deleted at it; 0 (iked's default) is neither.
    pub ike_lifetime_secs: u64,
    /// `lifetime TIME`: a CHILD_SA is rekeyed 5-10 % before this many seconds and
    /// deleted at it; 0 is neither.
    pub child_lifetime_secs: u64,
    /// `lifetime ... bytes BYTES`: the kernel's limit for a CHILD_SA (its soft EXPIRE at
    /// 90 % starts the rekey, its hard one the deletion); 0 is none.
    pub child_lifetime_bytes: u64,
    /// Configuration payloads (iked.conf `config` and `request`).
    pub cp: CpConfig,
}

/// Configuration payloads (RFC 7296 §3.15, §2.19): what a responder serves (an address
/// from a pool, name servers...) and what an initiator asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpConfig {
    /// `config address a/prefix`: the pool a peer's INTERNAL_IP4/6_ADDRESS request is
    /// given an address from (`config address a`: that one address). The CHILD_SAs of
    /// such a peer are narrowed to its address on its side.
    pub pool: Option<(IpAddr, u8)>,
    /// Other `config` options: attribute type and value, answered when asked for.
    pub serve: Vec<(CfgAttrType, Vec<u8>)>,
    /// `request` options: the attribute types asked for in IKE_AUTH.
    pub request: Vec<CfgAttrType>,
}

impl CpConfig {
    /// The first address of the pool that `taken` does not hold: the network and
    /// broadcast addresses of an IPv4 pool wider than /31 are left out, and at most
    /// 65,536 addresses are looked at.
    pub fn lease(&self, taken: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
        let (base, prefix) = self.pool?;
        let (bits, net) = match base {
            IpAddr::V4(a) => (32u32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (128, u128::from(a)),
        };
        let host_bits = bits.saturating_sub(u32::from(prefix).min(bits));
        let size: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            1 << host_bits
        };
        let net = if host_bits >= 128 {
            0
        } else {
            net & !(size - 1)
        };
        let (first, count) = if bits == 32 && host_bits > 1 {
            (1, size - 2)
        } else {
            (0, size)
        };
        (first..first + count.min(65_536))
            .map(|i| match base {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from((net + i) as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net + i)),
            })
            .find(|a| !taken(a))
    }
}

/// How we authenticate to a peer and what we take from it (iked.conf(5) `ikeauth`).
#[derive(Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// `psk`: the shared key, both ways (AUTH method 2).
    Psk(Vec<u8>),
    /// Signatures: ours with our private key (the engine's credentials), the peer's
    /// checked against its certificate, which must chain to one of our CAs and name its
    /// ID, or against its raw public key (pubkeys/).
    Sig(SigMethod),
    /// `eap "mschap-v2"` (RFC 7296 §2.16): we sign as with `Sig` (iked wants the
    /// responder to show a certificate), the peer authenticates with EAP-MSCHAPv2 as one
    /// of the users the engine was given (`Engine::set_eap_users`), and both AUTHs of
    /// the last IKE_AUTH are keyed with the EAP MSK.
    EapServer(SigMethod),
    /// We are the EAP-MSCHAPv2 client, as this user, and check the peer's signature as
    /// with `Sig`. iked.conf has no such rule (iked is no EAP client); tests and other
    /// users of the engine set it.
    EapClient(SigMethod, EapUser),
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAuth::Psk(_) => f.write_str("Psk(..)"),
            PeerAuth::Sig(m) => write!(f, "Sig({m:?})"),
            PeerAuth::EapServer(m) => write!(f, "EapServer({m:?})"),
            PeerAuth::EapClient(m, u) => write!(f, "EapClient({m:?}, {u:?})"),
        }
    }
}

impl PeerAuth {
    pub fn psk(key: &[u8]) -> PeerAuth {
        PeerAuth::Psk(key.to_vec())
    }

    /// The signature method when signatures are involved either way.
    pub fn sig(&self) -> Option<SigMethod> {
        match self {
            PeerAuth::Psk(_) => None,
            PeerAuth::Sig(m) | PeerAuth::EapServer(m) | PeerAuth::EapClient(m, _) => Some(*m),
        }
    }

    /// We sign our AUTH (before any EAP).
    pub fn we_sign(&self) -> bool {
        matches!(self, PeerAuth::Sig(_) | PeerAuth::EapServer(_))
    }

    /// The peer signs its AUTH.
    pub fn peer_signs(&self) -> bool {
        matches!(self, PeerAuth::Sig(_) | PeerAuth::EapClient(..))
    }
}

/// The signature methods of iked.conf(5): `rsa` (AUTH method 1, SHA-1), `ecdsa256`,
/// `ecdsa384`, `ecdsa521` (methods 9-11), `rfc7427` (method 14, SHA2-256), or any
/// (iked's default): RFC 7427 when the peer announced SIGNATURE_HASH_ALGORITHMS with
/// SHA2-256, else the method of our key; from the peer, any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigMethod {
    Any,
    Rsa,
    Ecdsa256,
    Ecdsa384,
    Ecdsa521,
    Rfc7427,
}

/// An identity (RFC 7296 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub ty: IdType,
    pub data: Vec<u8>,
}

impl Identity {
    pub fn addr(ip: IpAddr) -> Identity {
        match ip {
            IpAddr::V4(a) => Identity {
                ty: IdType::IPV4_ADDR,
                data: a.octets().to_vec(),
            },
            IpAddr::V6(a) => Identity {
                ty: IdType::IPV6_ADDR,
                data: a.octets().to_vec(),
            },
        }
    }

    pub fn fqdn(name: &str) -> Identity {
        Identity {
            ty: IdType::FQDN,
            data: name.as_bytes().to_vec(),
        }
    }

    /// The ID payload body: type, three reserved bytes, data (what AUTH signs, §2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![self.ty.0, 0, 0, 0];
        b.extend_from_slice(&self.data);
        b
    }
}

/// One IKE SA suite: a transform of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeProposal {
    pub encr: EncrId,
    /// Key Length attribute in bits (AES requires one, §3.3.5).
    pub key_bits: Option<u16>,
    /// None with an AEAD cipher (RFC 5282 §8).
    pub integ: Option<IntegId>,
    pub prf: PrfId,
    pub dh: DhGroup,
}

impl IkeProposal {
    pub fn transforms(&self) -> HVec<TransformRepr, 4> {
        let mut t = HVec::new();
        // NOTE(unwrap-free): four pushes into a capacity of four cannot fail.
        let _ = t.push(TransformRepr::encr(self.encr, self.key_bits));
        let _ = t.push(TransformRepr::prf(self.prf));
        if let Some(i) = self.integ {
            let _ = t.push(TransformRepr::integ(i));
        }
        let _ = t.push(TransformRepr::dh(self.dh));
        t
    }

    /// The algorithms, if this code implements them all.
    pub fn suite(&self) -> Result<Suite, KeyError> {
        let encr = Encr::from_id(self.encr, self.key_bits).ok_or(KeyError::BadSuite)?;
        let integ = match self.integ {
            Some(i) => Some(Integ::from_id(i).ok_or(KeyError::BadSuite)?),
            None => None,
        };
        let prf = Prf::from_id(self.prf).ok_or(KeyError::BadSuite)?;
        Suite::new(encr, integ, prf)
    }

    /// `p` (an IKE proposal for the initial IKE SA, so without SPI, §3.3.1) offers this
    /// suite among its transforms.
    pub fn offered_in(&self, p: &Proposal<'_>) -> bool {
        p.protocol == ProtocolId::IKE && p.spi.is_empty() && self.transforms_in(p)
    }

    /// `p` is an IKE proposal of a rekey (CREATE_CHILD_SA, §1.3.2: with the sender's new
    /// 8-byte SPI) that offers this suite.
    pub fn offered_in_rekey(&self, p: &Proposal<'_>) -> bool {
        p.protocol == ProtocolId::IKE && p.spi.len() == 8 && self.transforms_in(p)
    }

    /// `p` is exactly this suite, in a rekey's answer.
    pub fn is_rekey(&self, p: &Proposal<'_>) -> bool {
        self.offered_in_rekey(p) && p.transforms().count() == self.transforms().len()
    }

    fn transforms_in(&self, p: &Proposal<'_>) -> bool {
        p.types_within(&IKE_TRANSFORM_TYPES)
            && has_encr(p, self.encr, self.key_bits)
            && has(p, TransformType::PRF, self.prf.0)
            && integ_ok(p, self.integ)
            && has(p, TransformType::DH, self.dh.0)
    }

    /// `p` is exactly this suite: what a responder's answer must be (§3.3.6).
    pub fn is(&self, p: &Proposal<'_>) -> bool {
        self.offered_in(p) && p.transforms().count() == self.transforms().len()
    }
}

/// One ESP suite (tunnel mode, no extended sequence numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: EncrId,
    pub key_bits: Option<u16>,
    pub integ: Option<IntegId>,
    /// The DH group for perfect forward secrecy in CREATE_CHILD_SA (§1.3.1: KEi and KEr,
    /// KEYMAT from g^ir too); None for none. IKE_AUTH has no KE, so its SA payloads
    /// leave the DH transform out (§1.2) and this is not looked at there.
    pub pfs: Option<DhGroup>,
}

impl EspProposal {
    pub fn transforms(&self) -> HVec<TransformRepr, 3> {
        let mut t = HVec::new();
        let _ = t.push(TransformRepr::encr(self.encr, self.key_bits));
        if let Some(i) = self.integ {
            let _ = t.push(TransformRepr::integ(i));
        }
        let _ = t.push(TransformRepr::esn(EsnId::NO_ESN));
        t
    }

    /// The cipher and integrity algorithm, if this code knows them (for KEYMAT).
    pub fn algorithms(&self) -> Option<(Encr, Option<Integ>)> {
        let encr = Encr::from_id(self.encr, self.key_bits)?;
        let integ = match self.integ {
            Some(i) => Some(Integ::from_id(i)?),
            None => None,
        };
        (encr.is_aead() == integ.is_none()).then_some((encr, integ))
    }

    /// `p` is an ESP proposal with a 4-byte SPI that offers this suite; an ESN transform,
    /// if present, must allow NO_ESN. ESN is a mandatory type for ESP (§3.3.3), but a
    /// proposal without one is taken as NO_ESN, as strongSwan takes it ("assume not
    /// supported"): peers that leave it out exist.
    pub fn offered_in(&self, p: &Proposal<'_>) -> bool {
        p.protocol == ProtocolId::ESP
            && p.spi.len() == 4
            && p.types_within(&ESP_TRANSFORM_TYPES)
            && has_encr(p, self.encr, self.key_bits)
            && integ_ok(p, self.integ)
            && (p.of_type(TransformType::ESN).next().is_none()
                || has(p, TransformType::ESN, EsnId::NO_ESN.0))
    }

    pub fn is(&self, p: &Proposal<'_>) -> bool {
        self.offered_in(p) && p.transforms().count() == self.transforms().len()
    }

    /// The transforms in CREATE_CHILD_SA: those of IKE_AUTH and the PFS group, if any.
    pub fn transforms_pfs(&self) -> HVec<TransformRepr, 4> {
        let mut t = HVec::new();
        for x in self.transforms() {
            let _ = t.push(x);
        }
        if let Some(g) = self.pfs {
            let _ = t.push(TransformRepr::dh(g));
        }
        t
    }

    /// `p`'s DH transforms agree with our PFS setting: our group among them, or none
    /// (other than NONE) when we have none.
    pub fn pfs_in(&self, p: &Proposal<'_>) -> bool {
        match self.pfs {
            Some(g) => has(p, TransformType::DH, g.0),
            None => p.of_type(TransformType::DH).all(|t| t.id == 0),
        }
    }

    /// `p` is exactly this suite as CREATE_CHILD_SA answers it, PFS group included.
    pub fn is_pfs(&self, p: &Proposal<'_>) -> bool {
        self.offered_in(p)
            && self.pfs_in(p)
            && p.transforms().count() == self.transforms_pfs().len()
    }
}

/// The Transform Types an IKE and an ESP proposal may hold (§3.3.2, §3.3.3); a proposal
/// with another is unacceptable (§3.3.6: "a Transform Type it does not understand").
const IKE_TRANSFORM_TYPES: [TransformType; 4] = [
    TransformType::ENCR,
    TransformType::PRF,
    TransformType::INTEG,
    TransformType::DH,
];
const ESP_TRANSFORM_TYPES: [TransformType; 4] = [
    TransformType::ENCR,
    TransformType::INTEG,
    TransformType::DH,
    TransformType::ESN,
];

/// `p` offers transform `id` of type `ty`, with no attribute we do not understand
/// (§3.3.6: such a transform is unacceptable, others of its type are looked at).
fn has(p: &Proposal<'_>, ty: TransformType, id: u16) -> bool {
    p.of_type(ty).any(|t| t.id == id && t.understood())
}

fn has_encr(p: &Proposal<'_>, id: EncrId, bits: Option<u16>) -> bool {
    p.of_type(TransformType::ENCR)
        .any(|t| t.encr() == Some(id) && t.key_length() == bits && t.understood())
}

/// With an integrity algorithm, the proposal offers it; without (AEAD), the proposal has
/// no integrity transform other than NONE.
fn integ_ok(p: &Proposal<'_>, integ: Option<IntegId>) -> bool {
    match integ {
        Some(i) => has(p, TransformType::INTEG, i.0),
        None => p
            .of_type(TransformType::INTEG)
            .all(|t| t.id == IntegId::NONE.0),
    }
}

/// The kernel flows of a CHILD_SA negotiated for `local` and `remote`: each of the
/// policy's pairs (`policy`) narrowed to what was negotiated, those with something left
/// on both sides; without pairs, or when none is left (a side narrowed to a leased
/// address, say), every local selector with every remote one.
pub fn flow_pairs(
    policy: &[(Selector, Selector)],
    local: &[Selector],
    remote: &[Selector],
) -> Vec<(Selector, Selector)> {
    fn push(out: &mut Vec<(Selector, Selector)>, p: (Selector, Selector)) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    let mut out = Vec::new();
    for (pl, pr) in policy {
        for a in local.iter().filter_map(|l| l.intersect(pl)) {
            for b in remote.iter().filter_map(|r| r.intersect(pr)) {
                push(&mut out, (a, b));
            }
        }
    }
    if out.is_empty() {
        for a in local {
            for b in remote {
                push(&mut out, (*a, *b));
            }
        }
    }
    out
}

/// A traffic selector (§3.13.1): an address range, a protocol (0 for any) and a port
/// range. Both ends of a range are in the same address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selector {
    pub protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start: IpAddr,
    pub end: IpAddr,
}

impl Selector {
    /// `net/prefix`, any protocol and port.
    pub fn subnet(net: IpAddr, prefix: u8) -> Selector {
        let (start, end) = match net {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix.min(32)))
                    .unwrap_or(0);
                let s = u32::from(a) & mask;
                (
                    IpAddr::V4(Ipv4Addr::from(s)),
                    IpAddr::V4(Ipv4Addr::from(s | !mask)),
                )
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix.min(128)))
                    .unwrap_or(0);
                let s = u128::from(a) & mask;
                (
                    IpAddr::V6(Ipv6Addr::from(s)),
                    IpAddr::V6(Ipv6Addr::from(s | !mask)),
                )
            }
        };
        Selector {
            protocol: 0,
            start_port: 0,
            end_port: 0xffff,
            start,
            end,
        }
    }

    /// One host, any protocol and port.
    pub fn host(a: IpAddr) -> Selector {
        Selector::subnet(a, if a.is_ipv4() { 32 } else { 128 })
    }

    /// The selector both allow, if any. Protocol 0 is "any"; OPAQUE ports (start 65535,
    /// end 0) intersect with nothing here.
    pub fn intersect(&self, o: &Selector) -> Option<Selector> {
        if self.start.is_ipv4() != o.start.is_ipv4() {
            return None;
        }
        let protocol = match (self.protocol, o.protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let s = Selector {
            protocol,
            start_port: self.start_port.max(o.start_port),
            end_port: self.end_port.min(o.end_port),
            start: self.start.max(o.start),
            end: self.end.min(o.end),
        };
        (s.start_port <= s.end_port && s.start <= s.end).then_some(s)
    }

    /// Within `o` (their intersection is `self`).
    pub fn within(&self, o: &Selector) -> bool {
        self.intersect(o) == Some(*self)
    }

    pub fn from_wire(t: &TrafficSelector<'_>) -> Option<Selector> {
        Some(match *t {
            TrafficSelector::Ipv4 {
                protocol,
                start_port,
                end_port,
                start,
                end,
            } => Selector {
                protocol,
                start_port,
                end_port,
                start: start.into(),
                end: end.into(),
            },
            TrafficSelector::Ipv6 {
                protocol,
                start_port,
                end_port,
                start,
                end,
            } => Selector {
                protocol,
                start_port,
                end_port,
                start: start.into(),
                end: end.into(),
            },
            TrafficSelector::Other { .. } => return None,
        })
    }

    pub fn to_wire(&self) -> TrafficSelector<'static> {
        match (self.start, self.end) {
            (IpAddr::V4(start), IpAddr::V4(end)) => TrafficSelector::Ipv4 {
                protocol: self.protocol,
                start_port: self.start_port,
                end_port: self.end_port,
                start,
                end,
            },
            (IpAddr::V6(start), IpAddr::V6(end)) => TrafficSelector::Ipv6 {
                protocol: self.protocol,
                start_port: self.start_port,
                end_port: self.end_port,
                start,
                end,
            },
            // A mixed range is no selector; emit the empty IPv4 range 255.255.255.255 -
            // 0.0.0.0, which nothing matches, rather than panic.
            _ => TrafficSelector::Ipv4 {
                protocol: self.protocol,
                start_port: self.start_port,
                end_port: self.end_port,
                start: Ipv4Addr::BROADCAST,
                end: Ipv4Addr::UNSPECIFIED,
            },
        }
    }
}

/// A selector as iked prints it: `net/prefix` when the range is one, else
/// `start-end`, then ` port N` or ` port A-B` unless any port.
pub fn selector_text(s: &Selector) -> String {
    let (lo, hi, bits) = match (s.start, s.end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => (1, 0, 0),
    };
    let span = hi.wrapping_sub(lo).wrapping_add(1);
    let mut o = if lo > hi {
        format!("{}-{}", s.start, s.end)
    } else if span == 0 && bits == 128 && lo == 0 {
        format!("{}/0", s.start)
    } else if span.is_power_of_two() && lo & (span - 1) == 0 {
        format!("{}/{}", s.start, bits - span.trailing_zeros())
    } else {
        format!("{}-{}", s.start, s.end)
    };
    if (s.start_port, s.end_port) != (0, 0xffff) {
        if s.start_port == s.end_port {
            o.push_str(&format!(" port {}", s.start_port));
        } else {
            o.push_str(&format!(" port {}-{}", s.start_port, s.end_port));
        }
    }
    o
}

/// The narrowing of §2.9, simply: every intersection of a proposed selector with one of
/// ours. Empty when nothing overlaps.
pub fn narrow(proposed: &[Selector], ours: &[Selector]) -> Vec<Selector> {
    let mut out = Vec::new();
    for p in proposed {
        for o in ours {
            if let Some(s) = p.intersect(o) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::wire::SaPayload;

    /// An SA payload of one proposal: protocol, SPI, transforms (type, ID, attributes).
    fn sa(protocol: u8, spi: &[u8], ts: &[(u8, u16, &[u8])]) -> Vec<u8> {
        let mut t = Vec::new();
        for (i, (ty, id, attrs)) in ts.iter().enumerate() {
            let last = if i + 1 == ts.len() { 0 } else { 3 };
            let len = 8 + attrs.len();
            t.extend([last, 0, (len >> 8) as u8, len as u8, *ty, 0]);
            t.extend(id.to_be_bytes());
            t.extend(*attrs);
        }
        let len = 8 + spi.len() + t.len();
        let mut p = vec![0, 0, (len >> 8) as u8, len as u8, 1, protocol];
        p.extend([spi.len() as u8, ts.len() as u8]);
        p.extend(spi);
        p.extend(t);
        p
    }

    #[test]
    fn unknown_transform_types_and_attributes_make_a_proposal_or_transform_unacceptable() {
        // §3.3.6. AES-GCM-16 256 (Key Length 256), PRF HMAC-SHA2-256, ECP-256.
        let ike = IkeProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            prf: PrfId::HMAC_SHA2_256,
            dh: DhGroup::ECP_256,
        };
        let kl: &[u8] = &[0x80, 14, 1, 0];
        let odd: &[u8] = &[0x80, 14, 1, 0, 0x80, 99, 0, 1];
        let offered = |ts: &[(u8, u16, &[u8])]| {
            let b = sa(1, &[], ts);
            let p = SaPayload::parse(&b).unwrap().proposals().next().unwrap();
            ike.offered_in(&p)
        };
        assert!(offered(&[(1, 20, kl), (2, 5, &[]), (4, 19, &[])]));
        // Type 6 (RFC 9370's ADDKE1) is not one we understand: the proposal goes.
        assert!(!offered(&[
            (1, 20, kl),
            (2, 5, &[]),
            (4, 19, &[]),
            (6, 0, &[])
        ]));
        // ESN is not an IKE transform type.
        assert!(!offered(&[
            (1, 20, kl),
            (2, 5, &[]),
            (4, 19, &[]),
            (5, 0, &[])
        ]));
        // A transform with an attribute we do not understand goes, not its type's others.
        assert!(!offered(&[(1, 20, odd), (2, 5, &[]), (4, 19, &[])]));
        assert!(offered(&[
            (1, 20, odd),
            (1, 20, kl),
            (2, 5, &[]),
            (4, 19, &[])
        ]));
        assert!(!offered(&[
            (1, 20, kl),
            (2, 5, &[0x80, 99, 0, 1]),
            (4, 19, &[])
        ]));

        let esp = EspProposal {
            encr: EncrId::AES_GCM_16,
            key_bits: Some(256),
            integ: None,
            pfs: None,
        };
        let offered = |ts: &[(u8, u16, &[u8])]| {
            let b = sa(3, &[1, 2, 3, 4], ts);
            let p = SaPayload::parse(&b).unwrap().proposals().next().unwrap();
            esp.offered_in(&p)
        };
        assert!(offered(&[(1, 20, kl), (5, 0, &[])]));
        assert!(offered(&[(1, 20, kl), (5, 1, &[]), (5, 0, &[])]));
        // We do NO_ESN only; a proposal without ESN is taken as NO_ESN.
        assert!(offered(&[(1, 20, kl)]));
        assert!(!offered(&[(1, 20, kl), (5, 1, &[])]));
        assert!(!offered(&[(1, 20, kl), (5, 0, &[]), (9, 1, &[])]));
        // PRF is not an ESP transform type.
        assert!(!offered(&[(1, 20, kl), (2, 5, &[]), (5, 0, &[])]));
        assert!(!offered(&[(1, 20, kl), (5, 0, &[0x80, 99, 0, 1])]));
    }

    #[test]
    fn pool_leases_skip_network_broadcast_and_taken_addresses() {
        let pool = |a: &str, n| CpConfig {
            pool: Some((a.parse().unwrap(), n)),
            ..CpConfig::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = pool("198.51.100.130", 30);
        assert_eq!(p.lease(|_| false), Some(ip("198.51.100.129")));
        assert_eq!(
            p.lease(|a| *a == ip("198.51.100.129")),
            Some(ip("198.51.100.130"))
        );
        assert_eq!(p.lease(|_| true), None);
        assert_eq!(
            pool("192.0.2.7", 32).lease(|_| false),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(
            pool("192.0.2.6", 31).lease(|_| false),
            Some(ip("192.0.2.6"))
        );
        assert_eq!(
            pool("2001:db8::1", 120).lease(|_| false),
            Some(ip("2001:db8::"))
        );
        // A /0 is bounded in what is looked at.
        assert_eq!(pool("0.0.0.0", 0).lease(|_| true), None);
        assert_eq!(CpConfig::default().lease(|_| false), None);
    }

    use super::*;

    #[test]
    fn selectors_intersect() {
        let a = Selector::subnet("198.51.100.0".parse().unwrap(), 24);
        let b = Selector::subnet("198.51.100.128".parse().unwrap(), 25);
        assert_eq!(a.intersect(&b), Some(b));
        assert!(b.within(&a) && !a.within(&b));
        let c = Selector::subnet("203.0.113.0".parse().unwrap(), 24);
        assert_eq!(a.intersect(&c), None);
        let mut tcp = a;
        tcp.protocol = 6;
        tcp.start_port = 80;
        tcp.end_port = 80;
        assert_eq!(a.intersect(&tcp), Some(tcp));
        let v6 = Selector::subnet("2001:db8::".parse().unwrap(), 32);
        assert_eq!(a.intersect(&v6), None);
        assert_eq!(narrow(&[a, c], &[b]), vec![b]);
        assert_eq!(Selector::from_wire(&a.to_wire()), Some(a));
        assert_eq!(Selector::from_wire(&v6.to_wire()), Some(v6));
        assert_eq!(selector_text(&a), "198.51.100.0/24");
        assert_eq!(selector_text(&v6), "2001:db8::/32");
        assert_eq!(selector_text(&tcp), "198.51.100.0/24 port 80");
        let any4 = Selector::subnet("0.0.0.0".parse().unwrap(), 0);
        assert_eq!(selector_text(&any4), "0.0.0.0/0");
        let any6 = Selector::subnet("::".parse().unwrap(), 0);
        assert_eq!(selector_text(&any6), "::/0");
        let host = Selector::host("192.0.2.1".parse().unwrap());
        assert_eq!(selector_text(&host), "192.0.2.1/32");
    }
}

#[cfg(test)]
mod flow_pair_tests {
    use super::*;

    fn net(s: &str) -> Selector {
        let (a, p) = s.split_once('/').unwrap();
        Selector::subnet(a.parse().unwrap(), p.parse().unwrap())
    }

    #[test]
    fn pairs_are_kept_and_narrowed_not_crossed() {
        let pairs = [
            (net("10.0.0.0/24"), net("10.1.0.0/24")),
            (net("10.2.0.0/24"), net("10.3.0.0/24")),
        ];
        let (l, r) = (
            [net("10.0.0.0/24"), net("10.2.0.0/24")],
            [net("10.1.0.0/24"), net("10.3.0.0/24")],
        );
        // As configured: the two pairs, not the four combinations of the unions.
        assert_eq!(flow_pairs(&pairs, &l, &r), pairs.to_vec());
        // Narrowed by the peer to part of the first pair only.
        let got = flow_pairs(&pairs, &[net("10.0.0.0/25")], &[net("10.1.0.0/24")]);
        assert_eq!(got, [(net("10.0.0.0/25"), net("10.1.0.0/24"))]);
        // Without pairs: every local selector with every remote one.
        assert_eq!(flow_pairs(&[], &l, &r).len(), 4);
    }
}
