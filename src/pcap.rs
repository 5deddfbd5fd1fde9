//! The cleartext packet capture of -L, -l and FIFO `p on[=path]`.
//!
//! A classic pcap file (readable by tcpdump and tshark) of link type RAW: each record is an
//! IPv4 or IPv6 header, a UDP header and the IKE message as it is before encryption or after
//! decryption. This module writes the file header and records; the exchanges call
//! [`Capture::record`] for every message sent and received.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;

pub const MAGIC: u32 = 0xa1b2_c3d4;
pub const LINKTYPE_RAW: u32 = 101;
pub const SNAPLEN: u32 = 65535;

pub struct Capture {
    file: File,
    pub path: String,
}

/// The 24-byte pcap global header (native byte order, as libpcap writes it).
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_RAW.to_ne_bytes());
    h
}

impl Capture {
    pub fn start(mut file: File, path: String) -> io::Result<Capture> {
        file.write_all(&file_header())?;
        Ok(Capture { file, path })
    }

    /// Appends one message with synthetic IP and UDP headers; `stamp` is wall-clock
    /// (seconds, microseconds).
    pub fn record(
        &mut self,
        stamp: (u32, u32),
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        let udp_len = 8 + payload.len();
        let mut hdr = Vec::with_capacity(48);
        match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                let total = (20 + udp_len) as u16;
                hdr.extend_from_slice(&[0x45, 0]);
                hdr.extend_from_slice(&total.to_be_bytes());
                hdr.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
                hdr.extend_from_slice(&s.ip().octets());
                hdr.extend_from_slice(&d.ip().octets());
                let mut sum: u32 = 0;
                for c in hdr.chunks(2) {
                    sum += u16::from_be_bytes([c[0], c[1]]) as u32;
                }
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                let ck = !(sum as u16);
                hdr[10..12].copy_from_slice(&ck.to_be_bytes());
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                hdr.extend_from_slice(&[0x60, 0, 0, 0]);
                hdr.extend_from_slice(&(udp_len as u16).to_be_bytes());
                hdr.extend_from_slice(&[17, 64]);
                hdr.extend_from_slice(&s.ip().octets());
                hdr.extend_from_slice(&d.ip().octets());
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "mixed address families",
                ))
            }
        }
        hdr.extend_from_slice(&src.port().to_be_bytes());
        hdr.extend_from_slice(&dst.port().to_be_bytes());
        hdr.extend_from_slice(&(udp_len as u16).to_be_bytes());
        hdr.extend_from_slice(&[0, 0]); // UDP checksum optional over IPv4; tools accept 0
        let caplen = (hdr.len() + payload.len()) as u32;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&stamp.0.to_ne_bytes());
        rec[4..8].copy_from_slice(&stamp.1.to_ne_bytes());
        rec[8..12].copy_from_slice(&caplen.to_ne_bytes());
        rec[12..16].copy_from_slice(&caplen.to_ne_bytes());
        self.file.write_all(&rec)?;
        self.file.write_all(&hdr)?;
        self.file.write_all(payload)?;
        Ok(())
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
            LINKTYPE_RAW
        );
    }
}
