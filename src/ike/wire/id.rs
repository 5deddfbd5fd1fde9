//! Identification payload contents of the IPsec DOI (RFC 2407 §4.6.2): ID type, protocol,
//! port, then type-specific data. [`Identity::parse`] checks the data length of each type
//! (INVALID-ID-INFORMATION otherwise) so that a 3-byte "IPv4 address" never reaches code
//! that builds addresses from it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Error, IdType, NoRoom, NotifyType, Writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Ipv4Subnet(Ipv4Addr, Ipv4Addr),
    Ipv6Subnet(Ipv6Addr, Ipv6Addr),
    Ipv4Range(Ipv4Addr, Ipv4Addr),
    Ipv6Range(Ipv6Addr, Ipv6Addr),
    Fqdn(&'a [u8]),
    UserFqdn(&'a [u8]),
    DerAsn1Dn(&'a [u8]),
    DerAsn1Gn(&'a [u8]),
    KeyId(&'a [u8]),
    /// A type this code does not know: kept as bytes.
    Other(IdType, &'a [u8]),
}

/// An ID payload body: the identity plus the protocol and port selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPayload<'a> {
    pub id_type: IdType,
    pub protocol: u8,
    pub port: u16,
    pub data: &'a [u8],
}

const BAD_ID: NotifyType = NotifyType::INVALID_ID_INFORMATION;

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn v6(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

impl<'a> IdPayload<'a> {
    /// The payload body as received (what HASH_I/HASH_R and the client ID checks
    /// cover): type, protocol, port, data.
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + self.data.len());
        b.push(self.id_type.0);
        b.push(self.protocol);
        b.extend_from_slice(&self.port.to_be_bytes());
        b.extend_from_slice(self.data);
        b
    }

    pub fn parse(body: &'a [u8]) -> Result<IdPayload<'a>, Error> {
        if body.len() < 4 {
            return Err(Error::malformed("ID payload truncated"));
        }
        let p = IdPayload {
            id_type: IdType(body[0]),
            protocol: body[1],
            port: u16::from_be_bytes([body[2], body[3]]),
            data: &body[4..],
        };
        p.identity()?;
        Ok(p)
    }

    /// The typed identity; fails on a data length that does not fit the type.
    pub fn identity(&self) -> Result<Identity<'a>, Error> {
        let d = self.data;
        let need = |n: usize| {
            if d.len() == n {
                Ok(())
            } else {
                Err(Error::new(BAD_ID, "ID data length does not match its type"))
            }
        };
        Ok(match self.id_type {
            IdType::IPV4_ADDR => {
                need(4)?;
                Identity::Ipv4(v4(d))
            }
            IdType::IPV6_ADDR => {
                need(16)?;
                Identity::Ipv6(v6(d))
            }
            IdType::IPV4_ADDR_SUBNET => {
                need(8)?;
                Identity::Ipv4Subnet(v4(d), v4(&d[4..]))
            }
            IdType::IPV6_ADDR_SUBNET => {
                need(32)?;
                Identity::Ipv6Subnet(v6(d), v6(&d[16..]))
            }
            IdType::IPV4_ADDR_RANGE => {
                need(8)?;
                Identity::Ipv4Range(v4(d), v4(&d[4..]))
            }
            IdType::IPV6_ADDR_RANGE => {
                need(32)?;
                Identity::Ipv6Range(v6(d), v6(&d[16..]))
            }
            t if d.is_empty() => {
                let _ = t;
                return Err(Error::new(BAD_ID, "empty identity"));
            }
            IdType::FQDN => Identity::Fqdn(d),
            IdType::USER_FQDN => Identity::UserFqdn(d),
            IdType::DER_ASN1_DN => Identity::DerAsn1Dn(d),
            IdType::DER_ASN1_GN => Identity::DerAsn1Gn(d),
            IdType::KEY_ID => Identity::KeyId(d),
            t => Identity::Other(t, d),
        })
    }

    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), NoRoom> {
        w.u8(self.id_type.0)?;
        w.u8(self.protocol)?;
        w.u16(self.port)?;
        w.bytes(self.data)
    }
}

impl Identity<'_> {
    pub fn id_type(&self) -> IdType {
        match self {
            Identity::Ipv4(_) => IdType::IPV4_ADDR,
            Identity::Ipv6(_) => IdType::IPV6_ADDR,
            Identity::Ipv4Subnet(..) => IdType::IPV4_ADDR_SUBNET,
            Identity::Ipv6Subnet(..) => IdType::IPV6_ADDR_SUBNET,
            Identity::Ipv4Range(..) => IdType::IPV4_ADDR_RANGE,
            Identity::Ipv6Range(..) => IdType::IPV6_ADDR_RANGE,
            Identity::Fqdn(_) => IdType::FQDN,
            Identity::UserFqdn(_) => IdType::USER_FQDN,
            Identity::DerAsn1Dn(_) => IdType::DER_ASN1_DN,
            Identity::DerAsn1Gn(_) => IdType::DER_ASN1_GN,
            Identity::KeyId(_) => IdType::KEY_ID,
            Identity::Other(t, _) => *t,
        }
    }

    /// The identity's data bytes as they go on the wire, into `buf`; returns the length.
    pub fn encode(&self, buf: &mut [u8; 32]) -> Option<usize> {
        let put = |buf: &mut [u8; 32], parts: &[&[u8]]| {
            let mut n = 0;
            for p in parts {
                buf[n..n + p.len()].copy_from_slice(p);
                n += p.len();
            }
            n
        };
        Some(match self {
            Identity::Ipv4(a) => put(buf, &[&a.octets()]),
            Identity::Ipv6(a) => put(buf, &[&a.octets()]),
            Identity::Ipv4Subnet(a, b) | Identity::Ipv4Range(a, b) => {
                put(buf, &[&a.octets(), &b.octets()])
            }
            Identity::Ipv6Subnet(a, b) | Identity::Ipv6Range(a, b) => {
                put(buf, &[&a.octets(), &b.octets()])
            }
            _ => return None,
        })
    }

    pub fn address(&self) -> Option<IpAddr> {
        match self {
            Identity::Ipv4(a) => Some((*a).into()),
            Identity::Ipv6(a) => Some((*a).into()),
            _ => None,
        }
    }
}

impl fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |f: &mut fmt::Formatter<'_>, b: &[u8]| match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(char::is_control) => f.write_str(s),
            _ => b.iter().try_for_each(|x| write!(f, "{x:02x}")),
        };
        match self {
            Identity::Ipv4(a) => write!(f, "{a}"),
            Identity::Ipv6(a) => write!(f, "{a}"),
            Identity::Ipv4Subnet(a, m) => write!(f, "{a}/{m}"),
            Identity::Ipv6Subnet(a, m) => write!(f, "{a}/{m}"),
            Identity::Ipv4Range(a, b) => write!(f, "{a}-{b}"),
            Identity::Ipv6Range(a, b) => write!(f, "{a}-{b}"),
            Identity::Fqdn(b) | Identity::UserFqdn(b) | Identity::KeyId(b) => text(f, b),
            Identity::DerAsn1Dn(b) | Identity::DerAsn1Gn(b) => {
                write!(f, "<{} bytes of DER>", b.len())
            }
            Identity::Other(t, b) => write!(f, "<ID type {t}, {} bytes>", b.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_identities() {
        let b = [4, 17, 0x01, 0xf4, 198, 51, 100, 0, 255, 255, 255, 0];
        let p = IdPayload::parse(&b).unwrap();
        assert_eq!((p.protocol, p.port), (17, 500));
        assert_eq!(
            p.identity().unwrap(),
            Identity::Ipv4Subnet(
                Ipv4Addr::new(198, 51, 100, 0),
                Ipv4Addr::new(255, 255, 255, 0)
            )
        );
        assert_eq!(
            p.identity().unwrap().to_string(),
            "198.51.100.0/255.255.255.0"
        );
        let mut out = [0u8; 12];
        p.emit(&mut Writer::new(&mut out)).unwrap();
        assert_eq!(out, b);
        let f = IdPayload::parse(b"\x02\x00\x00\x00vpn.example.org").unwrap();
        assert_eq!(f.identity().unwrap().to_string(), "vpn.example.org");
        let v6 = IdPayload::parse(&[
            5, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ])
        .unwrap();
        assert_eq!(
            v6.identity().unwrap().address(),
            Some("2001:db8::1".parse().unwrap())
        );
        let mut buf = [0u8; 32];
        assert_eq!(v6.identity().unwrap().encode(&mut buf), Some(16));
        // Unknown types survive.
        let o = IdPayload::parse(&[200, 0, 0, 0, 1, 2]).unwrap();
        assert_eq!(o.identity().unwrap(), Identity::Other(IdType(200), &[1, 2]));
    }

    #[test]
    fn wrong_lengths_are_invalid_id_information() {
        for bad in [
            &[1u8, 0, 0, 0, 1, 2, 3][..],
            &[4, 0, 0, 0, 1, 2, 3, 4],
            &[5, 0, 0, 0, 1],
            &[2, 0, 0, 0],
            &[6, 0, 0, 0, 1, 2],
        ] {
            assert_eq!(
                IdPayload::parse(bad).unwrap_err().notify,
                NotifyType::INVALID_ID_INFORMATION,
                "{bad:?}"
            );
        }
        for n in 0..4 {
            assert_eq!(
                IdPayload::parse(&[1, 0, 0, 0][..n]).unwrap_err().notify,
                NotifyType::PAYLOAD_MALFORMED
            );
        }
    }
}
