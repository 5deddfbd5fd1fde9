#![forbid(unsafe_code)]

//! What the IKEv2 engine sends and arms: the outbox, the kernel requests, the timer
//! wheel, the random source and the counters, with the request/response bookkeeping of
//! RFC 7296 §2.1 (only the initiator of an exchange retransmits; a responder keeps its
//! last response).

use super::*;
use crate::ike::wire::ProtocolId as V1Protocol;
use crate::ike::LogLimit;

/// The shared pieces a handler touches beside the SA it holds (the IKEv2 sibling of
/// `crate::ike::io::Io`).
pub(super) struct Io {
    pub(super) outbox: Outbox,
    pub(super) timers: TimerWheel<Handle>,
    pub(super) rng: Box<dyn Random>,
    pub(super) stats: Stats,
    pub(super) nat_port: u16,
    /// A kernel answers our requests (reserves SPIs, confirms installs), so exchanges
    /// wait for it; without one the engine picks SPIs itself and an install counts as
    /// done at once ([`Config::kernel_answers`]).
    pub(super) kernel_answers: bool,
    /// Kernel requests for the event loop, in order ([`Engine::poll_kernel`]).
    pub(super) kernel: VecDeque<KernelOp>,
    /// The last ticket handed out with a kernel request.
    pub(super) ticket: u32,
    /// [`Config::fragment_size`].
    pub(super) fragment_size: usize,
    /// [`Config::nat_keepalive_secs`].
    pub(super) keepalive_secs: u64,
    /// Messages for the capture file, in clear ([`Engine::poll_capture`]), while on.
    pub(super) capture_on: bool,
    pub(super) capture: VecDeque<Captured>,
    /// The time of the input being handled (for the limits below).
    pub(super) now: Time,
    /// Dropped datagrams are logged five per ten seconds, with the count held back.
    pub(super) drop_log: LogLimit,
    /// Unprotected error notifications (answers to IKE_SA_INIT requests we refuse) go
    /// at most ten a second: anyone can make us send them to any address.
    pub(super) notify_limit: LogLimit,
    /// Failed EAP conversations, logged a few a minute (eap.rs).
    pub(super) eap_log: LogGate,
}

/// Cleartext messages held for the capture file at most (the event loop takes them
/// after every input).
const CAPTURE_MAX: usize = 1024;

impl Io {
    /// Sends a message, or the fragments of one (RFC 7383), which are kept one after the
    /// other, each with its own header and length.
    pub(super) fn send(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let prefix: &[u8] = if local.port() == self.nat_port {
            &[0; 4]
        } else {
            &[]
        };
        if data.get(18) == Some(&ExchangeType::IKE_SA_INIT.0) {
            // In clear on the wire; protected messages are captured where they are
            // sealed, before encryption.
            self.capture(local, remote, data);
        }
        let mut rest = data;
        while !rest.is_empty() {
            let n = rest
                .get(24..28)
                .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .filter(|&n| n >= HEADER_LEN && n <= rest.len())
                .unwrap_or(rest.len());
            self.outbox.push(local, remote, prefix, &rest[..n]);
            rest = &rest[n..];
        }
    }

    /// An IKE SA behind a NAT keeps its mapping open from now on (RFC 3948 §2.3).
    pub(super) fn keepalive_starts(&self, sa: &mut IkeSa, now: Time) {
        sa.keepalive_at = (sa.info.nat_local && self.keepalive_secs > 0)
            .then(|| now.add_secs(self.keepalive_secs));
    }

    /// Keeps a message for the capture file.
    pub(super) fn capture(&mut self, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        if self.capture_on && self.capture.len() < CAPTURE_MAX {
            self.capture.push_back(Captured {
                src,
                dst,
                data: data.to_vec(),
            });
        }
    }

    /// Keeps a protected message for the capture file as it reads in clear: its header
    /// (`hdr`, the first 28 bytes as on the wire) with the SK payload replaced by the
    /// inner payloads `plain`, the first of type `first`, and the length fixed; a reader
    /// decodes its payloads. Fragments are kept once, reassembled.
    pub(super) fn capture_clear(
        &mut self,
        (src, dst): (SocketAddr, SocketAddr),
        hdr: &Header,
        first: PayloadType,
        plain: &[u8],
    ) {
        if !self.capture_on || self.capture.len() >= CAPTURE_MAX {
            return;
        }
        let mut h = [0u8; HEADER_LEN];
        if MessageBuilder::new(&mut h, hdr).is_err() {
            return;
        }
        let mut data = Vec::with_capacity(HEADER_LEN + plain.len());
        data.extend_from_slice(&h);
        data[16] = first.0;
        let n = u32::try_from(HEADER_LEN + plain.len()).unwrap_or(u32::MAX);
        data[24..28].copy_from_slice(&n.to_be_bytes());
        data.extend_from_slice(plain);
        self.capture.push_back(Captured { src, dst, data });
    }

    /// A line about an unauthenticated datagram we refuse (IKE_SA_INIT with no
    /// proposal we take, ...): under the same limit as drops, debug beyond it.
    pub(super) fn limited_log(&mut self, level: log::Level, line: std::fmt::Arguments<'_>) {
        match self.drop_log.allow(self.now) {
            Some(0) => log::log!(level, "{line}"),
            Some(n) => log::log!(level, "{line} ({n} more not logged)"),
            None => log::debug!("{line}"),
        }
    }

    /// A datagram dropped: counted, and a warning unless too many came lately (a flood
    /// of garbage shows as a few lines and the count of those held back).
    pub(super) fn dropped(&mut self, remote: SocketAddr, why: &str) {
        self.stats.datagrams_dropped += 1;
        match self.drop_log.allow(self.now) {
            Some(0) => log::warn!("ikev2: {remote}: dropped: {why}"),
            Some(n) => log::warn!("ikev2: {remote}: dropped: {why} ({n} more not logged)"),
            None => log::debug!("ikev2: {remote}: dropped: {why}"),
        }
    }

    pub(super) fn random<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.fill(&mut b);
        b
    }

    pub(super) fn spi(&mut self) -> [u8; 8] {
        loop {
            let s = self.random::<8>();
            if s != [0; 8] {
                return s;
            }
        }
    }

    /// An ESP SPI outside the reserved 0-255 (RFC 4303 §2.1).
    pub(super) fn esp_spi(&mut self) -> u32 {
        loop {
            let s = u32::from_be_bytes(self.random::<4>());
            if s > 255 {
                return s;
            }
        }
    }

    pub(super) fn arm(&mut self, h: Handle, sa: &mut IkeSa) {
        if let Some(t) = sa.timer.take() {
            self.timers.cancel(t);
        }
        if let Some(d) = sa.deadline() {
            match self.timers.insert(d, h) {
                Ok(t) => sa.timer = Some(t),
                Err(_) => log::error!("ikev2: timer table full; IKE SA has no timer"),
            }
        }
    }

    /// Sends a request and keeps it for retransmission.
    pub(super) fn request(
        &mut self,
        now: Time,
        cfg: &Config,
        h: Handle,
        sa: &mut IkeSa,
        (msgid, data): (u32, Vec<u8>),
        what: Req,
    ) {
        self.send(sa.info.local, sa.info.remote, &data);
        sa.request = Some(Pending {
            msgid,
            data,
            xmits: 0,
            at: now.add_millis(cfg.retransmit_ms),
            what,
        });
        self.arm(h, sa);
    }

    /// Sends a response and keeps it for a repeated request.
    /// An unprotected IKE_SA_INIT response of one notify to the request with `spi_i`
    /// (§1.2, §2.6), rate-limited but for a COOKIE.
    pub(super) fn init_reply(
        &mut self,
        now: Time,
        (local, remote): (SocketAddr, SocketAddr),
        spi_i: [u8; 8],
        ty: NotifyType,
        data: &[u8],
    ) {
        if ty != NotifyType::COOKIE && self.notify_limit.allow(now).is_none() {
            return;
        }
        let hdr = Header {
            spi_i,
            flags: FLAG_RESPONSE,
            ..Header::default()
        };
        let mut buf = [0u8; 128];
        let n = MessageBuilder::new(&mut buf, &hdr).and_then(|mut b| {
            b.notify(ty, data)?;
            b.finish()
        });
        if let Ok(n) = n {
            self.send(local, remote, &buf[..n]);
        }
    }

    pub(super) fn respond(&mut self, sa: &mut IkeSa, msgid: u32, data: Vec<u8>) {
        self.send(sa.info.local, sa.info.remote, &data);
        sa.response = Some((msgid, data));
    }

    /// A kernel request nobody waits for (deletions, SPIs given back): ticket 0.
    pub(super) fn kernel_req(&mut self, req: KernelReq) {
        log::debug!("ikev2: kernel: {req:?}");
        self.kernel.push_back(KernelOp { ticket: 0, req });
    }

    /// A kernel request a step waits for: its ticket, which the answer carries (never
    /// 0, always with [`KERNEL_TICKET_BIT`]).
    pub(super) fn kernel_ticket(&mut self, req: KernelReq) -> u32 {
        self.ticket = self.ticket.wrapping_add(1) | KERNEL_TICKET_BIT;
        let ticket = self.ticket;
        log::debug!("ikev2: kernel: {req:?} (ticket {ticket})");
        self.kernel.push_back(KernelOp { ticket, req });
        ticket
    }

    /// Gives back an inbound SPI the kernel reserved for a CHILD_SA that did not come
    /// about (from `remote` to `local`); one we picked ourselves was never reserved.
    pub(super) fn release_spi(&mut self, local: SocketAddr, remote: SocketAddr, spi: u32) {
        if self.kernel_answers && spi != 0 {
            self.kernel_req(KernelReq::DeleteSpi {
                protocol: V1Protocol::IPSEC_ESP,
                src: remote.ip(),
                dst: local.ip(),
                spi: spi.to_be_bytes(),
            });
        }
    }

    /// The IV of the next SK payload: random for CBC, a counter for AEAD.
    pub(super) fn iv(&mut self, sa: &mut IkeSa, sk: &SkKeys) -> Vec<u8> {
        let mut iv = vec![0u8; sk.iv_len()];
        if sk.iv_len() == 8 {
            sa.iv_counter += 1;
            iv.copy_from_slice(&sa.iv_counter.to_be_bytes());
        } else {
            self.rng.fill(&mut iv);
        }
        iv
    }
}
