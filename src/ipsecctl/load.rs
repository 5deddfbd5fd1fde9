//! Loading `flow` and `sa` rules on Linux (ipsecctl.c `ipsecctl_commit` with pfkey.c's
//! `pfkey_ipsec_establish`, through XFRM netlink instead of PF_KEY), deleting them
//! (`-d`), and `-F` (`pfkey_ipsec_flush`: every SA and every policy).
//!
//! An `sa` rule becomes an XFRM state. A `flow` becomes a policy with one template
//! towards its peer, in the mode of the file's SA to that peer (tunnel if none): `out`
//! an XFRM out policy, `in` an in policy and, in tunnel mode, the fwd one that lets a
//! gateway forward what it decrypted. `require`, `acquire` and `dontacq` flows require
//! the SA, `use` flows take it when there is one, `bypass` flows pass traffic in the
//! clear, `deny` flows drop it. More specific selectors get a better priority, as
//! OpenBSD's SPD prefers the most specific flow.
//!
//! What XFRM cannot express is refused before anything is loaded: tcpmd5 SAs (a socket
//! option on Linux), ipcomp and ipip SAs, SA bundles, and `use` flows out in tunnel mode
//! (XFRM takes optional templates out in transport mode only).

use super::host::{Addr, Af};
use super::kernel::{Dir, Flow, FlowType, KRule, KRuleKind, KSatype, Sa};
use crate::kernel::xfrm::{self, PolicyKind, PolicySpec, SaSpec, Selector};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

/// One kernel message and the rule it is for.
struct Msg {
    nr: u32,
    bytes: Vec<u8>,
}

fn ip(a: &Addr) -> Option<IpAddr> {
    let text = super::kernel::addr_text(a);
    text.split('/').next()?.parse().ok()
}

fn unspecified(af: Af) -> IpAddr {
    if af == Af::V6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// The XFRM cipher of an ipsecctl `enc` transform (static keys: CBC ciphers and null).
fn xfrm_enc(name: &str) -> Option<&'static str> {
    Some(match name {
        "3des-cbc" => "cbc(des3_ede)",
        "aes" | "aes-128" | "aes-192" | "aes-256" => "cbc(aes)",
        "blowfish" => "cbc(blowfish)",
        "cast128" => "cbc(cast5)",
        "null" => "ecb(cipher_null)",
        _ => return None,
    })
}

/// The XFRM HMAC of an ipsecctl `auth` transform, with its ICV length (RFC 4868's
/// truncation for SHA-2, 96 bits for the others).
fn xfrm_auth(name: &str) -> Option<(&'static str, u32)> {
    Some(match name {
        "hmac-md5" => ("hmac(md5)", 96),
        "hmac-sha1" => ("hmac(sha1)", 96),
        "hmac-ripemd160" => ("hmac(rmd160)", 96),
        "hmac-sha2-256" => ("hmac(sha256)", 128),
        "hmac-sha2-384" => ("hmac(sha384)", 192),
        "hmac-sha2-512" => ("hmac(sha512)", 256),
        _ => return None,
    })
}

fn proto(t: KSatype) -> u8 {
    if t == KSatype::Ah {
        51
    } else {
        50
    }
}

/// Why a rule cannot go to XFRM, if it cannot.
fn unsupported(r: &KRule) -> Option<String> {
    let what = match &r.kind {
        KRuleKind::Bundle(_) => "SA bundles",
        KRuleKind::Sa(s) => match s.satype {
            KSatype::Tcpmd5 => "tcpmd5 SAs (TCP_MD5SIG is a socket option on Linux)",
            KSatype::Ipcomp => "ipcomp SAs",
            KSatype::Ipip => "ipip SAs",
            _ => {
                let x = s.xfs.as_ref()?;
                if let Some(e) = x.enc.filter(|e| xfrm_enc(e.name).is_none()) {
                    return Some(format!("{} is not loaded here", e.name));
                }
                return None;
            }
        },
        KRuleKind::Flow(f) => match f.satype {
            KSatype::Esp | KSatype::Ah => return None,
            _ => "ipcomp and ipip flows",
        },
    };
    Some(format!("{what} are not loaded here"))
}

/// The mode and local address of the file's SA to or from `peer` (out: ours to it).
fn sa_for<'a>(sas: &[&'a Sa], f: &Flow, peer: &Addr) -> Option<&'a Sa> {
    sas.iter().copied().find(|s| {
        s.satype == f.satype
            && if f.dir == Dir::Out {
                s.dst.name == peer.name
            } else {
                s.src.name == peer.name
            }
    })
}

fn selector(f: &Flow) -> Option<Selector> {
    Some(Selector {
        src: ip(&f.src)?,
        src_prefix: f.src.bits,
        dst: ip(&f.dst)?,
        dst_prefix: f.dst.bits,
        proto: f.proto,
        sport: f.sport,
        dport: f.dport,
    })
}

fn sa_spec(s: &Sa) -> Option<SaSpec<'_>> {
    let x = s.xfs.as_ref()?;
    let enc = match x.enc {
        Some(e) => Some((xfrm_enc(e.name)?, s.enckey.as_deref().unwrap_or(&[]))),
        None => None,
    };
    let auth = match x.auth {
        Some(a) if a.name != "none" => {
            let (name, icv) = xfrm_auth(a.name)?;
            Some((name, s.authkey.as_deref().unwrap_or(&[]), icv))
        }
        _ => None,
    };
    Some(SaSpec {
        src: ip(&s.src)?,
        dst: ip(&s.dst)?,
        spi: s.spi.to_be_bytes(),
        proto: proto(s.satype),
        mode: if s.tunnel {
            xfrm::MODE_TUNNEL
        } else {
            xfrm::MODE_TRANSPORT
        },
        reqid: 0,
        enc,
        auth,
        aead: None,
        soft_secs: 0,
        hard_secs: 0,
        soft_bytes: 0,
        hard_bytes: 0,
        encap: s.udpencap.map(|p| (4500, if p == 0 { 4500 } else { p })),
        encap_oa: None,
        update: false,
    })
}

/// The messages that add (or with `delete` remove) the rules, in order.
fn messages(rules: &[KRule], delete: bool) -> Result<Vec<Msg>, String> {
    let sas: Vec<&Sa> = rules
        .iter()
        .filter_map(|r| match &r.kind {
            KRuleKind::Sa(s) => Some(s),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut seq = 1u32;
    let bad = |r: &KRule| format!("{}: {}: rule {} cannot be loaded", r.file, r.line, r.nr);
    for r in rules {
        let mut push = |f: &dyn Fn(&mut Vec<u8>, u32)| {
            let mut bytes = Vec::new();
            f(&mut bytes, seq);
            seq = seq.wrapping_add(1);
            out.push(Msg { nr: r.nr, bytes });
        };
        match &r.kind {
            KRuleKind::Sa(s) => {
                let spec = sa_spec(s).ok_or_else(|| bad(r))?;
                if delete {
                    push(&|b, q| xfrm::del_sa(b, q, spec.dst, spec.spi, spec.proto));
                } else {
                    push(&|b, q| xfrm::new_sa(b, q, &spec));
                }
            }
            KRuleKind::Flow(f) => {
                let sel = selector(f).ok_or_else(|| bad(r))?;
                let kind = match f.flowtype {
                    FlowType::Bypass => PolicyKind::Bypass,
                    FlowType::Deny => PolicyKind::Block,
                    FlowType::Use => PolicyKind::Tmpl { optional: true },
                    _ => PolicyKind::Tmpl { optional: false },
                };
                let peer = f.peer.as_ref();
                let sa = peer.and_then(|p| sa_for(&sas, f, p));
                let tunnel = sa.is_none_or(|s| s.tunnel);
                if tunnel && f.dir == Dir::Out && f.flowtype == FlowType::Use {
                    return Err(format!(
                        "{}: {}: an out flow of type use in tunnel mode is not loaded here \
                         (XFRM takes no optional tunnel template out)",
                        r.file, r.line
                    ));
                }
                let local = f
                    .local
                    .as_ref()
                    .and_then(ip)
                    .or_else(|| {
                        sa.and_then(|s| ip(if f.dir == Dir::Out { &s.src } else { &s.dst }))
                    })
                    .unwrap_or_else(|| unspecified(f.src.af));
                let remote = peer.and_then(ip).unwrap_or_else(|| unspecified(f.src.af));
                let (tmpl_src, tmpl_dst) = if f.dir == Dir::Out {
                    (local, remote)
                } else {
                    (remote, local)
                };
                // More specific flows first (XFRM: lower is preferred).
                let priority = 2000 - u32::from(f.src.bits) - u32::from(f.dst.bits);
                let mut dirs = vec![if f.dir == Dir::Out {
                    xfrm::XFRM_POLICY_OUT
                } else {
                    xfrm::XFRM_POLICY_IN
                }];
                if f.dir == Dir::In && tunnel {
                    dirs.push(xfrm::XFRM_POLICY_FWD);
                }
                for dir in dirs {
                    let p = PolicySpec {
                        sel,
                        dir,
                        priority,
                        tmpl_src,
                        tmpl_dst,
                        proto: proto(f.satype),
                        mode: if tunnel {
                            xfrm::MODE_TUNNEL
                        } else {
                            xfrm::MODE_TRANSPORT
                        },
                        reqid: 0,
                    };
                    if delete {
                        push(&|b, q| xfrm::del_policy(b, q, &p.sel, p.dir));
                    } else {
                        push(&|b, q| xfrm::new_policy_kind(b, q, &p, kind));
                    }
                }
            }
            KRuleKind::Bundle(_) => return Err(bad(r)),
        }
    }
    Ok(out)
}

/// Sends each message and waits for its answer: the errno of each refused one.
fn send_all(msgs: &[Vec<u8>]) -> Result<Vec<i32>, String> {
    let fd = crate::monitor::open_xfrm()?;
    let mut answers = Vec::with_capacity(msgs.len());
    let mut buf = vec![0u8; 16384];
    for m in msgs {
        let seq = m
            .get(8..12)
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])));
        crate::sys::send(fd.as_raw_fd(), m, 0).map_err(|e| format!("XFRM send: {e}"))?;
        let errno = loop {
            let mut pfd = [libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if crate::sys::poll(&mut pfd, 5000).map_err(|e| format!("poll: {e}"))? == 0 {
                return Err("XFRM: no answer from the kernel".into());
            }
            let n = crate::sys::recv(fd.as_raw_fd(), &mut buf, 0)
                .map_err(|e| format!("XFRM recv: {e}"))?;
            let acks: Vec<i32> = xfrm::replies(&buf[..n])
                .into_iter()
                .filter_map(|r| match r {
                    xfrm::Reply::Ack { seq: s, errno } if s == seq => Some(errno),
                    _ => None,
                })
                .collect();
            if let Some(&e) = acks.first() {
                break e;
            }
        };
        answers.push(errno);
    }
    Ok(answers)
}

/// `ipsecctl_commit` for the kernel rules: every rule is checked first and nothing is
/// loaded if one cannot be; then each goes in (or out, `delete`), and a refusal is
/// reported as ipsecctl does ("failed to add rule N") without stopping the others.
/// Returns false when something failed.
pub fn commit(rules: &[KRule], delete: bool) -> bool {
    let refused: Vec<String> = rules
        .iter()
        .filter_map(|r| unsupported(r).map(|why| format!("{}: {}: {why}", r.file, r.line)))
        .collect();
    if !refused.is_empty() {
        for m in refused {
            eprintln!("ipsecctl: {m}");
        }
        eprintln!("ipsecctl: nothing loaded");
        return false;
    }
    let msgs = match messages(rules, delete) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ipsecctl: {e}");
            eprintln!("ipsecctl: nothing loaded");
            return false;
        }
    };
    let bytes: Vec<Vec<u8>> = msgs.iter().map(|m| m.bytes.clone()).collect();
    let answers = match send_all(&bytes) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ipsecctl: {e}");
            return false;
        }
    };
    let mut ok = true;
    let mut failed: Vec<u32> = Vec::new();
    for (m, errno) in msgs.iter().zip(answers) {
        if errno != 0 && !failed.contains(&m.nr) {
            let e = std::io::Error::from_raw_os_error(errno);
            eprintln!("ipsecctl: rule {}: {}", m.nr, super::os_msg(&e));
            let what = if delete { "delete" } else { "add" };
            eprintln!("ipsecctl: failed to {what} rule {}", m.nr);
            failed.push(m.nr);
            ok = false;
        }
    }
    ok
}

/// `ipsecctl -F`: every SA and every policy of the kernel go.
pub fn flush() -> Result<(), String> {
    let mut b = Vec::new();
    xfrm::flush(&mut b, 1);
    // Two messages in one buffer: send them apart so that each gets its answer.
    let len = b
        .get(0..4)
        .map_or(0, |l| {
            u32::from_ne_bytes(l.try_into().unwrap_or([0; 4])) as usize
        })
        .min(b.len());
    let msgs = vec![b[..len].to_vec(), b[len..].to_vec()];
    for e in send_all(&msgs)? {
        if e != 0 {
            let err = std::io::Error::from_raw_os_error(e);
            return Err(format!("ipsecctl_flush: {}", super::os_msg(&err)));
        }
    }
    Ok(())
}
