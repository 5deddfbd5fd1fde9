//! Quick Mode (RFC 2409 §5.5), as initiator and responder (isakmpd ike_quick_mode.c):
//!
//! ```text
//!  1 I>R  HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr]
//!  2 R>I  HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr]
//!  3 I>R  HDR*, HASH(3)
//! ```
//!
//! Each suite of the connection's Configuration is one proposal number; each of its
//! protocols a proposal payload with our SPI and the protocol's transforms. The responder
//! finds the connection by the peer and the client IDs, takes the first offered proposal
//! one of its suites accepts, and echoes the chosen transforms with its own SPIs. Both
//! sides derive KEYMAT per SA (the SPI is the receiver's) and hand both directions to the
//! kernel: the initiator after sending message 3, the responder after receiving it.

use std::net::{IpAddr, SocketAddr};

use super::auth::same;
use super::crypto::{derive, DhPrivate, Group, Key};
use super::exchange::{Exchange, Kind, P2Choice, QmStep, State};
use super::exchange::{Reply, Resume, Wait};
use super::io::Io;
use super::ipsec_proposal::{accept_suite, installable_suites, write_offer, Matched};
use super::phase1::{attr, NONCE_LEN};
use super::phase2::{install_inbound, open_hash1_into, open_protected};
use super::policy::Policy;
use super::policy::{OwnedId, Suite};
use super::sa::IsakmpSa;
use super::sa::{Handle, KernelReq};
use super::wire::{
    ExchangeType, Header, IpsecAttr, LifeType, MessageBuilder, NotifyType, Payload, PayloadType,
    Proposal, ProtocolId, Transform, HEADER_LEN,
};
use super::{Backend, Drop, Engine};
use crate::timer::Time;

impl Engine {
    pub(crate) fn start_quick_mode(
        &mut self,
        now: Time,
        sa: Handle,
        name: &str,
    ) -> Result<(), String> {
        let conn = self
            .policy
            .connection(name)
            .ok_or("no such connection")?
            .clone();
        let (icookie, rcookie, local, remote, hash, cipher, last) = {
            let s = self.isakmp_sas.get(sa).ok_or("phase 1 SA gone")?;
            (
                s.icookie,
                s.rcookie,
                s.local,
                s.remote,
                s.hash,
                s.cipher,
                Key::from_slice(s.last_block()).unwrap_or_default(),
            )
        };
        let msgid = loop {
            let mut b = [0u8; 4];
            self.io.rng.fill(&mut b);
            let m = u32::from_be_bytes(b);
            if m != 0
                && !self
                    .exchanges
                    .iter()
                    .any(|(_, x)| x.icookie == icookie && x.msgid == m)
            {
                break m;
            }
        };
        let mut x = Exchange::new(Kind::Quick, true, local, remote);
        x.icookie = icookie;
        x.rcookie = rcookie;
        x.msgid = msgid;
        x.sa = Some(sa);
        x.peer = conn.peer.clone();
        x.connection = Some(conn.name.clone());
        x.deadline = now.add_secs(self.policy.exchange_max_time.into());
        x.iv = derive::phase2_iv(hash, last.as_bytes(), msgid, cipher.block_len());
        x.ni = self.io.random(NONCE_LEN);
        // PFS: one KE for the whole offer, of the first group any transform names
        // (isakmpd refuses offers whose transforms name differing groups; we offer ours).
        let suites = qm_suites(
            &conn.suites,
            self.isakmp_sas.get(sa).ok_or("phase 1 SA gone")?,
            self.cfg.backend,
            true,
        );
        if suites.is_empty() {
            return Err(format!(
                "no suite of {name} can be installed by this kernel interface"
            ));
        }
        let pfs = suites
            .iter()
            .flat_map(|s| s.protocols.iter())
            .flat_map(|p| p.transforms.iter())
            .find_map(|t| t.group);
        if let Some(g) = pfs {
            let g = Group::from_ike(g).ok_or("PFS group not supported")?;
            let dh = DhPrivate::generate(g, &mut *self.io.rng).map_err(|e| e.to_string())?;
            x.gxi = dh.public_value().to_vec();
            x.dh = Some(dh);
            x.qm.pfs = Some(g);
        }
        let mut spis = Vec::new();
        for (i, s) in suites.iter().enumerate() {
            for p in &s.protocols {
                spis.push((i as u8 + 1, p.protocol, [0u8; 4]));
            }
        }
        // Without a Local-ID of its own, a connection over an SA whose peer gave us an
        // address by mode-config speaks for that address.
        let assigned = self.isakmp_sas.get(sa).and_then(|s| s.cfg_address);
        x.qm.local_id = conn
            .local_id
            .clone()
            .or_else(|| assigned.map(OwnedId::address));
        x.qm.remote_id = conn.remote_id.clone();
        if let (Some(l), Some(r)) = (&x.qm.local_id, &conn.remote_id) {
            x.qm.idci = Some(l.body());
            x.qm.idcr = Some(r.body());
        }
        let from_kernel = self.kernel_answers();
        if !from_kernel {
            for s in spis.iter_mut() {
                s.2 = self.new_spi();
            }
        }
        x.qm.offered_spis = spis;
        let handle = self.exchanges.insert(x).ok_or("exchange table full")?;
        crate::log_info!("quick mode {name} with {remote} started as initiator");
        if from_kernel {
            self.reserve_spis(now, handle, Resume::SendMessage1);
            return Ok(());
        }
        self.qm_send_1(now, handle)
    }

    /// Asks the kernel for an inbound SPI per entry of the offer (initiator) or of the
    /// choice (responder); the exchange continues at `then` when all have come.
    fn reserve_spis(&mut self, now: Time, h: Handle, then: Resume) {
        let Some(x) = self.exchanges.get(h) else {
            return;
        };
        let protocols: Vec<ProtocolId> = if x.initiator {
            x.qm.offered_spis.iter().map(|s| s.1).collect()
        } else {
            x.qm.chosen.iter().map(|c| c.protocol).collect()
        };
        let (src, dst) = (x.remote.ip(), x.local.ip());
        for (i, protocol) in protocols.into_iter().enumerate() {
            self.kernel_wait(h, Wait::Spi(i), KernelReq::GetSpi { protocol, src, dst });
        }
        if let Some(x) = self.exchanges.get_mut(h) {
            x.qm.kernel.then = Some(then);
        }
        self.arm(h);
        let _ = now;
    }

    /// Initiator, message 1, once its SPIs are known.
    pub(crate) fn qm_send_1(&mut self, now: Time, h: Handle) -> Result<(), String> {
        let (x, mut cx) = self
            .split_qm(now, h)
            .map_err(|_| "exchange or phase 1 SA gone")?;
        send_1(x, h, &mut cx)
    }

    /// Exchange `h` and the narrow context its Quick Mode step runs in.
    pub(crate) fn split_qm(
        &mut self,
        now: Time,
        h: Handle,
    ) -> Result<(&mut Exchange, QmCx<'_>), Drop> {
        let x = self.exchanges.get_mut(h).ok_or(Drop::Silent("gone"))?;
        let sa =
            x.sa.and_then(|sa| self.isakmp_sas.get(sa))
                .ok_or(Drop::Silent("phase 1 SA gone"))?;
        Ok((x, qm_cx!(self, now, sa)))
    }

    pub(crate) fn quick_mode_input(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        let sa = self.phase2_sa(hd)?;
        match self.lookup_exchange(now, Kind::Quick, remote, hd, data) {
            Some(Err(())) => Ok(()),
            Some(Ok(h)) => {
                let state = {
                    let x = self.exchanges.get_mut(h).ok_or(Drop::Silent("gone"))?;
                    // Recorded before the step runs: a step that ends the exchange hands
                    // it to the finished cache, which answers its duplicates.
                    x.last_recv.clear();
                    x.last_recv.extend_from_slice(data);
                    x.state
                };
                let r = match state {
                    State::Quick(QmStep::AwaitReply) => self.qm_i2(now, h, data),
                    State::Quick(QmStep::AwaitAck) => self.qm_r3(now, h, data),
                    _ => Err(Drop::Silent("unexpected quick mode message at this step")),
                };
                if r.is_err() {
                    if let Some(x) = self.exchanges.get_mut(h) {
                        x.last_recv.clear();
                    }
                }
                match &r {
                    Ok(()) => self.peer_heard(now, sa, local, remote),
                    Err(Drop::Notify(n, why)) if *n != NotifyType::PAYLOAD_MALFORMED => {
                        crate::log_warn!("quick mode with {remote}: {why}");
                        self.io.stats.failed += 1;
                        self.free_exchange(h);
                        self.send_notify(now, sa, *n);
                        return Ok(());
                    }
                    _ => {}
                }
                r
            }
            None => {
                let r = self.qm_r1(now, (local, remote), sa, hd, data);
                self.phase2_outcome(now, sa, (local, remote), "quick mode", r)
            }
        }
    }

    /// Responder, message 1.
    fn qm_r1(
        &mut self,
        now: Time,
        (local, remote): (SocketAddr, SocketAddr),
        sa: Handle,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        let s = self
            .isakmp_sas
            .get(sa)
            .ok_or(Drop::Silent("phase 1 SA gone"))?;
        let mut x = r1(&mut qm_cx!(self, now, s), sa, (local, remote), hd, data)?;
        let from_kernel = self.kernel_answers();
        if !from_kernel {
            for i in 0..x.qm.chosen.len() {
                x.qm.chosen[i].spi_in = self.new_spi();
            }
        }
        let name = x.connection.clone().unwrap_or_default();
        let handle = self
            .exchanges
            .insert(x)
            .ok_or(Drop::Silent("exchange table full"))?;
        crate::log_info!("quick mode {name} with {remote} started as responder");
        if from_kernel {
            self.reserve_spis(now, handle, Resume::BuildMessage2);
            return Ok(());
        }
        let r = self.qm_send_2(now, handle);
        if r.is_err() {
            self.free_exchange(handle);
        }
        r
    }

    /// Responder, message 2, once its SPIs are known: built, and sent once the inbound
    /// SAs are in the kernel.
    pub(crate) fn qm_send_2(&mut self, now: Time, h: Handle) -> Result<(), Drop> {
        let (x, mut cx) = self.split_qm(now, h)?;
        let then = build_2(x, &mut cx)?;
        self.send_when_installed(now, h, then);
        Ok(())
    }

    /// Sends a message that announces SAs at once if nothing is pending in the kernel,
    /// else holds it until the kernel confirms (then [`Self::kernel_reply`] sends it).
    fn send_when_installed(&mut self, now: Time, h: Handle, then: Resume) {
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        if x.qm.kernel.pending.is_empty() {
            self.send_held(now, h, then);
        } else {
            x.qm.kernel.then = Some(then);
            x.next_retransmit = None;
            self.arm(h);
        }
    }

    /// Sends message 2 or 3 once what it announces is installed.
    pub(crate) fn send_held(&mut self, now: Time, h: Handle, then: Resume) {
        match then {
            Resume::SendMessage2 { clear, msg } => {
                self.send_step_captured(now, h, clear, msg, true)
            }
            Resume::SendMessage3 { clear, msg } => {
                if let Some(x) = self.exchanges.get_mut(h) {
                    x.set_qm(QmStep::Done);
                    x.resend_on_dup = true;
                }
                self.send_step_captured(now, h, clear, msg, false);
                self.phase2_up(now, h);
            }
            _ => {}
        }
    }

    /// Initiator, message 2: verify, take the responder's choice, install, send
    /// message 3.
    fn qm_i2(&mut self, now: Time, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let (x, mut cx) = self.split_qm(now, h)?;
        let then = i2(x, &mut cx, data)?;
        self.phase2_commit(now, h)?;
        self.send_when_installed(now, h, then);
        Ok(())
    }

    /// Responder, message 3: verify HASH(3), install.
    fn qm_r3(&mut self, now: Time, h: Handle, data: &[u8]) -> Result<(), Drop> {
        let (x, mut cx) = self.split_qm(now, h)?;
        r3(x, &mut cx, data)?;
        self.phase2_commit(now, h)?;
        match self.exchanges.get_mut(h) {
            Some(x) if !x.qm.kernel.pending.is_empty() => {
                x.qm.kernel.then = Some(Resume::Finish);
                self.arm(h);
            }
            _ => self.phase2_up(now, h),
        }
        Ok(())
    }
}

/// What a Quick Mode step may use besides its own exchange: the queues out, the policy,
/// the kernel backend's capabilities, and the ISAKMP SA the exchange runs over (read
/// only). The IPsec SA table is the engine's: what the exchange agreed on goes into it
/// after the step, in [`Engine::phase2_commit`].
pub(crate) struct QmCx<'a> {
    pub now: Time,
    pub io: &'a mut Io,
    pub policy: &'a Policy,
    pub backend: Backend,
    pub sa: &'a IsakmpSa,
    /// isakmpd.policy, when in force (`check_policy`), and the time for it.
    pub keynote: Option<&'a dyn super::policy::ProposalPolicy>,
    pub wall: super::policy::WallClock,
}

/// Builds the [`QmCx`] of engine `$e` over ISAKMP SA `$sa` from the engine's fields.
macro_rules! qm_cx {
    ($e:ident, $now:expr, $sa:expr) => {
        QmCx {
            now: $now,
            io: &mut $e.io,
            policy: &$e.policy,
            backend: $e.cfg.backend,
            sa: $sa,
            keynote: $e.proposal_policy.as_deref(),
            wall: $e.wall,
        }
    };
}
use qm_cx;

/// The suites of a connection as negotiated over ISAKMP SA `sa`: through a NAT with the
/// UDP-encapsulated modes (RFC 3947 §5.1), and, for an offer, only what the kernel
/// backend installs.
fn qm_suites(suites: &[Suite], sa: &IsakmpSa, backend: Backend, offer: bool) -> Vec<Suite> {
    let mut v = if offer {
        installable_suites(suites, backend)
    } else {
        suites.to_vec()
    };
    if let Some(n) = sa.nat_t.filter(|n| n.detected()) {
        for s in v.iter_mut() {
            for p in s.protocols.iter_mut() {
                for t in p.transforms.iter_mut() {
                    t.encapsulation = n.encapsulation(t.encapsulation);
                }
            }
        }
    }
    v
}

/// NAT-OA payloads for a Quick Mode message over `sa` (RFC 3947 §5.2): through a NAT,
/// when UDP-encapsulated transport is offered or chosen, the initiator's address and
/// the responder's, as the sender knows them.
fn nat_oa(
    sa: &IsakmpSa,
    transport: bool,
    addrs: [IpAddr; 2],
) -> Option<(PayloadType, [IpAddr; 2])> {
    let n = sa.nat_t?;
    (n.detected() && transport).then_some((n.nat_oa_type(), addrs))
}

/// The tail of Quick Mode message 1 and 2: the client IDs, if any, and NAT-OA, if
/// needed.
fn write_ids_nat_oa(
    b: &mut MessageBuilder<'_>,
    x: &Exchange,
    nat_oa: &Option<(PayloadType, [IpAddr; 2])>,
) -> Result<(), super::wire::NoRoom> {
    if let (Some(ci), Some(cr)) = (&x.qm.idci, &x.qm.idcr) {
        b.payload(PayloadType::ID, |w| w.bytes(ci))?;
        b.payload(PayloadType::ID, |w| w.bytes(cr))?;
    }
    if let Some((ty, addrs)) = nat_oa {
        super::nat_t::write_nat_oa(b, *ty, addrs)?;
    }
    Ok(())
}

/// Initiator, message 1 (HASH(1), SA, Ni [, KE] [, IDci, IDcr] [, NAT-OA]), once its
/// SPIs are known.
fn send_1(x: &mut Exchange, h: Handle, cx: &mut QmCx<'_>) -> Result<(), String> {
    let conn = cx
        .policy
        .connection(x.connection.as_deref().unwrap_or_default())
        .ok_or("connection gone")?;
    let s = cx.sa;
    let suites = qm_suites(&conn.suites, s, cx.backend, true);
    let hd = Header {
        icookie: x.icookie,
        rcookie: x.rcookie,
        major: 1,
        exchange: ExchangeType::QUICK_MODE,
        msgid: x.msgid,
        ..Header::default()
    };
    let hlen = s.hash.output_len();
    // RFC 3947 §5.2: UDP-encapsulated transport carries the original addresses, ours
    // and the responder's as we know them.
    let transport = suites
        .iter()
        .flat_map(|s| s.protocols.iter())
        .flat_map(|p| p.transforms.iter())
        .any(|t| super::nat_t::udp_transport(t.encapsulation));
    let nat_oa = nat_oa(s, transport, [x.local.ip(), x.remote.ip()]);
    let mut buf = vec![0u8; 8192];
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &hd)?;
        b.payload(PayloadType::HASH, |w| w.bytes(&vec![0u8; hlen]))?;
        b.payload(PayloadType::SA, |w| {
            write_offer(w, &suites, &x.qm.offered_spis)
        })?;
        b.payload(PayloadType::NONCE, |w| w.bytes(&x.ni))?;
        if x.qm.pfs.is_some() {
            b.payload(PayloadType::KE, |w| w.bytes(&x.gxi))?;
        }
        write_ids_nat_oa(&mut b, x, &nat_oa)?;
        b.finish()
    })()
    .map_err(|_| "quick mode message 1 too large")?;
    buf.truncate(n);
    let start = HEADER_LEN + 4 + hlen;
    let h1 = derive::qm_hash1(s.hash, s.skeyid_a(), x.msgid, &buf[start..]);
    buf[HEADER_LEN + 4..start].copy_from_slice(h1.as_bytes());
    let clear = buf.clone();
    x.iv = Engine::encrypt(s.cipher, s.ka(), &x.iv, &mut buf)?;
    x.set_qm(QmStep::AwaitReply);
    x.qm.sent1 = Some(cx.now);
    cx.io.send_step(cx.now, (h, x), Some(&clear), buf, true);
    Ok(())
}

/// Responder, message 1: HASH(1) checked, the connection found by the peer and the
/// client IDs, a proposal chosen; the new exchange (SPIs still to come).
fn r1(
    cx: &mut QmCx<'_>,
    sa: Handle,
    (local, remote): (SocketAddr, SocketAddr),
    hd: &Header,
    data: &[u8],
) -> Result<Exchange, Drop> {
    let iv = {
        let s = cx.sa;
        derive::phase2_iv(s.hash, s.last_block(), hd.msgid, s.cipher.block_len())
    };
    let mut clear = Vec::new();
    let next_iv = open_hash1_into(
        cx.sa,
        cx.io,
        &mut clear,
        (&iv, hd.msgid),
        (local, remote),
        data,
    )?;
    let peer_name = &cx.sa.peer;
    let m = Engine::parse(&clear, true)?;
    super::script::check(super::exchange::Kind::Quick, 1, &m)?;
    let Some(Payload::Sa(offer)) = m.find(PayloadType::SA) else {
        return Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no SA payload"));
    };
    let Some(Payload::Nonce(ni)) = m.find(PayloadType::NONCE) else {
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "no NONCE payload",
        ));
    };
    let ke = match m.find(PayloadType::KE) {
        Some(Payload::Ke(k)) => Some(k.to_vec()),
        _ => None,
    };
    let ids: Vec<Vec<u8>> = m
        .payloads
        .iter()
        .filter_map(|p| match p.payload {
            Payload::Id(id) => Some(id.body()),
            _ => None,
        })
        .collect();
    let (idci, idcr) = match ids.len() {
        0 => (None, None),
        2 => (Some(ids[0].clone()), Some(ids[1].clone())),
        _ => {
            return Err(Drop::Notify(
                NotifyType::INVALID_ID_INFORMATION,
                "quick mode needs two client IDs or none",
            ))
        }
    };
    // The connection: same peer, and client IDs equal to its Remote-ID/Local-ID (or
    // the peers' addresses when no IDs were sent).
    let addr_id = |a: SocketAddr| OwnedId::address(a.ip()).body();
    let want_ci = idci.clone().unwrap_or_else(|| addr_id(remote));
    let want_cr = idcr.clone().unwrap_or_else(|| addr_id(local));
    // A client we gave an address by mode-config speaks for it: a connection without
    // a Remote-ID takes it as well as the client's own address.
    let given = cx.sa.cfg_peer_address.map(|a| OwnedId::address(a).body());
    let conn = cx
        .policy
        .connections
        .iter()
        .find(|c| {
            c.peer.eq_ignore_ascii_case(peer_name)
                && c.remote_id.as_ref().map_or_else(
                    || addr_id(remote) == want_ci || given.as_ref() == Some(&want_ci),
                    |i| i.body() == want_ci,
                )
                && c.local_id
                    .as_ref()
                    .map_or_else(|| addr_id(local), |i| i.body())
                    == want_cr
        })
        .ok_or_else(|| {
            super::refused(
                NotifyType::INVALID_ID_INFORMATION,
                "no connection for these client IDs",
                format_args!("peer [{peer_name}]"),
            )
        })?;
    // Proposals: group the payloads by number, take the first a suite accepts.
    let props: Vec<Proposal<'_>> = offer.proposals().collect();
    let mut chosen: Option<(u8, Vec<(Proposal<'_>, Transform<'_>, Matched)>)> = None;
    let mut refused = false;
    let mut i = 0;
    while i < props.len() && chosen.is_none() {
        let num = props[i].number;
        let group: Vec<Proposal<'_>> = props[i..]
            .iter()
            .take_while(|p| p.number == num)
            .copied()
            .collect();
        i += group.len();
        for suite in &qm_suites(&conn.suites, cx.sa, cx.backend, false) {
            if let Some(c) = accept_suite(suite, &group, cx.backend) {
                if !super::policy_attrs::check_policy(
                    cx,
                    &c,
                    (idci.as_deref(), idcr.as_deref()),
                    (local, remote),
                    (false, ke.is_some()),
                ) {
                    refused = true;
                    continue;
                }
                chosen = Some((num, c));
                break;
            }
        }
    }
    let (pnum, chosen) = chosen.ok_or_else(|| {
        if refused {
            return Drop::Notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                super::policy_attrs::POLICY_REFUSED,
            );
        }
        super::refused(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "no proposal chosen",
            format_args!("connection {}", conn.name),
        )
    })?;
    let pfs_group = chosen.iter().find_map(|(_, _, m)| m.group);
    let pfs = match (pfs_group, &ke) {
        (Some(g), Some(k)) => {
            let g = Group::from_ike(g).ok_or(Drop::Notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                "PFS group not supported",
            ))?;
            if k.len() != g.public_len() {
                return Err(Drop::Notify(
                    NotifyType::INVALID_KEY_INFORMATION,
                    "KE length does not match the PFS group",
                ));
            }
            Some(g)
        }
        // The chosen suite has no PFS: the initiator's KE (for another suite) is unused.
        (None, _) => None,
        (Some(_), None) => {
            return Err(Drop::Notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                "PFS suite chosen but no KE payload",
            ))
        }
    };
    let mut x = Exchange::new(Kind::Quick, false, local, remote);
    x.icookie = hd.icookie;
    x.rcookie = hd.rcookie;
    x.msgid = hd.msgid;
    x.sa = Some(sa);
    x.peer = peer_name.clone();
    x.connection = Some(conn.name.clone());
    x.deadline = cx.now.add_secs(cx.policy.exchange_max_time.into());
    x.iv = next_iv;
    x.ni = ni.to_vec();
    x.nr = cx.io.random(NONCE_LEN);
    x.qm.idci = idci.clone();
    x.qm.idcr = idcr.clone();
    x.qm.peer_oa = super::nat_t::nat_oas(&m).first().copied();
    x.qm.local_id = Some(OwnedId {
        ty: super::wire::IdType(want_cr[0]),
        protocol: want_cr[1],
        port: u16::from_be_bytes([want_cr[2], want_cr[3]]),
        data: want_cr[4..].to_vec(),
    });
    x.qm.remote_id = Some(OwnedId {
        ty: super::wire::IdType(want_ci[0]),
        protocol: want_ci[1],
        port: u16::from_be_bytes([want_ci[2], want_ci[3]]),
        data: want_ci[4..].to_vec(),
    });
    x.qm.pfs = pfs;
    if let (Some(g), Some(k)) = (pfs, &ke) {
        let dh = DhPrivate::generate(g, &mut *cx.io.rng)
            .map_err(|_| Drop::Silent("DH key generation failed"))?;
        x.gxi = k.clone();
        x.gxr = dh.public_value().to_vec();
        x.dh = Some(dh);
    }
    let mut reply = Reply {
        pnum,
        doi: offer.doi.0,
        situation: offer.situation,
        ..Reply::default()
    };
    for (p, t, m) in &chosen {
        let c = p2_choice(p, t, m, [0; 4])?;
        let spi_out = c.spi_out;
        x.qm.chosen.push(c);
        reply
            .transforms
            .push((t.number, t.id, t.attributes.raw().to_vec()));
        if m.shortened_from.is_some() {
            reply.shortened.push((p.protocol, spi_out, m.lifetime));
        }
    }
    x.qm.reply = Some(reply);
    x.set_qm(QmStep::Prepare);
    x.last_recv.clear();
    x.last_recv.extend_from_slice(data);
    Ok(x)
}

/// Responder, message 2 (HASH(2), SA, Nr [, RESPONDER-LIFETIME] [, KE] [, IDci, IDcr]
/// [, NAT-OA]), once its SPIs are known: built, and the inbound SAs asked of the kernel;
/// the message waits for them.
fn build_2(x: &mut Exchange, cx: &mut QmCx<'_>) -> Result<Resume, Drop> {
    let s = cx.sa;
    let reply = x.qm.reply.clone().unwrap_or_default();
    let h = Header {
        icookie: x.icookie,
        rcookie: x.rcookie,
        major: 1,
        exchange: ExchangeType::QUICK_MODE,
        msgid: x.msgid,
        ..Header::default()
    };
    let hlen = s.hash.output_len();
    // RFC 3947 §5.2: the responder answers with the initiator's address as it sees it
    // and its own.
    let transport =
        x.qm.chosen
            .iter()
            .any(|c| super::nat_t::udp_transport(c.encapsulation));
    let nat_oa = nat_oa(s, transport, [x.remote.ip(), x.local.ip()]);
    let mut buf = vec![0u8; 8192];
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &h)?;
        b.payload(PayloadType::HASH, |w| w.bytes(&vec![0u8; hlen]))?;
        b.payload(PayloadType::SA, |w| {
            w.u32(reply.doi)?;
            w.u32(reply.situation)?;
            let n = reply.transforms.len();
            for (i, ((tnum, tid, attrs), c)) in
                reply.transforms.iter().zip(&x.qm.chosen).enumerate()
            {
                let ps = w.pos();
                w.u8(if i + 1 < n {
                    PayloadType::PROPOSAL.0
                } else {
                    0
                })?;
                w.u8(0)?;
                w.u16(0)?;
                w.u8(reply.pnum)?;
                w.u8(c.protocol.0)?;
                w.u8(4)?;
                w.u8(1)?;
                w.bytes(&c.spi_in)?;
                w.u8(0)?;
                w.u8(0)?;
                w.u16((8 + attrs.len()) as u16)?;
                w.u8(*tnum)?;
                w.u8(*tid)?;
                w.u16(0)?;
                w.bytes(attrs)?;
                let len = (w.pos() - ps) as u16;
                w.patch_u16(ps + 2, len)?;
            }
            Ok(())
        })?;
        b.payload(PayloadType::NONCE, |w| w.bytes(&x.nr))?;
        for (proto, spi, life) in &reply.shortened {
            // RESPONDER-LIFETIME about the initiator's SPI, with our lifetime.
            b.payload(PayloadType::NOTIFY, |w| {
                w.u32(super::wire::Doi::IPSEC.0)?;
                w.u8(proto.0)?;
                w.u8(4)?;
                w.u16(NotifyType::RESPONDER_LIFETIME.0)?;
                w.bytes(spi)?;
                attr(w, IpsecAttr::SA_LIFE_TYPE.0, LifeType::SECONDS.0.into())?;
                attr(w, IpsecAttr::SA_LIFE_DURATION.0, *life)
            })?;
        }
        if x.dh.is_some() {
            b.payload(PayloadType::KE, |w| w.bytes(&x.gxr))?;
        }
        write_ids_nat_oa(&mut b, x, &nat_oa)?;
        b.finish()
    })()
    .map_err(|_| Drop::Silent("quick mode message 2 too large"))?;
    buf.truncate(n);
    let start = HEADER_LEN + 4 + hlen;
    let h2 = derive::qm_hash2(s.hash, s.skeyid_a(), x.msgid, &x.ni, &buf[start..]);
    buf[HEADER_LEN + 4..start].copy_from_slice(h2.as_bytes());
    let clear = buf.clone();
    x.iv = Engine::encrypt(s.cipher, s.ka(), &x.iv, &mut buf)
        .map_err(|_| Drop::Silent("encryption failed"))?;
    x.set_qm(QmStep::AwaitAck);
    install_inbound(x, s, cx.io, cx.now)?;
    Ok(Resume::SendMessage2 { clear, msg: buf })
}

/// Initiator, message 2: HASH(2) checked, the responder's choice taken; message 3 built
/// (it leaves once the SAs are in the kernel).
fn i2(x: &mut Exchange, cx: &mut QmCx<'_>, data: &[u8]) -> Result<Resume, Drop> {
    let s = cx.sa;
    let msgid = x.msgid;
    let (clear, next_iv, range, got) = open_protected(s, &x.iv, data)?;
    let want = derive::qm_hash2(s.hash, s.skeyid_a(), msgid, &x.ni, &clear[range]);
    if !same(want.as_bytes(), &got) {
        return Err(Drop::Silent("quick mode HASH(2) does not verify"));
    }
    let m = Engine::parse(&clear, true)?;
    super::script::check(super::exchange::Kind::Quick, 2, &m)?;
    let peer_oa = super::nat_t::nat_oas(&m).get(1).copied();
    x.qm.peer_oa = peer_oa;
    let Some(Payload::Sa(sa_p)) = m.find(PayloadType::SA) else {
        return Err(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "no SA payload"));
    };
    let Some(Payload::Nonce(nr)) = m.find(PayloadType::NONCE) else {
        return Err(Drop::Notify(
            NotifyType::PAYLOAD_MALFORMED,
            "no NONCE payload",
        ));
    };
    let responder_lifetimes: Vec<(Vec<u8>, u64)> = m
        .payloads
        .iter()
        .filter_map(|p| match p.payload {
            Payload::Notify(n) if n.ty == NotifyType::RESPONDER_LIFETIME => {
                let attrs = super::wire::Attributes::parse(n.data).ok()?;
                let mut secs = None;
                let mut ty = None;
                for a in attrs.iter() {
                    match IpsecAttr(a.ty) {
                        IpsecAttr::SA_LIFE_TYPE => ty = a.as_u64(),
                        IpsecAttr::SA_LIFE_DURATION if ty == Some(1) => secs = a.as_u64(),
                        _ => {}
                    }
                }
                Some((n.spi.to_vec(), secs?))
            }
            _ => None,
        })
        .collect();
    let ke = match m.find(PayloadType::KE) {
        Some(Payload::Ke(k)) => Some(k.to_vec()),
        _ => None,
    };
    let conn = cx
        .policy
        .connection(x.connection.as_deref().unwrap_or_default())
        .ok_or(Drop::Silent("connection gone"))?;
    let offered = qm_suites(&conn.suites, s, cx.backend, true);
    let props: Vec<Proposal<'_>> = sa_p.proposals().collect();
    let pnum = props
        .first()
        .map(|p| p.number)
        .ok_or(Drop::Notify(NotifyType::BAD_PROPOSAL_SYNTAX, "no proposal"))?;
    if props.iter().any(|p| p.number != pnum) {
        return Err(Drop::Notify(
            NotifyType::BAD_PROPOSAL_SYNTAX,
            "responder chose more than one proposal",
        ));
    }
    let suite = offered
        .get(usize::from(pnum).wrapping_sub(1))
        .ok_or(Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            "responder chose a proposal we did not offer",
        ))?;
    let chosen = accept_suite(suite, &props, cx.backend).ok_or(Drop::Notify(
        NotifyType::NO_PROPOSAL_CHOSEN,
        "responder chose transforms we did not offer",
    ))?;
    // initiator_recv_HASH_SA_NONCE: the responder's choice is put to the policy too.
    let ids = (x.qm.idci.as_deref(), x.qm.idcr.as_deref());
    let how = (true, ke.is_some());
    if !super::policy_attrs::check_policy(cx, &chosen, ids, (x.local, x.remote), how) {
        return Err(Drop::Notify(
            NotifyType::NO_PROPOSAL_CHOSEN,
            super::policy_attrs::POLICY_REFUSED,
        ));
    }
    x.qm.chosen.clear();
    for (p, t, m) in &chosen {
        let spi_in =
            x.qm.offered_spis
                .iter()
                .find(|(n, pr, _)| *n == pnum && *pr == p.protocol)
                .map(|s| s.2)
                .ok_or(Drop::Notify(
                    NotifyType::INVALID_SPI,
                    "no SPI offered for that protocol",
                ))?;
        x.qm.chosen.push(p2_choice(p, t, m, spi_in)?);
    }
    let chosen_group = chosen
        .iter()
        .find_map(|(_, _, m)| m.group)
        .and_then(Group::from_ike);
    match (chosen_group, &ke) {
        (Some(g), Some(_)) if x.qm.pfs == Some(g) => {}
        (None, _) => {
            // A suite without PFS was chosen: our KE goes unused.
            x.qm.pfs = None;
            x.dh = None;
        }
        _ => {
            return Err(Drop::Notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                "PFS KE missing or of another group",
            ))
        }
    }
    let ke = if x.qm.pfs.is_some() { ke } else { None };
    // RFC 2407 §4.6.3.1: the responder may shorten the lifetime it accepted.
    for (spi, life) in &responder_lifetimes {
        for c in x.qm.chosen.iter_mut() {
            if c.spi_in[..] == spi[..] && *life > 0 && (c.lifetime == 0 || *life < c.lifetime) {
                crate::log_info!(
                    "peer shortens the phase 2 lifetime to {life} seconds (RESPONDER-LIFETIME)"
                );
                c.lifetime = *life;
            }
        }
    }
    x.nr = nr.to_vec();
    if let Some(k) = ke {
        x.gxr = k;
    }
    x.iv = next_iv;
    let (local, remote) = (x.local, x.remote);
    cx.io.capture(remote, local, &clear);
    // Message 3.
    let h3 = derive::qm_hash3(s.hash, s.skeyid_a(), msgid, &x.ni, &x.nr);
    let hd = Header {
        icookie: x.icookie,
        rcookie: x.rcookie,
        major: 1,
        exchange: ExchangeType::QUICK_MODE,
        msgid,
        ..Header::default()
    };
    let mut buf = vec![0u8; 256];
    let n = (|| {
        let mut b = MessageBuilder::new(&mut buf, &hd)?;
        b.payload(PayloadType::HASH, |w| w.bytes(h3.as_bytes()))?;
        b.finish()
    })()
    .map_err(|_| Drop::Silent("message 3 too large"))?;
    buf.truncate(n);
    let clear = buf.clone();
    x.iv = Engine::encrypt(s.cipher, s.ka(), &x.iv, &mut buf)
        .map_err(|_| Drop::Silent("encryption failed"))?;
    // Message 2 is in: no more retransmissions of message 1, and a repeat of
    // message 2 while the kernel works is dropped.
    x.set_qm(QmStep::Install);
    x.next_retransmit = None;
    // The SPIs of the proposals the responder did not choose go back.
    let used: Vec<[u8; 4]> = x.qm.chosen.iter().map(|c| c.spi_in).collect();
    let (src, dst) = (x.remote.ip(), x.local.ip());
    let unused: Vec<(ProtocolId, [u8; 4])> =
        x.qm.reserved
            .iter()
            .filter(|(_, s)| !used.contains(s))
            .copied()
            .collect();
    x.qm.reserved.retain(|(_, s)| used.contains(s));
    for (protocol, spi) in unused {
        cx.io.kernel_req(KernelReq::DeleteSpi {
            protocol,
            src,
            dst,
            spi,
        });
    }
    Ok(Resume::SendMessage3 { clear, msg: buf })
}

/// Responder, message 3: HASH(3) checked.
fn r3(x: &mut Exchange, cx: &mut QmCx<'_>, data: &[u8]) -> Result<(), Drop> {
    let s = cx.sa;
    let (clear, next_iv, _, got) = open_protected(s, &x.iv, data)?;
    let want = derive::qm_hash3(s.hash, s.skeyid_a(), x.msgid, &x.ni, &x.nr);
    if !same(want.as_bytes(), &got) {
        return Err(Drop::Silent("quick mode HASH(3) does not verify"));
    }
    x.iv = next_iv;
    x.set_qm(QmStep::Done);
    x.next_retransmit = None;
    x.last_sent.clear(); // nothing to resend for a duplicate of message 3
    cx.io.capture(x.remote, x.local, &clear);
    Ok(())
}

/// One protocol of the agreed proposal: the peer's SPI from its proposal payload `p`,
/// the transform `t` as matched (`m`), and our SPI.
fn p2_choice(
    p: &Proposal<'_>,
    t: &Transform<'_>,
    m: &Matched,
    spi_in: [u8; 4],
) -> Result<P2Choice, Drop> {
    let spi_out: [u8; 4] = p
        .spi
        .try_into()
        .map_err(|_| Drop::Notify(NotifyType::INVALID_SPI, "SPI is not 4 bytes"))?;
    Ok(P2Choice {
        protocol: p.protocol,
        transform: t.id,
        auth: m.auth,
        encapsulation: m.encapsulation,
        key_bits: m.key_bits,
        lifetime: m.lifetime,
        kbytes: m.kbytes,
        spi_in,
        spi_out,
    })
}
