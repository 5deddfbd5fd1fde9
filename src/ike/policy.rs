//! The configuration as the engine uses it: isakmpd.conf(5) sections resolved into typed
//! peers, phase 1 transforms, connections and phase 2 suites (isakmpd's ike_phase_1.c,
//! ipsec.c `ipsec_add_proposals`, connection.c), once per load instead of per packet.
//!
//! Names follow the manual: a [Phase 1] `<address>=<peer>` binding or `Default` finds the
//! ISAKMP-peer section; its `Configuration` names the exchange type and `Transforms`; an
//! IPsec-connection names its `ISAKMP-peer`, `Configuration` (Suites -> Protocols ->
//! Transforms), `Local-ID` and `Remote-ID`. A section that does not resolve is logged with
//! its name and reason and left out; the rest of the configuration still works.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::conf::{parse_range, Conf};

use super::wire::{
    AuthAlgorithm, AuthMethod, CfgAttr, EncapsulationMode, EncryptionAlgorithm, EspTransform,
    ExchangeType, GroupDescription, HashAlgorithm, IdType, LifeType, ProtocolId,
};

/// A number with its accepted range, as `128,128:256` (offer, min:max).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub offer: u64,
    pub min: u64,
    pub max: u64,
}

impl Range {
    fn parse(v: &str) -> Option<Range> {
        let (offer, r) = parse_range(v)?;
        let (min, max) = r.unwrap_or((offer, offer));
        Some(Range { offer, min, max })
    }

    pub fn accepts(&self, v: u64) -> bool {
        self.min <= v && v <= self.max
    }
}

/// A lifetime from a Lifetime section: LIFE_TYPE and LIFE_DURATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Life {
    pub ty: LifeType,
    pub duration: Range,
}

/// One ISAKMP-transform section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P1Transform {
    pub name: String,
    pub encryption: EncryptionAlgorithm,
    pub key_length: Option<Range>,
    pub hash: HashAlgorithm,
    pub auth: AuthMethod,
    pub group: GroupDescription,
    pub lives: Vec<Life>,
}

/// An identity to send or match: an ID section resolved, or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedId {
    pub ty: IdType,
    pub protocol: u8,
    pub port: u16,
    pub data: Vec<u8>,
}

impl OwnedId {
    pub fn address(a: IpAddr) -> OwnedId {
        match a {
            IpAddr::V4(a) => OwnedId {
                ty: IdType::IPV4_ADDR,
                protocol: 0,
                port: 0,
                data: a.octets().to_vec(),
            },
            IpAddr::V6(a) => OwnedId {
                ty: IdType::IPV6_ADDR,
                protocol: 0,
                port: 0,
                data: a.octets().to_vec(),
            },
        }
    }

    /// Does this (client) ID include address `a`? Addresses, subnets and ranges.
    pub fn covers(&self, a: IpAddr) -> bool {
        let bytes: Vec<u8> = match a {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        };
        let n = bytes.len();
        let fits = matches!(
            (self.ty, n),
            (
                IdType::IPV4_ADDR | IdType::IPV4_ADDR_SUBNET | IdType::IPV4_ADDR_RANGE,
                4
            ) | (
                IdType::IPV6_ADDR | IdType::IPV6_ADDR_SUBNET | IdType::IPV6_ADDR_RANGE,
                16
            )
        );
        if !fits {
            return false;
        }
        match self.ty {
            IdType::IPV4_ADDR | IdType::IPV6_ADDR => self.data == bytes,
            IdType::IPV4_ADDR_SUBNET | IdType::IPV6_ADDR_SUBNET if self.data.len() == 2 * n => {
                (0..n).all(|i| bytes[i] & self.data[n + i] == self.data[i] & self.data[n + i])
            }
            IdType::IPV4_ADDR_RANGE | IdType::IPV6_ADDR_RANGE if self.data.len() == 2 * n => {
                self.data[..n] <= bytes[..] && bytes[..] <= self.data[n..]
            }
            _ => false,
        }
    }

    /// The ID payload body: type, protocol, port, data.
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![self.ty.0, self.protocol];
        b.extend_from_slice(&self.port.to_be_bytes());
        b.extend_from_slice(&self.data);
        b
    }
}

/// An ISAKMP-peer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub address: Option<IpAddr>,
    pub port: u16,
    pub local_address: Option<IpAddr>,
    pub exchange: ExchangeType,
    pub transforms: Vec<P1Transform>,
    /// The pre-shared key (`Authentication`), `0x...` hex or text.
    pub psk: Option<Vec<u8>>,
    pub id: Option<OwnedId>,
    pub remote_id: Option<OwnedId>,
    /// `Flags=ikecfg`: a mode-config (TRANSACTION) exchange follows phase 1.
    pub ikecfg: bool,
}

/// A mode-config section, named after a peer's phase 1 ID as isakmpd spells it
/// (`[ipv4/192.0.2.1]`, `[fqdn/gw.example]`, `[ufqdn/u@example]`, `[asn1_dn//C=SE/CN=x]`):
/// what we push to (SET) or answer (REPLY) that peer, or ask it for (REQUEST).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CfgSection {
    pub name: String,
    /// `Mode`: SET (the default: we push the values below and wait for ACK) or
    /// anything else (we REQUEST `Attributes` and take what the REPLY gives).
    pub set: bool,
    /// `Attributes` asked for in REQUEST mode (Address, Netmask, Nameserver, WINS-server,
    /// DHCP-server, Lifetime).
    pub request: Vec<CfgAttr>,
    pub address: Option<IpAddr>,
    pub netmask: Option<IpAddr>,
    pub nameserver: Option<IpAddr>,
    pub wins: Option<IpAddr>,
    pub dhcp: Option<IpAddr>,
    /// `Lifetime` of the address, seconds.
    pub lifetime: Option<u32>,
}

/// The attribute types of a REQUEST for an isakmpd `Attributes` field (both address
/// families, as isakmpd asks).
fn cfg_request_types(field: &str) -> Option<&'static [CfgAttr]> {
    Some(match field.to_ascii_lowercase().as_str() {
        "address" => &[CfgAttr::INTERNAL_IP4_ADDRESS, CfgAttr::INTERNAL_IP6_ADDRESS],
        "netmask" => &[CfgAttr::INTERNAL_IP4_NETMASK, CfgAttr::INTERNAL_IP6_NETMASK],
        "nameserver" => &[CfgAttr::INTERNAL_IP4_DNS, CfgAttr::INTERNAL_IP6_DNS],
        "wins-server" => &[CfgAttr::INTERNAL_IP4_NBNS, CfgAttr::INTERNAL_IP6_NBNS],
        "dhcp-server" => &[CfgAttr::INTERNAL_IP4_DHCP, CfgAttr::INTERNAL_IP6_DHCP],
        "lifetime" => &[CfgAttr::INTERNAL_ADDRESS_EXPIRY],
        _ => return None,
    })
}

fn cfg_section(conf: &Conf, name: &str) -> Result<CfgSection, String> {
    let addr = |tag: &str| -> Result<Option<IpAddr>, String> {
        match get(conf, name, tag) {
            None => Ok(None),
            Some(a) => a
                .parse::<IpAddr>()
                .map(Some)
                .map_err(|_| format!("{tag} {a} is not an address")),
        }
    };
    let set = get(conf, name, "Mode").is_none_or(|m| m.eq_ignore_ascii_case("SET"));
    let mut request = Vec::new();
    let fields = match get(conf, name, "Attributes") {
        Some(_) => conf.get_list(name, "Attributes"),
        // Without a list a client asks for what a VPN client needs.
        None => ["Address", "Netmask", "Nameserver", "WINS-server"]
            .map(String::from)
            .to_vec(),
    };
    for f in fields {
        let t = cfg_request_types(&f).ok_or_else(|| format!("unknown attribute {f}"))?;
        request.extend_from_slice(t);
    }
    let lifetime = match get(conf, name, "Lifetime") {
        None => None,
        Some(l) => Some(l.parse().map_err(|_| format!("bad Lifetime {l}"))?),
    };
    Ok(CfgSection {
        name: name.to_string(),
        set,
        request,
        address: addr("Address")?,
        netmask: addr("Netmask")?,
        nameserver: addr("Nameserver")?,
        wins: addr("WINS-server")?,
        dhcp: addr("DHCP-server")?,
        lifetime,
    })
}

/// One IPsec-transform section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P2Transform {
    pub name: String,
    /// ESP or AH transform number.
    pub id: u8,
    pub encapsulation: EncapsulationMode,
    pub auth: Option<AuthAlgorithm>,
    pub group: Option<GroupDescription>,
    pub key_length: Option<Range>,
    pub lives: Vec<Life>,
}

/// One IPsec-protocol section of a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P2Protocol {
    pub protocol: ProtocolId,
    pub transforms: Vec<P2Transform>,
}

/// An IPsec-suite: the protocols one proposal carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    pub name: String,
    pub protocols: Vec<P2Protocol>,
}

/// An IPsec-connection section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub name: String,
    pub peer: String,
    pub suites: Vec<Suite>,
    pub local_id: Option<OwnedId>,
    pub remote_id: Option<OwnedId>,
    pub passive: bool,
}

/// How many of each thing the engine keeps at most. The tables are allocated once, at
/// startup, for these numbers (their pages are touched only as slots come into use); a
/// full table drops what would need a new slot and counts it. `[General]` tags of this
/// daemon (isakmpd has no fixed tables): Max-exchanges, Max-phase1-SAs, Max-phase2-SAs,
/// Max-half-open (default half the exchanges), Max-half-open-per-source (8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub exchanges: usize,
    /// Responder exchanges whose peer has not yet shown that it receives at its address
    /// (Main and Aggressive Mode before message 3), in all and from one IP address.
    pub half_open: usize,
    pub half_open_per_source: usize,
    /// Aggressive Mode negotiations a second a responder starts with peers that only the
    /// [Phase 1] Default section matches (each costs a Diffie-Hellman computation before
    /// the peer has shown that it receives at its address).
    pub aggressive_default_rate: u32,
    pub isakmp_sas: usize,
    pub ipsec_sas: usize,
}

impl Default for Limits {
    /// Sized for a small router: some hundreds of peers, each with a few connections.
    fn default() -> Limits {
        Limits {
            exchanges: 512,
            half_open: 256,
            half_open_per_source: 8,
            aggressive_default_rate: 100,
            isakmp_sas: 1024,
            ipsec_sas: 2048,
        }
    }
}

impl Limits {
    /// Bounds: at least 16 of each, at most 1,000,000 (4 GB of slots, a typo's worth).
    pub fn load(conf: &Conf) -> Limits {
        let d = Limits::default();
        let n = |tag: &str, def: usize| {
            conf.get_num("General", tag, def as u64)
                .clamp(16, 1_000_000) as usize
        };
        let exchanges = n("Max-exchanges", d.exchanges);
        let half_open = conf
            .get_num("General", "Max-half-open", (exchanges / 2) as u64)
            .clamp(1, exchanges as u64) as usize;
        Limits {
            exchanges,
            half_open,
            half_open_per_source: conf
                .get_num(
                    "General",
                    "Max-half-open-per-source",
                    d.half_open_per_source as u64,
                )
                .clamp(1, half_open as u64) as usize,
            aggressive_default_rate: conf
                .get_num(
                    "General",
                    "Aggressive-default-rate",
                    d.aggressive_default_rate.into(),
                )
                .clamp(1, 1_000_000) as u32,
            isakmp_sas: n("Max-phase1-SAs", d.isakmp_sas),
            ipsec_sas: n("Max-phase2-SAs", d.ipsec_sas),
        }
    }

    /// Timers: one per exchange, three per phase 1 SA (expiry, DPD, NAT keepalive),
    /// three per phase 2 SA (soft, hard, the rekey pause), and room for stale hints.
    pub fn timers(&self) -> usize {
        2 * (self.exchanges + 3 * self.isakmp_sas + 3 * self.ipsec_sas)
    }
}

/// Everything the engine reads from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub peers: Vec<Peer>,
    /// [Phase 1] address bindings: address (IPv4-mapped IPv6 as IPv4) to an index into
    /// `peers`; the first binding of an address counts.
    pub by_address: HashMap<IpAddr, usize>,
    /// The peers' Address tags, the same way (the first peer with an address counts).
    pub by_peer_address: HashMap<IpAddr, usize>,
    /// The peers by their section names as written.
    pub by_name: HashMap<String, usize>,
    /// [Phase 1] Default.
    pub default_peer: Option<usize>,
    pub connections: Vec<Connection>,
    /// The mode-config sections (`[ipv4/...]` and kin).
    pub mode_cfg: Vec<CfgSection>,
    pub retransmits: u32,
    pub exchange_max_time: u32,
    /// [General] DPD-check-interval: seconds of silence before R-U-THERE (0: off).
    pub dpd_interval: u64,
    /// [General] NAT-T-Keepalive: seconds between keepalives behind a NAT (default 20).
    pub nat_t_keepalive: u64,
    /// [General] Delete-SAs: DELETE every SA at shutdown (default yes).
    pub delete_sas: bool,
    /// Table capacities (tags of this daemon, not isakmpd's); read at startup only.
    pub limits: Limits,
    /// Names of sections that did not resolve, with the reason (for the log and report).
    pub errors: Vec<String>,
    /// Every name of [Phase 2] Connections and Passive-connections: (name, passive,
    /// why it cannot be used).
    pub listed: Vec<(String, bool, Option<String>)>,
}

impl Policy {
    pub fn load(conf: &Conf) -> Policy {
        let mut p = Policy {
            retransmits: conf.get_num("General", "Retransmits", 3).min(100) as u32,
            exchange_max_time: conf
                .get_num("General", "Exchange-max-time", 120)
                .clamp(1, 3600) as u32,
            dpd_interval: conf.get_num("General", "DPD-check-interval", 0).min(86400),
            nat_t_keepalive: conf.get_num("General", "NAT-T-Keepalive", 20).min(86400),
            delete_sas: !conf
                .get("General", "Delete-SAs")
                .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("no")),
            limits: Limits::load(conf),
            ..Policy::default()
        };
        let peer_index = |p: &mut Policy, name: &str| -> Option<usize> {
            if let Some(i) = p
                .peers
                .iter()
                .position(|x| x.name.eq_ignore_ascii_case(name))
            {
                return Some(i);
            }
            match peer(conf, name) {
                Ok(x) => {
                    p.peers.push(x);
                    Some(p.peers.len() - 1)
                }
                Err(e) => {
                    p.errors.push(format!("[{name}]: {e}"));
                    None
                }
            }
        };
        if let Some(s) = conf
            .sections()
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case("Phase 1"))
        {
            for b in &s.bindings {
                if b.tag.eq_ignore_ascii_case("Default") {
                    continue;
                }
                match b.tag.parse::<IpAddr>() {
                    Ok(a) => {
                        if let Some(i) = peer_index(&mut p, &b.value) {
                            p.by_address.entry(canonical(a)).or_insert(i);
                        }
                    }
                    Err(_) => p
                        .errors
                        .push(format!("[Phase 1]:{}: not an address", b.tag)),
                }
            }
        }
        if let Some(d) = conf.get("Phase 1", "Default") {
            let d = d.into_owned();
            p.default_peer = peer_index(&mut p, &d);
        }
        for sec in conf.sections() {
            let n = sec.name.to_ascii_lowercase();
            if ["ipv4/", "ipv6/", "fqdn/", "ufqdn/", "asn1_dn/"]
                .iter()
                .any(|pre| n.starts_with(pre))
            {
                match cfg_section(conf, &sec.name) {
                    Ok(c) => p.mode_cfg.push(c),
                    Err(e) => p.errors.push(format!("[{}]: {e}", sec.name)),
                }
            }
        }
        let active = conf.get_list("Phase 2", "Connections");
        let passive = conf.get_list("Phase 2", "Passive-connections");
        for (name, is_passive) in active
            .iter()
            .map(|n| (n, false))
            .chain(passive.iter().map(|n| (n, true)))
        {
            match connection(conf, name, is_passive) {
                Ok(c) => {
                    if peer_index(&mut p, &c.peer).is_some() {
                        p.connections.push(c);
                        p.listed.push((name.clone(), is_passive, None));
                    } else {
                        let why = format!("ISAKMP-peer [{}] does not resolve", c.peer);
                        p.listed.push((name.clone(), is_passive, Some(why)));
                    }
                }
                Err(e) => {
                    p.errors.push(format!("[{name}]: {e}"));
                    p.listed.push((name.clone(), is_passive, Some(e)));
                }
            }
        }
        for (i, peer) in p.peers.iter().enumerate() {
            p.by_name.entry(peer.name.clone()).or_insert(i);
            if let Some(a) = peer.address {
                p.by_peer_address.entry(canonical(a)).or_insert(i);
            }
        }
        p
    }

    /// The peer section for a remote address: its [Phase 1] binding, else Default.
    /// Whether a [Phase 1] line or a peer's Address names `addr` (else only Default,
    /// if anything, matches it).
    pub fn names(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.by_address.contains_key(&addr) || self.by_peer_address.contains_key(&addr)
    }

    pub fn peer_for(&self, addr: IpAddr) -> Option<&Peer> {
        let addr = canonical(addr);
        self.by_address
            .get(&addr)
            .copied()
            .or(self.default_peer)
            .or_else(|| self.by_peer_address.get(&addr).copied())
            .map(|i| &self.peers[i])
    }

    /// The mode-config section for a peer's ID string (see [`CfgSection`]).
    pub fn cfg_section(&self, id: &str) -> Option<&CfgSection> {
        self.mode_cfg
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(id))
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        // The engine's own references carry the section name as written; a name from
        // elsewhere (an ISAKMP-peer tag) may differ in case.
        match self.by_name.get(name) {
            Some(&i) => self.peers.get(i),
            None => self
                .peers
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name)),
        }
    }

    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        _ => a,
    }
}

fn get(conf: &Conf, s: &str, t: &str) -> Option<String> {
    conf.get(s, t).map(|v| v.trim().to_string())
}

fn need(conf: &Conf, s: &str, t: &str) -> Result<String, String> {
    get(conf, s, t).ok_or_else(|| format!("no {t}"))
}

/// A constant name (or its number) of one of the wire's open types.
fn constant<T>(v: &str, from_name: fn(&str) -> Option<T>, mk: fn(u16) -> Option<T>) -> Option<T> {
    from_name(v)
        .or_else(|| from_name(&v.to_ascii_uppercase()))
        .or_else(|| v.parse::<u16>().ok().and_then(mk))
}

fn lives(conf: &Conf, section: &str) -> Result<Vec<Life>, String> {
    let mut out = Vec::new();
    for l in conf.get_list(section, "Life") {
        if l.eq_ignore_ascii_case("ANY") {
            continue;
        }
        let ty = need(conf, &l, "LIFE_TYPE")?;
        let ty = constant(&ty, LifeType::from_name, |n| Some(LifeType(n)))
            .ok_or_else(|| format!("[{l}]: bad LIFE_TYPE {ty}"))?;
        let d = need(conf, &l, "LIFE_DURATION")?;
        let duration = if d.eq_ignore_ascii_case("ANY") {
            Range {
                offer: 0,
                min: 0,
                max: u64::from(u32::MAX),
            }
        } else {
            Range::parse(&d).ok_or_else(|| format!("[{l}]: bad LIFE_DURATION {d}"))?
        };
        out.push(Life { ty, duration });
    }
    Ok(out)
}

fn p1_transform(conf: &Conf, name: &str) -> Result<P1Transform, String> {
    let enc = need(conf, name, "ENCRYPTION_ALGORITHM")?;
    let hash = need(conf, name, "HASH_ALGORITHM")?;
    let auth = need(conf, name, "AUTHENTICATION_METHOD")?;
    let group = need(conf, name, "GROUP_DESCRIPTION")?;
    Ok(P1Transform {
        name: name.to_string(),
        encryption: constant(&enc, EncryptionAlgorithm::from_name, |n| {
            Some(EncryptionAlgorithm(n))
        })
        .ok_or(format!("unknown ENCRYPTION_ALGORITHM {enc}"))?,
        key_length: match get(conf, name, "KEY_LENGTH") {
            Some(k) => Some(Range::parse(&k).ok_or(format!("bad KEY_LENGTH {k}"))?),
            None => None,
        },
        hash: constant(&hash, HashAlgorithm::from_name, |n| Some(HashAlgorithm(n)))
            .ok_or(format!("unknown HASH_ALGORITHM {hash}"))?,
        auth: constant(&auth, AuthMethod::from_name, |n| Some(AuthMethod(n)))
            .ok_or(format!("unknown AUTHENTICATION_METHOD {auth}"))?,
        group: constant(&group, GroupDescription::from_name, |n| {
            Some(GroupDescription(n))
        })
        .ok_or(format!("unknown GROUP_DESCRIPTION {group}"))?,
        lives: lives(conf, name)?,
    })
}

/// A Phase1-ID or IPsec-ID section (isakmpd ipsec.c `ipsec_get_id`).
pub fn id_section(conf: &Conf, name: &str) -> Result<OwnedId, String> {
    let ty = need(conf, name, "ID-type")?;
    let ty = IdType::from_name(&ty.to_ascii_uppercase())
        .or(match ty.to_ascii_uppercase().as_str() {
            "IPV4_ADDR_RANGE" => Some(IdType::IPV4_ADDR_RANGE),
            "IPV6_ADDR_RANGE" => Some(IdType::IPV6_ADDR_RANGE),
            _ => None,
        })
        .ok_or(format!("[{name}]: unknown ID-type {ty}"))?;
    let addr = |tag: &str| -> Result<IpAddr, String> {
        let v = need(conf, name, tag).map_err(|e| format!("[{name}]: {e}"))?;
        v.parse::<IpAddr>()
            .map_err(|_| format!("[{name}]: {tag} {v} is not an address"))
    };
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Ok(a.octets().to_vec()),
        _ => Err(format!("[{name}]: IPv6 address for an IPv4 ID")),
    };
    let v6 = |a: IpAddr| -> Result<Vec<u8>, String> {
        match a {
            IpAddr::V6(a) => Ok(a.octets().to_vec()),
            IpAddr::V4(a) => Ok(a.to_ipv6_mapped().octets().to_vec()),
        }
    };
    let data = match ty {
        IdType::IPV4_ADDR => v4(addr("Address")?)?,
        IdType::IPV6_ADDR => v6(addr("Address")?)?,
        IdType::IPV4_ADDR_SUBNET => [v4(addr("Network")?)?, v4(addr("Netmask")?)?].concat(),
        IdType::IPV6_ADDR_SUBNET => [v6(addr("Network")?)?, v6(addr("Netmask")?)?].concat(),
        IdType::IPV4_ADDR_RANGE => [v4(addr("Address")?)?, v4(addr("Address-end")?)?].concat(),
        IdType::IPV6_ADDR_RANGE => [v6(addr("Address")?)?, v6(addr("Address-end")?)?].concat(),
        IdType::FQDN | IdType::USER_FQDN | IdType::KEY_ID => need(conf, name, "Name")
            .map_err(|e| format!("[{name}]: {e}"))?
            .into_bytes(),
        _ => return Err(format!("[{name}]: ID-type not supported here")),
    };
    let protocol = match get(conf, name, "Protocol") {
        None => 0,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .or(match p.to_ascii_lowercase().as_str() {
                "tcp" => Some(6),
                "udp" => Some(17),
                "icmp" => Some(1),
                _ => None,
            })
            .ok_or(format!("[{name}]: bad Protocol {p}"))?,
    };
    let port = match get(conf, name, "Port") {
        None => 0,
        Some(p) => p.parse().map_err(|_| format!("[{name}]: bad Port {p}"))?,
    };
    Ok(OwnedId {
        ty,
        protocol,
        port,
        data,
    })
}

fn peer(conf: &Conf, name: &str) -> Result<Peer, String> {
    let address = match get(conf, name, "Address") {
        Some(a) => Some(
            a.parse::<IpAddr>()
                .map_err(|_| format!("Address {a} is not an address"))?,
        ),
        None => None,
    };
    let local_address = match get(conf, name, "Local-address") {
        Some(a) => Some(
            a.parse::<IpAddr>()
                .map_err(|_| format!("Local-address {a} is not an address"))?,
        ),
        None => None,
    };
    let cfg = get(conf, name, "Configuration")
        .unwrap_or_else(|| "Default-phase-1-configuration".to_string());
    let exchange = match get(conf, &cfg, "EXCHANGE_TYPE") {
        None => ExchangeType::ID_PROT,
        Some(x) => match x.to_ascii_uppercase().as_str() {
            "ID_PROT" => ExchangeType::ID_PROT,
            "AGGRESSIVE" => ExchangeType::AGGRESSIVE,
            _ => return Err(format!("[{cfg}]: EXCHANGE_TYPE {x} not supported")),
        },
    };
    let mut transforms = Vec::new();
    for t in conf.get_list(&cfg, "Transforms") {
        transforms.push(p1_transform(conf, &t).map_err(|e| format!("[{t}]: {e}"))?);
    }
    if transforms.is_empty() {
        return Err(format!("[{cfg}]: no Transforms"));
    }
    let psk =
        get(conf, name, "Authentication").map(|a| match a.strip_prefix("0x").and_then(unhex) {
            Some(b) => b,
            None => a.into_bytes(),
        });
    let id = match get(conf, name, "ID") {
        Some(s) => Some(id_section(conf, &s)?),
        None => None,
    };
    let remote_id = match get(conf, name, "Remote-ID") {
        Some(s) => Some(id_section(conf, &s)?),
        None => None,
    };
    let port = match get(conf, name, "Port") {
        Some(p) => p.parse().map_err(|_| format!("bad Port {p}"))?,
        None => 500,
    };
    let ikecfg = conf
        .get_list(name, "Flags")
        .iter()
        .any(|f| f.eq_ignore_ascii_case("ikecfg"));
    Ok(Peer {
        name: name.to_string(),
        address,
        port,
        local_address,
        exchange,
        transforms,
        psk,
        id,
        remote_id,
        ikecfg,
    })
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) || h.is_empty() {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

fn p2_transform(conf: &Conf, name: &str, protocol: ProtocolId) -> Result<P2Transform, String> {
    let tid = need(conf, name, "TRANSFORM_ID")?;
    let id = if protocol == ProtocolId::IPSEC_ESP {
        constant(&tid, EspTransform::from_name, |n| {
            u8::try_from(n).ok().map(EspTransform)
        })
        .map(|t| t.0)
    } else {
        constant(&tid, super::wire::AhTransform::from_name, |n| {
            u8::try_from(n).ok().map(super::wire::AhTransform)
        })
        .map(|t| t.0)
    }
    .ok_or(format!("unknown TRANSFORM_ID {tid}"))?;
    let encapsulation = match get(conf, name, "ENCAPSULATION_MODE") {
        Some(m) => constant(&m, EncapsulationMode::from_name, |n| {
            Some(EncapsulationMode(n))
        })
        .ok_or(format!("unknown ENCAPSULATION_MODE {m}"))?,
        None => EncapsulationMode::TUNNEL,
    };
    let auth = match get(conf, name, "AUTHENTICATION_ALGORITHM") {
        Some(a) => Some(
            constant(&a, AuthAlgorithm::from_name, |n| Some(AuthAlgorithm(n)))
                .ok_or(format!("unknown AUTHENTICATION_ALGORITHM {a}"))?,
        ),
        None => None,
    };
    let group = match get(conf, name, "GROUP_DESCRIPTION") {
        Some(g) => Some(
            constant(&g, GroupDescription::from_name, |n| {
                Some(GroupDescription(n))
            })
            .ok_or(format!("unknown GROUP_DESCRIPTION {g}"))?,
        ),
        None => None,
    };
    let key_length = match get(conf, name, "KEY_LENGTH") {
        Some(k) => Some(Range::parse(&k).ok_or(format!("bad KEY_LENGTH {k}"))?),
        None => None,
    };
    Ok(P2Transform {
        name: name.to_string(),
        id,
        encapsulation,
        auth,
        group,
        key_length,
        lives: lives(conf, name)?,
    })
}

fn connection(conf: &Conf, name: &str, passive: bool) -> Result<Connection, String> {
    let peer = need(conf, name, "ISAKMP-peer")?;
    let cfg = need(conf, name, "Configuration")?;
    let mut suites = Vec::new();
    for s in conf.get_list(&cfg, "Suites") {
        let mut protocols = Vec::new();
        for pname in conf.get_list(&s, "Protocols") {
            let pid = need(conf, &pname, "PROTOCOL_ID").map_err(|e| format!("[{pname}]: {e}"))?;
            let protocol = ProtocolId::from_name(&pid.to_ascii_uppercase())
                .filter(|p| *p == ProtocolId::IPSEC_ESP || *p == ProtocolId::IPSEC_AH)
                .ok_or(format!("[{pname}]: PROTOCOL_ID {pid} not supported"))?;
            let mut transforms = Vec::new();
            for t in conf.get_list(&pname, "Transforms") {
                transforms
                    .push(p2_transform(conf, &t, protocol).map_err(|e| format!("[{t}]: {e}"))?);
            }
            if transforms.is_empty() {
                return Err(format!("[{pname}]: no Transforms"));
            }
            protocols.push(P2Protocol {
                protocol,
                transforms,
            });
        }
        if protocols.is_empty() {
            return Err(format!("[{s}]: no Protocols"));
        }
        suites.push(Suite {
            name: s.clone(),
            protocols,
        });
    }
    if suites.is_empty() {
        return Err(format!("[{cfg}]: no Suites"));
    }
    let local_id = match get(conf, name, "Local-ID") {
        Some(s) => Some(id_section(conf, &s)?),
        None => None,
    };
    let remote_id = match get(conf, name, "Remote-ID") {
        Some(s) => Some(id_section(conf, &s)?),
        None => None,
    };
    Ok(Connection {
        name: name.to_string(),
        peer,
        suites,
        local_id,
        remote_id,
        passive,
    })
}

/// The unspecified address of a family (for IDs built from an unknown local address).
pub fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_conf_resolves() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/isakmpd.conf"
        ))
        .unwrap();
        let conf = Conf::parse(&text).unwrap().conf;
        let p = Policy::load(&conf);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let peer = p.peer_for("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(peer.name, "ISAKMP-peer-east");
        assert_eq!(peer.psk.as_deref(), Some(&b"mekmitasdigoat"[..]));
        let t = &peer.transforms[0];
        assert_eq!(t.encryption, EncryptionAlgorithm::AES_CBC);
        assert_eq!(t.hash, HashAlgorithm::SHA2_256);
        assert_eq!(t.group, GroupDescription::MODP_2048);
        assert_eq!(t.key_length.unwrap().offer, 128);
        assert_eq!(t.lives[0].duration.offer, 3600);
        let c = p.connection("IPsec-west-east").unwrap();
        let x = &c.suites[0].protocols[0].transforms[0];
        assert_eq!(c.suites[0].protocols[0].protocol, ProtocolId::IPSEC_ESP);
        assert_eq!(x.id, EspTransform::AES.0);
        assert_eq!(x.auth, Some(AuthAlgorithm::HMAC_SHA2_256));
        assert_eq!(x.group, Some(GroupDescription::MODP_2048));
        assert_eq!(c.local_id.as_ref().unwrap().ty, IdType::IPV4_ADDR_SUBNET);
    }

    #[test]
    fn sample_configs_resolve() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if !path.to_string_lossy().contains(".conf") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let conf = Conf::parse(&text).unwrap().conf;
            let p = Policy::load(&conf);
            // Samples refer to certificates and interface names we do not resolve here,
            // but every connection they list must resolve or be named with a reason.
            for e in &p.errors {
                assert!(e.starts_with('['), "{}: {e}", path.display());
            }
        }
    }
}

/// isakmpd.policy(5): asked about each proposal a Quick Mode responder could choose, as
/// ike_quick_mode.c `check_policy` asks KeyNote. The daemon gives the engine one (built by
/// [`crate::keynote`]); without one every proposal the configuration accepts is chosen (-K).
pub trait ProposalPolicy: Send + Sync {
    /// Whether the peer known by `principals` (its authorizers: `passphrase:...` and kin)
    /// may have the SA that `attrs` describes (isakmpd's action attributes, policy.c
    /// `policy_callback`; `None` for an attribute isakmpd leaves empty). `assertions` are
    /// trusted assertions made for this peer's session: those of its verified certificates.
    fn allows(
        &self,
        attrs: &dyn Fn(&str) -> Option<String>,
        principals: &[String],
        assertions: &[String],
    ) -> bool;
}

/// What KeyNote learns of a peer authenticated by signature (ike_quick_mode.c
/// `check_policy`, x509.c `x509_generate_kn`): its principals, `rsa-hex:` of its key and
/// `DN:` of its certificate's subject, and for each link of its verified certificate path
/// an assertion by which the issuer's key (and DN) licenses the subject's for the
/// certificate's validity, so that a policy naming a CA's key or DN covers the peers the
/// CA certified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCredentials {
    pub principals: Vec<String>,
    pub assertions: Vec<String>,
}

/// A KeyNote CERT payload (encoding KEYNOTE, isakmpd's isakmp_num.cst) that passed the
/// check [`Credentials::keynote_check`](super::Credentials) names (policy.c
/// `keynote_cert_validate`, `keynote_cert_get_key`): its assertions, one a string, each
/// signed by its Authorizer's key and verified, and the key isakmpd takes as the peer's, a
/// PKCS#1 RSAPublicKey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeynoteCert {
    pub assertions: Vec<String>,
    pub key: Vec<u8>,
}

/// Checks a KeyNote CERT payload's bytes (the daemon's is `crate::keynote::peer_credentials`;
/// the engine names no KeyNote code): the credentials, or why they are refused.
pub type KeynoteCheck = fn(&[u8]) -> Result<KeynoteCert, String>;

/// The wall-clock time for GMTTimeOfDay and LocalTimeOfDay, set by the event loop (the
/// engine reads no clock): seconds since 1970 UTC and the local zone's offset in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallClock {
    pub unix: i64,
    pub utc_offset: i64,
}
