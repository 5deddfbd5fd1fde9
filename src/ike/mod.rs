//! The IKEv1 protocol engine, sans-IO.
//!
//! Everything the engine knows arrives as an argument: datagrams with their addresses
//! ([`Engine::handle_datagram`]), administrative commands ([`Engine::handle_command`]) and
//! the time ([`Time`], from the event loop, the only place that reads a clock). What it
//! wants done leaves through `poll_*` calls: datagrams to send ([`Engine::poll_transmit`]),
//! kernel requests ([`Engine::poll_kernel`]), cleartext copies of IKE messages for the
//! capture file ([`Engine::poll_capture`]) and the next deadline ([`Engine::poll_timeout`]).
//! It never touches a socket, a clock or the OS random generator, which keeps it
//! deterministic under test and under `-r seed`.
//!
//! Layout, after isakmpd's files: `exchange.rs` (exchanges in flight), `sa.rs` (the SA
//! tables), `main_mode.rs` (phase 1, RFC 2409 §5), `quick_mode.rs` (phase 2, §5.5),
//! `informational.rs` (notifications and DELETE, §5.7), `policy.rs` (the configuration).
//!
//! Tables have a fixed capacity set at startup; a full table drops the packet and counts
//! it. XXX: the byte fields of an exchange (nonces, KE values, the last message) are
//! heap vectors sized per exchange, not per packet; fixed buffers would remove even that.

#![forbid(unsafe_code)]

mod aggressive;
pub mod auth;
mod command;
pub mod crypto;
pub mod dpd;
pub mod exchange;
mod informational;
mod io;
pub mod ipsec_alg;
mod ipsec_proposal;
mod kernel;
mod lifecycle;
mod main_mode;
pub mod mode_cfg;
pub mod nat_t;
pub(crate) mod outbox;
mod p1_refusal;
mod phase1;
mod phase2;
mod reject;
pub mod router;
pub mod script;
pub use self::auth::Credentials;
pub use self::ipsec_alg::Backend;
pub use self::reject::DropKind;
pub(crate) use self::reject::{
    exchange_name, refused, Drop, LogLimit, DROP_SUMMARY_SECS, OVER_RATE,
};
pub mod policy;
mod policy_attrs;
pub(crate) use self::policy_attrs::civil_date;
mod quick_mode;
pub mod sa;
pub mod wire;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use self::crypto::{cbc_decrypt, cbc_encrypt, CipherAlg, Key, Random};
use self::exchange::Exchange;
use self::policy::Policy;
use self::router::{Keyed, Table};
use self::sa::{hex, Handle, IpsecSa, IsakmpSa, KernelOp, KernelReq, Part};
use self::wire::{Header, Message, NotifyType, HEADER_LEN};
use crate::conf::Conf;
use crate::log::DebugClass;
use crate::timer::{Time, TimerWheel};

/// What the engine needs from the command line.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub passive: bool,
    /// -S: SAs are left in place at shutdown even after `M active`.
    pub keep_sas_at_exit: bool,
    pub seed: Option<u64>,
    pub no_kernel: bool,
    pub no_nat_t: bool,
    pub acquire_only: bool,
    /// Our IKE port (-p), for peers that do not name one.
    pub port: Option<u16>,
    /// Our NAT-T port (-N; 4500 when unset).
    pub nat_t_port: Option<u16>,
    /// What the kernel backend can install; proposals are filtered by it.
    pub backend: Backend,
    /// The key of the hash indexes over peer-chosen values (cookies); random in the
    /// daemon, so that nobody can aim at one bucket.
    pub hash_key: [u8; 16],
}

/// Which SA a teardown names: phase 1 (`t main`) or phase 2 (`t quick`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Main,
    Quick,
}

/// Administrative requests routed to the engine (from the FIFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect(String),
    Teardown {
        phase: Phase,
        name: String,
    },
    TeardownAll,
    Delete {
        icookie: [u8; 8],
        rcookie: [u8; 8],
        msgid: Option<[u8; 4]>,
    },
}

/// Engine timers: hints into the tables; the entries' own deadlines are the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Exchange(Handle),
    IsakmpExpire(Handle),
    /// A phase 1 SA's soft timeout (it shares the hard expiry's slot: the hard one is
    /// armed when this one fires).
    IsakmpSoft(Handle),
    IpsecExpire(Handle),
    IpsecSoft(Handle),
    /// A rekeying initiator's pause is over: the new SA's outbound half goes in.
    IpsecOutbound(Handle),
    Dpd(Handle),
    Keepalive(Handle),
}

/// A datagram for the event loop to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub len: usize,
}

/// A cleartext IKE message for the capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_received: u64,
    pub datagrams_dropped: u64,
    pub bytes_received: u64,
    pub phase1_done: u64,
    pub phase2_done: u64,
    pub failed: u64,
    /// R-U-THEREs sent, and ACKs that answered one.
    pub dpd_sent: u64,
    pub dpd_acked: u64,
    /// Peers declared dead.
    pub dpd_dead: u64,
    /// Unprotected notifications not sent because too many went out that second.
    pub notifies_suppressed: u64,
    /// Dropped datagrams by reason ([`DropKind`]).
    pub drops: [u64; DropKind::ALL.len()],
    /// Half-open responder exchanges dropped to make room for newer ones, and those
    /// whose peer never answered.
    pub half_open_evicted: u64,
    pub half_open_expired: u64,
    /// Messages sent again because no answer came in time.
    pub retransmits: u64,
}

/// The largest IKE message we take (a UDP datagram's payload).
pub const MAX_MESSAGE: usize = 65535;

/// The smallest ISAKMP message: the fixed header (RFC 2408 3.1).
pub const ISAKMP_HEADER_LEN: usize = 28;
/// How long an IPsec SA may outlive its hard expiry for its replacement's sake.
pub const EXPIRY_GRACE_MS: u64 = 10_000;
/// A rekeying initiator sends on the old SA for twice message 1's round trip after
/// message 3, within these bounds (ms), before it switches to the new one.
pub const REKEY_PAUSE_MS: (u64, u64) = (1000, 5000);

/// Which local address the kernel would use to reach a remote one (a routing lookup
/// supplied by the event loop; tests give a closure).
pub type RouteLookup = Box<dyn FnMut(IpAddr) -> Option<IpAddr>>;

pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) policy: Policy,
    /// Exchanges by initiator cookie and message ID.
    pub(crate) exchanges: Table<Exchange, ([u8; 8], u32)>,
    /// What is left of finished exchanges, to answer duplicates, and the order they
    /// came in (the oldest makes room).
    pub(crate) finished: Table<exchange::Finished, ([u8; 8], u32)>,
    finished_order: VecDeque<Handle>,
    /// Half-open responder exchanges, oldest first (entries that made progress or went
    /// are skipped), and how many there are.
    pub(crate) half_open: VecDeque<Handle>,
    pub(crate) half_open_count: usize,
    /// ISAKMP SAs by their cookies.
    pub(crate) isakmp_sas: Table<IsakmpSa, ([u8; 8], [u8; 8])>,
    /// IPsec SAs by their flows (connection, protocol, client IDs).
    pub(crate) ipsec_sas: Table<IpsecSa, u64>,
    /// The queues out, the timers, the random source and the counters.
    pub(crate) io: io::Io,
    /// Peer addresses sent INITIAL-CONTACT (isakmpd's contact list).
    contacted: phase1::Contacts,
    /// Timers fired in one `handle_timeout`, kept to reuse its room.
    fired: Vec<TimerKind>,
    /// Where protected informational messages are built (transmit scratch) and where
    /// received protected messages are decrypted: allocated once, reused.
    pub(crate) scratch: Vec<u8>,
    pub(crate) rx: Vec<u8>,
    route: RouteLookup,
    /// Connections to (re)start when nothing carries them: started at load and by `c`.
    wanted: Vec<String>,
    pub(crate) creds: auth::Credentials,
    drop_log: [LogLimit; DropKind::ALL.len()],
    /// A drop warning was held back since the last summary, which was at
    /// `drop_summary_at` and had seen `drops_summed`.
    drop_held_back: bool,
    drop_summary_at: Time,
    drops_summed: [u64; DropKind::ALL.len()],
    /// Unprotected notifications sent, by the second.
    notify_limit: LogLimit,
    /// Aggressive Mode responders started with unnamed peers, by the tenth of a second.
    aggressive_default: LogLimit,
    /// Warnings about unprotected notifications (anybody can send them).
    unprotected_log: LogLimit,
    /// isakmpd.policy (KeyNote), when in force; the wall clock its time attributes use.
    pub(crate) proposal_policy: Option<std::sync::Arc<dyn policy::ProposalPolicy>>,
    pub(crate) wall: policy::WallClock,
    /// Proposals refused by isakmpd.policy, logged at most this often.
    pub(crate) policy_log: LogLimit,
}

impl Engine {
    /// A new engine. `rng` is its only source of randomness (cookies, nonces, DH
    /// secrets, SPIs without a kernel): the event loop passes the OS generator, tests and
    /// `-r` a seeded one. The tables are sized once, here, from `[General]`.
    pub fn new(cfg: EngineConfig, conf: &Conf, now: Time, rng: Box<dyn Random>) -> Engine {
        let limits = policy::Limits::load(conf);
        let hash_key = cfg.hash_key;
        let io = io::Io::new(
            cfg.passive,
            cfg.nat_t_port.unwrap_or(4500),
            cfg.backend != Backend::Record,
            rng,
            TimerWheel::new(limits.timers(), now),
        );
        let mut e = Engine {
            cfg,
            policy: Policy::default(),
            exchanges: Table::with_capacity(
                limits.exchanges,
                |x| (x.icookie, x.msgid),
                Keyed(hash_key),
            ),
            finished: Table::with_capacity(
                limits.exchanges,
                |f| (f.icookie, f.msgid),
                Keyed(hash_key),
            ),
            finished_order: VecDeque::with_capacity(limits.exchanges),
            half_open: VecDeque::with_capacity(2 * limits.half_open),
            half_open_count: 0,
            isakmp_sas: Table::with_capacity(
                limits.isakmp_sas,
                |s| (s.icookie, s.rcookie),
                Keyed(hash_key),
            ),
            ipsec_sas: Table::with_capacity(limits.ipsec_sas, IpsecSa::flow_key, Keyed(hash_key)),
            contacted: phase1::Contacts::new(limits.isakmp_sas, Keyed(hash_key)),
            io,
            fired: Vec::with_capacity(64),
            scratch: Vec::with_capacity(8192),
            rx: Vec::with_capacity(crate::ike::MAX_MESSAGE),
            route: Box::new(|_| None),
            wanted: Vec::new(),
            creds: auth::Credentials::default(),
            // Five warnings per reason per summary period: a flood shows as a few lines
            // and one summary every ten seconds.
            drop_log: [LogLimit::new(5, DROP_SUMMARY_SECS * 1000); DropKind::ALL.len()],
            drop_held_back: false,
            drop_summary_at: now,
            drops_summed: [0; DropKind::ALL.len()],
            notify_limit: LogLimit::default(),
            aggressive_default: LogLimit::new((limits.aggressive_default_rate / 10).max(1), 100),
            unprotected_log: LogLimit::new(5, DROP_SUMMARY_SECS * 1000),
            proposal_policy: None,
            wall: policy::WallClock::default(),
            policy_log: LogLimit::new(5, DROP_SUMMARY_SECS * 1000),
        };
        e.configure(conf);
        e
    }

    /// Our key, certificate and trusted CAs (RSA_SIG).
    pub fn set_credentials(&mut self, c: Credentials) {
        self.creds = c;
    }

    /// isakmpd.policy: consulted for each Quick Mode proposal (`None`: -K, none).
    pub fn set_proposal_policy(&mut self, p: Option<std::sync::Arc<dyn policy::ProposalPolicy>>) {
        self.proposal_policy = p;
    }

    /// The wall-clock time, for the policy's GMTTimeOfDay and LocalTimeOfDay.
    pub fn set_wall_clock(&mut self, w: policy::WallClock) {
        self.wall = w;
    }

    /// Sets the routing lookup used to pick our address for IDs and sockets.
    pub fn set_route_lookup(&mut self, f: RouteLookup) {
        self.route = f;
    }

    /// Takes a new configuration (startup, SIGHUP, FIFO `R` and `C` edits). Active
    /// connections not yet up are started by the next [`Engine::start_connections`].
    pub fn configure(&mut self, conf: &Conf) {
        self.policy = Policy::load(conf);
        for e in &self.policy.errors {
            crate::log_warn!("conf: {e}: section skipped");
        }
        let l = self.policy.limits;
        if (l.exchanges, l.isakmp_sas, l.ipsec_sas)
            != (
                self.exchanges.capacity(),
                self.isakmp_sas.capacity(),
                self.ipsec_sas.capacity(),
            )
            && self.exchanges.capacity() > 0
        {
            crate::log_warn!(
                "conf: Max-exchanges, Max-phase1-SAs and Max-phase2-SAs take effect at the next start"
            );
        }
        self.wanted = self
            .policy
            .connections
            .iter()
            .filter(|c| !c.passive)
            .map(|c| c.name.clone())
            .collect();
    }

    pub fn set_passive(&mut self, passive: bool) {
        self.io.passive = passive;
    }

    pub fn passive(&self) -> bool {
        self.io.passive
    }

    pub fn set_capture(&mut self, on: bool) {
        self.io.set_capture(on);
    }

    pub fn stats(&self) -> Stats {
        self.io.stats
    }

    /// The IPsec SAs in force (for tests and the report).
    pub fn ipsec_sas(&self) -> impl Iterator<Item = &IpsecSa> {
        self.ipsec_sas.iter().map(|(_, s)| s)
    }

    pub fn isakmp_sas(&self) -> impl Iterator<Item = &IsakmpSa> {
        self.isakmp_sas.iter().map(|(_, s)| s)
    }

    /// The exchanges in flight or lingering (for the report).
    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.iter().map(|(_, x)| x)
    }

    /// The same with their handles (the log report names each by it).
    pub fn exchange_handles(&self) -> impl Iterator<Item = (Handle, &Exchange)> {
        self.exchanges.iter()
    }

    pub fn isakmp_sa_handles(&self) -> impl Iterator<Item = (Handle, &IsakmpSa)> {
        self.isakmp_sas.iter()
    }

    pub fn ipsec_sa_handles(&self) -> impl Iterator<Item = (Handle, &IpsecSa)> {
        self.ipsec_sas.iter()
    }

    /// Every name of [Phase 2] Connections and Passive-connections: (name, passive, why
    /// it cannot be used).
    pub fn listed_connections(&self) -> &[(String, bool, Option<String>)] {
        &self.policy.listed
    }

    /// The armed timers: (deadline, what).
    pub fn timers(&self) -> impl Iterator<Item = (Time, TimerKind)> + '_ {
        self.io.timers.iter()
    }

    /// The `-r` seed, if randomness is deterministic.
    pub fn seed(&self) -> Option<u64> {
        self.cfg.seed
    }

    /// Responder exchanges still waiting for the peer's message 3.
    pub fn half_open_exchanges(&self) -> usize {
        self.half_open_count
    }

    pub fn exchanges_in_flight(&self) -> usize {
        self.exchanges.len()
    }

    /// One received datagram.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        self.io.stats.datagrams_received += 1;
        self.io.stats.bytes_received += data.len() as u64;
        if self.io.passive {
            // isakmpd(8) -S: no incoming traffic is processed until `M active`.
            self.count_drop(DropKind::Passive);
            crate::ike_debug!(
                DebugClass::Message,
                30,
                "passive: datagram from {remote} ignored"
            );
            return;
        }
        let data = if local.port() == self.nat_port() {
            // RFC 3948: IKE after the non-ESP marker; a lone 0xFF is a keepalive.
            if data == nat_t::KEEPALIVE {
                return;
            }
            match data.strip_prefix(&nat_t::NON_ESP_MARKER) {
                Some(d) => d,
                None => {
                    self.count_drop(DropKind::NotIsakmp);
                    crate::ike_debug!(
                        DebugClass::Message,
                        10,
                        "drop datagram from {remote} on the NAT-T port without the non-ESP marker"
                    );
                    return;
                }
            }
        } else {
            data
        };
        if data.len() < ISAKMP_HEADER_LEN {
            self.count_drop(DropKind::NotIsakmp);
            crate::ike_debug!(
                DebugClass::Message,
                10,
                "drop {}-byte datagram from {remote} to {local}: shorter than an ISAKMP header",
                data.len()
            );
            return;
        }
        let header = match Header::parse(data) {
            Ok(h) => h,
            Err(e) => {
                // message.c: a bad length is dropped without a reply.
                self.count_drop(DropKind::BadHeader);
                self.drop_msg(
                    now,
                    remote,
                    wire::ExchangeType(data[18]),
                    DropKind::BadHeader,
                    e.reason,
                );
                return;
            }
        };
        if let Err(e) = header.check() {
            self.count_drop(DropKind::BadHeader);
            self.drop_msg(now, remote, header.exchange, DropKind::BadHeader, e.reason);
            if header.rcookie == [0; 8] {
                return;
            }
            self.notify_unprotected(now, local, remote, &header, e.notify);
            return;
        }
        let local = self.local_for(local, remote);
        let r = match header.exchange {
            wire::ExchangeType::ID_PROT => {
                self.phase1_input(exchange::Kind::Main, now, local, remote, &header, data)
            }
            wire::ExchangeType::AGGRESSIVE => self.phase1_input(
                exchange::Kind::Aggressive,
                now,
                local,
                remote,
                &header,
                data,
            ),
            wire::ExchangeType::QUICK_MODE => {
                self.quick_mode_input(now, local, remote, &header, data)
            }
            wire::ExchangeType::INFO => self.info_input(now, local, remote, &header, data),
            wire::ExchangeType::TRANSACTION => {
                self.transaction_input(now, local, remote, &header, data)
            }
            _ => Err(Drop::Notify(
                NotifyType::UNSUPPORTED_EXCHANGE_TYPE,
                "unsupported exchange type",
            )),
        };
        if let Err(d) = r {
            let kind = DropKind::of(&d);
            self.count_drop(kind);
            match d {
                Drop::Silent(why) => self.drop_msg(now, remote, header.exchange, kind, why),
                Drop::Told(_, why) => self.drop_msg(now, remote, header.exchange, kind, why),
                Drop::Notify(n, why) => {
                    self.drop_msg(now, remote, header.exchange, kind, why);
                    if header.rcookie != [0; 8]
                        || header.exchange == wire::ExchangeType::ID_PROT
                        || header.exchange == wire::ExchangeType::AGGRESSIVE
                    {
                        self.notify_unprotected(now, local, remote, &header, n);
                    }
                }
            }
        }
    }

    fn count_drop(&mut self, kind: DropKind) {
        self.io.stats.datagrams_dropped += 1;
        self.io.stats.drops[kind as usize] += 1;
    }

    /// The warning for a dropped message, rate limited per reason (a flood of one kind
    /// does not hide the others): anyone can send us garbage, and the log must not
    /// become their amplifier. What was held back is summed up every
    /// [`DROP_SUMMARY_SECS`] by [`Self::drop_summary`].
    fn drop_msg(
        &mut self,
        now: Time,
        remote: SocketAddr,
        exchange: wire::ExchangeType,
        kind: DropKind,
        why: &str,
    ) {
        if self.drop_log[kind as usize].allow(now).is_some() {
            crate::log_warn!(
                "dropped {} message from {remote}: {why}",
                exchange_name(exchange)
            );
        } else {
            self.drop_held_back = true;
        }
        self.drop_summary(now);
    }

    /// Every [`DROP_SUMMARY_SECS`], if warnings were held back: one line with what was
    /// dropped since the last summary, by reason.
    fn drop_summary(&mut self, now: Time) {
        if !self.drop_held_back || now < self.drop_summary_at.add_secs(DROP_SUMMARY_SECS) {
            return;
        }
        let mut line = heapless::String::<256>::new();
        let mut total = 0;
        for (i, k) in DropKind::ALL.iter().enumerate() {
            let n = self.io.stats.drops[i] - self.drops_summed[i];
            if n > 0 {
                total += n;
                let _ = write!(line, ", {n} {}", k.name());
            }
        }
        crate::log_warn!(
            "{total} datagrams dropped in the last {} s{line}",
            self.drop_summary_at.until(now) / 1000
        );
        self.drops_summed = self.io.stats.drops;
        self.drop_summary_at = now;
        self.drop_held_back = false;
    }

    /// Our address towards `remote` when the socket is bound to a wildcard.
    pub(crate) fn local_for(&mut self, local: SocketAddr, remote: SocketAddr) -> SocketAddr {
        if !local.ip().is_unspecified() {
            return local;
        }
        match (self.route)(remote.ip()) {
            Some(ip) => SocketAddr::new(ip, local.port()),
            None => local,
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.drop_summary(now);
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.io.timers.expire(now, |_, kind| fired.push(kind));
        for &k in &fired {
            match k {
                TimerKind::Exchange(h) => self.exchange_timer(now, h),
                TimerKind::IsakmpExpire(h) => {
                    if let Some(sa) = self.isakmp_sas.get(h) {
                        if sa.hard_expiry.is_some_and(|t| t <= now) {
                            crate::log_info!(
                                "phase 1 SA {}{} with {} expired",
                                hex(&sa.icookie),
                                hex(&sa.rcookie),
                                sa.remote
                            );
                            self.delete_isakmp_sa(now, h, true);
                        }
                    }
                }
                TimerKind::IsakmpSoft(h) => self.isakmp_soft_expire(now, h),
                TimerKind::IpsecExpire(h) => self.expire_ipsec_sa(now, h),
                TimerKind::IpsecSoft(h) => self.rekey(now, h),
                TimerKind::IpsecOutbound(h) => self.switch_outbound(now, h),
                TimerKind::Dpd(h) => self.dpd_timer(now, h),
                TimerKind::Keepalive(h) => self.keepalive_timer(now, h),
            }
        }
        self.fired = fired;
    }

    /// (Re)arms an exchange's timer at its earliest deadline.
    pub(crate) fn arm(&mut self, h: Handle) {
        if let Some(x) = self.exchanges.get_mut(h) {
            self.io.arm(h, x);
        }
    }

    /// Frees an exchange and its timer; a Quick Mode responder that never saw message 3
    /// takes back the inbound SAs it installed.
    pub(crate) fn free_exchange(&mut self, h: Handle) {
        if let Some(x) = self.exchanges.remove(h) {
            if let Some(t) = x.timer {
                self.io.timers.cancel(t);
            }
            if x.half_open {
                self.half_open_count -= 1;
            }
            for sa in x.qm.pending_in {
                crate::log_info!(
                    "quick mode {} with {}: no message 3, inbound SA {} removed",
                    sa.name,
                    sa.remote,
                    hex(&sa.spi_in)
                );
                self.io
                    .kernel_req(KernelReq::DeleteSa(Box::new(sa), Part::Inbound, false));
            }
            // SAs entered while the kernel had not yet confirmed them.
            for ih in x.qm.committed {
                if let Some(sa) = self.ipsec_sas.remove(ih) {
                    self.disarm(sa.timers);
                    self.io
                        .kernel_req(KernelReq::DeleteSa(Box::new(sa), Part::Both, true));
                }
            }
            let (src, dst) = (x.remote.ip(), x.local.ip());
            for (protocol, spi) in x.qm.reserved {
                self.io.kernel_req(KernelReq::DeleteSpi {
                    protocol,
                    src,
                    dst,
                    spi,
                });
            }
        }
    }

    /// Pads `msg` (header + payloads) to the cipher block, encrypts it in place after the
    /// header with `iv`, sets the length, and returns the new IV (the last cipher block).
    pub(crate) fn encrypt(
        cipher: CipherAlg,
        ka: &[u8],
        iv: &Key,
        msg: &mut Vec<u8>,
    ) -> Result<Key, String> {
        let bl = cipher.block_len();
        let body = msg.len() - HEADER_LEN;
        let pad = (bl - body % bl) % bl;
        msg.resize(msg.len() + pad, 0);
        msg[19] |= wire::FLAG_ENCRYPTION;
        let n = msg.len() as u32;
        msg[24..28].copy_from_slice(&n.to_be_bytes());
        cbc_encrypt(cipher, ka, iv.as_bytes(), &mut msg[HEADER_LEN..])
            .map_err(|e| format!("encryption failed: {e}"))?;
        Ok(Key::from_slice(&msg[msg.len() - bl..]).unwrap_or_default())
    }

    /// Decrypts a received message in place; returns the IV for the next message.
    pub(crate) fn decrypt(
        cipher: CipherAlg,
        ka: &[u8],
        iv: &Key,
        msg: &mut [u8],
    ) -> Result<Key, Drop> {
        let bl = cipher.block_len();
        let body = msg.len() - HEADER_LEN;
        if body == 0 || !body.is_multiple_of(bl) {
            return Err(Drop::Silent(
                "encrypted message is not a whole number of cipher blocks",
            ));
        }
        let next = Key::from_slice(&msg[msg.len() - bl..]).unwrap_or_default();
        cbc_decrypt(cipher, ka, iv.as_bytes(), &mut msg[HEADER_LEN..])
            .map_err(|_| Drop::Silent("decryption failed"))?;
        Ok(next)
    }

    /// An unprotected notification about a message we could not accept (message.c
    /// `message_drop` with a notify): only before keys exist, so it carries no hash.
    ///
    /// At most ten a second in all: the sender of a message we refuse before
    /// keys exist has proven nothing, not even its address, and answering every piece of
    /// ISAKMP-shaped garbage would make us a reflector.
    pub(crate) fn notify_unprotected(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        about: &Header,
        ty: NotifyType,
    ) {
        if self.notify_limit.allow(now).is_none() {
            self.io.stats.notifies_suppressed += 1;
            return;
        }
        let mut buf = [0u8; 256];
        let h = Header {
            icookie: about.icookie,
            rcookie: about.rcookie,
            major: 1,
            minor: 0,
            exchange: wire::ExchangeType::INFO,
            ..Header::default()
        };
        let n = (|| {
            let mut b = wire::MessageBuilder::new(&mut buf, &h)?;
            b.payload(wire::PayloadType::NOTIFY, |w| {
                w.u32(wire::Doi::IPSEC.0)?;
                w.u8(wire::ProtocolId::ISAKMP.0)?;
                w.u8(16)?;
                w.u16(ty.0)?;
                w.bytes(&about.icookie)?;
                w.bytes(&about.rcookie)
            })?;
            b.finish()
        })();
        if let Ok(n) = n {
            crate::log_info!("sending notification {ty} to {remote}");
            self.io.capture(local, remote, &buf[..n]);
            self.io.send(local, remote, &buf[..n]);
        }
    }

    /// The next datagram to send, copied into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        self.io.poll_transmit(buf)
    }

    /// The next kernel request (with `-n`, the event loop only logs them). A request
    /// with a ticket is answered with [`Engine::kernel_reply`].
    pub fn poll_kernel(&mut self) -> Option<KernelOp> {
        self.io.poll_kernel()
    }

    /// The next cleartext message for the capture file.
    pub fn poll_capture(&mut self) -> Option<Captured> {
        self.io.poll_capture()
    }

    pub fn poll_timeout(&mut self) -> Option<Time> {
        self.io.timers.next_deadline()
    }

    /// Starts a clean shutdown: every SA out of the kernel and a DELETE for it to its
    /// peer (isakmpd `daemon_shutdown`), unless the daemon is passive, was started with
    /// -S, or `[General] Delete-SAs` is "no": then the SAs stay in force, as a carp backup
    /// taking over from us needs them.
    pub fn shutdown(&mut self, now: Time) {
        self.wanted.clear();
        if self.io.passive || self.cfg.keep_sas_at_exit || !self.policy.delete_sas {
            crate::log_info!(
                "shutdown: {} phase 1 and {} phase 2 SAs left in place ({})",
                self.isakmp_sas.len(),
                self.ipsec_sas.len(),
                if self.policy.delete_sas {
                    "passive"
                } else {
                    "Delete-SAs=no"
                }
            );
            return;
        }
        let p2: Vec<Handle> = self.ipsec_sas.iter().map(|(h, _)| h).collect();
        for h in p2 {
            self.delete_ipsec_sa(now, h, true);
        }
        let p1: Vec<Handle> = self.isakmp_sas.iter().map(|(h, _)| h).collect();
        for h in p1 {
            self.delete_isakmp_sa(now, h, true);
        }
    }

    /// True once nothing is left to send.
    pub fn is_drained(&self) -> bool {
        self.io.is_drained()
    }

    /// Our NAT-T port.
    pub(crate) fn nat_port(&self) -> u16 {
        self.io.nat_port
    }

    /// NAT-T on: we announce it and answer it.
    pub(crate) fn nat_t_on(&self) -> bool {
        !self.cfg.no_nat_t
    }

    /// A NAT-keepalive towards the peer of ISAKMP SA `h` while we are behind a NAT.
    fn keepalive_timer(&mut self, now: Time, h: Handle) {
        let every = self.policy.nat_t_keepalive;
        let Some(s) = self.isakmp_sas.get(h) else {
            return;
        };
        if every == 0 || !s.nat_t.is_some_and(|n| n.local_behind) {
            return;
        }
        self.io.send_bare(s.local, s.remote, &nat_t::KEEPALIVE);
        self.arm_sa_timer(now.add_secs(every), TimerKind::Keepalive(h));
    }

    /// A fresh SPI: 4 random bytes above the reserved range 0-255 (RFC 4303 §2.1).
    pub(crate) fn new_spi(&mut self) -> [u8; 4] {
        loop {
            let mut s = [0u8; 4];
            self.io.rng.fill(&mut s);
            if u32::from_be_bytes(s) > 255 && !self.ipsec_sas.iter().any(|(_, x)| x.spi_in == s) {
                return s;
            }
        }
    }

    /// The peer's socket address for a peer section.
    pub(crate) fn peer_addr(&self, p: &policy::Peer) -> Option<SocketAddr> {
        p.address.map(|a| SocketAddr::new(a, p.port))
    }

    /// Our socket address towards `remote`, from the peer's Local-address, the routing
    /// lookup, or the unspecified address.
    pub(crate) fn our_addr(&mut self, p: &policy::Peer, remote: SocketAddr) -> SocketAddr {
        let port = self.cfg.port.unwrap_or(500);
        let ip = p
            .local_address
            .or_else(|| (self.route)(remote.ip()))
            .unwrap_or_else(|| policy::unspecified(remote.is_ipv6()));
        SocketAddr::new(ip, port)
    }

    /// Parses a (decrypted) message.
    pub(crate) fn parse<'a>(buf: &'a [u8], padded: bool) -> Result<Message<'a>, Drop> {
        let m = Message::parse(buf, padded).map_err(|e| Drop::Notify(e.notify, e.reason))?;
        m.check_payload_types()
            .map_err(|e| Drop::Notify(e.notify, e.reason))?;
        Ok(m)
    }
}

/// isakmpd's "phase 1 done" and "quick mode done" lines: at info level with -v, else at
/// debug level (Exchange class, 10).
pub(crate) fn log_done(line: std::fmt::Arguments<'_>) {
    if crate::log::verbose() {
        crate::log_info!("{line}");
    } else {
        crate::ike_debug!(crate::log::DebugClass::Exchange, 10, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_and_drops_datagrams_and_answers_commands() {
        let conf = Conf::parse("[Phase 2]\nConnections=a,b\nPassive-connections=p\n")
            .unwrap()
            .conf;
        let rng = Box::new(crypto::SeededRandom::new(1));
        let mut e = Engine::new(EngineConfig::default(), &conf, Time(0), rng);
        e.handle_datagram(
            Time(1),
            addr("192.0.2.1:500"),
            addr("192.0.2.2:500"),
            &[0; 10],
        );
        e.handle_datagram(
            Time(1),
            addr("192.0.2.1:500"),
            addr("192.0.2.2:500"),
            &[0; 60],
        );
        assert_eq!(
            e.stats(),
            Stats {
                datagrams_received: 2,
                datagrams_dropped: 2,
                bytes_received: 70,
                // One too short to be ISAKMP, one whose header does not hold.
                drops: [1, 1, 0, 0, 0, 0, 0, 0, 0],
                ..Stats::default()
            }
        );
        let mut buf = [0u8; 1500];
        assert_eq!(e.poll_transmit(&mut buf), None);
        assert_eq!(e.poll_timeout(), None);
        assert!(e
            .handle_command(Time(2), Request::Connect("zz".into()))
            .unwrap_err()
            .contains("no such connection"));
        assert!(
            e.handle_command(Time(2), Request::Connect("b".into()))
                .unwrap_err()
                .contains("cannot be started"),
            "b is listed but does not resolve"
        );
        let mut r = String::new();
        crate::report::engine_report(&e, Time(3), &mut r);
        assert!(r.contains("exchanges: 0"));
        assert!(r.contains("datagrams-dropped: 2"));
    }
}
