//! The UDP transports: port 500 (-p) and the NAT-T encapsulation port 4500 (-N).
//!
//! The sockets are created and bound by the privileged parent (see `monitor.rs`) and passed
//! to the child, which only reads and writes them. Reads are bounded per wake-up so that a
//! flood on one socket cannot starve the FIFO, the signals or the other sockets.

#![forbid(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::sys;

/// Largest IKE datagram we accept (isakmpd uses a 64 KiB receive buffer too).
pub const MAX_DATAGRAM: usize = 65535;

/// Datagrams read from one socket per poll wake-up.
pub const MAX_PER_WAKE: usize = 64;

pub struct Transport {
    sock: UdpSocket,
    pub local: SocketAddr,
    /// True for the NAT-T port, whose IKE messages carry a 4-byte non-ESP marker.
    pub encap: bool,
}

impl Transport {
    pub fn from_fd(fd: OwnedFd, encap: bool) -> io::Result<Transport> {
        let sock = UdpSocket::from(fd);
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        if encap {
            // UDP_ENCAP_ESPINUDP: the kernel takes the ESP-in-UDP packets of our NAT-T
            // SAs off this socket and leaves us the IKE ones (non-ESP marker) and
            // keepalives (RFC 3948).
            #[cfg(target_os = "linux")]
            {
                const UDP_ENCAP: libc::c_int = 100;
                const UDP_ENCAP_ESPINUDP: libc::c_int = 2;
                let fd = sock.as_raw_fd();
                if let Err(e) =
                    sys::setsockopt_int(fd, libc::IPPROTO_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
                {
                    log::warn!("{local}: UDP_ENCAP: {e}; ESP-in-UDP will not be decapsulated");
                }
            }
        }
        Ok(Transport { sock, local, encap })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads up to [`MAX_PER_WAKE`] datagrams, handing each to `f`.
    pub fn recv_bounded(&self, buf: &mut [u8], mut f: impl FnMut(SocketAddr, &[u8])) {
        for _ in 0..MAX_PER_WAKE {
            match self.sock.recv_from(buf) {
                Ok((n, from)) => f(from, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors surface here as ECONNREFUSED and the like; not fatal.
                    crate::ike_debug!(
                        crate::log::DebugClass::Transport,
                        20,
                        "recv on {}: {e}",
                        self.local
                    );
                    return;
                }
            }
        }
    }

    pub fn send(&self, to: SocketAddr, data: &[u8]) -> io::Result<usize> {
        self.sock.send_to(data, to)
    }
}
