#![forbid(unsafe_code)]

//! The kernel side of CHILD_SAs (issue 16), through the IKEv1 engine's request interface
//! (`crate::ike::sa::{KernelReq, KernelOp, KernelReply}`), so that the daemon drives both
//! engines alike: [`Engine::poll_kernel`] hands out requests, [`Engine::kernel_reply`]
//! takes the answers back by ticket.
//!
//! The rule is "nothing announced before it is installed" (RFC 7296 §2.9 leaves the
//! timing to us; iked and charon do the same):
//!
//! - Our inbound ESP SPI is reserved by the kernel (GetSpi) before we send it: the
//!   initiator before IKE_AUTH or CREATE_CHILD_SA goes out, the responder before its
//!   answer. The exchange parks its half-built step in [`Wait`] and resumes when the
//!   answer comes.
//! - A responder installs both halves of a new CHILD_SA before the response that
//!   announces it; an initiator when the response arrives, and only then counts the
//!   CHILD_SA as made. After a rekey the old CHILD_SA is deleted only once the new one is
//!   in, so traffic never lacks an SA.
//! - A refusal abandons the CHILD_SA: a responder answers with an error notify instead
//!   (NO_PROPOSAL_CHOSEN in IKE_AUTH, one of those §1.2 lists as leaving the IKE SA up;
//!   TEMPORARY_FAILURE in CREATE_CHILD_SA, §2.25), an initiator deletes it at the peer
//!   with an INFORMATIONAL (§1.4.1). Whatever may have reached the kernel is deleted.
//! - Every CHILD_SA that goes (either side's Delete, with its IKE SA, a dead peer,
//!   shutdown) is deleted from the kernel in both directions; its flows stay while
//!   another CHILD_SA of the same selectors (a rekey's replacement) uses them. Reserved
//!   SPIs no CHILD_SA came to use go back with DeleteSpi.
//!
//! Without a kernel that answers ([`Config::kernel_answers`] false, the daemon's -n) SPIs
//! come from the random source and an install counts as done at once; the requests are
//! still queued, for the event loop to record.
//!
//! A CHILD_SA becomes an [`IpsecSa`] (ESP, tunnel mode; UDP-encapsulated when a NAT was
//! detected): IKEv2's ENCR ids for ESP are the IPsec DOI's ESP transform ids (AES-CBC 12,
//! AES-GCM-16 20), its INTEG ids are not the DOI's authentication algorithms and are
//! converted. Its flows are the policy's pairs of selectors (iked.conf's `from ... to ...`)
//! narrowed to those negotiated, all with the reqid of the first, so that one CHILD_SA
//! serves them all. A policy's flows can also be loaded without an SA
//! ([`Engine::load_flows`], iked's flows at startup): a CHILD_SA leaves those in place
//! when it goes. It carries the CHILD_SA's lifetime (lifetime.rs):
//! `crate::kernel` gives the kernel the hard lifetime plus a margin as a backstop (the
//! engine rekeys and deletes by time itself) and the byte limit, soft at 90 %; the
//! kernel's EXPIREs come back through [`Engine::handle_expire`].

use super::*;
use crate::ike::crypto::{AeadAlg, Keymat, SecretParts};
use crate::ike::ipsec_alg;
use crate::ike::policy::OwnedId;
use crate::ike::wire::{
    AuthAlgorithm, EncapsulationMode, EspTransform, IdType as V1IdType, ProtocolId as V1Protocol,
};
use crate::ikev2::policy::flow_pairs;

/// Set in every ticket of ours: the IKEv1 engine's count up from 1, so a daemon running
/// both over one `crate::kernel::Kernel` hands an answer with this bit to this engine.
/// (The IKEv1 engine's would reach it after 2^31 requests that wait for an answer.)
pub const KERNEL_TICKET_BIT: u32 = 0x8000_0000;

/// A kernel ACQUIRE starts nothing for a policy this soon after the last one did.
pub const ACQUIRE_HOLDOFF_MS: u64 = 5000;

/// A step of an exchange parked until the kernel answers the request with `ticket`.
pub(super) struct Wait {
    pub(super) ticket: u32,
    /// The IKE SA the exchange runs on (moved along by an IKE SA rekey).
    pub(super) ike: Handle,
    /// Our address and the peer's, to give back an SPI once the IKE SA is gone.
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) step: Step,
}

/// What resumes when the kernel answers.
pub(super) enum Step {
    /// Initiator: our inbound SPI for the IKE_AUTH request.
    AuthSpi,
    /// Responder: our inbound SPI for the CHILD_SA of the IKE_AUTH response `msgid`.
    AuthAnswerSpi { msgid: u32, choice: ChildChoice },
    /// Responder: the CHILD_SA installed, then the IKE_AUTH response.
    AuthAnswerInstall {
        msgid: u32,
        choice: ChildChoice,
        child: ChildSa,
    },
    /// Initiator: our inbound SPI for the CREATE_CHILD_SA request (the rest waits in
    /// [`IkeSa::creating`]).
    CreateSpi,
    /// Responder: our inbound SPI for the CREATE_CHILD_SA response.
    CreateAnswerSpi(Box<ChildAnswer>),
    /// Responder: the CHILD_SA installed, then the CREATE_CHILD_SA response `message`.
    CreateAnswerInstall {
        msgid: u32,
        message: Vec<u8>,
        child: ChildSa,
        old: Option<(Handle, u32)>,
    },
    /// Initiator: the CHILD_SA the peer's response announced (IKE_AUTH or
    /// CREATE_CHILD_SA) installed, then taken as made (see [`Engine::child_made`]).
    Install {
        child: ChildSa,
        rekey: Option<u32>,
        redundant: bool,
    },
}

impl Step {
    /// The answer is an SPI (else a confirmation).
    fn wants_spi(&self) -> bool {
        matches!(
            self,
            Step::AuthSpi | Step::CreateSpi | Step::AuthAnswerSpi { .. } | Step::CreateAnswerSpi(_)
        )
    }

    /// Our request on the IKE SA is not sent yet: it holds the window (§2.3) as a
    /// request in flight would.
    pub(super) fn holds_window(&self) -> bool {
        matches!(self, Step::AuthSpi | Step::CreateSpi)
    }

    /// The CHILD_SA being installed.
    fn child(&self) -> Option<&ChildSa> {
        match self {
            Step::AuthAnswerInstall { child, .. }
            | Step::CreateAnswerInstall { child, .. }
            | Step::Install { child, .. } => Some(child),
            _ => None,
        }
    }

    /// Responder: a rekey answer in the making: our inbound SPI of the CHILD_SA it
    /// replaces.
    pub(super) fn answers_rekey_of(&self) -> Option<u32> {
        match self {
            Step::CreateAnswerSpi(a) => a.old.map(|(_, spi)| spi),
            Step::CreateAnswerInstall { old, .. } => old.map(|(_, spi)| spi),
            _ => None,
        }
    }

    fn child_mut(&mut self) -> Option<&mut ChildSa> {
        match self {
            Step::AuthAnswerInstall { child, .. }
            | Step::CreateAnswerInstall { child, .. }
            | Step::Install { child, .. } => Some(child),
            _ => None,
        }
    }
}

impl Engine {
    /// The next kernel request. One with a ticket is answered with
    /// [`Engine::kernel_reply`]; without [`Config::kernel_answers`] none has one and the
    /// event loop only records them.
    pub fn poll_kernel(&mut self) -> Option<KernelOp> {
        self.io.kernel.pop_front()
    }

    /// Nothing is left to send or to ask of the kernel.
    pub fn is_drained(&self) -> bool {
        self.io.outbox.is_empty() && self.io.kernel.is_empty()
    }

    /// The kernel's answer to the request with `ticket`: the parked step goes on, or, on
    /// a refusal, its CHILD_SA is abandoned. An answer for an IKE SA that has gone
    /// meanwhile takes back what it did (the SPI, the install).
    pub fn kernel_reply(&mut self, now: Time, ticket: u32, reply: KernelReply) {
        let Some(i) = self.waits.iter().position(|w| w.ticket == ticket) else {
            log::debug!("ikev2: kernel: answer {ticket} for no step: {reply:?}");
            return;
        };
        let w = self.waits.remove(i);
        let outcome = match (w.step.wants_spi(), reply) {
            (true, KernelReply::Spi(s)) => Ok(u32::from_be_bytes(s)),
            (false, KernelReply::Done) => Ok(0),
            (_, KernelReply::Failed(e)) => Err(e),
            (_, r) => Err(format!("unexpected answer {r:?}")),
        };
        if self.sas.get(w.ike).is_none() {
            log::debug!("ikev2: kernel: answer {ticket} after its IKE SA went");
            if let Ok(spi) = outcome {
                self.io.release_spi(w.local, w.remote, spi);
            }
            if let Some(c) = w.step.child() {
                self.uninstall(c);
            }
            return;
        }
        self.resume(now, w.ike, w.step, outcome);
    }

    /// A parked step of IKE SA `h` goes on with the kernel's answer: our inbound SPI (0
    /// for the confirmation of an install), or why it was refused.
    fn resume(&mut self, now: Time, h: Handle, step: Step, outcome: Result<u32, String>) {
        if let Err(e) = &outcome {
            self.io.stats.kernel_refused += 1;
            if let Some(sa) = self.sas.get(h) {
                log::error!(
                    "ikev2: {} {}: kernel: {e}; CHILD_SA abandoned",
                    sa.info.peer,
                    sa.info.remote
                );
            }
        }
        match (step, outcome) {
            (Step::AuthSpi, Ok(spi)) => self.auth_spi(now, h, spi),
            (Step::AuthSpi, Err(_)) => self.fail(h, "no SPI from the kernel"),
            (Step::AuthAnswerSpi { msgid, mut choice }, Ok(spi)) => {
                choice.spi_in = spi;
                self.auth_child(now, h, msgid, choice);
            }
            (Step::AuthAnswerSpi { msgid, .. }, Err(_)) => {
                self.auth_answer(now, h, msgid, Err(NotifyType::NO_PROPOSAL_CHOSEN));
            }
            (
                Step::AuthAnswerInstall {
                    msgid,
                    choice,
                    child,
                },
                Ok(_),
            ) => {
                if self.auth_answer(now, h, msgid, Ok(&choice)) {
                    self.add_child(child);
                } else {
                    self.uninstall(&child);
                }
            }
            (Step::AuthAnswerInstall { msgid, child, .. }, Err(_)) => {
                self.uninstall(&child);
                self.auth_answer(now, h, msgid, Err(NotifyType::NO_PROPOSAL_CHOSEN));
            }
            (Step::CreateSpi, Ok(spi)) => self.create_spi(now, h, spi),
            (Step::CreateSpi, Err(_)) => {
                if let Some(sa) = self.sas.get_mut(h) {
                    sa.creating = None;
                }
                self.next_request(now, h);
            }
            (Step::CreateAnswerSpi(mut a), Ok(spi)) => {
                a.choice.spi_in = spi;
                self.answer_child(now, h, *a);
            }
            (Step::CreateAnswerSpi(a), Err(_)) => {
                self.refuse_answer(h, a.msgid, a.old, "no SPI from the kernel");
            }
            (
                Step::CreateAnswerInstall {
                    msgid,
                    message,
                    child,
                    old,
                },
                Ok(_),
            ) => self.child_answered(h, msgid, message, child, old),
            (
                Step::CreateAnswerInstall {
                    msgid, child, old, ..
                },
                Err(_),
            ) => {
                self.uninstall(&child);
                self.refuse_answer(h, msgid, old, "the kernel refused the CHILD_SA");
            }
            (
                Step::Install {
                    child,
                    rekey,
                    redundant,
                },
                Ok(_),
            ) => self.child_made(now, h, child, rekey, redundant),
            (Step::Install { child, .. }, Err(_)) => self.install_refused(now, h, &child),
        }
    }

    /// Asks the kernel to reserve our inbound ESP SPI on IKE SA `h` (SAs from its peer
    /// to us), and parks `step` until it comes.
    pub(super) fn wait_spi(&mut self, h: Handle, step: Step) {
        let Some(sa) = self.sas.get(h) else { return };
        let (local, remote) = (sa.info.local, sa.info.remote);
        let ticket = self.io.kernel_ticket(KernelReq::GetSpi {
            protocol: V1Protocol::IPSEC_ESP,
            src: remote.ip(),
            dst: local.ip(),
        });
        self.waits.push(Wait {
            ticket,
            ike: h,
            local,
            remote,
            step,
        });
    }

    /// Installs both halves of the CHILD_SA `step` names; the step goes on when the
    /// kernel confirms, at once when no kernel answers, and as refused when the CHILD_SA
    /// cannot be put in a kernel request at all.
    /// The CHILD_SA's lifetime starts here (lifetime.rs): the kernel gets its limits.
    pub(super) fn install(&mut self, now: Time, h: Handle, mut step: Step) {
        let (secs, bytes) = self.sas.get(h).map_or((0, 0), |sa| {
            let p = &self.policy.peers[sa.peer];
            (p.child_lifetime_secs, p.child_lifetime_bytes)
        });
        // Responder of a rekey: the inbound half only (see `ChildSa::outbound_pending`).
        let part = match step {
            Step::CreateAnswerInstall { old: Some(_), .. } => Part::Inbound,
            _ => Part::Both,
        };
        let peer = self.sas.get(h).map(|sa| &self.policy.peers[sa.peer]);
        if let Some(c) = step.child_mut() {
            let pairs = peer.map_or(&[][..], |p| &p.flows[..]);
            c.flows = flow_pairs(pairs, &c.ts_local, &c.ts_remote);
            // Negotiated as the policy says (child.rs: choose_child, accept_child).
            c.transport = peer.is_some_and(|p| p.transport);
            (c.rekey_at, c.expires_at) = self.io.lifetime(now, secs);
            c.established = now;
            c.lifetime_bytes = bytes;
            c.outbound_pending = part == Part::Inbound;
        }
        let Some(made) = step.child().map(|c| c.ipsec_sa(self.io.kernel_answers)) else {
            return;
        };
        let sa = match made {
            // Decoupled: installed when coupled again (`set_coupled`).
            Ok(_) if self.decoupled => return self.resume(now, h, step, Ok(0)),
            Ok(sa) => sa,
            Err(why) if self.io.kernel_answers => {
                return self.resume(now, h, step, Err(why.into()))
            }
            // -n: nothing is installed anyway.
            Err(why) => {
                log::debug!("ikev2: CHILD_SA not for a kernel: {why}");
                return self.resume(now, h, step, Ok(0));
            }
        };
        let (local, remote) = (sa.local, sa.remote);
        let req = KernelReq::AddSa(Box::new(sa), part);
        if !self.io.kernel_answers {
            self.io.kernel_req(req);
            return self.resume(now, h, step, Ok(0));
        }
        let ticket = self.io.kernel_ticket(req);
        self.waits.push(Wait {
            ticket,
            ike: h,
            local,
            remote,
            step,
        });
    }

    /// Deletes both halves of a CHILD_SA from the kernel; its flows stay while another
    /// CHILD_SA with the same selectors has them. One that could not be put in a kernel
    /// request gives its reserved SPI back instead.
    pub(super) fn uninstall(&mut self, c: &ChildSa) {
        if self.decoupled {
            // Not in the kernel: only a reserved SPI is, unless it went at decoupling.
            match self.decoupled_gone.iter().position(|s| *s == c.spi_in) {
                Some(i) => {
                    self.decoupled_gone.swap_remove(i);
                }
                None => self.io.release_spi(c.local, c.remote, c.spi_in),
            }
            return;
        }
        let keep_flows = self.children.iter().any(|(_, o)| o.same_flows(c))
            || self
                .waits
                .iter()
                .filter_map(|w| w.step.child())
                .any(|o| o.same_flows(c));
        // The outbound state (the peer's address and SPI) of another CHILD_SA is not
        // ours to delete: a peer that offered an SPI already in use had our install
        // refused (EEXIST), and taking the half back must not take the other's.
        let shared_out = self.children.iter().any(|(_, o)| {
            o.spi_in != c.spi_in
                && o.spi_out == c.spi_out
                && o.remote.ip() == c.remote.ip()
                && !o.outbound_pending
        });
        // The policy's own flows (loaded at startup) stay: only the CHILD_SA's others go.
        let loaded = self.loaded_flows.iter().find(|f| f.name == c.peer);
        match c.ipsec_sa(self.io.kernel_answers) {
            Ok(sa) => {
                let part = if shared_out {
                    Part::Inbound
                } else {
                    sa.installed()
                };
                let own = match loaded {
                    Some(l) if !keep_flows && part.outbound() => {
                        let mut fs = sa.flow_set();
                        fs.pairs.retain(|p| !l.pairs.contains(p));
                        Some(fs)
                    }
                    _ => None,
                };
                let keep = keep_flows || own.is_some();
                self.io
                    .kernel_req(KernelReq::DeleteSa(Box::new(sa), part, keep));
                if let Some(fs) = own.filter(|fs| !fs.pairs.is_empty()) {
                    self.io.kernel_req(KernelReq::DeleteFlows(Box::new(fs)));
                }
            }
            // It never went to the kernel either; only its SPI did.
            Err(why) => {
                log::debug!("ikev2: {}: not for a kernel: {why}", c.peer);
                self.io.release_spi(c.local, c.remote, c.spi_in);
            }
        }
    }

    /// Puts the flows of policy `name` in the kernel with no SA behind them (iked's
    /// flows at startup): the traffic they match makes the kernel send an ACQUIRE
    /// (`Engine::acquire`). They stay until [`Self::unload_flows`], through the
    /// CHILD_SAs negotiated for them. Refused for a policy without a peer address, or
    /// whose selectors a flow cannot express.
    pub fn load_flows(&mut self, name: &str) -> Result<(), &'static str> {
        if self.loaded_flows.iter().any(|f| f.name == name) {
            return Ok(());
        }
        let p = self
            .policy
            .peers
            .iter()
            .find(|p| p.name == name)
            .ok_or("no such policy")?;
        if p.remote.ip().is_unspecified() {
            return Err("the peer's address is not known (peer any)");
        }
        let local = if p.local.ip().is_unspecified() {
            let remote = p.remote.ip();
            self.route
                .as_mut()
                .and_then(|r| r(remote))
                .ok_or("no route to the peer")?
        } else {
            p.local.ip()
        };
        let mut pairs = Vec::new();
        for (l, r) in flow_pairs(&p.flows, &p.local_ts, &p.remote_ts) {
            pairs.push((selector_id(&l)?, selector_id(&r)?));
        }
        let fs = crate::ike::sa::FlowSet {
            name: p.name.clone(),
            local,
            remote: p.remote.ip(),
            protocol: V1Protocol::IPSEC_ESP,
            encapsulation: if p.transport {
                EncapsulationMode::TRANSPORT
            } else {
                EncapsulationMode::TUNNEL
            },
            pairs,
        };
        self.io
            .kernel_req(KernelReq::AddFlows(Box::new(fs.clone())));
        self.loaded_flows.push(fs);
        Ok(())
    }

    /// Takes the flows of policy `name` out of the kernel, those a CHILD_SA of it
    /// still uses excepted (they go with it).
    pub fn unload_flows(&mut self, name: &str) {
        let Some(i) = self.loaded_flows.iter().position(|f| f.name == name) else {
            return;
        };
        let mut fs = self.loaded_flows.remove(i);
        let used: Vec<(OwnedId, OwnedId)> = self
            .children
            .iter()
            .filter(|(_, c)| c.peer == name)
            .filter_map(|(_, c)| c.ipsec_sa(false).ok())
            .flat_map(|sa| sa.flow_set().pairs)
            .collect();
        fs.pairs.retain(|p| !used.contains(p));
        if !fs.pairs.is_empty() {
            self.io.kernel_req(KernelReq::DeleteFlows(Box::new(fs)));
        }
    }

    /// A kernel ACQUIRE: traffic from `src` to `dst` hit a flow towards `peer` that has
    /// no SA. The policy whose flows cover it (and whose peer that is) gets an IKE SA,
    /// or, when one is up, a new CHILD_SA on it (§1.3.1). One negotiation at a time per
    /// policy, and none within [`ACQUIRE_HOLDOFF_MS`] of the last one an ACQUIRE started:
    /// the kernel repeats its ACQUIREs while traffic waits, and a negotiation that fails
    /// at once must not turn them into a storm. Returns the policy started, if any.
    pub fn acquire(&mut self, now: Time, src: IpAddr, dst: IpAddr, peer: IpAddr) -> Option<String> {
        let covers = |s: &Selector, a: IpAddr| {
            s.start.is_ipv4() == a.is_ipv4() && s.start <= a && a <= s.end
        };
        let Some(p) = self.policy.peers.iter().find(|p| {
            p.remote.ip() == peer
                && flow_pairs(&p.flows, &p.local_ts, &p.remote_ts)
                    .iter()
                    .any(|(l, r)| covers(l, src) && covers(r, dst))
        }) else {
            log::warn!(
                "ikev2: kernel ACQUIRE for {src} -> {dst} (peer {peer}): no policy covers it"
            );
            return None;
        };
        let name = p.name.clone();
        if let Some((_, t)) = self.acquired.iter().find(|(n, _)| *n == name) {
            if now < t.add_millis(ACQUIRE_HOLDOFF_MS) {
                return None;
            }
        }
        let up = self
            .sas
            .iter()
            .find(|(_, sa)| {
                sa.info.peer == name && sa.info.state == IkeState::Established && !sa.replaced
            })
            .map(|(h, _)| h);
        let negotiating = self.sas.iter().any(|(h, sa)| {
            sa.info.peer == name
                && (sa.info.state != IkeState::Established
                    || sa.creating.is_some()
                    || sa
                        .queued
                        .iter()
                        .any(|r| matches!(r, Req::CreateChild(None)))
                    || self.waits.iter().any(|w| w.ike == h))
        });
        let covered = self.children.iter().any(|(_, c)| {
            c.peer == name
                && !c.rekeyed
                && c.flows
                    .iter()
                    .any(|(l, r)| covers(l, src) && covers(r, dst))
        });
        if negotiating || covered {
            return None;
        }
        self.acquired.retain(|(n, _)| *n != name);
        self.acquired.push((name.clone(), now));
        match up {
            Some(h) => {
                log::info!(
                    "ikev2: kernel ACQUIRE for {src} -> {dst}: new CHILD_SA for policy \"{name}\""
                );
                self.start_request(now, h, Req::CreateChild(None));
            }
            None => {
                log::info!("ikev2: kernel ACQUIRE for {src} -> {dst}: starting policy \"{name}\"");
                if let Err(e) = self.connect(now, &name) {
                    log::warn!("ikev2: policy \"{name}\": not started: {e:?}");
                    return None;
                }
            }
        }
        Some(name)
    }

    /// iked's `couple` (true) and `decouple` (false): decoupled, the CHILD_SAs and their
    /// flows are taken out of the kernel and new ones are not put in (their inbound SPIs
    /// are still reserved, as iked still asks the kernel for SPIs); coupled again, every
    /// CHILD_SA goes back in. The engine's CHILD_SAs stay as they are either way.
    pub fn set_coupled(&mut self, coupled: bool) {
        if coupled != self.decoupled {
            return;
        }
        let answers = self.io.kernel_answers;
        let all: Vec<ChildSa> = self
            .children
            .iter()
            .map(|(_, c)| c.clone())
            .chain(self.waits.iter().filter_map(|w| w.step.child().cloned()))
            .collect();
        if !coupled {
            for c in &all {
                if let Ok(sa) = c.ipsec_sa(answers) {
                    let part = sa.installed();
                    self.io
                        .kernel_req(KernelReq::DeleteSa(Box::new(sa), part, false));
                    self.decoupled_gone.push(c.spi_in);
                }
            }
            self.decoupled = true;
            return;
        }
        self.decoupled = false;
        let gone = std::mem::take(&mut self.decoupled_gone);
        for c in self.children.iter().map(|(_, c)| c) {
            if let Ok(mut sa) = c.ipsec_sa(answers) {
                // Taken out at decoupling: a new state; made since: its reserved SPI's.
                sa.spi_from_kernel &= !gone.contains(&c.spi_in);
                let part = if c.outbound_pending {
                    Part::Inbound
                } else {
                    Part::Both
                };
                self.io.kernel_req(KernelReq::AddSa(Box::new(sa), part));
            }
        }
    }

    /// The policies whose flows are loaded ([`Self::load_flows`]).
    pub fn loaded_flows(&self) -> impl Iterator<Item = &str> {
        self.loaded_flows.iter().map(|f| f.name.as_str())
    }

    /// Responder of a rekey: the CHILD_SA whose inbound SPI is `old_in` is going, so the
    /// outbound half of the one that replaces it goes in now, before the old one leaves
    /// the kernel (not if that one is going too: `gone`).
    pub(super) fn install_pending_outbound(&mut self, old_in: u32, gone: &[Handle]) {
        let Some(ch) = self
            .children
            .iter()
            .find(|(ch, c)| c.outbound_pending && c.replaces == Some(old_in) && !gone.contains(ch))
            .map(|(ch, _)| ch)
        else {
            return;
        };
        let Some(c) = self.children.get_mut(ch) else {
            return;
        };
        c.outbound_pending = false;
        match c.ipsec_sa(self.io.kernel_answers) {
            Ok(_) if self.decoupled => {}
            Ok(sa) => {
                log::debug!(
                    "ikev2: {}: CHILD_SA {:08x}/{:08x}: outbound half in",
                    c.peer,
                    c.spi_in,
                    c.spi_out
                );
                self.io
                    .kernel_req(KernelReq::AddSa(Box::new(sa), Part::Outbound));
            }
            Err(why) => log::debug!("ikev2: {}: not for a kernel: {why}", c.peer),
        }
    }

    /// Initiator: the kernel refused the CHILD_SA the peer's response announced: the
    /// peer is told with a Delete of it (§1.4.1); an old CHILD_SA it was to replace
    /// stays.
    pub(super) fn install_refused(&mut self, now: Time, h: Handle, c: &ChildSa) {
        self.uninstall(c);
        log::warn!(
            "ikev2: {} {}: CHILD_SA {:08x}/{:08x} not installed; deleting it at the peer",
            c.peer,
            c.remote,
            c.spi_in,
            c.spi_out
        );
        self.start_request(now, h, Req::DeleteChild(vec![c.spi_in]));
    }

    /// Ends everything at once (the daemon's SIGTERM): each established IKE SA's peer is
    /// sent a Delete of the IKE SA, which is not waited for, and every IKE SA goes with
    /// its CHILD_SAs, which leave the kernel ([`Self::send_delete_ike_once`]).
    pub fn shutdown(&mut self, _now: Time) {
        let all: Vec<Handle> = self.sas.iter().map(|(h, _)| h).collect();
        for h in all {
            self.send_delete_ike_once(h);
            self.delete(h, "shutdown");
        }
        // Installs the kernel has not confirmed yet: deleted after them (the kernel
        // takes requests in order); their answers find no step.
        for w in std::mem::take(&mut self.waits) {
            match w.step.child() {
                Some(c) => self.uninstall(c),
                None => self.waits.push(w),
            }
        }
    }
}

impl ChildSa {
    /// Whether `o` (another CHILD_SA) carries the same traffic: what the kernel's flows
    /// of the two would be (see [`ChildSa::ipsec_sa`]).
    pub fn same_flows(&self, o: &ChildSa) -> bool {
        o.spi_in != self.spi_in
            && o.peer == self.peer
            && o.ts_local == self.ts_local
            && o.ts_remote == self.ts_remote
            && o.flows == self.flows
    }

    /// The CHILD_SA as the kernel interface's SA pair: ESP in tunnel mode (UDP
    /// encapsulated behind a NAT) between the IKE SA's addresses, KEYMAT as encryption
    /// key (with the AEAD salt) then integrity key, flows between the first traffic
    /// selectors. `spi_from_kernel`: our inbound SPI was reserved with GetSpi (the inbound
    /// SA updates that larval state).
    pub fn ipsec_sa(&self, spi_from_kernel: bool) -> Result<IpsecSa, &'static str> {
        let transform = match self.encr {
            Encr::AesCbc(_) => EspTransform::AES,
            Encr::Aead(AeadAlg::AesGcm(_)) => EspTransform::AES_GCM_16,
            Encr::Aead(_) => return Err("no ESP transform id for this cipher"),
        };
        // IKEv2 INTEG 2, 12, 13, 14 (RFC 7296 §3.3.2, RFC 4868) are the IPsec DOI's
        // authentication algorithms 2, 5, 6, 7 (RFC 2407 §4.5, RFC 4868 §4).
        let auth = self.integ.map(|i| match i {
            Integ::HmacSha1_96 => AuthAlgorithm::HMAC_SHA,
            Integ::HmacSha2_256_128 => AuthAlgorithm::HMAC_SHA2_256,
            Integ::HmacSha2_384_192 => AuthAlgorithm::HMAC_SHA2_384,
            Integ::HmacSha2_512_256 => AuthAlgorithm::HMAC_SHA2_512,
        });
        let esp = V1Protocol::IPSEC_ESP;
        let key_bits = u16::try_from(self.encr.key_len() * 8).ok();
        let el = ipsec_alg::enc_key_len(esp, transform.0, key_bits);
        let al = ipsec_alg::auth_key_len(esp, transform.0, auth);
        if el != Some(self.encr_in.len()) || al != Some(self.integ_in.len()) {
            return Err("key lengths differ from the IPsec algorithm table's");
        }
        let keymat = |e: &Key, a: &Key| {
            let mut k = Keymat::new();
            (k.extend(e.as_bytes()) && k.extend(a.as_bytes())).then_some(k)
        };
        let (Some(keymat_in), Some(keymat_out)) = (
            keymat(&self.encr_in, &self.integ_in),
            keymat(&self.encr_out, &self.integ_out),
        ) else {
            return Err("KEYMAT too long");
        };
        let first = (self.ts_local.first(), self.ts_remote.first());
        let (Some(l), Some(r)) = self
            .flows
            .first()
            .map_or(first, |(l, r)| (Some(l), Some(r)))
        else {
            return Err("no traffic selectors");
        };
        let mut more_flows = Vec::new();
        for (l, r) in self.flows.iter().skip(1) {
            more_flows.push((selector_id(l)?, selector_id(r)?));
        }
        Ok(IpsecSa {
            timers: Default::default(),
            name: self.peer.clone(),
            // IKEv1's ISAKMP cookies: a CHILD_SA outlives its IKE SA's SPIs across an IKE
            // SA rekey, and the kernel does not read them.
            icookie: [0; 8],
            rcookie: [0; 8],
            msgid: 0,
            initiator: self.initiator,
            local: self.local,
            remote: self.remote,
            protocol: esp,
            transform: transform.0,
            auth,
            encapsulation: match (self.encap.is_some(), self.transport) {
                (true, true) => EncapsulationMode::UDP_ENCAP_TRANSPORT,
                (true, false) => EncapsulationMode::UDP_ENCAP_TUNNEL,
                (false, true) => EncapsulationMode::TRANSPORT,
                (false, false) => EncapsulationMode::TUNNEL,
            },
            key_bits,
            pfs: self
                .pfs
                .and_then(|g| Group::from_ike(GroupDescription(g.0))),
            spi_in: self.spi_in.to_be_bytes(),
            spi_out: self.spi_out.to_be_bytes(),
            keymat: SecretParts::new([keymat_in.as_bytes(), keymat_out.as_bytes()]),
            enc_key_len: self.encr_in.len(),
            auth_key_len: self.integ_in.len(),
            local_id: selector_id(l)?,
            remote_id: selector_id(r)?,
            // The engine rekeys and expires by time itself; the kernel gets the hard
            // lifetime (plus a margin, as a backstop) and the byte limit, whose soft
            // EXPIRE comes back through `Engine::handle_expire`.
            established: self.established,
            lifetime: self
                .expires_at
                .map_or(0, |t| self.established.until(t) / 1000),
            kbytes: self.lifetime_bytes.div_ceil(1024),
            hard_expiry: self.expires_at,
            soft_expiry: self.rekey_at,
            rekeyed: self.rekeyed,
            spi_from_kernel,
            encap: self.encap,
            peer_oa: None,
            outbound_pending: self.outbound_pending,
            more_flows,
        })
    }
}

/// A traffic selector as the client ID the kernel interface takes: one address, or a
/// prefix, with the protocol and one port or any. Ranges that are no prefix and port
/// ranges other than one port or all cannot be said in a flow; they are refused rather
/// than widened.
fn selector_id(s: &Selector) -> Result<OwnedId, &'static str> {
    let port = match (s.start_port, s.end_port) {
        (0, 0xffff) => 0,
        (a, b) if a == b => a,
        _ => return Err("a port range the kernel interface cannot express"),
    };
    let (start, end, bits): (u128, u128, u32) = match (s.start, s.end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return Err("a selector with two address families"),
    };
    let bytes = |v: u128| -> Vec<u8> {
        let b = v.to_be_bytes();
        b[16 - bits as usize / 8..].to_vec()
    };
    // The range is a prefix when its size is a power of two and start is aligned to it.
    let span = end.wrapping_sub(start).wrapping_add(1);
    let host_bits = if end < start {
        return Err("an empty address range");
    } else if span == 0 {
        // All of IPv6 (the span wrapped to 0).
        128
    } else if span.is_power_of_two() && start & (span - 1) == 0 {
        span.trailing_zeros()
    } else {
        return Err("an address range that is no prefix");
    };
    let (ty, data) = if host_bits == 0 {
        let ty = if bits == 32 {
            V1IdType::IPV4_ADDR
        } else {
            V1IdType::IPV6_ADDR
        };
        (ty, bytes(start))
    } else {
        let ty = if bits == 32 {
            V1IdType::IPV4_ADDR_SUBNET
        } else {
            V1IdType::IPV6_ADDR_SUBNET
        };
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        let mut d = bytes(start);
        d.extend(bytes(mask));
        (ty, d)
    };
    Ok(OwnedId {
        ty,
        protocol: s.protocol,
        port,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(encr: Encr, integ: Option<Integ>) -> ChildSa {
        let k = |n: usize, b: u8| Key::from_slice(&vec![b; n]).unwrap();
        let (e, a) = (encr.key_material_len(), integ.map_or(0, Integ::key_len));
        ChildSa {
            ike: Handle { idx: 0, gen: 1 },
            peer: "east".into(),
            initiator: true,
            rekeyed: false,
            replaces: None,
            outbound_pending: false,
            spi_in: 0x1000_0001,
            spi_out: 0x2000_0002,
            encr,
            integ,
            encr_in: k(e, 1),
            integ_in: k(a, 2),
            encr_out: k(e, 3),
            integ_out: k(a, 4),
            ts_local: vec![Selector::subnet("198.51.100.0".parse().unwrap(), 24)],
            ts_remote: vec![Selector::host("203.0.113.7".parse().unwrap())],
            flows: Vec::new(),
            transport: false,
            local: "192.0.2.1:500".parse().unwrap(),
            remote: "192.0.2.2:500".parse().unwrap(),
            encap: None,
            pfs: Some(DhGroup::MODP_2048),
            established: Time(1000),
            rekey_at: Some(Time(3_300_000)),
            expires_at: Some(Time(3_601_000)),
            lifetime_bytes: 1 << 30,
        }
    }

    #[test]
    fn a_child_sa_becomes_the_kernel_interfaces_esp_tunnel() {
        let c = child(Encr::AesCbc(32), Some(Integ::HmacSha2_256_128));
        let sa = c.ipsec_sa(true).unwrap();
        assert_eq!(sa.protocol, V1Protocol::IPSEC_ESP);
        assert_eq!((sa.transform, sa.key_bits), (12, Some(256)));
        assert_eq!(sa.auth, Some(AuthAlgorithm::HMAC_SHA2_256));
        assert_eq!(sa.encapsulation, EncapsulationMode::TUNNEL);
        assert_eq!((sa.enc_key_len, sa.auth_key_len), (32, 32));
        assert_eq!(sa.keymat_in()[..32], [1; 32]);
        assert_eq!(sa.keymat_in()[32..], [2; 32]);
        assert_eq!(sa.keymat_out()[..32], [3; 32]);
        assert_eq!((sa.spi_in, sa.spi_out), ([0x10, 0, 0, 1], [0x20, 0, 0, 2]));
        assert!(sa.spi_from_kernel && sa.encap.is_none());
        assert_eq!(sa.local_id.ty, V1IdType::IPV4_ADDR_SUBNET);
        assert_eq!(sa.local_id.data, [198, 51, 100, 0, 255, 255, 255, 0]);
        assert_eq!(sa.remote_id.ty, V1IdType::IPV4_ADDR);
        assert_eq!(sa.remote_id.data, [203, 0, 113, 7]);
        assert_eq!((sa.local_id.protocol, sa.local_id.port), (0, 0));
        assert_eq!(sa.pfs.map(|g| g.number()), Some(14));
        // The lifetime in seconds and the byte limit in KiB, for the kernel.
        assert_eq!((sa.lifetime, sa.kbytes), (3600, 1 << 20));
        assert_eq!(sa.hard_expiry, Some(Time(3_601_000)));

        // Each INTEG id to its DOI authentication algorithm, with the table's key size.
        for (i, a) in [
            (Integ::HmacSha1_96, AuthAlgorithm::HMAC_SHA),
            (Integ::HmacSha2_384_192, AuthAlgorithm::HMAC_SHA2_384),
            (Integ::HmacSha2_512_256, AuthAlgorithm::HMAC_SHA2_512),
        ] {
            let sa = child(Encr::AesCbc(16), Some(i)).ipsec_sa(false).unwrap();
            assert_eq!((sa.auth, sa.auth_key_len), (Some(a), i.key_len()));
        }
        let mut gcm = child(Encr::Aead(AeadAlg::AesGcm(16)), None);
        gcm.encap = Some((4500, 4500));
        let sa = gcm.ipsec_sa(false).unwrap();
        assert_eq!((sa.transform, sa.key_bits, sa.auth), (20, Some(128), None));
        assert_eq!((sa.enc_key_len, sa.auth_key_len), (20, 0), "key and salt");
        assert_eq!(sa.encapsulation, EncapsulationMode::UDP_ENCAP_TUNNEL);
        assert!(child(Encr::Aead(AeadAlg::ChaCha20Poly1305), None)
            .ipsec_sa(false)
            .is_err());
    }

    #[test]
    fn selectors_become_client_ids_or_are_refused() {
        let v6 = Selector::subnet("2001:db8::".parse().unwrap(), 32);
        let id = selector_id(&v6).unwrap();
        assert_eq!(id.ty, V1IdType::IPV6_ADDR_SUBNET);
        assert_eq!(id.data.len(), 32);
        assert_eq!(id.data[16..20], [255, 255, 255, 255]);
        assert_eq!(id.data[20..], [0; 12]);
        let mut tcp = Selector::subnet("10.0.0.0".parse().unwrap(), 8);
        (tcp.protocol, tcp.start_port, tcp.end_port) = (6, 443, 443);
        let id = selector_id(&tcp).unwrap();
        assert_eq!((id.protocol, id.port), (6, 443));
        assert_eq!(id.data, [10, 0, 0, 0, 255, 0, 0, 0]);
        let any = Selector::subnet("0.0.0.0".parse().unwrap(), 0);
        assert_eq!(selector_id(&any).unwrap().data, [0; 8]);
        tcp.end_port = 444;
        assert!(selector_id(&tcp).is_err(), "a port range");
        let mut range = Selector::host("10.0.0.1".parse().unwrap());
        range.end = "10.0.0.3".parse().unwrap();
        assert!(selector_id(&range).is_err(), "no prefix");
    }
}
