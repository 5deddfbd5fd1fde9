//! The SA payload with its proposal and transform sub-payloads (RFC 2408 §3.4-§3.6,
//! RFC 2407 §4.2 for the IPsec situation).
//!
//! Parsing checks the whole tree at once: the proposal chain (next payload 2 or 0), each
//! proposal's SPI size and transform count against the transforms actually present
//! (BAD-PROPOSAL-SYNTAX on a mismatch), every transform's attributes. After that the
//! iterators below only walk checked bytes.

use super::{
    be16, be32, Attribute, Attributes, Chain, Doi, Error, NoRoom, NotifyType, PayloadType,
    ProtocolId, Writer,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaPayload<'a> {
    pub doi: Doi,
    pub situation: u32,
    /// The checked proposal chain.
    proposals: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal<'a> {
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: &'a [u8],
    pub transform_count: u8,
    transforms: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform<'a> {
    pub number: u8,
    pub id: u8,
    pub attributes: Attributes<'a>,
}

const BAD_SYNTAX: NotifyType = NotifyType::BAD_PROPOSAL_SYNTAX;

impl<'a> SaPayload<'a> {
    pub fn parse(body: &'a [u8]) -> Result<SaPayload<'a>, Error> {
        if body.len() < 8 {
            return Err(Error::malformed(
                "SA payload shorter than DOI and situation",
            ));
        }
        let sa = SaPayload {
            doi: Doi(be32(body)),
            situation: be32(&body[4..]),
            proposals: &body[8..],
        };
        let mut chain = Chain::new(PayloadType::PROPOSAL.0, sa.proposals);
        let mut count = 0;
        while let Some(p) = chain.next_payload() {
            let (ty, pbody) = p?;
            if ty != PayloadType::PROPOSAL.0 {
                return Err(Error::new(
                    BAD_SYNTAX,
                    "SA holds something other than a proposal",
                ));
            }
            Proposal::parse(pbody)?;
            count += 1;
        }
        if count == 0 {
            return Err(Error::new(BAD_SYNTAX, "SA without proposals"));
        }
        if !chain.remainder().is_empty() {
            return Err(Error::malformed("bytes after the last proposal"));
        }
        Ok(sa)
    }

    pub fn proposals(&self) -> impl Iterator<Item = Proposal<'a>> + 'a {
        let mut chain = Chain::new(PayloadType::PROPOSAL.0, self.proposals);
        std::iter::from_fn(move || {
            chain
                .next_payload()?
                .ok()
                .and_then(|(_, b)| Proposal::parse(b).ok())
        })
    }

    pub fn raw_proposals(&self) -> &'a [u8] {
        self.proposals
    }

    pub fn buffer_len(&self) -> usize {
        8 + self.proposals.len()
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        w.u32(self.doi.0)?;
        w.u32(self.situation)?;
        w.bytes(self.proposals)
    }
}

impl<'a> Proposal<'a> {
    fn parse(b: &'a [u8]) -> Result<Proposal<'a>, Error> {
        if b.len() < 4 {
            return Err(Error::malformed("proposal truncated"));
        }
        let spi_size = b[2] as usize;
        if b.len() < 4 + spi_size {
            return Err(Error::malformed("proposal SPI overruns the payload"));
        }
        let p = Proposal {
            number: b[0],
            protocol: ProtocolId(b[1]),
            spi: &b[4..4 + spi_size],
            transform_count: b[3],
            transforms: &b[4 + spi_size..],
        };
        let mut chain = Chain::new(PayloadType::TRANSFORM.0, p.transforms);
        let mut n = 0usize;
        while let Some(t) = chain.next_payload() {
            let (ty, tbody) = t?;
            if ty != PayloadType::TRANSFORM.0 {
                return Err(Error::new(
                    BAD_SYNTAX,
                    "proposal holds something other than a transform",
                ));
            }
            Transform::parse(tbody)?;
            n += 1;
        }
        if n != p.transform_count as usize || n == 0 {
            return Err(Error::new(
                BAD_SYNTAX,
                "transform count does not match the transforms present",
            ));
        }
        if !chain.remainder().is_empty() {
            return Err(Error::malformed("bytes after the last transform"));
        }
        Ok(p)
    }

    pub fn transforms(&self) -> impl Iterator<Item = Transform<'a>> + 'a {
        let mut chain = Chain::new(PayloadType::TRANSFORM.0, self.transforms);
        std::iter::from_fn(move || {
            chain
                .next_payload()?
                .ok()
                .and_then(|(_, b)| Transform::parse(b).ok())
        })
    }
}

impl<'a> Transform<'a> {
    fn parse(b: &'a [u8]) -> Result<Transform<'a>, Error> {
        if b.len() < 4 {
            return Err(Error::malformed("transform truncated"));
        }
        if be16(&b[2..4]) != 0 {
            return Err(Error::malformed("transform reserved field not zero"));
        }
        Ok(Transform {
            number: b[0],
            id: b[1],
            attributes: Attributes::parse(&b[4..])?,
        })
    }
}

/// A transform to emit.
#[derive(Debug, Clone, Copy)]
pub struct TransformRepr<'a> {
    pub number: u8,
    pub id: u8,
    pub attributes: &'a [Attribute<'a>],
}

/// A proposal to emit.
#[derive(Debug, Clone, Copy)]
pub struct ProposalRepr<'a> {
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: &'a [u8],
    pub transforms: &'a [TransformRepr<'a>],
}

/// Writes an SA payload body: DOI, situation, then the proposals with their transforms.
pub fn emit_sa(
    w: &mut Writer<'_>,
    doi: Doi,
    situation: u32,
    proposals: &[ProposalRepr<'_>],
) -> Result<(), NoRoom> {
    w.u32(doi.0)?;
    w.u32(situation)?;
    for (i, p) in proposals.iter().enumerate() {
        let start = w.pos();
        w.u8(if i + 1 < proposals.len() {
            PayloadType::PROPOSAL.0
        } else {
            0
        })?;
        w.u8(0)?;
        w.u16(0)?;
        w.u8(p.number)?;
        w.u8(p.protocol.0)?;
        w.u8(u8::try_from(p.spi.len()).map_err(|_| NoRoom)?)?;
        w.u8(u8::try_from(p.transforms.len()).map_err(|_| NoRoom)?)?;
        w.bytes(p.spi)?;
        for (j, t) in p.transforms.iter().enumerate() {
            let tstart = w.pos();
            w.u8(if j + 1 < p.transforms.len() {
                PayloadType::TRANSFORM.0
            } else {
                0
            })?;
            w.u8(0)?;
            w.u16(0)?;
            w.u8(t.number)?;
            w.u8(t.id)?;
            w.u16(0)?;
            for a in t.attributes {
                a.emit(w)?;
            }
            let len = u16::try_from(w.pos() - tstart).map_err(|_| NoRoom)?;
            w.patch_u16(tstart + 2, len)?;
        }
        let len = u16::try_from(w.pos() - start).map_err(|_| NoRoom)?;
        w.patch_u16(start + 2, len)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Main Mode SA of isakmpd regress mm-i-1.t: one ISAKMP proposal, KEY_IKE transform,
    /// 3DES_CBC, SHA, PRE_SHARED, MODP_1024, life 600 seconds.
    pub const SA_BODY: [u8; 44] = [
        0, 0, 0, 1, 0, 0, 0, 1, // DOI IPSEC, SIT_IDENTITY_ONLY
        0, 0, 0, 36, 1, 1, 0, 1, // proposal #1, ISAKMP, no SPI, 1 transform
        0, 0, 0, 28, 1, 1, 0, 0, // transform #1, KEY_IKE
        0x80, 0x01, 0x00, 0x05, // ENCRYPTION_ALGORITHM 3DES_CBC
        0x80, 0x02, 0x00, 0x02, // HASH_ALGORITHM SHA
        0x80, 0x03, 0x00, 0x01, // AUTHENTICATION_METHOD PRE_SHARED
        0x80, 0x04, 0x00, 0x02, // GROUP_DESCRIPTION MODP_1024
        0x80, 0x0b, 0x00, 0x01, // LIFE_TYPE SECONDS
    ];

    #[test]
    fn deconstruct() {
        let sa = SaPayload::parse(&SA_BODY).unwrap();
        assert_eq!(sa.doi, Doi::IPSEC);
        assert_eq!(sa.situation, 1);
        let props: Vec<_> = sa.proposals().collect();
        assert_eq!(props.len(), 1);
        assert_eq!(props[0].protocol, ProtocolId::ISAKMP);
        assert_eq!(props[0].spi, &[] as &[u8]);
        let ts: Vec<_> = props[0].transforms().collect();
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].id, 1);
        assert_eq!(ts[0].attributes.get(1).unwrap().as_u16(), Some(5));
        assert_eq!(ts[0].attributes.iter().count(), 5);
    }

    #[test]
    fn construct_matches_and_round_trips() {
        let mut s = [[0u8; 2]; 5];
        let [a, b, c, d, e] = &mut s;
        let attrs = [
            Attribute::basic(1, 5, a),
            Attribute::basic(2, 2, b),
            Attribute::basic(3, 1, c),
            Attribute::basic(4, 2, d),
            Attribute::basic(11, 1, e),
        ];
        let t = [TransformRepr {
            number: 1,
            id: 1,
            attributes: &attrs,
        }];
        let p = [ProposalRepr {
            number: 1,
            protocol: ProtocolId::ISAKMP,
            spi: &[],
            transforms: &t,
        }];
        let mut out = [0u8; 64];
        let mut w = Writer::new(&mut out);
        emit_sa(&mut w, Doi::IPSEC, 1, &p).unwrap();
        assert_eq!(w.written(), &SA_BODY[..]);
        let sa = SaPayload::parse(&SA_BODY).unwrap();
        let mut out2 = [0u8; 44];
        sa.emit(&mut Writer::new(&mut out2)).unwrap();
        assert_eq!(out2, SA_BODY);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for n in 0..SA_BODY.len() {
            assert!(SaPayload::parse(&SA_BODY[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn bad_syntax() {
        let mut b = SA_BODY;
        b[15] = 2; // claims two transforms
        assert_eq!(
            SaPayload::parse(&b).unwrap_err().notify,
            NotifyType::BAD_PROPOSAL_SYNTAX
        );
        let mut b = SA_BODY;
        b[16] = 5; // transform chain continues with a non-transform
        assert!(SaPayload::parse(&b).is_err());
        let mut b = SA_BODY;
        b[8] = 3; // proposal chain continues with a transform
        assert!(SaPayload::parse(&b).is_err());
        let mut b = SA_BODY;
        b[14] = 200; // SPI size beyond the payload
        assert_eq!(
            SaPayload::parse(&b).unwrap_err().notify,
            NotifyType::PAYLOAD_MALFORMED
        );
        let mut b = SA_BODY;
        b[11] = 0xff; // proposal length beyond the payload
        assert!(SaPayload::parse(&b).is_err());
        let mut b = SA_BODY.to_vec();
        b.extend_from_slice(&[0, 0]);
        assert!(SaPayload::parse(&b).is_err(), "trailing bytes");
    }
}
