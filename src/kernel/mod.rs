//! The kernel side of the engine's requests: each [`KernelReq`] becomes XFRM netlink
//! messages ([`xfrm`]) or PF_KEY v2 messages ([`pfkey`]), which the privileged
//! parent relays for us.
//!
//! An SA pair becomes two states (inbound with our SPI and keys, outbound with the
//! peer's) and, unless -a, its flows: for tunnel mode an `out`, an `in` and a `fwd` policy
//! between the client IDs, for transport mode `out` and `in` between the peers, each
//! requiring the state by reqid. Deleting removes the same. Our inbound SPI is reserved
//! first (ALLOCSPI, GETSPI), so the inbound state updates that larval state. The
//! translation is a pure function ([`messages`], [`pfkey_messages`]); [`Kernel`] sends
//! without waiting and matches the answers to the engine's tickets as they come back.
//! The kernel answers every request, inside the parent's write(2) and in order, so a
//! request is failed as unanswered only after [`KERNEL_BUSY_MS`] of silence (the kernel
//! may load modules first), or [`ANSWER_TIMEOUT_MS`] after a later one was answered.
//!
//! Lifetimes: the engine expires SAs itself; the kernel gets the hard lifetime plus a
//! margin as a backstop, so that a daemon that died does not leave keys in force forever.

#![forbid(unsafe_code)]

use std::io;
use std::net::IpAddr;

use crate::ike::ipsec_alg;
use crate::ike::policy::OwnedId;
use crate::ike::sa::{hex, FlowSet, IpsecSa, KernelOp, KernelReply, KernelReq, Part};
use crate::ike::wire::{EncapsulationMode, IdType, ProtocolId};
use crate::timer::Time;

mod flows;
pub mod pfkey;
pub mod xfrm;

use flows::{pfkey_flow_messages, xfrm_flow_messages};

use xfrm::{PolicySpec, SaSpec, Selector};

/// Seconds the kernel's hard lifetime outlasts the engine's.
const KERNEL_LIFETIME_MARGIN: u64 = 60;
const POLICY_PRIORITY: u32 = 2000;
/// Flows without an SA (iked's policies): below an SA pair's flows (a larger number
/// ranks lower), so that narrower selectors negotiated inside them win.
const ACQUIRE_PRIORITY: u32 = POLICY_PRIORITY + 100;
/// The SPIs the kernel may hand us: above the range RFC 4303 reserves.
const SPI_MIN: u32 = 0x100;
const SPI_MAX: u32 = u32::MAX;

fn ipproto(p: ProtocolId) -> u8 {
    if p == ProtocolId::IPSEC_AH {
        51
    } else {
        50
    }
}

fn mode(e: EncapsulationMode) -> u8 {
    match e {
        EncapsulationMode::TRANSPORT
        | EncapsulationMode::UDP_ENCAP_TRANSPORT
        | EncapsulationMode::UDP_ENCAP_TRANSPORT_DRAFT => xfrm::MODE_TRANSPORT,
        _ => xfrm::MODE_TUNNEL,
    }
}

/// A client ID as address and prefix length; `None` for ranges and names.
fn prefix(id: &OwnedId) -> Option<(IpAddr, u8)> {
    let v4 = |b: &[u8]| -> Option<IpAddr> { Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)) };
    let v6 = |b: &[u8]| -> Option<IpAddr> { Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)) };
    let bits = |m: &[u8]| m.iter().map(|b| b.count_ones()).sum::<u32>() as u8;
    match id.ty {
        IdType::IPV4_ADDR => Some((v4(&id.data)?, 32)),
        IdType::IPV6_ADDR => Some((v6(&id.data)?, 128)),
        IdType::IPV4_ADDR_SUBNET if id.data.len() == 8 => {
            Some((v4(&id.data[..4])?, bits(&id.data[4..])))
        }
        IdType::IPV6_ADDR_SUBNET if id.data.len() == 32 => {
            Some((v6(&id.data[..16])?, bits(&id.data[16..])))
        }
        _ => None,
    }
}

/// The reqid tying SA pairs to their policies: one per connection and flow, so that the
/// replacement of a rekeyed SA pair is picked up by the same policies (the kernel prefers
/// the newest state for a template).
pub fn reqid(sa: &IpsecSa) -> u32 {
    reqid_of(&sa.name, &sa.local_id, &sa.remote_id, sa.protocol)
}

fn reqid_of(name: &str, local_id: &OwnedId, remote_id: &OwnedId, protocol: ProtocolId) -> u32 {
    // FNV-1a over the connection's name and client IDs.
    let mut h: u32 = 0x811c_9dc5;
    for b in name
        .as_bytes()
        .iter()
        .chain(&local_id.data)
        .chain(&remote_id.data)
        .chain(&[protocol.0])
    {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & 0x3fff_ffff | 0x4000_0000
}

/// The kernel's algorithms and keys for one direction's KEYMAT.
fn algorithms<'k>(
    sa: &IpsecSa,
    keymat: &'k [u8],
) -> Result<
    (
        Option<(&'static str, &'k [u8])>,
        Option<(&'static str, &'k [u8], u32)>,
        Option<(&'static str, &'k [u8], u32)>,
    ),
    String,
> {
    let el = sa.enc_key_len;
    let al = sa.auth_key_len;
    if keymat.len() < el + al {
        return Err("KEYMAT shorter than the keys".into());
    }
    let (ek, ak) = (&keymat[..el], &keymat[el..el + al]);
    let integrity = ipsec_alg::integrity_of(sa.protocol, sa.transform, sa.auth)
        .map_err(|_| format!("integrity of transform {} not supported", sa.transform))?;
    let auth =
        match integrity {
            Some(i) => Some(i.xfrm.map(|n| (n, ak, i.icv_bits)).ok_or_else(|| {
                format!("authentication algorithm {} not supported by XFRM", i.id)
            })?),
            None => None,
        };
    if sa.protocol == ProtocolId::IPSEC_AH {
        return match auth {
            Some(a) => Ok((None, Some(a), None)),
            None => Err(format!("AH transform {} not supported", sa.transform)),
        };
    }
    let c = ipsec_alg::cipher_by_id(sa.transform)
        .filter(|c| c.xfrm.is_some())
        .ok_or_else(|| format!("ESP transform {} not supported by XFRM", sa.transform))?;
    let name = c.xfrm.unwrap_or_default();
    if let Some(icv) = c.aead_icv_bits {
        return Ok((None, None, Some((name, ek, icv))));
    }
    Ok((Some((name, ek)), auth, None))
}

/// One message with what it is for (for the log).
pub struct Message {
    pub what: String,
    pub bytes: Vec<u8>,
    /// A failure of this one is expected at times (a policy another SA pair shares).
    pub quiet: bool,
}

fn host_bits(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// One direction of an SA pair as the kernel sees it: a state from `src` to `dst`.
struct Half<'a> {
    inbound: bool,
    spi: [u8; 4],
    keymat: &'a [u8],
    src: IpAddr,
    dst: IpAddr,
}

/// The directions of `sa` that `part` names, inbound first.
fn halves(sa: &IpsecSa, part: Part) -> impl Iterator<Item = Half<'_>> {
    let inbound = Half {
        inbound: true,
        spi: sa.spi_in,
        keymat: sa.keymat_in(),
        src: sa.remote.ip(),
        dst: sa.local.ip(),
    };
    let outbound = Half {
        inbound: false,
        spi: sa.spi_out,
        keymat: sa.keymat_out(),
        src: sa.local.ip(),
        dst: sa.remote.ip(),
    };
    [
        part.inbound().then_some(inbound),
        part.outbound().then_some(outbound),
    ]
    .into_iter()
    .flatten()
}

/// The kernel's byte limits for an SA: (soft, hard); the soft one at 90 % so that the
/// replacement is negotiated (on the kernel's soft EXPIRE) before the hard one removes it.
fn byte_limits(sa: &IpsecSa) -> (u64, u64) {
    let hard = sa.kbytes.saturating_mul(1024);
    (hard / 10 * 9, hard)
}

/// The kernel's hard lifetime: the engine's plus the margin (0: none).
fn kernel_hard_secs(sa: &IpsecSa) -> u64 {
    if sa.lifetime > 0 {
        sa.lifetime + KERNEL_LIFETIME_MARGIN
    } else {
        0
    }
}

/// The XFRM messages for one request, numbered from `seq`.
pub fn messages(req: &KernelReq, seq: &mut u32, flows_too: bool) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    let mut next = || {
        *seq = seq.wrapping_add(1).max(1);
        *seq
    };
    match req {
        KernelReq::GetSpi { protocol, src, dst } => {
            let mut b = Vec::new();
            xfrm::alloc_spi(
                &mut b,
                next(),
                *src,
                *dst,
                ipproto(*protocol),
                SPI_MIN,
                SPI_MAX,
            );
            out.push(Message {
                what: format!("reserve SPI {src}->{dst}"),
                bytes: b,
                quiet: false,
            });
        }
        KernelReq::DeleteSpi {
            protocol, dst, spi, ..
        } => {
            let mut b = Vec::new();
            xfrm::del_sa(&mut b, next(), *dst, *spi, ipproto(*protocol));
            out.push(Message {
                what: format!("release SPI {dst} {}", hex(spi)),
                bytes: b,
                quiet: true,
            });
        }
        KernelReq::AddSa(..) | KernelReq::UpdateSa(..) => {
            let (sa, part, update) = match req {
                KernelReq::AddSa(sa, part) => (sa, *part, false),
                KernelReq::UpdateSa(sa) => (sa, Part::Both, true),
                _ => return Ok(out),
            };
            // With -a the flows are the administrator's (ipsecctl, ip xfrm policy): their
            // templates carry no reqid, and the kernel matches an outbound template only
            // to a state of the same reqid, so the states get none either.
            let state_reqid = if flows_too { reqid(sa) } else { 0 };
            let flows_too = flows_too && part.outbound() && !update;
            let proto = ipproto(sa.protocol);
            let hard = kernel_hard_secs(sa);
            let (soft_bytes, hard_bytes) = byte_limits(sa);
            for Half {
                inbound,
                spi,
                keymat: km,
                src,
                dst,
            } in halves(sa, part)
            {
                let (enc, auth, aead) = algorithms(sa, km)?;
                let mut b = Vec::new();
                xfrm::new_sa(
                    &mut b,
                    next(),
                    &SaSpec {
                        src,
                        dst,
                        spi,
                        proto,
                        mode: mode(sa.encapsulation),
                        reqid: state_reqid,
                        enc,
                        auth,
                        aead,
                        soft_secs: 0,
                        hard_secs: hard,
                        // The state's own direction: the peer's port to ours inbound.
                        encap: sa.encap.map(|(l, r)| if inbound { (r, l) } else { (l, r) }),
                        encap_oa: sa.peer_oa,
                        update: update || (inbound && sa.spi_from_kernel),
                        soft_bytes,
                        hard_bytes,
                    },
                );
                out.push(Message {
                    what: format!(
                        "{} SA {src}->{dst} spi {}",
                        if update { "update" } else { "add" },
                        hex(&spi)
                    ),
                    bytes: b,
                    quiet: false,
                });
            }
            if flows_too {
                xfrm_flow_messages(&sa.flow_set(), true, POLICY_PRIORITY, &mut next, &mut out);
            }
        }
        KernelReq::DeleteSa(sa, part, keep_flows) => {
            let flows_too = flows_too && !keep_flows && part.outbound();
            let proto = ipproto(sa.protocol);
            for Half { dst, spi, .. } in halves(sa, *part) {
                let mut b = Vec::new();
                xfrm::del_sa(&mut b, next(), dst, spi, proto);
                // Quiet when already gone: the kernel removes a state itself at its hard
                // expiry.
                out.push(Message {
                    what: format!("delete SA {dst} spi {}", hex(&spi)),
                    bytes: b,
                    quiet: true,
                });
            }
            if flows_too {
                xfrm_flow_messages(&sa.flow_set(), false, 0, &mut next, &mut out);
            }
        }
        KernelReq::MigrateSa(old, new, part) => match migrations(old, new, *part, flows_too) {
            Some(moves) => {
                for (sel, dir, mv) in moves {
                    let mut b = Vec::new();
                    xfrm::migrate(&mut b, next(), &sel, dir, &mv);
                    out.push(Message {
                        what: format!(
                            "migrate {} -> {} to {} -> {} (dir {dir})",
                            mv.old_src, mv.old_dst, mv.new_src, mv.new_dst
                        ),
                        bytes: b,
                        quiet: false,
                    });
                }
            }
            None => {
                let del = KernelReq::DeleteSa(old.clone(), *part, false);
                out.extend(messages(&del, seq, flows_too)?);
                out.extend(messages(
                    &KernelReq::AddSa(new.clone(), *part),
                    seq,
                    flows_too,
                )?);
            }
        },
        KernelReq::AddFlows(fs) | KernelReq::DeleteFlows(fs) => {
            // With -a the flows are the administrator's.
            if flows_too {
                let adding = matches!(req, KernelReq::AddFlows(_));
                xfrm_flow_messages(fs, adding, ACQUIRE_PRIORITY, &mut next, &mut out);
            }
        }
    }
    Ok(out)
}

/// The XFRM_MSG_MIGRATEs that move SA pair `old` to `new`'s addresses: one per policy
/// of its flows (the out and in ones take their state along, fwd only its template).
/// None where MIGRATE cannot do it and the states are replaced instead: without flows
/// of ours (-a: no policy to name, and the states carry no reqid), one direction only,
/// in transport mode or with selectors made of the addresses (the selectors move too),
/// or when the UDP encapsulation goes away (MIGRATE keeps an old one).
fn migrations(
    old: &IpsecSa,
    new: &IpsecSa,
    part: Part,
    flows_too: bool,
) -> Option<Vec<(xfrm::Selector, u8, xfrm::MigrateSpec)>> {
    if !flows_too
        || part != Part::Both
        || mode(old.encapsulation) != xfrm::MODE_TUNNEL
        || (old.encap.is_some() && new.encap.is_none())
    {
        return None;
    }
    let (from, to) = (flows::flows(&old.flow_set()), flows::flows(&new.flow_set()));
    if from.len() != to.len() || from.iter().zip(&to).any(|(a, b)| (a.0, a.1) != (b.0, b.1)) {
        return None;
    }
    let reqid = reqid(old);
    let moves = from
        .into_iter()
        .zip(to)
        .map(|((sel, dir, old_src, old_dst), (_, _, new_src, new_dst))| {
            // The state's own direction: ours to the peer's port outbound.
            let encap = new.encap.map(|(l, r)| {
                if dir == xfrm::XFRM_POLICY_OUT {
                    (l, r)
                } else {
                    (r, l)
                }
            });
            let mv = xfrm::MigrateSpec {
                old_src,
                old_dst,
                new_src,
                new_dst,
                proto: ipproto(old.protocol),
                mode: xfrm::MODE_TUNNEL,
                reqid,
                encap,
            };
            (sel, dir, mv)
        })
        .collect();
    Some(moves)
}

/// The PF_KEY v2 messages for one request (Linux af_key or OpenBSD), numbered from
/// `seq`: an SADB_ADD or SADB_DELETE per direction, and the flows as SPD entries (Linux)
/// or flows (OpenBSD; no forward direction there).
pub fn pfkey_messages(
    req: &KernelReq,
    seq: &mut u32,
    flows_too: bool,
    platform: pfkey::Platform,
) -> Result<Vec<Message>, String> {
    let pid = std::process::id();
    let mut out = Vec::new();
    let mut next = || {
        *seq = seq.wrapping_add(1).max(1);
        *seq
    };
    let (sa, part, adding, keep_flows) = match req {
        KernelReq::AddFlows(fs) | KernelReq::DeleteFlows(fs) => {
            if flows_too {
                let adding = matches!(req, KernelReq::AddFlows(_));
                let p = (platform, pid, ACQUIRE_PRIORITY);
                pfkey_flow_messages(fs, adding, p, &mut next, &mut out)?;
            }
            return Ok(out);
        }
        KernelReq::AddSa(sa, part) => (sa, *part, true, false),
        KernelReq::DeleteSa(sa, part, keep) => (sa, *part, false, *keep),
        KernelReq::UpdateSa(_) => {
            return Err("UDP-encapsulated (NAT-T) SAs go through XFRM, not PF_KEY".into())
        }
        // PF_KEY has no MIGRATE of ours: the states and flows are replaced.
        KernelReq::MigrateSa(old, new, part) => {
            let del = KernelReq::DeleteSa(old.clone(), *part, false);
            let mut out = pfkey_messages(&del, seq, flows_too, platform)?;
            let add = KernelReq::AddSa(new.clone(), *part);
            out.extend(pfkey_messages(&add, seq, flows_too, platform)?);
            return Ok(out);
        }
        KernelReq::GetSpi { protocol, src, dst } => {
            let mut b = Vec::new();
            let proto = ipproto(*protocol);
            pfkey::getspi(
                &mut b,
                platform,
                next(),
                pid,
                *src,
                *dst,
                proto,
                SPI_MIN,
                SPI_MAX,
            )?;
            out.push(Message {
                what: format!("reserve SPI {src}->{dst}"),
                bytes: b,
                quiet: false,
            });
            return Ok(out);
        }
        KernelReq::DeleteSpi {
            protocol,
            src,
            dst,
            spi,
        } => {
            let mut b = Vec::new();
            let proto = ipproto(*protocol);
            pfkey::delete_sa(&mut b, platform, next(), pid, *src, *dst, *spi, proto)?;
            out.push(Message {
                what: format!("release SPI {dst} {}", hex(spi)),
                bytes: b,
                quiet: true,
            });
            return Ok(out);
        }
    };
    // af_key replaces a policy reqid above IPSEC_MANUAL_REQID_MAX (0x3fff) with one of its
    // own, which no state of ours would carry: PF_KEY reqids stay in 1..=0x3fff.
    if adding && sa.encap.is_some() {
        return Err("UDP-encapsulated (NAT-T) SAs go through XFRM, not PF_KEY".into());
    }
    let pf_reqid = reqid(sa) % 0x3fff + 1;
    let state_reqid = if flows_too { pf_reqid } else { 0 };
    let proto = ipproto(sa.protocol);
    let tunnel = mode(sa.encapsulation) == xfrm::MODE_TUNNEL;
    let (enc, auth) = pfkey_algorithms(sa, platform)?;
    let hard = kernel_hard_secs(sa);
    let (soft_bytes, hard_bytes) = byte_limits(sa);
    let el = sa.enc_key_len;
    for Half {
        inbound,
        spi,
        keymat: km,
        src,
        dst,
    } in halves(sa, part)
    {
        let mut b = Vec::new();
        if adding {
            if km.len() < el + sa.auth_key_len {
                return Err("KEYMAT shorter than the keys".into());
            }
            pfkey::add_sa(
                &mut b,
                platform,
                next(),
                pid,
                &pfkey::SaParams {
                    src,
                    dst,
                    spi,
                    proto,
                    enc,
                    auth,
                    enc_key: &km[..el],
                    auth_key: &km[el..el + sa.auth_key_len],
                    tunnel,
                    reqid: state_reqid,
                    hard_secs: hard,
                    // Never reached before the engine's own rekey and expiry; PF_KEY
                    // wants a soft limit whenever there is a hard one.
                    soft_secs: if hard > 0 {
                        sa.lifetime + KERNEL_LIFETIME_MARGIN / 2
                    } else {
                        0
                    },
                    update: inbound && sa.spi_from_kernel,
                    soft_bytes,
                    hard_bytes,
                },
            )?;
            out.push(Message {
                what: format!("add SA {src}->{dst} spi {}", hex(&spi)),
                bytes: b,
                quiet: false,
            });
        } else {
            pfkey::delete_sa(&mut b, platform, next(), pid, src, dst, spi, proto)?;
            out.push(Message {
                what: format!("delete SA {dst} spi {}", hex(&spi)),
                bytes: b,
                quiet: true,
            });
        }
    }
    if flows_too && part.outbound() && (!keep_flows || adding) {
        let p = (platform, pid, POLICY_PRIORITY);
        pfkey_flow_messages(&sa.flow_set(), adding, p, &mut next, &mut out)?;
    }
    Ok(out)
}

/// PF_KEY's numbers for an SA's cipher and authentication (0: none).
fn pfkey_algorithms(sa: &IpsecSa, platform: pfkey::Platform) -> Result<(u8, u8), String> {
    let integrity = ipsec_alg::integrity_of(sa.protocol, sa.transform, sa.auth)
        .map_err(|_| format!("integrity of transform {} not supported", sa.transform))?;
    if platform == pfkey::Platform::Linux && integrity.is_some_and(|i| !i.pfkey_linux) {
        // af_key would install a 96-bit ICV where RFC 4868 wants 128: never mismatch.
        return Err("HMAC-SHA2 through Linux PF_KEY gets a 96-bit ICV; use XFRM".into());
    }
    let auth = match integrity {
        Some(i) => i
            .pfkey
            .ok_or_else(|| format!("authentication algorithm {} not supported by PF_KEY", i.id))?,
        None => 0,
    };
    if sa.protocol == ProtocolId::IPSEC_AH {
        return Ok((0, auth));
    }
    let enc = ipsec_alg::cipher_by_id(sa.transform)
        .and_then(|c| c.pfkey)
        .ok_or_else(|| format!("ESP transform {} not supported by PF_KEY", sa.transform))?;
    Ok((enc, auth))
}

/// How long a kernel request may go unanswered, once the kernel has answered a request
/// sent after it, before the exchange waiting for it is told it failed: its answer was
/// lost (the parent's netlink socket overran, the relay's queue was full).
pub const ANSWER_TIMEOUT_MS: u64 = 5000;

/// How long a kernel request may go unanswered while nothing sent after it has been
/// answered either. The kernel handles a request inside the parent's write(2), and
/// answers every one before the write returns; the parent passes requests on in order.
/// So silence means the parent is still in the kernel, not that the answer was lost:
/// the first state with an algorithm the running kernel has not used yet (an
/// `authenc(hmac(sha256),cbc(aes))` or `rfc4106(gcm(aes))` ESP state) makes it load
/// modules (request_module runs modprobe, several times) and instantiate and self-test
/// the crypto templates first (authenc, echainiv and the DRBG with jitterentropy behind
/// it): the VM test's first state kept the parent in write(2) for 7.6 and 12 s under qemu
/// TCG. The kernel itself gives a crypto algorithm being set up 60 s (crypto_larval_wait);
/// so do we.
pub const KERNEL_BUSY_MS: u64 = 60_000;

/// The engine's requests in flight to the kernel, and what comes back. Messages go
/// through the privileged parent (Linux checks the sending task's CAP_NET_ADMIN for
/// XFRM; PF_KEY sockets need it to be opened), which relays only the request types the
/// daemon sends and passes back everything the kernel answers or announces. Nothing here
/// blocks: [`Kernel::submit`] sends, [`Kernel::receive`] matches answers to requests by
/// sequence number, [`Kernel::expire`] fails what went unanswered.
pub struct Kernel {
    seq: u32,
    pub flows: bool,
    pub dialect: Dialect,
    pub errors: u64,
    pub installed: u64,
    /// Our PF_KEY sadb_msg_pid: answers to our requests carry it.
    pid: u32,
    pending: Vec<Pending>,
    tickets: Vec<TicketState>,
    /// How many messages have been sent: each pending one's place in the parent's
    /// (first in, first out) order.
    sent: u64,
}

/// One message sent and not yet answered.
struct Pending {
    seq: u32,
    /// PF_KEY: the message type the answer carries.
    ty: u8,
    ticket: u32,
    what: String,
    quiet: bool,
    /// Its place among the messages sent (see [`Kernel::sent`]).
    order: u64,
    /// Past this it fails: [`KERNEL_BUSY_MS`] after it was sent, brought forward to
    /// [`ANSWER_TIMEOUT_MS`] after an answer to a later message overtook it.
    deadline: Time,
    /// An answer to a message sent after this one has come.
    overtaken: bool,
}

/// An engine request (ticket) whose messages are not all answered yet.
struct TicketState {
    ticket: u32,
    left: usize,
    spi: Option<[u8; 4]>,
    error: Option<String>,
}

/// What the kernel announces unasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Traffic hit a policy without an SA: the flow (when the message names it) and the
    /// SA's destination, our peer.
    Acquire {
        flow: Option<(IpAddr, IpAddr)>,
        peer: IpAddr,
    },
    Expire {
        dst: IpAddr,
        spi: [u8; 4],
        proto: u8,
        hard: bool,
    },
}

/// Which interface the requests are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Xfrm,
    Pfkey(pfkey::Platform),
}

impl Kernel {
    pub fn new(flows: bool, dialect: Dialect) -> Kernel {
        Kernel {
            seq: 0,
            flows,
            dialect,
            errors: 0,
            installed: 0,
            pid: std::process::id(),
            pending: Vec::new(),
            tickets: Vec::new(),
            sent: 0,
        }
    }

    /// True when nothing is waiting for the kernel.
    pub fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the oldest unanswered message times out.
    pub fn next_deadline(&self) -> Option<Time> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Translates and sends one engine request; answers for the engine that are already
    /// known (the translation or the send failed, nothing to send) go to `done`.
    pub fn submit(
        &mut self,
        now: Time,
        op: &KernelOp,
        send: &mut dyn FnMut(&[u8]) -> Result<(), String>,
        done: &mut Vec<(u32, KernelReply)>,
    ) {
        let made = match self.dialect {
            Dialect::Xfrm => messages(&op.req, &mut self.seq, self.flows),
            Dialect::Pfkey(p) => pfkey_messages(&op.req, &mut self.seq, self.flows, p),
        };
        let msgs = match made {
            Ok(m) => m,
            Err(e) => {
                crate::log_error!("kernel: {:?}: {e}", op.req);
                self.errors += 1;
                if op.ticket != 0 {
                    done.push((op.ticket, KernelReply::Failed(e)));
                }
                return;
            }
        };
        let mut sent = 0;
        let mut failure = None;
        for m in msgs {
            if let Err(e) = send(&m.bytes) {
                self.errors += 1;
                crate::log_error!("kernel: {}: {e}", m.what);
                failure.get_or_insert(e);
                continue;
            }
            crate::ike_debug!(
                crate::log::DebugClass::Sysdep,
                30,
                "kernel: sent {}",
                m.what
            );
            // Both headers keep the sequence number at bytes 8..12; PF_KEY answers also
            // carry the request's type (byte 1).
            let seq = u32::from_ne_bytes([m.bytes[8], m.bytes[9], m.bytes[10], m.bytes[11]]);
            let ty = match self.dialect {
                Dialect::Xfrm => 0,
                Dialect::Pfkey(_) => m.bytes[1],
            };
            self.sent += 1;
            self.pending.push(Pending {
                seq,
                ty,
                ticket: op.ticket,
                what: m.what,
                quiet: m.quiet,
                order: self.sent,
                deadline: now.add_millis(KERNEL_BUSY_MS),
                overtaken: false,
            });
            sent += 1;
        }
        if op.ticket == 0 {
            return;
        }
        if sent == 0 {
            let why = failure.unwrap_or_default();
            done.push((
                op.ticket,
                if why.is_empty() {
                    KernelReply::Done
                } else {
                    KernelReply::Failed(why)
                },
            ));
            return;
        }
        self.tickets.push(TicketState {
            ticket: op.ticket,
            left: sent,
            spi: None,
            error: failure,
        });
    }

    /// One datagram from the kernel (through the parent), at `now`: answers to our
    /// requests go to `done` once a request is complete, announcements to `events`.
    pub fn receive(
        &mut self,
        now: Time,
        buf: &[u8],
        done: &mut Vec<(u32, KernelReply)>,
        events: &mut Vec<Event>,
    ) {
        match self.dialect {
            Dialect::Xfrm => {
                for r in xfrm::replies(buf) {
                    match r {
                        xfrm::Reply::Ack { seq, errno } => self.answered(now, seq, 0, errno, done),
                        xfrm::Reply::Sa { seq, spi } => self.spi_for(seq, spi),
                        xfrm::Reply::Other(_) => {}
                    }
                }
                for ev in xfrm::events(buf) {
                    events.push(match ev {
                        xfrm::Event::Acquire(a) => Event::Acquire {
                            flow: Some((a.sel.src, a.sel.dst)),
                            peer: a.dst,
                        },
                        xfrm::Event::Expire(x) => Event::Expire {
                            dst: x.dst,
                            spi: x.spi,
                            proto: x.proto,
                            hard: x.hard,
                        },
                    });
                }
            }
            Dialect::Pfkey(platform) => {
                let Some(m) = pfkey::parse(buf) else {
                    crate::ike_debug!(
                        crate::log::DebugClass::Sysdep,
                        10,
                        "kernel: malformed PF_KEY message"
                    );
                    return;
                };
                if m.pid == self.pid && self.pending.iter().any(|p| p.seq == m.seq && p.ty == m.ty)
                {
                    if let Some(spi) = pfkey::getspi_answer(&m) {
                        self.spi_for(m.seq, spi);
                    }
                    self.answered(now, m.seq, m.ty, i32::from(m.errno), done);
                } else if let Some(a) = pfkey::acquire(platform, &m) {
                    // af_key names the SA's endpoints, not the flow.
                    events.push(Event::Acquire {
                        flow: None,
                        peer: a.dst,
                    });
                } else if let Some(x) = pfkey::expire(platform, &m) {
                    events.push(Event::Expire {
                        dst: x.dst,
                        spi: x.spi,
                        proto: x.proto,
                        hard: x.hard,
                    });
                }
            }
        }
    }

    /// Fails every message unanswered past its deadline.
    pub fn expire(&mut self, now: Time, done: &mut Vec<(u32, KernelReply)>) {
        while let Some(p) = self.pending.iter().find(|p| p.deadline <= now) {
            let (seq, ty) = (p.seq, p.ty);
            self.answered(now, seq, ty, -1, done);
        }
    }

    fn spi_for(&mut self, seq: u32, spi: [u8; 4]) {
        let Some(p) = self.pending.iter().find(|p| p.seq == seq) else {
            return;
        };
        let ticket = p.ticket;
        if let Some(t) = self.tickets.iter_mut().find(|t| t.ticket == ticket) {
            t.spi = Some(spi);
        }
    }

    /// The answer to message `seq` (errno 0: accepted; -1: no answer in time).
    fn answered(
        &mut self,
        now: Time,
        seq: u32,
        ty: u8,
        errno: i32,
        done: &mut Vec<(u32, KernelReply)>,
    ) {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.seq == seq && (ty == 0 || p.ty == ty))
        else {
            return;
        };
        let p = self.pending.swap_remove(i);
        if errno != -1 {
            // The parent is past every message sent before this one, and the kernel
            // answered each of those before this: an answer still missing was lost, or
            // is a moment behind (an error the parent made up for a later message can
            // overtake it). Those get the short timeout from now on.
            for q in self.pending.iter_mut() {
                if q.order < p.order && !q.overtaken {
                    q.overtaken = true;
                    q.deadline = q.deadline.min(now.add_millis(ANSWER_TIMEOUT_MS));
                }
            }
        }
        let failure = match errno {
            0 => {
                self.installed += 1;
                crate::ike_debug!(crate::log::DebugClass::Sysdep, 20, "kernel: {}", p.what);
                None
            }
            -1 => {
                self.errors += 1;
                crate::log_error!("kernel: {}: no answer", p.what);
                Some("no answer from the kernel".to_string())
            }
            n => {
                let text = io::Error::from_raw_os_error(n).to_string();
                if p.quiet && matches!(n, libc::EEXIST | libc::ENOENT | libc::ESRCH) {
                    crate::ike_debug!(
                        crate::log::DebugClass::Sysdep,
                        10,
                        "kernel: {}: {text}",
                        p.what
                    );
                    None
                } else {
                    self.errors += 1;
                    crate::log_error!("kernel: {}: {text}", p.what);
                    Some(format!("{}: {text}", p.what))
                }
            }
        };
        if p.ticket == 0 {
            return;
        }
        let Some(k) = self.tickets.iter().position(|t| t.ticket == p.ticket) else {
            return;
        };
        let t = &mut self.tickets[k];
        t.left -= 1;
        if t.error.is_none() {
            t.error = failure;
        }
        if t.left == 0 {
            let t = self.tickets.swap_remove(k);
            let reply = match (t.error, t.spi) {
                (Some(e), _) => KernelReply::Failed(e),
                (None, Some(spi)) => KernelReply::Spi(spi),
                (None, None) => KernelReply::Done,
            };
            done.push((t.ticket, reply));
        }
    }
}

#[cfg(test)]
mod tests;
