//! What the engine asks of the kernel and what becomes of the answers: requests nobody
//! waits for (deletions), requests an exchange waits for (SPIs, installs; the exchange
//! resumes when the last answer is in), and failures (the exchange is abandoned and the
//! peer never hears of an SA our kernel does not carry).

use super::exchange::{self, Resume, Wait};
use super::sa::{Handle, KernelReply, KernelReq};
use super::{Drop, Engine};
use crate::timer::Time;

impl Engine {
    /// Whether a kernel answers our requests (reserves SPIs, confirms installs), so that
    /// exchanges wait for it; with `-n` nothing answers and the engine picks SPIs itself.
    pub(crate) fn kernel_answers(&self) -> bool {
        self.io.kernel_answers
    }

    /// A kernel request exchange `h` waits for; without a kernel that answers, it counts
    /// as done at once.
    pub(crate) fn kernel_wait(&mut self, h: Handle, wait: exchange::Wait, req: KernelReq) {
        if let Some(x) = self.exchanges.get_mut(h) {
            self.io.kernel_wait(x, wait, req);
        }
    }

    /// The kernel's answer to a request an exchange waits for: the exchange continues
    /// once every answer is in, or fails on the first refusal (see
    /// [`Self::kernel_refused`]). An answer nobody waits for any more is ignored.
    pub fn kernel_reply(&mut self, now: Time, ticket: u32, reply: KernelReply) {
        let Some(h) = self
            .exchanges
            .find(|x| x.qm.kernel.pending.iter().any(|(t, _)| *t == ticket))
        else {
            crate::ike_debug!(
                crate::log::DebugClass::Sysdep,
                30,
                "kernel: answer {ticket} for no exchange: {reply:?}"
            );
            if let KernelReply::Spi(_) = reply {
                // An SPI reserved for an exchange that has gone: the kernel drops the
                // larval state by itself (its acquire timeout).
            }
            return;
        };
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        let Some(pos) = x.qm.kernel.pending.iter().position(|(t, _)| *t == ticket) else {
            return;
        };
        let (_, wait) = x.qm.kernel.pending.remove(pos);
        match (wait, reply) {
            (Wait::Spi(i), KernelReply::Spi(spi)) => {
                let protocol = if x.initiator {
                    x.qm.offered_spis.get_mut(i).map(|s| {
                        s.2 = spi;
                        s.1
                    })
                } else {
                    x.qm.chosen.get_mut(i).map(|c| {
                        c.spi_in = spi;
                        c.protocol
                    })
                };
                match protocol {
                    Some(p) => x.qm.reserved.push((p, spi)),
                    None => {
                        x.qm.kernel
                            .error
                            .get_or_insert("SPI for no proposal".into());
                    }
                }
            }
            (Wait::Install, KernelReply::Done) => {}
            (_, KernelReply::Failed(e)) => {
                x.qm.kernel.error.get_or_insert(e);
            }
            (w, r) => {
                x.qm.kernel
                    .error
                    .get_or_insert(format!("kernel answered {r:?} to {w:?}"));
            }
        }
        if !x.qm.kernel.pending.is_empty() {
            return;
        }
        if let Some(e) = x.qm.kernel.error.take() {
            self.kernel_refused(now, h, &e);
            return;
        }
        match x.qm.kernel.then.take() {
            Some(Resume::SendMessage1) => {
                if let Err(e) = self.qm_send_1(now, h) {
                    crate::log_warn!("quick mode: {e}");
                    self.io.stats.failed += 1;
                    self.free_exchange(h);
                }
            }
            Some(Resume::BuildMessage2) => {
                if let Err(e) = self.qm_send_2(now, h) {
                    let (Drop::Silent(e) | Drop::Notify(_, e) | Drop::Told(_, e)) = e;
                    crate::log_warn!("quick mode: {e}");
                    self.io.stats.failed += 1;
                    self.free_exchange(h);
                }
            }
            Some(then @ (Resume::SendMessage2 { .. } | Resume::SendMessage3 { .. })) => {
                self.send_held(now, h, then)
            }
            Some(Resume::Finish) => self.phase2_up(now, h),
            r => {
                crate::ike_debug!(
                    crate::log::DebugClass::Sysdep,
                    10,
                    "kernel: nothing to resume ({r:?})"
                );
            }
        }
    }

    /// The kernel refused (or never answered) something an exchange needs: the exchange
    /// ends without sending the message that would make the peer believe in SAs we do
    /// not have. SAs already entered go (the responder of a finished exchange tells its
    /// peer, which believes in them); whatever reached the kernel is taken back.
    fn kernel_refused(&mut self, now: Time, h: Handle, why: &str) {
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        crate::log_error!(
            "{} with {}: kernel: {why}; exchange abandoned",
            x.name(),
            x.remote
        );
        let committed = std::mem::take(&mut x.qm.committed);
        let tell = !x.initiator;
        self.io.stats.failed += 1;
        for ih in committed {
            self.delete_ipsec_sa(now, ih, tell);
        }
        self.free_exchange(h);
    }
}
