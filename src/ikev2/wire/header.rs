//! The IKE header (RFC 7296 §3.1): 28 bytes in front of every IKEv2 message.
//!
//! ```text
//!  0..8   IKE SA initiator's SPI   16  next payload   18  exchange type   20..24 message ID
//!  8..16  IKE SA responder's SPI   17  major|minor    19  flags (--RVI---) 24..28 length
//! ```
//!
//! The same layout as ISAKMP's; the major version tells the two apart, so the dispatcher
//! in front of both engines looks at byte 17 first.

#![forbid(unsafe_code)]

use super::{be32, Error, ExchangeType, NoRoom, NotifyType, PayloadType, Writer};
use super::{FLAG_INITIATOR, FLAG_RESPONSE, FLAG_VERSION};

pub const HEADER_LEN: usize = 28;

/// The major version this code speaks.
pub const MAJOR_VERSION: u8 = 2;

mod field {
    use std::ops::Range;
    pub const SPI_I: Range<usize> = 0..8;
    pub const SPI_R: Range<usize> = 8..16;
    pub const NEXT: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MSGID: Range<usize> = 20..24;
    pub const LENGTH: Range<usize> = 24..28;
}

/// Offset of the next-payload field, which [`super::MessageBuilder`] patches.
pub(crate) const NEXT_OFFSET: usize = field::NEXT;
/// Offset of the length field.
pub(crate) const LENGTH_OFFSET: usize = field::LENGTH.start;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub next: PayloadType,
    pub major: u8,
    pub minor: u8,
    pub exchange: ExchangeType,
    /// All eight bits as received: the reserved ones "MUST be ignored on receipt" (§3.1),
    /// which here means kept, so that a message re-emits byte for byte.
    pub flags: u8,
    pub msgid: u32,
    pub length: u32,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            spi_i: [0; 8],
            spi_r: [0; 8],
            next: PayloadType::NONE,
            major: MAJOR_VERSION,
            minor: 0,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: 0,
            msgid: 0,
            length: 0,
        }
    }
}

impl Header {
    /// Reads the header of a datagram (without the non-ESP marker of port 4500). Fails on
    /// one shorter than a header or whose length field differs from its size: §3.1 says
    /// the length is that of the whole message, and a datagram is one message.
    pub fn parse(buf: &[u8]) -> Result<Header, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::syntax("shorter than an IKE header"));
        }
        let mut spi_i = [0u8; 8];
        let mut spi_r = [0u8; 8];
        spi_i.copy_from_slice(&buf[field::SPI_I]);
        spi_r.copy_from_slice(&buf[field::SPI_R]);
        let h = Header {
            spi_i,
            spi_r,
            next: PayloadType(buf[field::NEXT]),
            major: buf[field::VERSION] >> 4,
            minor: buf[field::VERSION] & 0x0f,
            exchange: ExchangeType(buf[field::EXCHANGE]),
            flags: buf[field::FLAGS],
            msgid: be32(&buf[field::MSGID]),
            length: be32(&buf[field::LENGTH]),
        };
        if h.length as usize != buf.len() {
            return Err(Error::syntax("header length differs from datagram length"));
        }
        Ok(h)
    }

    /// The checks RFC 7296 puts on the fixed fields. A major version other than 2 is
    /// INVALID_MAJOR_VERSION (§2.5: "... MUST NOT accept ... a higher major version",
    /// and the notify names the highest we speak); the minor version is ignored (§3.1
    /// "MUST ignore the minor version number of received messages"). The exchange type is
    /// left to the engine, which knows what it expects.
    pub fn check(&self) -> Result<(), Error> {
        if self.major != MAJOR_VERSION {
            return Err(Error::new(
                NotifyType::INVALID_MAJOR_VERSION,
                "major version is not 2",
            ));
        }
        if self.spi_i == [0; 8] {
            return Err(Error::syntax("zero initiator SPI"));
        }
        Ok(())
    }

    /// I: the message comes from the original initiator of the IKE SA.
    pub fn initiator(&self) -> bool {
        self.flags & FLAG_INITIATOR != 0
    }

    /// R: the message is a response.
    pub fn response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// V: the sender could speak a higher major version.
    pub fn higher_version(&self) -> bool {
        self.flags & FLAG_VERSION != 0
    }

    /// Writes the header as it is; [`super::MessageBuilder`] patches next and length.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        w.bytes(&self.spi_i)?;
        w.bytes(&self.spi_r)?;
        w.u8(self.next.0)?;
        w.u8((self.major << 4) | (self.minor & 0x0f))?;
        w.u8(self.exchange.0)?;
        w.u8(self.flags)?;
        w.u32(self.msgid)?;
        w.u32(self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of charon's IKE_SA_INIT request in tests/vectors/ikev2-charon.txt
    /// (688 bytes), padded with zeros so that the length agrees.
    const HDR: [u8; 28] = [
        0xd4, 0x8a, 0xde, 0xb5, 0x93, 0xc2, 0xbd, 0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0x21, 0x20, 0x22,
        0x08, 0, 0, 0, 0, 0, 0, 0x02, 0xb0,
    ];

    fn datagram() -> Vec<u8> {
        let mut v = HDR.to_vec();
        v.resize(0x2b0, 0);
        v
    }

    #[test]
    fn deconstruct() {
        let h = Header::parse(&datagram()).unwrap();
        assert_eq!(h.spi_i, [0xd4, 0x8a, 0xde, 0xb5, 0x93, 0xc2, 0xbd, 0x35]);
        assert_eq!(h.spi_r, [0; 8]);
        assert_eq!(h.next, PayloadType::SA);
        assert_eq!((h.major, h.minor), (2, 0));
        assert_eq!(h.exchange, ExchangeType::IKE_SA_INIT);
        assert!(h.initiator() && !h.response() && !h.higher_version());
        assert_eq!(h.msgid, 0);
        assert_eq!(h.length, 688);
        assert!(h.check().is_ok());
    }

    #[test]
    fn construct() {
        let h = Header::parse(&datagram()).unwrap();
        let mut out = [0u8; HEADER_LEN];
        h.emit(&mut Writer::new(&mut out)).unwrap();
        assert_eq!(out, HDR);
        let mut small = [0u8; HEADER_LEN - 1];
        assert_eq!(h.emit(&mut Writer::new(&mut small)), Err(NoRoom));
    }

    #[test]
    fn every_truncation_and_length_mismatch_is_rejected() {
        let d = datagram();
        for n in 0..d.len() {
            let e = Header::parse(&d[..n]).unwrap_err();
            assert_eq!(e.notify, NotifyType::INVALID_SYNTAX, "{n}");
        }
        let mut longer = d.clone();
        longer.push(0);
        assert!(Header::parse(&longer).is_err());
    }

    #[test]
    fn versions() {
        let mut d = datagram();
        d[17] = 0x30;
        let h = Header::parse(&d).unwrap();
        assert_eq!(
            h.check().unwrap_err().notify,
            NotifyType::INVALID_MAJOR_VERSION
        );
        d[17] = 0x10;
        assert!(Header::parse(&d).unwrap().check().is_err());
        // A higher minor version is ignored, and kept.
        d[17] = 0x2f;
        let h = Header::parse(&d).unwrap();
        assert!(h.check().is_ok());
        assert_eq!(h.minor, 15);
        // Reserved flag bits are ignored, and kept.
        d[17] = 0x20;
        d[19] = 0xff;
        let h = Header::parse(&d).unwrap();
        assert!(h.check().is_ok() && h.initiator() && h.response());
        let mut out = [0u8; HEADER_LEN];
        h.emit(&mut Writer::new(&mut out)).unwrap();
        assert_eq!(out[19], 0xff);
        d[..8].fill(0);
        d[19] = 0x08;
        assert_eq!(
            Header::parse(&d).unwrap().check().unwrap_err().notify,
            NotifyType::INVALID_SYNTAX
        );
    }
}
