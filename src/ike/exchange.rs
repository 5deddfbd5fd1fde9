//! Exchanges in flight (isakmpd exchange.c): one entry per Main Mode or Quick Mode
//! negotiation, with the state it has reached, the material it has gathered, and what it
//! needs to retransmit or to answer a duplicate.
//!
//! Retransmission follows isakmpd: the side that waits for a reply resends its last
//! message after 7, 9, 11 ... seconds up to [General]:Retransmits times; a message that is
//! an exact copy of the last one received is not processed again but answered with our
//! last message; every exchange dies at [General]:Exchange-max-time. A finished exchange
//! lingers for a short while, only to answer a retransmission of the peer's last message
//! (our final message may have been lost).

use std::net::SocketAddr;

use super::crypto::{CipherAlg, DhPrivate, Group, HashAlg, Key, SharedSecret};
use super::policy::OwnedId;
use super::sa::{Handle, IpsecSa};
use super::wire::{AuthAlgorithm, AuthMethod, EncapsulationMode, Header, ProtocolId};
use crate::timer::{Time, TimerHandle};

/// How long what is left of a finished exchange stays to answer duplicates.
pub const LINGER_SECS: u64 = 30;

/// How long a half-open responder exchange waits for message 3.
pub const HALF_OPEN_SECS: u64 = 10;

/// What stays of a finished exchange for [`LINGER_SECS`]: enough to recognise a
/// retransmission of the peer's last message and, where our last message answered it,
/// to send that again (our final message may have been lost). isakmpd keeps the whole
/// exchange; here the exchange's slot is free at once, so that the exchange table holds
/// only negotiations in progress.
pub struct Finished {
    pub kind: Kind,
    pub initiator: bool,
    pub icookie: [u8; 8],
    pub rcookie: [u8; 8],
    pub msgid: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub last_recv: Vec<u8>,
    pub last_sent: Vec<u8>,
    pub resend_on_dup: bool,
    pub until: Time,
}

impl Finished {
    /// Whether a message of `kind` with header `hd` from `remote` belongs to this one
    /// (the test [`super::Engine::lookup_exchange`] applies to live exchanges).
    fn matches(&self, kind: Kind, remote: SocketAddr, hd: &Header) -> bool {
        self.kind == kind
            && (self.rcookie == hd.rcookie
                || (!self.initiator && hd.rcookie == [0; 8] && self.remote == remote))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Main,
    Aggressive,
    Quick,
    /// Mode-config (TRANSACTION).
    Transaction,
}

/// The phase 1 transform both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct P1Choice {
    pub cipher: CipherAlg,
    pub hash: HashAlg,
    pub auth: AuthMethod,
    pub group: Group,
    pub lifetime: u64,
}

/// One protocol of the phase 2 proposal both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P2Choice {
    pub protocol: ProtocolId,
    pub transform: u8,
    pub auth: Option<AuthAlgorithm>,
    pub encapsulation: EncapsulationMode,
    pub key_bits: Option<u16>,
    pub lifetime: u64,
    /// Kilobytes (0: no traffic limit).
    pub kbytes: u64,
    pub spi_in: [u8; 4],
    pub spi_out: [u8; 4],
}

/// Quick Mode material.
#[derive(Default)]
pub struct QmState {
    /// Initiator: our SPI per (proposal number, protocol) as offered.
    pub offered_spis: Vec<(u8, ProtocolId, [u8; 4])>,
    pub chosen: Vec<P2Choice>,
    /// The client IDs as sent (initiator) or received (responder), bodies.
    pub idci: Option<Vec<u8>>,
    pub idcr: Option<Vec<u8>>,
    pub local_id: Option<OwnedId>,
    pub remote_id: Option<OwnedId>,
    pub pfs: Option<Group>,
    /// The PFS shared secret, once computed (the responder needs it twice).
    pub gxy: Option<SharedSecret>,
    /// Responder: the SAs whose inbound half is in the kernel, waiting for message 3.
    /// Taken back if the exchange dies without it.
    pub pending_in: Vec<IpsecSa>,
    /// What the exchange waits for from the kernel, and where it goes on.
    pub kernel: KernelWait,
    /// IPsec SAs entered in the table whose installation the kernel has not yet confirmed.
    pub committed: Vec<Handle>,
    /// Inbound SPIs the kernel reserved for us that no SA uses yet (given back if the
    /// exchange ends without using them).
    pub reserved: Vec<(ProtocolId, [u8; 4])>,
    /// Through a NAT in transport mode: the peer's original address from its NAT-OA.
    pub peer_oa: Option<std::net::IpAddr>,
    /// Initiator: when message 1 first left (its round trip sets the rekey pause).
    pub sent1: Option<Time>,
    /// Responder: what message 2 echoes of the chosen proposal.
    pub reply: Option<Reply>,
}

/// Mode-config material.
#[derive(Default)]
pub struct CfgState {
    /// What the initiator sent (SET or REQUEST); the answer must carry its identifier.
    pub ty: super::wire::CfgType,
    pub id: u16,
    /// Initiator: the connections to start once the exchange is over, answered or not.
    pub then: Vec<String>,
}

/// What a Quick Mode exchange waits for from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// An SPI for entry `n` of the offer (initiator) or of the choice (responder).
    Spi(usize),
    /// An SA installation.
    Install,
}

/// A Quick Mode exchange's business with the kernel: the requests not yet answered, the
/// first failure reported, and where the exchange goes once the last answer is in (one
/// value, where a resume point, a held message, a ticket list and an error had to agree).
#[derive(Default)]
pub struct KernelWait {
    /// Requests not yet answered, by ticket.
    pub pending: Vec<(u32, Wait)>,
    pub error: Option<String>,
    pub then: Option<Resume>,
}

/// Where a Quick Mode exchange continues once the kernel has answered; a message that
/// announces SAs travels with it until they are installed.
pub enum Resume {
    /// Initiator: the SPIs are reserved; send message 1.
    SendMessage1,
    /// Responder: the SPIs are reserved; build message 2, install the inbound SAs.
    BuildMessage2,
    /// Responder: the inbound SAs are in; send message 2 (cleartext for the capture, and
    /// as sent).
    SendMessage2 { clear: Vec<u8>, msg: Vec<u8> },
    /// Initiator: both directions are in; send message 3, done.
    SendMessage3 { clear: Vec<u8>, msg: Vec<u8> },
    /// Responder: the outbound SAs and flows are in; done.
    Finish,
}

impl std::fmt::Debug for Resume {
    /// The step only: the held messages stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resume::SendMessage1 => "SendMessage1",
            Resume::BuildMessage2 => "BuildMessage2",
            Resume::SendMessage2 { .. } => "SendMessage2",
            Resume::SendMessage3 { .. } => "SendMessage3",
            Resume::Finish => "Finish",
        })
    }
}

/// The responder's copy of the proposal it chose, for message 2.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub pnum: u8,
    pub doi: u32,
    pub situation: u32,
    /// Per chosen protocol: transform number, transform ID, raw attributes.
    pub transforms: Vec<(u8, u8, Vec<u8>)>,
    /// RESPONDER-LIFETIME notifications: protocol, the initiator's SPI, seconds.
    pub shortened: Vec<(ProtocolId, [u8; 4], u64)>,
}

/// What a phase 1 exchange (Main or Aggressive Mode) waits for next, with what its
/// earlier steps settled: the transform, once both sides agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P1Step {
    /// Initiator, message 1 sent: the responder's choice of transform (Aggressive Mode's
    /// message 2 brings the rest of its half with it).
    AwaitSa,
    /// Main Mode, the transform agreed: KE and nonce (responder: message 3, initiator:
    /// message 4).
    AwaitKe(P1Choice),
    /// The keys are computed: the peer's ID and HASH or SIG (Main Mode messages 5 and 6,
    /// Aggressive Mode message 3).
    AwaitAuth(P1Choice),
    /// The peer is authenticated; the ISAKMP SA is made from the exchange.
    Done(P1Choice),
}

/// What a Quick Mode exchange waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QmStep {
    /// Initiator: its inbound SPIs from the kernel, before message 1.
    Reserve,
    /// Initiator, message 1 sent: message 2.
    AwaitReply,
    /// Responder, message 1 taken: SPIs and the inbound SAs from the kernel, before
    /// message 2.
    Prepare,
    /// Responder, message 2 sent: message 3.
    AwaitAck,
    /// Initiator, message 2 taken: both directions into the kernel, before message 3.
    Install,
    /// The last message is through (initiator: 3 sent; responder: 3 taken); the kernel
    /// may still be installing the outbound half.
    Done,
}

/// What a mode-config (TRANSACTION) exchange waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfgStep {
    /// Initiator, SET or REQUEST sent: the ACK or REPLY.
    AwaitAnswer,
    /// Responder: answered; the exchange stays only to answer a repeated request.
    Answered,
}

/// Where an exchange stands; each kind has its own steps, and a message is taken only
/// by the step that expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Phase1(P1Step),
    Quick(QmStep),
    Transaction(CfgStep),
}

impl State {
    /// The state of a new exchange of `kind`.
    fn new(kind: Kind, initiator: bool) -> State {
        match kind {
            Kind::Main | Kind::Aggressive => State::Phase1(P1Step::AwaitSa),
            Kind::Quick if initiator => State::Quick(QmStep::Reserve),
            Kind::Quick => State::Quick(QmStep::Prepare),
            Kind::Transaction if initiator => State::Transaction(CfgStep::AwaitAnswer),
            Kind::Transaction => State::Transaction(CfgStep::Answered),
        }
    }
}

pub struct Exchange {
    pub kind: Kind,
    pub initiator: bool,
    pub state: State,
    pub icookie: [u8; 8],
    pub rcookie: [u8; 8],
    pub msgid: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The ISAKMP-peer section.
    pub peer: String,
    /// The IPsec-connection to start (initiator) or that matched (responder).
    pub connection: Option<String>,
    /// Quick Mode: the ISAKMP SA that protects it.
    pub sa: Option<Handle>,
    pub sai_b: Vec<u8>,
    /// Aggressive Mode responder: the initiator's ID payload body from message 1, which
    /// its HASH_I in message 3 covers.
    pub peer_id: Vec<u8>,
    pub dh: Option<DhPrivate>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub gxi: Vec<u8>,
    pub gxr: Vec<u8>,
    pub skeyid: Key,
    pub skeyid_d: Key,
    pub skeyid_a: Key,
    pub ka: Key,
    /// The CBC IV for the next message of this exchange.
    pub iv: Key,
    pub qm: QmState,
    pub cfg: CfgState,
    pub last_sent: Vec<u8>,
    pub last_recv: Vec<u8>,
    pub xmits: u32,
    pub next_retransmit: Option<Time>,
    pub deadline: Time,
    /// Our last message answered the peer's last one and has no retransmission timer
    /// (responder's message 2 and 6, initiator's Quick Mode 3): resent when the peer
    /// repeats the message it answered.
    pub resend_on_dup: bool,
    pub timer: Option<TimerHandle>,
    /// A responder's Main or Aggressive Mode before message 3: the peer has not shown
    /// that it receives at its address (it may be anybody's spoofed datagram).
    pub half_open: bool,
    /// Initiator: this phase 1 is a second try, after the responder had lost the first
    /// one's state (INVALID-COOKIE); it gets no third.
    pub restarted: bool,
    /// The peer sent the DPD vendor ID (RFC 3706).
    pub peer_dpd: bool,
    /// NAT traversal, once both sides announced it (phase 1).
    pub nat_t: Option<super::nat_t::NatT>,
}

impl Exchange {
    /// Not inlined: the struct is large and seven places start an exchange.
    #[inline(never)]
    pub fn new(kind: Kind, initiator: bool, local: SocketAddr, remote: SocketAddr) -> Exchange {
        Exchange {
            kind,
            initiator,
            state: State::new(kind, initiator),
            icookie: [0; 8],
            rcookie: [0; 8],
            msgid: 0,
            local,
            remote,
            peer: String::new(),
            connection: None,
            sa: None,
            sai_b: Vec::new(),
            peer_id: Vec::new(),
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            gxi: Vec::new(),
            gxr: Vec::new(),
            skeyid: Key::new(),
            skeyid_d: Key::new(),
            skeyid_a: Key::new(),
            ka: Key::new(),
            iv: Key::new(),
            qm: QmState::default(),
            cfg: CfgState::default(),
            last_sent: Vec::new(),
            last_recv: Vec::new(),
            xmits: 0,
            next_retransmit: None,
            deadline: Time(0),
            resend_on_dup: false,
            timer: None,
            half_open: false,
            restarted: false,
            peer_dpd: false,
            nat_t: None,
        }
    }

    /// The phase 1 transform, once both sides agree on it.
    pub fn choice(&self) -> Option<P1Choice> {
        match self.state {
            State::Phase1(P1Step::AwaitKe(c) | P1Step::AwaitAuth(c) | P1Step::Done(c)) => Some(c),
            _ => None,
        }
    }

    /// Sets the phase 1 step.
    pub fn set_p1(&mut self, step: P1Step) {
        self.state = State::Phase1(step);
    }

    /// Moves a phase 1 exchange on to `step`, keeping the agreed transform.
    pub fn p1_to(&mut self, step: fn(P1Choice) -> P1Step) {
        if let Some(c) = self.choice() {
            self.state = State::Phase1(step(c));
        }
    }

    /// Sets the Quick Mode step.
    pub fn set_qm(&mut self, step: QmStep) {
        self.state = State::Quick(step);
    }

    /// The number of the last message sent or received, as the RFC numbers them (what
    /// isakmpd's report calls the step).
    pub fn message(&self) -> u8 {
        let main = self.kind == Kind::Main;
        match (self.state, self.initiator) {
            (State::Phase1(P1Step::AwaitSa), _) => 1,
            (State::Phase1(P1Step::AwaitKe(_)), true) => 3,
            (State::Phase1(P1Step::AwaitKe(_)), false) => 2,
            (State::Phase1(P1Step::AwaitAuth(_)), true) => 5,
            (State::Phase1(P1Step::AwaitAuth(_)), false) if main => 4,
            (State::Phase1(P1Step::AwaitAuth(_)), false) => 2,
            (State::Phase1(P1Step::Done(_)), _) if main => 6,
            (State::Phase1(P1Step::Done(_)), _) => 3,
            (State::Quick(QmStep::Reserve), _) => 0,
            (State::Quick(QmStep::AwaitReply | QmStep::Prepare), _) => 1,
            (State::Quick(QmStep::AwaitAck | QmStep::Install), _) => 2,
            (State::Quick(QmStep::Done), _) => 3,
            (State::Transaction(CfgStep::AwaitAnswer), _) => 1,
            (State::Transaction(CfgStep::Answered), _) => 2,
        }
    }

    /// The earliest of this exchange's deadlines (retransmission, max time or linger).
    pub fn next_deadline(&self) -> Time {
        match self.next_retransmit {
            Some(r) if r < self.deadline => r,
            _ => self.deadline,
        }
    }

    pub fn name(&self) -> String {
        format!(
            "{} {}{} {:08x}",
            match self.kind {
                Kind::Main => "main mode",
                Kind::Aggressive => "aggressive mode",
                Kind::Quick => "quick mode",
                Kind::Transaction => "mode-config",
            },
            super::sa::hex(&self.icookie),
            super::sa::hex(&self.rcookie),
            self.msgid
        )
    }
}

/// isakmpd transport.c: the delay before retransmission number `xmits` (0-based).
pub fn retransmit_delay_secs(xmits: u32) -> u64 {
    u64::from(xmits + 1) * 2 + 5
}

impl super::Engine {
    /// An exchange's timer: its deadline (half-open or Exchange-max-time), or a
    /// retransmission of its last message, or after the last of those, giving up (or,
    /// for an initiator's unanswered Main Mode message 1, starting over once).
    pub(crate) fn exchange_timer(&mut self, now: Time, h: Handle) {
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        x.timer = None;
        if now >= x.deadline && x.half_open {
            // Nobody answered our message 2: most likely a spoofed message 1, not
            // worth a log line each.
            crate::ike_debug!(
                crate::log::DebugClass::Exchange,
                10,
                "half-open exchange from {} expired",
                x.remote
            );
            self.io.stats.half_open_expired += 1;
            self.give_up(now, h);
            return;
        }
        if now >= x.deadline {
            crate::log_warn!(
                "{} with {}: exchange timed out (Exchange-max-time)",
                x.name(),
                x.remote
            );
            self.io.stats.failed += 1;
            self.give_up(now, h);
            return;
        }
        if let Some(t) = x.next_retransmit {
            if now >= t && x.half_open && x.xmits >= 1 {
                // A half-open responder (Aggressive Mode's message 2) resends once: its
                // peer may be a spoofed address, which must not get more from us than
                // it sent. The exchange then waits out its half-open time quietly.
                x.next_retransmit = None;
            } else if now >= t {
                if x.xmits >= self.policy.retransmits {
                    // An initiator whose message 1 was never answered starts over once
                    // with new cookies: a C isakmpd responder ignores a repeated
                    // message 1, so if its message 2 was lost, our retransmissions
                    // could not bring it back (and the next try would wait for the
                    // connection check).
                    let again = x.initiator
                        && x.kind == Kind::Main
                        && x.state == State::Phase1(P1Step::AwaitSa)
                        && !x.restarted;
                    crate::log_warn!(
                        "{} with {}: no answer after {} retransmissions, {}",
                        x.name(),
                        x.remote,
                        x.xmits,
                        if again {
                            "starting again with new cookies"
                        } else {
                            "giving up"
                        }
                    );
                    self.io.stats.failed += 1;
                    if again {
                        self.restart_phase1(now, h);
                    } else {
                        self.give_up(now, h);
                    }
                    return;
                }
                x.xmits += 1;
                self.io.stats.retransmits += 1;
                x.next_retransmit = Some(now.add_secs(retransmit_delay_secs(x.xmits)));
                crate::ike_debug!(
                    crate::log::DebugClass::Transport,
                    30,
                    "retransmit to {}",
                    x.remote
                );
                self.io.send(x.local, x.remote, &x.last_sent);
            }
        }
        self.arm(h);
    }

    /// Frees an exchange that timed out or went unanswered; the connections a
    /// mode-config exchange held back start without it.
    pub(crate) fn give_up(&mut self, now: Time, h: Handle) {
        let waiting = self.exchanges.get_mut(h).and_then(|x| {
            let then = std::mem::take(&mut x.cfg.then);
            (x.kind == Kind::Transaction && !then.is_empty()).then_some((x.sa, x.remote, then))
        });
        self.free_exchange(h);
        if let Some((Some(sa), remote, then)) = waiting {
            crate::log_warn!(
                "mode-config with {remote}: no answer; its connections start without it"
            );
            self.start_after_cfg(now, sa, then);
        }
    }

    /// Sends a cleartext message of an exchange, remembering it for retransmission.
    pub(crate) fn send_step(&mut self, now: Time, h: Handle, msg: Vec<u8>, retransmit: bool) {
        if let Some(x) = self.exchanges.get_mut(h) {
            self.io.send_step(now, (h, x), None, msg, retransmit);
        }
    }

    /// Sends an encrypted message of an exchange; `clear` is its capture copy.
    pub(crate) fn send_step_captured(
        &mut self,
        now: Time,
        h: Handle,
        clear: Vec<u8>,
        msg: Vec<u8>,
        retransmit: bool,
    ) {
        if let Some(x) = self.exchanges.get_mut(h) {
            self.io
                .send_step(now, (h, x), Some(&clear), msg, retransmit);
        }
    }

    /// Finds the exchange a message belongs to and handles exact duplicates: `Ok(None)`
    /// when the message was a duplicate (answered with our last message) or stale.
    /// Finds the exchange a message belongs to and handles exact duplicates: `None`
    /// when no exchange (live or finished) has it, `Some(Err(()))` when it was a
    /// duplicate (answered with our last message where that answered it) or belongs to
    /// a finished exchange.
    pub(crate) fn lookup_exchange(
        &mut self,
        now: Time,
        kind: Kind,
        remote: SocketAddr,
        hd: &Header,
        data: &[u8],
    ) -> Option<Result<Handle, ()>> {
        let key = (hd.icookie, hd.msgid);
        if let Some(h) = self.exchanges.find_by(&key, |x| {
            x.kind == kind
                && (x.rcookie == hd.rcookie
                    || (x.initiator && x.rcookie == [0; 8])
                    // a repeated message 1: the responder's exchange already exists
                    || (!x.initiator && hd.rcookie == [0; 8] && x.remote == remote))
        }) {
            let x = self.exchanges.get(h)?;
            if x.last_recv == data {
                // message.c `message_check_duplicate`: a repeat of the message our
                // final message answered means that message was lost: send it again.
                // Any other repeat is dropped; our retransmission timer covers the
                // rest. (Answering every repeat would let two peers echo each other
                // forever.)
                let (local, resend) = (x.local, x.resend_on_dup && !x.last_sent.is_empty());
                if resend {
                    self.resend_last(local, remote, Some(h), None);
                }
                return Some(Err(()));
            }
            return Some(Ok(h));
        }
        let f = self
            .finished
            .find_by(&key, |f| f.matches(kind, remote, hd))?;
        let e = self.finished.get(f)?;
        if e.until <= now {
            self.finished.remove(f);
            return None;
        }
        if e.last_recv == data && e.resend_on_dup && !e.last_sent.is_empty() {
            let local = e.local;
            self.resend_last(local, remote, None, Some(f));
        }
        Some(Err(()))
    }

    /// Sends again the last message of a live exchange `x` or of a finished one `f`.
    fn resend_last(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        x: Option<Handle>,
        f: Option<Handle>,
    ) {
        crate::ike_debug!(
            crate::log::DebugClass::Message,
            20,
            "duplicate from {remote}: resending our last message"
        );
        if self.io.passive {
            return;
        }
        let msg = match (x, f) {
            (Some(x), _) => self.exchanges.get(x).map(|x| &x.last_sent),
            (_, Some(f)) => self.finished.get(f).map(|f| &f.last_sent),
            _ => None,
        };
        if let Some(msg) = msg {
            self.io.send(local, remote, msg);
        }
    }

    /// The exchange is over: what answers a retransmission of the peer's last message
    /// moves to the finished cache for [`LINGER_SECS`], and the exchange's slot is free.
    pub(crate) fn finish_exchange(&mut self, now: Time, h: Handle) {
        let Some(x) = self.exchanges.get_mut(h) else {
            return;
        };
        // The messages were built in buffers sized for the largest message: a cache of
        // hundreds of them kept at that size held megabytes (512 x 8 KiB) for nothing.
        let (mut last_recv, mut last_sent) = (
            std::mem::take(&mut x.last_recv),
            std::mem::take(&mut x.last_sent),
        );
        last_recv.shrink_to_fit();
        last_sent.shrink_to_fit();
        let f = Finished {
            kind: x.kind,
            initiator: x.initiator,
            icookie: x.icookie,
            rcookie: x.rcookie,
            msgid: x.msgid,
            local: x.local,
            remote: x.remote,
            last_recv,
            last_sent,
            resend_on_dup: x.resend_on_dup,
            until: now.add_secs(LINGER_SECS),
        };
        self.free_exchange(h);
        // The oldest entry makes room (entries that expired unseen are still queued).
        if self.finished_order.len() == self.finished_order.capacity()
            || self.finished.len() == self.finished.capacity()
        {
            while let Some(old) = self.finished_order.pop_front() {
                if self.finished.remove(old).is_some() {
                    break;
                }
            }
        }
        if let Some(fh) = self.finished.insert(f) {
            self.finished_order.push_back(fh);
        }
    }
}
