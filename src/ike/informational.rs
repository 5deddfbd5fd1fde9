//! Informational exchanges (RFC 2408 §4.8, RFC 2409 §5.7; isakmpd exchange.c
//! `exchange_establish_p2` for INFO and ipsec.c `ipsec_handle_leftover_payload`):
//! protected notifications and DELETE payloads after phase 1, unprotected notifications
//! before it.
//!
//! A protected message is `HDR*, HASH(1), N/D` with a fresh message ID, the IV derived
//! from the last phase 1 block and that ID, and HASH(1) = prf(SKEYID_a, M-ID | N/D).

use std::net::SocketAddr;

use super::crypto::derive;
use super::exchange::{Kind, P1Step, State};
use super::sa::{hex, Handle, IsakmpSa};
use super::wire::{
    Doi, ExchangeType, Header, MessageBuilder, NotifyType, Payload, PayloadType, ProtocolId,
    Writer, HEADER_LEN,
};
use super::{Drop, Engine};
use crate::timer::Time;

impl Engine {
    /// Sends one protected informational payload over ISAKMP SA `sa`.
    fn send_protected_info(
        &mut self,
        sa: Handle,
        ty: PayloadType,
        body: &mut dyn FnMut(&mut Writer<'_>) -> Result<(), super::wire::NoRoom>,
    ) {
        let Some(s) = self.isakmp_sas.get(sa) else {
            return;
        };
        send_protected_info(s, &mut self.io, &mut self.scratch, ty, body);
    }

    /// `HDR*, HASH(1), <one payload>` of exchange `exchange` over ISAKMP SA `sa`, with
    /// HASH(1) = prf(SKEYID_a, M-ID | payload) (informational and mode-config alike),
    /// encrypted from `iv`; the payload's body is `body`. Returns the cleartext (for the capture), the message, and the
    /// IV that follows it.
    pub(crate) fn protected_message(
        &mut self,
        sa: Handle,
        exchange: ExchangeType,
        msgid: u32,
        iv: &super::crypto::Key,
        ty: PayloadType,
        body: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>, super::crypto::Key), String> {
        let s = self.isakmp_sas.get(sa).ok_or("phase 1 SA gone")?;
        let cipher = s.cipher;
        let mut buf = Vec::new();
        let ka = build_protected(s, &mut buf, exchange, msgid, ty, &mut |w| w.bytes(body))?;
        let clear = buf.clone();
        let next = Self::encrypt(cipher, ka.as_bytes(), iv, &mut buf)?;
        Ok((clear, buf, next))
    }

    /// DELETE for SPIs of `protocol` (for ISAKMP: the 16 bytes of both cookies).
    pub(crate) fn send_delete(&mut self, _now: Time, sa: Handle, protocol: ProtocolId, spi: &[u8]) {
        let spi = spi.to_vec();
        if let Some(s) = self.isakmp_sas.get(sa) {
            crate::log_info!("sending DELETE {protocol} {} to {}", hex(&spi), s.remote);
        }
        self.send_protected_info(sa, PayloadType::DELETE, &mut |w| {
            w.u32(Doi::IPSEC.0)?;
            w.u8(protocol.0)?;
            w.u8(spi.len() as u8)?;
            w.u16(1)?;
            w.bytes(&spi)
        });
    }

    /// A protected notification about phase 1 SA `sa` itself.
    pub(crate) fn send_notify(&mut self, _now: Time, sa: Handle, ty: NotifyType) {
        let Some(s) = self.isakmp_sas.get(sa) else {
            return;
        };
        crate::log_info!("sending notification {ty} to {}", s.remote);
        self.send_notify_data(sa, ty, &[]);
    }

    /// A protected notification about phase 1 SA `sa` with notification data (DPD).
    pub(crate) fn send_notify_data(&mut self, sa: Handle, ty: NotifyType, data: &[u8]) {
        let Some(s) = self.isakmp_sas.get(sa) else {
            return;
        };
        let cookies = (s.icookie, s.rcookie);
        self.send_protected_info(sa, PayloadType::NOTIFY, &mut |w| {
            isakmp_notify(w, cookies, ty, data)
        });
    }

    pub(crate) fn info_input(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Result<(), Drop> {
        if !hd.encrypted() {
            // Before keys exist: only notifications, believed as far as aborting the
            // exchange they name (isakmpd logs them and lets the exchange time out; we
            // end it at once so that both sides agree there is no SA).
            let m = Self::parse(data, false)?;
            self.io.capture(remote, local, data);
            for p in &m.payloads {
                if let Payload::Notify(n) = p.payload {
                    // Anybody can send these: a few lines, not one per datagram.
                    if self.unprotected_log.allow(now).is_some() {
                        crate::log_warn!("peer {remote} says {} (unprotected)", n.ty);
                    }
                    if n.ty.0 < 8192 {
                        // About the exchange of these cookies, or (isakmpd's refusal in
                        // an exchange of its own, fresh cookie and no responder cookie)
                        // the one its SPI names.
                        let about = self.exchanges.find(|x| {
                            x.kind != Kind::Quick
                                && x.icookie == hd.icookie
                                && (x.rcookie == hd.rcookie || x.rcookie == [0; 8])
                                && x.remote.ip() == remote.ip()
                        });
                        let named = || {
                            if hd.rcookie != [0; 8]
                                || n.protocol != ProtocolId::ISAKMP
                                || n.spi.len() != 16
                            {
                                return None;
                            }
                            let (i, r) = n.spi.split_at(8);
                            self.phase1_exchange_of(remote, i.try_into().ok()?, r.try_into().ok()?)
                        };
                        if let Some(h) = about.or_else(named) {
                            self.phase1_refused(now, h, n.ty);
                        }
                    }
                }
            }
            return Ok(());
        }
        let Some(sa) = self.isakmp_sas.by_cookies(hd.icookie, hd.rcookie) else {
            return self.info_during_phase1(now, (local, remote), hd, data);
        };
        let iv = {
            let s = self.isakmp_sas.get(sa).ok_or(Drop::Silent("gone"))?;
            derive::phase2_iv(s.hash, s.last_block(), hd.msgid, s.cipher.block_len())
        };
        // Decrypted in the engine's receive scratch: DPD and DELETE allocate nothing.
        let mut clear = std::mem::take(&mut self.rx);
        let r = self
            .open_hash1_into(&mut clear, sa, &iv, hd.msgid, (local, remote), data)
            .and_then(|_| self.info_protected(now, local, remote, hd, sa, &clear));
        self.rx = clear;
        r
    }

    /// The payloads of an informational message that came protected by ISAKMP SA `sa`.
    fn info_protected(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        hd: &Header,
        sa: Handle,
        clear: &[u8],
    ) -> Result<(), Drop> {
        self.peer_heard(now, sa, local, remote);
        let m = Self::parse(clear, true)?;
        let mut delete_p1 = false;
        let mut delete_p2 = Vec::new();
        for p in &m.payloads {
            match p.payload {
                Payload::Delete(d) => {
                    if d.protocol == ProtocolId::ISAKMP {
                        for spi in d.spis() {
                            if spi.len() == 16 && spi[..8] == hd.icookie && spi[8..] == hd.rcookie {
                                delete_p1 = true;
                            }
                        }
                    } else {
                        for spi in d.spis() {
                            if let Some(h) = self.ipsec_sas.find(|s| {
                                s.protocol == d.protocol
                                    && s.remote.ip() == remote.ip()
                                    && (s.spi_out[..] == *spi || s.spi_in[..] == *spi)
                            }) {
                                delete_p2.push(h);
                            } else {
                                crate::log_info!(
                                    "peer {remote} deletes unknown {} SPI {}",
                                    d.protocol,
                                    hex(spi)
                                );
                            }
                        }
                    }
                }
                Payload::Notify(n) => {
                    if self.dpd_notify(now, sa, n.ty, n.data) {
                        continue;
                    }
                    crate::log_warn!("peer {remote} says {}", n.ty);
                    // A failed quick mode: end our side of it.
                    if n.ty == NotifyType::NO_PROPOSAL_CHOSEN
                        || n.ty == NotifyType::INVALID_ID_INFORMATION
                    {
                        let qs: Vec<Handle> = self
                            .exchanges
                            .iter()
                            .filter(|(_, x)| {
                                x.kind == Kind::Quick
                                    && x.icookie == hd.icookie
                                    && x.rcookie == hd.rcookie
                            })
                            .map(|(h, _)| h)
                            .collect();
                        for q in qs {
                            self.io.stats.failed += 1;
                            self.free_exchange(q);
                        }
                    }
                }
                _ => {}
            }
        }
        for h in delete_p2 {
            // isakmpd's line (ipsec.c `ipsec_delete_spi_list`), for SAs not yet past
            // their soft lifetime.
            if let Some(s) = self
                .ipsec_sas
                .get(h)
                .filter(|s| s.soft_expiry.is_none_or(|t| t > now))
            {
                let show = |id: &super::policy::OwnedId| {
                    let mut b = Vec::with_capacity(4 + id.data.len());
                    b.extend_from_slice(&[id.ty.0, id.protocol]);
                    b.extend_from_slice(&id.port.to_be_bytes());
                    b.extend_from_slice(&id.data);
                    super::wire::IdPayload::parse(&b)
                        .ok()
                        .and_then(|p| p.identity().ok().map(|i| i.to_string()))
                        .unwrap_or_else(|| "<unknown>".into())
                };
                let (iid, rid) = if s.initiator {
                    (show(&s.local_id), show(&s.remote_id))
                } else {
                    (show(&s.remote_id), show(&s.local_id))
                };
                crate::log_info!(
                    "isakmpd: Peer {} made us delete live SA {} for proto {}, initiator id: {iid}, responder id: {rid}",
                    remote.ip(),
                    s.name,
                    s.protocol.0
                );
            }
            self.delete_ipsec_sa(now, h, false);
        }
        if delete_p1 {
            crate::log_info!(
                "peer {remote} deletes phase 1 SA {}{}",
                hex(&hd.icookie),
                hex(&hd.rcookie)
            );
            self.delete_isakmp_sa(now, sa, false);
        }
        Ok(())
    }
}

impl Engine {
    /// The peer refused phase 1 exchange `h` in an unprotected notification: the exchange
    /// ends. INVALID-COOKIE past message 1 means the responder lost its half of the
    /// exchange (a half-open one evicted under a flood of spoofed message 1, or a
    /// restart): an initiator starts over at once, once, rather than at the next
    /// Check-interval.
    pub(crate) fn phase1_refused(&mut self, now: Time, h: Handle, ty: NotifyType) {
        let Some(x) = self.exchanges.get(h) else {
            return;
        };
        let again = ty == NotifyType::INVALID_COOKIE
            && x.initiator
            && x.state != State::Phase1(P1Step::AwaitSa)
            && !x.restarted;
        crate::log_warn!(
            "{} with {} ended by the peer's notification{}",
            x.name(),
            x.remote,
            if again { "; starting again" } else { "" }
        );
        self.io.stats.failed += 1;
        if again {
            self.restart_phase1(now, h);
        } else {
            self.free_exchange(h);
        }
    }

    /// Ends phase 1 exchange `h` and starts it over once with new cookies, for the same
    /// peer and connection (the new exchange is marked so that it is not restarted).
    pub(crate) fn restart_phase1(&mut self, now: Time, h: Handle) {
        let Some(x) = self.exchanges.get(h) else {
            return;
        };
        let (peer, remote, connection) = (x.peer.clone(), x.remote, x.connection.clone());
        self.free_exchange(h);
        let Some(p) = self.policy.peer(&peer).cloned() else {
            return;
        };
        match self.start_main_mode(now, &p, remote, connection) {
            Ok(nh) => {
                if let Some(x) = self.exchanges.get_mut(nh) {
                    x.restarted = true;
                }
            }
            Err(e) => crate::log_warn!("phase 1 with {remote}: {e}"),
        }
    }
}

/// Sends one protected informational payload under the keys of phase 1 SA `s` (an
/// established one, or one made of an exchange that has its keys): a fresh message ID,
/// the IV derived from the last phase 1 block and that ID. Built in `buf` (the engine's
/// scratch): DPD and DELETE allocate nothing.
pub(crate) fn send_protected_info(
    s: &IsakmpSa,
    io: &mut super::io::Io,
    buf: &mut Vec<u8>,
    ty: PayloadType,
    body: &mut dyn FnMut(&mut Writer<'_>) -> Result<(), super::wire::NoRoom>,
) {
    let mut b4 = [0u8; 4];
    io.rng.fill(&mut b4);
    let msgid = u32::from_be_bytes(b4).max(1);
    let (local, remote, cipher) = (s.local, s.remote, s.cipher);
    let iv = derive::phase2_iv(s.hash, s.last_block(), msgid, cipher.block_len());
    let r = build_protected(s, buf, ExchangeType::INFO, msgid, ty, body);
    let r = r.and_then(|ka| {
        io.capture(local, remote, buf);
        Engine::encrypt(cipher, ka.as_bytes(), &iv, buf).map_err(|_| "encryption failed")
    });
    match r {
        Ok(_) => io.send(local, remote, buf),
        Err(e) => crate::log_error!("informational to {remote}: {e}"),
    }
}

/// `HDR, HASH(1), <one payload>` in the clear into `buf`, HASH(1) = prf(SKEYID_a,
/// M-ID | payload), under phase 1 SA `s`; returns the key to encrypt it with.
fn build_protected(
    s: &IsakmpSa,
    buf: &mut Vec<u8>,
    exchange: ExchangeType,
    msgid: u32,
    ty: PayloadType,
    body: &mut dyn FnMut(&mut Writer<'_>) -> Result<(), super::wire::NoRoom>,
) -> Result<super::crypto::Key, &'static str> {
    let hd = Header {
        icookie: s.icookie,
        rcookie: s.rcookie,
        major: 1,
        exchange,
        msgid,
        ..Header::default()
    };
    let hlen = s.hash.output_len();
    buf.clear();
    buf.resize(2048, 0);
    let n = (|| {
        let mut b = MessageBuilder::new(buf, &hd)?;
        b.payload(PayloadType::HASH, |w| w.bytes(&[0u8; 64][..hlen]))?;
        b.payload(ty, |w| body(w))?;
        b.finish()
    })()
    .map_err(|_| "message too large")?;
    buf.truncate(n);
    let start = HEADER_LEN + 4 + hlen;
    let h1 = derive::info_hash(s.hash, s.skeyid_a(), msgid, &buf[start..]);
    buf[HEADER_LEN + 4..start].copy_from_slice(h1.as_bytes());
    Ok(super::crypto::Key::from_slice(s.ka()).unwrap_or_default())
}

/// The body of a notification about phase 1 SA `s` (its cookies as the SPI).
pub(crate) fn isakmp_notify(
    w: &mut Writer<'_>,
    (icookie, rcookie): ([u8; 8], [u8; 8]),
    ty: NotifyType,
    data: &[u8],
) -> Result<(), super::wire::NoRoom> {
    w.u32(Doi::IPSEC.0)?;
    w.u8(ProtocolId::ISAKMP.0)?;
    w.u8(16)?;
    w.u16(ty.0)?;
    w.bytes(&icookie)?;
    w.bytes(&rcookie)?;
    w.bytes(data)
}
