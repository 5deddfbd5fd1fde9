//! IKE SA rekey (RFC 7296 §1.3.2, §2.18): CREATE_CHILD_SA with our IKE suites under a
//! new SPI, Ni and KEi; SKEYSEED from the old SK_d; the CHILD_SAs move to the new IKE SA
//! and the rekey's initiator deletes the old one.

use super::*;

impl Engine {
    /// Rekeys IKE SAs (§1.3.2, §2.18): a CREATE_CHILD_SA with our IKE suites, a new
    /// SPI, Ni and KEi for the first suite's group; on the answer the new IKE SA takes
    /// over the CHILD_SAs and the old one is deleted with an INFORMATIONAL. Returns how
    /// many rekeys were started or queued.
    pub fn rekey_ike(&mut self, now: Time, which: IkeRef<'_>) -> usize {
        let picked: Vec<Handle> = self
            .sas
            .iter()
            .filter(|(h, sa)| match which {
                IkeRef::Peer(p) => sa.info.peer == p,
                IkeRef::Handle(x) => *h == x,
            })
            .filter(|(_, sa)| sa.info.state == IkeState::Established && !sa.replaced)
            .map(|(h, _)| h)
            .collect();
        for &h in &picked {
            self.start_request(now, h, Req::RekeyIke);
        }
        picked.len()
    }

    /// Responder: an IKE SA rekey (§1.3.2): the first offered suite we have, a KEi for
    /// its group (INVALID_KE_PAYLOAD otherwise), SKEYSEED from the old SK_d (§2.18); the
    /// new IKE SA (the peer its initiator) takes the CHILD_SAs; the old one stays until
    /// the peer deletes it.
    pub(super) fn rekey_ike_request(
        &mut self,
        now: Time,
        h: Handle,
        hd: &Header,
        inner: &Payloads<'_>,
    ) {
        // §2.25.2: not while a CHILD_SA exchange of ours is under way on it, nor once it
        // is replaced or being deleted (collide.rs).
        if let Some(why) = self.ike_rekey_collides(h) {
            return self.refuse_for_now(h, hd.msgid, "IKE SA rekey", why);
        }
        let Engine {
            sas, io, policy, ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        sa.peer_msgid = hd.msgid.wrapping_add(1);
        let peer = &policy.peers[sa.peer];
        let mut notify: (NotifyType, Vec<u8>) = (NotifyType::INVALID_SYNTAX, Vec::new());
        let mut made = None;
        let res = (|| -> Result<Vec<u8>, Fail> {
            let Some(Payload::Sa(offer)) = inner.find(PayloadType::SA) else {
                return Err(Fail("no SA"));
            };
            let Some((chosen, number, spi_i)) = offer.proposals().find_map(|p| {
                let o = peer
                    .ike
                    .iter()
                    .find(|o| o.offered_in_rekey(&p) && o.suite().is_ok())?;
                let spi: [u8; 8] = p.spi.try_into().ok()?;
                (spi != [0; 8]).then_some((*o, p.number, spi))
            }) else {
                notify.0 = NotifyType::NO_PROPOSAL_CHOSEN;
                return Err(Fail("no IKE proposal chosen"));
            };
            let ke = match inner.find(PayloadType::KE) {
                Some(Payload::Ke(ke)) if ke.group == chosen.dh => ke,
                _ => {
                    notify = (
                        NotifyType::INVALID_KE_PAYLOAD,
                        chosen.dh.0.to_be_bytes().to_vec(),
                    );
                    return Err(Fail("KEi missing or for another group"));
                }
            };
            let Some(Payload::Nonce(ni)) = inner.find(PayloadType::NONCE) else {
                return Err(Fail("no Ni"));
            };
            let dh = new_dh(io, chosen.dh)?;
            let gir = dh
                .shared_secret(ke.data)
                .map_err(|_| Fail("invalid KE public value"))?;
            let spi_r = io.spi();
            let nr = io.random::<NONCE_LEN>().to_vec();
            let new = rekeyed_sa(sa, &chosen, gir.as_bytes(), (spi_i, spi_r), ni, &nr, false)?;
            let t = chosen.transforms();
            let m = build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, hd.msgid, true, |b| {
                b.sa(&[ProposalRepr {
                    number,
                    protocol: ProtocolId::IKE,
                    spi: &spi_r,
                    transforms: &t,
                }])?;
                b.add(PayloadType::NONCE, false, &Payload::Nonce(&nr))?;
                b.add(
                    PayloadType::KE,
                    false,
                    &Payload::Ke(KePayload {
                        group: chosen.dh,
                        data: dh.public_value(),
                    }),
                )
            })?;
            made = Some(new);
            Ok(m)
        })();
        let m = match res {
            Ok(m) => m,
            Err(Fail(why)) => {
                match refusal(io, sa, &peer.name, hd.msgid, "IKE SA rekey", why, notify) {
                    Some(m) => m,
                    None => return,
                }
            }
        };
        io.respond(sa, hd.msgid, m);
        let Some(new) = made else { return };
        // §2.8.2: both ends rekeyed this IKE SA at once. Of the two new IKE SAs, the one
        // whose exchange has the lowest of the four nonces is redundant and is deleted
        // by the end that made it; the other takes the CHILD_SAs, and its initiator
        // deletes the old one. (A crossing seen only after our rekey finished was
        // refused above: our Delete of the old IKE SA is on its way.)
        let low = new.ni.as_slice().min(new.nr.as_slice()).to_vec();
        if sa.rekeying.is_some() {
            // Decided when our answer comes.
            if let Some(b) = self.adopt(now, new) {
                if let Some(sa) = self.sas.get_mut(h) {
                    sa.crossed_ike = Some((b, low));
                }
            }
        } else {
            self.take_over(now, h, new);
        }
    }

    /// Initiator: the answer to our IKE SA rekey; the new IKE SA takes the CHILD_SAs and
    /// the old one is deleted.
    pub(super) fn rekey_ike_response(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) {
        let Engine { sas, policy, .. } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        let Some(r) = sa.rekeying.take() else { return };
        let peer = &policy.peers[sa.peer];
        let (deleted, later) = (
            sa.deleted_by_peer,
            inner.notify(NotifyType::TEMPORARY_FAILURE).is_some(),
        );
        let res = (|| -> Result<IkeSa, &'static str> {
            if let Some(n) = inner.notifies().find(|n| n.ty.is_error()) {
                log::warn!("ikev2: {}: IKE SA rekey refused: {}", peer.name, n.ty);
                return Err("refused");
            }
            let Some(Payload::Sa(answer)) = inner.find(PayloadType::SA) else {
                return Err("no SA payload");
            };
            let mut props = answer.proposals();
            let (Some(p), None) = (props.next(), props.next()) else {
                return Err("not one proposal");
            };
            let chosen = peer
                .ike
                .iter()
                .find(|o| o.is_rekey(&p))
                .copied()
                .ok_or("a proposal we did not offer")?;
            let spi_r: [u8; 8] = p.spi.try_into().map_err(|_| "bad SPI")?;
            if spi_r == [0; 8] {
                return Err("zero SPI");
            }
            let (Some(Payload::Nonce(nr)), Some(Payload::Ke(ke))) =
                (inner.find(PayloadType::NONCE), inner.find(PayloadType::KE))
            else {
                return Err("no Nr or KEr");
            };
            if ke.group != chosen.dh || r.dh.group().number() != chosen.dh.0 {
                return Err("KEr for another group than our KEi");
            }
            let gir =
                r.dh.shared_secret(ke.data)
                    .map_err(|_| "invalid KE public value")?;
            rekeyed_sa(sa, &chosen, gir.as_bytes(), (r.spi, spi_r), &r.ni, nr, true)
                .map_err(|Fail(why)| why)
        })();
        if deleted {
            return self.rekeyed_after_delete(now, h, res.ok());
        }
        let crossed = self.sas.get_mut(h).and_then(|sa| sa.crossed_ike.take());
        match res {
            Ok(new) => {
                let low = new.ni.as_slice().min(new.nr.as_slice()).to_vec();
                let Some(a) = self.adopt(now, new) else {
                    return;
                };
                match crossed {
                    // §2.8.2, ours redundant: the peer's takes the CHILD_SAs and deletes
                    // the old IKE SA; we delete ours.
                    Some((b, b_low)) if low < b_low => {
                        log::info!(
                            "ikev2: {}: simultaneous IKE SA rekey: ours is redundant",
                            peer_name(self, h)
                        );
                        self.hand_over(now, h, b);
                        self.start_request(now, a, Req::DeleteIke);
                    }
                    // Ours survives (the peer deletes its redundant one, if any).
                    _ => {
                        self.hand_over(now, h, a);
                        self.start_request(now, h, Req::DeleteIke);
                    }
                }
            }
            // XXX: an answer we cannot take should get its IKE SA deleted.
            Err(why) => {
                log::warn!("ikev2: {}: IKE SA rekey: {why}", peer.name);
                // The peer's crossing rekey, if any, is the one left.
                if let Some((b, _)) = crossed {
                    self.hand_over(now, h, b);
                } else if later {
                    self.retry_ike_rekey(now, h);
                }
                self.next_request(now, h);
            }
        }
    }

    /// The new IKE SA of a rekey goes in the table and takes the old one's CHILD_SAs.
    pub(super) fn take_over(&mut self, now: Time, old: Handle, new: IkeSa) {
        if let Some(nh) = self.adopt(now, new) {
            self.hand_over(now, old, nh);
        }
    }

    /// The new IKE SA of a rekey goes in the table, its lifetime counting from now.
    pub(super) fn adopt(&mut self, now: Time, mut new: IkeSa) -> Option<Handle> {
        let p = new.peer;
        ike_lifetime_starts(&mut self.io, &mut new, &self.policy.peers[p], now);
        self.io.keepalive_starts(&mut new, now);
        let name = new.info.peer.clone();
        let nh = self.sas.insert(new);
        if nh.is_none() {
            log::error!("ikev2: {name}: IKE SA table full; rekey dropped");
        }
        nh
    }

    /// IKE SA `nh` takes IKE SA `old`'s CHILD_SAs; `old` is replaced.
    pub(super) fn hand_over(&mut self, now: Time, old: Handle, nh: Handle) {
        let Some((spi_i, spi_r, name)) = self
            .sas
            .get(nh)
            .map(|n| (n.info.spi_i, n.info.spi_r, n.info.peer.clone()))
        else {
            return;
        };
        let moving: Vec<Handle> = self
            .children
            .iter()
            .filter(|(_, c)| c.ike == old)
            .map(|(ch, _)| ch)
            .collect();
        for ch in moving {
            if let Some(c) = self.children.get_mut(ch) {
                c.ike = nh;
            }
        }
        // CHILD_SAs the kernel is installing for our exchanges go along. XXX: one the
        // peer asked for on the old IKE SA is answered there and stays with it.
        for w in self.waits.iter_mut().filter(|w| w.ike == old) {
            if let Step::Install { child, .. } = &mut w.step {
                child.ike = nh;
                w.ike = nh;
            }
        }
        // The old one is done: not rekeyed again, gone when deleted (or at its expiry).
        if let Some(sa) = self.sas.get_mut(old) {
            sa.replaced = true;
            sa.keepalive_at = None;
            sa.info.rekey_at = None;
        }
        self.rearm(old);
        self.rearm(nh);
        self.io.stats.ike_sas_rekeyed += 1;
        log::info!(
            "ikev2: {name}: IKE SA rekeyed, new SPIs {}/{}",
            hex(&spi_i),
            hex(&spi_r)
        );
        self.heard_from(now, nh);
        // CREATE_CHILD_SAs and CHILD_SA Deletes of ours queued on the old IKE SA (a
        // lifetime's rekey that came during this one, or requests behind the last message
        // ID) go on the new one, where their CHILD_SAs are now.
        let moving: Vec<Req> = match self.sas.get_mut(old) {
            Some(sa) => {
                let (c, rest) = std::mem::take(&mut sa.queued)
                    .into_iter()
                    .partition(|r| matches!(r, Req::CreateChild(_) | Req::DeleteChild(_)));
                sa.queued = rest;
                c
            }
            None => Vec::new(),
        };
        for r in moving {
            self.start_request(now, nh, r);
        }
    }
}

/// The name of IKE SA `h`'s peer, for logs.
fn peer_name(e: &Engine, h: Handle) -> String {
    e.sas
        .get(h)
        .map_or_else(String::new, |sa| sa.info.peer.clone())
}

/// The IKE SA that replaces `old` after a rekey (§1.3.2, §2.18): SKEYSEED =
/// prf(SK_d (old), g^ir (new) | Ni | Nr), then the seven keys with the new SPIs; the
/// rekey's initiator is the new SA's; message IDs start over.
pub(super) fn rekeyed_sa(
    old: &IkeSa,
    chosen: &IkeProposal,
    gir: &[u8],
    (spi_i, spi_r): ([u8; 8], [u8; 8]),
    ni: &[u8],
    nr: &[u8],
    initiator: bool,
) -> Result<IkeSa, Fail> {
    let (Some(k), Some(s)) = (old.keys.as_ref(), old.info.suite) else {
        return Err(Fail("no keys"));
    };
    let suite = chosen.suite()?;
    let seed = rekey_skeyseed(s.prf, k.d.as_bytes(), gir, ni, nr)?;
    let keys = IkeKeys::derive(&suite, seed.as_bytes(), ni, nr, &spi_i, &spi_r)?;
    Ok(IkeSa {
        keys: Some(keys),
        ni: ni.to_vec(),
        nr: nr.to_vec(),
        // What IKE_SA_INIT negotiated holds for the new IKE SA (RFC 7383 §2.3).
        frag: old.frag,
        peer_hashes: old.peer_hashes,
        mob: old.mob.inherited(),
        ..IkeSa::new(
            IkeSaInfo {
                initiator,
                spi_i,
                spi_r,
                suite: Some(suite),
                ..old.info.clone()
            },
            old.peer,
        )
    })
}

/// Initiator: the state of an IKE SA rekey: our new SPI, Ni, a DH value for the first
/// suite's group.
pub(super) fn new_ike_rekey(io: &mut Io, peer: &Peer) -> Result<IkeRekey, Fail> {
    let first = peer.ike.first().ok_or(Fail("no IKE proposal"))?;
    Ok(IkeRekey {
        spi: io.spi(),
        ni: io.random::<NONCE_LEN>().to_vec(),
        dh: new_dh(io, first.dh)?,
    })
}

/// Initiator: CREATE_CHILD_SA rekeying the IKE SA (§1.3.2): SA (our IKE suites with
/// our new SPI; those for the KE's group first), Ni, KEi.
pub(super) fn build_rekey_ike(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
    msgid: u32,
    r: &IkeRekey,
) -> Result<Vec<u8>, Fail> {
    let group = DhGroup(r.dh.group().number());
    let mut order: Vec<&IkeProposal> = peer.ike.iter().filter(|p| p.dh == group).collect();
    order.extend(peer.ike.iter().filter(|p| p.dh != group));
    let trs: Vec<_> = order.iter().map(|p| p.transforms()).collect();
    let props: Vec<ProposalRepr<'_>> = trs
        .iter()
        .enumerate()
        .map(|(i, t)| ProposalRepr {
            number: (i + 1) as u8,
            protocol: ProtocolId::IKE,
            spi: &r.spi,
            transforms: t,
        })
        .collect();
    build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, msgid, false, |b| {
        b.sa(&props)?;
        b.add(PayloadType::NONCE, false, &Payload::Nonce(&r.ni))?;
        b.add(
            PayloadType::KE,
            false,
            &Payload::Ke(KePayload {
                group,
                data: r.dh.public_value(),
            }),
        )
    })
}
