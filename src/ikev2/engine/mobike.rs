#![forbid(unsafe_code)]

//! Peers that restart or move: INITIAL_CONTACT (RFC 7296 §2.4), NAT rebinding (§2.23)
//! and MOBIKE as a responder (RFC 4555).
//!
//! - INITIAL_CONTACT: our IKE_AUTH request carries it when, at connect time, we hold no
//!   other IKE SA with that peer (its policy, or an IKE SA that authenticated the
//!   identity the policy wants), as strongSwan does; iked sends none. When the peer's
//!   IKE_AUTH carries it, once the new IKE SA is established the other IKE SAs of the
//!   same policy whose peer authenticated with the same identity go, with their
//!   CHILD_SAs and kernel state, without a Delete (the peer has forgotten them).
//! - NAT rebinding: every new authenticated request moves the IKE SA to the addresses it
//!   came from (iked does the same); when the peer is behind a NAT its UDP-encapsulated
//!   CHILD_SAs follow in the kernel: the encapsulation port in place when only that
//!   changed, the address by replacing the states (with MOBIKE, a new address waits for
//!   UPDATE_SA_ADDRESSES). A message that does not verify and a repeated request move
//!   nothing.
//! - MOBIKE: with [`Config::mobike`] we answer MOBIKE_SUPPORTED in IKE_AUTH to a peer
//!   that announced it (iked's `set mobike`). The peer's INFORMATIONAL with
//!   UPDATE_SA_ADDRESSES moves the IKE SA and its CHILD_SAs (kernel state) to the
//!   message's addresses, with the NAT finding redone from its NAT_DETECTION_* notifies;
//!   the answer carries ours for the same addresses and the peer's COOKIE2 (§3.8, §3.5).
//!   As initiator we announce MOBIKE_SUPPORTED too with [`Config::mobike_offer`]
//!   (iked does not, nor does the daemon: it does not watch its addresses), and
//!   [`Engine::update_addresses`] moves our side: UPDATE_SA_ADDRESSES from the new
//!   address, the CHILD_SAs moved once the peer answers with our COOKIE2 (the daemon
//!   does not watch the host's addresses yet, so only a caller of the engine does).
//!
//! A CHILD_SA moves to new addresses by XFRM_MSG_MIGRATE (`KernelReq::MigrateSa`), as
//! strongSwan moves its own: the kernel keeps its keys, its outbound sequence number and
//! its replay window, so that a peer which kept its own across the move takes our next
//! packet. Where MIGRATE cannot (PF_KEY, -a, transport mode) the states are replaced,
//! and the outbound sequence number starts again at 1.

use super::*;
use crate::ikev2::policy::Identity;

/// What an IKE SA keeps about its peer's identity and mobility.
#[derive(Debug, Clone, Default)]
pub(super) struct Mobility {
    /// The ID the peer sent in IKE_AUTH (authenticated once the SA is established).
    pub(super) peer_id: Option<Identity>,
    /// The peer's IKE_AUTH carried INITIAL_CONTACT: acted on once established.
    pub(super) initial_contact: bool,
    /// Initiator: we send INITIAL_CONTACT in IKE_AUTH.
    pub(super) first_contact: bool,
    /// Initiator: we announce MOBIKE_SUPPORTED in IKE_AUTH ([`Config::mobike`]).
    pub(super) offer: bool,
    /// Our COOKIE2 in the UPDATE_SA_ADDRESSES in flight (RFC 4555 §3.5).
    pub(super) cookie2: Option<[u8; 16]>,
    /// Both sides announced MOBIKE_SUPPORTED (RFC 4555 §3.3).
    pub(super) mobike: bool,
}

impl Mobility {
    /// What the IKE SA that replaces this one by a rekey keeps: the peer's identity and
    /// MOBIKE.
    pub(super) fn inherited(&self) -> Mobility {
        Mobility {
            peer_id: self.peer_id.clone(),
            mobike: self.mobike,
            ..Mobility::default()
        }
    }
}

impl IkeSa {
    /// An authenticated message from `remote` may be for this IKE SA although it comes
    /// from another address: established, the peer behind a NAT or with MOBIKE, the same
    /// address family.
    pub(super) fn may_move_to(&self, remote: SocketAddr) -> bool {
        self.info.state == IkeState::Established
            && (self.info.nat_remote || self.mob.mobike)
            && self.info.remote.is_ipv4() == remote.is_ipv4()
    }
}

impl Engine {
    /// What a new IKE SA with the peer of policy `p` says in its IKE_AUTH request.
    pub(super) fn new_contact(&self, p: usize) -> Mobility {
        Mobility {
            first_contact: !self.has_contact(p),
            offer: self.config.mobike && self.config.mobike_offer,
            ..Mobility::default()
        }
    }

    /// Our address changed (the caller watches the host's addresses): the established
    /// IKE SAs `which` picks that we initiated with MOBIKE move to `local` (their port
    /// stays) with an INFORMATIONAL carrying UPDATE_SA_ADDRESSES, NAT_DETECTION_* for the
    /// new addresses and a COOKIE2 (RFC 4555 §3.5); their CHILD_SAs follow when the
    /// peer answers. Returns how many.
    pub fn update_addresses(&mut self, now: Time, which: IkeRef<'_>, local: IpAddr) -> usize {
        let picked: Vec<Handle> = self
            .sas
            .iter()
            .filter(|(h, sa)| match which {
                IkeRef::Peer(p) => sa.info.peer == p,
                IkeRef::Handle(x) => *h == x,
            })
            .filter(|(_, sa)| {
                sa.info.state == IkeState::Established && sa.info.initiator && sa.mob.mobike
            })
            .filter(|(_, sa)| sa.info.local.is_ipv4() == local.is_ipv4())
            .map(|(h, _)| h)
            .collect();
        for &h in &picked {
            let cookie = self.io.random::<16>();
            let Some(sa) = self.sas.get_mut(h) else {
                continue;
            };
            log::info!(
                "ikev2: {} {}: our address moves from {} to {local}: UPDATE_SA_ADDRESSES",
                sa.info.peer,
                sa.info.remote,
                sa.info.local.ip()
            );
            sa.info.local.set_ip(local);
            sa.mob.cookie2 = Some(cookie);
            self.start_request(now, h, Req::UpdateAddresses);
        }
        picked.len()
    }

    /// The answer to our UPDATE_SA_ADDRESSES: with our COOKIE2 back, the NAT finding
    /// redone from its NAT_DETECTION_* and the CHILD_SAs moved to the IKE SA's addresses.
    pub(super) fn addresses_updated(&mut self, h: Handle, inner: &Payloads<'_>) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        let cookie = sa.mob.cookie2.take();
        let back = inner.notify(NotifyType::COOKIE2).map(|c| c.data);
        if cookie.is_some() && back != cookie.as_ref().map(|c| &c[..]) {
            let remote = sa.info.remote;
            return self
                .io
                .dropped(remote, "UPDATE_SA_ADDRESSES answer without our COOKIE2");
        }
        nat_recheck(sa, inner);
        self.io.keepalive_starts(sa, self.io.now);
        self.io.arm(h, sa);
        let (local, remote) = (sa.info.local, sa.info.remote);
        let nat = sa.info.nat_local || sa.info.nat_remote;
        log::info!(
            "ikev2: {} {remote}: the peer took our new address {local}",
            sa.info.peer
        );
        self.io.stats.peer_moves += 1;
        self.move_children(h, local, remote, nat);
    }

    /// Whether an IKE SA with the peer of policy `p` exists, in any state: one the
    /// policy made, or one whose peer authenticated as the policy's remote ID.
    pub(super) fn has_contact(&self, p: usize) -> bool {
        let want = self.policy.peers.get(p).and_then(|q| q.remote_id.as_ref());
        self.sas
            .iter()
            .any(|(_, s)| s.peer == p || (want.is_some() && s.mob.peer_id.as_ref() == want))
    }

    /// The peer's IKE_AUTH message (`id_ty`: IDi from an initiator, IDr from a
    /// responder): its ID, INITIAL_CONTACT and MOBIKE_SUPPORTED are noted, to be acted on
    /// once the IKE SA is established ([`Self::contact_made`]).
    pub(super) fn note_auth(&mut self, h: Handle, inner: &Payloads<'_>, id_ty: PayloadType) {
        let mobike = self.config.mobike;
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if let Some(id) = inner.iter().find_map(|e| match e.payload {
            Payload::Id(id) if e.ty == id_ty => Some(id),
            _ => None,
        }) {
            sa.mob.peer_id = Some(Identity {
                ty: id.ty,
                data: id.data.to_vec(),
            });
        }
        if inner.notify(NotifyType::INITIAL_CONTACT).is_some() {
            sa.mob.initial_contact = true;
        }
        if mobike && inner.notify(NotifyType::MOBIKE_SUPPORTED).is_some() {
            sa.mob.mobike = true;
        }
    }

    /// The peer of IKE SA `h` has just authenticated (before its CHILD_SA goes to the
    /// kernel): if it said INITIAL_CONTACT, the established IKE SAs of the same policy
    /// with the same authenticated peer go, without a Delete, and their CHILD_SAs with
    /// their kernel state (flows too: the new CHILD_SA loads them again).
    pub(super) fn contact_made(&mut self, h: Handle) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if !std::mem::take(&mut sa.mob.initial_contact) {
            return;
        }
        let (p, name, remote) = (sa.peer, sa.info.peer.clone(), sa.info.remote);
        let Some(id) = sa.mob.peer_id.clone() else {
            return;
        };
        let stale: Vec<Handle> = self
            .sas
            .iter()
            .filter(|&(o, s)| {
                o != h
                    && s.peer == p
                    && s.info.state == IkeState::Established
                    && s.mob.peer_id.as_ref() == Some(&id)
            })
            .map(|(o, _)| o)
            .collect();
        for o in stale {
            log::info!(
                "ikev2: {name} {remote}: INITIAL_CONTACT: the peer restarted; its old IKE SA goes"
            );
            self.io.stats.initial_contacts += 1;
            self.delete(o, "replaced: the peer sent INITIAL_CONTACT");
        }
    }

    /// An authenticated new request (or the answer to ours) came from `remote` to
    /// `local`: the IKE SA answers there from now on (§2.11, §2.23). With MOBIKE, an
    /// UPDATE_SA_ADDRESSES moves its CHILD_SAs too, NAT found anew; without, a peer
    /// behind a NAT takes its UDP-encapsulated CHILD_SAs along.
    pub(super) fn follow_peer(
        &mut self,
        h: Handle,
        (local, remote): (SocketAddr, SocketAddr),
        inner: &Payloads<'_>,
    ) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        let update = sa.mob.mobike
            && sa.info.state == IkeState::Established
            && inner.notify(NotifyType::UPDATE_SA_ADDRESSES).is_some();
        let (old_local, old_remote) = (sa.info.local, sa.info.remote);
        if (local, remote) == (old_local, old_remote) && !update {
            return;
        }
        sa.info.local = local;
        sa.info.remote = remote;
        if sa.info.state != IkeState::Established {
            // The initiator moving to port 4500 for IKE_AUTH (§2.23).
            return;
        }
        let nat_before = (sa.info.nat_local, sa.info.nat_remote);
        if update {
            nat_recheck(sa, inner);
            self.io.keepalive_starts(sa, self.io.now);
            self.io.arm(h, sa);
        } else if !sa.info.nat_remote || (sa.mob.mobike && remote.ip() != old_remote.ip()) {
            // The IKE SA answers where it was asked; the CHILD_SAs stay unless the
            // peer's NAT moved it. With MOBIKE a new address takes UPDATE_SA_ADDRESSES:
            // a request from elsewhere may be the peer trying a path (RFC 4555 §3.5);
            // a new port behind the same NAT address is the NAT's doing.
            return;
        }
        let (peer, nat) = (
            sa.info.peer.clone(),
            (sa.info.nat_local, sa.info.nat_remote),
        );
        log::info!(
            "ikev2: {peer}: {} {old_remote} to {remote} (local {old_local} to {local}){}",
            if update {
                "UPDATE_SA_ADDRESSES: the peer moved from"
            } else {
                "the peer's NAT moved it from"
            },
            if nat != nat_before {
                format!(", NAT now local {} remote {}", nat.0, nat.1)
            } else {
                String::new()
            }
        );
        self.io.stats.peer_moves += 1;
        self.move_children(h, local, remote, nat.0 || nat.1);
    }

    /// The CHILD_SAs of IKE SA `h` get its new addresses (`encap`: UDP-encapsulated
    /// between them), in the kernel too: a port change of an encapsulated SA updates its
    /// states in place; a new address (or encapsulation on or off) replaces them, same
    /// SPIs and keys, flows reloaded.
    fn move_children(&mut self, h: Handle, local: SocketAddr, remote: SocketAddr, encap: bool) {
        let moved: Vec<Handle> = self
            .children
            .iter()
            .filter(|(_, c)| c.ike == h)
            .map(|(ch, _)| ch)
            .collect();
        // CHILD_SAs moved by MIGRATE, whose flows moved with them.
        let mut migrated: Vec<ChildSa> = Vec::new();
        for ch in moved {
            let Some(c) = self.children.get_mut(ch) else {
                continue;
            };
            let old = c.clone();
            c.local = local;
            c.remote = remote;
            c.encap = encap.then(|| (local.port(), remote.port()));
            if (c.local, c.remote, c.encap) == (old.local, old.remote, old.encap) {
                continue;
            }
            let new = c.clone();
            let in_place = old.local.ip() == new.local.ip()
                && old.remote.ip() == new.remote.ip()
                && old.encap.is_some()
                && new.encap.is_some();
            let (old_sa, new_sa) = match (old.ipsec_sa(false), new.ipsec_sa(false)) {
                (Ok(o), Ok(n)) => (o, n),
                _ => continue,
            };
            let part = old_sa.installed();
            if in_place {
                self.io.kernel_req(KernelReq::UpdateSa(Box::new(new_sa)));
            } else if migrated.iter().any(|m| m.same_flows(&new)) {
                // Its flows moved with an earlier one (a rekey's old and new CHILD_SAs
                // share them): its states are replaced.
                self.io
                    .kernel_req(KernelReq::DeleteSa(Box::new(old_sa), part, true));
                self.io.kernel_req(KernelReq::AddSa(Box::new(new_sa), part));
            } else {
                self.io.kernel_req(KernelReq::MigrateSa(
                    Box::new(old_sa),
                    Box::new(new_sa),
                    part,
                ));
                migrated.push(new);
            }
        }
    }
}

/// MOBIKE (RFC 4555 §3.5): the NAT finding redone from the NAT_DETECTION_* notifies of
/// an INFORMATIONAL (both SPIs in the hashes now); none, no change.
fn nat_recheck(sa: &mut IkeSa, inner: &Payloads<'_>) {
    let r = sa.info.spi_r;
    nat_compare(sa, inner, &r);
}

/// Our UPDATE_SA_ADDRESSES request's notifies (RFC 4555 §3.5): the update, our
/// NAT_DETECTION_* for the IKE SA's (new) addresses, the COOKIE2.
pub(super) fn update_request(sa: &IkeSa) -> Vec<(NotifyType, Vec<u8>)> {
    let (i, r) = (&sa.info.spi_i, &sa.info.spi_r);
    let mut out = vec![
        (NotifyType::UPDATE_SA_ADDRESSES, Vec::new()),
        (
            NotifyType::NAT_DETECTION_SOURCE_IP,
            natd(i, r, sa.info.local).to_vec(),
        ),
        (
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            natd(i, r, sa.info.remote).to_vec(),
        ),
    ];
    if let Some(c) = sa.mob.cookie2 {
        out.push((NotifyType::COOKIE2, c.to_vec()));
    }
    out
}

/// The notifies our answer to an INFORMATIONAL request carries with MOBIKE: our
/// NAT_DETECTION_* for the addresses it goes between, when the request had an
/// UPDATE_SA_ADDRESSES or NAT_DETECTION_* (RFC 4555 §3.8), and the peer's COOKIE2 (§3.5).
pub(super) fn mobike_answer(
    io: &mut Io,
    sa: &IkeSa,
    inner: &Payloads<'_>,
) -> Vec<(NotifyType, Vec<u8>)> {
    let mut out = Vec::new();
    if !sa.mob.mobike {
        return out;
    }
    let natd_asked = inner.notify(NotifyType::UPDATE_SA_ADDRESSES).is_some()
        || inner.notify(NotifyType::NAT_DETECTION_SOURCE_IP).is_some();
    if natd_asked {
        let (i, r) = (&sa.info.spi_i, &sa.info.spi_r);
        out.push((
            NotifyType::NAT_DETECTION_SOURCE_IP,
            natd(i, r, sa.info.local).to_vec(),
        ));
        out.push((
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            natd(i, r, sa.info.remote).to_vec(),
        ));
    }
    // RFC 4555 §3.5: 8 to 64 octets, returned as they came.
    if let Some(c) = inner.notify(NotifyType::COOKIE2) {
        if (8..=64).contains(&c.data.len()) {
            out.push((NotifyType::COOKIE2, c.data.to_vec()));
        } else {
            io.limited_log(
                log::Level::Warn,
                format_args!(
                    "ikev2: {}: COOKIE2 of {} bytes (not 8-64): not returned",
                    sa.info.remote,
                    c.data.len()
                ),
            );
        }
    }
    out
}
