//! NAT traversal (RFC 3947 and RFC 3948; the draft-ietf-ipsec-nat-t-ike-02/03 vendor IDs
//! and payload numbers that older peers still use; isakmpd nat_traversal.c).
//!
//! Both sides announce support with vendor IDs in the first two Main Mode messages. In
//! messages 3 and 4 each sends NAT-D payloads: a hash of the address and port it sends to,
//! then of the one it sends from. A receiver whose own address does not hash to the first
//! is behind a NAT; one whose peer's address matches none of the others sees its peer
//! behind one. Then the initiator moves to port 4500 from message 5 on, every IKE message
//! on that port carries the 4-byte non-ESP marker, the IPsec SAs use UDP encapsulation
//! (encapsulation modes UDP-Encapsulated-Tunnel/-Transport), and the side behind the NAT
//! sends a one-byte keepalive every [General] NAT-T-Keepalive seconds to keep the mapping.

use std::net::{IpAddr, SocketAddr};

use super::crypto::{hash, HashAlg, Key};
use super::wire::{self, EncapsulationMode, Message, Payload, PayloadType};

/// What precedes an IKE message on the NAT-T port (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The NAT-keepalive packet (RFC 3948 §2.3).
pub const KEEPALIVE: [u8; 1] = [0xff];

/// NAT traversal as agreed with one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatT {
    /// RFC 3947 (else a draft: other payload numbers and encapsulation modes).
    pub rfc: bool,
    /// Our address is rewritten on the way.
    pub local_behind: bool,
    /// The peer's is.
    pub peer_behind: bool,
}

impl NatT {
    pub fn detected(self) -> bool {
        self.local_behind || self.peer_behind
    }

    pub fn nat_d_type(self) -> PayloadType {
        if self.rfc {
            PayloadType::NAT_D
        } else {
            PayloadType::NAT_D_DRAFT
        }
    }

    pub fn nat_oa_type(self) -> PayloadType {
        if self.rfc {
            PayloadType::NAT_OA
        } else {
            PayloadType::NAT_OA_DRAFT
        }
    }

    /// The encapsulation mode to negotiate for `mode` (tunnel or transport) through a NAT.
    pub fn encapsulation(self, mode: EncapsulationMode) -> EncapsulationMode {
        let transport = mode == EncapsulationMode::TRANSPORT;
        match (self.rfc, transport) {
            (true, false) => EncapsulationMode::UDP_ENCAP_TUNNEL,
            (true, true) => EncapsulationMode::UDP_ENCAP_TRANSPORT,
            (false, false) => EncapsulationMode::UDP_ENCAP_TUNNEL_DRAFT,
            (false, true) => EncapsulationMode::UDP_ENCAP_TRANSPORT_DRAFT,
        }
    }
}

/// The vendor IDs we send: RFC 3947 first, then the drafts.
pub const OUR_VIDS: [[u8; 16]; 4] = [
    wire::VID_NAT_T_RFC3947,
    wire::VID_NAT_T_DRAFT_03,
    wire::VID_NAT_T_DRAFT_02_N,
    wire::VID_NAT_T_DRAFT_02,
];

/// Which NAT-T the peer's vendor IDs announce: `Some(true)` RFC 3947, `Some(false)` a
/// draft, `None` none.
pub fn announced(m: &Message<'_>) -> Option<bool> {
    let mut found = None;
    for p in &m.payloads {
        if let Payload::Vendor(v) = p.payload {
            if v == wire::VID_NAT_T_RFC3947 {
                return Some(true);
            }
            if OUR_VIDS[1..].iter().any(|d| v == d) {
                found = Some(false);
            }
        }
    }
    found
}

/// The vendor IDs of a phase 1 first message or its answer, in isakmpd's order
/// (ike_phase_1.c): its own, the NAT-T ones unless NAT-T is off (nat_traversal.c
/// `isakmp_nat_t_cap`: draft 02 with its newline, draft 03, RFC 3947), then DPD. A
/// responder sends the NAT-T ones when the peer announced NAT-T.
pub fn phase1_vids(nat_t: bool) -> impl Iterator<Item = &'static [u8; 16]> {
    const NAT_T: [[u8; 16]; 3] = [
        wire::VID_NAT_T_DRAFT_02,
        wire::VID_NAT_T_DRAFT_03,
        wire::VID_NAT_T_RFC3947,
    ];
    std::iter::once(&wire::VID_OPENBSD)
        .chain(NAT_T.iter().filter(move |_| nat_t))
        .chain(std::iter::once(&wire::VID_DPD))
}

/// HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 §3.2).
pub fn nat_d(h: HashAlg, icookie: &[u8; 8], rcookie: &[u8; 8], addr: SocketAddr) -> Key {
    let port = addr.port().to_be_bytes();
    match addr.ip() {
        IpAddr::V4(a) => hash(h, &[icookie, rcookie, &a.octets(), &port]),
        IpAddr::V6(a) => hash(h, &[icookie, rcookie, &a.octets(), &port]),
    }
}

/// Reads the peer's NAT-D payloads of a message received from `remote` on `local`:
/// (we are behind a NAT, the peer is). `None` when the message has none.
pub fn detect(
    m: &Message<'_>,
    h: HashAlg,
    icookie: &[u8; 8],
    rcookie: &[u8; 8],
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<(bool, bool)> {
    let ds: Vec<&[u8]> = m
        .payloads
        .iter()
        .filter_map(|p| match p.payload {
            Payload::NatD(d) => Some(d),
            _ => None,
        })
        .collect();
    let (first, rest) = ds.split_first()?;
    let ours = nat_d(h, icookie, rcookie, local);
    let theirs = nat_d(h, icookie, rcookie, remote);
    let local_behind = *first != ours.as_bytes();
    let peer_behind = !rest.iter().any(|d| *d == theirs.as_bytes());
    Some((local_behind, peer_behind))
}

/// Whether `mode` is UDP-encapsulated transport (RFC or draft number), the mode whose
/// Quick Mode carries NAT-OA payloads.
pub fn udp_transport(mode: EncapsulationMode) -> bool {
    mode == EncapsulationMode::UDP_ENCAP_TRANSPORT
        || mode == EncapsulationMode::UDP_ENCAP_TRANSPORT_DRAFT
}

/// NAT-OA payloads of type `ty` for `addrs` (RFC 3947 §5.2): ID type, 3 reserved bytes,
/// address.
pub fn write_nat_oa(
    b: &mut wire::MessageBuilder<'_>,
    ty: PayloadType,
    addrs: &[IpAddr],
) -> Result<(), wire::NoRoom> {
    for a in addrs {
        let body = match a {
            IpAddr::V4(a) => [&[wire::IdType::IPV4_ADDR.0, 0, 0, 0][..], &a.octets()].concat(),
            IpAddr::V6(a) => [&[wire::IdType::IPV6_ADDR.0, 0, 0, 0][..], &a.octets()].concat(),
        };
        b.payload(ty, |w| w.bytes(&body))?;
    }
    Ok(())
}

/// The addresses of a message's NAT-OA payloads, in order (the initiator's, then the
/// responder's).
pub fn nat_oas(m: &Message<'_>) -> Vec<IpAddr> {
    m.payloads
        .iter()
        .filter_map(|p| match p.payload {
            Payload::NatOa(o) => match o.address.len() {
                4 => <[u8; 4]>::try_from(o.address).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(o.address).ok().map(IpAddr::from),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

impl super::Engine {
    /// A fresh authenticated message over ISAKMP SA `h` came from `remote` to `local`:
    /// the peer is alive (DPD), and if it sits behind a NAT whose mapping changed (its
    /// messages now come from another port of the NAT, RFC 3947 §7), our IKE messages
    /// and its UDP-encapsulated SAs follow it there. A NAT that changed its address too
    /// is only followed by IKE: a kernel SA cannot change its peer's address in place, so
    /// those SAs last until their replacement.
    pub(crate) fn peer_heard(
        &mut self,
        now: crate::timer::Time,
        h: super::sa::Handle,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        self.dpd_heard(now, h);
        let nat_port = self.nat_port();
        let Some(sa) = self.isakmp_sas.get_mut(h) else {
            return;
        };
        if sa.remote == remote
            || local.port() != nat_port
            || !sa.nat_t.is_some_and(|n| n.peer_behind)
        {
            return;
        }
        let (old, cookies) = (sa.remote, (sa.icookie, sa.rcookie));
        sa.remote = remote;
        crate::log_info!("NAT-T: the peer's NAT moved it from {old} to {remote}; following it");
        if old.ip() != remote.ip() {
            return;
        }
        let moved: Vec<super::sa::Handle> = self
            .ipsec_sas
            .iter()
            .filter(|(_, s)| (s.icookie, s.rcookie) == cookies && s.encap.is_some())
            .map(|(ih, _)| ih)
            .collect();
        for ih in moved {
            let Some(s) = self.ipsec_sas.get_mut(ih) else {
                continue;
            };
            s.remote = remote;
            s.encap = s.encap.map(|(ours, _)| (ours, remote.port()));
            let req = super::sa::KernelReq::UpdateSa(Box::new(s.clone()));
            self.io.kernel_req(req);
        }
    }
}
