//! Data attributes (RFC 2408 §3.3): the TV form (AF bit set, 2-byte value) and the TLV
//! form (AF clear, 2-byte length, value). Used in transforms and in mode-config payloads.

use super::{be16, Error, NoRoom, Writer};

const AF: u16 = 0x8000;

/// One attribute. `basic` is the TV form; its value is the 2 bytes in `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub ty: u16,
    pub basic: bool,
    pub value: &'a [u8],
}

impl<'a> Attribute<'a> {
    /// The value as a number: TV values, and TLV values of up to 8 bytes (life durations
    /// may come either way, RFC 2407 §4.5).
    pub fn as_u64(&self) -> Option<u64> {
        if self.value.is_empty() || self.value.len() > 8 {
            return None;
        }
        Some(
            self.value
                .iter()
                .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
        )
    }

    pub fn as_u16(&self) -> Option<u16> {
        self.as_u64().and_then(|v| u16::try_from(v).ok())
    }

    pub fn buffer_len(&self) -> usize {
        if self.basic {
            4
        } else {
            4 + self.value.len()
        }
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        if self.basic {
            w.u16(self.ty | AF)?;
            let v = match self.value {
                [a, b] => [*a, *b],
                [b] => [0, *b],
                _ => [0, 0],
            };
            w.bytes(&v)
        } else {
            w.u16(self.ty & !AF)?;
            w.u16(u16::try_from(self.value.len()).map_err(|_| NoRoom)?)?;
            w.bytes(self.value)
        }
    }

    /// A TV attribute with a 16-bit value, written into `store`.
    pub fn basic(ty: u16, value: u16, store: &'a mut [u8; 2]) -> Attribute<'a> {
        *store = value.to_be_bytes();
        Attribute {
            ty,
            basic: true,
            value: &store[..],
        }
    }
}

/// A checked run of attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attributes<'a> {
    raw: &'a [u8],
}

impl<'a> Attributes<'a> {
    /// Checks that `raw` is a whole number of well-formed attributes.
    pub fn parse(raw: &'a [u8]) -> Result<Attributes<'a>, Error> {
        let mut rest = raw;
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(Error::malformed("attribute truncated"));
            }
            let t = be16(rest);
            let len = if t & AF != 0 {
                4
            } else {
                4 + be16(&rest[2..]) as usize
            };
            if len > rest.len() {
                return Err(Error::malformed("attribute value overruns its payload"));
            }
            rest = &rest[len..];
        }
        Ok(Attributes { raw })
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn iter(&self) -> AttrIter<'a> {
        AttrIter { rest: self.raw }
    }

    /// The first attribute of a type.
    pub fn get(&self, ty: u16) -> Option<Attribute<'a>> {
        self.iter().find(|a| a.ty == ty)
    }
}

pub struct AttrIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        // Only built over checked bytes, so the bounds below hold; `get` keeps it panic-free
        // regardless.
        let head = self.rest.get(..4)?;
        let t = be16(head);
        let (basic, value, len) = if t & AF != 0 {
            (true, &head[2..4], 4)
        } else {
            let l = be16(&head[2..]) as usize;
            (false, self.rest.get(4..4 + l)?, 4 + l)
        };
        self.rest = &self.rest[len..];
        Some(Attribute {
            ty: t & !AF,
            basic,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ENCRYPTION_ALGORITHM=3DES_CBC (TV), LIFE_DURATION as a 4-byte TLV, an unknown TV.
    const ATTRS: [u8; 16] = [
        0x80, 0x01, 0x00, 0x05, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x01, 0x51, 0x80, 0xff, 0x00, 0x12,
        0x34,
    ];

    #[test]
    fn parse_iterate_emit() {
        let a = Attributes::parse(&ATTRS).unwrap();
        let v: Vec<_> = a.iter().collect();
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].ty, v[0].basic, v[0].as_u16()), (1, true, Some(5)));
        assert_eq!(
            (v[1].ty, v[1].basic, v[1].as_u64()),
            (12, false, Some(86400))
        );
        assert_eq!((v[2].ty, v[2].as_u16()), (0x7f00, Some(0x1234)));
        assert_eq!(a.get(12).unwrap().as_u64(), Some(86400));
        let mut out = [0u8; 16];
        let mut w = Writer::new(&mut out);
        for x in &v {
            x.emit(&mut w).unwrap();
        }
        assert_eq!(out, ATTRS);
    }

    #[test]
    fn truncations() {
        for n in 0..ATTRS.len() {
            let ok = [0, 4, 12, 16].contains(&n);
            assert_eq!(Attributes::parse(&ATTRS[..n]).is_ok(), ok, "{n}");
        }
        // A TLV claiming more than is there.
        assert!(Attributes::parse(&[0x00, 0x0c, 0xff, 0xff, 0, 0]).is_err());
    }
}
