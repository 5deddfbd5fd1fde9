//! Payloads (RFC 7296 §3.2, §3.4-§3.16; RFC 7383 §2.5) and whole messages.
//!
//! ```text
//! generic payload header: 0 next payload  1 C|reserved(7)  2..4 payload length
//! ```
//!
//! [`Message::parse`] reads the header, walks the payload chain and parses every payload
//! into a [`Payload`] borrowing from the datagram; the list has a fixed capacity
//! ([`MAX_PAYLOADS`]; a message with more is INVALID_SYNTAX here, real ones carry fewer
//! than 15). The walk ends at a next-payload of 0 or at an SK/SKF payload, whose next
//! field names the first payload inside it (§3.14) and which must be the last one.
//! [`parse_payloads`] walks a decrypted SK body the same way.
//!
//! Each [`PayloadEntry`] also keeps the body as it came ([`PayloadEntry::body`]): AUTH
//! signs the received ID payload bytes (§2.15 RestOfInitIDPayload), whatever its
//! reserved bits held. Emitting from the parsed fields writes reserved fields as zero, so
//! a message re-emits byte for byte when they were zero, as in every real message.

#![forbid(unsafe_code)]

use heapless::Vec as HVec;

use super::header::{LENGTH_OFFSET, NEXT_OFFSET};
use super::sa::{emit_sa, ProposalRepr};
use super::{be16, len16, Error, Header, NoRoom, Writer, CRITICAL, GENERIC_HEADER_LEN};
use super::{
    AuthMethod, CertEncoding, CfgAttrType, CfgType, DhGroup, IdType, NotifyType, PayloadType,
    ProtocolId, SaPayload, TsPayload,
};

/// Most payloads one message (or one decrypted SK body) may carry.
pub const MAX_PAYLOADS: usize = 32;

/// Nonce data length bounds (§3.9: "between 16 and 256 octets, inclusive").
pub const NONCE_MIN: usize = 16;
pub const NONCE_MAX: usize = 256;

/// KE (§3.4): the group and the public value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KePayload<'a> {
    pub group: DhGroup,
    pub data: &'a [u8],
}

/// IDi or IDr (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPayload<'a> {
    pub ty: IdType,
    pub data: &'a [u8],
}

/// CERT (§3.6) or CERTREQ (§3.7; `data` is then the concatenated CA key hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertPayload<'a> {
    pub encoding: CertEncoding,
    pub data: &'a [u8],
}

/// AUTH (§3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPayload<'a> {
    pub method: AuthMethod,
    pub data: &'a [u8],
}

/// Notify (§3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyPayload<'a> {
    pub protocol: ProtocolId,
    pub ty: NotifyType,
    pub spi: &'a [u8],
    pub data: &'a [u8],
}

/// Delete (§3.11). For the IKE SA, SPI size and count are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletePayload<'a> {
    pub protocol: ProtocolId,
    pub spi_size: u8,
    pub count: u16,
    /// `count` SPIs of `spi_size` bytes, checked to fill the payload exactly.
    spis: &'a [u8],
}

impl<'a> DeletePayload<'a> {
    /// A Delete to emit; `spis` holds SPIs of `spi_size` bytes each.
    pub fn new(protocol: ProtocolId, spi_size: u8, spis: &'a [u8]) -> DeletePayload<'a> {
        let count = match spi_size {
            0 => 0,
            s => (spis.len() / s as usize).min(u16::MAX as usize) as u16,
        };
        DeletePayload {
            protocol,
            spi_size,
            count,
            spis,
        }
    }

    pub fn spis(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let size = self.spi_size.max(1) as usize;
        let spis = if self.spi_size == 0 {
            &[][..]
        } else {
            self.spis
        };
        spis.chunks_exact(size)
    }
}

/// The Encrypted payload (§3.14): `first` is the type of the first payload inside, `body`
/// the IV, ciphertext (with padding and pad length) and ICV, which the caller splits
/// according to the negotiated cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkPayload<'a> {
    pub first: PayloadType,
    pub body: &'a [u8],
}

/// An Encrypted Fragment (RFC 7383 §2.5): fragment `number` of `total`, 1-based. `first`
/// is the first inner payload's type in fragment 1, and 0 in the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkfPayload<'a> {
    pub first: PayloadType,
    pub number: u16,
    pub total: u16,
    pub body: &'a [u8],
}

/// Configuration (§3.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpPayload<'a> {
    pub ty: CfgType,
    /// The checked attributes.
    attributes: &'a [u8],
}

/// A configuration attribute (§3.15.1); an empty value asks for one in a CFG_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpAttribute<'a> {
    pub ty: CfgAttrType,
    pub value: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    Sa(SaPayload<'a>),
    Ke(KePayload<'a>),
    /// IDi or IDr (the entry's type says which).
    Id(IdPayload<'a>),
    Cert(CertPayload<'a>),
    CertReq(CertPayload<'a>),
    Auth(AuthPayload<'a>),
    Nonce(&'a [u8]),
    Notify(NotifyPayload<'a>),
    Delete(DeletePayload<'a>),
    Vendor(&'a [u8]),
    /// TSi or TSr.
    Ts(TsPayload<'a>),
    Sk(SkPayload<'a>),
    Skf(SkfPayload<'a>),
    Cp(CpPayload<'a>),
    /// EAP (§3.16): the EAP message, opaque here.
    Eap(&'a [u8]),
    /// A type this code does not know, sent without the critical bit: to be skipped
    /// (§3.2), kept so that the message round-trips.
    Unknown(&'a [u8]),
}

/// A payload with its type and critical bit as they were on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadEntry<'a> {
    pub ty: PayloadType,
    pub critical: bool,
    pub payload: Payload<'a>,
    /// The body (after the generic header) as received.
    pub body: &'a [u8],
}

fn nonempty<'a>(b: &'a [u8], what: &'static str) -> Result<&'a [u8], Error> {
    if b.is_empty() {
        Err(Error::syntax(what))
    } else {
        Ok(b)
    }
}

/// Splits `b` after a fixed part of `n` bytes, or fails with `what`.
fn fixed<'a>(b: &'a [u8], n: usize, what: &'static str) -> Result<(&'a [u8], &'a [u8]), Error> {
    if b.len() < n {
        Err(Error::syntax(what))
    } else {
        Ok(b.split_at(n))
    }
}

impl<'a> Payload<'a> {
    /// Parses one payload body of type `ty`. SK and SKF need the next-payload field of
    /// their generic header, `next`; other types ignore it. A type this code does not know
    /// becomes [`Payload::Unknown`] (the chain walk has already refused it if critical).
    pub fn parse(ty: PayloadType, next: PayloadType, b: &'a [u8]) -> Result<Payload<'a>, Error> {
        Ok(match ty {
            PayloadType::SA => Payload::Sa(SaPayload::parse(b)?),
            PayloadType::KE => {
                let (f, data) = fixed(b, 4, "KE payload truncated")?;
                Payload::Ke(KePayload {
                    group: DhGroup(be16(f)),
                    data: nonempty(data, "KE payload without key exchange data")?,
                })
            }
            PayloadType::IDI | PayloadType::IDR => {
                let (f, data) = fixed(b, 4, "ID payload truncated")?;
                Payload::Id(IdPayload {
                    ty: IdType(f[0]),
                    data: nonempty(data, "ID payload without identification data")?,
                })
            }
            PayloadType::CERT | PayloadType::CERTREQ => {
                let (f, data) = fixed(b, 1, "CERT or CERTREQ payload truncated")?;
                let c = CertPayload {
                    encoding: CertEncoding(f[0]),
                    data,
                };
                if ty == PayloadType::CERT {
                    Payload::Cert(c)
                } else {
                    Payload::CertReq(c)
                }
            }
            PayloadType::AUTH => {
                let (f, data) = fixed(b, 4, "AUTH payload truncated")?;
                Payload::Auth(AuthPayload {
                    method: AuthMethod(f[0]),
                    data: nonempty(data, "AUTH payload without authentication data")?,
                })
            }
            PayloadType::NONCE => {
                if !(NONCE_MIN..=NONCE_MAX).contains(&b.len()) {
                    return Err(Error::syntax("nonce length outside 16..256"));
                }
                Payload::Nonce(b)
            }
            PayloadType::NOTIFY => {
                let (f, rest) = fixed(b, 4, "Notify payload truncated")?;
                let (spi, data) = fixed(rest, f[1] as usize, "Notify SPI overruns the payload")?;
                Payload::Notify(NotifyPayload {
                    protocol: ProtocolId(f[0]),
                    ty: NotifyType(be16(&f[2..4])),
                    spi,
                    data,
                })
            }
            PayloadType::DELETE => {
                let (f, spis) = fixed(b, 4, "Delete payload truncated")?;
                let spi_size = f[1];
                let count = be16(&f[2..4]);
                // count * size must be exactly what is there (isakmpd's CVE-2004-0221).
                if (count as usize).checked_mul(spi_size as usize) != Some(spis.len()) {
                    return Err(Error::syntax(
                        "Delete SPI count and size do not match the payload",
                    ));
                }
                Payload::Delete(DeletePayload {
                    protocol: ProtocolId(f[0]),
                    spi_size,
                    count,
                    spis,
                })
            }
            PayloadType::VENDOR => Payload::Vendor(b),
            PayloadType::TSI | PayloadType::TSR => Payload::Ts(TsPayload::parse(b)?),
            PayloadType::SK => Payload::Sk(SkPayload {
                first: next,
                body: b,
            }),
            PayloadType::SKF => {
                let (f, body) = fixed(b, 4, "SKF payload truncated")?;
                let (number, total) = (be16(&f[..2]), be16(&f[2..4]));
                // RFC 7383 §2.6: fragment numbers start at 1 and cannot exceed the total.
                if number == 0 || number > total {
                    return Err(Error::syntax("SKF fragment number outside 1..total"));
                }
                Payload::Skf(SkfPayload {
                    first: next,
                    number,
                    total,
                    body,
                })
            }
            PayloadType::CP => {
                let (f, attributes) = fixed(b, 4, "CP payload truncated")?;
                let mut rest = attributes;
                while !rest.is_empty() {
                    rest = CpAttribute::parse(rest)?.1;
                }
                Payload::Cp(CpPayload {
                    ty: CfgType(f[0]),
                    attributes,
                })
            }
            PayloadType::EAP => Payload::Eap(nonempty(b, "empty EAP payload")?),
            _ => Payload::Unknown(b),
        })
    }

    /// Length of the body when emitted.
    pub fn body_len(&self) -> usize {
        match self {
            Payload::Sa(s) => s.buffer_len(),
            Payload::Ke(k) => 4 + k.data.len(),
            Payload::Id(i) => 4 + i.data.len(),
            Payload::Cert(c) | Payload::CertReq(c) => 1 + c.data.len(),
            Payload::Auth(a) => 4 + a.data.len(),
            Payload::Notify(n) => 4 + n.spi.len() + n.data.len(),
            Payload::Delete(d) => 4 + d.spis.len(),
            Payload::Ts(t) => t.buffer_len(),
            Payload::Skf(f) => 4 + f.body.len(),
            Payload::Cp(c) => 4 + c.attributes.len(),
            Payload::Sk(SkPayload { body: b, .. })
            | Payload::Nonce(b)
            | Payload::Vendor(b)
            | Payload::Eap(b)
            | Payload::Unknown(b) => b.len(),
        }
    }

    /// Writes the body (without the generic header).
    pub fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        match self {
            Payload::Sa(s) => s.emit(w),
            Payload::Ke(k) => {
                w.u16(k.group.0)?;
                w.u16(0)?;
                w.bytes(k.data)
            }
            Payload::Id(i) => {
                w.u8(i.ty.0)?;
                w.bytes(&[0, 0, 0])?;
                w.bytes(i.data)
            }
            Payload::Cert(c) | Payload::CertReq(c) => {
                w.u8(c.encoding.0)?;
                w.bytes(c.data)
            }
            Payload::Auth(a) => {
                w.u8(a.method.0)?;
                w.bytes(&[0, 0, 0])?;
                w.bytes(a.data)
            }
            Payload::Notify(n) => {
                w.u8(n.protocol.0)?;
                w.u8(u8::try_from(n.spi.len()).map_err(|_| NoRoom)?)?;
                w.u16(n.ty.0)?;
                w.bytes(n.spi)?;
                w.bytes(n.data)
            }
            Payload::Delete(d) => {
                w.u8(d.protocol.0)?;
                w.u8(d.spi_size)?;
                w.u16(d.count)?;
                w.bytes(d.spis)
            }
            Payload::Ts(t) => t.emit(w),
            Payload::Skf(f) => {
                w.u16(f.number)?;
                w.u16(f.total)?;
                w.bytes(f.body)
            }
            Payload::Cp(c) => {
                w.u8(c.ty.0)?;
                w.bytes(&[0, 0, 0])?;
                w.bytes(c.attributes)
            }
            Payload::Sk(SkPayload { body: b, .. })
            | Payload::Nonce(b)
            | Payload::Vendor(b)
            | Payload::Eap(b)
            | Payload::Unknown(b) => w.bytes(b),
        }
    }

    /// For SK and SKF, the next-payload field to write: the first inner payload's type.
    fn inner_first(&self) -> Option<PayloadType> {
        match self {
            Payload::Sk(s) => Some(s.first),
            Payload::Skf(f) => Some(f.first),
            _ => None,
        }
    }
}

impl<'a> CpPayload<'a> {
    pub fn attributes(&self) -> impl Iterator<Item = CpAttribute<'a>> + 'a {
        let mut rest = self.attributes;
        std::iter::from_fn(move || {
            let (a, r) = CpAttribute::parse(rest).ok()?;
            rest = r;
            Some(a)
        })
    }
}

impl<'a> CpAttribute<'a> {
    fn parse(b: &'a [u8]) -> Result<(CpAttribute<'a>, &'a [u8]), Error> {
        let (f, rest) = fixed(b, 4, "configuration attribute truncated")?;
        let (value, rest) = fixed(
            rest,
            be16(&f[2..4]) as usize,
            "configuration attribute overruns the payload",
        )?;
        // The top bit is reserved ("R", §3.15.1) and ignored.
        let ty = CfgAttrType(be16(f) & 0x7fff);
        Ok((CpAttribute { ty, value }, rest))
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        w.u16(self.ty.0 & 0x7fff)?;
        w.u16(len16(self.value.len())?)?;
        w.bytes(self.value)
    }
}

/// Writes a CP payload body from a list of attributes.
pub fn emit_cp(w: &mut Writer<'_>, ty: CfgType, attrs: &[CpAttribute<'_>]) -> Result<(), NoRoom> {
    w.u8(ty.0)?;
    w.bytes(&[0, 0, 0])?;
    for a in attrs {
        a.emit(w)?;
    }
    Ok(())
}

/// The payloads of a message or of a decrypted SK body, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payloads<'a> {
    list: HVec<PayloadEntry<'a>, MAX_PAYLOADS>,
}

impl<'a> Payloads<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &PayloadEntry<'a>> + '_ {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first payload of a type.
    pub fn find(&self, ty: PayloadType) -> Option<&Payload<'a>> {
        self.list.iter().find(|p| p.ty == ty).map(|p| &p.payload)
    }

    pub fn count(&self, ty: PayloadType) -> usize {
        self.list.iter().filter(|p| p.ty == ty).count()
    }

    pub fn notifies(&self) -> impl Iterator<Item = NotifyPayload<'a>> + '_ {
        self.list.iter().filter_map(|p| match p.payload {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The first notify of a type.
    pub fn notify(&self, ty: NotifyType) -> Option<NotifyPayload<'a>> {
        self.notifies().find(|n| n.ty == ty)
    }

    /// The SK or SKF payload, if there is one (it is the last).
    pub fn encrypted(&self) -> Option<&Payload<'a>> {
        self.list
            .last()
            .map(|p| &p.payload)
            .filter(|p| p.inner_first().is_some())
    }

    /// Emits these payloads, in order, into `b`.
    pub fn emit(&self, b: &mut MessageBuilder<'_>) -> Result<(), NoRoom> {
        for p in &self.list {
            b.add(p.ty, p.critical, &p.payload)?;
        }
        Ok(())
    }
}

/// Walks a payload chain starting with type `first` over `data`, which it must fill
/// exactly. `outer` allows SK/SKF (which end the chain); inside a decrypted body they are
/// INVALID_SYNTAX.
fn walk<'a>(mut next: PayloadType, mut rest: &'a [u8], outer: bool) -> Result<Payloads<'a>, Error> {
    let mut list = HVec::new();
    while next != PayloadType::NONE {
        let ty = next;
        if rest.len() < GENERIC_HEADER_LEN {
            return Err(Error::syntax("payload header truncated"));
        }
        let len = be16(&rest[2..4]) as usize;
        if len < GENERIC_HEADER_LEN || len > rest.len() {
            return Err(Error::syntax("payload length out of bounds"));
        }
        // The 7 reserved bits "MUST be ignored on receipt" (§3.2).
        let critical = rest[1] & CRITICAL != 0;
        next = PayloadType(rest[0]);
        let body = &rest[GENERIC_HEADER_LEN..len];
        rest = &rest[len..];
        if !ty.is_known() && critical {
            return Err(Error::unsupported_critical(ty));
        }
        let payload = Payload::parse(ty, next, body)?;
        if payload.inner_first().is_some() {
            if !outer {
                return Err(Error::syntax(
                    "encrypted payload inside an encrypted payload",
                ));
            }
            // §3.14: "the Encrypted payload, if present in a message, MUST be the last".
            if !rest.is_empty() {
                return Err(Error::syntax("bytes after the encrypted payload"));
            }
            next = PayloadType::NONE;
        }
        list.push(PayloadEntry {
            ty,
            critical,
            payload,
            body,
        })
        .map_err(|_| Error::syntax("too many payloads"))?;
    }
    if !rest.is_empty() {
        return Err(Error::syntax("bytes after the last payload"));
    }
    Ok(Payloads { list })
}

/// Parses the payloads of a decrypted SK body (or of reassembled SKF bodies): `first` is
/// the SK's (or fragment 1's) next-payload field, `data` the plaintext without padding
/// and pad length.
pub fn parse_payloads(first: PayloadType, data: &[u8]) -> Result<Payloads<'_>, Error> {
    walk(first, data, false)
}

/// A parsed message: the header and its cleartext payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    pub payloads: Payloads<'a>,
}

impl<'a> Message<'a> {
    /// Parses a datagram (without the non-ESP marker of port 4500): header, its checks,
    /// and the payload chain, which must end exactly at the end of the datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, Error> {
        let header = Header::parse(buf)?;
        header.check()?;
        let payloads = walk(header.next, &buf[super::HEADER_LEN..], true)?;
        Ok(Message { header, payloads })
    }

    /// Emits the message again from its parsed fields; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, NoRoom> {
        let mut b = MessageBuilder::new(buf, &self.header)?;
        self.payloads.emit(&mut b)?;
        b.finish()
    }
}

/// Builds a message into a caller's buffer: the header first, then payloads, each linked
/// into the chain as it is added; `finish` writes the total length into the header.
/// After an SK or SKF payload (which must be last, §3.14) nothing more can be added.
///
/// [`MessageBuilder::inner`] builds a bare payload chain instead, the plaintext of an SK
/// payload: there is no header, and [`MessageBuilder::first`] is the type to put in the
/// SK payload's next-payload field.
pub struct MessageBuilder<'b> {
    w: Writer<'b>,
    link: Link,
    first: PayloadType,
    header: bool,
}

/// Where the next payload's type goes.
#[derive(Clone, Copy)]
enum Link {
    /// Nothing added yet: the header's next-payload field, or `first` for an inner chain.
    Start,
    /// The previous payload's next-payload field, at this offset.
    At(usize),
    /// An encrypted payload ended the chain.
    Closed,
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message with `header`; its next-payload and length fields are filled in
    /// by the builder.
    pub fn new(buf: &'b mut [u8], header: &Header) -> Result<MessageBuilder<'b>, NoRoom> {
        let mut w = Writer::new(buf);
        let mut h = *header;
        h.next = PayloadType::NONE;
        h.length = 0;
        h.emit(&mut w)?;
        Ok(MessageBuilder {
            w,
            link: Link::Start,
            first: PayloadType::NONE,
            header: true,
        })
    }

    /// Starts a bare payload chain (the plaintext inside SK).
    pub fn inner(buf: &'b mut [u8]) -> MessageBuilder<'b> {
        MessageBuilder {
            w: Writer::new(buf),
            link: Link::Start,
            first: PayloadType::NONE,
            header: false,
        }
    }

    /// The type of the first payload added (NONE if none was).
    pub fn first(&self) -> PayloadType {
        self.first
    }

    /// Appends a payload of type `ty` whose body `body` writes. `encrypted_first` is set
    /// for SK and SKF: the first inner type, written as their own next-payload field; it
    /// ends the chain.
    fn raw(
        &mut self,
        ty: PayloadType,
        critical: bool,
        encrypted_first: Option<PayloadType>,
        body: impl FnOnce(&mut Writer<'_>) -> Result<(), NoRoom>,
    ) -> Result<(), NoRoom> {
        // Only the body is per caller: the header and the chain are written by two
        // functions that every payload shares (not copied into each closure's instance).
        let start = self.begin_payload(ty, critical, encrypted_first)?;
        body(&mut self.w)?;
        self.end_payload(start, encrypted_first.is_some())
    }

    /// Links a payload of type `ty` into the chain and writes its generic header with a
    /// length of zero; returns where the payload starts.
    #[inline(never)]
    fn begin_payload(
        &mut self,
        ty: PayloadType,
        critical: bool,
        encrypted_first: Option<PayloadType>,
    ) -> Result<usize, NoRoom> {
        match self.link {
            Link::Start if self.header => self.w.patch_u8(NEXT_OFFSET, ty.0)?,
            Link::Start => self.first = ty,
            Link::At(at) => self.w.patch_u8(at, ty.0)?,
            Link::Closed => return Err(NoRoom),
        }
        let start = self.w.pos();
        self.w.u8(encrypted_first.unwrap_or(PayloadType::NONE).0)?;
        self.w.u8(if critical { CRITICAL } else { 0 })?;
        self.w.u16(0)?;
        Ok(start)
    }

    /// Ends the payload that started at `start`: its length, and the chain's next link
    /// (none after SK or SKF, `encrypted`).
    #[inline(never)]
    fn end_payload(&mut self, start: usize, encrypted: bool) -> Result<(), NoRoom> {
        self.w.patch_u16(start + 2, len16(self.w.pos() - start)?)?;
        self.link = if encrypted {
            Link::Closed
        } else {
            Link::At(start)
        };
        Ok(())
    }

    /// Appends a payload whose body `body` writes. SK and SKF go through
    /// [`Self::encrypted`], which knows their next-payload field; here they are NoRoom.
    pub fn payload(
        &mut self,
        ty: PayloadType,
        body: impl FnOnce(&mut Writer<'_>) -> Result<(), NoRoom>,
    ) -> Result<(), NoRoom> {
        if ty == PayloadType::SK || ty == PayloadType::SKF {
            return Err(NoRoom);
        }
        self.raw(ty, false, None, body)
    }

    /// Appends a parsed or constructed payload, with the critical bit given.
    pub fn add(&mut self, ty: PayloadType, critical: bool, p: &Payload<'_>) -> Result<(), NoRoom> {
        self.raw(ty, critical, p.inner_first(), |w| p.emit_body(w))
    }

    /// Appends an SA payload built from a proposal list.
    pub fn sa(&mut self, proposals: &[ProposalRepr<'_>]) -> Result<(), NoRoom> {
        self.payload(PayloadType::SA, |w| emit_sa(w, proposals))
    }

    /// Appends a Notify about the IKE SA (protocol 0, no SPI).
    pub fn notify(&mut self, ty: NotifyType, data: &[u8]) -> Result<(), NoRoom> {
        let n = Payload::Notify(NotifyPayload {
            protocol: ProtocolId::NONE,
            ty,
            spi: &[],
            data,
        });
        self.add(PayloadType::NOTIFY, false, &n)
    }

    /// Appends the SK payload (or, with `fragment` = Some((number, total)), an SKF) as the
    /// last payload: `first` is the type of the first inner payload, `body` writes IV,
    /// ciphertext and ICV.
    pub fn encrypted(
        &mut self,
        first: PayloadType,
        fragment: Option<(u16, u16)>,
        body: impl FnOnce(&mut Writer<'_>) -> Result<(), NoRoom>,
    ) -> Result<(), NoRoom> {
        match fragment {
            None => self.raw(PayloadType::SK, false, Some(first), body),
            Some((number, total)) => self.raw(PayloadType::SKF, false, Some(first), |w| {
                w.u16(number)?;
                w.u16(total)?;
                body(w)
            }),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.w.pos()
    }

    /// True until a payload has been added.
    pub fn is_empty(&self) -> bool {
        matches!(self.link, Link::Start)
    }

    /// What has been written so far (a message's length field not yet set).
    pub fn written(&self) -> &[u8] {
        self.w.written()
    }

    /// Writes the total length into the header (for a message); returns the length.
    pub fn finish(mut self) -> Result<usize, NoRoom> {
        let n = self.w.pos();
        if self.header {
            self.w
                .patch_u32(LENGTH_OFFSET, u32::try_from(n).map_err(|_| NoRoom)?)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ExchangeType, TransformRepr, FLAG_INITIATOR};
    use super::*;

    fn header() -> Header {
        Header {
            spi_i: [1, 2, 3, 4, 5, 6, 7, 8],
            flags: FLAG_INITIATOR,
            exchange: ExchangeType::IKE_SA_INIT,
            ..Header::default()
        }
    }

    /// SA, KE, Nonce, a non-critical unknown payload (type 99), a NAT-D notify.
    fn sample() -> Vec<u8> {
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(&mut buf, &header()).unwrap();
        let t = [
            TransformRepr::encr(super::super::EncrId::AES_GCM_16, Some(256)),
            TransformRepr::prf(super::super::PrfId::HMAC_SHA2_256),
            TransformRepr::dh(DhGroup::ECP_256),
        ];
        b.sa(&[ProposalRepr {
            number: 1,
            protocol: ProtocolId::IKE,
            spi: &[],
            transforms: &t,
        }])
        .unwrap();
        let ke = Payload::Ke(KePayload {
            group: DhGroup::ECP_256,
            data: &[0x42; 64],
        });
        b.add(PayloadType::KE, false, &ke).unwrap();
        b.add(PayloadType::NONCE, false, &Payload::Nonce(&[7; 32]))
            .unwrap();
        b.payload(PayloadType(99), |w| w.bytes(b"skip me")).unwrap();
        b.notify(NotifyType::NAT_DETECTION_SOURCE_IP, &[0x5a; 20])
            .unwrap();
        let n = b.finish().unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn deconstruct() {
        let d = sample();
        let m = Message::parse(&d).unwrap();
        assert_eq!(m.header.length as usize, d.len());
        assert_eq!(m.header.next, PayloadType::SA);
        let tys: Vec<_> = m.payloads.iter().map(|p| p.ty).collect();
        assert_eq!(
            tys,
            [
                PayloadType::SA,
                PayloadType::KE,
                PayloadType::NONCE,
                PayloadType(99),
                PayloadType::NOTIFY
            ]
        );
        assert_eq!(
            m.payloads.find(PayloadType(99)),
            Some(&Payload::Unknown(b"skip me"))
        );
        let Some(Payload::Ke(ke)) = m.payloads.find(PayloadType::KE) else {
            panic!("no KE")
        };
        assert_eq!((ke.group, ke.data.len()), (DhGroup::ECP_256, 64));
        let nd = m
            .payloads
            .notify(NotifyType::NAT_DETECTION_SOURCE_IP)
            .unwrap();
        assert_eq!(nd.data, [0x5a; 20]);
        assert!(m.payloads.encrypted().is_none());
    }

    #[test]
    fn parse_then_emit() {
        let d = sample();
        let m = Message::parse(&d).unwrap();
        let mut out = vec![0u8; d.len()];
        assert_eq!(m.emit(&mut out), Ok(d.len()));
        assert_eq!(out, d);
        for n in 0..d.len() {
            assert_eq!(m.emit(&mut vec![0u8; n]), Err(NoRoom), "{n}");
        }
    }

    #[test]
    fn critical_unknown_payload() {
        let mut d = sample();
        // The unknown payload's generic header follows SA (4 + 36), KE (4 + 68), Nonce
        // (4 + 32) after the 28-byte header.
        let at = 28 + 40 + 72 + 36;
        assert_eq!(d[at + 4..at + 11], *b"skip me");
        d[at + 1] = 0x80;
        let e = Message::parse(&d).unwrap_err();
        assert_eq!(e.notify, NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD);
        assert_eq!(e.notify_data(), Some(99));
        // The critical bit of a known payload is ignored, and kept.
        let mut d = sample();
        d[28 + 1] = 0x80;
        let m = Message::parse(&d).unwrap();
        assert!(m.payloads.iter().next().unwrap().critical);
        let mut out = vec![0u8; d.len()];
        m.emit(&mut out).unwrap();
        assert_eq!(out, d);
    }

    #[test]
    fn encrypted_payload_ends_the_chain() {
        let mut buf = [0u8; 128];
        let mut b = MessageBuilder::new(&mut buf, &header()).unwrap();
        b.encrypted(PayloadType::IDI, None, |w| w.bytes(&[0xee; 40]))
            .unwrap();
        assert_eq!(b.notify(NotifyType::INITIAL_CONTACT, &[]), Err(NoRoom));
        let n = b.finish().unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.header.next, PayloadType::SK);
        assert_eq!(
            m.payloads.encrypted(),
            Some(&Payload::Sk(SkPayload {
                first: PayloadType::IDI,
                body: &[0xee; 40]
            }))
        );
        // Bytes after SK (with the header length adjusted) are refused.
        let mut longer = buf[..n].to_vec();
        longer.push(0);
        let l = longer.len() as u32;
        longer[24..28].copy_from_slice(&l.to_be_bytes());
        assert!(Message::parse(&longer).is_err());
        // An SK inside a decrypted body is refused.
        let inner = &buf[28..n];
        assert!(parse_payloads(PayloadType::SK, inner).is_err());
    }

    #[test]
    fn skf_numbers() {
        for (num, total, ok) in [(1, 1, true), (2, 3, true), (0, 1, false), (3, 2, false)] {
            let mut buf = [0u8; 128];
            let mut b = MessageBuilder::new(&mut buf, &header()).unwrap();
            b.encrypted(PayloadType::NONE, Some((num, total)), |w| w.bytes(&[1; 16]))
                .unwrap();
            let n = b.finish().unwrap();
            assert_eq!(Message::parse(&buf[..n]).is_ok(), ok, "{num}/{total}");
        }
    }

    #[test]
    fn every_truncation_and_every_lying_length() {
        let d = sample();
        for n in 0..d.len() {
            // Truncated, with the header length agreeing and not.
            assert!(Message::parse(&d[..n]).is_err(), "{n}");
            let mut t = d[..n].to_vec();
            if n >= 28 {
                t[24..28].copy_from_slice(&(n as u32).to_be_bytes());
                assert!(Message::parse(&t).is_err(), "{n} with length");
            }
        }
        // Every payload length field set to every value: never a panic, and whatever is
        // accepted (a longer KE or Nonce can swallow the unknown payload's header and
        // leave the Notify to pass for a nonce) re-emits as the same bytes.
        let mut at = 28;
        while at < d.len() {
            let len = be16(&d[at + 2..]) as usize;
            for v in 0..=u16::MAX {
                let mut t = d.clone();
                t[at + 2..at + 4].copy_from_slice(&v.to_be_bytes());
                if let Ok(m) = Message::parse(&t) {
                    let mut out = vec![0u8; t.len()];
                    assert_eq!(m.emit(&mut out), Ok(t.len()));
                    assert_eq!(out, t, "payload at {at} length {v}");
                };
            }
            at += len;
        }
    }

    #[test]
    fn cp_attributes() {
        let attrs = [
            CpAttribute {
                ty: CfgAttrType::INTERNAL_IP4_ADDRESS,
                value: &[],
            },
            CpAttribute {
                ty: CfgAttrType::INTERNAL_IP4_DNS,
                value: &[192, 0, 2, 53],
            },
        ];
        let mut body = [0u8; 16];
        emit_cp(&mut Writer::new(&mut body), CfgType::REQUEST, &attrs).unwrap();
        assert_eq!(body, [1, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 4, 192, 0, 2, 53]);
        let Payload::Cp(cp) = Payload::parse(PayloadType::CP, PayloadType::NONE, &body).unwrap()
        else {
            panic!("not CP")
        };
        assert_eq!(cp.ty, CfgType::REQUEST);
        assert_eq!(cp.attributes().collect::<Vec<_>>(), attrs);
        for n in 0..body.len() {
            let r = Payload::parse(PayloadType::CP, PayloadType::NONE, &body[..n]);
            // Cutting exactly between attributes leaves a valid, shorter CP.
            assert_eq!(r.is_ok(), n == 4 || n == 8, "{n}");
        }
    }

    #[test]
    fn small_payloads_truncated() {
        let cases: [(PayloadType, &[u8]); 9] = [
            (PayloadType::KE, &[0, 14, 0, 0, 1]),
            (PayloadType::IDI, &[1, 0, 0, 0, 192]),
            (PayloadType::AUTH, &[2, 0, 0, 0, 1]),
            (PayloadType::NOTIFY, &[3, 4, 0x40, 0x09, 1, 2, 3, 4]),
            (PayloadType::DELETE, &[3, 4, 0, 1, 1, 2, 3, 4]),
            (PayloadType::CERT, &[4]),
            (PayloadType::SKF, &[0, 1, 0, 1]),
            (PayloadType::NONCE, &[0; 16]),
            (PayloadType::EAP, &[1]),
        ];
        for (ty, b) in cases {
            assert!(Payload::parse(ty, PayloadType::NONE, b).is_ok(), "{ty}");
            for n in 0..b.len() {
                assert!(
                    Payload::parse(ty, PayloadType::NONE, &b[..n]).is_err(),
                    "{ty} {n}"
                );
            }
        }
        assert!(Payload::parse(PayloadType::NONCE, PayloadType::NONE, &[0; 257]).is_err());
        // Delete: count and size must agree with the SPIs present.
        for b in [
            &[3u8, 4, 0, 2, 1, 2, 3, 4][..],
            &[3, 4, 0, 0, 1, 2, 3, 4],
            &[1, 0, 0, 1, 9],
        ] {
            assert!(Payload::parse(PayloadType::DELETE, PayloadType::NONE, b).is_err());
        }
        let Payload::Delete(d) =
            Payload::parse(PayloadType::DELETE, PayloadType::NONE, &[1, 0, 0, 0]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (d.protocol, d.count, d.spis().count()),
            (ProtocolId::IKE, 0, 0)
        );
    }
}
