//! The message ID window of an IKE SA (RFC 7296 §2.1-§2.3, window 1): our requests go
//! one at a time, the rest wait in order; a request is answered once and its answer kept
//! for a repeated request; a response is matched to the request in flight.

use super::*;

impl Engine {
    /// A request on an SA: check the window, answer a repeat from the kept response.
    pub(super) fn request(
        &mut self,
        now: Time,
        h: Handle,
        hd: &Header,
        inner: &Payloads<'_>,
        (local, remote): (SocketAddr, SocketAddr),
    ) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        // A response goes back where its (authenticated) request came from (§2.11): the
        // initiator may have moved to port 4500 after IKE_SA_INIT (§2.23). Only a new
        // request moves the SA; a repeated one is answered where it came from.
        if hd.msgid != sa.peer_msgid {
            match &sa.response {
                Some((m, r)) if *m == hd.msgid => {
                    self.io.send(local, remote, r);
                    self.io.stats.responses_resent += 1;
                }
                _ => self.io.dropped(remote, "request outside the window"),
            }
            return;
        }
        self.follow_peer(h, (local, remote), inner);
        let Some(sa) = self.sas.get(h) else {
            return;
        };
        match (sa.info.state, hd.exchange) {
            (IkeState::HalfOpen, ExchangeType::IKE_AUTH) => self.auth_request(now, h, hd, inner),
            (IkeState::Established, ExchangeType::INFORMATIONAL) => {
                self.informational(now, h, hd, inner)
            }
            (IkeState::Established, ExchangeType::CREATE_CHILD_SA) => {
                let ike = match inner.find(PayloadType::SA) {
                    Some(Payload::Sa(o)) => o.proposals().any(|p| p.protocol == ProtocolId::IKE),
                    _ => false,
                };
                if ike {
                    self.rekey_ike_request(now, h, hd, inner)
                } else {
                    self.create_child_request(now, h, hd, inner)
                }
            }
            _ => self.io.dropped(remote, "request not handled in this state"),
        }
    }

    pub(super) fn response(&mut self, now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        let Some(req) = sa.request.take_if(|r| r.msgid == hd.msgid) else {
            return self
                .io
                .dropped(sa.info.remote, "response to no request of ours");
        };
        self.io.arm(h, sa);
        match (req.what, hd.exchange) {
            (Req::Auth, ExchangeType::IKE_AUTH) if sa.info.state == IkeState::AuthSent => {
                self.auth_response(now, h, inner)
            }
            (Req::DeleteChild(spis), ExchangeType::INFORMATIONAL) => {
                // Ours go now; the peer's Delete names its halves of the same pairs
                // (§1.4.1), or nothing for those it had deleted itself.
                let gone = self.remove_children(|c| c.ike == h && spis.contains(&c.spi_in));
                log::info!(
                    "ikev2: {}: {gone} CHILD_SA(s) deleted",
                    self.sas.get(h).map_or("?", |sa| sa.info.peer.as_str())
                );
            }
            (Req::DeleteIke, ExchangeType::INFORMATIONAL) => {
                return self.delete(h, "deleted by us");
            }
            (Req::Liveness, ExchangeType::INFORMATIONAL) => {}
            (Req::UpdateAddresses, ExchangeType::INFORMATIONAL) => self.addresses_updated(h, inner),
            (Req::CreateChild(_), ExchangeType::CREATE_CHILD_SA) => {
                self.create_child_response(now, h, inner)
            }
            (Req::RekeyIke, ExchangeType::CREATE_CHILD_SA) => {
                return self.rekey_ike_response(now, h, inner);
            }
            (_, x) => {
                let remote = sa.info.remote;
                return self.io.dropped(remote, &format!("unexpected {x} response"));
            }
        }
        self.next_request(now, h);
    }

    /// Sends a request of ours on an established SA, or queues it behind the one in
    /// flight.
    pub(super) fn start_request(&mut self, now: Time, h: Handle, what: Req) {
        let busy = self
            .waits
            .iter()
            .any(|w| w.ike == h && w.step.holds_window());
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.request.is_some() || busy {
            if !sa.queued.contains(&what) {
                sa.queued.push(what);
            }
            return;
        }
        let msgid = sa.next_msgid;
        if what == Req::RekeyIke {
            let Engine {
                sas,
                io,
                policy,
                config,
                ..
            } = self;
            let Some(sa) = sas.get_mut(h) else { return };
            let peer = &policy.peers[sa.peer];
            let m = new_ike_rekey(io, peer).and_then(|r| {
                let m = build_rekey_ike(io, sa, peer, msgid, &r)?;
                sa.rekeying = Some(r);
                Ok(m)
            });
            match m {
                Ok(m) => {
                    io.request(now, config, h, sa, (msgid, m), what);
                    sa.next_msgid = msgid.wrapping_add(1);
                }
                Err(Fail(why)) => log::error!("ikev2: {}: IKE SA rekey: {why}", peer.name),
            }
            return;
        }
        if let Req::CreateChild(old) = what {
            let Engine {
                sas,
                io,
                policy,
                children,
                config,
                ..
            } = self;
            let Some(sa) = sas.get_mut(h) else { return };
            let peer = &policy.peers[sa.peer];
            let ts = match old {
                Some(spi) => children
                    .iter()
                    .find(|(_, c)| c.ike == h && c.spi_in == spi && !c.rekeyed)
                    .map(|(_, c)| (c.ts_local.clone(), c.ts_remote.clone())),
                None => Some((peer.local_ts.clone(), peer.remote_ts.clone())),
            };
            let Some((ts_local, ts_remote)) = ts else {
                log::info!("ikev2: {}: no CHILD_SA to rekey", peer.name);
                // Nothing went out: what is queued behind it goes on.
                return self.next_request(now, h);
            };
            let c = match new_creating(io, peer, old, ts_local, ts_remote) {
                Ok(c) if io.kernel_answers => {
                    // Our inbound SPI first; the request goes when it comes.
                    sa.creating = Some(c);
                    return self.wait_spi(h, Step::CreateSpi);
                }
                c => c,
            };
            let m = c.and_then(|c| {
                let m = build_create_child(io, sa, peer, msgid, &c)?;
                sa.creating = Some(c);
                Ok(m)
            });
            match m {
                Ok(m) => {
                    io.request(now, config, h, sa, (msgid, m), what);
                    sa.next_msgid = msgid.wrapping_add(1);
                }
                Err(Fail(why)) => log::error!("ikev2: {}: CREATE_CHILD_SA: {why}", peer.name),
            }
            return;
        }
        let mut spis = Vec::new();
        let update = match what {
            Req::UpdateAddresses => update_request(sa),
            _ => Vec::new(),
        };
        let m = build_protected(
            &mut self.io,
            sa,
            ExchangeType::INFORMATIONAL,
            msgid,
            false,
            |b| match &what {
                Req::DeleteChild(s) => {
                    spis.extend(s.iter().flat_map(|s| s.to_be_bytes()));
                    let d = DeletePayload::new(ProtocolId::ESP, 4, &spis);
                    b.add(PayloadType::DELETE, false, &Payload::Delete(d))
                }
                Req::DeleteIke => {
                    let d = DeletePayload::new(ProtocolId::IKE, 0, &[]);
                    b.add(PayloadType::DELETE, false, &Payload::Delete(d))
                }
                Req::UpdateAddresses => {
                    update.iter().try_for_each(|(ty, data)| b.notify(*ty, data))
                }
                Req::Init | Req::Auth | Req::Liveness | Req::CreateChild(_) | Req::RekeyIke => {
                    Ok(())
                }
            },
        );
        match m {
            Ok(m) => {
                self.io.request(now, &self.config, h, sa, (msgid, m), what);
                sa.next_msgid = msgid.wrapping_add(1);
            }
            Err(Fail(why)) => log::error!("ikev2: {}: INFORMATIONAL: {why}", sa.info.peer),
        }
    }

    /// The next queued request, once the one in flight is answered.
    pub(super) fn next_request(&mut self, now: Time, h: Handle) {
        let busy = self
            .waits
            .iter()
            .any(|w| w.ike == h && w.step.holds_window());
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.request.is_none() && !busy && !sa.queued.is_empty() {
            let what = sa.queued.remove(0);
            self.start_request(now, h, what);
        }
    }
}
