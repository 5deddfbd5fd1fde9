//! The ISAKMP wire format (RFC 2408 §3), the IPsec DOI parts (RFC 2407 §4), NAT-T payloads
//! (RFC 3947) and the mode-config ATTRIBUTE payload.
//!
//! Parsing never trusts a length before checking it against what is there: every
//! `parse` works on a slice, checks each length field against the slice, and either returns
//! a representation borrowing from it or an [`Error`] that names the notification isakmpd
//! would send (PAYLOAD-MALFORMED, INVALID-PAYLOAD-TYPE, ...). Once a structure has been
//! parsed, the iterators over its parts (proposals, transforms, attributes, SPIs) cannot
//! fail: they walk bytes that were already checked. There is no `unsafe` here and no panic
//! on any input; the fuzz target and the truncation tests hold that line.
//!
//! Emitting goes through [`Writer`], a cursor over a caller's buffer that reports running
//! out of room as an error, and [`MessageBuilder`], which chains payloads and fills in the
//! next-payload and length fields. Unknown payload types and attribute values are kept as
//! bytes and emitted as they came.

#![forbid(unsafe_code)]

pub mod attr;
pub mod consts;
pub mod header;
pub mod id;
pub mod payload;
pub mod sa;

use std::fmt;

pub use attr::{Attribute, Attributes};
pub use consts::*;
pub use header::Header;
pub use header::HEADER_LEN;
pub use id::{IdPayload, Identity};
pub use payload::{Message, MessageBuilder, Payload, PayloadEntry};
pub use sa::{Proposal, SaPayload, Transform};

/// A rejected message or payload, with the notification to send back (isakmpd's
/// `message_drop(msg, notify, ...)`), and a short reason for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub notify: NotifyType,
    pub reason: &'static str,
}

impl Error {
    pub const fn new(notify: NotifyType, reason: &'static str) -> Error {
        Error { notify, reason }
    }
    pub const fn malformed(reason: &'static str) -> Error {
        Error::new(NotifyType::PAYLOAD_MALFORMED, reason)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.notify)
    }
}

/// Emitting ran out of buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message does not fit the buffer")
    }
}

/// Big-endian reads from a slice whose length the caller has checked.
pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A cursor over an output buffer. Every write checks the room left.
pub struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut [u8]) -> Writer<'b> {
        Writer { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Not inlined: every field of every message we build comes through here.
    #[inline(never)]
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), NoRoom> {
        let end = self.pos.checked_add(b.len()).ok_or(NoRoom)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(NoRoom)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    pub fn u8(&mut self, v: u8) -> Result<(), NoRoom> {
        self.bytes(&[v])
    }

    pub fn u16(&mut self, v: u16) -> Result<(), NoRoom> {
        self.bytes(&v.to_be_bytes())
    }

    pub fn u32(&mut self, v: u32) -> Result<(), NoRoom> {
        self.bytes(&v.to_be_bytes())
    }

    /// Overwrites a big-endian u16 at an earlier position (a length field).
    pub fn patch_u16(&mut self, at: usize, v: u16) -> Result<(), NoRoom> {
        self.buf
            .get_mut(at..at + 2)
            .ok_or(NoRoom)?
            .copy_from_slice(&v.to_be_bytes());
        Ok(())
    }

    pub fn patch_u8(&mut self, at: usize, v: u8) -> Result<(), NoRoom> {
        *self.buf.get_mut(at).ok_or(NoRoom)? = v;
        Ok(())
    }

    pub fn patch_u32(&mut self, at: usize, v: u32) -> Result<(), NoRoom> {
        self.buf
            .get_mut(at..at + 4)
            .ok_or(NoRoom)?
            .copy_from_slice(&v.to_be_bytes());
        Ok(())
    }

    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }
}

/// Length of the generic payload header (RFC 2408 §3.2).
pub const GENERIC_HEADER_LEN: usize = 4;

/// Splits a chain of generic-header payloads (top level, proposals or transforms) and
/// checks each link: reserved byte zero, length at least 4 and within what is left.
/// Yields (type of this payload, its body) and stops after the one whose next is 0.
pub(crate) struct Chain<'a> {
    rest: &'a [u8],
    next: u8,
}

impl<'a> Chain<'a> {
    pub(crate) fn new(first: u8, data: &'a [u8]) -> Chain<'a> {
        Chain {
            rest: data,
            next: first,
        }
    }

    /// Bytes after the last payload (padding of a decrypted message).
    pub(crate) fn remainder(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn next_payload(&mut self) -> Option<Result<(u8, &'a [u8]), Error>> {
        if self.next == 0 {
            return None;
        }
        let ty = self.next;
        if self.rest.len() < GENERIC_HEADER_LEN {
            self.next = 0;
            return Some(Err(Error::malformed("payload header truncated")));
        }
        let len = be16(&self.rest[2..4]) as usize;
        if len < GENERIC_HEADER_LEN || len > self.rest.len() {
            self.next = 0;
            return Some(Err(Error::malformed("payload length out of bounds")));
        }
        if self.rest[1] != 0 {
            self.next = 0;
            return Some(Err(Error::malformed("reserved field not zero")));
        }
        let body = &self.rest[GENERIC_HEADER_LEN..len];
        self.next = self.rest[0];
        self.rest = &self.rest[len..];
        Some(Ok((ty, body)))
    }
}
