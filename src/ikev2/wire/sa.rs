//! The SA payload (RFC 7296 §3.3): proposals, their transforms, transform attributes.
//!
//! ```text
//! proposal:  0 last(0|2)  1 reserved  2..4 length  4 number  5 protocol  6 SPI size
//!            7 #transforms  8.. SPI, transforms
//! transform: 0 last(0|3)  1 reserved  2..4 length  4 type  5 reserved  6..8 ID
//!            8.. attributes (AF|type, length or value, value)
//! ```
//!
//! Parsing checks the whole tree at once (substructure chain, SPI inside the proposal,
//! transform count equal to the transforms present, attributes filling each transform
//! exactly), so that the iterators afterwards walk checked bytes and cannot fail. Every
//! mismatch is INVALID_SYNTAX. What a proposal *means* (one transform of each type in a
//! chosen one, SPI sizes per protocol, §3.3.6) is the engine's business.

#![forbid(unsafe_code)]

use super::ATTR_TV;
use super::{be16, len16, Error, NoRoom, Writer, GENERIC_HEADER_LEN};
use super::{AttrType, DhGroup, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType};

/// "Last Substruc" values (§3.3.1, §3.3.2): 0 for the last, 2 (proposal) or 3
/// (transform) when another follows; the IKEv1 payload numbers, kept for compatibility.
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;

const PROPOSAL_HEADER_LEN: usize = 8;
const TRANSFORM_HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaPayload<'a> {
    /// The checked proposal chain (the whole body).
    proposals: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal<'a> {
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: &'a [u8],
    pub transform_count: u8,
    /// The checked transform chain.
    transforms: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform<'a> {
    pub ty: TransformType,
    pub id: u16,
    /// The checked attributes.
    attributes: &'a [u8],
}

/// A transform attribute (§3.3.5): TV (AF set, a two-byte value in the header) or TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute<'a> {
    Tv(AttrType, u16),
    Tlv(AttrType, &'a [u8]),
}

/// Splits a substructure chain (proposals or transforms): each element starts with
/// last(1) reserved(1) length(2). Checks that "last" is 0 or `more` and agrees with what
/// follows, and that the length covers at least `min` and stays inside the chain.
struct Substructures<'a> {
    rest: &'a [u8],
    more: u8,
    min: usize,
    done: bool,
}

impl<'a> Substructures<'a> {
    fn new(data: &'a [u8], more: u8, min: usize) -> Substructures<'a> {
        Substructures {
            rest: data,
            more,
            min,
            done: data.is_empty(),
        }
    }
}

impl<'a> Iterator for Substructures<'a> {
    type Item = Result<&'a [u8], Error>;

    /// Yields each element whole (header included); after an error, stops.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.done = true;
        if self.rest.len() < GENERIC_HEADER_LEN {
            return Some(Err(Error::syntax("substructure header truncated")));
        }
        let last = self.rest[0];
        let len = be16(&self.rest[2..4]) as usize;
        if len < self.min || len > self.rest.len() {
            return Some(Err(Error::syntax("substructure length out of bounds")));
        }
        let (this, rest) = self.rest.split_at(len);
        match (last, rest.is_empty()) {
            (0, true) => {}
            (m, false) if m == self.more => self.done = false,
            (0, false) => return Some(Err(Error::syntax("bytes after the last substructure"))),
            _ => return Some(Err(Error::syntax("bad Last Substruc value"))),
        }
        self.rest = rest;
        Some(Ok(this))
    }
}

impl<'a> SaPayload<'a> {
    pub fn parse(body: &'a [u8]) -> Result<SaPayload<'a>, Error> {
        if body.is_empty() {
            return Err(Error::syntax("SA payload without proposals"));
        }
        for p in Substructures::new(body, MORE_PROPOSALS, PROPOSAL_HEADER_LEN) {
            Proposal::parse(p?)?;
        }
        Ok(SaPayload { proposals: body })
    }

    pub fn proposals(&self) -> impl Iterator<Item = Proposal<'a>> + 'a {
        Substructures::new(self.proposals, MORE_PROPOSALS, PROPOSAL_HEADER_LEN)
            .filter_map(|p| p.ok().and_then(|p| Proposal::parse(p).ok()))
    }

    pub fn buffer_len(&self) -> usize {
        self.proposals.len()
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        w.bytes(self.proposals)
    }
}

impl<'a> Proposal<'a> {
    /// `p` is a whole proposal substructure, its length already checked to be `p.len()`.
    /// Its RESERVED byte is ignored (§3.3.1: "MUST be ignored on receipt").
    fn parse(p: &'a [u8]) -> Result<Proposal<'a>, Error> {
        let spi_end = PROPOSAL_HEADER_LEN + p[6] as usize;
        if p.len() < spi_end {
            return Err(Error::syntax("proposal SPI overruns the proposal"));
        }
        let prop = Proposal {
            number: p[4],
            protocol: ProtocolId(p[5]),
            spi: &p[PROPOSAL_HEADER_LEN..spi_end],
            transform_count: p[7],
            transforms: &p[spi_end..],
        };
        let mut n = 0usize;
        for t in Substructures::new(prop.transforms, MORE_TRANSFORMS, TRANSFORM_HEADER_LEN) {
            Transform::parse(t?)?;
            n += 1;
        }
        if n != prop.transform_count as usize {
            return Err(Error::syntax(
                "transform count differs from the transforms present",
            ));
        }
        Ok(prop)
    }

    pub fn transforms(&self) -> impl Iterator<Item = Transform<'a>> + 'a {
        Substructures::new(self.transforms, MORE_TRANSFORMS, TRANSFORM_HEADER_LEN)
            .filter_map(|t| t.ok().and_then(|t| Transform::parse(t).ok()))
    }

    /// The transforms of one type, in order of preference.
    pub fn of_type(&self, ty: TransformType) -> impl Iterator<Item = Transform<'a>> + 'a {
        self.transforms().filter(move |t| t.ty == ty)
    }

    /// Every transform is of one of `types`: a proposal with a Transform Type we do not
    /// understand is unacceptable (§3.3.6).
    pub fn types_within(&self, types: &[TransformType]) -> bool {
        self.transforms().all(|t| types.contains(&t.ty))
    }
}

impl<'a> Transform<'a> {
    /// Its RESERVED bytes are ignored (§3.3.2).
    fn parse(t: &'a [u8]) -> Result<Transform<'a>, Error> {
        let attributes = &t[TRANSFORM_HEADER_LEN..];
        let mut rest = attributes;
        while !rest.is_empty() {
            let (_, r) = Attribute::parse(rest)?;
            rest = r;
        }
        Ok(Transform {
            ty: TransformType(t[4]),
            id: be16(&t[6..8]),
            attributes,
        })
    }

    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> + 'a {
        let mut rest = self.attributes;
        std::iter::from_fn(move || {
            let (a, r) = Attribute::parse(rest).ok()?;
            rest = r;
            Some(a)
        })
    }

    /// Its attributes are all understood, i.e. Key Length at most (the only one RFC 7296
    /// defines): a transform with another is unacceptable (§3.3.6).
    pub fn understood(&self) -> bool {
        self.attributes()
            .all(|a| matches!(a, Attribute::Tv(AttrType::KEY_LENGTH, _)))
    }

    /// The Key Length attribute (§3.3.5), in bits.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes().find_map(|a| match a {
            Attribute::Tv(AttrType::KEY_LENGTH, v) => Some(v),
            _ => None,
        })
    }

    /// The transform ID read as the type's ID space (None for another type).
    pub fn encr(&self) -> Option<EncrId> {
        (self.ty == TransformType::ENCR).then_some(EncrId(self.id))
    }

    pub fn prf(&self) -> Option<PrfId> {
        (self.ty == TransformType::PRF).then_some(PrfId(self.id))
    }

    pub fn integ(&self) -> Option<IntegId> {
        (self.ty == TransformType::INTEG).then_some(IntegId(self.id))
    }

    pub fn dh(&self) -> Option<DhGroup> {
        (self.ty == TransformType::DH).then_some(DhGroup(self.id))
    }

    pub fn esn(&self) -> Option<EsnId> {
        (self.ty == TransformType::ESN).then_some(EsnId(self.id))
    }

    /// The same transform as something to emit. Attributes other than Key Length are
    /// dropped (RFC 7296 defines no other).
    pub fn repr(&self) -> TransformRepr {
        TransformRepr {
            ty: self.ty,
            id: self.id,
            key_length: self.key_length(),
        }
    }
}

impl<'a> Attribute<'a> {
    /// Reads one attribute from the front of `b`; returns it and the rest.
    fn parse(b: &'a [u8]) -> Result<(Attribute<'a>, &'a [u8]), Error> {
        if b.len() < 4 {
            return Err(Error::syntax("transform attribute truncated"));
        }
        let word = be16(b);
        let ty = AttrType(word & !ATTR_TV);
        let v = be16(&b[2..4]);
        if word & ATTR_TV != 0 {
            return Ok((Attribute::Tv(ty, v), &b[4..]));
        }
        let end = 4 + v as usize;
        if b.len() < end {
            return Err(Error::syntax("transform attribute overruns the transform"));
        }
        Ok((Attribute::Tlv(ty, &b[4..end]), &b[end..]))
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        match *self {
            Attribute::Tv(ty, v) => {
                w.u16(ty.0 | ATTR_TV)?;
                w.u16(v)
            }
            Attribute::Tlv(ty, v) => {
                w.u16(ty.0 & !ATTR_TV)?;
                w.u16(len16(v.len())?)?;
                w.bytes(v)
            }
        }
    }
}

/// A transform to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformRepr {
    pub ty: TransformType,
    pub id: u16,
    /// Key Length in bits, for the ciphers with a variable key (AES-CBC, AES-GCM, ...).
    pub key_length: Option<u16>,
}

impl TransformRepr {
    pub const fn encr(id: EncrId, key_length: Option<u16>) -> TransformRepr {
        TransformRepr {
            ty: TransformType::ENCR,
            id: id.0,
            key_length,
        }
    }

    pub const fn prf(id: PrfId) -> TransformRepr {
        TransformRepr {
            ty: TransformType::PRF,
            id: id.0,
            key_length: None,
        }
    }

    pub const fn integ(id: IntegId) -> TransformRepr {
        TransformRepr {
            ty: TransformType::INTEG,
            id: id.0,
            key_length: None,
        }
    }

    pub const fn dh(id: DhGroup) -> TransformRepr {
        TransformRepr {
            ty: TransformType::DH,
            id: id.0,
            key_length: None,
        }
    }

    pub const fn esn(id: EsnId) -> TransformRepr {
        TransformRepr {
            ty: TransformType::ESN,
            id: id.0,
            key_length: None,
        }
    }

    fn buffer_len(&self) -> usize {
        TRANSFORM_HEADER_LEN + if self.key_length.is_some() { 4 } else { 0 }
    }
}

/// A proposal to emit. Numbering is the caller's: 1, 2, ... in an offer; in an answer the
/// number of the proposal chosen (§3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalRepr<'r> {
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: &'r [u8],
    pub transforms: &'r [TransformRepr],
}

impl ProposalRepr<'_> {
    fn buffer_len(&self) -> usize {
        PROPOSAL_HEADER_LEN
            + self.spi.len()
            + self
                .transforms
                .iter()
                .map(TransformRepr::buffer_len)
                .sum::<usize>()
    }
}

/// Length of the SA payload body [`emit_sa`] writes.
pub fn sa_buffer_len(proposals: &[ProposalRepr<'_>]) -> usize {
    proposals.iter().map(ProposalRepr::buffer_len).sum()
}

/// Writes an SA payload body from a proposal list, with the Last Substruc and length
/// fields filled in. An SPI longer than 255 bytes, more than 255 transforms or a proposal
/// longer than 65535 bytes cannot be written and is [`NoRoom`].
pub fn emit_sa(w: &mut Writer<'_>, proposals: &[ProposalRepr<'_>]) -> Result<(), NoRoom> {
    for (i, p) in proposals.iter().enumerate() {
        w.u8(if i + 1 < proposals.len() {
            MORE_PROPOSALS
        } else {
            0
        })?;
        w.u8(0)?;
        w.u16(len16(p.buffer_len())?)?;
        w.u8(p.number)?;
        w.u8(p.protocol.0)?;
        w.u8(u8::try_from(p.spi.len()).map_err(|_| NoRoom)?)?;
        w.u8(u8::try_from(p.transforms.len()).map_err(|_| NoRoom)?)?;
        w.bytes(p.spi)?;
        for (j, t) in p.transforms.iter().enumerate() {
            w.u8(if j + 1 < p.transforms.len() {
                MORE_TRANSFORMS
            } else {
                0
            })?;
            w.u8(0)?;
            w.u16(len16(t.buffer_len())?)?;
            w.u8(t.ty.0)?;
            w.u8(0)?;
            w.u16(t.id)?;
            if let Some(k) = t.key_length {
                Attribute::Tv(AttrType::KEY_LENGTH, k).emit(w)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two proposals: IKE AES_CBC-128 / HMAC_SHA2_256 / AUTH_HMAC_SHA2_256_128 / MODP_2048,
    /// then ESP with a 4-byte SPI, AES_GCM_16-256 and NO_ESN.
    const SA_BODY: [u8; 76] = [
        0x02, 0, 0, 44, 1, 1, 0, 4, // proposal 1, IKE, no SPI, 4 transforms
        0x03, 0, 0, 12, 1, 0, 0, 12, 0x80, 14, 0, 128, // ENCR AES_CBC, key length 128
        0x03, 0, 0, 8, 2, 0, 0, 5, // PRF HMAC_SHA2_256
        0x03, 0, 0, 8, 3, 0, 0, 12, // INTEG HMAC_SHA2_256_128
        0x00, 0, 0, 8, 4, 0, 0, 14, // DH MODP_2048
        0x00, 0, 0, 32, 2, 3, 4, 2, 0xca, 0xfe, 0xf0, 0x0d, // proposal 2, ESP, SPI
        0x03, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0, // ENCR AES_GCM_16, key length 256
        0x00, 0, 0, 8, 5, 0, 0, 0, // ESN none
    ];

    #[test]
    fn deconstruct() {
        let sa = SaPayload::parse(&SA_BODY).unwrap();
        let props: Vec<_> = sa.proposals().collect();
        assert_eq!(props.len(), 2);
        assert_eq!(props[0].number, 1);
        assert_eq!(props[0].protocol, ProtocolId::IKE);
        assert!(props[0].spi.is_empty());
        let t: Vec<_> = props[0].transforms().collect();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].encr(), Some(EncrId::AES_CBC));
        assert_eq!(t[0].key_length(), Some(128));
        assert_eq!(t[1].prf(), Some(PrfId::HMAC_SHA2_256));
        assert_eq!(t[1].key_length(), None);
        assert_eq!(t[2].integ(), Some(IntegId::HMAC_SHA2_256_128));
        assert_eq!(t[3].dh(), Some(DhGroup::MODP_2048));
        assert_eq!(t[3].encr(), None);
        assert_eq!(props[1].protocol, ProtocolId::ESP);
        assert_eq!(props[1].spi, [0xca, 0xfe, 0xf0, 0x0d]);
        let e: Vec<_> = props[1].of_type(TransformType::ESN).collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].esn(), Some(EsnId::NO_ESN));
    }

    #[test]
    fn construct_from_a_proposal_list() {
        let ike = [
            TransformRepr::encr(EncrId::AES_CBC, Some(128)),
            TransformRepr::prf(PrfId::HMAC_SHA2_256),
            TransformRepr::integ(IntegId::HMAC_SHA2_256_128),
            TransformRepr::dh(DhGroup::MODP_2048),
        ];
        let esp = [
            TransformRepr::encr(EncrId::AES_GCM_16, Some(256)),
            TransformRepr::esn(EsnId::NO_ESN),
        ];
        let props = [
            ProposalRepr {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: &[],
                transforms: &ike,
            },
            ProposalRepr {
                number: 2,
                protocol: ProtocolId::ESP,
                spi: &[0xca, 0xfe, 0xf0, 0x0d],
                transforms: &esp,
            },
        ];
        assert_eq!(sa_buffer_len(&props), SA_BODY.len());
        let mut out = [0u8; 76];
        let mut w = Writer::new(&mut out);
        emit_sa(&mut w, &props).unwrap();
        assert_eq!(w.pos(), 76);
        assert_eq!(out, SA_BODY);
        for n in 0..76 {
            let mut small = vec![0u8; n];
            assert_eq!(emit_sa(&mut Writer::new(&mut small), &props), Err(NoRoom));
        }
    }

    #[test]
    fn parse_then_emit() {
        let sa = SaPayload::parse(&SA_BODY).unwrap();
        let mut out = [0u8; 76];
        sa.emit(&mut Writer::new(&mut out)).unwrap();
        assert_eq!(out, SA_BODY);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for n in 0..SA_BODY.len() {
            assert!(SaPayload::parse(&SA_BODY[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn lies_are_rejected() {
        let bad = |i: usize, v: u8, why: &str| {
            let mut b = SA_BODY;
            b[i] = v;
            let e = SaPayload::parse(&b).unwrap_err();
            assert_eq!(e.notify, super::super::NotifyType::INVALID_SYNTAX, "{why}");
        };
        bad(0, 0, "last proposal but more follow");
        bad(44, 2, "more proposals but none follow");
        bad(0, 3, "bad Last Substruc");
        bad(3, 48, "proposal longer than it is");
        bad(3, 7, "proposal shorter than its header");
        bad(7, 3, "transform count too small");
        bad(7, 5, "transform count too large");
        bad(6, 40, "SPI size overruns");
        bad(11, 13, "transform length overruns the proposal");
        bad(16, 0x00, "TLV attribute overruns the transform");
        bad(8, 0, "last transform but more follow");
    }

    #[test]
    fn reserved_fields_are_ignored_on_receipt() {
        // §3.3.1, §3.3.2: "MUST be ignored on receipt".
        for i in [1, 9, 13, 21, 25] {
            let mut b = SA_BODY;
            b[i] = 0xa5;
            let sa = SaPayload::parse(&b).unwrap();
            let p = sa.proposals().next().unwrap();
            assert_eq!(p.transforms().count(), 4, "byte {i}");
        }
    }
}
