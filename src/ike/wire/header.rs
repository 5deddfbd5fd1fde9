//! The ISAKMP header (RFC 2408 §3.1): 28 bytes in front of every message.
//!
//! ```text
//!  0..8   initiator cookie      16  next payload   18  exchange type   20..24 message id
//!  8..16  responder cookie      17  major|minor    19  flags           24..28 length
//! ```

use super::consts::{FLAG_AUTH_ONLY, FLAG_COMMIT, FLAG_ENCRYPTION};
use super::{be32, Error, ExchangeType, NoRoom, NotifyType, PayloadType, Writer};

pub const HEADER_LEN: usize = 28;

mod field {
    use std::ops::Range;
    pub const ICOOKIE: Range<usize> = 0..8;
    pub const RCOOKIE: Range<usize> = 8..16;
    pub const NEXT: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MSGID: Range<usize> = 20..24;
    pub const LENGTH: Range<usize> = 24..28;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub icookie: [u8; 8],
    pub rcookie: [u8; 8],
    pub next: PayloadType,
    pub major: u8,
    pub minor: u8,
    pub exchange: ExchangeType,
    pub flags: u8,
    pub msgid: u32,
    pub length: u32,
}

impl Header {
    /// Reads the header of a datagram. Fails on a datagram shorter than a header or one
    /// whose length field disagrees with its size; isakmpd drops those without a reply.
    pub fn parse(buf: &[u8]) -> Result<Header, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::new(
                NotifyType::UNEQUAL_PAYLOAD_LENGTHS,
                "shorter than an ISAKMP header",
            ));
        }
        let mut icookie = [0u8; 8];
        let mut rcookie = [0u8; 8];
        icookie.copy_from_slice(&buf[field::ICOOKIE]);
        rcookie.copy_from_slice(&buf[field::RCOOKIE]);
        let h = Header {
            icookie,
            rcookie,
            next: PayloadType(buf[field::NEXT]),
            major: buf[field::VERSION] >> 4,
            minor: buf[field::VERSION] & 0x0f,
            exchange: ExchangeType(buf[field::EXCHANGE]),
            flags: buf[field::FLAGS],
            msgid: be32(&buf[field::MSGID]),
            length: be32(&buf[field::LENGTH]),
        };
        if h.length as usize != buf.len() {
            return Err(Error::new(
                NotifyType::UNEQUAL_PAYLOAD_LENGTHS,
                "header length differs from datagram length",
            ));
        }
        Ok(h)
    }

    /// The checks of isakmpd's `message_recv` on the fixed fields, in its order.
    pub fn check(&self) -> Result<(), Error> {
        if self.icookie == [0; 8] {
            return Err(Error::new(
                NotifyType::INVALID_COOKIE,
                "zero initiator cookie",
            ));
        }
        if self.major != 1 {
            return Err(Error::new(
                NotifyType::INVALID_MAJOR_VERSION,
                "major version is not 1",
            ));
        }
        if self.minor != 0 {
            return Err(Error::new(
                NotifyType::INVALID_MINOR_VERSION,
                "minor version is not 0",
            ));
        }
        if !self.exchange.is_known() || self.exchange == ExchangeType::NONE {
            return Err(Error::new(
                NotifyType::INVALID_EXCHANGE_TYPE,
                "unknown exchange type",
            ));
        }
        if self.flags & !(FLAG_ENCRYPTION | FLAG_COMMIT | FLAG_AUTH_ONLY) != 0 {
            return Err(Error::new(
                NotifyType::INVALID_FLAGS,
                "undefined header flags set",
            ));
        }
        Ok(())
    }

    pub fn encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTION != 0
    }

    /// Writes the header; the length is patched by whoever knows it (see MessageBuilder).
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        w.bytes(&self.icookie)?;
        w.bytes(&self.rcookie)?;
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

    // Main Mode message 1 header as isakmpd's regress mm-i-1.t records it (length 0x48 = 72;
    // here followed by 44 bytes of payload so that the length agrees).
    const HDR: [u8; 28] = [
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x10, 0x02,
        0x00, 0, 0, 0, 0, 0, 0, 0, 0x48,
    ];

    fn datagram() -> Vec<u8> {
        let mut v = HDR.to_vec();
        v.resize(0x48, 0);
        v
    }

    #[test]
    fn deconstruct() {
        let h = Header::parse(&datagram()).unwrap();
        assert_eq!(h.icookie, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        assert_eq!(h.rcookie, [0; 8]);
        assert_eq!(h.next, PayloadType::SA);
        assert_eq!((h.major, h.minor), (1, 0));
        assert_eq!(h.exchange, ExchangeType::ID_PROT);
        assert_eq!(h.flags, 0);
        assert_eq!(h.msgid, 0);
        assert_eq!(h.length, 72);
        assert!(h.check().is_ok());
    }

    #[test]
    fn construct() {
        let h = Header::parse(&datagram()).unwrap();
        let mut out = [0u8; 28];
        let mut w = Writer::new(&mut out);
        h.emit(&mut w).unwrap();
        assert_eq!(out, HDR);
        let mut small = [0u8; 27];
        assert_eq!(h.emit(&mut Writer::new(&mut small)), Err(NoRoom));
    }

    #[test]
    fn every_truncation_and_length_mismatch_is_rejected() {
        let d = datagram();
        for n in 0..d.len() {
            assert!(Header::parse(&d[..n]).is_err(), "{n}");
        }
        let mut longer = d.clone();
        longer.push(0);
        assert_eq!(
            Header::parse(&longer).unwrap_err().notify,
            NotifyType::UNEQUAL_PAYLOAD_LENGTHS
        );
    }

    #[test]
    fn the_regress_msg_check_cases() {
        // isakmpd regress/sbin/isakmpd/msg/check.sh: bad version, exchange, flags.
        let mut h = Header::parse(&datagram()).unwrap();
        h.major = 2;
        assert_eq!(
            h.check().unwrap_err().notify,
            NotifyType::INVALID_MAJOR_VERSION
        );
        let mut h = Header::parse(&datagram()).unwrap();
        h.minor = 1;
        assert_eq!(
            h.check().unwrap_err().notify,
            NotifyType::INVALID_MINOR_VERSION
        );
        let mut h = Header::parse(&datagram()).unwrap();
        h.exchange = ExchangeType(33 + 1);
        assert_eq!(
            h.check().unwrap_err().notify,
            NotifyType::INVALID_EXCHANGE_TYPE
        );
        let mut h = Header::parse(&datagram()).unwrap();
        h.flags = 0x80;
        assert_eq!(h.check().unwrap_err().notify, NotifyType::INVALID_FLAGS);
        let mut h = Header::parse(&datagram()).unwrap();
        h.icookie = [0; 8];
        assert_eq!(h.check().unwrap_err().notify, NotifyType::INVALID_COOKIE);
    }
}
