#![forbid(unsafe_code)]

//! INFORMATIONAL (RFC 7296 §1.4): DELETE of CHILD_SAs (answered with the paired SPIs,
//! §1.4.1) and of the IKE SA, and the empty requests of the liveness check.

use super::*;

impl Engine {
    /// Deletes CHILD_SAs (RFC 7296 §1.4.1): an INFORMATIONAL with a Delete of our inbound
    /// SPIs to each IKE SA's peer; the CHILD_SAs go when the peer answers (or with the
    /// IKE SA if it never does). Returns how many are being deleted.
    pub fn delete_child(&mut self, now: Time, which: ChildRef<'_>) -> usize {
        let mut by_ike: Vec<(Handle, Vec<u32>)> = Vec::new();
        for (_, c) in self.children.iter() {
            let hit = match which {
                ChildRef::Peer(p) => c.peer == p,
                ChildRef::Spi(s) => c.spi_in == s || c.spi_out == s,
            };
            if !hit {
                continue;
            }
            match by_ike.iter_mut().find(|(h, _)| *h == c.ike) {
                Some((_, v)) => v.push(c.spi_in),
                None => by_ike.push((c.ike, vec![c.spi_in])),
            }
        }
        let n = by_ike.iter().map(|(_, v)| v.len()).sum();
        for (h, spis) in by_ike {
            self.start_request(now, h, Req::DeleteChild(spis));
        }
        n
    }

    /// Deletes IKE SAs with their CHILD_SAs: an established one with an INFORMATIONAL
    /// holding a Delete of the IKE SA (§1.4.1), gone when the peer answers or the
    /// retransmissions run out; one still being set up at once. Returns how many.
    pub fn delete_ike(&mut self, now: Time, which: IkeRef<'_>) -> usize {
        let picked: Vec<(Handle, bool)> = self
            .sas
            .iter()
            .filter(|(h, sa)| match which {
                IkeRef::Peer(p) => sa.info.peer == p,
                IkeRef::Handle(x) => *h == x,
            })
            .map(|(h, sa)| (h, sa.info.state == IkeState::Established))
            .collect();
        for &(h, established) in &picked {
            if established {
                self.start_request(now, h, Req::DeleteIke);
            } else {
                self.delete(h, "deleted before it was established");
            }
        }
        picked.len()
    }

    /// Removes the CHILD_SAs `pick` chooses, and deletes them from the kernel (one by
    /// one, so that the last of several with the same selectors takes the flows along);
    /// returns how many.
    pub(super) fn remove_children(&mut self, pick: impl Fn(&ChildSa) -> bool) -> usize {
        let gone: Vec<Handle> = self
            .children
            .iter()
            .filter(|(_, c)| pick(c))
            .map(|(ch, _)| ch)
            .collect();
        let mut ikes: Vec<Handle> = Vec::new();
        for &ch in &gone {
            if let Some(c) = self.children.remove(ch) {
                self.install_pending_outbound(c.spi_in, &gone);
                log::info!(
                    "ikev2: {}: CHILD_SA deleted, SPIs in {:08x} out {:08x}",
                    c.peer,
                    c.spi_in,
                    c.spi_out
                );
                self.uninstall(&c);
                if !ikes.contains(&c.ike) {
                    ikes.push(c.ike);
                }
            }
        }
        // Their rekeys and expiries no longer count for their IKE SAs' timers.
        for h in ikes {
            self.rearm(h);
        }
        self.io.stats.child_sas_deleted += gone.len() as u64;
        gone.len()
    }

    /// An INFORMATIONAL request (§1.4): AUTHENTICATION_FAILED or a Delete of the IKE SA
    /// ends it (an empty answer, then nothing is left); a Delete of CHILD_SAs names the
    /// peer's inbound SPIs, our outbound ones, and is answered with a Delete of our
    /// halves of those pairs (§1.4.1), leaving out the ones we are deleting ourselves
    /// (crossed requests); SPIs we do not know are ignored (§3.11); anything else
    /// (liveness) gets an empty answer.
    pub(super) fn informational(
        &mut self,
        _now: Time,
        h: Handle,
        hd: &Header,
        inner: &Payloads<'_>,
    ) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        sa.peer_msgid = hd.msgid.wrapping_add(1);
        let ends = inner.notify(NotifyType::AUTHENTICATION_FAILED).is_some()
            || inner
                .iter()
                .any(|e| matches!(e.payload, Payload::Delete(d) if d.protocol == ProtocolId::IKE));
        let deleting: &[u32] = match sa.request.as_ref().map(|r| &r.what) {
            Some(Req::DeleteChild(s)) => s,
            _ => &[],
        };
        let mut theirs = Vec::new();
        let mut ours = Vec::new();
        if !ends {
            for e in inner.iter() {
                let Payload::Delete(d) = e.payload else {
                    continue;
                };
                if d.protocol != ProtocolId::ESP || d.spi_size != 4 {
                    continue;
                }
                for spi in d.spis() {
                    let spi = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]);
                    if let Some((_, c)) = self
                        .children
                        .iter()
                        .find(|(_, c)| c.ike == h && c.spi_out == spi)
                    {
                        theirs.push(spi);
                        if !deleting.contains(&c.spi_in) {
                            ours.extend(c.spi_in.to_be_bytes());
                        }
                    }
                }
            }
        }
        let extra = mobike_answer(&mut self.io, sa, inner);
        let m = build_protected(
            &mut self.io,
            sa,
            ExchangeType::INFORMATIONAL,
            hd.msgid,
            true,
            |b| {
                for (ty, data) in &extra {
                    b.notify(*ty, data)?;
                }
                if ours.is_empty() {
                    return Ok(());
                }
                let d = DeletePayload::new(ProtocolId::ESP, 4, &ours);
                b.add(PayloadType::DELETE, false, &Payload::Delete(d))
            },
        );
        if let Ok(m) = m {
            self.io.respond(sa, hd.msgid, m);
        }
        if ends {
            if self.deleted_while_rekeying(_now, h) {
                return;
            }
            return self.delete(h, "ended by the peer");
        }
        if !theirs.is_empty() {
            // A replacement deleted while the CHILD_SA it replaced is still here (the
            // peer could not install it, or §2.8.1 found it redundant): that one is in
            // use again, and may be rekeyed again.
            let replaced: Vec<u32> = self
                .children
                .iter()
                .filter(|(_, c)| c.ike == h && theirs.contains(&c.spi_out))
                .filter_map(|(_, c)| c.replaces)
                .collect();
            let restored: Vec<Handle> = self
                .children
                .iter()
                .filter(|(_, c)| c.ike == h && replaced.contains(&c.spi_in))
                .filter(|(_, c)| !theirs.contains(&c.spi_out))
                .map(|(ch, _)| ch)
                .collect();
            for ch in restored {
                if let Some(c) = self.children.get_mut(ch) {
                    c.rekeyed = false;
                }
            }
            self.remove_children(|c| c.ike == h && theirs.contains(&c.spi_out));
        }
    }
}
