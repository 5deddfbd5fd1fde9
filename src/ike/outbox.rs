//! The datagrams the engine has queued for the event loop, without an allocation per
//! datagram: their bytes go one after another into one buffer, which is emptied (its
//! capacity kept) whenever the event loop has taken everything. The event loop drains
//! the queue after every input, so the buffer holds a handful of messages at a time; it
//! grows only if a burst exceeds what it ever held, and keeps that size.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::Transmit;

/// Room reserved at startup: bytes of queued datagrams, and datagrams.
const BYTES: usize = 64 * 1024;
const DATAGRAMS: usize = 256;

pub(crate) struct Outbox {
    bytes: Vec<u8>,
    /// Each datagram: where it goes, and where its bytes start.
    queue: VecDeque<(Transmit, usize)>,
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox {
            bytes: Vec::with_capacity(BYTES),
            queue: VecDeque::with_capacity(DATAGRAMS),
        }
    }

    /// Queues `prefix` + `data` (the prefix is the non-ESP marker on the NAT-T port).
    pub(crate) fn push(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        prefix: &[u8],
        data: &[u8],
    ) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(prefix);
        self.bytes.extend_from_slice(data);
        let t = Transmit {
            local: Some(local),
            remote,
            len: prefix.len() + data.len(),
        };
        self.queue.push_back((t, start));
    }

    /// The next datagram, copied into `buf` (truncated to it).
    pub(crate) fn pop(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (mut t, start) = self.queue.pop_front()?;
        let n = t.len.min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        t.len = n;
        if self.queue.is_empty() {
            self.bytes.clear();
        }
        Some(t)
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.bytes.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_come_out_in_order_and_the_buffer_is_reused() {
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:4500".parse().unwrap();
        let mut o = Outbox::new();
        o.push(a, b, &[], b"one");
        o.push(a, b, &[0, 0, 0, 0], b"two");
        let mut buf = [0u8; 16];
        let t = o.pop(&mut buf).unwrap();
        assert_eq!((&buf[..t.len], t.remote), (&b"one"[..], b));
        let t = o.pop(&mut buf).unwrap();
        assert_eq!(&buf[..t.len], b"\0\0\0\0two");
        assert!(o.pop(&mut buf).is_none() && o.is_empty());
        assert_eq!(o.bytes.len(), 0);
        assert!(o.bytes.capacity() >= BYTES);
        o.push(a, b, &[], b"three");
        let mut small = [0u8; 2];
        assert_eq!(o.pop(&mut small).unwrap().len, 2, "truncated to the buffer");
    }
}
