//! Security associations: the ISAKMP SA of phase 1 and the IPsec SAs of phase 2 (isakmpd
//! sa.c), kept in fixed-capacity tables addressed by generation-checked handles.
//!
//! A [`Slab`] allocates its slots once; a full table refuses the insert (the caller drops
//! the packet and counts it), and a handle whose generation no longer matches its slot
//! finds nothing, so a stale timer or a late packet cannot touch a reused slot.

use std::net::{IpAddr, SocketAddr};

use super::crypto::{CipherAlg, Group, HashAlg, SecretParts};
use super::policy::OwnedId;
use super::wire::{AuthAlgorithm, AuthMethod, EncapsulationMode, ProtocolId};
use crate::timer::{Time, TimerHandle};

/// A slot reference: index plus the generation it was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    pub idx: u32,
    pub gen: u32,
}

struct Slot<T> {
    gen: u32,
    val: Option<T>,
}

/// A table of at most `capacity` values. The storage is reserved up front (one
/// allocation, never grown past it) but its pages are only touched as slots come into use,
/// so an idle daemon does not pay for its full tables in resident memory.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    cap: usize,
    free: Vec<u32>,
}

impl<T> Slab<T> {
    pub fn with_capacity(n: usize) -> Slab<T> {
        Slab {
            slots: Vec::with_capacity(n),
            cap: n,
            free: Vec::with_capacity(n),
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `v`; `None` when the table is full.
    pub fn insert(&mut self, v: T) -> Option<Handle> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < self.cap => {
                self.slots.push(Slot { gen: 0, val: None });
                (self.slots.len() - 1) as u32
            }
            None => return None,
        };
        let s = &mut self.slots[idx as usize];
        s.gen = s.gen.wrapping_add(1);
        s.val = Some(v);
        Some(Handle { idx, gen: s.gen })
    }

    pub fn get(&self, h: Handle) -> Option<&T> {
        let s = self.slots.get(h.idx as usize)?;
        if s.gen == h.gen {
            s.val.as_ref()
        } else {
            None
        }
    }

    pub fn get_mut(&mut self, h: Handle) -> Option<&mut T> {
        let s = self.slots.get_mut(h.idx as usize)?;
        if s.gen == h.gen {
            s.val.as_mut()
        } else {
            None
        }
    }

    pub fn remove(&mut self, h: Handle) -> Option<T> {
        let s = self.slots.get_mut(h.idx as usize)?;
        if s.gen != h.gen {
            return None;
        }
        let v = s.val.take()?;
        self.free.push(h.idx);
        Some(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.val.as_ref().map(|v| {
                (
                    Handle {
                        idx: i as u32,
                        gen: s.gen,
                    },
                    v,
                )
            })
        })
    }

    pub fn find(&self, mut f: impl FnMut(&T) -> bool) -> Option<Handle> {
        self.iter().find(|(_, v)| f(v)).map(|(h, _)| h)
    }
}

/// The timers an SA has armed, by slot, so that deleting the SA disarms them: a timer
/// left behind would hold its slot of the wheel for the rest of the SA's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaTimers(pub [Option<TimerHandle>; 3]);

/// The phase 1 SA: what protects phase 2 and informational exchanges with one peer.
pub struct IsakmpSa {
    /// Its timers (expiry, DPD, NAT keepalive), cancelled when it goes.
    pub timers: SaTimers,
    pub icookie: [u8; 8],
    pub rcookie: [u8; 8],
    pub initiator: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The ISAKMP-peer section.
    pub peer: String,
    pub hash: HashAlg,
    pub cipher: CipherAlg,
    pub group: Group,
    pub auth: AuthMethod,
    /// SKEYID_d, SKEYID_a, the encryption key and the last CBC block of phase 1 (see
    /// the accessors of the same names).
    pub keys: SecretParts<4>,
    pub id_local: Vec<u8>,
    pub id_remote: Vec<u8>,
    pub established: Time,
    /// Seconds; 0 = none negotiated.
    pub lifetime: u64,
    pub hard_expiry: Option<Time>,
    /// isakmpd's soft timeout (sa.c `sa_setup_expirations`): at 85-95 % of the lifetime
    /// the initiator (STAYALIVE) negotiates a new phase 1 with the peer; on either side
    /// the SA is FADING from then on and new Quick Modes no longer start over it.
    pub soft_expiry: Option<Time>,
    /// Dead peer detection (RFC 3706) on this SA.
    pub dpd: Dpd,
    /// NAT traversal with this peer, if both support it.
    pub nat_t: Option<super::nat_t::NatT>,
    /// The internal address the peer gave us by mode-config (REPLY or SET): the
    /// Local-ID of connections over this SA that configure none.
    pub cfg_address: Option<std::net::IpAddr>,
    /// The internal address we gave the peer by mode-config (REPLY or SET): a connection
    /// without Remote-ID accepts it as the peer's client ID.
    pub cfg_peer_address: Option<std::net::IpAddr>,
    /// The peer's KeyNote principals and certificate assertions (signature peers only).
    pub peer_creds: Option<Box<super::policy::PeerCredentials>>,
}

impl IsakmpSa {
    /// The SA exchange `x` (under transform `c`) makes at `now`, with its keys and
    /// nothing of the peer yet: no IDs, lifetime, DPD or NAT-T state (`phase1_done` adds
    /// them; a refusal's provisional SA goes without).
    pub(crate) fn of_exchange(
        x: &super::exchange::Exchange,
        c: super::exchange::P1Choice,
        now: Time,
    ) -> IsakmpSa {
        IsakmpSa {
            timers: Default::default(),
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
            keys: SecretParts::new([
                x.skeyid_d.as_bytes(),
                x.skeyid_a.as_bytes(),
                x.ka.as_bytes(),
                x.iv.as_bytes(),
            ]),
            id_local: Vec::new(),
            id_remote: Vec::new(),
            established: now,
            lifetime: 0,
            hard_expiry: None,
            soft_expiry: None,
            dpd: Default::default(),
            nat_t: None,
            cfg_address: None,
            cfg_peer_address: None,
            peer_creds: None,
        }
    }

    pub fn skeyid_d(&self) -> &[u8] {
        self.keys.part(0)
    }

    pub fn skeyid_a(&self) -> &[u8] {
        self.keys.part(1)
    }

    /// The phase 1 encryption key.
    pub fn ka(&self) -> &[u8] {
        self.keys.part(2)
    }

    /// The last CBC block of phase 1, from which phase 2 IVs are derived.
    pub fn last_block(&self) -> &[u8] {
        self.keys.part(3)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Dpd {
    /// The peer sent the DPD vendor ID: it answers R-U-THERE.
    pub peer: bool,
    /// The last protected message from the peer.
    pub heard: Time,
    /// The sequence number of our last R-U-THERE.
    pub seq: u32,
    /// R-U-THEREs sent without an ACK (0: none outstanding).
    pub tries: u8,
}

/// One IPsec SA pair (inbound and outbound) for one protocol of a phase 2 negotiation.
#[derive(Clone)]
pub struct IpsecSa {
    /// Its timers (hard expiry, soft expiry, the rekey pause), cancelled when it goes.
    pub timers: SaTimers,
    /// The IPsec-connection section, or a generated name for a passive match.
    pub name: String,
    pub icookie: [u8; 8],
    pub rcookie: [u8; 8],
    /// The Quick Mode's message ID (isakmpd's report shows it; 0 for IKEv2).
    pub msgid: u32,
    pub initiator: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub protocol: ProtocolId,
    pub transform: u8,
    pub auth: Option<AuthAlgorithm>,
    pub encapsulation: EncapsulationMode,
    pub key_bits: Option<u16>,
    pub pfs: Option<Group>,
    pub spi_in: [u8; 4],
    pub spi_out: [u8; 4],
    /// KEYMAT inbound and outbound (`keymat_in()`, `keymat_out()`).
    pub keymat: SecretParts<2>,
    pub enc_key_len: usize,
    pub auth_key_len: usize,
    pub local_id: OwnedId,
    pub remote_id: OwnedId,
    pub established: Time,
    pub lifetime: u64,
    /// The negotiated traffic limit in kilobytes (0: none); the kernel counts it.
    pub kbytes: u64,
    pub hard_expiry: Option<Time>,
    /// When to negotiate the replacement (isakmpd: 85-95 % of the lifetime).
    pub soft_expiry: Option<Time>,
    /// A replacement has been started; the SA stays until its hard expiry.
    pub rekeyed: bool,
    /// The kernel chose `spi_in` (GETSPI/ALLOCSPI): the inbound SA updates the larval
    /// state that reserved it instead of adding a new one.
    pub spi_from_kernel: bool,
    /// UDP encapsulation (NAT-T): our port and the peer's.
    pub encap: Option<(u16, u16)>,
    /// UDP-encapsulated transport: the peer's original address (its NAT-OA).
    pub peer_oa: Option<std::net::IpAddr>,
    /// Initiator of a rekey: the inbound half is in the kernel, the outbound half waits
    /// until the responder has had time to install the SA from message 3 (see
    /// `Engine::switch_outbound`).
    pub outbound_pending: bool,
    /// More pairs of client IDs whose flows go with the SA, after `local_id` and
    /// `remote_id` (an IKEv2 CHILD_SA negotiated for several traffic selector pairs);
    /// empty for IKEv1.
    pub more_flows: Vec<(OwnedId, OwnedId)>,
}

/// Flows as the kernel interface installs them: with an SA pair (its
/// [`IpsecSa::flow_set`]), or alone, for iked's policies, whose flows are in the kernel
/// before any SA so that the traffic they match makes the kernel ask for one (ACQUIRE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSet {
    /// The connection or policy: with the first pair it makes the reqid that ties the
    /// flows to the SA pairs negotiated for them.
    pub name: String,
    /// The tunnel's endpoints (transport mode: the peers, which are the flows too).
    pub local: std::net::IpAddr,
    pub remote: std::net::IpAddr,
    pub protocol: ProtocolId,
    pub encapsulation: EncapsulationMode,
    /// (local, remote) client IDs, one flow each way per pair.
    pub pairs: Vec<(OwnedId, OwnedId)>,
}

/// What the engine asks of the kernel. With `-n` the event loop only records these.
#[derive(Clone)]
pub enum KernelReq {
    /// Reserve an inbound SPI for `protocol` on SAs from `src` (the peer) to `dst` (us):
    /// SADB_GETSPI or XFRM_MSG_ALLOCSPI. Answered with [`KernelReply::Spi`].
    GetSpi {
        protocol: ProtocolId,
        src: IpAddr,
        dst: IpAddr,
    },
    /// Give back a reserved SPI that no SA came to use.
    DeleteSpi {
        protocol: ProtocolId,
        src: IpAddr,
        dst: IpAddr,
        spi: [u8; 4],
    },
    /// Install the given directions of an IPsec SA; with the outbound one go its flows
    /// (unless -a).
    AddSa(Box<IpsecSa>, Part),
    /// Remove the given directions of an IPsec SA, and with the outbound one its flows
    /// unless `keep_flows` (another SA of the same connection, e.g. its replacement
    /// after a rekey, still uses them).
    DeleteSa(Box<IpsecSa>, Part, bool),
    /// Update both directions of an installed UDP-encapsulated SA in place (its
    /// encapsulation ports followed the peer's NAT): XFRM_MSG_UPDSA, flows untouched.
    UpdateSa(Box<IpsecSa>),
    /// Move the given directions of an installed SA to new addresses (the second SA:
    /// the same SPIs and keys, MOBIKE's new addresses and encapsulation), its flows
    /// along: XFRM_MSG_MIGRATE where the kernel can (the sequence numbers and replay
    /// window go with it), else the old states and flows deleted and the new added.
    MigrateSa(Box<IpsecSa>, Box<IpsecSa>, Part),
    /// Flows without an SA (iked's policies at startup): traffic they match is held and
    /// makes the kernel send an ACQUIRE. They rank below an SA pair's flows, so that
    /// narrower selectors negotiated inside them win.
    AddFlows(Box<FlowSet>),
    /// Removes flows by their selectors (those of [`KernelReq::AddFlows`], or an SA
    /// pair's whose SA was deleted with `keep_flows`).
    DeleteFlows(Box<FlowSet>),
}

/// A kernel request with the ticket its answer will carry; 0 when no exchange waits for
/// the answer (deletions: the host only logs their failures).
#[derive(Clone, Debug)]
pub struct KernelOp {
    pub ticket: u32,
    pub req: KernelReq,
}

/// The kernel's answer to a [`KernelOp`], handed back by [`super::Engine::kernel_reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelReply {
    /// Every message of the request was accepted.
    Done,
    /// The SPI a GetSpi reserved.
    Spi([u8; 4]),
    /// The kernel refused, or did not answer in time.
    Failed(String),
}

/// Which directions of an IPsec SA a kernel request is about. A Quick Mode responder
/// installs its inbound SA before it sends message 2 and the rest on message 3, and an
/// initiator installs both before it sends message 3: then neither side ever sends on a
/// new SA its peer cannot yet decrypt (RFC 2409 5.5 leaves this timing to the
/// implementation; the COMMIT bit is its heavier answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Both,
    Inbound,
    Outbound,
}

impl Part {
    pub fn inbound(self) -> bool {
        self != Part::Outbound
    }
    pub fn outbound(self) -> bool {
        self != Part::Inbound
    }
}

impl std::fmt::Debug for KernelReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelReq::GetSpi { protocol, src, dst } => {
                write!(f, "GetSpi {protocol} from {src} to {dst}")
            }
            KernelReq::DeleteSpi {
                protocol,
                src,
                dst,
                spi,
            } => write!(f, "DeleteSpi {protocol} {} from {src} to {dst}", hex(spi)),
            KernelReq::AddSa(sa, part) => write!(
                f,
                "AddSa {} {part:?} {} spi in {} out {}",
                sa.name,
                sa.protocol,
                hex(&sa.spi_in),
                hex(&sa.spi_out)
            ),
            KernelReq::DeleteSa(sa, part, _) => write!(
                f,
                "DeleteSa {} {part:?} {} spi in {} out {}",
                sa.name,
                sa.protocol,
                hex(&sa.spi_in),
                hex(&sa.spi_out)
            ),
            KernelReq::UpdateSa(sa) => write!(
                f,
                "UpdateSa {} {} spi in {} out {} encap {:?}",
                sa.name,
                sa.protocol,
                hex(&sa.spi_in),
                hex(&sa.spi_out),
                sa.encap
            ),
            KernelReq::MigrateSa(old, sa, part) => write!(
                f,
                "MigrateSa {} {part:?} {} spi in {} out {}: {} -> {} to {} -> {}",
                sa.name,
                sa.protocol,
                hex(&sa.spi_in),
                hex(&sa.spi_out),
                old.local,
                old.remote,
                sa.local,
                sa.remote
            ),
            KernelReq::AddFlows(fs) | KernelReq::DeleteFlows(fs) => write!(
                f,
                "{} {} {} {} -> {}, {} pair(s)",
                if matches!(self, KernelReq::AddFlows(_)) {
                    "AddFlows"
                } else {
                    "DeleteFlows"
                },
                fs.name,
                fs.protocol,
                fs.local,
                fs.remote,
                fs.pairs.len()
            ),
        }
    }
}

impl IpsecSa {
    pub fn keymat_in(&self) -> &[u8] {
        self.keymat.part(0)
    }

    pub fn keymat_out(&self) -> &[u8] {
        self.keymat.part(1)
    }

    /// The flows that go with the SA pair: `local_id` to `remote_id`, then
    /// `more_flows`.
    pub fn flow_set(&self) -> FlowSet {
        let mut pairs = Vec::with_capacity(1 + self.more_flows.len());
        pairs.push((self.local_id.clone(), self.remote_id.clone()));
        pairs.extend(self.more_flows.iter().cloned());
        FlowSet {
            name: self.name.clone(),
            local: self.local.ip(),
            remote: self.remote.ip(),
            protocol: self.protocol,
            encapsulation: self.encapsulation,
            pairs,
        }
    }

    /// Whether `other` carries the same traffic (a replacement, or the SA it replaces).
    /// A digest of what [`Self::same_flows`] compares: the IPsec SA table's index key.
    /// (FNV-1a: the client IDs are an authenticated peer's; SAs whose digests collide
    /// only share a chain, which `same_flows` sorts out.)
    pub fn flow_key(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for &x in b {
                h = (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
        };
        eat(self.name.as_bytes());
        eat(&[self.protocol.0]);
        for id in [&self.local_id, &self.remote_id] {
            eat(&[id.ty.0, id.protocol]);
            eat(&id.port.to_be_bytes());
            eat(&id.data);
        }
        h
    }

    pub fn same_flows(&self, other: &IpsecSa) -> bool {
        self.name == other.name
            && self.protocol == other.protocol
            && self.local_id == other.local_id
            && self.remote_id == other.remote_id
    }

    /// The halves of this SA the kernel holds.
    pub fn installed(&self) -> Part {
        if self.outbound_pending {
            Part::Inbound
        } else {
            Part::Both
        }
    }

    /// "<protocol> spi in <spi> out <spi> with <peer>", for the log.
    pub fn describe(&self) -> String {
        format!(
            "{} spi in {} out {} with {}",
            self.protocol,
            hex(&self.spi_in),
            hex(&self.spi_out),
            self.remote
        )
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_generations_and_capacity() {
        let mut s: Slab<u32> = Slab::with_capacity(2);
        let a = s.insert(1).unwrap();
        let b = s.insert(2).unwrap();
        assert!(s.insert(3).is_none(), "full table refuses");
        assert_eq!(s.remove(a), Some(1));
        let c = s.insert(4).unwrap();
        assert_eq!(c.idx, a.idx);
        assert_eq!(s.get(a), None, "stale handle finds nothing");
        assert_eq!(s.get(c), Some(&4));
        assert_eq!(s.get(b), Some(&2));
        assert_eq!(s.len(), 2);
    }
}
