//! Dead peer detection (RFC 3706; isakmpd dpd.c).
//!
//! Both sides announce DPD with its vendor ID in the first two messages of phase 1. With
//! `[General] DPD-check-interval` above 0, an ISAKMP SA whose peer announced it is
//! watched: after that many seconds without a protected message from the peer we send
//! R-U-THERE (a protected notification on the ISAKMP SA with a sequence number), every
//! 5 seconds up to 5 times (isakmpd's DPD_RETRANS_WAIT and DPD_RETRANS_MAX); an
//! R-U-THERE-ACK with the number ends the worry. A peer that never answers is dead: its
//! ISAKMP SA and every IPsec SA with it go (from the kernel too, but without DELETE
//! messages nobody would read), and the configured connections are started again.
//!
//! isakmpd skips the R-U-THERE when the kernel saw inbound IPsec traffic in the interval;
//! we do not read the kernel's counters, so a quiet IKE peer is asked even while ESP
//! flows (RFC 3706 §5.5 allows either).

use super::sa::{hex, Handle};
use super::wire::{self, Message, NotifyType, Payload};
use super::{Engine, TimerKind};
use crate::log::DebugClass;
use crate::timer::Time;

/// Seconds between R-U-THEREs while no ACK comes.
pub const RETRY_SECS: u64 = 5;
/// R-U-THEREs without an ACK after which the peer is dead.
pub const MAX_TRIES: u8 = 5;

/// Whether a phase 1 message carries the RFC 3706 vendor ID (its last two bytes are the
/// version, which we do not insist on).
pub fn offers_dpd(m: &Message<'_>) -> bool {
    m.payloads.iter().any(|p| match p.payload {
        Payload::Vendor(v) => v.len() == 16 && v[..14] == wire::VID_DPD[..14],
        _ => false,
    })
}

impl Engine {
    /// A new ISAKMP SA: the first check after one interval.
    pub(crate) fn dpd_start(&mut self, now: Time, h: Handle) {
        let interval = self.policy.dpd_interval;
        let Some(sa) = self.isakmp_sas.get(h) else {
            return;
        };
        if interval == 0 || !sa.dpd.peer {
            return;
        }
        self.arm_sa_timer(now.add_secs(interval), TimerKind::Dpd(h));
    }

    /// A protected message from the peer of `h` was accepted.
    pub(crate) fn dpd_heard(&mut self, now: Time, h: Handle) {
        if let Some(sa) = self.isakmp_sas.get_mut(h) {
            sa.dpd.heard = now;
        }
    }

    pub(crate) fn dpd_timer(&mut self, now: Time, h: Handle) {
        let interval = self.policy.dpd_interval;
        let Some(sa) = self.isakmp_sas.get_mut(h) else {
            return;
        };
        if interval == 0 {
            sa.dpd.tries = 0;
            return;
        }
        if self.io.passive {
            // A carp backup neither asks nor buries anybody; look again later.
            sa.dpd.tries = 0;
            self.arm_sa_timer(now.add_secs(interval), TimerKind::Dpd(h));
            return;
        }
        let quiet_since = sa.dpd.heard.add_secs(interval);
        if sa.dpd.tries == 0 && now < quiet_since {
            // Heard from recently: look again when the interval has passed since.
            self.arm_sa_timer(quiet_since, TimerKind::Dpd(h));
            return;
        }
        if sa.dpd.tries >= MAX_TRIES {
            let remote = sa.remote;
            crate::log_warn!(
                "dead peer detection: {remote} did not answer {MAX_TRIES} R-U-THERE messages; \
                 deleting its SAs"
            );
            self.io.stats.dpd_dead += 1;
            self.peer_dead(now, h);
            return;
        }
        // RFC 3706 §7: a fresh number for every R-U-THERE, the first one random (with
        // the top bit clear, leaving room to count).
        if sa.dpd.tries == 0 && sa.dpd.seq == 0 {
            let mut b = [0u8; 4];
            self.io.rng.fill(&mut b);
            let Some(sa) = self.isakmp_sas.get_mut(h) else {
                return;
            };
            sa.dpd.seq = (u32::from_be_bytes(b) & 0x7fff_ffff).max(1);
        } else if let Some(sa) = self.isakmp_sas.get_mut(h) {
            sa.dpd.seq = sa.dpd.seq.wrapping_add(1);
        }
        let Some(sa) = self.isakmp_sas.get_mut(h) else {
            return;
        };
        sa.dpd.tries += 1;
        let (seq, remote, tries) = (sa.dpd.seq, sa.remote, sa.dpd.tries);
        crate::ike_debug!(
            DebugClass::Exchange,
            10,
            "dead peer detection: R-U-THERE {seq} to {remote} (try {tries})"
        );
        self.io.stats.dpd_sent += 1;
        self.send_notify_data(h, NotifyType::R_U_THERE, &seq.to_be_bytes());
        self.arm_sa_timer(now.add_secs(RETRY_SECS), TimerKind::Dpd(h));
    }

    /// R-U-THERE and R-U-THERE-ACK on ISAKMP SA `h` (already verified); true when `ty`
    /// was one of them.
    pub(crate) fn dpd_notify(&mut self, now: Time, h: Handle, ty: NotifyType, data: &[u8]) -> bool {
        if ty != NotifyType::R_U_THERE && ty != NotifyType::R_U_THERE_ACK {
            return false;
        }
        let Ok(seq) = <[u8; 4]>::try_from(data).map(u32::from_be_bytes) else {
            crate::log_warn!("dead peer detection: {ty} without a 4-byte sequence number, ignored");
            return true;
        };
        if ty == NotifyType::R_U_THERE {
            crate::ike_debug!(
                DebugClass::Exchange,
                10,
                "dead peer detection: R-U-THERE {seq}, answering"
            );
            self.send_notify_data(h, NotifyType::R_U_THERE_ACK, &seq.to_be_bytes());
            return true;
        }
        let Some(sa) = self.isakmp_sas.get_mut(h) else {
            return true;
        };
        // An ACK for any R-U-THERE of this round will do (an earlier one may have been
        // slow rather than lost).
        let first = sa
            .dpd
            .seq
            .wrapping_sub(u32::from(sa.dpd.tries.saturating_sub(1)));
        if sa.dpd.tries > 0 && seq.wrapping_sub(first) < u32::from(sa.dpd.tries) {
            sa.dpd.tries = 0;
            sa.dpd.heard = now;
            self.io.stats.dpd_acked += 1;
        } else {
            crate::ike_debug!(
                DebugClass::Exchange,
                10,
                "dead peer detection: unexpected R-U-THERE-ACK {seq} from {}",
                sa.remote
            );
        }
        true
    }

    /// The peer of ISAKMP SA `h` is gone: its SAs go, the connections come back.
    fn peer_dead(&mut self, now: Time, h: Handle) {
        let Some(sa) = self.isakmp_sas.get(h) else {
            return;
        };
        let remote = sa.remote.ip();
        let p1: Vec<Handle> = self
            .isakmp_sas
            .iter()
            .filter(|(_, s)| s.remote.ip() == remote)
            .map(|(h, _)| h)
            .collect();
        let p2: Vec<Handle> = self
            .ipsec_sas
            .iter()
            .filter(|(_, s)| s.remote.ip() == remote)
            .map(|(h, _)| h)
            .collect();
        for h in p2 {
            self.delete_ipsec_sa(now, h, false);
        }
        for h in p1 {
            if let Some(s) = self.isakmp_sas.get(h) {
                crate::ike_debug!(
                    DebugClass::Exchange,
                    10,
                    "dead peer detection: dropping phase 1 SA {}{}",
                    hex(&s.icookie),
                    hex(&s.rcookie)
                );
            }
            self.delete_isakmp_sa(now, h, false);
        }
        self.start_connections(now);
    }
}
