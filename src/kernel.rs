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
use crate::ike::sa::{hex, IpsecSa, KernelReq};
use crate::ike::wire::{EncapsulationMode, IdType, ProtocolId};
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

/// The XFRM messages for one request, numbered from `seq`.
pub fn messages(req: &KernelReq, seq: &mut u32, flows_too: bool) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    let mut next = || {
        *seq = seq.wrapping_add(1).max(1);
        *seq
    };
    match req {
        KernelReq::AddSa(sa) => {
            let proto = ipproto(sa.protocol);
            let hard = if sa.lifetime > 0 {
                sa.lifetime + KERNEL_LIFETIME_MARGIN
            } else {
                0
            };
            for (inbound, spi, km) in [
                (true, sa.spi_in, sa.keymat_in.as_bytes()),
                (false, sa.spi_out, sa.keymat_out.as_bytes()),
            ] {
                let (enc, auth, aead) = algorithms(sa, km)?;
                let (src, dst) = if inbound {
                    (sa.remote.ip(), sa.local.ip())
                } else {
                    (sa.local.ip(), sa.remote.ip())
                };
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
                        reqid: reqid(sa),
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
        KernelReq::DeleteSa(sa, keep_flows) => {
            let flows_too = flows_too && !keep_flows;
            let proto = ipproto(sa.protocol);
            for (dst, spi) in [(sa.local.ip(), sa.spi_in), (sa.remote.ip(), sa.spi_out)] {
                let mut b = Vec::new();
                xfrm::del_sa(&mut b, next(), dst, spi, proto);
                out.push(Message {
                    what: format!("delete SA {dst} spi {}", hex(&spi)),
                    bytes: b,
                    quiet: false,
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

/// Sends the engine's requests and keeps count. The messages go through the privileged
/// parent (Linux checks the sending task's CAP_NET_ADMIN for XFRM), which forwards only
/// these request types and answers with the kernel's errno.
pub struct Kernel {
    seq: u32,
    pub flows: bool,
    pub errors: u64,
    pub installed: u64,
}

impl Kernel {
    pub fn new(flows: bool) -> Kernel {
        Kernel {
            seq: 0,
            flows,
            errors: 0,
            installed: 0,
        }
    }

    pub fn submit(&mut self, req: &KernelReq, send: &mut dyn FnMut(&[u8]) -> Result<i32, String>) {
        let msgs = match messages(req, &mut self.seq, self.flows) {
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
                    if m.quiet && matches!(errno, Some(libc::EEXIST) | Some(libc::ENOENT)) {
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
        let m = messages(&KernelReq::AddSa(Box::new(sa())), &mut seq, true).unwrap();
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
        let m = messages(&KernelReq::DeleteSa(Box::new(sa()), false), &mut seq, false).unwrap();
        assert_eq!(m.len(), 2, "-a: no flows to remove");
        assert_eq!(seq, 7);
    }

    #[test]
    fn unsupported_transforms_are_refused_not_mangled() {
        let mut s = sa();
        s.transform = 99;
        assert!(messages(&KernelReq::AddSa(Box::new(s)), &mut 0, true).is_err());
    }
}
