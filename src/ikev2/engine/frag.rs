#![forbid(unsafe_code)]

//! IKE fragmentation (RFC 7383): our protected messages cut into SKF fragments, and the
//! peer's authenticated fragments reassembled, a bounded number at once.

use super::*;

/// The peer's fragments of one message: at most 64 and 64 KiB of plaintext.
pub(super) type Fragments = Reassembly<65536, 64>;

/// A message of the peer's being reassembled: its message ID, whether it is a response,
/// when its first fragment came, what came so far.
pub(super) struct Reassembling {
    msgid: u32,
    response: bool,
    since: Time,
    frags: Box<Fragments>,
}

/// Messages being reassembled at once, over all IKE SAs (a peer that finished
/// IKE_SA_INIT has keys, so the ICV alone does not bound this memory): one more takes
/// the place of the oldest, so that stale ones (a peer that never sends the rest) cannot
/// keep a real peer's IKE_AUTH out.
pub(super) const REASSEMBLIES_MAX: usize = 16;

/// A reassembly whose other fragments have not come this long after its first is given
/// up (RFC 7383 §2.6 leaves the time to us): the peer's retransmissions of a request
/// come well within it, and an established IKE SA must not hold a slot and its 64 KiB
/// for the rest of its life.
pub(super) const REASSEMBLY_SECS: u64 = 30;

impl Reassembling {
    /// When it is given up.
    pub(super) fn due(&self) -> Time {
        self.since.add_secs(REASSEMBLY_SECS)
    }
}

impl Engine {
    /// Gives up the reassembly that began first, over all IKE SAs, for a new one.
    pub(super) fn evict_oldest_reassembly(&mut self) {
        let oldest = self
            .sas
            .iter()
            .filter_map(|(h, sa)| sa.reassembly.as_ref().map(|r| (r.since, h)))
            .min_by_key(|(t, _)| *t)
            .map(|(_, h)| h);
        if let Some(sa) = oldest.and_then(|h| self.sas.get_mut(h)) {
            sa.reassembly = None;
            self.reassemblies = self.reassemblies.saturating_sub(1);
            self.io.stats.reassemblies_evicted += 1;
            log::debug!(
                "ikev2: {}: an IKE fragment reassembly given up for a newer one",
                sa.info.remote
            );
        }
    }

    /// Gives up the reassembly of IKE SA `h` if its time is past ([`REASSEMBLY_SECS`]).
    pub(super) fn expire_reassembly(&mut self, now: Time, h: Handle) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if sa.reassembly.as_ref().is_some_and(|r| r.due() <= now) {
            sa.reassembly = None;
            self.reassemblies = self.reassemblies.saturating_sub(1);
            let remote = sa.info.remote;
            self.io.dropped(
                remote,
                "IKE fragments: the rest never came, reassembly given up",
            );
        }
    }

    /// An authenticated fragment (RFC 7383 §2.6) of the peer's message: kept until all
    /// are here, then the message is handled as if it had come whole. Only with
    /// fragmentation negotiated, and only for the request we expect or the response we
    /// wait for; fragment 1 of a request we have answered brings our answer again.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fragment(
        &mut self,
        now: Time,
        h: Handle,
        hd: &Header,
        (local, remote): (SocketAddr, SocketAddr),
        (number, total): (u16, u16),
        first: PayloadType,
        plain: &[u8],
    ) {
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        if !sa.frag {
            return self
                .io
                .dropped(remote, "IKE fragment, fragmentation not negotiated");
        }
        let response = hd.response();
        let expected = if response {
            sa.request.as_ref().map(|r| r.msgid) == Some(hd.msgid)
        } else {
            hd.msgid == sa.peer_msgid
        };
        if !expected {
            if !response && number == 1 {
                if let Some((m, r)) = &sa.response {
                    if *m == hd.msgid {
                        self.io.send(local, remote, r);
                        self.io.stats.responses_resent += 1;
                        return;
                    }
                }
            }
            return self.io.dropped(remote, "IKE fragment outside the window");
        }
        let ongoing = sa
            .reassembly
            .as_ref()
            .is_some_and(|r| r.msgid == hd.msgid && r.response == response);
        if !ongoing {
            let had = sa.reassembly.take().is_some();
            if !had && self.reassemblies >= REASSEMBLIES_MAX {
                self.evict_oldest_reassembly();
            }
            if !had {
                self.reassemblies += 1;
            }
            let Some(sa) = self.sas.get_mut(h) else {
                return;
            };
            sa.reassembly = Some(Reassembling {
                msgid: hd.msgid,
                response,
                since: now,
                frags: Box::default(),
            });
            self.io.arm(h, sa);
        }
        let Some(sa) = self.sas.get_mut(h) else {
            return;
        };
        let Some(r) = sa.reassembly.as_mut() else {
            return;
        };
        self.io.stats.fragments_received += 1;
        match r.frags.add(number, total, first, plain) {
            Ok(Progress::Complete) => {}
            Ok(Progress::Incomplete | Progress::Duplicate) => return,
            // RFC 7383 §2.6: a fragment of an older fragmentation is dropped alone.
            Err(ReassemblyError::Stale) => {
                return self.io.dropped(remote, "IKE fragment: stale");
            }
            Err(e) => {
                sa.reassembly = None;
                self.reassemblies = self.reassemblies.saturating_sub(1);
                return self.io.dropped(remote, &format!("IKE fragment: {e:?}"));
            }
        }
        let Some(Reassembling { frags: r, .. }) = sa.reassembly.take() else {
            return;
        };
        self.reassemblies = self.reassemblies.saturating_sub(1);
        let mut whole = vec![0u8; 65536];
        let Ok((first, n)) = r.assemble(&mut whole) else {
            return self.io.dropped(remote, "IKE fragments do not assemble");
        };
        drop(r);
        match parse_payloads(first, &whole[..n]) {
            Ok(inner) => {
                self.io
                    .capture_clear((remote, local), hd, first, &whole[..n]);
                if response {
                    self.response(now, h, hd, &inner);
                } else {
                    self.request(now, h, hd, &inner, (local, remote));
                }
                self.heard_from(now, h);
            }
            Err(e) => self.answer_error(h, hd, (local, remote), &e),
        }
        zeroize::Zeroize::zeroize(&mut whole[..n]);
    }
}

/// The longest message to the peer of `sa` before it is fragmented (RFC 7383 §2.5.1).
pub(super) fn fragment_limit(io: &Io, sa: &IkeSa) -> usize {
    if io.fragment_size > 0 {
        return io.fragment_size;
    }
    let ip = if sa.info.remote.is_ipv4() {
        576 - 28
    } else {
        1280 - 48
    };
    if sa.info.local.port() == io.nat_port {
        ip - 4
    } else {
        ip
    }
}

/// The fragments of a message (RFC 7383 §2.5), one after the other: each an SKF of
/// its own under the same header, each at most `limit` bytes; the first carries the
/// first inner payload's type, the others none.
pub(super) fn seal_fragments(
    io: &mut Io,
    sa: &mut IkeSa,
    sk: &SkKeys,
    hdr: &Header,
    first: PayloadType,
    plain: &[u8],
    limit: usize,
) -> Result<Vec<u8>, Fail> {
    // The largest plaintext a fragment of `limit` bytes carries.
    let room = |n: usize| HEADER_LEN + 8 + sk.body_len(n) <= limit;
    let mut chunk = limit.saturating_sub(HEADER_LEN + 8);
    while chunk > 0 && !room(chunk) {
        chunk -= 1;
    }
    if chunk == 0 {
        return Err(Fail("fragment size too small"));
    }
    let total = plain.len().div_ceil(chunk);
    let total = u16::try_from(total).map_err(|_| Fail("too many fragments"))?;
    let mut out = Vec::with_capacity(usize::from(total) * limit);
    for (i, part) in plain.chunks(chunk).enumerate() {
        let number = i as u16 + 1;
        let iv = io.iv(sa, sk);
        let mut frag = vec![0u8; HEADER_LEN + 8 + sk.body_len(part.len())];
        let mut b = MessageBuilder::new(&mut frag, hdr)?;
        let next = if number == 1 {
            first
        } else {
            PayloadType::NONE
        };
        b.encrypted(next, Some((number, total)), |w| {
            sk.write_body(w, part, &iv).map_err(|_| NoRoom)
        })?;
        let n = b.finish()?;
        frag.truncate(n);
        sk.seal(&mut frag)?;
        out.extend_from_slice(&frag);
    }
    io.stats.fragments_sent += u64::from(total);
    Ok(out)
}
