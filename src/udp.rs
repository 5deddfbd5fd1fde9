//! The UDP transports: port 500 (-p) and the NAT-T encapsulation port 4500 (-N).
//!
//! The sockets are created and bound by the privileged parent (see `monitor.rs`) and passed
//! to the child, which only reads and writes them. Reads are bounded per wake-up so that a
//! flood on one socket cannot starve the FIFO, the signals or the other sockets.
//!
//! A socket bound to a wildcard address learns each datagram's destination from
//! IP_PKTINFO (Linux ip(7)) or IPV6_RECVPKTINFO (RFC 3542 §6.1), which comes with the
//! datagram: the engine gets our real address without a routing lookup per datagram. A
//! reply leaves from the address its request came to (IP_PKTINFO / IPV6_PKTINFO on
//! sendmsg, RFC 3542 §6.2), so a peer that talks to a secondary address of the interface
//! is answered from that address, as isakmpd does by binding one socket per address
//! (virtual.c). One recvmsg per datagram and no allocation: the control buffers are
//! fixed arrays on the stack (see `sys`).

#![forbid(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
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
                    crate::log_warn!(
                        "{local}: UDP_ENCAP: {e}; ESP-in-UDP will not be decapsulated"
                    );
                }
            }
        }
        // Without the destination of each datagram we fall back to the socket's own
        // address, and the engine to its routing lookup (as before IP_PKTINFO).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let (level, name, opt) = if local.is_ipv4() {
                (libc::IPPROTO_IP, libc::IP_PKTINFO, "IP_PKTINFO")
            } else {
                (
                    libc::IPPROTO_IPV6,
                    libc::IPV6_RECVPKTINFO,
                    "IPV6_RECVPKTINFO",
                )
            };
            if let Err(e) = sys::setsockopt_int(sock.as_raw_fd(), level, name, 1) {
                crate::log_warn!(
                    "{local}: {opt}: {e}; replies leave from the routing table's choice"
                );
            }
        }
        Ok(Transport { sock, local, encap })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads up to [`MAX_PER_WAKE`] datagrams, handing each to `f` with our address (the
    /// one it was sent to, on this socket's port) and the peer's.
    pub fn recv_bounded(&self, buf: &mut [u8], mut f: impl FnMut(SocketAddr, SocketAddr, &[u8])) {
        for _ in 0..MAX_PER_WAKE {
            match sys::recvmsg_pktinfo(self.sock.as_raw_fd(), buf) {
                Ok(r) => f(self.local_of(r.dst), r.from, &buf[..r.len]),
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

    /// Our address for a datagram that was sent to `dst`: that address on this socket's
    /// port, unless it cannot be the source of a reply (a multicast or broadcast
    /// destination, or none reported), where it stays the socket's own address. The
    /// scope of a link-local address is left out, as the routing lookup left it out.
    fn local_of(&self, dst: Option<(IpAddr, u32)>) -> SocketAddr {
        match dst {
            Some((ip, _)) if unicast(ip) => SocketAddr::new(ip, self.local.port()),
            _ => self.local,
        }
    }

    /// Sends one datagram to `to`. From a socket bound to a wildcard address, a specific
    /// `from` address becomes the datagram's source; should the kernel refuse it (not an
    /// address of ours: a wrong Local-address, or an address that has just gone), the
    /// routing table picks the source instead, as it did before IP_PKTINFO.
    pub fn send(&self, from: Option<SocketAddr>, to: SocketAddr, data: &[u8]) -> io::Result<usize> {
        let src = from
            .map(|a| a.ip())
            .filter(|ip| self.local.ip().is_unspecified() && unicast(*ip))
            .filter(|ip| ip.is_ipv4() == to.is_ipv4());
        if let Some(ip) = src {
            // A link-local source needs its interface: the peer's, which is on the link.
            let ifindex = match (ip, to) {
                (IpAddr::V6(a), SocketAddr::V6(t)) if a.is_unicast_link_local() => t.scope_id(),
                _ => 0,
            };
            match sys::sendmsg_from(self.sock.as_raw_fd(), data, to, ip, ifindex) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => crate::ike_debug!(
                    crate::log::DebugClass::Transport,
                    20,
                    "send to {to} from {ip} on {}: {e}; leaving from the routed address",
                    self.local
                ),
                r => return r,
            }
        }
        self.sock.send_to(data, to)
    }
}

/// Whether `ip` can be the source address of a datagram.
fn unicast(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && ip != IpAddr::V4(Ipv4Addr::BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn wait_readable(t: &Transport) {
        let mut pfd = [libc::pollfd {
            fd: t.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        assert_eq!(sys::poll(&mut pfd, 5000).unwrap(), 1, "nothing arrived");
    }

    /// Sends "ping" from `client` to each address of `dsts` on the wildcard socket's port;
    /// each must be reported as our address, and a "pong" sent back from it must arrive
    /// from it.
    fn round_trips(wildcard: &str, client: &str, dsts: &[&str]) {
        let sock = match UdpSocket::bind(wildcard) {
            Ok(s) => s,
            Err(e) => return eprintln!("skipped: bind {wildcard}: {e}"),
        };
        let t = Transport::from_fd(OwnedFd::from(sock), false).unwrap();
        assert!(t.local.ip().is_unspecified());
        let client = UdpSocket::bind(client).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        for dst in dsts {
            let dst = SocketAddr::new(dst.parse().unwrap(), t.local.port());
            client.send_to(b"ping", dst).unwrap();
            wait_readable(&t);
            let mut got = Vec::new();
            t.recv_bounded(&mut buf, |local, remote, data| {
                got.push((local, remote, data.to_vec()))
            });
            assert_eq!(got, [(dst, client.local_addr().unwrap(), b"ping".to_vec())]);
            let (local, remote, _) = got[0].clone();
            assert_eq!(t.send(Some(local), remote, b"pong").unwrap(), 4);
            let mut b = [0u8; 16];
            let (n, from) = client.recv_from(&mut b).unwrap();
            assert_eq!((&b[..n], from), (&b"pong"[..], dst));
        }
    }

    /// On Linux all of 127.0.0.0/8 is ours on lo: a datagram to 127.0.0.2 must be seen
    /// as sent to 127.0.0.2, and answered from it rather than from 127.0.0.1, the
    /// routing table's choice towards a client on 127.0.0.1.
    #[test]
    #[cfg(target_os = "linux")]
    fn wildcard_v4_socket_reports_and_answers_from_the_address_used() {
        round_trips(
            "0.0.0.0:0",
            "127.0.0.1:0",
            &["127.0.0.2", "127.0.0.1", "127.0.0.3"],
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn wildcard_v6_socket_reports_and_answers_from_the_address_used() {
        if UdpSocket::bind("[::1]:0").is_err() {
            return eprintln!("skipped: no IPv6 loopback");
        }
        round_trips("[::]:0", "[::1]:0", &["::1"]);
    }

    #[test]
    fn a_source_that_is_not_ours_falls_back_to_the_routed_one() {
        let t = Transport::from_fd(OwnedFd::from(UdpSocket::bind("0.0.0.0:0").unwrap()), false)
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let bogus: SocketAddr = "192.0.2.1:500".parse().unwrap();
        t.send(Some(bogus), client.local_addr().unwrap(), b"x")
            .unwrap();
        let mut b = [0u8; 4];
        let (_, from) = client.recv_from(&mut b).unwrap();
        assert_eq!(from.port(), t.local.port());
        assert!(from.ip().is_loopback(), "{from}");
    }

    #[test]
    fn only_unicast_addresses_are_sources() {
        assert!(unicast("192.0.2.7".parse().unwrap()));
        assert!(unicast("2001:db8::7".parse().unwrap()));
        assert!(!unicast("0.0.0.0".parse().unwrap()));
        assert!(!unicast("255.255.255.255".parse().unwrap()));
        assert!(!unicast("224.0.0.1".parse().unwrap()));
        assert!(!unicast("ff02::1".parse().unwrap()));
    }
}
