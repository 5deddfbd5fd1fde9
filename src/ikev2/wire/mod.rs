//! The IKEv2 wire format (RFC 7296 §3) and IKE message fragments (RFC 7383 §2.5).
//!
//! The shape is that of `crate::ike::wire` (STYLE §10.3): parsing works on a slice, checks
//! every length field against what is there before using it, and returns representations
//! that borrow from the datagram; nothing is allocated per payload ([`Message`] keeps its
//! payloads in a fixed-capacity list). A rejected input is an [`Error`] naming the notify
//! to answer with (INVALID_SYNTAX for malformed payloads, UNSUPPORTED_CRITICAL_PAYLOAD
//! with the offending type, INVALID_MAJOR_VERSION) and a reason for the log. There is no
//! `unsafe`, and no input makes this code panic; the truncation tests and the charon
//! fixtures (tests/ikev2_wire.rs) hold that line.
//!
//! Two things differ from IKEv1 and shape the code. The generic payload header has a
//! critical bit (§3.2): a payload type we do not know is skipped when the bit is clear
//! (kept as [`Payload::Unknown`] so that the message round-trips) and rejects the message
//! when it is set. And the Encrypted payload SK (§3.14), or its fragment SKF (RFC 7383),
//! ends the cleartext chain: its next-payload field names the first payload *inside* it.
//! This module stops there; splitting IV, ciphertext, padding and ICV needs the
//! negotiated cipher and is the caller's job, after which [`parse_payloads`] reads the
//! decrypted chain.
//!
//! Emitting goes through [`MessageBuilder`], which writes the header and chains payloads
//! into a caller's buffer, filling in next-payload and length fields, over the shared
//! [`Writer`] cursor of `crate::ike::wire`.

#![forbid(unsafe_code)]

pub mod consts;
pub mod header;
pub mod payload;
pub mod sa;
pub mod ts;

use std::fmt;

pub use crate::ike::wire::{NoRoom, Writer};
pub use consts::*;
pub use header::{Header, HEADER_LEN};
pub use payload::{
    parse_payloads, AuthPayload, CertPayload, CpAttribute, CpPayload, DeletePayload, IdPayload,
    KePayload, Message, MessageBuilder, NotifyPayload, Payload, PayloadEntry, Payloads, SkPayload,
    SkfPayload, MAX_PAYLOADS,
};
pub use sa::{Attribute, Proposal, ProposalRepr, SaPayload, Transform, TransformRepr};
pub use ts::{TrafficSelector, TsPayload};

/// A rejected message or payload: the notify to answer with and a short reason for the
/// log. For UNSUPPORTED_CRITICAL_PAYLOAD, `payload` is the type that was not understood
/// (the notification data, RFC 7296 §3.10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub notify: NotifyType,
    pub reason: &'static str,
    pub payload: Option<PayloadType>,
}

impl Error {
    pub const fn new(notify: NotifyType, reason: &'static str) -> Error {
        Error {
            notify,
            reason,
            payload: None,
        }
    }

    /// A malformed message: INVALID_SYNTAX (RFC 7296 §3.10.1, "... MUST be sent in
    /// response to ... messages that are malformed").
    pub const fn syntax(reason: &'static str) -> Error {
        Error::new(NotifyType::INVALID_SYNTAX, reason)
    }

    pub const fn unsupported_critical(ty: PayloadType) -> Error {
        Error {
            notify: NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
            reason: "unknown payload type with the critical bit set",
            payload: Some(ty),
        }
    }

    /// The notification data to send along: one byte, the payload type, for
    /// UNSUPPORTED_CRITICAL_PAYLOAD; nothing otherwise.
    pub fn notify_data(&self) -> Option<u8> {
        self.payload.map(|p| p.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.reason, self.notify)?;
        if let Some(p) = self.payload {
            write!(f, ", payload type {}", p.0)?;
        }
        f.write_str(")")
    }
}

/// Length of the generic payload header (RFC 7296 §3.2).
pub const GENERIC_HEADER_LEN: usize = 4;

/// Big-endian reads from a slice whose length the caller has checked.
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Emitted lengths: a u16 length field that would overflow is reported as [`NoRoom`]
/// (nothing we build is that large; a caller's oversized slice must not wrap).
fn len16(n: usize) -> Result<u16, NoRoom> {
    u16::try_from(n).map_err(|_| NoRoom)
}
