//! The kernel side of the engine's requests on Linux: each [`KernelReq`] becomes XFRM
//! netlink messages (src/xfrm.rs), which the privileged parent sends for us.
//!
//! An SA pair becomes two XFRM states (inbound with our SPI and keys, outbound with the
//! peer's) and, unless -a, its flows: for tunnel mode an `out`, an `in` and a `fwd` policy
//! between the client IDs, for transport mode `out` and `in` between the peers, each
//! requiring the state by reqid. Deleting removes the same. The translation is a pure
//! function ([`messages`]); the socket part only sends and logs the kernel's answers.
//!
//! Lifetimes: the engine expires SAs itself; the kernel gets the hard lifetime plus a
//! margin as a backstop, so that a daemon that died does not leave keys in force forever.

use std::io;
use std::net::IpAddr;

use crate::ike::policy::OwnedId;
use crate::ike::sa::{hex, IpsecSa, KernelReq, Part};
use crate::ike::wire::{EncapsulationMode, IdType, ProtocolId};
use crate::pfkey;
use crate::xfrm::{self, PolicySpec, SaSpec, Selector};

/// Seconds the kernel's hard lifetime outlasts the engine's.
const KERNEL_LIFETIME_MARGIN: u64 = 60;
const POLICY_PRIORITY: u32 = 2000;

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
    // FNV-1a over the connection's name and client IDs.
    let mut h: u32 = 0x811c_9dc5;
    for b in sa
        .name
        .as_bytes()
        .iter()
        .chain(&sa.local_id.data)
        .chain(&sa.remote_id.data)
        .chain(&[sa.protocol.0])
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
    let auth = |a: u16| {
        xfrm::auth_alg(a)
            .map(|(n, icv)| (n, ak, icv))
            .ok_or_else(|| format!("authentication algorithm {a} not supported by XFRM"))
    };
    if sa.protocol == ProtocolId::IPSEC_AH {
        let a = match (sa.auth, sa.transform) {
            (Some(a), _) => a.0,
            (None, 2) => 1,
            (None, 3) => 2,
            (None, t @ 5..=7) => u16::from(t),
            (None, 8) => 8,
            (None, t) => return Err(format!("AH transform {t} not supported")),
        };
        return Ok((None, Some(auth(a)?), None));
    }
    let (name, aead) = xfrm::esp_cipher(sa.transform)
        .ok_or_else(|| format!("ESP transform {} not supported by XFRM", sa.transform))?;
    if aead {
        return Ok((None, None, Some((name, ek, 128))));
    }
    let a = match sa.auth {
        Some(a) => Some(auth(a.0)?),
        None => None,
    };
    Ok((Some((name, ek)), a, None))
}

/// One message with what it is for (for the log).
pub struct Message {
    pub what: String,
    pub bytes: Vec<u8>,
    /// A failure of this one is expected at times (a policy another SA pair shares).
    pub quiet: bool,
}

/// The selector and template endpoints of each policy of `sa`: (selector, dir, src, dst).
fn flows(sa: &IpsecSa) -> Vec<(Selector, u8, IpAddr, IpAddr)> {
    let (l, r) = (sa.local.ip(), sa.remote.ip());
    let m = mode(sa.encapsulation);
    let (lid, rid) = if m == xfrm::MODE_TUNNEL {
        match (prefix(&sa.local_id), prefix(&sa.remote_id)) {
            (Some(a), Some(b)) => (a, b),
            _ => ((l, host_bits(l)), (r, host_bits(r))),
        }
    } else {
        ((l, host_bits(l)), (r, host_bits(r)))
    };
    let proto = sa.local_id.protocol;
    let out = Selector {
        src: lid.0,
        src_prefix: lid.1,
        dst: rid.0,
        dst_prefix: rid.1,
        proto,
        sport: sa.local_id.port,
        dport: sa.remote_id.port,
    };
    let inb = Selector {
        src: rid.0,
        src_prefix: rid.1,
        dst: lid.0,
        dst_prefix: lid.1,
        proto,
        sport: sa.remote_id.port,
        dport: sa.local_id.port,
    };
    let mut v = vec![
        (out, xfrm::XFRM_POLICY_OUT, l, r),
        (inb, xfrm::XFRM_POLICY_IN, r, l),
    ];
    if m == xfrm::MODE_TUNNEL {
        v.push((inb, xfrm::XFRM_POLICY_FWD, r, l));
    }
    v
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
    spi: [u8; 4],
    keymat: &'a [u8],
    src: IpAddr,
    dst: IpAddr,
}

/// The directions of `sa` that `part` names, inbound first.
fn halves(sa: &IpsecSa, part: Part) -> impl Iterator<Item = Half<'_>> {
    let inbound = Half {
        spi: sa.spi_in,
        keymat: sa.keymat_in.as_bytes(),
        src: sa.remote.ip(),
        dst: sa.local.ip(),
    };
    let outbound = Half {
        spi: sa.spi_out,
        keymat: sa.keymat_out.as_bytes(),
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
        KernelReq::AddSa(sa, part) => {
            // With -a the flows are the administrator's (ipsecctl, ip xfrm policy): their
            // templates carry no reqid, and the kernel matches an outbound template only
            // to a state of the same reqid, so the states get none either.
            let state_reqid = if flows_too { reqid(sa) } else { 0 };
            let flows_too = flows_too && part.outbound();
            let proto = ipproto(sa.protocol);
            let hard = kernel_hard_secs(sa);
            for Half {
                spi,
                keymat: km,
                src,
                dst,
            } in halves(sa, *part)
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
                        encap: None,
                    },
                );
                out.push(Message {
                    what: format!("add SA {src}->{dst} spi {}", hex(&spi)),
                    bytes: b,
                    quiet: false,
                });
            }
            if flows_too {
                for (sel, dir, src, dst) in flows(sa) {
                    let mut b = Vec::new();
                    xfrm::new_policy(
                        &mut b,
                        next(),
                        &PolicySpec {
                            sel,
                            dir,
                            priority: POLICY_PRIORITY,
                            tmpl_src: src,
                            tmpl_dst: dst,
                            proto,
                            mode: mode(sa.encapsulation),
                            reqid: reqid(sa),
                        },
                    );
                    out.push(Message {
                        what: format!(
                            "add flow {}/{} -> {}/{} dir {dir}",
                            sel.src, sel.src_prefix, sel.dst, sel.dst_prefix
                        ),
                        bytes: b,
                        quiet: true,
                    });
                }
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
                for (sel, dir, _, _) in flows(sa) {
                    let mut b = Vec::new();
                    xfrm::del_policy(&mut b, next(), &sel, dir);
                    out.push(Message {
                        what: format!(
                            "delete flow {}/{} -> {}/{} dir {dir}",
                            sel.src, sel.src_prefix, sel.dst, sel.dst_prefix
                        ),
                        bytes: b,
                        quiet: true,
                    });
                }
            }
        }
    }
    Ok(out)
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
        KernelReq::AddSa(sa, part) => (sa, *part, true, false),
        KernelReq::DeleteSa(sa, part, keep) => (sa, *part, false, *keep),
    };
    // af_key replaces a policy reqid above IPSEC_MANUAL_REQID_MAX (0x3fff) with one of its
    // own, which no state of ours would carry: PF_KEY reqids stay in 1..=0x3fff.
    let pf_reqid = reqid(sa) % 0x3fff + 1;
    let state_reqid = if flows_too { pf_reqid } else { 0 };
    let proto = ipproto(sa.protocol);
    let tunnel = mode(sa.encapsulation) == xfrm::MODE_TUNNEL;
    let (enc, auth) = pfkey_algorithms(sa, platform)?;
    let hard = kernel_hard_secs(sa);
    let el = sa.enc_key_len;
    for Half {
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
    if flows_too && part.outbound() && !(keep_flows && !adding) {
        for (sel, dir, src, dst) in flows(sa) {
            let dir = match (platform, dir) {
                (pfkey::Platform::Linux, xfrm::XFRM_POLICY_OUT) => pfkey::IPSEC_DIR_OUTBOUND,
                (pfkey::Platform::Linux, xfrm::XFRM_POLICY_IN) => pfkey::IPSEC_DIR_INBOUND,
                (pfkey::Platform::Linux, _) => pfkey::IPSEC_DIR_FWD,
                (pfkey::Platform::OpenBsd, xfrm::XFRM_POLICY_OUT) => pfkey::OBSD_DIRECTION_OUT,
                (pfkey::Platform::OpenBsd, xfrm::XFRM_POLICY_IN) => pfkey::OBSD_DIRECTION_IN,
                (pfkey::Platform::OpenBsd, _) => continue,
            };
            let mut b = Vec::new();
            pfkey::flow(
                &mut b,
                platform,
                adding,
                next(),
                pid,
                &pfkey::Flow {
                    src: sel.src,
                    src_prefix: sel.src_prefix,
                    dst: sel.dst,
                    dst_prefix: sel.dst_prefix,
                    proto: sel.proto,
                    sport: sel.sport,
                    dport: sel.dport,
                    dir,
                    tmpl_src: src,
                    tmpl_dst: dst,
                    tunnel,
                    sa_proto: proto,
                    reqid: pf_reqid,
                    priority: POLICY_PRIORITY,
                },
            )?;
            out.push(Message {
                what: format!(
                    "{} flow {}/{} -> {}/{} dir {dir}",
                    if adding { "add" } else { "delete" },
                    sel.src,
                    sel.src_prefix,
                    sel.dst,
                    sel.dst_prefix
                ),
                bytes: b,
                quiet: true,
            });
        }
    }
    Ok(out)
}

/// PF_KEY's numbers for an SA's cipher and authentication (0: none).
fn pfkey_algorithms(sa: &IpsecSa, platform: pfkey::Platform) -> Result<(u8, u8), String> {
    let auth_id = if sa.protocol == ProtocolId::IPSEC_AH {
        match (sa.auth, sa.transform) {
            (Some(a), _) => Some(a.0),
            (None, 2) => Some(1),
            (None, 3) => Some(2),
            (None, t @ 5..=8) => Some(u16::from(t)),
            (None, t) => return Err(format!("AH transform {t} not supported")),
        }
    } else {
        sa.auth.map(|a| a.0)
    };
    if platform == pfkey::Platform::Linux && matches!(auth_id, Some(5..=7)) {
        // af_key would install a 96-bit ICV where RFC 4868 wants 128: never mismatch.
        return Err("HMAC-SHA2 through Linux PF_KEY gets a 96-bit ICV; use XFRM".into());
    }
    let auth = match auth_id {
        Some(a) => pfkey::auth_alg(a)
            .ok_or_else(|| format!("authentication algorithm {a} not supported by PF_KEY"))?,
        None => 0,
    };
    if sa.protocol == ProtocolId::IPSEC_AH {
        return Ok((0, auth));
    }
    let enc = pfkey::esp_alg(sa.transform)
        .ok_or_else(|| format!("ESP transform {} not supported by PF_KEY", sa.transform))?;
    Ok((enc, auth))
}

/// Sends the engine's requests and keeps count. The messages go through the privileged
/// parent (Linux checks the sending task's CAP_NET_ADMIN for XFRM), which forwards only
/// these request types and answers with the kernel's errno.
pub struct Kernel {
    seq: u32,
    pub flows: bool,
    pub dialect: Dialect,
    pub errors: u64,
    pub installed: u64,
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
        }
    }

    pub fn submit(&mut self, req: &KernelReq, send: &mut dyn FnMut(&[u8]) -> Result<i32, String>) {
        let made = match self.dialect {
            Dialect::Xfrm => messages(req, &mut self.seq, self.flows),
            Dialect::Pfkey(p) => pfkey_messages(req, &mut self.seq, self.flows, p),
        };
        let msgs = match made {
            Ok(m) => m,
            Err(e) => {
                log::error!("kernel: {req:?}: {e}");
                self.errors += 1;
                return;
            }
        };
        for m in msgs {
            match send(&m.bytes) {
                Ok(_) => {
                    self.installed += 1;
                    crate::ike_debug!(crate::log::DebugClass::Sysdep, 20, "kernel: {}", m.what);
                }
                Err(e) => {
                    let errno = e.strip_prefix("errno ").and_then(|n| n.parse::<i32>().ok());
                    let text =
                        errno.map_or(e.clone(), |n| io::Error::from_raw_os_error(n).to_string());
                    if m.quiet && matches!(errno, Some(libc::EEXIST | libc::ENOENT | libc::ESRCH)) {
                        crate::ike_debug!(
                            crate::log::DebugClass::Sysdep,
                            10,
                            "kernel: {}: {text}",
                            m.what
                        );
                    } else {
                        self.errors += 1;
                        log::error!("kernel: {}: {text}", m.what);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::Keymat;
    use crate::ike::wire::AuthAlgorithm;

    fn sa() -> IpsecSa {
        let id = |net: [u8; 4]| OwnedId {
            ty: IdType::IPV4_ADDR_SUBNET,
            protocol: 0,
            port: 0,
            data: [&net[..], &[255, 255, 255, 0]].concat(),
        };
        IpsecSa {
            name: "t".into(),
            icookie: [1; 8],
            rcookie: [2; 8],
            initiator: true,
            local: "192.0.2.1:500".parse().unwrap(),
            remote: "192.0.2.2:500".parse().unwrap(),
            protocol: ProtocolId::IPSEC_ESP,
            transform: 12,
            auth: Some(AuthAlgorithm::HMAC_SHA2_256),
            encapsulation: EncapsulationMode::TUNNEL,
            key_bits: Some(128),
            pfs: None,
            spi_in: [0, 0, 1, 2],
            spi_out: [0, 0, 3, 4],
            keymat_in: Keymat::from_slice(&[1; 48]).unwrap(),
            keymat_out: Keymat::from_slice(&[2; 48]).unwrap(),
            enc_key_len: 16,
            auth_key_len: 32,
            local_id: id([198, 51, 100, 0]),
            remote_id: id([203, 0, 113, 0]),
            established: crate::timer::Time(0),
            lifetime: 1200,
            hard_expiry: None,
            soft_expiry: None,
            rekeyed: false,
        }
    }

    #[test]
    fn an_sa_pair_becomes_two_states_and_three_tunnel_policies() {
        let mut seq = 0;
        let m = messages(
            &KernelReq::AddSa(Box::new(sa()), Part::Both),
            &mut seq,
            true,
        )
        .unwrap();
        let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "add SA 192.0.2.2->192.0.2.1 spi 00000102",
                "add SA 192.0.2.1->192.0.2.2 spi 00000304",
                "add flow 198.51.100.0/24 -> 203.0.113.0/24 dir 1",
                "add flow 203.0.113.0/24 -> 198.51.100.0/24 dir 0",
                "add flow 203.0.113.0/24 -> 198.51.100.0/24 dir 2",
            ]
        );
        // The outbound state carries the outbound keys, split into cipher and HMAC.
        let out = &m[1].bytes;
        let crypt = out.windows(8).position(|w| w == b"cbc(aes)").unwrap();
        assert_eq!(&out[crypt + 68..crypt + 84], &[2; 16]);
        assert!(out.windows(12).any(|w| w == b"hmac(sha256)"));
        let m = messages(
            &KernelReq::DeleteSa(Box::new(sa()), Part::Both, false),
            &mut seq,
            false,
        )
        .unwrap();
        assert_eq!(m.len(), 2, "-a: no flows to remove");
        assert_eq!(seq, 7);
    }

    #[test]
    fn a_responder_installs_inbound_first_then_outbound_with_flows() {
        let mut seq = 0;
        let m = messages(
            &KernelReq::AddSa(Box::new(sa()), Part::Inbound),
            &mut seq,
            true,
        )
        .unwrap();
        let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(what, ["add SA 192.0.2.2->192.0.2.1 spi 00000102"]);
        let m = messages(
            &KernelReq::AddSa(Box::new(sa()), Part::Outbound),
            &mut seq,
            true,
        )
        .unwrap();
        let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(what[0], "add SA 192.0.2.1->192.0.2.2 spi 00000304");
        assert_eq!(what.len(), 4, "outbound brings the flows: {what:?}");
        // An exchange that never got message 3 takes back only what it installed.
        let m = messages(
            &KernelReq::DeleteSa(Box::new(sa()), Part::Inbound, false),
            &mut seq,
            true,
        )
        .unwrap();
        let what: Vec<&str> = m.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(what, ["delete SA 192.0.2.1 spi 00000102"]);
    }

    #[test]
    fn unsupported_transforms_are_refused_not_mangled() {
        let mut s = sa();
        s.transform = 99;
        assert!(messages(&KernelReq::AddSa(Box::new(s), Part::Both), &mut 0, true).is_err());
    }

    #[test]
    fn pfkey_translation_for_linux_and_openbsd() {
        use crate::pfkey::{parse, Platform};
        let mut seq = 0;
        // HMAC-SHA2-256 through Linux af_key would get a 96-bit ICV: refused, not sent.
        let e = pfkey_messages(
            &KernelReq::AddSa(Box::new(sa()), Part::Both),
            &mut seq,
            true,
            Platform::Linux,
        );
        assert!(e.err().is_some_and(|e| e.contains("96-bit")));
        let mut s = sa();
        s.auth = Some(AuthAlgorithm(2)); // HMAC-SHA1
        s.auth_key_len = 20;
        s.keymat_in = Keymat::from_slice(&[1; 36]).unwrap();
        s.keymat_out = Keymat::from_slice(&[2; 36]).unwrap();
        let m = pfkey_messages(
            &KernelReq::AddSa(Box::new(s.clone()), Part::Both),
            &mut seq,
            true,
            Platform::Linux,
        )
        .unwrap();
        let types: Vec<u8> = m.iter().map(|m| parse(&m.bytes).unwrap().ty).collect();
        assert_eq!(
            types,
            [3, 3, 14, 14, 14],
            "two SADB_ADD, three SADB_X_SPDADD"
        );
        // The SA's reqid (sadb_x_sa2, last 4 bytes) is the policy's (ipsecrequest at
        // offset 16 of the policy extension, reqid at +8), and af_key keeps it only
        // up to 0x3fff.
        let add = parse(&m[0].bytes).unwrap();
        let sa2 = add.ext(crate::pfkey::LINUX_EXT_X_SA2).unwrap();
        let sa_reqid = u32::from_ne_bytes(sa2[12..16].try_into().unwrap());
        let pol = parse(&m[2].bytes).unwrap();
        let x = pol.ext(crate::pfkey::LINUX_EXT_X_POLICY).unwrap();
        let pol_reqid = u32::from_ne_bytes(x[24..28].try_into().unwrap());
        assert_eq!(sa_reqid, pol_reqid);
        assert!((1..=0x3fff).contains(&sa_reqid), "{sa_reqid:#x}");
        assert!(m[1].what.ends_with("spi 00000304"));
        let out = parse(&m[1].bytes).unwrap();
        // The outbound SA carries the outbound keys: AES key then the HMAC key.
        let k = out.ext(crate::pfkey::SADB_EXT_KEY_ENCRYPT).unwrap();
        assert_eq!(&k[8..24], &[2; 16]);
        let m = pfkey_messages(
            &KernelReq::AddSa(Box::new(s.clone()), Part::Both),
            &mut seq,
            true,
            Platform::OpenBsd,
        )
        .unwrap();
        let types: Vec<u8> = m.iter().map(|m| parse(&m.bytes).unwrap().ty).collect();
        assert_eq!(types, [3, 3, 12, 12], "OpenBSD: ADDFLOW out and in, no fwd");
        let m = pfkey_messages(
            &KernelReq::DeleteSa(Box::new(s), Part::Both, true),
            &mut seq,
            true,
            Platform::Linux,
        )
        .unwrap();
        let types: Vec<u8> = m.iter().map(|m| parse(&m.bytes).unwrap().ty).collect();
        assert_eq!(types, [4, 4], "flows kept for the SA that replaced it");
    }
}
