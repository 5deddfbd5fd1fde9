#![forbid(unsafe_code)]

//! IKE_AUTH (RFC 7296 §1.2, §2.15): IDs and the shared-key AUTH both ways, and the
//! first CHILD_SA.

use super::*;

impl Engine {
    /// Responder: IKE_AUTH (§1.2, §2.15).
    pub(super) fn auth_request(&mut self, now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        match self.auth_request_inner(now, h, hd, inner) {
            Ok(Some(c)) => self.add_child(c),
            Ok(None) => {}
            Err(why) => self.fail(h, why),
        }
    }

    pub(super) fn auth_request_inner(
        &mut self,
        _now: Time,
        h: Handle,
        hd: &Header,
        inner: &Payloads<'_>,
    ) -> Result<Option<ChildSa>, &'static str> {
        let Engine {
            sas,
            io,
            policy,
            half_open,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Ok(None);
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        let msgid = hd.msgid;
        sa.peer_msgid = msgid.wrapping_add(1);
        if let Err(why) = check_auth(sa, peer, inner, PayloadType::IDI) {
            log::warn!("ikev2: {} {remote}: IKE_AUTH: {why}", peer.name);
            let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
                b.notify(NotifyType::AUTHENTICATION_FAILED, &[])
            });
            if let Ok(m) = m {
                io.respond(sa, msgid, m);
            }
            return Err("authentication failed");
        }
        // The CHILD_SA: an ESP suite and the selectors both sides allow.
        let child = choose_child(io, peer, inner, false);
        let idr = peer.local_id.body();
        let auth = own_auth(sa, peer, &idr);
        let m = build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, true, |b| {
            b.payload(PayloadType::IDR, |w| w.bytes(&idr))?;
            b.add(
                PayloadType::AUTH,
                false,
                &Payload::Auth(AuthPayload {
                    method: AuthMethod::SHARED_KEY_MIC,
                    data: auth.as_bytes(),
                }),
            )?;
            match &child {
                Ok(c) => {
                    let t = c.esp.transforms();
                    b.sa(&[ProposalRepr {
                        number: c.number,
                        protocol: ProtocolId::ESP,
                        spi: &c.spi_in.to_be_bytes(),
                        transforms: &t,
                    }])?;
                    ts_payload(b, PayloadType::TSI, &c.tsi)?;
                    ts_payload(b, PayloadType::TSR, &c.tsr)
                }
                Err(n) => b.notify(*n, &[]),
            }
        })
        .map_err(|Fail(why)| why)?;
        io.respond(sa, msgid, m);
        sa.info.state = IkeState::Established;
        sa.expires = None;
        *half_open = half_open.saturating_sub(1);
        io.arm(h, sa);
        io.stats.ike_sas_established += 1;
        log::info!(
            "ikev2: {} {remote}: IKE SA {}/{} established (responder)",
            peer.name,
            hex(&sa.info.spi_i),
            hex(&sa.info.spi_r)
        );
        match child {
            // TSi is the initiator's side, our remote one.
            Ok(c) => Ok(Some(child_sa(
                sa, h, &c.esp, c.spi_in, c.spi_out, c.tsr, c.tsi,
            ))),
            Err(n) => {
                log::warn!("ikev2: {} {remote}: no CHILD_SA: {n}", peer.name);
                Ok(None)
            }
        }
    }

    /// Initiator: the IKE_AUTH response.
    pub(super) fn auth_response(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) {
        match self.auth_response_inner(now, h, inner) {
            Ok(Some(c)) => self.add_child(c),
            Ok(None) => {}
            Err(why) => self.fail(h, why),
        }
    }

    pub(super) fn auth_response_inner(
        &mut self,
        _now: Time,
        h: Handle,
        inner: &Payloads<'_>,
    ) -> Result<Option<ChildSa>, &'static str> {
        let Engine {
            sas, io, policy, ..
        } = self;
        let Some(sa) = sas.get_mut(h) else {
            return Ok(None);
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        if inner.notify(NotifyType::AUTHENTICATION_FAILED).is_some() {
            log::warn!("ikev2: {} {remote}: the peer refused our AUTH", peer.name);
            return Err("AUTHENTICATION_FAILED from the peer");
        }
        if let Err(why) = check_auth(sa, peer, inner, PayloadType::IDR) {
            log::warn!("ikev2: {} {remote}: IKE_AUTH response: {why}", peer.name);
            // §2.21.2: tell the responder in an INFORMATIONAL of its own; we do not wait.
            let msgid = sa.next_msgid;
            let m = build_protected(io, sa, ExchangeType::INFORMATIONAL, msgid, false, |b| {
                b.notify(NotifyType::AUTHENTICATION_FAILED, &[])
            });
            if let Ok(m) = m {
                io.send(sa.info.local, remote, &m);
            }
            return Err("authentication failed");
        }
        sa.info.state = IkeState::Established;
        io.stats.ike_sas_established += 1;
        log::info!(
            "ikev2: {} {remote}: IKE SA {}/{} established (initiator)",
            peer.name,
            hex(&sa.info.spi_i),
            hex(&sa.info.spi_r)
        );
        match accept_child(peer, inner, false) {
            Ok((esp, spi_out, tsi, tsr)) => {
                Ok(Some(child_sa(sa, h, &esp, sa.child_spi, spi_out, tsi, tsr)))
            }
            // XXX: a CHILD_SA we cannot accept should be deleted with an INFORMATIONAL.
            Err(why) => {
                log::warn!("ikev2: {} {remote}: no CHILD_SA: {why}", peer.name);
                Ok(None)
            }
        }
    }
}

/// Our AUTH (§2.15): over our IKE_SA_INIT message, the peer's nonce and prf(SK_px, our
/// ID payload body).
pub(super) fn own_auth(sa: &IkeSa, peer: &Peer, id_body: &[u8]) -> Key {
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Key::new();
    };
    let (msg, nonce, skp) = if sa.info.initiator {
        (&sa.init_i, &sa.nr, &keys.pi)
    } else {
        (&sa.init_r, &sa.ni, &keys.pr)
    };
    let o = SignedOctets::new(suite.prf, msg, nonce, skp.as_bytes(), id_body);
    psk_auth(suite.prf, &peer.psk, &o)
}

/// Checks the peer's ID payload (`id_ty`, IDi or IDr) against the policy and its AUTH.
pub(super) fn check_auth(
    sa: &IkeSa,
    peer: &Peer,
    inner: &Payloads<'_>,
    id_ty: PayloadType,
) -> Result<(), &'static str> {
    let (Some(keys), Some(suite)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err("no keys");
    };
    let Some((id, body)) = inner.iter().find_map(|e| match e.payload {
        Payload::Id(id) if e.ty == id_ty => Some((id, e.body)),
        _ => None,
    }) else {
        return Err("no ID payload");
    };
    let Some(Payload::Auth(auth)) = inner.find(PayloadType::AUTH) else {
        return Err("no AUTH payload");
    };
    if auth.method != AuthMethod::SHARED_KEY_MIC {
        return Err("AUTH method is not a shared key");
    }
    if let Some(want) = &peer.remote_id {
        if id.ty != want.ty || *id.data != want.data[..] {
            return Err("peer identity does not match the policy");
        }
    }
    // The peer's octets: its IKE_SA_INIT message, our nonce, its SK_px.
    let (msg, nonce, skp) = if sa.info.initiator {
        (&sa.init_r, &sa.ni, &keys.pr)
    } else {
        (&sa.init_i, &sa.nr, &keys.pi)
    };
    let o = SignedOctets::new(suite.prf, msg, nonce, skp.as_bytes(), body);
    verify_psk_auth(suite.prf, &peer.psk, &o, auth.data).map_err(|_| "AUTH does not verify")
}

/// Initiator: IKE_AUTH (§1.2): IDi, AUTH, SA (ESP, our SPI), TSi, TSr.
pub(super) fn build_auth_request(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
) -> Result<Vec<u8>, Fail> {
    let idi = peer.local_id.body();
    let auth = own_auth(sa, peer, &idi);
    let spi = sa.child_spi.to_be_bytes();
    let trs: Vec<_> = peer.esp.iter().map(|p| p.transforms()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::ESP,
            spi: &spi,
            transforms: t,
        })
        .collect();
    let msgid = sa.next_msgid;
    build_protected(io, sa, ExchangeType::IKE_AUTH, msgid, false, |b| {
        b.payload(PayloadType::IDI, |w| w.bytes(&idi))?;
        b.add(
            PayloadType::AUTH,
            false,
            &Payload::Auth(AuthPayload {
                method: AuthMethod::SHARED_KEY_MIC,
                data: auth.as_bytes(),
            }),
        )?;
        b.sa(&props)?;
        ts_payload(b, PayloadType::TSI, &peer.local_ts)?;
        ts_payload(b, PayloadType::TSR, &peer.remote_ts)
    })
}
