//! ike_quick_mode.c `check_policy`, and the KeyNote action attributes of a Quick Mode proposal, as isakmpd's policy.c
//! `policy_callback` computes them, and the principals ike_quick_mode.c `check_policy` adds
//! for the peer (isakmpd.policy(5)). Addresses are written as isakmpd writes them: IPv4 as
//! zero-padded dotted quads (`010.000.000.001`), IPv6 as eight four-digit hex groups.

use std::net::{IpAddr, SocketAddr};

use super::crypto::openssl::dn_oneline;
use super::crypto::{hash, HashAlg};
use super::ipsec_proposal::Matched;
use super::policy::WallClock;
use super::sa::IsakmpSa;
use super::wire::{
    AuthAlgorithm, AuthMethod, EncapsulationMode, ExchangeType, IdType, Proposal, ProtocolId,
    Transform,
};

/// The proposal and its setting, from the responder's side.
pub(crate) struct Action<'a, 'p> {
    pub sa: &'a IsakmpSa,
    /// "main" or "aggressive".
    pub phase_1: &'static str,
    pub chosen: &'a [(Proposal<'p>, Transform<'p>, Matched)],
    /// Client ID bodies as received (initiator's, responder's).
    pub idci: Option<&'a [u8]>,
    pub idcr: Option<&'a [u8]>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub initiator: bool,
    /// The message carried a KE payload (isakmpd sets `ie->pfs` from that).
    pub pfs: bool,
    pub wall: WallClock,
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

pub(crate) fn addr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            format!("{:03}.{:03}.{:03}.{:03}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(v) => v
            .segments()
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

fn bytes_addr(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn esp_enc(id: u8) -> &'static str {
    match id {
        1 => "des-iv64",
        2 => "des",
        3 => "3des",
        4 => "rc5",
        5 => "idea",
        6 => "cast",
        7 => "blowfish",
        8 => "3idea",
        9 => "des-iv32",
        10 => "rc4",
        11 => "null",
        // policy.c maps AES-CBC, AES-CTR, AES-GCM-16 and AES-GMAC all to "aes".
        12 | 13 | 20 | 23 => "aes",
        _ => "",
    }
}

fn auth_alg(a: Option<AuthAlgorithm>) -> &'static str {
    match a.map(|a| a.0) {
        Some(1) => "hmac-md5",
        Some(2) => "hmac-sha",
        Some(3) => "des-mac",
        Some(4) => "kpdk",
        Some(5) => "hmac-sha2-256",
        Some(6) => "hmac-sha2-384",
        Some(7) => "hmac-sha2-512",
        Some(8) => "hmac-ripemd",
        _ => "",
    }
}

fn ah_hash(id: u8) -> &'static str {
    match id {
        2 => "md5",
        3 => "sha",
        4 => "des",
        5 => "sha2-256",
        6 => "sha2-384",
        7 => "sha2-512",
        8 => "ripemd",
        _ => "",
    }
}

fn comp_alg(id: u8) -> &'static str {
    match id {
        1 => "oui",
        2 => "deflate",
        3 => "lzs",
        4 => "v42bis",
        _ => "",
    }
}

fn encapsulation(e: EncapsulationMode) -> &'static str {
    match e {
        EncapsulationMode::TUNNEL
        | EncapsulationMode::UDP_ENCAP_TUNNEL
        | EncapsulationMode::UDP_ENCAP_TUNNEL_DRAFT => "tunnel",
        _ => "transport",
    }
}

/// The civil date (year, month 1-12, day 1-31) of a count of days since 1970-01-01
/// (H. Hinnant's algorithm).
pub fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// YYYYMMDDHHmmSS of `unix` seconds.
pub(crate) fn time_of_day(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_date(unix.div_euclid(86_400));
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The `<prefix>`, `_type`, `_addr_lower`, `_addr_upper`, `_port`, `_proto` attributes of an
/// ID payload body (type, protocol, port, data).
fn id_attrs(out: &mut Vec<(String, String)>, prefix: &str, body: &[u8]) {
    if body.len() < 4 {
        return;
    }
    let (ty, proto, port, data) = (
        IdType(body[0]),
        body[1],
        u16::from_be_bytes([body[2], body[3]]),
        &body[4..],
    );
    let mut put = |k: &str, v: String| out.push((format!("{prefix}{k}"), v));
    let half = data.len() / 2;
    let (type_name, value, lower, upper) = match ty {
        IdType::IPV4_ADDR | IdType::IPV6_ADDR => {
            let a = bytes_addr(data).map(addr).unwrap_or_default();
            let v6 = ty == IdType::IPV6_ADDR;
            (
                if v6 { "IPv6 address" } else { "IPv4 address" },
                a.clone(),
                a.clone(),
                a,
            )
        }
        IdType::IPV4_ADDR_SUBNET | IdType::IPV6_ADDR_SUBNET => {
            let (net, mask) = data.split_at(half);
            let lo: Vec<u8> = net.iter().zip(mask).map(|(a, m)| a & m).collect();
            let hi: Vec<u8> = net.iter().zip(mask).map(|(a, m)| a | !m).collect();
            let (lo, hi) = (
                bytes_addr(&lo).map(addr).unwrap_or_default(),
                bytes_addr(&hi).map(addr).unwrap_or_default(),
            );
            let v6 = ty == IdType::IPV6_ADDR_SUBNET;
            (
                if v6 { "IPv6 subnet" } else { "IPv4 subnet" },
                format!("{lo}-{hi}"),
                lo,
                hi,
            )
        }
        IdType::IPV4_ADDR_RANGE | IdType::IPV6_ADDR_RANGE => {
            let (a, b) = data.split_at(half);
            let (lo, hi) = (
                bytes_addr(a).map(addr).unwrap_or_default(),
                bytes_addr(b).map(addr).unwrap_or_default(),
            );
            let v6 = ty == IdType::IPV6_ADDR_RANGE;
            (
                if v6 { "IPv6 range" } else { "IPv4 range" },
                format!("{lo}-{hi}"),
                lo,
                hi,
            )
        }
        IdType::FQDN | IdType::USER_FQDN => (
            if ty == IdType::FQDN {
                "FQDN"
            } else {
                "User FQDN"
            },
            String::from_utf8_lossy(data).into_owned(),
            String::new(),
            String::new(),
        ),
        IdType::DER_ASN1_DN => (
            "ASN1 DN",
            dn_oneline(data).unwrap_or_else(|| hex(data)),
            String::new(),
            String::new(),
        ),
        IdType::DER_ASN1_GN => ("ASN1 GN", hex(data), String::new(), String::new()),
        IdType::KEY_ID => ("Key ID", hex(data), String::new(), String::new()),
        _ => ("", String::new(), String::new(), String::new()),
    };
    put("", value);
    put("_type", type_name.to_string());
    if !lower.is_empty() {
        put("_addr_lower", lower);
        put("_addr_upper", upper);
    }
    put("_port", port.to_string());
    put(
        "_proto",
        match proto {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            97 => "etherip".to_string(),
            n => n.to_string(),
        },
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The attributes of `a`, by name.
pub(crate) fn attributes(a: &Action<'_, '_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(48);
    let mut put = |k: &str, v: String| out.push((k.to_string(), v));
    put("app_domain", "IPsec policy".into());
    put("doi", "ipsec".into());
    put("initiator", yes(a.initiator));
    put("phase_1", a.phase_1.into());
    put("phase1_group_desc", a.sa.group.number().to_string());
    let (l, r) = (addr(a.local.ip()), addr(a.remote.ip()));
    put("local_negotiation_address", l.clone());
    put("remote_negotiation_address", r.clone());
    put("local_ike_address", l);
    put("remote_ike_address", r);
    put("GMTTimeOfDay", time_of_day(a.wall.unix));
    put(
        "LocalTimeOfDay",
        time_of_day(a.wall.unix + a.wall.utc_offset),
    );
    put("pfs", yes(a.pfs));
    for (proto, prefix) in [
        (ProtocolId::IPSEC_ESP, "esp"),
        (ProtocolId::IPSEC_AH, "ah"),
        (ProtocolId::IPCOMP, "comp"),
    ] {
        let found = a.chosen.iter().find(|(p, _, _)| p.protocol == proto);
        put(&format!("{prefix}_present"), yes(found.is_some()));
        let Some((_, t, m)) = found else { continue };
        match prefix {
            "esp" => {
                put("esp_enc_alg", esp_enc(t.id).into());
                put("esp_auth_alg", auth_alg(m.auth).into());
            }
            "ah" => {
                put("ah_hash_alg", ah_hash(t.id).into());
                put("ah_auth_alg", auth_alg(m.auth).into());
            }
            _ => put("comp_alg", comp_alg(t.id).into()),
        }
        put(
            &format!("{prefix}_encapsulation"),
            encapsulation(m.encapsulation).into(),
        );
        if m.lifetime > 0 {
            put(&format!("{prefix}_life_seconds"), m.lifetime.to_string());
        }
        if m.kbytes > 0 {
            put(&format!("{prefix}_life_kbytes"), m.kbytes.to_string());
        }
        if let Some(k) = m.key_bits {
            put(&format!("{prefix}_key_length"), k.to_string());
        }
        if let Some(g) = m.group {
            put(&format!("{prefix}_group_desc"), g.0.to_string());
        }
    }
    // The responder's remote filter is the initiator's client ID (the peer's address
    // without IDs), its local filter ours.
    let (remote_f, local_f) = if a.initiator {
        (a.idcr, a.idci)
    } else {
        (a.idci, a.idcr)
    };
    let own = |ad: SocketAddr| super::policy::OwnedId::address(ad.ip()).body();
    id_attrs(
        &mut out,
        "remote_filter",
        &remote_f.map_or_else(|| own(a.remote), <[u8]>::to_vec),
    );
    id_attrs(
        &mut out,
        "local_filter",
        &local_f.map_or_else(|| own(a.local), <[u8]>::to_vec),
    );
    id_attrs(&mut out, "remote_id", &a.sa.id_remote);
    out
}

/// The peer's principals for a pre-shared key, as `check_policy` adds them. The key itself
/// is in the first: these strings are never logged.
pub(crate) fn psk_principals(key: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(key);
    vec![
        format!("passphrase:{text}"),
        format!(
            "passphrase-md5-hex:{}",
            hex(hash(HashAlg::Md5, &[key]).as_bytes())
        ),
        format!(
            "passphrase-sha1-hex:{}",
            hex(hash(HashAlg::Sha1, &[key]).as_bytes())
        ),
    ]
}

/// Why no proposal was chosen (responder) or the responder's choice refused (initiator).
pub(crate) const POLICY_REFUSED: &str = "no proposal chosen: refused by isakmpd.policy";

/// ike_quick_mode.c `check_policy`: whether isakmpd.policy lets the peer of this ISAKMP SA
/// have the SA `chosen` (always, without a policy), for the initiator or the responder of a
/// message that did or did not carry a KE payload. The peer's principals are those of its
/// pre-shared key, or for a signature its key's `rsa-hex:` and its certificate's `DN:`
/// (and the `DN:` of its ID when that is a DN), with the assertions its certificate path
/// makes (see [`super::policy::PeerCredentials`]).
pub(crate) fn check_policy(
    cx: &super::quick_mode::QmCx<'_>,
    chosen: &[(Proposal<'_>, Transform<'_>, Matched)],
    (idci, idcr): (Option<&[u8]>, Option<&[u8]>),
    (local, remote): (SocketAddr, SocketAddr),
    (initiator, pfs): (bool, bool),
) -> bool {
    let Some(kn) = cx.keynote else {
        return true;
    };
    let peer = cx.policy.peer(&cx.sa.peer);
    let mut assertions: &[String] = &[];
    let principals = match peer.and_then(|p| p.psk.as_deref()) {
        Some(key) if cx.sa.auth == AuthMethod::PRE_SHARED => psk_principals(key),
        _ => {
            let mut p = Vec::new();
            if let Some(c) = cx.sa.peer_creds.as_deref() {
                p.extend(c.principals.iter().cloned());
                assertions = &c.assertions;
            }
            // The DN of the peer's ID (auth.rs checked that the certificate names it).
            p.extend(dn_principal(cx.sa).filter(|d| !p.contains(d)));
            p
        }
    };
    let phase_1 = match peer.map(|p| p.exchange) {
        Some(ExchangeType::AGGRESSIVE) => "aggressive",
        _ => "main",
    };
    let attrs = attributes(&Action {
        sa: cx.sa,
        phase_1,
        chosen,
        idci,
        idcr,
        local,
        remote,
        initiator,
        pfs,
        wall: cx.wall,
    });
    let ok = kn.allows(
        &|n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
        &principals,
        assertions,
    );
    if !ok {
        crate::ike_debug!(
            crate::log::DebugClass::Policy,
            40,
            "check_policy: proposal refused ({})",
            attrs
                .iter()
                .filter(|(k, _)| k.starts_with("esp_") || k.starts_with("ah_") || k == "pfs")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    ok
}

/// `DN:/C=../CN=..` for a peer authenticated by signature whose phase 1 ID is a DN.
fn dn_principal(sa: &IsakmpSa) -> Option<String> {
    if sa.auth != AuthMethod::RSA_SIG || sa.id_remote.first() != Some(&IdType::DER_ASN1_DN.0) {
        return None;
    }
    Some(format!("DN:{}", dn_oneline(sa.id_remote.get(4..)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(addr("10.128.1.12".parse().unwrap()), "010.128.001.012");
        assert_eq!(
            addr("2001:db8::1".parse().unwrap()),
            "2001:0db8:0000:0000:0000:0000:0000:0001"
        );
        assert_eq!(time_of_day(0), "19700101000000");
        assert_eq!(time_of_day(1_700_000_000), "20231114221320");
        let p = psk_principals(b"abc");
        assert_eq!(p[1], "passphrase-md5-hex:900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            p[2],
            "passphrase-sha1-hex:a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let mut out = Vec::new();
        id_attrs(
            &mut out,
            "f",
            &[4, 17, 0x01, 0xf4, 10, 1, 2, 3, 255, 255, 255, 0],
        );
        let get = |k: &str| out.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("f"), "010.001.002.000-010.001.002.255");
        assert_eq!(get("f_type"), "IPv4 subnet");
        assert_eq!(get("f_port"), "500");
        assert_eq!(get("f_proto"), "udp");
    }
}
