//! Addresses as parse.y's `host()` makes them (`host_v4`, `host_v6`, `host_dns`,
//! `host_any`, `expand_any`), with the names ike.c prints: an IPv4 address or network
//! keeps the text the user wrote (`10.1.0.0/24`), an IPv6 one is printed back in
//! inet_ntop(3)'s canonical form with `/prefix` unless it is 128. Protocol and service
//! names come from built-in copies of OpenBSD's /etc/protocols and /etc/services so that
//! the output does not depend on the host's files.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Af {
    Unspec,
    V4,
    V6,
}

/// `struct ipsec_addr_wrap`, reduced to what the FIFO stream needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub af: Af,
    pub name: String,
    pub netaddress: bool,
    /// The netmask's prefix length (`set_ipmask`).
    pub bits: u8,
    /// `host_spec '(' host_spec ')'`: the address the flow is NATed to.
    pub srcnat: Option<Box<Addr>>,
    /// An address of an interface named as a host (`host_if`): `name` is then the
    /// interface's name, as ipsecctl keeps it (ike.c prints it), and this the address.
    pub ifaddr: Option<std::net::IpAddr>,
}

impl Addr {
    /// `host_any()`: neither family until `expand_any`.
    pub fn any() -> Addr {
        Addr {
            af: Af::Unspec,
            name: String::new(),
            netaddress: true,
            bits: 0,
            srcnat: None,
            ifaddr: None,
        }
    }

    /// The netmask as getnameinfo/inet_ntoa print it.
    pub fn mask_string(&self) -> String {
        match self.af {
            Af::V6 => {
                let m = if self.bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.bits.min(128)))
                };
                ntop6(&Ipv6Addr::from(m).octets())
            }
            _ => {
                let m = if self.bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.bits.min(32)))
                };
                Ipv4Addr::from(m).to_string()
            }
        }
    }
}

/// `expand_any`: each `any` becomes 0.0.0.0/0 followed by ::/0.
pub fn expand_any(list: Vec<Addr>) -> Vec<Addr> {
    let mut out = Vec::with_capacity(list.len() + 1);
    for a in list {
        if a.af == Af::Unspec {
            out.push(Addr {
                af: Af::V4,
                name: "0.0.0.0/0".into(),
                netaddress: true,
                bits: 0,
                srcnat: a.srcnat.clone(),
                ifaddr: None,
            });
            out.push(Addr {
                af: Af::V6,
                name: "::/0".into(),
                netaddress: true,
                bits: 0,
                srcnat: None,
                ifaddr: None,
            });
        } else {
            out.push(a);
        }
    }
    out
}

/// BSD inet_ntop for IPv6: the longest run (at least two) of zero words becomes `::`,
/// and `::a.b.c.d` / `::ffff:a.b.c.d` keep the dotted quad.
pub fn ntop6(o: &[u8; 16]) -> String {
    let mut w = [0u16; 8];
    for (i, x) in w.iter_mut().enumerate() {
        *x = u16::from_be_bytes([o[2 * i], o[2 * i + 1]]);
    }
    let (mut best, mut cur): ((isize, usize), (isize, usize)) = ((-1, 0), (-1, 0));
    for (i, &x) in w.iter().enumerate() {
        if x == 0 {
            if cur.0 == -1 {
                cur = (i as isize, 1);
            } else {
                cur.1 += 1;
            }
        } else if cur.0 != -1 {
            if best.0 == -1 || cur.1 > best.1 {
                best = cur;
            }
            cur = (-1, 0);
        }
    }
    if cur.0 != -1 && (best.0 == -1 || cur.1 > best.1) {
        best = cur;
    }
    if best.0 != -1 && best.1 < 2 {
        best = (-1, 0);
    }
    let mut s = String::new();
    let mut i = 0usize;
    while i < 8 {
        if best.0 != -1 && i as isize >= best.0 && i < best.0 as usize + best.1 {
            if i as isize == best.0 {
                s.push(':');
            }
            i += 1;
            continue;
        }
        if i != 0 {
            s.push(':');
        }
        if i == 6 && best.0 == 0 && (best.1 == 6 || (best.1 == 5 && w[5] == 0xffff)) {
            s.push_str(&Ipv4Addr::new(o[12], o[13], o[14], o[15]).to_string());
            return s;
        }
        s.push_str(&format!("{:x}", w[i]));
        i += 1;
    }
    if best.0 != -1 && best.0 as usize + best.1 == 8 {
        s.push(':');
    }
    s
}

/// inet_net_pton(AF_INET, "a.b.c.d/n"): the prefix length, or None. The address before
/// the slash may have fewer than four parts (`10.1/16`), each decimal.
fn inet_net_pton4(s: &str) -> Option<u8> {
    let (addr, bits) = s.rsplit_once('/')?;
    if bits.is_empty() || bits.len() > 2 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    if bits > 32 {
        return None;
    }
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    for p in &parts {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if p.parse::<u16>().ok()? > 255 {
            return None;
        }
    }
    Some(bits)
}

/// `host_v4`: a dotted quad, or a network with `/bits`; the name is the text given.
fn host_v4(s: &str) -> Option<Addr> {
    let (bits, net) = if s.contains('/') {
        (inet_net_pton4(s)?, true)
    } else {
        s.parse::<Ipv4Addr>().ok()?;
        (32, false)
    };
    Some(Addr {
        af: Af::V4,
        name: s.to_string(),
        netaddress: net,
        bits,
        srcnat: None,
        ifaddr: None,
    })
}

/// `host_v6`: a numeric IPv6 address (no scope), printed back canonically.
fn host_v6(s: &str, prefixlen: u8) -> Option<Addr> {
    let a: Ipv6Addr = s.parse().ok()?;
    let p = prefixlen.min(128);
    let h = ntop6(&a.octets());
    Some(if p != 128 {
        Addr {
            af: Af::V6,
            name: format!("{h}/{p}"),
            netaddress: true,
            bits: p,
            srcnat: None,
            ifaddr: None,
        }
    } else {
        Addr {
            af: Af::V6,
            name: h,
            netaddress: false,
            bits: 128,
            srcnat: None,
            ifaddr: None,
        }
    })
}

/// `host_dns`: every IPv4 and IPv6 address a name resolves to.
fn host_dns(s: &str) -> Option<Vec<Addr>> {
    use std::net::ToSocketAddrs;
    if s.len() > 255 || s.is_empty() {
        return None;
    }
    let it = (s, 0u16).to_socket_addrs().ok()?;
    let mut out: Vec<Addr> = Vec::new();
    for sa in it.take(64) {
        let a = match sa {
            std::net::SocketAddr::V4(v) => Addr {
                af: Af::V4,
                name: v.ip().to_string(),
                netaddress: false,
                bits: 32,
                srcnat: None,
                ifaddr: None,
            },
            std::net::SocketAddr::V6(v) => {
                if v.scope_id() != 0 {
                    continue;
                }
                Addr {
                    af: Af::V6,
                    name: ntop6(&v.ip().octets()),
                    netaddress: false,
                    bits: 0,
                    srcnat: None,
                    ifaddr: None,
                }
            }
        };
        // getaddrinfo with SOCK_STREAM gives each address once.
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// `host()`: the addresses a host specification stands for, or an error message for
/// stderr ("no IP address found for ..."; an invalid netmask is fatal in ipsecctl).
pub fn host(s: &str) -> Result<Vec<Addr>, HostError> {
    host_with(s, true)
}

/// The interfaces of the default routes (IPv4 from /proc/net/route, IPv6 from
/// /proc/net/ipv6_route): OpenBSD's `egress` group.
fn egress() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    for l in v4.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
            out.push(f[0].to_string());
        }
    }
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    for l in v6.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // dest plen src splen nexthop metric refcnt use flags iface
        if f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo" {
            out.push(f[9].to_string());
        }
    }
    let mut seen = Vec::new();
    out.retain(|n| {
        let new = !seen.contains(n);
        seen.push(n.clone());
        new
    });
    out
}

/// `host_if`: the addresses of the interface `s`, or of the members of the group `s`
/// (on Linux only `egress`, the interfaces of the default routes); None when there is no
/// such interface or group, or it has no address. Each address is a host (/32, /128)
/// named after its interface; IPv6 link-local addresses are left out, as ipsecctl does.
fn host_if(s: &str) -> Option<Vec<Addr>> {
    if s.is_empty() || s.len() >= 16 {
        return None;
    }
    let table = crate::sys::interface_addrs().ok()?;
    let members = if table.iter().any(|(n, a)| n == s && a.is_none()) {
        vec![s.to_string()]
    } else if s == "egress" {
        egress()
    } else {
        return None;
    };
    let mut out = Vec::new();
    for m in &members {
        for (n, a) in &table {
            let Some(ip) = a.filter(|_| n == m) else {
                continue;
            };
            let (af, bits) = match ip {
                std::net::IpAddr::V4(_) => (Af::V4, 32),
                std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => continue,
                std::net::IpAddr::V6(_) => (Af::V6, 128),
            };
            out.push(Addr {
                af,
                name: n.clone(),
                netaddress: false,
                bits,
                srcnat: None,
                ifaddr: Some(ip),
            });
        }
    }
    (!out.is_empty()).then_some(out)
}

/// [`host`], with the resolver and the interfaces left out when `dns` is false (numeric
/// addresses only).
pub fn host_with(s: &str, dns: bool) -> Result<Vec<Addr>, HostError> {
    let (ps, mask): (&str, i32) = match s.rfind('/') {
        Some(i) => {
            let m = &s[i + 1..];
            let v = parse_c_long(m).filter(|v| (0..=128).contains(v) || *v < 0);
            match v {
                Some(v) if v <= 128 => (&s[..i], v as i32),
                _ => {
                    return Err(HostError::Fatal(format!(
                        "host: invalid netmask '{}'",
                        &s[i..]
                    )))
                }
            }
        }
        None => (s, -1),
    };
    // An interface or interface group first (its addresses, whatever the mask).
    if dns {
        if let Some(v) = host_if(ps) {
            return Ok(v);
        }
    }
    if let Some(a) = host_v4(s) {
        return Ok(vec![a]);
    }
    let p6 = if mask == -1 {
        128
    } else {
        mask.clamp(0, 255) as u8
    };
    if mask >= -1 {
        if let Some(a) = host_v6(ps, p6) {
            return Ok(vec![a]);
        }
    }
    if mask == -1 && dns {
        if let Some(v) = host_dns(s) {
            return Ok(v);
        }
    }
    Err(HostError::NotFound(format!("no IP address found for {s}")))
}

#[derive(Debug)]
pub enum HostError {
    /// ipsecctl exits (errx).
    Fatal(String),
    /// ipsecctl prints this and reports "could not parse host specification".
    NotFound(String),
}

/// strtol(s, &q, 0) that must consume everything: decimal, 0x hex or 0 octal.
fn parse_c_long(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// getprotobyname(3) over OpenBSD's /etc/protocols (names and aliases).
pub fn proto_by_name(s: &str) -> Option<u8> {
    PROTOCOLS.iter().find(|(n, _)| *n == s).map(|&(_, v)| v)
}

/// getprotobynumber(3): the protocol's name, or its number.
pub fn proto_name(p: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|&&(_, v)| v == p)
        .map_or_else(|| p.to_string(), |(n, _)| n.to_string())
}

const PROTOCOLS: &[(&str, u8)] = &[
    ("ip", 0),
    ("IP", 0),
    ("icmp", 1),
    ("ICMP", 1),
    ("igmp", 2),
    ("IGMP", 2),
    ("ggp", 3),
    ("GGP", 3),
    ("ipencap", 4),
    ("IP-ENCAP", 4),
    ("st", 5),
    ("ST", 5),
    ("tcp", 6),
    ("TCP", 6),
    ("egp", 8),
    ("EGP", 8),
    ("igp", 9),
    ("IGP", 9),
    ("pup", 12),
    ("PUP", 12),
    ("udp", 17),
    ("UDP", 17),
    ("hmp", 20),
    ("HMP", 20),
    ("xns-idp", 22),
    ("XNS-IDP", 22),
    ("rdp", 27),
    ("RDP", 27),
    ("iso-tp4", 29),
    ("ISO-TP4", 29),
    ("dccp", 33),
    ("DCCP", 33),
    ("xtp", 36),
    ("XTP", 36),
    ("ddp", 37),
    ("DDP", 37),
    ("idpr-cmtp", 38),
    ("IDPR-CMTP", 38),
    ("ipv6", 41),
    ("IPV6", 41),
    ("ipv6-route", 43),
    ("IPV6-ROUTE", 43),
    ("ipv6-frag", 44),
    ("IPV6-FRAG", 44),
    ("idrp", 45),
    ("IDRP", 45),
    ("rsvp", 46),
    ("RSVP", 46),
    ("gre", 47),
    ("GRE", 47),
    ("esp", 50),
    ("ESP", 50),
    ("ah", 51),
    ("AH", 51),
    ("skip", 57),
    ("SKIP", 57),
    ("ipv6-icmp", 58),
    ("IPV6-ICMP", 58),
    ("icmp6", 58),
    ("ICMP6", 58),
    ("ipv6-nonxt", 59),
    ("IPV6-NONXT", 59),
    ("ipv6-opts", 60),
    ("IPV6-OPTS", 60),
    ("rspf", 73),
    ("RSPF", 73),
    ("CPHB", 73),
    ("vmtp", 81),
    ("VMTP", 81),
    ("eigrp", 88),
    ("EIGRP", 88),
    ("ospf", 89),
    ("OSPFIGP", 89),
    ("ax.25", 93),
    ("AX.25", 93),
    ("ipip", 94),
    ("IPIP", 94),
    ("etherip", 97),
    ("ETHERIP", 97),
    ("encap", 98),
    ("ENCAP", 98),
    ("pim", 103),
    ("PIM", 103),
    ("ipcomp", 108),
    ("IPCOMP", 108),
    ("vrrp", 112),
    ("VRRP", 112),
    ("carp", 112),
    ("CARP", 112),
    ("l2tp", 115),
    ("L2TP", 115),
    ("isis", 124),
    ("ISIS", 124),
    ("sctp", 132),
    ("SCTP", 132),
    ("fc", 133),
    ("FC", 133),
    ("mpls-in-ip", 137),
    ("MPLS-IN-IP", 137),
    ("manet", 138),
    ("MANET", 138),
    ("hip", 139),
    ("HIP", 139),
    ("shim6", 140),
    ("SHIM6", 140),
    ("wesp", 141),
    ("WESP", 141),
    ("rohc", 142),
    ("ROHC", 142),
    ("ethernet", 143),
    ("ETHERNET", 143),
    ("pfsync", 240),
    ("PFSYNC", 240),
];

/// getservbyname(3) with "tcp" then "udp", over common OpenBSD /etc/services entries.
pub fn service_by_name(s: &str) -> Option<u16> {
    SERVICES.iter().find(|(n, _)| *n == s).map(|&(_, v)| v)
}

/// getservbyport(3): the service's name for `port`, or the number.
// XXX the table does not tell tcp from udp services; `_proto` is the one asked for.
pub fn service_name(port: u16, _proto: &str) -> String {
    SERVICES
        .iter()
        .find(|&&(_, v)| v == port)
        .map_or_else(|| port.to_string(), |(n, _)| n.to_string())
}

const SERVICES: &[(&str, u16)] = &[
    ("tcpmux", 1),
    ("echo", 7),
    ("discard", 9),
    ("sink", 9),
    ("null", 9),
    ("systat", 11),
    ("users", 11),
    ("daytime", 13),
    ("netstat", 15),
    ("qotd", 17),
    ("quote", 17),
    ("chargen", 19),
    ("ttytst", 19),
    ("source", 19),
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("mail", 25),
    ("time", 37),
    ("timserver", 37),
    ("whois", 43),
    ("nicname", 43),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("www", 80),
    ("http", 80),
    ("kerberos", 88),
    ("krb5", 88),
    ("pop3", 110),
    ("pop-3", 110),
    ("sunrpc", 111),
    ("rpcbind", 111),
    ("auth", 113),
    ("ident", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("netbios-ns", 137),
    ("netbios-dgm", 138),
    ("netbios-ssn", 139),
    ("imap", 143),
    ("imap2", 143),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("snmptrap", 162),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("kpasswd", 464),
    ("isakmp", 500),
    ("exec", 512),
    ("biff", 512),
    ("login", 513),
    ("who", 513),
    ("shell", 514),
    ("syslog", 514),
    ("printer", 515),
    ("talk", 517),
    ("ntalk", 518),
    ("route", 520),
    ("router", 520),
    ("ripng", 521),
    ("submission", 587),
    ("ldaps", 636),
    ("rsync", 873),
    ("imaps", 993),
    ("pop3s", 995),
    ("socks", 1080),
    ("openvpn", 1194),
    ("radius", 1812),
    ("radacct", 1813),
    ("l2tp", 1701),
    ("pptp", 1723),
    ("nfsd", 2049),
    ("nfs", 2049),
    ("mysql", 3306),
    ("ipsec-nat-t", 4500),
    ("sip", 5060),
    ("postgresql", 5432),
    ("x11", 6000),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_names_stay_as_written() {
        let a = host("10.1.1.0/24").unwrap();
        assert_eq!(a[0].name, "10.1.1.0/24");
        assert!(a[0].netaddress);
        assert_eq!(a[0].mask_string(), "255.255.255.0");
        let b = host("1.2.3.4").unwrap();
        assert!(!b[0].netaddress);
        assert_eq!(b[0].bits, 32);
        let c = host("1.2.3.4/32").unwrap();
        assert!(c[0].netaddress);
    }

    #[test]
    fn v6_names_are_canonical() {
        let a = host("3ffe:0:0::1").unwrap();
        assert_eq!(a[0].name, "3ffe::1");
        let b = host("3ffe::/16").unwrap();
        assert_eq!(b[0].name, "3ffe::/16");
        assert_eq!(b[0].mask_string(), "ffff::");
        assert_eq!(host("3ffe::1/128").unwrap()[0].name, "3ffe::1");
        assert_eq!(
            ntop6(&"::ffff:1.2.3.4".parse::<Ipv6Addr>().unwrap().octets()),
            "::ffff:1.2.3.4"
        );
        assert_eq!(
            ntop6(&"1:0:2:0:3:0:4:0".parse::<Ipv6Addr>().unwrap().octets()),
            "1:0:2:0:3:0:4:0"
        );
        assert_eq!(ntop6(&"1::".parse::<Ipv6Addr>().unwrap().octets()), "1::");
    }

    #[test]
    fn bad_masks() {
        assert!(matches!(host("1.2.3.4/200"), Err(HostError::Fatal(_))));
        assert!(matches!(host("1.2.3.4/64"), Err(HostError::NotFound(_))));
    }
}
