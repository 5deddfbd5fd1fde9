//! What the exchanges over an ISAKMP SA share (Quick Mode, informational, mode-config):
//! the protected message (decrypted under the SA's keys, HASH first and checked), the
//! outcome of a fresh phase 2 message, and the IPsec SAs a Quick Mode exchange agreed on:
//! KEYMAT, into the table and to the kernel, and the exchange finished once the kernel
//! holds them.

use crate::ike::crypto::SecretParts;
use std::net::SocketAddr;

use super::auth::same;
use super::crypto::{derive, HashAlg, Key};
use super::exchange::{Exchange, Wait};
use super::io::Io;
use super::policy::OwnedId;
use super::sa::{Handle, IpsecSa, IsakmpSa, KernelReq, Part};
use super::wire::{Header, NotifyType, Payload, HEADER_LEN};
use super::{Drop, Engine, TimerKind};
use crate::timer::Time;

impl Engine {
    /// The ISAKMP SA a message of a phase 2 exchange (Quick Mode, mode-config) runs
    /// over; such a message needs a message ID.
    pub(crate) fn phase2_sa(&self, hd: &Header) -> Result<Handle, Drop> {
        let sa = self
            .isakmp_sas
            .by_cookies(hd.icookie, hd.rcookie)
            .ok_or(Drop::Silent("message for no known phase 1 SA"))?;
        if hd.msgid == 0 {
            return Err(Drop::Silent("phase 2 message with message ID 0"));
        }
        Ok(sa)
    }

    /// A protected message whose first payload is HASH(1) = prf(SKEYID_a, M-ID | the
    /// rest) (Quick Mode's message 1, informational, mode-config): decrypted from `iv`,
    /// checked and captured. Returns the cleartext and the IV that follows it.
    pub(crate) fn open_hash1(
        &mut self,
        sa: Handle,
        iv: &Key,
        msgid: u32,
        addrs: (SocketAddr, SocketAddr),
        data: &[u8],
    ) -> Result<(Vec<u8>, Key), Drop> {
        let mut buf = Vec::new();
        let next = self.open_hash1_into(&mut buf, sa, iv, msgid, addrs, data)?;
        Ok((buf, next))
    }

    /// [`Self::open_hash1`] into `buf` (its room reused).
    pub(crate) fn open_hash1_into(
        &mut self,
        buf: &mut Vec<u8>,
        sa: Handle,
        iv: &Key,
        msgid: u32,
        addrs: (SocketAddr, SocketAddr),
        data: &[u8],
    ) -> Result<Key, Drop> {
        let s = self
            .isakmp_sas
            .get(sa)
            .ok_or(Drop::Silent("phase 1 SA gone"))?;
        open_hash1_into(s, &mut self.io, buf, (iv, msgid), addrs, data)
    }

    /// What a fresh phase 2 message over `sa` (from `addrs.1` to `addrs.0`) came to: the
    /// peer was heard if it was good; a refusal with a notification is logged and told to
    /// the peer in a protected one (isakmpd's message_drop), and ends there.
    pub(crate) fn phase2_outcome(
        &mut self,
        now: Time,
        sa: Handle,
        (local, remote): (SocketAddr, SocketAddr),
        what: &str,
        r: Result<(), Drop>,
    ) -> Result<(), Drop> {
        match r {
            Ok(()) => {
                self.peer_heard(now, sa, local, remote);
                Ok(())
            }
            Err(Drop::Notify(n, why)) => {
                // An authenticated peer may ask again and again: policy refusals are
                // logged a few times per period.
                if why != super::policy_attrs::POLICY_REFUSED
                    || self.policy_log.allow(now).is_some()
                {
                    crate::log_warn!("{what} with {remote}: {why}");
                }
                self.io.stats.failed += 1;
                self.send_notify(now, sa, n);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Both sides, on the last message: KEYMAT, the SAs into the table and to the kernel
    /// (the exchange waits for the kernel's confirmation when it gives one).
    pub(crate) fn phase2_commit(&mut self, now: Time, h: Handle) -> Result<(), Drop> {
        let spi_from_kernel = self.kernel_answers();
        let x = self.exchanges.get_mut(h).ok_or(Drop::Silent("gone"))?;
        let s =
            x.sa.and_then(|sa| self.isakmp_sas.get(sa))
                .ok_or(Drop::Silent("phase 1 SA gone"))?;
        let made = agreed_sas(x, s, now, spi_from_kernel)?;
        x.qm.gxy = None;
        x.qm.reserved.clear();
        let part = if std::mem::take(&mut x.qm.pending_in).is_empty() {
            Part::Both
        } else {
            Part::Outbound
        };
        let name = x.connection.clone().unwrap_or_default();
        // A rekeying initiator: the responder may install the new SA only when message 3
        // reaches it (charon, pluto and C isakmpd do), and the kernel sends on the newest
        // outbound SA at once. So the new outbound half waits for twice message 1's
        // round trip; the old SA carries the traffic meanwhile.
        let (lo, hi) = super::REKEY_PAUSE_MS;
        let pause =
            x.qm.sent1
                .filter(|_| x.initiator && part == Part::Both)
                .map(|t| (2 * t.until(now)).clamp(lo, hi));
        for mut sa in made {
            let replaces: Vec<u64> = self
                .ipsec_sas
                .same_flows(&sa)
                .map(|(_, o)| o.kbytes)
                .collect();
            // Not for the first SA of a flow (nothing to protect), nor for the
            // replacement of a byte-limited SA, which the kernel may remove by itself
            // at any moment.
            let wait = pause.filter(|_| !replaces.is_empty() && replaces.iter().all(|k| *k == 0));
            sa.outbound_pending = wait.is_some();
            // isakmpd sa.c: the soft timeout falls at 85-95 % of the lifetime, random so
            // that the two peers do not both rekey at the same instant.
            if sa.lifetime > 0 {
                let permille = self.soft_permille();
                sa.soft_expiry = Some(now.add_millis(sa.lifetime.saturating_mul(permille)));
            }
            let (hard, soft) = (sa.hard_expiry, sa.soft_expiry);
            let this_part = if sa.outbound_pending {
                Part::Inbound
            } else {
                part
            };
            self.kernel_wait(
                h,
                Wait::Install,
                KernelReq::AddSa(Box::new(sa.clone()), this_part),
            );
            match self.ipsec_sas.insert(sa) {
                Some(ih) => {
                    if let Some(ms) = wait {
                        self.arm_sa_timer(now.add_millis(ms), TimerKind::IpsecOutbound(ih));
                    }
                    if let Some(t) = hard {
                        self.arm_sa_timer(t, TimerKind::IpsecExpire(ih));
                    }
                    if let Some(t) = soft {
                        self.arm_sa_timer(t, TimerKind::IpsecSoft(ih));
                    }
                    if let Some(x) = self.exchanges.get_mut(h) {
                        x.qm.committed.push(ih);
                    }
                }
                None => crate::log_error!("IPsec SA table full: SA of {name} not kept"),
            }
        }
        Ok(())
    }

    /// Both sides, once the kernel holds the SAs: the log lines, the exchange finished.
    pub(crate) fn phase2_up(&mut self, now: Time, h: Handle) {
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        let committed = std::mem::take(&mut x.qm.committed);
        let (initiator, local, remote) = (x.initiator, x.local, x.remote);
        for ih in committed {
            if let Some(sa) = self.ipsec_sas.get(ih) {
                crate::log_info!("phase 2 SA {} up: {}", sa.name, sa.describe());
            }
        }
        self.io.stats.phase2_done += 1;
        // isakmpd's wording (ipsec.c): the initiator's line names no role.
        super::log_done(format_args!(
            "isakmpd: quick mode done{}: src: {} dst: {}",
            if initiator { "" } else { " (as responder)" },
            local.ip(),
            remote.ip()
        ));
        self.finish_exchange(now, h);
    }
}

/// Decrypts a protected message under ISAKMP SA `s` from `iv` into `buf` (its room
/// reused) and checks that HASH comes first: returns the next IV, the range of the hashed
/// data and the range of the HASH payload's data.
pub(crate) fn open_protected_into(
    s: &IsakmpSa,
    buf: &mut Vec<u8>,
    iv: &Key,
    data: &[u8],
) -> Result<(Key, std::ops::Range<usize>, std::ops::Range<usize>), Drop> {
    if data[19] & super::wire::FLAG_ENCRYPTION == 0 {
        return Err(Drop::Silent(
            "cleartext message where encryption is required",
        ));
    }
    buf.clear();
    buf.extend_from_slice(data);
    let next = Engine::decrypt(s.cipher, s.ka(), iv, buf)?;
    let (hash_len, trailing) = {
        let m = Engine::parse(buf, true)?;
        let first = m
            .payloads
            .first()
            .ok_or(Drop::Notify(NotifyType::PAYLOAD_MALFORMED, "empty message"))?;
        let Payload::Hash(hash) = first.payload else {
            return Err(Drop::Notify(
                NotifyType::INVALID_HASH_INFORMATION,
                "first payload is not HASH",
            ));
        };
        (hash.len(), m.trailing.len())
    };
    let start = HEADER_LEN + 4 + hash_len;
    let end = buf.len() - trailing;
    Ok((next, start..end, HEADER_LEN + 4..start))
}

/// A protected message opened: the cleartext, the next IV, the range of the hashed data
/// and the hash.
pub(crate) type Opened = (Vec<u8>, Key, std::ops::Range<usize>, Vec<u8>);

/// [`open_protected_into`] a new buffer.
pub(crate) fn open_protected(s: &IsakmpSa, iv: &Key, data: &[u8]) -> Result<Opened, Drop> {
    let mut buf = Vec::new();
    let (next, range, hash) = open_protected_into(s, &mut buf, iv, data)?;
    let got = buf[hash].to_vec();
    Ok((buf, next, range, got))
}

/// Quick Mode: KEYMAT and the IPsec SAs exchange `x` agreed on over ISAKMP SA `s` (both
/// sides; the responder makes them for message 2 and again for message 3).
pub(crate) fn agreed_sas(
    x: &mut Exchange,
    s: &IsakmpSa,
    now: Time,
    spi_from_kernel: bool,
) -> Result<Vec<IpsecSa>, Drop> {
    let encap = s
        .nat_t
        .filter(|n| n.detected())
        .map(|_| (x.local.port(), x.remote.port()));
    if x.qm.gxy.is_none() {
        if let Some(dh) = &x.dh {
            let peer = if x.initiator { &x.gxr } else { &x.gxi };
            x.qm.gxy = Some(dh.shared_secret(peer).map_err(|_| {
                Drop::Notify(
                    NotifyType::INVALID_KEY_INFORMATION,
                    "PFS KE is not a valid public value",
                )
            })?);
        }
    }
    x.dh = None;
    let gxy = x.qm.gxy.as_ref();
    let hash: HashAlg = s.hash;
    let name = x.connection.clone().unwrap_or_default();
    let mut made = Vec::new();
    for c in &x.qm.chosen {
        let el = super::ipsec_alg::enc_key_len(c.protocol, c.transform, c.key_bits).ok_or(
            Drop::Notify(NotifyType::NO_PROPOSAL_CHOSEN, "transform not supported"),
        )?;
        let al =
            super::ipsec_alg::auth_key_len(c.protocol, c.transform, c.auth).ok_or(Drop::Notify(
                NotifyType::NO_PROPOSAL_CHOSEN,
                "authentication algorithm not supported",
            ))?;
        let g = gxy.as_ref().map(|g| g.as_bytes());
        let km = |spi: &[u8; 4]| {
            derive::keymat(
                hash,
                s.skeyid_d(),
                g,
                c.protocol.0,
                spi,
                &x.ni,
                &x.nr,
                el + al,
            )
        };
        let (kin, kout) = (km(&c.spi_in), km(&c.spi_out));
        let (Some(kin), Some(kout)) = (kin, kout) else {
            return Err(Drop::Silent("KEYMAT too long"));
        };
        made.push(IpsecSa {
            timers: Default::default(),
            name: name.clone(),
            icookie: x.icookie,
            rcookie: x.rcookie,
            msgid: x.msgid,
            initiator: x.initiator,
            local: x.local,
            remote: x.remote,
            protocol: c.protocol,
            transform: c.transform,
            auth: c.auth,
            encapsulation: c.encapsulation,
            key_bits: c.key_bits,
            pfs: x.qm.pfs,
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            keymat: SecretParts::new([kin.as_bytes(), kout.as_bytes()]),
            enc_key_len: el,
            auth_key_len: al,
            local_id: x
                .qm
                .local_id
                .clone()
                .unwrap_or_else(|| OwnedId::address(x.local.ip())),
            remote_id: x
                .qm
                .remote_id
                .clone()
                .unwrap_or_else(|| OwnedId::address(x.remote.ip())),
            established: now,
            lifetime: c.lifetime,
            kbytes: c.kbytes,
            hard_expiry: (c.lifetime > 0).then(|| now.add_secs(c.lifetime)),
            soft_expiry: None,
            rekeyed: false,
            spi_from_kernel,
            encap,
            outbound_pending: false,
            more_flows: Vec::new(),
            peer_oa: x
                .qm
                .peer_oa
                .filter(|_| super::nat_t::udp_transport(c.encapsulation)),
        });
    }
    Ok(made)
}

/// Responder, as it sends message 2: the inbound halves to the kernel, so that the
/// initiator, which may send on the new SAs as soon as message 2 arrives, never
/// sends what we cannot decrypt.
pub(crate) fn install_inbound(
    x: &mut Exchange,
    s: &IsakmpSa,
    io: &mut Io,
    now: Time,
) -> Result<(), Drop> {
    let made = agreed_sas(x, s, now, io.kernel_answers)?;
    for sa in &made {
        io.kernel_wait(
            x,
            Wait::Install,
            KernelReq::AddSa(Box::new(sa.clone()), Part::Inbound),
        );
    }
    x.qm.reserved.clear();
    x.qm.pending_in = made;
    Ok(())
}

/// A protected message under ISAKMP SA `s` whose first payload is HASH(1) = prf(SKEYID_a,
/// M-ID | the rest) (Quick Mode's message 1, informational, mode-config): decrypted from
/// `iv` into `buf`, checked, and captured. Returns the IV that follows it.
pub(crate) fn open_hash1_into(
    s: &IsakmpSa,
    io: &mut Io,
    buf: &mut Vec<u8>,
    (iv, msgid): (&Key, u32),
    (local, remote): (SocketAddr, SocketAddr),
    data: &[u8],
) -> Result<Key, Drop> {
    let (next, range, got) = open_protected_into(s, buf, iv, data)?;
    let want = derive::qm_hash1(s.hash, s.skeyid_a(), msgid, &buf[range]);
    if !same(want.as_bytes(), &buf[got]) {
        return Err(Drop::Silent("HASH(1) does not verify"));
    }
    io.capture(remote, local, buf);
    Ok(next)
}
