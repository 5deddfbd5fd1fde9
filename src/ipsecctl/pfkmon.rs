//! `ipsecctl -m` on Linux: what the kernel multicasts on the XFRM netlink groups
//! (acquire, expire, SA and policy), printed in the layout of ipsecctl's PF_KEY monitor
//! (pfkdump.c `pfkey_monitor_sa`): a line naming the message, then one line per
//! extension in PF_KEY's extension order.
//!
//! The XFRM messages map to PF_KEY's as closely as their content allows:
//!
//! | XFRM                          | printed as      |
//! |-------------------------------|-----------------|
//! | NEWPOLICY, UPDPOLICY          | `sadb_addflow`  |
//! | DELPOLICY                     | `sadb_delflow`  |
//! | NEWSA                         | `sadb_add`      |
//! | UPDSA                         | `sadb_update`   |
//! | DELSA                         | `sadb_delete`   |
//! | ALLOCSPI                      | `sadb_getspi`   |
//! | ACQUIRE                       | `sadb_acquire`  |
//! | EXPIRE, POLEXPIRE             | `sadb_expire`   |
//! | FLUSHSA, FLUSHPOLICY          | `sadb_flush`    |
//!
//! The header's `len` is the netlink message's length in PF_KEY's 8-byte units, `seq`
//! and `pid` are the netlink header's (the sender's sequence number and port, its pid
//! for ipsecctl and the daemons). A policy shows as a flow: `address_src`/`address_dst`
//! the template's tunnel endpoints, `src_mask`/`dst_mask`, `protocol`, `flow_type`
//! (use, require, bypass, deny; direction in, out, or fwd where XFRM has one) and
//! `src_flow`/`dst_flow`. An SA shows `sa` (SPI, algorithms, state, tunnel flag),
//! its addresses and the key lengths; unlike ipsecctl, never the keys themselves. With
//! `-v` the message follows in hexadecimal, as ipsecctl's raw dump.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use crate::kernel::xfrm;

const XFRM_MSG_UPDPOLICY: u16 = 0x19;
const XFRM_MSG_POLEXPIRE: u16 = 0x1b;
const XFRMA_ALG_AUTH: u16 = 1;
const XFRMA_ALG_CRYPT: u16 = 2;
const XFRMA_ALG_COMP: u16 = 3;
const XFRMA_TMPL: u16 = 5;
const XFRMA_SA: u16 = 6;
const XFRMA_POLICY: u16 = 7;
const XFRMA_ALG_AEAD: u16 = 18;
const XFRMA_ALG_AUTH_TRUNC: u16 = 20;
/// The acquire, expire, SA and policy groups (XFRMNLGRP_ 1 to 4).
const GROUPS: u32 = 0xf;
const POLICY_INFO_LEN: usize = 168;
const POLICY_ID_LEN: usize = 64;
const SA_INFO_LEN: usize = 224;
const SA_ID_LEN: usize = 24;
const TMPL_LEN: usize = 64;

/// Runs until the socket fails; returns the exit status.
pub fn run(verbose: bool) -> i32 {
    let fd = match crate::monitor::open_xfrm_groups(GROUPS) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ipsecctl: {e}");
            return 1;
        }
    };
    let mut buf = vec![0u8; 65536];
    let mut out = std::io::stdout();
    loop {
        let n = match crate::sys::recv(fd.as_raw_fd(), &mut buf, 0) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // The socket buffer overflowed: messages were lost, go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                let _ = writeln!(out, "ipsecctl: messages lost (receive buffer full)");
                continue;
            }
            Err(e) => {
                eprintln!("ipsecctl: XFRM recv: {e}");
                return 2;
            }
        };
        let text = render(&buf[..n], verbose);
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return 1;
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |x| u16::from_ne_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
}

fn ip_at(b: &[u8], at: usize, family: u16) -> Option<IpAddr> {
    match i32::from(family) {
        libc::AF_INET => Some(IpAddr::from(<[u8; 4]>::try_from(b.get(at..at + 4)?).ok()?)),
        libc::AF_INET6 => Some(IpAddr::from(
            <[u8; 16]>::try_from(b.get(at..at + 16)?).ok()?,
        )),
        _ => None,
    }
}

/// The netmask of a prefix, as ipsecctl prints a mask extension.
fn mask(family: u16, bits: u8) -> String {
    if i32::from(family) == libc::AF_INET6 {
        let m = u128::MAX
            .checked_shl(128 - u32::from(bits.min(128)))
            .unwrap_or(0);
        std::net::Ipv6Addr::from(m).to_string()
    } else {
        let m = u32::MAX
            .checked_shl(32 - u32::from(bits.min(32)))
            .unwrap_or(0);
        std::net::Ipv4Addr::from(m).to_string()
    }
}

fn satype(proto: u8) -> &'static str {
    match i32::from(proto) {
        libc::IPPROTO_ESP => "esp",
        libc::IPPROTO_AH => "ah",
        108 => "ipcomp",
        4 => "ipip",
        _ => "unspec",
    }
}

/// The netlink attributes after a fixed part: (type, payload).
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while b.len() - off >= 4 {
        let len = usize::from(u16_at(b, off));
        if len < 4 || len > b.len() - off {
            break;
        }
        out.push((u16_at(b, off + 2) & 0x3fff, &b[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// Every message of a datagram from the groups, printed.
pub fn render(buf: &[u8], verbose: bool) -> String {
    let mut o = String::new();
    let mut off = 0;
    while buf.len() - off >= 16 {
        let len = u32_at(buf, off) as usize;
        if len < 16 || len > buf.len() - off {
            break;
        }
        let msg = &buf[off..off + len];
        message(&mut o, msg);
        if verbose {
            o.push_str("RAW XFRM MESSAGE:\n");
            for (i, b) in msg.iter().enumerate() {
                if i % 8 == 0 && i != 0 {
                    o.push('\n');
                }
                let _ = write!(o, "{b:02x} ");
            }
            o.push('\n');
        }
        off += (len + 3) & !3;
    }
    o
}

fn header(o: &mut String, name: &str, proto: u8, msg: &[u8]) {
    let _ = writeln!(
        o,
        "{name}: satype {} vers 2 len {} seq {} pid {}",
        satype(proto),
        msg.len().div_ceil(8),
        u32_at(msg, 8),
        u32_at(msg, 12)
    );
}

fn message(o: &mut String, msg: &[u8]) {
    let ty = u16_at(msg, 4);
    let body = &msg[16..];
    match ty {
        xfrm::XFRM_MSG_NEWPOLICY | XFRM_MSG_UPDPOLICY if body.len() >= POLICY_INFO_LEN => {
            let tmpl = attrs(&body[POLICY_INFO_LEN..]);
            policy(o, "sadb_addflow", msg, &body[..POLICY_INFO_LEN], &tmpl);
        }
        xfrm::XFRM_MSG_DELPOLICY if body.len() >= POLICY_ID_LEN => {
            let a = attrs(&body[POLICY_ID_LEN..]);
            match a
                .iter()
                .find(|(t, p)| *t == XFRMA_POLICY && p.len() >= POLICY_INFO_LEN)
            {
                Some((_, p)) => policy(o, "sadb_delflow", msg, &p[..POLICY_INFO_LEN], &a),
                None => header(o, "sadb_delflow", 0, msg),
            }
        }
        xfrm::XFRM_MSG_NEWSA | xfrm::XFRM_MSG_UPDSA if body.len() >= SA_INFO_LEN => {
            let name = if ty == xfrm::XFRM_MSG_NEWSA {
                "sadb_add"
            } else {
                "sadb_update"
            };
            sa(
                o,
                name,
                msg,
                &body[..SA_INFO_LEN],
                &attrs(&body[SA_INFO_LEN..]),
            );
        }
        xfrm::XFRM_MSG_DELSA if body.len() >= SA_ID_LEN => {
            let a = attrs(&body[SA_ID_LEN..]);
            match a
                .iter()
                .find(|(t, p)| *t == XFRMA_SA && p.len() >= SA_INFO_LEN)
            {
                Some((_, p)) => sa(o, "sadb_delete", msg, &p[..SA_INFO_LEN], &a),
                None => header(o, "sadb_delete", body[20], msg),
            }
        }
        // struct xfrm_userspi_info: the larval state, then the SPI range.
        xfrm::XFRM_MSG_ALLOCSPI if body.len() >= SA_INFO_LEN + 8 => {
            sa(o, "sadb_getspi", msg, &body[..SA_INFO_LEN], &[]);
            let _ = writeln!(
                o,
                "\tspirange: min 0x{:08x} max 0x{:08x}",
                u32_at(body, SA_INFO_LEN),
                u32_at(body, SA_INFO_LEN + 4)
            );
        }
        // struct xfrm_user_expire: the state, then whether the hard limit ran out.
        xfrm::XFRM_MSG_EXPIRE if body.len() > SA_INFO_LEN => {
            sa(o, "sadb_expire", msg, &body[..SA_INFO_LEN], &[]);
            let which = if body[SA_INFO_LEN] != 0 {
                "lifetime_hard"
            } else {
                "lifetime_soft"
            };
            let _ = writeln!(o, "\t{which}: expired");
        }
        // struct xfrm_user_polexpire: the policy, then hard.
        XFRM_MSG_POLEXPIRE if body.len() >= POLICY_INFO_LEN => {
            policy(o, "sadb_expire", msg, &body[..POLICY_INFO_LEN], &[]);
        }
        // struct xfrm_user_acquire: id (24), saddr (16), sel (56), policy (168), ...
        xfrm::XFRM_MSG_ACQUIRE if body.len() >= 96 + POLICY_INFO_LEN => {
            let p = &body[96..96 + POLICY_INFO_LEN];
            let family = u16_at(p, 40);
            header(o, "sadb_acquire", body[20], msg);
            if let Some(a) = ip_at(body, 24, family) {
                let _ = writeln!(o, "\taddress_src: {a}");
            }
            if let Some(a) = ip_at(body, 0, family) {
                let _ = writeln!(o, "\taddress_dst: {a}");
            }
            flow_lines(o, p, None);
        }
        xfrm::XFRM_MSG_FLUSHSA => header(o, "sadb_flush", body.first().copied().unwrap_or(0), msg),
        xfrm::XFRM_MSG_FLUSHPOLICY => header(o, "sadb_flush", 0, msg),
        _ => {}
    }
}

/// A policy (struct xfrm_userpolicy_info `p`, its template among `a`) as a flow.
fn policy(o: &mut String, name: &str, msg: &[u8], p: &[u8], a: &[(u16, &[u8])]) {
    let tmpl = a
        .iter()
        .find(|(t, x)| *t == XFRMA_TMPL && x.len() >= TMPL_LEN)
        .map(|(_, x)| &x[..TMPL_LEN]);
    header(o, name, tmpl.map_or(0, |t| t[20]), msg);
    if let Some(t) = tmpl {
        let family = u16_at(t, 24);
        for (what, at) in [("address_src", 28), ("address_dst", 0)] {
            match ip_at(t, at, family) {
                Some(a) if !a.is_unspecified() => {
                    let _ = writeln!(o, "\t{what}: {a}");
                }
                _ => {}
            }
        }
    }
    flow_lines(o, p, tmpl);
}

/// src_mask, dst_mask, protocol, flow_type, src_flow, dst_flow of a policy.
fn flow_lines(o: &mut String, p: &[u8], tmpl: Option<&[u8]>) {
    let family = u16_at(p, 40);
    let _ = writeln!(o, "\tsrc_mask: {}", mask(family, p[43]));
    let _ = writeln!(o, "\tdst_mask: {}", mask(family, p[42]));
    let _ = writeln!(o, "\tprotocol: proto {} flags 0", p[44]);
    let ty = match (p[161], tmpl) {
        (1, _) => "deny",
        (_, None) => "bypass",
        (_, Some(t)) if t[50] != 0 => "use",
        _ => "require",
    };
    let dir = match p[160] {
        xfrm::XFRM_POLICY_IN => "in",
        xfrm::XFRM_POLICY_OUT => "out",
        xfrm::XFRM_POLICY_FWD => "fwd",
        _ => "unknown",
    };
    let _ = writeln!(o, "\tflow_type: type {ty} direction {dir}");
    let port = |at: usize| match u16::from_be_bytes([p[at], p[at + 1]]) {
        0 => String::new(),
        n => format!(" port {n}"),
    };
    let any = |a: Option<IpAddr>| a.map_or("<any>".to_string(), |a| a.to_string());
    let _ = writeln!(o, "\tsrc_flow: {}{}", any(ip_at(p, 16, family)), port(36));
    let _ = writeln!(o, "\tdst_flow: {}{}", any(ip_at(p, 0, family)), port(32));
}

/// The ipsecctl name of an XFRM algorithm.
fn alg_name(x: &str) -> &str {
    match x {
        "hmac(md5)" => "hmac-md5",
        "hmac(sha1)" => "hmac-sha1",
        "hmac(rmd160)" => "hmac-ripemd160",
        "hmac(sha256)" => "hmac-sha2-256",
        "hmac(sha384)" => "hmac-sha2-384",
        "hmac(sha512)" => "hmac-sha2-512",
        "cbc(des3_ede)" => "3des-cbc",
        "cbc(aes)" => "aes",
        "rfc3686(ctr(aes))" => "aesctr",
        "rfc4106(gcm(aes))" => "aes-gcm",
        "rfc4543(gcm(aes))" => "aes-gmac",
        "cbc(blowfish)" => "blowfish",
        "cbc(cast5)" => "cast128",
        "ecb(cipher_null)" => "null",
        "rfc7539esp(chacha20,poly1305)" => "chacha20-poly1305",
        "deflate" => "deflate",
        other => other,
    }
}

/// An SA (struct xfrm_usersa_info `s`, its algorithms among `a`).
fn sa(o: &mut String, name: &str, msg: &[u8], s: &[u8], a: &[(u16, &[u8])]) {
    let proto = s[76];
    header(o, name, proto, msg);
    let family = u16_at(s, 212);
    let alg = |types: &[u16]| -> Option<(String, u32)> {
        let (_, x) = a.iter().find(|(t, x)| types.contains(t) && x.len() >= 68)?;
        let n = x[..64].iter().position(|&c| c == 0).unwrap_or(64);
        Some((
            alg_name(&String::from_utf8_lossy(&x[..n])).to_string(),
            u32_at(x, 64),
        ))
    };
    let auth = alg(&[XFRMA_ALG_AUTH_TRUNC, XFRMA_ALG_AUTH]);
    let enc = alg(&[XFRMA_ALG_CRYPT, XFRMA_ALG_AEAD]);
    let spi = u32::from_be_bytes([s[72], s[73], s[74], s[75]]);
    if let Some((comp, _)) = alg(&[XFRMA_ALG_COMP]) {
        let _ = writeln!(o, "\tsa: cpi 0x{spi:08x} comp {comp}");
    } else {
        let _ = writeln!(
            o,
            "\tsa: spi 0x{spi:08x} auth {} enc {}",
            auth.as_ref().map_or("none", |x| x.0.as_str()),
            enc.as_ref().map_or("none", |x| x.0.as_str())
        );
    }
    let tunnel = s[214] == xfrm::MODE_TUNNEL;
    let _ = writeln!(
        o,
        "\t\tstate mature replay {} flags {}",
        s[215],
        if tunnel { "0x4<tunnel>" } else { "0<>" }
    );
    if let Some(x) = ip_at(s, 80, family) {
        let _ = writeln!(o, "\taddress_src: {x}");
    }
    if let Some(x) = ip_at(s, 56, family) {
        let _ = writeln!(o, "\taddress_dst: {x}");
    }
    // The lengths only: the keys stay out of what is printed.
    for (what, x) in [("key_auth", &auth), ("key_encrypt", &enc)] {
        if let Some((_, bits)) = x.as_ref().filter(|x| x.1 > 0) {
            let _ = writeln!(o, "\t{what}: bits {bits}");
        }
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    #[test]
    fn a_new_policy_prints_as_an_addflow() {
        let mut b = Vec::new();
        let sel = xfrm::Selector {
            src: "198.51.100.0".parse().unwrap(),
            src_prefix: 24,
            dst: "203.0.113.0".parse().unwrap(),
            dst_prefix: 24,
            proto: 6,
            sport: 0,
            dport: 443,
        };
        xfrm::new_policy(
            &mut b,
            7,
            &xfrm::PolicySpec {
                sel,
                dir: xfrm::XFRM_POLICY_OUT,
                priority: 1,
                tmpl_src: "192.0.2.1".parse().unwrap(),
                tmpl_dst: "192.0.2.2".parse().unwrap(),
                proto: 50,
                mode: xfrm::MODE_TUNNEL,
                reqid: 0,
            },
        );
        assert_eq!(
            render(&b, false),
            format!(
                "sadb_addflow: satype esp vers 2 len {} seq 7 pid 0\n\
                 \taddress_src: 192.0.2.1\n\taddress_dst: 192.0.2.2\n\
                 \tsrc_mask: 255.255.255.0\n\tdst_mask: 255.255.255.0\n\
                 \tprotocol: proto 6 flags 0\n\tflow_type: type require direction out\n\
                 \tsrc_flow: 198.51.100.0\n\tdst_flow: 203.0.113.0 port 443\n",
                b.len().div_ceil(8)
            )
        );
        // Truncated input prints nothing rather than failing.
        assert_eq!(render(&b[..40], false), "");
        let mut f = Vec::new();
        xfrm::flush(&mut f, 3);
        assert_eq!(
            render(&f, false),
            "sadb_flush: satype unspec vers 2 len 3 seq 3 pid 0\n\
             sadb_flush: satype unspec vers 2 len 2 seq 4 pid 0\n"
        );
    }
}
