//! The parsed `ike` rule (`struct ipsec_rule` with the fields an ike rule uses) and the
//! transform tables of parse.y (`authxfs`, `encxfs`, `compxfs`, `groupxfs`), kept in the
//! C's order because `parse_xf` takes the first entry the user's word is a prefix of
//! (`3des` is `3des-cbc`, `aes` is `aes`, `hmac-sha2` is `hmac-sha2-256`).

use super::host::Addr;

/// One transform table entry: its canonical name and whether it authenticates itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xf {
    pub name: &'static str,
    pub noauth: bool,
}

const fn xf(name: &'static str) -> Xf {
    Xf {
        name,
        noauth: false,
    }
}
const fn aead(name: &'static str) -> Xf {
    Xf { name, noauth: true }
}

pub const AUTHXFS: &[Xf] = &[
    xf("unknown"),
    xf("none"),
    xf("hmac-md5"),
    xf("hmac-ripemd160"),
    xf("hmac-sha1"),
    xf("hmac-sha2-256"),
    xf("hmac-sha2-384"),
    xf("hmac-sha2-512"),
];

pub const ENCXFS: &[Xf] = &[
    xf("unknown"),
    xf("none"),
    xf("3des-cbc"),
    xf("aes"),
    xf("aes-128"),
    xf("aes-192"),
    xf("aes-256"),
    xf("aesctr"),
    xf("aes-128-ctr"),
    xf("aes-192-ctr"),
    xf("aes-256-ctr"),
    aead("aes-128-gcm"),
    aead("aes-192-gcm"),
    aead("aes-256-gcm"),
    aead("aes-128-gmac"),
    aead("aes-192-gmac"),
    aead("aes-256-gmac"),
    xf("blowfish"),
    xf("cast128"),
    aead("chacha20-poly1305"),
    xf("null"),
];

pub const COMPXFS: &[Xf] = &[xf("unknown"), xf("deflate")];

pub const GROUPXFS: &[Xf] = &[
    xf("unknown"),
    xf("none"),
    xf("modp768"),
    xf("grp1"),
    xf("modp1024"),
    xf("grp2"),
    xf("modp1536"),
    xf("grp5"),
    xf("modp2048"),
    xf("grp14"),
    xf("modp3072"),
    xf("grp15"),
    xf("modp4096"),
    xf("grp16"),
    xf("modp6144"),
    xf("grp17"),
    xf("modp8192"),
    xf("grp18"),
    xf("ecp256"),
    xf("grp19"),
    xf("ecp384"),
    xf("grp20"),
    xf("ecp521"),
    xf("grp21"),
    xf("ecp224"),
    xf("grp26"),
    xf("bp224"),
    xf("grp27"),
    xf("bp256"),
    xf("grp28"),
    xf("bp384"),
    xf("grp29"),
    xf("bp512"),
    xf("grp30"),
];

/// `parse_xf`: the first entry whose name starts with `name`.
pub fn parse_xf(name: &str, table: &[Xf]) -> Option<Xf> {
    table.iter().copied().find(|x| x.name.starts_with(name))
}

/// isakmpd's name for a group (`GROUP_DESCRIPTION`), None for `none`/`unknown`.
pub fn group_desc(x: &Xf) -> Option<&'static str> {
    Some(match x.name {
        "modp768" | "grp1" => "MODP_768",
        "modp1024" | "grp2" => "MODP_1024",
        "modp1536" | "grp5" => "MODP_1536",
        "modp2048" | "grp14" => "MODP_2048",
        "modp3072" | "grp15" => "MODP_3072",
        "modp4096" | "grp16" => "MODP_4096",
        "modp6144" | "grp17" => "MODP_6144",
        "modp8192" | "grp18" => "MODP_8192",
        "ecp256" | "grp19" => "ECP_256",
        "ecp384" | "grp20" => "ECP_384",
        "ecp521" | "grp21" => "ECP_521",
        "ecp224" | "grp26" => "ECP_224",
        "bp224" | "grp27" => "BP_224",
        "bp256" | "grp28" => "BP_256",
        "bp384" | "grp29" => "BP_384",
        "bp512" | "grp30" => "BP_512",
        _ => return None,
    })
}

/// `struct ipsec_transforms`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Xfs {
    pub auth: Option<Xf>,
    pub enc: Option<Xf>,
    pub comp: Option<Xf>,
    pub group: Option<Xf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaType {
    Esp,
    Ah,
    Ipcomp,
    Ipip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tmode {
    Tunnel,
    Transport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IkeMode {
    Active,
    Passive,
    Dynamic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exch {
    Main,
    Aggressive,
    Quick,
}

/// `struct ike_mode`: a phase's exchange, transforms and lifetime (-1: none given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    pub exch: Exch,
    pub xfs: Option<Xfs>,
    pub life: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdType {
    Unknown,
    Ipv4,
    Ipv6,
    Fqdn,
    Ufqdn,
}

impl IdType {
    /// ike.c's `ike_id_types[]`.
    pub fn isakmpd(self) -> &'static str {
        match self {
            IdType::Unknown => "",
            IdType::Ipv4 => "IPV4_ADDR",
            IdType::Ipv6 => "IPV6_ADDR",
            IdType::Fqdn => "FQDN",
            IdType::Ufqdn => "USER_FQDN",
        }
    }

    /// parse.y's `get_id_type`.
    pub fn of(s: &str) -> IdType {
        if s.parse::<std::net::Ipv4Addr>().is_ok() {
            IdType::Ipv4
        } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
            IdType::Ipv6
        } else if s.contains('@') {
            IdType::Ufqdn
        } else {
            IdType::Fqdn
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IkeAuth {
    Rsa,
    Psk(String),
}

/// One expanded `ike` rule: a single source and destination.
#[derive(Clone, Debug)]
pub struct Rule {
    pub nr: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub src: Addr,
    pub dst: Addr,
    pub satype: SaType,
    pub tmode: Tmode,
    pub ikemode: IkeMode,
    pub p1: Phase,
    pub p2: Phase,
    pub srcid: Option<(String, IdType)>,
    pub dstid: Option<(String, IdType)>,
    pub ikeauth: IkeAuth,
    pub tag: Option<String>,
    /// `ike interface secN`: the unit N.
    pub iface: Option<u32>,
    pub local: Option<Addr>,
    pub peer: Option<Addr>,
}
