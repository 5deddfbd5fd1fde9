//! The cleartext packet capture of -L, -l and FIFO `p on[=path]`, as isakmpd's log.c
//! writes it: a classic pcap file of link type LOOP (OpenBSD's loopback: a 4-byte address
//! family in network order), snapshot length 65536, each record an IPv4 or IPv6 header, a
//! UDP header with its checksum, the non-ESP marker on port 4500, and the IKE message as
//! it is before encryption or after decryption (the exchanges clear the encryption flag
//! and set the header's length: see `crate::ike::io`). tcpdump and tshark read it.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;

pub const MAGIC: u32 = 0xa1b2_c3d4;
/// DLT_LOOP, as isakmpd writes (tshark: "OpenBSD loopback").
pub const LINKTYPE_LOOP: u32 = 108;
pub const SNAPLEN: u32 = 64 * 1024;
/// The address families in the LOOP header: OpenBSD's values, which readers of this
/// link type know on every platform (Linux's AF_INET6, 10, is not among them).
const LOOP_INET: u32 = 2;
const LOOP_INET6: u32 = 24;

pub struct Capture {
    file: File,
    pub path: String,
    /// The IPv4 ID, counting records as isakmpd's does.
    ip_id: u16,
}

/// The 24-byte pcap global header (native byte order, as libpcap writes it).
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_LOOP.to_ne_bytes());
    h
}

/// The Internet checksum (RFC 1071) over `parts`, as if concatenated (each part but the
/// last of even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        let mut c = p.chunks_exact(2);
        for w in &mut c {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [b] = c.remainder() {
            sum += u32::from(*b) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Capture {
    pub fn start(mut file: File, path: String) -> io::Result<Capture> {
        file.write_all(&file_header())?;
        Ok(Capture {
            file,
            path,
            ip_id: 0,
        })
    }

    /// Appends one message with synthetic IP and UDP headers; `stamp` is wall-clock
    /// (seconds, microseconds). Messages longer than the snapshot length are left out,
    /// as isakmpd leaves them out.
    pub fn record(
        &mut self,
        stamp: (u32, u32),
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        // The non-ESP marker on the NAT-T port (RFC 3948), as isakmpd adds it.
        let marker: &[u8] = if src.port() == 4500 || dst.port() == 4500 {
            &[0; 4]
        } else {
            &[]
        };
        let udp_len = 8 + marker.len() + payload.len();
        if udp_len + 44 > SNAPLEN as usize {
            return Ok(());
        }
        let mut udp = [0u8; 8];
        udp[0..2].copy_from_slice(&src.port().to_be_bytes());
        udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let mut hdr = Vec::with_capacity(48);
        let ulen = (udp_len as u32).to_be_bytes();
        let ck = match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                self.ip_id = self.ip_id.wrapping_add(1);
                hdr.extend_from_slice(&LOOP_INET.to_be_bytes());
                let total = (20 + udp_len) as u16;
                hdr.extend_from_slice(&[0x45, 0]);
                hdr.extend_from_slice(&total.to_be_bytes());
                hdr.extend_from_slice(&self.ip_id.to_be_bytes());
                hdr.extend_from_slice(&[0, 0, 64, 17, 0, 0]);
                hdr.extend_from_slice(&s.ip().octets());
                hdr.extend_from_slice(&d.ip().octets());
                let ip_ck = checksum(&[&hdr[4..24]]);
                hdr[14..16].copy_from_slice(&ip_ck.to_be_bytes());
                let (sa, da) = (s.ip().octets(), d.ip().octets());
                let pseudo = [&sa[..], &da[..], &[0, 17], &ulen[2..]].concat();
                checksum(&[&pseudo, &udp, marker, payload])
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                hdr.extend_from_slice(&LOOP_INET6.to_be_bytes());
                hdr.extend_from_slice(&[0x60, 0, 0, 0]);
                hdr.extend_from_slice(&(udp_len as u16).to_be_bytes());
                hdr.extend_from_slice(&[17, 64]);
                hdr.extend_from_slice(&s.ip().octets());
                hdr.extend_from_slice(&d.ip().octets());
                let (sa, da) = (s.ip().octets(), d.ip().octets());
                let pseudo = [&sa[..], &da[..], &ulen[..], &[0, 0, 0, 17]].concat();
                checksum(&[&pseudo, &udp, marker, payload])
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "mixed address families",
                ))
            }
        };
        // 0 means "no checksum" in UDP; a computed 0 is sent as its complement.
        let ck = if ck == 0 { 0xffff } else { ck };
        udp[6..8].copy_from_slice(&ck.to_be_bytes());
        let caplen = (hdr.len() + udp.len() + marker.len() + payload.len()) as u32;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&stamp.0.to_ne_bytes());
        rec[4..8].copy_from_slice(&stamp.1.to_ne_bytes());
        rec[8..12].copy_from_slice(&caplen.to_ne_bytes());
        rec[12..16].copy_from_slice(&caplen.to_ne_bytes());
        // One write per record: a reader never sees half of one.
        let mut out = Vec::with_capacity(16 + caplen as usize);
        out.extend_from_slice(&rec);
        out.extend_from_slice(&hdr);
        out.extend_from_slice(&udp);
        out.extend_from_slice(marker);
        out.extend_from_slice(payload);
        self.file.write_all(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = file_header();
        assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), MAGIC);
        assert_eq!(
            u32::from_ne_bytes(h[20..24].try_into().unwrap()),
            LINKTYPE_LOOP
        );
        assert_eq!(u32::from_ne_bytes(h[16..20].try_into().unwrap()), 65536);
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, complemented.
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
    }
}
