//! XFRM netlink (Linux): the kernel's native IPsec interface, beside PF_KEY in pfkey.rs.
//! Pure encoders for the messages the daemon sends (XFRM_MSG_NEWSA, DELSA, NEWPOLICY,
//! DELPOLICY) and a decoder for what comes back (acks and errors), laid out exactly as
//! linux/xfrm.h defines the structures; tests compare them with bytes a C program built
//! from the kernel headers (tests/vectors/gen_xfrm.c).
//!
//! Netlink is host-endian except where the headers say `__be`: SPIs, ports.
//!
//! Linux installs `hmac(sha256)` with a 96-bit ICV unless told otherwise; RFC 4868 wants
//! 128, so integrity always goes as XFRMA_ALG_AUTH_TRUNC with the RFC's length.

#![forbid(unsafe_code)]

use std::net::IpAddr;

pub const NETLINK_XFRM: i32 = 6;

pub const XFRM_MSG_NEWSA: u16 = 0x10;
pub const XFRM_MSG_DELSA: u16 = 0x11;
pub const XFRM_MSG_NEWPOLICY: u16 = 0x13;
pub const XFRM_MSG_DELPOLICY: u16 = 0x14;
pub const XFRM_MSG_ALLOCSPI: u16 = 0x16;
pub const XFRM_MSG_UPDSA: u16 = 0x1a;
pub const XFRM_MSG_FLUSHSA: u16 = 0x1c;
pub const XFRM_MSG_FLUSHPOLICY: u16 = 0x1d;
pub const XFRM_MSG_MIGRATE: u16 = 0x21;
/// `struct xfrm_usersa_flush`'s protocol for all of them.
const IPSEC_PROTO_ANY: u8 = 255;
pub const XFRM_MSG_ACQUIRE: u16 = 0x17;
pub const XFRM_MSG_EXPIRE: u16 = 0x18;
/// Multicast groups (bit masks for nl_groups): XFRMNLGRP_ACQUIRE and XFRMNLGRP_EXPIRE.
pub const GROUPS_ACQUIRE_EXPIRE: u32 = 0x1 | 0x2;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const XFRMA_ALG_CRYPT: u16 = 2;
const XFRMA_ENCAP: u16 = 4;
const XFRMA_TMPL: u16 = 5;
const XFRMA_MIGRATE: u16 = 17;
const XFRMA_ALG_AEAD: u16 = 18;
const XFRMA_ALG_AUTH_TRUNC: u16 = 20;

pub const XFRM_POLICY_IN: u8 = 0;
pub const XFRM_POLICY_OUT: u8 = 1;
pub const XFRM_POLICY_FWD: u8 = 2;
pub const MODE_TRANSPORT: u8 = 0;
pub const MODE_TUNNEL: u8 = 1;
const XFRM_INF: u64 = u64::MAX;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const UDP_ENCAP_ESPINUDP: u16 = 2;

const SELECTOR_LEN: usize = 56;
const USERSA_INFO_LEN: usize = 224;
const USERSA_ID_LEN: usize = 24;
const USERPOLICY_INFO_LEN: usize = 168;
const USERPOLICY_ID_LEN: usize = 64;
const USER_TMPL_LEN: usize = 64;
const USER_MIGRATE_LEN: usize = 76;

/// Traffic selector: addresses with prefix lengths, protocol and ports (0 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selector {
    pub src: IpAddr,
    pub src_prefix: u8,
    pub dst: IpAddr,
    pub dst_prefix: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// One direction of an SA.
#[derive(Debug, Clone)]
pub struct SaSpec<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub spi: [u8; 4],
    /// IPPROTO_ESP (50) or IPPROTO_AH (51).
    pub proto: u8,
    pub mode: u8,
    pub reqid: u32,
    /// Cipher: kernel name and key.
    pub enc: Option<(&'static str, &'a [u8])>,
    /// Integrity: kernel name, key and ICV length in bits.
    pub auth: Option<(&'static str, &'a [u8], u32)>,
    /// AEAD: kernel name, key (with salt) and ICV length in bits.
    pub aead: Option<(&'static str, &'a [u8], u32)>,
    pub soft_secs: u64,
    pub hard_secs: u64,
    /// Byte limits (0: none): the soft one makes the kernel send EXPIRE, the hard one
    /// removes the state.
    pub soft_bytes: u64,
    pub hard_bytes: u64,
    /// UDP encapsulation (NAT-T): source and destination ports.
    pub encap: Option<(u16, u16)>,
    /// UDP-encapsulated transport: the peer's original address (its NAT-OA).
    pub encap_oa: Option<std::net::IpAddr>,
    /// XFRM_MSG_UPDSA: fill in the larval state an ALLOCSPI left with this SPI.
    pub update: bool,
}

/// A policy: selector, direction and the SA template it requires.
#[derive(Debug, Clone, Copy)]
pub struct PolicySpec {
    pub sel: Selector,
    pub dir: u8,
    pub priority: u32,
    pub tmpl_src: IpAddr,
    pub tmpl_dst: IpAddr,
    pub proto: u8,
    pub mode: u8,
    pub reqid: u32,
}

fn family(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn addr(b: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => b[..16].copy_from_slice(&v.octets()),
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A message under construction: header first, length patched by `finish`.
struct Msg<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
}

impl<'b> Msg<'b> {
    fn new(out: &'b mut Vec<u8>, ty: u16, flags: u16, seq: u32) -> Msg<'b> {
        let start = out.len();
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        Msg { out, start }
    }

    /// A zeroed, 4-aligned block of `n` bytes; returns its offset.
    fn block(&mut self, n: usize) -> usize {
        let at = self.out.len();
        self.out.resize(at + align4(n), 0);
        at
    }

    fn attr(&mut self, ty: u16, n: usize) -> usize {
        let at = self.block(4 + n);
        self.out[at..at + 2].copy_from_slice(&((4 + n) as u16).to_ne_bytes());
        self.out[at + 2..at + 4].copy_from_slice(&ty.to_ne_bytes());
        at + 4
    }

    fn put(&mut self, at: usize, b: &[u8]) {
        self.out[at..at + b.len()].copy_from_slice(b);
    }

    fn finish(self) {
        let n = (self.out.len() - self.start) as u32;
        self.out[self.start..self.start + 4].copy_from_slice(&n.to_ne_bytes());
    }
}

fn put_selector(m: &mut Msg<'_>, at: usize, s: &Selector) {
    addr(&mut m.out[at..at + 16], s.dst);
    addr(&mut m.out[at + 16..at + 32], s.src);
    m.put(at + 32, &s.dport.to_be_bytes());
    if s.dport != 0 {
        m.put(at + 34, &[0xff, 0xff]);
    }
    m.put(at + 36, &s.sport.to_be_bytes());
    if s.sport != 0 {
        m.put(at + 38, &[0xff, 0xff]);
    }
    m.put(at + 40, &family(s.src).to_ne_bytes());
    m.put(at + 42, &[s.dst_prefix, s.src_prefix, s.proto]);
}

fn put_infinite_lifetimes(m: &mut Msg<'_>, at: usize, soft_secs: u64, hard_secs: u64) {
    for i in 0..4 {
        m.put(at + i * 8, &XFRM_INF.to_ne_bytes());
    }
    m.put(at + 32, &soft_secs.to_ne_bytes());
    m.put(at + 40, &hard_secs.to_ne_bytes());
}

fn put_algo(m: &mut Msg<'_>, ty: u16, name: &str, key: &[u8], extra: Option<u32>) {
    let head = 64 + 4 + if extra.is_some() { 4 } else { 0 };
    let at = m.attr(ty, head + key.len());
    let n = name.len().min(63);
    m.put(at, &name.as_bytes()[..n]);
    m.put(at + 64, &((key.len() * 8) as u32).to_ne_bytes());
    if let Some(x) = extra {
        m.put(at + 68, &x.to_ne_bytes());
    }
    m.put(at + head, key);
}

/// XFRM_MSG_NEWSA (or UPDSA, see [`SaSpec::update`]) for one direction.
pub fn new_sa(out: &mut Vec<u8>, seq: u32, sa: &SaSpec<'_>) {
    let mut m = if sa.update {
        Msg::new(out, XFRM_MSG_UPDSA, NLM_F_REQUEST | NLM_F_ACK, seq)
    } else {
        Msg::new(
            out,
            XFRM_MSG_NEWSA,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            seq,
        )
    };
    let at = m.block(USERSA_INFO_LEN);
    // The selector stays empty but for the family: the policies do the selecting.
    m.put(at + 40, &family(sa.src).to_ne_bytes());
    addr(&mut m.out[at + 56..at + 72], sa.dst);
    m.put(at + 72, &sa.spi);
    m.put(at + 76, &[sa.proto]);
    addr(&mut m.out[at + 80..at + 96], sa.src);
    put_infinite_lifetimes(&mut m, at + 96, sa.soft_secs, sa.hard_secs);
    // struct xfrm_lifetime_cfg: soft_byte_limit, hard_byte_limit first.
    if sa.soft_bytes > 0 {
        m.put(at + 96, &sa.soft_bytes.to_ne_bytes());
    }
    if sa.hard_bytes > 0 {
        m.put(at + 104, &sa.hard_bytes.to_ne_bytes());
    }
    m.put(at + 208, &sa.reqid.to_ne_bytes());
    m.put(at + 212, &family(sa.src).to_ne_bytes());
    m.put(at + 214, &[sa.mode, 32]);
    if let Some((name, key)) = sa.enc {
        put_algo(&mut m, XFRMA_ALG_CRYPT, name, key, None);
    }
    if let Some((name, key, trunc)) = sa.auth {
        put_algo(&mut m, XFRMA_ALG_AUTH_TRUNC, name, key, Some(trunc));
    }
    if let Some((name, key, icv)) = sa.aead {
        put_algo(&mut m, XFRMA_ALG_AEAD, name, key, Some(icv));
    }
    if let Some(ports) = sa.encap {
        put_encap(&mut m, ports, sa.encap_oa);
    }
    m.finish();
}

/// XFRMA_ENCAP (struct xfrm_encap_tmpl): ESP in UDP between the ports (source,
/// destination), with the peer's original address when it has one (NAT-OA).
fn put_encap(m: &mut Msg<'_>, (sport, dport): (u16, u16), oa: Option<IpAddr>) {
    let at = m.attr(XFRMA_ENCAP, 24);
    m.put(at, &UDP_ENCAP_ESPINUDP.to_ne_bytes());
    m.put(at + 2, &sport.to_be_bytes());
    m.put(at + 4, &dport.to_be_bytes());
    // encap_oa (xfrm_address_t) after the two ports.
    if let Some(a) = oa {
        addr(&mut m.out[at + 8..at + 24], a);
    }
}

/// One state moved by [`migrate`] (struct xfrm_user_migrate), found by its old
/// addresses, protocol, mode and reqid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateSpec {
    pub old_src: IpAddr,
    pub old_dst: IpAddr,
    pub new_src: IpAddr,
    pub new_dst: IpAddr,
    pub proto: u8,
    pub mode: u8,
    pub reqid: u32,
    /// The state's UDP encapsulation after the move (source, destination ports); none
    /// keeps what it had.
    pub encap: Option<(u16, u16)>,
}

/// XFRM_MSG_MIGRATE (struct xfrm_userpolicy_id, XFRMA_MIGRATE, XFRMA_ENCAP): the policy
/// `sel`/`dir` and the state its template names move to new addresses. The kernel
/// clones the state with its keys, sequence numbers and replay window (what MOBIKE
/// needs, RFC 4555), and the template follows.
pub fn migrate(out: &mut Vec<u8>, seq: u32, sel: &Selector, dir: u8, mv: &MigrateSpec) {
    let mut m = Msg::new(out, XFRM_MSG_MIGRATE, NLM_F_REQUEST | NLM_F_ACK, seq);
    let at = m.block(USERPOLICY_ID_LEN);
    put_selector(&mut m, at, sel);
    m.put(at + 60, &[dir]);
    let at = m.attr(XFRMA_MIGRATE, USER_MIGRATE_LEN);
    addr(&mut m.out[at..at + 16], mv.old_dst);
    addr(&mut m.out[at + 16..at + 32], mv.old_src);
    addr(&mut m.out[at + 32..at + 48], mv.new_dst);
    addr(&mut m.out[at + 48..at + 64], mv.new_src);
    m.put(at + 64, &[mv.proto, mv.mode]);
    m.put(at + 68, &mv.reqid.to_ne_bytes());
    m.put(at + 72, &family(mv.old_src).to_ne_bytes());
    m.put(at + 74, &family(mv.new_src).to_ne_bytes());
    if let Some(ports) = mv.encap {
        put_encap(&mut m, ports, None);
    }
    m.finish();
}

/// XFRM_MSG_ALLOCSPI (struct xfrm_userspi_info): a larval state from `src` to `dst`
/// with an SPI the kernel picks in [min, max]; the answer is an XFRM_MSG_NEWSA with the
/// request's sequence number, then the ack.
pub fn alloc_spi(
    out: &mut Vec<u8>,
    seq: u32,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    min: u32,
    max: u32,
) {
    let mut m = Msg::new(out, XFRM_MSG_ALLOCSPI, NLM_F_REQUEST | NLM_F_ACK, seq);
    let at = m.block(USERSA_INFO_LEN + 8);
    m.put(at + 40, &family(src).to_ne_bytes());
    addr(&mut m.out[at + 56..at + 72], dst);
    m.put(at + 76, &[proto]);
    addr(&mut m.out[at + 80..at + 96], src);
    m.put(at + 212, &family(src).to_ne_bytes());
    m.put(at + USERSA_INFO_LEN, &min.to_ne_bytes());
    m.put(at + USERSA_INFO_LEN + 4, &max.to_ne_bytes());
    m.finish();
}

/// An error answer to request `req` (what the kernel would send), for a request the
/// relay could not pass on.
pub fn error_reply(req: &[u8], errno: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(36);
    out.extend_from_slice(&36u32.to_ne_bytes());
    out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    let seq = req.get(8..12).unwrap_or(&[0; 4]);
    out.extend_from_slice(seq);
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&(-errno).to_ne_bytes());
    let mut head = [0u8; 16];
    let n = req.len().min(16);
    head[..n].copy_from_slice(&req[..n]);
    out.extend_from_slice(&head);
    out
}

/// XFRM_MSG_DELSA.
pub fn del_sa(out: &mut Vec<u8>, seq: u32, dst: IpAddr, spi: [u8; 4], proto: u8) {
    let mut m = Msg::new(out, XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK, seq);
    let at = m.block(USERSA_ID_LEN);
    addr(&mut m.out[at..at + 16], dst);
    m.put(at + 16, &spi);
    m.put(at + 20, &family(dst).to_ne_bytes());
    m.put(at + 22, &[proto]);
    m.finish();
}

/// A per-socket policy for setsockopt(IP_XFRM_POLICY / IPV6_XFRM_POLICY): a struct
/// xfrm_userpolicy_info that lets the socket's traffic in direction `dir` pass without
/// IPsec (as strongSwan and, with IPSEC_LEVEL_BYPASS, isakmpd's sysdep_cleartext do), so
/// that IKE between two hosts is not caught by their own transport-mode policy.
pub fn socket_bypass(family: u16, dir: u8) -> [u8; USERPOLICY_INFO_LEN] {
    let mut p = [0u8; USERPOLICY_INFO_LEN];
    // struct xfrm_selector: family after the addresses and ports.
    p[40..42].copy_from_slice(&family.to_ne_bytes());
    p[160] = dir; // then action XFRM_POLICY_ALLOW (0)
    p
}

/// What a policy does with the traffic its selector matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// IPsec by the template; `optional`: traffic without an SA passes too.
    Tmpl { optional: bool },
    /// Passes without IPsec (no template).
    Bypass,
    /// Dropped (XFRM_POLICY_BLOCK).
    Block,
}

/// XFRM_MSG_NEWPOLICY with one template.
pub fn new_policy(out: &mut Vec<u8>, seq: u32, p: &PolicySpec) {
    new_policy_kind(out, seq, p, PolicyKind::Tmpl { optional: false });
}

/// XFRM_MSG_NEWPOLICY of any kind (the template fields of `p` serve `Tmpl` only).
pub fn new_policy_kind(out: &mut Vec<u8>, seq: u32, p: &PolicySpec, kind: PolicyKind) {
    let mut m = Msg::new(
        out,
        XFRM_MSG_NEWPOLICY,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
    );
    let at = m.block(USERPOLICY_INFO_LEN);
    put_selector(&mut m, at, &p.sel);
    put_infinite_lifetimes(&mut m, at + SELECTOR_LEN, 0, 0);
    m.put(at + 152, &p.priority.to_ne_bytes());
    // Direction, then the action: XFRM_POLICY_ALLOW (0) or XFRM_POLICY_BLOCK (1).
    m.put(at + 160, &[p.dir, u8::from(kind == PolicyKind::Block)]);
    let PolicyKind::Tmpl { optional } = kind else {
        m.finish();
        return;
    };
    let t = m.attr(XFRMA_TMPL, USER_TMPL_LEN);
    m.put(t + 50, &[u8::from(optional)]);
    addr(&mut m.out[t..t + 16], p.tmpl_dst);
    m.put(t + 20, &[p.proto]);
    m.put(t + 24, &family(p.tmpl_src).to_ne_bytes());
    addr(&mut m.out[t + 28..t + 44], p.tmpl_src);
    m.put(t + 44, &p.reqid.to_ne_bytes());
    m.put(t + 48, &[p.mode]);
    for off in [52, 56, 60] {
        m.put(t + off, &u32::MAX.to_ne_bytes());
    }
    m.finish();
}

/// XFRM_MSG_FLUSHSA (every protocol) and XFRM_MSG_FLUSHPOLICY: `ipsecctl -F`.
pub fn flush(out: &mut Vec<u8>, seq: u32) {
    let mut m = Msg::new(out, XFRM_MSG_FLUSHSA, NLM_F_REQUEST | NLM_F_ACK, seq);
    let at = m.block(4);
    m.put(at, &[IPSEC_PROTO_ANY]);
    m.finish();
    let m = Msg::new(
        out,
        XFRM_MSG_FLUSHPOLICY,
        NLM_F_REQUEST | NLM_F_ACK,
        seq.wrapping_add(1),
    );
    m.finish();
}

/// XFRM_MSG_DELPOLICY by selector and direction.
pub fn del_policy(out: &mut Vec<u8>, seq: u32, sel: &Selector, dir: u8) {
    let mut m = Msg::new(out, XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
    let at = m.block(USERPOLICY_ID_LEN);
    put_selector(&mut m, at, sel);
    m.put(at + 60, &[dir]);
    m.finish();
}

/// What one message from the kernel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An ack (errno 0) or an error for request `seq`.
    Ack { seq: u32, errno: i32 },
    /// A state, in answer to request `seq` (ALLOCSPI's answer): its SPI.
    Sa { seq: u32, spi: [u8; 4] },
    /// Something else (acquire, expire, ...): its type.
    Other(u16),
}

/// Walks the netlink messages in one datagram from the kernel. Malformed lengths end
/// the walk; nothing here trusts a length it has not checked.
pub fn replies(buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= 16 {
        let rd32 = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let len = rd32(&buf[off..]) as usize;
        if len < 16 || len > buf.len() - off {
            break;
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let errno = rd32(&buf[off + 16..]) as i32;
            let seq = rd32(&buf[off + 20 + 8..]);
            out.push(Reply::Ack { seq, errno: -errno });
        } else if ty == XFRM_MSG_NEWSA && len >= 16 + USERSA_INFO_LEN {
            let seq = rd32(&buf[off + 8..]);
            let b = &buf[off + 16 + 72..off + 16 + 76];
            out.push(Reply::Sa {
                seq,
                spi: [b[0], b[1], b[2], b[3]],
            });
        } else {
            out.push(Reply::Other(ty));
        }
        off += align4(len);
    }
    out
}

/// An XFRM_MSG_ACQUIRE: the kernel has traffic for a policy without a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquire {
    /// The tunnel endpoints the policy's template names.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The selector of the policy (the flow).
    pub sel: Selector,
}

fn ip_at(b: &[u8], family: u16) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::from(<[u8; 4]>::try_from(b.get(..4)?).ok()?)),
        AF_INET6 => Some(IpAddr::from(<[u8; 16]>::try_from(b.get(..16)?).ok()?)),
        _ => None,
    }
}

/// An XFRM_MSG_EXPIRE: a state's soft or hard lifetime ran out (after a hard expiry the
/// kernel has already removed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expire {
    pub dst: IpAddr,
    pub spi: [u8; 4],
    pub proto: u8,
    pub hard: bool,
}

/// What the kernel multicasts to the ACQUIRE and EXPIRE groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Acquire(Acquire),
    Expire(Expire),
}

/// The ACQUIREs and EXPIREs among the messages of one datagram from the multicast groups;
/// anything else, or anything truncated, is skipped.
pub fn events(buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= 16 {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || len > buf.len() - off {
            break;
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        let body = &buf[off + 16..off + len];
        if ty == XFRM_MSG_ACQUIRE && body.len() >= 96 {
            // struct xfrm_user_acquire: id (24), saddr (16), sel (56), policy (168), ...
            let sel = &body[40..96];
            let family = u16::from_ne_bytes([sel[40], sel[41]]);
            if let (Some(dst), Some(src), Some(sd), Some(ss)) = (
                ip_at(&body[0..16], family),
                ip_at(&body[24..40], family),
                ip_at(&sel[0..16], family),
                ip_at(&sel[16..32], family),
            ) {
                out.push(Event::Acquire(Acquire {
                    src,
                    dst,
                    sel: Selector {
                        src: ss,
                        src_prefix: sel[43],
                        dst: sd,
                        dst_prefix: sel[42],
                        proto: sel[44],
                        sport: u16::from_be_bytes([sel[36], sel[37]]),
                        dport: u16::from_be_bytes([sel[32], sel[33]]),
                    },
                }));
            }
        } else if ty == XFRM_MSG_EXPIRE && body.len() >= 225 {
            // struct xfrm_user_expire: state (struct xfrm_usersa_info: sel 56, id 24
            // (daddr, spi, proto), saddr 16, lft, curlft, stats, seq, reqid, family at
            // 212, ...; 224 bytes), hard.
            let family = u16::from_ne_bytes([body[212], body[213]]);
            if let Some(dst) = ip_at(&body[56..72], family) {
                out.push(Event::Expire(Expire {
                    dst,
                    spi: [body[72], body[73], body[74], body[75]],
                    proto: body[76],
                    hard: body[224] != 0,
                }));
            }
        }
        off += align4(len);
    }
    out
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let text = include_str!("../../tests/vectors/xfrm.txt");
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap();
        (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn newsa_matches_the_kernel_headers() {
        let enc: Vec<u8> = (0..16).collect();
        let auth: Vec<u8> = (0x80..0xa0).collect();
        let tunnel = SaSpec {
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.2"),
            spi: [0x11, 0x22, 0x33, 0x44],
            proto: 50,
            mode: MODE_TUNNEL,
            reqid: 7,
            enc: Some(("cbc(aes)", &enc)),
            auth: Some(("hmac(sha256)", &auth, 128)),
            aead: None,
            soft_secs: 1080,
            hard_secs: 1200,
            encap: None,
            encap_oa: None,
            update: false,
            soft_bytes: 0,
            hard_bytes: 0,
        };
        let mut out = Vec::new();
        new_sa(&mut out, 1, &tunnel);
        assert_eq!(out, fixture("newsa_esp_tunnel_aes_sha256"));
        let key: Vec<u8> = (0x40..0x54).collect();
        let mut out = Vec::new();
        new_sa(
            &mut out,
            2,
            &SaSpec {
                src: ip("192.0.2.2"),
                dst: ip("192.0.2.1"),
                spi: [0xca, 0xfe, 0, 1],
                reqid: 9,
                enc: None,
                auth: None,
                aead: Some(("rfc4106(gcm(aes))", &key, 128)),
                soft_secs: 0,
                hard_secs: 0,
                encap: Some((4500, 4500)),
                ..tunnel
            },
        );
        assert_eq!(out, fixture("newsa_esp_gcm_udpencap"));
        // Transport through a NAT: the peer's original address (NAT-OA) in encap_oa.
        let auth: Vec<u8> = (0x80..0x94).collect();
        let mut out = Vec::new();
        new_sa(
            &mut out,
            6,
            &SaSpec {
                spi: [0x0b, 0xad, 0xca, 0xfe],
                mode: MODE_TRANSPORT,
                reqid: 5,
                auth: Some(("hmac(sha1)", &auth, 96)),
                soft_secs: 0,
                hard_secs: 0,
                encap: Some((4500, 4500)),
                encap_oa: Some(ip("198.51.100.7")),
                ..tunnel
            },
        );
        assert_eq!(out, fixture("newsa_esp_transport_udpencap_oa"));
    }

    #[test]
    fn delsa_and_policies_match_the_kernel_headers() {
        let mut out = Vec::new();
        del_sa(&mut out, 3, ip("192.0.2.2"), [0x11, 0x22, 0x33, 0x44], 50);
        assert_eq!(out, fixture("delsa"));
        let sel = Selector {
            src: ip("198.51.100.0"),
            src_prefix: 24,
            dst: ip("203.0.113.0"),
            dst_prefix: 24,
            proto: 0,
            sport: 0,
            dport: 0,
        };
        let mut out = Vec::new();
        new_policy(
            &mut out,
            4,
            &PolicySpec {
                sel,
                dir: XFRM_POLICY_OUT,
                priority: 2000,
                tmpl_src: ip("192.0.2.1"),
                tmpl_dst: ip("192.0.2.2"),
                proto: 50,
                mode: MODE_TUNNEL,
                reqid: 7,
            },
        );
        assert_eq!(out, fixture("newpolicy_out_tunnel"));
        let mut out = Vec::new();
        del_policy(&mut out, 5, &sel, XFRM_POLICY_OUT);
        assert_eq!(out, fixture("delpolicy_out"));
        let mut out = Vec::new();
        let mv = MigrateSpec {
            old_src: ip("192.0.2.1"),
            old_dst: ip("192.0.2.2"),
            new_src: ip("192.0.2.11"),
            new_dst: ip("192.0.2.2"),
            proto: 50,
            mode: MODE_TUNNEL,
            reqid: 7,
            encap: Some((4500, 4500)),
        };
        migrate(&mut out, 8, &sel, XFRM_POLICY_OUT, &mv);
        assert_eq!(out, fixture("migrate_out_udpencap"));
    }

    #[test]
    fn acquire_from_the_kernel_headers() {
        let b = fixture("acquire");
        let a: Vec<Acquire> = events(&b)
            .into_iter()
            .filter_map(|e| match e {
                Event::Acquire(a) => Some(a),
                Event::Expire(_) => None,
            })
            .collect();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].src, ip("192.0.2.1"));
        assert_eq!(a[0].dst, ip("192.0.2.2"));
        assert_eq!(a[0].sel.src, ip("198.51.100.7"));
        assert_eq!(a[0].sel.src_prefix, 32);
        assert_eq!(a[0].sel.dst, ip("203.0.113.0"));
        assert_eq!(a[0].sel.dst_prefix, 24);
        assert_eq!(a[0].sel.proto, 1);
        for n in 0..b.len() {
            assert!(events(&b[..n]).is_empty(), "truncated at {n}");
        }
    }

    #[test]
    fn expire_from_the_kernel_headers() {
        let b = fixture("expire_hard");
        assert_eq!(
            events(&b),
            vec![Event::Expire(Expire {
                dst: ip("192.0.2.2"),
                spi: [0x11, 0x22, 0x33, 0x44],
                proto: 50,
                hard: true,
            })]
        );
        for n in 0..b.len() {
            assert!(events(&b[..n]).is_empty(), "truncated at {n}");
        }
    }

    #[test]
    fn allocspi_and_its_answer_match_the_kernel_headers() {
        let mut b = Vec::new();
        alloc_spi(
            &mut b,
            5,
            ip("192.0.2.2"),
            ip("192.0.2.1"),
            50,
            0x100,
            u32::MAX,
        );
        assert_eq!(b, fixture("allocspi"));
        let answer = fixture("allocspi_answer");
        assert_eq!(
            replies(&answer),
            vec![Reply::Sa {
                seq: 5,
                spi: [0, 0, 0xc0, 0xde]
            }]
        );
        assert_eq!(
            replies(&error_reply(&b, 22)),
            vec![Reply::Ack { seq: 5, errno: 22 }]
        );
    }

    #[test]
    fn replies_parse_acks_and_refuse_bad_lengths() {
        // NLMSG_ERROR, errno -EEXIST (17), for a request with seq 42.
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(-17i32).to_ne_bytes());
        b.extend_from_slice(&16u32.to_ne_bytes());
        b.extend_from_slice(&0x10u16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&42u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        assert_eq!(replies(&b), vec![Reply::Ack { seq: 42, errno: 17 }]);
        for n in 0..b.len() {
            let _ = replies(&b[..n]); // never panics on a truncated datagram
        }
        b[0] = 200; // length beyond the datagram
        assert!(replies(&b).is_empty());
    }
}
