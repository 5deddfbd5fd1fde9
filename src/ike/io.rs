//! What an exchange handler may touch besides its own exchange: the queues towards the
//! event loop (datagrams, kernel requests, the capture), the timer wheel, the random
//! source and the counters. The engine keeps it apart from its tables, so that a handler
//! can hold one exchange (`Engine::exchanges`) and send, arm a timer or ask the kernel
//! through `Engine::io` at the same time, instead of looking the exchange up again after
//! every call.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::crypto::Random;
use super::exchange::{retransmit_delay_secs, Exchange, Wait};
use super::outbox::Outbox;
use super::sa::{Handle, KernelOp, KernelReq};
use super::{nat_t, Captured, Stats, TimerKind, Transmit};
use crate::log::DebugClass;
use crate::timer::{Time, TimerWheel};

/// Captured messages held for the event loop at most (it drains them after every input).
const CAPTURE_MAX: usize = 1024;

pub(crate) struct Io {
    /// Passive (-S, `M passive`): nothing is sent.
    pub(crate) passive: bool,
    /// Our NAT-T port: IKE messages from it carry the non-ESP marker.
    pub(crate) nat_port: u16,
    /// A kernel answers our requests (reserves SPIs, confirms installs), so exchanges
    /// wait for it; with `-n` nothing answers.
    pub(crate) kernel_answers: bool,
    outbox: Outbox,
    capture: VecDeque<Captured>,
    capture_on: bool,
    kernel: VecDeque<KernelOp>,
    /// The last ticket handed out with a kernel request.
    ticket: u32,
    pub(crate) rng: Box<dyn Random>,
    pub(crate) timers: TimerWheel<TimerKind>,
    pub(crate) stats: Stats,
}

impl Io {
    pub(crate) fn new(
        passive: bool,
        nat_port: u16,
        kernel_answers: bool,
        rng: Box<dyn Random>,
        timers: TimerWheel<TimerKind>,
    ) -> Io {
        Io {
            passive,
            nat_port,
            kernel_answers,
            outbox: Outbox::new(),
            capture: VecDeque::new(),
            capture_on: false,
            kernel: VecDeque::new(),
            ticket: 0,
            rng,
            timers,
            stats: Stats::default(),
        }
    }

    /// What goes before an IKE message sent from `local`: the non-ESP marker on the
    /// NAT-T port (RFC 3948 §2.2).
    pub(crate) fn tx_prefix(&self, local: SocketAddr) -> &'static [u8] {
        if local.port() == self.nat_port {
            &nat_t::NON_ESP_MARKER
        } else {
            &[]
        }
    }

    /// Queues an IKE message (already encrypted if it should be).
    pub(crate) fn send(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        if !self.passive {
            let prefix = self.tx_prefix(local);
            self.outbox.push(local, remote, prefix, data);
        }
    }

    /// Queues a datagram as it is (a NAT-T keepalive).
    pub(crate) fn send_bare(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        if !self.passive {
            self.outbox.push(local, remote, &[], data);
        }
    }

    /// Sends a message of exchange `x` (handle `h`), remembering it for retransmission
    /// and duplicates. `clear` is the capture copy when the message goes out encrypted.
    pub(crate) fn send_step(
        &mut self,
        now: Time,
        (h, x): (Handle, &mut Exchange),
        clear: Option<&[u8]>,
        msg: Vec<u8>,
        retransmit: bool,
    ) {
        x.xmits = 0;
        x.next_retransmit = retransmit.then(|| now.add_secs(retransmit_delay_secs(0)));
        self.capture(x.local, x.remote, clear.unwrap_or(&msg));
        self.send(x.local, x.remote, &msg);
        x.last_sent = msg;
        self.arm(h, x);
    }

    /// (Re)arms exchange `x`'s timer at its earliest deadline.
    pub(crate) fn arm(&mut self, h: Handle, x: &mut Exchange) {
        if let Some(t) = x.timer.take() {
            self.timers.cancel(t);
        }
        match self
            .timers
            .insert(x.next_deadline(), TimerKind::Exchange(h))
        {
            Ok(t) => x.timer = Some(t),
            Err(_) => crate::log_error!("timer table full; exchange {} has no timer", x.name()),
        }
    }

    /// Keeps a cleartext message for the capture file, if one is written.
    pub(crate) fn capture(&mut self, src: SocketAddr, dst: SocketAddr, clear: &[u8]) {
        if self.capture_on && self.capture.len() < CAPTURE_MAX {
            let mut data = clear.to_vec();
            // What arrived encrypted is kept decrypted: as isakmpd's capture, with the
            // encryption flag cleared and the header's length that of what is kept (the
            // padding included), so that a reader decodes its payloads.
            if data.len() >= crate::ike::HEADER_LEN {
                data[19] &= !super::wire::FLAG_ENCRYPTION;
                let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                data[24..28].copy_from_slice(&n.to_be_bytes());
            }
            self.capture.push_back(Captured { src, dst, data });
        }
    }

    pub(crate) fn set_capture(&mut self, on: bool) {
        self.capture_on = on;
        if !on {
            self.capture.clear();
        }
    }

    /// Fresh random bytes.
    pub(crate) fn random(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill(&mut v);
        v
    }

    /// A fresh cookie (never all zeroes: that means "none yet" on the wire).
    pub(crate) fn new_cookie(&mut self) -> [u8; 8] {
        loop {
            let mut c = [0u8; 8];
            self.rng.fill(&mut c);
            if c != [0; 8] {
                return c;
            }
        }
    }

    /// A kernel request nobody waits for (deletions).
    pub(crate) fn kernel_req(&mut self, req: KernelReq) {
        crate::ike_debug!(DebugClass::Sysdep, 10, "kernel: {req:?}");
        self.kernel.push_back(KernelOp { ticket: 0, req });
    }

    /// A kernel request somebody waits for: its ticket, which the answer carries.
    pub(crate) fn kernel_ticket(&mut self, req: KernelReq) -> u32 {
        self.ticket = self.ticket.wrapping_add(1).max(1);
        let ticket = self.ticket;
        crate::ike_debug!(DebugClass::Sysdep, 10, "kernel: {req:?} (ticket {ticket})");
        self.kernel.push_back(KernelOp { ticket, req });
        ticket
    }

    /// A kernel request exchange `x` waits for (its ticket joins the exchange's pending
    /// ones); without a kernel that answers, it counts as done at once.
    pub(crate) fn kernel_wait(&mut self, x: &mut Exchange, wait: Wait, req: KernelReq) {
        if self.kernel_answers {
            let ticket = self.kernel_ticket(req);
            x.qm.kernel.pending.push((ticket, wait));
        } else {
            self.kernel_req(req);
        }
    }

    pub(crate) fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.passive {
            self.outbox.clear();
            return None;
        }
        self.outbox.pop(buf)
    }

    pub(crate) fn poll_kernel(&mut self) -> Option<KernelOp> {
        self.kernel.pop_front()
    }

    pub(crate) fn poll_capture(&mut self) -> Option<Captured> {
        self.capture.pop_front()
    }

    /// Nothing is left to send.
    pub(crate) fn is_drained(&self) -> bool {
        self.outbox.is_empty() && self.kernel.is_empty()
    }
}
