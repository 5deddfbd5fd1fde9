//! The rules ipsec.conf(5) writes straight into the kernel's databases — `flow` (SPD),
//! `sa` with static keys and `tcpmd5` (SAD), and the SA bundles `bundle` makes — as
//! parse.y builds them, with ipsecctl.c's printers (`ipsecctl_print_flow`,
//! `ipsecctl_print_sa`, `ipsecctl_print_sabundle`) and parse.y's key and SPI readers
//! (`parsekey`, `parsekeyfile`, `atospi`) and checks (`validate_sa`).
//!
//! This ipsecctl parses and prints them (`-n`); loading them needs PF_KEY (see mod.rs).

use super::host::{self, Addr, Af};
use super::rule::{Xf, Xfs, AUTHXFS, COMPXFS, ENCXFS};
use std::fmt::Write as _;

/// `IPSEC_*` SA types, with the names ipsecctl prints (`satype[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KSatype {
    Esp,
    Ah,
    Ipcomp,
    Tcpmd5,
    Ipip,
}

impl KSatype {
    pub fn name(self) -> &'static str {
        match self {
            KSatype::Esp => "esp",
            KSatype::Ah => "ah",
            KSatype::Ipcomp => "ipcomp",
            KSatype::Tcpmd5 => "tcpmd5",
            KSatype::Ipip => "ipip",
        }
    }
}

/// A flow's direction (`direction[]`); `InOut` only while parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
    InOut,
}

/// `TYPE_*` flow types, named as `flowtype[]` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowType {
    Use,
    Acquire,
    Require,
    Deny,
    Bypass,
    Dontacq,
}

impl FlowType {
    pub fn name(self) -> &'static str {
        match self {
            FlowType::Use => "use",
            FlowType::Acquire => "acquire",
            FlowType::Require => "require",
            FlowType::Deny => "deny",
            FlowType::Bypass => "bypass",
            FlowType::Dontacq => "dontacq",
        }
    }
}

/// A `flow` rule after expansion (one source, one destination, one direction).
#[derive(Clone, Debug)]
pub struct Flow {
    pub satype: KSatype,
    pub dir: Dir,
    pub proto: u8,
    pub src: Addr,
    pub sport: u16,
    pub dst: Addr,
    pub dport: u16,
    pub local: Option<Addr>,
    pub peer: Option<Addr>,
    /// `r->auth`: absent for deny and bypass flows.
    pub auth: Option<(Option<String>, Option<String>)>,
    pub flowtype: FlowType,
    /// `-c`: addresses of rules collapsed into this one (`ipsecctl -sc`).
    pub collapsed_src: Vec<Addr>,
    pub collapsed_dst: Vec<Addr>,
}

/// An `sa` or `tcpmd5` rule: one SA in one direction. Its Debug form leaves the keys out.
#[derive(Clone)]
pub struct Sa {
    pub satype: KSatype,
    pub tunnel: bool,
    pub src: Addr,
    pub dst: Addr,
    pub spi: u32,
    pub udpencap: Option<u16>,
    pub xfs: Option<Xfs>,
    pub authkey: Option<Vec<u8>>,
    pub enckey: Option<Vec<u8>>,
}

impl std::fmt::Debug for Sa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = |k: &Option<Vec<u8>>| k.as_ref().map(|k| format!("<{} bytes>", k.len()));
        f.debug_struct("Sa")
            .field("satype", &self.satype)
            .field("tunnel", &self.tunnel)
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("spi", &self.spi)
            .field("udpencap", &self.udpencap)
            .field("xfs", &self.xfs)
            .field("authkey", &key(&self.authkey))
            .field("enckey", &key(&self.enckey))
            .finish()
    }
}

/// `[bundle ...]`: two SAs grouped (SADB_X_GRPSPIS).
#[derive(Clone, Debug)]
pub struct Bundle {
    pub proto: KSatype,
    pub dst: Addr,
    pub spi: u32,
    pub proto2: KSatype,
    pub dst2: Addr,
    pub spi2: u32,
}

#[derive(Clone, Debug)]
pub enum KRuleKind {
    Flow(Flow),
    Sa(Sa),
    Bundle(Bundle),
}

/// A kernel rule, its number and the line it came from.
#[derive(Clone, Debug)]
pub struct KRule {
    pub nr: u32,
    /// Where it was read (file name as in messages, line).
    pub file: String,
    pub line: u32,
    pub kind: KRuleKind,
}

/// What the printers show: `-k` keys, `-c` collapsed flows.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrintOpts {
    pub showkey: bool,
    pub collapse: bool,
}

/// `ipsecctl_print_addr`: the address (inet_ntop) and `/bits` unless a host.
pub fn addr_text(a: &Addr) -> String {
    if let Some(ip) = a.ifaddr {
        return ip.to_string();
    }
    let (base, full) = match a.af {
        Af::V6 => (
            a.name.split('/').next().unwrap_or_default().to_string(),
            128,
        ),
        Af::V4 => (v4_base(&a.name), 32),
        Af::Unspec => return "?".into(),
    };
    if u32::from(a.bits) != full {
        format!("{base}/{}", a.bits)
    } else {
        base
    }
}

/// The address part of an IPv4 name as inet_net_pton reads it ("10.1/16" is 10.1.0.0).
fn v4_base(name: &str) -> String {
    let part = name.split('/').next().unwrap_or_default();
    if let Ok(a) = part.parse::<std::net::Ipv4Addr>() {
        return a.to_string();
    }
    let mut o = [0u8; 4];
    for (i, x) in part.split('.').take(4).enumerate() {
        o[i] = x.parse::<u8>().unwrap_or(0);
    }
    std::net::Ipv4Addr::from(o).to_string()
}

fn hex(out: &mut String, key: &[u8]) {
    for b in key {
        let _ = write!(out, "{b:02x}");
    }
}

fn addr_list(out: &mut String, first: &Addr, more: &[Addr], collapse: bool) {
    if collapse {
        out.push_str("{ ");
        out.push_str(&addr_text(first));
        for a in more {
            out.push_str(", ");
            out.push_str(&addr_text(a));
        }
        out.push_str(" }");
    } else {
        out.push_str(&addr_text(first));
    }
}

/// `ipsecctl_print_flow`.
pub fn print_flow(f: &Flow, o: PrintOpts, out: &mut String) {
    let dir = match f.dir {
        Dir::In => "in",
        Dir::Out => "out",
        Dir::InOut => "?",
    };
    let _ = write!(out, "flow {} {dir}", f.satype.name());
    if f.proto != 0 {
        out.push_str(" proto ");
        out.push_str(&host::proto_name(f.proto));
    }
    let pname = if f.proto == 6 { "tcp" } else { "udp" };
    out.push_str(" from ");
    addr_list(out, &f.src, &f.collapsed_src, o.collapse);
    if f.sport != 0 {
        let _ = write!(out, " port {}", host::service_name(f.sport, pname));
    }
    out.push_str(" to ");
    addr_list(out, &f.dst, &f.collapsed_dst, o.collapse);
    if f.dport != 0 {
        let _ = write!(out, " port {}", host::service_name(f.dport, pname));
    }
    if let Some(l) = &f.local {
        let _ = write!(out, " local {}", addr_text(l));
    }
    if let Some(p) = &f.peer {
        let _ = write!(out, " peer {}", addr_text(p));
    }
    if let Some((srcid, dstid)) = &f.auth {
        if let Some(s) = srcid {
            let _ = write!(out, " srcid {s}");
        }
        if let Some(d) = dstid {
            let _ = write!(out, " dstid {d}");
        }
    }
    let _ = writeln!(out, " type {}", f.flowtype.name());
}

/// `ipsecctl_print_sa`.
pub fn print_sa(s: &Sa, o: PrintOpts, out: &mut String) {
    let _ = write!(out, "{} ", s.satype.name());
    if s.satype != KSatype::Tcpmd5 && s.satype != KSatype::Ipip {
        out.push_str(if s.tunnel { "tunnel " } else { "transport " });
    }
    let _ = write!(
        out,
        "from {} to {} spi 0x{:08x}",
        addr_text(&s.src),
        addr_text(&s.dst),
        s.spi
    );
    if s.satype != KSatype::Tcpmd5 {
        if let Some(x) = &s.xfs {
            for (what, xf) in [("auth", x.auth), ("enc", x.enc), ("comp", x.comp)] {
                if let Some(xf) = xf {
                    let _ = write!(out, " {what} {}", xf.name);
                }
            }
        }
    }
    let sep = if s.satype == KSatype::Tcpmd5 {
        " "
    } else {
        " \\\n\t"
    };
    if o.showkey {
        for (what, key) in [("authkey", &s.authkey), ("enckey", &s.enckey)] {
            if let Some(k) = key {
                let _ = write!(out, "{sep}{what} 0x");
                hex(out, k);
            }
        }
    }
    out.push('\n');
}

/// `ipsecctl_print_sabundle`.
pub fn print_bundle(b: &Bundle, out: &mut String) {
    let _ = writeln!(
        out,
        "[bundle {} to {} spi 0x{:08x} with {} to {} spi 0x{:08x}]",
        b.proto.name(),
        addr_text(&b.dst),
        b.spi,
        b.proto2.name(),
        addr_text(&b.dst2),
        b.spi2
    );
}

/// `ipsecctl_print_rule` for a kernel rule (`-vv` numbers it).
pub fn print_rule(r: &KRule, o: PrintOpts, vv: bool, out: &mut String) {
    if vv {
        let _ = write!(out, "@{} ", r.nr);
    }
    match &r.kind {
        KRuleKind::Flow(f) => print_flow(f, o, out),
        KRuleKind::Sa(s) => print_sa(s, o, out),
        KRuleKind::Bundle(b) => print_bundle(b, out),
    }
}

/// `SPI_RESERVED_MIN`..=`SPI_RESERVED_MAX` (ip_ipsp.h).
const SPI_RESERVED: std::ops::RangeInclusive<u64> = 1..=255;

/// Why an SPI was refused: a message for yyerror, or none (atoul failed silently).
pub enum SpiError {
    Silent,
    Msg(String),
}

/// `atospi`: strtoul(s, 0) over the whole string, in range, not reserved.
pub fn atospi(s: &str) -> Result<u32, SpiError> {
    let v = strtoul0(s).ok_or(SpiError::Silent)?;
    if v > u64::from(u32::MAX) {
        return Err(SpiError::Msg(format!("{v} not a valid spi")));
    }
    if SPI_RESERVED.contains(&v) {
        return Err(SpiError::Msg(format!("{v} within reserved spi range")));
    }
    Ok(v as u32)
}

/// `NUMBER` SPIs.
pub fn number_spi(n: i64) -> Result<u32, String> {
    if n < 0 || n > i64::from(u32::MAX) {
        return Err(format!("{n} not a valid spi"));
    }
    if SPI_RESERVED.contains(&(n as u64)) {
        return Err(format!("{n} within reserved spi range"));
    }
    Ok(n as u32)
}

/// strtoul(s, &ep, 0) that must consume all of `s` (leading blanks and a sign allowed,
/// as strtoul(3) takes them).
fn strtoul0(s: &str) -> Option<u64> {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // strtoul clamps to ULONG_MAX on overflow (an error only then).
    let v = u64::from_str_radix(digits, radix).ok()?;
    Some(if neg { v.wrapping_neg() } else { v })
}

/// `parsekey`: pairs of hex digits (an odd last digit is ignored). A pair that is not
/// hex is reported (once per pair, as x2i does) and stored as 0xff.
pub fn parsekey(hex: &[u8], errors: &mut Vec<String>) -> Vec<u8> {
    hex.chunks_exact(2)
        .map(|p| {
            let s = std::str::from_utf8(p).unwrap_or("");
            if p.iter().all(u8::is_ascii_hexdigit) {
                u8::from_str_radix(s, 16).unwrap_or(0xff)
            } else {
                errors.push("keys need to be specified in hex digits".into());
                0xff
            }
        })
        .collect()
}

/// `KEYSIZE_LIMIT`: the largest key file.
const KEYSIZE_LIMIT: u64 = 1024;

/// `parsekeyfile`: a file of hex digits; a missing, empty or too large file is fatal.
pub fn parsekeyfile(name: &str, errors: &mut Vec<String>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(name).map_err(|e| format!("open {name}: {}", super::os_msg(&e)))?;
    let size = f
        .metadata()
        .map_err(|e| format!("parsekeyfile: stat {name}: {}", super::os_msg(&e)))?
        .len();
    if size > KEYSIZE_LIMIT || size == 0 {
        let why = if size > 0 { "large" } else { "small" };
        return Err(format!("{name}: key too {why}"));
    }
    let mut data = Vec::new();
    f.take(KEYSIZE_LIMIT)
        .read_to_end(&mut data)
        .map_err(|e| format!("parsekeyfile: read: {}", super::os_msg(&e)))?;
    if (data.len() as u64) < size {
        return Err("parsekeyfile: read: short read".into());
    }
    Ok(parsekey(&data, errors))
}

fn xf(table: &'static [Xf], name: &str) -> Option<Xf> {
    table.iter().copied().find(|x| x.name == name)
}

/// parse.y's key sizes (`keymin`, `keymax` of the transform tables), in bytes.
fn keysize(x: &Xf) -> (usize, usize) {
    match x.name {
        "hmac-md5" => (16, 16),
        "hmac-ripemd160" | "hmac-sha1" => (20, 20),
        "hmac-sha2-256" => (32, 32),
        "hmac-sha2-384" => (48, 48),
        "hmac-sha2-512" => (64, 64),
        "3des-cbc" => (24, 24),
        "aes" => (16, 32),
        "aes-128" => (16, 16),
        "aes-192" => (24, 24),
        "aes-256" => (32, 32),
        "aesctr" => (20, 36),
        "aes-128-ctr" | "aes-128-gcm" | "aes-128-gmac" => (20, 20),
        "aes-192-ctr" | "aes-192-gcm" | "aes-192-gmac" => (28, 28),
        "aes-256-ctr" | "aes-256-gcm" | "aes-256-gmac" | "chacha20-poly1305" => (36, 36),
        "blowfish" => (5, 56),
        "cast128" => (5, 16),
        _ => (0, 0),
    }
}

/// Ciphers that need a unique nonce per key: never with static keys (`nostatic`).
fn nostatic(x: &Xf) -> bool {
    x.name.contains("ctr") || x.noauth
}

/// `validate_sa`: the checks and defaults of an SA (`xfs` None for tcpmd5). Err is the
/// message for yyerror.
pub fn validate_sa(
    spi: u32,
    satype: KSatype,
    xfs: &mut Option<Xfs>,
    authkey: Option<&[u8]>,
    enckey: Option<&[u8]>,
    transport: bool,
) -> Result<(), String> {
    if spi == 0 {
        return Err("no SPI specified".into());
    }
    let none = || "no transforms specified".to_string();
    match satype {
        KSatype::Ah => {
            let x = xfs.as_mut().ok_or_else(none)?;
            if x.auth.is_none() {
                x.auth = xf(AUTHXFS, "hmac-sha2-256");
            }
            if x.enc.is_some() {
                return Err("ah does not provide encryption".into());
            }
            if x.comp.is_some() {
                return Err("ah does not provide compression".into());
            }
        }
        KSatype::Esp => {
            let x = xfs.as_mut().ok_or_else(none)?;
            if x.comp.is_some() {
                return Err("esp does not provide compression".into());
            }
            let enc = *x.enc.get_or_insert(ENCXFS[3]);
            if nostatic(&enc) {
                return Err(format!("{} is disallowed with static keys", enc.name));
            }
            if enc.noauth && x.auth.is_some() {
                return Err(format!("authentication is implicit for {}", enc.name));
            } else if !enc.noauth && x.auth.is_none() {
                x.auth = xf(AUTHXFS, "hmac-sha2-256");
            }
        }
        KSatype::Ipcomp => {
            let x = xfs
                .as_mut()
                .ok_or_else(|| "no transform specified".to_string())?;
            if x.auth.is_some() || x.enc.is_some() {
                return Err("no encryption or authentication with ipcomp".into());
            }
            if x.comp.is_none() {
                x.comp = xf(COMPXFS, "deflate");
            }
        }
        KSatype::Ipip => {
            let x = xfs
                .as_ref()
                .ok_or_else(|| "no transform specified".to_string())?;
            if x.auth.is_some() || x.enc.is_some() || x.comp.is_some() {
                return Err("no encryption, authentication or compression with ipip".into());
            }
        }
        KSatype::Tcpmd5 => {
            if authkey.is_none() && !transport {
                return Err("authentication key needed for tcpmd5".into());
            }
        }
    }
    if let Some(a) = xfs.as_ref().and_then(|x| x.auth) {
        if authkey.is_none() && a.name != "none" {
            return Err("no authentication key specified".into());
        }
        let want = keysize(&a).0;
        if let Some(k) = authkey {
            if k.len() != want {
                return Err(format!(
                    "wrong authentication key length, needs to be {} bits",
                    want * 8
                ));
            }
        }
    }
    if let Some(e) = xfs.as_ref().and_then(|x| x.enc) {
        if enckey.is_none() && e.name != "null" {
            return Err("no encryption key specified".into());
        }
        let (min, max) = keysize(&e);
        if let Some(k) = enckey {
            if k.len() < min {
                return Err(format!(
                    "encryption key too short ({} bits), minimum {} bits",
                    k.len() * 8,
                    min * 8
                ));
            }
            if max < k.len() {
                return Err(format!(
                    "encryption key too long ({} bits), maximum {} bits",
                    k.len() * 8,
                    max * 8
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spis_and_keys() {
        assert_eq!(atospi("0xdeadbeef").ok(), Some(0xdead_beef));
        assert_eq!(atospi("010000").ok(), Some(0o10000));
        assert!(
            matches!(atospi("0x10"), Err(SpiError::Msg(m)) if m == "16 within reserved spi range")
        );
        assert!(matches!(atospi("0x1g"), Err(SpiError::Silent)));
        assert!(matches!(atospi(""), Err(SpiError::Silent)));
        assert!(matches!(atospi("0x100000000"), Err(SpiError::Msg(_))));
        let mut e = Vec::new();
        assert_eq!(parsekey(b"a0B1c", &mut e), vec![0xa0, 0xb1]);
        assert!(e.is_empty());
        assert_eq!(parsekey(b"zz00", &mut e), vec![0xff, 0]);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn sa_defaults_and_checks() {
        let mut x = Some(Xfs::default());
        let k32 = [0u8; 32];
        let k16 = [0u8; 16];
        validate_sa(0x1000, KSatype::Esp, &mut x, Some(&k32), Some(&k16), false)
            .expect("esp defaults");
        let x = x.expect("xfs");
        assert_eq!(x.enc.map(|e| e.name), Some("aes"));
        assert_eq!(x.auth.map(|e| e.name), Some("hmac-sha2-256"));
        let mut y = Some(Xfs::default());
        assert_eq!(
            validate_sa(0x1000, KSatype::Esp, &mut y, Some(&k16), Some(&k16), false),
            Err("wrong authentication key length, needs to be 256 bits".into())
        );
        let mut z = Some(Xfs::default());
        assert_eq!(
            validate_sa(0, KSatype::Ah, &mut z, None, None, false),
            Err("no SPI specified".into())
        );
        let mut g = Some(Xfs {
            enc: super::super::rule::parse_xf("aes-128-gcm", ENCXFS),
            ..Default::default()
        });
        assert_eq!(
            validate_sa(0x1000, KSatype::Esp, &mut g, None, Some(&[0; 20]), false),
            Err("aes-128-gcm is disallowed with static keys".into())
        );
    }
}
