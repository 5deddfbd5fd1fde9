//! Refusing what comes in, and saying so within bounds: why a message was not accepted
//! ([`Drop`], with the notification it earns, isakmpd's `message_drop`), the reasons
//! counted for the report ([`DropKind`]), and the rate limit on warnings and on
//! unprotected notifications ([`LogLimit`]).

use super::wire::{self, NotifyType};
use crate::timer::Time;

/// A refusal whose particulars matter to an administrator (an authentication that
/// failed, a configuration that does not match): they are logged here, once, and the
/// static reason travels on. Only for messages from a peer that has shown it receives
/// at its address (after Main Mode message 3, or inside phase 1 protection), so that
/// nobody can make us format at flood rate.
pub(crate) fn refused(
    ty: NotifyType,
    reason: &'static str,
    detail: std::fmt::Arguments<'_>,
) -> Drop {
    crate::log_warn!("{reason}: {detail}");
    Drop::Notify(ty, reason)
}

/// How often held-back drop warnings are summed up.
pub const DROP_SUMMARY_SECS: u64 = 10;

/// Why an Aggressive Mode message 1 from an unnamed peer went unanswered.
pub(crate) const OVER_RATE: &str =
    "aggressive mode from a peer only Default matches: over Aggressive-default-rate";

/// Why a datagram was dropped, for the counters and the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// Not IKE at all: shorter than a header, or no non-ESP marker on the NAT-T port.
    NotIsakmp,
    /// A header that does not hold (length, version, flags).
    BadHeader,
    UnknownExchange,
    /// Cookies or a message ID nobody here knows.
    NoSuchExchange,
    /// Payloads that do not parse or a message its script does not allow.
    Malformed,
    /// A well-formed message we refuse: no proposal, authentication, IDs, tables full.
    Refused,
    /// Passive mode (-S): nothing is processed.
    Passive,
    /// Over a rate for work asked by peers that have proven nothing (Aggressive Mode
    /// message 1 from unnamed peers: Aggressive-default-rate).
    OverRate,
    Other,
}

impl DropKind {
    pub const ALL: [DropKind; 9] = [
        DropKind::NotIsakmp,
        DropKind::BadHeader,
        DropKind::UnknownExchange,
        DropKind::NoSuchExchange,
        DropKind::Malformed,
        DropKind::Refused,
        DropKind::Passive,
        DropKind::OverRate,
        DropKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropKind::NotIsakmp => "not ISAKMP",
            DropKind::BadHeader => "bad header",
            DropKind::UnknownExchange => "unknown exchange type",
            DropKind::NoSuchExchange => "no such exchange or SA",
            DropKind::Malformed => "malformed",
            DropKind::Refused => "refused",
            DropKind::Passive => "passive",
            DropKind::OverRate => "over rate",
            DropKind::Other => "other",
        }
    }

    pub(crate) fn of(d: &Drop) -> DropKind {
        match d {
            Drop::Notify(n, _) | Drop::Told(n, _) => match *n {
                NotifyType::UNSUPPORTED_EXCHANGE_TYPE => DropKind::UnknownExchange,
                NotifyType::INVALID_COOKIE | NotifyType::INVALID_MESSAGE_ID => {
                    DropKind::NoSuchExchange
                }
                NotifyType::PAYLOAD_MALFORMED
                | NotifyType::INVALID_PAYLOAD_TYPE
                | NotifyType::BAD_PROPOSAL_SYNTAX
                | NotifyType::INVALID_FLAGS => DropKind::Malformed,
                _ => DropKind::Refused,
            },
            Drop::Silent(why) if why.contains("no known") => DropKind::NoSuchExchange,
            Drop::Silent(why) if why.contains("table full") => DropKind::Refused,
            Drop::Silent(OVER_RATE) => DropKind::OverRate,
            Drop::Silent(_) => DropKind::Other,
        }
    }
}

/// isakmpd's names of the exchange types, for log lines.
pub(crate) fn exchange_name(t: wire::ExchangeType) -> &'static str {
    match t {
        wire::ExchangeType::ID_PROT => "main mode",
        wire::ExchangeType::AGGRESSIVE => "aggressive mode",
        wire::ExchangeType::QUICK_MODE => "quick mode",
        wire::ExchangeType::INFO => "informational",
        wire::ExchangeType::TRANSACTION => "mode-config",
        _ => "ISAKMP",
    }
}

/// So many events per window (the first ones pass, the rest are counted).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogLimit {
    burst: u32,
    window_ms: u64,
    window: u64,
    count: u32,
    suppressed: u64,
}

impl Default for LogLimit {
    /// Ten a second: unprotected notifications.
    fn default() -> LogLimit {
        LogLimit::new(10, 1000)
    }
}

impl LogLimit {
    pub(crate) const fn new(burst: u32, window_ms: u64) -> LogLimit {
        LogLimit {
            burst,
            window_ms,
            window: 0,
            count: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)`: go ahead, `n` were held back before; `None`: held back.
    pub(crate) fn allow(&mut self, now: Time) -> Option<u64> {
        let w = now.millis() / self.window_ms;
        if w != self.window {
            self.window = w;
            self.count = 0;
        }
        if self.count >= self.burst {
            self.suppressed += 1;
            return None;
        }
        self.count += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Why an incoming message was not accepted.
#[derive(Debug)]
pub(crate) enum Drop {
    /// Log and drop.
    Silent(&'static str),
    /// Log, drop, and tell the peer (unprotected, only where isakmpd does).
    Notify(NotifyType, &'static str),
    /// Log and drop: refused with this notification, which the peer has been told
    /// already (under phase 1 keys: `p1_refusal.rs`).
    Told(NotifyType, &'static str),
}
