//! Traffic selector payloads TSi and TSr (RFC 7296 §3.13).
//!
//! ```text
//! payload:  0 number of TSs  1..4 reserved  4.. selectors
//! selector: 0 TS type  1 IP protocol  2..4 selector length  4..6 start port  6..8 end port
//!           8.. starting address, ending address (4 + 4 or 16 + 16 bytes)
//! ```
//!
//! The two address-range types are decoded; another type (RFC 4595 Fibre Channel,
//! RFC 9478 security labels) is kept as its bytes, since only its length field is common.

#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{be16, len16, Error, NoRoom, TsType, Writer};

const TS_HEADER_LEN: usize = 4;
const IPV4_LEN: usize = 16;
const IPV6_LEN: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsPayload<'a> {
    pub count: u8,
    /// The checked selectors.
    selectors: &'a [u8],
}

/// One traffic selector. Protocol 0 is any protocol; ports 0-65535 are any port, and
/// start 65535 with end 0 is OPAQUE (§3.13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficSelector<'a> {
    Ipv4 {
        protocol: u8,
        start_port: u16,
        end_port: u16,
        start: Ipv4Addr,
        end: Ipv4Addr,
    },
    Ipv6 {
        protocol: u8,
        start_port: u16,
        end_port: u16,
        start: Ipv6Addr,
        end: Ipv6Addr,
    },
    /// A type not decoded here: byte 1 and what follows the length field.
    Other {
        ty: TsType,
        byte1: u8,
        body: &'a [u8],
    },
}

impl<'a> TsPayload<'a> {
    pub fn parse(b: &'a [u8]) -> Result<TsPayload<'a>, Error> {
        if b.len() < 4 {
            return Err(Error::syntax("TS payload truncated"));
        }
        let ts = TsPayload {
            count: b[0],
            selectors: &b[4..],
        };
        let mut rest = ts.selectors;
        for _ in 0..ts.count {
            let (_, r) = TrafficSelector::parse(rest)?;
            rest = r;
        }
        if !rest.is_empty() {
            return Err(Error::syntax("bytes after the last traffic selector"));
        }
        Ok(ts)
    }

    pub fn selectors(&self) -> impl Iterator<Item = TrafficSelector<'a>> + 'a {
        let mut rest = self.selectors;
        std::iter::from_fn(move || {
            let (t, r) = TrafficSelector::parse(rest).ok()?;
            rest = r;
            Some(t)
        })
    }

    pub fn buffer_len(&self) -> usize {
        4 + self.selectors.len()
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        w.u8(self.count)?;
        w.bytes(&[0, 0, 0])?;
        w.bytes(self.selectors)
    }
}

impl<'a> TrafficSelector<'a> {
    fn parse(b: &'a [u8]) -> Result<(TrafficSelector<'a>, &'a [u8]), Error> {
        if b.len() < TS_HEADER_LEN {
            return Err(Error::syntax("traffic selector truncated"));
        }
        let ty = TsType(b[0]);
        let len = be16(&b[2..4]) as usize;
        if len < TS_HEADER_LEN || len > b.len() {
            return Err(Error::syntax("traffic selector length out of bounds"));
        }
        let (s, rest) = b.split_at(len);
        let ts = match ty {
            TsType::IPV4_ADDR_RANGE => {
                if len != IPV4_LEN {
                    return Err(Error::syntax("IPv4 traffic selector is not 16 bytes"));
                }
                TrafficSelector::Ipv4 {
                    protocol: s[1],
                    start_port: be16(&s[4..6]),
                    end_port: be16(&s[6..8]),
                    start: Ipv4Addr::new(s[8], s[9], s[10], s[11]),
                    end: Ipv4Addr::new(s[12], s[13], s[14], s[15]),
                }
            }
            TsType::IPV6_ADDR_RANGE => {
                if len != IPV6_LEN {
                    return Err(Error::syntax("IPv6 traffic selector is not 40 bytes"));
                }
                let mut a = [0u8; 16];
                let mut z = [0u8; 16];
                a.copy_from_slice(&s[8..24]);
                z.copy_from_slice(&s[24..40]);
                TrafficSelector::Ipv6 {
                    protocol: s[1],
                    start_port: be16(&s[4..6]),
                    end_port: be16(&s[6..8]),
                    start: Ipv6Addr::from(a),
                    end: Ipv6Addr::from(z),
                }
            }
            _ => TrafficSelector::Other {
                ty,
                byte1: s[1],
                body: &s[TS_HEADER_LEN..],
            },
        };
        Ok((ts, rest))
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            TrafficSelector::Ipv4 { .. } => IPV4_LEN,
            TrafficSelector::Ipv6 { .. } => IPV6_LEN,
            TrafficSelector::Other { body, .. } => TS_HEADER_LEN + body.len(),
        }
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        match *self {
            TrafficSelector::Ipv4 {
                protocol,
                start_port,
                end_port,
                start,
                end,
            } => {
                w.u8(TsType::IPV4_ADDR_RANGE.0)?;
                w.u8(protocol)?;
                w.u16(IPV4_LEN as u16)?;
                w.u16(start_port)?;
                w.u16(end_port)?;
                w.bytes(&start.octets())?;
                w.bytes(&end.octets())
            }
            TrafficSelector::Ipv6 {
                protocol,
                start_port,
                end_port,
                start,
                end,
            } => {
                w.u8(TsType::IPV6_ADDR_RANGE.0)?;
                w.u8(protocol)?;
                w.u16(IPV6_LEN as u16)?;
                w.u16(start_port)?;
                w.u16(end_port)?;
                w.bytes(&start.octets())?;
                w.bytes(&end.octets())
            }
            TrafficSelector::Other { ty, byte1, body } => {
                w.u8(ty.0)?;
                w.u8(byte1)?;
                w.u16(len16(TS_HEADER_LEN + body.len())?)?;
                w.bytes(body)
            }
        }
    }
}

/// Writes a TS payload body from a list of selectors (at most 255).
pub fn emit_ts(w: &mut Writer<'_>, selectors: &[TrafficSelector<'_>]) -> Result<(), NoRoom> {
    w.u8(u8::try_from(selectors.len()).map_err(|_| NoRoom)?)?;
    w.bytes(&[0, 0, 0])?;
    for s in selectors {
        s.emit(w)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 203.0.113.0/24 any protocol and port, then 2001:db8:2::/48 TCP port 443.
    const TS_BODY: [u8; 60] = [
        2, 0, 0, 0, //
        7, 0, 0, 16, 0, 0, 0xff, 0xff, 203, 0, 113, 0, 203, 0, 113, 255, //
        8, 6, 0, 40, 1, 0xbb, 1, 0xbb, //
        0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0x20, 0x01, 0x0d, 0xb8, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];

    fn selectors() -> [TrafficSelector<'static>; 2] {
        [
            TrafficSelector::Ipv4 {
                protocol: 0,
                start_port: 0,
                end_port: 0xffff,
                start: Ipv4Addr::new(203, 0, 113, 0),
                end: Ipv4Addr::new(203, 0, 113, 255),
            },
            TrafficSelector::Ipv6 {
                protocol: 6,
                start_port: 443,
                end_port: 443,
                start: "2001:db8:2::".parse().unwrap(),
                end: "2001:db8:2:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            },
        ]
    }

    #[test]
    fn deconstruct() {
        let ts = TsPayload::parse(&TS_BODY).unwrap();
        assert_eq!(ts.count, 2);
        let v: Vec<_> = ts.selectors().collect();
        assert_eq!(v, selectors());
    }

    #[test]
    fn construct_and_emit() {
        let mut out = [0u8; 60];
        emit_ts(&mut Writer::new(&mut out), &selectors()).unwrap();
        assert_eq!(out, TS_BODY);
        let mut again = [0u8; 60];
        TsPayload::parse(&TS_BODY)
            .unwrap()
            .emit(&mut Writer::new(&mut again))
            .unwrap();
        assert_eq!(again, TS_BODY);
    }

    #[test]
    fn truncations_and_lies() {
        for n in 0..TS_BODY.len() {
            assert!(TsPayload::parse(&TS_BODY[..n]).is_err(), "{n}");
        }
        for (i, v) in [(0, 1), (0, 3), (7, 15), (7, 17), (23, 39), (23, 41), (7, 3)] {
            let mut b = TS_BODY;
            b[i] = v;
            assert!(TsPayload::parse(&b).is_err(), "byte {i} = {v}");
        }
        // An unknown type of any length survives.
        let other = [1, 0, 0, 0, 10, 0xaa, 0, 7, 1, 2, 3];
        let ts = TsPayload::parse(&other).unwrap();
        let v: Vec<_> = ts.selectors().collect();
        assert_eq!(
            v,
            [TrafficSelector::Other {
                ty: TsType(10),
                byte1: 0xaa,
                body: &[1, 2, 3]
            }]
        );
        let mut out = [0u8; 11];
        emit_ts(&mut Writer::new(&mut out), &v).unwrap();
        assert_eq!(out, other);
    }
}
