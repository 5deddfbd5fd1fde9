#![forbid(unsafe_code)]

//! The timers (one per IKE SA, at its earliest deadline): reassemblies given up, SA
//! lifetimes (lifetime.rs), NAT-keepalives, half-open expiry, liveness checks, and our
//! requests retransmitted with exponential back-off until the count runs out.

use super::*;

impl Engine {
    pub fn handle_timeout(&mut self, now: Time) {
        self.io.now = now;
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.io.timers.expire(now, |_, h| fired.push(h));
        for &h in &fired {
            let Some(sa) = self.sas.get_mut(h) else {
                continue;
            };
            sa.timer = None;
            self.expire_reassembly(now, h);
            self.lifetimes(now, h);
            let Some(sa) = self.sas.get_mut(h) else {
                continue;
            };
            if sa.keepalive_at.is_some_and(|t| t <= now) {
                // RFC 3948 §2.3: one 0xFF byte, no non-ESP marker.
                sa.keepalive_at = Some(now.add_secs(self.config.nat_keepalive_secs));
                self.io
                    .outbox
                    .push(sa.info.local, sa.info.remote, &[], &[0xff]);
                self.io.stats.nat_keepalives += 1;
            }
            if sa.expires.is_some_and(|t| t <= now) {
                self.io.stats.half_open_expired += 1;
                self.delete(h, "no IKE_AUTH in time");
                continue;
            }
            if sa.idle.is_some_and(|t| t <= now) {
                // Nothing from the peer for a while: ask, unless a request of ours is
                // already waiting for an answer (which asks the same).
                sa.idle = None;
                if sa.request.is_none() && sa.queued.is_empty() {
                    self.io.stats.liveness_checks += 1;
                    log::debug!("ikev2: {} {}: liveness check", sa.info.peer, sa.info.remote);
                    self.start_request(now, h, Req::Liveness);
                    continue;
                }
            }
            if let Some(r) = sa.request.as_mut().filter(|r| r.at <= now) {
                if r.xmits >= self.config.retransmits {
                    if !sa.deleted_by_peer {
                        self.io.stats.failed += 1;
                    }
                    if r.what == Req::Liveness {
                        self.io.stats.dead_peers += 1;
                    }
                    self.delete(h, "no answer from the peer");
                    continue;
                }
                r.xmits += 1;
                let delay = self
                    .config
                    .retransmit_ms
                    .saturating_mul(1 << r.xmits.min(16));
                r.at = now.add_millis(delay);
                self.io.stats.retransmits += 1;
                let (local, remote) = (sa.info.local, sa.info.remote);
                let data = std::mem::take(&mut r.data);
                self.io.send(local, remote, &data);
                r.data = data;
            }
            self.io.arm(h, sa);
        }
        self.fired = fired;
    }
}
