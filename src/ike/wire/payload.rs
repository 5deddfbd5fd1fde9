//! Payloads (RFC 2408 §3.2-§3.16, RFC 3947 §3, mode-config) and whole messages.
//!
//! [`Message::parse`] reads the header, walks the payload chain and parses every payload
//! into a [`Payload`] that borrows from the datagram. It allocates nothing: payloads go
//! into a fixed-capacity list (a message with more than [`MAX_PAYLOADS`] payloads is
//! malformed as far as this daemon is concerned; real exchanges use fewer than 15).
//! Payload types it does not know are kept as [`Payload::Unknown`], so that a message
//! round-trips byte for byte; [`Message::check_payload_types`] then applies isakmpd's rule
//! that an unknown type is answered with INVALID-PAYLOAD-TYPE.

use heapless::Vec as HVec;

use super::header::HEADER_LEN;
use super::id::IdPayload;
use super::{
    be16, be32, Attributes, CertEncoding, CfgType, Chain, Doi, Error, Header, IdType, NoRoom,
    NotifyType, PayloadType, ProtocolId, SaPayload, Writer, GENERIC_HEADER_LEN,
};

/// Most payloads one message may carry.
pub const MAX_PAYLOADS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyPayload<'a> {
    pub doi: Doi,
    pub protocol: ProtocolId,
    pub ty: NotifyType,
    pub spi: &'a [u8],
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletePayload<'a> {
    pub doi: Doi,
    pub protocol: ProtocolId,
    pub spi_size: u8,
    /// `count` SPIs of `spi_size` bytes each, checked to fill the payload exactly.
    spis: &'a [u8],
}

impl<'a> DeletePayload<'a> {
    pub fn spis(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let size = self.spi_size.max(1) as usize;
        self.spis.chunks_exact(size)
    }

    pub fn count(&self) -> usize {
        if self.spi_size == 0 {
            0
        } else {
            self.spis.len() / self.spi_size as usize
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatOaPayload<'a> {
    pub id_type: IdType,
    pub address: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrPayload<'a> {
    pub ty: CfgType,
    pub identifier: u16,
    pub attributes: Attributes<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    Sa(SaPayload<'a>),
    Ke(&'a [u8]),
    Id(IdPayload<'a>),
    Cert {
        encoding: CertEncoding,
        data: &'a [u8],
    },
    CertReq {
        encoding: CertEncoding,
        authority: &'a [u8],
    },
    Hash(&'a [u8]),
    Sig(&'a [u8]),
    Nonce(&'a [u8]),
    Notify(NotifyPayload<'a>),
    Delete(DeletePayload<'a>),
    Vendor(&'a [u8]),
    Attr(AttrPayload<'a>),
    /// NAT-D (type 20, or 130 from draft peers; the entry keeps which).
    NatD(&'a [u8]),
    NatOa(NatOaPayload<'a>),
    /// A payload type not handled here (including the proposal and transform types out of
    /// place): the body as it came.
    Unknown(&'a [u8]),
}

/// A payload with the type it had on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadEntry<'a> {
    pub ty: PayloadType,
    pub payload: Payload<'a>,
}

fn nonempty<'a>(b: &'a [u8], what: &'static str) -> Result<&'a [u8], Error> {
    if b.is_empty() {
        Err(Error::malformed(what))
    } else {
        Ok(b)
    }
}

impl<'a> Payload<'a> {
    /// Parses one payload body of type `ty`.
    pub fn parse(ty: PayloadType, b: &'a [u8]) -> Result<Payload<'a>, Error> {
        Ok(match ty {
            PayloadType::SA => Payload::Sa(SaPayload::parse(b)?),
            PayloadType::KE => Payload::Ke(nonempty(b, "empty KE payload")?),
            PayloadType::ID => Payload::Id(IdPayload::parse(b)?),
            PayloadType::CERT => {
                let (&e, data) = b
                    .split_first()
                    .ok_or(Error::malformed("CERT payload truncated"))?;
                Payload::Cert {
                    encoding: CertEncoding(e),
                    data,
                }
            }
            PayloadType::CERT_REQ => {
                let (&e, authority) = b
                    .split_first()
                    .ok_or(Error::malformed("CERT_REQ payload truncated"))?;
                Payload::CertReq {
                    encoding: CertEncoding(e),
                    authority,
                }
            }
            PayloadType::HASH => Payload::Hash(nonempty(b, "empty HASH payload")?),
            PayloadType::SIG => Payload::Sig(nonempty(b, "empty SIG payload")?),
            PayloadType::NONCE => {
                // RFC 2409 §5: "between 8 and 256 bytes inclusive".
                if !(8..=256).contains(&b.len()) {
                    return Err(Error::malformed("nonce length outside 8..256"));
                }
                Payload::Nonce(b)
            }
            PayloadType::NOTIFY => {
                if b.len() < 8 {
                    return Err(Error::malformed("NOTIFY payload truncated"));
                }
                let spi_size = b[5] as usize;
                if b.len() < 8 + spi_size {
                    return Err(Error::malformed("NOTIFY SPI overruns the payload"));
                }
                Payload::Notify(NotifyPayload {
                    doi: Doi(be32(b)),
                    protocol: ProtocolId(b[4]),
                    ty: NotifyType(be16(&b[6..])),
                    spi: &b[8..8 + spi_size],
                    data: &b[8 + spi_size..],
                })
            }
            PayloadType::DELETE => {
                if b.len() < 8 {
                    return Err(Error::malformed("DELETE payload truncated"));
                }
                let spi_size = b[5];
                let count = be16(&b[6..]) as usize;
                let spis = &b[8..];
                // The CVE-2004-0221 check: count * size must be exactly what is there.
                if spi_size == 0
                    || count == 0
                    || count.checked_mul(spi_size as usize) != Some(spis.len())
                {
                    return Err(Error::malformed(
                        "DELETE SPI count and size do not match the payload",
                    ));
                }
                Payload::Delete(DeletePayload {
                    doi: Doi(be32(b)),
                    protocol: ProtocolId(b[4]),
                    spi_size,
                    spis,
                })
            }
            PayloadType::VENDOR => Payload::Vendor(nonempty(b, "empty VENDOR payload")?),
            PayloadType::ATTRIBUTE => {
                if b.len() < 4 {
                    return Err(Error::malformed("ATTRIBUTE payload truncated"));
                }
                if b[1] != 0 {
                    return Err(Error::malformed("ATTRIBUTE reserved field not zero"));
                }
                Payload::Attr(AttrPayload {
                    ty: CfgType(b[0]),
                    identifier: be16(&b[2..]),
                    attributes: Attributes::parse(&b[4..])?,
                })
            }
            PayloadType::NAT_D | PayloadType::NAT_D_DRAFT => {
                Payload::NatD(nonempty(b, "empty NAT-D payload")?)
            }
            PayloadType::NAT_OA | PayloadType::NAT_OA_DRAFT => {
                if b.len() < 4 {
                    return Err(Error::malformed("NAT-OA payload truncated"));
                }
                if b[1..4] != [0, 0, 0] {
                    return Err(Error::malformed("NAT-OA reserved field not zero"));
                }
                let id_type = IdType(b[0]);
                let address = &b[4..];
                let ok = match id_type {
                    IdType::IPV4_ADDR => address.len() == 4,
                    IdType::IPV6_ADDR => address.len() == 16,
                    _ => false,
                };
                if !ok {
                    return Err(Error::malformed("NAT-OA is not an IPv4 or IPv6 address"));
                }
                Payload::NatOa(NatOaPayload { id_type, address })
            }
            _ => Payload::Unknown(b),
        })
    }

    /// Length of the body when emitted.
    pub fn body_len(&self) -> usize {
        match self {
            Payload::Sa(s) => s.buffer_len(),
            Payload::Id(i) => i.buffer_len(),
            Payload::Cert { data, .. } => 1 + data.len(),
            Payload::CertReq { authority, .. } => 1 + authority.len(),
            Payload::Notify(n) => 8 + n.spi.len() + n.data.len(),
            Payload::Delete(d) => 8 + d.spis.len(),
            Payload::Attr(a) => 4 + a.attributes.raw().len(),
            Payload::NatOa(n) => 4 + n.address.len(),
            Payload::Ke(b)
            | Payload::Hash(b)
            | Payload::Sig(b)
            | Payload::Nonce(b)
            | Payload::Vendor(b)
            | Payload::NatD(b)
            | Payload::Unknown(b) => b.len(),
        }
    }

    /// Writes the body (without the generic header).
    pub fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        match self {
            Payload::Sa(s) => s.emit(w),
            Payload::Id(i) => i.emit(w),
            Payload::Cert { encoding, data } => {
                w.u8(encoding.0)?;
                w.bytes(data)
            }
            Payload::CertReq {
                encoding,
                authority,
            } => {
                w.u8(encoding.0)?;
                w.bytes(authority)
            }
            Payload::Notify(n) => {
                w.u32(n.doi.0)?;
                w.u8(n.protocol.0)?;
                w.u8(u8::try_from(n.spi.len()).map_err(|_| NoRoom)?)?;
                w.u16(n.ty.0)?;
                w.bytes(n.spi)?;
                w.bytes(n.data)
            }
            Payload::Delete(d) => {
                w.u32(d.doi.0)?;
                w.u8(d.protocol.0)?;
                w.u8(d.spi_size)?;
                w.u16(u16::try_from(d.count()).map_err(|_| NoRoom)?)?;
                w.bytes(d.spis)
            }
            Payload::Attr(a) => {
                w.u8(a.ty.0)?;
                w.u8(0)?;
                w.u16(a.identifier)?;
                w.bytes(a.attributes.raw())
            }
            Payload::NatOa(n) => {
                w.u8(n.id_type.0)?;
                w.bytes(&[0, 0, 0])?;
                w.bytes(n.address)
            }
            Payload::Ke(b)
            | Payload::Hash(b)
            | Payload::Sig(b)
            | Payload::Nonce(b)
            | Payload::Vendor(b)
            | Payload::NatD(b)
            | Payload::Unknown(b) => w.bytes(b),
        }
    }
}

/// A parsed message: the header and its payloads in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    pub payloads: HVec<PayloadEntry<'a>, MAX_PAYLOADS>,
    /// Bytes after the last payload: the padding of a decrypted message.
    pub trailing: &'a [u8],
}

impl<'a> Message<'a> {
    /// Parses a cleartext message (or a decrypted one: then `allow_padding`, since CBC
    /// padding follows the last payload).
    pub fn parse(buf: &'a [u8], allow_padding: bool) -> Result<Message<'a>, Error> {
        let header = Header::parse(buf)?;
        header.check()?;
        let mut payloads = HVec::new();
        let mut chain = Chain::new(header.next.0, &buf[HEADER_LEN..]);
        while let Some(p) = chain.next_payload() {
            let (ty, body) = p?;
            let ty = PayloadType(ty);
            let payload = Payload::parse(ty, body)?;
            payloads
                .push(PayloadEntry { ty, payload })
                .map_err(|_| Error::malformed("too many payloads"))?;
        }
        let trailing = chain.remainder();
        if !trailing.is_empty() && !allow_padding {
            return Err(Error::malformed("bytes after the last payload"));
        }
        Ok(Message {
            header,
            payloads,
            trailing,
        })
    }

    /// isakmpd's rule: a payload type it does not know (or a proposal/transform outside an
    /// SA) is answered with INVALID-PAYLOAD-TYPE.
    pub fn check_payload_types(&self) -> Result<(), Error> {
        match self.payloads.iter().find(|p| !p.ty.valid_top_level()) {
            Some(_) => Err(Error::new(
                NotifyType::INVALID_PAYLOAD_TYPE,
                "unknown payload type",
            )),
            None => Ok(()),
        }
    }

    /// The first payload of a type.
    pub fn find(&self, ty: PayloadType) -> Option<&Payload<'a>> {
        self.payloads
            .iter()
            .find(|p| p.ty == ty)
            .map(|p| &p.payload)
    }

    pub fn count(&self, ty: PayloadType) -> usize {
        self.payloads.iter().filter(|p| p.ty == ty).count()
    }

    /// Emits the message again (with its padding, if any); returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, NoRoom> {
        let mut b = MessageBuilder::new(buf, &self.header)?;
        for p in &self.payloads {
            b.payload(p.ty, |w| p.payload.emit_body(w))?;
        }
        b.padding(self.trailing)?;
        b.finish()
    }
}

/// Builds a message into a caller's buffer: header first, then payloads, each linked into
/// the chain as it is added; `finish` writes the total length.
pub struct MessageBuilder<'b> {
    w: Writer<'b>,
    /// Where the previous next-payload field is (the header's, at first).
    next_field: usize,
}

impl<'b> MessageBuilder<'b> {
    pub fn new(buf: &'b mut [u8], header: &Header) -> Result<MessageBuilder<'b>, NoRoom> {
        let mut w = Writer::new(buf);
        let mut h = *header;
        h.next = PayloadType::NONE;
        h.length = 0;
        h.emit(&mut w)?;
        Ok(MessageBuilder { w, next_field: 16 })
    }

    /// Appends a payload whose body `body` writes.
    pub fn payload(
        &mut self,
        ty: PayloadType,
        body: impl FnOnce(&mut Writer<'_>) -> Result<(), NoRoom>,
    ) -> Result<(), NoRoom> {
        // Only the body is per caller: the header and the chain are written by two
        // functions that every payload shares (not copied into each closure's instance).
        let start = self.begin_payload(ty)?;
        body(&mut self.w)?;
        self.end_payload(start)
    }

    /// Links a payload of type `ty` into the chain and writes its generic header with a
    /// length of zero; returns where the payload starts.
    #[inline(never)]
    fn begin_payload(&mut self, ty: PayloadType) -> Result<usize, NoRoom> {
        let start = self.w.pos();
        self.w.patch_u8(self.next_field, ty.0)?;
        self.w.u8(0)?;
        self.w.u8(0)?;
        self.w.u16(0)?;
        Ok(start)
    }

    /// Ends the payload that started at `start`: its length, and the next payload's link.
    #[inline(never)]
    fn end_payload(&mut self, start: usize) -> Result<(), NoRoom> {
        let len = u16::try_from(self.w.pos() - start).map_err(|_| NoRoom)?;
        if (len as usize) < GENERIC_HEADER_LEN {
            return Err(NoRoom);
        }
        self.w.patch_u16(start + 2, len)?;
        self.next_field = start;
        Ok(())
    }

    /// Raw bytes after the last payload (only for re-emitting decrypted messages).
    pub fn padding(&mut self, pad: &[u8]) -> Result<(), NoRoom> {
        self.w.bytes(pad)
    }

    /// The offset where the payloads start (for hashing "the message after HASH").
    pub fn len(&self) -> usize {
        self.w.pos()
    }

    pub fn is_empty(&self) -> bool {
        self.w.pos() <= HEADER_LEN
    }

    pub fn finish(mut self) -> Result<usize, NoRoom> {
        let n = self.w.pos();
        self.w
            .patch_u32(24, u32::try_from(n).map_err(|_| NoRoom)?)?;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ike::wire::sa::tests::SA_BODY;
    use crate::ike::wire::ExchangeType;

    /// A Main Mode message 1 with SA, two vendor IDs, and an unknown payload (type 99).
    pub fn mm1() -> Vec<u8> {
        let mut m = vec![
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x10,
            0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        m.extend_from_slice(&[0x0d, 0, 0, 4 + 44]);
        m.extend_from_slice(&SA_BODY);
        m.extend_from_slice(&[0x0d, 0, 0, 4 + 16]);
        m.extend_from_slice(&crate::ike::wire::consts::VID_NAT_T_RFC3947);
        m.extend_from_slice(&[99, 0, 0, 4 + 16]);
        m.extend_from_slice(&crate::ike::wire::consts::VID_DPD);
        m.extend_from_slice(&[0, 0, 0, 4 + 3]);
        m.extend_from_slice(&[1, 2, 3]);
        let n = m.len() as u32;
        m[24..28].copy_from_slice(&n.to_be_bytes());
        m
    }

    #[test]
    fn parse_message_and_round_trip() {
        let buf = mm1();
        let m = Message::parse(&buf, false).unwrap();
        assert_eq!(m.header.exchange, ExchangeType::ID_PROT);
        let tys: Vec<_> = m.payloads.iter().map(|p| p.ty).collect();
        assert_eq!(
            tys,
            vec![
                PayloadType::SA,
                PayloadType::VENDOR,
                PayloadType::VENDOR,
                PayloadType(99)
            ]
        );
        assert!(matches!(
            m.payloads[3].payload,
            Payload::Unknown(&[1, 2, 3])
        ));
        assert_eq!(
            m.check_payload_types().unwrap_err().notify,
            NotifyType::INVALID_PAYLOAD_TYPE
        );
        let mut out = vec![0u8; buf.len()];
        assert_eq!(m.emit(&mut out), Ok(buf.len()));
        assert_eq!(out, buf);
        let mut short = vec![0u8; buf.len() - 1];
        assert_eq!(m.emit(&mut short), Err(NoRoom));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let buf = mm1();
        for n in 0..buf.len() {
            let mut t = buf[..n].to_vec();
            if t.len() >= 28 {
                // Keep the header length honest so the payload checks are what fails.
                let l = t.len() as u32;
                t[24..28].copy_from_slice(&l.to_be_bytes());
            }
            assert!(Message::parse(&t, false).is_err(), "{n}");
        }
    }

    #[test]
    fn padding_only_when_decrypted() {
        let mut buf = mm1();
        buf.extend_from_slice(&[0, 0, 0, 4]);
        let l = buf.len() as u32;
        buf[24..28].copy_from_slice(&l.to_be_bytes());
        assert!(Message::parse(&buf, false).is_err());
        let m = Message::parse(&buf, true).unwrap();
        assert_eq!(m.trailing, &[0, 0, 0, 4]);
    }

    fn body(ty: PayloadType, b: &[u8]) -> Result<Payload<'_>, Error> {
        Payload::parse(ty, b)
    }

    #[test]
    fn each_payload_kind() {
        // NOTIFY: IPsec DOI, ESP, 4-byte SPI, INITIAL_CONTACT, 2 bytes of data.
        let n = [0, 0, 0, 1, 3, 4, 0x60, 0x02, 1, 2, 3, 4, 9, 9];
        let Payload::Notify(p) = body(PayloadType::NOTIFY, &n).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.ty, p.protocol, p.spi, p.data),
            (
                NotifyType::INITIAL_CONTACT,
                ProtocolId::IPSEC_ESP,
                &[1u8, 2, 3, 4][..],
                &[9u8, 9][..]
            )
        );
        for k in 0..n.len() - 2 {
            assert!(
                body(PayloadType::NOTIFY, &n[..k]).is_err() || k >= 12,
                "{k}"
            );
        }
        // DELETE: two ESP SPIs.
        let d = [0, 0, 0, 1, 3, 4, 0, 2, 1, 1, 1, 1, 2, 2, 2, 2];
        let Payload::Delete(p) = body(PayloadType::DELETE, &d).unwrap() else {
            panic!()
        };
        assert_eq!(
            p.spis().collect::<Vec<_>>(),
            vec![&[1u8; 4][..], &[2u8; 4][..]]
        );
        let mut huge = d;
        huge[6] = 0xff; // 65282 SPIs claimed
        assert!(body(PayloadType::DELETE, &huge).is_err());
        for k in 0..d.len() {
            assert!(body(PayloadType::DELETE, &d[..k]).is_err(), "{k}");
        }
        // NONCE bounds.
        assert!(body(PayloadType::NONCE, &[0; 7]).is_err());
        assert!(body(PayloadType::NONCE, &[0; 8]).is_ok());
        assert!(body(PayloadType::NONCE, &[0; 257]).is_err());
        // NAT-OA.
        assert!(body(PayloadType::NAT_OA, &[1, 0, 0, 0, 192, 0, 2, 1]).is_ok());
        assert!(body(PayloadType::NAT_OA_DRAFT, &[5, 0, 0, 0, 192, 0, 2, 1]).is_err());
        // Mode-config ATTRIBUTE: REQUEST id 7 asking for INTERNAL_IP4_ADDRESS (empty TLV).
        let a = [1, 0, 0, 7, 0, 1, 0, 0];
        let Payload::Attr(p) = body(PayloadType::ATTRIBUTE, &a).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.ty, p.identifier, p.attributes.iter().count()),
            (CfgType::REQUEST, 7, 1)
        );
        // Empty bodies where content is required.
        for t in [
            PayloadType::KE,
            PayloadType::HASH,
            PayloadType::SIG,
            PayloadType::VENDOR,
            PayloadType::NAT_D,
            PayloadType::CERT,
        ] {
            assert!(body(t, &[]).is_err(), "{t}");
        }
        // Each kind emits what it parsed.
        for (t, b) in [
            (PayloadType::NOTIFY, &n[..]),
            (PayloadType::DELETE, &d[..]),
            (PayloadType::ATTRIBUTE, &a[..]),
            (PayloadType::NAT_OA, &[1, 0, 0, 0, 192, 0, 2, 1][..]),
            (PayloadType::CERT, &[4, 0x30, 0x03, 1, 2, 3][..]),
            (PayloadType::CERT_REQ, &[4][..]),
            (PayloadType::KE, &[7; 128][..]),
            (PayloadType::NAT_D_DRAFT, &[1; 20][..]),
            (PayloadType::ID, &[1, 17, 1, 244, 192, 0, 2, 1][..]),
        ] {
            let p = body(t, b).unwrap();
            assert_eq!(p.body_len(), b.len());
            let mut out = vec![0u8; b.len()];
            p.emit_body(&mut Writer::new(&mut out)).unwrap();
            assert_eq!(out, b, "{t}");
        }
    }

    #[test]
    fn builder_links_the_chain() {
        let h = Header {
            icookie: [1; 8],
            major: 1,
            exchange: ExchangeType::INFO,
            ..Header::default()
        };
        let mut buf = [0u8; 128];
        let mut b = MessageBuilder::new(&mut buf, &h).unwrap();
        b.payload(PayloadType::HASH, |w| w.bytes(&[0xaa; 20]))
            .unwrap();
        b.payload(PayloadType::NOTIFY, |w| {
            Payload::Notify(NotifyPayload {
                doi: Doi::IPSEC,
                protocol: ProtocolId::ISAKMP,
                ty: NotifyType::R_U_THERE,
                spi: &[5; 16],
                data: &[0, 0, 0, 1],
            })
            .emit_body(w)
        })
        .unwrap();
        let n = b.finish().unwrap();
        let m = Message::parse(&buf[..n], false).unwrap();
        assert_eq!(m.header.next, PayloadType::HASH);
        assert_eq!(m.payloads.len(), 2);
        assert!(
            matches!(m.find(PayloadType::NOTIFY), Some(Payload::Notify(p)) if p.ty == NotifyType::R_U_THERE)
        );
    }
}
