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
        // A response goes back where its (authenticated) request came from (§2.11): the
        // initiator may have moved to port 4500 after IKE_SA_INIT (§2.23). Only a new
        // request moves the SA; a repeated one is answered where it came from.
        if !self.next_in_window(h, hd, (local, remote)) {
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
            // §2.21.3: "all requests having errors MUST result in a response".
            _ => {
                let e = WireError::syntax("an exchange not taken in this state");
                self.answer_error(h, hd, (local, remote), &e)
            }
        }
    }

    /// Whether a request is the next one of the window; a repeated one is answered from
    /// the kept response, others are dropped.
    fn next_in_window(
        &mut self,
        h: Handle,
        hd: &Header,
        (local, remote): (SocketAddr, SocketAddr),
    ) -> bool {
        let Some(sa) = self.sas.get_mut(h) else {
            return false;
        };
        if hd.msgid == sa.peer_msgid {
            return true;
        }
        match &sa.response {
            Some((m, r)) if *m == hd.msgid => {
                self.io.send(local, remote, r);
                self.io.stats.responses_resent += 1;
            }
            _ => self.io.dropped(remote, "request outside the window"),
        }
        false
    }

    /// A request whose protected payloads (authenticated, so the peer's) we cannot take:
    /// the next one in the window is answered in its own exchange (a repeat from the kept answer) with the error alone
    /// (§2.21.2; §2.5: UNSUPPORTED_CRITICAL_PAYLOAD naming the payload type, else
    /// INVALID_SYNTAX), and the answer is kept for a repeat; a request of IKE_AUTH ends
    /// the half-made IKE SA, an established one stays. Anything else is dropped.
    pub(super) fn answer_error(
        &mut self,
        h: Handle,
        hd: &Header,
        from: (SocketAddr, SocketAddr),
        e: &WireError,
    ) {
        if hd.response() {
            return self.io.dropped(from.1, e.reason);
        }
        // Our initiator SA waiting for its IKE_AUTH answer: a request from the peer that
        // is already established (a DPD, a CREATE_CHILD_SA) has overtaken it; dropped, to
        // be taken when it comes again.
        if self
            .sas
            .get(h)
            .is_some_and(|sa| matches!(sa.info.state, IkeState::InitSent | IkeState::AuthSent))
        {
            return self
                .io
                .dropped(from.1, "request before our IKE SA is established");
        }
        if !self.next_in_window(h, hd, from) {
            return;
        }
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        let remote = from.1;
        let data: &[u8] = match &e.payload {
            Some(p) => std::slice::from_ref(&p.0),
            None => &[],
        };
        let m = build_protected(&mut self.io, sa, hd.exchange, hd.msgid, true, |b| {
            b.notify(e.notify, data)
        });
        self.io.limited_log(
            log::Level::Warn,
            format_args!(
                "ikev2: {} {remote}: {} request {}: {e}: answered with {}",
                sa.info.peer, hd.exchange, hd.msgid, e.notify
            ),
        );
        // Back where the request came from (§2.11), kept for a repeat.
        if let Ok(m) = m {
            self.io.send(from.0, from.1, &m);
            sa.response = Some((hd.msgid, m));
        }
        sa.peer_msgid = hd.msgid.wrapping_add(1);
        if sa.info.state == IkeState::HalfOpen {
            self.fail(h, "its IKE_AUTH request was malformed");
        }
    }

    pub(super) fn response(&mut self, now: Time, h: Handle, hd: &Header, inner: &Payloads<'_>) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        let Some(req) = sa
            .request
            .take_if(|r| r.msgid == hd.msgid && r.what.exchange() == hd.exchange)
        else {
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
        // §2.2: "In the unlikely event that Message IDs grow too large to fit in 32 bits,
        // the IKE SA MUST be closed or rekeyed": the last but one ID goes to an IKE SA
        // rekey, and what was asked waits behind it (and moves to the new IKE SA with its
        // CHILD_SAs); the last one is left for the old IKE SA's Delete. Should the rekey
        // fail, the last ID closes the IKE SA.
        if msgid == u32::MAX - 1 && !matches!(what, Req::RekeyIke | Req::DeleteIke) {
            if !sa.queued.contains(&what) {
                sa.queued.insert(0, what);
            }
            return self.start_request(now, h, Req::RekeyIke);
        }
        if msgid == u32::MAX && what != Req::DeleteIke {
            log::warn!(
                "ikev2: {}: message IDs run out: the IKE SA is deleted",
                sa.info.peer
            );
            sa.queued.clear();
            return self.start_request(now, h, Req::DeleteIke);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::SeededRandom;

    const WEST: &str = "192.0.2.1:500";
    const EAST: &str = "192.0.2.2:500";

    /// An engine on WEST or EAST with the fuzzing harness's policy for it (PSK,
    /// AES-GCM, the documentation networks), the engine's default configuration.
    fn engine(me: &str, seed: u64) -> Engine {
        let policy = Policy {
            peers: vec![crate::fuzzing::engine::peer(me == WEST, true)],
        };
        Engine::new(
            Config::default(),
            policy,
            Time(0),
            Box::new(SeededRandom::new(seed)),
        )
    }

    /// What `from` sends (its kernel requests taken and forgotten).
    fn sent(from: &mut Engine) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::new();
        while let Some(t) = from.poll_transmit(&mut buf) {
            out.push(buf[..t.len].to_vec());
        }
        while from.poll_kernel().is_some() {}
        out
    }

    /// West's and east's messages delivered to the other until neither says more.
    fn settle(w: &mut Engine, e: &mut Engine) {
        let (wa, ea) = (WEST.parse().unwrap(), EAST.parse().unwrap());
        for _ in 0..50 {
            let (to_e, to_w) = (sent(w), sent(e));
            if to_e.is_empty() && to_w.is_empty() {
                return;
            }
            to_e.iter()
                .for_each(|m| e.handle_datagram(Time(1), ea, wa, m));
            to_w.iter()
                .for_each(|m| w.handle_datagram(Time(1), wa, ea, m));
        }
        panic!("the pair never went quiet");
    }

    /// West's next request in `exchange`, protected, holding a payload of type 200 (none
    /// we know) with the critical bit set.
    fn critical_request(w: &mut Engine, exchange: ExchangeType) -> (u32, Vec<u8>) {
        let h = w.sas.iter().next().unwrap().0;
        let sa = w.sas.get_mut(h).unwrap();
        let msgid = sa.next_msgid;
        let m = build_protected(&mut w.io, sa, exchange, msgid, false, |b| {
            b.add(PayloadType(200), true, &Payload::Unknown(b"?"))
        })
        .unwrap();
        sa.next_msgid += 1;
        (msgid, m)
    }

    /// East's protected answer, opened with the IKE SA's keys that west holds: its
    /// header and notifies.
    fn opened(w: &Engine, m: &[u8]) -> (Header, Vec<(NotifyType, Vec<u8>)>) {
        let sa = w.sas.iter().next().unwrap().1;
        let sk =
            SkKeys::for_sender(&sa.info.suite.unwrap(), sa.keys.as_ref().unwrap(), false).unwrap();
        let mut m = m.to_vec();
        let o = sk.open(&mut m).unwrap();
        let inner = parse_payloads(o.first, &m[o.plain.clone()]).unwrap();
        let notifies = inner.notifies().map(|n| (n.ty, n.data.to_vec())).collect();
        (Header::parse(&m).unwrap(), notifies)
    }

    #[test]
    fn a_protected_request_with_an_unknown_critical_payload_is_answered_and_the_sa_stays() {
        let (wa, ea) = (WEST.parse().unwrap(), EAST.parse().unwrap());
        let (mut w, mut e) = (engine(WEST, 1), engine(EAST, 2));
        w.connect(Time(0), "peer").unwrap();
        settle(&mut w, &mut e);
        assert_eq!((w.child_sas().count(), e.child_sas().count()), (1, 1));

        let (msgid, m) = critical_request(&mut w, ExchangeType::INFORMATIONAL);
        e.handle_datagram(Time(2), ea, wa, &m);
        let answer = sent(&mut e);
        assert_eq!(answer.len(), 1);
        let (hd, notifies) = opened(&w, &answer[0]);
        assert!(hd.response() && hd.msgid == msgid);
        assert_eq!(hd.exchange, ExchangeType::INFORMATIONAL);
        // §2.5: the notification data is the payload type.
        assert_eq!(
            notifies,
            [(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![200])]
        );
        // A repeat is answered from the kept answer.
        e.handle_datagram(Time(3), ea, wa, &m);
        assert_eq!(sent(&mut e), answer);
        // An exchange type we do not take (IKE_AUTH once established, 43) is answered
        // INVALID_SYNTAX in the same way; the IKE SA stays.
        for x in [ExchangeType::IKE_AUTH, ExchangeType(43)] {
            let h = w.sas.iter().next().unwrap().0;
            let sa = w.sas.get_mut(h).unwrap();
            let msgid = sa.next_msgid;
            let m = build_protected(&mut w.io, sa, x, msgid, false, |_| Ok(())).unwrap();
            sa.next_msgid += 1;
            e.handle_datagram(Time(3), ea, wa, &m);
            let answer = sent(&mut e);
            let (hd, notifies) = opened(&w, &answer[0]);
            assert!(hd.response() && hd.msgid == msgid && hd.exchange == x);
            assert_eq!(notifies, [(NotifyType::INVALID_SYNTAX, vec![])]);
        }
        // The window moved on: west's next request (a Delete of the CHILD_SA) is taken.
        assert_eq!(w.delete_child(Time(4), ChildRef::Peer("peer")), 1);
        settle(&mut w, &mut e);
        assert_eq!((w.child_sas().count(), e.child_sas().count()), (0, 0));
        assert_eq!((w.ike_sas().count(), e.ike_sas().count()), (1, 1));
    }

    #[test]
    fn an_ike_auth_request_with_an_unknown_critical_payload_is_answered_and_ends_the_sa() {
        let (wa, ea) = (WEST.parse().unwrap(), EAST.parse().unwrap());
        let (mut w, mut e) = (engine(WEST, 1), engine(EAST, 2));
        w.connect(Time(0), "peer").unwrap();
        for m in sent(&mut w) {
            e.handle_datagram(Time(1), ea, wa, &m);
        }
        for m in sent(&mut e) {
            w.handle_datagram(Time(1), wa, ea, &m);
        }
        // West's own IKE_AUTH request is not delivered; ours goes in its place.
        assert_eq!(sent(&mut w).len(), 1);
        let h = w.sas.iter().next().unwrap().0;
        w.sas.get_mut(h).unwrap().next_msgid = 1;
        let (msgid, m) = critical_request(&mut w, ExchangeType::IKE_AUTH);
        assert_eq!(msgid, 1);
        e.handle_datagram(Time(2), ea, wa, &m);
        let answer = sent(&mut e);
        assert_eq!(answer.len(), 1);
        let (hd, notifies) = opened(&w, &answer[0]);
        assert!(hd.response() && hd.exchange == ExchangeType::IKE_AUTH);
        assert_eq!(
            notifies,
            [(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![200])]
        );
        assert_eq!(e.ike_sas().count(), 0);
    }

    /// West and east through IKE_SA_INIT; west's IKE_AUTH request delivered to east;
    /// east's answer, not delivered.
    fn to_ike_auth_answer(w: &mut Engine, e: &mut Engine) -> Vec<u8> {
        let (wa, ea) = (WEST.parse().unwrap(), EAST.parse().unwrap());
        w.connect(Time(0), "peer").unwrap();
        for _ in 0..2 {
            for m in sent(w) {
                e.handle_datagram(Time(1), ea, wa, &m);
            }
            let mut answer = sent(e);
            if answer.len() == 1 && w.ike_sas().next().unwrap().1.state == IkeState::AuthSent {
                return answer.remove(0);
            }
            for m in answer {
                w.handle_datagram(Time(1), wa, ea, &m);
            }
        }
        panic!("no IKE_AUTH answer");
    }

    #[test]
    fn an_ike_auth_response_with_an_error_type_we_do_not_know_fails_the_request() {
        // §3.10.1: "MUST assume that the corresponding request has failed entirely".
        let wa = WEST.parse().unwrap();
        let ea = EAST.parse().unwrap();
        let (mut w, mut e) = (engine(WEST, 1), engine(EAST, 2));
        let answer = to_ike_auth_answer(&mut w, &mut e);
        // East's answer as it is, with an error notify of type 8000 added.
        let sa = w.sas.iter().next().unwrap().1;
        let sk =
            SkKeys::for_sender(&sa.info.suite.unwrap(), sa.keys.as_ref().unwrap(), false).unwrap();
        let mut clear = answer.clone();
        let o = sk.open(&mut clear).unwrap();
        let inner = parse_payloads(o.first, &clear[o.plain.clone()]).unwrap();
        let h = e.sas.iter().next().unwrap().0;
        let esa = e.sas.get_mut(h).unwrap();
        let forged = build_protected(&mut e.io, esa, ExchangeType::IKE_AUTH, 1, true, |b| {
            for p in inner.iter() {
                b.add(p.ty, false, &p.payload)?;
            }
            b.notify(NotifyType(8000), &[])
        })
        .unwrap();
        w.handle_datagram(Time(2), wa, ea, &forged);
        assert_eq!((w.ike_sas().count(), w.child_sas().count()), (0, 0));
        // The same answer without it establishes.
        let (mut w, mut e) = (engine(WEST, 1), engine(EAST, 2));
        let answer = to_ike_auth_answer(&mut w, &mut e);
        w.handle_datagram(Time(2), wa, ea, &answer);
        assert_eq!((w.ike_sas().count(), w.child_sas().count()), (1, 1));
    }

    #[test]
    fn a_request_that_overtakes_our_ike_auth_answer_is_dropped_and_the_sa_stays() {
        let (wa, ea) = (WEST.parse().unwrap(), EAST.parse().unwrap());
        let (mut w, mut e) = (engine(WEST, 1), engine(EAST, 2));
        let answer = to_ike_auth_answer(&mut w, &mut e);
        // East is established and asks for a new CHILD_SA before west has its answer.
        assert!(e.create_child(Time(2), "peer"));
        for m in sent(&mut e) {
            w.handle_datagram(Time(2), wa, ea, &m);
        }
        assert!(
            sent(&mut w).is_empty(),
            "no answer while our IKE_AUTH is open"
        );
        assert_eq!(w.ike_sas().count(), 1);
        w.handle_datagram(Time(3), wa, ea, &answer);
        assert_eq!((w.ike_sas().count(), w.child_sas().count()), (1, 1));
    }

    #[test]
    fn a_response_of_another_exchange_does_not_take_the_request_in_flight() {
        let (wa, ea) = (WEST.parse().unwrap(), EAST.parse().unwrap());
        let (mut w, mut e) = (engine(WEST, 1), engine(EAST, 2));
        w.connect(Time(0), "peer").unwrap();
        settle(&mut w, &mut e);
        // West asks for a CHILD_SA; east "answers" its message ID with an INFORMATIONAL.
        assert!(w.create_child(Time(2), "peer"));
        let asked = sent(&mut w);
        let msgid = Header::parse(&asked[0]).unwrap().msgid;
        let h = e.sas.iter().next().unwrap().0;
        let esa = e.sas.get_mut(h).unwrap();
        let odd = build_protected(
            &mut e.io,
            esa,
            ExchangeType::INFORMATIONAL,
            msgid,
            true,
            |_| Ok(()),
        )
        .unwrap();
        w.handle_datagram(Time(3), wa, ea, &odd);
        // The CREATE_CHILD_SA is still awaited: east's real answer makes the CHILD_SA.
        for m in asked {
            e.handle_datagram(Time(4), ea, wa, &m);
        }
        settle(&mut w, &mut e);
        assert_eq!((w.child_sas().count(), e.child_sas().count()), (2, 2));
    }

    #[test]
    fn the_last_message_id_rekeys_the_ike_sa_and_the_request_goes_on_the_new_one() {
        let (mut w, mut e) = (engine(WEST, 1), engine(EAST, 2));
        w.connect(Time(0), "peer").unwrap();
        settle(&mut w, &mut e);
        let old = w.ike_sas().next().unwrap().1.spi_i;
        // West's next request would take message ID 2^32 - 2, the last but one (the
        // peer's own IDs are the peer's to watch): the rekey takes it, and the old IKE
        // SA's Delete the last.
        let h = w.sas.iter().next().unwrap().0;
        w.sas.get_mut(h).unwrap().next_msgid = u32::MAX - 1;
        let hw = e.sas.iter().next().unwrap().0;
        e.sas.get_mut(hw).unwrap().peer_msgid = u32::MAX - 1;
        assert_eq!(w.delete_child(Time(2), ChildRef::Peer("peer")), 1);
        let asked = sent(&mut w);
        let hd = Header::parse(&asked[0]).unwrap();
        assert_eq!(
            (hd.exchange, hd.msgid),
            (ExchangeType::CREATE_CHILD_SA, u32::MAX - 1)
        );
        for m in asked {
            e.handle_datagram(Time(3), EAST.parse().unwrap(), WEST.parse().unwrap(), &m);
        }
        settle(&mut w, &mut e);
        // One IKE SA each, the new one; the Delete went on it: no CHILD_SA left.
        let (_, info) = w.ike_sas().next().unwrap();
        assert_ne!(info.spi_i, old);
        assert_eq!((w.ike_sas().count(), e.ike_sas().count()), (1, 1));
        assert_eq!((w.child_sas().count(), e.child_sas().count()), (0, 0));
    }

    #[test]
    fn an_ike_sa_init_with_an_unknown_critical_payload_or_version_3_gets_a_notify_from_a_peer_only()
    {
        let (wa, ea): (SocketAddr, SocketAddr) = (WEST.parse().unwrap(), EAST.parse().unwrap());
        let mut e = engine(EAST, 2);
        let hdr = Header {
            spi_i: [7; 8],
            exchange: ExchangeType::IKE_SA_INIT,
            flags: FLAG_INITIATOR,
            ..Header::default()
        };
        let mut buf = [0u8; 256];
        let mut b = MessageBuilder::new(&mut buf, &hdr).unwrap();
        b.add(PayloadType(200), true, &Payload::Unknown(b"?"))
            .unwrap();
        let len = b.finish().unwrap();
        e.handle_datagram(Time(1), ea, wa, &buf[..len]);
        let answer = sent(&mut e);
        assert_eq!(answer.len(), 1);
        let m = Message::parse(&answer[0]).unwrap();
        assert!(m.header.response() && m.header.spi_i == [7; 8] && m.header.spi_r == [0; 8]);
        let n = m
            .payloads
            .notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
            .unwrap();
        assert_eq!(n.data, [200]);
        assert_eq!(e.ike_sas().count(), 0);
        // Not to an address that is no peer of ours.
        let stranger = "198.18.0.1:500".parse().unwrap();
        e.handle_datagram(Time(2), ea, stranger, &buf[..len]);
        assert!(sent(&mut e).is_empty());

        // A higher major version (3.0) is INVALID_MAJOR_VERSION, our header naming 2.0.
        let mut b = MessageBuilder::new(&mut buf, &hdr).unwrap();
        b.notify(NotifyType::COOKIE, &[1; 8]).unwrap();
        let len = b.finish().unwrap();
        buf[17] = 0x30;
        e.handle_datagram(Time(3), ea, wa, &buf[..len]);
        let answer = sent(&mut e);
        assert_eq!(answer.len(), 1);
        let m = Message::parse(&answer[0]).unwrap();
        assert_eq!((m.header.major, m.header.minor), (2, 0));
        assert!(m.header.response() && m.header.spi_i == [7; 8]);
        assert!(m
            .payloads
            .notify(NotifyType::INVALID_MAJOR_VERSION)
            .is_some());
        e.handle_datagram(Time(4), ea, stranger, &buf[..len]);
        assert!(sent(&mut e).is_empty());
        assert_eq!(e.ike_sas().count(), 0);
    }
}
