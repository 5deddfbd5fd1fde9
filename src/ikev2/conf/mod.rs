//! iked.conf(5): the configuration file of OpenBSD's iked(8), read by a hand-written lexer
//! ([`lex`]) and recursive-descent parser ([`parse`]) into plain typed values
//! ([`IkedConf`]), and turned into the engine's [`Policy`](crate::ikev2::policy::Policy)
//! by [`IkedConf::to_engine`] ([`to_policy`]). Issue 17.
//!
//! The grammar is that of iked's `parse.y` (OpenBSD 7.2, openiked-portable 7.x): the same
//! keywords, the same fixed order of the clauses of an `ikev2` rule, the same algorithm
//! tables (`ikeencxfs`, `ipsecencxfs`, `authxfs`, `prfxfs`, `groupxfs`, `methodxfs`,
//! `cpxfs`), the same lexing rules (what ends a number, what may be in an unquoted
//! string, `$macro` expansion outside quotes and never inside an expansion, `\` line
//! continuation, `#` comments that a trailing `\` continues too), and the same
//! defaults (the proposals of `ikev2_default_*_transforms`, passive mode, DPD every 60 s,
//! child SA lifetime 3 h / 4 GiB, names `policyN` counted over every rule).
//!
//! Where we differ, on purpose:
//! - errors say `file:line: what was expected, what was found` instead of
//!   `file: line: syntax error`, and parsing goes on at the next line so every error of a
//!   file is reported at once (as iked's `error '\n'` rule does), up to [`MAX_ERRORS`];
//! - transform and option names must be spelt out: iked's `parse_xf()` compares only
//!   `strlen(name)` bytes, so `enc aes` is its `aes-128`; here it is an error;
//! - nothing is looked up in the system: protocol and service names come from small
//!   built-in tables ([`lex::protocol_number`], [`lex::service_port`]), host names and
//!   interface names are kept as [`Host::Name`] (no resolver in the engine; the
//!   conversion skips what needs one, with a warning), `include` and `psk file` go through
//!   a loader callback, and `iface` is not checked with `if_nametoindex()`;
//! - lifetimes also take `s` and `d` units (iked takes `m` and `h` only), and a
//!   hexadecimal `psk 0x…` must have an even number of digits (iked drops the odd one).
//!
//! Use:
//!
//! ```
//! use isakmpd::ikev2::conf::parse_with;
//!
//! let text = "gw = \"192.0.2.2\"\n\
//!             ikev2 \"site\" active esp from 10.1.0.0/16 to 10.2.0.0/16 \\\n\
//!             peer $gw psk \"secret\"\n";
//! let mut loader = |name: &str| -> Result<String, String> { Err(format!("no {name}")) };
//! let conf = parse_with("/etc/iked.conf", text, &["gw=192.0.2.9"], &mut loader).unwrap();
//! let (policy, warnings) = conf.to_engine().unwrap();
//! assert_eq!(policy.peers[0].remote.to_string(), "192.0.2.9:500");
//! assert!(warnings.iter().any(|w| w.contains("active")));
//! ```
//!
//! Errors come as [`ConfErrors`], one [`ConfError`] per bad line, shown as
//! `file:line: message`, for example:
//!
//! ```text
//! /etc/iked.conf:3: expected `to` after `from 10.0.0.1`, found `peer`
//! ```
//!
//! Bounds (no input panics or runs away): [`MAX_INPUT`] bytes per file, tokens of at
//! most [`lex::MAX_TOKEN`] bytes, [`lex::MAX_EXPANSION`] bytes of macro expansion,
//! [`MAX_INCLUDE_DEPTH`] nested includes (and no include loops), [`MAX_LIST`]
//! entries in any list of a rule, [`MAX_POLICIES`] rules, and at most
//! [`to_policy::MAX_SUITES`] engine suites per policy.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;

pub mod lex;
pub mod parse;
pub mod to_policy;

pub use parse::{parse_str, parse_with};

/// Largest configuration file (or included file) read, in bytes.
pub const MAX_INPUT: usize = 4 << 20;
/// `include` files nested at most this deep (the top file is depth 0).
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Entries of any one list in a rule: flows, protocols, `ikesa`/`childsa` clauses,
/// transforms of one type in one clause, `config`/`request` options.
pub const MAX_LIST: usize = 64;
/// `ikev2` rules (iked has no limit; ours keeps memory bounded) and `user` lines.
pub const MAX_POLICIES: usize = 4096;
/// Errors collected before parsing stops.
pub const MAX_ERRORS: usize = 100;
/// iked's `IKED_IKE_SA_ALIVE_TIMEOUT`: the default `dpd_check_interval`, in seconds.
pub const DEFAULT_DPD_SECS: u32 = 60;
/// iked's `IKED_LIFETIME_SECONDS` and `IKED_LIFETIME_BYTES` (the man page: "3 hours and
/// 4 gigabytes").
pub const DEFAULT_LIFETIME_SECS: u64 = 3 * 3600;
pub const DEFAULT_LIFETIME_BYTES: u64 = 4 << 30;
/// iked's `IKED_PSK_SIZE`: the longest pre-shared key.
pub const MAX_PSK: usize = 1024;

/// A whole iked.conf, with its includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IkedConf {
    pub settings: Settings,
    pub users: Vec<User>,
    pub policies: Vec<IkedPolicy>,
    /// ipsec.conf(5) rules (`ike`, `flow`, `tcpmd5`, `sa`, `from`, `to`, `tunnel`,
    /// `transport` at the start of a line) that iked skips to the end of the line, as
    /// `file:line: keyword`; the conversion repeats them as warnings.
    pub skipped: Vec<String>,
}

/// The `set` options, with iked's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `set passive` (true) / `set active` (false, the default).
    pub passive: bool,
    /// `set decouple` (true) / `set couple` (false, the default).
    pub decouple: bool,
    /// `set fragmentation` / `set nofragmentation` (the default).
    pub fragmentation: bool,
    /// `set mobike` (the default) / `set nomobike`.
    pub mobike: bool,
    /// `set enforcesingleikesa` / `set noenforcesingleikesa` (the default).
    pub enforce_single_ikesa: bool,
    /// `set stickyaddress` / `set nostickyaddress` (the default).
    pub sticky_address: bool,
    /// `set vendorid` (the default) / `set novendorid`.
    pub vendor_id: bool,
    /// `set cert_partial_chain`.
    pub cert_partial_chain: bool,
    /// `set dpd_check_interval N`, seconds; 0 turns DPD off.
    pub dpd_check_interval: u32,
    /// `set ocsp URL [tolerate TIME [maxage TIME]]`.
    pub ocsp: Option<Ocsp>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            passive: false,
            decouple: false,
            fragmentation: false,
            mobike: true,
            enforce_single_ikesa: false,
            sticky_address: false,
            vendor_id: true,
            cert_partial_chain: false,
            dpd_check_interval: DEFAULT_DPD_SECS,
            ocsp: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ocsp {
    pub url: String,
    /// Seconds; iked's default is 0 (times not checked).
    pub tolerate: Option<u64>,
    /// Seconds; iked's default is -1 (no limit), here None.
    pub maxage: Option<u64>,
}

/// `user "name" "password"`: an entry of the local EAP password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: Secret,
}

/// Key material from the file (a PSK, a user's password): never printed by `Debug`, and
/// overwritten when dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// One `ikev2` rule, clause by clause, in the order of the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkedPolicy {
    /// The name given, or iked's generated `policyN` (N counts every rule, named or not,
    /// from 1, as `create_ike()`'s `policy_id`).
    pub name: String,
    /// The name was written in the file.
    pub named: bool,
    /// Where the rule starts, as `file:line`.
    pub origin: String,
    pub eval: Eval,
    pub mode: Mode,
    pub ipcomp: bool,
    pub tmode: TMode,
    /// `natt`: always use UDP encapsulation (IKED_POLICY_NATT_FORCE).
    pub natt: bool,
    pub sa_proto: SaProto,
    pub af: Option<Af>,
    /// `proto`: IP protocol numbers; empty for any.
    pub protos: Vec<u8>,
    pub rdomain: Option<u8>,
    /// `from … to …` pairs, at least one.
    pub flows: Vec<Flow>,
    pub local: Option<Host>,
    pub peer: Option<Host>,
    /// One entry per `ikesa` keyword, in order; empty for iked's defaults.
    pub ikesa: Vec<Transforms>,
    /// One entry per `childsa` keyword, in order; empty for iked's defaults.
    pub childsa: Vec<Transforms>,
    pub srcid: Option<Id>,
    pub dstid: Option<Id>,
    /// `ikelifetime`, seconds; None (iked's 0) is no IKE SA rekeying.
    pub ikelifetime: Option<u64>,
    /// `lifetime`; None for the defaults (3 h, 4 GiB).
    pub lifetime: Option<Lifetime>,
    pub auth: Auth,
    /// `config` and `request` options, in order.
    pub cfg: Vec<CfgOption>,
    pub iface: Option<String>,
    pub tag: Option<String>,
    /// `tap encN`: N.
    pub tap: Option<u32>,
}

/// How incoming requests are matched against this rule (`quick`, `skip`, `default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eval {
    Normal,
    Quick,
    Skip,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: wait for the peer.
    Passive,
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TMode {
    Tunnel,
    Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaProto {
    Esp,
    Ah,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Af {
    Inet,
    Inet6,
}

/// An address as iked.conf writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `any`: 0.0.0.0/0 and ::/0.
    Any,
    /// `dynamic` (flows only): the address given with `config address`.
    Dynamic,
    /// One address.
    Addr(IpAddr),
    /// `address/prefix`, as written (host bits are kept).
    Net(IpAddr, u8),
    /// A host, interface or interface group name: not resolved here.
    Name(String),
}

impl Host {
    /// The address family, if the value has one.
    pub fn af(&self) -> Option<Af> {
        match self {
            Host::Addr(a) | Host::Net(a, _) => Some(if a.is_ipv4() { Af::Inet } else { Af::Inet6 }),
            _ => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Any => f.write_str("any"),
            Host::Dynamic => f.write_str("dynamic"),
            Host::Addr(a) => write!(f, "{a}"),
            Host::Net(a, p) => write!(f, "{a}/{p}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// `from SRC [port P] [(SRCNAT)] to DST [port P]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub src: Host,
    pub src_port: Option<u16>,
    /// The real local network behind a NATed `src` (OUTGOING NETWORK ADDRESS TRANSLATION).
    pub src_nat: Option<Host>,
    pub dst: Host,
    pub dst_port: Option<u16>,
}

/// The transforms of one `ikesa` or `childsa` clause. An empty list means "iked's
/// default for this type".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transforms {
    pub enc: Vec<Xf>,
    pub auth: Vec<Xf>,
    pub prf: Vec<Xf>,
    pub group: Vec<Xf>,
    /// `esn` (true) and `noesn` (false), childsa only.
    pub esn: Vec<bool>,
}

/// One entry of iked's transform tables: the keyword, the IKEv2 transform ID (RFC 7296
/// §3.3.2, IANA), the key length in bits for those that carry one, and whether the
/// cipher authenticates by itself (AEAD, iked's `noauth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xf {
    pub name: &'static str,
    pub id: u16,
    pub key_bits: Option<u16>,
    pub aead: bool,
}

const fn xf(name: &'static str, id: u16, key_bits: u16, aead: bool) -> Xf {
    Xf {
        name,
        id,
        key_bits: if key_bits == 0 { None } else { Some(key_bits) },
        aead,
    }
}

/// `ikeencxfs`: the ciphers an `ikesa` may name.
pub const IKE_ENC: &[Xf] = &[
    xf("3des", 3, 0, false),
    xf("3des-cbc", 3, 0, false),
    xf("aes-128", 12, 128, false),
    xf("aes-192", 12, 192, false),
    xf("aes-256", 12, 256, false),
    xf("aes-128-gcm", 20, 128, true),
    xf("aes-256-gcm", 20, 256, true),
    xf("aes-128-gcm-12", 19, 128, true),
    xf("aes-256-gcm-12", 19, 256, true),
];

/// `ipsecencxfs`: the ciphers a `childsa` may name.
pub const ESP_ENC: &[Xf] = &[
    xf("3des", 3, 0, false),
    xf("3des-cbc", 3, 0, false),
    xf("aes-128", 12, 128, false),
    xf("aes-192", 12, 192, false),
    xf("aes-256", 12, 256, false),
    xf("aes-128-ctr", 13, 128, false),
    xf("aes-192-ctr", 13, 192, false),
    xf("aes-256-ctr", 13, 256, false),
    xf("aes-128-gcm", 20, 128, true),
    xf("aes-192-gcm", 20, 192, true),
    xf("aes-256-gcm", 20, 256, true),
    xf("aes-128-gmac", 21, 128, true),
    xf("aes-192-gmac", 21, 192, true),
    xf("aes-256-gmac", 21, 256, true),
    xf("blowfish", 7, 160, false),
    xf("cast", 6, 128, false),
    // RFC 7634 §2: no Key Length attribute; iked's table says 32 bytes.
    xf("chacha20-poly1305", 28, 256, true),
    xf("null", 11, 0, false),
];

/// `authxfs`: integrity algorithms (`auth`).
pub const AUTH: &[Xf] = &[
    xf("hmac-md5", 1, 0, false),
    xf("hmac-sha1", 2, 0, false),
    xf("hmac-sha2-256", 12, 0, false),
    xf("hmac-sha2-384", 13, 0, false),
    xf("hmac-sha2-512", 14, 0, false),
];

/// `prfxfs`: pseudo-random functions (`prf`).
pub const PRF: &[Xf] = &[
    xf("hmac-md5", 1, 0, false),
    xf("hmac-sha1", 2, 0, false),
    xf("hmac-sha2-256", 5, 0, false),
    xf("hmac-sha2-384", 6, 0, false),
    xf("hmac-sha2-512", 7, 0, false),
];

/// `groupxfs`: Diffie-Hellman groups (`group`). sntrup761x25519 is iked's private-use
/// 1035 (`IKEV2_XFORMDH_X_SNTRUP761X25519`).
pub const GROUP: &[Xf] = &[
    xf("none", 0, 0, false),
    xf("modp768", 1, 0, false),
    xf("grp1", 1, 0, false),
    xf("modp1024", 2, 0, false),
    xf("grp2", 2, 0, false),
    xf("modp1536", 5, 0, false),
    xf("grp5", 5, 0, false),
    xf("modp2048", 14, 0, false),
    xf("grp14", 14, 0, false),
    xf("modp3072", 15, 0, false),
    xf("grp15", 15, 0, false),
    xf("modp4096", 16, 0, false),
    xf("grp16", 16, 0, false),
    xf("modp6144", 17, 0, false),
    xf("grp17", 17, 0, false),
    xf("modp8192", 18, 0, false),
    xf("grp18", 18, 0, false),
    xf("ecp256", 19, 0, false),
    xf("grp19", 19, 0, false),
    xf("ecp384", 20, 0, false),
    xf("grp20", 20, 0, false),
    xf("ecp521", 21, 0, false),
    xf("grp21", 21, 0, false),
    xf("ecp192", 25, 0, false),
    xf("grp25", 25, 0, false),
    xf("ecp224", 26, 0, false),
    xf("grp26", 26, 0, false),
    xf("brainpool224", 27, 0, false),
    xf("grp27", 27, 0, false),
    xf("brainpool256", 28, 0, false),
    xf("grp28", 28, 0, false),
    xf("brainpool384", 29, 0, false),
    xf("grp29", 29, 0, false),
    xf("brainpool512", 30, 0, false),
    xf("grp30", 30, 0, false),
    xf("curve25519", 31, 0, false),
    xf("grp31", 31, 0, false),
    xf("sntrup761x25519", 1035, 0, false),
];

/// The transform of `table` called `name`, spelt out in full.
pub fn lookup_xf(table: &[Xf], name: &str) -> Option<Xf> {
    table.iter().find(|x| x.name == name).copied()
}

/// A `srcid`/`dstid` with the type iked's `get_id_type()` gives it: a leading `/` is an
/// ASN.1 DN, an IPv4 or IPv6 address is an address, an `@` makes a user FQDN, anything
/// else is an FQDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Asn1Dn(String),
    Ipv4(std::net::Ipv4Addr),
    Ipv6(std::net::Ipv6Addr),
    Ufqdn(String),
    Fqdn(String),
}

impl Id {
    pub fn infer(s: &str) -> Id {
        if s.starts_with('/') {
            Id::Asn1Dn(s.to_string())
        } else if let Ok(a) = s.parse() {
            Id::Ipv4(a)
        } else if let Ok(a) = s.parse() {
            Id::Ipv6(a)
        } else if s.contains('@') {
            Id::Ufqdn(s.to_string())
        } else {
            Id::Fqdn(s.to_string())
        }
    }
}

/// `lifetime TIME [bytes BYTES]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub seconds: u64,
    /// None: iked's default of 4 GiB.
    pub bytes: Option<u64>,
}

/// The `ikeauth` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No clause: any signature method (IKEV2_AUTH_SIG_ANY).
    Default,
    /// `psk STRING`, `psk 0xHEX` or `psk file "path"`.
    Psk(Secret),
    /// `eap "mschap-v2"` (the only EAP type iked has); the responder signs.
    EapMschapV2,
    /// `rsa`, `ecdsa256`, `ecdsa384`, `ecdsa521`, `rfc7427` or `signature`.
    Method(AuthMethod),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Rsa,
    Ecdsa256,
    Ecdsa384,
    Ecdsa521,
    Rfc7427,
    Signature,
}

impl AuthMethod {
    pub fn from_name(s: &str) -> Option<AuthMethod> {
        Some(match s {
            "rsa" => AuthMethod::Rsa,
            "ecdsa256" => AuthMethod::Ecdsa256,
            "ecdsa384" => AuthMethod::Ecdsa384,
            "ecdsa521" => AuthMethod::Ecdsa521,
            "rfc7427" => AuthMethod::Rfc7427,
            "signature" => AuthMethod::Signature,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Rsa => "rsa",
            AuthMethod::Ecdsa256 => "ecdsa256",
            AuthMethod::Ecdsa384 => "ecdsa384",
            AuthMethod::Ecdsa521 => "ecdsa521",
            AuthMethod::Rfc7427 => "rfc7427",
            AuthMethod::Signature => "signature",
        }
    }
}

/// `config OPTION ADDRESS` (served to the peer) or `request OPTION ADDRESS` (asked of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgOption {
    pub request: bool,
    pub kind: CfgKind,
    pub addr: Host,
    /// The RFC 7296 §3.15.1 attribute type, by the address family (iked's `cpxfs`;
    /// access-server is Microsoft's MS-IKEE 23456/23457).
    pub attr: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfgKind {
    Address,
    Netmask,
    NameServer,
    NetbiosServer,
    DhcpServer,
    ProtectedSubnet,
    AccessServer,
}

impl CfgKind {
    pub fn from_name(s: &str) -> Option<CfgKind> {
        Some(match s {
            "address" => CfgKind::Address,
            "netmask" => CfgKind::Netmask,
            "name-server" => CfgKind::NameServer,
            "netbios-server" => CfgKind::NetbiosServer,
            "dhcp-server" => CfgKind::DhcpServer,
            "protected-subnet" => CfgKind::ProtectedSubnet,
            "access-server" => CfgKind::AccessServer,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CfgKind::Address => "address",
            CfgKind::Netmask => "netmask",
            CfgKind::NameServer => "name-server",
            CfgKind::NetbiosServer => "netbios-server",
            CfgKind::DhcpServer => "dhcp-server",
            CfgKind::ProtectedSubnet => "protected-subnet",
            CfgKind::AccessServer => "access-server",
        }
    }

    /// The configuration attribute for an address family (`cpxfs`); None where iked has
    /// none (an IPv6 netmask).
    pub fn attr(self, af: Af) -> Option<u16> {
        Some(match (self, af) {
            (CfgKind::Address, Af::Inet) => 1,
            (CfgKind::Netmask, Af::Inet) => 2,
            (CfgKind::NameServer, Af::Inet) => 3,
            (CfgKind::NetbiosServer, Af::Inet) => 4,
            (CfgKind::DhcpServer, Af::Inet) => 6,
            (CfgKind::Address, Af::Inet6) => 8,
            (CfgKind::NameServer, Af::Inet6) => 10,
            (CfgKind::NetbiosServer, Af::Inet6) => 11,
            (CfgKind::DhcpServer, Af::Inet6) => 12,
            (CfgKind::ProtectedSubnet, Af::Inet) => 13,
            (CfgKind::ProtectedSubnet, Af::Inet6) => 15,
            (CfgKind::AccessServer, Af::Inet) => 23456,
            (CfgKind::AccessServer, Af::Inet6) => 23457,
            (CfgKind::Netmask, Af::Inet6) => return None,
        })
    }
}

/// One error: where, and what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    pub file: String,
    pub line: u32,
    pub msg: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.msg)
    }
}

/// Every error of a file (at least one), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfErrors(pub Vec<ConfError>);

impl ConfErrors {
    pub fn first(&self) -> Option<&ConfError> {
        self.0.first()
    }
}

impl fmt::Display for ConfErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfErrors {}
