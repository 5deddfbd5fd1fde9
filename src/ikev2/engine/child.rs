#![forbid(unsafe_code)]

//! CREATE_CHILD_SA (RFC 7296 §1.3, §2.8, §2.17, §2.18): new CHILD_SAs, CHILD_SA rekeys
//! with and without PFS (and the simultaneous-rekey rule of §2.8.1), and IKE SA rekeys.
//! A new CHILD_SA is announced (responder) or taken as made (initiator) only once the
//! kernel holds it, and after a rekey the old one goes only then (kernel.rs).

use super::*;

impl Engine {
    /// Rekeys CHILD_SAs (§1.3.3, §2.8): a CREATE_CHILD_SA with N(REKEY_SA) naming our
    /// inbound SPI, the same selectors, our ESP suites (with KEi when the first one has a
    /// PFS group); when the answer comes, the new CHILD_SA is added and the old one
    /// deleted with an INFORMATIONAL. CHILD_SAs already replaced are left alone. Returns
    /// how many rekeys were started or queued.
    pub fn rekey_child(&mut self, now: Time, which: ChildRef<'_>) -> usize {
        let picked: Vec<(Handle, u32)> = self
            .children
            .iter()
            .filter(|(_, c)| !c.rekeyed)
            .filter(|(_, c)| match which {
                ChildRef::Peer(p) => c.peer == p,
                ChildRef::Spi(s) => c.spi_in == s || c.spi_out == s,
            })
            .map(|(_, c)| (c.ike, c.spi_in))
            .collect();
        for &(h, spi) in &picked {
            self.start_request(now, h, Req::CreateChild(Some(spi)));
        }
        picked.len()
    }

    /// Another CHILD_SA with the peer named `peer`, for its selectors, on its first
    /// established IKE SA (§1.3.1). Returns whether one was started or queued.
    pub fn create_child(&mut self, now: Time, peer: &str) -> bool {
        let h = self
            .sas
            .iter()
            .find(|(_, sa)| sa.info.peer == peer && sa.info.state == IkeState::Established)
            .map(|(h, _)| h);
        if let Some(h) = h {
            self.start_request(now, h, Req::CreateChild(None));
        }
        h.is_some()
    }

    /// Responder: CREATE_CHILD_SA for a CHILD_SA (§1.3.1, §1.3.3): with N(REKEY_SA) the
    /// CHILD_SA it names (by the peer's inbound SPI, our outbound one) is replaced and
    /// stays until the peer deletes it; with PFS, KEi must be for our group
    /// (INVALID_KE_PAYLOAD otherwise). A rekey of a CHILD_SA we are rekeying ourselves
    /// is answered too, and remembered for §2.8.1. The answer is decided here; it goes
    /// once our inbound SPI is reserved and the new CHILD_SA installed
    /// ([`Self::answer_child`], [`Self::child_answered`]). Repeats of the request
    /// meanwhile are outside the window and dropped.
    pub(super) fn create_child_request(
        &mut self,
        now: Time,
        h: Handle,
        hd: &Header,
        inner: &Payloads<'_>,
    ) {
        // §2.25.2: not while the IKE SA is being rekeyed or deleted (collide.rs).
        if let Some(why) = self.child_request_collides(h) {
            return self.refuse_for_now(h, hd.msgid, "CREATE_CHILD_SA", why);
        }
        let Engine {
            sas,
            io,
            policy,
            children,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        sa.peer_msgid = hd.msgid.wrapping_add(1);
        let peer = &policy.peers[sa.peer];
        // A peer with an address from our pool has only that on its side (§2.19).
        let pool_ts = peer_side(sa, peer);
        // Our CHILD_SAs whose Delete is on its way or queued.
        let deleting: Vec<u32> = (sa.request.iter().map(|r| &r.what))
            .chain(sa.queued.iter())
            .flat_map(|w| match w {
                Req::DeleteChild(s) => s.as_slice(),
                _ => &[],
            })
            .copied()
            .collect();
        let mut notify: (NotifyType, Vec<u8>) = (NotifyType::INVALID_SYNTAX, Vec::new());
        let res = (|| -> Result<ChildAnswer, Fail> {
            let old = match inner.notify(NotifyType::REKEY_SA) {
                Some(n) if n.protocol == ProtocolId::ESP && n.spi.len() == 4 => {
                    let spi = u32::from_be_bytes([n.spi[0], n.spi[1], n.spi[2], n.spi[3]]);
                    let Some((ch, c)) = children
                        .iter()
                        .find(|(_, c)| c.ike == h && c.spi_out == spi)
                    else {
                        notify.0 = NotifyType::CHILD_SA_NOT_FOUND;
                        return Err(Fail("rekey of an unknown CHILD_SA"));
                    };
                    if c.rekeyed {
                        notify.0 = NotifyType::TEMPORARY_FAILURE;
                        return Err(Fail("rekey of a CHILD_SA already replaced"));
                    }
                    // §2.25.1: "SHOULD reply with TEMPORARY_FAILURE".
                    if deleting.contains(&c.spi_in) {
                        notify.0 = NotifyType::TEMPORARY_FAILURE;
                        return Err(Fail("rekey of a CHILD_SA we are deleting"));
                    }
                    Some((ch, c.spi_in))
                }
                Some(_) => return Err(Fail("REKEY_SA not for an ESP SPI")),
                None => None,
            };
            let mut choice = choose_child(peer, inner, true, pool_ts.as_deref()).map_err(|n| {
                notify.0 = n;
                Fail("no acceptable CHILD_SA")
            })?;
            if !io.kernel_answers {
                choice.spi_in = io.esp_spi();
            }
            let Some(Payload::Nonce(ni)) = inner.find(PayloadType::NONCE) else {
                return Err(Fail("no Ni"));
            };
            let (dh, gir) = match choice.esp.pfs {
                Some(g) => {
                    let ke = match inner.find(PayloadType::KE) {
                        Some(Payload::Ke(ke)) if ke.group == g => ke,
                        _ => {
                            notify = (NotifyType::INVALID_KE_PAYLOAD, g.0.to_be_bytes().to_vec());
                            return Err(Fail("KEi missing or for another group"));
                        }
                    };
                    let dh = new_dh(io, g)?;
                    let gir = dh
                        .shared_secret(ke.data)
                        .map_err(|_| Fail("invalid KE public value"))?;
                    (Some(dh), Some(gir))
                }
                None => (None, None),
            };
            Ok(ChildAnswer {
                msgid: hd.msgid,
                old,
                choice,
                ni: ni.to_vec(),
                nr: io.random::<NONCE_LEN>().to_vec(),
                dh,
                gir,
            })
        })();
        let a = match res {
            Ok(a) => a,
            Err(Fail(why)) => {
                let name = &peer.name;
                if let Some(m) = refusal(io, sa, name, hd.msgid, "CREATE_CHILD_SA", why, notify) {
                    io.respond(sa, hd.msgid, m);
                }
                return;
            }
        };
        // §2.8.1: our own rekey of the same CHILD_SA crosses this one.
        if let Some((_, old_in)) = a.old {
            if let Some(cr) = sa.creating.as_mut().filter(|cr| cr.rekey == Some(old_in)) {
                cr.crossed = Some(a.ni.as_slice().min(&a.nr).to_vec());
            }
        }
        if io.kernel_answers {
            self.wait_spi(h, Step::CreateAnswerSpi(Box::new(a)));
        } else {
            self.answer_child(now, h, a);
        }
    }

    /// Responder: the CREATE_CHILD_SA answer with our inbound SPI is built, and its
    /// CHILD_SA goes to the kernel; the answer is sent once it is in.
    pub(super) fn answer_child(&mut self, now: Time, h: Handle, a: ChildAnswer) {
        let Engine { sas, io, .. } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        let c = &a.choice;
        let t = c.esp.transforms_pfs();
        let res = build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, a.msgid, true, |b| {
            if c.transport {
                b.notify(NotifyType::USE_TRANSPORT_MODE, &[])?;
            }
            b.sa(&[ProposalRepr {
                number: c.number,
                protocol: ProtocolId::ESP,
                spi: &c.spi_in.to_be_bytes(),
                transforms: &t,
            }])?;
            b.add(PayloadType::NONCE, false, &Payload::Nonce(&a.nr))?;
            if let Some(dh) = &a.dh {
                b.add(
                    PayloadType::KE,
                    false,
                    &Payload::Ke(KePayload {
                        group: DhGroup(dh.group().number()),
                        data: dh.public_value(),
                    }),
                )?;
            }
            ts_payload(b, PayloadType::TSI, &c.tsi)?;
            ts_payload(b, PayloadType::TSR, &c.tsr)
        })
        .and_then(|m| {
            let (tsr, tsi) = (c.tsr.clone(), c.tsi.clone());
            let mut child = bare_child(sa, h, &c.esp, c.spi_in, c.spi_out, tsr, tsi);
            child.initiator = false;
            child.pfs = c.esp.pfs;
            let gir = a.gir.as_ref().map(|g| g.as_bytes());
            set_keys(sa, &mut child, gir, &a.ni, &a.nr)?;
            Ok((m, child))
        });
        match res {
            Ok((message, child)) => {
                let step = Step::CreateAnswerInstall {
                    msgid: a.msgid,
                    message,
                    child,
                    old: a.old,
                };
                self.install(now, h, step);
            }
            Err(Fail(why)) => {
                let (local, remote) = (sa.info.local, sa.info.remote);
                io.release_spi(local, remote, a.choice.spi_in);
                self.refuse_answer(h, a.msgid, a.old, why);
            }
        }
    }

    /// Responder: the new CHILD_SA is in the kernel; the answer announces it, and the
    /// CHILD_SA it replaces, if any, is marked so.
    pub(super) fn child_answered(
        &mut self,
        h: Handle,
        msgid: u32,
        m: Vec<u8>,
        mut child: ChildSa,
        old: Option<(Handle, u32)>,
    ) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        self.io.respond(sa, msgid, m);
        child.replaces = old.map(|(_, spi)| spi);
        if let Some((ch, _)) = old {
            if let Some(c) = self.children.get_mut(ch) {
                c.rekeyed = true;
            }
            self.io.stats.child_sas_rekeyed += 1;
        }
        self.add_child(child);
    }

    /// Responder: a CREATE_CHILD_SA decided on cannot be had after all (the kernel
    /// refused, or the answer could not be built): TEMPORARY_FAILURE (§2.25), and our
    /// own rekey of the same CHILD_SA is no longer crossed.
    pub(super) fn refuse_answer(
        &mut self,
        h: Handle,
        msgid: u32,
        old: Option<(Handle, u32)>,
        why: &str,
    ) {
        let Engine {
            sas, io, policy, ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        if let Some((_, old_in)) = old {
            if let Some(cr) = sa.creating.as_mut().filter(|cr| cr.rekey == Some(old_in)) {
                cr.crossed = None;
            }
        }
        let name = &policy.peers[sa.peer].name;
        let n = (NotifyType::TEMPORARY_FAILURE, Vec::new());
        if let Some(m) = refusal(io, sa, name, msgid, "CREATE_CHILD_SA", why, n) {
            io.respond(sa, msgid, m);
        }
    }

    /// Initiator: the kernel reserved the inbound SPI of our CREATE_CHILD_SA; the
    /// request goes out with it, unless the CHILD_SA it was to rekey has gone or was
    /// rekeyed by the peer meanwhile (then the SPI goes back).
    pub(super) fn create_spi(&mut self, now: Time, h: Handle, spi: u32) {
        let Engine {
            sas,
            io,
            policy,
            children,
            config,
            waits,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        let (local, remote) = (sa.info.local, sa.info.remote);
        let Some(mut cr) = sa.creating.take() else {
            return io.release_spi(local, remote, spi);
        };
        cr.spi_in = spi;
        let peer = &policy.peers[sa.peer];
        // The peer's rekey of the same CHILD_SA may have come after ours began, while
        // our answer to it still waits for the kernel: ours must not go then either
        // (that one is not crossed, §2.8.1, as ours was not sent yet).
        let stale = cr.crossed.is_some()
            || cr.rekey.is_some_and(|old| {
                !children
                    .iter()
                    .any(|(_, c)| c.ike == h && c.spi_in == old && !c.rekeyed)
                    || waits
                        .iter()
                        .any(|w| w.ike == h && w.step.answers_rekey_of() == Some(old))
            });
        let msgid = sa.next_msgid;
        let m = if stale {
            Err(Fail("the CHILD_SA to rekey was replaced meanwhile"))
        } else {
            build_create_child(io, sa, peer, msgid, &cr)
        };
        match m {
            Ok(m) => {
                let what = Req::CreateChild(cr.rekey);
                sa.creating = Some(cr);
                io.request(now, config, h, sa, (msgid, m), what);
                sa.next_msgid = msgid.wrapping_add(1);
            }
            Err(Fail(why)) => {
                log::info!("ikev2: {}: CREATE_CHILD_SA not sent: {why}", peer.name);
                io.release_spi(local, remote, spi);
                self.next_request(now, h);
            }
        }
    }

    /// Initiator: the answer to our CREATE_CHILD_SA. The new CHILD_SA goes to the
    /// kernel and is taken as made once it is in ([`Self::child_made`]); after a rekey
    /// the old one is deleted then, or, when the peer rekeyed it at the same time
    /// (§2.8.1), whichever new CHILD_SA came from the exchange with the lowest of the
    /// four nonces is deleted by its creator and the old one by the other's creator.
    pub(super) fn create_child_response(&mut self, now: Time, h: Handle, inner: &Payloads<'_>) {
        let Engine {
            sas,
            policy,
            io,
            config,
            ..
        } = self;
        let Some(sa) = sas.get_mut(h) else { return };
        let Some(mut cr) = sa.creating.take() else {
            return;
        };
        let peer = &policy.peers[sa.peer];
        let remote = sa.info.remote;
        // INVALID_KE_PAYLOAD (§1.3): once, again with the group it names if one of our
        // PFS suites has it; same SPI, nonce and selectors, a new message ID.
        if let Some(n) = inner.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let g = <[u8; 2]>::try_from(n.data)
                .ok()
                .map(|b| DhGroup(u16::from_be_bytes(b)))
                .filter(|g| peer.esp.iter().any(|e| e.pfs == Some(*g)));
            match g {
                Some(g) if !cr.ke_retried => {
                    log::info!(
                        "ikev2: {} {remote}: CREATE_CHILD_SA: the peer wants group {g}",
                        peer.name
                    );
                    let msgid = sa.next_msgid;
                    let m = new_dh(io, g).and_then(|dh| {
                        cr.dh = Some(dh);
                        cr.ke_retried = true;
                        build_create_child(io, sa, peer, msgid, &cr)
                    });
                    match m {
                        Ok(m) => {
                            let what = Req::CreateChild(cr.rekey);
                            sa.creating = Some(cr);
                            io.request(now, config, h, sa, (msgid, m), what);
                            sa.next_msgid = msgid.wrapping_add(1);
                        }
                        Err(Fail(why)) => {
                            log::warn!("ikev2: {} {remote}: CREATE_CHILD_SA: {why}", peer.name);
                            io.release_spi(sa.info.local, remote, cr.spi_in);
                        }
                    }
                    return;
                }
                _ => {
                    log::warn!(
                        "ikev2: {} {remote}: CREATE_CHILD_SA: INVALID_KE_PAYLOAD for no group of ours",
                        peer.name
                    );
                    io.release_spi(sa.info.local, remote, cr.spi_in);
                    return;
                }
            }
        }
        // §3.10.1: an error type we do not know in a response means that the request
        // failed entirely.
        if let Some(n) = inner
            .notifies()
            .find(|n| n.ty.is_error() && !n.ty.is_known())
        {
            log::warn!(
                "ikev2: {} {remote}: CREATE_CHILD_SA refused with error {}",
                peer.name,
                n.ty
            );
            io.release_spi(sa.info.local, remote, cr.spi_in);
            return;
        }
        if inner.notify(NotifyType::TEMPORARY_FAILURE).is_some() {
            io.release_spi(sa.info.local, remote, cr.spi_in);
            match cr.rekey {
                Some(old) => self.retry_child_rekey(now, old),
                None => log::info!(
                    "ikev2: {} {remote}: CREATE_CHILD_SA refused for now",
                    peer.name
                ),
            }
            return;
        }
        // §2.25: the peer has no CHILD_SA by that SPI (it went at the peer's hard limit,
        // or a Delete was lost): ours goes too, silently, and a new one is made afresh.
        if let (Some(old), Some(_)) = (cr.rekey, inner.notify(NotifyType::CHILD_SA_NOT_FOUND)) {
            io.release_spi(sa.info.local, remote, cr.spi_in);
            log::warn!(
                "ikev2: {} {remote}: CHILD_SA {old:08x}: the peer has no such CHILD_SA \
                 (CHILD_SA_NOT_FOUND): deleted here, a new one negotiated",
                peer.name
            );
            self.remove_children(|c| c.ike == h && c.spi_in == old);
            self.start_request(now, h, Req::CreateChild(None));
            return;
        }
        let res = (|| -> Result<ChildSa, String> {
            let (esp, spi_out, tsi, tsr) = accept_child(peer, inner, true)?;
            let Some(Payload::Nonce(nr)) = inner.find(PayloadType::NONCE) else {
                return Err("no Nr".into());
            };
            if !tsi.iter().all(|g| cr.ts_local.iter().any(|o| g.within(o)))
                || !tsr.iter().all(|g| cr.ts_remote.iter().any(|o| g.within(o)))
            {
                return Err("traffic selectors wider than proposed".into());
            }
            let gir = match esp.pfs {
                Some(g) => {
                    let Some(Payload::Ke(ke)) = inner.find(PayloadType::KE) else {
                        return Err("no KEr".into());
                    };
                    let dh = cr
                        .dh
                        .as_ref()
                        .filter(|d| d.group().number() == g.0 && ke.group == g)
                        .ok_or("KEr for another group than our KEi")?;
                    Some(
                        dh.shared_secret(ke.data)
                            .map_err(|_| "invalid KE public value")?,
                    )
                }
                None => None,
            };
            let mut c = bare_child(sa, h, &esp, cr.spi_in, spi_out, tsi, tsr);
            c.initiator = true;
            c.pfs = esp.pfs;
            set_keys(sa, &mut c, gir.as_ref().map(|g| g.as_bytes()), &cr.ni, nr)
                .map_err(|Fail(why)| why)?;
            Ok(c)
        })();
        let c = match res {
            Ok(c) => c,
            // An answer with an SA payload means the peer made the CHILD_SA: one we cannot
            // take is deleted (RFC 7296 §1.3.1, "the initiator MUST delete the SA"), by
            // our inbound SPI, which the peer holds as its outbound one.
            Err(why) => {
                let made = inner.find(PayloadType::SA).is_some();
                log::warn!(
                    "ikev2: {} {remote}: CREATE_CHILD_SA: {why}{}",
                    peer.name,
                    if made {
                        "; the peer's CHILD_SA is deleted"
                    } else {
                        ""
                    }
                );
                io.release_spi(sa.info.local, remote, cr.spi_in);
                if made {
                    self.start_request(now, h, Req::DeleteChild(vec![cr.spi_in]));
                }
                return;
            }
        };
        let mut redundant = false;
        if cr.rekey.is_some() {
            let ours_low = match inner.find(PayloadType::NONCE) {
                Some(Payload::Nonce(nr)) => cr.ni.as_slice().min(nr).to_vec(),
                _ => cr.ni.clone(),
            };
            match &cr.crossed {
                Some(theirs_low) if ours_low < *theirs_low => {
                    log::info!(
                        "ikev2: {}: simultaneous rekey: ours is redundant, deleted",
                        peer.name
                    );
                    redundant = true;
                }
                Some(_) => log::info!(
                    "ikev2: {}: simultaneous rekey: the peer's is redundant",
                    peer.name
                ),
                None => {}
            }
        }
        let step = Step::Install {
            child: c,
            rekey: cr.rekey,
            redundant,
        };
        self.install(now, h, step);
    }

    /// Initiator: the CHILD_SA of our IKE_AUTH or CREATE_CHILD_SA is in the kernel and
    /// taken as made. After a rekey (`rekey`: the old CHILD_SA's inbound SPI) the old one
    /// is marked replaced and deleted, or, `redundant` after a simultaneous rekey
    /// (§2.8.1), the new one is.
    pub(super) fn child_made(
        &mut self,
        now: Time,
        h: Handle,
        mut c: ChildSa,
        rekey: Option<u32>,
        redundant: bool,
    ) {
        let mut delete = Vec::new();
        if redundant {
            c.rekeyed = true;
            delete.push(c.spi_in);
        } else if let Some(old) = rekey {
            let ch = self
                .children
                .iter()
                .find(|(_, c)| c.ike == h && c.spi_in == old)
                .map(|(ch, _)| ch);
            if let Some(o) = ch.and_then(|ch| self.children.get_mut(ch)) {
                if !o.rekeyed {
                    self.io.stats.child_sas_rekeyed += 1;
                }
                o.rekeyed = true;
                delete.push(old);
            }
        }
        self.add_child(c);
        if !delete.is_empty() {
            self.start_request(now, h, Req::DeleteChild(delete));
        }
    }
}

/// The responder's CHILD_SA: suite, the proposal's number, SPIs (ours 0 until the kernel
/// reserves it), narrowed selectors.
pub(super) struct ChildChoice {
    pub(super) esp: EspProposal,
    pub(super) number: u8,
    pub(super) spi_in: u32,
    pub(super) spi_out: u32,
    pub(super) tsi: Vec<Selector>,
    pub(super) tsr: Vec<Selector>,
    /// Transport mode (both sides sent USE_TRANSPORT_MODE): the answer carries it too.
    pub(super) transport: bool,
}

/// Responder: the ESP suite (first offered proposal we accept) and the narrowed
/// selectors, or the notify that says why there is no CHILD_SA. In CREATE_CHILD_SA
/// (`create`), the proposal's DH transform must be our PFS group, or absent without one.
/// Our inbound SPI is left 0 for the caller.
pub(super) fn choose_child(
    peer: &Peer,
    inner: &Payloads<'_>,
    create: bool,
    remote_ts: Option<&[Selector]>,
) -> Result<ChildChoice, NotifyType> {
    let Some(Payload::Sa(offer)) = inner.find(PayloadType::SA) else {
        return Err(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let Some((esp, number, spi_out)) = offer.proposals().find_map(|p| {
        peer.esp
            .iter()
            .find(|o| o.offered_in(&p) && (!create || o.pfs_in(&p)) && o.algorithms().is_some())
            .map(|o| {
                (
                    *o,
                    p.number,
                    u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]),
                )
            })
    }) else {
        return Err(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let (Some(tsi), Some(tsr)) = (
        selectors(inner, PayloadType::TSI),
        selectors(inner, PayloadType::TSR),
    ) else {
        return Err(NotifyType::TS_UNACCEPTABLE);
    };
    // TSi is the initiator's side: our remote selectors; TSr ours.
    let tsi = narrow(&tsi, remote_ts.unwrap_or(&peer.remote_ts));
    let tsr = narrow(&tsr, &peer.local_ts);
    if tsi.is_empty() || tsr.is_empty() {
        return Err(NotifyType::TS_UNACCEPTABLE);
    }
    // §1.3.1: a tunnel-mode policy answers a USE_TRANSPORT_MODE request in tunnel mode
    // (without the notify); a transport-mode one takes nothing else.
    let transport = peer.transport;
    if transport && inner.notify(NotifyType::USE_TRANSPORT_MODE).is_none() {
        return Err(NotifyType::NO_PROPOSAL_CHOSEN);
    }
    Ok(ChildChoice {
        esp,
        number,
        spi_in: 0,
        spi_out,
        tsi,
        tsr,
        transport,
    })
}

pub(super) fn selectors(inner: &Payloads<'_>, ty: PayloadType) -> Option<Vec<Selector>> {
    let ts: &TsPayload<'_> = inner.iter().find_map(|e| match &e.payload {
        Payload::Ts(t) if e.ty == ty => Some(t),
        _ => None,
    })?;
    let v: Vec<Selector> = ts
        .selectors()
        .filter_map(|t| Selector::from_wire(&t))
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Initiator: the responder's CHILD_SA answer must be one of our suites (with its PFS
/// group in CREATE_CHILD_SA, `create`), and its selectors within what we proposed.
pub(super) fn accept_child(
    peer: &Peer,
    inner: &Payloads<'_>,
    create: bool,
) -> Result<(EspProposal, u32, Vec<Selector>, Vec<Selector>), String> {
    if let Some(n) = inner.notifies().find(|n| n.ty.is_error()) {
        return Err(format!("{}", n.ty));
    }
    let Some(Payload::Sa(answer)) = inner.find(PayloadType::SA) else {
        return Err("no SA payload".into());
    };
    // Transport mode when we asked for it, and only then (§1.3.1).
    match (
        peer.transport,
        inner.notify(NotifyType::USE_TRANSPORT_MODE).is_some(),
    ) {
        (true, false) => return Err("the peer answered in tunnel mode, not transport".into()),
        (false, true) => return Err("USE_TRANSPORT_MODE we did not ask for".into()),
        _ => {}
    }
    let mut props = answer.proposals();
    let (Some(p), None) = (props.next(), props.next()) else {
        return Err("not one proposal".into());
    };
    let Some(esp) = peer
        .esp
        .iter()
        .find(|o| if create { o.is_pfs(&p) } else { o.is(&p) })
        .copied()
    else {
        return Err("a proposal we did not offer".into());
    };
    let spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
    let (Some(tsi), Some(tsr)) = (
        selectors(inner, PayloadType::TSI),
        selectors(inner, PayloadType::TSR),
    ) else {
        return Err("no traffic selectors".into());
    };
    let inside =
        |got: &[Selector], ours: &[Selector]| got.iter().all(|g| ours.iter().any(|o| g.within(o)));
    if !inside(&tsi, &peer.local_ts) || !inside(&tsr, &peer.remote_ts) {
        return Err("traffic selectors wider than proposed".into());
    }
    Ok((esp, spi, tsi, tsr))
}

/// The CHILD_SA of IKE_AUTH with its KEYMAT (§2.17: from SK_d and the IKE_SA_INIT
/// nonces, initiator-to-responder keys first).
pub(super) fn child_sa(
    sa: &IkeSa,
    h: Handle,
    esp: &EspProposal,
    spi_in: u32,
    spi_out: u32,
    ts_local: Vec<Selector>,
    ts_remote: Vec<Selector>,
) -> ChildSa {
    let mut c = bare_child(sa, h, esp, spi_in, spi_out, ts_local, ts_remote);
    if set_keys(sa, &mut c, None, &sa.ni, &sa.nr).is_err() {
        log::error!("ikev2: {}: CHILD_SA KEYMAT failed", sa.info.peer);
    }
    c
}

/// A CHILD_SA record without keys yet, made by the IKE SA's initiator.
pub(super) fn bare_child(
    sa: &IkeSa,
    h: Handle,
    esp: &EspProposal,
    spi_in: u32,
    spi_out: u32,
    ts_local: Vec<Selector>,
    ts_remote: Vec<Selector>,
) -> ChildSa {
    let (encr, integ) = esp.algorithms().unwrap_or((Encr::AesCbc(16), None));
    ChildSa {
        ike: h,
        peer: sa.info.peer.clone(),
        initiator: sa.info.initiator,
        rekeyed: false,
        replaces: None,
        outbound_pending: false,
        spi_in,
        spi_out,
        encr,
        integ,
        encr_in: Key::new(),
        integ_in: Key::new(),
        encr_out: Key::new(),
        integ_out: Key::new(),
        ts_local,
        ts_remote,
        flows: Vec::new(),
        transport: false,
        local: sa.info.local,
        remote: sa.info.remote,
        encap: (sa.info.nat_local || sa.info.nat_remote)
            .then(|| (sa.info.local.port(), sa.info.remote.port())),
        pfs: None,
        // Set when it goes to the kernel (`Engine::install`).
        established: Time(0),
        rekey_at: None,
        expires_at: None,
        lifetime_bytes: 0,
    }
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17) with the nonces of the exchange
/// that made `c`; the keys of that exchange's initiator (`c.initiator`) come first.
pub(super) fn set_keys(
    sa: &IkeSa,
    c: &mut ChildSa,
    gir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
) -> Result<(), Fail> {
    let (Some(k), Some(s)) = (sa.keys.as_ref(), sa.info.suite) else {
        return Err(Fail("no keys"));
    };
    let keys = ChildKeys::derive(s.prf, k.d.as_bytes(), gir, ni, nr, c.encr, c.integ)?;
    let (ei, ai, er, ar) = (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r);
    (c.encr_in, c.integ_in, c.encr_out, c.integ_out) = if c.initiator {
        (er, ar, ei, ai)
    } else {
        (ei, ai, er, ar)
    };
    Ok(())
}

/// Responder: a CREATE_CHILD_SA answer decided on, waiting for our inbound SPI and the
/// install: the request's message ID and nonce, the CHILD_SA it replaces (and our
/// inbound SPI of that one), our choice, Nr and the PFS values.
pub(super) struct ChildAnswer {
    pub(super) msgid: u32,
    pub(super) old: Option<(Handle, u32)>,
    pub(super) choice: ChildChoice,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    pub(super) dh: Option<DhPrivate>,
    pub(super) gir: Option<SharedSecret>,
}

pub(super) fn new_dh(io: &mut Io, g: DhGroup) -> Result<DhPrivate, Fail> {
    let g = Group::from_ike(GroupDescription(g.0)).ok_or(Fail("DH group not implemented"))?;
    DhPrivate::generate(g, io.rng.as_mut()).map_err(|_| Fail("DH generation"))
}

/// Initiator: the state of a CREATE_CHILD_SA: a new inbound SPI (0 when the kernel
/// reserves it), Ni, and a DH value for the first suite's PFS group.
pub(super) fn new_creating(
    io: &mut Io,
    peer: &Peer,
    rekey: Option<u32>,
    ts_local: Vec<Selector>,
    ts_remote: Vec<Selector>,
) -> Result<Creating, Fail> {
    let dh = match peer.esp.first().and_then(|e| e.pfs) {
        Some(g) => Some(new_dh(io, g)?),
        None => None,
    };
    Ok(Creating {
        rekey,
        spi_in: if io.kernel_answers { 0 } else { io.esp_spi() },
        ni: io.random::<NONCE_LEN>().to_vec(),
        dh,
        ts_local,
        ts_remote,
        crossed: None,
        ke_retried: false,
    })
}

/// Initiator: CREATE_CHILD_SA (§1.3.1, §1.3.3): [N(REKEY_SA)], SA (ESP, our new SPI,
/// with the PFS group), Ni, [KEi], TSi, TSr.
pub(super) fn build_create_child(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &Peer,
    msgid: u32,
    c: &Creating,
) -> Result<Vec<u8>, Fail> {
    let spi = c.spi_in.to_be_bytes();
    // The suites of our KE's group first (after INVALID_KE_PAYLOAD it is not the first
    // suite's).
    let group = c.dh.as_ref().map(|d| DhGroup(d.group().number()));
    let mut order: Vec<&EspProposal> = peer.esp.iter().filter(|e| e.pfs == group).collect();
    order.extend(peer.esp.iter().filter(|e| e.pfs != group));
    let trs: Vec<_> = order.iter().map(|p| p.transforms_pfs()).collect();
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
    build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, msgid, false, |b| {
        if let Some(old) = c.rekey {
            let old = old.to_be_bytes();
            let n = Payload::Notify(NotifyPayload {
                protocol: ProtocolId::ESP,
                ty: NotifyType::REKEY_SA,
                spi: &old,
                data: &[],
            });
            b.add(PayloadType::NOTIFY, false, &n)?;
        }
        if peer.transport {
            b.notify(NotifyType::USE_TRANSPORT_MODE, &[])?;
        }
        b.sa(&props)?;
        b.add(PayloadType::NONCE, false, &Payload::Nonce(&c.ni))?;
        if let Some(dh) = &c.dh {
            b.add(
                PayloadType::KE,
                false,
                &Payload::Ke(KePayload {
                    group: DhGroup(dh.group().number()),
                    data: dh.public_value(),
                }),
            )?;
        }
        ts_payload(b, PayloadType::TSI, &c.ts_local)?;
        ts_payload(b, PayloadType::TSR, &c.ts_remote)
    })
}

/// A CREATE_CHILD_SA request refused: the log line, and the protected response carrying
/// `notify` (`None` if it cannot be built).
pub(super) fn refusal(
    io: &mut Io,
    sa: &mut IkeSa,
    peer: &str,
    msgid: u32,
    what: &str,
    why: &str,
    (ty, data): (NotifyType, Vec<u8>),
) -> Option<Vec<u8>> {
    log::warn!(
        "ikev2: {peer} {}: {what} refused: {why} ({})",
        sa.info.remote,
        ty.0
    );
    build_protected(io, sa, ExchangeType::CREATE_CHILD_SA, msgid, true, |b| {
        b.notify(ty, &data)
    })
    .ok()
}
