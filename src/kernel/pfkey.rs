//! PF_KEY v2 (RFC 2367): the key-management socket of OpenBSD and, as `af_key`, of Linux.
//!
//! Pure encoders and decoders, no socket: a message is a `sadb_msg` header followed by
//! extensions, every length in 64-bit words. The two kernels agree on RFC 2367's core and
//! differ in what they added:
//!
//! - Linux (`linux/pfkeyv2.h`): `SADB_X_EXT_SA2` carries the mode and reqid of an SA; flows
//!   are `SADB_X_SPDADD`/`SADB_X_SPDDELETE` with an `sadb_x_policy` holding
//!   `sadb_x_ipsecrequest`s; a `sockaddr` has no length byte.
//! - OpenBSD (`net/pfkeyv2.h`): flows are `SADB_X_ADDFLOW`/`SADB_X_DELFLOW` with the flow
//!   type, source/destination flow and mask addresses and the transport protocol as
//!   extensions; a `sockaddr` starts with its length (BSD `sa_len`).
//!
//! The byte layouts are checked against the Linux headers (tests/vectors/gen_pfkey.c,
//! compiled here) and, for OpenBSD, against layouts written out field by field from its
//! header in the tests below.
//!
//! A trap: Linux af_key installs HMAC-SHA2 with a 96-bit ICV (RFC 4868 wants half the
//! hash), and it has no AEAD; [`crate::ike::Backend::PfkeyLinux`] therefore never offers
//! or accepts those (see `crate::ike::ipsec_alg`).

#![forbid(unsafe_code)]

use std::net::IpAddr;

pub const PF_KEY_V2: u8 = 2;

pub const SADB_GETSPI: u8 = 1;
pub const SADB_UPDATE: u8 = 2;
pub const SADB_ADD: u8 = 3;
pub const SADB_DELETE: u8 = 4;
pub const SADB_GET: u8 = 5;
pub const SADB_ACQUIRE: u8 = 6;
pub const SADB_REGISTER: u8 = 7;
pub const SADB_EXPIRE: u8 = 8;
pub const SADB_FLUSH: u8 = 9;
/// OpenBSD only.
pub const SADB_X_ADDFLOW: u8 = 12;
pub const SADB_X_DELFLOW: u8 = 13;
/// Linux only.
pub const SADB_X_SPDADD: u8 = 14;
pub const SADB_X_SPDDELETE: u8 = 15;

pub const SADB_EXT_SA: u16 = 1;
pub const SADB_EXT_LIFETIME_CURRENT: u16 = 2;
pub const SADB_EXT_LIFETIME_HARD: u16 = 3;
pub const SADB_EXT_LIFETIME_SOFT: u16 = 4;
pub const SADB_EXT_ADDRESS_SRC: u16 = 5;
pub const SADB_EXT_ADDRESS_DST: u16 = 6;
pub const SADB_EXT_KEY_AUTH: u16 = 8;
pub const SADB_EXT_KEY_ENCRYPT: u16 = 9;
pub const SADB_EXT_SPIRANGE: u16 = 16;
/// Linux numbering.
pub const LINUX_EXT_X_POLICY: u16 = 18;
pub const LINUX_EXT_X_SA2: u16 = 19;
/// OpenBSD numbering.
pub const OBSD_EXT_SRC_MASK: u16 = 17;
pub const OBSD_EXT_DST_MASK: u16 = 18;
pub const OBSD_EXT_PROTOCOL: u16 = 19;
pub const OBSD_EXT_FLOW_TYPE: u16 = 20;
pub const OBSD_EXT_SRC_FLOW: u16 = 21;
pub const OBSD_EXT_DST_FLOW: u16 = 22;

pub const SADB_SATYPE_AH: u8 = 2;
pub const SADB_SATYPE_ESP: u8 = 3;
/// OpenBSD numbers its SA types differently: AH 1, ESP 2.
pub const OBSD_SATYPE_AH: u8 = 1;
pub const OBSD_SATYPE_ESP: u8 = 2;

pub const SADB_SASTATE_MATURE: u8 = 1;

/// OpenBSD flow types and directions (netinet/ip_ipsp.h).
pub const OBSD_FLOW_TYPE_REQUIRE: u8 = 3;
pub const OBSD_DIRECTION_IN: u8 = 1;
pub const OBSD_DIRECTION_OUT: u8 = 2;

/// Linux `linux/ipsec.h`.
pub const IPSEC_MODE_TRANSPORT: u8 = 1;
pub const IPSEC_MODE_TUNNEL: u8 = 2;
pub const IPSEC_DIR_INBOUND: u8 = 1;
pub const IPSEC_DIR_OUTBOUND: u8 = 2;
pub const IPSEC_DIR_FWD: u8 = 3;
pub const IPSEC_POLICY_IPSEC: u16 = 2;
pub const IPSEC_LEVEL_REQUIRE: u8 = 2;
pub const IPSEC_LEVEL_UNIQUE: u8 = 3;
pub const IPSEC_ULPROTO_ANY: u8 = 255;

/// Which kernel's dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    OpenBsd,
}

impl Platform {
    fn satype(self, ip_proto: u8) -> Option<u8> {
        match (self, ip_proto) {
            (Platform::Linux, 50) => Some(SADB_SATYPE_ESP),
            (Platform::Linux, 51) => Some(SADB_SATYPE_AH),
            (Platform::OpenBsd, 50) => Some(OBSD_SATYPE_ESP),
            (Platform::OpenBsd, 51) => Some(OBSD_SATYPE_AH),
            _ => None,
        }
    }

    fn ip_proto(self, satype: u8) -> Option<u8> {
        [50, 51]
            .into_iter()
            .find(|&p| self.satype(p) == Some(satype))
    }
}

/// One SA to add.
#[derive(Debug, Clone)]
pub struct SaParams<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub spi: [u8; 4],
    /// IP protocol: 50 ESP, 51 AH.
    pub proto: u8,
    /// PF_KEY numbers (the `pfkey` column of `crate::ike::ipsec_alg`); 0 for none.
    pub enc: u8,
    pub auth: u8,
    pub enc_key: &'a [u8],
    pub auth_key: &'a [u8],
    pub tunnel: bool,
    pub reqid: u32,
    pub hard_secs: u64,
    pub soft_secs: u64,
    /// Byte limits (0: none).
    pub hard_bytes: u64,
    pub soft_bytes: u64,
    /// SADB_UPDATE: fill in the larval SA a GETSPI left with this SPI.
    pub update: bool,
}

/// A flow (Linux: an SPD entry; OpenBSD: a flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub src_prefix: u8,
    pub dst: IpAddr,
    pub dst_prefix: u8,
    /// Transport protocol, 0 for any, and ports (0 for any).
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Linux: IPSEC_DIR_*; OpenBSD: OBSD_DIRECTION_*.
    pub dir: u8,
    /// The SA endpoints (tunnel mode) the traffic goes through.
    pub tmpl_src: IpAddr,
    pub tmpl_dst: IpAddr,
    pub tunnel: bool,
    /// IP protocol of the SA: 50 or 51.
    pub sa_proto: u8,
    pub reqid: u32,
    /// Linux: the policy's priority (lower wins).
    pub priority: u32,
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut Vec<u8>, ty: u8, satype: u8, seq: u32, pid: u32) -> Writer<'a> {
        let start = out.len();
        out.extend_from_slice(&[PF_KEY_V2, ty, 0, satype, 0, 0, 0, 0]);
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        Writer { out, start }
    }

    /// Opens an extension; returns its offset for [`Writer::close`].
    fn ext(&mut self, ty: u16) -> usize {
        let at = self.out.len();
        self.out.extend_from_slice(&[0, 0]);
        self.out.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    fn close(&mut self, at: usize) {
        while !(self.out.len() - at).is_multiple_of(8) {
            self.out.push(0);
        }
        let words = ((self.out.len() - at) / 8) as u16;
        self.out[at..at + 2].copy_from_slice(&words.to_ne_bytes());
    }

    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_ne_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_ne_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn sockaddr(&mut self, platform: Platform, a: IpAddr, port: u16) {
        let p = port.to_be_bytes();
        match (platform, a) {
            (Platform::Linux, IpAddr::V4(v4)) => {
                self.u16(libc::AF_INET as u16);
                self.bytes(&p);
                self.bytes(&v4.octets());
                self.bytes(&[0; 8]);
            }
            (Platform::Linux, IpAddr::V6(v6)) => {
                self.u16(libc::AF_INET6 as u16);
                self.bytes(&p);
                self.bytes(&[0, 0, 0, 0]);
                self.bytes(&v6.octets());
                self.u32(0);
            }
            (Platform::OpenBsd, IpAddr::V4(v4)) => {
                self.bytes(&[16, 2, p[0], p[1]]);
                self.bytes(&v4.octets());
                self.bytes(&[0; 8]);
            }
            (Platform::OpenBsd, IpAddr::V6(v6)) => {
                self.bytes(&[28, 24, p[0], p[1], 0, 0, 0, 0]);
                self.bytes(&v6.octets());
                self.u32(0);
            }
        }
    }

    /// An `sadb_address` extension: prefix length and protocol are Linux's use of the
    /// reserved bytes (OpenBSD leaves them zero).
    fn address(&mut self, platform: Platform, ty: u16, a: IpAddr, proto: u8, prefix: u8) {
        self.address_port(platform, ty, a, 0, proto, prefix)
    }

    fn address_port(
        &mut self,
        platform: Platform,
        ty: u16,
        a: IpAddr,
        port: u16,
        proto: u8,
        prefix: u8,
    ) {
        let at = self.ext(ty);
        match platform {
            Platform::Linux => {
                self.u8(proto);
                self.u8(prefix);
                self.u16(0);
            }
            Platform::OpenBsd => self.u32(0),
        }
        self.sockaddr(platform, a, port);
        self.close(at);
    }

    /// The address of an SA (not a flow): Linux wants "any protocol" and a full prefix,
    /// as setkey(8) sends.
    fn sa_address(&mut self, platform: Platform, ty: u16, a: IpAddr) {
        let full = if a.is_ipv4() { 32 } else { 128 };
        self.address(platform, ty, a, IPSEC_ULPROTO_ANY, full);
    }

    fn sa(&mut self, spi: [u8; 4], auth: u8, enc: u8) {
        let at = self.ext(SADB_EXT_SA);
        self.bytes(&spi); // network order, as on the wire
        self.u8(32); // replay window
        self.u8(SADB_SASTATE_MATURE);
        self.u8(auth);
        self.u8(enc);
        self.u32(0);
        self.close(at);
    }

    fn lifetime(&mut self, ty: u16, secs: u64, bytes: u64) {
        let at = self.ext(ty);
        self.u32(0);
        self.u64(bytes);
        self.u64(secs);
        self.u64(0);
        self.close(at);
    }

    fn key(&mut self, ty: u16, key: &[u8]) {
        let at = self.ext(ty);
        self.u16((key.len() * 8) as u16);
        self.u16(0);
        self.bytes(key);
        self.close(at);
    }

    fn finish(self) {
        let words = ((self.out.len() - self.start) / 8) as u16;
        self.out[self.start + 4..self.start + 6].copy_from_slice(&words.to_ne_bytes());
    }
}

fn prefix_mask(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(_) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            IpAddr::from(m.to_be_bytes())
        }
        IpAddr::V6(_) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::from(m.to_be_bytes())
        }
    }
}

/// SADB_ADD (or SADB_UPDATE, see [`SaParams::update`]) of one SA (one direction).
pub fn add_sa(
    out: &mut Vec<u8>,
    platform: Platform,
    seq: u32,
    pid: u32,
    p: &SaParams<'_>,
) -> Result<(), String> {
    let satype = platform
        .satype(p.proto)
        .ok_or_else(|| format!("PF_KEY: no SA type for IP protocol {}", p.proto))?;
    let ty = if p.update { SADB_UPDATE } else { SADB_ADD };
    let mut w = Writer::new(out, ty, satype, seq, pid);
    w.sa(p.spi, p.auth, p.enc);
    // Both or neither: Linux refuses one without the other (EINVAL).
    if p.hard_secs > 0 || p.soft_secs > 0 || p.hard_bytes > 0 {
        w.lifetime(SADB_EXT_LIFETIME_HARD, p.hard_secs, p.hard_bytes);
        w.lifetime(SADB_EXT_LIFETIME_SOFT, p.soft_secs, p.soft_bytes);
    }
    w.sa_address(platform, SADB_EXT_ADDRESS_SRC, p.src);
    w.sa_address(platform, SADB_EXT_ADDRESS_DST, p.dst);
    if p.auth != 0 {
        w.key(SADB_EXT_KEY_AUTH, p.auth_key);
    }
    // ESP always names its cipher key, empty for ESP-NULL (Linux requires the extension).
    if p.proto == 50 {
        w.key(SADB_EXT_KEY_ENCRYPT, p.enc_key);
    }
    if platform == Platform::Linux {
        // struct sadb_x_sa2: mode, reserved, sequence, reqid.
        let at = w.ext(LINUX_EXT_X_SA2);
        w.u8(if p.tunnel {
            IPSEC_MODE_TUNNEL
        } else {
            IPSEC_MODE_TRANSPORT
        });
        w.bytes(&[0, 0, 0]);
        w.u32(0);
        w.u32(p.reqid);
        w.close(at);
    } else if p.tunnel {
        // OpenBSD has no mode on the SA: tunnelling follows from the flow, or is forced
        // by SADB_X_SAFLAGS_TUNNEL in sadb_sa_flags.
        let flags_at = w.start + 16 + 12;
        w.out[flags_at..flags_at + 4].copy_from_slice(&0x004u32.to_ne_bytes());
    }
    w.finish();
    Ok(())
}

/// SADB_DELETE of one SA.
pub fn delete_sa(
    out: &mut Vec<u8>,
    platform: Platform,
    seq: u32,
    pid: u32,
    src: IpAddr,
    dst: IpAddr,
    spi: [u8; 4],
    proto: u8,
) -> Result<(), String> {
    sa_by_id(out, SADB_DELETE, platform, (seq, pid), src, dst, spi, proto)
}

/// SADB_GET of one SA (the kernel answers with the SA and its current lifetime).
#[allow(clippy::too_many_arguments)]
pub fn get_sa(
    out: &mut Vec<u8>,
    platform: Platform,
    seq: u32,
    pid: u32,
    src: IpAddr,
    dst: IpAddr,
    spi: [u8; 4],
    proto: u8,
) -> Result<(), String> {
    sa_by_id(out, SADB_GET, platform, (seq, pid), src, dst, spi, proto)
}

/// A message naming one SA by SPI and addresses (DELETE, GET).
#[allow(clippy::too_many_arguments)]
fn sa_by_id(
    out: &mut Vec<u8>,
    ty: u8,
    platform: Platform,
    (seq, pid): (u32, u32),
    src: IpAddr,
    dst: IpAddr,
    spi: [u8; 4],
    proto: u8,
) -> Result<(), String> {
    let satype = platform
        .satype(proto)
        .ok_or_else(|| format!("PF_KEY: no SA type for IP protocol {proto}"))?;
    let mut w = Writer::new(out, ty, satype, seq, pid);
    w.sa(spi, 0, 0);
    w.sa_address(platform, SADB_EXT_ADDRESS_SRC, src);
    w.sa_address(platform, SADB_EXT_ADDRESS_DST, dst);
    w.finish();
    Ok(())
}

/// SADB_GETSPI: a larval SA from `src` to `dst` with an SPI the kernel picks in
/// [min, max].
#[allow(clippy::too_many_arguments)]
pub fn getspi(
    out: &mut Vec<u8>,
    platform: Platform,
    seq: u32,
    pid: u32,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    min: u32,
    max: u32,
) -> Result<(), String> {
    let satype = platform
        .satype(proto)
        .ok_or_else(|| format!("PF_KEY: no SA type for IP protocol {proto}"))?;
    let mut w = Writer::new(out, SADB_GETSPI, satype, seq, pid);
    w.sa_address(platform, SADB_EXT_ADDRESS_SRC, src);
    w.sa_address(platform, SADB_EXT_ADDRESS_DST, dst);
    let at = w.ext(SADB_EXT_SPIRANGE);
    w.u32(min);
    w.u32(max);
    w.u32(0);
    w.close(at);
    w.finish();
    Ok(())
}

/// SADB_REGISTER for an SA type (the kernel then sends ACQUIREs for it to this socket).
pub fn register(out: &mut Vec<u8>, platform: Platform, seq: u32, pid: u32, proto: u8) {
    let satype = platform.satype(proto).unwrap_or(0);
    Writer::new(out, SADB_REGISTER, satype, seq, pid).finish();
}

/// SADB_FLUSH of every SA (satype 0: all types).
pub fn flush(out: &mut Vec<u8>, seq: u32, pid: u32) {
    Writer::new(out, SADB_FLUSH, 0, seq, pid).finish();
}

/// Adds (`add`) or deletes a flow: Linux SADB_X_SPDADD/SPDDELETE, OpenBSD
/// SADB_X_ADDFLOW/DELFLOW.
pub fn flow(
    out: &mut Vec<u8>,
    platform: Platform,
    add: bool,
    seq: u32,
    pid: u32,
    f: &Flow,
) -> Result<(), String> {
    match platform {
        Platform::Linux => {
            let ty = if add { SADB_X_SPDADD } else { SADB_X_SPDDELETE };
            let mut w = Writer::new(out, ty, 0, seq, pid);
            let proto = if f.proto == 0 {
                IPSEC_ULPROTO_ANY
            } else {
                f.proto
            };
            w.address_port(
                platform,
                SADB_EXT_ADDRESS_SRC,
                f.src,
                f.sport,
                proto,
                f.src_prefix,
            );
            w.address_port(
                platform,
                SADB_EXT_ADDRESS_DST,
                f.dst,
                f.dport,
                proto,
                f.dst_prefix,
            );
            // struct sadb_x_policy: type, dir, reserved, id, priority; then one
            // struct sadb_x_ipsecrequest (len, proto, mode, level, reserved, reqid,
            // reserved) followed by the tunnel endpoints.
            let at = w.ext(LINUX_EXT_X_POLICY);
            w.u16(IPSEC_POLICY_IPSEC);
            w.u8(f.dir);
            w.u8(0);
            w.u32(0);
            w.u32(f.priority);
            if add {
                let rq = w.out.len();
                w.u16(0);
                w.u16(u16::from(f.sa_proto));
                w.u8(if f.tunnel {
                    IPSEC_MODE_TUNNEL
                } else {
                    IPSEC_MODE_TRANSPORT
                });
                w.u8(if f.reqid != 0 {
                    IPSEC_LEVEL_UNIQUE
                } else {
                    IPSEC_LEVEL_REQUIRE
                });
                w.u16(0);
                w.u32(f.reqid);
                w.u32(0);
                if f.tunnel {
                    w.sockaddr(platform, f.tmpl_src, 0);
                    w.sockaddr(platform, f.tmpl_dst, 0);
                }
                let len = (w.out.len() - rq) as u16;
                w.out[rq..rq + 2].copy_from_slice(&len.to_ne_bytes());
            }
            w.close(at);
            w.finish();
        }
        Platform::OpenBsd => {
            let ty = if add { SADB_X_ADDFLOW } else { SADB_X_DELFLOW };
            let satype = platform
                .satype(f.sa_proto)
                .ok_or_else(|| format!("PF_KEY: no SA type for IP protocol {}", f.sa_proto))?;
            let mut w = Writer::new(out, ty, satype, seq, pid);
            // struct sadb_protocol as the flow type: proto = type, direction.
            let at = w.ext(OBSD_EXT_FLOW_TYPE);
            w.u8(OBSD_FLOW_TYPE_REQUIRE);
            w.u8(f.dir);
            w.u16(0);
            w.close(at);
            // The peer: ADDRESS_DST of an outgoing flow, ADDRESS_SRC of an incoming one.
            if add {
                if f.dir == OBSD_DIRECTION_OUT {
                    w.address(platform, SADB_EXT_ADDRESS_DST, f.tmpl_dst, 0, 0);
                } else {
                    w.address(platform, SADB_EXT_ADDRESS_SRC, f.tmpl_src, 0, 0);
                }
            }
            w.address_port(platform, OBSD_EXT_SRC_FLOW, f.src, f.sport, 0, 0);
            w.address(
                platform,
                OBSD_EXT_SRC_MASK,
                prefix_mask(f.src, f.src_prefix),
                0,
                0,
            );
            w.address_port(platform, OBSD_EXT_DST_FLOW, f.dst, f.dport, 0, 0);
            w.address(
                platform,
                OBSD_EXT_DST_MASK,
                prefix_mask(f.dst, f.dst_prefix),
                0,
                0,
            );
            let at = w.ext(OBSD_EXT_PROTOCOL);
            w.u8(f.proto);
            w.bytes(&[0, 0, 0]);
            w.close(at);
            w.finish();
        }
    }
    Ok(())
}

/// A message from the kernel, its extensions located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub ty: u8,
    pub errno: u8,
    pub satype: u8,
    pub seq: u32,
    pub pid: u32,
    /// (type, whole extension including its header)
    pub exts: Vec<(u16, &'a [u8])>,
}

impl<'a> Parsed<'a> {
    pub fn ext(&self, ty: u16) -> Option<&'a [u8]> {
        self.exts.iter().find(|(t, _)| *t == ty).map(|(_, b)| *b)
    }
}

/// Parses one message; `None` for anything malformed (lengths that disagree with the
/// buffer, a wrong version, a zero-length extension).
pub fn parse(buf: &[u8]) -> Option<Parsed<'_>> {
    if buf.len() < 16 || buf[0] != PF_KEY_V2 {
        return None;
    }
    let len = usize::from(u16::from_ne_bytes([buf[4], buf[5]])) * 8;
    if len < 16 || len > buf.len() {
        return None;
    }
    let mut exts = Vec::new();
    let mut off = 16;
    while off < len {
        if len - off < 4 {
            return None;
        }
        let elen = usize::from(u16::from_ne_bytes([buf[off], buf[off + 1]])) * 8;
        let ety = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]);
        if elen == 0 || elen > len - off {
            return None;
        }
        exts.push((ety, &buf[off..off + elen]));
        off += elen;
    }
    Some(Parsed {
        ty: buf[1],
        errno: buf[2],
        satype: buf[3],
        seq: u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
        pid: u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]),
        exts,
    })
}

/// The address in an `sadb_address` extension, with Linux's prefix length.
pub fn address(platform: Platform, ext: &[u8]) -> Option<(IpAddr, u8)> {
    let prefix = ext.get(5).copied().unwrap_or(0);
    let sa = ext.get(8..)?;
    let family = match platform {
        Platform::Linux => u16::from_ne_bytes([*sa.first()?, *sa.get(1)?]),
        Platform::OpenBsd => match sa.get(1)? {
            2 => libc::AF_INET as u16,
            24 => libc::AF_INET6 as u16,
            _ => return None,
        },
    };
    if family == libc::AF_INET as u16 {
        let b: [u8; 4] = sa.get(4..8)?.try_into().ok()?;
        Some((IpAddr::from(b), prefix))
    } else if family == libc::AF_INET6 as u16 {
        let b: [u8; 16] = sa.get(8..24)?.try_into().ok()?;
        Some((IpAddr::from(b), prefix))
    } else {
        None
    }
}

/// An SADB_EXPIRE: which SA, and whether its hard or soft limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expire {
    pub dst: IpAddr,
    pub spi: [u8; 4],
    /// IP protocol.
    pub proto: u8,
    pub hard: bool,
}

pub fn expire(platform: Platform, m: &Parsed<'_>) -> Option<Expire> {
    if m.ty != SADB_EXPIRE {
        return None;
    }
    let sa = m.ext(SADB_EXT_SA)?;
    let spi: [u8; 4] = sa.get(4..8)?.try_into().ok()?;
    let (dst, _) = address(platform, m.ext(SADB_EXT_ADDRESS_DST)?)?;
    Some(Expire {
        dst,
        spi,
        proto: platform.ip_proto(m.satype)?,
        hard: m.ext(SADB_EXT_LIFETIME_HARD).is_some(),
    })
}

/// An SADB_ACQUIRE: the SA endpoints wanted (and, on Linux, the flow's addresses are the
/// source and destination address extensions with their prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquire {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
}

pub fn acquire(platform: Platform, m: &Parsed<'_>) -> Option<Acquire> {
    if m.ty != SADB_ACQUIRE {
        return None;
    }
    let (src, _) = address(platform, m.ext(SADB_EXT_ADDRESS_SRC)?)?;
    let (dst, _) = address(platform, m.ext(SADB_EXT_ADDRESS_DST)?)?;
    Some(Acquire {
        src,
        dst,
        proto: platform.ip_proto(m.satype)?,
    })
}

/// The SPI of an SADB_GETSPI answer.
pub fn getspi_answer(m: &Parsed<'_>) -> Option<[u8; 4]> {
    if m.ty != SADB_GETSPI || m.errno != 0 {
        return None;
    }
    m.ext(SADB_EXT_SA)?.get(4..8)?.try_into().ok()
}

/// An error answer to request `req` (its header with `errno`, no extensions), for a
/// request the relay could not pass on.
pub fn error_reply(req: &[u8], errno: u8) -> Vec<u8> {
    let mut out = [0u8; 16];
    let n = req.len().min(16);
    out[..n].copy_from_slice(&req[..n]);
    out[0] = PF_KEY_V2;
    out[2] = errno;
    out[4..6].copy_from_slice(&2u16.to_ne_bytes());
    out.to_vec()
}

/// Which backend the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `-n`: record only.
    None,
    Xfrm,
    Pfkey,
}

impl Backend {
    pub fn describe(self) -> &'static str {
        match self {
            Backend::None => "none (SAs are recorded, not installed)",
            Backend::Xfrm => "XFRM netlink",
            Backend::Pfkey => "PF_KEY v2",
        }
    }
}

#[cfg(test)]
#[path = "pfkey_tests.rs"]
mod tests;
